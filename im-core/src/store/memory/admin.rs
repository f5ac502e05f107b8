//! Membership changes and group administration in the
//! [`MemoryStore`](super::MemoryStore): joins and leaves, invitations, join
//! requests, bans, roles, mutes and the join policy, each applied with the
//! system message announcing it (see `Store::append_message_then`), and
//! their reads.

use super::{Conv, Inner};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use im_protocol::v1;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A conversation's bans, pending invitations and join requests, by user.
#[derive(Debug, Clone, Default)]
pub(super) struct Admin {
    bans: BTreeMap<UserId, BanRecord>,
    invitations: BTreeMap<UserId, InvitationRecord>,
    join_requests: BTreeMap<UserId, JoinRequestRecord>,
}

/// What a membership change may alter, saved so that an append refused
/// after the change (the sender may not send) can put it back.
pub(super) struct Snapshot {
    members: BTreeMap<UserId, MemberRecord>,
    hidden: std::collections::HashMap<(UserId, MessageId), u64>,
    admin: Admin,
    record: ConversationRecord,
}

impl Conv {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            members: self.members.clone(),
            hidden: self.hidden.clone(),
            admin: self.admin.clone(),
            record: self.record.clone(),
        }
    }

    pub(super) fn restore(&mut self, snapshot: Snapshot) {
        self.members = snapshot.members;
        self.hidden = snapshot.hidden;
        self.admin = snapshot.admin;
        self.record = snapshot.record;
    }

    fn not_member(&self, user: UserId) -> StoreError {
        StoreError::NotFound(format!(
            "user {user} is not a member of conversation {}",
            self.record.id
        ))
    }

    fn refuse_banned(&self, users: impl IntoIterator<Item = UserId>) -> StoreResult<()> {
        for user in users {
            if self.admin.bans.contains_key(&user) {
                return Err(StoreError::Forbidden(format!(
                    "user {user} is banned from conversation {}",
                    self.record.id
                )));
            }
        }
        Ok(())
    }

    /// Adds a member unless present; drops their invitation and request.
    fn admit(&mut self, user: UserId, role: v1::Role, at: i64) {
        let id = self.record.id;
        self.members
            .entry(user)
            .or_insert_with(|| MemberRecord::new(id, user, role, at));
        self.admin.invitations.remove(&user);
        self.admin.join_requests.remove(&user);
    }
}

/// Applies a membership change to a conversation, or changes nothing and
/// says why not (see [`Membership`]).
pub(super) fn apply(conv: &mut Conv, change: &Membership, at: i64) -> StoreResult<()> {
    let id = conv.record.id;
    match change {
        Membership::Add(users) => {
            conv.refuse_banned(users.iter().map(|&(u, _)| u))?;
            for &(user, role) in users {
                conv.admit(user, role, at);
            }
        }
        Membership::Remove(user) => {
            conv.members.remove(user);
            super::changes::forget_member(conv, *user);
        }
        Membership::Invite { users, by } => {
            conv.refuse_banned(users.iter().copied())?;
            for &user in users {
                if !conv.members.contains_key(&user) {
                    conv.admin.invitations.entry(user).or_insert(InvitationRecord {
                        conversation_id: id,
                        user_id: user,
                        invited_by: *by,
                        created_at: at,
                    });
                }
            }
        }
        Membership::AcceptInvitation(user) => {
            if !conv.admin.invitations.contains_key(user) {
                return Err(no_invitation(*user, id));
            }
            conv.admit(*user, v1::Role::Member, at);
        }
        Membership::DeclineInvitation(user) => {
            if conv.admin.invitations.remove(user).is_none() {
                return Err(no_invitation(*user, id));
            }
        }
        Membership::RequestJoin(user) => {
            conv.refuse_banned([*user])?;
            if conv.members.contains_key(user) {
                return Err(StoreError::Conflict(format!(
                    "user {user} is a member of conversation {id} already"
                )));
            }
            conv.admin
                .join_requests
                .entry(*user)
                .or_insert(JoinRequestRecord {
                    conversation_id: id,
                    user_id: *user,
                    created_at: at,
                });
        }
        Membership::DecideJoin { user, approve } => {
            if conv.admin.join_requests.remove(user).is_none() {
                return Err(StoreError::NotFound(format!(
                    "user {user} has no join request in conversation {id}"
                )));
            }
            if *approve {
                conv.admit(*user, v1::Role::Member, at);
            }
        }
        Membership::Ban { user, by } => {
            conv.members.remove(user);
            super::changes::forget_member(conv, *user);
            conv.admin.invitations.remove(user);
            conv.admin.join_requests.remove(user);
            conv.admin.bans.entry(*user).or_insert(BanRecord {
                conversation_id: id,
                user_id: *user,
                banned_by: *by,
                created_at: at,
            });
        }
        Membership::Unban(user) => {
            if conv.admin.bans.remove(user).is_none() {
                return Err(StoreError::NotFound(format!(
                    "user {user} is not banned from conversation {id}"
                )));
            }
        }
        Membership::Roles(roles) => {
            if let Some(&(user, _)) = roles.iter().find(|(u, _)| !conv.members.contains_key(u)) {
                return Err(conv.not_member(user));
            }
            for &(user, role) in roles {
                if let Some(m) = conv.members.get_mut(&user) {
                    m.role = role;
                }
            }
        }
        Membership::Mute { user, until } => {
            let not_member = conv.not_member(*user);
            conv.members.get_mut(user).ok_or(not_member)?.send_muted_until = *until;
        }
        Membership::MuteAll(muted) => conv.record.members_muted = *muted,
        Membership::Policy(policy) => conv.record.join_policy = *policy,
    }
    Ok(())
}

fn no_invitation(user: UserId, conversation: ConversationId) -> StoreError {
    StoreError::NotFound(format!(
        "user {user} has no invitation to conversation {conversation}"
    ))
}

impl Inner {
    /// See `Store::standing`.
    pub(super) fn standing(&self, conversation: ConversationId, user: UserId) -> Standing {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Standing::default();
        };
        Standing {
            member: conv.members.get(&user).cloned(),
            ban: conv.admin.bans.get(&user).cloned(),
            invitation: conv.admin.invitations.get(&user).cloned(),
            join_request: conv.admin.join_requests.get(&user).cloned(),
        }
    }

    /// See `Store::invitations_of`.
    pub(super) fn invitations_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> Vec<(ConversationRecord, InvitationRecord)> {
        let mut found: Vec<_> = self
            .conversations
            .values()
            .filter_map(|c| Some((c.record.clone(), c.admin.invitations.get(&user)?.clone())))
            .collect();
        found.sort_by_key(|(c, i)| (std::cmp::Reverse(i.created_at), c.id));
        found.truncate(limit as usize);
        found
    }

    /// See `Store::join_requests`.
    pub(super) fn join_requests(&self, conversation: ConversationId, limit: u32) -> Vec<JoinRequestRecord> {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        let mut found: Vec<_> = conv.admin.join_requests.values().cloned().collect();
        found.sort_by_key(|r| (r.created_at, r.user_id));
        found.truncate(limit as usize);
        found
    }

    /// See `Store::bans`.
    pub(super) fn bans(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> Vec<BanRecord> {
        self.conversations.get(&conversation).map_or_else(Vec::new, |c| {
            c.admin
                .bans
                .range((Bound::Excluded(after_user), Bound::Unbounded))
                .take(limit as usize)
                .map(|(_, b)| b.clone())
                .collect()
        })
    }
}
