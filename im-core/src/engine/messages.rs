//! Messages: the sending path, and history.

use super::outbox;
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use prost::Message as _;

impl Engine {
    /// Sends a message. The ack is returned only after the store committed it;
    /// a retry with the same `client_msg_id` returns the first ack.
    ///
    /// The sending path, one stage after the other:
    /// 1. `validate_send`: content and ids, no I/O; then, for media only,
    ///    `attach_files`: the sender may read the file, which is complete;
    ///    the media fields are filled from its metadata (the append then
    ///    shares it in the conversation, in its transaction);
    /// 2. `resolve_target`: the conversation (a direct one is created on the
    ///    first message);
    /// 3. (a before-send hook will sit here: allow, deny or rewrite);
    /// 4. `store_and_dispatch`: authorize, dedup,
    ///    sequence and store in one transaction; right after the commit the
    ///    members get it, in sequence order (the after-store stage);
    /// 5. the ack.
    pub async fn send_message(&self, caller: Caller, mut req: v1::SendMessage) -> Result<v1::SendAck> {
        self.validate_send(&req)?;
        if let Some(content) = req.content.as_mut() {
            self.attach_files(&caller, content).await?;
            self.validate_content(Some(content))?;
        }
        let conversation_id = self.resolve_target(&caller, req.target).await?;
        let new = NewMessage {
            conversation_id,
            sender_id: caller.user_id,
            client_msg_id: (!req.client_msg_id.is_empty()).then_some(req.client_msg_id),
            content: req.content.unwrap_or_default(),
            created_at: self.now_ms(),
            reply_to: (req.reply_to_id != 0).then_some(req.reply_to_id),
            thread_root: (req.thread_root_id != 0).then_some(req.thread_root_id),
            mentions: req.mention_user_ids,
            mention_all: req.mention_all,
            direct_needs_friendship: self.inner.config.contacts.direct_requires_friendship,
            ..Default::default()
        };
        let appended = self.store_and_dispatch(new).await?;
        Ok(ack(&appended))
    }

    /// Stage 1: what can be checked without I/O.
    fn validate_send(&self, req: &v1::SendMessage) -> Result<()> {
        self.validate_content(req.content.as_ref())?;
        if req.mention_user_ids.len() > MAX_MENTIONS {
            return Err(Error::TooLarge(format!(
                "a message mentions at most {MAX_MENTIONS} users"
            )));
        }
        if req.client_msg_id.len() > self.inner.config.max_client_msg_id {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id is limited to {} bytes",
                self.inner.config.max_client_msg_id
            )));
        }
        Ok(())
    }

    pub(super) fn validate_content(&self, content: Option<&v1::Content>) -> Result<()> {
        let content = content.ok_or_else(|| Error::InvalidArgument("content is required".into()))?;
        self.check_size(content)?;
        match &content.kind {
            None => Err(Error::InvalidArgument("content has no kind".into())),
            Some(
                v1::content::Kind::System(_) | v1::content::Kind::Call(_) | v1::content::Kind::Bundle(_),
            ) => Err(Error::PermissionDenied(
                "system messages, call records and forwarded bundles are written by the server".into(),
            )),
            Some(v1::content::Kind::Text(t)) if t.body.trim().is_empty() => {
                Err(Error::InvalidArgument("text must not be empty".into()))
            }
            Some(v1::content::Kind::Location(l))
                if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) =>
            {
                Err(Error::InvalidArgument("location out of range".into()))
            }
            Some(v1::content::Kind::Custom(c)) if c.r#type.is_empty() => {
                Err(Error::InvalidArgument("custom content needs a type".into()))
            }
            _ => Ok(()),
        }
    }

    /// A content within the message size limit.
    pub(super) fn check_size(&self, content: &v1::Content) -> Result<()> {
        let size = content.encoded_len();
        if size > self.inner.config.max_message_bytes {
            return Err(Error::TooLarge(format!(
                "message of {size} bytes exceeds the limit of {} bytes",
                self.inner.config.max_message_bytes
            )));
        }
        Ok(())
    }

    /// Stage 2: the conversation a send goes to. Existence and membership of
    /// a conversation id are checked by the store in the appending
    /// transaction: one round trip for a send.
    pub(super) async fn resolve_target(
        &self,
        caller: &Caller,
        target: Option<v1::send_message::Target>,
    ) -> Result<ConversationId> {
        match target {
            Some(v1::send_message::Target::ConversationId(id)) => Ok(id),
            Some(v1::send_message::Target::ToUserId(to)) => {
                self.user(to).await?;
                if self.inner.config.contacts.direct_requires_friendship && to != caller.user_id {
                    // Before the conversation is created (the append checks
                    // again, in its transaction).
                    let state = self.inner.store.contact_state(caller.user_id, to).await?;
                    if !state.friends {
                        return Err(Error::PermissionDenied(FRIENDS_ONLY.into()));
                    }
                }
                let direct = self
                    .inner
                    .store
                    .direct_conversation(caller.user_id, to, self.now_ms())
                    .await?;
                Ok(direct.id)
            }
            None => Err(Error::InvalidArgument(
                "a target conversation or user is required".into(),
            )),
        }
    }

    /// Stage 4: one transaction authorizes (the sender is a member), dedups on
    /// `(sender, client_msg_id)`, assigns the sequence and stores; the commit
    /// hook hands the message to the members (this node's sessions, then the
    /// fan-out) in sequence order.
    pub(super) async fn store_and_dispatch(&self, new: NewMessage) -> Result<Appended> {
        self.append_and_dispatch(new, self.dispatch_on_commit(None)).await
    }

    /// Appends through the store with `dispatch` as the commit hook; when
    /// the append returns (or the call is dropped), this task delivers what
    /// the outbox holds for the conversation, its own message included.
    pub(super) async fn append_and_dispatch(
        &self,
        new: NewMessage,
        dispatch: CommitHook,
    ) -> Result<Appended> {
        let _sending = outbox::Sending::start(&self.inner, new.conversation_id);
        Ok(self.inner.store.append_message_then(new, dispatch).await?)
    }

    /// A page of history (members only).
    pub async fn history(&self, caller: Caller, req: v1::GetHistory) -> Result<v1::Messages> {
        if req.after_seq.is_some() && req.before_seq != 0 {
            return Err(Error::InvalidArgument(
                "give after_seq or before_seq, not both".into(),
            ));
        }
        self.require_member(&caller, req.conversation_id).await?;
        let limit = self.page(req.limit);
        let page = match req.after_seq {
            Some(after) => Page::After(after),
            None => Page::Before(req.before_seq),
        };
        let mut messages = self
            .inner
            .store
            .history(req.conversation_id, caller.user_id, page, limit + 1)
            .await?;
        let has_more = trim_page(&mut messages, page, limit);
        Ok(v1::Messages { messages, has_more })
    }
}

/// A page read with one message more than `limit`: drops the one beyond
/// the page (the oldest for `Before`, the newest for `After`); true if
/// there was one, so more follow.
pub(super) fn trim_page(messages: &mut Vec<v1::Message>, page: Page, limit: u32) -> bool {
    let has_more = messages.len() > limit as usize;
    if has_more {
        match page {
            Page::After(_) => {
                messages.pop();
            }
            Page::Before(_) => {
                messages.remove(0);
            }
        }
    }
    has_more
}

/// The most users one message mentions.
pub const MAX_MENTIONS: usize = 100;

/// Stage 5: the ack of a stored (or already stored) message.
pub(super) fn ack(appended: &Appended) -> v1::SendAck {
    let m = &appended.message;
    v1::SendAck {
        message_id: m.id,
        conversation_id: m.conversation_id,
        seq: m.seq,
        version: m.version,
        server_time: m.created_at,
        duplicate: appended.duplicate,
    }
}
