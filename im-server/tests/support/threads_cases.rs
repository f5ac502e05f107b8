// Replies, mentions, threads, forwarding and pins end to end, with the
// unread counts they move; included once per store backend by
// `tests/e2e.rs` (each inclusion defines `BACKEND`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_and_thread_replies_move_the_right_unread_counts() {
    use im_client_sdk::{SendOptions, SettingsChange};
    let server = TestServer::start(BACKEND).await;
    let (alice, _a) = server.register("alice").await;
    let (bob, _b) = server.register("bob").await;
    let (carol, _c) = server.register("carol").await;
    let g = alice.create_group("team", &[bob.user().id]).await.unwrap().id;
    let hello = alice.send_text(g, "hello").await.unwrap();
    bob.mark_read(g, hello.seq).await.unwrap();
    // (The group's "created" notice is unread for its creator too: issue 15.)
    alice.mark_read(g, hello.seq).await.unwrap();
    let counts = |c: v1::Conversation| (c.unread_count, c.unread_mention_count);
    assert_eq!(counts(bob.conversation(g).await.unwrap()), (0, 0));

    let to_bob = SendOptions {
        mentions: vec![bob.user().id, carol.user().id],
        ..Default::default()
    };
    let mention = alice.send_text_with(g, "@bob look", to_bob).await.unwrap();
    let all = SendOptions {
        mention_all: true,
        ..Default::default()
    };
    alice.send_text_with(g, "@all standup", all).await.unwrap();
    let in_thread = SendOptions {
        thread_root: Some(hello.message_id),
        mentions: vec![bob.user().id],
        ..Default::default()
    };
    let reply = alice.send_text_with(g, "in the thread, @bob", in_thread).await.unwrap();
    // Carol is no member: not kept among the mentions.
    let stored = bob.history(g, 0, 10).await.unwrap().messages;
    let stored_mention = stored.iter().find(|m| m.id == mention.message_id).unwrap();
    assert_eq!(stored_mention.mention_user_ids, [bob.user().id]);
    // Main timeline: two unread (the thread reply is the thread's); three mentions.
    assert_eq!(counts(bob.conversation(g).await.unwrap()), (2, 3));
    assert_eq!(counts(alice.conversation(g).await.unwrap()), (0, 0), "own messages");
    let thread = bob.thread(g, hello.message_id, 0, 10).await.unwrap();
    let summary = thread.summary.unwrap();
    assert_eq!((summary.reply_count, summary.unread_count, summary.last_reply_seq), (1, 1, reply.seq));
    assert_eq!(thread.replies.iter().map(|m| m.id).collect::<Vec<_>>(), [reply.message_id]);
    let read = bob.mark_thread_read(g, hello.message_id, reply.seq).await.unwrap();
    assert_eq!((read.unread_count, read.read_seq), (0, reply.seq));
    assert_eq!(bob.threads(g, 10).await.unwrap()[0].unread_count, 0);
    assert_eq!(alice.threads(g, 10).await.unwrap()[0].unread_count, 0, "her own reply");
    assert_eq!(counts(bob.conversation(g).await.unwrap()), (2, 3), "the thread's cursor is its own");

    // Marked unread: the mark shows, the counts stay; reading clears both.
    let marked = SettingsChange {
        marked_unread: Some(true),
        ..Default::default()
    };
    let c = bob.update_conversation_settings(g, marked).await.unwrap();
    assert!(c.settings.unwrap().marked_unread);
    assert_eq!(counts(c), (2, 3));
    let last = bob.conversation(g).await.unwrap().last_seq;
    bob.mark_read(g, last).await.unwrap();
    let c = bob.conversation(g).await.unwrap();
    assert!(!c.settings.unwrap().marked_unread);
    assert_eq!((c.unread_count, c.unread_mention_count, c.read_seq), (0, 0, last));
    // A recalled mention is no longer one.
    let again = SendOptions {
        mentions: vec![bob.user().id],
        ..Default::default()
    };
    let later = alice.send_text_with(g, "@bob one more", again).await.unwrap();
    assert_eq!(counts(bob.conversation(g).await.unwrap()), (1, 1));
    alice.recall(g, later.message_id).await.unwrap();
    assert_eq!(counts(bob.conversation(g).await.unwrap()), (0, 0));
    // Threads go one level deep; a quoted message must be in the conversation.
    let deeper = SendOptions {
        thread_root: Some(reply.message_id),
        ..Default::default()
    };
    let err = bob.send_text_with(g, "deeper", deeper).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::InvalidArgument));
    let dm = alice.send_direct(bob.user().id, "psst").await.unwrap();
    let across = SendOptions {
        reply_to: Some(dm.message_id),
        ..Default::default()
    };
    let err = bob.send_text_with(g, "quoting elsewhere", across).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_forwards_and_pins_reach_the_other_side() {
    use im_client_sdk::{ForwardTo, SendOptions};
    let server = TestServer::start(BACKEND).await;
    let (alice, _a) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (mallory, _m) = server.register("mallory").await;
    let g = alice.create_group("news", &[bob.user().id]).await.unwrap().id;
    let first = alice.send_text(g, "first").await.unwrap();
    let second = alice.send_text(g, "second").await.unwrap();
    let quote = SendOptions {
        reply_to: Some(first.message_id),
        ..Default::default()
    };
    let reply = bob.send_text_with(g, "about the first", quote).await.unwrap();
    let seen = messages(&mut bob_events, g, 4).await;
    let reply_seen = seen.iter().find(|m| m.id == reply.message_id).unwrap();
    let quoted = reply_seen.reply_to.unwrap();
    assert_eq!((quoted.message_id, quoted.seq, quoted.sender_id), (first.message_id, first.seq, alice.user().id));

    // Forwarded to Bob directly: as copies, and as one bundle.
    let ids = [first.message_id, second.message_id];
    let copies = alice.forward(g, &ids, ForwardTo::User(bob.user().id), false).await.unwrap();
    assert_eq!(copies.len(), 2);
    let dm = copies[0].conversation_id;
    let bundle = alice.forward(g, &ids, ForwardTo::Conversation(dm), true).await.unwrap();
    assert_eq!(bundle.len(), 1);
    let in_dm = messages(&mut bob_events, dm, 3).await;
    let origin = in_dm[0].forwarded.unwrap();
    assert_eq!((origin.sender_id, text_of(&in_dm[0])), (alice.user().id, "first".to_owned()));
    let Some(v1::content::Kind::Bundle(b)) = in_dm[2].content.clone().and_then(|c| c.kind) else {
        panic!("a bundle: {:?}", in_dm[2]);
    };
    let texts: Vec<_> = b
        .items
        .iter()
        .map(|i| i.content.as_ref().unwrap().as_text().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["first", "second"]);
    // A copy of a copy names the first original.
    let again = bob.forward(dm, &[in_dm[0].id], ForwardTo::Conversation(g), false).await.unwrap();
    let copy = bob.history(g, 0, 1).await.unwrap().messages.pop().unwrap();
    assert_eq!(copy.id, again[0].message_id);
    assert_eq!(copy.forwarded.unwrap().sender_id, alice.user().id);
    // Only what the forwarder can read, nothing recalled, no bundles by hand.
    let err = mallory.forward(g, &ids, ForwardTo::User(bob.user().id), false).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::PermissionDenied));
    alice.recall(g, second.message_id).await.unwrap();
    let err = alice.forward(g, &ids, ForwardTo::Conversation(dm), true).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::Conflict));
    let forged = v1::Content {
        kind: Some(v1::content::Kind::Bundle(v1::ForwardedBundle::default())),
    };
    let err = bob
        .send(v1::send_message::Target::ConversationId(g), forged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::PermissionDenied));

    // Pins: owners and admins in a group; anyone in a direct conversation.
    let err = bob.pin(g, first.message_id).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::PermissionDenied));
    let pinned = alice.pin(g, first.message_id).await.unwrap();
    assert_eq!(pinned.pinned_by, alice.user().id);
    let heard = wait_for(&mut bob_events, |e| matches!(e, Event::MessageUpdated(m) if m.pinned_at > 0)).await;
    let Event::MessageUpdated(heard) = heard else { unreachable!() };
    assert_eq!(heard, pinned);
    assert_eq!(bob.pinned(g, 10).await.unwrap(), [pinned]);
    bob.pin(dm, in_dm[1].id).await.unwrap();
    alice.unpin(g, first.message_id).await.unwrap();
    assert!(bob.pinned(g, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disappearing_messages_are_erased_on_every_device() {
    let server = TestServer::start(BACKEND).await;
    let (alice, _a) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (mallory, _m) = server.register("mallory").await;
    let g = alice.create_group("ephemeral", &[bob.user().id, mallory.user().id]).await.unwrap().id;
    let err = mallory.set_message_ttl(g, 5_000).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::PermissionDenied), "owners and admins only");
    for bad in [-1, 1_000, 400 * 86_400_000] {
        let err = alice.set_message_ttl(g, bad).await.unwrap_err();
        assert_eq!(err.code(), Some(v1::ErrorCode::InvalidArgument), "{bad}");
    }
    let conv = alice.set_message_ttl(g, 5_000).await.unwrap();
    assert_eq!(conv.message_ttl_ms, 5_000);
    let sent = alice.send_text(g, "this will self-destruct").await.unwrap();
    let seen = messages(&mut bob_events, g, 3).await;
    let notice = &seen[1];
    let Some(v1::content::Kind::System(s)) = notice.content.as_ref().and_then(|c| c.kind.clone()) else {
        panic!("a notice: {notice:?}");
    };
    assert_eq!((s.kind, s.ttl_ms, s.actor_id), (v1::SystemKind::MessageTtl as i32, 5_000, alice.user().id));
    assert_eq!(seen[2].expires_at, sent.server_time + 5_000);
    // Erased by the server when due (swept every second), on every device.
    let erased = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match bob_events.next().await {
                Some(Event::MessageUpdated(m)) if m.id == sent.message_id => return m,
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("erased within the sweep");
    assert!(erased.content.is_none() && erased.recalled_at >= erased.expires_at && erased.recalled_by == 0);
    let history = alice.history(g, 0, 10).await.unwrap().messages;
    assert!(history.last().unwrap().content.is_none());
    // Turned off: new messages stay.
    alice.set_message_ttl(g, 0).await.unwrap();
    let stays = alice.send_text(g, "this stays").await.unwrap();
    let last = bob.history(g, 0, 1).await.unwrap().messages.pop().unwrap();
    assert_eq!((last.id, last.expires_at), (stays.message_id, 0));
}
