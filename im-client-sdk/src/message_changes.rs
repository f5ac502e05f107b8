//! Changes to stored messages: edit, recall, react, delete for ourselves,
//! and the edit history of our own messages.
//!
//! Each answers with the new state; the same change reaches every member's
//! devices (ours included) as [`Event::MessageUpdated`](crate::Event::MessageUpdated)
//! (or, for a deletion for ourselves, [`Event::MessagesDeleted`](crate::Event::MessagesDeleted)
//! on our devices only), and a device that was offline gets it on its next
//! sync: every device ends with the same state.

use crate::client::unexpected;
use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};

impl Client {
    /// Replaces the content of one of our messages (the same kind of
    /// content; for media, only the caption changes). The former content is
    /// kept for us ([`Client::edit_history`]).
    pub async fn edit_message(
        &self,
        conversation_id: u64,
        message_id: u64,
        content: v1::Content,
    ) -> Result<v1::Message> {
        self.message_call(Body::EditMessage(v1::EditMessage {
            conversation_id,
            message_id,
            content: Some(content),
        }))
        .await
    }

    /// [`Client::edit_message`] with new text.
    ///
    /// ```no_run
    /// # async fn demo(client: im_client_sdk::Client, conversation: u64) -> im_client_sdk::Result<()> {
    /// let ack = client.send_text(conversation, "helo").await?;
    /// let edited = client.edit_text(conversation, ack.message_id, "hello").await?;
    /// assert!(edited.edited_at > 0);
    /// # Ok(()) }
    /// ```
    pub async fn edit_text(&self, conversation_id: u64, message_id: u64, text: &str) -> Result<v1::Message> {
        self.edit_message(conversation_id, message_id, v1::Content::text(text))
            .await
    }

    /// Recalls a message for everyone: its content, reactions and edit
    /// history are erased from the server. Our own within the server's
    /// recall window (`Limits.recall_window_ms`); any member's if we own or
    /// administer the group.
    pub async fn recall(&self, conversation_id: u64, message_id: u64) -> Result<v1::Message> {
        self.message_call(Body::RecallMessage(v1::RecallMessage {
            conversation_id,
            message_id,
        }))
        .await
    }

    /// Reacts to a message with an emoji (once per emoji; again changes nothing).
    pub async fn react(&self, conversation_id: u64, message_id: u64, emoji: &str) -> Result<v1::Message> {
        self.reaction(conversation_id, message_id, emoji, false).await
    }

    /// Takes back our reaction with an emoji.
    pub async fn unreact(&self, conversation_id: u64, message_id: u64, emoji: &str) -> Result<v1::Message> {
        self.reaction(conversation_id, message_id, emoji, true).await
    }

    async fn reaction(
        &self,
        conversation_id: u64,
        message_id: u64,
        emoji: &str,
        remove: bool,
    ) -> Result<v1::Message> {
        self.message_call(Body::React(v1::React {
            conversation_id,
            message_id,
            emoji: emoji.to_owned(),
            remove,
        }))
        .await
    }

    /// Deletes messages for ourselves only (at most 100 at once). Answers
    /// with those deleted now (not the ones deleted before).
    pub async fn delete_for_me(
        &self,
        conversation_id: u64,
        message_ids: &[u64],
    ) -> Result<v1::MessagesDeleted> {
        match self
            .request(Body::DeleteMessages(v1::DeleteMessages {
                conversation_id,
                message_ids: message_ids.to_vec(),
            }))
            .await?
        {
            Reply::Deleted(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// The former contents of one of our messages, oldest first.
    pub async fn edit_history(&self, conversation_id: u64, message_id: u64) -> Result<Vec<v1::MessageEdit>> {
        match self
            .request(Body::GetEditHistory(v1::GetEditHistory {
                conversation_id,
                message_id,
            }))
            .await?
        {
            Reply::EditHistory(h) => Ok(h.edits),
            other => Err(unexpected(other)),
        }
    }

    async fn message_call(&self, body: Body) -> Result<v1::Message> {
        match self.request(body).await? {
            Reply::Message(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }
}
