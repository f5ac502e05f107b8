//! The WebSocket transport: the upgrade handshake, and bytes to frames and
//! socket writes. Every protocol rule lives in [`im_core::connection`]; this
//! module only implements its [`FrameTransport`].
//!
//! Public so that an embedder can mount the chat protocol in their own
//! hyper (or axum) service:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! # async fn route(engine: im_core::Engine, mut req: hyper::Request<hyper::body::Incoming>)
//! #     -> hyper::Response<Full<Bytes>> {
//! let config = Arc::new(im_core::ConnectionConfig::default());
//! match im_server::websocket::upgrade(&mut req, engine, config, std::future::pending()) {
//!     Ok((response, serve)) => {
//!         tokio::spawn(serve);
//!         response
//!     }
//!     Err(e) => {
//!         let mut refused = hyper::Response::new(Full::new(Bytes::from(e.to_string())));
//!         *refused.status_mut() = hyper::StatusCode::BAD_REQUEST;
//!         refused
//!     }
//! }
//! # }
//! ```

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_core::connection::{Close, FrameTransport, Incoming, Transmit, TransportError, serve};
use im_core::im_protocol::Format;
use im_core::{ConnectionConfig, Engine, Error};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Checks a WebSocket upgrade request and answers it. Returns the
/// `101 Switching Protocols` response to send and the future that serves the
/// connection once hyper hands the socket over (spawn it). A bearer token in
/// the `Authorization` header authenticates the `Hello`; `shutdown`
/// completes when the server stops.
pub fn upgrade<B>(
    req: &mut Request<B>,
    engine: Engine,
    config: Arc<ConnectionConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Response<Full<Bytes>>, impl Future<Output = ()> + Send + 'static), Error> {
    let headers = req.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_upgrade) else {
        return Err(Error::InvalidArgument("expected a WebSocket upgrade".into()));
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(Error::InvalidArgument("WebSocket version 13 required".into()));
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let on_upgrade = hyper::upgrade::on(req);
    let serve_connection = async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let transport =
                    WebSocketTransport::accept(TokioIo::new(upgraded), config.max_frame_bytes).await;
                serve(engine, config, transport, token, shutdown).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    Ok((resp, serve_connection))
}

/// A server-side WebSocket carrying protocol frames: binary messages are
/// protobuf, text messages canonical JSON.
#[derive(Debug)]
pub struct WebSocketTransport<S> {
    ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WebSocketTransport<S> {
    /// Wraps a socket whose upgrade handshake is done. `max_frame_bytes` is
    /// the protocol's frame limit: frames somewhat over it still reach the
    /// driver (and get a typed `TOO_LARGE`); far larger ones close the
    /// connection (1009) unread.
    pub async fn accept(socket: S, max_frame_bytes: usize) -> Self {
        let ws_config = WebSocketConfig::default()
            // Small buffers: an idle connection should cost little.
            .read_buffer_size(512)
            .write_buffer_size(4096)
            // A cap on queued output, not an allocation: replies such as a
            // history page of JSON can be large.
            .max_write_buffer_size(64 << 20)
            .max_message_size(Some(max_frame_bytes * 4))
            .max_frame_size(Some(max_frame_bytes * 4));
        let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(ws_config)).await;
        Self { ws }
    }
}

fn failed(e: WsError) -> TransportError {
    TransportError::Failed(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameTransport for WebSocketTransport<S> {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        Some(match self.ws.next().await? {
            Ok(Message::Binary(b)) => Ok(Incoming::Frame(b, Format::Binary)),
            Ok(Message::Text(t)) => Ok(Incoming::Frame(Bytes::from(t), Format::Json)),
            Ok(Message::Close(_)) => return None,
            // Pings are answered by tungstenite; pings and pongs show the client is alive.
            Ok(_) => Ok(Incoming::Activity),
            Err(WsError::Capacity(_)) => Err(TransportError::TooLarge),
            Err(WsError::Protocol(e)) => Err(TransportError::Protocol(e.to_string())),
            Err(e) => Err(failed(e)),
        })
    }

    async fn feed(&mut self, transmit: Transmit) -> Result<(), TransportError> {
        let msg = match transmit {
            Transmit::Frame(bytes, Format::Binary) => Message::Binary(bytes),
            // JSON from serde_json is always UTF-8.
            Transmit::Frame(bytes, Format::Json) => {
                Message::Text(Utf8Bytes::try_from(bytes).expect("JSON is UTF-8"))
            }
            Transmit::Ping => Message::Ping(Bytes::new()),
            Transmit::Close(_) => return Ok(()),
        };
        self.ws.feed(msg).await.map_err(failed)
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.ws.flush().await.map_err(failed)
    }

    async fn close(&mut self, close: Option<Close>) {
        let Some(close) = close else {
            let _ = self.ws.flush().await;
            return;
        };
        let frame = CloseFrame {
            code: WsCloseCode::from(close.code.websocket()),
            reason: close.reason.into(),
        };
        if self.ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        // Wait briefly for the client's close reply so the close handshake completes.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(msg)) = self.ws.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}
