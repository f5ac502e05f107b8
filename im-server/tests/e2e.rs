//! End-to-end tests: a real server on 127.0.0.1:0 driven by the Rust SDK and
//! by raw WebSocket and HTTP clients, on every store backend: a real SQLite
//! file, and a fresh schema in a real PostgreSQL database; and the transport
//! cases over an in-memory duplex, gRPC, and WebSocket and gRPC with TLS.

mod support;

mod sqlite {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocket;
    include!("support/cases.rs");
    mod settings {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, v1};
        include!("support/settings_cases.rs");
    }
    mod changes {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/changes_cases.rs");
    }
    mod threads {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, v1};
        include!("support/threads_cases.rs");
    }
    mod group_admin {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/admin_cases.rs");
    }
    mod contacts {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/contacts_cases.rs");
    }
    mod transport {
        use super::{BACKEND, TRANSPORT};
        include!("support/transport_cases.rs");
    }
}

mod postgres {
    const BACKEND: crate::support::Backend = crate::support::Backend::Postgres;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocket;
    include!("support/cases.rs");
    mod settings {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, v1};
        include!("support/settings_cases.rs");
    }
    mod changes {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/changes_cases.rs");
    }
    mod threads {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, v1};
        include!("support/threads_cases.rs");
    }
    mod group_admin {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/admin_cases.rs");
    }
    mod contacts {
        use super::BACKEND;
        use crate::support::*;
        use im_client_sdk::{Event, Events, v1};
        include!("support/contacts_cases.rs");
    }
    mod transport {
        use super::{BACKEND, TRANSPORT};
        include!("support/transport_cases.rs");
    }
}

/// The same cases over gRPC's `Chat.Connect` stream.
mod grpc {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::Grpc;
    include!("support/transport_cases.rs");
    include!("support/grpc_cases.rs");
}

/// The same cases over a second transport: an in-memory duplex driving the
/// engine's session driver, with no socket.
mod memory_transport {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::Memory;
    include!("support/transport_cases.rs");
}

/// The transport cases over WebSocket with TLS (`wss://` to the TLS
/// listener, a certificate of a test CA that the SDK trusts).
mod websocket_tls {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocketTls;
    include!("support/transport_cases.rs");
}

/// The transport cases over gRPC with TLS (`grpcs://` to `grpc.tls_listen`).
mod grpc_tls {
    const BACKEND: crate::support::Backend = crate::support::Backend::Sqlite;
    const TRANSPORT: crate::support::Transport = crate::support::Transport::GrpcTls;
    include!("support/transport_cases.rs");
}

#[path = "e2e/recall_trace.rs"]
mod recall_trace;
#[path = "e2e/tls.rs"]
mod tls;

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
                ..Default::default()
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

/// A node that could not publish to Redis for a while (its own link cut,
/// the other node's fine) tells the other node, once it publishes again,
/// that envelopes were dropped: the other node's handlers hear `resumed`
/// (the engine then asks its clients to sync).
mod redis_publishing_outage {
    use crate::support::Proxy;
    use im_core::im_protocol::v1;
    use im_core::{
        Audience, Envelope, FanOut, FanOutHandler, Payload, RedisFanOut, RedisFanOutConfig, SharedEvent,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Default)]
    struct Heard {
        envelopes: AtomicUsize,
        resumed: AtomicUsize,
    }

    impl FanOutHandler for Heard {
        fn deliver(&self, _: Envelope) {
            self.envelopes.fetch_add(1, Ordering::SeqCst);
        }
        fn resumed(&self) {
            self.resumed.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn until(what: impl Fn() -> bool) -> bool {
        for _ in 0..200 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_other_nodes_hear_resumed_after_a_node_dropped_envelopes() {
        let redis = std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let upstream = redis.trim_start_matches("redis://").parse().expect("host:port");
        let proxy = Proxy::start(upstream).await;
        let channel = format!("im-e2e-publishing-outage-{}", std::process::id());
        let config = |url: String| {
            let mut c = RedisFanOutConfig::new(url);
            c.channel = channel.clone();
            c
        };
        let cut_off = RedisFanOut::connect(config(format!("redis://{}", proxy.addr)))
            .await
            .expect("Redis is required for this test");
        let other = RedisFanOut::connect(config(redis.clone())).await.unwrap();
        let heard = Arc::new(Heard::default());
        other.subscribe(heard.clone());
        let envelope = Envelope {
            conversation_id: 1,
            origin_node: "cut-off".into(),
            audience: Audience::members(),
            member_version: 0,
            payload: Payload::Event(SharedEvent::new(v1::event::Kind::Typing(v1::TypingEvent {
                conversation_id: 1,
                user_id: 1,
                typing: true,
            }))),
        };
        cut_off.publish(&envelope);
        assert!(
            until(|| heard.envelopes.load(Ordering::SeqCst) == 1).await,
            "live first"
        );
        proxy.refuse(true);
        proxy.cut();
        for _ in 0..5 {
            cut_off.publish(&envelope);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            heard.resumed.load(Ordering::SeqCst),
            0,
            "its own link never broke"
        );
        proxy.refuse(false);
        let resumed = until(|| {
            cut_off.publish(&envelope);
            heard.resumed.load(Ordering::SeqCst) > 0
        })
        .await;
        assert!(resumed, "told that the cut-off node dropped envelopes");
        let _ = (cut_off.close().await, other.close().await);
    }
}
