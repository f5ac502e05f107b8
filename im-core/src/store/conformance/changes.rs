//! Changes to stored messages: edits, recalls, reactions, deletions for
//! one member; their versions, hooks and how each member sees them.

use super::{group, text, user};
use crate::model::*;
use crate::store::{Store, StoreError};
use im_protocol::v1;
use std::sync::Arc;

fn change(
    conv: ConversationId,
    message: MessageId,
    actor: UserId,
    at: i64,
    kind: ChangeKind,
) -> MessageChange {
    MessageChange {
        conversation_id: conv,
        message_id: message,
        actor,
        at,
        kind,
    }
}

fn react(emoji: &str, remove: bool) -> ChangeKind {
    ChangeKind::React {
        emoji: emoji.into(),
        remove,
    }
}

fn no_hook() -> ChangeHook {
    Box::new(|_| panic!("no hook when nothing changes"))
}

fn hook() -> ChangeHook {
    Box::new(|_| {})
}

fn body(m: &v1::Message) -> Option<&str> {
    m.content.as_ref().and_then(|c| c.as_text())
}

pub async fn edits_take_versions_and_keep_the_former_contents(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let sent = store
        .append_message(text(g.id, a.id, "helo", None))
        .await
        .unwrap()
        .message;
    let other = store
        .append_message(text(g.id, b.id, "hi", None))
        .await
        .unwrap()
        .message;
    let edit = |body: &str, at| change(g.id, sent.id, a.id, at, ChangeKind::Edit(v1::Content::text(body)));
    let first = store.change_message(edit("hello", 10), hook()).await.unwrap();
    assert!(first.changed);
    assert_eq!((first.message.version, first.message.edited_at), (3, 10));
    assert_eq!((first.message.seq, body(&first.message)), (1, Some("hello")));
    assert_eq!(&first.members[..], &[a.id, b.id], "the members hear of it");
    let second = store.change_message(edit("hello!", 20), hook()).await.unwrap();
    assert_eq!((second.message.version, second.message.edited_at), (4, 20));
    // The same content again changes nothing.
    let same = store.change_message(edit("hello!", 30), no_hook()).await.unwrap();
    assert!(!same.changed);
    assert_eq!(same.message, second.message);
    let conv = store.conversation(g.id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.last_version), (2, 4));
    let stored = store.message(g.id, sent.id).await.unwrap().unwrap();
    assert_eq!(stored, second.message);
    assert_eq!(
        store.history(g.id, b.id, Page::After(0), 10).await.unwrap()[0],
        stored
    );
    let former = store.edit_history(g.id, sent.id).await.unwrap();
    let former: Vec<_> = former
        .iter()
        .map(|f| (f.content.as_text().unwrap(), f.written_at))
        .collect();
    assert_eq!(
        former,
        [("helo", 3), ("hello", 10)],
        "each former content, when written"
    );
    assert!(store.edit_history(g.id, other.id).await.unwrap().is_empty());
    // The change log holds each message once, at its latest version.
    let log = store.changes(g.id, b.id, 0, 0, 10).await.unwrap();
    let versions: Vec<_> = log.messages.iter().map(|m| (m.seq, m.version)).collect();
    assert_eq!(versions, [(2, 2), (1, 4)]);
    assert_eq!(
        store.changes(g.id, b.id, 2, 0, 10).await.unwrap().messages,
        [stored]
    );
    // Checked in the transaction: a member, a message of this conversation.
    let c = user(&store, "c").await;
    let outsider = change(g.id, sent.id, c.id, 40, ChangeKind::Edit(v1::Content::text("x")));
    assert!(matches!(
        store.change_message(outsider, no_hook()).await,
        Err(StoreError::NotMember(_))
    ));
    let elsewhere = group(&store, a.id, vec![]).await;
    let wrong = change(
        elsewhere.id,
        sent.id,
        a.id,
        40,
        ChangeKind::Edit(v1::Content::text("x")),
    );
    assert!(matches!(
        store.change_message(wrong, no_hook()).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.message(elsewhere.id, sent.id).await.unwrap().is_none());
    let nowhere = change(987_654, sent.id, a.id, 40, react("👍", false));
    assert!(matches!(
        store.change_message(nowhere, no_hook()).await,
        Err(StoreError::NotMember(_))
    ));
    assert!(matches!(
        store
            .hide_messages(987_654, a.id, &[sent.id], Box::new(|_| {}))
            .await,
        Err(StoreError::NotMember(_))
    ));
}

pub async fn recall_erases_content_reactions_and_edits(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let sent = store
        .append_message(text(g.id, a.id, "oops", None))
        .await
        .unwrap()
        .message;
    let edit = ChangeKind::Edit(v1::Content::text("oops!"));
    store
        .change_message(change(g.id, sent.id, a.id, 5, edit), hook())
        .await
        .unwrap();
    store
        .change_message(change(g.id, sent.id, b.id, 6, react("😮", false)), hook())
        .await
        .unwrap();
    assert_eq!(store.unread_count(g.id, b.id, 0).await.unwrap(), 1);
    let recalled = store
        .change_message(change(g.id, sent.id, a.id, 7, ChangeKind::Recall), hook())
        .await
        .unwrap();
    let m = &recalled.message;
    assert!(recalled.changed);
    assert_eq!((m.recalled_at, m.recalled_by, m.version, m.seq), (7, a.id, 4, 1));
    assert!(m.content.is_none() && m.reactions.is_empty() && m.edited_at == 0);
    assert_eq!(store.message(g.id, sent.id).await.unwrap().as_ref(), Some(m));
    assert!(store.edit_history(g.id, sent.id).await.unwrap().is_empty());
    assert_eq!(store.unread_count(g.id, b.id, 0).await.unwrap(), 0, "not unread");
    assert!(store.unread_counts(b.id, &[(g.id, 0)]).await.unwrap().is_empty());
    // Recalling again changes nothing; editing or reacting is refused.
    let again = store
        .change_message(change(g.id, sent.id, b.id, 8, ChangeKind::Recall), no_hook())
        .await
        .unwrap();
    assert!(!again.changed && again.message == *m);
    let edit = ChangeKind::Edit(v1::Content::text("back"));
    for kind in [edit, react("👍", false)] {
        assert!(matches!(
            store
                .change_message(change(g.id, sent.id, a.id, 9, kind), no_hook())
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
    let last = store.last_messages(b.id, &[g.id]).await.unwrap();
    assert_eq!(last, std::slice::from_ref(m));
}

pub async fn reactions_are_one_per_user_per_emoji(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let mut others = Vec::new();
    for i in 0..24 {
        others.push(user(&store, &format!("r{i}")).await.id);
    }
    let g = group(&store, a.id, others.clone()).await;
    let sent = store
        .append_message(text(g.id, a.id, "vote", None))
        .await
        .unwrap()
        .message;
    let on = |actor, at, kind| change(g.id, sent.id, actor, at, kind);
    let added = store
        .change_message(on(a.id, 10, react("👍", false)), hook())
        .await
        .unwrap();
    assert_eq!(added.message.version, 2);
    // Twice is once; removing an absent one is nothing.
    store
        .change_message(on(a.id, 11, react("👍", false)), no_hook())
        .await
        .unwrap();
    store
        .change_message(on(a.id, 11, react("🎉", true)), no_hook())
        .await
        .unwrap();
    // Later users, some at the same time (ordered by user id then).
    for (i, &u) in others.iter().enumerate() {
        let at = 20 + (i as i64 / 2);
        store
            .change_message(on(u, at, react("🎉", false)), hook())
            .await
            .unwrap();
    }
    store
        .change_message(on(others[0], 40, react("👍", false)), hook())
        .await
        .unwrap();
    let m = store.message(g.id, sent.id).await.unwrap().unwrap();
    let summary: Vec<_> = m.reactions.iter().map(|r| (r.emoji.as_str(), r.count)).collect();
    assert_eq!(
        summary,
        [("👍", 2), ("🎉", 24)],
        "in first-use order, with counts"
    );
    assert_eq!(m.reactions[0].user_ids, [a.id, others[0]]);
    assert_eq!(
        m.reactions[1].user_ids,
        &others[..REACTION_USERS_LISTED],
        "the first ones listed"
    );
    assert_eq!(m.version, 2 + 24 + 1);
    // Taking back: the next user moves up; the last one removes the emoji.
    store
        .change_message(on(others[3], 50, react("🎉", true)), hook())
        .await
        .unwrap();
    store
        .change_message(on(a.id, 51, react("👍", true)), hook())
        .await
        .unwrap();
    store
        .change_message(on(others[0], 52, react("👍", true)), hook())
        .await
        .unwrap();
    let m = store.message(g.id, sent.id).await.unwrap().unwrap();
    assert_eq!(m.reactions.len(), 1);
    let party = &m.reactions[0];
    assert_eq!((party.emoji.as_str(), party.count), ("🎉", 23));
    let expected: Vec<_> = others
        .iter()
        .filter(|&&u| u != others[3])
        .take(REACTION_USERS_LISTED)
        .copied()
        .collect();
    assert_eq!(party.user_ids, expected);
    // Back again: it goes last in first-use order.
    store
        .change_message(on(a.id, 60, react("👍", false)), hook())
        .await
        .unwrap();
    let m = store.message(g.id, sent.id).await.unwrap().unwrap();
    let order: Vec<_> = m.reactions.iter().map(|r| r.emoji.as_str()).collect();
    assert_eq!(order, ["🎉", "👍"]);
    // At most MAX_REACTION_KINDS different emoji; existing ones still count.
    for i in m.reactions.len()..MAX_REACTION_KINDS {
        let emoji = char::from_u32(0x1F600 + i as u32).unwrap().to_string();
        store
            .change_message(on(a.id, 70, react(&emoji, false)), hook())
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .change_message(on(a.id, 80, react("🦀", false)), no_hook())
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .change_message(on(others[1], 80, react("👍", false)), hook())
        .await
        .unwrap();
    let m = store.message(g.id, sent.id).await.unwrap().unwrap();
    assert_eq!(m.reactions.len(), MAX_REACTION_KINDS);
    assert_eq!(store.history(g.id, a.id, Page::After(0), 1).await.unwrap()[0], m);
}

pub async fn deletions_for_me_are_each_members_own(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let mut sent = Vec::new();
    for body in ["one", "two", "three"] {
        sent.push(
            store
                .append_message(text(g.id, a.id, body, None))
                .await
                .unwrap()
                .message,
        );
    }
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let recorder = |seen: &Arc<parking_lot::Mutex<Vec<Hidden>>>| -> HideHook {
        let seen = seen.clone();
        Box::new(move |h: &Hidden| seen.lock().push(h.clone()))
    };
    let hidden = store
        .hide_messages(g.id, b.id, &[sent[2].id, sent[0].id, sent[2].id], recorder(&seen))
        .await
        .unwrap();
    assert_eq!(
        hidden.message_ids,
        [sent[2].id, sent[0].id],
        "once each, in the order asked"
    );
    assert_eq!(hidden.private_version, 1);
    assert_eq!(*seen.lock(), std::slice::from_ref(&hidden));
    // Nothing new: nothing changes, no hook.
    let again = store
        .hide_messages(g.id, b.id, &[sent[0].id], Box::new(|_| panic!("no hook")))
        .await
        .unwrap();
    assert!(again.message_ids.is_empty());
    assert_eq!(again.private_version, 1);
    // The shared log did not move; b's private one did.
    let conv = store.conversation(g.id).await.unwrap().unwrap();
    assert_eq!(conv.last_version, 3);
    assert_eq!(
        store.member(g.id, b.id).await.unwrap().unwrap().private_version,
        1
    );
    assert_eq!(
        store.member(g.id, a.id).await.unwrap().unwrap().private_version,
        0
    );
    // b sees stubs; a sees the messages.
    let b_view = store.history(g.id, b.id, Page::After(0), 10).await.unwrap();
    assert_eq!(
        b_view,
        [sent[0].deleted_stub(), sent[1].clone(), sent[2].deleted_stub()]
    );
    assert!(b_view[0].content.is_none() && b_view[0].deleted && b_view[0].version == 0);
    assert_eq!(store.history(g.id, a.id, Page::After(0), 10).await.unwrap(), sent);
    assert_eq!(
        store.last_messages(b.id, &[g.id]).await.unwrap(),
        [sent[2].deleted_stub()]
    );
    assert_eq!(
        store.last_messages(a.id, &[g.id]).await.unwrap(),
        [sent[2].clone()]
    );
    // The change log as b sees it: stubs, and the private part.
    let page = store.changes(g.id, b.id, 0, 0, 10).await.unwrap();
    assert_eq!(page.messages, b_view);
    assert_eq!(
        (page.deleted.clone(), page.private_version),
        (vec![sent[0].id, sent[2].id], 1)
    );
    let later = store
        .hide_messages(g.id, b.id, &[sent[1].id], Box::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(later.private_version, 2);
    let page = store.changes(g.id, b.id, 3, 1, 10).await.unwrap();
    assert!(page.messages.is_empty());
    assert_eq!((page.deleted, page.private_version), (vec![sent[1].id], 2));
    let a_page = store.changes(g.id, a.id, 0, 0, 10).await.unwrap();
    assert!(a_page.deleted.is_empty() && a_page.private_version == 0);
    // A public change to a hidden message stays a stub for b.
    let edit = change(
        g.id,
        sent[0].id,
        a.id,
        9,
        ChangeKind::Edit(v1::Content::text("uno")),
    );
    store.change_message(edit, hook()).await.unwrap();
    assert_eq!(
        store.changes(g.id, b.id, 3, 2, 10).await.unwrap().messages,
        [sent[0].deleted_stub()]
    );
    // Refused whole: not a member; a message of another conversation.
    let c = user(&store, "c").await;
    assert!(matches!(
        store
            .hide_messages(g.id, c.id, &[sent[0].id], Box::new(|_| {}))
            .await,
        Err(StoreError::NotMember(_))
    ));
    let elsewhere = group(&store, a.id, vec![b.id]).await;
    let foreign = store
        .append_message(text(elsewhere.id, a.id, "x", None))
        .await
        .unwrap()
        .message;
    assert!(matches!(
        store
            .hide_messages(g.id, b.id, &[sent[1].id, foreign.id], Box::new(|_| {}))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.member(g.id, b.id).await.unwrap().unwrap().private_version,
        2
    );
}

pub async fn changes_and_appends_commit_in_version_order(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    let first = store
        .append_message(text(g.id, a.id, "target", None))
        .await
        .unwrap()
        .message;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..60)
        .map(|n| {
            let store = store.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if n % 2 == 0 {
                    let hook: CommitHook = Box::new(move |x: &Appended| seen.lock().push(x.message.version));
                    store
                        .append_message_then(text(g.id, a.id, "m", None), hook)
                        .await
                        .unwrap();
                } else {
                    let emoji = char::from_u32(0x1F600 + n as u32).unwrap().to_string();
                    let hook: ChangeHook = Box::new(move |x: &Changed| seen.lock().push(x.message.version));
                    store
                        .change_message(change(g.id, first.id, a.id, n, react(&emoji, false)), hook)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *seen.lock(),
        (2..=61).collect::<Vec<_>>(),
        "each version once, in order"
    );
    let m = store.message(g.id, first.id).await.unwrap().unwrap();
    assert_eq!(m.reactions.len(), 30);
}
