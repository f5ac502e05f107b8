//! Our own settings of a conversation: pinned, muted, archived, marked unread.

use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body};

/// A change to our own settings of a conversation: the fields that are
/// `Some` change, the others stay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// Pin (on top of the list) or unpin.
    pub pinned: Option<bool>,
    /// Mute notifications until this time (Unix ms); 0 unmutes;
    /// [`MUTED_FOREVER`] mutes until unmuted.
    pub muted_until: Option<i64>,
    /// Archive or unarchive.
    pub archived: Option<bool>,
    /// Mark unread, or clear the mark (reading clears it too).
    pub marked_unread: Option<bool>,
}

/// `muted_until` for "until unmuted".
pub const MUTED_FOREVER: i64 = i64::MAX;

impl Client {
    /// Changes our own settings of a conversation; our other devices get
    /// [`Event::ConversationSettings`](crate::Event::ConversationSettings).
    /// Answers with the conversation (its `settings` are ours).
    ///
    /// ```no_run
    /// # async fn demo(client: im_client_sdk::Client, conversation_id: u64) -> im_client_sdk::Result<()> {
    /// use im_client_sdk::{MUTED_FOREVER, SettingsChange};
    /// let change = SettingsChange { pinned: Some(true), muted_until: Some(MUTED_FOREVER), ..Default::default() };
    /// let conversation = client.update_conversation_settings(conversation_id, change).await?;
    /// assert!(conversation.settings.unwrap().pinned_at > 0);
    /// # Ok(()) }
    /// ```
    pub async fn update_conversation_settings(
        &self,
        conversation_id: u64,
        change: SettingsChange,
    ) -> Result<v1::Conversation> {
        self.conversation_call(Body::UpdateConversationSettings(v1::UpdateConversationSettings {
            conversation_id,
            pinned: change.pinned,
            muted_until: change.muted_until,
            archived: change.archived,
            marked_unread: change.marked_unread,
        }))
        .await
    }

    /// Makes messages sent from now on in a conversation disappear
    /// `ttl_ms` after sending (0: they stay; otherwise 5 s to 365 days):
    /// any member of a direct conversation, owners and admins of groups.
    /// The server erases each when its time is up; every device gets the
    /// erased state (`recalled_at` set, `recalled_by` 0).
    pub async fn set_message_ttl(&self, conversation_id: u64, ttl_ms: i64) -> Result<v1::Conversation> {
        self.conversation_call(Body::SetMessageTtl(v1::SetMessageTtl {
            conversation_id,
            ttl_ms,
        }))
        .await
    }
}
