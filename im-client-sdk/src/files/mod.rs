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

mod http;

pub use http::{Connecting, HttpConnector, HttpIo, TcpHttpConnector};

use crate::{Client, Error, Result, v1};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Origin, empty, json, send, server_error};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::{self, HeaderValue};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    /// Files on this client's server, with its token.
    pub fn files(&self) -> Result<FileClient> {
        let client = self.clone();
        FileClient::new(&self.config_url(), move || client.token())
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
            connector: Arc::new(TcpHttpConnector),
            part_size: 8 << 20,
            retries: 8,
        })
    }

    /// How connections are opened (TLS for `https`).
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

    /// Uploads a file from disk.
    pub async fn upload_path(&self, path: impl AsRef<Path>, mut upload: Upload) -> Result<FileInfo> {
        let path = path.as_ref();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let size = file.metadata().await.map_err(|e| Error::Io(e.to_string()))?.len();
        if upload.name.is_empty() {
            upload.name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        self.upload_reader(file, size, upload).await
    }

    /// Uploads exactly `size` bytes read from `reader`. A dropped connection
    /// is resumed from the server's offset; only the part in flight is kept
    /// in memory to resend.
    pub async fn upload_reader<R: AsyncRead + Unpin + Send>(
        &self,
        mut reader: R,
        size: u64,
        upload: Upload,
    ) -> Result<FileInfo> {
        let mut info = self.begin(size, &upload).await?;
        let report = |done| {
            if let Some(p) = &upload.progress {
                p.send_replace(Progress { done, total: size });
            }
        };
        report(0);
        let mut part_start = 0u64;
        while part_start < size || !info.complete {
            let want = (size - part_start).min(self.part_size as u64) as usize;
            let mut part = BytesMut::with_capacity(want);
            while part.len() < want {
                let n = reader
                    .read_buf(&mut part)
                    .await
                    .map_err(|e| Error::Io(e.to_string()))?;
                if n == 0 {
                    return Err(Error::Io(format!(
                        "the input ended at byte {}, {size} were declared",
                        part_start + part.len() as u64
                    )));
                }
            }
            let part = part.freeze();
            info = self.send_part(&info.id, part_start, part, &report).await?;
            part_start += want as u64;
            if want == 0 {
                break;
            }
        }
        report(size);
        Ok(info)
    }

    /// `POST /v1/files` with the size and metadata, no bytes.
    async fn begin(&self, size: u64, upload: &Upload) -> Result<FileInfo> {
        let mut req = self
            .request(Method::POST, "/v1/files")
            .header("upload-length", size)
            .header(header::CONTENT_LENGTH, 0)
            .header("x-file-name", http_percent(&upload.name));
        for (name, value) in [
            ("x-media-width", upload.width),
            ("x-media-height", upload.height),
            ("x-media-duration-ms", upload.duration_ms),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        if let Some(t) = upload
            .thumbnail_id
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            req = req.header("x-thumbnail-id", t);
        }
        let resp = self
            .with_retries(|| send(&*self.connector, &self.origin, req_clone(&req), empty()))
            .await?;
        if resp.status() != 201 {
            return Err(server_error(resp).await);
        }
        Ok(FileInfo::from_json(&json(resp).await?))
    }

    /// Sends `part` (bytes at `start`) until the server holds all of it,
    /// resuming from the server's offset after a failure.
    async fn send_part(
        &self,
        id: &str,
        start: u64,
        part: Bytes,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileInfo> {
        let end = start + part.len() as u64;
        let mut failures = 0;
        let mut offset = start;
        loop {
            let result = self
                .patch(id, offset, part.slice((offset - start) as usize..), report)
                .await;
            let err = match result {
                Ok(info) if info.offset >= end => return Ok(info),
                Ok(info) => Error::Protocol(format!("the server stored up to {}, not {end}", info.offset)),
                Err(e) if !e.is_transient() && e.code() != Some(v1::ErrorCode::Conflict) => return Err(e),
                Err(e) => e,
            };
            failures += 1;
            if failures > self.retries {
                return Err(err);
            }
            tokio::time::sleep(backoff(failures)).await;
            // Where does the server stand?
            let stored = match self.offset(id).await {
                Ok(o) => o,
                Err(e) if e.is_transient() => continue,
                Err(e) => return Err(e),
            };
            if stored < start || stored > end {
                return Err(Error::Protocol(format!(
                    "the server holds {stored} bytes; this part is {start}..{end}"
                )));
            }
            if stored == end {
                return self.info_after(id, end).await;
            }
            offset = stored;
        }
    }

    /// After a part was stored but its answer was lost.
    async fn info_after(&self, id: &str, offset: u64) -> Result<FileInfo> {
        let mut info = FileInfo {
            id: id.to_owned(),
            offset,
            ..Default::default()
        };
        // A complete file answers HEAD with its download headers.
        let resp = self
            .with_retries(|| {
                send(
                    &*self.connector,
                    &self.origin,
                    self.request(Method::HEAD, &format!("/v1/files/{id}")),
                    empty(),
                )
            })
            .await?;
        info.complete = resp.headers().get("upload-length").is_none();
        if let Some(etag) = resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()) {
            info.sha256 = etag.trim_matches('"').to_owned();
        }
        Ok(info)
    }

    async fn patch(
        &self,
        id: &str,
        offset: u64,
        bytes: Bytes,
        report: &(dyn Fn(u64) + Sync),
    ) -> Result<FileInfo> {
        let len = bytes.len();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(4);
        // The body, in 64 KiB frames; each frame taken reports progress.
        let frames = futures_util::stream::iter(
            (0..len)
                .step_by(64 * 1024)
                .map(move |at| bytes.slice(at..(at + 64 * 1024).min(len))),
        )
        .map(move |chunk| {
            let _ = tx.try_send(chunk.len() as u64);
            Ok::<_, http::BoxError>(hyper::body::Frame::data(chunk))
        });
        let body = http_body_util::StreamBody::new(frames).boxed_unsync();
        let req = self
            .request(Method::PATCH, &format!("/v1/files/{id}"))
            .header("upload-offset", offset)
            .header(header::CONTENT_LENGTH, len)
            .header(header::CONTENT_TYPE, "application/offset+octet-stream");
        let sending = send(&*self.connector, &self.origin, req, body);
        tokio::pin!(sending);
        let mut done = offset;
        let resp = loop {
            tokio::select! {
                resp = &mut sending => break resp?,
                Some(n) = rx.recv() => {
                    done += n;
                    report(done);
                }
            }
        };
        if resp.status() != 200 {
            return Err(server_error(resp).await);
        }
        Ok(FileInfo::from_json(&json(resp).await?))
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

    /// Downloads a file into `path` (created or truncated); resumes with
    /// `Range` after a dropped connection and checks the SHA-256.
    pub async fn download_to_path(
        &self,
        id: &str,
        path: impl AsRef<Path>,
        progress: Option<watch::Sender<Progress>>,
    ) -> Result<FileInfo> {
        let path = path.as_ref();
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let info = self.download(id, &mut file, progress).await?;
        file.sync_all().await.map_err(|e| Error::Io(e.to_string()))?;
        Ok(info)
    }

    /// Downloads a file into `out`, resuming with `Range` after a dropped
    /// connection; fails if the bytes do not match the file's SHA-256.
    pub async fn download<W: AsyncWrite + Unpin + Send>(
        &self,
        id: &str,
        out: &mut W,
        progress: Option<watch::Sender<Progress>>,
    ) -> Result<FileInfo> {
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        let mut failures = 0;
        let mut info = FileInfo {
            id: id.to_owned(),
            ..Default::default()
        };
        let mut etag = String::new();
        loop {
            let mut req = self.request(Method::GET, &format!("/v1/files/{id}"));
            if done > 0 {
                req = req
                    .header(header::RANGE, format!("bytes={done}-"))
                    .header(header::IF_RANGE, etag.clone());
            }
            let attempt = async {
                let resp = send(&*self.connector, &self.origin, req, empty()).await?;
                let status = resp.status().as_u16();
                if status != 200 && status != 206 {
                    return Err(server_error(resp).await);
                }
                let headers = resp.headers();
                let text = |name| {
                    headers
                        .get(name)
                        .and_then(|v: &HeaderValue| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                if done > 0 && status != 206 {
                    return Err(Error::Protocol(
                        "the server ignored the range of a resumed download".into(),
                    ));
                }
                etag = text(header::ETAG);
                info.sha256 = etag.trim_matches('"').to_owned();
                info.mime_type = text(header::CONTENT_TYPE);
                let length: u64 = text(header::CONTENT_LENGTH).parse().unwrap_or(0);
                info.size = if status == 206 {
                    text(header::CONTENT_RANGE)
                        .rsplit('/')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(done + length)
                } else {
                    length
                };
                let mut body = resp.into_body().into_data_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| Error::Http(e.to_string()))?;
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| Error::Io(e.to_string()))?;
                    hasher.update(&chunk);
                    done += chunk.len() as u64;
                    if let Some(p) = &progress {
                        p.send_replace(Progress {
                            done,
                            total: info.size,
                        });
                    }
                }
                Ok(())
            };
            match attempt.await {
                Ok(()) if done == info.size => break,
                Ok(()) => failures += 1,
                Err(e) if e.is_transient() && failures < self.retries => failures += 1,
                Err(e) => return Err(e),
            }
            if failures > self.retries {
                return Err(Error::Http(format!(
                    "download of {id} kept failing at byte {done}"
                )));
            }
            tokio::time::sleep(backoff(failures)).await;
        }
        out.flush().await.map_err(|e| Error::Io(e.to_string()))?;
        let sha = hex::encode(hasher.finalize());
        if !info.sha256.is_empty() && sha != info.sha256 {
            return Err(Error::Protocol(format!(
                "downloaded bytes hash to {sha}, the server says {}",
                info.sha256
            )));
        }
        info.offset = done;
        info.complete = true;
        Ok(info)
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

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5))
}

/// A request builder cannot be cloned; this rebuilds one with the same parts.
fn req_clone(req: &hyper::http::request::Builder) -> hyper::http::request::Builder {
    let mut out = hyper::Request::builder();
    if let (Some(method), Some(uri), Some(headers)) = (req.method_ref(), req.uri_ref(), req.headers_ref()) {
        out = out.method(method.clone()).uri(uri.clone());
        for (k, v) in headers {
            out = out.header(k, v);
        }
    }
    out
}

/// Percent-encodes a name for the `X-File-Name` header.
fn http_percent(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~ ".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
