//! `FsBlobStore`: blobs as files in one directory.
//!
//! Layout: `<dir>/<first two hex digits of the id>/<id>`, one file per
//! blob, nothing else (256 sub-directories at most, so no directory grows
//! too large to list), created as needed. Only [`BlobId`]s become paths. All file-system work
//! runs through `tokio::fs` or `spawn_blocking`, off the async workers;
//! writes go through a 256 KiB buffer; reads are one blocking read per
//! 256 KiB chunk; completion fsyncs the file and its directory.

use super::{BlobError, BlobId, BlobInfo, BlobResult, BlobStore, BlobStream, BlobWriter};
use async_trait::async_trait;
use bytes::Bytes;
use std::io::Seek;
use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncWriteExt, BufWriter};

/// Bytes buffered by a writer before they go to the file.
const WRITE_BUFFER: usize = 256 * 1024;
/// Largest chunk a read yields.
const READ_CHUNK: usize = 256 * 1024;

/// Where an [`FsBlobStore`] keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsBlobStoreConfig {
    /// The directory (created with the first blob); default `./data/files`.
    pub dir: PathBuf,
}

impl Default for FsBlobStoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./data/files"),
        }
    }
}

impl FsBlobStoreConfig {
    /// Blobs in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

/// A [`BlobStore`] on the local file system (see the module docs).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
}

impl FsBlobStore {
    /// A store in the configured directory. Nothing is created until the
    /// first blob is written (a server that never receives a file leaves
    /// no directory behind); an existing path that is not a directory is
    /// an error.
    pub async fn open(config: FsBlobStoreConfig) -> BlobResult<Self> {
        match tokio::fs::metadata(&config.dir).await {
            Ok(m) if !m.is_dir() => Err(BlobError::Io(std::io::Error::other(format!(
                "{} is not a directory",
                config.dir.display()
            )))),
            Ok(_) => Ok(Self { dir: config.dir }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self { dir: config.dir }),
            Err(e) => Err(e.into()),
        }
    }

    /// The directory the blobs are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn shard(&self, id: BlobId) -> PathBuf {
        self.dir.join(&id.to_string()[..2])
    }

    fn path(&self, id: BlobId) -> PathBuf {
        self.shard(id).join(id.to_string())
    }
}

async fn stored_len(path: &Path) -> BlobResult<Option<u64>> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

struct FsWriter {
    file: BufWriter<tokio::fs::File>,
    /// The blob's directory, synced at completion (a new entry is durable
    /// only once its directory is).
    shard: PathBuf,
}

#[async_trait]
impl BlobWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> BlobResult<()> {
        Ok(self.file.write_all(&chunk).await?)
    }

    async fn flush(&mut self) -> BlobResult<()> {
        Ok(self.file.flush().await?)
    }

    async fn finish(mut self: Box<Self>) -> BlobResult<()> {
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        let shard = self.shard.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(shard)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn writer(&self, id: BlobId, offset: u64) -> BlobResult<Box<dyn BlobWriter>> {
        let path = self.path(id);
        let stored = stored_len(&path).await?;
        match stored {
            Some(stored) if stored != offset => {
                return Err(BlobError::OffsetMismatch {
                    given: offset,
                    stored,
                });
            }
            None if offset > 0 => return Err(BlobError::NotFound(id)),
            _ => {}
        }
        let shard = self.shard(id);
        tokio::fs::create_dir_all(&shard).await?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await?;
        Ok(Box::new(FsWriter {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            shard,
        }))
    }

    async fn len(&self, id: BlobId) -> BlobResult<Option<u64>> {
        stored_len(&self.path(id)).await
    }

    async fn read(&self, id: BlobId, range: Range<u64>) -> BlobResult<BlobStream> {
        let path = self.path(id);
        let file = blocking(move || {
            let mut file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound(id)),
                Err(e) => return Err(e.into()),
            };
            let len = file.metadata()?.len();
            if range.start > range.end || range.end > len {
                return Err(BlobError::BadRange {
                    start: range.start,
                    end: range.end,
                    len,
                });
            }
            file.seek(SeekFrom::Start(range.start))?;
            Ok(file)
        })
        .await?;
        // One blocking read per chunk, straight into the chunk's buffer (no
        // second copy, one hand-off to the blocking pool per 256 KiB).
        let left = range.end - range.start;
        Ok(Box::pin(futures_util::stream::try_unfold(
            (file, left),
            |(file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let want = left.min(READ_CHUNK as u64) as usize;
                let (file, chunk) = blocking(move || {
                    let mut file = file;
                    let mut buf = vec![0u8; want];
                    std::io::Read::read_exact(&mut file, &mut buf)?;
                    Ok((file, Bytes::from(buf)))
                })
                .await?;
                Ok(Some((chunk, (file, left - want as u64))))
            },
        )))
    }

    async fn delete(&self, id: BlobId) -> BlobResult<bool> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self) -> BlobResult<Vec<BlobInfo>> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || list_dir(&dir))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Runs file-system work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> BlobResult<T> + Send + 'static) -> BlobResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
}

/// Every blob under `dir`; entries that are not blob ids are skipped.
fn list_dir(dir: &Path) -> BlobResult<Vec<BlobInfo>> {
    let mut out = Vec::new();
    let shards = match std::fs::read_dir(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(shard.path())? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(BlobId::parse) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted since the directory was read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            out.push(BlobInfo {
                id,
                len: meta.len(),
                modified_ms,
            });
        }
    }
    Ok(out)
}
