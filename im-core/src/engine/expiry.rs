//! Expiring messages: a conversation's time to live, and the sweep that
//! erases messages when their time is up (a change in the log like a
//! recall, by nobody), so every device drops them, live or on sync.

use super::{Caller, Engine, system};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;

/// The shortest time to live a conversation's messages can have, ms.
pub const MIN_MESSAGE_TTL_MS: i64 = 5_000;
/// The longest, ms (365 days).
pub const MAX_MESSAGE_TTL_MS: i64 = 365 * 24 * 3600 * 1000;
/// Messages erased per store read of the sweep.
const SWEEP_BATCH: u32 = 256;

impl Engine {
    /// Makes messages sent from now on in a conversation disappear `ttl_ms`
    /// after sending (0: they stay): any member of a direct conversation,
    /// owners and admins of groups and rooms. A `MESSAGE_TTL` notice
    /// announces it, stored with the setting in one transaction.
    pub async fn set_message_ttl(&self, caller: Caller, req: v1::SetMessageTtl) -> Result<v1::Conversation> {
        if req.ttl_ms != 0 && !(MIN_MESSAGE_TTL_MS..=MAX_MESSAGE_TTL_MS).contains(&req.ttl_ms) {
            return Err(Error::InvalidArgument(format!(
                "a message time to live is 0 (off) or {} s to {} days",
                MIN_MESSAGE_TTL_MS / 1000,
                MAX_MESSAGE_TTL_MS / 86_400_000
            )));
        }
        let (conv, me) = self.require_member(&caller, req.conversation_id).await?;
        let moderator = matches!(me.role, v1::Role::Owner | v1::Role::Admin);
        if conv.kind != v1::ConversationKind::Direct && !moderator {
            return Err(Error::PermissionDenied(
                "only owners and admins set disappearing messages in a group".into(),
            ));
        }
        let mut notice = system(v1::SystemKind::MessageTtl, caller.user_id, vec![], "");
        if let Some(v1::content::Kind::System(s)) = notice.kind.as_mut() {
            s.ttl_ms = req.ttl_ms;
        }
        let new = NewMessage {
            conversation_id: conv.id,
            content: notice,
            created_at: self.now_ms(),
            message_ttl: Some(req.ttl_ms),
            ..Default::default()
        };
        self.store_and_dispatch(new).await?;
        self.get_conversation(caller, conv.id).await
    }

    /// Erases the messages whose time is up; returns how many. The
    /// reference server runs it every second; an embedder runs it as often
    /// as disappearing messages must be on time. Safe to run on several
    /// nodes at once (an erased message is not erased twice).
    pub async fn expire_messages(&self) -> Result<u64> {
        let mut erased = 0;
        loop {
            let now = self.now_ms();
            let due = self.inner.store.expired_messages(now, SWEEP_BATCH).await?;
            for &(conversation_id, message_id) in &due {
                let change = MessageChange {
                    conversation_id,
                    message_id,
                    actor: 0,
                    at: now,
                    kind: ChangeKind::Expire,
                };
                match self.store_change(change).await {
                    Ok(_) => erased += 1,
                    // Deleted with its conversation meanwhile.
                    Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if due.len() < SWEEP_BATCH as usize {
                return Ok(erased);
            }
        }
    }
}
