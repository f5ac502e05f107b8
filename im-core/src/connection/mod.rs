//! One client connection, the same on every transport.
//!
//! | piece | what |
//! |---|---|
//! | [`SessionDriver`] | the protocol rules, sans-IO: frames in; frames, requests and time-outs out |
//! | [`Connection`] | a request's meaning: hello, authentication, then the engine call |
//! | [`serve`] | the one async loop that drives both over a [`FrameTransport`] |
//!
//! A transport (the reference server's WebSocket, gRPC, an in-memory duplex
//! in tests, an embedder's own endpoint) implements [`FrameTransport`]:
//! bytes to frames and writes, nothing else.

mod driver;
mod rate_limit;
mod requests;
mod serve;

pub use driver::{Close, CloseCode, MAX_PIPELINE, SessionDriver, Transmit, TransportError};
pub use rate_limit::TokenBucket;
pub use requests::{Connection, Outcome};
pub use serve::{FrameTransport, Incoming, WRITE_TIMEOUT, serve};

/// Per-connection settings, reported to the client in `HelloOk`.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Largest frame accepted (default 64 KiB).
    pub max_frame_bytes: usize,
    /// How often the server pings (default 30 s).
    pub heartbeat_interval_ms: u32,
    /// A connection silent this long is closed (default 90 s).
    pub idle_timeout_ms: u32,
    /// Sustained requests per second per connection (default 100).
    pub requests_per_second: f64,
    /// Burst of requests allowed above the sustained rate (default 200).
    pub request_burst: f64,
    /// Most simultaneous sessions of one user on this node (default 16).
    pub max_sessions_per_user: usize,
    /// Reported to clients.
    pub server_version: String,
    /// Told to clients at shutdown: come back after this long, spread out by
    /// the client (default 1 s).
    pub reconnect_after_ms: u32,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: im_protocol::DEFAULT_MAX_FRAME_BYTES,
            heartbeat_interval_ms: 30_000,
            idle_timeout_ms: 90_000,
            requests_per_second: 100.0,
            request_burst: 200.0,
            max_sessions_per_user: 16,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            reconnect_after_ms: 1000,
        }
    }
}
