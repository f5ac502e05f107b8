//! Authorization: who may do what, defined once.
//!
//! | action | who |
//! |---|---|
//! | send, edit | members who may send: owners and admins always; members unless muted (alone or with the whole group) |
//! | read history, changes, receipts, typing | members |
//! | look at a conversation, list its members | members; anyone for a public room |
//! | join | anyone not banned: public rooms and open groups at once; approval groups by request; invite-only groups by invitation |
//! | leave | members, not of a direct conversation (an owner's ownership passes on) |
//! | invite, add members | the owner or an admin; in open groups and rooms any member who may send (add: groups only) |
//! | rename, join policy, join requests, mute the group, list bans | the owner or an admin |
//! | kick, ban, mute a member | the owner or an admin, of someone they outrank (owner > admin > member); only members can be muted |
//! | roles, transfer ownership, dissolve | the owner |
//!
//! Direct conversations have no administration. The full table, with
//! muted and banned users, is in `docs/PROTOCOL.md` ("Group
//! administration"); [`may`] is it in code.
//!
//! The sending path's rule (the sender is a member after the message's
//! membership change, and may send) is applied by the store inside the
//! appending transaction, so a send costs one round trip
//! ([`Store`](crate::store::Store) docs); everything else is checked here,
//! against the actor's role read just before the change (the change's own
//! transaction re-checks what must hold there: membership, bans,
//! invitations, join requests).

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;

impl Engine {
    pub(super) async fn conversation(&self, id: ConversationId) -> Result<ConversationRecord> {
        self.inner
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {id}")))
    }

    /// The conversation and the caller's membership; `PermissionDenied` for non-members.
    pub(super) async fn require_member(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<(ConversationRecord, MemberRecord)> {
        let conv = self.conversation(id).await?;
        match self.inner.store.member(id, caller.user_id).await? {
            Some(m) => Ok((conv, m)),
            None => Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            ))),
        }
    }

    pub(super) fn check_title(&self, title: &str) -> Result<String> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::InvalidArgument("a title is required".into()));
        }
        if title.chars().count() > self.inner.config.max_title_chars {
            return Err(Error::TooLarge(format!(
                "title is limited to {} characters",
                self.inner.config.max_title_chars
            )));
        }
        Ok(title.to_owned())
    }

    pub(super) fn page(&self, limit: u32) -> u32 {
        if limit == 0 {
            50.min(self.inner.config.max_page_size)
        } else {
            limit.min(self.inner.config.max_page_size)
        }
    }
}

/// An administrative action of a member (see [`may`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    /// Invite users.
    Invite,
    /// Add users directly (groups).
    Add,
    /// Rename.
    Rename,
    /// Set the join policy.
    SetJoinPolicy,
    /// List and decide join requests.
    JoinRequests,
    /// Remove a member.
    Kick,
    /// Ban or unban a user, list the bans.
    Ban,
    /// Mute or unmute a member.
    Mute,
    /// Mute or unmute the whole group.
    MuteGroup,
    /// Promote or demote.
    SetRole,
    /// Pass ownership.
    Transfer,
    /// Delete the group for everyone.
    Dissolve,
}

impl Act {
    fn words(self) -> &'static str {
        match self {
            Act::Invite => "invite",
            Act::Add => "add members",
            Act::Rename => "rename",
            Act::SetJoinPolicy => "set the join policy",
            Act::JoinRequests => "handle join requests",
            Act::Kick => "remove members",
            Act::Ban => "ban",
            Act::Mute => "mute members",
            Act::MuteGroup => "mute the group",
            Act::SetRole => "change roles",
            Act::Transfer => "transfer ownership",
            Act::Dissolve => "dissolve",
        }
    }

    /// The verb for one person (kick, ban, mute).
    fn verb(self) -> &'static str {
        match self {
            Act::Kick => "remove",
            Act::Mute => "mute",
            _ => "ban",
        }
    }
}

/// True for owners and admins.
pub(super) fn manages(role: v1::Role) -> bool {
    matches!(role, v1::Role::Owner | v1::Role::Admin)
}

/// Owner > admin > member.
fn rank(role: v1::Role) -> u8 {
    match role {
        v1::Role::Owner => 3,
        v1::Role::Admin => 2,
        v1::Role::Member => 1,
        v1::Role::Unspecified => 0,
    }
}

/// The table of who may do what to a conversation's administration, in
/// code (the module docs and `docs/PROTOCOL.md` show it): `me` is the
/// actor's membership at `now`.
pub(super) fn may(conv: &ConversationRecord, me: &MemberRecord, act: Act, now: i64) -> Result<()> {
    use v1::ConversationKind::{Direct, Group, Room};
    if conv.kind == Direct {
        return Err(Error::InvalidArgument(
            "a direct conversation has no administration".into(),
        ));
    }
    match act {
        Act::Add if conv.kind != Group => {
            return Err(Error::InvalidArgument(
                "members can only be added to groups; invite them to a room".into(),
            ));
        }
        Act::SetJoinPolicy if conv.kind == Room => {
            return Err(Error::InvalidArgument(
                "a public room is always open; its join policy cannot change".into(),
            ));
        }
        _ => {}
    }
    let allowed = match act {
        Act::Invite | Act::Add => {
            manages(me.role)
                || (conv.join_policy == v1::JoinPolicy::Open && me.may_send(conv.members_muted, now))
        }
        Act::Rename
        | Act::SetJoinPolicy
        | Act::JoinRequests
        | Act::Kick
        | Act::Ban
        | Act::Mute
        | Act::MuteGroup => manages(me.role),
        Act::SetRole | Act::Transfer | Act::Dissolve => me.role == v1::Role::Owner,
    };
    if allowed {
        return Ok(());
    }
    Err(Error::PermissionDenied(match act {
        Act::Invite | Act::Add => format!(
            "only the owner or an admin can {} here (or any member who may send, in an open group)",
            act.words()
        ),
        Act::SetRole | Act::Transfer | Act::Dissolve => {
            format!("only the owner can {}", act.words())
        }
        _ => format!("only the owner or an admin can {}", act.words()),
    }))
}

/// Kicking, banning and muting act on someone the actor outranks.
pub(super) fn outranks(me: &MemberRecord, target: v1::Role, act: Act) -> Result<()> {
    if rank(me.role) > rank(target) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(match target {
            v1::Role::Owner => format!("nobody can {} the owner", act.verb()),
            _ => format!("only the owner can {} an admin", act.verb()),
        }))
    }
}
