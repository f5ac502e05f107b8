//! Forwarding: copies of messages the caller can read, sent by the caller
//! to another conversation, each as a message of its own or all as one.

use super::messages::ack;
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use v1::content::Kind;

/// The most messages one `ForwardMessages` request forwards.
pub const MAX_FORWARD: usize = 100;

impl Engine {
    /// Forwards messages of a conversation the caller belongs to: each as
    /// a copy marked with its original sender and time, or (`as_one`) all
    /// in one [`v1::ForwardedBundle`]. Copies go through the sending path
    /// like any message (the target's membership, files shared with it);
    /// a retry with the same `client_msg_id` stores nothing twice. A recall
    /// of an original does not recall its copies: they are the
    /// forwarder's messages.
    pub async fn forward_messages(&self, caller: Caller, req: v1::ForwardMessages) -> Result<v1::SendAcks> {
        if req.message_ids.is_empty() || req.message_ids.len() > MAX_FORWARD {
            return Err(Error::InvalidArgument(format!(
                "forward 1 to {MAX_FORWARD} messages"
            )));
        }
        // Room for the suffix that tells the copies apart.
        if req.client_msg_id.len() + 4 > self.inner.config.max_client_msg_id {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id is limited to {} bytes when forwarding",
                self.inner.config.max_client_msg_id - 4
            )));
        }
        self.require_member(&caller, req.from_conversation_id).await?;
        let mut originals = Vec::with_capacity(req.message_ids.len());
        for &id in &req.message_ids {
            let m = self
                .inner
                .store
                .message(req.from_conversation_id, id)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "message {id} in conversation {}",
                        req.from_conversation_id
                    ))
                })?;
            originals.push(forwardable(m)?);
        }
        let target = req.target.map(|t| match t {
            v1::forward_messages::Target::ConversationId(id) => v1::send_message::Target::ConversationId(id),
            v1::forward_messages::Target::ToUserId(id) => v1::send_message::Target::ToUserId(id),
        });
        let conversation_id = self.resolve_target(&caller, target).await?;
        let copy_id =
            |i: usize| (!req.client_msg_id.is_empty()).then(|| format!("{}#{i}", req.client_msg_id));
        let new = |content, forwarded, client_msg_id| NewMessage {
            conversation_id,
            sender_id: caller.user_id,
            client_msg_id,
            content,
            created_at: self.now_ms(),
            forwarded,
            direct_needs_friendship: self.inner.config.contacts.direct_requires_friendship,
            ..Default::default()
        };
        let mut acks = Vec::new();
        if req.as_one {
            let items = originals
                .into_iter()
                .map(|(content, origin)| v1::ForwardedItem {
                    sender_id: origin.sender_id,
                    created_at: origin.created_at,
                    content: Some(content),
                })
                .collect();
            let content = v1::Content {
                kind: Some(Kind::Bundle(v1::ForwardedBundle { items })),
            };
            self.check_size(&content)?;
            let appended = self.store_and_dispatch(new(content, None, copy_id(0))).await?;
            acks.push(ack(&appended));
        } else {
            for (i, (content, origin)) in originals.into_iter().enumerate() {
                let appended = self
                    .store_and_dispatch(new(content, Some(origin), copy_id(i)))
                    .await?;
                acks.push(ack(&appended));
            }
        }
        Ok(v1::SendAcks { acks })
    }
}

/// What a message forwards as: its content and where it came from (a copy
/// of a copy names the first original). Recalled messages, and what the
/// server wrote (notices, call records), are not forwarded.
fn forwardable(m: v1::Message) -> Result<(v1::Content, v1::Forwarded)> {
    let origin = m.forwarded.unwrap_or(v1::Forwarded {
        sender_id: m.sender_id,
        created_at: m.created_at,
    });
    if m.recalled_at != 0 {
        return Err(Error::Conflict(format!("message {} was recalled", m.id)));
    }
    match m.content {
        Some(content)
            if content
                .kind
                .as_ref()
                .is_some_and(|k| !matches!(k, Kind::System(_) | Kind::Call(_))) =>
        {
            Ok((content, origin))
        }
        _ => Err(Error::InvalidArgument(format!(
            "message {} was written by the server and cannot be forwarded",
            m.id
        ))),
    }
}
