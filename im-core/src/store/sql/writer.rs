//! [`DieselCore`]: the reader pool and the group-commit writer threads.
//!
//! * **Writes** go to a writer thread that owns the writing connection. It
//!   takes every write queued while the previous commit ran (after waiting up
//!   to `max_wait` for more) and commits them in one transaction (group
//!   commit), each inside its own savepoint so one failing write does not fail
//!   the others. A write resolves only after its batch committed; if the
//!   commit fails or its outcome is unknown, every write of the batch gets
//!   `Unavailable` (a retry with the same client message id is safe).
//!   A broken writing connection is re-established on the next batch (or
//!   health check).
//! * **Reads** use a pool on blocking threads (`spawn_blocking`), never the
//!   async workers.

use super::error::unavailable;
use crate::store::{StoreError, StoreResult};
use diesel::Connection;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Completion = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write: given the connection (or `None` when the database is unreachable),
/// runs and returns what to do once the batch outcome is known.
type Job<C> = Box<dyn FnOnce(Option<&mut C>) -> Completion + Send>;

enum WriterMsg<C> {
    /// A write, and the conversation row it will lock, if any.
    Job(Job<C>, Option<i64>),
    /// A write that changes several conversation rows (a block between two
    /// users bumps every conversation they share), locked up front with
    /// the batch's others, in one order.
    JobLocking(Job<C>, Vec<i64>),
    /// A health check: answered after the current batch, by probing the
    /// writing connection (and re-opening it if it is gone).
    Ping(oneshot::Sender<StoreResult<()>>),
    Close(oneshot::Sender<StoreResult<()>>),
}

/// Group-commit settings of the writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// What a backend adds to the writer.
pub(crate) struct WriterHooks<C> {
    /// Runs on the writer connection at shutdown.
    pub on_close: fn(&mut C) -> StoreResult<()>,
    /// Locks these conversation rows, given in ascending id order, at the
    /// start of a batch. Writers of several nodes then take the rows their
    /// batches share in one order, so they cannot deadlock each other
    /// (PostgreSQL); a no-op where one writer serialises everything (SQLite).
    pub lock_conversations: fn(&mut C, &[i64]) -> diesel::QueryResult<()>,
}

// Function pointers are `Copy` whatever `C` is (a derive would ask `C: Copy`).
impl<C> Clone for WriterHooks<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for WriterHooks<C> {}

/// Opens a writing connection (again, after a failure).
type Connect<C> = Box<dyn FnMut() -> StoreResult<C> + Send>;

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
    /// `hooks` are the backend's additions.
    /// `writers` threads each own a writing connection: the first is `conn`,
    /// the others come from `connect` (which also re-opens broken ones).
    pub(crate) fn start(
        readers: Pool<ConnectionManager<C>>,
        conn: C,
        connect: impl Fn() -> StoreResult<C> + Send + Sync + 'static,
        writers: usize,
        batch: BatchConfig,
        hooks: WriterHooks<C>,
    ) -> StoreResult<Self> {
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
                        hooks,
                        &counters,
                    )
                })
                .map_err(|e| StoreError::Backend(e.to_string()))?;
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
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let shard = self.next_writer.fetch_add(1, Ordering::Relaxed);
        self.write_on_then(shard, None, f, |_: &R| {}).await
    }

    /// Runs `f`, a write of conversation `key`, on the writer that owns it:
    /// writes of one conversation are ordered, shards never deadlock each
    /// other, and the batch locks the conversation's row up front (in id
    /// order with the batch's others).
    pub(crate) async fn write_keyed<R, F>(&self, key: u64, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_on_then(self.shard_of(key), Some(key as i64), f, |_: &R| {})
            .await
    }

    /// Runs `f` on the writer that owns `key`, locking nothing up front (a
    /// write keyed by something else than an existing conversation).
    pub(crate) async fn write_sharded<R, F>(&self, key: u64, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_on_then(self.shard_of(key), None, f, |_: &R| {}).await
    }

    fn shard_of(&self, key: u64) -> usize {
        (key % self.writers.len() as u64) as usize
    }

    /// Like [`DieselCore::write_keyed`], and calls `after` with the result
    /// right after the commit, on the writer thread, in commit order.
    pub(crate) async fn write_keyed_then<R, F, A>(&self, key: u64, f: F, after: A) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
        R: Send + 'static,
    {
        self.write_on_then(self.shard_of(key), Some(key as i64), f, after)
            .await
    }

    async fn write_on_then<R, F, A>(&self, shard: usize, lock: Option<i64>, f: F, after: A) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
        R: Send + 'static,
    {
        let (job, rx) = job_of(f, after);
        self.send_job(shard, WriterMsg::Job(job, lock), rx).await
    }

    /// Runs `f`, a write that changes the rows of the conversations
    /// `locks`, on some writer; the batch locks those rows up front with
    /// its others (in one order: no deadlock with other writers).
    pub(crate) async fn write_locking<R, F>(&self, locks: Vec<u64>, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let shard = self.next_writer.fetch_add(1, Ordering::Relaxed);
        let (job, rx) = job_of(f, |_: &R| {});
        let locks = locks.into_iter().map(|id| id as i64).collect();
        self.send_job(shard, WriterMsg::JobLocking(job, locks), rx).await
    }

    async fn send_job<R>(
        &self,
        shard: usize,
        msg: WriterMsg<C>,
        rx: oneshot::Receiver<StoreResult<R>>,
    ) -> StoreResult<R> {
        self.writers[shard % self.writers.len()]
            .send(msg)
            .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer stopped".into()))?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    pub(crate) async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(unavailable)?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }

    /// `Ok` if a pooled reader answers a trivial query and every writer thread
    /// runs and has a working connection (re-opened now if it was lost).
    /// Waits for the batch each writer is committing, never writes.
    pub(crate) async fn health(&self) -> StoreResult<()> {
        self.read(|c| c.batch_execute("SELECT 1").map_err(unavailable))
            .await?;
        for writer in &self.writers {
            let (tx, rx) = oneshot::channel();
            writer
                .send(WriterMsg::Ping(tx))
                .map_err(|_| StoreError::Unavailable("store is closed".into()))?;
            rx.await
                .map_err(|_| StoreError::Unavailable("store writer stopped".into()))??;
        }
        Ok(())
    }

    /// Lets queued writes finish, runs `on_close`, stops the writers.
    pub(crate) async fn close(&self) -> StoreResult<()> {
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

/// The writing connection of one writer thread, re-opened after a failure at
/// most every [`RECONNECT_INTERVAL`].
struct WriterConn<C> {
    conn: Option<C>,
    connect: Connect<C>,
    last_connect: Instant,
}

impl<C: Connection> WriterConn<C> {
    /// The connection, re-opening it if it is gone and the interval elapsed.
    fn get(&mut self) -> Option<&mut C> {
        if self.conn.is_none() && self.last_connect.elapsed() >= RECONNECT_INTERVAL {
            self.last_connect = Instant::now();
            match (self.connect)() {
                Ok(c) => {
                    tracing::info!("store writer reconnected");
                    self.conn = Some(c);
                }
                Err(e) => tracing::warn!(error = %e, "store writer cannot reconnect"),
            }
        }
        self.conn.as_mut()
    }

    /// Drops the connection; the next use re-opens it at once.
    fn reset(&mut self) {
        tracing::warn!("store writer reopens its connection");
        self.conn = None;
        self.last_connect = Instant::now() - RECONNECT_INTERVAL;
    }

    /// A health check: a trivial statement on the writing connection.
    fn ping(&mut self) -> StoreResult<()> {
        let Some(c) = self.get() else {
            return Err(StoreError::Unavailable(
                "store writer: database unreachable".into(),
            ));
        };
        if let Err(e) = c.batch_execute("SELECT 1") {
            self.reset();
            return Err(unavailable(e));
        }
        Ok(())
    }
}

/// A write job running `f` in its savepoint and `after` right after the
/// commit, and where its result arrives.
fn job_of<C, R, F, A>(f: F, after: A) -> (Job<C>, oneshot::Receiver<StoreResult<R>>)
where
    C: Connection,
    F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
    A: FnOnce(&R) + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: Job<C> = Box::new(move |conn: Option<&mut C>| {
        let result = match conn {
            // Nested in the batch transaction: a savepoint.
            Some(conn) => conn.transaction::<R, StoreError, _>(f),
            None => Err(StoreError::Unavailable("database unreachable".into())),
        };
        Box::new(move |commit_error: Option<StoreError>| {
            let _ = tx.send(match commit_error {
                Some(e) => Err(e),
                None => {
                    if let Ok(r) = &result {
                        // The write is committed whatever the hook does:
                        // a panicking hook must not take the writer down.
                        let hook = std::panic::AssertUnwindSafe(|| after(r));
                        if std::panic::catch_unwind(hook).is_err() {
                            tracing::error!("a commit hook panicked; its events were not delivered");
                        }
                    }
                    result
                }
            });
        })
    });
    (job, rx)
}

fn writer_loop<C: Connection + Send + 'static>(
    conn: Option<C>,
    connect: Connect<C>,
    rx: mpsc::Receiver<WriterMsg<C>>,
    batch_config: BatchConfig,
    hooks: WriterHooks<C>,
    counters: &Counters,
) {
    let max_batch = batch_config.max_batch.max(1);
    let mut batch: Vec<Job<C>> = Vec::with_capacity(max_batch);
    let mut locks: Vec<i64> = Vec::with_capacity(max_batch);
    let mut pings = Vec::new();
    let mut writer = WriterConn {
        conn,
        connect,
        last_connect: Instant::now(),
    };
    while let Ok(first) = rx.recv() {
        let mut close = None;
        match first {
            WriterMsg::Job(job, lock) => {
                batch.push(job);
                locks.extend(lock);
            }
            WriterMsg::JobLocking(job, many) => {
                batch.push(job);
                locks.extend(many);
            }
            WriterMsg::Ping(tx) => pings.push(tx),
            WriterMsg::Close(tx) => close = Some(tx),
        }
        let deadline = Instant::now() + batch_config.max_wait;
        while close.is_none() && !batch.is_empty() && batch.len() < max_batch {
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
                Ok(WriterMsg::Job(job, lock)) => {
                    batch.push(job);
                    locks.extend(lock);
                }
                Ok(WriterMsg::JobLocking(job, many)) => {
                    batch.push(job);
                    locks.extend(many);
                }
                Ok(WriterMsg::Ping(tx)) => pings.push(tx),
                Ok(WriterMsg::Close(tx)) => close = Some(tx),
                Err(()) => break,
            }
        }
        if !batch.is_empty() {
            locks.sort_unstable();
            locks.dedup();
            commit_batch(&mut writer, &mut batch, &locks, hooks, counters);
        }
        locks.clear();
        for tx in pings.drain(..) {
            let _ = tx.send(writer.ping());
        }
        if let Some(tx) = close {
            let result = writer.conn.as_mut().map_or(Ok(()), hooks.on_close);
            let _ = tx.send(result);
            return;
        }
    }
}

/// Runs the jobs of `batch` in one transaction, each in its own savepoint,
/// after locking the conversation rows `locks` (ascending), and completes
/// them with the outcome of the commit.
fn commit_batch<C: Connection>(
    writer: &mut WriterConn<C>,
    batch: &mut Vec<Job<C>>,
    locks: &[i64],
    hooks: WriterHooks<C>,
    counters: &Counters,
) {
    let Some(c) = writer.get() else {
        for job in batch.drain(..) {
            job(None)(None);
        }
        return;
    };
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut panicked = false;
    let outcome = c.transaction::<(), diesel::result::Error, _>(|c| {
        if !locks.is_empty() {
            (hooks.lock_conversations)(c, locks)?;
        }
        for job in batch.drain(..) {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(&mut *c)))) {
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
    let error = outcome
        .err()
        .map(|e| StoreError::Unavailable(format!("commit failed: {e}")));
    // Jobs never run (the locks could not be taken) fail with the batch.
    completions.extend(batch.drain(..).map(|job| job(None)));
    if error.is_none() {
        let n = completions.len() as u64;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(n, Ordering::Relaxed);
        counters.largest.fetch_max(n, Ordering::Relaxed);
    }
    if panicked || (error.is_some() && c.batch_execute("SELECT 1").is_err()) {
        // After a panic the connection's transaction state is unknown: open a
        // fresh connection.
        writer.reset();
    }
    for done in completions {
        done(error.clone());
    }
}
