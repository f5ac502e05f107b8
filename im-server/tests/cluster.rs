//! Three `im-server` processes on one PostgreSQL database and one broker,
//! run once with Redis and once with Kafka (each test starts its own broker
//! on a free port): chat across nodes, a node killed with SIGKILL, the
//! broker stopped under traffic, a node started late.

mod support;

use im_client_sdk::{Client, ClientConfig, Credentials, Event, Events, v1};
use im_core::store::postgres::testing::TempSchema;
use std::time::Duration;
use support::process::{Broker, BrokerKind, Process};
use support::*;

/// Generates the cluster tests for one broker.
macro_rules! cluster_tests {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn three_nodes_chat_one_to_one_and_in_a_group_of_30_exactly_once_in_order() {
            crate::three_nodes_chat($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_node_killed_while_its_clients_send_loses_and_duplicates_nothing() {
            crate::node_killed_while_sending($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_broker_stopped_under_traffic_loses_nothing_and_live_delivery_resumes() {
            crate::broker_stopped_under_traffic($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_node_started_late_leaves_the_past_to_sync_and_delivers_the_rest_live() {
            crate::node_started_late($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_call_rings_on_two_nodes_and_is_answered_and_signalled_from_a_third() {
            crate::call_across_nodes($kind).await;
        }
    };
}

mod redis {
    cluster_tests!(super::BrokerKind::Redis);
}

mod kafka {
    cluster_tests!(super::BrokerKind::Kafka);
}

/// A cluster: the broker, the database, and the nodes.
struct Cluster {
    broker: Broker,
    schema: TempSchema,
    nodes: Vec<Process>,
}

impl Cluster {
    fn start(kind: BrokerKind, nodes: usize) -> Self {
        let broker = Broker::start(kind);
        let schema = TempSchema::create();
        let mut cluster = Self {
            broker,
            schema,
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            cluster.add_node();
        }
        cluster
    }

    fn add_node(&mut self) -> String {
        let node = Process::spawn_with(&self.schema.url(), &self.broker.settings());
        let url = node.url();
        self.nodes.push(node);
        url
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Process::url).collect()
    }
}

/// A client that knows these server URLs (the first one first).
async fn connect(urls: &[String], credentials: Credentials) -> (Client, Events) {
    let mut config: ClientConfig = client_config(&urls[0]);
    config.urls = urls.to_vec();
    Client::connect(config, credentials)
        .await
        .expect("client connects")
}

async fn register(urls: &[String], name: &str) -> (Client, Events) {
    let credentials = Credentials::Register {
        username: name.into(),
        password: PASSWORD.into(),
        display_name: String::new(),
    };
    connect(urls, credentials).await
}

/// Collects the sequence numbers of a conversation's messages until `last`
/// arrived (30 s at most), duplicates included.
async fn seqs_until(events: &mut Events, conversation: u64, last: u64) -> Vec<u64> {
    let mut got = Vec::new();
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while !got.contains(&last) {
            match events.next().await {
                Some(Event::Message(m)) if m.conversation_id == conversation => got.push(m.seq),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert!(arrived.is_ok(), "message {last} did not arrive; got {got:?}");
    got
}

/// `name` on `device`, connected to `url` only.
async fn device(url: &str, name: &str, device: &str, register: bool) -> (Client, Events) {
    let mut config: ClientConfig = client_config(url);
    config.device_id = device.into();
    let credentials = if register {
        Credentials::Register {
            username: name.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        }
    } else {
        Credentials::Login {
            username: name.into(),
            password: PASSWORD.into(),
        }
    };
    Client::connect(config, credentials)
        .await
        .expect("client connects")
}

/// Alice on node 1 calls Bob, whose phone is on node 2 and laptop on node
/// 3: both ring; the laptop answers (node 1 keeps the call, node 3 relays);
/// the phone stops ringing; SDP crosses both ways; the history has the call.
async fn call_across_nodes(kind: BrokerKind) {
    use v1::call_event::Kind as Heard;
    use v1::client_frame::Body;
    use v1::response::Result as Reply;
    let cluster = Cluster::start(kind, 3);
    let urls = cluster.urls();
    let (alice, mut alice_events) = device(&urls[0], "alice", "alice-1", true).await;
    let (phone, mut phone_events) = device(&urls[1], "bob", "bob-phone", true).await;
    // The laptop reaches node 3 through a proxy that can cut its connection.
    let to_node_3 = Proxy::start(([127, 0, 0, 1], cluster.nodes[2].port).into()).await;
    let (laptop, mut laptop_events) = device(&to_node_3.url(), "bob", "bob-laptop", false).await;
    let bob = phone.user().id;
    let conversation = alice.send_direct(bob, "call me").await.unwrap().conversation_id;
    let invite = Body::CallInvite(v1::CallInvite {
        conversation_id: conversation,
        invitee_ids: vec![bob],
        media: Some(v1::CallMedia {
            audio: true,
            ..Default::default()
        }),
    });
    let Reply::Call(call) = alice.request(invite).await.unwrap() else {
        panic!("a call");
    };
    let id = call.call_id;
    call_event(&mut phone_events, |k| matches!(k, Heard::Incoming(_))).await;
    call_event(&mut laptop_events, |k| matches!(k, Heard::Incoming(_))).await;
    let update = |kind: v1::CallUpdateKind| {
        Body::CallUpdate(v1::CallUpdate {
            call_id: id,
            kind: kind as i32,
        })
    };
    phone.request(update(v1::CallUpdateKind::Ringing)).await.unwrap();
    call_event(
        &mut alice_events,
        |k| matches!(k, Heard::Ringing(p) if p.device_id == "bob-phone"),
    )
    .await;
    let taken = laptop.call_accept(id).await.unwrap();
    assert_eq!(taken.participants.len(), 2);
    call_event(&mut phone_events, |k| matches!(k, Heard::AnsweredElsewhere(_))).await;
    call_event(
        &mut alice_events,
        |k| matches!(k, Heard::Joined(p) if p.device_id == "bob-laptop"),
    )
    .await;
    let signal = |to: u64, kind: v1::SignalKind, payload: &str| {
        Body::CallSignal(v1::CallSignal {
            call_id: id,
            to_user_id: to,
            kind: kind as i32,
            payload: payload.into(),
        })
    };
    laptop
        .request(signal(
            alice.user().id,
            v1::SignalKind::Offer,
            "offer from node 3",
        ))
        .await
        .unwrap();
    call_event(
        &mut alice_events,
        |k| matches!(k, Heard::Signal(s) if s.payload == "offer from node 3"),
    )
    .await;
    alice
        .request(signal(bob, v1::SignalKind::Answer, "answer from node 1"))
        .await
        .unwrap();
    call_event(
        &mut laptop_events,
        |k| matches!(k, Heard::Signal(s) if s.payload == "answer from node 1"),
    )
    .await;
    // A stranger's request for the call is refused by the node that keeps it.
    let (mallory, _mallory_events) = device(&urls[1], "mallory", "m", true).await;
    let refused = mallory
        .request(signal(bob, v1::SignalKind::Offer, "x"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied), "{refused}");

    // The laptop's connection drops: node 3 tells node 1, Alice hears it;
    // the SDK reconnects and accepts the call again, which node 1 takes as
    // the laptop being back.
    to_node_3.cut();
    call_event(
        &mut alice_events,
        |k| matches!(k, Heard::Reconnecting(p) if p.device_id == "bob-laptop"),
    )
    .await;
    call_event(
        &mut alice_events,
        |k| matches!(k, Heard::Reconnected(p) if p.device_id == "bob-laptop"),
    )
    .await;

    laptop.request(update(v1::CallUpdateKind::HangUp)).await.unwrap();
    call_event(&mut alice_events, |k| matches!(k, Heard::Ended(_))).await;
    let records = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let page = phone.history(conversation, 0, 20).await.unwrap();
            let outcomes: Vec<i32> = page
                .messages
                .iter()
                .filter_map(|m| match m.content.as_ref()?.kind.as_ref()? {
                    v1::content::Kind::Call(s) => Some(s.outcome),
                    _ => None,
                })
                .collect();
            if outcomes.len() == 2 {
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the call in the history");
    let mut records = records;
    records.sort_unstable();
    assert_eq!(
        records,
        [v1::CallOutcome::Started as i32, v1::CallOutcome::Ended as i32]
    );
    drop(cluster);
}

async fn three_nodes_chat(kind: BrokerKind) {
    let cluster = Cluster::start(kind, 3);
    let urls = cluster.urls();
    let mut members = Vec::new();
    for i in 0..30 {
        members.push(register(&urls[i % 3..i % 3 + 1], &format!("member{i}")).await);
    }
    let ids: Vec<u64> = members.iter().map(|(c, _)| c.user().id).collect();
    let group = members[0].0.create_group("thirty", &ids[1..]).await.unwrap();
    // Three senders, one per node, ten messages each, at once.
    let mut sends = Vec::new();
    for (sender, (client, _)) in members.iter().take(3).enumerate() {
        for n in 0..10 {
            sends.push(client.send_text(group.id, &format!("{sender}-{n}")));
        }
    }
    for ack in futures_util::future::join_all(sends).await {
        ack.unwrap();
    }
    for (_, events) in &mut members {
        let got = messages(events, group.id, 31).await;
        assert_eq!(
            got.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=31).collect::<Vec<_>>(),
            "every member: every message once, in order"
        );
        assert_no_more_messages(events, group.id).await;
    }
    // A 1:1 chat between clients of node two and node three: messages,
    // typing, receipts and presence cross the broker.
    let (mut two, mut three) = (members.remove(1), members.remove(1));
    let dm = two
        .0
        .send_direct(three.0.user().id, "node 2 to node 3")
        .await
        .unwrap();
    let got = messages(&mut three.1, dm.conversation_id, 1).await;
    assert_eq!(text_of(&got[0]), "node 2 to node 3");
    three.0.typing(dm.conversation_id, true).await.unwrap();
    wait_for(&mut two.1, |e| matches!(e, Event::Typing(t) if t.typing)).await;
    three.0.mark_read(dm.conversation_id, 1).await.unwrap();
    wait_for(&mut two.1, |e| matches!(e, Event::Receipt(r) if r.read_seq == 1)).await;
    let seen = two.0.presence(&[three.0.user().id]).await.unwrap();
    assert!(seen[0].online, "online on node three, seen from node two");
    let three_id = three.0.user().id;
    three.0.close();
    wait_for(
        &mut two.1,
        |e| matches!(e, Event::Presence(p) if p.user_id == three_id && !p.online),
    )
    .await;
    drop(cluster);
}

/// The node a sender is on is killed with SIGKILL while the sender's outbox
/// sends 100 messages; the sender moves to another node.
async fn node_killed_while_sending(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, 3);
    let urls = cluster.urls();
    // The sender knows every node; a user only knows node one; the
    // receiver is on node two.
    let (sender, _) = register(&urls, "kill-sender").await;
    let (stranded, _) = register(&urls[..1], "kill-stranded").await;
    let (receiver, mut events) = register(&urls[1..2], "kill-receiver").await;
    let conv = sender
        .send_direct(receiver.user().id, "m0")
        .await
        .unwrap()
        .conversation_id;
    receiver.send_direct(stranded.user().id, "hello").await.unwrap();
    let before = receiver.presence(&[stranded.user().id]).await.unwrap();
    assert!(before[0].online, "online on node one, seen from node two");
    let sends: Vec<_> = (1..=100)
        .map(|i| {
            sender.send_with_id(
                v1::send_message::Target::ConversationId(conv),
                v1::Content::text(format!("m{i}")),
                format!("kill-{i}"),
            )
        })
        .collect();
    let mut first = cluster.nodes.remove(0);
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        first.kill(); // SIGKILL
    });
    for ack in sends {
        tokio::time::timeout(Duration::from_secs(30), ack)
            .await
            .expect("the outbox retries on another node")
            .unwrap();
    }
    killer.await.unwrap();
    let got = seqs_until(&mut events, conv, 101).await;
    assert_eq!(got, (1..=101).collect::<Vec<u64>>(), "exactly once, in order");
    let history = receiver.history_after(conv, 0, 200).await.unwrap();
    let texts: Vec<String> = history.messages.iter().map(text_of).collect();
    let expected: Vec<String> = (0..=100).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "stored once each, nothing lost");
    // The user stranded on the dead node goes offline once its lease lapses.
    let mut offline = false;
    for _ in 0..100 {
        let p = receiver.presence(&[stranded.user().id]).await.unwrap();
        if p.first().is_some_and(|p| !p.online) {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(offline, "not online past the dead node's lease");
}

/// The broker is killed while a group chats across the nodes and started
/// again (empty) a while later: sends are stored and acked throughout,
/// `/readyz` shows the outage, the clients are told to sync when it ends,
/// and every member ends with every message exactly once, in order.
async fn broker_stopped_under_traffic(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, 3);
    let urls = cluster.urls();
    let mut members = Vec::new();
    for i in 0..6 {
        members.push(register(&urls[i % 3..i % 3 + 1], &format!("outage{i}")).await);
    }
    let ids: Vec<u64> = members.iter().map(|(c, _)| c.user().id).collect();
    let group = members[0].0.create_group("outage", &ids[1..]).await.unwrap();
    send_round(&members[..3], group.id, 0).await;
    cluster.broker.stop();
    for node in &mut cluster.nodes {
        node.wait_ready(false).await;
    }
    send_round(&members[..3], group.id, 1).await;
    cluster.broker.start_again();
    for node in &mut cluster.nodes {
        node.wait_ready(true).await;
    }
    // Nothing more is sent: the nodes tell their clients to sync, and every
    // member catches up on what crossed no broker (1 creation + 2 rounds).
    for (client, events) in &mut members {
        let got = seqs_until(events, group.id, 61).await;
        assert_eq!(
            got,
            (1..=61).collect::<Vec<u64>>(),
            "{}: every message exactly once, in order",
            client.user().id
        );
    }
    send_round(&members[..3], group.id, 2).await;
    for (_, events) in &mut members {
        assert_eq!(
            seqs_until(events, group.id, 91).await,
            (62..=91).collect::<Vec<u64>>()
        );
    }
    // Live delivery between nodes is back: a new message arrives without a
    // gap to fill.
    let fills: Vec<u64> = members.iter().map(|(c, _)| c.gap_fills()).collect();
    members[1].0.send_text(group.id, "after").await.unwrap();
    for (i, (client, events)) in members.iter_mut().enumerate() {
        assert_eq!(seqs_until(events, group.id, 92).await, vec![92]);
        assert_eq!(client.gap_fills(), fills[i], "live, not filled");
    }
}

/// Ten messages from each of these senders in turn, each acked.
async fn send_round(senders: &[(Client, Events)], group: u64, round: usize) {
    for n in 0..10 {
        for (i, (sender, _)) in senders.iter().enumerate() {
            sender
                .send_text(group, &format!("{round}-{i}-{n}"))
                .await
                .expect("stored and acked whatever the broker does");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A node started after traffic began: what came before reaches its
/// clients by sync, what comes after live, each message once.
async fn node_started_late(kind: BrokerKind) {
    let mut cluster = Cluster::start(kind, 1);
    let first = cluster.urls();
    let (ann, _) = register(&first, "early_ann").await;
    let (bob, _) = register(&first, "late_bob").await;
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
    // Node two starts now; Bob connects there.
    let second = cluster.add_node();
    let (bob, mut bob_events) = connect(
        &[second],
        Credentials::Login {
            username: "late_bob".into(),
            password: PASSWORD.into(),
        },
    )
    .await;
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
}
