//! The gRPC services of `proto/im/v1/grpc.proto` (feature `grpc`).
//!
//! * [`chat_server`] / [`chat_client`]: `im.v1.Chat/Connect`, one session as a
//!   bidirectional stream of encoded frames. Its messages are passed through
//!   as [`Bytes`] by [`FrameCodec`]: the bytes are exactly a WebSocket binary
//!   frame, so the session driver decodes them with its size check and every
//!   event is encoded once for all its recipients, whatever their transport.
//! * [`api_server`] / [`api_client`]: `im.v1.Api`, unary calls with the
//!   ordinary prost types of [`crate::v1`].
//! * [`files_server`] / [`files_client`]: `im.v1.Files`, uploads and
//!   downloads as streams of chunks.
//!
//! An empty message on `Connect` is a heartbeat (see `grpc.proto`).

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
mod chat {
    include!(concat!(env!("OUT_DIR"), "/im.v1.Chat.rs"));
}

pub use crate::v1::{api_client, api_server, files_client, files_server};
pub use chat::{chat_client, chat_server};

/// The metadata key of the close code when the server ends a `Connect`
/// stream (WebSocket numbering, e.g. `1001`).
pub const CLOSE_CODE_METADATA: &str = "im-close-code";

/// The fully qualified name of the `Connect` method, for logs and metrics.
pub const CONNECT_PATH: &str = "/im.v1.Chat/Connect";

/// Passes `Connect` messages through as bytes, in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec;

impl Codec for FrameCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = FrameCodec;
    type Decoder = FrameCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for FrameCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The gRPC status code an error code maps to: the one table every gRPC
/// answer uses.
pub fn status_code(code: crate::v1::ErrorCode) -> tonic::Code {
    use crate::v1::ErrorCode as E;
    use tonic::Code as C;
    match code {
        E::Unauthenticated => C::Unauthenticated,
        E::PermissionDenied => C::PermissionDenied,
        E::NotFound => C::NotFound,
        E::InvalidArgument => C::InvalidArgument,
        E::TooLarge => C::OutOfRange,
        E::RateLimited => C::ResourceExhausted,
        E::Conflict => C::AlreadyExists,
        E::Unavailable => C::Unavailable,
        E::UnsupportedVersion => C::FailedPrecondition,
        E::Internal | E::Unspecified => C::Internal,
    }
}

/// The metadata key carrying the protocol's own error code name beside the
/// gRPC status (`TOO_LARGE` and `RATE_LIMITED` share no gRPC code with
/// anything else, but a client should not have to know that).
pub const ERROR_CODE_METADATA: &str = "im-error-code";

/// A protocol error as a gRPC status: the mapped code, the message, and the
/// protocol's code name in [`ERROR_CODE_METADATA`].
pub fn error_status(error: &crate::v1::Error) -> Status {
    let code = crate::v1::ErrorCode::try_from(error.code).unwrap_or(crate::v1::ErrorCode::Internal);
    let mut status = Status::new(status_code(code), error.message.clone());
    if let Ok(value) = code.as_str_name().parse() {
        status.metadata_mut().insert(ERROR_CODE_METADATA, value);
    }
    status
}

/// The protocol error a gRPC status carries: the code from
/// [`ERROR_CODE_METADATA`] when present, else mapped back from the status code.
pub fn status_error(status: &Status) -> crate::v1::Error {
    use crate::v1::ErrorCode as E;
    use tonic::Code as C;
    let named = status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(E::from_str_name);
    let code = named.unwrap_or(match status.code() {
        C::Unauthenticated => E::Unauthenticated,
        C::PermissionDenied => E::PermissionDenied,
        C::NotFound => E::NotFound,
        C::InvalidArgument => E::InvalidArgument,
        C::OutOfRange => E::TooLarge,
        C::ResourceExhausted => E::RateLimited,
        C::AlreadyExists => E::Conflict,
        C::Unavailable | C::Cancelled | C::DeadlineExceeded => E::Unavailable,
        C::FailedPrecondition => E::UnsupportedVersion,
        _ => E::Internal,
    });
    crate::v1::Error {
        code: code as i32,
        message: status.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::ErrorCode;

    #[test]
    fn every_error_code_survives_a_status_round_trip() {
        for code in [
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
            ErrorCode::NotFound,
            ErrorCode::InvalidArgument,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Conflict,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::UnsupportedVersion,
        ] {
            let error = crate::v1::Error {
                code: code as i32,
                message: "why".into(),
            };
            let status = error_status(&error);
            assert_eq!(status.code(), status_code(code));
            assert_eq!(status_error(&status), error);
            // Without the metadata (a plain gRPC status), the code maps back too.
            let bare = Status::new(status.code(), "why");
            assert_eq!(status_error(&bare).code, code as i32, "{code:?}");
        }
    }
}
