//! Authorization: who may do what, defined once.
//!
//! | action | who |
//! |---|---|
//! | send, read history, changes, receipts, typing | members |
//! | look at a conversation | members; anyone for a public room |
//! | join | anyone, public rooms only |
//! | leave | members, not of a direct conversation |
//! | add members, rename | the owner or an admin |
//!
//! The sending path's rule (the sender is a member after the message's
//! membership change) is applied by the store inside the appending
//! transaction, so a send costs one round trip ([`Store`](crate::store::Store)
//! docs); everything else is checked here.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;

impl Engine {
    pub(super) async fn conversation(&self, id: ConversationId) -> Result<ConversationRecord> {
        self.inner
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {id}")))
    }

    /// The conversation and the caller's membership; `PermissionDenied` for non-members.
    pub(super) async fn require_member(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<(ConversationRecord, MemberRecord)> {
        let conv = self.conversation(id).await?;
        match self.inner.store.member(id, caller.user_id).await? {
            Some(m) => Ok((conv, m)),
            None => Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            ))),
        }
    }

    pub(super) fn check_title(&self, title: &str) -> Result<String> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::InvalidArgument("a title is required".into()));
        }
        if title.chars().count() > self.inner.config.max_title_chars {
            return Err(Error::TooLarge(format!(
                "title is limited to {} characters",
                self.inner.config.max_title_chars
            )));
        }
        Ok(title.to_owned())
    }

    pub(super) fn page(&self, limit: u32) -> u32 {
        if limit == 0 {
            50.min(self.inner.config.max_page_size)
        } else {
            limit.min(self.inner.config.max_page_size)
        }
    }
}

/// Managing a group (adding members, renaming) takes the owner or an admin.
pub(super) fn require_manager(me: &MemberRecord, action: &str) -> Result<()> {
    if matches!(
        me.role,
        im_protocol::v1::Role::Owner | im_protocol::v1::Role::Admin
    ) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "only the owner or an admin can {action}"
        )))
    }
}
