//! Group administration: removing, banning and muting members, muting the
//! whole group, roles and ownership, dissolving, and the member list.
//!
//! Who may do what is [`may`] and [`outranks`] (the table in
//! `docs/PROTOCOL.md`). Every change is a system message stored with its
//! [`Membership`] change in one transaction, so every member, device and
//! node learns it through the ordered path, and the store's member list
//! version moves with it (the sending path caches who may send by it).

use super::admission::{content, notice};
use super::authz::{Act, manages, may, outranks};
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use v1::SystemKind as Kind;

impl Engine {
    /// Removes a member (the owner removes admins and members, admins
    /// members). The removed user's devices get the `REMOVED` system
    /// message too; they may come back by the join policy (ban them to
    /// keep them out).
    pub async fn kick_member(&self, caller: Caller, req: v1::KickMember) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Kick, self.now_ms())?;
        let target = self.target_member(&caller, id, req.user_id, "remove").await?;
        outranks(&me, target.role, Act::Kick)?;
        self.store_system(
            id,
            content(notice(Kind::Removed, caller.user_id, vec![target.user_id])),
            Some(Membership::Remove(target.user_id)),
            self.dispatch_on_commit(Some(target.user_id)),
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Bans a user, member or not: a member is removed (their devices get
    /// the `BANNED` system message), a pending invitation or join request
    /// is dropped (the user gets a `notice`); until unbanned they cannot
    /// join, be invited or be added. Owners and admins, of users they
    /// outrank. Banning a banned user changes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine, Error};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = Caller::user(engine.register("alice", "correct horse", "").await?.user.id);
    /// let troll = Caller::user(engine.register("troll", "battery staple", "").await?.user.id);
    /// let group = engine.create_group(alice.clone(), "quiet", &[troll.user_id]).await?;
    /// let ban = v1::BanMember { conversation_id: group.id, user_id: troll.user_id };
    /// assert_eq!(engine.ban_member(alice.clone(), ban).await?.member_count, 1);
    /// let again = engine.add_members(alice, group.id, &[troll.user_id]).await;
    /// assert!(matches!(again, Err(Error::PermissionDenied(_))));
    /// # Ok(()) }
    /// ```
    pub async fn ban_member(&self, caller: Caller, req: v1::BanMember) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let user = req.user_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Ban, self.now_ms())?;
        if user == caller.user_id {
            return Err(Error::InvalidArgument("you cannot ban yourself".into()));
        }
        let standing = self.inner.store.standing(id, user).await?;
        if standing.ban.is_some() {
            return self.conversation_for(&caller, id).await;
        }
        match &standing.member {
            Some(target) => outranks(&me, target.role, Act::Ban)?,
            None => {
                self.user(user).await?;
            }
        }
        let banned = notice(Kind::Banned, caller.user_id, vec![user]);
        let was_member = standing.member.is_some();
        self.store_system(
            id,
            content(banned.clone()),
            Some(Membership::Ban {
                user,
                by: caller.user_id,
            }),
            self.dispatch_on_commit(was_member.then_some(user)),
        )
        .await?;
        if !was_member && (standing.invitation.is_some() || standing.join_request.is_some()) {
            self.tell_users(
                id,
                vec![user],
                v1::event::Kind::Notice(v1::ConversationNotice {
                    conversation_id: id,
                    notice: Some(banned),
                }),
            );
        }
        self.conversation_for(&caller, id).await
    }

    /// Lifts a ban (owners and admins); the user is not added back.
    /// Unbanning a user who is not banned changes nothing.
    pub async fn unban_member(&self, caller: Caller, req: v1::UnbanMember) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Ban, self.now_ms())?;
        if self.inner.store.standing(id, req.user_id).await?.ban.is_some() {
            self.append_system(
                id,
                content(notice(Kind::Unbanned, caller.user_id, vec![req.user_id])),
                Some(Membership::Unban(req.user_id)),
            )
            .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// The banned users, by user id (owners and admins).
    pub async fn list_bans(&self, caller: Caller, req: v1::ListBans) -> Result<v1::Bans> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Ban, self.now_ms())?;
        let limit = self.page(req.limit);
        let mut found = self.inner.store.bans(id, req.after_user_id, limit + 1).await?;
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(v1::Bans {
            conversation_id: id,
            bans: found
                .into_iter()
                .map(|b| v1::Ban {
                    user_id: b.user_id,
                    banned_by: b.banned_by,
                    created_at: b.created_at,
                })
                .collect(),
            has_more,
        })
    }

    /// Mutes a member until a time (Unix ms in the future; `i64::MAX`:
    /// until lifted), or lifts the mute (`until` 0): a muted member cannot
    /// send or edit messages. Owners and admins mute members; they are
    /// never muted themselves. The same mute again changes nothing.
    pub async fn mute_member(&self, caller: Caller, req: v1::MuteMember) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let now = self.now_ms();
        if req.until < 0 || (req.until != 0 && req.until <= now) {
            return Err(Error::InvalidArgument(
                "until must be a time in the future (Unix ms), or 0 to lift the mute".into(),
            ));
        }
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Mute, now)?;
        let target = self.target_member(&caller, id, req.user_id, "mute").await?;
        outranks(&me, target.role, Act::Mute)?;
        if target.role != v1::Role::Member {
            return Err(Error::PermissionDenied(
                "owners and admins cannot be muted; demote the admin first".into(),
            ));
        }
        let active = target.send_muted_until > now;
        let unchanged = if req.until == 0 {
            !active
        } else {
            target.send_muted_until == req.until
        };
        if !unchanged {
            let mut muted = if req.until == 0 {
                notice(Kind::MemberUnmuted, caller.user_id, vec![target.user_id])
            } else {
                notice(Kind::MemberMuted, caller.user_id, vec![target.user_id])
            };
            muted.until = req.until;
            self.append_system(
                id,
                content(muted),
                Some(Membership::Mute {
                    user: target.user_id,
                    until: req.until,
                }),
            )
            .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// Mutes the whole group (only owners and admins may send) or lifts
    /// it (owners and admins).
    pub async fn mute_group(&self, caller: Caller, req: v1::MuteGroup) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::MuteGroup, self.now_ms())?;
        if conv.members_muted != req.muted {
            let kind = if req.muted {
                Kind::GroupMuted
            } else {
                Kind::GroupUnmuted
            };
            self.append_system(
                id,
                content(notice(kind, caller.user_id, vec![])),
                Some(Membership::MuteAll(req.muted)),
            )
            .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// Makes another member the owner (owner only); the old owner becomes
    /// an admin.
    pub async fn transfer_ownership(
        &self,
        caller: Caller,
        req: v1::TransferOwnership,
    ) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Transfer, self.now_ms())?;
        let target = self
            .target_member(&caller, id, req.user_id, "transfer ownership to")
            .await?;
        self.append_system(
            id,
            content(notice(
                Kind::OwnershipTransferred,
                caller.user_id,
                vec![target.user_id],
            )),
            Some(Membership::Roles(vec![
                (target.user_id, v1::Role::Owner),
                (caller.user_id, v1::Role::Admin),
            ])),
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Promotes a member to admin or demotes an admin to member (owner
    /// only; ownership moves with [`Engine::transfer_ownership`]).
    pub async fn set_role(&self, caller: Caller, req: v1::SetRole) -> Result<v1::Conversation> {
        let id = req.conversation_id;
        let role = match v1::Role::try_from(req.role) {
            Ok(r @ (v1::Role::Admin | v1::Role::Member)) => r,
            Ok(v1::Role::Owner) => {
                return Err(Error::InvalidArgument(
                    "ownership moves with TransferOwnership".into(),
                ));
            }
            _ => {
                return Err(Error::InvalidArgument("the role must be admin or member".into()));
            }
        };
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::SetRole, self.now_ms())?;
        let target = self
            .target_member(&caller, id, req.user_id, "change the role of")
            .await?;
        if target.role != role {
            let mut changed = notice(Kind::RoleChanged, caller.user_id, vec![target.user_id]);
            changed.role = role as i32;
            self.append_system(
                id,
                content(changed),
                Some(Membership::Roles(vec![(target.user_id, role)])),
            )
            .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// Deletes a group or room for everyone (owner only): the members get
    /// a `DISSOLVED` system message, then its history, members, bans,
    /// invitations and join requests are deleted (sync lists it as
    /// removed).
    pub async fn dissolve_group(&self, caller: Caller, req: v1::DissolveGroup) -> Result<()> {
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Dissolve, self.now_ms())?;
        self.append_system(id, content(notice(Kind::Dissolved, caller.user_id, vec![])), None)
            .await?;
        self.inner.store.delete_conversation(id).await?;
        self.inner.members.forget(id);
        Ok(())
    }

    /// A page of the members with their roles and mutes, by user id
    /// (members; anyone for a public room).
    pub async fn list_members(&self, caller: Caller, req: v1::ListMembers) -> Result<v1::Members> {
        let id = req.conversation_id;
        let conv = self.conversation(id).await?;
        if conv.kind != v1::ConversationKind::Room
            && self.inner.store.member(id, caller.user_id).await?.is_none()
        {
            return Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            )));
        }
        let limit = self.page(req.limit);
        let mut found = self
            .inner
            .store
            .members_page(id, req.after_user_id, limit + 1)
            .await?;
        let has_more = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(v1::Members {
            conversation_id: id,
            members: found.iter().map(MemberRecord::to_wire).collect(),
            has_more,
        })
    }

    /// Before an owner leaves: ownership passes to the longest-standing
    /// admin, else the longest-standing member (none if nobody is left).
    pub(super) async fn pass_ownership_on(&self, caller: &Caller, id: ConversationId) -> Result<()> {
        let members = self.inner.store.members(id).await?;
        let heir = members
            .iter()
            .filter(|m| m.user_id != caller.user_id)
            .min_by_key(|m| (!manages(m.role), m.joined_at, m.user_id));
        let Some(heir) = heir else {
            return Ok(());
        };
        self.append_system(
            id,
            content(notice(
                Kind::OwnershipTransferred,
                caller.user_id,
                vec![heir.user_id],
            )),
            Some(Membership::Roles(vec![
                (heir.user_id, v1::Role::Owner),
                (caller.user_id, v1::Role::Admin),
            ])),
        )
        .await?;
        Ok(())
    }

    /// The member an action is aimed at: not the caller, and a member.
    async fn target_member(
        &self,
        caller: &Caller,
        id: ConversationId,
        user: UserId,
        what: &str,
    ) -> Result<MemberRecord> {
        if user == caller.user_id {
            return Err(Error::InvalidArgument(format!("you cannot {what} yourself")));
        }
        self.inner
            .store
            .member(id, user)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user} is not a member of conversation {id}")))
    }
}
