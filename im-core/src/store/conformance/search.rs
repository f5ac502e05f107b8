//! Full-text search: English and CJK text, only the member's conversations,
//! never recalled or self-deleted messages, edits re-indexed.

use super::{group, text, user};
use crate::model::*;
use crate::search::SearchQuery;
use crate::store::Store;
use im_protocol::v1;
use std::sync::Arc;

async fn found(store: &Arc<dyn Store>, u: UserId, q: &str) -> Vec<String> {
    let query = SearchQuery::parse(q).unwrap();
    store
        .search_messages(u, &query, None, None, 50)
        .await
        .unwrap()
        .iter()
        .map(|m| {
            m.content
                .as_ref()
                .and_then(|c| c.as_text())
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

pub async fn search_finds_words_in_the_members_conversations_only(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let ab = group(&store, a.id, vec![b.id]).await;
    let ac = group(&store, a.id, vec![c.id]).await;
    let mut ids = Vec::new();
    for (conv, sender, body) in [
        (ab.id, a.id, "Quarterly report is ready"),
        (ab.id, b.id, "明天在东京见面"),
        (ab.id, a.id, "今日はいい天気ですね"),
        (ac.id, c.id, "the quarterly secret"),
        (ab.id, b.id, "report on 東京タワー"),
    ] {
        ids.push(
            store
                .append_message(text(conv, sender, body, None))
                .await
                .unwrap()
                .message
                .id,
        );
    }
    assert_eq!(
        found(&store, b.id, "quarterly").await,
        ["Quarterly report is ready"],
        "not the other group"
    );
    assert_eq!(
        found(&store, a.id, "QUARTER").await,
        ["the quarterly secret", "Quarterly report is ready"]
    );
    assert_eq!(found(&store, b.id, "东京").await, ["明天在东京见面"]);
    assert_eq!(found(&store, b.id, "天気").await, ["今日はいい天気ですね"]);
    assert_eq!(found(&store, b.id, "东").await, ["明天在东京见面"]);
    assert_eq!(
        found(&store, b.id, "report").await,
        ["report on 東京タワー", "Quarterly report is ready"]
    );
    assert!(found(&store, b.id, "京东").await.is_empty());
    assert!(found(&store, c.id, "东京").await.is_empty());
    // One conversation; paging.
    let q = SearchQuery::parse("report").unwrap();
    let only = store
        .search_messages(a.id, &q, Some(ac.id), None, 10)
        .await
        .unwrap();
    assert!(only.is_empty());
    let page = store.search_messages(b.id, &q, None, None, 1).await.unwrap();
    assert_eq!(page[0].id, ids[4]);
    let next = store
        .search_messages(b.id, &q, None, Some(ids[4]), 10)
        .await
        .unwrap();
    assert_eq!(next.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[0]]);
    // Edits are searched as they are now.
    let edit = MessageChange {
        conversation_id: ab.id,
        message_id: ids[0],
        actor: a.id,
        at: 10,
        kind: ChangeKind::Edit(v1::Content::text("Annual summary is ready")),
    };
    store.change_message(edit, Box::new(|_| {})).await.unwrap();
    assert!(found(&store, b.id, "quarterly").await.is_empty());
    assert_eq!(found(&store, b.id, "annual").await, ["Annual summary is ready"]);
    // Never a recalled message, nor one deleted for oneself.
    let recall = MessageChange {
        conversation_id: ab.id,
        message_id: ids[1],
        actor: b.id,
        at: 11,
        kind: ChangeKind::Recall,
    };
    store.change_message(recall, Box::new(|_| {})).await.unwrap();
    assert!(found(&store, a.id, "东京").await.is_empty());
    store
        .hide_messages(ab.id, b.id, &[ids[2]], Box::new(|_| {}))
        .await
        .unwrap();
    assert!(found(&store, b.id, "天気").await.is_empty());
    assert_eq!(
        found(&store, a.id, "天気").await,
        ["今日はいい天気ですね"],
        "deleted for b only"
    );
    // Nor after leaving the conversation.
    let leave = NewMessage {
        conversation_id: ab.id,
        content: v1::Content::text("b left"),
        created_at: 12,
        membership: Some(Membership::Remove(b.id)),
        ..Default::default()
    };
    store.append_message(leave).await.unwrap();
    assert!(found(&store, b.id, "annual").await.is_empty());
    store.delete_conversation(ac.id).await.unwrap();
    assert!(found(&store, a.id, "secret").await.is_empty());
}
