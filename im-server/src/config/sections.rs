//! The sections of [`ServerConfig`](super::ServerConfig), each with its
//! defaults (the values `config.example.toml` shows).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `[grpc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSection {
    /// Serve gRPC (default on).
    pub enabled: bool,
    /// Address of the gRPC listener (HTTP/2), beside `server.listen`.
    pub listen: String,
    /// Most concurrent streams (sessions and calls) on one connection.
    pub max_streams_per_connection: u32,
    /// Address of gRPC over TLS (needs `[tls]`; unset: none), beside
    /// `listen`.
    pub tls_listen: Option<String>,
}

impl Default for GrpcSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:50051".into(),
            max_streams_per_connection: 64,
            tls_listen: None,
        }
    }
}

/// `[tls]`: a TLS listener for HTTPS and WSS beside the plain one of
/// `[server]`, serving the same routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file of the certificate chain, the server's certificate first.
    pub cert_file: String,
    /// PEM file of the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Address of the TLS listener.
    pub listen: String,
    /// How often the two files are checked for changes, milliseconds; a
    /// changed pair is used for new connections without a restart
    /// (0: never reloaded).
    pub reload_interval_ms: u64,
    /// Longest TLS handshake before the connection is dropped, milliseconds.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            listen: "127.0.0.1:8443".into(),
            reload_interval_ms: 2_000,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// `[files]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesSection {
    /// Directory of the uploaded files, one per upload named by its server
    /// id (default `data/files`, created on the first upload), or
    /// `memory://` (nothing kept).
    pub dir: String,
    /// Largest file, bytes (default 1 GiB).
    pub max_file_bytes: u64,
    /// Bytes a user may begin uploading per 24 hours; 0: no limit (default).
    pub daily_quota_bytes: u64,
    /// How long an interrupted upload may be resumed before it is deleted (default 24 h).
    pub resume_window_secs: u64,
    /// How long a complete file no message refers to is kept (default 24 h).
    pub unreferenced_ttl_secs: u64,
    /// How often the clean-up runs (default 10 min).
    pub cleanup_interval_secs: u64,
    /// An upload whose client sends nothing for this long is interrupted,
    /// and can be resumed; an HTTP connection whose client reads nothing
    /// for this long (a download nobody reads) is closed (default 60 s).
    pub idle_timeout_secs: u64,
}

impl Default for FilesSection {
    fn default() -> Self {
        let d = im_core::FilesConfig::default();
        Self {
            dir: "data/files".into(),
            max_file_bytes: d.max_file_bytes,
            daily_quota_bytes: d.daily_quota_bytes.unwrap_or(0),
            resume_window_secs: (d.resume_window_ms / 1000) as u64,
            unreferenced_ttl_secs: (d.unreferenced_ttl_ms / 1000) as u64,
            cleanup_interval_secs: 600,
            idle_timeout_secs: 60,
        }
    }
}

/// `[presence]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSection {
    /// `auto` (the default: `memory` with the local fan-out, `redis` with
    /// the Redis fan-out, `store` with Kafka), `memory` (one process),
    /// `redis` (in Redis, keys under `{fanout.channel}:presence`) or `store`
    /// (in the store's database; not with `memory://`).
    pub backend: String,
    /// Redis presence: `redis://host:port/db` (default: `fanout.url`).
    pub redis_url: Option<String>,
}

impl Default for PresenceSection {
    fn default() -> Self {
        Self {
            backend: "auto".into(),
            redis_url: None,
        }
    }
}

/// Where presence is kept, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceBackend {
    /// In this process.
    Memory,
    /// In Redis.
    Redis,
    /// In the store's database.
    Store,
}

/// `[fanout]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanOutSection {
    /// `local` (one process, the default), `redis` (several processes joined
    /// by Redis pub/sub) or `kafka` (joined by a Kafka topic).
    pub backend: String,
    /// Redis: `redis://host:port/db`.
    pub url: String,
    /// Redis: the channel every node of the cluster shares (also the prefix
    /// of the presence keys).
    pub channel: String,
    /// Send events for listed users (1:1 chats, groups up to 32, receipts,
    /// typing, presence, one device) only to the nodes serving those users,
    /// found in the presence registry; the others go to every node.
    /// Default: on with Redis, off with Kafka (measured: with presence in
    /// the store the look-ups cost three nodes more than the envelopes they
    /// spare; turn it on for larger clusters).
    pub routing: Option<bool>,
    /// Kafka: `host:port[,host:port...]`.
    pub brokers: String,
    /// Kafka: the topic every node of the cluster shares.
    pub topic: String,
    /// Kafka: partitions of the topic when the first node creates it.
    pub partitions: i32,
    /// Kafka: replication factor of the topic when the first node creates it.
    pub replication: i32,
    /// Kafka: how long the broker keeps events, seconds.
    pub retention_secs: u64,
    /// Kafka: partitions of `{topic}.nodes` (routed events; each node reads
    /// the one its name hashes to) when the first node creates it.
    pub node_partitions: i32,
    /// Kafka: librdkafka settings passed through as they are (for example
    /// `"security.protocol" = "ssl"`); they override the server's defaults.
    pub settings: BTreeMap<String, String>,
}

impl Default for FanOutSection {
    fn default() -> Self {
        Self {
            backend: "local".into(),
            url: "redis://127.0.0.1:6379".into(),
            channel: "im:events".into(),
            routing: None,
            brokers: "127.0.0.1:9092".into(),
            topic: "im.events".into(),
            partitions: 16,
            replication: 1,
            retention_secs: 3_600,
            node_partitions: 64,
            settings: BTreeMap::new(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: String,
    /// Most TCP connections (HTTP and WebSocket) at once; more are refused with 503.
    pub max_connections: usize,
    /// Server ping interval, seconds.
    pub heartbeat_interval_secs: u64,
    /// A connection silent this long is closed, seconds.
    pub idle_timeout_secs: u64,
    /// Longest graceful shutdown before connections are dropped, seconds.
    pub shutdown_timeout_secs: u64,
    /// Told to clients at shutdown: reconnect after this long (each client
    /// adds up to half again at random), milliseconds.
    pub reconnect_after_ms: u32,
    /// A node's users count as online this long after its last presence
    /// lease renewal (renewed every third of it), seconds: how long the users
    /// of a node that died stay online.
    pub presence_lease_secs: u64,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (the embedded default), `postgres://...` or `memory://` (nothing kept).
    pub url: String,
    /// SQLite: `full` (durable on power loss) or `normal` (durable on crash).
    pub synchronous: String,
    /// Read connections (SQLite) or pooled connections (PostgreSQL).
    pub pool_size: u32,
    /// PostgreSQL: how long to wait for a connection before answering `UNAVAILABLE`, seconds.
    pub connect_timeout_secs: u64,
    /// Most writes committed in one transaction (group commit).
    pub max_batch: usize,
    /// PostgreSQL: writer connections committing batches in parallel
    /// (writes of one conversation always share one).
    pub writers: usize,
    /// Longest a write waits for others to join its batch, microseconds
    /// (default: 0 for SQLite, 1000 for PostgreSQL).
    pub max_wait_us: Option<u64>,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Token lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Shortest password accepted.
    pub min_password_len: usize,
    /// argon2id memory cost, KiB.
    pub argon2_m_cost: u32,
    /// argon2id iterations.
    pub argon2_t_cost: u32,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest WebSocket frame, bytes.
    pub max_frame_bytes: usize,
    /// Largest message content, bytes.
    pub max_message_bytes: usize,
    /// Most members of a group or room.
    pub max_group_members: u32,
    /// Largest page a client can ask for.
    pub max_page_size: u32,
    /// Above this many members no typing, presence or receipt broadcast.
    pub large_group_threshold: u32,
    /// Sustained requests per second per connection.
    pub requests_per_second: f64,
    /// Request burst per connection.
    pub request_burst: f64,
    /// Connections per user.
    pub max_sessions_per_user: usize,
    /// Events queued per connection before it is closed as too slow.
    pub session_queue: usize,
    /// How long after sending its sender may recall a message, seconds
    /// (0: any time); owners and admins of groups may recall any time.
    pub recall_window_secs: u64,
    /// How long after sending its sender may edit a message, seconds (0: any time).
    pub edit_window_secs: u64,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A `tracing` filter, e.g. `info` or `im_server=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_connections: 100_000,
            heartbeat_interval_secs: 30,
            idle_timeout_secs: 90,
            shutdown_timeout_secs: 10,
            reconnect_after_ms: 1000,
            presence_lease_secs: 30,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: "sqlite://data/im.sqlite3".into(),
            synchronous: "full".into(),
            pool_size: 8,
            connect_timeout_secs: 5,
            max_batch: 512,
            writers: 4,
            max_wait_us: None,
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        let d = im_core::PasswordAuthConfig::default();
        Self {
            token_ttl_secs: d.token_ttl.as_secs(),
            min_password_len: d.min_password_len,
            argon2_m_cost: d.argon2_m_cost,
            argon2_t_cost: d.argon2_t_cost,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        let e = im_core::EngineConfig::default();
        let c = im_core::ConnectionConfig::default();
        Self {
            max_frame_bytes: c.max_frame_bytes,
            max_message_bytes: e.max_message_bytes,
            max_group_members: e.max_group_members,
            max_page_size: e.max_page_size,
            large_group_threshold: e.large_group_threshold,
            requests_per_second: c.requests_per_second,
            request_burst: c.request_burst,
            max_sessions_per_user: c.max_sessions_per_user,
            session_queue: e.session_queue,
            recall_window_secs: (e.recall_window_ms / 1000) as u64,
            edit_window_secs: (e.edit_window_ms / 1000) as u64,
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}
