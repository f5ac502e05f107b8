//! Conversations: groups, rooms and direct chats, their members and the
//! caller's view of them.

use super::authz::{Act, may};
use super::system;
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use std::collections::{BTreeSet, HashMap};

impl Engine {
    /// Creates a group; the caller is owner, `members` plain members.
    pub async fn create_group(
        &self,
        caller: Caller,
        title: &str,
        members: &[UserId],
    ) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let mut ids: Vec<UserId> = members.iter().copied().filter(|&m| m != caller.user_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() + 1 > self.inner.config.max_group_members as usize {
            return Err(Error::TooLarge(format!(
                "a group has at most {} members",
                self.inner.config.max_group_members
            )));
        }
        let found = self.inner.store.users_by_ids(&ids).await?;
        if found.len() != ids.len() {
            return Err(Error::NotFound("unknown user in member list".into()));
        }
        self.refuse_blocked_by(caller.user_id, &ids).await?;
        let conv = self
            .inner
            .store
            .create_conversation(NewConversation {
                kind: v1::ConversationKind::Group,
                title: title.clone(),
                ephemeral: false,
                created_by: caller.user_id,
                created_at: self.now_ms(),
                members: ids.clone(),
            })
            .await?;
        self.append_system(
            conv.id,
            system(v1::SystemKind::Created, caller.user_id, ids, &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, conv.id).await
    }

    /// Creates a public room with the caller as owner.
    pub async fn create_room(
        &self,
        caller: Caller,
        title: &str,
        ephemeral: bool,
    ) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let conv = self
            .inner
            .store
            .create_conversation(NewConversation {
                kind: v1::ConversationKind::Room,
                title: title.clone(),
                ephemeral,
                created_by: caller.user_id,
                created_at: self.now_ms(),
                members: vec![],
            })
            .await?;
        self.append_system(
            conv.id,
            system(v1::SystemKind::Created, caller.user_id, vec![], &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, conv.id).await
    }

    /// Public rooms with their member counts, largest first.
    pub async fn list_rooms(&self, limit: u32) -> Result<Vec<v1::Room>> {
        Ok(self
            .inner
            .store
            .list_rooms(self.page(limit))
            .await?
            .into_iter()
            .map(|r| v1::Room {
                member_count: r.member_count,
                conversation: Some(r.to_wire()),
            })
            .collect())
    }

    /// Leaves a group or room. An ephemeral room is deleted when its last
    /// member leaves. An owner who leaves others behind passes ownership
    /// first, to the longest-standing admin, else the longest-standing
    /// member (an `OWNERSHIP_TRANSFERRED` system message before `LEFT`).
    pub async fn leave(&self, caller: Caller, id: ConversationId) -> Result<()> {
        let (conv, me) = self.require_member(&caller, id).await?;
        if conv.kind == v1::ConversationKind::Direct {
            return Err(Error::InvalidArgument(
                "a direct conversation cannot be left".into(),
            ));
        }
        if me.role == v1::Role::Owner {
            self.pass_ownership_on(&caller, id).await?;
        }
        // The leaver's other devices must learn it too, unless the room
        // vanishes with them: nobody is told about a room that no longer exists.
        let vanishes = conv.ephemeral;
        let engine = self.clone();
        let dispatch: CommitHook = Box::new(move |appended: &Appended| {
            if !(vanishes && appended.member_count == 0) {
                engine.dispatch_on_commit(Some(caller.user_id))(appended);
            }
        });
        let appended = self
            .store_system(
                id,
                system(v1::SystemKind::Left, caller.user_id, vec![caller.user_id], ""),
                Some(Membership::Remove(caller.user_id)),
                dispatch,
            )
            .await?;
        if appended.member_count == 0 && conv.ephemeral {
            self.inner.store.delete_conversation(id).await?;
            self.inner.members.forget(id);
        }
        Ok(())
    }

    /// Adds users to a group at once, with no invitation to accept: owners
    /// and admins; in an open group any member who may send. Banned users
    /// are refused (`PERMISSION_DENIED`).
    pub async fn add_members(
        &self,
        caller: Caller,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<v1::Conversation> {
        let (conv, me) = self.require_member(&caller, id).await?;
        may(&conv, &me, Act::Add, self.now_ms())?;
        let mut ids = users.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let existing: BTreeSet<UserId> = self.member_ids(id).await?.into_iter().collect();
        ids.retain(|u| !existing.contains(u));
        if ids.is_empty() {
            return self.conversation_for(&caller, id).await;
        }
        if existing.len() + ids.len() > self.inner.config.max_group_members as usize {
            return Err(Error::TooLarge(format!(
                "a group has at most {} members",
                self.inner.config.max_group_members
            )));
        }
        if self.inner.store.users_by_ids(&ids).await?.len() != ids.len() {
            return Err(Error::NotFound("unknown user in member list".into()));
        }
        self.refuse_blocked_by(caller.user_id, &ids).await?;
        let roles = ids.iter().map(|&u| (u, v1::Role::Member)).collect();
        self.append_system(
            id,
            system(v1::SystemKind::Added, caller.user_id, ids, ""),
            Some(Membership::Add(roles)),
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Renames a group or room (owner or admin only).
    pub async fn rename(&self, caller: Caller, id: ConversationId, title: &str) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let (conv, me) = self.require_member(&caller, id).await?;
        if conv.kind == v1::ConversationKind::Direct {
            return Err(Error::InvalidArgument(
                "a direct conversation has no title".into(),
            ));
        }
        may(&conv, &me, Act::Rename, self.now_ms())?;
        self.inner.store.rename_conversation(id, &title).await?;
        self.append_system(
            id,
            system(v1::SystemKind::Renamed, caller.user_id, vec![], &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Appends a system message; the members get it right after the commit.
    pub(super) async fn append_system(
        &self,
        id: ConversationId,
        content: v1::Content,
        membership: Option<Membership>,
    ) -> Result<Appended> {
        self.store_system(id, content, membership, self.dispatch_on_commit(None))
            .await
    }

    /// Appends a system message (with its membership change, atomically);
    /// `dispatch` runs right after the commit.
    pub(super) async fn store_system(
        &self,
        id: ConversationId,
        content: v1::Content,
        membership: Option<Membership>,
        dispatch: CommitHook,
    ) -> Result<Appended> {
        let new = NewMessage {
            conversation_id: id,
            sender_id: 0,
            client_msg_id: None,
            content,
            created_at: self.now_ms(),
            membership,
            ..Default::default()
        };
        self.append_and_dispatch(new, dispatch).await
    }

    /// A conversation as the caller sees it, with members. Members only
    /// (anyone may look at a public room).
    pub async fn get_conversation(&self, caller: Caller, id: ConversationId) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        let me = self.inner.store.member(id, caller.user_id).await?;
        if me.is_none() && conv.kind != v1::ConversationKind::Room {
            return Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            )));
        }
        let mut wire = self.summary(&caller, conv, me, true).await?;
        wire.members = self
            .inner
            .store
            .members(id)
            .await?
            .iter()
            .map(MemberRecord::to_wire)
            .collect();
        Ok(wire)
    }

    pub(super) async fn conversation_for(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        let me = self.inner.store.member(id, caller.user_id).await?;
        self.summary(caller, conv, me, true).await
    }

    /// The per-caller view: last message, unread count, cursors, role.
    pub(super) async fn summary(
        &self,
        caller: &Caller,
        conv: ConversationRecord,
        me: Option<MemberRecord>,
        with_last_message: bool,
    ) -> Result<v1::Conversation> {
        let mut one = self
            .summaries(caller, vec![(conv, me)], with_last_message)
            .await?;
        one.pop()
            .ok_or_else(|| Error::Internal("conversation summary missing".into()))
    }

    /// [`Engine::summary`] of many conversations, in their order, with two
    /// store reads in all (last messages, unread counts), not two each.
    pub(super) async fn summaries(
        &self,
        caller: &Caller,
        convs: Vec<(ConversationRecord, Option<MemberRecord>)>,
        with_last_message: bool,
    ) -> Result<Vec<v1::Conversation>> {
        let mut last_messages: HashMap<ConversationId, v1::Message> = HashMap::new();
        if with_last_message {
            let ids: Vec<ConversationId> = convs
                .iter()
                .filter(|(conv, _)| conv.last_seq > 0)
                .map(|(conv, _)| conv.id)
                .collect();
            last_messages = self
                .inner
                .store
                .last_messages(caller.user_id, &ids)
                .await?
                .into_iter()
                .map(|m| (m.conversation_id, m))
                .collect();
        }
        let cursors: Vec<(ConversationId, u64)> = convs
            .iter()
            .filter_map(|(conv, me)| Some((conv.id, me.as_ref()?.read_seq)))
            .collect();
        let unread: HashMap<ConversationId, u64> = self
            .inner
            .store
            .unread_counts(caller.user_id, &cursors)
            .await?
            .into_iter()
            .collect();
        let mentions: HashMap<ConversationId, u64> = self
            .inner
            .store
            .unread_mention_counts(caller.user_id, &cursors)
            .await?
            .into_iter()
            .collect();
        Ok(convs
            .into_iter()
            .map(|(conv, me)| {
                let mut wire = conv.to_wire();
                wire.last_message = last_messages.remove(&conv.id);
                if let Some(m) = me {
                    wire.unread_count = unread.get(&conv.id).copied().unwrap_or(0);
                    wire.unread_mention_count = mentions.get(&conv.id).copied().unwrap_or(0);
                    wire.read_seq = m.read_seq;
                    wire.delivered_seq = m.delivered_seq;
                    wire.role = m.role as i32;
                    wire.settings = Some(m.settings.to_wire());
                    wire.private_version = m.private_version;
                    wire.send_muted_until = m.send_muted_until;
                }
                wire
            })
            .collect())
    }

    /// The caller's conversations, pinned first, then most recently active
    /// first, at most
    /// `limit` (0: 50; capped by the page size); true if there are more.
    pub async fn list_conversations(
        &self,
        caller: Caller,
        limit: u32,
    ) -> Result<(Vec<v1::Conversation>, bool)> {
        let convs = self.inner.store.user_conversations(caller.user_id).await?;
        let mut out = self
            .summaries(
                &caller,
                convs.into_iter().map(|(c, m)| (c, Some(m))).collect(),
                true,
            )
            .await?;
        // Pinned first (latest pinned on top), then latest activity first;
        // message ids break ties within a millisecond.
        out.sort_by_key(|c| {
            let pinned_at = c.settings.as_ref().map_or(0, |s| s.pinned_at);
            std::cmp::Reverse((
                pinned_at,
                c.last_message
                    .as_ref()
                    .map_or((c.created_at, 0, c.id), |m| (m.created_at, m.id, c.id)),
            ))
        });
        let limit = self.page(limit) as usize;
        let has_more = out.len() > limit;
        out.truncate(limit);
        Ok((out, has_more))
    }
}
