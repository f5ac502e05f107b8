//! Uploads: begun with `POST`, sent in parts with `PATCH`, each part
//! resumed from the server's offset after a failure.

use super::http::{self, empty, json, send, server_error};
use super::{FileClient, FileInfo, Progress, Upload, backoff, req_clone};
use crate::{Error, Result, v1};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::{self, HeaderValue};
use std::path::Path;
use tokio::io::{AsyncRead, AsyncReadExt};

impl FileClient {
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
