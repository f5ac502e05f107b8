//! Changes to stored messages: edit, recall, reactions, deletion for me,
//! and the edit history.
//!
//! Every change goes through the store's ordered change log: an edit, a
//! recall or a reaction takes the conversation's next version and its new
//! state reaches the members through the outbox, in order with new
//! messages; a deletion for me takes the member's own next private version
//! and reaches only their devices. The rules of who may do what live here;
//! the store checks in the change's transaction what must hold there (a
//! member, the message in the conversation, not recalled).

use super::outbox;
use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use v1::content::Kind;

/// The most messages one `DeleteMessages` request deletes.
pub const MAX_DELETE_BATCH: usize = 100;
/// The longest emoji of a reaction, in bytes (long enough for flags, skin
/// tones and family sequences).
pub const MAX_EMOJI_BYTES: usize = 64;

impl Engine {
    /// Replaces the content of one of the caller's own messages: same kind
    /// of content; media keep their file and change only their caption.
    /// Answers with the new state, which every member also gets as an event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = engine.register("alice", "correct horse", "Alice").await?;
    /// let me = Caller::user(alice.user.id);
    /// let room = engine.create_room(me.clone(), "lobby", false).await?;
    /// let send = v1::SendMessage {
    ///     target: Some(v1::send_message::Target::ConversationId(room.id)),
    ///     client_msg_id: "m1".into(),
    ///     content: Some(v1::Content::text("helo")),
    ///     ..Default::default()
    /// };
    /// let ack = engine.send_message(me.clone(), send).await?;
    /// let edit = v1::EditMessage {
    ///     conversation_id: room.id,
    ///     message_id: ack.message_id,
    ///     content: Some(v1::Content::text("hello")),
    /// };
    /// let edited = engine.edit_message(me, edit).await?;
    /// assert!(edited.edited_at > 0 && edited.version > ack.version);
    /// # Ok(()) }
    /// ```
    pub async fn edit_message(&self, caller: Caller, req: v1::EditMessage) -> Result<v1::Message> {
        self.validate_content(req.content.as_ref())?;
        let current = self
            .own_message(&caller, req.conversation_id, req.message_id, "edit")
            .await?;
        let window = self.inner.config.edit_window_ms;
        if window > 0 && self.now_ms() - current.created_at > window {
            return Err(Error::PermissionDenied(format!(
                "messages can be edited for {} s after sending",
                window / 1000
            )));
        }
        let content = edited_content(current.content.as_ref(), req.content.unwrap_or_default())?;
        // Editing is sending again: a muted member may not.
        let (conv, me) = self.require_member(&caller, req.conversation_id).await?;
        if !me.may_send(conv.members_muted, self.now_ms()) {
            return Err(Error::PermissionDenied(crate::store::muted_message(
                conv.id,
                conv.members_muted,
                me.send_muted_until,
            )));
        }
        self.change(&caller, current, ChangeKind::Edit(content)).await
    }

    /// Recalls a message for everyone: its content, reactions and edit
    /// history are erased. Its sender may within the recall window; owners
    /// and admins of a group or room may recall any member's message at any
    /// time. Answers with the new state, which every member also gets.
    pub async fn recall_message(&self, caller: Caller, req: v1::RecallMessage) -> Result<v1::Message> {
        let current = self.message_of(req.conversation_id, req.message_id).await?;
        if current.sender_id == 0 {
            return Err(Error::PermissionDenied(
                "messages written by the server cannot be recalled".into(),
            ));
        }
        let window = self.inner.config.recall_window_ms;
        let own_in_time = current.sender_id == caller.user_id
            && (window == 0 || self.now_ms() - current.created_at <= window);
        if !own_in_time && !self.moderates(&caller, req.conversation_id).await? {
            return Err(Error::PermissionDenied(if current.sender_id == caller.user_id {
                format!("messages can be recalled for {} s after sending", window / 1000)
            } else {
                "only its sender, or an owner or admin of the group, can recall a message".into()
            }));
        }
        self.change(&caller, current, ChangeKind::Recall).await
    }

    /// Adds the caller's reaction with an emoji, or takes it back (one per
    /// user per emoji; repeating changes nothing). Answers with the new
    /// state, which every member also gets when it changed.
    pub async fn react(&self, caller: Caller, req: v1::React) -> Result<v1::Message> {
        validate_emoji(&req.emoji)?;
        let change = MessageChange {
            conversation_id: req.conversation_id,
            message_id: req.message_id,
            actor: caller.user_id,
            at: self.now_ms(),
            kind: ChangeKind::React {
                emoji: req.emoji,
                remove: req.remove,
            },
        };
        self.store_change(change).await
    }

    /// Deletes messages for the caller only. The caller's devices get a
    /// `deleted` event; nobody else learns of it. Answers with the messages
    /// deleted now (those deleted before are left out) and the caller's
    /// private position.
    pub async fn delete_messages(
        &self,
        caller: Caller,
        req: v1::DeleteMessages,
    ) -> Result<v1::MessagesDeleted> {
        if req.message_ids.is_empty() {
            return Err(Error::InvalidArgument("no message to delete".into()));
        }
        if req.message_ids.len() > MAX_DELETE_BATCH {
            return Err(Error::TooLarge(format!(
                "at most {MAX_DELETE_BATCH} messages per request"
            )));
        }
        let conversation = req.conversation_id;
        let _sending = outbox::Sending::start(&self.inner, conversation);
        let hidden = self
            .inner
            .store
            .hide_messages(
                conversation,
                caller.user_id,
                &req.message_ids,
                self.dispatch_on_hide(),
            )
            .await?;
        Ok(v1::MessagesDeleted {
            conversation_id: conversation,
            message_ids: hidden.message_ids,
            private_version: hidden.private_version,
        })
    }

    /// The former contents of one of the caller's own messages, oldest first.
    pub async fn edit_history(&self, caller: Caller, req: v1::GetEditHistory) -> Result<v1::EditHistory> {
        self.require_member(&caller, req.conversation_id).await?;
        self.own_message(&caller, req.conversation_id, req.message_id, "see the edits of")
            .await?;
        let edits = self
            .inner
            .store
            .edit_history(req.conversation_id, req.message_id)
            .await?
            .into_iter()
            .map(|former| v1::MessageEdit {
                content: Some(former.content),
                written_at: former.written_at,
            })
            .collect();
        Ok(v1::EditHistory { edits })
    }

    /// A message of a conversation, or `NotFound`.
    async fn message_of(&self, conversation: ConversationId, id: MessageId) -> Result<v1::Message> {
        self.inner
            .store
            .message(conversation, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("message {id} in conversation {conversation}")))
    }

    /// A message the caller sent, or `PermissionDenied` to `what` it.
    async fn own_message(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        id: MessageId,
        what: &str,
    ) -> Result<v1::Message> {
        let message = self.message_of(conversation, id).await?;
        if message.sender_id != caller.user_id {
            return Err(Error::PermissionDenied(format!(
                "only its sender can {what} a message"
            )));
        }
        Ok(message)
    }

    /// True if the caller is an owner or admin of this group or room.
    async fn moderates(&self, caller: &Caller, conversation: ConversationId) -> Result<bool> {
        let (conv, me) = self.require_member(caller, conversation).await?;
        Ok(conv.kind != v1::ConversationKind::Direct && matches!(me.role, v1::Role::Owner | v1::Role::Admin))
    }

    async fn change(&self, caller: &Caller, current: v1::Message, kind: ChangeKind) -> Result<v1::Message> {
        let change = MessageChange {
            conversation_id: current.conversation_id,
            message_id: current.id,
            actor: caller.user_id,
            at: self.now_ms(),
            kind,
        };
        self.store_change(change).await
    }

    /// Stores a change; right after its commit the members get the new
    /// state, in order with the conversation's other events.
    pub(super) async fn store_change(&self, change: MessageChange) -> Result<v1::Message> {
        let _sending = outbox::Sending::start(&self.inner, change.conversation_id);
        let changed = self
            .inner
            .store
            .change_message(change, self.dispatch_on_change())
            .await?;
        Ok(changed.message)
    }
}

/// The content an edit stores: of the same kind as the current one; media
/// keep their stored file facts and take only the new caption.
fn edited_content(current: Option<&v1::Content>, new: v1::Content) -> Result<v1::Content> {
    let Some(current) = current.and_then(|c| c.kind.as_ref()) else {
        return Err(Error::Conflict("a recalled message cannot be edited".into()));
    };
    let same_kind = new
        .kind
        .as_ref()
        .is_some_and(|k| std::mem::discriminant(k) == std::mem::discriminant(current));
    if !same_kind {
        return Err(Error::InvalidArgument(
            "an edit keeps the kind of content (text stays text...)".into(),
        ));
    }
    Ok(match (current, new.kind) {
        (
            Kind::Image(old) | Kind::Audio(old) | Kind::Video(old) | Kind::File(old) | Kind::Voice(old),
            Some(Kind::Image(m) | Kind::Audio(m) | Kind::Video(m) | Kind::File(m) | Kind::Voice(m)),
        ) => {
            if !m.file_id.is_empty() && m.file_id != old.file_id {
                return Err(Error::InvalidArgument(
                    "an edit of media changes its caption, not its file".into(),
                ));
            }
            let media = v1::Media {
                caption: m.caption,
                ..old.clone()
            };
            let kind = match current {
                Kind::Image(_) => Kind::Image(media),
                Kind::Audio(_) => Kind::Audio(media),
                Kind::Video(_) => Kind::Video(media),
                Kind::Voice(_) => Kind::Voice(media),
                _ => Kind::File(media),
            };
            v1::Content { kind: Some(kind) }
        }
        (_, kind) => v1::Content { kind },
    })
}

/// One emoji: 1 to [`MAX_EMOJI_BYTES`] bytes, no whitespace or control
/// characters, not plain ASCII (keycaps like 1️⃣ carry U+20E3). The server
/// does not keep a list of emoji: new ones work the day they ship.
fn validate_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES {
        return Err(Error::InvalidArgument(format!(
            "a reaction is one emoji of 1 to {MAX_EMOJI_BYTES} bytes"
        )));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) || emoji.is_ascii() {
        return Err(Error::InvalidArgument(format!("{emoji:?} is not an emoji")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_rules() {
        for ok in ["👍", "🇫🇷", "👩‍👩‍👧‍👦", "1️⃣", "❤️", "👍🏽"] {
            assert!(validate_emoji(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", ":)", "👍 ", "\u{7}", &"👍".repeat(17)] {
            assert!(validate_emoji(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn edits_keep_the_kind_and_the_file() {
        let text = v1::Content::text("a");
        assert!(edited_content(Some(&text), v1::Content::text("b")).is_ok());
        let image = v1::Content {
            kind: Some(Kind::Image(v1::Media {
                file_id: "f1".into(),
                size: 10,
                caption: "old".into(),
                ..Default::default()
            })),
        };
        assert!(edited_content(Some(&image), v1::Content::text("b")).is_err());
        assert!(edited_content(Some(&text), image.clone()).is_err());
        let recaption = v1::Content {
            kind: Some(Kind::Image(v1::Media {
                caption: "new".into(),
                ..Default::default()
            })),
        };
        let edited = edited_content(Some(&image), recaption).unwrap();
        let Some(Kind::Image(m)) = edited.kind else {
            panic!()
        };
        assert_eq!(
            (m.file_id.as_str(), m.size, m.caption.as_str()),
            ("f1", 10, "new")
        );
        let other_file = v1::Content {
            kind: Some(Kind::Image(v1::Media {
                file_id: "f2".into(),
                ..Default::default()
            })),
        };
        assert!(edited_content(Some(&image), other_file).is_err());
        assert!(edited_content(None, v1::Content::text("b")).is_err());
    }
}
