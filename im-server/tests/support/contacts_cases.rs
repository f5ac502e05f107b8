// Contacts and blocks, end to end through the SDK; included once per store
// backend by `tests/e2e.rs` (each inclusion defines `BACKEND`).

/// The next contact event of this kind.
async fn contact(events: &mut Events, kind: v1::ContactEventKind) -> v1::ContactEvent {
    match wait_for(events, |e| matches!(e, Event::Contact(c) if c.kind() == kind)).await {
        Event::Contact(c) => c,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

fn code(e: im_client_sdk::Error) -> Option<v1::ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friend_requests_are_sent_answered_and_heard_on_every_device() {
    let server = TestServer::start(BACKEND).await;
    let (alice, _alice_events) = server.register("alice").await;
    let (_alice_laptop, mut laptop_events) = server.login("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (carol, mut carol_events) = server.register("carol").await;
    let (a, b, c) = (alice.user().id, bob.user().id, carol.user().id);

    // Bad requests get typed errors.
    assert_eq!(
        code(alice.send_friend_request(a, "me").await.unwrap_err()),
        Some(v1::ErrorCode::InvalidArgument)
    );
    assert_eq!(
        code(alice.send_friend_request(999_999, "who").await.unwrap_err()),
        Some(v1::ErrorCode::NotFound)
    );
    assert_eq!(
        code(alice.send_friend_request(b, &"x".repeat(501)).await.unwrap_err()),
        Some(v1::ErrorCode::TooLarge)
    );

    // Sent: Bob and Alice's other device hear it.
    let sent = alice.send_friend_request(b, "hi Bob").await.unwrap();
    assert_eq!(sent.state(), v1::FriendRequestState::Pending);
    let heard = contact(&mut bob_events, v1::ContactEventKind::Request).await;
    assert_eq!((heard.from_user_id, heard.to_user_id), (a, b));
    assert_eq!(heard.request.unwrap().message, "hi Bob");
    contact(&mut laptop_events, v1::ContactEventKind::Request).await;
    assert_eq!(
        code(alice.send_friend_request(b, "again").await.unwrap_err()),
        Some(v1::ErrorCode::Conflict),
        "a duplicate"
    );
    let listed = bob.friend_requests().await.unwrap();
    assert_eq!(listed.incoming.len(), 1);
    assert!(listed.outgoing.is_empty());
    assert_eq!(alice.friend_requests().await.unwrap().outgoing[0].to_user_id, b);

    // Declined, asked again, accepted.
    let declined = bob.decline_friend_request(a).await.unwrap();
    assert_eq!(declined.state(), v1::FriendRequestState::Declined);
    contact(&mut laptop_events, v1::ContactEventKind::Declined).await;
    assert_eq!(
        code(bob.accept_friend_request(a).await.unwrap_err()),
        Some(v1::ErrorCode::NotFound),
        "nothing pending any more"
    );
    alice.send_friend_request(b, "please").await.unwrap();
    contact(&mut bob_events, v1::ContactEventKind::Request).await;
    bob.accept_friend_request(a).await.unwrap();
    let accepted = contact(&mut laptop_events, v1::ContactEventKind::Accepted).await;
    assert_eq!((accepted.from_user_id, accepted.to_user_id), (b, a));
    let friends = alice.friends().await.unwrap();
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].user.as_ref().unwrap().username, "bob");
    assert_eq!(bob.friends().await.unwrap()[0].user.as_ref().unwrap().id, a);

    // Asking someone who asked us makes us friends at once.
    carol.send_friend_request(a, "hello").await.unwrap();
    let mutual = alice.send_friend_request(c, "hello back").await.unwrap();
    assert_eq!(mutual.state(), v1::FriendRequestState::Accepted);
    contact(&mut carol_events, v1::ContactEventKind::Accepted).await;
    assert_eq!(carol.friends().await.unwrap()[0].user.as_ref().unwrap().id, a);
    assert_eq!(alice.friends().await.unwrap().len(), 2);

    // Removed: both hear it, and the lists agree.
    alice.remove_friend(b).await.unwrap();
    let removed = contact(&mut bob_events, v1::ContactEventKind::Removed).await;
    assert_eq!(removed.from_user_id, a);
    assert!(bob.friends().await.unwrap().is_empty());
    assert_eq!(
        code(alice.remove_friend(b).await.unwrap_err()),
        Some(v1::ErrorCode::NotFound)
    );
    // A pending request is withdrawn by its sender.
    bob.send_friend_request(c, "hi").await.unwrap();
    bob.remove_friend(c).await.unwrap();
    contact(&mut carol_events, v1::ContactEventKind::Cancelled).await;
    assert!(carol.friend_requests().await.unwrap().incoming.iter().all(|r| r.from_user_id != b));
    server.stop().await;
}

/// Issue test 3: a blocked user's messages and presence never reach the
/// blocker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_users_messages_and_presence_never_reach_the_blocker() {
    let server = TestServer::start(BACKEND).await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (mallory, mallory_events) = server.register("mallory").await;
    let (carol, mut carol_events) = server.register("carol").await;
    let (b, m) = (bob.user().id, mallory.user().id);
    let group = carol.create_group("three", &[b, m]).await.unwrap();
    messages(&mut bob_events, group.id, 1).await; // "created"
    messages(&mut carol_events, group.id, 1).await;
    let direct = mallory.send_direct(b, "hello Bob").await.unwrap().conversation_id;
    messages(&mut bob_events, direct, 1).await;
    mallory.send_friend_request(b, "be my friend").await.unwrap();
    contact(&mut bob_events, v1::ContactEventKind::Request).await;

    bob.block(m).await.unwrap();
    let blocked = bob.blocked().await.unwrap();
    assert_eq!(blocked[0].user.as_ref().unwrap().id, m);
    assert!(bob.friend_requests().await.unwrap().incoming.is_empty(), "her request is gone");
    assert_eq!(
        code(bob.block(m).await.unwrap_err()),
        Some(v1::ErrorCode::Conflict)
    );

    // Direct messages and friend requests: refused, telling nothing more.
    let refused = mallory.send_direct(b, "let me in").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    assert!(refused.to_string().contains("cannot message this user"), "{refused}");
    let refused = mallory.send_friend_request(b, "again").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    assert_eq!(
        bob.send_direct(m, "you are blocked").await.unwrap_err().code(),
        Some(v1::ErrorCode::PermissionDenied),
        "the blocker unblocks to write"
    );

    // In the group: Carol gets Mallory's message live, Bob only a stub
    // (his client fills the gap Carol's next message shows).
    mallory.send_text(group.id, "mallory in the group").await.unwrap();
    let got = messages(&mut carol_events, group.id, 1).await;
    assert_eq!(text_of(&got[0]), "mallory in the group");
    carol.send_text(group.id, "carol after").await.unwrap();
    let seen = messages(&mut bob_events, group.id, 2).await;
    assert!(seen[0].deleted && seen[0].content.is_none(), "{:?}", seen[0]);
    assert_eq!(seen[0].sender_id, m);
    assert_eq!(text_of(&seen[1]), "carol after");
    let history = bob.history(group.id, 0, 10).await.unwrap().messages;
    assert!(
        history
            .iter()
            .filter(|x| x.sender_id == m)
            .all(|x| x.deleted && x.content.is_none())
    );
    let listed = bob.conversation(group.id).await.unwrap();
    let visible = history.iter().filter(|x| x.sender_id != b && !x.deleted).count();
    assert_eq!(listed.unread_count, visible as u64, "Mallory's message is not unread for Bob");

    // Presence: neither sees the other's, Carol sees both.
    assert!(bob.presence(&[m]).await.unwrap().is_empty());
    assert!(mallory.presence(&[b]).await.unwrap().is_empty());
    assert_eq!(carol.presence(&[m]).await.unwrap().len(), 1);
    mallory.close();
    let offline = wait_for(
        &mut carol_events,
        |e| matches!(e, Event::Presence(p) if p.user_id == m && !p.online),
    )
    .await;
    assert!(matches!(offline, Event::Presence(_)));
    drop(mallory_events);
    // Bob goes away; Mallory comes back and writes meanwhile.
    bob.close();
    drop(bob_events);
    let (mallory, _mallory_events) = server.login("mallory").await;
    wait_for(
        &mut carol_events,
        |e| matches!(e, Event::Presence(p) if p.user_id == m && p.online),
    )
    .await;
    mallory.send_text(group.id, "while Bob was away").await.unwrap();
    // Bob's sync after the reconnect shows it as a stub only.
    let (bob, mut bob_events) = server.login("bob").await;
    let synced = events_until(&mut bob_events, |e| matches!(e, Event::Synced)).await;
    let from_mallory: Vec<&v1::Message> = synced
        .iter()
        .filter_map(|e| match e {
            Event::Message(x) if x.sender_id == m && x.conversation_id == group.id => Some(x),
            _ => None,
        })
        .collect();
    assert!(!from_mallory.is_empty());
    assert!(from_mallory.iter().all(|x| x.deleted && x.content.is_none()));
    assert!(
        synced
            .iter()
            .all(|e| !matches!(e, Event::Presence(p) if p.user_id == m)),
        "no presence of Mallory"
    );
    // Mallory going away and back is never heard by Bob.
    mallory.close();
    wait_for(
        &mut carol_events,
        |e| matches!(e, Event::Presence(p) if p.user_id == m && !p.online),
    )
    .await;
    let (mallory, _mallory_events) = server.login("mallory").await;
    wait_for(
        &mut carol_events,
        |e| matches!(e, Event::Presence(p) if p.user_id == m && p.online),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    while let Some(e) = bob_events.try_next() {
        assert!(
            !matches!(&e, Event::Presence(p) if p.user_id == m),
            "Bob heard Mallory's presence: {e:?}"
        );
        assert!(
            !matches!(&e, Event::Message(x) if x.sender_id == m && !x.deleted && x.conversation_id == group.id),
            "Bob got Mallory's message: {e:?}"
        );
    }

    // Unblocked: new messages flow again, live; the old ones stay stubs.
    bob.unblock(m).await.unwrap();
    assert!(bob.blocked().await.unwrap().is_empty());
    mallory.send_text(group.id, "hi again").await.unwrap();
    let live = wait_for(&mut bob_events, |e| {
        matches!(e, Event::Message(x) if x.sender_id == m && !x.deleted)
    })
    .await;
    let Event::Message(live) = live else { unreachable!() };
    assert_eq!(text_of(&live), "hi again");
    mallory.send_direct(b, "direct again").await.unwrap();
    let history = bob.history(group.id, 0, 10).await.unwrap().messages;
    assert_eq!(
        history.iter().filter(|x| x.sender_id == m && x.deleted).count(),
        2
    );
    assert!(!bob.presence(&[m]).await.unwrap().is_empty(), "presence again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_can_require_friendship() {
    let server = TestServer::start_with(BACKEND, |c| c.contacts.direct_requires_friendship = true).await;
    let (alice, _alice_events) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (a, b) = (alice.user().id, bob.user().id);
    let refused = alice.send_direct(b, "hi").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    assert!(alice.conversations().await.unwrap().is_empty(), "nothing created");
    // Groups know no such rule.
    let group = alice.create_group("g", &[b]).await.unwrap();
    alice.send_text(group.id, "in a group").await.unwrap();

    alice.send_friend_request(b, "hi").await.unwrap();
    contact(&mut bob_events, v1::ContactEventKind::Request).await;
    bob.accept_friend_request(a).await.unwrap();
    let direct = alice.send_direct(b, "friends now").await.unwrap().conversation_id;
    bob.send_text(direct, "indeed").await.unwrap();
    bob.remove_friend(a).await.unwrap();
    let refused = alice.send_text(direct, "still?").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    server.stop().await;
}
