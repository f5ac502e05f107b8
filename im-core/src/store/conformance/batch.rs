//! Conformance checks of the batch reads and the health check.

#![allow(missing_docs, clippy::unwrap_used)]

use super::{group, text, user};
use crate::model::*;
use crate::store::Store;
use std::sync::Arc;

pub async fn members_of_many_conversations(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let g1 = group(&store, a.id, vec![c.id, b.id]).await;
    let g2 = group(&store, b.id, vec![]).await;
    let empty = group(&store, c.id, vec![]).await;
    store
        .append_message(NewMessage {
            membership: Some(Membership::Remove(c.id)),
            ..text(empty.id, 0, "c left", None)
        })
        .await
        .unwrap();
    // Ordered by conversation then user; unknown and empty ones have none;
    // a conversation listed twice is answered once.
    assert_eq!(
        store
            .members_of(&[g2.id, 987_654, empty.id, g1.id, g2.id])
            .await
            .unwrap(),
        vec![(g1.id, a.id), (g1.id, b.id), (g1.id, c.id), (g2.id, b.id)]
    );
    assert!(store.members_of(&[]).await.unwrap().is_empty());
}

pub async fn last_messages_of_many_conversations(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g1 = group(&store, a.id, vec![]).await;
    let g2 = group(&store, a.id, vec![]).await;
    let quiet = group(&store, a.id, vec![]).await;
    for body in ["one", "two", "three"] {
        store.append_message(text(g1.id, a.id, body, None)).await.unwrap();
    }
    store
        .append_message(text(g2.id, a.id, "only", None))
        .await
        .unwrap();
    let mut last = store
        .last_messages(a.id, &[g2.id, quiet.id, g1.id, 987_654])
        .await
        .unwrap();
    last.sort_by_key(|m| m.conversation_id);
    let summary: Vec<_> = last
        .iter()
        .map(|m| {
            (
                m.conversation_id,
                m.seq,
                m.content.as_ref().unwrap().as_text().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, vec![(g1.id, 3, "three"), (g2.id, 1, "only")]);
    // The same message as the last page of history.
    let newest = store.history(g1.id, a.id, Page::Before(0), 1).await.unwrap();
    assert_eq!(last[0], newest[0]);
    assert!(store.last_messages(a.id, &[]).await.unwrap().is_empty());
}

pub async fn unread_counts_of_many_conversations(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g1 = group(&store, a.id, vec![b.id]).await;
    let g2 = group(&store, a.id, vec![b.id]).await;
    let read = group(&store, a.id, vec![b.id]).await;
    for sender in [a.id, b.id, a.id, a.id] {
        store
            .append_message(text(g1.id, sender, "x", None))
            .await
            .unwrap();
    }
    store.append_message(text(g2.id, a.id, "x", None)).await.unwrap();
    store
        .append_message(text(read.id, a.id, "x", None))
        .await
        .unwrap();
    let mut counts = store
        .unread_counts(b.id, &[(g1.id, 0), (g2.id, 0), (read.id, 1), (987_654, 0)])
        .await
        .unwrap();
    counts.sort();
    // Own messages do not count; nothing unread and unknown: left out.
    assert_eq!(counts, vec![(g1.id, 3), (g2.id, 1)]);
    // Each conversation with its own cursor, as `unread_count` counts it.
    let mut counts = store
        .unread_counts(b.id, &[(g1.id, 2), (g2.id, 1)])
        .await
        .unwrap();
    counts.sort();
    assert_eq!(counts, vec![(g1.id, 2)]);
    assert_eq!(store.unread_count(g1.id, b.id, 2).await.unwrap(), 2);
    // Listed twice: counted once, from the lower cursor.
    assert_eq!(
        store
            .unread_counts(b.id, &[(g1.id, 3), (g1.id, 0)])
            .await
            .unwrap(),
        vec![(g1.id, 3)]
    );
    assert_eq!(
        store
            .unread_counts(a.id, &[(g1.id, 0), (g2.id, 0)])
            .await
            .unwrap(),
        vec![(g1.id, 1)]
    );
    assert!(store.unread_counts(b.id, &[]).await.unwrap().is_empty());
}

/// More conversations than one SQL statement binds at once.
pub async fn batch_reads_of_many_conversations(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let mut ids = Vec::new();
    for _ in 0..600 {
        ids.push(group(&store, a.id, vec![b.id]).await.id);
    }
    for &id in ids.iter().step_by(3) {
        store.append_message(text(id, a.id, "x", None)).await.unwrap();
    }
    let members = store.members_of(&ids).await.unwrap();
    assert_eq!(members.len(), 2 * ids.len());
    assert!(members.windows(2).all(|w| w[0] < w[1]));
    let with_messages = ids.iter().step_by(3).count();
    assert_eq!(
        store.last_messages(a.id, &ids).await.unwrap().len(),
        with_messages
    );
    let cursors: Vec<_> = ids.iter().map(|&id| (id, 0)).collect();
    let counts = store.unread_counts(b.id, &cursors).await.unwrap();
    assert_eq!(counts.len(), with_messages);
    assert!(counts.iter().all(|&(_, n)| n == 1));
}

pub async fn health_is_ok(store: Arc<dyn Store>) {
    store.health().await.unwrap();
    let a = user(&store, "a").await;
    store.health().await.unwrap();
    assert_eq!(store.users_by_ids(&[a.id]).await.unwrap().len(), 1);
}
