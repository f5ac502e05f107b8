//! The `BlobStore` trait: where the bytes of uploaded files live, and its
//! backends ([`MemoryBlobStore`], [`FsBlobStore`]).
//!
//! A blob store knows nothing of users, names or MIME types: the file
//! metadata lives in the [`Store`](crate::store::Store), so every node of a
//! cluster sees it. A blob is addressed only by a [`BlobId`], a 128-bit
//! random id the server generates; a name from a client never reaches a
//! blob store.
//!
//! # Guarantees every backend gives (checked by the conformance suite, feature `testing`)
//! * **Append at an expected offset**: [`BlobStore::writer`] opens a blob for
//!   appending at `offset`, which must equal the stored length (a new blob
//!   has length 0), else [`BlobError::OffsetMismatch`] carries the stored
//!   length. So an interrupted upload continues from [`BlobStore::len`].
//! * **What was flushed stays**: after [`BlobWriter::flush`] returns, `len`
//!   counts every byte written, and those bytes read back as written, even
//!   when the writer is then dropped (a connection lost mid-upload).
//! * **Durability at completion**: [`BlobWriter::finish`] returns only once
//!   the bytes are durable (fsync on a file system).
//! * **Ranged streaming reads**: [`BlobStore::read`] streams a byte range in
//!   chunks, never the whole blob in memory.
//! * **Delete is idempotent**: deleting an unknown blob is not an error.
//! * **Listing**: [`BlobStore::list`] names every stored blob with its
//!   length and last modification, for the clean-up of blobs whose metadata
//!   is gone (a crash between the two deletes).
//!
//! # An S3-compatible store
//! An object store plugs in behind this same trait: [`BlobStore::writer`]
//! starts (or, for `offset > 0`, continues) a multipart upload whose key is
//! the blob id; the writer buffers chunks into parts of at least 5 MiB and
//! uploads each part as it fills; [`BlobWriter::flush`] uploads the pending
//! part; [`BlobWriter::finish`] completes the multipart upload; [`BlobStore::len`]
//! is the object's size, or the sum of the uploaded parts (`ListParts`) while
//! it is in progress; [`BlobStore::read`] is a ranged `GetObject` streamed
//! through; [`BlobStore::delete`] aborts the multipart upload or deletes the
//! object; [`BlobStore::list`] is `ListObjectsV2` plus `ListMultipartUploads`.

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::pin::Pin;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod fs;
mod memory;

pub use fs::{FsBlobStore, FsBlobStoreConfig};
pub use memory::MemoryBlobStore;

/// A blob's id: 128 random bits, written as 32 lowercase hex digits. Only
/// the server makes them ([`BlobId::random`]); text from outside becomes one
/// only through [`BlobId::parse`], which accepts nothing else, so an id is
/// always safe as a file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 16]);

impl BlobId {
    /// A new random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Parses 32 lowercase hex digits; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What can go wrong in a blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob with this id.
    #[error("blob {0} not found")]
    NotFound(BlobId),
    /// An append did not start at the stored length.
    #[error("append at offset {given}, but {stored} bytes are stored")]
    OffsetMismatch {
        /// The offset the caller gave.
        given: u64,
        /// The blob's stored length.
        stored: u64,
    },
    /// A read past the end of the blob.
    #[error("range {start}..{end} is outside the blob's {len} bytes")]
    BadRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The blob's length.
        len: u64,
    },
    /// The backend failed (disk full, I/O error, unreachable service).
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of blob stores.
pub type BlobResult<T> = std::result::Result<T, BlobError>;

/// A stream of a blob's bytes, in chunks.
pub type BlobStream = Pin<Box<dyn futures_core::Stream<Item = BlobResult<Bytes>> + Send>>;

/// One stored blob, as listed by [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its id.
    pub id: BlobId,
    /// Stored length in bytes.
    pub len: u64,
    /// Last modification, Unix ms (the backend's own clock).
    pub modified_ms: i64,
}

/// Appends to one blob; see the trait docs of [`BlobStore`]. Dropping a
/// writer without [`BlobWriter::finish`] keeps what was flushed.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends a chunk (it may be buffered until [`BlobWriter::flush`]).
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()>;
    /// Stores every byte written so far, so [`BlobStore::len`] counts it.
    async fn flush(&mut self) -> BlobResult<()>;
    /// Flushes and makes the blob durable; the upload is complete.
    async fn finish(self: Box<Self>) -> BlobResult<()>;
}

/// Where file bytes are kept. Implementations must be cheap to share
/// (`Arc<dyn BlobStore>`) and must never block the async runtime.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Opens `id` for appending at `offset`; a blob that does not exist is
    /// created when `offset` is 0. [`BlobError::OffsetMismatch`] unless
    /// `offset` is the stored length; [`BlobError::NotFound`] for an unknown
    /// blob with `offset > 0`.
    async fn writer(&self, id: BlobId, offset: u64) -> BlobResult<Box<dyn BlobWriter>>;
    /// The stored length, `None` for an unknown blob.
    async fn len(&self, id: BlobId) -> BlobResult<Option<u64>>;
    /// Streams the bytes in `range` (which must lie within the blob).
    async fn read(&self, id: BlobId, range: Range<u64>) -> BlobResult<BlobStream>;
    /// Deletes a blob; true if it existed.
    async fn delete(&self, id: BlobId) -> BlobResult<bool>;
    /// Every stored blob, in no particular order.
    async fn list(&self) -> BlobResult<Vec<BlobInfo>>;
}

/// How a blob store's error reaches a client, in one place.
///
/// | `BlobError` | engine `Error` | wire code |
/// |---|---|---|
/// | `NotFound` | `NotFound` | `NOT_FOUND` |
/// | `OffsetMismatch` | `Conflict` | `CONFLICT` |
/// | `BadRange` | `InvalidArgument` | `INVALID_ARGUMENT` |
/// | `Io` | `Unavailable` | `UNAVAILABLE` |
impl From<BlobError> for crate::Error {
    fn from(e: BlobError) -> Self {
        use crate::Error;
        match e {
            BlobError::NotFound(id) => Error::NotFound(format!("file {id}")),
            e @ BlobError::OffsetMismatch { .. } => Error::Conflict(e.to_string()),
            e @ BlobError::BadRange { .. } => Error::InvalidArgument(e.to_string()),
            BlobError::Io(e) => Error::Unavailable(format!("file storage: {e}")),
        }
    }
}
