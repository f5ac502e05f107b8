//! The library's error type.

use std::net::SocketAddr;

/// What can stop the server from starting or shutting down cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration cannot be read or makes no sense.
    #[error("configuration: {0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store cannot be opened, or failed to close.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        source: im_core::Error,
    },
    /// The fan-out (Redis) cannot be reached.
    #[error("fan-out: {0}")]
    FanOut(#[source] im_core::Error),
    /// The TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Another I/O failure (the runtime, the listener).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
