//! `im.v1.Chat/Connect`: one protocol session over a gRPC bidirectional
//! stream. Like the WebSocket transport, this only turns messages into frames
//! and writes: every protocol rule lives in [`im_core::connection`].

use super::{bearer_token, status_of};
use crate::shared::Shared;
use bytes::Bytes;
use im_core::connection::{Close, CloseCode, FrameTransport, Incoming, Transmit, TransportError};
use im_protocol::Format;
use im_protocol::grpc::{CLOSE_CODE_METADATA, chat_server};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Server frames queued for the HTTP/2 stream before a write waits: the
/// driver writes at most 64 events per flush, so a flush seldom waits.
const OUT_QUEUE: usize = 128;

/// The `Chat` service.
pub(super) struct ChatService {
    pub(super) shared: Arc<Shared>,
}

type FrameStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Bytes, Status>> + Send>>;

#[tonic::async_trait]
impl chat_server::Chat for ChatService {
    type ConnectStream = FrameStream;

    async fn connect(
        &self,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let token = bearer_token(request.metadata());
        let (out, frames) = mpsc::channel(OUT_QUEUE);
        let transport = GrpcTransport {
            incoming: request.into_inner(),
            out,
        };
        self.shared
            .serve_transport(transport, token)
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(frames))))
    }
}

/// A `Connect` stream carrying protocol frames: each message is one encoded
/// frame (binary protobuf), an empty message is a heartbeat.
struct GrpcTransport {
    incoming: Streaming<Bytes>,
    out: mpsc::Sender<Result<Bytes, Status>>,
}

fn gone() -> TransportError {
    TransportError::Failed("the client's stream is gone".into())
}

impl FrameTransport for GrpcTransport {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        // `Streaming::message` polls the stream once: cancel-safe.
        match self.incoming.message().await {
            Ok(Some(frame)) if frame.is_empty() => Some(Ok(Incoming::Activity)),
            Ok(Some(frame)) => Some(Ok(Incoming::Frame(frame, Format::Binary))),
            Ok(None) => None,
            // tonic refuses a message over the decoding limit with OUT_OF_RANGE.
            Err(status) if status.code() == tonic::Code::OutOfRange => Some(Err(TransportError::TooLarge)),
            Err(status) => Some(Err(TransportError::Failed(status.message().to_owned()))),
        }
    }

    async fn feed(&mut self, transmit: Transmit) -> Result<(), TransportError> {
        let message = match transmit {
            // gRPC carries binary frames only: the driver answers in the
            // format each frame came in, which here is always binary.
            Transmit::Frame(bytes, _) => bytes,
            Transmit::Ping => Bytes::new(),
            Transmit::Close(_) => return Ok(()),
        };
        self.out.send(Ok(message)).await.map_err(|_| gone())
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        // HTTP/2 writes what the stream yields; nothing is held back here.
        Ok(())
    }

    async fn close(&mut self, close: Option<Close>) {
        let Some(close) = close else { return };
        // A normal close ends with OK; any other with UNAVAILABLE (the
        // client may come back). The close code travels in the trailers.
        let code = if close.code == CloseCode::Normal {
            tonic::Code::Ok
        } else {
            tonic::Code::Unavailable
        };
        let mut status = Status::new(code, close.reason);
        status
            .metadata_mut()
            .insert(CLOSE_CODE_METADATA, close.code.websocket().into());
        let _ = self.out.send(Err(status)).await;
    }
}
