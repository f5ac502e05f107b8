//! The HTTP side of files: where the server is, how a connection to it is
//! opened (pluggable; TLS by default for `https`), one request per connection,
//! and the server's JSON errors.

use crate::tls::{ALPN_HTTP1, TlsConfig};
use crate::{Error, Result, v1};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};

/// The error of a request body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A byte stream to the server (a TCP connection, or TLS over one).
pub trait HttpIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> HttpIo for T {}

/// A boxed future of a connection.
pub type Connecting = Pin<Box<dyn Future<Output = Result<Box<dyn HttpIo>>> + Send>>;

/// Opens connections for the file client: plain TCP for `http`, TLS over it
/// for `https` (the scheme of a `wss://` server URL). The default is
/// [`TlsHttpConnector`]; an application may route through a proxy or its
/// own TLS stack instead.
pub trait HttpConnector: Send + Sync + std::fmt::Debug + 'static {
    /// A connection to `host:port` for `scheme` (`http` or `https`).
    fn connect(&self, scheme: &str, host: &str, port: u16) -> Connecting;
}

/// TCP, with TLS (rustls, verified with a [`TlsConfig`]) for `https`.
/// [`Client::files`](crate::Client::files) uses the client's own
/// [`TlsConfig`](crate::ClientConfig::tls), so files are verified exactly as
/// the chat connection is; a refused certificate is an [`Error::Tls`].
#[derive(Debug, Clone, Default)]
pub struct TlsHttpConnector {
    tls: TlsConfig,
}

impl TlsHttpConnector {
    /// Verifies `https` servers with `tls`.
    pub fn new(tls: TlsConfig) -> Self {
        Self { tls }
    }
}

impl HttpConnector for TlsHttpConnector {
    fn connect(&self, scheme: &str, host: &str, port: u16) -> Connecting {
        let (scheme, host, tls) = (scheme.to_owned(), host.to_owned(), self.tls.clone());
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| Error::Connect(format!("{host}:{port}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            match scheme.as_str() {
                "http" => Ok(Box::new(tcp) as Box<dyn HttpIo>),
                "https" => Ok(Box::new(tls.connect(&host, tcp, &[ALPN_HTTP1]).await?) as Box<dyn HttpIo>),
                other => Err(Error::Connect(format!("no HTTP over {other}"))),
            }
        })
    }
}

/// The server's HTTP origin, from its WebSocket (or HTTP) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Origin {
    /// `ws://h:p/...` → `http://h:p`, `wss://` → `https://`; `http(s)://` as is.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Connect(format!("not a URL: {url}")))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => ("http", 80),
            "wss" | "https" => ("https", 443),
            other => return Err(Error::Connect(format!("no HTTP for scheme {other}"))),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| Error::Connect(format!("bad port in {url}")))?,
            ),
            _ => (authority.to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(Error::Connect(format!("no host in {url}")));
        }
        Ok(Self { scheme, host, port })
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Sends one request on a new connection; the response's body streams.
pub(crate) async fn send(
    connector: &dyn HttpConnector,
    origin: &Origin,
    req: hyper::http::request::Builder,
    body: Body,
) -> Result<Response<Incoming>> {
    let io = connector
        .connect(origin.scheme, &origin.host, origin.port)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req: Request<Body> = req
        .header(hyper::header::HOST, origin.authority())
        .body(body)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| Error::Http(e.to_string()))
}

/// A response's body as JSON (small bodies only).
pub(crate) async fn json(resp: Response<Incoming>) -> Result<serde_json::Value> {
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Http(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad JSON from the server: {e}")))
}

/// The server's `{"error":{"code","message"}}` as an [`Error::Server`].
pub(crate) async fn server_error(resp: Response<Incoming>) -> Error {
    let status = resp.status();
    match json(resp).await {
        Ok(v) => Error::Server {
            code: v["error"]["code"]
                .as_str()
                .and_then(v1::ErrorCode::from_str_name)
                .unwrap_or(v1::ErrorCode::Internal),
            message: v["error"]["message"].as_str().unwrap_or_default().to_owned(),
        },
        Err(_) => Error::Http(format!("HTTP {status}")),
    }
}

pub(crate) fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_from_server_urls() {
        let o = Origin::parse("ws://127.0.0.1:8080/v1/ws").unwrap();
        assert_eq!((o.scheme, o.host.as_str(), o.port), ("http", "127.0.0.1", 8080));
        let o = Origin::parse("wss://chat.example.com/v1/ws").unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.port),
            ("https", "chat.example.com", 443)
        );
        let o = Origin::parse("ws://[::1]:9000/v1/ws").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("[::1]", 9000));
        assert!(Origin::parse("grpc://x:1").is_err());
        assert!(Origin::parse("nonsense").is_err());
    }
}
