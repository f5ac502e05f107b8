//! The diesel store shared by [`SqliteStore`](super::SqliteStore) and
//! `PostgresStore`: one schema, one set of queries, one group-commit writer,
//! written once as generic Rust over the connection type.
//!
//! | file | what |
//! |---|---|
//! | `schema.rs` | the diesel `table!` definitions |
//! | `rows.rs` | row structs, the column tuples that select them, conversions |
//! | `writer.rs` | `DieselCore`: the reader pool and the group-commit writer threads |
//! | `queries/` | every statement, once, as functions generic over [`SqlConnection`] (accounts; conversations and members; messages) |
//! | `store.rs` | [`DieselStore`] and its [`Store`](super::Store) impl: which query runs where (reader pool or writer shard) |
//! | `error.rs` | diesel errors classified into [`StoreError`](super::StoreError) |
//!
//! The backend modules (`sqlite.rs`, `postgres.rs`) add only what differs:
//! configuration, connection set-up and pragmas, migrations, and the
//! [`SqlConnection`] impl of their connection type.
//!
//! # How one query runs on two backends
//! A diesel query value (say `users::table.filter(..).select(USER)`) does not
//! depend on the backend; only executing it does (`Q: LoadQuery<'_, Conn, U>`),
//! and generic code over any `C: Connection` cannot prove that bound. So
//! statements are executed through [`SqlConnection`], whose methods accept any
//! query that runs on *every compiled-in backend* ([`Loads`], [`Executes`]).
//! The bound is checked where the query is written, with its concrete type, and
//! each backend's impl is a one-line call into diesel: static dispatch, the
//! same SQL and the same code per statement as hand-written diesel.
//!
//! We do not use `#[derive(diesel::MultiConnection)]`: its enum must name
//! every backend, so the `sqlite` feature alone would need libpq, and each
//! statement would go through its `MultiBackend` query translation on the
//! sending path.

use diesel::connection::LoadConnection;
use diesel::dsl::Limit;
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::{ExecuteDsl, LimitDsl};
use diesel::r2d2::R2D2Connection;
use diesel::{QueryResult, RunQueryDsl};

mod error;
mod queries;
mod rows;
mod schema;
mod store;
mod writer;

pub(crate) use error::unavailable;
pub(crate) use queries::reindex_if_needed;
pub use store::DieselStore;
pub use writer::WriteStats;
pub(crate) use writer::{BatchConfig, DieselCore, WriterHooks};

// Where one backend is compiled out, both names stand for the other, so the
// bounds below mean "runs on every backend compiled in".
#[cfg(feature = "sqlite")]
type SqliteConn = diesel::sqlite::SqliteConnection;
#[cfg(not(feature = "sqlite"))]
type SqliteConn = diesel::pg::PgConnection;
#[cfg(feature = "postgres")]
type PgConn = diesel::pg::PgConnection;
#[cfg(not(feature = "postgres"))]
type PgConn = diesel::sqlite::SqliteConnection;

/// A query that loads rows of `U` on every compiled-in backend.
pub trait Loads<'q, U>:
    RunQueryDsl<SqliteConn> + LoadQuery<'q, SqliteConn, U> + RunQueryDsl<PgConn> + LoadQuery<'q, PgConn, U>
{
}

impl<'q, U, Q> Loads<'q, U> for Q where
    Q: RunQueryDsl<SqliteConn>
        + LoadQuery<'q, SqliteConn, U>
        + RunQueryDsl<PgConn>
        + LoadQuery<'q, PgConn, U>
{
}

/// A statement that executes on every compiled-in backend.
pub trait Executes:
    RunQueryDsl<SqliteConn> + ExecuteDsl<SqliteConn> + RunQueryDsl<PgConn> + ExecuteDsl<PgConn>
{
}

impl<Q> Executes for Q where
    Q: RunQueryDsl<SqliteConn> + ExecuteDsl<SqliteConn> + RunQueryDsl<PgConn> + ExecuteDsl<PgConn>
{
}

mod sealed {
    pub trait Sealed {}
}

/// A diesel connection the store runs on: `SqliteConnection` (feature
/// `sqlite`) or `PgConnection` (feature `postgres`). Sealed.
///
/// The methods run a statement written for every backend ([`Loads`],
/// [`Executes`]) on this one; they are what lets the queries be plain generic
/// functions.
pub trait SqlConnection: LoadConnection + R2D2Connection + sealed::Sealed + Send + 'static {
    /// Runs a query; all rows.
    fn load_rows<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<Vec<U>>;
    /// Runs a query; its first row, or `NotFound`.
    fn get_row<'q, Q: Loads<'q, U>, U>(&mut self, query: Q) -> QueryResult<U>;
    /// Runs a statement; the number of rows it changed.
    fn execute_statement<Q: Executes>(&mut self, statement: Q) -> QueryResult<usize>;

    /// Adds a message's search tokens to the full-text index.
    fn index_text(&mut self, message: i64, conversation: i64, tokens: &str) -> QueryResult<()>;
    /// Removes a message from the full-text index; `tokens` are exactly
    /// those indexed (SQLite's contentless index needs them again).
    fn unindex_text(&mut self, message: i64, tokens: &str) -> QueryResult<()>;
    /// Empties the full-text index.
    fn clear_text_index(&mut self) -> QueryResult<()>;
    /// Ids of the messages matching `query`, newest first, at most `limit`,
    /// below `before`: in the conversations `user` is a member of (only
    /// `conversation` unless 0), not recalled, not deleted by `user` for
    /// themselves.
    fn search_ids(
        &mut self,
        user: i64,
        query: &crate::search::SearchQuery,
        conversation: i64,
        before: i64,
        limit: i64,
    ) -> QueryResult<Vec<i64>>;
}

/// A row of one id, for the search statements written in SQL.
#[derive(diesel::QueryableByName)]
pub(crate) struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) id: i64,
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for diesel::sqlite::SqliteConnection {}
#[cfg(feature = "postgres")]
impl sealed::Sealed for diesel::pg::PgConnection {}

/// Runs query values on a [`SqlConnection`], read left to right like
/// diesel's `RunQueryDsl` (whose methods need the concrete connection type).
pub(crate) trait Run: Sized {
    /// All rows.
    fn rows<'q, U, C: SqlConnection>(self, c: &mut C) -> QueryResult<Vec<U>>
    where
        Self: Loads<'q, U>,
    {
        c.load_rows(self)
    }

    /// The first row, or `NotFound` (no `LIMIT` is added: see [`Run::first_row`]).
    fn row<'q, U, C: SqlConnection>(self, c: &mut C) -> QueryResult<U>
    where
        Self: Loads<'q, U>,
    {
        c.get_row(self)
    }

    /// The first row with `LIMIT 1`, or `NotFound`; diesel's `first`.
    fn first_row<'q, U, C: SqlConnection>(self, c: &mut C) -> QueryResult<U>
    where
        Self: LimitDsl,
        Limit<Self>: Loads<'q, U>,
    {
        c.get_row(self.limit(1))
    }

    /// Executes; the number of rows changed.
    fn run<C: SqlConnection>(self, c: &mut C) -> QueryResult<usize>
    where
        Self: Executes,
    {
        c.execute_statement(self)
    }
}

impl<Q> Run for Q {}
