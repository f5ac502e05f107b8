//! End-to-end tests: a real server on 127.0.0.1:0 driven by the Rust SDK and
//! by raw WebSocket and HTTP clients, on every store backend: a real SQLite
//! file, and a fresh schema in a real PostgreSQL database.

mod support;

mod sqlite {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocket;
    include!("support/cases.rs");
    mod transport {
        use super::{BACKEND, TRANSPORT};
        include!("support/transport_cases.rs");
    }
}

mod postgres {
    const BACKEND: crate::support::Backend = crate::support::Backend::Postgres;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocket;
    include!("support/cases.rs");
    mod transport {
        use super::{BACKEND, TRANSPORT};
        include!("support/transport_cases.rs");
    }
}

/// The same cases over a second transport: an in-memory duplex driving the
/// engine's session driver, with no socket.
mod memory_transport {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::Memory;
    include!("support/transport_cases.rs");
}

mod postgres_outage {
    use crate::support::*;
    use im_client_sdk::v1;
    use im_core::store::postgres::testing::{TempSchema, base_url};
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    async fn send(
        client: &im_client_sdk::Client,
        conv: u64,
        id: &str,
    ) -> Result<v1::SendAck, im_client_sdk::Error> {
        match client
            .request(v1::client_frame::Body::Send(v1::SendMessage {
                target: Some(v1::send_message::Target::ConversationId(conv)),
                client_msg_id: id.into(),
                content: Some(v1::Content::text(id)),
            }))
            .await?
        {
            v1::response::Result::Ack(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    /// The server's connections to PostgreSQL are cut and refused for a
    /// while (through a proxy, so the shared database keeps running).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_outage_gives_unavailable_never_a_wrong_ack_and_recovers() {
        let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let proxy = Proxy::start(pg).await;
        let schema = TempSchema::create();
        let via_proxy = base_url().replace("127.0.0.1:5432", &proxy.addr.to_string());
        assert_ne!(
            via_proxy,
            base_url(),
            "the test database URL must point at 127.0.0.1:5432"
        );
        let server = TestServer::start_with(Backend::Sqlite, |c| {
            c.store.url = schema.url_via(&via_proxy);
            c.store.connect_timeout_secs = 1;
        })
        .await;
        let (a, _) = server.register("steadfast").await;
        let group = a.create_group("outage", &[]).await.unwrap();

        let mut acked = BTreeSet::new();
        let mut unavailable = 0;
        for i in 0..20 {
            let id = format!("before-{i}");
            send(&a, group.id, &id).await.unwrap();
            acked.insert(id);
        }
        proxy.refuse(true);
        proxy.cut();
        for i in 0..20 {
            let id = format!("during-{i}");
            match send(&a, group.id, &id).await {
                Ok(_) => {
                    acked.insert(id);
                }
                Err(e) => {
                    assert_eq!(e.code(), Some(v1::ErrorCode::Unavailable), "{e}");
                    unavailable += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(unavailable > 0, "sends during the outage must be refused");
        proxy.refuse(false);
        // The server recovers by itself.
        let started = Instant::now();
        let mut i = 0;
        let mut recovered = 0;
        while recovered < 20 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not recover"
            );
            let id = format!("after-{i}");
            i += 1;
            match send(&a, group.id, &id).await {
                Ok(_) => {
                    acked.insert(id);
                    recovered += 1;
                }
                Err(e) => {
                    assert_eq!(e.code(), Some(v1::ErrorCode::Unavailable), "{e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        // Every acked message is stored, once; seqs have no gap.
        let mut stored = Vec::new();
        let mut after = 0;
        loop {
            let page = a.history_after(group.id, after, 200).await.unwrap();
            stored.extend(page.messages.iter().map(|m| (m.seq, m.client_msg_id.clone())));
            after = stored.last().map_or(0, |s| s.0);
            if !page.has_more {
                break;
            }
        }
        let seqs: Vec<u64> = stored.iter().map(|s| s.0).collect();
        assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
        let ids: BTreeSet<String> = stored
            .iter()
            .map(|s| s.1.clone())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(
            acked.is_subset(&ids),
            "acked but missing: {:?}",
            acked.difference(&ids).collect::<Vec<_>>()
        );
        server.stop().await;
    }
}

/// Two server processes on one PostgreSQL database, joined by Redis pub/sub:
/// a message sent on one reaches a client of the other live, in order.
mod redis_cluster {
    use crate::support::*;
    use im_client_sdk::{Client, Credentials, Event};
    use im_core::store::postgres::testing::TempSchema;
    use im_server::{Server, ServerConfig};
    use std::time::Duration;

    async fn node(
        store_url: &str,
        channel: &str,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let (mut config, _data): (ServerConfig, _) = test_config(Backend::Sqlite);
        config.store.url = store_url.to_owned();
        config.fanout.backend = "redis".into();
        config.fanout.url =
            std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        config.fanout.channel = channel.to_owned();
        let server = Server::bind(config)
            .await
            .expect("Redis and PostgreSQL are required for this test");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_sent_on_one_node_reaches_a_client_of_the_other_live() {
        let schema = TempSchema::create();
        let channel = format!("im-e2e-{}", std::process::id());
        let (a, stop_a) = node(&schema.url(), &channel).await;
        let (b, stop_b) = node(&schema.url(), &channel).await;
        let register = |addr: std::net::SocketAddr, name: &str| {
            let credentials = Credentials::Register {
                username: name.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            };
            Client::connect(client_config(&format!("ws://{addr}/v1/ws")), credentials)
        };
        let (ann, mut ann_events) = register(a, "ann_on_a").await.unwrap();
        let (bob, mut bob_events) = register(b, "bob_on_b").await.unwrap();
        let first = ann.send_direct(bob.user().id, "m0").await.unwrap();
        let conv = first.conversation_id;
        for i in 1..20 {
            ann.send_text(conv, &format!("m{i}")).await.unwrap();
        }
        let got = messages(&mut bob_events, conv, 20).await;
        assert_eq!(
            got.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        assert_eq!(bob.gap_fills(), 0, "live over Redis, in order");
        // Typing, receipts and group changes cross too.
        bob.typing(conv, true).await.unwrap();
        wait_for(&mut ann_events, |e| matches!(e, Event::Typing(t) if t.typing)).await;
        bob.mark_read(conv, 20).await.unwrap();
        wait_for(
            &mut ann_events,
            |e| matches!(e, Event::Receipt(r) if r.read_seq == 20),
        )
        .await;
        let group = ann.create_group("across", &[bob.user().id]).await.unwrap();
        let created = messages(&mut bob_events, group.id, 1).await;
        assert_eq!(created[0].seq, 1, "the group's creation reaches node B");
        // Presence is shared: Ann on A is online for Bob on B, then offline
        // when her only device leaves.
        let p = bob.presence(&[ann.user().id]).await.unwrap();
        assert!(p[0].online, "counted on node A, seen from node B");
        ann.close();
        let offline = wait_for(&mut bob_events, |e| matches!(e, Event::Presence(p) if !p.online)).await;
        assert!(matches!(offline, Event::Presence(p) if p.user_id == ann.user().id));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(e) = bob_events.next().await {
                assert!(!matches!(e, Event::Message(_)), "no duplicate");
            }
        })
        .await;
        let _ = (stop_a.send(()), stop_b.send(()));
    }

    /// Redis goes away under a running node: sends are still stored and
    /// acked, `/readyz` says the fan-out is unavailable, and it recovers by
    /// itself when Redis is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_outage_shows_in_readyz_sends_go_on_and_it_heals() {
        let redis_addr: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
        let proxy = Proxy::start(redis_addr).await;
        let schema = TempSchema::create();
        let (mut config, _data): (ServerConfig, _) = test_config(Backend::Sqlite);
        config.store.url = schema.url();
        config.fanout.backend = "redis".into();
        config.fanout.url = format!("redis://{}", proxy.addr);
        config.fanout.channel = format!("im-e2e-outage-{}", std::process::id());
        let server = Server::bind(config)
            .await
            .expect("Redis and PostgreSQL are required for this test");
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let ready = || async move { http(addr, "GET", "/readyz", "").await };
        assert_eq!(ready().await.0, 200);
        let url = format!("ws://{addr}/v1/ws");
        let register = |name: &str| {
            Client::connect(
                client_config(&url),
                Credentials::Register {
                    username: name.into(),
                    password: PASSWORD.into(),
                    display_name: String::new(),
                },
            )
        };
        let (ann, _) = register("ann_outage").await.unwrap();
        let (bob, mut bob_events) = register("bob_outage").await.unwrap();

        proxy.refuse(true);
        proxy.cut();
        let mut seen = (0, String::new());
        for _ in 0..100 {
            seen = ready().await;
            if seen.0 == 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen, (503, "fan-out unavailable\n".to_owned()));
        // The store is the truth: a send during the outage is stored and acked,
        // and a client of this node still gets it live (no broker needed here).
        let ack = ann.send_direct(bob.user().id, "during the outage").await.unwrap();
        let got = messages(&mut bob_events, ack.conversation_id, 1).await;
        assert_eq!(text_of(&got[0]), "during the outage");

        proxy.refuse(false);
        for _ in 0..200 {
            seen = ready().await;
            if seen.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen.0, 200, "the subscription came back by itself");
        let _ = stop.send(());
        running.await.unwrap().unwrap();
    }

    /// Three server processes on one database and one Redis: 30 members of a
    /// group spread over the nodes, every member gets every message exactly
    /// once and in order, and 1:1 chats across nodes too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_a_group_of_30_spread_over_them_gets_every_message_once_in_order() {
        let schema = TempSchema::create();
        let channel = format!("im-e2e-three-{}", std::process::id());
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(node(&schema.url(), &channel).await);
        }
        let mut members = Vec::new();
        for i in 0..30 {
            let addr = nodes[i % 3].0;
            let credentials = Credentials::Register {
                username: format!("member{i}"),
                password: PASSWORD.into(),
                display_name: String::new(),
            };
            members.push(
                Client::connect(client_config(&format!("ws://{addr}/v1/ws")), credentials)
                    .await
                    .unwrap(),
            );
        }
        let ids: Vec<u64> = members.iter().map(|(c, _)| c.user().id).collect();
        let group = members[0].0.create_group("thirty", &ids[1..]).await.unwrap();
        // Three senders, one per node, 10 messages each, at once.
        let mut sends = Vec::new();
        for (sender, (client, _)) in members.iter().take(3).enumerate() {
            for n in 0..10 {
                sends.push(client.send_text(group.id, &format!("{sender}-{n}")));
            }
        }
        for ack in futures_util::future::join_all(sends).await {
            ack.unwrap();
        }
        for (client, events) in &mut members {
            let got = messages(events, group.id, 31).await;
            assert_eq!(
                got.iter().map(|m| m.seq).collect::<Vec<_>>(),
                (1..=31).collect::<Vec<_>>()
            );
            assert_no_more_messages(events, group.id).await;
            let _ = client;
        }
        // A 1:1 chat between clients of two other nodes.
        let (one, two) = (&members[1].0, &members[2].0);
        let dm = one.send_direct(two.user().id, "node 2 to node 3").await.unwrap();
        let got = messages(&mut members[2].1, dm.conversation_id, 1).await;
        assert_eq!(text_of(&got[0]), "node 2 to node 3");
        for (_, stop) in nodes {
            let _ = stop.send(());
        }
    }

    /// A node started after traffic began: what came before reaches its
    /// clients by sync, what comes after live, each message once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_started_late_leaves_the_past_to_sync_and_delivers_the_rest_live() {
        let schema = TempSchema::create();
        let channel = format!("im-e2e-late-{}", std::process::id());
        let (a, stop_a) = node(&schema.url(), &channel).await;
        let connect = |addr: std::net::SocketAddr, credentials: Credentials| {
            Client::connect(client_config(&format!("ws://{addr}/v1/ws")), credentials)
        };
        let (ann, _) = connect(
            a,
            Credentials::Register {
                username: "early_ann".into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            },
        )
        .await
        .unwrap();
        let (bob, _) = connect(
            a,
            Credentials::Register {
                username: "late_bob".into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            },
        )
        .await
        .unwrap();
        let bob_id = bob.user().id;
        bob.close();
        let mut conv = 0;
        for i in 0..10 {
            conv = ann
                .send_direct(bob_id, &format!("before {i}"))
                .await
                .unwrap()
                .conversation_id;
        }
        // Node B starts now; Bob connects there.
        let (b, stop_b) = node(&schema.url(), &channel).await;
        let (bob, mut bob_events) = connect(
            b,
            Credentials::Login {
                username: "late_bob".into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap();
        let past = messages(&mut bob_events, conv, 10).await;
        assert_eq!(
            past.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        wait_for(&mut bob_events, |e| matches!(e, Event::Synced)).await;
        for i in 0..10 {
            ann.send_text(conv, &format!("after {i}")).await.unwrap();
        }
        let live = messages(&mut bob_events, conv, 10).await;
        assert_eq!(
            live.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (11..=20).collect::<Vec<_>>()
        );
        assert_eq!(bob.gap_fills(), 0, "the new events came live");
        assert_no_more_messages(&mut bob_events, conv).await;
        let _ = (stop_a.send(()), stop_b.send(()));
    }
}
