//! Files over HTTP: upload from a path or any `AsyncRead` with progress,
//! resumed after a dropped connection; download to a path or any
//! `AsyncWrite`, resumed with `Range`; the files others shared with you;
//! messages that carry a file.
//!
//! The server is the one of the client's URL (`ws://` → `http://`,
//! `wss://` → `https://`). An upload is begun with `POST /v1/files`
//! (declaring the size), then sent in parts of [`FileClient::part_size`]
//! with `PATCH` at the stored offset; after a failure the client asks the
//! offset (`HEAD`) and continues from there. Only the part in flight is held
//! in memory, so a stream that cannot be re-read still resumes.

mod download;
mod http;
mod upload;

pub use http::{Connecting, HttpConnector, HttpIo, TlsHttpConnector};

use crate::{Client, Error, Result, v1};
use http::{Origin, empty, json, send, server_error};
use hyper::Method;
use hyper::header;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A file's metadata as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FileInfo {
    /// The server's id of the file.
    pub id: String,
    /// Its (sanitized) name, for display.
    pub name: String,
    /// Declared size, bytes.
    pub size: u64,
    /// Bytes stored (equals `size` once complete).
    pub offset: u64,
    /// Every byte is stored.
    pub complete: bool,
    /// Sniffed by the server.
    pub mime_type: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Who uploaded it.
    pub uploader_id: u64,
    /// For a received file: the conversation it was shared in.
    pub conversation_id: Option<u64>,
}

impl FileInfo {
    fn from_json(v: &serde_json::Value) -> Self {
        Self {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            size: v["size"].as_u64().unwrap_or(0),
            offset: v["offset"].as_u64().unwrap_or(0),
            complete: v["status"] == "complete",
            mime_type: v["mime_type"].as_str().unwrap_or_default().to_owned(),
            sha256: v["sha256"].as_str().unwrap_or_default().to_owned(),
            uploader_id: v["uploader_id"].as_u64().unwrap_or(0),
            conversation_id: v["conversation_id"].as_u64(),
        }
    }
}

/// How far a transfer is: bytes done out of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes sent (upload) or written (download) so far.
    pub done: u64,
    /// The file's size.
    pub total: u64,
}

/// What an upload declares besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The name to show (the server sanitizes it).
    pub name: String,
    /// Pixels, for images and videos.
    pub width: Option<u32>,
    /// Pixels, for images and videos.
    pub height: Option<u32>,
    /// Length of audio or video, ms.
    pub duration_ms: Option<u32>,
    /// A thumbnail uploaded before as a file of its own.
    pub thumbnail_id: Option<String>,
    /// Progress reports (bytes the server has taken).
    pub progress: Option<watch::Sender<Progress>>,
}

impl Upload {
    /// An upload named `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// The kind of message a file is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A picture.
    Image,
    /// A sound file.
    Audio,
    /// A video.
    Video,
    /// A voice note recorded in the app.
    Voice,
    /// Any other file.
    File,
}

/// Files over HTTP for one user (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct FileClient {
    origin: Origin,
    token: Arc<dyn Fn() -> String + Send + Sync>,
    connector: Arc<dyn HttpConnector>,
    part_size: usize,
    retries: u32,
}

impl std::fmt::Debug for FileClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileClient")
            .field("origin", &self.origin)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Files on this client's server (`ws://` → `http://`, `wss://` →
    /// `https://` verified with the client's [`TlsConfig`](crate::TlsConfig)),
    /// with its token. A client on `grpc://` URLs does not know the server's
    /// HTTP port: make a [`FileClient::new`] with it (or use the gRPC
    /// `Files` service).
    pub fn files(&self) -> Result<FileClient> {
        let url = self.config_url();
        if crate::transport::is_grpc_url(&url) {
            return Err(Error::Connect(format!(
                "{url}: files travel over HTTP; make a FileClient with the server's http:// or https:// URL"
            )));
        }
        let client = self.clone();
        let connector = TlsHttpConnector::new(self.tls_config());
        Ok(FileClient::new(&url, move || client.token())?.connector(Arc::new(connector)))
    }

    /// Sends a message carrying an uploaded file (the server fills in its
    /// name, type, size and hash).
    pub fn send_file(
        &self,
        target: v1::send_message::Target,
        kind: MediaKind,
        file_id: &str,
        caption: &str,
    ) -> impl std::future::Future<Output = Result<v1::SendAck>> + use<> {
        let media = v1::Media {
            file_id: file_id.to_owned(),
            caption: caption.to_owned(),
            ..Default::default()
        };
        use v1::content::Kind;
        let kind = match kind {
            MediaKind::Image => Kind::Image(media),
            MediaKind::Audio => Kind::Audio(media),
            MediaKind::Video => Kind::Video(media),
            MediaKind::Voice => Kind::Voice(media),
            MediaKind::File => Kind::File(media),
        };
        self.send(target, v1::Content { kind: Some(kind) })
    }
}

impl FileClient {
    /// Files on the server of `url` (`ws://`, `wss://`, `http://` or
    /// `https://`), authenticated with the token `token` returns.
    pub fn new(url: &str, token: impl Fn() -> String + Send + Sync + 'static) -> Result<Self> {
        Ok(Self {
            origin: Origin::parse(url)?,
            token: Arc::new(token),
            connector: Arc::new(TlsHttpConnector::default()),
            part_size: 8 << 20,
            retries: 8,
        })
    }

    /// How connections are opened (default: [`TlsHttpConnector`] with the
    /// system's roots).
    pub fn connector(mut self, connector: Arc<dyn HttpConnector>) -> Self {
        self.connector = connector;
        self
    }

    /// Bytes per `PATCH` (default 8 MiB): what is held in memory, and
    /// resent at most after a failure.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// Consecutive failures tolerated before a transfer gives up (default 8).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", (self.token)()))
    }

    /// The stored offset of an upload (`HEAD`).
    pub async fn offset(&self, id: &str) -> Result<u64> {
        let resp = send(
            &*self.connector,
            &self.origin,
            self.request(Method::HEAD, &format!("/v1/files/{id}")),
            empty(),
        )
        .await?;
        if !resp.status().is_success() {
            return Err(match resp.status().as_u16() {
                404 => Error::Server {
                    code: v1::ErrorCode::NotFound,
                    message: format!("no file {id}"),
                },
                403 => Error::Server {
                    code: v1::ErrorCode::PermissionDenied,
                    message: format!("file {id}"),
                },
                s => Error::Http(format!("HEAD answered {s}")),
            });
        }
        let header = |name: hyper::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        header(hyper::header::HeaderName::from_static("upload-offset"))
            .or_else(|| header(header::CONTENT_LENGTH))
            .ok_or_else(|| Error::Protocol("HEAD without Upload-Offset".into()))
    }

    async fn with_retries<F, Fut, T>(&self, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut failures = 0;
        loop {
            match f().await {
                Err(e) if e.is_transient() && failures < self.retries => {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
                other => return other,
            }
        }
    }

    /// Files others shared in your conversations, most recent first.
    pub async fn received(&self, limit: u32) -> Result<Vec<FileInfo>> {
        let resp = self
            .with_retries(|| {
                send(
                    &*self.connector,
                    &self.origin,
                    self.request(Method::GET, &format!("/v1/files?limit={limit}")),
                    empty(),
                )
            })
            .await?;
        if resp.status() != 200 {
            return Err(server_error(resp).await);
        }
        let v = json(resp).await?;
        Ok(v["files"]
            .as_array()
            .map(|a| a.iter().map(FileInfo::from_json).collect())
            .unwrap_or_default())
    }
}

pub(super) fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5))
}

/// A request builder cannot be cloned; this rebuilds one with the same parts.
pub(super) fn req_clone(req: &hyper::http::request::Builder) -> hyper::http::request::Builder {
    let mut out = hyper::Request::builder();
    if let (Some(method), Some(uri), Some(headers)) = (req.method_ref(), req.uri_ref(), req.headers_ref()) {
        out = out.method(method.clone()).uri(uri.clone());
        for (k, v) in headers {
            out = out.header(k, v);
        }
    }
    out
}
