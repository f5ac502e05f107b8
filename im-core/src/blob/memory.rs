//! `MemoryBlobStore`: blobs in process memory, for tests and embedders
//! without files.

use super::{BlobError, BlobId, BlobInfo, BlobResult, BlobStore, BlobStream, BlobWriter};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Largest chunk a read yields.
const READ_CHUNK: usize = 64 * 1024;

/// An in-memory [`BlobStore`]. Data is lost when it is dropped.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<HashMap<BlobId, Stored>>>,
}

#[derive(Debug)]
struct Stored {
    /// The chunks as written (reads slice them without copying).
    chunks: Vec<Bytes>,
    len: u64,
    modified_ms: i64,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemoryWriter {
    blobs: Arc<Mutex<HashMap<BlobId, Stored>>>,
    id: BlobId,
    pending: Vec<Bytes>,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()> {
        if !chunk.is_empty() {
            self.pending.push(chunk);
        }
        Ok(())
    }

    async fn flush(&mut self) -> BlobResult<()> {
        let mut blobs = self.blobs.lock();
        let stored = blobs.get_mut(&self.id).ok_or(BlobError::NotFound(self.id))?;
        for chunk in self.pending.drain(..) {
            stored.len += chunk.len() as u64;
            stored.chunks.push(chunk);
        }
        stored.modified_ms = crate::model::now_ms();
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> BlobResult<()> {
        self.flush().await
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn writer(&self, id: BlobId, offset: u64) -> BlobResult<Box<dyn BlobWriter>> {
        let mut blobs = self.blobs.lock();
        match blobs.get(&id) {
            Some(stored) if stored.len != offset => {
                return Err(BlobError::OffsetMismatch {
                    given: offset,
                    stored: stored.len,
                });
            }
            Some(_) => {}
            None if offset > 0 => return Err(BlobError::NotFound(id)),
            None => {
                blobs.insert(
                    id,
                    Stored {
                        chunks: Vec::new(),
                        len: 0,
                        modified_ms: crate::model::now_ms(),
                    },
                );
            }
        }
        Ok(Box::new(MemoryWriter {
            blobs: self.blobs.clone(),
            id,
            pending: Vec::new(),
        }))
    }

    async fn len(&self, id: BlobId) -> BlobResult<Option<u64>> {
        Ok(self.blobs.lock().get(&id).map(|s| s.len))
    }

    async fn read(&self, id: BlobId, range: Range<u64>) -> BlobResult<BlobStream> {
        let blobs = self.blobs.lock();
        let stored = blobs.get(&id).ok_or(BlobError::NotFound(id))?;
        if range.start > range.end || range.end > stored.len {
            return Err(BlobError::BadRange {
                start: range.start,
                end: range.end,
                len: stored.len,
            });
        }
        // Slices of the stored chunks (reference counted, not copied).
        let mut out = Vec::new();
        let mut at = 0u64;
        for chunk in &stored.chunks {
            let (lo, hi) = (at, at + chunk.len() as u64);
            at = hi;
            if hi <= range.start || lo >= range.end {
                continue;
            }
            let from = range.start.max(lo) - lo;
            let to = range.end.min(hi) - lo;
            let mut part = chunk.slice(from as usize..to as usize);
            while !part.is_empty() {
                let n = part.len().min(READ_CHUNK);
                out.push(Ok(part.split_to(n)));
            }
        }
        Ok(Box::pin(futures_util::stream::iter(out)))
    }

    async fn delete(&self, id: BlobId) -> BlobResult<bool> {
        Ok(self.blobs.lock().remove(&id).is_some())
    }

    async fn list(&self) -> BlobResult<Vec<BlobInfo>> {
        Ok(self
            .blobs
            .lock()
            .iter()
            .map(|(id, s)| BlobInfo {
                id: *id,
                len: s.len,
                modified_ms: s.modified_ms,
            })
            .collect())
    }
}
