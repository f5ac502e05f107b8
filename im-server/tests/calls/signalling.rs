// Call signalling through the reference server, with raw requests (the
// state machine's rules are unit-tested in im-core; here they are shown
// through a real server and real clients). Included by calls.rs with
// TRANSPORT in scope.

use crate::support::{Backend, PASSWORD, TestServer, call_event};
use im_client_sdk::{Client, Credentials, Event, Events, v1};
use std::time::Duration;
use v1::call_event::Kind as CallKind;
use v1::client_frame::Body;
use v1::response::Result as Reply;

async fn server() -> TestServer {
    server_with(|_| {}).await
}

async fn server_with(adjust: impl FnOnce(&mut im_server::ServerConfig)) -> TestServer {
    TestServer::start_on_with(Backend::Sqlite, TRANSPORT, adjust).await
}

/// `name` on `device` (registered on first use).
async fn device(server: &TestServer, name: &str, device: &str) -> (Client, Events) {
    let mut config = server.client_config();
    config.device_id = device.into();
    let credentials = Credentials::Register {
        username: name.into(),
        password: PASSWORD.into(),
        display_name: String::new(),
    };
    match Client::connect(config.clone(), credentials).await {
        Ok(c) => c,
        Err(_) => Client::connect(
            config,
            Credentials::Login {
                username: name.into(),
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap(),
    }
}

fn voice() -> Option<v1::CallMedia> {
    Some(v1::CallMedia {
        audio: true,
        ..Default::default()
    })
}

async fn invite(client: &Client, conversation: u64, invitees: &[u64]) -> im_client_sdk::Result<v1::Call> {
    let body = Body::CallInvite(v1::CallInvite {
        conversation_id: conversation,
        invitee_ids: invitees.to_vec(),
        media: voice(),
    });
    match client.request(body).await? {
        Reply::Call(call) => Ok(call),
        other => panic!("unexpected answer {other:?}"),
    }
}

async fn update(client: &Client, call: u64, kind: v1::CallUpdateKind) -> im_client_sdk::Result<Reply> {
    client
        .request(Body::CallUpdate(v1::CallUpdate {
            call_id: call,
            kind: kind as i32,
        }))
        .await
}

async fn signal(client: &Client, call: u64, to: u64, payload: &str) -> im_client_sdk::Result<Reply> {
    client
        .request(Body::CallSignal(v1::CallSignal {
            call_id: call,
            to_user_id: to,
            kind: v1::SignalKind::Offer as i32,
            payload: payload.into(),
        }))
        .await
}

/// Every call event that arrives within a moment.
async fn call_events_for_a_moment(events: &mut Events) -> Vec<CallKind> {
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(e)) = tokio::time::timeout_at(until, events.next()).await {
        if let Event::Call(c) = e {
            seen.extend(c.kind);
        }
    }
    seen
}

fn ended(reason: v1::CallEndReason) -> impl Fn(&CallKind) -> bool {
    move |k| matches!(k, CallKind::Ended(r) if *r == reason as i32)
}

/// The call records of a conversation's history, oldest first.
async fn call_records(client: &Client, conversation: u64) -> Vec<v1::CallSummary> {
    let page = client.history(conversation, 0, 50).await.unwrap();
    let mut records: Vec<_> = page
        .messages
        .into_iter()
        .filter_map(|m| match m.content?.kind? {
            v1::content::Kind::Call(s) => Some((m.seq, s)),
            _ => None,
        })
        .collect();
    records.sort_by_key(|(seq, _)| *seq);
    records.into_iter().map(|(_, s)| s).collect()
}

/// Waits (bounded) until the history holds `n` call records.
async fn wait_for_records(client: &Client, conversation: u64, n: usize) -> Vec<v1::CallSummary> {
    for _ in 0..100 {
        let records = call_records(client, conversation).await;
        if records.len() >= n {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the history did not get {n} call records");
}

fn outcome(s: &v1::CallSummary) -> v1::CallOutcome {
    v1::CallOutcome::try_from(s.outcome).unwrap()
}

/// A direct conversation between two clients.
async fn direct(a: &Client, b: &Client) -> u64 {
    a.send_direct(b.user().id, "hi").await.unwrap().conversation_id
}

#[tokio::test]
async fn every_device_rings_and_the_one_that_answers_takes_the_call() {
    let server = server().await;
    let (alice, mut alice_events) = device(&server, "alice", "alice-phone").await;
    let (bob_phone, mut phone_events) = device(&server, "bob", "bob-phone").await;
    let (bob_laptop, mut laptop_events) = device(&server, "bob", "bob-laptop").await;
    let bob = bob_phone.user().id;
    let conversation = direct(&alice, &bob_phone).await;

    let call = invite(&alice, conversation, &[bob]).await.unwrap();
    assert_eq!(call.participants.len(), 1);
    let id = call.call_id;
    for (client, events) in [(&bob_phone, &mut phone_events), (&bob_laptop, &mut laptop_events)] {
        let incoming = call_event(events, |k| matches!(k, CallKind::Incoming(_))).await;
        assert_eq!((incoming.call_id, incoming.conversation_id), (id, conversation));
        update(client, id, v1::CallUpdateKind::Ringing).await.unwrap();
    }
    let mut ringing = Vec::new();
    for _ in 0..2 {
        if let Some(CallKind::Ringing(by)) = call_event(&mut alice_events, |k| matches!(k, CallKind::Ringing(_))).await.kind {
            ringing.push(by.device_id);
        }
    }
    ringing.sort();
    assert_eq!(ringing, ["bob-laptop", "bob-phone"], "both of Bob's devices ring");

    // Before Bob answers, the caller's offer reaches every ringing device.
    signal(&alice, id, bob, "early offer").await.unwrap();
    for events in [&mut phone_events, &mut laptop_events] {
        call_event(events, |k| matches!(k, CallKind::Signal(s) if s.payload == "early offer")).await;
    }

    let Reply::Call(taken) = update(&bob_laptop, id, v1::CallUpdateKind::Accept).await.unwrap() else {
        panic!("accept answers with the call");
    };
    let devices: Vec<_> = taken.participants.iter().map(|p| p.device_id.as_str()).collect();
    assert_eq!(devices, ["alice-phone", "bob-laptop"]);
    call_event(&mut phone_events, |k| matches!(k, CallKind::AnsweredElsewhere(_))).await;
    let joined = call_event(&mut alice_events, |k| matches!(k, CallKind::Joined(_))).await;
    assert!(matches!(joined.kind, Some(CallKind::Joined(p)) if p.device_id == "bob-laptop"));

    // From now on only the laptop hears the call.
    signal(&alice, id, bob, "offer").await.unwrap();
    let got = call_event(&mut laptop_events, |k| matches!(k, CallKind::Signal(_))).await;
    let Some(CallKind::Signal(s)) = got.kind else { unreachable!() };
    assert_eq!((s.payload.as_str(), s.from.unwrap().device_id.as_str()), ("offer", "alice-phone"));
    signal(&bob_laptop, id, alice.user().id, "answer").await.unwrap();
    call_event(&mut alice_events, |k| matches!(k, CallKind::Signal(s) if s.payload == "answer")).await;
    let refused = update(&bob_phone, id, v1::CallUpdateKind::Accept).await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::Conflict), "{refused}");

    update(&alice, id, v1::CallUpdateKind::HangUp).await.unwrap();
    call_event(&mut laptop_events, ended(v1::CallEndReason::HungUp)).await;
    assert!(
        call_events_for_a_moment(&mut phone_events).await.is_empty(),
        "the device that stopped ringing hears nothing more of the call"
    );
    let records = wait_for_records(&alice, conversation, 2).await;
    assert_eq!(records.iter().map(outcome).collect::<Vec<_>>(), [v1::CallOutcome::Started, v1::CallOutcome::Ended]);
    assert_eq!(records[0].caller_id, alice.user().id);
    assert_eq!(records[1].participant_ids, [alice.user().id, bob]);
    assert!(records[1].duration_ms >= 0);
    assert!(records.iter().all(|r| r.call_id == id));
}

#[tokio::test]
async fn unanswered_rejected_and_busy_calls_end_for_both_sides_and_are_recorded() {
    let server = server_with(|c| c.calls.ring_timeout_secs = 1).await;
    let (alice, mut alice_events) = device(&server, "alice", "a").await;
    let (bob, mut bob_events) = device(&server, "bob", "b").await;
    let (carol, mut carol_events) = device(&server, "carol", "c").await;
    let conversation = direct(&alice, &bob).await;

    // No answer: after the ring time-out both sides hear it.
    let missed = invite(&alice, conversation, &[bob.user().id]).await.unwrap().call_id;
    call_event(&mut bob_events, |k| matches!(k, CallKind::Incoming(_))).await;
    call_event(&mut alice_events, |k| matches!(k, CallKind::NoAnswerUser(u) if *u == bob.user().id)).await;
    call_event(&mut alice_events, ended(v1::CallEndReason::NoAnswer)).await;
    let bob_end = call_event(&mut bob_events, ended(v1::CallEndReason::NoAnswer)).await;
    assert_eq!(bob_end.call_id, missed);
    let records = wait_for_records(&bob, conversation, 1).await;
    assert_eq!((outcome(&records[0]), records[0].caller_id), (v1::CallOutcome::Missed, alice.user().id));

    // Declined.
    let rejected = invite(&alice, conversation, &[]).await.unwrap().call_id;
    call_event(&mut bob_events, |k| matches!(k, CallKind::Incoming(_))).await;
    update(&bob, rejected, v1::CallUpdateKind::Reject).await.unwrap();
    call_event(&mut alice_events, |k| matches!(k, CallKind::RejectedBy(_))).await;
    call_event(&mut alice_events, ended(v1::CallEndReason::Rejected)).await;
    let records = wait_for_records(&alice, conversation, 2).await;
    assert_eq!(outcome(&records[1]), v1::CallOutcome::Rejected);

    // Busy: Bob is in a call with Carol when Alice calls.
    let with_carol = direct(&bob, &carol).await;
    let busy_call = invite(&bob, with_carol, &[carol.user().id]).await.unwrap().call_id;
    call_event(&mut carol_events, |k| matches!(k, CallKind::Incoming(_))).await;
    update(&carol, busy_call, v1::CallUpdateKind::Accept).await.unwrap();
    invite(&alice, conversation, &[bob.user().id]).await.unwrap();
    call_event(&mut alice_events, |k| matches!(k, CallKind::BusyUser(u) if *u == bob.user().id)).await;
    call_event(&mut alice_events, ended(v1::CallEndReason::Busy)).await;
    let records = wait_for_records(&alice, conversation, 3).await;
    assert_eq!(outcome(&records[2]), v1::CallOutcome::Busy);
    assert!(
        !call_events_for_a_moment(&mut bob_events)
            .await
            .iter()
            .any(|k| matches!(k, CallKind::Incoming(_))),
        "a busy user is not rung"
    );

    // A device can answer busy itself (it is in a call the server does not see).
    update(&bob, busy_call, v1::CallUpdateKind::HangUp).await.unwrap();
    let again = invite(&alice, conversation, &[]).await.unwrap().call_id;
    call_event(&mut bob_events, |k| matches!(k, CallKind::Incoming(_))).await;
    update(&bob, again, v1::CallUpdateKind::Busy).await.unwrap();
    call_event(&mut alice_events, ended(v1::CallEndReason::Busy)).await;
}

#[tokio::test]
async fn signalling_is_only_for_members_and_only_reaches_the_call() {
    let server = server().await;
    let (alice, mut alice_events) = device(&server, "alice", "a").await;
    let (bob, mut bob_events) = device(&server, "bob", "b").await;
    let (carol, mut carol_events) = device(&server, "carol", "c").await;
    let (mallory, mut mallory_events) = device(&server, "mallory", "m").await;
    let group = alice
        .create_group("team", &[bob.user().id, carol.user().id])
        .await
        .unwrap()
        .id;
    let code = |e: im_client_sdk::Error| e.code();

    // Not a member: no call in the conversation, no invitee from outside it.
    let refused = invite(&mallory, group, &[alice.user().id]).await.unwrap_err();
    assert_eq!(code(refused), Some(v1::ErrorCode::PermissionDenied));
    let refused = invite(&alice, group, &[mallory.user().id]).await.unwrap_err();
    assert_eq!(code(refused), Some(v1::ErrorCode::PermissionDenied));
    let alone = invite(&alice, group, &[alice.user().id, alice.user().id]).await.unwrap_err();
    assert_eq!(code(alone), Some(v1::ErrorCode::InvalidArgument), "calling oneself");

    let call = invite(&alice, group, &[bob.user().id]).await.unwrap().call_id;
    call_event(&mut bob_events, |k| matches!(k, CallKind::Incoming(_))).await;
    update(&bob, call, v1::CallUpdateKind::Accept).await.unwrap();

    // Unknown and forged call ids.
    let unknown = signal(&alice, call + 1_000, bob.user().id, "x").await.unwrap_err();
    assert_eq!(code(unknown), Some(v1::ErrorCode::NotFound));
    let unknown = update(&bob, 0, v1::CallUpdateKind::HangUp).await.unwrap_err();
    assert_eq!(code(unknown), Some(v1::ErrorCode::NotFound));
    let forged = signal(&mallory, call, bob.user().id, "x").await.unwrap_err();
    assert_eq!(code(forged), Some(v1::ErrorCode::PermissionDenied));
    let forged = update(&mallory, call, v1::CallUpdateKind::Accept).await.unwrap_err();
    assert_eq!(code(forged), Some(v1::ErrorCode::PermissionDenied), "a stranger cannot join");
    let forged = signal(&alice, call, carol.user().id, "x").await.unwrap_err();
    assert_eq!(code(forged), Some(v1::ErrorCode::PermissionDenied), "Carol is not in the call");

    // Too large, and no kind.
    let big = "v".repeat(32 * 1024 + 1);
    let too_large = signal(&alice, call, bob.user().id, &big).await.unwrap_err();
    assert_eq!(code(too_large), Some(v1::ErrorCode::TooLarge));
    let no_kind = alice
        .request(Body::CallSignal(v1::CallSignal {
            call_id: call,
            to_user_id: bob.user().id,
            kind: 0,
            payload: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(code(no_kind), Some(v1::ErrorCode::InvalidArgument));

    // The SDP and candidates reach Bob and nobody else.
    signal(&alice, call, bob.user().id, "v=0 secret sdp").await.unwrap();
    call_event(&mut bob_events, |k| matches!(k, CallKind::Signal(_))).await;
    for events in [&mut carol_events, &mut mallory_events] {
        let heard = call_events_for_a_moment(events).await;
        assert!(heard.is_empty(), "outside the call: {heard:?}");
    }
    assert!(
        !call_events_for_a_moment(&mut alice_events)
            .await
            .iter()
            .any(|k| matches!(k, CallKind::Signal(_))),
        "the sender does not get its own signal"
    );
    // A member who was not invited may join the running call.
    let Reply::Call(joined) = update(&carol, call, v1::CallUpdateKind::Accept).await.unwrap() else {
        panic!("accept answers with the call");
    };
    assert_eq!(joined.participants.len(), 3);
}

#[tokio::test]
async fn a_dropped_participant_gets_a_reconnect_window_then_leaves() {
    let server = server_with(|c| c.calls.reconnect_window_secs = 1).await;
    let (alice, mut alice_events) = device(&server, "alice", "a").await;
    let (bob, mut bob_events) = device(&server, "bob", "b").await;
    let conversation = direct(&alice, &bob).await;
    let call = invite(&alice, conversation, &[]).await.unwrap().call_id;
    call_event(&mut bob_events, |k| matches!(k, CallKind::Incoming(_))).await;
    update(&bob, call, v1::CallUpdateKind::Accept).await.unwrap();

    // Bob's connection drops and comes back (same device) within the window.
    bob.close();
    drop(bob_events);
    call_event(&mut alice_events, |k| matches!(k, CallKind::Reconnecting(p) if p.device_id == "b")).await;
    let (bob, _bob_events) = device(&server, "bob", "b").await;
    call_event(&mut alice_events, |k| matches!(k, CallKind::Reconnected(p) if p.device_id == "b")).await;

    // Then drops for good: the window passes, Bob leaves, the call ends.
    bob.close();
    call_event(&mut alice_events, |k| matches!(k, CallKind::Reconnecting(_))).await;
    call_event(&mut alice_events, |k| matches!(k, CallKind::Left(p) if p.device_id == "b")).await;
    call_event(&mut alice_events, ended(v1::CallEndReason::HungUp)).await;
    let records = wait_for_records(&alice, conversation, 2).await;
    assert_eq!(outcome(&records[1]), v1::CallOutcome::Ended);
}

#[tokio::test]
async fn clients_get_stun_and_turn_with_a_credential_that_expires() {
    let server = server_with(|c| {
        c.calls.stun_urls = vec!["stun:stun.example.com:3478".into()];
        c.calls.turn_urls = vec!["turn:turn.example.com:3478?transport=udp".into()];
        c.calls.turn_secret = "shared secret".into();
        c.calls.turn_ttl_secs = 3_600;
    })
    .await;
    let (alice, _events) = device(&server, "alice", "a").await;
    let Reply::IceServers(list) = alice.request(Body::GetIceServers(v1::GetIceServers {})).await.unwrap() else {
        panic!("ICE servers expected");
    };
    assert_eq!(list.servers.len(), 2);
    assert_eq!(list.servers[0].urls, ["stun:stun.example.com:3478"]);
    assert!(list.servers[0].username.is_empty() && list.servers[0].credential.is_empty());
    let turn = &list.servers[1];
    let (expiry, user) = turn.username.split_once(':').unwrap();
    assert_eq!(user, alice.user().id.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now + 3_500..=now + 3_700).contains(&expiry), "valid for the configured hour");
    assert_eq!(turn.credential.len(), 28, "base64 of a 20-byte HMAC-SHA1");
}
