// Each member's own settings of a conversation, end to end; included once
// per store backend by `tests/e2e.rs` (each inclusion defines `BACKEND`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_pins_mutes_archives_and_marks_unread_for_themselves() {
    use im_client_sdk::{MUTED_FOREVER, SettingsChange};
    let server = TestServer::start(BACKEND).await;
    let (alice, _alice_events) = server.register("alice").await;
    let (alice_laptop, mut laptop_events) = server.login("alice").await;
    let (bob, _bob_events) = server.register("bob").await;
    let (mallory, _mallory_events) = server.register("mallory").await;
    let older = alice.create_group("older", &[bob.user().id]).await.unwrap();
    let newer = alice.send_direct(bob.user().id, "latest").await.unwrap().conversation_id;
    let listed = alice.conversations().await.unwrap();
    assert_eq!(listed[0].id, newer, "latest activity first");

    let change = SettingsChange {
        pinned: Some(true),
        muted_until: Some(MUTED_FOREVER),
        archived: Some(true),
        marked_unread: Some(true),
    };
    let conv = alice.update_conversation_settings(older.id, change).await.unwrap();
    let mine = conv.settings.unwrap();
    assert!(mine.pinned_at > 0 && mine.muted_until == MUTED_FOREVER && mine.archived && mine.marked_unread);
    // Alice's other device hears it; the list puts the pinned one on top.
    let heard = wait_for(&mut laptop_events, |e| matches!(e, Event::ConversationSettings(_))).await;
    let Event::ConversationSettings(heard) = heard else { unreachable!() };
    assert_eq!((heard.conversation_id, heard.settings), (older.id, Some(mine)));
    let listed = alice_laptop.conversations().await.unwrap();
    assert_eq!(listed[0].id, older.id, "pinned first");
    assert_eq!(listed[0].settings, Some(mine));
    // They are Alice's alone.
    let bobs = bob.conversation(older.id).await.unwrap().settings.unwrap();
    assert_eq!(bobs, v1::ConversationSettings::default());

    // Reading clears "marked unread" and nothing else; unpinning, unmuting.
    alice.mark_read(older.id, 1).await.unwrap();
    let after = alice.conversation(older.id).await.unwrap().settings.unwrap();
    assert!(!after.marked_unread && after.archived && after.pinned_at == mine.pinned_at);
    let change = SettingsChange {
        pinned: Some(false),
        muted_until: Some(0),
        ..Default::default()
    };
    let after = alice.update_conversation_settings(older.id, change).await.unwrap().settings.unwrap();
    assert_eq!((after.pinned_at, after.muted_until, after.archived), (0, 0, true));

    // Members only; a time before 1970 is no time.
    let refused = mallory
        .update_conversation_settings(older.id, SettingsChange::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    let bad = SettingsChange {
        muted_until: Some(-5),
        ..Default::default()
    };
    let refused = alice.update_conversation_settings(older.id, bad).await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::InvalidArgument));
}
