//! Files: uploads (resumable, streamed to the [`BlobStore`]), downloads,
//! who may read a file, files in messages, and the clean-up.
//!
//! # Lifecycle
//! 1. [`Engine::begin_upload`]: the uploader declares the name (sanitized,
//!    display only), the size and optional media facts; limits and the
//!    daily quota are checked; the metadata is stored with a new random id,
//!    status uploading.
//! 2. [`Engine::upload_chunks`] (once, or again after an interruption, from
//!    [`Engine::upload_offset`]): the engine owns the loop over the
//!    transport's chunk stream, so HTTP and gRPC behave the same. SHA-256 is
//!    computed while streaming (on resume the stored prefix is read back and
//!    hashed first); the MIME type is sniffed from the first bytes. When the
//!    stored bytes reach the declared size the blob is made durable and the
//!    file is complete.
//! 3. A message whose content refers to the file (`Media.file_id`) shares it
//!    in its conversation, in the append's transaction; the engine fills the
//!    media fields from the metadata.
//! 4. [`Engine::open_file`]: the uploader, and members of a conversation the
//!    file was shared in, read it (a byte range, streamed).
//! 5. [`Engine::file_housekeeping`]: uploads idle longer than the resume
//!    window, and complete files no message refers to after a grace time,
//!    are deleted, metadata first, then the blob.
//!
//! # Authorization
//! | action | who |
//! |---|---|
//! | upload status, continue an upload | the uploader |
//! | read (download, file info) | the uploader; members of a conversation the file was shared in |
//! | send a message with the file | whoever may read it |
//!
//! An unknown id is `NOT_FOUND`; a known file the caller may not read is
//! `PERMISSION_DENIED`.

use super::{Caller, Engine};
use crate::blob::{BlobId, BlobStream};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;
use std::ops::Range;

mod housekeeping;
mod names;
mod upload;

pub use housekeeping::FileSweep;
pub use names::{MAX_FILE_NAME_BYTES, sanitize_file_name};

/// Limits and clean-up times of files. Every field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// Largest file, bytes (default 1 GiB).
    pub max_file_bytes: u64,
    /// Bytes a user may begin uploading per rolling 24 hours (default: no limit).
    pub daily_quota_bytes: Option<u64>,
    /// How long an interrupted upload may be resumed, ms; then it is
    /// deleted with its metadata (default 24 h).
    pub resume_window_ms: i64,
    /// How long a complete file no message refers to is kept, ms (default 24 h).
    pub unreferenced_ttl_ms: i64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 30,
            daily_quota_bytes: None,
            resume_window_ms: 24 * 3600 * 1000,
            unreferenced_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

/// What an uploader declares when an upload begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadRequest {
    /// The client's name for the file (sanitized before it is stored).
    pub name: String,
    /// The exact size in bytes.
    pub size: u64,
    /// Optional width, height, duration, thumbnail.
    pub facts: MediaFacts,
}

/// An upload's metadata and how many bytes are stored: continue at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// The file's metadata (complete once `offset == file.size`).
    pub file: FileRecord,
    /// Bytes stored; the next chunk goes here.
    pub offset: u64,
}

/// A file the caller may read: its metadata, and its bytes on demand.
#[derive(Debug)]
pub struct FileDownload {
    file: FileRecord,
    blob: BlobId,
    engine: Engine,
}

impl FileDownload {
    /// The file's metadata.
    pub fn file(&self) -> &FileRecord {
        &self.file
    }

    /// Streams the bytes of `range` (`None`: the whole file);
    /// `InvalidArgument` if the range is not within the file.
    pub async fn read(&self, range: Option<Range<u64>>) -> Result<BlobStream> {
        let range = range.unwrap_or(0..self.file.size);
        if range.start > range.end || range.end > self.file.size {
            return Err(Error::InvalidArgument(format!(
                "range {}..{} is outside the file's {} bytes",
                range.start, range.end, self.file.size
            )));
        }
        Ok(self.engine.inner.blobs.read(self.blob, range).await?)
    }
}

impl Engine {
    /// Begins an upload: checks the declared size against
    /// [`FilesConfig::max_file_bytes`] (`TooLarge`, nothing stored) and the
    /// daily quota, and records the file (status uploading). Send its bytes
    /// with [`Engine::upload_chunks`] from offset 0.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use bytes::Bytes;
    /// use futures_util::StreamExt;
    /// use im_core::{Caller, Engine, UploadRequest};
    /// let engine = Engine::builder().build(); // memory store and blob store
    /// let alice = Caller::user(engine.register("alice", "correct horse", "").await?.user.id);
    /// let request = UploadRequest { name: "hello.txt".into(), size: 11, ..Default::default() };
    /// let file = engine.begin_upload(alice.clone(), request).await?;
    /// // What a transport hands over: the request body as a stream of chunks.
    /// let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("hello world"))]);
    /// let done = engine.upload_chunks(alice.clone(), &file.id, 0, body).await?;
    /// assert_eq!(done.file.mime_type, "text/plain");
    /// let download = engine.open_file(alice, &file.id).await?;
    /// let mut bytes = download.read(Some(6..11)).await?;
    /// assert_eq!(bytes.next().await.unwrap().unwrap(), "world");
    /// # Ok(()) }
    /// ```
    pub async fn begin_upload(&self, caller: Caller, req: UploadRequest) -> Result<FileRecord> {
        let limits = &self.inner.config.files;
        if req.size > limits.max_file_bytes {
            return Err(too_large(req.size, limits.max_file_bytes));
        }
        let now = self.now_ms();
        if let Some(quota) = limits.daily_quota_bytes {
            let used = self
                .inner
                .store
                .uploaded_bytes_since(caller.user_id, now - 24 * 3600 * 1000)
                .await?;
            if used.saturating_add(req.size) > quota {
                return Err(Error::TooLarge(format!(
                    "the daily upload quota of {quota} bytes would be passed ({used} bytes used)"
                )));
            }
        }
        if let Some(thumb) = &req.facts.thumbnail_id {
            self.readable_file(&caller, thumb).await?;
        }
        let new = NewFile {
            id: BlobId::random().to_string(),
            uploader_id: caller.user_id,
            name: sanitize_file_name(&req.name),
            size: req.size,
            created_at: now,
            facts: req.facts,
        };
        Ok(self.inner.store.create_file(new).await?)
    }

    /// Where an upload stands, for resuming it (the uploader only; a
    /// complete file answers its size).
    pub async fn upload_offset(&self, caller: Caller, id: &str) -> Result<UploadState> {
        let (file, blob) = self.known_file(id).await?;
        if file.uploader_id != caller.user_id {
            return Err(Error::PermissionDenied(format!(
                "file {id} is another user's upload"
            )));
        }
        let offset = match file.status {
            FileStatus::Complete => file.size,
            FileStatus::Uploading => self.inner.blobs.len(blob).await?.unwrap_or(0),
        };
        Ok(UploadState { file, offset })
    }

    /// Metadata of a file the caller may read (see the module docs).
    pub async fn file_info(&self, caller: Caller, id: &str) -> Result<FileRecord> {
        self.readable_file(&caller, id).await
    }

    /// Opens a complete file the caller may read, for download.
    pub async fn open_file(&self, caller: Caller, id: &str) -> Result<FileDownload> {
        let file = self.readable_file(&caller, id).await?;
        let blob = BlobId::parse(&file.id).ok_or_else(|| not_found(id))?;
        Ok(FileDownload {
            file,
            blob,
            engine: self.clone(),
        })
    }

    /// Files others shared in the caller's conversations, most recent first
    /// (at most the page size).
    pub async fn received_files(&self, caller: Caller, limit: u32) -> Result<Vec<SharedFile>> {
        let limit = self.page(limit);
        Ok(self.inner.store.files_shared_with(caller.user_id, limit).await?)
    }

    /// A file's metadata and blob id; `NotFound` for an unknown or malformed id.
    async fn known_file(&self, id: &str) -> Result<(FileRecord, BlobId)> {
        let blob = BlobId::parse(id).ok_or_else(|| not_found(id))?;
        let file = self.inner.store.file(id).await?.ok_or_else(|| not_found(id))?;
        Ok((file, blob))
    }

    /// A complete file the caller may read: its uploader, or a member of a
    /// conversation it was shared in.
    async fn readable_file(&self, caller: &Caller, id: &str) -> Result<FileRecord> {
        let (file, _) = self.known_file(id).await?;
        if file.uploader_id != caller.user_id
            && !self.inner.store.file_shared_with(id, caller.user_id).await?
        {
            return Err(Error::PermissionDenied(format!(
                "file {id} was not shared with you"
            )));
        }
        if file.status != FileStatus::Complete {
            return Err(Error::NotFound(format!("file {id} is still being uploaded")));
        }
        Ok(file)
    }

    /// The sending path's step for media: the caller must be able to read
    /// the file (and its thumbnail), which must be complete; every media
    /// field but the caption is filled from the stored metadata.
    pub(super) async fn attach_files(&self, caller: &Caller, content: &mut v1::Content) -> Result<()> {
        use v1::content::Kind;
        let Some(
            Kind::Image(media)
            | Kind::Audio(media)
            | Kind::Video(media)
            | Kind::File(media)
            | Kind::Voice(media),
        ) = content.kind.as_mut()
        else {
            return Ok(());
        };
        if media.file_id.is_empty() {
            return Err(Error::InvalidArgument(
                "media needs a file_id (upload the file first)".into(),
            ));
        }
        let file = self.readable_file(caller, &media.file_id).await?;
        let thumbnail = match file.facts.thumbnail_id.clone() {
            Some(t) => t,
            None => std::mem::take(&mut media.thumbnail_file_id),
        };
        if !thumbnail.is_empty() {
            self.readable_file(caller, &thumbnail).await?;
        }
        *media = v1::Media {
            file_id: file.id,
            name: file.name,
            mime_type: file.mime_type,
            size: file.size,
            width: file.facts.width.unwrap_or(0),
            height: file.facts.height.unwrap_or(0),
            duration_ms: file.facts.duration_ms.unwrap_or(0),
            caption: std::mem::take(&mut media.caption),
            sha256: file.sha256,
            thumbnail_file_id: thumbnail,
        };
        Ok(())
    }
}

fn not_found(id: &str) -> Error {
    let shown: String = id.chars().take(64).collect();
    Error::NotFound(format!("no file {shown:?}"))
}

fn too_large(size: u64, max: u64) -> Error {
    Error::TooLarge(format!("a file of {size} bytes exceeds the limit of {max} bytes"))
}
