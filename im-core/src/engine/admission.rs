//! Who becomes a member of a group or room: joining by the join policy,
//! invitations (the invitee accepts or declines), join requests (an owner
//! or admin approves or refuses).
//!
//! Every change is a system message in the conversation's history, stored
//! with its [`Membership`] change in one transaction; users who are not
//! members hear of what concerns them through an `invitation` or `notice`
//! event to their devices.

use super::authz::{Act, may};
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::*;
use im_protocol::v1;
use v1::SystemKind as Kind;

/// A system notice of `kind` by `actor` about `users`.
pub(super) fn notice(kind: Kind, actor: UserId, users: Vec<UserId>) -> v1::SystemNotice {
    v1::SystemNotice {
        kind: kind as i32,
        actor_id: actor,
        user_ids: users,
        ..Default::default()
    }
}

/// A system notice as message content.
pub(super) fn content(notice: v1::SystemNotice) -> v1::Content {
    v1::Content {
        kind: Some(v1::content::Kind::System(notice)),
    }
}

impl Engine {
    /// Invites users to a group or room: each gets an `invitation` event
    /// and joins by accepting it ([`Engine::respond_invitation`], or
    /// [`Engine::join`]). Owners and admins may invite; in open groups and
    /// rooms any member who may send. Members and users invited already
    /// are skipped; a banned user is refused (`PERMISSION_DENIED`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = Caller::user(engine.register("alice", "correct horse", "").await?.user.id);
    /// let bob = Caller::user(engine.register("bob", "battery staple", "").await?.user.id);
    /// let group = engine.create_group(alice.clone(), "book club", &[]).await?;
    /// let invite = v1::InviteMembers { conversation_id: group.id, user_ids: vec![bob.user_id] };
    /// engine.invite_members(alice, invite).await?;
    /// let pending = engine.list_invitations(bob.clone(), v1::ListInvitations::default()).await?;
    /// assert_eq!(pending.invitations.len(), 1);
    /// let answer = v1::RespondInvitation { conversation_id: group.id, accept: true };
    /// let joined = engine.respond_invitation(bob, answer).await?.expect("accepted");
    /// assert_eq!(joined.role, v1::Role::Member as i32);
    /// # Ok(()) }
    /// ```
    pub async fn invite_members(&self, caller: Caller, req: v1::InviteMembers) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let mut users = req.user_ids;
        users.retain(|&u| u != caller.user_id);
        users.sort_unstable();
        users.dedup();
        if users.is_empty() {
            return Err(Error::InvalidArgument("nobody to invite".into()));
        }
        if users.len() > self.inner.config.max_group_members as usize {
            return Err(Error::TooLarge(format!(
                "a group has at most {} members",
                self.inner.config.max_group_members
            )));
        }
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Invite, self.now_ms())?;
        if self.inner.store.users_by_ids(&users).await?.len() != users.len() {
            return Err(Error::NotFound("unknown user in the invitation".into()));
        }
        self.refuse_blocked_by(caller.user_id, &users).await?;
        let members: std::collections::BTreeSet<UserId> = self.member_ids(id).await?.into_iter().collect();
        users.retain(|u| !members.contains(u));
        if users.is_empty() {
            return self.conversation_for(&caller, id).await;
        }
        let appended = self
            .append_system(
                id,
                content(notice(Kind::Invited, caller.user_id, users.clone())),
                Some(Membership::Invite {
                    users: users.clone(),
                    by: caller.user_id,
                }),
            )
            .await?;
        let mut public = conv.to_wire();
        public.member_count = appended.member_count;
        let invitation = v1::Invitation {
            conversation: Some(public),
            invited_by: caller.user_id,
            created_at: appended.message.created_at,
        };
        self.tell_users(id, users, v1::event::Kind::Invitation(invitation));
        self.conversation_for(&caller, id).await
    }

    /// The caller's pending invitations, newest first.
    pub async fn list_invitations(
        &self,
        caller: Caller,
        req: v1::ListInvitations,
    ) -> Result<v1::Invitations> {
        let limit = self.page(req.limit);
        let mut found = self.inner.store.invitations_of(caller.user_id, limit + 1).await?;
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(v1::Invitations {
            invitations: found
                .into_iter()
                .map(|(conv, invitation)| v1::Invitation {
                    conversation: Some(conv.to_wire()),
                    invited_by: invitation.invited_by,
                    created_at: invitation.created_at,
                })
                .collect(),
            has_more,
        })
    }

    /// Accepts the caller's invitation (they join: answered with the
    /// conversation) or declines it (`None`; their other devices get a
    /// `notice`). `NOT_FOUND` without an invitation; accepting when a
    /// member already answers with the conversation.
    pub async fn respond_invitation(
        &self,
        caller: Caller,
        req: v1::RespondInvitation,
    ) -> Result<Option<v1::Conversation>> {
        let id = req.conversation_id;
        let conv = self.conversation(id).await?;
        if req.accept {
            if self.inner.store.member(id, caller.user_id).await?.is_some() {
                return Ok(Some(self.conversation_for(&caller, id).await?));
            }
            return self.accept_invitation(&caller, &conv).await.map(Some);
        }
        let declined = notice(Kind::InvitationDeclined, caller.user_id, vec![caller.user_id]);
        self.append_system(
            id,
            content(declined.clone()),
            Some(Membership::DeclineInvitation(caller.user_id)),
        )
        .await
        .map_err(|e| no_invitation(e, id))?;
        self.tell_users(
            id,
            vec![caller.user_id],
            v1::event::Kind::Notice(v1::ConversationNotice {
                conversation_id: id,
                notice: Some(declined),
            }),
        );
        Ok(None)
    }

    async fn accept_invitation(
        &self,
        caller: &Caller,
        conv: &ConversationRecord,
    ) -> Result<v1::Conversation> {
        self.check_room_for_one(conv)?;
        self.append_system(
            conv.id,
            content(notice(Kind::Joined, caller.user_id, vec![caller.user_id])),
            Some(Membership::AcceptInvitation(caller.user_id)),
        )
        .await
        .map_err(|e| no_invitation(e, conv.id))?;
        self.conversation_for(caller, conv.id).await
    }

    /// Joins a public room or a group by its join policy: an open group
    /// (or a room) at once, an approval group by filing a join request
    /// (answered with the public view and `join_requested`), an
    /// invite-only group only with an invitation, which joining accepts.
    /// Banned users are refused; joining as a member changes nothing.
    pub async fn join(&self, caller: Caller, id: ConversationId) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        if conv.kind == v1::ConversationKind::Direct {
            return Err(Error::InvalidArgument(
                "a direct conversation cannot be joined".into(),
            ));
        }
        let standing = self.inner.store.standing(id, caller.user_id).await?;
        if standing.member.is_some() {
            return self.conversation_for(&caller, id).await;
        }
        if standing.ban.is_some() {
            return Err(Error::PermissionDenied(format!(
                "you are banned from conversation {id}"
            )));
        }
        if standing.invitation.is_some() {
            return self.accept_invitation(&caller, &conv).await;
        }
        let policy = if conv.kind == v1::ConversationKind::Room {
            v1::JoinPolicy::Open
        } else {
            conv.join_policy
        };
        match policy {
            v1::JoinPolicy::Open => {
                self.check_room_for_one(&conv)?;
                self.append_system(
                    id,
                    content(notice(Kind::Joined, caller.user_id, vec![caller.user_id])),
                    Some(Membership::Add(vec![(caller.user_id, v1::Role::Member)])),
                )
                .await?;
                self.conversation_for(&caller, id).await
            }
            v1::JoinPolicy::Approval => {
                if standing.join_request.is_none() {
                    self.append_system(
                        id,
                        content(notice(Kind::JoinRequested, caller.user_id, vec![caller.user_id])),
                        Some(Membership::RequestJoin(caller.user_id)),
                    )
                    .await?;
                }
                let mut public = self.conversation(id).await?.to_wire();
                public.join_requested = true;
                Ok(public)
            }
            _ => Err(Error::PermissionDenied(format!(
                "conversation {id} can be joined by invitation only"
            ))),
        }
    }

    /// Sets the join policy of a group (owners and admins): open,
    /// approval or invite only. Setting the current one changes nothing.
    pub async fn set_join_policy(&self, caller: Caller, req: v1::SetJoinPolicy) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let policy = match v1::JoinPolicy::try_from(req.policy) {
            Ok(p @ (v1::JoinPolicy::Open | v1::JoinPolicy::Approval | v1::JoinPolicy::InviteOnly)) => p,
            _ => {
                return Err(Error::InvalidArgument(
                    "the join policy must be open, approval or invite only".into(),
                ));
            }
        };
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::SetJoinPolicy, self.now_ms())?;
        if conv.join_policy != policy {
            let mut changed = notice(Kind::JoinPolicyChanged, caller.user_id, vec![]);
            changed.join_policy = policy as i32;
            self.append_system(id, content(changed), Some(Membership::Policy(policy)))
                .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// The pending join requests of a group, oldest first (owners and admins).
    pub async fn list_join_requests(
        &self,
        caller: Caller,
        req: v1::ListJoinRequests,
    ) -> Result<v1::JoinRequests> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::JoinRequests, self.now_ms())?;
        let limit = self.page(req.limit);
        let mut found = self.inner.store.join_requests(id, limit + 1).await?;
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(v1::JoinRequests {
            conversation_id: id,
            requests: found
                .into_iter()
                .map(|r| v1::JoinRequest {
                    user_id: r.user_id,
                    created_at: r.created_at,
                })
                .collect(),
            has_more,
        })
    }

    /// Approves (the user becomes a member) or refuses (the user gets a
    /// `notice`) a join request (owners and admins). `NOT_FOUND` if the
    /// user has no pending request.
    pub async fn decide_join_request(
        &self,
        caller: Caller,
        req: v1::DecideJoinRequest,
    ) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::JoinRequests, self.now_ms())?;
        let user = req.user_id;
        if req.approve {
            self.check_room_for_one(&conv)?;
            self.append_system(
                id,
                content(notice(Kind::JoinApproved, caller.user_id, vec![user])),
                Some(Membership::DecideJoin { user, approve: true }),
            )
            .await?;
        } else {
            let refused = notice(Kind::JoinRefused, caller.user_id, vec![user]);
            self.append_system(
                id,
                content(refused.clone()),
                Some(Membership::DecideJoin { user, approve: false }),
            )
            .await?;
            self.tell_users(
                id,
                vec![user],
                v1::event::Kind::Notice(v1::ConversationNotice {
                    conversation_id: id,
                    notice: Some(refused),
                }),
            );
        }
        self.conversation_for(&caller, id).await
    }

    /// `TOO_LARGE` if one more member would be over the limit.
    fn check_room_for_one(&self, conv: &ConversationRecord) -> Result<()> {
        if conv.member_count >= self.inner.config.max_group_members {
            return Err(Error::TooLarge(format!(
                "conversation {} is full ({} members)",
                conv.id, self.inner.config.max_group_members
            )));
        }
        Ok(())
    }

    /// An event for these users' devices only (invitees, a refused
    /// requester, a banned non-member): they are not members, so it does
    /// not go through the conversation's ordered path.
    pub(super) fn tell_users(&self, conversation: ConversationId, users: Vec<UserId>, kind: v1::event::Kind) {
        let envelope = self.envelope(conversation, Audience::users(users), 0, kind);
        self.dispatch(&envelope, None);
    }
}

/// The store's "no invitation" in the caller's words.
fn no_invitation(e: Error, conversation: ConversationId) -> Error {
    match e {
        Error::NotFound(_) => {
            Error::NotFound(format!("you have no invitation to conversation {conversation}"))
        }
        other => other,
    }
}
