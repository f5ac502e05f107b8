// Group administration end to end, through the SDK: an invitation reaches
// the invitee, who accepts; a join request is approved; a muted member's
// send is refused; a kicked member, a banned one and every member of a
// dissolved group learn it from the ordered history and drop the
// conversation. Included once per store backend by `tests/e2e.rs` (each
// inclusion defines `BACKEND`).

/// The system kind of a message, if it is a system message.
fn system_kind(m: &v1::Message) -> Option<v1::SystemKind> {
    match m.content.as_ref()?.kind.as_ref()? {
        v1::content::Kind::System(s) => v1::SystemKind::try_from(s.kind).ok(),
        _ => None,
    }
}

/// Waits for the system message of `kind` in `conversation`.
async fn system_message(events: &mut Events, conversation: u64, kind: v1::SystemKind) -> v1::Message {
    let found = wait_for(events, |e| {
        matches!(e, Event::Message(m) if m.conversation_id == conversation && system_kind(m) == Some(kind))
    })
    .await;
    let Event::Message(m) = found else { unreachable!() };
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_join_requests_and_roles_reach_every_device() {
    let server = TestServer::start(BACKEND).await;
    let (alice, mut alice_events) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (carol, mut carol_events) = server.register("carol").await;
    let group = alice.create_group("club", &[]).await.unwrap();

    // Bob is invited, hears it live, and accepts.
    alice.invite_members(group.id, &[bob.user().id]).await.unwrap();
    let invited = wait_for(&mut bob_events, |e| matches!(e, Event::Invitation(_))).await;
    let Event::Invitation(invitation) = invited else { unreachable!() };
    assert_eq!(invitation.conversation.as_ref().unwrap().title, "club");
    assert_eq!(invitation.invited_by, alice.user().id);
    assert_eq!(bob.invitations().await.unwrap().len(), 1);
    let joined = bob.accept_invitation(group.id).await.unwrap();
    assert_eq!(joined.role, v1::Role::Member as i32);
    system_message(&mut alice_events, group.id, v1::SystemKind::Joined).await;
    assert!(bob.invitations().await.unwrap().is_empty());

    // Approval: Carol asks, Alice sees the request in the history and lets
    // her in; Carol gets the group's messages from then on.
    alice
        .set_join_policy(group.id, v1::JoinPolicy::Approval)
        .await
        .unwrap();
    let asked = carol.join(group.id).await.unwrap();
    assert!(asked.join_requested);
    system_message(&mut alice_events, group.id, v1::SystemKind::JoinRequested).await;
    let (requests, more) = alice.join_requests(group.id, 0).await.unwrap();
    assert_eq!((requests.len(), more), (1, false));
    assert_eq!(requests[0].user_id, carol.user().id);
    alice
        .decide_join_request(group.id, carol.user().id, true)
        .await
        .unwrap();
    system_message(&mut carol_events, group.id, v1::SystemKind::JoinApproved).await;

    // Roles: Bob becomes admin (everyone sees it), then owner.
    alice.set_role(group.id, bob.user().id, v1::Role::Admin).await.unwrap();
    let promoted = system_message(&mut carol_events, group.id, v1::SystemKind::RoleChanged).await;
    let Some(v1::content::Kind::System(n)) = promoted.content.and_then(|c| c.kind) else { unreachable!() };
    assert_eq!((n.user_ids, n.role), (vec![bob.user().id], v1::Role::Admin as i32));
    alice.transfer_ownership(group.id, bob.user().id).await.unwrap();
    system_message(&mut bob_events, group.id, v1::SystemKind::OwnershipTransferred).await;
    let (members, more) = carol.members_page(group.id, 0, 0).await.unwrap();
    assert!(!more);
    let role_of = |user: u64| members.iter().find(|m| m.user_id == user).map(|m| m.role);
    assert_eq!(role_of(bob.user().id), Some(v1::Role::Owner as i32));
    assert_eq!(role_of(alice.user().id), Some(v1::Role::Admin as i32));
    assert_eq!(role_of(carol.user().id), Some(v1::Role::Member as i32));

    // A member may not do an admin's work.
    let refused = carol.kick(group.id, alice.user().id).await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutes_kicks_bans_and_dissolving_are_enforced_and_heard() {
    let server = TestServer::start(BACKEND).await;
    let (alice, mut alice_events) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bob").await;
    let (carol, mut carol_events) = server.register("carol").await;
    let (dave, mut dave_events) = server.register("dave").await;
    let ids = [bob.user().id, carol.user().id, dave.user().id];
    let group = alice.create_group("moderated", &ids).await.unwrap();

    // Bob is muted: his send is refused, the others see the notice; lifted,
    // he speaks again.
    let muted = alice
        .mute_member(group.id, bob.user().id, im_client_sdk::MUTED_UNTIL_LIFTED)
        .await
        .unwrap();
    assert_eq!(muted.member_count, 4);
    system_message(&mut bob_events, group.id, v1::SystemKind::MemberMuted).await;
    let me = bob.conversation(group.id).await.unwrap();
    assert_eq!(me.send_muted_until, i64::MAX);
    let refused = bob.send_text(group.id, "let me talk").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    alice.mute_member(group.id, bob.user().id, 0).await.unwrap();
    bob.send_text(group.id, "thanks").await.unwrap();

    // The whole group muted: only the owner speaks.
    alice.mute_group(group.id, true).await.unwrap();
    let refused = carol.send_text(group.id, "hello?").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    alice.send_text(group.id, "announcement").await.unwrap();
    alice.mute_group(group.id, false).await.unwrap();

    // Carol is removed: she sees it, then the conversation goes.
    alice.kick(group.id, carol.user().id).await.unwrap();
    system_message(&mut carol_events, group.id, v1::SystemKind::Removed).await;
    wait_for(&mut carol_events, |e| matches!(e, Event::ConversationRemoved(id) if *id == group.id)).await;
    let refused = carol.send_text(group.id, "still here?").await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));

    // Dave is banned: removed, and he cannot come back.
    alice.ban(group.id, dave.user().id).await.unwrap();
    system_message(&mut dave_events, group.id, v1::SystemKind::Banned).await;
    wait_for(&mut dave_events, |e| matches!(e, Event::ConversationRemoved(id) if *id == group.id)).await;
    alice.set_join_policy(group.id, v1::JoinPolicy::Open).await.unwrap();
    let refused = dave.join(group.id).await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    let (bans, _) = alice.bans(group.id, 0, 0).await.unwrap();
    assert_eq!(bans.iter().map(|b| b.user_id).collect::<Vec<_>>(), vec![dave.user().id]);
    // Carol, only kicked, comes back on her own now that it is open.
    assert_eq!(carol.join(group.id).await.unwrap().role, v1::Role::Member as i32);

    // Dissolved: every member hears it and drops the conversation (Carol,
    // who may still be fetching the history she rejoined, at least drops it).
    alice.dissolve(group.id).await.unwrap();
    for events in [&mut alice_events, &mut bob_events] {
        system_message(events, group.id, v1::SystemKind::Dissolved).await;
        wait_for(events, |e| matches!(e, Event::ConversationRemoved(id) if *id == group.id)).await;
    }
    wait_for(&mut carol_events, |e| matches!(e, Event::ConversationRemoved(id) if *id == group.id)).await;
    let gone = bob.conversation(group.id).await.unwrap_err();
    assert_eq!(gone.code(), Some(v1::ErrorCode::NotFound));
    assert!(bob.conversations().await.unwrap().iter().all(|c| c.id != group.id));
}
