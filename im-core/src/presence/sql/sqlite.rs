//! [`SqlitePresence`]: the diesel presence registry on SQLite, for several
//! server processes on one machine sharing one database file.

use super::{DieselPresence, PresenceConnection};
use crate::error::Result;
use crate::store::{StoreResult, sqlite as store, unavailable};
use diesel::Connection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sqlite::SqliteConnection;
use std::path::PathBuf;

/// Settings of a [`SqlitePresence`].
#[derive(Debug, Clone)]
pub struct SqlitePresenceConfig {
    /// The database file: the store's (the presence tables come with its
    /// migrations, run here too if the store has not run them yet).
    pub path: PathBuf,
    /// How long a node's sessions count after its last renewal, ms
    /// (default 30 s); every process uses the same.
    pub lease_ms: i64,
    /// Connections for presence, apart from the store's (default 2; SQLite
    /// runs one write at a time anyway).
    pub connections: u32,
}

impl SqlitePresenceConfig {
    /// Defaults for the database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lease_ms: 30_000,
            connections: 2,
        }
    }
}

/// Cluster presence in SQLite: the shared [`DieselPresence`] on
/// `SqliteConnection`, opened by [`SqlitePresence::open`].
///
/// ```no_run
/// # async fn demo() -> im_core::Result<()> {
/// use im_core::presence::{SqlitePresence, SqlitePresenceConfig};
/// let presence = SqlitePresence::open(SqlitePresenceConfig::new("data/im.sqlite3")).await?;
/// # Ok(()) }
/// ```
pub type SqlitePresence = DieselPresence<SqliteConnection>;

impl PresenceConnection for SqliteConnection {
    fn write_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>,
    {
        // Takes the write lock first (waiting up to the busy timeout): a
        // deferred transaction that read before writing could fail instead.
        self.immediate_transaction(f)
    }

    fn read_transaction<T, F>(&mut self, f: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Self) -> StoreResult<T>,
    {
        // Deferred: one WAL snapshot for every statement of `f`.
        self.transaction(f)
    }

    fn node_lease_shared(&mut self, node: &str) -> StoreResult<Option<i64>> {
        // Write transactions hold the database's write lock already.
        super::queries::node_lease(self, node)
    }
}

impl DieselPresence<SqliteConnection> {
    /// Opens the database (as the store does: directory, WAL, migrations)
    /// and the pool. `Unavailable` if the file cannot be opened.
    pub async fn open(config: SqlitePresenceConfig) -> Result<Self> {
        super::blocking(move || {
            let (_conn, url) = store::open_migrated(&config.path, false)?;
            let pool = Pool::builder()
                .max_size(config.connections.max(1))
                // A local file connection does not go stale: skip the probe query.
                .test_on_check_out(false)
                // `synchronous = NORMAL`: see the module docs.
                .connection_customizer(Box::new(store::WriterSetup {
                    synchronous_full: false,
                }))
                .build(ConnectionManager::new(url))
                .map_err(unavailable)?;
            Ok(Self::new(pool, config.lease_ms))
        })
        .await
    }
}
