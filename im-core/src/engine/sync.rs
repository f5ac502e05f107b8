//! Sync: which conversations changed, and the change log of one.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use std::collections::{BTreeMap, BTreeSet};

/// The most cursors in one `Sync` request.
const MAX_SYNC_CURSORS: usize = 100_000;

/// Memberships read per store round trip while a limited sync page looks for
/// its changed conversations (at least `limit + 1`, to know if more follow).
const SYNC_READ_CHUNK: usize = 1_000;

impl Engine {
    /// Which of the caller's conversations changed since the client's cursors:
    /// the unpaged form, every conversation in one answer. The same as
    /// [`Engine::sync_page`] with no range and no limit.
    pub async fn sync(&self, caller: Caller, cursors: &[v1::SyncCursor]) -> Result<v1::SyncResult> {
        self.sync_page(
            caller,
            &v1::Sync {
                cursors: cursors.to_vec(),
                ..Default::default()
            },
        )
        .await
    }

    /// Which of the caller's conversations with an id in
    /// `(after_conversation_id, until_conversation_id]` (0: no upper bound)
    /// changed since the client's cursors for that range, at most `limit`
    /// of them (0: no limit).
    ///
    /// Only the memberships of the range are read (in chunks when limited),
    /// and only the changed ones of the page are summarised. When the limit
    /// cuts the answer short, `has_more` is set and the range is covered up
    /// to `next_after_conversation_id`, the id of the last `changed` entry:
    /// `removed` then only lists cursors up to it.
    pub async fn sync_page(&self, caller: Caller, req: &v1::Sync) -> Result<v1::SyncResult> {
        if req.cursors.len() > MAX_SYNC_CURSORS {
            return Err(Error::TooLarge("too many cursors".into()));
        }
        let after = req.after_conversation_id;
        let until = (req.until_conversation_id != 0).then_some(req.until_conversation_id);
        if until.is_some_and(|u| u <= after) {
            return Err(Error::InvalidArgument(
                "untilConversationId must be above afterConversationId (or 0)".into(),
            ));
        }
        // Without a range (the unpaged form) every cursor is accepted, as
        // it always was.
        let ranged = after != 0 || until.is_some();
        if let Some(c) = req
            .cursors
            .iter()
            .find(|c| ranged && (c.conversation_id <= after || until.is_some_and(|u| c.conversation_id > u)))
        {
            return Err(Error::InvalidArgument(format!(
                "cursor of conversation {} is outside the synced range",
                c.conversation_id
            )));
        }
        let known: BTreeMap<ConversationId, (u64, u64)> = req
            .cursors
            .iter()
            .map(|c| (c.conversation_id, (c.version, c.private_version)))
            .collect();
        let limit = (req.limit > 0).then_some(req.limit as usize);
        // Unlimited: the whole range in one read. Limited: chunks, so a page
        // reads little beyond the conversations it answers with.
        let chunk = limit.map(|l| l.saturating_add(1).max(SYNC_READ_CHUNK));
        let mut stale = Vec::new();
        let mut member_of = BTreeSet::new();
        let mut has_more = false;
        let mut position = after;
        'scan: loop {
            let rows = self
                .inner
                .store
                .user_conversations_in(caller.user_id, position, until, chunk)
                .await?;
            let more_rows = chunk.is_some_and(|n| rows.len() >= n);
            for (conv, me) in rows {
                let id = conv.id;
                if known
                    .get(&id)
                    .is_none_or(|&cursor| cursor != (conv.last_version, me.private_version))
                {
                    if limit.is_some_and(|l| stale.len() >= l) {
                        has_more = true;
                        break 'scan;
                    }
                    stale.push((conv, Some(me)));
                }
                position = position.max(id);
                member_of.insert(id);
            }
            if !more_rows {
                break;
            }
        }
        // Covered up to the last changed entry when cut short, else the range.
        let next_after = if has_more {
            stale.last().map_or(after, |(c, _)| c.id)
        } else {
            0
        };
        let removed = known
            .keys()
            .copied()
            .filter(|id| !member_of.contains(id) && (!has_more || *id <= next_after))
            .collect();
        let changed = self.summaries(&caller, stale, false).await?;
        Ok(v1::SyncResult {
            changed,
            removed,
            has_more,
            next_after_conversation_id: next_after,
        })
    }

    /// Changes after a change-log position (members only): the latest
    /// states of the messages changed since, and what the caller deleted
    /// for themselves since their private position. Answers `reset` when a
    /// position is ahead of the conversation's (or the caller's) log.
    pub async fn changes(&self, caller: Caller, req: v1::GetChanges) -> Result<v1::Changes> {
        let (conv, me) = self.require_member(&caller, req.conversation_id).await?;
        if req.after_version > conv.last_version || req.after_private_version > me.private_version {
            return Ok(v1::Changes {
                has_more: conv.last_version > 0 || me.private_version > 0,
                reset: true,
                ..Default::default()
            });
        }
        let limit = self.page(req.limit);
        let page = self
            .inner
            .store
            .changes(
                conv.id,
                caller.user_id,
                req.after_version,
                req.after_private_version,
                limit,
            )
            .await?;
        // The last page covers the whole log up to its end, including
        // versions absorbed by later changes of the same message.
        let next_version = page
            .covered_to
            .unwrap_or(conv.last_version.max(req.after_version));
        Ok(v1::Changes {
            messages: page.messages,
            next_version,
            has_more: page.covered_to.is_some(),
            reset: false,
            deleted_message_ids: page.deleted,
            next_private_version: page.private_version.max(req.after_private_version),
        })
    }
}
