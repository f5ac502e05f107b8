//! A member's own state in the [`MemoryStore`](super::MemoryStore): read
//! and delivered cursors, and their settings of the conversation.

use super::Inner;
use crate::model::*;
use crate::store::{StoreError, StoreResult};

impl Inner {
    /// See `Store::advance_cursors`.
    pub(super) fn advance_cursors(
        &mut self,
        conversation: ConversationId,
        user: UserId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> StoreResult<MemberRecord> {
        let conv = self.conv(conversation)?;
        let last = conv.record.last_seq;
        let m = conv
            .members
            .get_mut(&user)
            .ok_or_else(|| StoreError::NotFound(format!("user {user} is not a member of {conversation}")))?;
        if let Some(r) = read {
            m.read_seq = m.read_seq.max(r.min(last));
        }
        if let Some(d) = delivered {
            m.delivered_seq = m.delivered_seq.max(d.min(last));
        }
        // Reading implies delivery, and clears "marked unread".
        m.delivered_seq = m.delivered_seq.max(m.read_seq);
        if read.is_some() {
            m.settings.marked_unread = false;
        }
        Ok(m.clone())
    }

    /// See `Store::set_member_settings`.
    pub(super) fn set_member_settings(
        &mut self,
        conversation: ConversationId,
        user: UserId,
        settings: MemberSettings,
    ) -> Option<MemberRecord> {
        let conv = self.conv(conversation).ok()?;
        conv.members.get_mut(&user).map(|m| {
            m.settings = settings;
            m.clone()
        })
    }
}
