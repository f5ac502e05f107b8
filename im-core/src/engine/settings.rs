//! Each member's own settings of a conversation: pinned, muted, archived,
//! marked unread. Private to the member: only their own devices hear of a
//! change.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::{DeviceAddress, MemberSettings};
use im_protocol::v1;

impl Engine {
    /// Changes the caller's own settings of a conversation (members only):
    /// the fields set in `req` change, the others stay. Answers with the
    /// conversation as the caller sees it; the caller's other devices get a
    /// `conversationSettings` event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = engine.register("alice", "correct horse", "Alice").await?;
    /// let room = engine.create_room(Caller::user(alice.user.id), "lobby", false).await?;
    /// let update = v1::UpdateConversationSettings {
    ///     conversation_id: room.id,
    ///     pinned: Some(true),
    ///     muted_until: Some(i64::MAX),
    ///     ..Default::default()
    /// };
    /// let room = engine.update_conversation_settings(Caller::user(alice.user.id), update).await?;
    /// let settings = room.settings.unwrap();
    /// assert!(settings.pinned_at > 0 && settings.muted_until == i64::MAX);
    /// # Ok(()) }
    /// ```
    pub async fn update_conversation_settings(
        &self,
        caller: Caller,
        req: v1::UpdateConversationSettings,
    ) -> Result<v1::Conversation> {
        if req.muted_until.is_some_and(|until| until < 0) {
            return Err(Error::InvalidArgument(
                "muted_until is a time (Unix ms), 0 to unmute".into(),
            ));
        }
        let id = req.conversation_id;
        let (conv, me) = self.require_member(&caller, id).await?;
        let mut settings: MemberSettings = me.settings;
        if let Some(pinned) = req.pinned {
            settings.pinned_at = match (pinned, settings.pinned_at) {
                (false, _) => 0,
                (true, 0) => self.now_ms().max(1),
                (true, since) => since,
            };
        }
        if let Some(until) = req.muted_until {
            settings.muted_until = until;
        }
        if let Some(archived) = req.archived {
            settings.archived = archived;
        }
        if let Some(unread) = req.marked_unread {
            settings.marked_unread = unread;
        }
        let me = self
            .inner
            .store
            .set_member_settings(id, caller.user_id, settings)
            .await?
            .ok_or_else(|| Error::PermissionDenied(format!("not a member of conversation {id}")))?;
        self.tell_own_devices(&caller, id, me.settings);
        self.summary(&caller, conv, Some(me), true).await
    }

    /// The caller's other devices learn the new settings.
    fn tell_own_devices(&self, caller: &Caller, conversation: u64, settings: MemberSettings) {
        let mut audience = Audience::users(vec![caller.user_id]);
        if !caller.device.as_str().is_empty() {
            audience = audience.except_device(DeviceAddress {
                user_id: caller.user_id,
                device: caller.device.clone(),
            });
        }
        let event = v1::event::Kind::ConversationSettings(v1::ConversationSettingsEvent {
            conversation_id: conversation,
            settings: Some(settings.to_wire()),
        });
        let envelope = self.envelope(conversation, audience, 0, event);
        self.dispatch(&envelope, None);
    }
}
