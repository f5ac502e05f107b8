//! The [`PresenceRegistry`] trait: who is online across every node, and its
//! in-memory implementation [`MemoryPresence`]. Cluster backends:
//! `RedisPresence` (feature `redis`), and `PostgresPresence` /
//! `SqlitePresence` in the store's own database (features `postgres`,
//! `sqlite`; module `sql`).
//!
//! # Guarantees every backend gives (checked by the conformance suite)
//! * **Any device, any node**: a user is online while at least one of their
//!   sessions, on any node, is registered and that node's lease is live.
//! * **Transitions, once**: [`PresenceRegistry::connected`] reports a change
//!   only for a user's first live session, [`PresenceRegistry::disconnected`]
//!   only for the last; other sessions come and go silently.
//! * **Generations never go backwards**: every change carries a generation
//!   larger than any generation the registry handed out before for that user,
//!   whichever node asked. Receivers keep the highest generation they have
//!   seen per user and ignore anything older ([`is_newer`]): a late
//!   "offline" from one node cannot undo a newer "online" from another.
//! * **Leases**: each node renews its lease ([`PresenceRegistry::renew`]);
//!   the sessions of a node whose lease is older than the configured lease
//!   time stop counting, so the users of a node that died go offline.
//!   [`PresenceRegistry::expire`] reports those transitions once, for
//!   announcing.
//! * [`PresenceRegistry::has_live_device`] is the push decision: false means
//!   no device of the user can receive a live event anywhere.
//!
//! All times are Unix milliseconds from the engine's [`Clock`](crate::clock::Clock).

use crate::error::Result;
use crate::model::{SessionId, UserId};
use async_trait::async_trait;

mod memory;
#[cfg(feature = "redis")]
mod redis_presence;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use memory::MemoryPresence;
#[cfg(feature = "redis")]
pub use redis_presence::{RedisPresence, RedisPresenceConfig};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{DieselPresence, PresenceConnection};
#[cfg(feature = "postgres")]
pub use sql::{PostgresPresence, PostgresPresenceConfig};
#[cfg(feature = "sqlite")]
pub use sql::{SqlitePresence, SqlitePresenceConfig};

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

/// A node of the cluster, as presence knows it.
pub type NodeId = str;

/// A user went online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whose presence changed.
    pub user_id: UserId,
    /// Now online?
    pub online: bool,
    /// Orders this change against every other change of the user.
    pub generation: u64,
    /// Unix ms of the change (for offline: the user's last seen time).
    pub at: i64,
}

/// What the registry knows of one user now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPresence {
    /// The user.
    pub user_id: UserId,
    /// At least one live session on a live node.
    pub online: bool,
    /// The generation of the user's latest change (0 if none is known).
    pub generation: u64,
}

/// True if a presence event with `incoming` generation should replace what a
/// receiver holds (`current`, if anything): generations only move forward.
pub fn is_newer(current: Option<u64>, incoming: u64) -> bool {
    current.is_none_or(|c| incoming > c)
}

/// Who is online, across nodes. See the module docs for the guarantees.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + std::fmt::Debug + 'static {
    /// A session of `user` started on `node`; the change if the user came online.
    async fn connected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>>;
    /// A session ended; the change if it was the user's last live one.
    async fn disconnected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>>;
    /// Keeps `node`'s sessions counted for another lease time from `now`.
    /// False if the registry had dropped the node (its lease expired and
    /// [`PresenceRegistry::expire`] ran): the node must register its
    /// sessions again.
    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool>;
    /// Forgets every session of `node` at once (a clean shutdown); the
    /// users who went offline.
    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>>;
    /// Users whose last live sessions were on nodes whose lease expired;
    /// each such change is reported once.
    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>>;
    /// The presence of these users (unknown users: offline, generation 0).
    async fn presence(&self, users: &[UserId], now: i64) -> Result<Vec<UserPresence>>;
    /// Where these users have registered sessions, as (user, node) pairs,
    /// each once, for routing their events to those nodes (see `Routing`);
    /// nodes whose lease lapsed may be included, a node with a registered
    /// session of the user never left out. `None`: this registry cannot
    /// say (events go to every node).
    async fn user_nodes(&self, users: &[UserId]) -> Result<Option<Vec<(UserId, String)>>> {
        let _ = users;
        Ok(None)
    }
    /// Whether any device of the user is live on any node (the push decision).
    async fn has_live_device(&self, user: UserId, now: i64) -> Result<bool> {
        Ok(self
            .presence(&[user], now)
            .await?
            .first()
            .is_some_and(|p| p.online))
    }
}
