//! The files' clean-up: abandoned uploads, files no message refers to, and
//! blobs whose metadata is gone.

use crate::blob::BlobId;
use crate::engine::Engine;
use crate::error::Result;
use crate::model::*;

/// Files looked at per store round trip.
const BATCH: u32 = 500;
/// Most batches per run, so one run stays bounded (the next run continues).
const MAX_BATCHES: usize = 20;

/// What one [`Engine::file_housekeeping`] run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSweep {
    /// Uploads idle longer than the resume window.
    pub abandoned: u64,
    /// Complete files no message referred to within the grace time.
    pub unreferenced: u64,
    /// Blobs without metadata (left by a crash between the two deletes).
    pub orphans: u64,
}

impl Engine {
    /// Deletes, metadata first and then bytes: uploads not continued within
    /// [`FilesConfig::resume_window_ms`](super::FilesConfig), complete files
    /// that no message referred to within
    /// [`FilesConfig::unreferenced_ttl_ms`](super::FilesConfig) of their
    /// completion, and blobs older than the resume window that have no
    /// metadata. Time comes from the engine's clock. Run it now and then
    /// (the reference server does every `files.cleanup_interval_secs`).
    pub async fn file_housekeeping(&self) -> Result<FileSweep> {
        let now = self.now_ms();
        let limits = &self.inner.config.files;
        let stale_before = now.saturating_sub(limits.resume_window_ms);
        let unshared_before = now.saturating_sub(limits.unreferenced_ttl_ms);
        let store = &self.inner.store;
        let mut sweep = FileSweep::default();
        for _ in 0..MAX_BATCHES {
            let expired = store.expired_files(stale_before, unshared_before, BATCH).await?;
            let mut deleted = 0;
            for file in &expired {
                // Re-checked in the store: a message may have shared it since.
                if !store
                    .delete_expired_file(&file.id, stale_before, unshared_before)
                    .await?
                {
                    continue;
                }
                deleted += 1;
                match file.status {
                    FileStatus::Uploading => sweep.abandoned += 1,
                    FileStatus::Complete => sweep.unreferenced += 1,
                }
                if let Some(blob) = BlobId::parse(&file.id) {
                    self.inner.blobs.delete(blob).await?;
                }
            }
            if expired.len() < BATCH as usize || deleted == 0 {
                break;
            }
        }
        sweep.orphans = self.delete_orphan_blobs(stale_before).await?;
        if sweep != FileSweep::default() {
            tracing::info!(
                abandoned = sweep.abandoned,
                unreferenced = sweep.unreferenced,
                orphans = sweep.orphans,
                "files cleaned up"
            );
        }
        Ok(sweep)
    }

    /// Blobs last modified before `before` whose id no file has.
    async fn delete_orphan_blobs(&self, before: i64) -> Result<u64> {
        let old: Vec<BlobId> = self
            .inner
            .blobs
            .list()
            .await?
            .into_iter()
            .filter(|b| b.modified_ms < before)
            .map(|b| b.id)
            .collect();
        let mut removed = 0;
        for chunk in old.chunks(BATCH as usize) {
            let ids: Vec<FileId> = chunk.iter().map(ToString::to_string).collect();
            let known: std::collections::HashSet<FileId> =
                self.inner.store.files_exist(&ids).await?.into_iter().collect();
            for (blob, id) in chunk.iter().zip(&ids) {
                if !known.contains(id) && self.inner.blobs.delete(*blob).await? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
