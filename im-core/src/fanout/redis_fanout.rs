//! [`RedisFanOut`]: the fan-out of several server processes over Redis
//! pub/sub (feature `redis`).
//!
//! Every node publishes its envelopes on one channel and subscribes to it.
//! * **Order**: one publishing task per node sends its envelopes in the order
//!   `publish` was called, on one connection; Redis hands a subscriber the
//!   messages of one connection in that order, so each partition keeps its
//!   order end to end.
//! * **Other nodes only**: each payload starts with the publishing
//!   instance's random id; a node skips its own.
//! * **Never waits**: `publish` puts the encoded envelope on a bounded queue
//!   (`queue` envelopes); a full queue or a failed `PUBLISH` drops the
//!   envelope with a warning. A lost subscription is re-established with
//!   back-off; what was published meanwhile is not replayed (Redis pub/sub
//!   keeps nothing): the handlers hear `resumed` and clients sync.
//! * Every node receives every envelope of the cluster: traffic per node
//!   grows with the cluster's total.

use super::cluster_wire::{Origin, Subscribers};
use super::{Envelope, FanOut, FanOutHandler};
use crate::error::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Settings of a [`RedisFanOut`].
#[derive(Debug, Clone)]
pub struct RedisFanOutConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The channel every node of the cluster shares (default `im:events`).
    pub channel: String,
    /// Envelopes waiting to be published at most; more are dropped (default 65,536).
    pub queue: usize,
}

impl RedisFanOutConfig {
    /// Defaults for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channel: "im:events".into(),
            queue: 65_536,
        }
    }
}

/// Fan-out over Redis pub/sub. See the module docs for its guarantees.
pub struct RedisFanOut {
    /// Marks this instance's payloads, to skip them when they come back.
    origin: Origin,
    /// For health checks: a connection, made again after a failure.
    probe: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    client: redis::Client,
    /// False while the subscription is lost.
    subscribed: Arc<std::sync::atomic::AtomicBool>,
    outgoing: mpsc::Sender<Bytes>,
    subscribers: Arc<Subscribers>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFanOut")
            .field("instance", &self.origin.hex())
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

impl RedisFanOut {
    /// Connects, subscribes, and starts publishing. `Unavailable` if Redis
    /// cannot be reached now.
    pub async fn connect(config: RedisFanOutConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let publisher = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub.subscribe(&config.channel).await.map_err(unavailable)?;
        let origin = Origin::random();
        let (outgoing, queue) = mpsc::channel(config.queue.max(1));
        let subscribers = Arc::new(Subscribers::default());
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probe = tokio::sync::Mutex::new(Some(publisher.clone()));
        let probe_client = client.clone();
        let tasks = vec![
            tokio::spawn(publish_loop(
                client.clone(),
                publisher,
                config.channel.clone(),
                queue,
            )),
            tokio::spawn(subscribe_loop(
                client,
                pubsub,
                config.channel,
                origin,
                subscribers.clone(),
                subscribed.clone(),
            )),
        ];
        Ok(Self {
            origin,
            probe,
            client: probe_client,
            subscribed,
            outgoing,
            subscribers,
            tasks: Mutex::new(tasks),
        })
    }
}

async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    channel: String,
    mut queue: mpsc::Receiver<Bytes>,
) {
    // Failures are logged when they start and when they end, not one by one.
    let mut dropped = 0u64;
    while let Some(payload) = queue.recv().await {
        let sent: redis::RedisResult<()> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload.as_ref())
            .query_async(&mut conn)
            .await;
        match sent {
            Ok(()) if dropped > 0 => {
                tracing::info!(
                    dropped,
                    "fan-out: publishing to Redis again; envelopes were dropped meanwhile (clients recover them on sync)"
                );
                dropped = 0;
            }
            Ok(()) => {}
            Err(e) => {
                if dropped == 0 {
                    tracing::warn!(error = %e, "fan-out: publishing to Redis fails; envelopes are dropped until it works again");
                }
                dropped += 1;
                if let Ok(fresh) = client.get_multiplexed_async_connection().await {
                    conn = fresh;
                }
            }
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
    channel: String,
    origin: Origin,
    subscribers: Arc<Subscribers>,
    subscribed: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut backoff = Duration::from_millis(100);
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                origin.receive(message.get_payload_bytes(), &subscribers, "redis");
            }
        }
        tracing::warn!(
            "fan-out: Redis subscription lost; reconnecting (clients recover missed events on sync)"
        );
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            if let Ok(mut fresh) = client.get_async_pubsub().await
                && fresh.subscribe(&channel).await.is_ok()
            {
                pubsub = fresh;
                backoff = Duration::from_millis(100);
                subscribed.store(true, Ordering::SeqCst);
                tracing::info!("fan-out: Redis subscription back");
                subscribers.resumed();
                break;
            }
        }
    }
}

#[async_trait]
impl FanOut for RedisFanOut {
    fn publish(&self, envelope: &Envelope) {
        if self
            .outgoing
            .try_send(Bytes::from(self.origin.record(envelope)))
            .is_err()
        {
            tracing::warn!("fan-out: the Redis publish queue is full; an envelope is dropped");
        }
    }

    fn subscribe(&self, handler: Arc<dyn FanOutHandler>) {
        self.subscribers.add(handler);
    }

    async fn health(&self) -> Result<()> {
        if !self.subscribed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Unavailable("the Redis subscription is lost".into()));
        }
        let mut probe = self.probe.lock().await;
        let answer = async {
            if probe.is_none() {
                *probe = Some(self.client.get_multiplexed_async_connection().await?);
            }
            let conn = probe.as_mut().expect("made above");
            redis::cmd("PING").query_async::<()>(conn).await
        };
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *probe = None;
                Err(unavailable(e))
            }
            Err(_) => {
                *probe = None;
                Err(Error::Unavailable("Redis does not answer".into()))
            }
        }
    }

    async fn close(&self) -> Result<()> {
        self.subscribers.clear();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        Ok(())
    }
}
