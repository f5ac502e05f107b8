//! Receipts and typing: cursors that move and indicators that are relayed,
//! never stored.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::*;
use im_protocol::v1;

impl Engine {
    /// Moves the caller's read and/or delivered cursor and tells the others.
    pub async fn mark(
        &self,
        caller: Caller,
        id: ConversationId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> Result<v1::Cursor> {
        let (conv, before) = self.require_member(&caller, id).await?;
        let after = self
            .inner
            .store
            .advance_cursors(id, caller.user_id, read, delivered)
            .await?;
        if (after.read_seq, after.delivered_seq) != (before.read_seq, before.delivered_seq) {
            let receipt = v1::event::Kind::Receipt(v1::ReceiptEvent {
                conversation_id: id,
                user_id: caller.user_id,
                read_seq: after.read_seq,
                delivered_seq: after.delivered_seq,
            });
            if conv.member_count <= self.inner.config.large_group_threshold {
                let members = self.relay_members(id).await?;
                // Those who block the reader do not see their receipts.
                let blockers = self.block_relations(caller.user_id).await?.blocked_by.clone();
                self.relay(id, &members, None, blockers, receipt);
            } else {
                // Large groups: only the reader's own devices (unread counts).
                let envelope = self.envelope(id, Audience::users(vec![caller.user_id]), 0, receipt);
                self.dispatch(&envelope, None);
            }
        }
        Ok(v1::Cursor {
            conversation_id: id,
            read_seq: after.read_seq,
            delivered_seq: after.delivered_seq,
        })
    }

    /// Relays a typing indicator to the other members (not stored; not sent
    /// in conversations above the large-group threshold).
    pub async fn typing(&self, caller: Caller, id: ConversationId, typing: bool) -> Result<()> {
        let members = self.relay_members(id).await?;
        if members.binary_search(&caller.user_id).is_err() {
            return Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            )));
        }
        if members.len() > self.inner.config.large_group_threshold as usize {
            return Ok(());
        }
        let event = v1::TypingEvent {
            conversation_id: id,
            user_id: caller.user_id,
            typing,
        };
        // Those who block the typist do not see them typing.
        let blockers = self.block_relations(caller.user_id).await?.blocked_by.clone();
        self.relay(
            id,
            &members,
            Some(caller.user_id),
            blockers,
            v1::event::Kind::Typing(event),
        );
        Ok(())
    }
}
