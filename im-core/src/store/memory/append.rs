//! The append of the [`MemoryStore`](super::MemoryStore): dedup,
//! authorization, membership change, the next seq and version, the shares
//! of the files the message refers to, all under the store's one lock.

use super::Inner;
use crate::model::*;
use crate::store::expiry;
use crate::store::mentions::mentioned_members;
use crate::store::{StoreError, StoreResult};
use im_protocol::v1;
use std::sync::Arc;

impl Inner {
    /// See `Store::append_message_then`; runs `on_commit` before returning,
    /// under the caller's lock, so hooks run in commit order.
    pub(super) fn append(&mut self, new: NewMessage, on_commit: CommitHook) -> StoreResult<Appended> {
        if !self.conversations.contains_key(&new.conversation_id) {
            return Err(StoreError::NotFound(format!(
                "conversation {}",
                new.conversation_id
            )));
        }
        if let Some(cid) = &new.client_msg_id
            && let Some(&(conv_id, seq)) = self.dedup.get(&(new.sender_id, cid.clone()))
        {
            let conv = self.conv(conv_id)?;
            return Ok(Appended {
                message: conv.messages[(seq - 1) as usize].clone(),
                duplicate: true,
                member_count: conv.record.member_count,
                members: Arc::from(Vec::new()),
                member_version: 0,
                hidden_from: Vec::new(),
            });
        }
        let file_ids = content_file_ids(&new.content);
        self.files.check_shareable(&file_ids)?;
        let conv = self.conv(new.conversation_id)?;
        if new.sender_id != 0 && new.membership.is_none() {
            may_send(conv, new.sender_id, new.created_at)?;
        }
        let conv = &self.conversations[&new.conversation_id];
        self.check_direct_send(conv, new.sender_id, new.direct_needs_friendship)?;
        let conv = self.conv(new.conversation_id)?;
        let reply_to = match new.reply_to {
            None => None,
            Some(id) => {
                let quoted = conv.index_of(id).map(|i| &conv.messages[i]).ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "quoted message {id} is not in conversation {}",
                        new.conversation_id
                    ))
                })?;
                Some(v1::ReplyRef {
                    message_id: quoted.id,
                    seq: quoted.seq,
                    sender_id: quoted.sender_id,
                })
            }
        };
        if let Some(root) = new.thread_root {
            let root_message = conv.index_of(root).map(|i| &conv.messages[i]).ok_or_else(|| {
                StoreError::NotFound(format!(
                    "thread root {root} is not in conversation {}",
                    new.conversation_id
                ))
            })?;
            if root_message.thread_root_id != 0 {
                return Err(StoreError::Invalid(format!(
                    "message {root} is a reply in a thread: reply in its root's thread"
                )));
            }
        }
        // The membership change. A user's message with one (tests do that)
        // is checked after it: keep what to put back if it is refused.
        if let Some(change) = &new.membership {
            let snapshot = (new.sender_id != 0).then(|| conv.snapshot());
            super::admin::apply(conv, change, new.created_at)?;
            if let Some(snapshot) = snapshot
                && let Err(refused) = may_send(conv, new.sender_id, new.created_at)
            {
                conv.restore(snapshot);
                return Err(refused);
            }
        }
        self.next_message += 1;
        let id = self.next_message;
        let conv = self.conv(new.conversation_id)?;
        if let Some(ttl) = new.message_ttl {
            conv.record.message_ttl_ms = ttl;
        }
        let expires_at = expiry(new.sender_id, new.created_at, conv.record.message_ttl_ms);
        if new.membership.is_some() {
            conv.member_version += 1;
        }
        conv.record.member_count = conv.members.len() as u32;
        conv.record.last_seq += 1;
        conv.record.last_version += 1;
        let message = v1::Message {
            id,
            conversation_id: new.conversation_id,
            seq: conv.record.last_seq,
            version: conv.record.last_version,
            sender_id: new.sender_id,
            client_msg_id: new.client_msg_id.clone().unwrap_or_default(),
            created_at: new.created_at,
            content: Some(new.content),
            reply_to,
            mention_user_ids: mentioned_members(
                &new.mentions,
                &conv.members.keys().copied().collect::<Vec<_>>(),
            ),
            mention_all: new.mention_all,
            thread_root_id: new.thread_root.unwrap_or(0),
            forwarded: new.forwarded,
            expires_at,
            ..Default::default()
        };
        conv.messages.push(message.clone());
        let conv = &self.conversations[&new.conversation_id];
        let hidden_from = self.blockers_among(conv, new.sender_id);
        let conv = self.conv(new.conversation_id)?;
        for &user in &hidden_from {
            conv.hidden.insert((user, id), 0);
        }
        let member_count = conv.record.member_count;
        let members: Arc<[UserId]> = conv.members.keys().copied().collect::<Vec<_>>().into();
        let member_version = conv.member_version;
        let seq = message.seq;
        self.files.share(&file_ids, new.conversation_id, new.created_at);
        if let Some(cid) = new.client_msg_id {
            self.dedup
                .insert((new.sender_id, cid), (new.conversation_id, seq));
        }
        let appended = Appended {
            message,
            duplicate: false,
            member_count,
            members,
            member_version,
            hidden_from,
        };
        // Under the lock: hooks run in commit order.
        on_commit(&appended);
        Ok(appended)
    }
}

/// The sending rule (see the `Store` docs): a member who may send now.
fn may_send(conv: &super::Conv, sender: UserId, now: i64) -> StoreResult<()> {
    let id = conv.record.id;
    let member = conv.members.get(&sender).ok_or(StoreError::NotMember(id))?;
    if member.may_send(conv.record.members_muted, now) {
        Ok(())
    } else {
        Err(StoreError::Forbidden(crate::store::muted_message(
            id,
            conv.record.members_muted,
            member.send_muted_until,
        )))
    }
}
