//! [`RedisFanOut`]: the fan-out of several server processes over Redis
//! pub/sub (feature `redis`).
//!
//! Every node subscribes to the cluster's channel and, with routing, to a
//! channel of its own (`{channel}:node:{node}`).
//! * **Routing** (when [`RedisFanOutConfig::routing`] names this node and a
//!   presence registry that knows where users are, e.g. `RedisPresence`):
//!   an envelope for listed users (up to 64) or for one device goes only to
//!   the channels of the nodes where those users have registered sessions,
//!   once per node, and to none when no other node serves them. Envelopes
//!   for "members" (large groups), and every envelope when the look-up
//!   fails, go to the cluster's channel. A session registers in the
//!   registry before its sync reads the store, so an event committed after
//!   that read is routed by a look-up that sees its node.
//! * **Order**: one publishing task per node sends its envelopes in the order
//!   `publish` was called, on one connection, in pipelined batches; Redis
//!   hands a subscriber the messages of one connection in that order, on
//!   whichever of its channels, so each partition keeps its order end to
//!   end.
//! * **Other nodes only**: each payload starts with the publishing
//!   instance's random id; a node skips its own.
//! * **Never waits**: `publish` puts the encoded envelope on a bounded queue
//!   (`queue` envelopes); a full queue or a failed `PUBLISH` drops the
//!   envelope with a warning. A lost subscription is re-established with
//!   back-off; what was published meanwhile is not replayed (Redis pub/sub
//!   keeps nothing): the handlers hear `resumed` and clients sync. A node
//!   that dropped envelopes because publishing failed sends a resume record
//!   once it publishes again, so the other nodes' handlers hear `resumed`
//!   too.
//! * Without routing every node receives every envelope of the cluster:
//!   traffic per node grows with the cluster's total.

use super::cluster_wire::{Origin, Outgoing, PUBLISH_BATCH, Routing, Subscribers, destinations};
use super::{Envelope, FanOut, FanOutHandler};
use crate::error::{Error, Result};
use async_trait::async_trait;
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
    /// Sends events for listed users only to the nodes serving them (see
    /// the module docs); `None` (the default): every node gets everything.
    pub routing: Option<Routing>,
}

impl RedisFanOutConfig {
    /// Defaults for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channel: "im:events".into(),
            queue: 65_536,
            routing: None,
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
    outgoing: mpsc::Sender<Outgoing>,
    routed: bool,
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
        let channels = channels(&config);
        let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
        pubsub.subscribe(&channels).await.map_err(unavailable)?;
        let origin = Origin::random();
        let (outgoing, queue) = mpsc::channel(config.queue.max(1));
        let subscribers = Arc::new(Subscribers::default());
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probe = tokio::sync::Mutex::new(Some(publisher.clone()));
        let probe_client = client.clone();
        let routed = config.routing.is_some();
        let tasks = vec![
            tokio::spawn(publish_loop(
                client.clone(),
                publisher,
                config.channel.clone(),
                config.routing,
                origin,
                queue,
            )),
            tokio::spawn(subscribe_loop(
                client,
                pubsub,
                channels,
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
            routed,
            subscribers,
            tasks: Mutex::new(tasks),
        })
    }
}

/// The channels a node subscribes to: the cluster's, and its own.
fn channels(config: &RedisFanOutConfig) -> Vec<String> {
    let mut channels = vec![config.channel.clone()];
    if let Some(routing) = &config.routing {
        channels.push(node_channel(&config.channel, &routing.node));
    }
    channels
}

fn node_channel(channel: &str, node: &str) -> String {
    format!("{channel}:node:{node}")
}

async fn publish_loop(
    client: redis::Client,
    mut conn: redis::aio::MultiplexedConnection,
    channel: String,
    routing: Option<Routing>,
    origin: Origin,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    // Failures are logged when they start and when they end, not one by one.
    let mut dropped = 0u64;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let destinations = destinations(routing.as_ref(), &batch).await;
        let mut pipe = redis::pipe();
        for (out, nodes) in batch.iter().zip(&destinations) {
            match nodes {
                None => {
                    pipe.cmd("PUBLISH")
                        .arg(&channel)
                        .arg(out.record.as_ref())
                        .ignore();
                }
                Some(nodes) => {
                    for node in nodes {
                        pipe.cmd("PUBLISH")
                            .arg(node_channel(&channel, node))
                            .arg(out.record.as_ref())
                            .ignore();
                    }
                }
            }
        }
        let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match sent {
            Ok(()) if dropped > 0 => {
                tracing::info!(
                    dropped,
                    "fan-out: publishing to Redis again; envelopes were dropped meanwhile (clients recover them on sync)"
                );
                dropped = 0;
                // The other nodes' clients may have missed them: make them sync.
                let resumed: redis::RedisResult<()> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(origin.resume_record())
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = resumed {
                    tracing::warn!(error = %e, "fan-out: could not tell the other nodes to resync");
                }
            }
            Ok(()) => {}
            Err(e) => {
                if dropped == 0 {
                    tracing::warn!(error = %e, "fan-out: publishing to Redis fails; envelopes are dropped until it works again");
                }
                dropped += batch.len() as u64;
                if let Ok(fresh) = client.get_multiplexed_async_connection().await {
                    conn = fresh;
                }
            }
        }
        batch.clear();
    }
}

async fn subscribe_loop(
    client: redis::Client,
    mut pubsub: redis::aio::PubSub,
    channels: Vec<String>,
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
                && fresh.subscribe(&channels).await.is_ok()
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
        let outgoing = Outgoing::new(&self.origin, envelope, self.routed);
        if self.outgoing.try_send(outgoing).is_err() {
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
