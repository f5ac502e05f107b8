//! The backends the configuration names: the store, the blob store of
//! files, the fan-out and the presence registry, and this node's name in the cluster.

use crate::config::{self, PresenceBackend, ServerConfig};
use crate::error::{Result, ServerError};
use im_core::{
    BlobStore, FsBlobStore, FsBlobStoreConfig, MemoryBlobStore, PostgresStore, PostgresStoreConfig,
    SqliteStore, SqliteStoreConfig, Store,
};
use std::sync::Arc;
use std::time::Duration;

/// A name for this node, unique in its cluster: process id and start time.
pub(crate) fn node_name() -> String {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("node-{}-{started:x}", std::process::id())
}

/// Opens the store named by the configuration.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>> {
    Ok(match config.store_url()? {
        config::StoreUrl::Sqlite(path) => {
            let mut c = SqliteStoreConfig::new(&path);
            c.read_connections = config.store.pool_size;
            c.max_batch = config.store.max_batch;
            if let Some(us) = config.store.max_wait_us {
                c.max_wait = Duration::from_micros(us);
            }
            c.synchronous_full = config.store.synchronous == "full";
            Arc::new(SqliteStore::open(c).await.map_err(|source| ServerError::Store {
                context: format!("opening SQLite store {}", path.display()),
                source,
            })?)
        }
        config::StoreUrl::Postgres(url) => {
            let mut c = PostgresStoreConfig::new(url);
            c.pool_size = config.store.pool_size;
            c.connect_timeout = Duration::from_secs(config.store.connect_timeout_secs);
            c.writers = config.store.writers;
            c.max_batch = config.store.max_batch;
            if let Some(us) = config.store.max_wait_us {
                c.max_wait = Duration::from_micros(us);
            }
            Arc::new(
                PostgresStore::open(c)
                    .await
                    .map_err(|source| ServerError::Store {
                        context: "opening the PostgreSQL store (is the database reachable?)".into(),
                        source,
                    })?,
            )
        }
        config::StoreUrl::Memory => Arc::new(im_core::MemoryStore::new()),
    })
}

/// Opens the blob store of uploaded files (`files.dir`).
pub async fn open_blobs(config: &ServerConfig) -> Result<Arc<dyn BlobStore>> {
    if config.files.dir == "memory://" {
        return Ok(Arc::new(MemoryBlobStore::new()));
    }
    let store = FsBlobStore::open(FsBlobStoreConfig::new(&config.files.dir))
        .await
        .map_err(|e| ServerError::Config(format!("files.dir {}: {e}", config.files.dir)))?;
    Ok(Arc::new(store))
}

/// Opens the fan-out named by the configuration. `routing`: this node and
/// the cluster's presence registry, for the Redis and Kafka fan-outs to
/// send events for listed users only to the nodes serving them
/// (`fanout.routing`).
pub async fn open_fanout(
    config: &ServerConfig,
    routing: Option<im_core::fanout::Routing>,
) -> Result<Arc<dyn im_core::FanOut>> {
    Ok(match config.fanout.backend.as_str() {
        "redis" => {
            let mut c = im_core::RedisFanOutConfig::new(&config.fanout.url);
            c.channel = config.fanout.channel.clone();
            c.routing = routing.filter(|_| config.fanout.routing.unwrap_or(true));
            Arc::new(
                im_core::RedisFanOut::connect(c)
                    .await
                    .map_err(ServerError::FanOut)?,
            )
        }
        "kafka" => {
            let section = &config.fanout;
            let mut c = im_core::KafkaFanOutConfig::new(&section.brokers);
            c.topic = section.topic.clone();
            c.partitions = section.partitions;
            c.replication = section.replication;
            c.retention_ms = section.retention_secs.saturating_mul(1000);
            c.settings = section.settings.clone();
            c.node_partitions = section.node_partitions;
            c.routing = routing.filter(|_| section.routing.unwrap_or(false));
            Arc::new(
                im_core::KafkaFanOut::connect(c)
                    .await
                    .map_err(ServerError::FanOut)?,
            )
        }
        _ => Arc::new(im_core::LocalFanOut::new()),
    })
}

/// The presence registry a cluster shares (`presence.backend`): in Redis
/// (keys under `{fanout.channel}:presence`) or in the store's database;
/// `None`: the engine's in-memory default, for one process.
pub async fn open_presence(config: &ServerConfig) -> Result<Option<Arc<dyn im_core::PresenceRegistry>>> {
    let lease_ms = (config.server.presence_lease_secs * 1000) as i64;
    let presence: Arc<dyn im_core::PresenceRegistry> = match config.presence_backend()? {
        PresenceBackend::Memory => return Ok(None),
        PresenceBackend::Redis => {
            let url = config.presence.redis_url.as_ref().unwrap_or(&config.fanout.url);
            let mut c = im_core::RedisPresenceConfig::new(url);
            c.prefix = format!("{}:presence", config.fanout.channel);
            c.lease_ms = lease_ms;
            Arc::new(
                im_core::RedisPresence::connect(c)
                    .await
                    .map_err(ServerError::FanOut)?,
            )
        }
        PresenceBackend::Store => {
            let opened = match config.store_url()? {
                config::StoreUrl::Postgres(url) => {
                    let mut c = im_core::PostgresPresenceConfig::new(url);
                    c.lease_ms = lease_ms;
                    c.connect_timeout = Duration::from_secs(config.store.connect_timeout_secs);
                    im_core::PostgresPresence::open(c)
                        .await
                        .map(|p| Arc::new(p) as Arc<dyn im_core::PresenceRegistry>)
                }
                config::StoreUrl::Sqlite(path) => {
                    let mut c = im_core::SqlitePresenceConfig::new(path);
                    c.lease_ms = lease_ms;
                    im_core::SqlitePresence::open(c)
                        .await
                        .map(|p| Arc::new(p) as Arc<dyn im_core::PresenceRegistry>)
                }
                config::StoreUrl::Memory => unreachable!("rejected by validate"),
            };
            opened.map_err(|source| ServerError::Store {
                context: "opening presence in the store's database".into(),
                source,
            })?
        }
    };
    Ok(Some(presence))
}
