//! Threads (replies under a message, with each member's read cursor and
//! unread count) and pinned messages.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;

impl Engine {
    /// Pins or unpins a message: any member of a direct conversation,
    /// owners and admins of groups and rooms. The message takes a new
    /// version (its `pinned_at`, `pinned_by`), which every member gets.
    pub async fn pin_message(&self, caller: Caller, req: v1::PinMessage) -> Result<v1::Message> {
        let (conv, me) = self.require_member(&caller, req.conversation_id).await?;
        let moderator = matches!(me.role, v1::Role::Owner | v1::Role::Admin);
        if conv.kind != v1::ConversationKind::Direct && !moderator {
            return Err(Error::PermissionDenied(
                "only owners and admins pin messages in a group".into(),
            ));
        }
        let change = MessageChange {
            conversation_id: req.conversation_id,
            message_id: req.message_id,
            actor: caller.user_id,
            at: self.now_ms(),
            kind: ChangeKind::Pin { pinned: !req.unpin },
        };
        self.store_change(change).await
    }

    /// The pinned messages of a conversation (members only), most recently
    /// pinned first.
    pub async fn list_pinned(&self, caller: Caller, req: v1::ListPinned) -> Result<v1::Messages> {
        self.require_member(&caller, req.conversation_id).await?;
        let limit = self.page(req.limit);
        let messages = self
            .inner
            .store
            .pinned(req.conversation_id, caller.user_id, limit)
            .await?;
        Ok(v1::Messages {
            messages,
            has_more: false,
        })
    }

    /// A page of a thread's replies and its summary for the caller
    /// (members only).
    pub async fn get_thread(&self, caller: Caller, req: v1::GetThread) -> Result<v1::Thread> {
        if req.after_seq.is_some() && req.before_seq != 0 {
            return Err(Error::InvalidArgument(
                "give after_seq or before_seq, not both".into(),
            ));
        }
        self.require_member(&caller, req.conversation_id).await?;
        let summary = self
            .thread_summary(&caller, req.conversation_id, req.root_id)
            .await?;
        let limit = self.page(req.limit);
        let page = match req.after_seq {
            Some(after) => Page::After(after),
            None => Page::Before(req.before_seq),
        };
        let mut replies = self
            .inner
            .store
            .thread_replies(req.conversation_id, req.root_id, caller.user_id, page, limit + 1)
            .await?;
        let has_more = super::messages::trim_page(&mut replies, page, limit);
        Ok(v1::Thread {
            summary: Some(summary),
            replies,
            has_more,
        })
    }

    /// Moves the caller's read cursor in a thread forward; answers with the
    /// thread's summary.
    pub async fn mark_thread_read(
        &self,
        caller: Caller,
        req: v1::MarkThreadRead,
    ) -> Result<v1::ThreadSummary> {
        self.inner
            .store
            .mark_thread_read(req.conversation_id, req.root_id, caller.user_id, req.seq)
            .await?;
        self.thread_summary(&caller, req.conversation_id, req.root_id)
            .await
    }

    /// The threads of a conversation (members only), most recently active
    /// first.
    pub async fn list_threads(&self, caller: Caller, req: v1::ListThreads) -> Result<v1::Threads> {
        self.require_member(&caller, req.conversation_id).await?;
        let limit = self.page(req.limit).min(MAX_THREADS_LISTED);
        let threads = self
            .inner
            .store
            .threads(req.conversation_id, caller.user_id, None, limit)
            .await?
            .into_iter()
            .map(to_wire)
            .collect();
        Ok(v1::Threads { threads })
    }

    /// One thread's summary; a message without replies is an empty thread.
    async fn thread_summary(
        &self,
        caller: &Caller,
        conversation: ConversationId,
        root: MessageId,
    ) -> Result<v1::ThreadSummary> {
        let mut found = self
            .inner
            .store
            .threads(conversation, caller.user_id, Some(root), 1)
            .await?;
        if let Some(stats) = found.pop() {
            return Ok(to_wire(stats));
        }
        let root = self
            .inner
            .store
            .message(conversation, root)
            .await?
            .ok_or_else(|| Error::NotFound(format!("message {root} in conversation {conversation}")))?;
        if root.thread_root_id != 0 {
            return Err(Error::InvalidArgument(format!(
                "message {} is a reply in a thread, not a thread",
                root.id
            )));
        }
        Ok(v1::ThreadSummary {
            root: Some(root),
            ..Default::default()
        })
    }
}

/// The most threads one `ListThreads` answers with (each is a few reads).
const MAX_THREADS_LISTED: u32 = 50;

fn to_wire(stats: ThreadStats) -> v1::ThreadSummary {
    v1::ThreadSummary {
        root: Some(stats.root),
        reply_count: stats.reply_count,
        unread_count: stats.unread_count,
        read_seq: stats.read_seq,
        last_reply_seq: stats.last_reply_seq,
        last_reply_at: stats.last_reply_at,
    }
}
