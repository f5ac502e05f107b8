//! Reads of messages in the [`MemoryStore`](super::MemoryStore): history
//! pages and the change log as one member sees them, unread counts.

use super::{Conv, Inner};
use crate::model::*;
use im_protocol::v1;

impl Inner {
    /// See `Store::history`.
    pub(super) fn history(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> Vec<v1::Message> {
        let Some(conv) = self.conversations.get(&conversation) else {
            return Vec::new();
        };
        let msgs = &conv.messages;
        let limit = limit as usize;
        let range = match page {
            Page::Before(before) => {
                let end = if before == 0 {
                    msgs.len()
                } else {
                    ((before - 1) as usize).min(msgs.len())
                };
                end.saturating_sub(limit)..end
            }
            Page::After(after) => {
                let start = (after as usize).min(msgs.len());
                start..(start + limit).min(msgs.len())
            }
        };
        msgs[range].iter().map(|m| conv.seen_by(viewer, m)).collect()
    }

    /// See `Store::changes`.
    pub(super) fn changes(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        after_version: u64,
        after_private_version: u64,
        limit: u32,
    ) -> ChangePage {
        let Some(conv) = self.conversations.get(&conversation) else {
            return ChangePage::default();
        };
        let mut changed: Vec<&v1::Message> = conv
            .messages
            .iter()
            .filter(|m| m.version > after_version)
            .collect();
        changed.sort_by_key(|m| m.version);
        let limit = (limit as usize).max(1);
        let covered_to = (changed.len() > limit).then(|| changed[limit - 1].version);
        changed.truncate(limit);
        let mut deleted: Vec<(u64, MessageId)> = conv
            .hidden
            .iter()
            .filter(|((user, _), pv)| *user == viewer && **pv > after_private_version)
            .map(|((_, id), pv)| (*pv, *id))
            .collect();
        deleted.sort_unstable();
        ChangePage {
            messages: changed.into_iter().map(|m| conv.seen_by(viewer, m)).collect(),
            covered_to,
            deleted: deleted.into_iter().map(|(_, id)| id).collect(),
            private_version: conv.members.get(&viewer).map_or(0, |m| m.private_version),
        }
    }
}

/// Messages of the main timeline after `after_seq`, not sent by `user`,
/// not recalled, not hidden from `user`.
pub(super) fn unread(conv: &Conv, user: UserId, after_seq: u64) -> u64 {
    conv.messages
        .iter()
        .skip(after_seq as usize)
        .filter(|m| {
            m.sender_id != user
                && m.recalled_at == 0
                && m.thread_root_id == 0
                && !conv.hidden.contains_key(&(user, m.id))
        })
        .count() as u64
}
