//! Replies, threads, mentions and pins: checked in the append, counted per
//! member, erased with a recall.

use super::{group, text, user};
use crate::model::*;
use crate::store::{Store, StoreError};
use std::sync::Arc;

pub async fn replies_threads_and_mentions_are_checked_and_counted(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let outsider = user(&store, "o").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let root = store
        .append_message(text(g.id, a.id, "root", None))
        .await
        .unwrap()
        .message;
    let with = |body: &str, f: &dyn Fn(&mut NewMessage)| {
        let mut m = text(g.id, b.id, body, None);
        f(&mut m);
        m
    };
    // A reply quotes a message of the same conversation.
    let reply = store
        .append_message(with("re", &|m| m.reply_to = Some(root.id)))
        .await
        .unwrap()
        .message;
    let quoted = reply.reply_to.unwrap();
    assert_eq!(
        (quoted.message_id, quoted.seq, quoted.sender_id),
        (root.id, 1, a.id)
    );
    assert_eq!(store.message(g.id, reply.id).await.unwrap().unwrap(), reply);
    let elsewhere = group(&store, a.id, vec![b.id]).await;
    let foreign = store
        .append_message(text(elsewhere.id, a.id, "x", None))
        .await
        .unwrap()
        .message;
    for bad in [
        with("x", &|m| m.reply_to = Some(foreign.id)),
        with("x", &|m| m.thread_root = Some(foreign.id)),
    ] {
        assert!(matches!(
            store.append_message(bad).await,
            Err(StoreError::NotFound(_))
        ));
    }
    // Thread replies, and no thread under a thread reply.
    let in_thread = store
        .append_message(with("t1", &|m| m.thread_root = Some(root.id)))
        .await
        .unwrap()
        .message;
    assert_eq!(in_thread.thread_root_id, root.id);
    assert!(matches!(
        store
            .append_message(with("t", &|m| m.thread_root = Some(in_thread.id)))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let conv = store.conversation(g.id).await.unwrap().unwrap();
    assert_eq!(conv.last_seq, 3, "refused appends use no seq");
    // Mentions: members only, once; counted for the mentioned, not the sender.
    let mention = store
        .append_message(with("hey", &|m| m.mentions = vec![a.id, outsider.id, a.id, b.id]))
        .await
        .unwrap()
        .message;
    assert_eq!(mention.mention_user_ids, [a.id, b.id]);
    store
        .append_message(with("all", &|m| {
            m.mention_all = true;
            m.mentions = vec![a.id];
            m.thread_root = Some(root.id);
        }))
        .await
        .unwrap();
    let counts = store.unread_mention_counts(a.id, &[(g.id, 0)]).await.unwrap();
    assert_eq!(counts, [(g.id, 2)], "one each, a mention of all included");
    assert!(
        store
            .unread_mention_counts(b.id, &[(g.id, 0)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.unread_mention_counts(a.id, &[(g.id, 4)]).await.unwrap(),
        [(g.id, 1)]
    );
    // Thread replies are not unread in the main timeline.
    assert_eq!(store.unread_count(g.id, a.id, 1).await.unwrap(), 2, "re and hey");
    assert_eq!(
        store.unread_counts(a.id, &[(g.id, 1)]).await.unwrap(),
        [(g.id, 2)]
    );
    // The thread, as each member sees it.
    let stats = store.threads(g.id, a.id, Some(root.id), 1).await.unwrap();
    assert_eq!(stats.len(), 1);
    let t = &stats[0];
    assert_eq!(
        (
            t.root.id,
            t.reply_count,
            t.unread_count,
            t.read_seq,
            t.last_reply_seq
        ),
        (root.id, 2, 2, 0, 5)
    );
    let replies = store
        .thread_replies(g.id, root.id, a.id, Page::After(0), 10)
        .await
        .unwrap();
    assert_eq!(replies.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 5]);
    assert_eq!(store.mark_thread_read(g.id, root.id, a.id, 3).await.unwrap(), 3);
    assert_eq!(
        store.mark_thread_read(g.id, root.id, a.id, 1).await.unwrap(),
        3,
        "never back"
    );
    assert_eq!(
        store.mark_thread_read(g.id, root.id, a.id, 99).await.unwrap(),
        5,
        "never past the end"
    );
    let t = store.threads(g.id, a.id, None, 10).await.unwrap();
    assert_eq!((t.len(), t[0].unread_count, t[0].read_seq), (1, 0, 5));
    assert_eq!(
        store.threads(g.id, b.id, None, 10).await.unwrap()[0].unread_count,
        0,
        "b's own replies"
    );
    assert!(
        store
            .threads(g.id, a.id, Some(reply.id), 1)
            .await
            .unwrap()
            .is_empty(),
        "no replies, no thread"
    );
    assert!(matches!(
        store.mark_thread_read(g.id, root.id, outsider.id, 1).await,
        Err(StoreError::NotMember(_))
    ));
    for not_a_thread in [in_thread.id, foreign.id, 987_654] {
        assert!(matches!(
            store.mark_thread_read(g.id, not_a_thread, a.id, 1).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert!(matches!(
        store.mark_thread_read(987_654, root.id, a.id, 1).await,
        Err(StoreError::NotMember(_))
    ));
    // A recall takes the mention (and the reply link) away.
    let recall = MessageChange {
        conversation_id: g.id,
        message_id: mention.id,
        actor: b.id,
        at: 9,
        kind: ChangeKind::Recall,
    };
    let recalled = store
        .change_message(recall, Box::new(|_| {}))
        .await
        .unwrap()
        .message;
    assert!(recalled.mention_user_ids.is_empty());
    assert_eq!(
        store.unread_mention_counts(a.id, &[(g.id, 0)]).await.unwrap(),
        [(g.id, 1)]
    );
    let unchanged = store.message(g.id, reply.id).await.unwrap().unwrap();
    assert_eq!(unchanged.reply_to, reply.reply_to, "other messages keep theirs");
}

pub async fn pins_are_message_changes(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
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
    let pin = |id, pinned, at| MessageChange {
        conversation_id: g.id,
        message_id: id,
        actor: a.id,
        at,
        kind: ChangeKind::Pin { pinned },
    };
    let pinned = store
        .change_message(pin(sent[0].id, true, 10), Box::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(
        (
            pinned.message.pinned_at,
            pinned.message.pinned_by,
            pinned.message.version
        ),
        (10, a.id, 4)
    );
    let again = store
        .change_message(pin(sent[0].id, true, 11), Box::new(|_| panic!("no change")))
        .await
        .unwrap();
    assert!(!again.changed);
    store
        .change_message(pin(sent[2].id, true, 12), Box::new(|_| {}))
        .await
        .unwrap();
    let list = store.pinned(g.id, a.id, 10).await.unwrap();
    assert_eq!(
        list.iter().map(|m| m.id).collect::<Vec<_>>(),
        [sent[2].id, sent[0].id]
    );
    store
        .change_message(pin(sent[2].id, false, 13), Box::new(|_| {}))
        .await
        .unwrap();
    let recall = MessageChange {
        kind: ChangeKind::Recall,
        ..pin(sent[0].id, false, 14)
    };
    store.change_message(recall, Box::new(|_| {})).await.unwrap();
    assert!(
        store.pinned(g.id, a.id, 10).await.unwrap().is_empty(),
        "unpinned, and recalled"
    );
    assert!(matches!(
        store
            .change_message(pin(sent[0].id, true, 15), Box::new(|_| {}))
            .await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn expiring_messages_are_erased_when_due(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    let before = store
        .append_message(text(g.id, a.id, "stays", None))
        .await
        .unwrap()
        .message;
    assert_eq!(before.expires_at, 0);
    // The setting is stored with its notice; the notice itself stays.
    let notice = NewMessage {
        conversation_id: g.id,
        content: im_protocol::v1::Content::text("ttl notice"),
        created_at: 100,
        message_ttl: Some(1_000),
        ..Default::default()
    };
    let notice = store.append_message(notice).await.unwrap().message;
    assert_eq!(notice.expires_at, 0, "server-written messages stay");
    assert_eq!(
        store.conversation(g.id).await.unwrap().unwrap().message_ttl_ms,
        1_000
    );
    let mut m = text(g.id, a.id, "goes", None);
    m.created_at = 200;
    let goes = store.append_message(m).await.unwrap().message;
    assert_eq!(goes.expires_at, 1_200);
    assert_eq!(
        store.message(g.id, goes.id).await.unwrap().unwrap().expires_at,
        1_200
    );
    assert!(store.expired_messages(1_199, 10).await.unwrap().is_empty());
    assert_eq!(
        store.expired_messages(1_200, 10).await.unwrap(),
        [(g.id, goes.id)]
    );
    let expire = |at| MessageChange {
        conversation_id: g.id,
        message_id: goes.id,
        actor: 0,
        at,
        kind: ChangeKind::Expire,
    };
    // Not before its time; then erased as a recall by nobody, once.
    let early = store
        .change_message(expire(1_100), Box::new(|_| panic!("not yet")))
        .await
        .unwrap();
    assert!(!early.changed);
    let erased = store
        .change_message(expire(1_300), Box::new(|_| {}))
        .await
        .unwrap();
    let m = &erased.message;
    assert!(erased.changed && m.content.is_none());
    assert_eq!((m.recalled_at, m.recalled_by), (1_300, 0));
    assert!(store.expired_messages(5_000, 10).await.unwrap().is_empty());
    let stays = MessageChange {
        message_id: before.id,
        ..expire(9_000)
    };
    assert!(
        !store
            .change_message(stays, Box::new(|_| panic!("never expires")))
            .await
            .unwrap()
            .changed
    );
}
