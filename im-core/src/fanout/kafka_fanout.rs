//! [`KafkaFanOut`]: the fan-out of several server processes over Kafka
//! (feature `kafka`, rdkafka with librdkafka built from source).
//!
//! Every node produces its envelopes to one topic and reads all of it.
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
//!   and then drops them. After an outage (every broker unreachable, or the
//!   topic gone) the node waits until a broker answers, creates the topic
//!   again if it is gone (a broker keeping it in memory restarted), reads
//!   on from its positions if the broker still holds them, else every
//!   partition from its end, and only then tells its handlers (`resumed`):
//!   its clients sync what they missed. Errors of an outage that already
//!   ended (librdkafka reports them late) are checked against the broker
//!   before they are believed. `health` fails from
//!   the start of an outage until then.
//! * Every node reads every envelope of the cluster: traffic per node grows
//!   with the cluster's total.

use super::cluster_wire::{Origin, Subscribers};
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
        }
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
    producer: Arc<Producing>,
    consumer: Arc<StreamConsumer<Reporter>>,
    subscribers: Arc<Subscribers>,
    task: Mutex<Option<JoinHandle<()>>>,
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
        assign_from_end(consumer.clone(), config.topic.clone()).await?;
        let subscribers = Arc::new(Subscribers::default());
        let task = tokio::spawn(consume_loop(
            consumer.clone(),
            config.clone(),
            origin,
            subscribers.clone(),
        ));
        Ok(Self {
            origin,
            topic: config.topic,
            producer: Arc::new(producer),
            consumer,
            subscribers,
            task: Mutex::new(Some(task)),
        })
    }
}

/// Creates the topic; an existing one is left as it is.
async fn create_topic(config: &KafkaFanOutConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.client(&[]).create().map_err(unavailable)?;
    let retention = config.retention_ms.to_string();
    let topic = NewTopic::new(
        &config.topic,
        config.partitions.max(1),
        TopicReplication::Fixed(config.replication.max(1)),
    )
    .set("retention.ms", &retention);
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = tokio::time::timeout(BROKER_TIMEOUT, admin.create_topics([&topic], &options))
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

/// Assigns every partition of `topic` to the consumer at its high watermark.
async fn assign_from_end(consumer: Arc<StreamConsumer<Reporter>>, topic: String) -> Result<()> {
    blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
            .map_err(unavailable)?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as i32)
            .unwrap_or(0);
        if partitions == 0 {
            return Err(Error::Unavailable(format!(
                "kafka: topic {topic} has no partitions"
            )));
        }
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
                .map_err(unavailable)?;
            assignment
                .add_partition_offset(&topic, partition, Offset::Offset(high))
                .map_err(unavailable)?;
        }
        consumer.assign(&assignment).map_err(unavailable)
    })
    .await
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
                if still_reading(&consumer, &config.topic).await {
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

/// True when a broker answers and every partition's read position is still
/// within what the broker holds (records produced meanwhile will come).
async fn still_reading(consumer: &Arc<StreamConsumer<Reporter>>, topic: &str) -> bool {
    let (consumer, topic) = (consumer.clone(), topic.to_owned());
    blocking(move || {
        let positions = consumer.position().map_err(unavailable)?;
        for element in positions.elements_for_topic(&topic) {
            let (_, high) = consumer
                .fetch_watermarks(&topic, element.partition(), Duration::from_secs(2))
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
            Ok(()) if still_reading(consumer, &config.topic).await => Ok(()),
            Ok(()) => assign_from_end(consumer.clone(), config.topic.clone()).await,
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
        let payload = self.origin.record(envelope);
        let key = envelope.partition_key().to_be_bytes();
        let record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .key(&key[..])
            .payload(&payload[..]);
        if let Err((e, _)) = self.producer.send(record) {
            tracing::warn!(error = %e, "fan-out: Kafka cannot take the envelope; it is dropped");
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
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        let producer = self.producer.clone();
        blocking(move || producer.flush(BROKER_TIMEOUT).map_err(unavailable)).await
    }
}
