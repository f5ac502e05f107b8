//! Contacts: friend requests, friendships, blocks, and what blocks and
//! friendship do to appends and reads.

use super::{group, text, user};
use crate::model::*;
use crate::store::{Store, StoreError};
use im_protocol::v1;
use std::sync::Arc;

fn ask(from: UserId, to: UserId, at: i64) -> NewFriendRequest {
    NewFriendRequest {
        from,
        to,
        message: format!("{from} asks {to}"),
        at,
    }
}

pub async fn friend_requests_are_sent_answered_and_listed(store: Arc<dyn Store>) {
    let a = user(&store, "a").await.id;
    let b = user(&store, "b").await.id;
    let c = user(&store, "c").await.id;
    assert!(matches!(
        store.send_friend_request(ask(a, a, 10)).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.send_friend_request(ask(a, 999_999, 10)).await,
        Err(StoreError::NotFound(_))
    ));
    let sent = store.send_friend_request(ask(a, b, 10)).await.unwrap();
    assert_eq!(
        (sent.from, sent.to, sent.state, sent.created_at),
        (a, b, v1::FriendRequestState::Pending, 10)
    );
    assert_eq!(sent.message, format!("{a} asks {b}"));
    assert!(
        matches!(
            store.send_friend_request(ask(a, b, 11)).await,
            Err(StoreError::Conflict(_))
        ),
        "a second request while one is pending"
    );
    // Both sides list it.
    assert_eq!(store.friend_requests(a).await.unwrap(), vec![sent.clone()]);
    assert_eq!(store.friend_requests(b).await.unwrap(), vec![sent.clone()]);
    assert!(store.friend_requests(c).await.unwrap().is_empty());
    // Only the recipient answers, once.
    assert!(matches!(
        store.respond_friend_request(b, a, true, 12).await,
        Err(StoreError::NotFound(_))
    ));
    let declined = store.respond_friend_request(a, b, false, 12).await.unwrap();
    assert_eq!(
        (declined.state, declined.updated_at, declined.created_at),
        (v1::FriendRequestState::Declined, 12, 10)
    );
    assert!(matches!(
        store.respond_friend_request(a, b, true, 13).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.friends(a).await.unwrap().is_empty());
    // Asked again after a decline: a new pending request replaces it.
    let again = store.send_friend_request(ask(a, b, 14)).await.unwrap();
    assert_eq!(
        (again.state, again.created_at),
        (v1::FriendRequestState::Pending, 14)
    );
    assert_eq!(store.friend_requests(b).await.unwrap(), vec![again]);
    let accepted = store.respond_friend_request(a, b, true, 15).await.unwrap();
    assert_eq!(accepted.state, v1::FriendRequestState::Accepted);
    assert_eq!(store.friends(a).await.unwrap(), vec![(b, 15)]);
    assert_eq!(store.friends(b).await.unwrap(), vec![(a, 15)]);
    assert!(store.contact_state(a, b).await.unwrap().friends);
    assert!(store.contact_state(b, a).await.unwrap().friends);
    assert!(
        matches!(
            store.send_friend_request(ask(b, a, 16)).await,
            Err(StoreError::Conflict(_))
        ),
        "already friends"
    );
    // Newest first.
    store.send_friend_request(ask(c, a, 17)).await.unwrap();
    let listed = store.friend_requests(a).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(),
        vec![(c, a), (a, b)]
    );
}

pub async fn mutual_requests_make_friends_and_removal_ends_them(store: Arc<dyn Store>) {
    let a = user(&store, "a").await.id;
    let b = user(&store, "b").await.id;
    let c = user(&store, "c").await.id;
    store.send_friend_request(ask(a, b, 10)).await.unwrap();
    let back = store.send_friend_request(ask(b, a, 11)).await.unwrap();
    assert_eq!(
        back.state,
        v1::FriendRequestState::Accepted,
        "mutual: accepted at once"
    );
    assert_eq!(store.friends(a).await.unwrap(), vec![(b, 11)]);
    let states: Vec<_> = store
        .friend_requests(a)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.from, r.state))
        .collect();
    assert!(states.contains(&(a, v1::FriendRequestState::Accepted)));
    assert!(states.contains(&(b, v1::FriendRequestState::Accepted)));
    // Newest friendship first.
    store.send_friend_request(ask(c, a, 12)).await.unwrap();
    store.respond_friend_request(c, a, true, 13).await.unwrap();
    assert_eq!(store.friends(a).await.unwrap(), vec![(c, 13), (b, 11)]);
    // Removing ends it both ways, with its requests.
    assert_eq!(
        store.remove_friend(b, a).await.unwrap(),
        ContactRemoved::Friendship
    );
    assert_eq!(store.friends(a).await.unwrap(), vec![(c, 13)]);
    assert!(store.friends(b).await.unwrap().is_empty());
    assert!(store.friend_requests(b).await.unwrap().is_empty());
    assert!(matches!(
        store.remove_friend(b, a).await,
        Err(StoreError::NotFound(_))
    ));
    // A pending request is withdrawn by its sender only.
    store.send_friend_request(ask(b, c, 14)).await.unwrap();
    assert!(matches!(
        store.remove_friend(c, b).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.remove_friend(b, c).await.unwrap(), ContactRemoved::Request);
    assert!(
        store
            .friend_requests(c)
            .await
            .unwrap()
            .iter()
            .all(|r| r.from != b)
    );
}

pub async fn blocks_end_friendships_and_refuse_requests(store: Arc<dyn Store>) {
    let a = user(&store, "a").await.id;
    let b = user(&store, "b").await.id;
    let c = user(&store, "c").await.id;
    store.send_friend_request(ask(a, b, 10)).await.unwrap();
    store.respond_friend_request(a, b, true, 11).await.unwrap();
    store.send_friend_request(ask(a, c, 12)).await.unwrap();
    store.send_friend_request(ask(b, a, 13)).await.ok();
    assert!(matches!(
        store.block_user(a, a, 20).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.block_user(a, 999_999, 20).await,
        Err(StoreError::NotFound(_))
    ));
    let outcome = store.block_user(a, b, 20).await.unwrap();
    assert_eq!(
        outcome,
        BlockOutcome {
            ended_friendship: true,
            withdrew_request: false
        }
    );
    assert!(store.friends(a).await.unwrap().is_empty());
    assert!(store.friends(b).await.unwrap().is_empty());
    assert!(matches!(
        store.block_user(a, b, 21).await,
        Err(StoreError::Conflict(_))
    ));
    // A pending request of the blocker is withdrawn.
    assert_eq!(
        store.block_user(a, c, 23).await.unwrap(),
        BlockOutcome {
            ended_friendship: false,
            withdrew_request: true
        }
    );
    assert!(store.friend_requests(a).await.unwrap().is_empty());
    assert!(store.friend_requests(c).await.unwrap().is_empty());
    // Requests across a block are refused both ways.
    assert!(matches!(
        store.send_friend_request(ask(b, a, 24)).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.send_friend_request(ask(a, b, 24)).await,
        Err(StoreError::Forbidden(_))
    ));
    assert_eq!(store.blocked_users(a).await.unwrap(), vec![(c, 23), (b, 20)]);
    assert!(store.blocked_users(b).await.unwrap().is_empty());
    assert_eq!(
        store.block_relations(b).await.unwrap(),
        BlockRelations {
            blocks: vec![],
            blocked_by: vec![a]
        }
    );
    let mut both = vec![b, c];
    both.sort_unstable();
    assert_eq!(
        store.block_relations(a).await.unwrap(),
        BlockRelations {
            blocks: both,
            blocked_by: vec![]
        }
    );
    assert_eq!(
        store.contact_state(b, a).await.unwrap(),
        ContactState {
            friends: false,
            a_blocks_b: false,
            b_blocks_a: true
        }
    );
    store.unblock_user(a, b).await.unwrap();
    assert!(matches!(
        store.unblock_user(a, b).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.blocked_users(a).await.unwrap(), vec![(c, 23)]);
    store.send_friend_request(ask(b, a, 25)).await.unwrap();
}

pub async fn blocks_refuse_direct_messages_and_hide_group_messages(store: Arc<dyn Store>) {
    let bob = user(&store, "bob").await.id;
    let mallory = user(&store, "mallory").await.id;
    let carol = user(&store, "carol").await.id;
    // A direct conversation that exists already, and a group of the three:
    // appends are cached before the block, which must still apply.
    let direct = store.direct_conversation(mallory, bob, 1).await.unwrap();
    let g = group(&store, carol, vec![bob, mallory]).await;
    store
        .append_message(text(direct.id, mallory, "hi", None))
        .await
        .unwrap();
    let before = store
        .append_message(text(g.id, mallory, "before", None))
        .await
        .unwrap();
    assert!(before.hidden_from.is_empty());
    store.block_user(bob, mallory, 5).await.unwrap();

    // Direct: refused both ways, no seq used.
    for (from, body) in [(mallory, "refused"), (bob, "also refused")] {
        assert!(matches!(
            store.append_message(text(direct.id, from, body, None)).await,
            Err(StoreError::Forbidden(_))
        ));
    }
    assert_eq!(store.conversation(direct.id).await.unwrap().unwrap().last_seq, 1);
    // A new direct conversation is not even created, either way.
    let dave = user(&store, "dave").await.id;
    store.block_user(dave, mallory, 6).await.unwrap();
    assert!(matches!(
        store.direct_conversation(mallory, dave, 7).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(matches!(
        store.direct_conversation(dave, mallory, 7).await,
        Err(StoreError::Forbidden(_))
    ));
    assert!(store.user_conversations(dave).await.unwrap().is_empty());

    // Group: stored for everyone, hidden from Bob.
    let hidden = store
        .append_message(text(g.id, mallory, "while blocked", None))
        .await
        .unwrap();
    assert_eq!(hidden.hidden_from, vec![bob]);
    assert_eq!(hidden.members.len(), 3, "the members are still the members");
    let by_bob = store
        .append_message(text(g.id, bob, "bob speaks", None))
        .await
        .unwrap();
    assert!(by_bob.hidden_from.is_empty(), "a block is one way");
    let as_bob = store.history(g.id, bob, Page::Before(0), 10).await.unwrap();
    let seen: Vec<(bool, Option<&str>)> = as_bob
        .iter()
        .map(|m| (m.deleted, m.content.as_ref().and_then(|c| c.as_text())))
        .collect();
    assert_eq!(
        seen,
        vec![(false, Some("before")), (true, None), (false, Some("bob speaks"))],
        "earlier messages stay, later ones are stubs"
    );
    assert_eq!(as_bob[1].sender_id, mallory);
    let as_carol = store.history(g.id, carol, Page::Before(0), 10).await.unwrap();
    assert!(as_carol.iter().all(|m| !m.deleted));
    // The change log shows Bob the stub, at its place, and no deletion of his.
    let page = store.changes(g.id, bob, 0, 0, 10).await.unwrap();
    assert_eq!(page.messages.iter().filter(|m| m.deleted).count(), 1);
    assert!(page.deleted.is_empty(), "Bob deleted nothing");
    assert_eq!(page.private_version, 0);
    // Unread counts leave it out; the last message as Bob sees it.
    assert_eq!(
        store.unread_count(g.id, bob, before.message.seq).await.unwrap(),
        0
    );
    assert_eq!(
        store.unread_count(g.id, carol, before.message.seq).await.unwrap(),
        2
    );
    let counts = store
        .unread_counts(bob, &[(g.id, before.message.seq)])
        .await
        .unwrap();
    assert!(counts.is_empty(), "{counts:?}");
    let last = store
        .append_message(text(g.id, mallory, "last", None))
        .await
        .unwrap();
    let lasts = store.last_messages(bob, &[g.id]).await.unwrap();
    assert!(lasts[0].deleted && lasts[0].id == last.message.id);
    assert!(!store.last_messages(carol, &[g.id]).await.unwrap()[0].deleted);
    // A change to a hidden message is not for Bob.
    let changed = store
        .change_message(
            MessageChange {
                conversation_id: g.id,
                message_id: hidden.message.id,
                actor: mallory,
                at: 9,
                kind: ChangeKind::Edit(v1::Content::text("edited")),
            },
            Box::new(|_| {}),
        )
        .await
        .unwrap();
    assert_eq!(changed.hidden_from, vec![bob]);
    let reacted = store
        .change_message(
            MessageChange {
                conversation_id: g.id,
                message_id: before.message.id,
                actor: carol,
                at: 9,
                kind: ChangeKind::React {
                    emoji: "👍".into(),
                    remove: false,
                },
            },
            Box::new(|_| {}),
        )
        .await
        .unwrap();
    assert!(
        reacted.hidden_from.is_empty(),
        "earlier messages are Bob's to see"
    );

    // Unblocked: new messages reach Bob; those sent meanwhile stay hidden.
    store.unblock_user(bob, mallory).await.unwrap();
    let after = store
        .append_message(text(g.id, mallory, "after", None))
        .await
        .unwrap();
    assert!(after.hidden_from.is_empty());
    let as_bob = store.history(g.id, bob, Page::Before(0), 10).await.unwrap();
    assert!(!as_bob.last().unwrap().deleted);
    assert!(as_bob.iter().any(|m| m.id == hidden.message.id && m.deleted));
    let direct_again = store
        .append_message(text(direct.id, mallory, "hello again", None))
        .await;
    assert!(direct_again.is_ok(), "direct messages flow again");
}

pub async fn direct_messages_can_require_friendship(store: Arc<dyn Store>) {
    let a = user(&store, "a").await.id;
    let b = user(&store, "b").await.id;
    let direct = store.direct_conversation(a, b, 1).await.unwrap();
    let needs = |sender| NewMessage {
        direct_needs_friendship: true,
        ..text(direct.id, sender, "hi", None)
    };
    assert!(matches!(
        store.append_message(needs(a)).await,
        Err(StoreError::Forbidden(_))
    ));
    store
        .append_message(text(direct.id, a, "no rule", None))
        .await
        .unwrap();
    store.send_friend_request(ask(a, b, 2)).await.unwrap();
    store.respond_friend_request(a, b, true, 3).await.unwrap();
    store.append_message(needs(a)).await.unwrap();
    store.append_message(needs(b)).await.unwrap();
    store.remove_friend(a, b).await.unwrap();
    assert!(matches!(
        store.append_message(needs(b)).await,
        Err(StoreError::Forbidden(_))
    ));
    // Groups and notes to oneself know no such rule.
    let g = group(&store, a, vec![b]).await;
    store
        .append_message(NewMessage {
            direct_needs_friendship: true,
            ..text(g.id, b, "group", None)
        })
        .await
        .unwrap();
    let own = store.direct_conversation(a, a, 4).await.unwrap();
    store
        .append_message(NewMessage {
            direct_needs_friendship: true,
            ..text(own.id, a, "note", None)
        })
        .await
        .unwrap();
}
