// Changes to stored messages end to end: edits, recalls, reactions and
// deletions for oneself reach every device, live or on sync, and leave
// every device in the same state. Included once per store backend by
// `tests/e2e.rs` (each inclusion defines `BACKEND`).

/// What a device shows, built from its events alone: every message by id,
/// in its latest state.
#[derive(Default)]
struct Screen {
    messages: std::collections::BTreeMap<u64, v1::Message>,
    /// Seqs of `Event::Message`, in arrival order, per conversation.
    arrivals: Vec<u64>,
}

impl Screen {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Message(m) => {
                self.arrivals.push(m.seq);
                assert!(self.messages.insert(m.id, m.clone()).is_none(), "new once: {m:?}");
            }
            Event::MessageUpdated(m) => {
                assert!(self.messages.contains_key(&m.id), "an update of a message shown before");
                self.messages.insert(m.id, m.clone());
            }
            Event::MessagesDeleted { message_ids, .. } => {
                for id in message_ids {
                    if let Some(m) = self.messages.get_mut(id) {
                        *m = m.deleted_stub();
                    }
                }
            }
            _ => {}
        }
    }

    /// Applies events until `done` holds for this screen.
    async fn until(&mut self, events: &mut Events, done: impl Fn(&Screen) -> bool) {
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while !done(self) {
                let event = events.next().await.expect("event stream ended");
                self.apply(&event);
            }
        })
        .await
        .expect("the screen did not reach the expected state");
    }

    fn text(&self, id: u64) -> Option<String> {
        self.messages[&id].content.as_ref().and_then(|c| c.as_text()).map(str::to_owned)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_during_changes_ends_like_one_that_stayed_online() {
    let server = TestServer::start(BACKEND).await;
    let (alice, mut alice_events) = server.register("alice").await;
    let (bob, _bob_events) = server.register("bob").await;
    let (online, mut online_events) = server.login("bob").await;
    let way = server.cuttable().await;
    let login = im_client_sdk::Credentials::Login {
        username: "bob".into(),
        password: PASSWORD.into(),
    };
    let (offline, mut offline_events) = way.connect(login).await;
    let (mut at_alice, mut at_online, mut at_offline) = (Screen::default(), Screen::default(), Screen::default());
    let g = alice.create_group("changes", &[bob.user().id]).await.unwrap().id;
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(alice.send_text(g, &format!("before {i}")).await.unwrap().message_id);
    }
    // Everyone has the created notice and the five messages.
    let six = |s: &Screen| s.messages.len() == 6;
    at_offline.until(&mut offline_events, six).await;
    at_online.until(&mut online_events, six).await;
    let Cuttable::Proxy(proxy) = &way else { unreachable!("WebSocket backend") };
    proxy.refuse(true);
    way.cut();
    wait_for(&mut offline_events, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(!offline.is_connected());

    // While that device is away: edits, a recall, reactions, deletions for
    // Bob, new messages changed after newer ones were sent.
    alice.edit_text(g, before[0], "before 0, edited").await.unwrap();
    let edited = alice.edit_text(g, before[0], "before 0, edited twice").await.unwrap();
    let recalled = alice.recall(g, before[1]).await.unwrap();
    assert!(recalled.content.is_none() && recalled.recalled_by == alice.user().id);
    bob.react(g, before[2], "👍").await.unwrap();
    alice.react(g, before[2], "👍").await.unwrap();
    alice.react(g, before[2], "🎉").await.unwrap();
    bob.unreact(g, before[2], "👍").await.unwrap();
    let gone = bob.delete_for_me(g, &[before[3]]).await.unwrap();
    assert_eq!(gone.message_ids, [before[3]]);
    alice.edit_text(g, before[3], "edited after Bob deleted it").await.unwrap();
    let new1 = alice.send_text(g, "new 1").await.unwrap().message_id;
    let new2 = alice.send_text(g, "new 2").await.unwrap().message_id;
    let new3 = alice.send_text(g, "new 3").await.unwrap().message_id;
    alice.edit_text(g, new1, "new 1, edited after new 3").await.unwrap();
    bob.react(g, new2, "❤️").await.unwrap();
    bob.delete_for_me(g, &[new3, before[4]]).await.unwrap();
    let last = alice.send_text(g, "last").await.unwrap().message_id;
    alice.react(g, last, "✅").await.unwrap();

    // The device that stayed online saw all of it live.
    let settled = |s: &Screen| {
        s.messages.get(&last).is_some_and(|m| !m.reactions.is_empty())
            && s.messages.get(&new3).is_some_and(|m| m.deleted)
            && s.messages.get(&before[4]).is_some_and(|m| m.deleted)
    };
    at_online.until(&mut online_events, settled).await;
    // Alice (another user) never sees Bob's deletions.
    at_alice
        .until(&mut alice_events, |s| s.messages.get(&last).is_some_and(|m| !m.reactions.is_empty()))
        .await;
    assert!(at_alice.messages.values().all(|m| !m.deleted));
    assert_eq!(at_alice.text(before[3]).as_deref(), Some("edited after Bob deleted it"));

    // Back online: it syncs, and ends exactly where the other device is.
    proxy.refuse(false);
    let mut synced = false;
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !synced {
            let e = offline_events.next().await.expect("events");
            synced = matches!(e, Event::Synced);
            at_offline.apply(&e);
        }
    })
    .await
    .expect("synced");
    assert_eq!(at_offline.messages, at_online.messages, "field by field");
    let seqs: Vec<u64> = (1..=at_online.messages.len() as u64).collect();
    assert_eq!(at_offline.arrivals, seqs, "each message once, in seq order");
    assert_eq!(at_online.arrivals, seqs);

    // And the state is the one expected.
    let screen = &at_offline;
    assert_eq!(screen.messages[&before[0]], edited);
    assert_eq!(screen.text(before[0]).as_deref(), Some("before 0, edited twice"));
    assert!(screen.messages[&before[1]].recalled_at > 0 && screen.messages[&before[1]].content.is_none());
    let reactions: Vec<_> = screen.messages[&before[2]]
        .reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.count, r.user_ids.clone()))
        .collect();
    assert_eq!(
        reactions,
        [("👍", 1, vec![alice.user().id]), ("🎉", 1, vec![alice.user().id])]
    );
    for id in [before[3], before[4], new3] {
        assert_eq!(screen.messages[&id], at_alice.messages[&id].deleted_stub());
    }
    assert_eq!(screen.text(new1).as_deref(), Some("new 1, edited after new 3"));
    assert_eq!(screen.messages[&new2].reactions[0].user_ids, [bob.user().id]);
    // History and the conversation list agree with the screens.
    let history = offline.history(g, 0, 50).await.unwrap().messages;
    let by_id: std::collections::BTreeMap<u64, v1::Message> = history.into_iter().map(|m| (m.id, m)).collect();
    assert_eq!(by_id, at_online.messages);
    // Only the sender reads the edit history.
    let former = alice.edit_history(g, before[0]).await.unwrap();
    let former: Vec<_> = former.iter().map(|e| e.content.as_ref().unwrap().as_text().unwrap()).collect();
    assert_eq!(former, ["before 0", "before 0, edited"]);
    let refused = bob.edit_history(g, before[0]).await.unwrap_err();
    assert_eq!(refused.code(), Some(v1::ErrorCode::PermissionDenied));
    assert!(alice.edit_history(g, before[1]).await.unwrap().is_empty(), "gone with the recall");
    drop(online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_change_a_message() {
    let server = TestServer::start(BACKEND).await;
    let (alice, _a) = server.register("alice").await;
    let (bob, _b) = server.register("bob").await;
    let (mallory, _m) = server.register("mallory").await;
    let g = alice.create_group("rules", &[bob.user().id]).await.unwrap().id;
    let bobs = bob.send_text(g, "bob's").await.unwrap().message_id;
    let code = |r: Result<v1::Message, im_client_sdk::Error>| r.unwrap_err().code().unwrap();
    use v1::ErrorCode::*;
    // Edits: the sender only, same kind of content.
    assert_eq!(code(alice.edit_text(g, bobs, "not mine").await), PermissionDenied);
    let image = v1::Content {
        kind: Some(v1::content::Kind::Location(v1::Location {
            latitude: 1.0,
            longitude: 2.0,
            label: String::new(),
        })),
    };
    assert_eq!(code(bob.edit_message(g, bobs, image).await), InvalidArgument);
    assert_eq!(code(bob.edit_text(g, bobs, "   ").await), InvalidArgument);
    assert_eq!(code(bob.edit_text(g, 987_654, "x").await), NotFound);
    // Non-members change nothing, and learn nothing of messages elsewhere.
    assert_eq!(code(mallory.react(g, bobs, "👍").await), PermissionDenied);
    assert_eq!(code(mallory.recall(g, bobs).await), PermissionDenied);
    let err = mallory.delete_for_me(g, &[bobs]).await.unwrap_err();
    assert_eq!(err.code(), Some(PermissionDenied));
    // Reactions: one emoji.
    for bad in ["", "ok", "👍 👍", &"😀".repeat(20)] {
        assert_eq!(code(bob.react(g, bobs, bad).await), InvalidArgument, "{bad:?}");
    }
    // Recall: a plain member cannot recall another's message; the owner can.
    let alices = alice.send_text(g, "alice's").await.unwrap().message_id;
    assert_eq!(code(bob.recall(g, alices).await), PermissionDenied);
    let by_owner = alice.recall(g, bobs).await.unwrap();
    assert_eq!(by_owner.recalled_by, alice.user().id);
    assert_eq!(code(bob.edit_text(g, bobs, "too late").await), Conflict);
    assert_eq!(code(alice.react(g, bobs, "👍").await), Conflict);
    // Messages written by the server cannot be recalled.
    let notice = bob.history(g, 0, 1).await.unwrap();
    let first = alice.history_after(g, 0, 1).await.unwrap().messages[0].clone();
    assert_eq!(first.sender_id, 0);
    assert_eq!(code(alice.recall(g, first.id).await), PermissionDenied);
    assert!(!notice.messages.is_empty());
    // Deleting for oneself: at most 100 at once, none is nothing to do.
    let err = bob.delete_for_me(g, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(InvalidArgument));
    let many: Vec<u64> = (1..=101).collect();
    assert_eq!(bob.delete_for_me(g, &many).await.unwrap_err().code(), Some(TooLarge));
    // In a direct conversation nobody moderates: only the sender recalls.
    let dm = alice.send_direct(bob.user().id, "hi").await.unwrap();
    assert_eq!(code(bob.recall(dm.conversation_id, dm.message_id).await), PermissionDenied);
    alice.recall(dm.conversation_id, dm.message_id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recall_window_is_the_senders_only() {
    let server = TestServer::start_with(BACKEND, |c| c.limits.recall_window_secs = 1).await;
    let (alice, _a) = server.register("alice").await;
    let (bob, _b) = server.register("bob").await;
    let g = alice.create_group("window", &[bob.user().id]).await.unwrap().id;
    let bobs = bob.send_text(g, "quick").await.unwrap().message_id;
    let late = bob.send_text(g, "late").await.unwrap().message_id;
    bob.recall(g, bobs).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let err = bob.recall(g, late).await.unwrap_err();
    assert_eq!(err.code(), Some(v1::ErrorCode::PermissionDenied));
    // The owner may still.
    alice.recall(g, late).await.unwrap();
}
