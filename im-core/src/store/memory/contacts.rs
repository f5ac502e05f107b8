//! Contacts in the [`MemoryStore`](super::MemoryStore): friend requests,
//! friendships and blocks, and the rules the append applies with them.

use super::{Conv, Inner};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use im_protocol::v1;
use std::collections::{BTreeMap, BTreeSet};

/// Everything about contacts, under the store's one lock.
#[derive(Default)]
pub(super) struct Contacts {
    /// The latest request of each ordered pair (from, to).
    requests: BTreeMap<(UserId, UserId), FriendRequestRecord>,
    /// Friendships, both directions: (user, friend) to since.
    friends: BTreeMap<(UserId, UserId), i64>,
    /// Blocks: (blocker, blocked) to since.
    blocks: BTreeMap<(UserId, UserId), i64>,
    /// The same blocks by blocked user: (blocked, blocker).
    blocked_by: BTreeSet<(UserId, UserId)>,
}

impl Contacts {
    /// `blocker` blocks `blocked`.
    pub(super) fn blocks(&self, blocker: UserId, blocked: UserId) -> bool {
        self.blocks.contains_key(&(blocker, blocked))
    }

    fn friends(&self, a: UserId, b: UserId) -> bool {
        self.friends.contains_key(&(a, b))
    }

    /// Who blocks `user`, ascending.
    fn blockers_of(&self, user: UserId) -> impl Iterator<Item = UserId> + '_ {
        self.blocked_by
            .range((user, 0)..=(user, UserId::MAX))
            .map(|&(_, blocker)| blocker)
    }

    fn end_friendship(&mut self, a: UserId, b: UserId) -> bool {
        let were = self.friends.remove(&(a, b)).is_some();
        self.friends.remove(&(b, a));
        if were {
            // The accepted requests go with the friendship.
            self.requests.remove(&(a, b));
            self.requests.remove(&(b, a));
        }
        were
    }

    fn befriend(&mut self, a: UserId, b: UserId, at: i64) {
        self.friends.insert((a, b), at);
        self.friends.insert((b, a), at);
    }
}

impl Inner {
    /// The rules of an append by `sender` to a direct conversation:
    /// friendship (if asked), then blocks either way, refuse it.
    pub(super) fn check_direct_send(
        &self,
        conv: &Conv,
        sender: UserId,
        needs_friendship: bool,
    ) -> StoreResult<()> {
        if sender == 0 || conv.record.kind != v1::ConversationKind::Direct {
            return Ok(());
        }
        let Some(&other) = conv.members.keys().find(|&&m| m != sender) else {
            return Ok(());
        };
        if needs_friendship && !self.contacts.friends(sender, other) {
            return Err(StoreError::Forbidden(FRIENDS_ONLY.into()));
        }
        if self.contacts.blocks(other, sender) {
            return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
        }
        if self.contacts.blocks(sender, other) {
            return Err(StoreError::Forbidden(YOU_BLOCKED.into()));
        }
        Ok(())
    }

    /// The members of `conv` who block `sender`, ascending: a message from
    /// `sender` is hidden from them.
    pub(super) fn blockers_among(&self, conv: &Conv, sender: UserId) -> Vec<UserId> {
        if sender == 0 {
            return Vec::new();
        }
        self.contacts
            .blockers_of(sender)
            .filter(|u| conv.members.contains_key(u))
            .collect()
    }

    /// Refuses a new direct conversation between users with a block.
    pub(super) fn check_new_direct(&self, a: UserId, b: UserId) -> StoreResult<()> {
        if self.contacts.blocks(a, b) || self.contacts.blocks(b, a) {
            return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
        }
        Ok(())
    }

    fn known_other(&self, user: UserId, other: UserId) -> StoreResult<()> {
        if user == other {
            return Err(StoreError::Invalid("not with yourself".into()));
        }
        if !self.users.contains_key(&other) {
            return Err(StoreError::NotFound(format!("user {other}")));
        }
        Ok(())
    }

    /// See `Store::send_friend_request`.
    pub(super) fn send_friend_request(&mut self, new: NewFriendRequest) -> StoreResult<FriendRequestRecord> {
        let (from, to, at) = (new.from, new.to, new.at);
        self.known_other(from, to)?;
        let c = &mut self.contacts;
        if c.blocks(to, from) {
            return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
        }
        if c.blocks(from, to) {
            return Err(StoreError::Forbidden(YOU_BLOCKED.into()));
        }
        if c.friends(from, to) {
            return Err(StoreError::Conflict(format!("already friends with user {to}")));
        }
        let pending =
            |r: Option<&FriendRequestRecord>| r.is_some_and(|r| r.state == v1::FriendRequestState::Pending);
        if pending(c.requests.get(&(from, to))) {
            return Err(StoreError::Conflict(format!(
                "a friend request to user {to} is already pending"
            )));
        }
        let mutual = pending(c.requests.get(&(to, from)));
        let state = if mutual {
            v1::FriendRequestState::Accepted
        } else {
            v1::FriendRequestState::Pending
        };
        let record = FriendRequestRecord {
            from,
            to,
            message: new.message,
            state,
            created_at: at,
            updated_at: at,
        };
        c.requests.insert((from, to), record.clone());
        if mutual {
            if let Some(theirs) = c.requests.get_mut(&(to, from)) {
                theirs.state = v1::FriendRequestState::Accepted;
                theirs.updated_at = at;
            }
            c.befriend(from, to, at);
        }
        Ok(record)
    }

    /// See `Store::respond_friend_request`.
    pub(super) fn respond_friend_request(
        &mut self,
        from: UserId,
        to: UserId,
        accept: bool,
        at: i64,
    ) -> StoreResult<FriendRequestRecord> {
        let c = &mut self.contacts;
        let request = c
            .requests
            .get_mut(&(from, to))
            .filter(|r| r.state == v1::FriendRequestState::Pending)
            .ok_or_else(|| StoreError::NotFound(format!("no pending friend request from user {from}")))?;
        request.state = if accept {
            v1::FriendRequestState::Accepted
        } else {
            v1::FriendRequestState::Declined
        };
        request.updated_at = at;
        let record = request.clone();
        if accept {
            c.befriend(from, to, at);
        }
        Ok(record)
    }

    /// See `Store::remove_friend`.
    pub(super) fn remove_friend(&mut self, user: UserId, other: UserId) -> StoreResult<ContactRemoved> {
        let c = &mut self.contacts;
        if c.end_friendship(user, other) {
            return Ok(ContactRemoved::Friendship);
        }
        if c.requests
            .get(&(user, other))
            .is_some_and(|r| r.state == v1::FriendRequestState::Pending)
        {
            c.requests.remove(&(user, other));
            return Ok(ContactRemoved::Request);
        }
        Err(StoreError::NotFound(format!(
            "no friendship with, nor pending request to, user {other}"
        )))
    }

    /// See `Store::friends`.
    pub(super) fn friends_of(&self, user: UserId) -> Vec<(UserId, i64)> {
        let mut out: Vec<(UserId, i64)> = self
            .contacts
            .friends
            .range((user, 0)..=(user, UserId::MAX))
            .map(|(&(_, friend), &since)| (friend, since))
            .collect();
        out.sort_by_key(|&(friend, since)| (std::cmp::Reverse(since), friend));
        out
    }

    /// See `Store::friend_requests`.
    pub(super) fn friend_requests(&self, user: UserId) -> Vec<FriendRequestRecord> {
        let mut out: Vec<FriendRequestRecord> = self
            .contacts
            .requests
            .values()
            .filter(|r| r.from == user || r.to == user)
            .cloned()
            .collect();
        out.sort_by_key(|r| (std::cmp::Reverse(r.updated_at), r.from, r.to));
        out
    }

    /// See `Store::block_user`.
    pub(super) fn block_user(
        &mut self,
        blocker: UserId,
        blocked: UserId,
        at: i64,
    ) -> StoreResult<BlockOutcome> {
        self.known_other(blocker, blocked)?;
        let c = &mut self.contacts;
        if c.blocks(blocker, blocked) {
            return Err(StoreError::Conflict(format!("user {blocked} is already blocked")));
        }
        let ended_friendship = c.end_friendship(blocker, blocked);
        let withdrew_request = c
            .requests
            .remove(&(blocker, blocked))
            .is_some_and(|r| r.state == v1::FriendRequestState::Pending);
        c.requests.remove(&(blocked, blocker));
        c.blocks.insert((blocker, blocked), at);
        c.blocked_by.insert((blocked, blocker));
        Ok(BlockOutcome {
            ended_friendship,
            withdrew_request,
        })
    }

    /// See `Store::unblock_user`.
    pub(super) fn unblock_user(&mut self, blocker: UserId, blocked: UserId) -> StoreResult<()> {
        let c = &mut self.contacts;
        if c.blocks.remove(&(blocker, blocked)).is_none() {
            return Err(StoreError::NotFound(format!("user {blocked} is not blocked")));
        }
        c.blocked_by.remove(&(blocked, blocker));
        Ok(())
    }

    /// See `Store::blocked_users`.
    pub(super) fn blocked_users(&self, user: UserId) -> Vec<(UserId, i64)> {
        let mut out: Vec<(UserId, i64)> = self
            .contacts
            .blocks
            .range((user, 0)..=(user, UserId::MAX))
            .map(|(&(_, blocked), &at)| (blocked, at))
            .collect();
        out.sort_by_key(|&(blocked, at)| (std::cmp::Reverse(at), blocked));
        out
    }

    /// See `Store::block_relations`.
    pub(super) fn block_relations(&self, user: UserId) -> BlockRelations {
        BlockRelations {
            blocks: self
                .contacts
                .blocks
                .range((user, 0)..=(user, UserId::MAX))
                .map(|(&(_, blocked), _)| blocked)
                .collect(),
            blocked_by: self.contacts.blockers_of(user).collect(),
        }
    }

    /// See `Store::contact_state`.
    pub(super) fn contact_state(&self, a: UserId, b: UserId) -> ContactState {
        ContactState {
            friends: self.contacts.friends(a, b),
            a_blocks_b: self.contacts.blocks(a, b),
            b_blocks_a: self.contacts.blocks(b, a),
        }
    }
}
