//! Group administration: invitations, join policies and requests, kicking,
//! bans, mutes, roles, ownership, dissolving, and the member list.
//!
//! Who may do what is the table in `docs/PROTOCOL.md` ("Group
//! administration"); the server enforces it and answers anything else with
//! `PERMISSION_DENIED`. Every change arrives as a system message in the
//! conversation's history ([`Event::Message`](crate::Event::Message));
//! invitations and notices for users who are not members arrive as
//! [`Event::Invitation`](crate::Event::Invitation) and
//! [`Event::Notice`](crate::Event::Notice).

use crate::client::unexpected;
use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};

/// `until` for a mute that lasts until it is lifted.
pub const MUTED_UNTIL_LIFTED: i64 = i64::MAX;

impl Client {
    /// Invites users to a group or room; each gets
    /// [`Event::Invitation`](crate::Event::Invitation) and joins by
    /// accepting it. Answers with the conversation.
    ///
    /// ```no_run
    /// # async fn demo(alice: im_client_sdk::Client, bob: im_client_sdk::Client, bob_id: u64) -> im_client_sdk::Result<()> {
    /// let group = alice.create_group("book club", &[]).await?;
    /// alice.invite_members(group.id, &[bob_id]).await?;
    /// let pending = bob.invitations().await?;
    /// let joined = bob.accept_invitation(pending[0].conversation.as_ref().unwrap().id).await?;
    /// assert_eq!(joined.id, group.id);
    /// # Ok(()) }
    /// ```
    pub async fn invite_members(&self, conversation_id: u64, user_ids: &[u64]) -> Result<v1::Conversation> {
        self.conversation_call(Body::InviteMembers(v1::InviteMembers {
            conversation_id,
            user_ids: user_ids.to_vec(),
        }))
        .await
    }

    /// Our pending invitations, newest first (the server's default page).
    pub async fn invitations(&self) -> Result<Vec<v1::Invitation>> {
        match self
            .request(Body::ListInvitations(v1::ListInvitations { limit: 0 }))
            .await?
        {
            Reply::Invitations(i) => Ok(i.invitations),
            other => Err(unexpected(other)),
        }
    }

    /// Accepts our invitation: we join. Answers with the conversation.
    pub async fn accept_invitation(&self, conversation_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::RespondInvitation(v1::RespondInvitation {
            conversation_id,
            accept: true,
        }))
        .await
    }

    /// Declines our invitation.
    pub async fn decline_invitation(&self, conversation_id: u64) -> Result<()> {
        self.ok_call(Body::RespondInvitation(v1::RespondInvitation {
            conversation_id,
            accept: false,
        }))
        .await
    }

    /// Sets a group's join policy (owners and admins).
    pub async fn set_join_policy(
        &self,
        conversation_id: u64,
        policy: v1::JoinPolicy,
    ) -> Result<v1::Conversation> {
        self.conversation_call(Body::SetJoinPolicy(v1::SetJoinPolicy {
            conversation_id,
            policy: policy as i32,
        }))
        .await
    }

    /// The pending join requests of a group, oldest first (owners and
    /// admins), and whether there are more than the page held.
    pub async fn join_requests(
        &self,
        conversation_id: u64,
        limit: u32,
    ) -> Result<(Vec<v1::JoinRequest>, bool)> {
        match self
            .request(Body::ListJoinRequests(v1::ListJoinRequests {
                conversation_id,
                limit,
            }))
            .await?
        {
            Reply::JoinRequests(r) => Ok((r.requests, r.has_more)),
            other => Err(unexpected(other)),
        }
    }

    /// Approves or refuses a join request (owners and admins).
    pub async fn decide_join_request(
        &self,
        conversation_id: u64,
        user_id: u64,
        approve: bool,
    ) -> Result<v1::Conversation> {
        self.conversation_call(Body::DecideJoinRequest(v1::DecideJoinRequest {
            conversation_id,
            user_id,
            approve,
        }))
        .await
    }

    /// Removes a member (the owner removes admins and members, admins
    /// members).
    pub async fn kick(&self, conversation_id: u64, user_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::KickMember(v1::KickMember {
            conversation_id,
            user_id,
        }))
        .await
    }

    /// Bans a user (removed if a member) until unbanned.
    pub async fn ban(&self, conversation_id: u64, user_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::BanMember(v1::BanMember {
            conversation_id,
            user_id,
        }))
        .await
    }

    /// Lifts a ban.
    pub async fn unban(&self, conversation_id: u64, user_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::UnbanMember(v1::UnbanMember {
            conversation_id,
            user_id,
        }))
        .await
    }

    /// A page of the banned users by user id, after `after_user_id`, and
    /// whether there are more (owners and admins).
    pub async fn bans(
        &self,
        conversation_id: u64,
        after_user_id: u64,
        limit: u32,
    ) -> Result<(Vec<v1::Ban>, bool)> {
        match self
            .request(Body::ListBans(v1::ListBans {
                conversation_id,
                after_user_id,
                limit,
            }))
            .await?
        {
            Reply::Bans(b) => Ok((b.bans, b.has_more)),
            other => Err(unexpected(other)),
        }
    }

    /// Mutes a member until `until` (Unix ms, in the future;
    /// [`MUTED_UNTIL_LIFTED`] for good), or lifts the mute with 0.
    pub async fn mute_member(
        &self,
        conversation_id: u64,
        user_id: u64,
        until: i64,
    ) -> Result<v1::Conversation> {
        self.conversation_call(Body::MuteMember(v1::MuteMember {
            conversation_id,
            user_id,
            until,
        }))
        .await
    }

    /// Mutes the whole group (only owners and admins may send) or lifts it.
    pub async fn mute_group(&self, conversation_id: u64, muted: bool) -> Result<v1::Conversation> {
        self.conversation_call(Body::MuteGroup(v1::MuteGroup {
            conversation_id,
            muted,
        }))
        .await
    }

    /// Makes another member the owner; we become an admin.
    pub async fn transfer_ownership(&self, conversation_id: u64, user_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::TransferOwnership(v1::TransferOwnership {
            conversation_id,
            user_id,
        }))
        .await
    }

    /// Promotes a member to admin or demotes an admin to member (owner only).
    pub async fn set_role(
        &self,
        conversation_id: u64,
        user_id: u64,
        role: v1::Role,
    ) -> Result<v1::Conversation> {
        self.conversation_call(Body::SetRole(v1::SetRole {
            conversation_id,
            user_id,
            role: role as i32,
        }))
        .await
    }

    /// Deletes the group or room for everyone (owner only).
    pub async fn dissolve(&self, conversation_id: u64) -> Result<()> {
        self.ok_call(Body::DissolveGroup(v1::DissolveGroup { conversation_id }))
            .await
    }

    /// A page of the members with their roles, by user id, after
    /// `after_user_id`, and whether there are more.
    pub async fn members_page(
        &self,
        conversation_id: u64,
        after_user_id: u64,
        limit: u32,
    ) -> Result<(Vec<v1::Member>, bool)> {
        match self
            .request(Body::ListMembers(v1::ListMembers {
                conversation_id,
                after_user_id,
                limit,
            }))
            .await?
        {
            Reply::Members(m) => Ok((m.members, m.has_more)),
            other => Err(unexpected(other)),
        }
    }
}
