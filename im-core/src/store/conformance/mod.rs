//! The store conformance suite: written once, run against every backend.
//!
//! A backend proves itself by invoking [`store_conformance_tests!`](crate::store_conformance_tests)
//! in its test crate with an async constructor returning `(Arc<dyn Store>, guard)`,
//! where `guard` is kept alive for the test (a temporary directory, a database).

#![allow(missing_docs, clippy::unwrap_used)]

use super::Store;
use super::StoreError;
use crate::model::*;
use im_protocol::v1;
use std::sync::Arc;

mod admin;
mod batch;
mod changes;
mod contacts;
mod files;
mod identities;
mod search;
mod settings;
mod threads;
pub use admin::*;
pub use batch::*;
pub use changes::*;
pub use contacts::*;
pub use files::*;
pub use identities::*;
pub use search::*;
pub use settings::*;
pub use threads::*;

/// Generates one `#[tokio::test]` per conformance check.
///
/// ```ignore
/// im_core::store_conformance_tests!(async { (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()) });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            users_profiles_and_search, tokens, direct_conversation_once_per_pair,
            groups_and_members, user_conversations_in_a_range, append_assigns_seq_and_version,
            history_pages,
            concurrent_appends_are_gap_free, client_msg_id_deduplicates,
            membership_changes_are_atomic_with_message, rooms_listed_by_size,
            cursors_only_move_forward, unread_counts_skip_own_messages,
            appends_are_authorized_and_return_recipients, expired_tokens_are_purged,
            delete_and_rename_conversation, unknown_conversation_is_not_found,
            members_of_many_conversations, last_messages_of_many_conversations,
            unread_counts_of_many_conversations, batch_reads_of_many_conversations, health_is_ok,
            external_identities_map_to_one_user, commit_hooks_run_in_sequence_order,
            file_metadata_lifecycle, files_are_shared_by_the_append, expired_files_and_guarded_delete,
            sharing_races_the_cleanup, member_settings_are_each_members_own,
            edits_take_versions_and_keep_the_former_contents, recall_erases_content_reactions_and_edits,
            reactions_are_one_per_user_per_emoji, deletions_for_me_are_each_members_own,
            changes_and_appends_commit_in_version_order, replies_threads_and_mentions_are_checked_and_counted,
            pins_are_message_changes, expiring_messages_are_erased_when_due,
            search_finds_words_in_the_members_conversations_only,
            administration_commits_with_its_message, mutes_are_enforced_by_the_append,
            administration_reads_page_and_order,
            friend_requests_are_sent_answered_and_listed,
            mutual_requests_make_friends_and_removal_ends_them,
            blocks_end_friendships_and_refuse_requests,
            blocks_refuse_direct_messages_and_hide_group_messages,
            direct_messages_can_require_friendship);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::store::conformance::$name(store).await;
            }
        )*
    };
}

async fn user(store: &Arc<dyn Store>, name: &str) -> UserRecord {
    store
        .create_user(NewUser {
            username: name.into(),
            display_name: format!("{name} display"),
            password_hash: "hash".into(),
            created_at: 1,
        })
        .await
        .unwrap()
}

async fn group(store: &Arc<dyn Store>, owner: UserId, members: Vec<UserId>) -> ConversationRecord {
    store
        .create_conversation(NewConversation {
            kind: v1::ConversationKind::Group,
            title: "g".into(),
            ephemeral: false,
            created_by: owner,
            created_at: 2,
            members,
        })
        .await
        .unwrap()
}

fn text(conv: ConversationId, sender: UserId, body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        conversation_id: conv,
        sender_id: sender,
        client_msg_id: client_id.map(str::to_owned),
        content: v1::Content::text(body),
        created_at: 3,
        membership: None,
        ..Default::default()
    }
}

pub async fn users_profiles_and_search(store: Arc<dyn Store>) {
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "bob").await;
    assert_ne!(alice.id, bob.id);
    assert!(matches!(
        store
            .create_user(NewUser {
                username: "ALICE".into(),
                display_name: String::new(),
                password_hash: String::new(),
                created_at: 0
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap().id, alice.id);
    assert!(store.user_by_name("carol").await.unwrap().is_none());
    let mut by_ids = store.users_by_ids(&[bob.id, alice.id, 999_999]).await.unwrap();
    by_ids.sort_by_key(|u| u.id);
    assert_eq!(by_ids, vec![alice.clone(), bob.clone()]);

    let found = store.search_users("al", 10).await.unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![alice.id]);
    let updated = store
        .update_profile(bob.id, Some("Albert".into()), Some("https://a/b.png".into()))
        .await
        .unwrap();
    assert_eq!(updated.display_name, "Albert");
    assert_eq!(updated.avatar_url, "https://a/b.png");
    let found = store.search_users("AL", 10).await.unwrap();
    assert_eq!(
        found.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![alice.id, bob.id]
    );
    assert_eq!(store.search_users("al", 1).await.unwrap().len(), 1);
    assert!(matches!(
        store.update_profile(999_999, None, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.set_last_seen(alice.id, 77).await.unwrap();
    assert_eq!(store.users_by_ids(&[alice.id]).await.unwrap()[0].last_seen, 77);
}

pub async fn tokens(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    store.insert_token("h1", alice.id, 1000).await.unwrap();
    assert_eq!(store.token("h1").await.unwrap(), Some((alice.id, 1000)));
    assert_eq!(store.token("h2").await.unwrap(), None);
    store.delete_token("h1").await.unwrap();
    store.delete_token("h1").await.unwrap();
    assert_eq!(store.token("h1").await.unwrap(), None);
}

pub async fn direct_conversation_once_per_pair(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let (x, y) = if i % 2 == 0 { (a.id, b.id) } else { (b.id, a.id) };
        tasks.push(tokio::spawn(async move {
            store.direct_conversation(x, y, 5).await.unwrap().id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one direct conversation per pair");
    let conv = store.conversation(ids[0]).await.unwrap().unwrap();
    assert_eq!(conv.kind, v1::ConversationKind::Direct);
    assert_eq!(conv.member_count, 2);
    let members: Vec<_> = store
        .members(conv.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, vec![a.id, b.id]);
}

pub async fn groups_and_members(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let g = group(&store, a.id, vec![c.id, b.id, a.id]).await;
    assert_eq!(g.member_count, 3);
    assert_eq!(g.last_seq, 0);
    let members = store.members(g.id).await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        vec![a.id, b.id, c.id]
    );
    assert_eq!(members[0].role, v1::Role::Owner);
    assert_eq!(members[1].role, v1::Role::Member);
    assert_eq!(
        store.member(g.id, b.id).await.unwrap().unwrap().role,
        v1::Role::Member
    );
    let other = user(&store, "d").await;
    assert!(store.member(g.id, other.id).await.unwrap().is_none());
    let convs = store.user_conversations(b.id).await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].0.id, g.id);
    assert!(store.user_conversations(other.id).await.unwrap().is_empty());
}

pub async fn user_conversations_in_a_range(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let mut mine = Vec::new();
    for i in 0..6 {
        // Every other conversation is someone else's, so ids have holes.
        let g = group(&store, a.id, vec![]).await;
        mine.push(g.id);
        group(&store, b.id, vec![]).await;
        if i == 4 {
            let mut leave = text(g.id, 0, "left", None);
            leave.membership = Some(Membership::Remove(a.id));
            store.append_message(leave).await.unwrap();
            mine.pop();
        }
    }
    let ids = |rows: Vec<(ConversationRecord, MemberRecord)>| -> Vec<ConversationId> {
        assert!(
            rows.iter()
                .all(|(c, m)| m.user_id == a.id && m.conversation_id == c.id)
        );
        rows.into_iter().map(|(c, _)| c.id).collect()
    };
    let read = |after, until, limit| {
        let store = store.clone();
        async move {
            store
                .user_conversations_in(a.id, after, until, limit)
                .await
                .unwrap()
        }
    };
    // Everything, ascending, like user_conversations.
    assert_eq!(ids(read(0, None, None).await), mine);
    let mut all = ids(store.user_conversations(a.id).await.unwrap());
    all.sort_unstable();
    assert_eq!(all, mine);
    // `after` is exclusive, `until` inclusive, `limit` keeps the lowest ids.
    assert_eq!(ids(read(mine[0], None, None).await), mine[1..]);
    assert_eq!(ids(read(mine[0], Some(mine[3]), None).await), mine[1..=3]);
    assert_eq!(ids(read(mine[0] - 1, Some(mine[3] - 1), None).await), mine[..3]);
    assert_eq!(ids(read(0, None, Some(2)).await), mine[..2]);
    assert_eq!(ids(read(mine[1], Some(mine[4]), Some(2)).await), mine[2..4]);
    assert!(read(0, None, Some(0)).await.is_empty());
    assert!(read(*mine.last().unwrap(), None, None).await.is_empty());
    assert!(
        read(mine[3], Some(mine[3]), None).await.is_empty(),
        "an empty range"
    );
    assert!(
        read(mine[3], Some(mine[1]), None).await.is_empty(),
        "an inverted range"
    );
    assert!(read(u64::MAX, None, None).await.is_empty());
    assert_eq!(ids(read(0, Some(u64::MAX), None).await), mine);
    assert!(
        store
            .user_conversations_in(987_654, 0, None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn append_assigns_seq_and_version(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    for i in 1..=3u64 {
        let appended = store
            .append_message(text(g.id, a.id, &format!("m{i}"), None))
            .await
            .unwrap();
        assert!(!appended.duplicate);
        assert_eq!(appended.message.seq, i);
        assert_eq!(appended.message.version, i);
        assert_eq!(appended.message.conversation_id, g.id);
        assert_eq!(
            appended.message.content.as_ref().unwrap().as_text(),
            Some(format!("m{i}").as_str())
        );
    }
    let conv = store.conversation(g.id).await.unwrap().unwrap();
    assert_eq!((conv.last_seq, conv.last_version), (3, 3));
    let changes = store.changes(g.id, a.id, 1, 0, 10).await.unwrap();
    assert_eq!(changes.covered_to, None);
    let changes = changes.messages;
    assert_eq!(changes.iter().map(|m| m.version).collect::<Vec<_>>(), vec![2, 3]);
    let first_two = store.changes(g.id, a.id, 0, 0, 2).await.unwrap();
    assert_eq!((first_two.messages.len(), first_two.covered_to), (2, Some(2)));
    assert!(
        store
            .changes(g.id, a.id, 3, 0, 10)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // Message ids are unique across conversations.
    let g2 = group(&store, a.id, vec![]).await;
    let other = store.append_message(text(g2.id, a.id, "x", None)).await.unwrap();
    assert_eq!(other.message.seq, 1);
    assert!(changes.iter().all(|m| m.id != other.message.id));
}

pub async fn history_pages(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    for i in 1..=10 {
        store
            .append_message(text(g.id, a.id, &format!("m{i}"), None))
            .await
            .unwrap();
    }
    let seqs = |v: Vec<v1::Message>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.history(g.id, a.id, Page::Before(0), 3).await.unwrap()),
        vec![8, 9, 10]
    );
    assert_eq!(
        seqs(store.history(g.id, a.id, Page::Before(8), 3).await.unwrap()),
        vec![5, 6, 7]
    );
    assert_eq!(
        seqs(store.history(g.id, a.id, Page::Before(3), 5).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        seqs(store.history(g.id, a.id, Page::After(0), 2).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        seqs(store.history(g.id, a.id, Page::After(8), 5).await.unwrap()),
        vec![9, 10]
    );
    assert!(
        store
            .history(g.id, a.id, Page::After(10), 5)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn concurrent_appends_are_gap_free(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let id = format!("t{t}-{i}");
                seqs.push(
                    store
                        .append_message(text(g.id, a.id, &id, Some(&id)))
                        .await
                        .unwrap()
                        .message
                        .seq,
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    let history = store.history(g.id, a.id, Page::After(0), 500).await.unwrap();
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<u64>>()
    );
}

pub async fn client_msg_id_deduplicates(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let first = store
        .append_message(text(g.id, a.id, "hello", Some("c1")))
        .await
        .unwrap();
    let retry = store
        .append_message(text(g.id, a.id, "hello again", Some("c1")))
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.message, first.message);
    // Another sender may use the same client id.
    let other = store
        .append_message(text(g.id, b.id, "hi", Some("c1")))
        .await
        .unwrap();
    assert!(!other.duplicate);
    assert_eq!(other.message.seq, 2);
    let history = store.history(g.id, a.id, Page::After(0), 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].client_msg_id, "c1");
}

pub async fn membership_changes_are_atomic_with_message(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![]).await;
    let mut join = text(g.id, 0, "joined", None);
    join.membership = Some(Membership::Add(vec![
        (b.id, v1::Role::Member),
        (a.id, v1::Role::Member),
    ]));
    let appended = store.append_message(join).await.unwrap();
    assert_eq!(appended.member_count, 2);
    assert_eq!(
        store.member(g.id, a.id).await.unwrap().unwrap().role,
        v1::Role::Owner,
        "existing member untouched"
    );
    assert_eq!(store.conversation(g.id).await.unwrap().unwrap().member_count, 2);
    let mut leave = text(g.id, 0, "left", None);
    leave.membership = Some(Membership::Remove(b.id));
    let appended = store.append_message(leave).await.unwrap();
    assert_eq!(appended.member_count, 1);
    assert_eq!(appended.message.seq, 2);
    assert!(store.member(g.id, b.id).await.unwrap().is_none());
    assert!(store.user_conversations(b.id).await.unwrap().is_empty());
}

pub async fn rooms_listed_by_size(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let mut rooms = Vec::new();
    for title in ["small", "big"] {
        rooms.push(
            store
                .create_conversation(NewConversation {
                    kind: v1::ConversationKind::Room,
                    title: title.into(),
                    ephemeral: title == "small",
                    created_by: a.id,
                    created_at: 1,
                    members: vec![],
                })
                .await
                .unwrap(),
        );
    }
    group(&store, a.id, vec![b.id]).await;
    let mut join = text(rooms[1].id, 0, "joined", None);
    join.membership = Some(Membership::Add(vec![(b.id, v1::Role::Member)]));
    store.append_message(join).await.unwrap();
    let listed = store.list_rooms(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(),
        vec!["big", "small"]
    );
    assert_eq!(listed[0].member_count, 2);
    assert!(listed[1].ephemeral);
    assert_eq!(store.list_rooms(1).await.unwrap().len(), 1);
}

pub async fn cursors_only_move_forward(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    for i in 0..5 {
        store
            .append_message(text(g.id, a.id, &i.to_string(), None))
            .await
            .unwrap();
    }
    let m = store.advance_cursors(g.id, b.id, None, Some(3)).await.unwrap();
    assert_eq!((m.read_seq, m.delivered_seq), (0, 3));
    let m = store.advance_cursors(g.id, b.id, Some(2), Some(1)).await.unwrap();
    assert_eq!((m.read_seq, m.delivered_seq), (2, 3));
    let m = store.advance_cursors(g.id, b.id, Some(100), None).await.unwrap();
    assert_eq!(
        (m.read_seq, m.delivered_seq),
        (5, 5),
        "clamped to last_seq; read implies delivered"
    );
    let m = store.advance_cursors(g.id, b.id, Some(1), None).await.unwrap();
    assert_eq!(m.read_seq, 5);
    assert_eq!(store.member(g.id, b.id).await.unwrap().unwrap().read_seq, 5);
    let c = user(&store, "c").await;
    assert!(matches!(
        store.advance_cursors(g.id, c.id, Some(1), None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn unread_counts_skip_own_messages(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    for sender in [a.id, b.id, a.id, a.id] {
        store.append_message(text(g.id, sender, "x", None)).await.unwrap();
    }
    assert_eq!(store.unread_count(g.id, b.id, 0).await.unwrap(), 3);
    assert_eq!(store.unread_count(g.id, b.id, 2).await.unwrap(), 2);
    assert_eq!(store.unread_count(g.id, a.id, 0).await.unwrap(), 1);
    assert_eq!(store.unread_count(g.id, a.id, 4).await.unwrap(), 0);
}

pub async fn delete_and_rename_conversation(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    store.rename_conversation(g.id, "renamed").await.unwrap();
    assert_eq!(store.conversation(g.id).await.unwrap().unwrap().title, "renamed");
    store
        .append_message(text(g.id, a.id, "x", Some("k")))
        .await
        .unwrap();
    store.delete_conversation(g.id).await.unwrap();
    assert!(store.conversation(g.id).await.unwrap().is_none());
    assert!(
        store
            .history(g.id, a.id, Page::After(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.members(g.id).await.unwrap().is_empty());
    assert!(store.user_conversations(a.id).await.unwrap().is_empty());
    let d1 = store.direct_conversation(a.id, b.id, 1).await.unwrap();
    store.delete_conversation(d1.id).await.unwrap();
    let d2 = store.direct_conversation(a.id, b.id, 1).await.unwrap();
    assert_ne!(d1.id, d2.id, "a deleted direct conversation frees its pair");
}

pub async fn unknown_conversation_is_not_found(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    assert!(matches!(
        store.append_message(text(987_654, a.id, "x", None)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.conversation(987_654).await.unwrap().is_none());
    assert!(matches!(
        store.rename_conversation(987_654, "t").await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn appends_are_authorized_and_return_recipients(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let g = group(&store, a.id, vec![b.id]).await;
    let first = store.append_message(text(g.id, a.id, "x", None)).await.unwrap();
    assert_eq!(&first.members[..], &[a.id, b.id]);
    // A non-member's message is refused and uses no sequence number.
    assert!(matches!(
        store
            .append_message(text(g.id, c.id, "let me in", Some("c-1")))
            .await,
        Err(StoreError::NotMember(_))
    ));
    let mut add = text(g.id, 0, "added", None);
    add.membership = Some(Membership::Add(vec![(c.id, v1::Role::Member)]));
    let added = store.append_message(add).await.unwrap();
    assert_eq!(added.message.seq, 2, "the refused message took no seq");
    assert_eq!(&added.members[..], &[a.id, b.id, c.id]);
    // The same client id may be used now that c is a member: nothing was stored before.
    let now = store
        .append_message(text(g.id, c.id, "hello", Some("c-1")))
        .await
        .unwrap();
    assert!(!now.duplicate);
    assert_eq!(&now.members[..], &[a.id, b.id, c.id]);
    let mut remove = text(g.id, 0, "left", None);
    remove.membership = Some(Membership::Remove(b.id));
    let removed = store.append_message(remove).await.unwrap();
    assert_eq!(
        &removed.members[..],
        &[a.id, c.id],
        "recipients follow membership changes"
    );
    assert!(matches!(
        store.append_message(text(g.id, b.id, "still here?", None)).await,
        Err(StoreError::NotMember(_))
    ));
    let dup = store
        .append_message(text(g.id, c.id, "hello", Some("c-1")))
        .await
        .unwrap();
    assert!(
        dup.duplicate && dup.members.is_empty(),
        "a duplicate delivers nothing new"
    );
}

pub async fn expired_tokens_are_purged(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    store.insert_token("old", a.id, 100).await.unwrap();
    store.insert_token("edge", a.id, 200).await.unwrap();
    store.insert_token("fresh", a.id, 300).await.unwrap();
    assert_eq!(store.purge_expired_tokens(200).await.unwrap(), 2);
    assert_eq!(store.token("old").await.unwrap(), None);
    assert_eq!(store.token("edge").await.unwrap(), None);
    assert_eq!(store.token("fresh").await.unwrap(), Some((a.id, 300)));
    assert_eq!(store.purge_expired_tokens(200).await.unwrap(), 0);
}
