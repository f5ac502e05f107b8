//! `PostgresStore`: the production store (diesel, libpq), for one or many
//! server nodes sharing one database.
//!
//! The queries and the group-commit writer are shared with SQLite (see
//! [`DieselStore`](super::DieselStore)). Sequence numbers are assigned by `UPDATE conversations SET
//! last_seq = last_seq + 1 ... RETURNING` inside the transaction that stores
//! the message: the row lock serializes writers of one conversation across
//! processes, so seqs stay gap-free and unique with several nodes.
//! Migrations from `migrations/postgres` are embedded and run at open.

use super::sql::{
    BatchConfig, DieselCore, DieselStore, Executes, IdRow, Loads, SqlConnection, WriterHooks,
    reindex_if_needed, unavailable,
};
use crate::error::{Error, Result};
use crate::store::{StoreError, StoreResult};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{Builder, ConnectionManager, Pool};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryResult, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

/// The PostgreSQL migrations, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresStoreConfig {
    /// A libpq URL, e.g. `postgres://user@127.0.0.1:5432/im`.
    pub url: String,
    /// Read connections in the pool (default 8).
    pub pool_size: u32,
    /// How long a read waits for a connection before `Unavailable` (default 5 s).
    pub connect_timeout: Duration,
    /// Most writes committed in one transaction (default 512).
    pub max_batch: usize,
    /// Longest a write waits for others to join its batch (default 1 ms).
    pub max_wait: Duration,
    /// Writer connections, each committing its own batches (default 4).
    /// Writes of one conversation always use the same writer.
    pub writers: usize,
}

impl PostgresStoreConfig {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            max_batch: 512,
            max_wait: Duration::from_millis(1),
            writers: 4,
        }
    }
}

/// The PostgreSQL [`Store`](super::Store): the shared [`DieselStore`] on
/// `PgConnection`, opened by [`PostgresStore::open`].
///
/// ```no_run
/// # async fn demo() -> im_core::Result<()> {
/// use im_core::store::{PostgresStore, PostgresStoreConfig};
/// let store = PostgresStore::open(PostgresStoreConfig::new("postgres://postgres@127.0.0.1/im")).await?;
/// # Ok(()) }
/// ```
pub type PostgresStore = DieselStore<PgConnection>;

impl SqlConnection for PgConnection {
    fn load_rows<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<Vec<U>> {
        query.load(self)
    }

    fn get_row<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<U> {
        query.get_result(self)
    }

    fn execute_statement<Q: Executes>(&mut self, statement: Q) -> QueryResult<usize> {
        statement.execute(self)
    }

    fn index_text(&mut self, message: i64, conversation: i64, tokens: &str) -> QueryResult<()> {
        diesel::sql_query(
            "INSERT INTO message_search (message_id, conversation_id, tsv) \
             VALUES ($1, $2, to_tsvector('simple', $3)) \
             ON CONFLICT (message_id) DO UPDATE SET tsv = EXCLUDED.tsv",
        )
        .bind::<BigInt, _>(message)
        .bind::<BigInt, _>(conversation)
        .bind::<Text, _>(tokens)
        .execute(self)
        .map(drop)
    }

    fn unindex_text(&mut self, message: i64, _tokens: &str) -> QueryResult<()> {
        diesel::sql_query("DELETE FROM message_search WHERE message_id = $1")
            .bind::<BigInt, _>(message)
            .execute(self)
            .map(drop)
    }

    fn clear_text_index(&mut self) -> QueryResult<()> {
        self.batch_execute("DELETE FROM message_search")
    }

    fn search_ids(
        &mut self,
        user: i64,
        query: &crate::search::SearchQuery,
        conversation: i64,
        before: i64,
        limit: i64,
    ) -> QueryResult<Vec<i64>> {
        // A custom plan for each query: the generic plan of a prepared
        // statement can walk a common term's whole posting list.
        self.transaction(|c| {
            // Bounded: a pathological query fails (retry-able) instead of
            // holding a reader.
            c.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL statement_timeout = '5s'")?;
            let rows: Vec<IdRow> = diesel::sql_query(
                "SELECT s.message_id AS id FROM message_search s JOIN messages m ON m.id = s.message_id \
                 WHERE s.tsv @@ to_tsquery('simple', $1) AND s.message_id < $2 AND m.recalled_at = 0 \
                 AND ($3 = 0 OR s.conversation_id = $3) \
                 AND s.conversation_id IN (SELECT conversation_id FROM members WHERE user_id = $4) \
                 AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $4 AND h.message_id = s.message_id) \
                 ORDER BY s.message_id DESC LIMIT $5",
            )
            .bind::<Text, _>(query.tsquery())
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(conversation)
            .bind::<BigInt, _>(user)
            .bind::<BigInt, _>(limit)
            .load(c)?;
            Ok(rows.into_iter().map(|r| r.id).collect())
        })
    }
}

/// A deadlock (SQLSTATE 40P01): PostgreSQL aborted this side of a lock cycle
/// between nodes; retrying succeeds. Serialization failures (40001) and lost
/// connections (class 08) already have their own diesel error kinds.
///
/// diesel 2.3 reports 40P01 as `DatabaseErrorKind::Unknown` without the
/// SQLSTATE, so this compares the server's primary message for that code,
/// whole (it is only recognised with English server messages, `lc_messages`).
pub(crate) fn is_transient(message: &str) -> bool {
    message == "deadlock detected"
}

/// `url` with a libpq `connect_timeout` (whole seconds, at least 1) unless it has one.
fn with_connect_timeout(url: &str, timeout: Duration) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={}", timeout.as_secs().max(1))
}

/// Connects to `url` (with a libpq connect time-out) and runs pending
/// migrations: what every user of the database does first. The connection
/// and the URL to open more.
pub(crate) fn connect_migrated(url: &str, connect_timeout: Duration) -> StoreResult<(PgConnection, String)> {
    let url = with_connect_timeout(url, connect_timeout);
    let mut conn = PgConnection::establish(&url).map_err(unavailable)?;
    // Several nodes may start at once: one migrates, the others wait.
    conn.batch_execute("SELECT pg_advisory_lock(7426001)")
        .map_err(unavailable)?;
    let migrated = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Backend(format!("postgres migrations: {e}")))
        .and_then(|()| reindex_if_needed(&mut conn));
    conn.batch_execute("SELECT pg_advisory_unlock(7426001)")
        .map_err(unavailable)?;
    migrated?;
    Ok((conn, url))
}

/// A pool of `size` connections, to be built (lazily, `build_unchecked`)
/// on the URL from [`connect_migrated`]; a caller waits at most
/// `connect_timeout` for a connection.
pub(crate) fn pool_builder(size: u32, connect_timeout: Duration) -> Builder<ConnectionManager<PgConnection>> {
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .connection_timeout(connect_timeout)
}

impl DieselStore<PgConnection> {
    /// Connects, migrates, and starts the pool and the writer.
    pub async fn open(config: PostgresStoreConfig) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::open_blocking(config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::from)
    }

    fn open_blocking(config: PostgresStoreConfig) -> StoreResult<Self> {
        let (writer, url) = connect_migrated(&config.url, config.connect_timeout)?;
        let readers = pool_builder(config.pool_size, config.connect_timeout)
            .build_unchecked(ConnectionManager::new(url.clone()));
        let core = DieselCore::start(
            readers,
            writer,
            move || PgConnection::establish(&url).map_err(unavailable),
            config.writers,
            BatchConfig {
                max_batch: config.max_batch,
                max_wait: config.max_wait,
            },
            WriterHooks {
                on_close: |_| Ok(()),
                lock_conversations,
            },
        )?;
        Ok(Self::new(core))
    }
}

/// Locks conversation rows in ascending id order (`ids` are sorted), so the
/// writers of several nodes never hold them in a cycle.
fn lock_conversations(c: &mut PgConnection, ids: &[i64]) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(ids)
        .execute(c)
        .map(drop)
}

/// Test support: a throw-away schema in a shared database, so tests on one
/// database do not see each other's data.
#[cfg(feature = "testing")]
pub mod testing {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// The database used by tests: `IM_TEST_POSTGRES_URL`, or the local default.
    pub fn base_url() -> String {
        std::env::var("IM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// A fresh schema, dropped with this value.
    #[derive(Debug)]
    pub struct TempSchema {
        base: String,
        name: String,
    }

    impl TempSchema {
        /// Creates a schema; panics (never skips) when PostgreSQL is unreachable.
        pub fn create() -> Self {
            Self::create_on(&base_url())
        }

        /// Creates a schema in the database at `base`.
        pub fn create_on(base: &str) -> Self {
            let mut conn = PgConnection::establish(base).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is required for this test and is not reachable at {base}: {e}. \
                     Start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or set IM_TEST_POSTGRES_URL."
                )
            });
            let mut raw = [0u8; 8];
            rand::Rng::fill(&mut rand::rng(), &mut raw);
            let name = format!("t_{}", hex::encode(raw));
            conn.batch_execute(&format!("CREATE SCHEMA {name}"))
                .expect("create test schema");
            Self {
                base: base.to_owned(),
                name,
            }
        }

        /// A URL whose connections use only this schema.
        pub fn url(&self) -> String {
            self.url_via(&self.base)
        }

        /// Like [`TempSchema::url`] but through another base URL (e.g. a proxy).
        pub fn url_via(&self, base: &str) -> String {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-csearch_path%3D{}", self.name)
        }
    }

    impl Drop for TempSchema {
        fn drop(&mut self) {
            if let Ok(mut conn) = PgConnection::establish(&self.base) {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
            }
        }
    }
}
