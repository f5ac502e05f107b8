//! Group administration through the engine, on every store (memory,
//! SQLite, PostgreSQL): the permission matrix (every action by every kind
//! of user: owner, admin, member, muted member, banned user, non-member,
//! allowed or refused), and the flows around it.

use futures_util::future::join_all;
use im_core::im_protocol::v1;
use im_core::store::Store;
use im_core::{Caller, Engine, Error, PasswordAuthConfig};
use std::sync::Arc;

fn engine(store: Arc<dyn Store>) -> Engine {
    Engine::builder()
        .password_auth(PasswordAuthConfig {
            argon2_m_cost: 256,
            argon2_t_cost: 1,
            ..Default::default()
        })
        .store(store)
        .build()
}

/// Who acts, in the matrix's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Owner,
    Admin,
    Member,
    Muted,
    Banned,
    Outsider,
}

const EVERYONE: [Who; 6] = [
    Who::Owner,
    Who::Admin,
    Who::Member,
    Who::Muted,
    Who::Banned,
    Who::Outsider,
];

/// What is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Send,
    Forward,
    EditOwnMessage,
    React,
    ReadHistory,
    ListMembers,
    Invite,
    InviteInOpenGroup,
    AddMembers,
    AddMembersInOpenGroup,
    Rename,
    Pin,
    SetMessageTtl,
    SetJoinPolicy,
    ListJoinRequests,
    DecideJoinRequest,
    KickMember,
    KickAdmin,
    BanMember,
    BanOutsider,
    Unban,
    ListBans,
    MuteMember,
    MuteAdmin,
    MuteGroup,
    Promote,
    TransferOwnership,
    Dissolve,
    JoinInviteOnly,
    JoinOpen,
    Leave,
}

const Y: bool = true;
const N: bool = false;

/// The permission table (docs/PROTOCOL.md, "Group administration"):
/// owner, admin, member, muted member, banned user, non-member. A
/// refusal must be `PERMISSION_DENIED`. Joining as a member is allowed
/// (it changes nothing).
const MATRIX: &[(Action, [bool; 6])] = &[
    (Action::Send, [Y, Y, Y, N, N, N]),
    (Action::Forward, [Y, Y, Y, N, N, N]),
    (Action::EditOwnMessage, [Y, Y, Y, N, N, N]),
    (Action::React, [Y, Y, Y, Y, N, N]),
    (Action::ReadHistory, [Y, Y, Y, Y, N, N]),
    (Action::ListMembers, [Y, Y, Y, Y, N, N]),
    (Action::Invite, [Y, Y, N, N, N, N]),
    (Action::InviteInOpenGroup, [Y, Y, Y, N, N, N]),
    (Action::AddMembers, [Y, Y, N, N, N, N]),
    (Action::AddMembersInOpenGroup, [Y, Y, Y, N, N, N]),
    (Action::Rename, [Y, Y, N, N, N, N]),
    (Action::Pin, [Y, Y, N, N, N, N]),
    (Action::SetMessageTtl, [Y, Y, N, N, N, N]),
    (Action::SetJoinPolicy, [Y, Y, N, N, N, N]),
    (Action::ListJoinRequests, [Y, Y, N, N, N, N]),
    (Action::DecideJoinRequest, [Y, Y, N, N, N, N]),
    (Action::KickMember, [Y, Y, N, N, N, N]),
    (Action::KickAdmin, [Y, N, N, N, N, N]),
    (Action::BanMember, [Y, Y, N, N, N, N]),
    (Action::BanOutsider, [Y, Y, N, N, N, N]),
    (Action::Unban, [Y, Y, N, N, N, N]),
    (Action::ListBans, [Y, Y, N, N, N, N]),
    (Action::MuteMember, [Y, Y, N, N, N, N]),
    (Action::MuteAdmin, [N, N, N, N, N, N]),
    (Action::MuteGroup, [Y, Y, N, N, N, N]),
    (Action::Promote, [Y, N, N, N, N, N]),
    (Action::TransferOwnership, [Y, N, N, N, N, N]),
    (Action::Dissolve, [Y, N, N, N, N, N]),
    (Action::JoinInviteOnly, [Y, Y, Y, Y, N, N]),
    (Action::JoinOpen, [Y, Y, Y, Y, N, Y]),
    (Action::Leave, [Y, Y, Y, Y, N, N]),
];

/// The users of every scene (registered once per engine).
#[derive(Clone)]
struct Cast {
    owner: Caller,
    admin: Caller,
    admin2: Caller,
    member: Caller,
    muted: Caller,
    banned: Caller,
    outsider: Caller,
    target: Caller,
    requester: Caller,
    newcomer: Caller,
}

impl Cast {
    async fn register(e: &Engine, prefix: &str) -> Self {
        let mut users = Vec::new();
        for name in [
            "owner",
            "admin",
            "admin2",
            "member",
            "muted",
            "banned",
            "outsider",
            "target",
            "requester",
            "newcomer",
        ] {
            let reg = e
                .register(&format!("{prefix}{name}"), "password123", "")
                .await
                .unwrap();
            users.push(Caller::user(reg.user.id));
        }
        let [
            owner,
            admin,
            admin2,
            member,
            muted,
            banned,
            outsider,
            target,
            requester,
            newcomer,
        ] = <[Caller; 10]>::try_from(users).unwrap_or_else(|_| unreachable!());
        Self {
            owner,
            admin,
            admin2,
            member,
            muted,
            banned,
            outsider,
            target,
            requester,
            newcomer,
        }
    }

    fn who(&self, who: Who) -> &Caller {
        match who {
            Who::Owner => &self.owner,
            Who::Admin => &self.admin,
            Who::Member => &self.member,
            Who::Muted => &self.muted,
            Who::Banned => &self.banned,
            Who::Outsider => &self.outsider,
        }
    }
}

fn text(conv: u64, body: &str) -> v1::SendMessage {
    v1::SendMessage {
        target: Some(v1::send_message::Target::ConversationId(conv)),
        client_msg_id: String::new(),
        content: Some(v1::Content::text(body)),
        ..Default::default()
    }
}

/// A fresh group: owner; admins `admin` and `admin2`; members `member`,
/// `muted` (muted until lifted) and `target`; `banned` (a member once);
/// `requester` with a pending join request; `outsider` and `newcomer`
/// never in it. Each member with a message of their own sent before the
/// mute and the ban. Returns the group and each actor's own message.
async fn scene(e: &Engine, cast: &Cast, policy: v1::JoinPolicy) -> (u64, Vec<(Who, u64)>) {
    let members = [
        cast.admin.user_id,
        cast.admin2.user_id,
        cast.member.user_id,
        cast.muted.user_id,
        cast.target.user_id,
        cast.banned.user_id,
    ];
    let g = e
        .create_group(cast.owner.clone(), "scene", &members)
        .await
        .unwrap()
        .id;
    for admin in [&cast.admin, &cast.admin2] {
        let promote = v1::SetRole {
            conversation_id: g,
            user_id: admin.user_id,
            role: v1::Role::Admin as i32,
        };
        e.set_role(cast.owner.clone(), promote).await.unwrap();
    }
    let mut own = Vec::new();
    for who in [Who::Owner, Who::Admin, Who::Member, Who::Muted, Who::Banned] {
        let ack = e
            .send_message(cast.who(who).clone(), text(g, "mine"))
            .await
            .unwrap();
        own.push((who, ack.message_id));
    }
    let mute = v1::MuteMember {
        conversation_id: g,
        user_id: cast.muted.user_id,
        until: i64::MAX,
    };
    e.mute_member(cast.owner.clone(), mute).await.unwrap();
    let ban = v1::BanMember {
        conversation_id: g,
        user_id: cast.banned.user_id,
    };
    e.ban_member(cast.owner.clone(), ban).await.unwrap();
    let set = |policy: v1::JoinPolicy| v1::SetJoinPolicy {
        conversation_id: g,
        policy: policy as i32,
    };
    e.set_join_policy(cast.owner.clone(), set(v1::JoinPolicy::Approval))
        .await
        .unwrap();
    let asked = e.join(cast.requester.clone(), g).await.unwrap();
    assert!(asked.join_requested);
    e.set_join_policy(cast.owner.clone(), set(policy)).await.unwrap();
    (g, own)
}

/// Tries one action as one user in a fresh scene: `Ok(true)` if allowed,
/// `Ok(false)` if refused with `PERMISSION_DENIED`, `Err` for any other
/// answer (a broken scene or a wrong error code).
async fn attempt(e: &Engine, cast: &Cast, action: Action, who: Who) -> Result<bool, String> {
    let policy = match action {
        Action::InviteInOpenGroup | Action::AddMembersInOpenGroup | Action::JoinOpen => v1::JoinPolicy::Open,
        _ => v1::JoinPolicy::InviteOnly,
    };
    let (g, own) = scene(e, cast, policy).await;
    let me = cast.who(who).clone();
    let owners_message = own[0].1;
    let my_message = own
        .iter()
        .find(|(w, _)| *w == who)
        .map_or(owners_message, |(_, id)| *id);
    let target = cast.target.user_id;
    let result: Result<(), Error> = match action {
        Action::Send => e.send_message(me, text(g, "hello")).await.map(drop),
        Action::Forward => {
            let forward = v1::ForwardMessages {
                from_conversation_id: g,
                message_ids: vec![owners_message],
                target: Some(v1::forward_messages::Target::ConversationId(g)),
                ..Default::default()
            };
            e.forward_messages(me, forward).await.map(drop)
        }
        Action::Pin => {
            let pin = v1::PinMessage {
                conversation_id: g,
                message_id: owners_message,
                unpin: false,
            };
            e.pin_message(me, pin).await.map(drop)
        }
        Action::SetMessageTtl => {
            let ttl = v1::SetMessageTtl {
                conversation_id: g,
                ttl_ms: 60_000,
            };
            e.set_message_ttl(me, ttl).await.map(drop)
        }
        Action::EditOwnMessage => {
            let edit = v1::EditMessage {
                conversation_id: g,
                message_id: my_message,
                content: Some(v1::Content::text("edited")),
            };
            e.edit_message(me, edit).await.map(drop)
        }
        Action::React => {
            let react = v1::React {
                conversation_id: g,
                message_id: owners_message,
                emoji: "👍".into(),
                remove: false,
            };
            e.react(me, react).await.map(drop)
        }
        Action::ReadHistory => {
            let page = v1::GetHistory {
                conversation_id: g,
                limit: 10,
                ..Default::default()
            };
            e.history(me, page).await.map(drop)
        }
        Action::ListMembers => {
            let page = v1::ListMembers {
                conversation_id: g,
                after_user_id: 0,
                limit: 2,
            };
            e.list_members(me, page).await.map(drop)
        }
        Action::Invite | Action::InviteInOpenGroup => {
            let invite = v1::InviteMembers {
                conversation_id: g,
                user_ids: vec![cast.newcomer.user_id],
            };
            e.invite_members(me, invite).await.map(drop)
        }
        Action::AddMembers | Action::AddMembersInOpenGroup => {
            e.add_members(me, g, &[cast.newcomer.user_id]).await.map(drop)
        }
        Action::Rename => e.rename(me, g, "renamed").await.map(drop),
        Action::SetJoinPolicy => {
            let set = v1::SetJoinPolicy {
                conversation_id: g,
                policy: v1::JoinPolicy::Open as i32,
            };
            e.set_join_policy(me, set).await.map(drop)
        }
        Action::ListJoinRequests => {
            let list = v1::ListJoinRequests {
                conversation_id: g,
                limit: 0,
            };
            e.list_join_requests(me, list).await.map(drop)
        }
        Action::DecideJoinRequest => {
            let decide = v1::DecideJoinRequest {
                conversation_id: g,
                user_id: cast.requester.user_id,
                approve: true,
            };
            e.decide_join_request(me, decide).await.map(drop)
        }
        Action::KickMember | Action::KickAdmin => {
            let user_id = if action == Action::KickAdmin {
                cast.admin2.user_id
            } else {
                target
            };
            let kick = v1::KickMember {
                conversation_id: g,
                user_id,
            };
            e.kick_member(me, kick).await.map(drop)
        }
        Action::BanMember | Action::BanOutsider => {
            let user_id = if action == Action::BanOutsider {
                cast.newcomer.user_id
            } else {
                target
            };
            let ban = v1::BanMember {
                conversation_id: g,
                user_id,
            };
            e.ban_member(me, ban).await.map(drop)
        }
        Action::Unban => {
            let unban = v1::UnbanMember {
                conversation_id: g,
                user_id: cast.banned.user_id,
            };
            e.unban_member(me, unban).await.map(drop)
        }
        Action::ListBans => {
            let list = v1::ListBans {
                conversation_id: g,
                after_user_id: 0,
                limit: 0,
            };
            e.list_bans(me, list).await.map(drop)
        }
        Action::MuteMember | Action::MuteAdmin => {
            let user_id = if action == Action::MuteAdmin {
                cast.admin2.user_id
            } else {
                target
            };
            let mute = v1::MuteMember {
                conversation_id: g,
                user_id,
                until: i64::MAX,
            };
            e.mute_member(me, mute).await.map(drop)
        }
        Action::MuteGroup => {
            let mute = v1::MuteGroup {
                conversation_id: g,
                muted: true,
            };
            e.mute_group(me, mute).await.map(drop)
        }
        Action::Promote => {
            let promote = v1::SetRole {
                conversation_id: g,
                user_id: target,
                role: v1::Role::Admin as i32,
            };
            e.set_role(me, promote).await.map(drop)
        }
        Action::TransferOwnership => {
            let transfer = v1::TransferOwnership {
                conversation_id: g,
                user_id: target,
            };
            e.transfer_ownership(me, transfer).await.map(drop)
        }
        Action::Dissolve => {
            e.dissolve_group(me, v1::DissolveGroup { conversation_id: g })
                .await
        }
        Action::JoinInviteOnly | Action::JoinOpen => e.join(me, g).await.map(drop),
        Action::Leave => e.leave(me, g).await,
    };
    match result {
        Ok(()) => Ok(true),
        Err(Error::PermissionDenied(_)) => Ok(false),
        Err(other) => Err(format!("{action:?} by {who:?}: {other:?}")),
    }
}

/// Every action by everyone, each in a fresh scene, several at a time (so
/// the SQL stores commit them in shared batches); every difference from
/// the table is reported at once.
async fn permission_matrix(store: Arc<dyn Store>) {
    let e = engine(store);
    let cast = Cast::register(&e, "pm").await;
    let cases: Vec<(Action, Who, bool)> = MATRIX
        .iter()
        .flat_map(|&(action, row)| {
            EVERYONE
                .iter()
                .zip(row)
                .map(move |(&who, allowed)| (action, who, allowed))
        })
        .collect();
    let mut wrong = Vec::new();
    for batch in cases.chunks(24) {
        let outcomes = join_all(batch.iter().map(|&(action, who, allowed)| {
            let (e, cast) = (e.clone(), cast.clone());
            async move { (action, who, allowed, attempt(&e, &cast, action, who).await) }
        }))
        .await;
        for (action, who, allowed, outcome) in outcomes {
            match outcome {
                Ok(got) if got == allowed => {}
                Ok(got) => wrong.push(format!(
                    "{action:?} by {who:?}: {} but the table says {}",
                    if got { "allowed" } else { "refused" },
                    if allowed { "allowed" } else { "refused" }
                )),
                Err(e) => wrong.push(e),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Invitations, join requests, kicks, bans, mutes, ownership and
/// dissolving, with the state each leaves and the history they write.
async fn administration_flows(store: Arc<dyn Store>) {
    let e = engine(store.clone());
    let cast = Cast::register(&e, "fl").await;
    let owner = cast.owner.clone();
    let g = e
        .create_group(owner.clone(), "flows", &[cast.member.user_id])
        .await
        .unwrap();
    assert_eq!(g.join_policy, v1::JoinPolicy::InviteOnly as i32);

    // Invite-only: joining needs the invitation; joining then accepts it.
    let refused = e.join(cast.outsider.clone(), g.id).await.unwrap_err();
    assert!(matches!(refused, Error::PermissionDenied(_)), "{refused:?}");
    let invite = v1::InviteMembers {
        conversation_id: g.id,
        user_ids: vec![cast.outsider.user_id, cast.newcomer.user_id, cast.member.user_id],
    };
    e.invite_members(owner.clone(), invite).await.unwrap();
    let pending = e
        .list_invitations(cast.newcomer.clone(), v1::ListInvitations::default())
        .await
        .unwrap();
    assert_eq!(pending.invitations.len(), 1);
    let invitation = &pending.invitations[0];
    assert_eq!(invitation.invited_by, owner.user_id);
    assert_eq!(invitation.conversation.as_ref().unwrap().title, "flows");
    let joined = e.join(cast.outsider.clone(), g.id).await.unwrap();
    assert_eq!(joined.role, v1::Role::Member as i32);
    let declined = v1::RespondInvitation {
        conversation_id: g.id,
        accept: false,
    };
    assert!(
        e.respond_invitation(cast.newcomer.clone(), declined)
            .await
            .unwrap()
            .is_none()
    );
    let again = e
        .respond_invitation(cast.newcomer.clone(), declined)
        .await
        .unwrap_err();
    assert!(matches!(again, Error::NotFound(_)), "{again:?}");

    // Approval: a join request, listed for admins, approved once.
    let approval = v1::SetJoinPolicy {
        conversation_id: g.id,
        policy: v1::JoinPolicy::Approval as i32,
    };
    e.set_join_policy(owner.clone(), approval).await.unwrap();
    let asked = e.join(cast.requester.clone(), g.id).await.unwrap();
    assert!(asked.join_requested && asked.role == v1::Role::Unspecified as i32);
    let requests = e
        .list_join_requests(
            owner.clone(),
            v1::ListJoinRequests {
                conversation_id: g.id,
                limit: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(requests.requests.len(), 1);
    let decide = |user_id, approve| v1::DecideJoinRequest {
        conversation_id: g.id,
        user_id,
        approve,
    };
    e.decide_join_request(owner.clone(), decide(cast.requester.user_id, true))
        .await
        .unwrap();
    let err = e
        .decide_join_request(owner.clone(), decide(cast.requester.user_id, true))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");

    // A banned user cannot come back by any way; unbanned, they can.
    let ban = v1::BanMember {
        conversation_id: g.id,
        user_id: cast.requester.user_id,
    };
    let after_ban = e.ban_member(owner.clone(), ban).await.unwrap();
    assert_eq!(after_ban.member_count, 3);
    for err in [
        e.join(cast.requester.clone(), g.id).await.map(drop).unwrap_err(),
        e.add_members(owner.clone(), g.id, &[cast.requester.user_id])
            .await
            .map(drop)
            .unwrap_err(),
        e.invite_members(
            owner.clone(),
            v1::InviteMembers {
                conversation_id: g.id,
                user_ids: vec![cast.requester.user_id],
            },
        )
        .await
        .map(drop)
        .unwrap_err(),
    ] {
        assert!(matches!(err, Error::PermissionDenied(_)), "{err:?}");
    }
    let bans = e
        .list_bans(
            owner.clone(),
            v1::ListBans {
                conversation_id: g.id,
                after_user_id: 0,
                limit: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(bans.bans.len(), 1);
    let unban = v1::UnbanMember {
        conversation_id: g.id,
        user_id: cast.requester.user_id,
    };
    e.unban_member(owner.clone(), unban).await.unwrap();
    assert!(e.join(cast.requester.clone(), g.id).await.unwrap().join_requested);

    // Muting: a time in the past is a bad argument; the group mute lets
    // owners and admins speak.
    let past = v1::MuteMember {
        conversation_id: g.id,
        user_id: cast.member.user_id,
        until: 1,
    };
    let err = e.mute_member(owner.clone(), past).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let muted = e
        .mute_group(
            owner.clone(),
            v1::MuteGroup {
                conversation_id: g.id,
                muted: true,
            },
        )
        .await
        .unwrap();
    assert!(muted.members_muted);
    let err = e
        .send_message(cast.member.clone(), text(g.id, "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err:?}");
    e.send_message(owner.clone(), text(g.id, "announcement"))
        .await
        .unwrap();
    e.mute_group(
        owner.clone(),
        v1::MuteGroup {
            conversation_id: g.id,
            muted: false,
        },
    )
    .await
    .unwrap();
    e.send_message(cast.member.clone(), text(g.id, "hi"))
        .await
        .unwrap();

    // The owner leaves: the longest-standing admin would take over; with
    // none, the longest-standing member (here `member`, added at creation).
    e.leave(owner.clone(), g.id).await.unwrap();
    let page = e
        .list_members(
            cast.member.clone(),
            v1::ListMembers {
                conversation_id: g.id,
                after_user_id: 0,
                limit: 0,
            },
        )
        .await
        .unwrap();
    let roles: Vec<(u64, i32)> = page.members.iter().map(|m| (m.user_id, m.role)).collect();
    assert!(
        roles.contains(&(cast.member.user_id, v1::Role::Owner as i32)),
        "{roles:?}"
    );
    assert!(!roles.iter().any(|&(u, _)| u == owner.user_id));
    // Ownership moves on; the old owner becomes an admin.
    let transfer = v1::TransferOwnership {
        conversation_id: g.id,
        user_id: cast.outsider.user_id,
    };
    let after = e.transfer_ownership(cast.member.clone(), transfer).await.unwrap();
    assert_eq!(after.role, v1::Role::Admin as i32);

    // Every change above is a system message in the history, in order.
    let history = e
        .history(
            cast.outsider.clone(),
            v1::GetHistory {
                conversation_id: g.id,
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let kinds: Vec<v1::SystemKind> = history
        .messages
        .iter()
        .filter_map(|m| match m.content.as_ref()?.kind.as_ref()? {
            v1::content::Kind::System(s) => v1::SystemKind::try_from(s.kind).ok(),
            _ => None,
        })
        .collect();
    use v1::SystemKind as K;
    assert_eq!(
        kinds,
        vec![
            K::Created,
            K::Invited,
            K::Joined,
            K::InvitationDeclined,
            K::JoinPolicyChanged,
            K::JoinRequested,
            K::JoinApproved,
            K::Banned,
            K::Unbanned,
            K::JoinRequested,
            K::GroupMuted,
            K::GroupUnmuted,
            K::OwnershipTransferred,
            K::Left,
            K::OwnershipTransferred,
        ]
    );

    // Dissolving deletes it for everyone.
    e.dissolve_group(
        cast.outsider.clone(),
        v1::DissolveGroup {
            conversation_id: g.id,
        },
    )
    .await
    .unwrap();
    let gone = e.get_conversation(cast.member.clone(), g.id).await.unwrap_err();
    assert!(matches!(gone, Error::NotFound(_)), "{gone:?}");
    assert!(store.join_requests(g.id, 10).await.unwrap().is_empty());
    // Direct conversations have no administration.
    let direct = e
        .send_message(
            cast.member.clone(),
            v1::SendMessage {
                target: Some(v1::send_message::Target::ToUserId(cast.target.user_id)),
                client_msg_id: String::new(),
                content: Some(v1::Content::text("hi")),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .conversation_id;
    let kick = v1::KickMember {
        conversation_id: direct,
        user_id: cast.target.user_id,
    };
    let err = e.kick_member(cast.member.clone(), kick).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

macro_rules! on_every_store {
    ($($name:ident),*) => {
        mod memory_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Arc::new(im_core::MemoryStore::new())).await;
                }
            )*
        }

        mod sqlite_store {
            use super::*;
            use im_core::store::{SqliteStore, SqliteStoreConfig};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqliteStore::open(SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
                        .await
                        .unwrap();
                    super::$name(Arc::new(store)).await;
                }
            )*
        }

        mod postgres_store {
            use super::*;
            use im_core::store::postgres::testing::TempSchema;
            use im_core::store::{PostgresStore, PostgresStoreConfig};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let schema = TempSchema::create();
                    let store = PostgresStore::open(PostgresStoreConfig::new(schema.url())).await.unwrap();
                    super::$name(Arc::new(store)).await;
                }
            )*
        }
    };
}

on_every_store!(permission_matrix, administration_flows);
