//! The records of contacts: friend requests, friendships and blocks.

use super::UserId;
use im_protocol::v1;

/// A friend request as the store keeps it: one per (from, to) pair, the
/// latest one sent (a request sent again after an answer replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequestRecord {
    /// Who asked.
    pub from: UserId,
    /// Who was asked.
    pub to: UserId,
    /// The note sent with it.
    pub message: String,
    /// Pending, accepted or declined.
    pub state: v1::FriendRequestState,
    /// When it was sent, Unix ms.
    pub created_at: i64,
    /// When it last changed (sent, accepted, declined), Unix ms.
    pub updated_at: i64,
}

impl FriendRequestRecord {
    /// The wire form.
    pub fn to_wire(&self) -> v1::FriendRequest {
        v1::FriendRequest {
            from_user_id: self.from,
            to_user_id: self.to,
            message: self.message.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A friend request to record (see `Store::send_friend_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFriendRequest {
    /// Who asks.
    pub from: UserId,
    /// Who is asked.
    pub to: UserId,
    /// The note.
    pub message: String,
    /// Now, Unix ms.
    pub at: i64,
}

/// What `Store::remove_friend` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactRemoved {
    /// A friendship (both sides).
    Friendship,
    /// The remover's own pending request to the other user.
    Request,
}

/// What `Store::block_user` ended besides recording the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockOutcome {
    /// The two were friends: not any more.
    pub ended_friendship: bool,
    /// The blocker's pending request to the blocked user was withdrawn.
    pub withdrew_request: bool,
}

/// The blocks a user is part of, both ways: what hides their presence and
/// typing from others and others' from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRelations {
    /// Whom the user blocks, ascending.
    pub blocks: Vec<UserId>,
    /// Who blocks the user, ascending.
    pub blocked_by: Vec<UserId>,
}

impl BlockRelations {
    /// True if `other` blocks the user or the user blocks `other`.
    pub fn either_way(&self, other: UserId) -> bool {
        self.blocks.binary_search(&other).is_ok() || self.blocked_by.binary_search(&other).is_ok()
    }

    /// True if the user is part of no block at all.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.blocked_by.is_empty()
    }
}

/// Friendship and blocks between two users `a` and `b`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContactState {
    /// They are friends.
    pub friends: bool,
    /// `a` blocks `b`.
    pub a_blocks_b: bool,
    /// `b` blocks `a`.
    pub b_blocks_a: bool,
}

/// The message a user who may not write to another gets: the same whether
/// they are blocked or not friends, so it tells nothing more.
pub const CANNOT_MESSAGE: &str = "cannot message this user";
/// The message a user who blocks another gets when writing to them.
pub const YOU_BLOCKED: &str = "you block this user: unblock them to message them";
/// The message a non-friend gets when direct messages need friendship
/// (checked before blocks, so a blocked user learns nothing more).
pub const FRIENDS_ONLY: &str = "only friends can message each other directly: send a friend request";
