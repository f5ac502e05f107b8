//! [`MemberDirectory`]: the member lists this node knows, by conversation.
//!
//! Two uses, two freshness rules:
//! * **Delivery of stored messages** needs the list at an exact member list
//!   version: the sending path records it with every append; a node that
//!   receives an envelope of another node reads the list from the store when
//!   it has no list of that version.
//! * **Ephemeral relays** (typing) accept a list up to [`RELAY_TTL`] old, so
//!   a typing indicator on a busy conversation costs no store read. A
//!   membership change on another node reaches typing within that time.

use super::Inner;
use crate::error::{Error, Result};
use crate::model::{ConversationId, UserId};
use dashmap::DashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a member list may serve ephemeral relays before it is read again.
pub(super) const RELAY_TTL: Duration = Duration::from_secs(2);

/// Most conversations remembered; past it the directory starts over.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    version: u64,
    fetched: Instant,
    members: Arc<[UserId]>,
}

/// Member lists by conversation, each with its version and age.
#[derive(Debug, Default)]
pub(super) struct MemberDirectory {
    entries: DashMap<ConversationId, Entry>,
}

impl MemberDirectory {
    /// Records the list of a conversation at a version (never replacing a
    /// newer one).
    pub(super) fn remember(&self, conversation: ConversationId, version: u64, members: Arc<[UserId]>) {
        // `len` visits every shard: only when a new conversation is added.
        if !self.entries.contains_key(&conversation) && self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        let fresh = Entry {
            version,
            fetched: Instant::now(),
            members,
        };
        self.entries
            .entry(conversation)
            .and_modify(|e| {
                if version >= e.version {
                    *e = fresh.clone();
                }
            })
            .or_insert(fresh);
    }

    /// A list at most [`RELAY_TTL`] old, if known.
    pub(super) fn recent(&self, conversation: ConversationId) -> Option<Arc<[UserId]>> {
        let e = self.entries.get(&conversation)?;
        (e.fetched.elapsed() < RELAY_TTL).then(|| e.members.clone())
    }

    /// The list at exactly `version`, if known.
    pub(super) fn at(&self, conversation: ConversationId, version: u64) -> Option<Arc<[UserId]>> {
        let e = self.entries.get(&conversation)?;
        (e.version == version).then(|| e.members.clone())
    }

    /// Forgets a conversation (it was deleted).
    pub(super) fn forget(&self, conversation: ConversationId) {
        self.entries.remove(&conversation);
    }

    /// The members an envelope made at `version` goes to: the list of that
    /// version, or the store's current list (`None`: the conversation is gone).
    /// A member who joined or left while the envelope was between nodes may
    /// get or miss that one event; sync is the authority.
    pub(super) async fn resolve(
        inner: &Inner,
        conversation: ConversationId,
        version: u64,
    ) -> Result<Option<Arc<[UserId]>>> {
        if let Some(members) = inner.members.at(conversation, version) {
            return Ok(Some(members));
        }
        let Some((current, members)) = inner.store.member_list(conversation).await? else {
            return Ok(None);
        };
        inner.members.remember(conversation, current, members.clone());
        Ok(Some(members))
    }
}

impl super::Engine {
    /// The members of a conversation for relaying ephemeral events: a list at
    /// most [`RELAY_TTL`] old, refreshed by every append on this
    /// node, so a typing indicator costs no store read on a busy conversation.
    pub(super) async fn relay_members(&self, conversation: ConversationId) -> Result<Arc<[UserId]>> {
        if let Some(members) = self.inner.members.recent(conversation) {
            return Ok(members);
        }
        match self.inner.store.member_list(conversation).await? {
            Some((version, members)) => {
                self.inner
                    .members
                    .remember(conversation, version, members.clone());
                Ok(members)
            }
            None => Err(Error::NotFound(format!("conversation {conversation}"))),
        }
    }

    pub(super) async fn member_ids(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        Ok(self
            .inner
            .store
            .members(conversation)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }
}
