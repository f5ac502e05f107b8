//! `SqliteStore`: the embedded default store (diesel, bundled SQLite, WAL).
//!
//! The queries and the group-commit writer are shared with the PostgreSQL
//! store (see [`DieselStore`]). SQLite specifics: WAL journal,
//! `synchronous = FULL` by default (an acked write survives a power loss),
//! read-only reader connections, a single writer thread, recognising
//! `SQLITE_BUSY`/`SQLITE_LOCKED`, and migrations from `migrations/sqlite`
//! embedded in the binary and run when the store opens, so an older database
//! is upgraded in place.

use super::sql::{
    BatchConfig, DieselCore, DieselStore, Executes, IdRow, Loads, SqlConnection, WriterHooks,
    reindex_if_needed, unavailable,
};
use crate::error::{Error, Result};
use crate::store::{StoreError, StoreResult};
use diesel::RunQueryDsl;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryResult};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::path::{Path, PathBuf};
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

/// The SQLite [`Store`](super::Store): the shared [`DieselStore`] on
/// `SqliteConnection`, opened by [`SqliteStore::open`].
///
/// ```no_run
/// # async fn demo() -> im_core::Result<()> {
/// use im_core::store::{SqliteStore, SqliteStoreConfig};
/// let store = SqliteStore::open(SqliteStoreConfig::new("data/im.sqlite3")).await?;
/// # Ok(()) }
/// ```
pub type SqliteStore = DieselStore<SqliteConnection>;

impl SqlConnection for SqliteConnection {
    fn load_rows<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<Vec<U>> {
        query.load(self)
    }

    fn get_row<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<U> {
        query.get_result(self)
    }

    fn execute_statement<Q: Executes>(&mut self, statement: Q) -> QueryResult<usize> {
        statement.execute(self)
    }

    fn index_text(&mut self, message: i64, _conversation: i64, tokens: &str) -> QueryResult<()> {
        diesel::sql_query("INSERT INTO message_fts (rowid, tokens) VALUES (?, ?)")
            .bind::<BigInt, _>(message)
            .bind::<Text, _>(tokens)
            .execute(self)
            .map(drop)
    }

    fn unindex_text(&mut self, message: i64, tokens: &str) -> QueryResult<()> {
        // A contentless index forgets a row given its tokens again; with
        // its secure-delete option they leave the file.
        diesel::sql_query("INSERT INTO message_fts (message_fts, rowid, tokens) VALUES ('delete', ?, ?)")
            .bind::<BigInt, _>(message)
            .bind::<Text, _>(tokens)
            .execute(self)
            .map(drop)
    }

    fn clear_text_index(&mut self) -> QueryResult<()> {
        self.batch_execute("INSERT INTO message_fts (message_fts) VALUES ('delete-all')")
    }

    fn search_ids(
        &mut self,
        user: i64,
        query: &crate::search::SearchQuery,
        conversation: i64,
        before: i64,
        limit: i64,
    ) -> QueryResult<Vec<i64>> {
        let rows: Vec<IdRow> = diesel::sql_query(
            "SELECT m.id AS id FROM message_fts f JOIN messages m ON m.id = f.rowid \
             WHERE message_fts MATCH ? AND f.rowid < ? AND m.recalled_at = 0 \
             AND (? = 0 OR m.conversation_id = ?) \
             AND m.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = ?) \
             AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = ? AND h.message_id = m.id) \
             ORDER BY f.rowid DESC LIMIT ?",
        )
        .bind::<Text, _>(query.fts5())
        .bind::<BigInt, _>(before)
        .bind::<BigInt, _>(conversation)
        .bind::<BigInt, _>(conversation)
        .bind::<BigInt, _>(user)
        .bind::<BigInt, _>(user)
        .bind::<BigInt, _>(limit)
        .load(self)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, including their extended codes: another
/// connection holds the lock past `busy_timeout`; retrying can succeed.
///
/// diesel reports these as `DatabaseErrorKind::Unknown` and keeps only
/// `sqlite3_errmsg`, which for them is SQLite's fixed text of the primary code
/// (`sqlite3_errstr`), optionally followed by the locked object: the whole
/// text is compared, it is not searched for words.
pub(crate) fn is_transient(message: &str) -> bool {
    message == "database is locked"
        || message.starts_with("database table is locked")
        || message.starts_with("database schema is locked")
}

#[derive(Debug)]
struct ReaderSetup;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for ReaderSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Sets up a connection that writes: busy timeout, WAL, `synchronous`, and
/// `secure_delete`: space freed by a write (a recalled message's content,
/// its edit history) is overwritten with zeros, so no trace of it stays in
/// the database file (the WAL's older frames are overwritten as it is
/// reused, and it is truncated at every clean shutdown).
fn writer_pragmas(conn: &mut SqliteConnection, synchronous_full: bool) -> QueryResult<()> {
    // The busy timeout first: another process's connections (or the last
    // ones of a store closing in this process, which checkpoint as they go)
    // may hold a lock for a moment while this one switches to WAL.
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA secure_delete = ON; \
         PRAGMA synchronous = {};",
        if synchronous_full { "FULL" } else { "NORMAL" }
    ))
}

fn open_writer(url: &str, synchronous_full: bool) -> StoreResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(url).map_err(unavailable)?;
    writer_pragmas(&mut conn, synchronous_full).map_err(unavailable)?;
    Ok(conn)
}

/// Pooled connections that write (set up as the store's writer is), for
/// other writers of the same database file (the store presence).
#[derive(Debug)]
pub(crate) struct WriterSetup {
    /// `synchronous = FULL` rather than `NORMAL`.
    pub(crate) synchronous_full: bool,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for WriterSetup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        writer_pragmas(conn, self.synchronous_full).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Creates the database file's directory, opens a writing connection and
/// runs pending migrations: what every user of the file does first. The
/// connection and the URL to open more.
pub(crate) fn open_migrated(path: &Path, synchronous_full: bool) -> StoreResult<(SqliteConnection, String)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
    }
    let url = path.to_string_lossy().into_owned();
    let mut writer = open_writer(&url, synchronous_full)?;
    writer
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Backend(format!("sqlite migrations: {e}")))?;
    reindex_if_needed(&mut writer)?;
    Ok((writer, url))
}

fn checkpoint(conn: &mut SqliteConnection) -> StoreResult<()> {
    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(unavailable)
}

impl DieselStore<SqliteConnection> {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(config: SqliteStoreConfig) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)
    }

    fn open_blocking(config: SqliteStoreConfig) -> StoreResult<Self> {
        let (writer, url) = open_migrated(&config.path, config.synchronous_full)?;
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
            WriterHooks {
                on_close: checkpoint,
                // One writer: nothing to order.
                lock_conversations: |_, _| Ok(()),
            },
        )?;
        Ok(Self::new(core))
    }
}
