//! Sync: which conversations changed, and the change log of one.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use std::collections::{BTreeSet, HashMap};

impl Engine {
    /// Which of the caller's conversations changed since the client's cursors.
    pub async fn sync(&self, caller: Caller, cursors: &[v1::SyncCursor]) -> Result<v1::SyncResult> {
        if cursors.len() > 100_000 {
            return Err(Error::TooLarge("too many cursors".into()));
        }
        let known: HashMap<ConversationId, u64> =
            cursors.iter().map(|c| (c.conversation_id, c.version)).collect();
        let mut stale = Vec::new();
        let mut member_of = BTreeSet::new();
        for (conv, me) in self.inner.store.user_conversations(caller.user_id).await? {
            member_of.insert(conv.id);
            if known.get(&conv.id).is_none_or(|&v| v != conv.last_version) {
                stale.push((conv, Some(me)));
            }
        }
        let changed = self.summaries(&caller, stale, false).await?;
        let removed = known
            .keys()
            .copied()
            .filter(|id| !member_of.contains(id))
            .collect();
        Ok(v1::SyncResult { changed, removed })
    }

    /// Changes after a change-log position (members only). Answers `reset`
    /// when the position is ahead of the conversation's log.
    pub async fn changes(&self, caller: Caller, req: v1::GetChanges) -> Result<v1::Changes> {
        let (conv, _) = self.require_member(&caller, req.conversation_id).await?;
        if req.after_version > conv.last_version {
            return Ok(v1::Changes {
                messages: vec![],
                next_version: 0,
                has_more: conv.last_version > 0,
                reset: true,
            });
        }
        let limit = self.page(req.limit);
        let mut messages = self
            .inner
            .store
            .changes(conv.id, req.after_version, limit + 1)
            .await?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        // The last page covers the whole log up to its end, including
        // versions absorbed by later changes of the same message.
        let next_version = if has_more {
            messages.last().map_or(req.after_version, |m| m.version)
        } else {
            conv.last_version.max(req.after_version)
        };
        Ok(v1::Changes {
            messages,
            next_version,
            has_more,
            reset: false,
        })
    }
}
