// The end-to-end cases, included once per store backend by `tests/e2e.rs`
// (each inclusion defines `BACKEND`).

use crate::support::*;
use im_client_sdk::{Client, Credentials, Error as SdkError, Event, v1};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gap_free_sequence_numbers() {
    let server = TestServer::start(BACKEND).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(server.register(&format!("writer{i}")).await);
    }
    let ids: Vec<u64> = clients.iter().map(|(c, _)| c.user().id).collect();
    let group = clients[0].0.create_group("race", &ids).await.unwrap();
    let mut tasks = Vec::new();
    for (client, _) in &clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            // Raw requests, all in flight at once.
            let mut calls = Vec::new();
            for i in 0..40 {
                let c = client.clone();
                calls.push(tokio::spawn(async move {
                    match c
                        .request(v1::client_frame::Body::Send(v1::SendMessage {
                            target: Some(v1::send_message::Target::ConversationId(group.id)),
                            client_msg_id: format!("{}-{i}", c.user().id),
                            content: Some(v1::Content::text("x")),
                            ..Default::default()
                        }))
                        .await
                        .unwrap()
                    {
                        v1::response::Result::Ack(a) => a.seq,
                        other => panic!("{other:?}"),
                    }
                }));
            }
            let mut seqs = Vec::new();
            for c in calls {
                seqs.push(c.await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (2..=201).collect::<Vec<_>>(),
        "seq 1 is the creation notice"
    );
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = clients[1].0.history_after(group.id, after, 200).await.unwrap();
        all.extend(page.messages.iter().map(|m| m.seq));
        after = *all.last().unwrap();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(all, (1..=201).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_send_returns_first_ack_and_stores_once() {
    let server = TestServer::start(BACKEND).await;
    let (a, _) = server.register("retrier").await;
    let (b, _) = server.register("target").await;
    let target = v1::send_message::Target::ToUserId(b.user().id);
    let first = a
        .send_with_id(target, v1::Content::text("once"), "retry-1".into())
        .await
        .unwrap();
    let again = a
        .send_with_id(target, v1::Content::text("once"), "retry-1".into())
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        (again.message_id, again.seq, again.server_time),
        (first.message_id, first.seq, first.server_time)
    );
    let h = b.history(first.conversation_id, 0, 10).await.unwrap();
    assert_eq!(h.messages.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_auth_endpoints_answer_json_with_status_codes() {
    let server = TestServer::start(BACKEND).await;
    let (status, body) = http(
        server.addr,
        "POST",
        "/v1/auth/register",
        r#"{"username":"webby","password":"password123"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["token"].as_str().unwrap().len() >= 32);
    assert!(v["user_id"].as_u64().unwrap() > 0);
    assert!(v["expires_at"].as_i64().unwrap() > 0);
    let (status, body) = http(
        server.addr,
        "POST",
        "/v1/auth/register",
        r#"{"username":"WEBBY","password":"password123"}"#,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "CONFLICT"
    );
    let (status, body) = http(
        server.addr,
        "POST",
        "/v1/auth/login",
        r#"{"username":"webby","password":"wrong-password"}"#,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "UNAUTHENTICATED"
    );
    let (status, body) = http(
        server.addr,
        "POST",
        "/v1/auth/login",
        r#"{"username":"webby","password":"password123"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(http(server.addr, "POST", "/v1/auth/login", "{oops").await.0, 400);
    assert_eq!(http(server.addr, "GET", "/healthz", "").await.0, 200);
    assert_eq!(http(server.addr, "GET", "/readyz", "").await.0, 200);
    assert_eq!(http(server.addr, "GET", "/nope", "").await.0, 404);
    assert_eq!(
        http(server.addr, "GET", "/v1/ws", "").await.0,
        400,
        "not an upgrade"
    );
    // The token from HTTP works on the WebSocket, in the Authorization header.
    let mut raw = RawWs::connect(server.addr, Some(&token)).await;
    raw.send_json(r#"{"requestId":"1","hello":{"protocolVersion":1}}"#)
        .await;
    assert_eq!(
        raw.next_json().await["response"]["hello"]["user"]["username"],
        "webby"
    );
    // And with the SDK.
    let (client, _) = server.connect(Credentials::Token(token)).await;
    assert_eq!(client.user().username, "webby");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_typing_receipts_and_presence() {
    let server = TestServer::start(BACKEND).await;
    let (a, mut a_ev) = server.register("host").await;
    let (b, mut b_ev) = server.register("guest").await;
    let room = a.create_room("lobby", false).await.unwrap();
    let pop = a.create_room("popup", true).await.unwrap();
    let rooms = b.list_rooms(10).await.unwrap();
    assert_eq!(rooms.len(), 2);
    b.join(room.id).await.unwrap();
    let rooms = b.list_rooms(10).await.unwrap();
    assert_eq!(
        (rooms[0].conversation.as_ref().unwrap().id, rooms[0].member_count),
        (room.id, 2)
    );
    // The owner sees the join as a system message.
    let got = messages(&mut a_ev, room.id, 2).await;
    assert!(matches!(&got[1].content.as_ref().unwrap().kind,
        Some(v1::content::Kind::System(s)) if s.kind == v1::SystemKind::Joined as i32 && s.user_ids == vec![b.user().id]));
    // Typing reaches the other member only.
    b.typing(room.id, true).await.unwrap();
    let t = wait_for(&mut a_ev, |e| matches!(e, Event::Typing(_))).await;
    assert!(matches!(t, Event::Typing(t) if t.user_id == b.user().id && t.typing));
    // Read receipts.
    let ack = a.send_text(room.id, "welcome").await.unwrap();
    messages(&mut b_ev, room.id, 3).await;
    let cur = b.mark_read(room.id, ack.seq).await.unwrap();
    assert_eq!(cur.read_seq, ack.seq);
    let r = wait_for(&mut a_ev, |e| matches!(e, Event::Receipt(_))).await;
    assert!(matches!(r, Event::Receipt(r) if r.user_id == b.user().id && r.read_seq == ack.seq));
    // Presence: a group makes them contacts; b going away is seen by a.
    a.create_group("pair", &[b.user().id]).await.unwrap();
    let p = a.presence(&[b.user().id]).await.unwrap();
    assert!(p[0].online);
    b.close();
    let e = wait_for(&mut a_ev, |e| matches!(e, Event::Presence(p) if !p.online)).await;
    let Event::Presence(offline) = e else {
        unreachable!()
    };
    assert_eq!(offline.user_id, b.user().id);
    assert!(offline.last_seen > 0 && offline.generation > p[0].generation);
    // Leaving; the ephemeral room vanishes with its last member.
    a.leave(pop.id).await.unwrap();
    let rooms = a.list_rooms(10).await.unwrap();
    assert_eq!(rooms.len(), 1);
    // Search and profiles.
    let found = a.search_users("gue", 10).await.unwrap();
    assert_eq!(
        found.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        vec!["guest"]
    );
    let me = a
        .update_profile(
            Some("The Host".into()),
            Some("https://example.invalid/a.png".into()),
        )
        .await
        .unwrap();
    assert_eq!(me.display_name, "The Host");
    assert_eq!(
        a.users(&[a.user().id]).await.unwrap()[0].avatar_url,
        "https://example.invalid/a.png"
    );
    drop(b_ev);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_store_keeps_history_conversations_and_cursors() {
    let server = TestServer::start(BACKEND).await;
    let (a, _) = server.register("keeper").await;
    let (b, mut b_ev) = server.register("reader").await;
    let group = a.create_group("persist", &[b.user().id]).await.unwrap();
    let dm = a.send_direct(b.user().id, "dm").await.unwrap();
    for i in 0..5 {
        a.send_text(group.id, &format!("g{i}")).await.unwrap();
    }
    messages(&mut b_ev, group.id, 6).await;
    b.mark_read(group.id, 4).await.unwrap();
    let b_token = b.token();
    let before = b.conversations().await.unwrap();
    a.close();
    b.close();

    let server = server.restart().await;
    let (b, mut b_ev) = server.connect(Credentials::Token(b_token)).await;
    let after = b.conversations().await.unwrap();
    assert_eq!(after.len(), 2);
    let strip = |c: &Vec<v1::Conversation>| {
        let mut v: Vec<_> = c
            .iter()
            .map(|c| (c.id, c.last_seq, c.read_seq, c.unread_count, c.title.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&before), strip(&after));
    let g = after.iter().find(|c| c.id == group.id).unwrap();
    assert_eq!((g.read_seq, g.unread_count, g.last_seq), (4, 2, 6));
    let h = b.history(group.id, 0, 50).await.unwrap();
    assert_eq!(
        h.messages.iter().skip(1).map(text_of).collect::<Vec<_>>(),
        vec!["g0", "g1", "g2", "g3", "g4"]
    );
    assert_eq!(
        b.history(dm.conversation_id, 0, 50).await.unwrap().messages.len(),
        1
    );
    // The new session resyncs everything once.
    assert_eq!(messages(&mut b_ev, group.id, 6).await.len(), 6);
    let (a, _) = server.login("keeper").await;
    assert_eq!(a.send_text(group.id, "after restart").await.unwrap().seq, 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_rate_connections_and_idle_timeout() {
    let server = TestServer::start_with(BACKEND, |c| {
        c.limits.requests_per_second = 1.0;
        c.limits.request_burst = 3.0;
        c.server.max_connections = 2;
        c.server.heartbeat_interval_secs = 1;
        c.server.idle_timeout_secs = 2;
    })
    .await;
    let silent = SilentWs::connect(server.addr).await;
    let mut raw = RawWs::connect(server.addr, None).await;
    let mut codes = Vec::new();
    for i in 1..=6 {
        raw.send_json(&format!(
            r#"{{"requestId":"{i}","hello":{{"protocolVersion":1}}}}"#
        ))
        .await;
        let v = raw.next_json().await;
        codes.push(v["response"]["error"]["code"].as_str().unwrap_or("OK").to_owned());
    }
    assert_eq!(codes[0], "OK");
    assert!(codes.contains(&"RATE_LIMITED".to_owned()), "{codes:?}");
    // The connection limit refuses a third WebSocket with 503.
    assert_eq!(RawWs::try_connect(server.addr).await, Err(503));
    // A connection that never answers pings is closed after the idle time-out.
    assert_eq!(silent.close_reason().await, "idle timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_errors_are_typed() {
    let server = TestServer::start(BACKEND).await;
    server.register("taken").await;
    let err = Client::connect(
        server.client_config(),
        Credentials::Register {
            username: "taken".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Some(v1::ErrorCode::Conflict));
    let err = Client::connect(
        server.client_config(),
        Credentials::Login {
            username: "taken".into(),
            password: "wrong password".into(),
        },
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), Some(v1::ErrorCode::Unauthenticated));
    let err = Client::connect(server.client_config(), Credentials::Token("bogus".into()))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(v1::ErrorCode::Unauthenticated));
    let (c, _) = server.login("taken").await;
    let token = c.token();
    c.logout().await.unwrap();
    let err = Client::connect(server.client_config(), Credentials::Token(token))
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.code(),
        Some(v1::ErrorCode::Unauthenticated),
        "a logged-out token is refused"
    );
    let (c, _) = server.login("taken").await;
    c.close();
    assert_eq!(c.send_text(1, "x").await.unwrap_err(), SdkError::Closed);
    server.stop().await;
}

/// The next response of a raw client, skipping events.
async fn next_response(raw: &mut RawWs) -> serde_json::Value {
    loop {
        let v = raw.next_json().await;
        if v.get("response").is_some() {
            return v;
        }
    }
}

/// One paged sync of a raw JSON client, the way `docs/PROTOCOL.md` tells it:
/// sorted cursors, `per_page` of them per frame (up to the last one's id, the
/// last page open-ended), at most `limit` changed per answer, continuing on
/// `hasMore`. Every request frame must fit the frame limit. Returns the
/// changed conversations (id to lastVersion), the removed ids, and how many
/// answers had `hasMore`.
async fn sync_json_in_pages(
    raw: &mut RawWs,
    max_frame: usize,
    cursors: &[(u64, u64)],
    per_page: usize,
    limit: u32,
) -> (std::collections::BTreeMap<u64, u64>, Vec<u64>, usize) {
    let mut cursors = cursors.to_vec();
    cursors.sort_unstable();
    let id = |v: &serde_json::Value| v.as_str().unwrap().parse::<u64>().unwrap();
    let (mut changed, mut removed, mut cut_short) = (std::collections::BTreeMap::new(), Vec::new(), 0);
    let mut after = 0u64;
    for request_id in 100.. {
        let rest: Vec<(u64, u64)> = cursors.iter().copied().filter(|c| c.0 > after).collect();
        let until = if rest.len() > per_page { rest[per_page - 1].0 } else { 0 };
        let listed: Vec<String> = rest[..rest.len().min(per_page)]
            .iter()
            .map(|(c, v)| format!(r#"{{"conversationId":"{c}","version":"{v}"}}"#))
            .collect();
        let frame = format!(
            r#"{{"requestId":"{request_id}","sync":{{"cursors":[{}],"afterConversationId":"{after}","untilConversationId":"{until}","limit":{limit}}}}}"#,
            listed.join(",")
        );
        assert!(frame.len() < max_frame, "a page fits one frame");
        raw.send_json(&frame).await;
        let v = next_response(raw).await;
        assert_eq!(v["response"]["requestId"], request_id.to_string(), "{v}");
        let r = &v["response"]["sync"];
        assert!(r.is_object(), "{v}");
        let page: Vec<(u64, u64)> = r["changed"]
            .as_array()
            .map(|a| a.iter().map(|c| (id(&c["id"]), id(&c["lastVersion"]))).collect())
            .unwrap_or_default();
        assert!(page.len() <= limit as usize);
        for &(c, version) in &page {
            assert!(c > after && (until == 0 || c <= until), "inside the range");
            assert!(changed.insert(c, version).is_none(), "{c} answered once");
        }
        if let Some(list) = r["removed"].as_array() {
            removed.extend(list.iter().map(id));
        }
        let has_more = r["hasMore"].as_bool().unwrap_or(false);
        after = if has_more {
            cut_short += 1;
            let next = id(&r["nextAfterConversationId"]);
            assert_eq!(next, page.last().unwrap().0, "covered up to the last changed");
            next
        } else if until != 0 {
            assert!(r.get("nextAfterConversationId").is_none(), "{v}");
            until
        } else {
            break;
        };
    }
    (changed, removed, cut_short)
}

/// A user in more conversations than one 64 KiB frame of JSON cursors can
/// list: a JSON client syncs completely in pages, and the SDK (JSON frames
/// too) resyncs after a reconnect in pages and gets every message of every
/// conversation exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_sync_covers_more_conversations_than_one_frame_holds() {
    use futures_util::StreamExt;
    use std::collections::{BTreeMap, BTreeSet};
    const CONVERSATIONS: usize = 1_800;
    let server = TestServer::start(BACKEND).await;
    let proxy = Proxy::start(server.addr).await;
    let mut config = client_config(&proxy.url());
    config.format = im_client_sdk::Format::Json;
    let (a, mut a_ev) = Client::connect(
        config,
        Credentials::Register {
            username: "crowded".into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        },
    )
    .await
    .unwrap();
    // The other user writes from several devices: a connection runs one
    // request at a time, and the store commits concurrent writes together.
    let mut bs = vec![server.register("chatty").await.0];
    for _ in 1..8 {
        bs.push(server.login("chatty").await.0);
    }
    let a_id = a.user().id;
    let mut groups: Vec<u64> = futures_util::stream::iter(0..CONVERSATIONS)
        .map(|i| {
            let b = bs[i % bs.len()].clone();
            async move { b.create_group(&format!("g{i}"), &[a_id]).await.unwrap().id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    groups.sort_unstable();
    // The SDK has seen every creation notice: its cursors list them all.
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < CONVERSATIONS {
            if let Some(Event::Message(m)) = a_ev.next().await {
                assert_eq!(m.seq, 1);
                assert!(seen.insert(m.conversation_id));
            }
        }
    })
    .await
    .expect("every creation notice arrives");

    // A raw JSON client of the same user: one frame of all its cursors is
    // over the frame limit...
    let token = a.token();
    let raw_client = || async {
        let mut raw = RawWs::connect(server.addr, Some(&token)).await;
        raw.send_json(r#"{"requestId":"1","hello":{"protocolVersion":1}}"#)
            .await;
        assert!(next_response(&mut raw).await["response"]["hello"].is_object());
        raw
    };
    let mut raw = raw_client().await;
    let all: Vec<String> = groups
        .iter()
        .map(|c| format!(r#"{{"conversationId":"{c}","version":"1"}}"#))
        .collect();
    let whole = format!(
        r#"{{"requestId":"2","sync":{{"cursors":[{}]}}}}"#,
        all.join(",")
    );
    assert!(whole.len() > server.max_frame, "{} bytes", whole.len());
    raw.send_json(&whole).await;
    assert_eq!(
        next_response(&mut raw).await["response"]["error"]["code"],
        "TOO_LARGE"
    );
    // ...so it syncs in pages: from nothing (pages of 500 answers)...
    let (changed, removed, cut_short) = sync_json_in_pages(&mut raw, server.max_frame, &[], 500, 500).await;
    assert_eq!(changed.keys().copied().collect::<Vec<_>>(), groups);
    assert!(changed.values().all(|&v| v == 1));
    assert!(removed.is_empty());
    assert_eq!(cut_short, CONVERSATIONS.div_ceil(500) - 1);
    // (It stays away while the news arrive: it would not read them.)
    drop(raw);

    // The SDK client goes away; meanwhile every conversation gets news,
    // every fourth twice.
    proxy.refuse(true);
    proxy.cut();
    wait_for(&mut a_ev, |e| matches!(e, Event::Disconnected { .. })).await;
    let twice = |i: usize| i.is_multiple_of(4);
    futures_util::stream::iter(groups.iter().copied().enumerate())
        .map(|(i, g)| {
            let b = bs[i % bs.len()].clone();
            async move {
                for n in 0..if twice(i) { 2 } else { 1 } {
                    match b
                        .request(v1::client_frame::Body::Send(v1::SendMessage {
                            target: Some(v1::send_message::Target::ConversationId(g)),
                            client_msg_id: format!("{g}-{n}"),
                            content: Some(v1::Content::text(format!("{g}-{n}"))),
                            ..Default::default()
                        }))
                        .await
                        .unwrap()
                    {
                        v1::response::Result::Ack(ack) => assert_eq!(ack.seq, 2 + n),
                        other => panic!("{other:?}"),
                    }
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;

    // The raw client, with cursors at version 2 (and one for a conversation
    // that does not exist), pages of 500 cursors and 100 answers: exactly the
    // conversations that got two messages changed.
    let mut cursors: Vec<(u64, u64)> = groups.iter().map(|&g| (g, 2)).collect();
    let ghost = groups.last().unwrap() + 1_000;
    cursors.push((ghost, 5));
    let mut raw = raw_client().await;
    let (changed, removed, cut_short) =
        sync_json_in_pages(&mut raw, server.max_frame, &cursors, 500, 100).await;
    let expected: BTreeMap<u64, u64> = groups
        .iter()
        .enumerate()
        .filter(|&(i, _)| twice(i))
        .map(|(_, &g)| (g, 3))
        .collect();
    assert_eq!(changed, expected);
    assert_eq!(removed, vec![ghost]);
    assert!(cut_short > 0, "the limit cut some pages short");

    // The SDK comes back and resyncs in pages: every message of every
    // conversation, once, in order, before `Synced`.
    while a_ev.try_next().is_some() {}
    proxy.refuse(false);
    let events = events_until(&mut a_ev, |e| matches!(e, Event::Synced)).await;
    let mut got: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in events {
        if let Event::Message(m) = e {
            got.entry(m.conversation_id).or_default().push(text_of(&m));
        }
    }
    let expected: BTreeMap<u64, Vec<String>> = groups
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            let n = if twice(i) { 2 } else { 1 };
            (g, (0..n).map(|n| format!("{g}-{n}")).collect())
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "every message of every conversation, once, in order");
    server.stop().await;
}
