//! [`KafkaFanOut`]: the fan-out of several server processes over Kafka
//! (feature `kafka`, rdkafka with librdkafka built from source).
//!
//! Every node reads the cluster's topic and, with routing, its partition of
//! `{topic}.nodes`.
//! * **Keyed by partition key**: the record key is the envelope's
//!   [`partition_key`](Envelope::partition_key) (the conversation, or the
//!   user for events without one), so one conversation's events share a
//!   partition. The producer keeps one request in flight per broker
//!   connection by default, so retries cannot reorder a partition; a
//!   partition is read in order, so order holds end to end.
//! * **Other nodes only**: each record's value starts with the producing
//!   instance's random id; a node skips its own.
//! * **No consumer group state**: a node assigns itself every partition at
//!   the offsets current when it starts (the high watermarks), so it sees
//!   what is produced from then on and never replays history; what came
//!   before reaches its clients on sync. Nothing is committed, so a node
//!   that restarts starts from the end again.
//! * **Never waits**: `publish` hands the record to librdkafka's queue
//!   (`queue` records); a full queue drops it with a warning. During a
//!   broker outage librdkafka keeps queued records for `message.timeout.ms`
//!   and then drops them; once delivery works again it sends a resume
//!   record, so the other nodes' handlers hear `resumed` too. After an outage (every broker unreachable, or the
//!   topic gone) the node waits until a broker answers, creates the topic
//!   again if it is gone (a broker keeping it in memory restarted), reads
//!   on from its positions if the broker still holds them, else every
//!   partition from its end, and only then tells its handlers (`resumed`):
//!   its clients sync what they missed. Errors of an outage that already
//!   ended (librdkafka reports them late) are checked against the broker
//!   before they are believed. `health` fails from
//!   the start of an outage until then.
//! * **Routing** (when [`KafkaFanOutConfig::routing`] names this node and a
//!   presence registry): an envelope for listed users (up to 64) or one
//!   device goes to `{topic}.nodes`, once to each partition that a node
//!   serving those users reads (`hash(node) mod node_partitions`), and
//!   nowhere when no other node serves them; envelopes for "members" and
//!   failed look-ups go to the topic, which every node reads. A
//!   conversation's events take one of the two ways as long as its member
//!   count stays on one side of 32 (when it crosses, a receiver may see
//!   one event early and fill the gap from the store). The look-ups of a
//!   batch of queued envelopes run at once; one task produces in order.
//! * Without routing every node reads every envelope of the cluster:
//!   traffic per node grows with the cluster's total.

use super::cluster_wire::{Origin, Outgoing, PUBLISH_BATCH, Routing, Subscribers, destinations};
use super::{Envelope, FanOut, FanOutHandler};
use crate::error::{Error, Result};
use async_trait::async_trait;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a call to the broker may take before the node gives up on it.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`KafkaFanOut`].
#[derive(Debug, Clone)]
pub struct KafkaFanOutConfig {
    /// `host:port[,host:port...]` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// The topic every node of the cluster shares (default `im.events`).
    pub topic: String,
    /// Partitions of the topic when a node creates it (default 16). An
    /// existing topic keeps its own.
    pub partitions: i32,
    /// Replication factor of the topic when a node creates it (default 1;
    /// 3 on a production cluster).
    pub replication: i32,
    /// How long the broker keeps records (`retention.ms`, default one hour):
    /// only a node that lags this far behind would need them; clients get
    /// anything older from the store on sync.
    pub retention_ms: u64,
    /// Records waiting to be sent at most; more are dropped (default 65,536).
    pub queue: usize,
    /// librdkafka settings passed through to the producer and the consumer
    /// as they are (for example `security.protocol`, `sasl.mechanisms`,
    /// `message.timeout.ms`); they override the defaults above.
    pub settings: BTreeMap<String, String>,
    /// Sends events for listed users only to the nodes serving them,
    /// through `{topic}.nodes` (see the module docs); `None`: every node
    /// gets everything.
    pub routing: Option<Routing>,
    /// Partitions of `{topic}.nodes` when a node creates it (default 64):
    /// each node reads the one its name hashes to, so nodes sharing one
    /// get each other's routed records too (harmless, only extra work).
    pub node_partitions: i32,
}

impl KafkaFanOutConfig {
    /// Defaults for the brokers at `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: "im.events".into(),
            partitions: 16,
            replication: 1,
            retention_ms: 3_600_000,
            queue: 65_536,
            settings: BTreeMap::new(),
            routing: None,
            node_partitions: 64,
        }
    }

    /// The topic of routed records.
    fn nodes_topic(&self) -> String {
        format!("{}.nodes", self.topic)
    }

    /// What this node reads: every partition of the topic, and with
    /// routing its own partition of the nodes topic.
    fn reads(&self) -> Vec<(String, Option<i32>)> {
        let mut reads = vec![(self.topic.clone(), None)];
        if let Some(routing) = &self.routing {
            let own = node_partition(&routing.node, self.node_partitions);
            reads.push((self.nodes_topic(), Some(own)));
        }
        reads
    }

    fn client(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, value);
        }
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        config
    }
}

/// Logs what librdkafka reports and remembers whether the brokers are down.
#[derive(Debug, Default)]
struct Reporter {
    /// librdkafka said every broker is down; the reading task checks.
    suspect: AtomicBool,
    /// The node is not reading the topic (from the check until recovery).
    down: AtomicBool,
}

impl ClientContext for Reporter {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.suspect.store(true, Ordering::SeqCst);
        } else {
            tracing::warn!(error = %error, %reason, "fan-out: Kafka");
        }
    }
}

impl ConsumerContext for Reporter {}

impl Reporter {
    /// Starts an outage (once): logged, and `/readyz` fails until it ends.
    fn went_down(&self, reason: &str) {
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!(%reason, "fan-out: Kafka is unreachable; sends are still stored, clients get what they miss on sync");
        }
    }

    /// The node reads the topic again: ends an outage once, logging it and
    /// telling the handlers that envelopes may have been lost meanwhile.
    fn back(&self, subscribers: &Subscribers) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!("fan-out: Kafka is back");
            subscribers.resumed();
        }
    }
}

/// Counts the records librdkafka gave up on (broker unreachable for
/// `message.timeout.ms`), logging when losses start and when they end.
#[derive(Debug, Default)]
struct Deliveries {
    dropped: AtomicU64,
    /// Records were dropped and delivery works again: the publishing task
    /// sends a resume record.
    resume_due: AtomicBool,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                let dropped = self.dropped.swap(0, Ordering::SeqCst);
                if dropped > 0 {
                    tracing::info!(
                        dropped,
                        "fan-out: producing to Kafka again; envelopes were dropped meanwhile (clients recover them on sync)"
                    );
                    self.resume_due.store(true, Ordering::SeqCst);
                }
            }
            Err((e, _)) => {
                if self.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
                    tracing::warn!(error = %e, "fan-out: Kafka does not take envelopes; they are dropped until it does");
                }
            }
        }
    }
}

type Producing = ThreadedProducer<Deliveries>;

/// Fan-out over Kafka. See the module docs for its guarantees.
pub struct KafkaFanOut {
    /// Marks this instance's records, to skip them when they come back.
    origin: Origin,
    topic: String,
    routed: bool,
    producer: Arc<Producing>,
    /// To the publishing task, which routes and produces in order.
    outgoing: mpsc::Sender<Outgoing>,
    consumer: Arc<StreamConsumer<Reporter>>,
    subscribers: Arc<Subscribers>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaFanOut")
            .field("instance", &self.origin.hex())
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: KafkaError) -> Error {
    Error::Unavailable(format!("kafka: {e}"))
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| Error::Internal(format!("kafka call: {e}")))?
}

impl KafkaFanOut {
    /// Creates the topic if it does not exist, starts producing, and reads
    /// the topic from its current end. `Unavailable` if the brokers cannot
    /// be reached now.
    pub async fn connect(config: KafkaFanOutConfig) -> Result<Self> {
        let origin = Origin::random();
        create_topic(&config).await?;
        let producer: Producing = config
            .client(&[
                ("queue.buffering.max.messages", config.queue.max(1).to_string()),
                ("linger.ms", "1".into()),
                ("max.in.flight.requests.per.connection", "1".into()),
                ("message.timeout.ms", "30000".into()),
            ])
            .create_with_context(Deliveries::default())
            .map_err(unavailable)?;
        let consumer: StreamConsumer<Reporter> = config
            .client(&[
                ("group.id", format!("{}-{}", config.topic, origin.hex())),
                ("enable.auto.commit", "false".into()),
                ("auto.offset.reset", "latest".into()),
                ("fetch.wait.max.ms", "10".into()),
                ("enable.partition.eof", "false".into()),
            ])
            .create_with_context(Reporter::default())
            .map_err(unavailable)?;
        let consumer = Arc::new(consumer);
        assign_from_end(consumer.clone(), config.reads()).await?;
        let subscribers = Arc::new(Subscribers::default());
        let producer = Arc::new(producer);
        let (outgoing, queue) = mpsc::channel(config.queue.max(1));
        let tasks = vec![
            tokio::spawn(consume_loop(
                consumer.clone(),
                config.clone(),
                origin,
                subscribers.clone(),
            )),
            tokio::spawn(publish_loop(producer.clone(), config.clone(), origin, queue)),
        ];
        Ok(Self {
            origin,
            topic: config.topic,
            routed: config.routing.is_some(),
            producer,
            outgoing,
            consumer,
            subscribers,
            tasks: Mutex::new(tasks),
        })
    }
}

/// Creates the topic and the nodes topic; existing ones are left as they are.
async fn create_topic(config: &KafkaFanOutConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.client(&[]).create().map_err(unavailable)?;
    let retention = config.retention_ms.to_string();
    let replication = || TopicReplication::Fixed(config.replication.max(1));
    let nodes_topic = config.nodes_topic();
    let topics = [
        NewTopic::new(&config.topic, config.partitions.max(1), replication()).set("retention.ms", &retention),
        NewTopic::new(&nodes_topic, config.node_partitions.max(1), replication())
            .set("retention.ms", &retention),
    ];
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = tokio::time::timeout(BROKER_TIMEOUT, admin.create_topics(&topics, &options))
        .await
        .map_err(|_| Error::Unavailable("kafka: no broker answers".into()))?
        .map_err(unavailable)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Unavailable(format!(
                    "kafka: cannot create topic {topic}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Assigns the consumer what `reads` names (every partition of a topic, or
/// one), each at its high watermark.
async fn assign_from_end(
    consumer: Arc<StreamConsumer<Reporter>>,
    reads: Vec<(String, Option<i32>)>,
) -> Result<()> {
    blocking(move || {
        let mut assignment = TopicPartitionList::new();
        for (topic, only) in &reads {
            let metadata = consumer
                .fetch_metadata(Some(topic), BROKER_TIMEOUT)
                .map_err(unavailable)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len() as i32);
            if partitions == 0 || only.is_some_and(|p| p >= partitions) {
                return Err(Error::Unavailable(format!(
                    "kafka: topic {topic} has {partitions} partitions"
                )));
            }
            let chosen: Vec<i32> = match only {
                Some(p) => vec![*p],
                None => (0..partitions).collect(),
            };
            for partition in chosen {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition, BROKER_TIMEOUT)
                    .map_err(unavailable)?;
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(high))
                    .map_err(unavailable)?;
            }
        }
        consumer.assign(&assignment).map_err(unavailable)
    })
    .await
}

/// The partition of the nodes topic that `node` reads: a hash of its name
/// every node computes alike.
fn node_partition(node: &str, partitions: i32) -> i32 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(node.as_bytes());
    let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (hash % partitions.max(1) as u64) as i32
}

/// Produces queued envelopes in order: routed ones once to each partition
/// of the nodes topic that a serving node reads, the others to the topic.
async fn publish_loop(
    producer: Arc<Producing>,
    config: KafkaFanOutConfig,
    origin: Origin,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let nodes_topic = config.nodes_topic();
    // Each node's partition, hashed once.
    let mut partition_of: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let received = tokio::select! {
            n = queue.recv_many(&mut batch, PUBLISH_BATCH) => n,
            () = tokio::time::sleep(Duration::from_secs(1)) => 0,
        };
        // Records were dropped and delivery works again: the other nodes'
        // clients may have missed them, make them sync.
        if producer.context().resume_due.swap(false, Ordering::SeqCst) {
            let record = origin.resume_record();
            let resume = BaseRecord::<[u8], [u8]>::to(&config.topic).payload(&record[..]);
            if let Err((e, _)) = producer.send(resume) {
                tracing::warn!(error = %e, "fan-out: could not tell the other nodes to resync");
            }
        }
        if received == 0 {
            if queue.is_closed() && queue.is_empty() {
                return;
            }
            continue;
        }
        let destinations = destinations(config.routing.as_ref(), &batch).await;
        for (out, nodes) in batch.iter().zip(&destinations) {
            let key = out.key.to_be_bytes();
            let record = |topic| {
                BaseRecord::<[u8], [u8]>::to(topic)
                    .key(&key[..])
                    .payload(&out.record[..])
            };
            let sent = match nodes {
                None => producer.send(record(&config.topic)).map_err(|(e, _)| e),
                Some(nodes) => {
                    let partitions: std::collections::BTreeSet<i32> = nodes
                        .iter()
                        .map(|n| match partition_of.get(n.as_str()) {
                            Some(&p) => p,
                            None => {
                                let p = node_partition(n, config.node_partitions);
                                partition_of.insert(n.clone(), p);
                                p
                            }
                        })
                        .collect();
                    partitions.into_iter().try_for_each(|p| {
                        producer
                            .send(record(&nodes_topic).partition(p))
                            .map_err(|(e, _)| e)
                    })
                }
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "fan-out: Kafka cannot take the envelope; it is dropped");
            }
        }
        batch.clear();
    }
}

async fn consume_loop(
    consumer: Arc<StreamConsumer<Reporter>>,
    config: KafkaFanOutConfig,
    origin: Origin,
    subscribers: Arc<Subscribers>,
) {
    let reporter = consumer.context().clone();
    loop {
        // librdkafka may report trouble only to the context: check every
        // second while it suspects some.
        let suspect = reporter.suspect.load(Ordering::SeqCst);
        let received = tokio::select! {
            received = consumer.recv() => Some(received),
            () = tokio::time::sleep(Duration::from_secs(1)), if suspect => None,
        };
        match received {
            Some(Ok(record)) => {
                origin.receive(record.payload().unwrap_or_default(), &subscribers, "kafka");
            }
            Some(Err(e)) if !is_outage(&e) => {
                tracing::warn!(error = %e, "fan-out: reading from Kafka failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            trouble => {
                // An outage error, or the context's suspicion. Errors of an
                // outage that already ended arrive late: nothing was missed
                // if a broker answers and still holds our read positions.
                reporter.suspect.store(false, Ordering::SeqCst);
                if still_reading(&consumer).await {
                    continue;
                }
                let reason = match trouble {
                    Some(Err(e)) => e.to_string(),
                    _ => "every broker is down".into(),
                };
                reporter.went_down(&reason);
                recover(&consumer, &config).await;
                reporter.back(&subscribers);
            }
        }
    }
}

/// True when a broker answers and every assigned partition's read position
/// is still within what the broker holds (records produced meanwhile will
/// come).
async fn still_reading(consumer: &Arc<StreamConsumer<Reporter>>) -> bool {
    let consumer = consumer.clone();
    blocking(move || {
        let positions = consumer.position().map_err(unavailable)?;
        for element in positions.elements() {
            let (_, high) = consumer
                .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))
                .map_err(unavailable)?;
            if let Offset::Offset(position) = element.offset()
                && position > high
            {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
    .unwrap_or(false)
}

/// Errors that mean the node may have missed records: the brokers were
/// unreachable, or the topic is gone (a broker that keeps it in memory
/// restarted).
fn is_outage(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// After an outage: waits (with back-off) until the brokers answer, makes
/// the topic again if it is gone, and reads on from where it was if the
/// broker still holds those positions, else every partition from its end
/// (a broker that lost the topic). Records skipped that way are the ones
/// the clients get by sync once the handlers heard `resumed`.
async fn recover(consumer: &Arc<StreamConsumer<Reporter>>, config: &KafkaFanOutConfig) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        let again = match create_topic(config).await {
            Ok(()) if still_reading(consumer).await => Ok(()),
            Ok(()) => assign_from_end(consumer.clone(), config.reads()).await,
            Err(e) => Err(e),
        };
        match again {
            Ok(()) => return,
            Err(e) => tracing::info!(error = %e, "fan-out: Kafka not back yet"),
        }
    }
}

#[async_trait]
impl FanOut for KafkaFanOut {
    fn publish(&self, envelope: &Envelope) {
        let outgoing = Outgoing::new(&self.origin, envelope, self.routed);
        if self.outgoing.try_send(outgoing).is_err() {
            tracing::warn!("fan-out: the Kafka publish queue is full; an envelope is dropped");
        }
    }

    fn subscribe(&self, handler: Arc<dyn FanOutHandler>) {
        self.subscribers.add(handler);
    }

    async fn health(&self) -> Result<()> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        blocking(move || {
            consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(drop)
                .map_err(unavailable)
        })
        .await?;
        if self.consumer.context().down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "kafka: reading the topic again after an outage".into(),
            ));
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.subscribers.clear();
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        let producer = self.producer.clone();
        blocking(move || producer.flush(BROKER_TIMEOUT).map_err(unavailable)).await
    }
}
