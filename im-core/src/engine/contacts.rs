//! Contacts: friend requests (send, accept, decline, withdraw), friendships,
//! and the `contact` events that tell both users' devices. Blocks are in
//! [`blocks`](super::blocks); the rules a block or a missing friendship
//! put on messages are checked by the store in the append.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::{ContactRemoved, DeviceAddress, NewFriendRequest, UserId};
use im_protocol::v1;
use std::collections::HashMap;

/// Longest note sent with a friend request, in bytes.
pub const MAX_FRIEND_REQUEST_BYTES: usize = 500;

/// The rules of contacts. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct ContactsConfig {
    /// Only friends may message each other in direct conversations
    /// (default false: anyone who is not blocked may).
    pub direct_requires_friendship: bool,
    /// How long a node keeps a user's blocks to filter presence, typing and
    /// receipts, ms (default 30 s). A block drops the entries of the two
    /// users on every node at once through the fan-out; this only bounds
    /// what a lost fan-out envelope leaves stale. 0: read every time.
    /// Messages never depend on it (the store applies blocks).
    pub block_cache_ms: i64,
    /// Most friend requests a user may have pending at once (default 500).
    pub max_pending_requests: usize,
}

impl Default for ContactsConfig {
    fn default() -> Self {
        Self {
            direct_requires_friendship: false,
            block_cache_ms: 30_000,
            max_pending_requests: 500,
        }
    }
}

impl Engine {
    /// Asks `req.user_id` to be the caller's friend; if they had asked the
    /// caller, both are friends at once (the answer's state is `ACCEPTED`).
    /// Both users' devices get a `contact` event (`REQUEST`, or `ACCEPTED`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = engine.register("alice", "correct horse", "Alice").await?;
    /// let bob = engine.register("bob", "battery staple", "Bob").await?;
    /// let ask = |to| v1::SendFriendRequest { user_id: to, message: "hi".into() };
    /// let sent = engine.send_friend_request(Caller::user(alice.user.id), ask(bob.user.id)).await?;
    /// assert_eq!(sent.state(), v1::FriendRequestState::Pending);
    /// // Bob asks back: mutual, so they are friends.
    /// let back = engine.send_friend_request(Caller::user(bob.user.id), ask(alice.user.id)).await?;
    /// assert_eq!(back.state(), v1::FriendRequestState::Accepted);
    /// let friends = engine.list_friends(Caller::user(alice.user.id)).await?;
    /// assert_eq!(friends.friends[0].user.as_ref().unwrap().id, bob.user.id);
    /// # Ok(()) }
    /// ```
    pub async fn send_friend_request(
        &self,
        caller: Caller,
        req: v1::SendFriendRequest,
    ) -> Result<v1::FriendRequest> {
        if req.user_id == caller.user_id {
            return Err(Error::InvalidArgument(
                "you cannot send a friend request to yourself".into(),
            ));
        }
        if req.message.len() > MAX_FRIEND_REQUEST_BYTES {
            return Err(Error::TooLarge(format!(
                "a friend request's message is limited to {MAX_FRIEND_REQUEST_BYTES} bytes"
            )));
        }
        let max = self.inner.config.contacts.max_pending_requests;
        let pending = self
            .inner
            .store
            .friend_requests(caller.user_id)
            .await?
            .iter()
            .filter(|r| r.from == caller.user_id && r.state == v1::FriendRequestState::Pending)
            .count();
        if pending >= max {
            return Err(Error::TooLarge(format!(
                "at most {max} friend requests may wait for an answer: withdraw some first"
            )));
        }
        let record = self
            .inner
            .store
            .send_friend_request(NewFriendRequest {
                from: caller.user_id,
                to: req.user_id,
                message: req.message,
                at: self.now_ms(),
            })
            .await?;
        let wire = record.to_wire();
        let kind = match record.state {
            v1::FriendRequestState::Accepted => v1::ContactEventKind::Accepted,
            _ => v1::ContactEventKind::Request,
        };
        self.tell_contact(&caller, kind, req.user_id, Some(wire.clone()), true);
        Ok(wire)
    }

    /// Accepts or declines the pending request `req.user_id` sent the
    /// caller. Both users' devices get `ACCEPTED` or `DECLINED`.
    pub async fn respond_friend_request(
        &self,
        caller: Caller,
        req: v1::RespondFriendRequest,
    ) -> Result<v1::FriendRequest> {
        let record = self
            .inner
            .store
            .respond_friend_request(req.user_id, caller.user_id, req.accept, self.now_ms())
            .await?;
        let wire = record.to_wire();
        let kind = if req.accept {
            v1::ContactEventKind::Accepted
        } else {
            v1::ContactEventKind::Declined
        };
        self.tell_contact(&caller, kind, req.user_id, Some(wire.clone()), true);
        Ok(wire)
    }

    /// Ends the caller's friendship with `user_id`, or withdraws their
    /// pending request to them. Both users' devices get `REMOVED` or
    /// `CANCELLED`.
    pub async fn remove_friend(&self, caller: Caller, user_id: UserId) -> Result<()> {
        let removed = self.inner.store.remove_friend(caller.user_id, user_id).await?;
        let kind = match removed {
            ContactRemoved::Friendship => v1::ContactEventKind::Removed,
            ContactRemoved::Request => v1::ContactEventKind::Cancelled,
        };
        self.tell_contact(&caller, kind, user_id, None, true);
        Ok(())
    }

    /// The caller's friends with their profiles, most recent first.
    pub async fn list_friends(&self, caller: Caller) -> Result<v1::Friends> {
        let friends = self.inner.store.friends(caller.user_id).await?;
        let profiles = self.profiles(friends.iter().map(|&(u, _)| u)).await?;
        Ok(v1::Friends {
            friends: friends
                .into_iter()
                .map(|(user, since)| v1::Friend {
                    user: profiles.get(&user).cloned(),
                    since,
                })
                .collect(),
        })
    }

    /// The caller's friend requests, incoming and outgoing, most recently
    /// changed first.
    pub async fn list_friend_requests(&self, caller: Caller) -> Result<v1::FriendRequests> {
        let mut out = v1::FriendRequests::default();
        for r in self.inner.store.friend_requests(caller.user_id).await? {
            if r.to == caller.user_id {
                out.incoming.push(r.to_wire());
            } else {
                out.outgoing.push(r.to_wire());
            }
        }
        Ok(out)
    }

    /// The public profiles of these users, by id.
    pub(super) async fn profiles(
        &self,
        ids: impl Iterator<Item = UserId>,
    ) -> Result<HashMap<UserId, v1::User>> {
        let ids: Vec<UserId> = ids.collect();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            for u in self.inner.store.users_by_ids(chunk).await? {
                out.insert(u.id, u.to_wire());
            }
        }
        Ok(out)
    }

    /// A `contact` event about the caller and `other`: to the caller's
    /// other devices (the acting one has the answer), and to `other`'s
    /// devices too if `both`. Through the fan-out like every event, so it
    /// reaches their devices on every node.
    pub(super) fn tell_contact(
        &self,
        caller: &Caller,
        kind: v1::ContactEventKind,
        other: UserId,
        request: Option<v1::FriendRequest>,
        both: bool,
    ) {
        let users = if both {
            vec![caller.user_id, other]
        } else {
            vec![caller.user_id]
        };
        let mut audience = Audience::users(users);
        if !caller.device.as_str().is_empty() {
            audience = audience.except_device(DeviceAddress {
                user_id: caller.user_id,
                device: caller.device.clone(),
            });
        }
        let event = v1::event::Kind::Contact(v1::ContactEvent {
            kind: kind as i32,
            from_user_id: caller.user_id,
            to_user_id: other,
            request,
            at: self.now_ms(),
        });
        self.dispatch(&self.envelope(0, audience, 0, event), None);
    }
}
