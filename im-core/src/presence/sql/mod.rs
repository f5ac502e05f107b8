//! [`DieselPresence`]: presence shared by the nodes of a cluster, kept in
//! the cluster's SQL store: `PostgresPresence` (feature `postgres`) and
//! `SqlitePresence` (feature `sqlite`, for several processes on one machine
//! sharing a database file).
//!
//! # Why the store
//! A cluster already shares its database; keeping presence there gives
//! cluster presence to a deployment without Redis (PostgreSQL plus Kafka,
//! say) with nothing more to run. `RedisPresence` (feature `redis`)
//! is the faster choice where Redis is already there: each of its
//! operations is one round trip, where here it is a short transaction.
//!
//! # Guarantees
//! Those of every [`PresenceRegistry`] (the module docs of
//! [`presence`](super)), checked by the conformance suite with two registry
//! instances (two pools, as two processes would have) on one database:
//! * **Transitions, once**: every change is one transaction that locks
//!   the user's row before it reads the user's sessions, so two nodes
//!   changing one user at once decide one after the other. On PostgreSQL,
//!   READ COMMITTED row locks, taken in one order (nodes, then sessions,
//!   then users) so nodes never deadlock each other; a connect holds its
//!   node's row share-locked, so no session is added to a node while
//!   another node drops it. On SQLite, `BEGIN IMMEDIATE` (SQLite has one
//!   writer at a time). Two nodes running
//!   [`expire`](PresenceRegistry::expire) at once each claim a dead node
//!   with a conditional `UPDATE`; the second finds it claimed, so each
//!   "offline" is reported by one of them.
//! * **Generations never go backwards**: a transition takes its generation
//!   from the user's row in the transaction that records it
//!   (`generation = max(generation + 1, now in µs)`, `RETURNING`), so nodes
//!   need no counter of their own and their clocks need not agree.
//! * **Times** are the `now` arguments (the engine's clock); the database's
//!   clock is never read.
//! * Failures are typed: `Unavailable` when the database cannot be reached
//!   or a lock conflict aborted the transaction (a retry may succeed).
//!
//! # Tables (migration `*_presence`)
//! `presence_nodes` (lease per node; dropped nodes are kept a day, then
//! forgotten), `presence_sessions` (live sessions per user and node),
//! `presence_users` (per user: last reported transition, generation, last
//! seen). A user's row stays after they go offline: it keeps their last
//! seen time and their generation.
//!
//! # Cost (statements, each one round trip, inside `BEGIN` … `COMMIT`)
//! * connect: 3 (node lease, shared lock; session; user row), 4 for the
//!   user's first session; to a node that is new, dropped or lapsed, a
//!   second transaction that writes the node's lease first. The connects
//!   of one node share its row, so they do not queue behind each other;
//! * disconnect: 3 (session, user row, liveness), 4 for the last session;
//! * renew (every third of the lease, per node): 1; 2 after a lapse;
//! * expire (same period, per node): 1 while no node died, and a `DELETE`
//!   of long-dropped nodes after the transaction; a dead node's sessions
//!   are dropped with one `DELETE`, then 2–3 statements per user;
//! * presence of a list of users: 2 per 500 users.
//!
//! Each operation runs on a pooled connection on a blocking thread
//! (`spawn_blocking`), never on an async worker. Measured once on the
//! 2-core development machine (PostgreSQL and the caller on it, 16
//! concurrent callers, default pool of 4): about 2,500 connects and 2,700
//! disconnects per second on PostgreSQL, a renewal 0.6 ms; on SQLite about
//! 6,500 of each. Enough for the reconnect storms of a small cluster, well
//! below the engine's own connect rate: use Redis when connects must be
//! faster. PostgreSQL sessions run with `synchronous_commit = off` and
//! SQLite with `synchronous = NORMAL`: presence is rebuilt by leases, so a
//! crash losing the last few milliseconds of it only delays a transition,
//! and generations stay ordered because they are at least the time in µs.

use super::{NodeId, PresenceChange, PresenceRegistry, UserPresence};
use crate::error::{Error, Result};
use crate::model::{SessionId, UserId};
use crate::store::{SqlConnection, StoreResult, unavailable};
use async_trait::async_trait;
use diesel::r2d2::{ConnectionManager, Pool};

#[cfg(feature = "postgres")]
mod postgres;
mod queries;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresPresence, PostgresPresenceConfig};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqlitePresence, SqlitePresenceConfig};

/// A diesel connection the presence registry runs on (`PgConnection`,
/// `SqliteConnection`; sealed): how it opens a transaction that writes, and
/// one that only reads, on this backend.
pub trait PresenceConnection: SqlConnection {
    /// Runs `f` in a transaction that serializes with every other writer of
    /// the same rows (see the module docs).
    fn write_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>;
    /// Runs `f` in a transaction that reads one snapshot.
    fn read_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>;
    /// In a write transaction: the lease of `node` (`None` if unknown),
    /// keeping the node from being dropped until the transaction ends,
    /// without keeping other transactions from doing the same.
    fn node_lease_shared(&mut self, node: &str) -> StoreResult<Option<i64>>;
}

/// A [`PresenceRegistry`] in the store's database, over a diesel connection
/// type `C`. Use it through its aliases, `PostgresPresence` and
/// `SqlitePresence`, whose `open` sets it up. See the module docs.
pub struct DieselPresence<C: PresenceConnection> {
    /// Connections for presence alone (not the store's), so a presence
    /// transaction never waits behind a group commit or holds one up.
    pool: Pool<ConnectionManager<C>>,
    /// How long a node's sessions count after its last renewal, ms.
    lease_ms: i64,
}

impl<C: PresenceConnection> DieselPresence<C> {
    fn new(pool: Pool<ConnectionManager<C>>, lease_ms: i64) -> Self {
        Self {
            pool,
            lease_ms: lease_ms.max(1),
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    async fn with_conn<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.pool.clone();
        blocking(move || f(&mut *pool.get().map_err(unavailable)?)).await
    }

    /// Runs `f` in a write transaction (see [`DieselPresence::with_conn`]).
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.with_conn(move |c| c.write_transaction(f)).await
    }

    /// Runs `f` in a read transaction (see [`DieselPresence::with_conn`]).
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.with_conn(move |c| c.read_transaction(f)).await
    }
}

/// Runs blocking database work off the async workers; engine errors out.
async fn blocking<R, F>(f: F) -> Result<R>
where
    F: FnOnce() -> StoreResult<R> + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("presence: {e}")))?
        .map_err(Error::from)
}

#[async_trait]
impl<C: PresenceConnection> PresenceRegistry for DieselPresence<C> {
    async fn connected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let (node, lease) = (node.to_owned(), self.lease_ms);
        self.with_conn(move |c| {
            // Usually the node is live: one transaction. Otherwise the first
            // is rolled back (it wrote nothing) and a second revives it.
            match c.write_transaction(|c| queries::connected(c, &node, user, session, now))? {
                Some(change) => Ok(change),
                None => {
                    c.write_transaction(|c| queries::connected_reviving(c, &node, user, session, now, lease))
                }
            }
        })
        .await
    }

    async fn disconnected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let node = node.to_owned();
        self.write(move |c| queries::disconnected(c, &node, user, session, now))
            .await
    }

    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool> {
        let (node, lease) = (node.to_owned(), self.lease_ms);
        self.write(move |c| queries::renew(c, &node, now, lease)).await
    }

    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>> {
        let node = node.to_owned();
        self.write(move |c| queries::remove_node(c, &node, now)).await
    }

    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>> {
        let changes = self.write(move |c| queries::expire(c, now)).await?;
        // Housekeeping in its own transaction: it locks no row the others
        // need in an order of its own, and its failure changes nothing.
        if let Err(e) = self.write(move |c| queries::forget_old_nodes(c, now)).await {
            tracing::warn!(error = %e, "presence: could not forget old nodes");
        }
        Ok(changes)
    }

    async fn user_nodes(&self, users: &[UserId]) -> Result<Option<Vec<(UserId, String)>>> {
        let users = users.to_vec();
        self.read(move |c| queries::user_nodes(c, &users)).await.map(Some)
    }

    async fn presence(&self, users: &[UserId], now: i64) -> Result<Vec<UserPresence>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let users = users.to_vec();
        self.read(move |c| queries::presence(c, &users, now)).await
    }
}

impl<C: PresenceConnection> std::fmt::Debug for DieselPresence<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselPresence")
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}
