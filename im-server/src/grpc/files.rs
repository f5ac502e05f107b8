//! `im.v1.Files`: uploads and downloads as gRPC streams. Every rule (limits,
//! resume, hashing, who may read) is the engine's, exactly as for
//! `/v1/files` over HTTP; this module turns messages into engine calls.

use super::{caller, status_of};
use crate::shared::Shared;
use futures_util::StreamExt;
use im_core::model::{FileRecord, FileStatus, MediaFacts};
use im_core::{Error, UploadRequest};
use im_protocol::grpc::files_server;
use im_protocol::v1::{self, file_chunk, upload_chunk};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The `Files` service.
pub(super) struct FilesService {
    pub(super) shared: Arc<Shared>,
}

/// The wire form of a file's metadata; `offset` is the stored length.
fn info(file: &FileRecord, offset: u64) -> v1::FileInfo {
    v1::FileInfo {
        id: file.id.clone(),
        uploader_id: file.uploader_id,
        name: file.name.clone(),
        size: file.size,
        mime_type: file.mime_type.clone(),
        sha256: file.sha256.clone(),
        complete: file.status == FileStatus::Complete,
        offset,
        created_at: file.created_at,
        width: file.facts.width,
        height: file.facts.height,
        duration_ms: file.facts.duration_ms,
        thumbnail_file_id: file.facts.thumbnail_id.clone().unwrap_or_default(),
    }
}

fn invalid(message: &str) -> Status {
    status_of(&Error::InvalidArgument(message.into()))
}

type ChunkStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::FileChunk, Status>> + Send>>;

#[tonic::async_trait]
impl files_server::Files for FilesService {
    async fn begin_upload(
        &self,
        request: Request<v1::UploadStart>,
    ) -> Result<Response<v1::FileInfo>, Status> {
        let caller = caller(&self.shared, &request).await?;
        let start = request.into_inner();
        let upload = UploadRequest {
            name: start.name,
            size: start.size,
            facts: MediaFacts {
                width: start.width,
                height: start.height,
                duration_ms: start.duration_ms,
                thumbnail_id: Some(start.thumbnail_file_id).filter(|t| !t.is_empty()),
            },
        };
        let file = self
            .shared
            .engine
            .begin_upload(caller, upload)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(info(&file, 0)))
    }

    async fn upload(
        &self,
        request: Request<Streaming<v1::UploadChunk>>,
    ) -> Result<Response<v1::FileInfo>, Status> {
        let caller = caller(&self.shared, &request).await?;
        let mut chunks = request.into_inner();
        let at = match chunks.message().await? {
            Some(v1::UploadChunk {
                part: Some(upload_chunk::Part::At(at)),
            }) => at,
            _ => {
                return Err(invalid(
                    "the first message of an upload names the file and offset (`at`)",
                ));
            }
        };
        // The rest are data; anything else, or a broken stream, interrupts the
        // upload (what arrived is kept for a resume).
        let data = chunks.map(|chunk| match chunk {
            Ok(v1::UploadChunk {
                part: Some(upload_chunk::Part::Data(data)),
            }) => Ok(data),
            Ok(_) => Err("a message other than data after the first".to_owned()),
            Err(status) => Err(status.message().to_owned()),
        });
        let state = self
            .shared
            .engine
            .upload_chunks(caller, &at.file_id, at.offset, data)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(info(&state.file, state.offset)))
    }

    async fn upload_status(&self, request: Request<v1::FileRef>) -> Result<Response<v1::FileInfo>, Status> {
        let caller = caller(&self.shared, &request).await?;
        let state = self
            .shared
            .engine
            .upload_offset(caller, &request.get_ref().file_id)
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(info(&state.file, state.offset)))
    }

    type DownloadStream = ChunkStream;

    async fn download(&self, request: Request<v1::DownloadFile>) -> Result<Response<ChunkStream>, Status> {
        let caller = caller(&self.shared, &request).await?;
        let ask = request.into_inner();
        let download = self
            .shared
            .engine
            .open_file(caller, &ask.file_id)
            .await
            .map_err(|e| status_of(&e))?;
        let size = download.file().size;
        let end = match ask.length {
            0 => size,
            n => ask.offset.saturating_add(n),
        };
        if ask.offset > size || end > size {
            return Err(status_of(&Error::InvalidArgument(format!(
                "bytes {}..{end} are outside the file's {size} bytes",
                ask.offset
            ))));
        }
        let head = v1::FileChunk {
            part: Some(file_chunk::Part::Info(info(download.file(), size))),
        };
        let bytes = download
            .read(Some(ask.offset..end))
            .await
            .map_err(|e| status_of(&e))?
            .map(|chunk| match chunk {
                Ok(data) => Ok(v1::FileChunk {
                    part: Some(file_chunk::Part::Data(data)),
                }),
                Err(e) => Err(status_of(&Error::from(e))),
            });
        let stream = tokio_stream::once(Ok(head)).chain(bytes);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Largest upload message accepted (a data chunk and its framing).
pub(super) const MAX_UPLOAD_MESSAGE: usize = 4 << 20;
