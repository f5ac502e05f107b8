//! im-core integration tests: conformance suites against every backend, and
//! engine semantics.

use im_core::store::{MemoryStore, Store};
use std::sync::Arc;

mod memory_store {
    use super::*;
    im_core::store_conformance_tests!(async { (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()) });
}

#[path = "core/contacts.rs"]
mod contacts;
#[path = "core/files.rs"]
mod files;

#[path = "core/group_admin.rs"]
mod group_admin;

mod memory_blobs {
    use im_core::blob::{BlobStore, MemoryBlobStore};
    use std::sync::Arc;
    im_core::blob_conformance_tests!(async { (Arc::new(MemoryBlobStore::new()) as Arc<dyn BlobStore>, ()) });
}

mod fs_blobs {
    use im_core::blob::{BlobStore, FsBlobStore, FsBlobStoreConfig};
    use std::sync::Arc;

    async fn make() -> (Arc<dyn BlobStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(FsBlobStoreConfig::new(dir.path().join("files")))
            .await
            .unwrap();
        (Arc::new(store) as Arc<dyn BlobStore>, dir)
    }
    im_core::blob_conformance_tests!(make());
}

mod sqlite_store {
    use super::*;
    use im_core::store::{SqliteStore, SqliteStoreConfig};

    async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
            .await
            .unwrap();
        (Arc::new(store) as Arc<dyn Store>, dir)
    }
    im_core::store_conformance_tests!(make());

    #[tokio::test]
    async fn an_older_database_is_upgraded_in_place() {
        use diesel::prelude::*;
        use diesel_migrations::MigrationHarness;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
            conn.run_next_migration(im_core::store::sqlite::MIGRATIONS)
                .unwrap();
            diesel::sql_query(
                "INSERT INTO users (username, username_lower, display_name, display_lower, password_hash, created_at) \
                 VALUES ('Old', 'old', 'Old', 'old', 'h', 1)",
            )
            .execute(&mut conn)
            .unwrap();
        }
        let store = SqliteStore::open(SqliteStoreConfig::new(&path)).await.unwrap();
        assert_eq!(store.user_by_name("old").await.unwrap().unwrap().username, "Old");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        assert!(
            !conn
                .has_pending_migration(im_core::store::sqlite::MIGRATIONS)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn reopen_keeps_data_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/im.sqlite3");
        let store = SqliteStore::open(SqliteStoreConfig::new(&path)).await.unwrap();
        let user = store
            .create_user(im_core::model::NewUser {
                username: "keep".into(),
                display_name: "Keep".into(),
                password_hash: "h".into(),
                created_at: 1,
            })
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);
        let store = SqliteStore::open(SqliteStoreConfig::new(&path)).await.unwrap();
        assert_eq!(store.user_by_name("KEEP").await.unwrap().unwrap().id, user.id);
    }

    #[tokio::test]
    async fn a_closed_store_is_not_healthy() {
        let (store, _dir) = make().await;
        store.health().await.unwrap();
        store.close().await.unwrap();
        let err = store.health().await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(matches!(
            im_core::Error::from(err),
            im_core::Error::Unavailable(_)
        ));
    }
}

mod postgres_store {
    use super::*;
    use im_core::store::postgres::testing::TempSchema;
    use im_core::store::{PostgresStore, PostgresStoreConfig};

    async fn make() -> (Arc<dyn Store>, TempSchema) {
        let schema = TempSchema::create();
        let store = PostgresStore::open(PostgresStoreConfig::new(schema.url()))
            .await
            .unwrap();
        (Arc::new(store) as Arc<dyn Store>, schema)
    }
    im_core::store_conformance_tests!(make());

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_group_committed_within_configured_bounds() {
        let schema = TempSchema::create();
        let mut config = PostgresStoreConfig::new(schema.url());
        config.max_batch = 16;
        config.max_wait = std::time::Duration::from_millis(20);
        let store = Arc::new(PostgresStore::open(config).await.unwrap());
        let before = store.write_stats();
        let conv = store
            .create_conversation(im_core::model::NewConversation {
                kind: im_core::im_protocol::v1::ConversationKind::Room,
                title: "batch".into(),
                ephemeral: false,
                created_by: 1,
                created_at: 1,
                members: vec![],
            })
            .await
            .unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .append_message(im_core::model::NewMessage {
                            conversation_id: conv.id,
                            sender_id: 1,
                            client_msg_id: Some(format!("b{i}")),
                            content: im_core::im_protocol::v1::Content::text("x"),
                            created_at: 1,
                            membership: None,
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let stats = store.write_stats();
        let (batches, writes) = (stats.batches - before.batches, stats.writes - before.writes);
        assert_eq!(writes, 201);
        assert!(
            batches < 100,
            "concurrent writes share commits: {batches} batches for {writes} writes"
        );
        assert!(stats.largest_batch <= 16, "max_batch is respected: {stats:?}");
        // Every write was committed before its caller got the result.
        assert_eq!(store.conversation(conv.id).await.unwrap().unwrap().last_seq, 200);
    }

    /// Two nodes' writers, each committing a batch that appends to the same
    /// two conversations in opposite orders, at the same moment: the batches
    /// lock the rows in one order, so PostgreSQL never has to abort one as a
    /// deadlock (each abort would cost a sender a retry and a second).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_writing_the_same_conversations_in_opposite_orders_never_deadlock() {
        use im_core::im_protocol::v1;
        use im_core::model::{NewConversation, NewMessage};
        let schema = TempSchema::create();
        let open = || {
            let mut config = PostgresStoreConfig::new(schema.url());
            config.writers = 1;
            config.max_wait = std::time::Duration::from_millis(20);
            PostgresStore::open(config)
        };
        let (one, two) = (open().await.unwrap(), open().await.unwrap());
        let mut convs = Vec::new();
        for title in ["a", "b"] {
            let conv = one
                .create_conversation(NewConversation {
                    kind: v1::ConversationKind::Room,
                    title: title.into(),
                    ephemeral: false,
                    created_by: 1,
                    created_at: 1,
                    members: vec![],
                })
                .await
                .unwrap();
            convs.push(conv.id);
        }
        let message = |conv: u64| NewMessage {
            conversation_id: conv,
            sender_id: 1,
            client_msg_id: None,
            content: v1::Content::text("x"),
            created_at: 1,
            membership: None,
            ..Default::default()
        };
        for _ in 0..10 {
            // Each `join!` polls in order: node one queues a then b, node two b then a.
            let (first, second) = tokio::join!(
                async {
                    tokio::join!(
                        one.append_message(message(convs[0])),
                        one.append_message(message(convs[1]))
                    )
                },
                async {
                    tokio::join!(
                        two.append_message(message(convs[1])),
                        two.append_message(message(convs[0]))
                    )
                },
            );
            for result in [first.0, first.1, second.0, second.1] {
                result.expect("no deadlock between the nodes' writers");
            }
        }
        for conv in convs {
            assert_eq!(one.conversation(conv).await.unwrap().unwrap().last_seq, 20);
        }
    }

    #[tokio::test]
    async fn an_older_schema_is_upgraded_in_place() {
        use diesel::prelude::*;
        use diesel_migrations::MigrationHarness;
        let schema = TempSchema::create();
        {
            // The database as the first release left it: only the first migration.
            let mut conn = PgConnection::establish(&schema.url()).unwrap();
            conn.run_next_migration(im_core::store::postgres::MIGRATIONS)
                .unwrap();
            diesel::sql_query(
                "INSERT INTO users (username, username_lower, display_name, display_lower, password_hash, created_at) \
                 VALUES ('Old', 'old', 'Old', 'old', 'h', 1)",
            )
            .execute(&mut conn)
            .unwrap();
        }
        let store = PostgresStore::open(PostgresStoreConfig::new(schema.url()))
            .await
            .unwrap();
        assert_eq!(store.user_by_name("old").await.unwrap().unwrap().username, "Old");
        let mut conn = PgConnection::establish(&schema.url()).unwrap();
        assert!(
            !conn
                .has_pending_migration(im_core::store::postgres::MIGRATIONS)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unreachable_database_is_a_typed_error() {
        let err = PostgresStore::open(PostgresStoreConfig::new("postgres://nobody@127.0.0.1:1/none"))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, im_core::Error::Unavailable(_)), "{err:?}");
    }
}

mod local_fanout {
    use im_core::{FanOut, LocalBus, LocalFanOut};
    use std::sync::Arc;
    im_core::fanout_conformance_tests!(async {
        let bus = LocalBus::new();
        let a: Arc<dyn FanOut> = Arc::new(LocalFanOut::on(&bus));
        let b: Arc<dyn FanOut> = Arc::new(LocalFanOut::on(&bus));
        (a, b, ())
    });
}

/// The fan-out over a real Redis (127.0.0.1:6379, or `IM_TEST_REDIS_URL`):
/// two node instances on one channel of their own. Fails when Redis is
/// unreachable, never skips.
mod redis_fanout {
    use im_core::{FanOut, RedisFanOut, RedisFanOutConfig};
    use std::sync::Arc;

    pub(crate) fn channel() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("im-test-{}-{nanos}", std::process::id())
    }

    pub(crate) async fn node(channel: &str) -> Arc<dyn FanOut> {
        let url = std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut config = RedisFanOutConfig::new(&url);
        config.channel = channel.to_owned();
        let fanout = RedisFanOut::connect(config)
            .await
            .unwrap_or_else(|e| panic!("Redis is required for this test and is not reachable at {url}: {e}"));
        Arc::new(fanout)
    }

    im_core::fanout_conformance_tests!(async {
        let channel = channel();
        (node(&channel).await, node(&channel).await, ())
    });

    /// With routing, events for listed users go only to the nodes serving them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_sends_listed_users_only_to_the_nodes_serving_them() {
        use im_core::fanout::Routing;
        use im_core::{PresenceRegistry, RedisPresence, RedisPresenceConfig};
        let url = std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let channel = channel();
        let mut presence = RedisPresenceConfig::new(&url);
        presence.prefix = format!("{channel}:presence");
        let directory: Arc<dyn PresenceRegistry> =
            Arc::new(RedisPresence::connect(presence).await.expect("Redis is required"));
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            let mut config = RedisFanOutConfig::new(&url);
            config.channel = channel.clone();
            config.routing = Some(Routing {
                node: name.into(),
                directory: directory.clone(),
            });
            nodes.push(Arc::new(RedisFanOut::connect(config).await.unwrap()) as Arc<dyn FanOut>);
        }
        let nodes: [Arc<dyn FanOut>; 3] = nodes.try_into().unwrap();
        im_core::fanout::conformance::listed_audiences_reach_only_the_nodes_serving_them(nodes, directory)
            .await;
    }
}

/// The fan-out over a real Kafka broker (`tansu`, started by the test on a
/// free port): two node instances on one topic. Fails when the broker
/// cannot run, never skips.
mod kafka_fanout {
    use im_core::fanout::kafka_testing::KafkaBroker;
    use im_core::{FanOut, KafkaFanOut, KafkaFanOutConfig};
    use std::sync::Arc;

    async fn node(broker: &KafkaBroker) -> Arc<dyn FanOut> {
        let mut config = KafkaFanOutConfig::new(broker.brokers());
        config.partitions = 4;
        Arc::new(
            KafkaFanOut::connect(config)
                .await
                .expect("the test broker takes connections"),
        )
    }

    im_core::fanout_conformance_tests!(async {
        let broker = KafkaBroker::start();
        (node(&broker).await, node(&broker).await, broker)
    });

    /// With routing, events for listed users go only to the partitions of
    /// the nodes serving them ("b" and "c" read different ones of 64).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_sends_listed_users_only_to_the_nodes_serving_them() {
        use im_core::fanout::Routing;
        use im_core::{MemoryPresence, PresenceRegistry};
        let broker = KafkaBroker::start();
        let directory: Arc<dyn PresenceRegistry> = Arc::new(MemoryPresence::new(30_000));
        let mut nodes = Vec::new();
        for name in ["a", "b", "c"] {
            let mut config = KafkaFanOutConfig::new(broker.brokers());
            config.partitions = 4;
            config.routing = Some(Routing {
                node: name.into(),
                directory: directory.clone(),
            });
            nodes.push(Arc::new(KafkaFanOut::connect(config).await.unwrap()) as Arc<dyn FanOut>);
        }
        let nodes: [Arc<dyn FanOut>; 3] = nodes.try_into().unwrap();
        im_core::fanout::conformance::listed_audiences_reach_only_the_nodes_serving_them(nodes, directory)
            .await;
    }
}

/// Presence in a real Redis, each test under a key prefix of its own.
mod redis_presence {
    use im_core::{PresenceRegistry, RedisPresence, RedisPresenceConfig};
    use std::sync::Arc;
    im_core::presence_conformance_tests!(async {
        let url = std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut config = RedisPresenceConfig::new(&url);
        config.prefix = crate::redis_fanout::channel();
        config.lease_ms = 30_000;
        let r = RedisPresence::connect(config)
            .await
            .unwrap_or_else(|e| panic!("Redis is required for this test and is not reachable at {url}: {e}"));
        (Arc::new(r) as Arc<dyn PresenceRegistry>, 30_000, ())
    });
}

/// Presence in the store's PostgreSQL: two registry instances (two pools,
/// as two processes) on one fresh schema per test.
mod postgres_presence {
    use im_core::presence::conformance::TwoInstances;
    use im_core::store::postgres::testing::TempSchema;
    use im_core::{PostgresPresence, PostgresPresenceConfig, PresenceRegistry};
    use std::sync::Arc;

    async fn open(url: &str) -> Arc<dyn PresenceRegistry> {
        let mut config = PostgresPresenceConfig::new(url);
        config.lease_ms = 30_000;
        Arc::new(PostgresPresence::open(config).await.unwrap())
    }

    im_core::presence_conformance_tests!(async {
        let schema = TempSchema::create();
        let r = TwoInstances::join(open(&schema.url()).await, open(&schema.url()).await);
        (r, 30_000, schema)
    });

    #[tokio::test]
    async fn unreachable_database_is_a_typed_error() {
        let config = PostgresPresenceConfig::new("postgres://nobody@127.0.0.1:1/none");
        let err = PostgresPresence::open(config).await.err().unwrap();
        assert!(matches!(err, im_core::Error::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn shares_the_database_with_the_store() {
        use im_core::store::{PostgresStore, PostgresStoreConfig, Store};
        let schema = TempSchema::create();
        let store = PostgresStore::open(PostgresStoreConfig::new(schema.url()))
            .await
            .unwrap();
        let presence = open(&schema.url()).await;
        assert!(presence.connected("a", 1, 1, 1).await.unwrap().unwrap().online);
        store.health().await.unwrap();
    }
}

/// Presence in the store's SQLite file: two registry instances on one
/// temporary file.
mod sqlite_presence {
    use im_core::presence::conformance::TwoInstances;
    use im_core::{PresenceRegistry, SqlitePresence, SqlitePresenceConfig};
    use std::sync::Arc;

    async fn open(path: &std::path::Path) -> Arc<dyn PresenceRegistry> {
        let mut config = SqlitePresenceConfig::new(path);
        config.lease_ms = 30_000;
        Arc::new(SqlitePresence::open(config).await.unwrap())
    }

    im_core::presence_conformance_tests!(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("im.sqlite3");
        let r = TwoInstances::join(open(&path).await, open(&path).await);
        (r, 30_000, dir)
    });

    #[tokio::test]
    async fn unopenable_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        // A directory below a regular file cannot be created.
        let err = SqlitePresence::open(SqlitePresenceConfig::new(file.join("sub/im.sqlite3")))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, im_core::Error::Unavailable(_)), "{err:?}");
    }
}

mod memory_presence {
    use im_core::{MemoryPresence, PresenceRegistry};
    use std::sync::Arc;
    im_core::presence_conformance_tests!(async {
        let r: Arc<dyn PresenceRegistry> = Arc::new(MemoryPresence::new(30_000));
        (r, 30_000, ())
    });
}

/// Two engines (nodes) sharing one store and one presence registry.
mod two_nodes {
    use im_core::clock::ManualClock;
    use im_core::im_protocol::v1;
    use im_core::sessions::{Outbound, SessionEvents};
    use im_core::{
        Caller, Engine, LocalBus, LocalFanOut, MemoryPresence, MemoryStore, PasswordAuthConfig, Store,
    };
    use std::sync::Arc;

    const LEASE: i64 = 30_000;

    fn node(
        name: &str,
        store: &Arc<dyn Store>,
        bus: &Arc<LocalBus>,
        presence: &Arc<MemoryPresence>,
        clock: &ManualClock,
    ) -> Engine {
        Engine::builder()
            .store(store.clone())
            .fanout(Arc::new(LocalFanOut::on(bus)))
            .presence(presence.clone())
            .clock(Arc::new(clock.clone()))
            .node_id(name)
            .password_auth(PasswordAuthConfig {
                argon2_m_cost: 256,
                argon2_t_cost: 1,
                ..Default::default()
            })
            .build()
    }

    async fn presence_event(rx: &mut SessionEvents) -> v1::Presence {
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .unwrap();
            if let Some(Outbound::Event(ev)) = next
                && let Some(v1::event::Kind::Presence(p)) = ev.kind()
            {
                return *p;
            }
        }
    }

    async fn next_message(rx: &mut SessionEvents) -> v1::Message {
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .unwrap();
            if let Some(Outbound::Event(ev)) = next
                && let Some(v1::event::Kind::Message(m)) = ev.kind()
            {
                return m.clone();
            }
        }
    }

    fn no_message(rx: &mut SessionEvents) -> bool {
        !std::iter::from_fn(|| rx.try_recv()).any(
            |o| matches!(o, Outbound::Event(ev) if matches!(ev.kind(), Some(v1::event::Kind::Message(_)))),
        )
    }

    #[tokio::test]
    async fn a_node_serves_its_own_sessions_without_the_bus() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let presence = Arc::new(MemoryPresence::new(LEASE));
        let clock = ManualClock::new(1_800_000_000_000);
        // Two buses: the nodes cannot reach each other.
        let (a, b) = (
            node("a", &store, &LocalBus::new(), &presence, &clock),
            node("b", &store, &LocalBus::new(), &presence, &clock),
        );
        let alice = a.register("alice", "password123", "").await.unwrap().user.id;
        let bob = a.register("bob", "password123", "").await.unwrap().user.id;
        let mut alice_phone = a.connect(alice, "phone".into()).await;
        let mut bob_on_a = a.connect(bob, "phone".into()).await;
        let mut bob_on_b = b.connect(bob, "laptop".into()).await;
        let dm = v1::SendMessage {
            target: Some(v1::send_message::Target::ToUserId(bob)),
            client_msg_id: "m1".into(),
            content: Some(v1::Content::text("hi")),
            ..Default::default()
        };
        a.send_message(Caller::user(alice), dm).await.unwrap();
        assert_eq!(next_message(&mut alice_phone).await.seq, 1);
        assert_eq!(next_message(&mut bob_on_a).await.seq, 1);
        assert!(
            no_message(&mut bob_on_b),
            "node B is cut off; Bob's laptop syncs later"
        );
    }

    #[tokio::test]
    async fn a_large_group_reaches_members_on_the_other_node_resolved_there() {
        large_group_across_nodes(Arc::new(MemoryStore::new())).await;
    }

    /// The same on SQLite, where the commit hook publishes from the store's
    /// writer thread, outside the runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_group_reaches_the_other_node_from_the_sqlite_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            im_core::SqliteStore::open(im_core::SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
                .await
                .unwrap();
        large_group_across_nodes(Arc::new(store)).await;
    }

    async fn large_group_across_nodes(store: Arc<dyn Store>) {
        let presence = Arc::new(MemoryPresence::new(LEASE));
        let clock = ManualClock::new(1_800_000_000_000);
        let bus = LocalBus::new();
        let (a, b) = (
            node("a", &store, &bus, &presence, &clock),
            node("b", &store, &bus, &presence, &clock),
        );
        let mut users = Vec::new();
        for i in 0..40 {
            users.push(
                a.register(&format!("member{i}"), "password123", "")
                    .await
                    .unwrap()
                    .user
                    .id,
            );
        }
        let outsider = a.register("outsider", "password123", "").await.unwrap().user.id;
        // 40 members: above the listed-audience size, so envelopes say
        // "members" and node B finds them itself.
        let group = a
            .create_group(Caller::user(users[0]), "big", &users[1..])
            .await
            .unwrap();
        let mut on_b = b.connect(users[39], Default::default()).await;
        let mut outsider_on_b = b.connect(outsider, Default::default()).await;
        let mut on_a = a.connect(users[1], Default::default()).await;
        for n in 0..3 {
            let send = v1::SendMessage {
                target: Some(v1::send_message::Target::ConversationId(group.id)),
                client_msg_id: format!("m{n}"),
                content: Some(v1::Content::text("hello all")),
                ..Default::default()
            };
            a.send_message(Caller::user(users[0]), send).await.unwrap();
        }
        for rx in [&mut on_a, &mut on_b] {
            let mut seqs = Vec::new();
            while seqs.len() < 3 {
                // The "created" notice may still be crossing to B as B's
                // session connects: it is older than the session, skip it.
                let seq = next_message(rx).await.seq;
                if seq > 1 {
                    seqs.push(seq);
                }
            }
            assert_eq!(seqs, [2, 3, 4], "once each, in order");
        }
        // A member added on A is a recipient on B from the next message on.
        a.add_members(Caller::user(users[0]), group.id, &[outsider])
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut outsider_on_b).await.seq,
            5,
            "the 'added' notice"
        );
        let send = v1::SendMessage {
            target: Some(v1::send_message::Target::ConversationId(group.id)),
            client_msg_id: "after".into(),
            content: Some(v1::Content::text("welcome")),
            ..Default::default()
        };
        a.send_message(Caller::user(users[0]), send).await.unwrap();
        assert_eq!(next_message(&mut outsider_on_b).await.seq, 6);
    }

    #[tokio::test]
    async fn online_while_any_device_on_any_node_and_a_dead_node_expires() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let presence = Arc::new(MemoryPresence::new(LEASE));
        let clock = ManualClock::new(1_800_000_000_000);
        let bus = LocalBus::new();
        let (a, b) = (
            node("a", &store, &bus, &presence, &clock),
            node("b", &store, &bus, &presence, &clock),
        );
        let alice = a.register("alice", "password123", "").await.unwrap().user.id;
        let bob = a.register("bob", "password123", "").await.unwrap().user.id;
        let dm = v1::SendMessage {
            target: Some(v1::send_message::Target::ToUserId(bob)),
            client_msg_id: String::new(),
            content: Some(v1::Content::text("hi")),
            ..Default::default()
        };
        a.send_message(Caller::user(alice), dm).await.unwrap();

        // Bob watches from node B; Alice has a device on each node.
        let mut bob_rx = b.connect(bob, Default::default()).await;
        let alice_on_a = a.connect(alice, "phone".into()).await;
        assert!(presence_event(&mut bob_rx).await.online);
        let alice_on_b = b.connect(alice, "laptop".into()).await;
        a.disconnect(alice, alice_on_a.id).await;
        assert!(b.has_live_device(alice).await.unwrap(), "her laptop on B is up");
        b.disconnect(alice, alice_on_b.id).await;
        let offline = presence_event(&mut bob_rx).await;
        assert!(!offline.online);
        assert!(!a.has_live_device(alice).await.unwrap());

        // Alice comes back on A, then A dies without a word: its lease lapses.
        let _alice_again = a.connect(alice, "phone".into()).await;
        let online = presence_event(&mut bob_rx).await;
        assert!(online.online && online.generation > offline.generation);
        drop(a);
        clock.advance_ms(LEASE / 3);
        b.presence_upkeep().await.unwrap();
        assert!(b.has_live_device(alice).await.unwrap(), "within the lease");
        clock.advance_ms(LEASE);
        b.presence_upkeep().await.unwrap();
        let expired = presence_event(&mut bob_rx).await;
        assert!(!expired.online && expired.generation > online.generation);
        assert!(!b.has_live_device(alice).await.unwrap());
        assert!(b.has_live_device(bob).await.unwrap(), "B renewed its own lease");
    }
}

/// Identities: a host product's tokens create their user on first sight; a
/// session ends when its token expires.
mod identity {
    use async_trait::async_trait;
    use im_core::clock::ManualClock;
    use im_core::connection::{
        Close, CloseCode, ConnectionConfig, FrameTransport, Incoming, Transmit, TransportError, serve,
    };
    use im_core::im_protocol::{Format, codec, v1};
    use im_core::{Authenticator, Engine, Error, Identity, PasswordAuthConfig};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A host product's tokens: "host:SUBJECT:NAME", valid forever.
    struct HostTokens;

    #[async_trait]
    impl Authenticator for HostTokens {
        async fn authenticate(&self, token: &str) -> im_core::Result<Identity> {
            let mut parts = token.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("host"), Some(subject), Some(name)) => Ok(Identity {
                    issuer: "https://host.example".into(),
                    subject: subject.into(),
                    username: Some(name.into()),
                    display_name: format!("{name} (host)"),
                    avatar_url: "https://host.example/a.png".into(),
                    expires_at: None,
                }),
                _ => Err(Error::Unauthenticated("not a host token".into())),
            }
        }
    }

    #[tokio::test]
    async fn a_host_products_user_is_created_on_first_sight_and_found_after() {
        let e = Engine::builder().authenticator(Arc::new(HostTokens)).build();
        let first = e.identify("host:u-17:ann marie").await.unwrap();
        assert_eq!(first.user.username, "annmarie");
        assert_eq!(first.user.display_name, "ann marie (host)");
        assert_eq!(first.user.avatar_url, "https://host.example/a.png");
        assert_eq!(first.expires_at, None);
        let again = e.identify("host:u-17:renamed").await.unwrap();
        assert_eq!(again.user.id, first.user.id, "the same subject is the same user");
        // Another subject wishing the same name gets a user of its own.
        let other = e.identify("host:u-18:ann marie").await.unwrap();
        assert_ne!(other.user.id, first.user.id);
        assert_ne!(other.user.username, first.user.username);
        assert!(matches!(
            e.identify("garbage").await,
            Err(Error::Unauthenticated(_))
        ));
    }

    /// The server's side of an in-memory connection, for driving `serve`.
    struct Duplex {
        up: mpsc::UnboundedReceiver<Vec<u8>>,
        down: mpsc::UnboundedSender<Result<v1::ServerFrame, Option<Close>>>,
    }

    impl FrameTransport for Duplex {
        async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
            let data = self.up.recv().await?;
            Some(Ok(Incoming::Frame(data.into(), Format::Json)))
        }
        async fn feed(&mut self, transmit: Transmit) -> Result<(), TransportError> {
            if let Transmit::Frame(data, format) = transmit {
                let frame = codec::decode(&data, format, usize::MAX).unwrap();
                let _ = self.down.send(Ok(frame));
            }
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        async fn close(&mut self, close: Option<Close>) {
            let _ = self.down.send(Err(close));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_ends_with_a_typed_reason_when_its_token_expires() {
        let clock = ManualClock::new(1_800_000_000_000);
        let e = Engine::builder()
            .clock(Arc::new(clock.clone()))
            .password_auth(PasswordAuthConfig {
                token_ttl: Duration::from_secs(120),
                argon2_m_cost: 256,
                argon2_t_cost: 1,
                ..Default::default()
            })
            .build();
        let token = e.register("expiring", "password123", "").await.unwrap().token;
        // Half the lifetime has passed when the client connects.
        clock.advance_ms(60_000);
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, mut down_rx) = mpsc::unbounded_channel();
        let transport = Duplex {
            up: up_rx,
            down: down_tx,
        };
        let server = tokio::spawn(serve(
            e.clone(),
            Arc::new(ConnectionConfig::default()),
            transport,
            None,
            std::future::pending(),
        ));
        let hello = format!(r#"{{"requestId":"1","hello":{{"protocolVersion":1,"token":"{token}"}}}}"#);
        up_tx.send(hello.into_bytes()).unwrap();
        let started = tokio::time::Instant::now();
        let reply = down_rx.recv().await.unwrap().unwrap();
        assert!(matches!(
            reply.body,
            Some(v1::server_frame::Body::Response(v1::Response { result: Some(v1::response::Result::Hello(ref h)), .. })) if h.user.is_some()
        ));
        // Paused time runs ahead to the expiry: a typed notice, then the close.
        let closing = down_rx.recv().await.unwrap().unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(60),
            "exactly when the token runs out"
        );
        match closing.body {
            Some(v1::server_frame::Body::Event(v1::Event {
                kind: Some(v1::event::Kind::Closing(c)),
            })) => assert_eq!(c.code, v1::CloseReason::TokenExpired as i32),
            other => panic!("{other:?}"),
        }
        let close = down_rx.recv().await.unwrap().unwrap_err().unwrap();
        assert_eq!(close.code, CloseCode::TokenExpired);
        server.await.unwrap();
        assert_eq!(e.sessions().len(), 0, "the session ended");
    }
}

/// Live events of a conversation leave in sequence order, however many
/// senders race (the store's commit hook dispatches them).
mod sequencing {
    use im_core::im_protocol::v1;
    use im_core::sessions::{Outbound, SessionEvents};
    use im_core::{Caller, Engine, PasswordAuthConfig, SqliteStore, SqliteStoreConfig};
    use std::sync::Arc;

    /// An engine on a SQLite file (its writer thread runs the commit hooks),
    /// and the directory holding the file.
    async fn sqlite_engine() -> (Engine, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
            .await
            .unwrap();
        let engine = Engine::builder()
            .store(Arc::new(store))
            .password_auth(PasswordAuthConfig {
                argon2_m_cost: 256,
                argon2_t_cost: 1,
                ..Default::default()
            })
            .build();
        (engine, dir)
    }

    fn seqs(rx: &mut SessionEvents, conversation: u64) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv())
            .filter_map(|o| match o {
                Outbound::Event(ev) => match ev.kind() {
                    Some(v1::event::Kind::Message(m)) if m.conversation_id == conversation => Some(m.seq),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_whose_sender_went_away_before_the_ack_is_still_delivered() {
        let (e, _dir) = sqlite_engine().await;
        let a = e.register("leaver", "password123", "").await.unwrap().user.id;
        let b = e.register("stayer", "password123", "").await.unwrap().user.id;
        let group = e.create_group(Caller::user(a), "g", &[b]).await.unwrap();
        let mut rx = e.connect(b, Default::default()).await;
        let send = e.send_message(
            Caller::user(a),
            v1::SendMessage {
                target: Some(v1::send_message::Target::ConversationId(group.id)),
                client_msg_id: "gone".into(),
                content: Some(v1::Content::text("x")),
                ..Default::default()
            },
        );
        // The sender gives up before its commit (polled once, then dropped):
        // the message is stored anyway and must reach the members.
        let first_poll = futures_util::FutureExt::now_or_never(send);
        assert!(first_poll.is_none(), "the send was cut off before its ack");
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(seqs(&mut rx, group.id));
            if got.contains(&2) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(got, vec![2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_into_one_conversation_arrive_in_strictly_increasing_sequence() {
        let (e, _dir) = sqlite_engine().await;
        let mut users = Vec::new();
        for i in 0..5 {
            users.push(
                e.register(&format!("user{i}"), "password123", "")
                    .await
                    .unwrap()
                    .user
                    .id,
            );
        }
        let group = e
            .create_group(Caller::user(users[0]), "race", &users[1..])
            .await
            .unwrap();
        let mut sessions = Vec::new();
        for &u in &users {
            sessions.push(e.connect(u, Default::default()).await);
        }
        let mut tasks = Vec::new();
        for &u in &users[..4] {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let sends = (0..100).map(|n| {
                    e.send_message(
                        Caller::user(u),
                        v1::SendMessage {
                            target: Some(v1::send_message::Target::ConversationId(group.id)),
                            client_msg_id: format!("{u}-{n}"),
                            content: Some(v1::Content::text("x")),
                            ..Default::default()
                        },
                    )
                });
                for ack in futures_util::future::join_all(sends).await {
                    ack.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for rx in &mut sessions {
            assert_eq!(seqs(rx, group.id), (2..=401).collect::<Vec<_>>());
        }
    }
}

mod engine {
    use im_core::im_protocol::v1;
    use im_core::{Caller, Engine, Error, PasswordAuthConfig};

    fn engine() -> Engine {
        Engine::builder()
            .password_auth(PasswordAuthConfig {
                argon2_m_cost: 256,
                argon2_t_cost: 1,
                ..Default::default()
            })
            .build()
    }

    async fn user(e: &Engine, name: &str) -> Caller {
        Caller::user(e.register(name, "password123", "").await.unwrap().user.id)
    }

    fn text(conv: u64, body: &str, id: &str) -> v1::SendMessage {
        v1::SendMessage {
            target: Some(v1::send_message::Target::ConversationId(conv)),
            client_msg_id: id.into(),
            content: Some(v1::Content::text(body)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn register_login_logout() {
        let e = engine();
        let reg = e.register("alice", "password123", "Alice A").await.unwrap();
        assert_eq!(reg.user.display_name, "Alice A");
        assert!(matches!(
            e.register("ALICE", "password123", "").await,
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            e.register("al", "password123", "").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            e.register("bob", "short", "").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            e.register("bad/name", "password123", "").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(
            matches!(
                e.register("\u{430}lice", "password123", "").await,
                Err(Error::InvalidArgument(_))
            ),
            "no look-alike (Cyrillic) names"
        );
        assert!(matches!(
            e.register("bidi", "password123", "evil\u{202E}txt.exe").await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            e.login("alice", "wrong-password").await,
            Err(Error::Unauthenticated(_))
        ));
        assert!(matches!(
            e.login("nobody", "password123").await,
            Err(Error::Unauthenticated(_))
        ));
        let login = e.login("Alice", "password123").await.unwrap();
        assert_ne!(login.token, reg.token);
        assert_eq!(e.authenticate(&login.token).await.unwrap().id, reg.user.id);
        e.logout(&login.token).await.unwrap();
        assert!(matches!(
            e.authenticate(&login.token).await,
            Err(Error::Unauthenticated(_))
        ));
        assert!(
            e.authenticate(&reg.token).await.is_ok(),
            "other tokens stay valid"
        );
        assert!(matches!(
            e.authenticate("garbage").await,
            Err(Error::Unauthenticated(_))
        ));
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let e = Engine::builder()
            .password_auth(PasswordAuthConfig {
                token_ttl: std::time::Duration::ZERO,
                argon2_m_cost: 256,
                argon2_t_cost: 1,
                ..Default::default()
            })
            .build();
        let reg = e.register("alice", "password123", "").await.unwrap();
        assert_eq!(
            e.authenticate(&reg.token).await.unwrap_err(),
            Error::Unauthenticated("token expired".into())
        );
    }

    #[tokio::test]
    async fn direct_conversation_created_on_first_message_once() {
        let e = engine();
        let (a, b) = (user(&e, "alice").await, user(&e, "bob").await);
        let to_b = |id: &str| v1::SendMessage {
            target: Some(v1::send_message::Target::ToUserId(b.user_id)),
            client_msg_id: id.into(),
            content: Some(v1::Content::text("hi")),
            ..Default::default()
        };
        let first = e.send_message(a.clone(), to_b("1")).await.unwrap();
        let back = e
            .send_message(
                b.clone(),
                v1::SendMessage {
                    target: Some(v1::send_message::Target::ToUserId(a.user_id)),
                    client_msg_id: "x".into(),
                    content: Some(v1::Content::text("hello")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.conversation_id, back.conversation_id);
        assert_eq!((first.seq, back.seq), (1, 2));
        let retry = e.send_message(a.clone(), to_b("1")).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.message_id, retry.seq), (first.message_id, first.seq));
        let list = e.list_conversations(b.clone(), 0).await.unwrap().0;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].unread_count, 1);
        assert_eq!(list[0].last_message.as_ref().unwrap().seq, 2);
        // Pages: the most recent first, with has_more.
        for i in 0..3 {
            e.create_group(b.clone(), &format!("g{i}"), &[]).await.unwrap();
        }
        let (page, more) = e.list_conversations(b.clone(), 2).await.unwrap();
        assert_eq!((page.len(), more), (2, true));
        assert_eq!(page[0].title, "g2", "most recently active first");
        let (all, more) = e.list_conversations(b.clone(), 0).await.unwrap();
        assert_eq!((all.len(), more), (4, false));
        // Sync answers stay small: no last message.
        let s = e.sync(b.clone(), &[]).await.unwrap();
        assert_eq!(s.changed.len(), 4);
        assert!(
            s.changed
                .iter()
                .all(|c| c.last_message.is_none() && c.last_version > 0)
        );
        assert!(matches!(
            e.send_message(
                a.clone(),
                v1::SendMessage {
                    target: Some(v1::send_message::Target::ToUserId(999)),
                    ..to_b("2")
                }
            )
            .await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn bad_messages_get_typed_errors() {
        let e = engine();
        let a = user(&e, "alice").await;
        let g = e.create_group(a.clone(), "g", &[]).await.unwrap();
        let too_big = "x".repeat(e.config().max_message_bytes + 1);
        assert!(matches!(
            e.send_message(a.clone(), text(g.id, &too_big, "1")).await,
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            e.send_message(a.clone(), text(g.id, "  ", "2")).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            e.send_message(a.clone(), text(g.id, "x", &"k".repeat(65))).await,
            Err(Error::InvalidArgument(_))
        ));
        let mut sys = text(g.id, "x", "3");
        sys.content = Some(v1::Content {
            kind: Some(v1::content::Kind::System(v1::SystemNotice::default())),
        });
        assert!(matches!(
            e.send_message(a.clone(), sys).await,
            Err(Error::PermissionDenied(_))
        ));
        assert!(matches!(
            e.send_message(a.clone(), text(4242, "x", "4")).await,
            Err(Error::NotFound(_))
        ));
        let ok = e.send_message(a.clone(), text(g.id, "fine", "5")).await.unwrap();
        assert_eq!(ok.seq, 2, "the group's creation notice is seq 1");
        // The bound JSON clients apply (docs/PROTOCOL.md): string bytes + 16
        // per field + 16 for the kind; under the limit by it is never refused.
        let within_bound = "é".repeat((e.config().max_message_bytes - 32) / 2);
        e.send_message(a.clone(), text(g.id, &within_bound, "6"))
            .await
            .unwrap();
        let both = v1::GetHistory {
            conversation_id: g.id,
            before_seq: 5,
            after_seq: Some(1),
            limit: 10,
        };
        assert!(
            matches!(e.history(a.clone(), both).await, Err(Error::InvalidArgument(_))),
            "after_seq and before_seq together are refused, not half ignored"
        );
    }

    #[tokio::test]
    async fn groups_roles_and_system_messages() {
        let e = engine();
        let (a, b, c) = (
            user(&e, "alice").await,
            user(&e, "bob").await,
            user(&e, "carol").await,
        );
        let g = e.create_group(a.clone(), "team", &[b.user_id]).await.unwrap();
        assert_eq!(g.member_count, 2);
        assert_eq!(g.role, v1::Role::Owner as i32);
        assert!(matches!(
            e.add_members(b.clone(), g.id, &[c.user_id]).await,
            Err(Error::PermissionDenied(_))
        ));
        let g = e.add_members(a.clone(), g.id, &[c.user_id]).await.unwrap();
        assert_eq!(g.member_count, 3);
        assert!(matches!(
            e.rename(b.clone(), g.id, "mine").await,
            Err(Error::PermissionDenied(_))
        ));
        let g = e.rename(a.clone(), g.id, "renamed").await.unwrap();
        assert_eq!(g.title, "renamed");
        let d = user(&e, "dave").await;
        assert!(
            matches!(e.join(d.clone(), g.id).await, Err(Error::PermissionDenied(_))),
            "groups are invitation only by default"
        );
        assert_eq!(
            e.join(c.clone(), g.id).await.unwrap().member_count,
            3,
            "joining as a member changes nothing"
        );
        e.leave(b.clone(), g.id).await.unwrap();
        assert!(matches!(
            e.history(
                b.clone(),
                v1::GetHistory {
                    conversation_id: g.id,
                    ..Default::default()
                }
            )
            .await,
            Err(Error::PermissionDenied(_))
        ));
        let h = e
            .history(
                a.clone(),
                v1::GetHistory {
                    conversation_id: g.id,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let kinds: Vec<i32> = h
            .messages
            .iter()
            .map(|m| match &m.content.as_ref().unwrap().kind {
                Some(v1::content::Kind::System(s)) => s.kind,
                _ => -1,
            })
            .collect();
        use v1::SystemKind::*;
        assert_eq!(
            kinds,
            vec![Created as i32, Added as i32, Renamed as i32, Left as i32]
        );
        let full = e.get_conversation(a.clone(), g.id).await.unwrap();
        assert_eq!(
            full.members.iter().map(|m| m.user_id).collect::<Vec<_>>(),
            vec![a.user_id, c.user_id]
        );
    }

    #[tokio::test]
    async fn ephemeral_room_vanishes_with_last_member() {
        let e = engine();
        let (a, b) = (user(&e, "alice").await, user(&e, "bob").await);
        let room = e.create_room(a.clone(), "pop-up", true).await.unwrap();
        let keep = e.create_room(a.clone(), "lasting", false).await.unwrap();
        e.join(b.clone(), room.id).await.unwrap();
        e.join(b.clone(), room.id).await.unwrap();
        let rooms = e.list_rooms(10).await.unwrap();
        assert_eq!(rooms[0].member_count, 2);
        e.leave(a.clone(), room.id).await.unwrap();
        let mut b_events = e.connect(b.user_id, Default::default()).await;
        e.leave(b.clone(), room.id).await.unwrap();
        let told = std::iter::from_fn(|| b_events.try_recv()).any(|o| {
            matches!(o, im_core::sessions::Outbound::Event(ev)
                if matches!(ev.kind(), Some(v1::event::Kind::Message(m)) if m.conversation_id == room.id))
        });
        assert!(!told, "no event about a room that no longer exists");
        e.leave(a.clone(), keep.id).await.unwrap();
        let rooms = e.list_rooms(10).await.unwrap();
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].conversation.as_ref().unwrap().id, keep.id);
        assert!(matches!(
            e.join(b.clone(), room.id).await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn sync_and_changes() {
        let e = engine();
        let (a, b) = (user(&e, "alice").await, user(&e, "bob").await);
        let g = e.create_group(a.clone(), "g", &[b.user_id]).await.unwrap();
        for i in 0..5 {
            e.send_message(a.clone(), text(g.id, "m", &i.to_string()))
                .await
                .unwrap();
        }
        let s = e.sync(b.clone(), &[]).await.unwrap();
        assert_eq!(s.changed.len(), 1);
        assert_eq!(s.changed[0].last_version, 6);
        let c = e
            .changes(
                b.clone(),
                v1::GetChanges {
                    conversation_id: g.id,
                    after_version: 0,
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (c.messages.len(), c.next_version, c.has_more, c.reset),
            (4, 4, true, false)
        );
        let c = e
            .changes(
                b.clone(),
                v1::GetChanges {
                    conversation_id: g.id,
                    after_version: 4,
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((c.messages.len(), c.next_version, c.has_more), (2, 6, false));
        let cur = [
            v1::SyncCursor {
                conversation_id: g.id,
                version: 6,
                ..Default::default()
            },
            v1::SyncCursor {
                conversation_id: 777,
                version: 1,
                ..Default::default()
            },
        ];
        let s = e.sync(b.clone(), &cur).await.unwrap();
        assert!(s.changed.is_empty());
        assert_eq!(s.removed, vec![777]);
        let c = e
            .changes(
                b.clone(),
                v1::GetChanges {
                    conversation_id: g.id,
                    after_version: 99,
                    limit: 4,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(c.reset, "a cursor ahead of the log asks for a reset");
        let other = user(&e, "carol").await;
        assert!(matches!(
            e.changes(
                other,
                v1::GetChanges {
                    conversation_id: g.id,
                    after_version: 0,
                    limit: 4,
                    ..Default::default()
                }
            )
            .await,
            Err(Error::PermissionDenied(_))
        ));
    }

    /// Syncs in pages the way a client in many conversations must: sorted
    /// cursors, `per_page` of them per request (up to the last one's id, the
    /// last page open-ended), at most `limit` changed per answer, continuing
    /// on `has_more`. Checks every page's `has_more`/`nextAfterConversationId`
    /// and returns (changed ids, removed ids, requests).
    async fn sync_in_pages(
        e: &Engine,
        who: &Caller,
        cursors: &[v1::SyncCursor],
        per_page: usize,
        limit: u32,
    ) -> (Vec<u64>, Vec<u64>, usize) {
        let mut cursors = cursors.to_vec();
        cursors.sort_unstable_by_key(|c| c.conversation_id);
        let (mut changed, mut removed, mut requests) = (Vec::new(), Vec::new(), 0);
        let mut after = 0;
        loop {
            let rest: Vec<_> = cursors
                .iter()
                .filter(|c| c.conversation_id > after)
                .cloned()
                .collect();
            let until = if rest.len() > per_page {
                rest[per_page - 1].conversation_id
            } else {
                0
            };
            let page = &rest[..rest.len().min(per_page)];
            let r = e
                .sync_page(
                    who.clone(),
                    &v1::Sync {
                        cursors: page.to_vec(),
                        after_conversation_id: after,
                        until_conversation_id: until,
                        limit,
                    },
                )
                .await
                .unwrap();
            requests += 1;
            let ids: Vec<u64> = r.changed.iter().map(|c| c.id).collect();
            assert!(limit == 0 || ids.len() <= limit as usize, "the limit holds");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending ids");
            assert!(
                ids.iter()
                    .chain(&r.removed)
                    .all(|&id| id > after && (until == 0 || id <= until)),
                "only the range is answered"
            );
            if r.has_more {
                assert_eq!(ids.len(), limit as usize, "cut short only by the limit");
                assert_eq!(
                    r.next_after_conversation_id,
                    *ids.last().unwrap(),
                    "covered up to the last changed entry"
                );
                assert!(r.removed.iter().all(|&id| id <= r.next_after_conversation_id));
            } else {
                assert_eq!(r.next_after_conversation_id, 0);
            }
            changed.extend(ids);
            removed.extend(r.removed);
            after = if r.has_more {
                r.next_after_conversation_id
            } else if until != 0 {
                until
            } else {
                break;
            };
        }
        (changed, removed, requests)
    }

    #[tokio::test]
    async fn paged_sync_answers_exactly_what_one_sync_does() {
        let e = engine();
        let (a, b) = (user(&e, "alice").await, user(&e, "bob").await);
        let mut groups = Vec::new();
        for i in 0..1_200 {
            groups.push(
                e.create_group(a.clone(), &format!("g{i}"), &[b.user_id])
                    .await
                    .unwrap()
                    .id,
            );
        }
        // A new device: everything changed. Pages of 100 answers, the last
        // one full but with nothing after it, so has_more is false there.
        let full = e.sync(b.clone(), &[]).await.unwrap();
        assert_eq!(full.changed.len(), 1_200);
        let (changed, removed, requests) = sync_in_pages(&e, &b, &[], 100, 100).await;
        assert_eq!(changed, groups, "every conversation once, in id order");
        assert!(removed.is_empty());
        assert_eq!(requests, 12);

        // A device that knew them all; since then some changed, some were
        // left, some were never seen, and some listed ones never existed.
        let mut cursors: Vec<v1::SyncCursor> = full
            .changed
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 13 != 5)
            .map(|(_, c)| v1::SyncCursor {
                conversation_id: c.id,
                version: c.last_version,
                ..Default::default()
            })
            .collect();
        for (i, &g) in groups.iter().enumerate() {
            if i % 7 == 3 {
                e.send_message(a.clone(), text(g, "news", &format!("n{i}")))
                    .await
                    .unwrap();
            }
            if i % 11 == 4 {
                e.leave(b.clone(), g).await.unwrap();
            }
        }
        let last = *groups.last().unwrap();
        for ghost in [last + 1, last + 500, last + 10_000] {
            cursors.push(v1::SyncCursor {
                conversation_id: ghost,
                version: 3,
                ..Default::default()
            });
        }
        let one = e.sync(b.clone(), &cursors).await.unwrap();
        let mut one_changed: Vec<u64> = one.changed.iter().map(|c| c.id).collect();
        one_changed.sort_unstable();
        let mut one_removed = one.removed.clone();
        one_removed.sort_unstable();
        assert!(one_changed.len() > 200 && one_removed.len() > 100, "a real mix");
        for (per_page, limit) in [(100, 100), (100, 25), (1_000, 7), (100, 0)] {
            let (changed, mut removed, _) = sync_in_pages(&e, &b, &cursors, per_page, limit).await;
            assert_eq!(
                changed, one_changed,
                "pages of {per_page}, limit {limit}: changed"
            );
            removed.sort_unstable();
            assert_eq!(
                removed, one_removed,
                "pages of {per_page}, limit {limit}: removed"
            );
        }

        // Cursors outside the range, or an empty range, are refused.
        let page = |cursors: Vec<v1::SyncCursor>, after, until| v1::Sync {
            cursors,
            after_conversation_id: after,
            until_conversation_id: until,
            limit: 100,
        };
        let at = |id| v1::SyncCursor {
            conversation_id: id,
            version: 1,
            ..Default::default()
        };
        let (g0, g9) = (groups[0], groups[9]);
        for bad in [
            page(vec![at(g0)], g0, 0),
            page(vec![at(g9 + 1)], g0, g9),
            page(vec![at(g0), at(g9)], g0 + 1, g9),
            page(vec![], g9, g0),
            page(vec![], g9, g9),
        ] {
            assert!(
                matches!(e.sync_page(b.clone(), &bad).await, Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let ok = e
            .sync_page(b.clone(), &page(vec![at(g0), at(g9)], g0 - 1, g9))
            .await
            .unwrap();
        assert!(!ok.has_more);
        let too_many: Vec<_> = (1..=100_001).map(at).collect();
        assert!(matches!(
            e.sync_page(b.clone(), &page(too_many, 0, 0)).await,
            Err(Error::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn receipts_typing_and_presence_events() {
        use im_core::sessions::Outbound;
        let e = engine();
        let (a, b) = (user(&e, "alice").await, user(&e, "bob").await);
        let g = e.create_group(a.clone(), "g", &[b.user_id]).await.unwrap();
        let mut a_events = e.connect(a.user_id, Default::default()).await;
        let mut b_events = e.connect(b.user_id, Default::default()).await;
        // The next queued event, skipping presence (announced asynchronously,
        // so a user may see the other's online event in either order).
        let next = |rx: &mut im_core::sessions::SessionEvents| loop {
            match rx.try_recv() {
                Some(Outbound::Event(ev)) => match ev.kind() {
                    Some(v1::event::Kind::Presence(p)) if p.online => continue,
                    kind => return kind.cloned(),
                },
                _ => return None,
            }
        };
        // Alice sees Bob come online (announced off the connect path).
        let online = tokio::time::timeout(std::time::Duration::from_secs(5), a_events.recv())
            .await
            .unwrap();
        assert!(
            matches!(online, Some(Outbound::Event(ev)) if matches!(ev.kind(), Some(v1::event::Kind::Presence(p)) if p.user_id == b.user_id && p.online))
        );
        let p = e.presence(a.clone(), &[a.user_id, b.user_id, 999]).await.unwrap();
        assert_eq!(p.len(), 2);
        let stranger = user(&e, "stranger").await;
        assert!(
            e.presence(stranger.clone(), &[a.user_id])
                .await
                .unwrap()
                .is_empty(),
            "presence only for contacts"
        );
        assert!(p.iter().all(|p| p.online));

        e.send_message(a.clone(), text(g.id, "hi", "1")).await.unwrap();
        assert!(matches!(next(&mut b_events), Some(v1::event::Kind::Message(m)) if m.seq == 2));
        assert!(matches!(next(&mut a_events), Some(v1::event::Kind::Message(m)) if m.seq == 2));

        e.typing(b.clone(), g.id, true).await.unwrap();
        assert!(
            matches!(next(&mut a_events), Some(v1::event::Kind::Typing(t)) if t.user_id == b.user_id && t.typing)
        );
        assert!(
            next(&mut b_events).is_none(),
            "the typist does not get their own typing"
        );

        let cur = e.mark(b.clone(), g.id, Some(2), None).await.unwrap();
        assert_eq!((cur.read_seq, cur.delivered_seq), (2, 2));
        assert!(
            matches!(next(&mut a_events), Some(v1::event::Kind::Receipt(r)) if r.read_seq == 2 && r.user_id == b.user_id)
        );
        assert_eq!(
            e.list_conversations(b.clone(), 0).await.unwrap().0[0].unread_count,
            0
        );

        e.disconnect(b.user_id, b_events.id).await;
        let offline_at = match next(&mut a_events) {
            Some(v1::event::Kind::Presence(p)) => {
                assert!(!p.online);
                assert!(p.generation > 0);
                p.last_seen
            }
            other => panic!("expected presence, got {other:?}"),
        };
        assert!(offline_at > 0);
        assert!(!e.has_live_device(b.user_id).await.unwrap());
        // Offline users leave no registry entry; last seen comes from the store.
        assert_eq!(e.sessions().user_session_count(b.user_id), 0);
        let p = e.presence(a.clone(), &[b.user_id]).await.unwrap();
        assert!(!p[0].online);
        assert_eq!(p[0].last_seen, offline_at);
        assert_eq!(p[0].generation, 0, "no live information on this node");
    }

    #[tokio::test]
    async fn hostile_profiles_and_searches_are_refused() {
        use im_core::im_protocol::v1::UpdateProfile;
        let e = engine();
        let a = user(&e, "alice").await;
        let bad = |display: Option<&str>, avatar: Option<&str>| UpdateProfile {
            display_name: display.map(str::to_owned),
            avatar_url: avatar.map(str::to_owned),
        };
        for req in [
            bad(Some("\u{202E}gnp.exe"), None),
            bad(Some("line\nbreak"), None),
            bad(Some("   "), None),
            bad(None, Some("javascript:alert(1)")),
        ] {
            assert!(matches!(
                e.update_profile(a.clone(), req).await,
                Err(Error::InvalidArgument(_))
            ));
        }
        let ok = e
            .update_profile(a, bad(Some("Älice ✓"), Some("https://cdn.example/a.png")))
            .await
            .unwrap();
        assert_eq!(ok.display_name, "Älice ✓");
        assert!(matches!(
            e.search_users("", 10).await,
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            e.search_users(&"x".repeat(65), 10).await,
            Err(Error::TooLarge(_))
        ));
        assert_eq!(e.search_users("al", 10).await.unwrap().len(), 1);
    }
}
