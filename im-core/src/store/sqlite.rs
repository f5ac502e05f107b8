//! `SqliteStore`: the embedded default store (diesel, bundled SQLite, WAL).
//!
//! The queries and the group-commit writer are shared with the PostgreSQL
//! store (see `sql.rs`). SQLite specifics: WAL journal, `synchronous = FULL`
//! by default (an acked write survives a power loss), read-only reader
//! connections, and migrations from `migrations/sqlite` embedded in the binary
//! and run when the store opens, so an older database is upgraded in place.

use super::sql::*;
use super::{direct_key, direct_new};
use crate::error::{Error, Result};
use crate::model::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use im_protocol::v1;
use std::path::PathBuf;
use std::time::Duration;

/// The SQLite migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteStoreConfig {
    /// The database file; created with its parent directory if missing.
    pub path: PathBuf,
    /// Read connections (default 4).
    pub read_connections: u32,
    /// Most writes committed in one transaction (default 512).
    pub max_batch: usize,
    /// Longest a write waits for others to join its batch (default 0: the
    /// batch is whatever queued while the previous commit ran).
    pub max_wait: Duration,
    /// `synchronous = FULL` (default, durable on power loss) or `NORMAL`
    /// (durable on process crash only, faster).
    pub synchronous_full: bool,
}

impl SqliteStoreConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_connections: 4,
            max_batch: 512,
            max_wait: Duration::ZERO,
            synchronous_full: true,
        }
    }
}

/// The SQLite [`Store`](super::Store).
///
/// ```no_run
/// # async fn demo() -> im_core::Result<()> {
/// use im_core::store::{SqliteStore, SqliteStoreConfig};
/// let store = SqliteStore::open(SqliteStoreConfig::new("data/im.sqlite3")).await?;
/// # Ok(()) }
/// ```
pub struct SqliteStore {
    /// Member lists used by the sending path (see [`MemberCache`]).
    members: MemberCache,
    /// Reader pool and group-commit writer.
    core: DieselCore<SqliteConnection>,
}

#[derive(Debug)]
struct ReaderSetup;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

fn open_writer(url: &str, synchronous_full: bool) -> Result<SqliteConnection> {
    let mut conn = SqliteConnection::establish(url).map_err(unavailable)?;
    conn.batch_execute(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA busy_timeout = 5000;",
        if synchronous_full { "FULL" } else { "NORMAL" }
    ))
    .map_err(unavailable)?;
    Ok(conn)
}

fn checkpoint(conn: &mut SqliteConnection) -> Result<()> {
    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(unavailable)
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(config: SqliteStoreConfig) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn open_blocking(config: SqliteStoreConfig) -> Result<Self> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let url = config.path.to_string_lossy().into_owned();
        let mut writer = open_writer(&url, config.synchronous_full)?;
        writer
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| Error::Internal(format!("sqlite migrations: {e}")))?;
        let readers = Pool::builder()
            .max_size(config.read_connections.max(1))
            // A local file connection does not go stale: skip the probe query.
            .test_on_check_out(false)
            .connection_customizer(Box::new(ReaderSetup))
            .build(ConnectionManager::new(url.clone()))
            .map_err(unavailable)?;
        let full = config.synchronous_full;
        let core = DieselCore::start(
            readers,
            writer,
            move || open_writer(&url, full),
            // SQLite has one writer at a time: more threads would only wait.
            1,
            BatchConfig {
                max_batch: config.max_batch,
                max_wait: config.max_wait,
            },
            checkpoint,
        )?;
        Ok(Self {
            core,
            members: MemberCache::default(),
        })
    }

    /// What the group-commit writer committed so far.
    pub fn write_stats(&self) -> WriteStats {
        self.core.stats()
    }
}

fn insert_member_if_absent(
    c: &mut SqliteConnection,
    conversation: i64,
    user: i64,
    role: i32,
    joined_at: i64,
) -> QueryResult<usize> {
    diesel::insert_or_ignore_into(members::table)
        .values((
            members::conversation_id.eq(conversation),
            members::user_id.eq(user),
            members::role.eq(role),
            members::joined_at.eq(joined_at),
        ))
        .execute(c)
}

diesel_store_impl!(SqliteStore, SqliteConnection);
