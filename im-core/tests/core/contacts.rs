//! Blocks across two nodes sharing a store and a bus: messages, typing and
//! presence of a blocked user never reach the blocker on the other node,
//! whatever each node had cached before the block.

use im_core::clock::ManualClock;
use im_core::im_protocol::v1;
use im_core::sessions::{Outbound, SessionEvents};
use im_core::{Caller, Engine, LocalBus, LocalFanOut, MemoryPresence, PasswordAuthConfig, Store};
use std::sync::Arc;
use std::time::Duration;

fn node(name: &str, store: &Arc<dyn Store>, bus: &Arc<LocalBus>, presence: &Arc<MemoryPresence>) -> Engine {
    Engine::builder()
        .store(store.clone())
        .fanout(Arc::new(LocalFanOut::on(bus)))
        .presence(presence.clone())
        // A clock that never moves: the block cache never expires, so only
        // the invalidation through the bus can refresh it.
        .clock(Arc::new(ManualClock::new(1_800_000_000_000)))
        .node_id(name)
        .password_auth(PasswordAuthConfig {
            argon2_m_cost: 256,
            argon2_t_cost: 1,
            ..Default::default()
        })
        .build()
}

/// Every event that arrives within a moment.
async fn drain(rx: &mut SessionEvents) -> Vec<v1::event::Kind> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::iter::from_fn(|| rx.try_recv())
        .filter_map(|o| match o {
            Outbound::Event(e) => e.kind().cloned(),
            Outbound::Close(_) => None,
        })
        .collect()
}

fn text(conversation: u64, body: &str) -> v1::SendMessage {
    v1::SendMessage {
        target: Some(v1::send_message::Target::ConversationId(conversation)),
        content: Some(v1::Content::text(body)),
        ..Default::default()
    }
}

fn from(events: &[v1::event::Kind], user: u64) -> Vec<&v1::event::Kind> {
    events
        .iter()
        .filter(|k| match k {
            v1::event::Kind::Message(m) => m.sender_id == user,
            v1::event::Kind::Typing(t) => t.user_id == user,
            v1::event::Kind::Presence(p) => p.user_id == user,
            v1::event::Kind::Receipt(r) => r.user_id == user,
            _ => false,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_hold_across_nodes_on_memory() {
    blocks_across_nodes(Arc::new(im_core::MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_hold_across_nodes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = im_core::SqliteStore::open(im_core::SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
        .await
        .unwrap();
    blocks_across_nodes(Arc::new(store)).await;
}

async fn blocks_across_nodes(store: Arc<dyn Store>) {
    let presence = Arc::new(MemoryPresence::new(30_000));
    let bus = LocalBus::new();
    let (a, b) = (
        node("a", &store, &bus, &presence),
        node("b", &store, &bus, &presence),
    );
    let bob = a.register("bob", "password123", "").await.unwrap().user.id;
    let mallory = a.register("mallory", "password123", "").await.unwrap().user.id;
    let carol = a.register("carol", "password123", "").await.unwrap().user.id;
    let mut members = vec![bob, mallory];
    // 40 members: envelopes say "members", each node resolves them.
    for i in 0..37 {
        members.push(
            a.register(&format!("member{i}"), "password123", "")
                .await
                .unwrap()
                .user
                .id,
        );
    }
    let group = a
        .create_group(Caller::user(carol), "big", &members)
        .await
        .unwrap();
    let mut bob_on_b = b.connect(bob, "phone".into()).await;
    let mut carol_on_a = a.connect(carol, "phone".into()).await;
    let mallory_on_a = a.connect(mallory, "phone".into()).await;
    // Node A reads Mallory's blocks (none yet) and keeps them.
    a.typing(Caller::user(mallory), group.id, true).await.unwrap();
    let seen = drain(&mut bob_on_b).await;
    assert!(
        seen.iter()
            .any(|k| matches!(k, v1::event::Kind::Typing(t) if t.user_id == mallory)),
        "before the block: {seen:?}"
    );
    drain(&mut carol_on_a).await;

    // Bob blocks Mallory on node B.
    b.block_user(Caller::user(bob), mallory).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send_message(Caller::user(mallory), text(group.id, "hidden from Bob"))
        .await
        .unwrap();
    a.typing(Caller::user(mallory), group.id, true).await.unwrap();
    a.mark(Caller::user(mallory), group.id, Some(2), None)
        .await
        .unwrap();
    a.disconnect(mallory, mallory_on_a.id).await;
    let mallory_again = a.connect(mallory, "laptop".into()).await;
    let for_bob = drain(&mut bob_on_b).await;
    assert!(
        from(&for_bob, mallory).is_empty(),
        "Bob got {:?}",
        from(&for_bob, mallory)
    );
    let for_carol = drain(&mut carol_on_a).await;
    let carol_saw = from(&for_carol, mallory);
    assert!(carol_saw.iter().any(|k| matches!(k, v1::event::Kind::Message(_))));
    assert!(carol_saw.iter().any(|k| matches!(k, v1::event::Kind::Typing(_))));
    assert!(
        carol_saw
            .iter()
            .any(|k| matches!(k, v1::event::Kind::Presence(_)))
    );
    assert!(
        b.presence(Caller::user(bob), &[mallory])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        a.presence(Caller::user(mallory), &[bob])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.presence(Caller::user(carol), &[mallory]).await.unwrap().len(),
        1
    );
    // What Bob reads: a stub.
    let history = b
        .history(
            Caller::user(bob),
            v1::GetHistory {
                conversation_id: group.id,
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let last = history.messages.last().unwrap();
    assert!(last.deleted && last.sender_id == mallory && last.content.is_none());

    // Unblocked on B: node A hears of it and Mallory's typing reaches Bob.
    b.unblock_user(Caller::user(bob), mallory).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.typing(Caller::user(mallory), group.id, true).await.unwrap();
    a.send_message(Caller::user(mallory), text(group.id, "for everyone"))
        .await
        .unwrap();
    let for_bob = drain(&mut bob_on_b).await;
    let got = from(&for_bob, mallory);
    assert!(
        got.iter().any(|k| matches!(k, v1::event::Kind::Typing(_))),
        "{for_bob:?}"
    );
    assert!(
        got.iter()
            .any(|k| matches!(k, v1::event::Kind::Message(m) if !m.deleted))
    );
    drop(mallory_again);
}

#[tokio::test]
async fn a_blocked_user_cannot_put_the_blocker_in_a_group() {
    let engine = Engine::builder()
        .password_auth(PasswordAuthConfig {
            argon2_m_cost: 256,
            argon2_t_cost: 1,
            ..Default::default()
        })
        .build();
    let bob = engine.register("bob", "password123", "").await.unwrap().user.id;
    let mallory = engine
        .register("mallory", "password123", "")
        .await
        .unwrap()
        .user
        .id;
    let carol = engine.register("carol", "password123", "").await.unwrap().user.id;
    engine.block_user(Caller::user(bob), mallory).await.unwrap();
    let denied = v1::ErrorCode::PermissionDenied;
    let err = engine
        .create_group(Caller::user(mallory), "trap", &[bob, carol])
        .await
        .unwrap_err();
    assert_eq!(err.code(), denied);
    let group = engine
        .create_group(Caller::user(mallory), "ok", &[carol])
        .await
        .unwrap();
    let err = engine
        .add_members(Caller::user(mallory), group.id, &[bob])
        .await
        .unwrap_err();
    assert_eq!(err.code(), denied);
    let invite = v1::InviteMembers {
        conversation_id: group.id,
        user_ids: vec![bob],
    };
    let err = engine
        .invite_members(Caller::user(mallory), invite)
        .await
        .unwrap_err();
    assert_eq!(err.code(), denied);
    // Anyone else may; and the blocker may put the blocked user in a group.
    let theirs = engine
        .create_group(Caller::user(carol), "all", &[bob, mallory])
        .await
        .unwrap();
    assert_eq!(theirs.member_count, 3);
    engine
        .create_group(Caller::user(bob), "mine", &[mallory])
        .await
        .unwrap();
}
