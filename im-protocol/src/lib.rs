//! # im-protocol
//!
//! The wire protocol of the im chat engine: one protobuf schema
//! (`proto/im/v1/im.proto`) for every transport, the frame codec and the limits.
//!
//! * WebSocket **binary** frames carry the protobuf encoding of [`v1::ClientFrame`]
//!   and [`v1::ServerFrame`].
//! * WebSocket **text** frames carry their canonical proto3 JSON mapping, so a
//!   browser or a shell tool can speak the protocol (64-bit ids are JSON strings).
//!
//! * **gRPC** (feature `grpc`): the services of `proto/im/v1/grpc.proto`, see
//!   [`grpc`].
//!
//! Every decode checks the size limit *before* parsing.
//!
//! ```
//! use im_protocol::{codec, v1, Format};
//! let frame = v1::ClientFrame {
//!     request_id: 7,
//!     body: Some(v1::client_frame::Body::Ping(v1::Ping {})),
//! };
//! let bytes = codec::encode(&frame, Format::Json);
//! assert_eq!(&bytes[..], br#"{"requestId":"7","ping":{}}"#);
//! let back: v1::ClientFrame = codec::decode(&bytes, Format::Json, 1024).unwrap();
//! assert_eq!(back, frame);
//! ```
#![warn(missing_debug_implementations, unreachable_pub)]

pub mod codec;
#[cfg(feature = "grpc")]
pub mod grpc;

pub use codec::{CodecError, Format};

/// Generated protocol types, version 1.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/im.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/im.v1.serde.rs"));
}

/// The protocol version this crate speaks (sent in `Hello`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Default largest frame accepted, in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// The encoded file descriptor set of the schema (for reflection and gRPC).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/im_descriptor.bin"));

impl v1::ErrorCode {
    /// The name used on the wire, e.g. `"NOT_FOUND"`.
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }
}

impl v1::ServerFrame {
    /// A response frame carrying an error.
    pub fn error(request_id: u64, code: v1::ErrorCode, message: impl Into<String>) -> Self {
        Self::response(
            request_id,
            v1::response::Result::Error(v1::Error {
                code: code as i32,
                message: message.into(),
            }),
        )
    }

    /// A response frame.
    pub fn response(request_id: u64, result: v1::response::Result) -> Self {
        Self {
            body: Some(v1::server_frame::Body::Response(v1::Response {
                request_id,
                result: Some(result),
            })),
        }
    }

    /// An event frame.
    pub fn event(kind: v1::event::Kind) -> Self {
        Self {
            body: Some(v1::server_frame::Body::Event(v1::Event { kind: Some(kind) })),
        }
    }
}

impl v1::Message {
    /// This message as a user who deleted it for themselves sees it: its
    /// place (id, conversation, seq, sender, client id, time) and
    /// `deleted`, nothing else (version 0: the stub stays the same whatever
    /// happens to the message afterwards).
    pub fn deleted_stub(&self) -> Self {
        Self {
            id: self.id,
            conversation_id: self.conversation_id,
            seq: self.seq,
            sender_id: self.sender_id,
            client_msg_id: self.client_msg_id.clone(),
            created_at: self.created_at,
            deleted: true,
            ..Default::default()
        }
    }
}

impl v1::Content {
    /// Text content.
    pub fn text(body: impl Into<String>) -> Self {
        Self {
            kind: Some(v1::content::Kind::Text(v1::Text { body: body.into() })),
        }
    }

    /// The text body, if this is text content.
    pub fn as_text(&self) -> Option<&str> {
        match &self.kind {
            Some(v1::content::Kind::Text(t)) => Some(&t.body),
            _ => None,
        }
    }
}
