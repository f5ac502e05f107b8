//! Downloads: streamed to any `AsyncWrite`, resumed with `Range` (and
//! `If-Range`, so a changed file is never spliced), checked against the
//! file's SHA-256.

use super::http::{empty, send, server_error};
use super::{FileClient, FileInfo, Progress, backoff};
use crate::{Error, Result};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::{self, HeaderValue};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

impl FileClient {
    /// Downloads a file into `path` (created or truncated); resumes with
    /// `Range` after a dropped connection and checks the SHA-256. On failure
    /// the file is removed.
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
        let result = match self.download(id, &mut file, progress).await {
            Ok(info) => file
                .sync_all()
                .await
                .map(|()| info)
                .map_err(|e| Error::Io(e.to_string())),
            Err(e) => Err(e),
        };
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                // Nothing half-written is left behind.
                drop(file);
                let _ = tokio::fs::remove_file(path).await;
                return Err(e);
            }
        };
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
}
