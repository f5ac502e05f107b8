//! How the client reaches a server: a [`Connector`] opens a [`FrameChannel`]
//! to a URL. [`UrlConnector`], the default, picks [`WebSocketConnector`]
//! (`ws://`, `wss://`) or [`GrpcConnector`] (`grpc://`) by the URL's scheme;
//! an embedder can plug in another (an in-process channel to an engine in
//! the same binary, a test transport). Secure URLs trust the roots of
//! [`ConnectOptions::tls`].

use crate::tls::{ALPN_HTTP1, TlsConfig};
use crate::{Error, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use im_protocol::Format;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// How long opening a connection may take: TCP, TLS and the WebSocket
/// handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the client writes to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToServer {
    /// An encoded client frame.
    Frame(Bytes),
    /// Close the connection cleanly.
    Close,
}

/// What the server sent, or how the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromServer {
    /// An encoded server frame.
    Frame(Bytes),
    /// The connection ended; the transport's close code (WebSocket numbering)
    /// if the server sent one, and the reason.
    Closed {
        /// The close code, if the server said goodbye.
        code: Option<u16>,
        /// Why, in words.
        reason: String,
    },
}

/// An open connection as two channels of encoded frames in the client's
/// [`Format`]. Dropping `to_server` closes the connection.
#[derive(Debug)]
pub struct FrameChannel {
    /// Frames to write, in order.
    pub to_server: mpsc::UnboundedSender<ToServer>,
    /// Frames read, in order, ending with one [`FromServer::Closed`].
    pub from_server: mpsc::UnboundedReceiver<FromServer>,
}

/// A boxed future returned by a [`Connector`].
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = Result<FrameChannel>> + Send + 'a>>;

/// What a [`Connector`] needs besides the URL, from the client's
/// [`ClientConfig`](crate::ClientConfig).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The encoding of frames.
    pub format: Format,
    /// The roots trusted for secure URLs (`wss://`, `grpcs://`, `https://`).
    pub tls: TlsConfig,
}

impl ConnectOptions {
    /// Options with these settings.
    pub fn new(format: Format, tls: TlsConfig) -> Self {
        Self { format, tls }
    }
}

/// Opens connections to a server.
pub trait Connector: Send + Sync + std::fmt::Debug + 'static {
    /// Connects to `url`; frames travel in `options.format`, secure URLs
    /// trust `options.tls`.
    fn connect<'a>(&'a self, url: &'a str, options: &'a ConnectOptions) -> ConnectFuture<'a>;
}

mod grpc;

pub use grpc::GrpcConnector;
pub(crate) use grpc::is_grpc_url;

/// The default connector: by the URL's scheme, `ws://` and `wss://` over
/// [`WebSocketConnector`], `grpc://` and `grpcs://` over [`GrpcConnector`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UrlConnector;

impl Connector for UrlConnector {
    fn connect<'a>(&'a self, url: &'a str, options: &'a ConnectOptions) -> ConnectFuture<'a> {
        if is_grpc_url(url) {
            GrpcConnector.connect(url, options)
        } else {
            WebSocketConnector.connect(url, options)
        }
    }
}

/// `ws://` and `wss://` URLs over tokio-tungstenite (TLS by rustls: see
/// [`TlsConfig`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebSocketConnector;

impl Connector for WebSocketConnector {
    fn connect<'a>(&'a self, url: &'a str, options: &'a ConnectOptions) -> ConnectFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect_websocket(url, options)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Connect(format!("{url}: timed out"))),
            }
        })
    }
}

async fn connect_websocket(url: &str, options: &ConnectOptions) -> Result<FrameChannel> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20));
    let request = url
        .into_client_request()
        .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(Error::Connect(format!("{url}: expected a ws:// or wss:// URL"))),
    };
    let host = uri
        .host()
        .ok_or_else(|| Error::Connect(format!("{url}: no host")))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if secure {
        let tls = options.tls.connect(&host, tcp, &[ALPN_HTTP1]).await?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tls, Some(config))
            .await
            .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
        Ok(pump(ws, options.format))
    } else {
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
        Ok(pump(ws, options.format))
    }
}

/// Moves frames between the channels and the socket on a task of its own.
fn pump<S>(ws: WebSocketStream<S>, format: Format) -> FrameChannel
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (to_server, mut outgoing) = mpsc::unbounded_channel::<ToServer>();
    let (incoming, from_server) = mpsc::unbounded_channel::<FromServer>();
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let message = |bytes: Bytes| match format {
            Format::Binary => Message::Binary(bytes),
            // The codec writes JSON as UTF-8; anything else is sent as binary.
            Format::Json => match Utf8Bytes::try_from(bytes.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(bytes),
            },
        };
        let (code, reason) = loop {
            tokio::select! {
                out = outgoing.recv() => {
                    let mut next = out;
                    let mut ok = true;
                    let mut closing = false;
                    // Everything queued goes out with one flush.
                    while let Some(item) = next.take() {
                        let msg = match item {
                            ToServer::Frame(bytes) => message(bytes),
                            ToServer::Close => {
                                closing = true;
                                Message::Close(None)
                            }
                        };
                        ok = sink.feed(msg).await.is_ok();
                        if !ok || closing {
                            break;
                        }
                        next = outgoing.try_recv().ok();
                    }
                    if !ok || sink.flush().await.is_err() {
                        break (None, "write failed".to_owned());
                    }
                    if closing {
                        break (None, "closed by client".to_owned());
                    }
                    if outgoing.is_closed() && outgoing.is_empty() {
                        let _ = sink.send(Message::Close(None)).await;
                        break (None, "closed by client".to_owned());
                    }
                }
                read = stream.next() => match read {
                    Some(Ok(Message::Binary(b))) => {
                        let _ = incoming.send(FromServer::Frame(b));
                    }
                    Some(Ok(Message::Text(t))) => {
                        let _ = incoming.send(FromServer::Frame(Bytes::from(t)));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, "closed by server".to_owned()),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break (None, e.to_string()),
                    None => break (None, "connection lost".to_owned()),
                },
            }
        };
        let _ = incoming.send(FromServer::Closed { code, reason });
    });
    FrameChannel {
        to_server,
        from_server,
    }
}
