//! [`SessionDriver`]: the per-connection protocol rules as a sans-IO state
//! machine. Frames and events go in with an explicit `now`; frames to write,
//! requests to run and the next time-out come out. No task, socket or clock
//! lives inside, so every rule is tested deterministically and every
//! transport (WebSocket, gRPC, an in-memory duplex) behaves the same.
//!
//! The rules:
//! * **One response per request, in order**: requests of a connection run one
//!   at a time, in arrival order. While one is in flight the driver reads
//!   ahead up to [`MAX_PIPELINE`] frames, then stops asking for input so the
//!   transport pushes back on the client.
//! * **Undecodable frames** are answered at once with `INVALID_ARGUMENT` (or
//!   `TOO_LARGE`) and request id 0: their id cannot be read.
//! * **Events** are written in the format of the client's latest request.
//! * **Slow clients**: a session whose event queue overflowed is closed with
//!   [`CloseCode::TryAgainLater`]; its client resyncs.
//! * **Heartbeat and idle time-out**: a ping every heartbeat interval; a
//!   client silent for the idle time-out (with no request in flight) is closed.
//! * **Closing**: the request in flight is finished and answered (its ack may
//!   be committed already); requests read but not started are refused with
//!   `UNAVAILABLE`; at server shutdown a `Closing` event tells the client when
//!   to come back; then the close reason.

use super::ConnectionConfig;
use super::rate_limit::TokenBucket;
use super::requests::Outcome;
use crate::error::Error;
use crate::sessions::Outbound;
use bytes::Bytes;
use im_protocol::{CodecError, Format, codec, v1};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Frames read ahead while a request is in flight; then reading pauses.
pub const MAX_PIPELINE: usize = 32;

/// Why a connection is closed, independent of the transport. WebSocket
/// transports send [`CloseCode::websocket`] in their close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// The session ended normally (logout).
    Normal,
    /// The server is going away (shutdown) or the client was idle too long.
    GoingAway,
    /// The client broke the protocol (bad framing, unsupported version).
    ProtocolError,
    /// The embedder closed the session for a policy reason.
    PolicyViolation,
    /// A frame far over the size limit.
    TooLarge,
    /// The client read too slowly and events were dropped: resync.
    TryAgainLater,
    /// The token the session was opened with expired: authenticate again.
    TokenExpired,
}

impl CloseCode {
    /// The WebSocket close code (RFC 6455 section 7.4).
    pub fn websocket(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooLarge => 1009,
            CloseCode::TryAgainLater => 1013,
            // The application range (4000-4999).
            CloseCode::TokenExpired => 4001,
        }
    }
}

/// A close decided by the driver: the code and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why.
    pub code: CloseCode,
    /// Said to the client.
    pub reason: String,
}

impl Close {
    fn new(code: CloseCode, reason: &str) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
        }
    }
}

/// What the transport must write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// An encoded server frame in this format.
    Frame(Bytes, Format),
    /// A transport-level ping (the heartbeat).
    Ping,
    /// The last thing to write: close with this reason. `None` when the
    /// transport already failed and nothing more can be said.
    Close(Option<Close>),
}

/// What a transport reports instead of a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A frame far over the limit, refused by the transport unread.
    #[error("frame too large")]
    TooLarge,
    /// The peer broke the transport's framing rules.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection failed (reset, broken pipe).
    #[error("connection failed: {0}")]
    Failed(String),
}

#[derive(Debug)]
enum State {
    Open,
    /// Waiting for the request in flight before saying goodbye.
    Closing(Option<Close>),
    /// The close transmit is queued; nothing more happens.
    Closed,
}

/// The protocol state of one connection. See the module docs for the rules.
#[derive(Debug)]
pub struct SessionDriver {
    /// Limits, heartbeat and shutdown settings (shared by every connection).
    config: Arc<ConnectionConfig>,
    /// Frames read but not yet started, in arrival order.
    backlog: VecDeque<(v1::ClientFrame, Format)>,
    /// A request was handed out by [`SessionDriver::next_request`] and not
    /// yet answered through [`SessionDriver::request_done`].
    in_flight: bool,
    /// Format of the latest request: replies and events use it.
    format: Format,
    /// When the client was last heard from (any frame, including pongs).
    last_heard: Instant,
    /// When the next heartbeat is due.
    next_heartbeat: Instant,
    /// When the session's token expires: the connection closes then.
    session_deadline: Option<Instant>,
    /// What to write, in order.
    transmits: VecDeque<Transmit>,
    /// The request rate limit, taken when a request starts.
    bucket: TokenBucket,
    state: State,
}

impl SessionDriver {
    /// A driver for a connection opened at `now`.
    pub fn new(config: Arc<ConnectionConfig>, now: Instant) -> Self {
        let next_heartbeat = now + heartbeat(&config);
        let bucket = TokenBucket::new(config.requests_per_second, config.request_burst, now);
        Self {
            bucket,
            config,
            backlog: VecDeque::new(),
            in_flight: false,
            format: Format::Binary,
            last_heard: now,
            next_heartbeat,
            session_deadline: None,
            transmits: VecDeque::new(),
            state: State::Open,
        }
    }

    /// True while the connection accepts input and events.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// True once the close transmit is queued.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True while the transport should read: open, and the read-ahead is not full.
    pub fn wants_input(&self) -> bool {
        self.is_open() && self.backlog.len() < MAX_PIPELINE
    }

    /// The format events are written in (the latest request's).
    pub fn format(&self) -> Format {
        self.format
    }

    /// A frame arrived from the client.
    pub fn handle_frame(&mut self, now: Instant, data: &[u8], format: Format) {
        if !self.is_open() {
            return;
        }
        self.last_heard = now;
        match decode(data, format, self.config.max_frame_bytes) {
            Ok(frame) => {
                if !self.in_flight && self.backlog.is_empty() {
                    self.format = format;
                }
                self.backlog.push_back((frame, format));
            }
            // Not decodable, so no request id: answered with 0.
            Err(e) => self.push_frame(&v1::ServerFrame::error(0, e.code(), e.message()), format),
        }
    }

    /// The client answered a ping, or sent anything else that is not a frame.
    pub fn handle_activity(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The transport failed or refused a frame; the connection closes.
    pub fn handle_transport_error(&mut self, error: &TransportError) {
        let close = match error {
            TransportError::TooLarge => Some(Close::new(CloseCode::TooLarge, "frame too large")),
            TransportError::Protocol(_) => Some(Close::new(CloseCode::ProtocolError, "protocol error")),
            TransportError::Failed(_) => None,
        };
        self.begin_close(close);
    }

    /// The client closed the connection (or it was lost): nothing more can
    /// be written, but the request in flight still finishes.
    pub fn handle_peer_closed(&mut self) {
        self.begin_close(None);
    }

    /// A write failed or timed out: the connection is dead.
    pub fn handle_write_failed(&mut self) {
        self.transmits.clear();
        self.begin_close(None);
    }

    /// The next request to run, if none is in flight. The caller runs it and
    /// reports the outcome with [`SessionDriver::request_done`]. Requests
    /// over the rate limit are answered `RATE_LIMITED` here and never run.
    pub fn next_request(&mut self, now: Instant) -> Option<v1::ClientFrame> {
        if self.in_flight || !self.is_open() {
            return None;
        }
        loop {
            let (frame, format) = self.backlog.pop_front()?;
            if self.backlog.is_empty() {
                // Give the read-ahead buffer back: idle connections keep none.
                self.backlog = VecDeque::new();
            }
            self.format = format;
            if !self.bucket.try_take(now) {
                let e = Error::RateLimited("too many requests on this connection".into());
                self.push_frame(
                    &v1::ServerFrame::error(frame.request_id, e.code(), e.message()),
                    format,
                );
                continue;
            }
            self.in_flight = true;
            return Some(frame);
        }
    }

    /// The request handed out last was answered at `now`.
    pub fn request_done(&mut self, now: Instant, outcome: &Outcome) {
        self.in_flight = false;
        if let Some(lifetime) = outcome.session_lifetime {
            self.session_deadline = Some(now + lifetime);
        }
        let format = self.format;
        self.push_frame(&outcome.reply, format);
        match &mut self.state {
            // Closing already (shutdown, the peer left): the reason decided
            // then stands, whatever the request asked for.
            State::Closing(close) => {
                let close = close.take();
                self.finish_close(close);
            }
            State::Open => {
                if let Some(reason) = &outcome.close {
                    let code = if outcome.reply_is_version_error() {
                        CloseCode::ProtocolError
                    } else {
                        CloseCode::Normal
                    };
                    self.begin_close(Some(Close::new(code, reason)));
                }
            }
            State::Closed => {}
        }
    }

    /// An event (or an embedder's close) from the session's queue.
    pub fn handle_event(&mut self, item: Outbound) {
        if !self.is_open() {
            return;
        }
        match item {
            Outbound::Event(event) => {
                let format = self.format;
                self.transmits
                    .push_back(Transmit::Frame(event.encoded(format), format));
            }
            Outbound::Close(reason) => {
                self.begin_close(Some(Close::new(CloseCode::PolicyViolation, &reason)))
            }
        }
    }

    /// The session's queue dropped events: close so that the client resyncs.
    pub fn handle_overflow(&mut self) {
        self.begin_close(Some(Close::new(
            CloseCode::TryAgainLater,
            "too slow: events were dropped, resync",
        )));
    }

    /// When [`SessionDriver::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = match self.session_deadline {
            Some(deadline) => deadline.min(self.next_heartbeat),
            None => self.next_heartbeat,
        };
        self.is_open().then_some(next)
    }

    /// Time passed: pings, closes an idle connection, ends a session whose
    /// token expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_open() {
            return;
        }
        if self.session_deadline.is_some_and(|d| now >= d) {
            self.begin_close(Some(Close::new(CloseCode::TokenExpired, "token expired")));
            return;
        }
        if now < self.next_heartbeat {
            return;
        }
        let idle = Duration::from_millis(u64::from(self.config.idle_timeout_ms));
        if now.saturating_duration_since(self.last_heard) >= idle && !self.in_flight {
            self.begin_close(Some(Close::new(CloseCode::GoingAway, "idle timeout")));
            return;
        }
        self.transmits.push_back(Transmit::Ping);
        self.next_heartbeat = now + heartbeat(&self.config);
    }

    /// The server is shutting down: finish the request in flight, tell the
    /// client when to come back, close.
    pub fn shutdown(&mut self) {
        self.begin_close(Some(Close::new(CloseCode::GoingAway, "server shutting down")));
    }

    /// True while something waits to be written.
    pub fn has_transmits(&self) -> bool {
        !self.transmits.is_empty()
    }

    /// The next thing to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if self.transmits.is_empty() {
            // Idle connections keep no buffer: a few hundred bytes each.
            self.transmits = VecDeque::new();
        }
        t
    }

    fn push_frame(&mut self, frame: &v1::ServerFrame, format: Format) {
        self.transmits
            .push_back(Transmit::Frame(codec::encode(frame, format), format));
    }

    fn begin_close(&mut self, close: Option<Close>) {
        if !self.is_open() {
            return;
        }
        if self.in_flight {
            self.state = State::Closing(close);
        } else {
            self.finish_close(close);
        }
    }

    fn finish_close(&mut self, close: Option<Close>) {
        for (frame, format) in std::mem::take(&mut self.backlog) {
            let refused = v1::ServerFrame::error(
                frame.request_id,
                v1::ErrorCode::Unavailable,
                "the connection is closing; retry",
            );
            self.push_frame(&refused, format);
        }
        let notice = match &close {
            Some(c) if c.code == CloseCode::GoingAway => {
                Some((c, v1::CloseReason::GoingAway, self.config.reconnect_after_ms))
            }
            Some(c) if c.code == CloseCode::TokenExpired => Some((c, v1::CloseReason::TokenExpired, 0)),
            _ => None,
        };
        if let Some((c, code, reconnect_after_ms)) = notice {
            let closing = v1::ServerFrame::event(v1::event::Kind::Closing(v1::Closing {
                reason: c.reason.clone(),
                reconnect_after_ms,
                code: code as i32,
            }));
            let format = self.format;
            self.push_frame(&closing, format);
        }
        self.transmits.push_back(Transmit::Close(close));
        self.state = State::Closed;
    }
}

fn heartbeat(config: &ConnectionConfig) -> Duration {
    Duration::from_millis(u64::from(config.heartbeat_interval_ms.max(1)))
}

/// Decodes a frame, or says in a typed error why it cannot be.
fn decode(data: &[u8], format: Format, limit: usize) -> Result<v1::ClientFrame, Error> {
    codec::decode(data, format, limit).map_err(|e| match e {
        CodecError::TooLarge { .. } => Error::TooLarge(e.to_string()),
        _ => Error::InvalidArgument(e.to_string()),
    })
}

#[cfg(test)]
mod tests;
