//! Group administration in the store: every change commits with its
//! system message or not at all, bans keep users out, mutes are enforced by
//! the append itself, and the reads page and order as documented.

use super::{group, text, user};
use crate::model::*;
use crate::store::{Store, StoreError};
use im_protocol::v1;
use std::sync::Arc;

/// A system message carrying a membership change, at time `at`.
fn change(conv: ConversationId, membership: Membership, at: i64) -> NewMessage {
    NewMessage {
        conversation_id: conv,
        sender_id: 0,
        client_msg_id: None,
        content: v1::Content::text("admin"),
        created_at: at,
        membership: Some(membership),
        ..Default::default()
    }
}

/// A user's text at time `at`.
fn said(conv: ConversationId, sender: UserId, at: i64) -> NewMessage {
    NewMessage {
        created_at: at,
        ..text(conv, sender, "hi", None)
    }
}

async fn last_seq(store: &Arc<dyn Store>, conv: ConversationId) -> u64 {
    store.conversation(conv).await.unwrap().unwrap().last_seq
}

/// Applies a change that must be refused: nothing is written, no seq used.
async fn refused(store: &Arc<dyn Store>, new: NewMessage) -> StoreError {
    let conv = new.conversation_id;
    let before = last_seq(store, conv).await;
    let version = store.member_list(conv).await.unwrap().unwrap().0;
    let err = store.append_message(new).await.unwrap_err();
    assert_eq!(last_seq(store, conv).await, before, "no seq used: {err:?}");
    assert_eq!(
        store.member_list(conv).await.unwrap().unwrap().0,
        version,
        "nothing changed: {err:?}"
    );
    err
}

pub async fn administration_commits_with_its_message(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let d = user(&store, "d").await;
    let e = user(&store, "e").await;
    let g = group(&store, owner.id, vec![b.id]).await;
    assert_eq!(
        g.join_policy,
        v1::JoinPolicy::InviteOnly,
        "groups start invite only"
    );
    assert!(!g.members_muted);
    let version = |store: Arc<dyn Store>| async move { store.member_list(g.id).await.unwrap().unwrap().0 };
    let v0 = version(store.clone()).await;

    // Invitations: the invitee accepts or declines; a member is skipped.
    let invite = Membership::Invite {
        users: vec![c.id, d.id, b.id],
        by: owner.id,
    };
    let appended = store.append_message(change(g.id, invite, 10)).await.unwrap();
    assert!(
        appended.member_version > v0,
        "every change bumps the member list version"
    );
    let invited = store.standing(g.id, c.id).await.unwrap().invitation.unwrap();
    assert_eq!((invited.invited_by, invited.created_at), (owner.id, 10));
    assert!(store.standing(g.id, b.id).await.unwrap().invitation.is_none());
    let accepted = store
        .append_message(change(g.id, Membership::AcceptInvitation(c.id), 11))
        .await
        .unwrap();
    assert!(
        accepted.members.contains(&c.id),
        "the accepting user gets the message"
    );
    let standing = store.standing(g.id, c.id).await.unwrap();
    assert_eq!(standing.member.unwrap().role, v1::Role::Member);
    assert!(standing.invitation.is_none(), "a member has no invitation");
    let err = refused(&store, change(g.id, Membership::AcceptInvitation(c.id), 12)).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .append_message(change(g.id, Membership::DeclineInvitation(d.id), 12))
        .await
        .unwrap();
    assert_eq!(store.standing(g.id, d.id).await.unwrap(), Standing::default());
    let err = refused(&store, change(g.id, Membership::DeclineInvitation(d.id), 13)).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Join requests: approved or refused, once; members cannot ask.
    store
        .append_message(change(g.id, Membership::RequestJoin(d.id), 20))
        .await
        .unwrap();
    store
        .append_message(change(g.id, Membership::RequestJoin(d.id), 21))
        .await
        .unwrap();
    let requests = store.join_requests(g.id, 10).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].user_id, requests[0].created_at),
        (d.id, 20),
        "asking twice keeps the first"
    );
    let err = refused(&store, change(g.id, Membership::RequestJoin(b.id), 22)).await;
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let approve = Membership::DecideJoin {
        user: d.id,
        approve: true,
    };
    store
        .append_message(change(g.id, approve.clone(), 23))
        .await
        .unwrap();
    assert!(store.member(g.id, d.id).await.unwrap().is_some());
    assert!(store.join_requests(g.id, 10).await.unwrap().is_empty());
    let err = refused(&store, change(g.id, approve, 24)).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .append_message(change(g.id, Membership::RequestJoin(e.id), 25))
        .await
        .unwrap();
    let refuse = Membership::DecideJoin {
        user: e.id,
        approve: false,
    };
    store.append_message(change(g.id, refuse, 26)).await.unwrap();
    assert_eq!(store.standing(g.id, e.id).await.unwrap(), Standing::default());

    // A ban removes, drops what is pending, and keeps the user out.
    let ban = |user: UserId| Membership::Ban { user, by: owner.id };
    let banned = store.append_message(change(g.id, ban(b.id), 30)).await.unwrap();
    assert!(!banned.members.contains(&b.id));
    let standing = store.standing(g.id, b.id).await.unwrap();
    assert!(standing.member.is_none());
    let record = standing.ban.unwrap();
    assert_eq!((record.banned_by, record.created_at), (owner.id, 30));
    for keep_out in [
        Membership::Add(vec![(b.id, v1::Role::Member)]),
        Membership::Invite {
            users: vec![e.id, b.id],
            by: owner.id,
        },
        Membership::RequestJoin(b.id),
    ] {
        let err = refused(&store, change(g.id, keep_out.clone(), 31)).await;
        assert!(matches!(err, StoreError::Forbidden(_)), "{keep_out:?}: {err:?}");
    }
    assert!(
        store.standing(g.id, e.id).await.unwrap().invitation.is_none(),
        "a refused batch invites nobody"
    );
    store
        .append_message(change(
            g.id,
            Membership::Invite {
                users: vec![e.id],
                by: owner.id,
            },
            32,
        ))
        .await
        .unwrap();
    store.append_message(change(g.id, ban(e.id), 33)).await.unwrap();
    let standing = store.standing(g.id, e.id).await.unwrap();
    assert!(
        standing.ban.is_some() && standing.invitation.is_none(),
        "{standing:?}"
    );
    store
        .append_message(change(g.id, Membership::Unban(b.id), 34))
        .await
        .unwrap();
    let err = refused(&store, change(g.id, Membership::Unban(b.id), 35)).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(
        store.member(g.id, b.id).await.unwrap().is_none(),
        "unbanning does not add"
    );

    // Roles, all or nothing.
    let roles = Membership::Roles(vec![(c.id, v1::Role::Admin), (b.id, v1::Role::Admin)]);
    let err = refused(&store, change(g.id, roles, 40)).await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        store.member(g.id, c.id).await.unwrap().unwrap().role,
        v1::Role::Member,
        "the first role of a refused change is undone"
    );
    let transfer = Membership::Roles(vec![(c.id, v1::Role::Owner), (owner.id, v1::Role::Admin)]);
    store.append_message(change(g.id, transfer, 41)).await.unwrap();
    assert_eq!(
        store.member(g.id, c.id).await.unwrap().unwrap().role,
        v1::Role::Owner
    );
    assert_eq!(
        store.member(g.id, owner.id).await.unwrap().unwrap().role,
        v1::Role::Admin
    );

    // The join policy and the group mute live on the conversation.
    store
        .append_message(change(g.id, Membership::Policy(v1::JoinPolicy::Approval), 42))
        .await
        .unwrap();
    store
        .append_message(change(g.id, Membership::MuteAll(true), 43))
        .await
        .unwrap();
    let conv = store.conversation(g.id).await.unwrap().unwrap();
    assert_eq!(
        (conv.join_policy, conv.members_muted),
        (v1::JoinPolicy::Approval, true)
    );
    let err = refused(
        &store,
        change(
            g.id,
            Membership::Mute {
                user: b.id,
                until: 99,
            },
            44,
        ),
    )
    .await;
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "muting a non-member: {err:?}"
    );

    // Deleting the conversation takes its administration with it.
    store
        .append_message(change(
            g.id,
            Membership::Invite {
                users: vec![b.id],
                by: c.id,
            },
            50,
        ))
        .await
        .unwrap();
    assert_eq!(store.invitations_of(b.id, 10).await.unwrap().len(), 1);
    store.delete_conversation(g.id).await.unwrap();
    assert!(store.invitations_of(b.id, 10).await.unwrap().is_empty());
    assert_eq!(store.standing(g.id, e.id).await.unwrap(), Standing::default());
    assert!(store.bans(g.id, 0, 10).await.unwrap().is_empty());
}

pub async fn mutes_are_enforced_by_the_append(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let admin = user(&store, "admin").await;
    let m = user(&store, "m").await;
    let g = group(&store, owner.id, vec![admin.id, m.id]).await;
    let promote = Membership::Roles(vec![(admin.id, v1::Role::Admin)]);
    store.append_message(change(g.id, promote, 1)).await.unwrap();
    // Warm the sending path's caches, so that the changes below must
    // invalidate them.
    for sender in [owner.id, admin.id, m.id] {
        store.append_message(said(g.id, sender, 2)).await.unwrap();
    }

    let mute = |until| Membership::Mute { user: m.id, until };
    store.append_message(change(g.id, mute(100), 3)).await.unwrap();
    assert_eq!(
        store.member(g.id, m.id).await.unwrap().unwrap().send_muted_until,
        100
    );
    let err = refused(&store, said(g.id, m.id, 99)).await;
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    store.append_message(said(g.id, m.id, 100)).await.unwrap();
    store
        .append_message(change(g.id, mute(i64::MAX), 101))
        .await
        .unwrap();
    let err = refused(&store, said(g.id, m.id, 5_000)).await;
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    store.append_message(said(g.id, admin.id, 5_000)).await.unwrap();
    store.append_message(change(g.id, mute(0), 5_001)).await.unwrap();
    store.append_message(said(g.id, m.id, 5_002)).await.unwrap();

    // The whole group: only owners and admins.
    store
        .append_message(change(g.id, Membership::MuteAll(true), 6_000))
        .await
        .unwrap();
    let err = refused(&store, said(g.id, m.id, 6_001)).await;
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    store.append_message(said(g.id, owner.id, 6_002)).await.unwrap();
    store.append_message(said(g.id, admin.id, 6_003)).await.unwrap();
    // A member made admin may send at once; demoted, not.
    let roles = |role| Membership::Roles(vec![(m.id, role)]);
    store
        .append_message(change(g.id, roles(v1::Role::Admin), 6_004))
        .await
        .unwrap();
    store.append_message(said(g.id, m.id, 6_005)).await.unwrap();
    store
        .append_message(change(g.id, roles(v1::Role::Member), 6_006))
        .await
        .unwrap();
    let err = refused(&store, said(g.id, m.id, 6_007)).await;
    assert!(matches!(err, StoreError::Forbidden(_)), "{err:?}");
    store
        .append_message(change(g.id, Membership::MuteAll(false), 6_008))
        .await
        .unwrap();
    store.append_message(said(g.id, m.id, 6_009)).await.unwrap();

    // A non-member is still refused as one; seqs stayed gap-free.
    let outsider = user(&store, "outsider").await;
    let err = refused(&store, said(g.id, outsider.id, 7_000)).await;
    assert_eq!(err, StoreError::NotMember(g.id));
    let history = store.history(g.id, owner.id, Page::After(0), 100).await.unwrap();
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

pub async fn administration_reads_page_and_order(store: Arc<dyn Store>) {
    let owner = user(&store, "owner").await;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(user(&store, &format!("u{i}")).await.id);
    }
    let g = group(&store, owner.id, others[..3].to_vec()).await;
    // Members by user id, after a cursor.
    let page = store.members_page(g.id, 0, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        vec![owner.id, others[0]]
    );
    assert_eq!(page[0].role, v1::Role::Owner);
    let rest = store.members_page(g.id, others[0], 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        others[1..3].to_vec()
    );
    assert!(store.members_page(g.id + 1_000, 0, 10).await.unwrap().is_empty());

    // Join requests oldest first, ties by user.
    for (user, at) in [(others[4], 30), (others[3], 10), (owner.id + 1_000, 30)] {
        store
            .append_message(change(g.id, Membership::RequestJoin(user), at))
            .await
            .unwrap();
    }
    let order: Vec<UserId> = store
        .join_requests(g.id, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(order, vec![others[3], others[4], owner.id + 1_000]);
    assert_eq!(store.join_requests(g.id, 1).await.unwrap().len(), 1);

    // Invitations newest first across conversations.
    let h = group(&store, owner.id, vec![]).await;
    for (conv, at) in [(g.id, 40), (h.id, 50)] {
        let invite = Membership::Invite {
            users: vec![others[4]],
            by: owner.id,
        };
        store.append_message(change(conv, invite, at)).await.unwrap();
    }
    let mine = store.invitations_of(others[4], 10).await.unwrap();
    assert_eq!(
        mine.iter().map(|(c, i)| (c.id, i.created_at)).collect::<Vec<_>>(),
        vec![(h.id, 50), (g.id, 40)]
    );
    assert_eq!(mine[0].0.title, h.title, "with the conversation");
    assert_eq!(store.invitations_of(others[4], 1).await.unwrap().len(), 1);

    // Bans by user id, after a cursor.
    for &user in &others[..3] {
        store
            .append_message(change(g.id, Membership::Ban { user, by: owner.id }, 60))
            .await
            .unwrap();
    }
    let bans: Vec<UserId> = store
        .bans(g.id, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|b| b.user_id)
        .collect();
    assert_eq!(bans, others[..3].to_vec());
    let after: Vec<UserId> = store
        .bans(g.id, others[0], 1)
        .await
        .unwrap()
        .iter()
        .map(|b| b.user_id)
        .collect();
    assert_eq!(after, vec![others[1]]);
    assert_eq!(store.conversation(g.id).await.unwrap().unwrap().member_count, 1);
    // Rooms start open; direct conversations have no policy.
    let direct = store.direct_conversation(owner.id, others[0], 1).await.unwrap();
    assert_eq!(direct.join_policy, v1::JoinPolicy::Unspecified);
    let room = store
        .create_conversation(NewConversation {
            kind: v1::ConversationKind::Room,
            title: "r".into(),
            ephemeral: false,
            created_by: owner.id,
            created_at: 1,
            members: vec![],
        })
        .await
        .unwrap();
    assert_eq!(room.join_policy, v1::JoinPolicy::Open);
}
