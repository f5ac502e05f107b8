//! The diesel query path shared by [`SqliteStore`](super::SqliteStore) and
//! `PostgresStore`: one schema, one set of queries, one group-commit writer.
//!
//! * **Writes** go to a writer thread that owns the writing connection. It
//!   takes every write queued while the previous commit ran (after waiting up
//!   to `max_wait` for more) and commits them in one transaction (group
//!   commit), each inside its own savepoint so one failing write does not fail
//!   the others. A write resolves only after its batch committed; if the
//!   commit fails or its outcome is unknown, every write of the batch gets
//!   `Unavailable` (a retry with the same client message id is safe).
//!   A broken writing connection is re-established on the next batch.
//! * **Reads** use a pool on blocking threads (`spawn_blocking`), never the
//!   async workers.

use crate::error::{Error, Result};
use crate::model::*;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use im_protocol::v1;
use prost::Message as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) mod schema {
    diesel::table! {
        users (id) {
            id -> BigInt,
            username -> Text,
            username_lower -> Text,
            display_name -> Text,
            display_lower -> Text,
            avatar_url -> Text,
            password_hash -> Text,
            created_at -> BigInt,
            last_seen -> BigInt,
        }
    }
    diesel::table! {
        tokens (token_hash) {
            token_hash -> Text,
            user_id -> BigInt,
            expires_at -> BigInt,
        }
    }
    diesel::table! {
        conversations (id) {
            id -> BigInt,
            kind -> Integer,
            title -> Text,
            ephemeral -> Bool,
            created_by -> BigInt,
            created_at -> BigInt,
            last_seq -> BigInt,
            last_version -> BigInt,
            member_count -> Integer,
            direct_key -> Nullable<Text>,
            member_version -> BigInt,
        }
    }
    diesel::table! {
        members (conversation_id, user_id) {
            conversation_id -> BigInt,
            user_id -> BigInt,
            role -> Integer,
            joined_at -> BigInt,
            read_seq -> BigInt,
            delivered_seq -> BigInt,
        }
    }
    diesel::table! {
        messages (id) {
            id -> BigInt,
            conversation_id -> BigInt,
            seq -> BigInt,
            version -> BigInt,
            sender_id -> BigInt,
            client_msg_id -> Nullable<Text>,
            created_at -> BigInt,
            content -> Binary,
        }
    }
    diesel::allow_tables_to_appear_in_same_query!(conversations, members);
}

pub(crate) use schema::*;

type Completion = Box<dyn FnOnce(Option<Error>) + Send>;
/// A write: given the connection (or `None` when the database is unreachable),
/// runs and returns what to do once the batch outcome is known.
type Job<C> = Box<dyn FnOnce(Option<&mut C>) -> Completion + Send>;

enum WriterMsg<C> {
    Job(Job<C>),
    Close(oneshot::Sender<Result<()>>),
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("store: {e}"))
}

/// Group-commit settings of the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// Opens a writing connection (again, after a failure).
type Connect<C> = Box<dyn FnMut() -> Result<C> + Send>;

/// Counts of the group-commit writer, for operators and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub batches: u64,
    /// Writes committed in them.
    pub writes: u64,
    /// Largest batch committed.
    pub largest_batch: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    largest: AtomicU64,
}

/// The reader pool and the writer queues of a diesel store.
pub(crate) struct DieselCore<C: R2D2Connection + 'static> {
    readers: Pool<ConnectionManager<C>>,
    /// One queue per writer thread (shard). Writes keyed by a conversation
    /// always go to the same shard, so two shards never wait for each
    /// other's row locks in a cycle.
    writers: Vec<mpsc::Sender<WriterMsg<C>>>,
    /// Spreads unkeyed writes over the shards.
    next_writer: std::sync::atomic::AtomicUsize,
    counters: Arc<Counters>,
}

impl<C: R2D2Connection + Send + 'static> DieselCore<C> {
    /// Starts the writer thread on `conn`; `connect` re-opens it after a failure;
    /// `on_close` runs on the writer connection at shutdown.
    /// `writers` threads each own a writing connection: the first is `conn`,
    /// the others come from `connect` (which also re-opens broken ones).
    pub(crate) fn start(
        readers: Pool<ConnectionManager<C>>,
        conn: C,
        connect: impl Fn() -> Result<C> + Send + Sync + 'static,
        writers: usize,
        batch: BatchConfig,
        on_close: fn(&mut C) -> Result<()>,
    ) -> Result<Self> {
        let connect = Arc::new(connect);
        let counters = Arc::new(Counters::default());
        let mut queues = Vec::new();
        let mut first = Some(conn);
        for shard in 0..writers.max(1) {
            let conn = match first.take() {
                Some(c) => c,
                None => connect()?,
            };
            let (tx, rx) = mpsc::channel();
            let counters = counters.clone();
            let connect = connect.clone();
            std::thread::Builder::new()
                .name(format!("store-writer-{shard}"))
                .spawn(move || {
                    writer_loop(
                        Some(conn),
                        Box::new(move || connect()),
                        rx,
                        batch,
                        on_close,
                        &counters,
                    )
                })
                .map_err(|e| Error::Internal(e.to_string()))?;
            queues.push(tx);
        }
        Ok(Self {
            readers,
            writers: queues,
            next_writer: std::sync::atomic::AtomicUsize::new(0),
            counters,
        })
    }

    /// What the writer committed so far.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            largest_batch: self.counters.largest.load(Ordering::Relaxed),
        }
    }

    /// Runs `f` in the next batch of any writer; resolves after the commit.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let shard = self.next_writer.fetch_add(1, Ordering::Relaxed);
        self.write_on(shard, f).await
    }

    /// Runs `f` on the writer that owns `key` (a conversation id): writes of
    /// one conversation are ordered, and shards never deadlock each other.
    pub(crate) async fn write_keyed<R, F>(&self, key: u64, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_on((key % self.writers.len() as u64) as usize, f).await
    }

    async fn write_on<R, F>(&self, shard: usize, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job<C> = Box::new(move |conn: Option<&mut C>| {
            let result = match conn {
                // Nested in the batch transaction: a savepoint.
                Some(conn) => conn.transaction::<R, Error, _>(f),
                None => Err(Error::Unavailable("database unreachable".into())),
            };
            Box::new(move |commit_error: Option<Error>| {
                let _ = tx.send(match commit_error {
                    Some(e) => Err(e),
                    None => result,
                });
            })
        });
        self.writers[shard % self.writers.len()]
            .send(WriterMsg::Job(job))
            .map_err(|_| Error::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("store writer stopped".into()))?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut C) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(unavailable)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Lets queued writes finish, runs `on_close`, stops the writers.
    pub(crate) async fn close(&self) -> Result<()> {
        let mut result = Ok(());
        for writer in &self.writers {
            let (tx, rx) = oneshot::channel();
            if writer.send(WriterMsg::Close(tx)).is_ok()
                && let Err(e) = rx.await.unwrap_or(Ok(()))
            {
                result = Err(e);
            }
        }
        result
    }
}

/// Least time between two attempts to re-open a broken writing connection.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(250);

fn writer_loop<C: Connection + Send + 'static>(
    mut conn: Option<C>,
    mut connect: Connect<C>,
    rx: mpsc::Receiver<WriterMsg<C>>,
    batch_config: BatchConfig,
    on_close: fn(&mut C) -> Result<()>,
    counters: &Counters,
) {
    let max_batch = batch_config.max_batch.max(1);
    let mut batch: Vec<Job<C>> = Vec::with_capacity(max_batch);
    let mut last_connect = Instant::now();
    while let Ok(first) = rx.recv() {
        let mut close = None;
        match first {
            WriterMsg::Job(job) => batch.push(job),
            WriterMsg::Close(tx) => close = Some(tx),
        }
        let deadline = Instant::now() + batch_config.max_wait;
        while close.is_none() && batch.len() < max_batch {
            let next = match rx.try_recv() {
                Ok(msg) => Ok(msg),
                Err(mpsc::TryRecvError::Empty) if !batch_config.max_wait.is_zero() => {
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) => rx.recv_timeout(left).map_err(|_| ()),
                        None => Err(()),
                    }
                }
                Err(_) => Err(()),
            };
            match next {
                Ok(WriterMsg::Job(job)) => batch.push(job),
                Ok(WriterMsg::Close(tx)) => close = Some(tx),
                Err(()) => break,
            }
        }
        if !batch.is_empty() {
            if conn.is_none() && last_connect.elapsed() >= RECONNECT_INTERVAL {
                last_connect = Instant::now();
                match connect() {
                    Ok(c) => {
                        tracing::info!("store writer reconnected");
                        conn = Some(c);
                    }
                    Err(e) => tracing::warn!(error = %e, "store writer cannot reconnect"),
                }
            }
            match conn.as_mut() {
                None => {
                    for job in batch.drain(..) {
                        job(None)(None);
                    }
                }
                Some(c) => {
                    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
                    let mut panicked = false;
                    let outcome = c.transaction::<(), diesel::result::Error, _>(|c| {
                        for job in batch.drain(..) {
                            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                job(Some(&mut *c))
                            })) {
                                Ok(done) => completions.push(done),
                                Err(_) => {
                                    tracing::error!("a store write panicked; its batch is rolled back");
                                    panicked = true;
                                }
                            }
                        }
                        // A panic left a savepoint open: never commit on top of it.
                        if panicked {
                            Err(diesel::result::Error::RollbackTransaction)
                        } else {
                            Ok(())
                        }
                    });
                    batch.clear();
                    let error = outcome
                        .err()
                        .map(|e| Error::Unavailable(format!("commit failed: {e}")));
                    if error.is_none() {
                        let n = completions.len() as u64;
                        counters.batches.fetch_add(1, Ordering::Relaxed);
                        counters.writes.fetch_add(n, Ordering::Relaxed);
                        counters.largest.fetch_max(n, Ordering::Relaxed);
                    }
                    if panicked || (error.is_some() && c.batch_execute("SELECT 1").is_err()) {
                        // After a panic the connection's transaction state is
                        // unknown: open a fresh connection.
                        tracing::warn!("store writer reopens its connection");
                        conn = None;
                        last_connect = Instant::now() - RECONNECT_INTERVAL;
                    }
                    for done in completions {
                        done(error.clone());
                    }
                }
            }
        }
        if let Some(tx) = close {
            let result = conn.as_mut().map_or(Ok(()), on_close);
            let _ = tx.send(result);
            return;
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) username: String,
    pub(crate) display_name: String,
    pub(crate) avatar_url: String,
    pub(crate) password_hash: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen: i64,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        UserRecord {
            id: r.id as u64,
            username: r.username,
            display_name: r.display_name,
            avatar_url: r.avatar_url,
            password_hash: r.password_hash,
            created_at: r.created_at,
            last_seen: r.last_seen,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub(crate) struct ConvRow {
    pub(crate) id: i64,
    pub(crate) kind: i32,
    pub(crate) title: String,
    pub(crate) ephemeral: bool,
    pub(crate) created_by: i64,
    pub(crate) created_at: i64,
    pub(crate) last_seq: i64,
    pub(crate) last_version: i64,
    pub(crate) member_count: i32,
}

impl From<ConvRow> for ConversationRecord {
    fn from(r: ConvRow) -> Self {
        ConversationRecord {
            id: r.id as u64,
            kind: v1::ConversationKind::try_from(r.kind).unwrap_or(v1::ConversationKind::Unspecified),
            title: r.title,
            ephemeral: r.ephemeral,
            created_by: r.created_by as u64,
            created_at: r.created_at,
            last_seq: r.last_seq as u64,
            last_version: r.last_version as u64,
            member_count: r.member_count as u32,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = members)]
pub(crate) struct MemberRow {
    pub(crate) conversation_id: i64,
    pub(crate) user_id: i64,
    pub(crate) role: i32,
    pub(crate) joined_at: i64,
    pub(crate) read_seq: i64,
    pub(crate) delivered_seq: i64,
}

impl From<MemberRow> for MemberRecord {
    fn from(r: MemberRow) -> Self {
        MemberRecord {
            conversation_id: r.conversation_id as u64,
            user_id: r.user_id as u64,
            role: v1::Role::try_from(r.role).unwrap_or(v1::Role::Member),
            joined_at: r.joined_at,
            read_seq: r.read_seq as u64,
            delivered_seq: r.delivered_seq as u64,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = messages)]
pub(crate) struct MessageRow {
    pub(crate) id: i64,
    pub(crate) conversation_id: i64,
    pub(crate) seq: i64,
    pub(crate) version: i64,
    pub(crate) sender_id: i64,
    pub(crate) client_msg_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) content: Vec<u8>,
}

impl From<MessageRow> for v1::Message {
    fn from(r: MessageRow) -> Self {
        v1::Message {
            id: r.id as u64,
            conversation_id: r.conversation_id as u64,
            seq: r.seq as u64,
            version: r.version as u64,
            sender_id: r.sender_id as u64,
            client_msg_id: r.client_msg_id.unwrap_or_default(),
            created_at: r.created_at,
            content: v1::Content::decode(&r.content[..]).ok(),
        }
    }
}

pub(crate) fn messages_of(rows: Vec<MessageRow>) -> Vec<v1::Message> {
    rows.into_iter().map(Into::into).collect()
}

/// Member lists by conversation, tagged with the `member_version` they were
/// read at. Every membership change bumps `member_version` in the database,
/// so a list is used only while it is current, whichever node changed it.
pub(crate) type MemberCache = Arc<parking_lot::Mutex<std::collections::HashMap<i64, (i64, Arc<[UserId]>)>>>;

/// Most conversations whose member lists are cached; past it the cache starts over.
pub(crate) const MEMBER_CACHE_ENTRIES: usize = 100_000;

/// Implements [`Store`](crate::store::Store) for a diesel store type whose
/// `core` field is a [`DieselCore`] over the connection type `$conn` and whose
/// `members` field is a [`MemberCache`]. The
/// calling module provides `insert_member_if_absent` (the one query whose SQL
/// differs between backends) and imports this module's items.
macro_rules! diesel_store_impl {
    ($store:ty, $conn:ty) => {
        /// The members of a conversation at `member_version`, from the cache or the database.
        fn members_at(
            c: &mut $conn,
            cache: &MemberCache,
            conversation: i64,
            member_version: i64,
        ) -> Result<std::sync::Arc<[UserId]>> {
            if let Some((v, list)) = cache.lock().get(&conversation)
                && *v == member_version
            {
                return Ok(list.clone());
            }
            let ids: Vec<i64> = members::table
                .filter(members::conversation_id.eq(conversation))
                .order(members::user_id.asc())
                .select(members::user_id)
                .load(c)?;
            let list: std::sync::Arc<[UserId]> = ids.into_iter().map(|i| i as u64).collect::<Vec<_>>().into();
            let mut cache = cache.lock();
            if cache.len() >= MEMBER_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(conversation, (member_version, list.clone()));
            Ok(list)
        }

        fn insert_conversation(
            c: &mut $conn,
            new: &NewConversation,
            key: Option<&str>,
            members_in: &[(UserId, v1::Role)],
        ) -> Result<ConversationRecord> {
            let now = new.created_at;
            let id: i64 = diesel::insert_into(conversations::table)
                .values((
                    conversations::kind.eq(new.kind as i32),
                    conversations::title.eq(&new.title),
                    conversations::ephemeral.eq(new.ephemeral),
                    conversations::created_by.eq(new.created_by as i64),
                    conversations::created_at.eq(now),
                    conversations::member_count.eq(members_in.len() as i32),
                    conversations::direct_key.eq(key),
                ))
                .returning(conversations::id)
                .get_result(c)?;
            for &(user, role) in members_in {
                diesel::insert_into(members::table)
                    .values((
                        members::conversation_id.eq(id),
                        members::user_id.eq(user as i64),
                        members::role.eq(role as i32),
                        members::joined_at.eq(now),
                    ))
                    .execute(c)?;
            }
            Ok(conversations::table
                .find(id)
                .select(ConvRow::as_select())
                .first(c)?
                .into())
        }

        #[async_trait::async_trait]
        impl crate::store::Store for $store {
            async fn create_user(&self, user: NewUser) -> Result<UserRecord> {
                self.core
                    .write(move |c| {
                        let row = diesel::insert_into(users::table)
                            .values((
                                users::username.eq(&user.username),
                                users::username_lower.eq(user.username.to_lowercase()),
                                users::display_name.eq(&user.display_name),
                                users::display_lower.eq(user.display_name.to_lowercase()),
                                users::password_hash.eq(&user.password_hash),
                                users::created_at.eq(user.created_at),
                            ))
                            .returning(UserRow::as_returning())
                            .get_result(c)
                            .map_err(|e| match Error::from(e) {
                                Error::Conflict(_) => {
                                    Error::Conflict(format!("user name {:?} is taken", user.username))
                                }
                                other => other,
                            })?;
                        Ok(row.into())
                    })
                    .await
            }

            async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
                let lower = username.to_lowercase();
                self.core
                    .read(move |c| {
                        Ok(users::table
                            .filter(users::username_lower.eq(lower))
                            .select(UserRow::as_select())
                            .first(c)
                            .optional()?
                            .map(Into::into))
                    })
                    .await
            }

            async fn users_by_ids(&self, ids: &[UserId]) -> Result<Vec<UserRecord>> {
                let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
                self.core
                    .read(move |c| {
                        let mut out = Vec::with_capacity(ids.len());
                        for chunk in ids.chunks(500) {
                            let rows: Vec<UserRow> = users::table
                                .filter(users::id.eq_any(chunk))
                                .select(UserRow::as_select())
                                .load(c)?;
                            out.extend(rows.into_iter().map(UserRecord::from));
                        }
                        Ok(out)
                    })
                    .await
            }

            async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<UserRecord>> {
                let escaped: String = prefix
                    .to_lowercase()
                    .chars()
                    .flat_map(|ch| match ch {
                        '%' | '_' | '\\' => vec!['\\', ch],
                        _ => vec![ch],
                    })
                    .collect();
                let pattern = format!("{escaped}%");
                self.core
                    .read(move |c| {
                        let rows: Vec<UserRow> = users::table
                            .filter(
                                users::username_lower
                                    .like(&pattern)
                                    .escape('\\')
                                    .or(users::display_lower.like(&pattern).escape('\\')),
                            )
                            .order(users::username_lower.asc())
                            .limit(limit as i64)
                            .select(UserRow::as_select())
                            .load(c)?;
                        Ok(rows.into_iter().map(Into::into).collect())
                    })
                    .await
            }

            async fn update_profile(
                &self,
                user: UserId,
                display_name: Option<String>,
                avatar_url: Option<String>,
            ) -> Result<UserRecord> {
                self.core
                    .write(move |c| {
                        let target = users::table.find(user as i64);
                        if let Some(d) = &display_name {
                            diesel::update(target)
                                .set((
                                    users::display_name.eq(d),
                                    users::display_lower.eq(d.to_lowercase()),
                                ))
                                .execute(c)?;
                        }
                        if let Some(a) = &avatar_url {
                            diesel::update(target)
                                .set(users::avatar_url.eq(a))
                                .execute(c)?;
                        }
                        target
                            .select(UserRow::as_select())
                            .first(c)
                            .optional()?
                            .map(Into::into)
                            .ok_or_else(|| Error::NotFound(format!("user {user}")))
                    })
                    .await
            }

            async fn set_last_seen(&self, user: UserId, at: i64) -> Result<()> {
                self.core
                    .write(move |c| {
                        diesel::update(users::table.find(user as i64))
                            .set(users::last_seen.eq(at))
                            .execute(c)?;
                        Ok(())
                    })
                    .await
            }

            async fn insert_token(&self, token_hash: &str, user: UserId, expires_at: i64) -> Result<()> {
                let hash = token_hash.to_owned();
                self.core
                    .write(move |c| {
                        diesel::insert_into(tokens::table)
                            .values((
                                tokens::token_hash.eq(hash),
                                tokens::user_id.eq(user as i64),
                                tokens::expires_at.eq(expires_at),
                            ))
                            .execute(c)?;
                        Ok(())
                    })
                    .await
            }

            async fn token(&self, token_hash: &str) -> Result<Option<(UserId, i64)>> {
                let hash = token_hash.to_owned();
                self.core
                    .read(move |c| {
                        Ok(tokens::table
                            .find(hash)
                            .select((tokens::user_id, tokens::expires_at))
                            .first::<(i64, i64)>(c)
                            .optional()?
                            .map(|(u, e)| (u as u64, e)))
                    })
                    .await
            }

            async fn delete_token(&self, token_hash: &str) -> Result<()> {
                let hash = token_hash.to_owned();
                self.core
                    .write(move |c| {
                        diesel::delete(tokens::table.find(hash)).execute(c)?;
                        Ok(())
                    })
                    .await
            }

            async fn purge_expired_tokens(&self, now: i64) -> Result<u64> {
                self.core
                    .write(move |c| {
                        let n =
                            diesel::delete(tokens::table.filter(tokens::expires_at.le(now))).execute(c)?;
                        Ok(n as u64)
                    })
                    .await
            }

            async fn create_conversation(&self, new: NewConversation) -> Result<ConversationRecord> {
                self.core
                    .write(move |c| {
                        let mut list = vec![(new.created_by, v1::Role::Owner)];
                        for &m in &new.members {
                            if !list.iter().any(|&(u, _)| u == m) {
                                list.push((m, v1::Role::Member));
                            }
                        }
                        insert_conversation(c, &new, None, &list)
                    })
                    .await
            }

            async fn direct_conversation(
                &self,
                a: UserId,
                b: UserId,
                now: i64,
            ) -> Result<ConversationRecord> {
                let key = direct_key(a, b);
                let lookup = key.clone();
                let created = self
                    .core
                    .write_keyed(a.min(b), move |c| {
                        let existing: Option<ConvRow> = conversations::table
                            .filter(conversations::direct_key.eq(&key))
                            .select(ConvRow::as_select())
                            .first(c)
                            .optional()?;
                        if let Some(row) = existing {
                            return Ok(row.into());
                        }
                        let list: Vec<_> = if a == b {
                            vec![(a, v1::Role::Member)]
                        } else {
                            vec![(a, v1::Role::Member), (b, v1::Role::Member)]
                        };
                        insert_conversation(c, &direct_new(a, now), Some(&key), &list)
                    })
                    .await;
                match created {
                    // Another node created it between our look-up and insert.
                    Err(Error::Conflict(_)) => {
                        self.core
                            .read(move |c| {
                                Ok(conversations::table
                                    .filter(conversations::direct_key.eq(&lookup))
                                    .select(ConvRow::as_select())
                                    .first::<ConvRow>(c)?
                                    .into())
                            })
                            .await
                    }
                    other => other,
                }
            }

            async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationRecord>> {
                self.core
                    .read(move |c| {
                        Ok(conversations::table
                            .find(id as i64)
                            .select(ConvRow::as_select())
                            .first(c)
                            .optional()?
                            .map(Into::into))
                    })
                    .await
            }

            async fn delete_conversation(&self, id: ConversationId) -> Result<()> {
                self.core
                    .write_keyed(id, move |c| {
                        let id = id as i64;
                        diesel::delete(messages::table.filter(messages::conversation_id.eq(id)))
                            .execute(c)?;
                        diesel::delete(members::table.filter(members::conversation_id.eq(id))).execute(c)?;
                        diesel::delete(conversations::table.find(id)).execute(c)?;
                        Ok(())
                    })
                    .await
            }

            async fn rename_conversation(&self, id: ConversationId, title: &str) -> Result<()> {
                let title = title.to_owned();
                self.core
                    .write_keyed(id, move |c| {
                        let n = diesel::update(conversations::table.find(id as i64))
                            .set(conversations::title.eq(title))
                            .execute(c)?;
                        if n == 0 {
                            return Err(Error::NotFound(format!("conversation {id}")));
                        }
                        Ok(())
                    })
                    .await
            }

            async fn list_rooms(&self, limit: u32) -> Result<Vec<ConversationRecord>> {
                self.core
                    .read(move |c| {
                        let rows: Vec<ConvRow> = conversations::table
                            .filter(conversations::kind.eq(v1::ConversationKind::Room as i32))
                            .order((conversations::member_count.desc(), conversations::id.asc()))
                            .limit(limit as i64)
                            .select(ConvRow::as_select())
                            .load(c)?;
                        Ok(rows.into_iter().map(Into::into).collect())
                    })
                    .await
            }

            async fn member(
                &self,
                conversation: ConversationId,
                user: UserId,
            ) -> Result<Option<MemberRecord>> {
                self.core
                    .read(move |c| {
                        Ok(members::table
                            .find((conversation as i64, user as i64))
                            .select(MemberRow::as_select())
                            .first(c)
                            .optional()?
                            .map(Into::into))
                    })
                    .await
            }

            async fn members(&self, conversation: ConversationId) -> Result<Vec<MemberRecord>> {
                self.core
                    .read(move |c| {
                        let rows: Vec<MemberRow> = members::table
                            .filter(members::conversation_id.eq(conversation as i64))
                            .order(members::user_id.asc())
                            .select(MemberRow::as_select())
                            .load(c)?;
                        Ok(rows.into_iter().map(Into::into).collect())
                    })
                    .await
            }

            async fn user_conversations(
                &self,
                user: UserId,
            ) -> Result<Vec<(ConversationRecord, MemberRecord)>> {
                self.core
                    .read(move |c| {
                        let rows: Vec<(ConvRow, MemberRow)> = conversations::table
                            .inner_join(members::table.on(members::conversation_id.eq(conversations::id)))
                            .filter(members::user_id.eq(user as i64))
                            .order(conversations::id.asc())
                            .select((ConvRow::as_select(), MemberRow::as_select()))
                            .load(c)?;
                        Ok(rows
                            .into_iter()
                            .map(|(a, b)| (a.into(), b.into()))
                            .collect())
                    })
                    .await
            }

            async fn append_message(&self, new: NewMessage) -> Result<Appended> {
                let cache = self.members.clone();
                let dedup_key = new
                    .client_msg_id
                    .clone()
                    .map(|id| (new.sender_id as i64, id));
                let result = self
                    .core
                    .write_keyed(new.conversation_id, move |c| {
                        let conv_id = new.conversation_id as i64;
                        if let Some(cid) = &new.client_msg_id {
                            let existing: Option<MessageRow> = messages::table
                                .filter(messages::sender_id.eq(new.sender_id as i64))
                                .filter(messages::client_msg_id.eq(cid))
                                .select(MessageRow::as_select())
                                .first(c)
                                .optional()?;
                            if let Some(row) = existing {
                                let member_count: i32 = conversations::table
                                    .find(row.conversation_id)
                                    .select(conversations::member_count)
                                    .first(c)
                                    .optional()?
                                    .unwrap_or(0);
                                return Ok(Appended {
                                    message: row.into(),
                                    duplicate: true,
                                    member_count: member_count as u32,
                                    members: std::sync::Arc::from(Vec::new()),
                                });
                            }
                        }
                        match &new.membership {
                            Some(Membership::Add(list)) => {
                                for &(user, role) in list {
                                    insert_member_if_absent(
                                        c,
                                        conv_id,
                                        user as i64,
                                        role as i32,
                                        new.created_at,
                                    )?;
                                }
                            }
                            Some(Membership::Remove(user)) => {
                                diesel::delete(members::table.find((conv_id, *user as i64))).execute(c)?;
                            }
                            None => {}
                        }
                        // Takes the row lock that orders every writer of this conversation.
                        let bumped: Option<(i64, i64, i64, i32)> = if new.membership.is_some() {
                            let member_count: i64 = members::table
                                .filter(members::conversation_id.eq(conv_id))
                                .count()
                                .get_result(c)?;
                            diesel::update(conversations::table.find(conv_id))
                                .set((
                                    conversations::last_seq.eq(conversations::last_seq + 1),
                                    conversations::last_version.eq(conversations::last_version + 1),
                                    conversations::member_count.eq(member_count as i32),
                                    conversations::member_version.eq(conversations::member_version + 1),
                                ))
                                .returning((
                                    conversations::last_seq,
                                    conversations::last_version,
                                    conversations::member_version,
                                    conversations::member_count,
                                ))
                                .get_result(c)
                                .optional()?
                        } else {
                            diesel::update(conversations::table.find(conv_id))
                                .set((
                                    conversations::last_seq.eq(conversations::last_seq + 1),
                                    conversations::last_version.eq(conversations::last_version + 1),
                                ))
                                .returning((
                                    conversations::last_seq,
                                    conversations::last_version,
                                    conversations::member_version,
                                    conversations::member_count,
                                ))
                                .get_result(c)
                                .optional()?
                        };
                        let Some((seq, version, member_version, member_count)) = bumped else {
                            return Err(Error::NotFound(format!("conversation {conv_id}")));
                        };
                        let members = members_at(c, &cache, conv_id, member_version)?;
                        if new.sender_id != 0 && members.binary_search(&new.sender_id).is_err() {
                            // Rolls back to the savepoint: no sequence number is used.
                            return Err(Error::PermissionDenied(format!(
                                "not a member of conversation {conv_id}"
                            )));
                        }
                        let content = prost::Message::encode_to_vec(&new.content);
                        let id: i64 = diesel::insert_into(messages::table)
                            .values((
                                messages::conversation_id.eq(conv_id),
                                messages::seq.eq(seq),
                                messages::version.eq(version),
                                messages::sender_id.eq(new.sender_id as i64),
                                messages::client_msg_id.eq(&new.client_msg_id),
                                messages::created_at.eq(new.created_at),
                                messages::content.eq(&content),
                            ))
                            .returning(messages::id)
                            .get_result(c)?;
                        Ok(Appended {
                            message: v1::Message {
                                id: id as u64,
                                conversation_id: new.conversation_id,
                                seq: seq as u64,
                                version: version as u64,
                                sender_id: new.sender_id,
                                client_msg_id: new.client_msg_id.unwrap_or_default(),
                                created_at: new.created_at,
                                content: Some(new.content),
                            },
                            duplicate: false,
                            member_count: member_count as u32,
                            members,
                        })
                    })
                    .await;
                match result {
                    Err(Error::Unavailable(e)) => {
                        // The batch may not have committed: forget lists read inside it.
                        self.members.lock().clear();
                        Err(Error::Unavailable(e))
                    }
                    // A retry of this message committed on another node between
                    // our look-up and insert: answer as the duplicate it is.
                    Err(Error::Conflict(_)) if dedup_key.is_some() => {
                        let (sender, client_id) = dedup_key.unwrap_or_default();
                        let row: MessageRow = self
                            .core
                            .read(move |c| {
                                Ok(messages::table
                                    .filter(messages::sender_id.eq(sender))
                                    .filter(messages::client_msg_id.eq(client_id))
                                    .select(MessageRow::as_select())
                                    .first(c)?)
                            })
                            .await?;
                        Ok(Appended {
                            message: row.into(),
                            duplicate: true,
                            member_count: 0,
                            members: std::sync::Arc::from(Vec::new()),
                        })
                    }
                    other => other,
                }
            }

            async fn history(
                &self,
                conversation: ConversationId,
                page: Page,
                limit: u32,
            ) -> Result<Vec<v1::Message>> {
                self.core
                    .read(move |c| {
                        let base = messages::table
                            .filter(messages::conversation_id.eq(conversation as i64))
                            .select(MessageRow::as_select())
                            .limit(limit as i64);
                        Ok(match page {
                            Page::Before(before) => {
                                let before = if before == 0 { i64::MAX } else { before as i64 };
                                let mut rows = messages_of(
                                    base.filter(messages::seq.lt(before))
                                        .order(messages::seq.desc())
                                        .load(c)?,
                                );
                                rows.reverse();
                                rows
                            }
                            Page::After(after) => messages_of(
                                base.filter(messages::seq.gt(after as i64))
                                    .order(messages::seq.asc())
                                    .load(c)?,
                            ),
                        })
                    })
                    .await
            }

            async fn changes(
                &self,
                conversation: ConversationId,
                after_version: u64,
                limit: u32,
            ) -> Result<Vec<v1::Message>> {
                self.core
                    .read(move |c| {
                        Ok(messages_of(
                            messages::table
                                .filter(messages::conversation_id.eq(conversation as i64))
                                .filter(messages::version.gt(after_version as i64))
                                .order(messages::version.asc())
                                .limit(limit as i64)
                                .select(MessageRow::as_select())
                                .load(c)?,
                        ))
                    })
                    .await
            }

            async fn unread_count(
                &self,
                conversation: ConversationId,
                user: UserId,
                after_seq: u64,
            ) -> Result<u64> {
                self.core
                    .read(move |c| {
                        let n: i64 = messages::table
                            .filter(messages::conversation_id.eq(conversation as i64))
                            .filter(messages::seq.gt(after_seq as i64))
                            .filter(messages::sender_id.ne(user as i64))
                            .count()
                            .get_result(c)?;
                        Ok(n as u64)
                    })
                    .await
            }

            async fn advance_cursors(
                &self,
                conversation: ConversationId,
                user: UserId,
                read: Option<u64>,
                delivered: Option<u64>,
            ) -> Result<MemberRecord> {
                self.core
                    .write_keyed(conversation, move |c| {
                        let key = (conversation as i64, user as i64);
                        let current: MemberRow = members::table
                            .find(key)
                            .select(MemberRow::as_select())
                            .first(c)
                            .optional()?
                            .ok_or_else(|| {
                                Error::NotFound(format!("user {user} is not a member of {conversation}"))
                            })?;
                        let last: i64 = conversations::table
                            .find(conversation as i64)
                            .select(conversations::last_seq)
                            .first(c)?;
                        let read_seq = read.map_or(current.read_seq, |r| {
                            current.read_seq.max((r as i64).min(last))
                        });
                        let delivered_seq = delivered
                            .map_or(current.delivered_seq, |d| {
                                current.delivered_seq.max((d as i64).min(last))
                            })
                            .max(read_seq);
                        let row = diesel::update(members::table.find(key))
                            .set((
                                members::read_seq.eq(read_seq),
                                members::delivered_seq.eq(delivered_seq),
                            ))
                            .returning(MemberRow::as_returning())
                            .get_result(c)?;
                        Ok(row.into())
                    })
                    .await
            }

            async fn close(&self) -> Result<()> {
                self.core.close().await
            }
        }
    };
}
pub(crate) use diesel_store_impl;
