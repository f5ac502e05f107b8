//! The upload loop, shared by every transport: chunks from the client's
//! stream to the blob store, hashed and sniffed on the way, the limits
//! checked before each chunk is stored.

use super::{UploadState, not_found, too_large};
use crate::blob::{BlobId, BlobWriter};
use crate::engine::{Caller, Engine};
use crate::error::{Error, Result};
use crate::model::*;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// Bytes kept from the start of a file for MIME sniffing.
const HEAD_BYTES: usize = 8 * 1024;
/// The upload's progress is recorded in the store at least this often
/// (bytes), so a long upload is never mistaken for an abandoned one.
const PROGRESS_EVERY: u64 = 64 << 20;

/// Hash and head of the bytes stored so far.
struct Digesting {
    hasher: Sha256,
    head: Vec<u8>,
    len: u64,
}

impl Digesting {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            head: Vec::new(),
            len: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        if self.head.len() < HEAD_BYTES {
            let take = chunk.len().min(HEAD_BYTES - self.head.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.len += chunk.len() as u64;
    }
}

/// Marks an upload as running on this node until dropped.
struct Running {
    engine: Engine,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.engine.inner.uploads.lock().remove(&self.id);
    }
}

impl Engine {
    /// Appends a stream of chunks to an upload, starting at `offset`, which
    /// must be the stored length ([`Engine::upload_offset`]; `Conflict`
    /// otherwise). The uploader only. Returns where the upload stands: when
    /// the stored bytes reach the declared size the file is complete (hash
    /// and MIME type recorded, blob durable).
    ///
    /// * More bytes than declared: `TooLarge`, checked before a chunk is
    ///   stored, and the upload is deleted (blob and metadata).
    /// * The stream fails (the client went away): what arrived is kept for
    ///   the resume window and the error is `Unavailable`; continue from
    ///   [`Engine::upload_offset`].
    /// * The same upload running on this node already: `Conflict`.
    ///
    /// The loop runs as a task of its own: a transport that drops this call
    /// (its connection torn down) never cancels a write to the blob store
    /// half way; the task ends when the stream does (a closed connection
    /// ends its body stream), after flushing, and only then may the upload
    /// be resumed.
    pub async fn upload_chunks<S, E>(
        &self,
        caller: Caller,
        id: &str,
        offset: u64,
        chunks: S,
    ) -> Result<UploadState>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let engine = self.clone();
        let id = id.to_owned();
        let task = tokio::spawn(async move { engine.run_upload(caller, &id, offset, chunks).await });
        task.await
            .unwrap_or_else(|e| Err(Error::Internal(format!("upload task failed: {e}"))))
    }

    async fn run_upload<S, E>(&self, caller: Caller, id: &str, offset: u64, chunks: S) -> Result<UploadState>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (file, blob) = self.known_file(id).await?;
        if file.uploader_id != caller.user_id {
            return Err(Error::PermissionDenied(format!(
                "file {id} is another user's upload"
            )));
        }
        if file.status == FileStatus::Complete {
            return Err(Error::Conflict(format!("file {id} is already complete")));
        }
        let _running = self.start_running(id)?;
        let stored = self.inner.blobs.len(blob).await?.unwrap_or(0);
        if offset != stored {
            return Err(Error::Conflict(format!(
                "upload {id} continues at offset {stored}, not {offset}"
            )));
        }
        let mut digest = self.digest_prefix(blob, stored).await?;
        let mut writer = self.inner.blobs.writer(blob, stored).await?;
        let mut recorded = stored;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(next) = chunks.next().await {
            let chunk = match next {
                Ok(chunk) => chunk,
                Err(e) => {
                    let at = self.keep_partial(&file, writer, digest.len).await;
                    return Err(Error::Unavailable(format!(
                        "upload {id} interrupted at byte {at}: {e}"
                    )));
                }
            };
            if digest.len + chunk.len() as u64 > file.size {
                drop(writer);
                self.discard_upload(&file.id, blob).await;
                let max = self.inner.config.files.max_file_bytes;
                return Err(if digest.len + chunk.len() as u64 > max {
                    too_large(digest.len + chunk.len() as u64, max)
                } else {
                    Error::TooLarge(format!("more than the {} bytes declared", file.size))
                });
            }
            digest.feed(&chunk);
            if let Err(e) = writer.write(chunk).await {
                self.keep_partial(&file, writer, digest.len).await;
                return Err(e.into());
            }
            if digest.len - recorded >= PROGRESS_EVERY {
                recorded = digest.len;
                self.inner
                    .store
                    .file_progress(id, recorded, self.now_ms())
                    .await?;
            }
        }
        if digest.len < file.size {
            let at = self.keep_partial(&file, writer, digest.len).await;
            let file = self.inner.store.file(id).await?.ok_or_else(|| not_found(id))?;
            return Ok(UploadState { file, offset: at });
        }
        writer.finish().await?;
        let done = FileCompletion {
            mime_type: sniff_mime(&digest.head, digest.len),
            sha256: hex::encode(digest.hasher.finalize()),
            completed_at: self.now_ms(),
        };
        let file = self.inner.store.complete_file(id, done).await?;
        Ok(UploadState {
            offset: file.size,
            file,
        })
    }

    fn start_running(&self, id: &str) -> Result<Running> {
        if !self.inner.uploads.lock().insert(id.to_owned()) {
            return Err(Error::Conflict(format!("upload {id} is already in progress")));
        }
        Ok(Running {
            engine: self.clone(),
            id: id.to_owned(),
        })
    }

    /// Reads back the first `len` stored bytes (a resumed upload) and hashes them.
    async fn digest_prefix(&self, blob: BlobId, len: u64) -> Result<Digesting> {
        let mut digest = Digesting::new();
        if len == 0 {
            return Ok(digest);
        }
        let mut stream = self.inner.blobs.read(blob, 0..len).await?;
        while let Some(chunk) = stream.next().await {
            digest.feed(&chunk?);
        }
        Ok(digest)
    }

    /// Flushes what arrived and records the progress (best effort: the
    /// stored length is the truth on resume). Returns the stored length.
    async fn keep_partial(&self, file: &FileRecord, mut writer: Box<dyn BlobWriter>, len: u64) -> u64 {
        if let Err(e) = writer.flush().await {
            tracing::warn!(file = %file.id, error = %e, "could not flush an interrupted upload");
        }
        drop(writer);
        let stored = match BlobId::parse(&file.id) {
            Some(blob) => self.inner.blobs.len(blob).await.ok().flatten().unwrap_or(len),
            None => len,
        };
        if let Err(e) = self
            .inner
            .store
            .file_progress(&file.id, stored, self.now_ms())
            .await
        {
            tracing::warn!(file = %file.id, error = %e, "could not record an upload's progress");
        }
        stored
    }

    /// Deletes an upload that cannot complete: metadata first (so no one
    /// can resume or share it), then the blob.
    pub(super) async fn discard_upload(&self, id: &str, blob: BlobId) {
        if let Err(e) = self.inner.store.delete_file(id).await {
            tracing::warn!(file = %id, error = %e, "could not delete a refused upload's metadata");
        }
        if let Err(e) = self.inner.blobs.delete(blob).await {
            tracing::warn!(file = %id, error = %e, "could not delete a refused upload's bytes");
        }
    }
}

/// The MIME type of a file from its first bytes (never from the client):
/// a known signature (the `infer` crate), else `text/plain` for UTF-8 text
/// without NUL bytes, else `application/octet-stream`.
pub(super) fn sniff_mime(head: &[u8], len: u64) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut in the middle of a character at the end of the sniffed head.
        Err(e) => e.error_len().is_none() && head.len() == HEAD_BYTES,
    };
    if len > 0 && text && !head.contains(&0) {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_is_sniffed_from_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff_mime(png, 100), "image/png");
        assert_eq!(sniff_mime(b"%PDF-1.7\n", 9), "application/pdf");
        assert_eq!(sniff_mime("héllo wörld\n".as_bytes(), 13), "text/plain");
        assert_eq!(sniff_mime(&[0xff, 0xfe, 0, 1, 2], 5), "application/octet-stream");
        assert_eq!(sniff_mime(b"", 0), "application/octet-stream");
        let mut cut = "a".repeat(HEAD_BYTES - 1).into_bytes();
        cut.push(0xc3); // the first byte of 'é', cut off by the head's end
        assert_eq!(sniff_mime(&cut, 100_000), "text/plain");
    }
}
