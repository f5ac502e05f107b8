// The end-to-end cases every transport must pass, included once per
// (store backend, transport) by `tests/e2e.rs` (each inclusion defines
// `BACKEND` and `TRANSPORT`).

use crate::support::*;
use im_client_sdk::{Credentials, Event, v1};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_chat_both_ways_and_a_second_device_sees_both_sides() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (alice, mut alice_ev) = server.register("alice").await;
    let (bob, mut bob_ev) = server.register("bob").await;
    let (alice2, mut alice2_ev) = server.login("alice").await;
    assert_eq!(alice2.user().id, alice.user().id);

    let ack = alice.send_direct(bob.user().id, "hi bob").await.unwrap();
    assert_eq!(ack.seq, 1);
    let conv = ack.conversation_id;
    let got = messages(&mut bob_ev, conv, 1).await;
    assert_eq!(text_of(&got[0]), "hi bob");
    bob.send_text(conv, "hi alice").await.unwrap();

    // Each side sees both messages, once, in order; bob already saw the first.
    for events in [&mut alice_ev, &mut alice2_ev] {
        let got = messages(events, conv, 2).await;
        assert_eq!(
            got.iter().map(text_of).collect::<Vec<_>>(),
            vec!["hi bob", "hi alice"]
        );
    }
    let got = messages(&mut bob_ev, conv, 1).await;
    assert_eq!(text_of(&got[0]), "hi alice");
    // Every device ends with both messages exactly once, in order.
    let mut all = Vec::new();
    for client in [&alice, &alice2, &bob] {
        let h = client.history(conv, 0, 50).await.unwrap();
        all.push(h.messages.iter().map(text_of).collect::<Vec<_>>());
    }
    assert!(all.iter().all(|h| h == &["hi bob", "hi alice"]));
    assert_no_more_messages(&mut alice2_ev, conv).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_each_member_gets_each_message_once_outsider_nothing() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (a, mut a_ev) = server.register("anna").await;
    let (b, mut b_ev) = server.register("ben").await;
    let (c, mut c_ev) = server.register("cleo").await;
    let (d, mut d_ev) = server.register("dora").await;
    let group = a.create_group("trio", &[b.user().id, c.user().id]).await.unwrap();
    assert_eq!(group.member_count, 3);
    for (i, client) in [&a, &b, &c].into_iter().enumerate() {
        client.send_text(group.id, &format!("from {i}")).await.unwrap();
    }
    for events in [&mut a_ev, &mut b_ev, &mut c_ev] {
        let got = messages(events, group.id, 4).await;
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(matches!(
            got[0].content.as_ref().unwrap().kind,
            Some(v1::content::Kind::System(_))
        ));
        assert_no_more_messages(events, group.id).await;
    }
    assert_no_more_messages(&mut d_ev, group.id).await;
    let refused = d.send_text(group.id, "let me in").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    assert_eq!(
        d.history(group.id, 0, 10).await.unwrap_err().code(),
        Some(v1::ErrorCode::PermissionDenied)
    );
    assert_eq!(a.history(group.id, 0, 10).await.unwrap().messages.len(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_user_gets_all_100_messages_in_order_after_login() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (a, _a_ev) = server.register("sender").await;
    let (b, _) = server.register("sleeper").await;
    let b_id = b.user().id;
    b.close();
    let mut conv = 0;
    for i in 1..=100 {
        conv = a
            .send_direct(b_id, &format!("m{i}"))
            .await
            .unwrap()
            .conversation_id;
    }
    let (b, mut b_ev) = server.login("sleeper").await;
    let got = messages(&mut b_ev, conv, 100).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(
        got.iter().map(text_of).collect::<Vec<_>>(),
        (1..=100).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_no_more_messages(&mut b_ev, conv).await;
    let list = b.conversations().await.unwrap();
    assert_eq!(list[0].unread_count, 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_repeatedly_while_1000_messages_arrive_ends_exact() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (sender, _s_ev) = server.register("firehose").await;
    let proxy = server.cuttable().await;
    let (receiver, mut r_ev) = proxy
        .connect(Credentials::Register {
            username: "flaky".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await;
    let conv = sender
        .send_direct(receiver.user().id, "first")
        .await
        .unwrap()
        .conversation_id;

    // The sender fires 999 more while the receiver's connection is cut again and again.
    let send_task = {
        let sender = sender.clone();
        tokio::spawn(async move {
            let acks: Vec<_> = (2..=1000)
                .map(|i| sender.send_text(conv, &format!("s{i}")))
                .collect();
            let mut seqs = Vec::new();
            for ack in acks {
                seqs.push(ack.await.unwrap().seq);
            }
            seqs
        })
    };
    // The receiver sends its own messages through the outbox, across cuts.
    let mut own = Vec::new();
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        own.push(receiver.send_with_id(
            v1::send_message::Target::ConversationId(conv),
            v1::Content::text(format!("own {round}")),
            format!("own-{round}"),
        ));
        proxy.cut();
    }
    let seqs = tokio::time::timeout(Duration::from_secs(60), send_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs.len(), 999);
    for ack in own {
        tokio::time::timeout(Duration::from_secs(30), ack)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        proxy.connections() > 1,
        "the connection was cut and re-established"
    );

    let got = messages(&mut r_ev, conv, 1010).await;
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=1010).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let texts: Vec<_> = got.iter().map(text_of).collect();
    for i in 2..=1000 {
        assert_eq!(texts.iter().filter(|t| **t == format!("s{i}")).count(), 1);
    }
    for round in 0..10 {
        let n = got
            .iter()
            .filter(|m| m.client_msg_id == format!("own-{round}"))
            .count();
        assert_eq!(n, 1, "outbox message own-{round} stored exactly once");
    }
    assert_no_more_messages(&mut r_ev, conv).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_never_disturbs_others() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (a, mut a_ev) = server.register("steady").await;
    let (b, mut b_ev) = server.register("calm").await;
    let conv = a
        .send_direct(b.user().id, "before")
        .await
        .unwrap()
        .conversation_id;
    messages(&mut b_ev, conv, 1).await;

    let mut raw = server.raw(None).await;
    // A request before Hello.
    raw.send_json(r#"{"requestId":"1","listRooms":{}}"#).await;
    assert_eq!(raw.error_code().await, ("1".into(), "UNAUTHENTICATED".into()));
    // Garbage bytes.
    raw.send_binary(vec![0xff, 0xfe, 0x00, 0x13, 0x37]).await;
    assert_eq!(raw.error_code().await.1, "INVALID_ARGUMENT");
    // Invalid JSON.
    raw.send_json("{not json").await;
    assert_eq!(raw.error_code().await.1, "INVALID_ARGUMENT");
    // An oversize frame: a typed error, the connection stays.
    raw.send_binary(vec![0u8; server.max_frame + 1]).await;
    assert_eq!(raw.error_code().await.1, "TOO_LARGE");
    // Hello, then a request before authentication.
    raw.send_json(r#"{"requestId":"2","hello":{"protocolVersion":1}}"#)
        .await;
    let hello = raw.next_json().await;
    assert_eq!(hello["response"]["hello"]["protocolVersion"], 1);
    raw.send_json(r#"{"requestId":"3","listConversations":{}}"#).await;
    assert_eq!(raw.error_code().await, ("3".into(), "UNAUTHENTICATED".into()));
    // An unknown request.
    raw.send_json(r#"{"requestId":"4","teleport":{"to":"mars"}}"#)
        .await;
    assert_eq!(raw.error_code().await, ("4".into(), "INVALID_ARGUMENT".into()));
    // A wrong token.
    let mut raw2 = server.raw(Some("not-a-token")).await;
    raw2.send_json(r#"{"requestId":"1","hello":{"protocolVersion":1}}"#)
        .await;
    assert_eq!(raw2.error_code().await.1, "UNAUTHENTICATED");
    // A wrong protocol version closes cleanly.
    let mut raw3 = server.raw(None).await;
    raw3.send_json(r#"{"requestId":"1","hello":{"protocolVersion":99}}"#)
        .await;
    assert_eq!(raw3.error_code().await.1, "UNSUPPORTED_VERSION");
    assert_eq!(raw3.closed().await, Some(1002));
    // A frame far beyond the limit: a clean close with 1009.
    raw.send_binary(vec![0u8; server.max_frame * 8]).await;
    assert_eq!(raw.closed().await, Some(1009));

    // Others chat on, undisturbed.
    b.send_text(conv, "after").await.unwrap();
    let got = messages(&mut a_ev, conv, 2).await;
    assert_eq!(
        got.iter().map(text_of).collect::<Vec<_>>(),
        vec!["before", "after"]
    );
    // Bad message content through the SDK: typed errors.
    let too_big = "x".repeat(20_000);
    assert_eq!(
        a.send_text(conv, &too_big).await.unwrap_err().code(),
        Some(v1::ErrorCode::TooLarge)
    );
    assert_eq!(
        a.send_text(9_999_999, "x").await.unwrap_err().code(),
        Some(v1::ErrorCode::NotFound)
    );
    server.stop().await;
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_into_one_group_reach_everyone_in_sequence_without_gap_fills() {
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let mut clients = Vec::new();
    for name in ["sender1", "sender2", "sender3", "sender4", "watcher"] {
        let (client, mut events) = server.register(name).await;
        // A fill still running from the first sync would take live events
        // as "fill in progress" (counted as gap fills) on a slow machine.
        wait_for(&mut events, |e| matches!(e, Event::Synced)).await;
        clients.push((client, events));
    }
    let ids: Vec<u64> = clients.iter().map(|(c, _)| c.user().id).collect();
    let group = clients[0].0.create_group("race", &ids[1..]).await.unwrap();
    for (_, events) in &mut clients {
        messages(events, group.id, 1).await; // the "created" notice
    }
    // Four senders fire 50 messages each, all at once and pipelined.
    let mut sends = Vec::new();
    for (i, (client, _)) in clients.iter().take(4).enumerate() {
        for n in 0..50 {
            sends.push(client.send_text(group.id, &format!("{i}-{n}")));
        }
    }
    for ack in futures_util::future::join_all(sends).await {
        ack.unwrap();
    }
    for (client, events) in &mut clients {
        let got = messages(events, group.id, 200).await;
        assert_eq!(
            got.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (2..=201).collect::<Vec<_>>()
        );
        assert_eq!(
            client.gap_fills(),
            0,
            "live events came in sequence order: no gap to fill"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_tells_clients_and_loses_no_acked_message() {
    if TRANSPORT == Transport::Memory {
        // The memory duplex is bound to one server's handle: there is no
        // address to restart behind its clients.
        return;
    }
    let server = TestServer::start_on(BACKEND, TRANSPORT).await;
    let (a, mut a_ev) = server.register("talker").await;
    let (b, mut b_ev) = server.register("listener").await;
    let conv = a.send_direct(b.user().id, "start").await.unwrap().conversation_id;
    // Keep sending while the server shuts down.
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..300 {
                let fut = a.send_text(conv, &format!("n{i}"));
                match tokio::time::timeout(Duration::from_secs(20), fut).await {
                    Ok(Ok(ack)) => acked.push(ack.seq),
                    _ => break,
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let server = server.stop_and_keep().await;
    let mut b_seen = Vec::new();
    for (i, events) in [&mut a_ev, &mut b_ev].into_iter().enumerate() {
        let seen = events_until(events, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(
            seen.contains(&Event::Closing {
                reason: "server shutting down".into()
            }),
            "{seen:?}"
        );
        if i == 1 {
            b_seen = seen;
        }
    }
    // Restart on the same address: the clients reconnect, resync and flush their outbox.
    let server = server.start_again().await;
    let acked = tokio::time::timeout(Duration::from_secs(60), sender)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        acked.len(),
        300,
        "every queued message was acked, before or after the restart"
    );
    let mut got: Vec<v1::Message> = b_seen
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) if m.conversation_id == conv => Some(m),
            _ => None,
        })
        .collect();
    let before = got.len();
    got.extend(messages(&mut b_ev, conv, 301 - before).await);
    assert_eq!(
        got.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=301).collect::<Vec<_>>()
    );
    let mut texts: Vec<_> = got.iter().skip(1).map(text_of).collect();
    texts.dedup();
    assert_eq!(texts.len(), 300);
    assert_eq!(
        b.history(conv, 0, 10).await.unwrap().messages.last().unwrap().seq,
        301
    );
    server.stop().await;
}
