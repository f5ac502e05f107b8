//! [`PostgresPresence`]: the diesel presence registry on PostgreSQL.

use super::{DieselPresence, PresenceConnection};
use crate::error::Result;
use crate::store::{StoreResult, postgres as store};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::CustomizeConnection;
use std::time::Duration;

/// Settings of a [`PostgresPresence`].
#[derive(Debug, Clone)]
pub struct PostgresPresenceConfig {
    /// A libpq URL: the cluster's store database (the presence tables come
    /// with its migrations, run here too if the store has not run them yet).
    pub url: String,
    /// How long a node's sessions count after its last renewal, ms
    /// (default 30 s); every node of the cluster uses the same.
    pub lease_ms: i64,
    /// Connections for presence, apart from the store's (default 4).
    pub pool_size: u32,
    /// How long an operation waits for a connection before `Unavailable`
    /// (default 5 s).
    pub connect_timeout: Duration,
}

impl PostgresPresenceConfig {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            lease_ms: 30_000,
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Cluster presence in PostgreSQL: the shared [`DieselPresence`] on
/// `PgConnection`, opened by [`PostgresPresence::open`].
///
/// ```no_run
/// # async fn demo() -> im_core::Result<()> {
/// use im_core::presence::{PostgresPresence, PostgresPresenceConfig};
/// let url = "postgres://postgres@127.0.0.1/im";
/// let presence = PostgresPresence::open(PostgresPresenceConfig::new(url)).await?;
/// let engine = im_core::Engine::builder().presence(std::sync::Arc::new(presence));
/// # Ok(()) }
/// ```
pub type PostgresPresence = DieselPresence<PgConnection>;

impl PresenceConnection for PgConnection {
    fn write_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>,
    {
        // The locking argument of the module docs assumes READ COMMITTED:
        // say so, whatever the database's default.
        self.build_transaction().read_committed().run(f)
    }

    fn read_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>,
    {
        self.build_transaction().repeatable_read().read_only().run(f)
    }

    fn node_lease_shared(&mut self, node: &str) -> StoreResult<Option<i64>> {
        use super::queries::presence_nodes as nodes;
        use diesel::prelude::*;
        Ok(nodes::table
            .find(node)
            .select(nodes::lease_until)
            .for_share()
            .get_result(self)
            .optional()?)
    }
}

/// Presence sessions commit without waiting for the WAL flush (see the
/// module docs: leases rebuild what a crash loses).
#[derive(Debug)]
struct PresenceSession;

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for PresenceSession {
    fn on_acquire(&self, conn: &mut PgConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        conn.batch_execute("SET synchronous_commit = off")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl DieselPresence<PgConnection> {
    /// Connects (as the store does, migrating if needed) and sets up the
    /// pool. `Unavailable` if the database cannot be reached.
    pub async fn open(config: PostgresPresenceConfig) -> Result<Self> {
        super::blocking(move || {
            let (_conn, url) = store::connect_migrated(&config.url, config.connect_timeout)?;
            let pool = store::pool_builder(config.pool_size, config.connect_timeout)
                .connection_customizer(Box::new(PresenceSession))
                .build_unchecked(diesel::r2d2::ConnectionManager::new(url));
            Ok(Self::new(pool, config.lease_ms))
        })
        .await
    }
}
