//! Server settings: defaults, then a TOML file, then `IM__SECTION__KEY`
//! environment variables (e.g. `IM__SERVER__LISTEN=0.0.0.0:8080`).

mod calls;
mod contacts;
mod sections;

pub use calls::CallsSection;
pub use contacts::ContactsSection;
pub use sections::*;

use crate::error::{Result, ServerError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Returns a configuration error.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(ServerError::Config(format!($($arg)*)))
    };
}

/// Every setting of the reference server. See `im-server/config.example.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listener and connection handling.
    pub server: ServerSection,
    /// Where data is kept.
    pub store: StoreSection,
    /// Password accounts and tokens.
    pub auth: AuthSection,
    /// Limits on what clients may send.
    pub limits: LimitsSection,
    /// Logging.
    pub log: LogSection,
    /// How events reach the other server processes.
    pub fanout: FanOutSection,
    /// Where the cluster counts who is online.
    pub presence: PresenceSection,
    /// The gRPC listener.
    pub grpc: GrpcSection,
    /// HTTPS and WSS on a second listener; absent: no TLS.
    pub tls: Option<TlsSection>,
    /// Uploaded files: where, how large, how long.
    pub files: FilesSection,
    /// Calls: ring time-out, reconnect window, size, STUN and TURN servers.
    pub calls: CallsSection,
    /// Contacts: friendship for direct messages, friend request limit, block cache.
    pub contacts: ContactsSection,
}

/// The store chosen by `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`
    Sqlite(std::path::PathBuf),
    /// `postgres://...` or `postgresql://...` (a libpq URL)
    Postgres(String),
    /// `memory://`
    Memory,
}

impl ServerConfig {
    /// Loads defaults, then `file` (if given), then `IM__SECTION__KEY` variables, and validates.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("IM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let loaded: ServerConfig = builder
            .build()
            .map_err(|e| ServerError::Config(format!("reading configuration: {e}")))?
            .try_deserialize()
            .map_err(|e| ServerError::Config(format!("invalid configuration: {e}")))?;
        loaded.validate()?;
        Ok(loaded)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        self.listen_addr()?;
        self.grpc_addr()?;
        if self.grpc.max_streams_per_connection == 0 {
            bail!("grpc.max_streams_per_connection must be at least 1");
        }
        self.store_url()?;
        if !matches!(self.store.synchronous.as_str(), "full" | "normal") {
            bail!("store.synchronous must be \"full\" or \"normal\"");
        }
        if !matches!(self.fanout.backend.as_str(), "local" | "redis" | "kafka") {
            bail!("fanout.backend must be \"local\", \"redis\" or \"kafka\"");
        }
        if self.fanout.backend == "kafka"
            && (self.fanout.brokers.trim().is_empty() || self.fanout.topic.trim().is_empty())
        {
            bail!("fanout.brokers and fanout.topic must be set for the kafka backend");
        }
        if self.presence_backend()? == PresenceBackend::Store && self.store_url()? == StoreUrl::Memory {
            bail!("presence.backend = \"store\" needs a SQLite or PostgreSQL store");
        }
        if !(1..=10_000).contains(&self.fanout.node_partitions) {
            bail!("fanout.node_partitions must be 1 to 10000");
        }
        if !(1..=10_000).contains(&self.fanout.partitions) || !(1..=16).contains(&self.fanout.replication) {
            bail!("fanout.partitions must be 1 to 10000 and fanout.replication 1 to 16");
        }
        if self.files.dir.trim().is_empty() {
            bail!("files.dir must name a directory (or memory://)");
        }
        if self.files.cleanup_interval_secs == 0 || self.files.idle_timeout_secs == 0 {
            bail!("files.cleanup_interval_secs and files.idle_timeout_secs must be at least 1");
        }
        if self.files.resume_window_secs > i64::MAX as u64 / 1000
            || self.files.unreferenced_ttl_secs > i64::MAX as u64 / 1000
        {
            bail!("files.resume_window_secs and files.unreferenced_ttl_secs are too large");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        if self.limits.max_frame_bytes < 1024 {
            bail!("limits.max_frame_bytes must be at least 1024");
        }
        if self.limits.max_message_bytes >= self.limits.max_frame_bytes {
            bail!("limits.max_message_bytes must be below limits.max_frame_bytes");
        }
        if self.limits.requests_per_second <= 0.0 || self.limits.request_burst < 1.0 {
            bail!("limits.requests_per_second must be positive and limits.request_burst at least 1");
        }
        if self.server.heartbeat_interval_secs == 0
            || self.server.idle_timeout_secs <= self.server.heartbeat_interval_secs
        {
            bail!("server.idle_timeout_secs must exceed server.heartbeat_interval_secs (> 0)");
        }
        if !(1..=10_000).contains(&self.limits.max_page_size) {
            bail!("limits.max_page_size must be 1 to 10000");
        }
        if !(3..=3_600).contains(&self.server.presence_lease_secs) {
            bail!("server.presence_lease_secs must be 3 to 3600");
        }
        if self.server.reconnect_after_ms > 600_000 {
            bail!("server.reconnect_after_ms is limited to 10 minutes");
        }
        if self.server.idle_timeout_secs > 86_400 || self.server.shutdown_timeout_secs > 3_600 {
            bail!("server.idle_timeout_secs is limited to a day and server.shutdown_timeout_secs to an hour");
        }
        if self.store.pool_size == 0 || self.store.writers == 0 || self.store.writers > 64 {
            bail!("store.pool_size must be positive and store.writers 1 to 64");
        }
        self.auth_config()
            .validate()
            .map_err(|e| ServerError::Config(format!("auth: {}", e.message())))?;
        if self.server.max_connections == 0 || self.limits.max_sessions_per_user == 0 {
            bail!("server.max_connections and limits.max_sessions_per_user must be positive");
        }
        self.calls.validate(self.limits.max_frame_bytes)?;
        self.contacts.validate()?;
        self.validate_tls()
    }

    /// Checks `[tls]`, loading the certificate and key once.
    fn validate_tls(&self) -> Result<()> {
        let grpc_tls = self.grpc_tls_addr()?;
        let Some(tls) = &self.tls else {
            if grpc_tls.is_some() {
                bail!("grpc.tls_listen needs a certificate: set [tls]");
            }
            return Ok(());
        };
        if tls.cert_file.trim().is_empty() || tls.key_file.trim().is_empty() {
            bail!("tls.cert_file and tls.key_file must both be set");
        }
        let addr = self.tls_addr()?.expect("tls is set");
        if addr.port() != 0 && (addr == self.listen_addr()? || Some(addr) == self.grpc_addr()?) {
            bail!("tls.listen must differ from server.listen and grpc.listen");
        }
        if tls.reload_interval_ms != 0 && !(100..=3_600_000).contains(&tls.reload_interval_ms) {
            bail!("tls.reload_interval_ms must be 0 (never) or 100 to 3600000");
        }
        if !(100..=60_000).contains(&tls.handshake_timeout_ms) {
            bail!("tls.handshake_timeout_ms must be 100 to 60000");
        }
        crate::tls::TlsCertificate::load(&tls.cert_file, &tls.key_file)
            .map_err(|e| ServerError::Config(format!("tls: {e}")))?;
        Ok(())
    }

    /// The TLS listener's address, if `[tls]` is set.
    pub fn tls_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(tls) = &self.tls else { return Ok(None) };
        tls.listen
            .parse()
            .map(Some)
            .map_err(|_| ServerError::Config(format!("tls.listen {:?} is not an address:port", tls.listen)))
    }

    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr> {
        self.server.listen.parse().map_err(|_| {
            ServerError::Config(format!(
                "server.listen {:?} is not an address:port",
                self.server.listen
            ))
        })
    }

    /// The address of gRPC over TLS, if gRPC is on and `grpc.tls_listen` set.
    pub fn grpc_tls_addr(&self) -> Result<Option<SocketAddr>> {
        let Some(listen) = self.grpc.tls_listen.as_ref().filter(|_| self.grpc.enabled) else {
            return Ok(None);
        };
        let addr = listen
            .parse()
            .map_err(|_| ServerError::Config(format!("grpc.tls_listen {listen:?} is not an address:port")))?;
        Ok(Some(addr))
    }

    /// The gRPC listener's address, or `None` when gRPC is off.
    pub fn grpc_addr(&self) -> Result<Option<SocketAddr>> {
        if !self.grpc.enabled {
            return Ok(None);
        }
        let addr = self.grpc.listen.parse().map_err(|_| {
            ServerError::Config(format!(
                "grpc.listen {:?} is not an address:port",
                self.grpc.listen
            ))
        })?;
        Ok(Some(addr))
    }

    /// Where presence is kept (`presence.backend`, with `auto` resolved).
    pub fn presence_backend(&self) -> Result<PresenceBackend> {
        Ok(
            match (self.presence.backend.as_str(), self.fanout.backend.as_str()) {
                ("memory", _) | ("auto", "local") => PresenceBackend::Memory,
                ("redis", _) | ("auto", "redis") => PresenceBackend::Redis,
                ("store", _) | ("auto", "kafka") => PresenceBackend::Store,
                _ => bail!("presence.backend must be \"auto\", \"memory\", \"redis\" or \"store\""),
            },
        )
    }

    /// The parsed store URL.
    pub fn store_url(&self) -> Result<StoreUrl> {
        let url = self.store.url.as_str();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                bail!("store.url: sqlite:// needs a file path");
            }
            Ok(StoreUrl::Sqlite(path.into()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(url.to_owned()))
        } else if url == "memory://" {
            Ok(StoreUrl::Memory)
        } else {
            bail!("store.url {url:?}: expected sqlite://PATH, postgres://... or memory://")
        }
    }

    /// Engine limits.
    pub fn engine_config(&self) -> im_core::EngineConfig {
        im_core::EngineConfig {
            max_message_bytes: self.limits.max_message_bytes,
            max_group_members: self.limits.max_group_members,
            max_page_size: self.limits.max_page_size,
            large_group_threshold: self.limits.large_group_threshold,
            session_queue: self.limits.session_queue,
            presence_lease_ms: (self.server.presence_lease_secs * 1000) as i64,
            recall_window_ms: (self.limits.recall_window_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
            edit_window_ms: (self.limits.edit_window_secs.min(i64::MAX as u64 / 1000) * 1000) as i64,
            files: im_core::FilesConfig {
                max_file_bytes: self.files.max_file_bytes,
                daily_quota_bytes: (self.files.daily_quota_bytes > 0).then_some(self.files.daily_quota_bytes),
                resume_window_ms: (self.files.resume_window_secs * 1000) as i64,
                unreferenced_ttl_ms: (self.files.unreferenced_ttl_secs * 1000) as i64,
            },
            calls: self.calls.call_config(),
            ice: self.calls.ice_config(),
            contacts: self.contacts.contacts_config(),
            ..Default::default()
        }
    }

    /// Per-connection settings.
    pub fn connection_config(&self) -> im_core::ConnectionConfig {
        im_core::ConnectionConfig {
            max_frame_bytes: self.limits.max_frame_bytes,
            heartbeat_interval_ms: (self.server.heartbeat_interval_secs * 1000) as u32,
            idle_timeout_ms: (self.server.idle_timeout_secs * 1000) as u32,
            requests_per_second: self.limits.requests_per_second,
            request_burst: self.limits.request_burst,
            max_sessions_per_user: self.limits.max_sessions_per_user,
            reconnect_after_ms: self.server.reconnect_after_ms,
            ..Default::default()
        }
    }

    /// Password account settings.
    pub fn auth_config(&self) -> im_core::PasswordAuthConfig {
        im_core::PasswordAuthConfig {
            token_ttl: Duration::from_secs(self.auth.token_ttl_secs),
            min_password_len: self.auth.min_password_len,
            argon2_m_cost: self.auth.argon2_m_cost,
            argon2_t_cost: self.auth.argon2_t_cost,
        }
    }
}
