//! Contacts and blocks: friend requests, the friends list, the block list.
//! Changes made on another device, or by the other user, arrive as
//! [`Event::Contact`](crate::Event::Contact).

use crate::client::unexpected;
use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};

impl Client {
    /// Asks `user_id` to be our friend, with a note (at most 500 bytes). If
    /// they had asked us, we are friends at once: the answer's state is
    /// `ACCEPTED`.
    pub async fn send_friend_request(&self, user_id: u64, message: &str) -> Result<v1::FriendRequest> {
        let request = v1::SendFriendRequest {
            user_id,
            message: message.to_owned(),
        };
        match self.request(Body::SendFriendRequest(request)).await? {
            Reply::FriendRequest(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Accepts the pending request `user_id` sent us.
    pub async fn accept_friend_request(&self, user_id: u64) -> Result<v1::FriendRequest> {
        self.respond_friend_request(user_id, true).await
    }

    /// Declines the pending request `user_id` sent us.
    pub async fn decline_friend_request(&self, user_id: u64) -> Result<v1::FriendRequest> {
        self.respond_friend_request(user_id, false).await
    }

    async fn respond_friend_request(&self, user_id: u64, accept: bool) -> Result<v1::FriendRequest> {
        let request = v1::RespondFriendRequest { user_id, accept };
        match self.request(Body::RespondFriendRequest(request)).await? {
            Reply::FriendRequest(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Ends our friendship with `user_id`, or withdraws our pending
    /// request to them.
    pub async fn remove_friend(&self, user_id: u64) -> Result<()> {
        match self
            .request(Body::RemoveFriend(v1::RemoveFriend { user_id }))
            .await?
        {
            Reply::Ok(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Our friends with their profiles, most recent first.
    pub async fn friends(&self) -> Result<Vec<v1::Friend>> {
        match self.request(Body::ListFriends(v1::ListFriends {})).await? {
            Reply::Friends(f) => Ok(f.friends),
            other => Err(unexpected(other)),
        }
    }

    /// Our friend requests, incoming and outgoing, most recently changed first.
    pub async fn friend_requests(&self) -> Result<v1::FriendRequests> {
        match self
            .request(Body::ListFriendRequests(v1::ListFriendRequests {}))
            .await?
        {
            Reply::FriendRequests(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Blocks `user_id`: they cannot message us directly nor ask us to be
    /// friends, their messages in groups we share never reach us (we read
    /// them as deleted), and neither of us sees the other's presence. Ends
    /// a friendship. They are not told.
    pub async fn block(&self, user_id: u64) -> Result<()> {
        match self.request(Body::BlockUser(v1::BlockUser { user_id })).await? {
            Reply::Ok(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Lifts our block of `user_id`: their later messages reach us again.
    pub async fn unblock(&self, user_id: u64) -> Result<()> {
        match self
            .request(Body::UnblockUser(v1::UnblockUser { user_id }))
            .await?
        {
            Reply::Ok(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The users we block, most recent first.
    pub async fn blocked(&self) -> Result<Vec<v1::BlockedUser>> {
        match self.request(Body::ListBlocked(v1::ListBlocked {})).await? {
            Reply::Blocked(b) => Ok(b.users),
            other => Err(unexpected(other)),
        }
    }
}
