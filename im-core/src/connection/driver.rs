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
mod tests {
    use super::*;
    use crate::event::SharedEvent;
    use im_protocol::v1::response::Result as Reply;

    fn driver(now: Instant) -> SessionDriver {
        SessionDriver::new(Arc::new(ConnectionConfig::default()), now)
    }

    fn ping_frame(id: u64, format: Format) -> Bytes {
        codec::encode(
            &v1::ClientFrame {
                request_id: id,
                body: Some(v1::client_frame::Body::Ping(v1::Ping {})),
            },
            format,
        )
    }

    fn ok(id: u64) -> Outcome {
        Outcome {
            reply: v1::ServerFrame::response(id, Reply::Ok(v1::Empty {})),
            session: None,
            close: None,
            session_lifetime: None,
        }
    }

    fn decoded(t: Transmit) -> v1::ServerFrame {
        match t {
            Transmit::Frame(b, f) => codec::decode(&b, f, usize::MAX).unwrap(),
            other => panic!("not a frame: {other:?}"),
        }
    }

    fn response_id(t: Transmit) -> (u64, Option<i32>) {
        match decoded(t).body {
            Some(v1::server_frame::Body::Response(r)) => {
                let code = match r.result {
                    Some(Reply::Error(e)) => Some(e.code),
                    _ => None,
                };
                (r.request_id, code)
            }
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn requests_run_one_at_a_time_in_order_with_bounded_read_ahead() {
        let now = Instant::now();
        let mut d = driver(now);
        for id in 1..=MAX_PIPELINE as u64 {
            assert!(d.wants_input());
            d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
        }
        assert!(!d.wants_input(), "read-ahead is bounded");
        let first = d.next_request(now).unwrap();
        assert_eq!(first.request_id, 1);
        assert!(d.next_request(now).is_none(), "one request at a time");
        assert!(d.wants_input());
        d.request_done(now, &ok(1));
        assert_eq!(response_id(d.poll_transmit().unwrap()), (1, None));
        assert_eq!(d.next_request(now).unwrap().request_id, 2);
    }

    #[test]
    fn requests_over_the_rate_limit_are_refused_without_running() {
        let now = Instant::now();
        let config = ConnectionConfig {
            requests_per_second: 1.0,
            request_burst: 2.0,
            ..Default::default()
        };
        let mut d = SessionDriver::new(Arc::new(config), now);
        for id in 1..=3 {
            d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
        }
        for id in 1..=2 {
            assert_eq!(d.next_request(now).unwrap().request_id, id);
            d.request_done(now, &ok(id));
            assert_eq!(response_id(d.poll_transmit().unwrap()), (id, None));
        }
        assert!(d.next_request(now).is_none());
        assert_eq!(
            response_id(d.poll_transmit().unwrap()),
            (3, Some(v1::ErrorCode::RateLimited as i32))
        );
        d.handle_frame(now, &ping_frame(4, Format::Binary), Format::Binary);
        let later = now + Duration::from_secs(1);
        assert_eq!(d.next_request(later).unwrap().request_id, 4, "a token per second");
    }

    #[test]
    fn undecodable_frame_is_answered_with_request_id_zero_in_its_format() {
        let now = Instant::now();
        let mut d = driver(now);
        d.handle_frame(now, b"{not json", Format::Json);
        match d.poll_transmit().unwrap() {
            Transmit::Frame(b, Format::Json) => {
                let text = std::str::from_utf8(&b).unwrap();
                assert!(text.contains("INVALID_ARGUMENT"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let too_big = vec![0u8; ConnectionConfig::default().max_frame_bytes + 1];
        d.handle_frame(now, &too_big, Format::Binary);
        assert_eq!(
            response_id(d.poll_transmit().unwrap()),
            (0, Some(v1::ErrorCode::TooLarge as i32))
        );
        assert!(d.is_open(), "bad frames do not close the connection");
    }

    #[test]
    fn events_follow_the_format_of_the_latest_request() {
        let now = Instant::now();
        let mut d = driver(now);
        d.handle_frame(now, &ping_frame(1, Format::Json), Format::Json);
        d.next_request(now).unwrap();
        d.request_done(now, &ok(1));
        d.poll_transmit().unwrap();
        d.handle_event(Outbound::Event(SharedEvent::new(v1::event::Kind::Typing(
            v1::TypingEvent::default(),
        ))));
        assert!(matches!(
            d.poll_transmit(),
            Some(Transmit::Frame(_, Format::Json))
        ));
    }

    #[test]
    fn heartbeat_pings_then_idle_client_is_closed_with_paused_time() {
        let start = Instant::now();
        let config = ConnectionConfig::default();
        let beat = Duration::from_millis(u64::from(config.heartbeat_interval_ms));
        let mut d = driver(start);
        assert_eq!(d.poll_timeout(), Some(start + beat));
        d.handle_timeout(start + beat / 2);
        assert!(d.poll_transmit().is_none(), "not due yet");
        d.handle_timeout(start + beat);
        assert_eq!(d.poll_transmit(), Some(Transmit::Ping));
        // The client answers the first ping, then goes silent.
        d.handle_activity(start + beat);
        let mut now = start + beat;
        let idle = Duration::from_millis(u64::from(config.idle_timeout_ms));
        while d.is_open() {
            now = d.poll_timeout().unwrap();
            d.handle_timeout(now);
            assert!(
                now <= start + beat + idle + beat,
                "closed within one heartbeat of the idle limit"
            );
        }
        assert!(now >= start + beat + idle);
        let last: Vec<_> = std::iter::from_fn(|| d.poll_transmit()).collect();
        assert!(matches!(
            last.last(),
            Some(Transmit::Close(Some(Close {
                code: CloseCode::GoingAway,
                ..
            })))
        ));
    }

    #[test]
    fn shutdown_finishes_the_request_in_flight_refuses_the_rest_and_says_when_to_return() {
        let now = Instant::now();
        let mut d = driver(now);
        for id in 1..=3 {
            d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
        }
        d.next_request(now).unwrap();
        d.shutdown();
        assert!(!d.is_open() && !d.is_closed(), "waits for the request in flight");
        assert!(d.poll_transmit().is_none());
        d.request_done(now, &ok(1));
        assert_eq!(response_id(d.poll_transmit().unwrap()), (1, None));
        for id in 2..=3 {
            assert_eq!(
                response_id(d.poll_transmit().unwrap()),
                (id, Some(v1::ErrorCode::Unavailable as i32))
            );
        }
        match decoded(d.poll_transmit().unwrap()).body {
            Some(v1::server_frame::Body::Event(v1::Event {
                kind: Some(v1::event::Kind::Closing(c)),
            })) => assert_eq!(
                c.reconnect_after_ms,
                ConnectionConfig::default().reconnect_after_ms
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d.poll_transmit(),
            Some(Transmit::Close(Some(Close {
                code: CloseCode::GoingAway,
                ..
            })))
        ));
        assert!(d.is_closed());
    }

    #[test]
    fn a_session_ends_when_its_token_expires_with_a_typed_reason() {
        let now = Instant::now();
        let mut d = driver(now);
        d.handle_frame(now, &ping_frame(1, Format::Json), Format::Json);
        d.next_request(now).unwrap();
        let mut hello = ok(1);
        hello.session_lifetime = Some(Duration::from_secs(5));
        d.request_done(now, &hello);
        d.poll_transmit().unwrap();
        assert_eq!(
            d.poll_timeout(),
            Some(now + Duration::from_secs(5)),
            "before the first heartbeat"
        );
        d.handle_timeout(now + Duration::from_secs(4));
        assert!(d.is_open());
        d.handle_timeout(now + Duration::from_secs(5));
        match decoded(d.poll_transmit().unwrap()).body {
            Some(v1::server_frame::Body::Event(v1::Event {
                kind: Some(v1::event::Kind::Closing(c)),
            })) => {
                assert_eq!(c.code, v1::CloseReason::TokenExpired as i32);
                assert_eq!(c.reconnect_after_ms, 0);
            }
            other => panic!("{other:?}"),
        }
        match d.poll_transmit() {
            Some(Transmit::Close(Some(c))) => {
                assert_eq!(c.code, CloseCode::TokenExpired);
                assert_eq!(c.code.websocket(), 4001);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_logout_answered_while_closing_still_ends_the_connection() {
        let now = Instant::now();
        for begin in [
            SessionDriver::handle_peer_closed as fn(&mut SessionDriver),
            SessionDriver::shutdown,
        ] {
            let mut d = driver(now);
            d.handle_frame(now, &ping_frame(1, Format::Binary), Format::Binary);
            d.next_request(now).unwrap();
            begin(&mut d);
            let mut logout = ok(1);
            logout.close = Some("logged out".into());
            d.request_done(now, &logout);
            assert!(d.is_closed(), "no request in flight, nothing left to wait for");
            let last = std::iter::from_fn(|| d.poll_transmit()).last();
            assert!(matches!(last, Some(Transmit::Close(_))), "{last:?}");
        }
    }

    #[test]
    fn overflow_and_transport_errors_close_with_their_codes() {
        let now = Instant::now();
        let mut d = driver(now);
        d.handle_overflow();
        assert!(matches!(
            d.poll_transmit(),
            Some(Transmit::Close(Some(Close {
                code: CloseCode::TryAgainLater,
                ..
            })))
        ));
        let mut d = driver(now);
        d.handle_transport_error(&TransportError::TooLarge);
        assert!(matches!(
            d.poll_transmit(),
            Some(Transmit::Close(Some(Close {
                code: CloseCode::TooLarge,
                ..
            })))
        ));
        let mut d = driver(now);
        d.handle_peer_closed();
        assert_eq!(d.poll_transmit(), Some(Transmit::Close(None)));
    }
}
