//! The WebSocket transport: frames in, [`Connection`] calls, replies and
//! events out.
//!
//! One task per connection selects over the socket, the session's event
//! queue, the heartbeat timer and shutdown. Events are already encoded
//! ([`SharedEvent`](im_core::SharedEvent)) and written as shared `Bytes`;
//! several queued events are written with one flush.

use crate::Shared;
use crate::http::error;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_core::connection::Outcome;
use im_core::im_protocol::{CodecError, Format, codec, v1};
use im_core::session::{Outbound, SessionEvents};
use im_core::{Connection, Error};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Events written per flush at most.
const MAX_BATCH: usize = 64;

/// Frames read ahead while a request is in flight; then reading pauses.
const MAX_PIPELINE: usize = 32;

pub(crate) fn upgrade(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    permit: crate::http::PermitSlot,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_upgrade) else {
        return error(&Error::InvalidArgument("expected a WebSocket upgrade".into()));
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return error(&Error::InvalidArgument("WebSocket version 13 required".into()));
    }
    // The connection's permit now belongs to the WebSocket.
    let permit = permit.lock().ok().and_then(|mut slot| slot.take());
    if shared.shutdown.is_cancelled() {
        return error(&Error::Unavailable("server is shutting down".into()));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_shared = shared.clone();
    shared.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let limit = task_shared.config.limits.max_frame_bytes;
                let ws_config = WebSocketConfig::default()
                    // Small buffers: an idle connection should cost little.
                    .read_buffer_size(512)
                    .write_buffer_size(4096)
                    // A cap on queued output, not an allocation: replies such as a
                    // history page of JSON can be large.
                    .max_write_buffer_size(64 << 20)
                    // Frames somewhat over the limit get a typed TOO_LARGE error;
                    // far larger ones close the connection (1009) unread.
                    .max_message_size(Some(limit * 4))
                    .max_frame_size(Some(limit * 4));
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                        .await;
                serve(task_shared, ws, token).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
        drop(permit);
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    resp
}

fn encode(frame: &v1::ServerFrame, format: Format) -> Message {
    wire(codec::encode(frame, format), format)
}

fn wire(bytes: Bytes, format: Format) -> Message {
    match format {
        Format::Binary => Message::Binary(bytes),
        // JSON from serde_json is always UTF-8.
        Format::Json => Message::Text(Utf8Bytes::try_from(bytes).expect("JSON is UTF-8")),
    }
}

fn close_message(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;

async fn next_event(events: &mut Option<SessionEvents>) -> Option<Outbound> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

/// A request being handled: owns the connection state until it is done.
/// Its output is boxed too, so the idle task holds no room for it.
type InFlight = Pin<Box<dyn Future<Output = Box<(Connection, Outcome)>> + Send>>;

fn start(mut conn: Connection, frame: v1::ClientFrame) -> InFlight {
    Box::pin(async move {
        let outcome = conn.handle(frame).await;
        Box::new((conn, outcome))
    })
}

async fn in_flight_done(in_flight: &mut Option<InFlight>) -> Box<(Connection, Outcome)> {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Decodes a frame into a typed error if it cannot be.
fn decode(data: &[u8], format: Format, limit: usize) -> Result<v1::ClientFrame, Error> {
    codec::decode(data, format, limit).map_err(|e| match e {
        CodecError::TooLarge { .. } => Error::TooLarge(e.to_string()),
        _ => Error::InvalidArgument(e.to_string()),
    })
}

/// Serves one WebSocket. Requests of a connection are handled one at a time,
/// in order; while one is in flight (e.g. waiting for its commit) the loop
/// keeps writing events and reads ahead up to `MAX_PIPELINE` frames, after
/// which it stops reading and TCP pushes back on the client.
async fn serve<S>(shared: Arc<Shared>, ws: WebSocketStream<S>, token: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut conn = Some(Connection::new(
        shared.engine.clone(),
        shared.connection.clone(),
        token,
    ));
    let mut in_flight: Option<InFlight> = None;
    let mut backlog: VecDeque<(v1::ClientFrame, Format)> = VecDeque::new();
    let mut events: Option<SessionEvents> = None;
    let mut format = Format::Binary;
    let limit = shared.config.limits.max_frame_bytes;
    let idle_timeout = Duration::from_secs(shared.config.server.idle_timeout_secs);
    let mut heartbeat =
        tokio::time::interval(Duration::from_secs(shared.config.server.heartbeat_interval_secs));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let mut last_heard = Instant::now();

    let close: Option<(CloseCode, String)> = loop {
        // Start the next request once the previous one is answered.
        if in_flight.is_none()
            && let Some((frame, fmt)) = backlog.pop_front()
            && let Some(c) = conn.take()
        {
            if backlog.is_empty() {
                // Give the read-ahead buffer back: idle connections keep none.
                backlog = VecDeque::new();
            }
            format = fmt;
            in_flight = Some(start(c, frame));
        }
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => {
                break Some((CloseCode::Away, "server shutting down".into()));
            }
            done = in_flight_done(&mut in_flight) => {
                in_flight = None;
                let (c, outcome) = *done;
                conn = Some(c);
                // Only the encoded reply lives across the write: an idle
                // connection's task should not reserve room for a frame.
                let (reply, close) = {
                    let outcome = outcome;
                    let version_error = outcome.reply_is_version_error();
                    if let Some(session) = outcome.session {
                        events = Some(session);
                    }
                    let close = outcome.close.map(|reason| {
                        (if version_error { CloseCode::Protocol } else { CloseCode::Normal }, reason)
                    });
                    (encode(&outcome.reply, format), close)
                };
                if !written(sink.send(reply)).await {
                    break None;
                }
                if close.is_some() {
                    break close;
                }
            }
            incoming = stream.next(), if backlog.len() < MAX_PIPELINE => {
                last_heard = Instant::now();
                let (data, fmt) = match incoming {
                    None => break None,
                    Some(Err(e)) => {
                        use tokio_tungstenite::tungstenite::Error as WsError;
                        match e {
                            WsError::Capacity(_) => break Some((CloseCode::Size, "frame too large".into())),
                            WsError::Protocol(_) => break Some((CloseCode::Protocol, "protocol error".into())),
                            _ => break None,
                        }
                    }
                    Some(Ok(Message::Binary(b))) => (b, Format::Binary),
                    Some(Ok(Message::Text(t))) => (Bytes::from(t), Format::Json),
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(_)) => continue, // ping, pong: answered by tungstenite
                };
                let refusal = match decode(&data, fmt, limit) {
                    Ok(frame) => {
                        backlog.push_back((frame, fmt));
                        None
                    }
                    // Not decodable, so no request id: answered with 0.
                    Err(err) => Some(encode(&v1::ServerFrame::error(0, err.code(), err.message()), fmt)),
                };
                if let Some(reply) = refusal
                    && !written(sink.send(reply)).await
                {
                    break None;
                }
                if in_flight.is_none() && backlog.len() == 1 {
                    format = fmt;
                }
            }
            out = next_event(&mut events) => {
                // One time limit for the whole batch: a timer per event would
                // cost more than the write.
                let batch = write_events(&mut sink, &mut events, out, format);
                match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
                    Ok(Ok(())) => {}
                    Ok(Err(close)) => break close,
                    Err(_) => break None,
                }
                if events.as_ref().is_some_and(|e| e.overflowed()) {
                    break Some((CloseCode::Again, "too slow: events were dropped, resync".into()));
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= idle_timeout && in_flight.is_none() {
                    break Some((CloseCode::Away, "idle timeout".into()));
                }
                if !written(sink.send(Message::Ping(Bytes::new()))).await {
                    break None;
                }
            }
        }
    };

    // Boxed: closing runs once, its futures need not live in every idle connection.
    Box::pin(finish(conn, in_flight, backlog, sink, stream, format, close)).await;
}

/// Writes `first` and whatever else is queued (up to `MAX_BATCH`), then
/// flushes once. `Err(Some(close))` asks to close the connection, `Err(None)`
/// means the socket failed.
async fn write_events<S>(
    sink: &mut Sink<S>,
    events: &mut Option<SessionEvents>,
    first: Option<Outbound>,
    format: Format,
) -> Result<(), Option<(CloseCode, String)>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pending = first;
    let mut n = 0;
    while let Some(item) = pending.take() {
        match item {
            Outbound::Event(ev) => {
                sink.feed(wire(ev.encoded(format), format))
                    .await
                    .map_err(|_| None)?;
            }
            Outbound::Close(reason) => return Err(Some((CloseCode::Policy, reason))),
        }
        n += 1;
        if n < MAX_BATCH {
            pending = events.as_mut().and_then(|e| e.try_recv());
        }
    }
    sink.flush().await.map_err(|_| None)
}

/// Longest a single write may wait for the client to read. A client that
/// stops reading is disconnected instead of pinning its session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// True if the write completed in time.
async fn written<E>(write: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

/// Writes the last reply, refuses requests not started, sends the close
/// reason and waits briefly for the client's close reply.
async fn goodbye<S>(
    mut sink: Sink<S>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    format: Format,
    last_reply: Option<v1::ServerFrame>,
    backlog: VecDeque<(v1::ClientFrame, Format)>,
    close: Option<(CloseCode, String)>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Some(reply) = last_reply {
        let _ = sink.feed(encode(&reply, format)).await;
    }
    for (frame, fmt) in backlog {
        let refused = v1::ServerFrame::error(
            frame.request_id,
            v1::ErrorCode::Unavailable,
            "the connection is closing; retry",
        );
        let _ = sink.feed(encode(&refused, fmt)).await;
    }
    let Some((code, reason)) = close else {
        let _ = sink.flush().await;
        return;
    };
    if code == CloseCode::Away {
        let closing = v1::ServerFrame::event(v1::event::Kind::Closing(v1::Closing {
            reason: reason.clone(),
            reconnect_after_ms: 1000,
        }));
        let _ = sink.feed(encode(&closing, format)).await;
    }
    let _ = sink.send(close_message(code, &reason)).await;
    // Wait briefly for the client's close reply so the close handshake completes.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Ends a connection: answers, says goodbye, ends the session.
async fn finish<S>(
    conn: Option<Connection>,
    in_flight: Option<InFlight>,
    backlog: VecDeque<(v1::ClientFrame, Format)>,
    sink: Sink<S>,
    stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    format: Format,
    close: Option<(CloseCode, String)>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A request in flight finishes (its ack may already be committed) and is
    // answered; the goodbye is bounded in time, so a client that stopped
    // reading cannot keep its session registered.
    let (conn, last_reply) = match in_flight {
        Some(f) => {
            let (c, outcome) = *f.await;
            (Some(c), Some(outcome.reply))
        }
        None => (conn, None),
    };
    let goodbye = goodbye(sink, stream, format, last_reply, backlog, close);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, goodbye).await;
    if let Some(conn) = conn {
        conn.close().await;
    }
}
