//! Blocks: block, unblock, the block list, and what each node keeps of
//! them to filter presence, typing and receipts.
//!
//! Where each rule lives:
//! * **Messages** are the store's: its append hides a message from every
//!   member who blocks its sender (they read a stub) and refuses a direct
//!   message across a block, in the transaction that stores it
//!   ([`Appended::hidden_from`](crate::model::Appended::hidden_from)); the
//!   delivery then leaves those members out on every node (the envelope
//!   lists them). Nothing here is needed for that, so a stale cache can
//!   never let a message through.
//! * **Presence, typing and read receipts** are relayed, not stored: they
//!   are filtered with [`BlockCache`], each user's blocks both ways, read
//!   from the store on first use and kept at most
//!   [`ContactsConfig::block_cache_ms`](super::ContactsConfig::block_cache_ms).
//!   A block or unblock drops the two users' entries on the node that made
//!   it at once, and on every other node when the fan-out brings the
//!   envelope it publishes to every node (a `contact` event that no session
//!   gets); after a fan-out outage a node drops its whole cache. The time
//!   limit only bounds what a lost envelope can leave stale.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::{BlockRelations, UserId};
use dashmap::DashMap;
use im_protocol::v1;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most users whose blocks a node keeps; past it the cache starts over.
const BLOCK_CACHE_ENTRIES: usize = 200_000;

/// Each user's blocks, both ways, as this node last read them.
#[derive(Default)]
pub(super) struct BlockCache {
    entries: DashMap<UserId, (i64, Arc<BlockRelations>)>,
    /// Bumped by every invalidation: a read that began before one is not
    /// kept (it may predate the change).
    generation: AtomicU64,
}

impl BlockCache {
    /// Forgets these users' blocks.
    pub(super) fn forget(&self, users: &[UserId]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for user in users {
            self.entries.remove(user);
        }
    }

    /// Forgets everything (the fan-out was interrupted: invalidations may
    /// have been lost).
    pub(super) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("users", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Blocks `user_id` for the caller: see `BlockUser` in the protocol.
    /// The caller's other devices get a `BLOCKED` contact event; the
    /// blocked user is told nothing (but hears `REMOVED` if they were
    /// friends, as after `RemoveFriend`, and `CANCELLED` if the caller's
    /// request to them was pending).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let bob = engine.register("bob", "battery staple", "Bob").await?;
    /// let mallory = engine.register("mallory", "correct horse", "Mallory").await?;
    /// engine.block_user(Caller::user(bob.user.id), mallory.user.id).await?;
    /// let send = v1::SendMessage {
    ///     target: Some(v1::send_message::Target::ToUserId(bob.user.id)),
    ///     content: Some(v1::Content::text("hi")),
    ///     ..Default::default()
    /// };
    /// let refused = engine.send_message(Caller::user(mallory.user.id), send).await.unwrap_err();
    /// assert_eq!(refused.code(), v1::ErrorCode::PermissionDenied);
    /// # Ok(()) }
    /// ```
    pub async fn block_user(&self, caller: Caller, user_id: UserId) -> Result<()> {
        if user_id == caller.user_id {
            return Err(Error::InvalidArgument("you cannot block yourself".into()));
        }
        let now = self.now_ms();
        let outcome = self.inner.store.block_user(caller.user_id, user_id, now).await?;
        self.blocks_changed(caller.user_id, user_id, v1::ContactEventKind::Blocked);
        self.tell_contact(&caller, v1::ContactEventKind::Blocked, user_id, None, false);
        if outcome.ended_friendship {
            self.tell_contact(&caller, v1::ContactEventKind::Removed, user_id, None, true);
        }
        if outcome.withdrew_request {
            self.tell_contact(&caller, v1::ContactEventKind::Cancelled, user_id, None, true);
        }
        Ok(())
    }

    /// Lifts the caller's block of `user_id`; later messages reach the
    /// caller again (those sent meanwhile stay hidden).
    pub async fn unblock_user(&self, caller: Caller, user_id: UserId) -> Result<()> {
        self.inner.store.unblock_user(caller.user_id, user_id).await?;
        self.blocks_changed(caller.user_id, user_id, v1::ContactEventKind::Unblocked);
        self.tell_contact(&caller, v1::ContactEventKind::Unblocked, user_id, None, false);
        Ok(())
    }

    /// The users the caller blocks, most recent first, with their profiles.
    pub async fn list_blocked(&self, caller: Caller) -> Result<v1::BlockedUsers> {
        let blocked = self.inner.store.blocked_users(caller.user_id).await?;
        let profiles = self.profiles(blocked.iter().map(|&(u, _)| u)).await?;
        Ok(v1::BlockedUsers {
            users: blocked
                .into_iter()
                .map(|(user, blocked_at)| v1::BlockedUser {
                    user: profiles.get(&user).cloned(),
                    blocked_at,
                })
                .collect(),
        })
    }

    /// A user's blocks, both ways, from this node's cache (read from the
    /// store when missing or older than the configured time).
    pub(super) async fn block_relations(&self, user: UserId) -> Result<Arc<BlockRelations>> {
        let cache = &self.inner.blocks;
        let now = self.now_ms();
        let ttl = self.inner.config.contacts.block_cache_ms;
        if let Some(entry) = cache.entries.get(&user)
            && now.saturating_sub(entry.0) < ttl
        {
            return Ok(entry.1.clone());
        }
        let generation = cache.generation.load(Ordering::SeqCst);
        let relations = Arc::new(self.inner.store.block_relations(user).await?);
        if cache.generation.load(Ordering::SeqCst) == generation && ttl > 0 {
            if cache.entries.len() >= BLOCK_CACHE_ENTRIES {
                cache.entries.clear();
            }
            cache.entries.insert(user, (now, relations.clone()));
        }
        Ok(relations)
    }

    /// Refuses adding or inviting to a group anyone who blocks `actor`.
    pub(super) async fn refuse_blocked_by(&self, actor: UserId, users: &[UserId]) -> Result<()> {
        let blocks = self.block_relations(actor).await?;
        match users.iter().find(|u| blocks.blocked_by.binary_search(u).is_ok()) {
            Some(user) => Err(Error::PermissionDenied(format!(
                "cannot add or invite user {user}"
            ))),
            None => Ok(()),
        }
    }

    /// A block between `a` and `b` changed: this node forgets their blocks
    /// now, every other node when the envelope arrives.
    fn blocks_changed(&self, a: UserId, b: UserId, kind: v1::ContactEventKind) {
        self.inner.blocks.forget(&[a, b]);
        let event = v1::event::Kind::Contact(v1::ContactEvent {
            kind: kind as i32,
            from_user_id: a,
            to_user_id: b,
            at: self.now_ms(),
            ..Default::default()
        });
        self.dispatch(&self.envelope(0, Audience::nodes(), 0, event), None);
    }

    /// An envelope for every node about a block: forget the two users'.
    pub(super) fn on_block_envelope(&self, event: &v1::ContactEvent) {
        self.inner.blocks.forget(&[event.from_user_id, event.to_user_id]);
    }
}
