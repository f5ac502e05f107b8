//! Threads, pinned messages and unread-mention counts in the
//! [`MemoryStore`](super::MemoryStore).

use super::Inner;
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use im_protocol::v1;
use std::collections::BTreeMap;

impl Inner {
    /// See `Store::unread_mention_counts`.
    pub(super) fn unread_mention_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> Vec<(ConversationId, u64)> {
        let mut lowest: BTreeMap<ConversationId, u64> = BTreeMap::new();
        for &(id, after_seq) in cursors {
            let e = lowest.entry(id).or_insert(after_seq);
            *e = (*e).min(after_seq);
        }
        lowest
            .into_iter()
            .filter_map(|(id, after_seq)| {
                let n = self
                    .conversations
                    .get(&id)?
                    .messages
                    .iter()
                    .skip(after_seq as usize)
                    .filter(|m| {
                        m.sender_id != user
                            && m.recalled_at == 0
                            && (m.mention_all || m.mention_user_ids.contains(&user))
                            && !self.contacts.blocks(user, m.sender_id)
                    })
                    .count() as u64;
                (n > 0).then_some((id, n))
            })
            .collect()
    }

    /// See `Store::pinned`.
    pub(super) fn pinned(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        limit: u32,
    ) -> Vec<v1::Message> {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        let mut list: Vec<&v1::Message> = conv.messages.iter().filter(|m| m.pinned_at != 0).collect();
        list.sort_by_key(|m| std::cmp::Reverse((m.pinned_at, m.seq)));
        list.into_iter()
            .take(limit as usize)
            .map(|m| conv.seen_by(viewer, m))
            .collect()
    }

    /// See `Store::thread_replies`.
    pub(super) fn thread_replies(
        &self,
        conversation: ConversationId,
        root: MessageId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> Vec<v1::Message> {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        let replies = conv.messages.iter().filter(|m| m.thread_root_id == root);
        let limit = limit as usize;
        let chosen: Vec<&v1::Message> = match page {
            Page::Before(before) => {
                let before = if before == 0 { u64::MAX } else { before };
                let all: Vec<_> = replies.filter(|m| m.seq < before).collect();
                all[all.len().saturating_sub(limit)..].to_vec()
            }
            Page::After(after) => replies.filter(|m| m.seq > after).take(limit).collect(),
        };
        chosen.into_iter().map(|m| conv.seen_by(viewer, m)).collect()
    }

    /// See `Store::threads`.
    pub(super) fn threads(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        root: Option<MessageId>,
        limit: u32,
    ) -> Vec<ThreadStats> {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        // Each thread's replies, by root, newest activity first.
        let mut by_root: BTreeMap<MessageId, Vec<&v1::Message>> = BTreeMap::new();
        for m in &conv.messages {
            if m.thread_root_id != 0 && root.is_none_or(|r| r == m.thread_root_id) {
                by_root.entry(m.thread_root_id).or_default().push(m);
            }
        }
        let mut threads: Vec<(MessageId, Vec<&v1::Message>)> = by_root.into_iter().collect();
        threads.sort_by_key(|(_, replies)| std::cmp::Reverse(replies.last().map_or(0, |m| m.seq)));
        threads
            .into_iter()
            .filter_map(|(root_id, replies)| {
                let root = &conv.messages[conv.index_of(root_id)?];
                let last = replies.last()?;
                let read_seq = conv.thread_reads.get(&(root_id, viewer)).copied().unwrap_or(0);
                let unread = replies
                    .iter()
                    .filter(|m| m.seq > read_seq && m.sender_id != viewer && m.recalled_at == 0)
                    .count();
                Some(ThreadStats {
                    root: conv.seen_by(viewer, root),
                    reply_count: replies.len() as u32,
                    unread_count: unread as u32,
                    read_seq,
                    last_reply_seq: last.seq,
                    last_reply_at: last.created_at,
                })
            })
            .take(if root.is_some() { 1 } else { limit as usize })
            .collect()
    }

    /// See `Store::mark_thread_read`.
    pub(super) fn mark_thread_read(
        &mut self,
        conversation: ConversationId,
        root: MessageId,
        user: UserId,
        seq: u64,
    ) -> StoreResult<u64> {
        let conv = self.member_conv(conversation)?;
        if !conv.members.contains_key(&user) {
            return Err(StoreError::NotMember(conversation));
        }
        let is_root = conv
            .index_of(root)
            .is_some_and(|i| conv.messages[i].thread_root_id == 0);
        if !is_root {
            return Err(StoreError::NotFound(format!(
                "thread {root} in conversation {conversation}"
            )));
        }
        let last = conv.record.last_seq;
        let read = conv.thread_reads.entry((root, user)).or_insert(0);
        *read = (*read).max(seq.min(last));
        Ok(*read)
    }
}
