//! Frame codec: protobuf for binary frames, canonical proto3 JSON for text frames.

use bytes::Bytes;

/// How a frame is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Protobuf, in WebSocket binary frames.
    Binary,
    /// Canonical proto3 JSON, in WebSocket text frames.
    Json,
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The frame is larger than the limit; it was not parsed.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the frame.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// Not a valid protobuf encoding.
    #[error("invalid protobuf frame: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not valid JSON, or JSON that does not match the schema.
    #[error("invalid JSON frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a frame. Encoding cannot fail for generated types.
pub fn encode<M>(msg: &M, format: Format) -> Bytes
where
    M: prost::Message + serde::Serialize,
{
    match format {
        Format::Binary => Bytes::from(msg.encode_to_vec()),
        Format::Json => Bytes::from(serde_json::to_vec(msg).expect("generated types serialize")),
    }
}

/// Decodes a frame after checking its size against `limit`.
pub fn decode<M>(data: &[u8], format: Format, limit: usize) -> Result<M, CodecError>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    if data.len() > limit {
        return Err(CodecError::TooLarge {
            size: data.len(),
            limit,
        });
    }
    Ok(match format {
        Format::Binary => M::decode(data)?,
        Format::Json => serde_json::from_slice(data)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    fn send_frame() -> v1::ClientFrame {
        v1::ClientFrame {
            request_id: u64::MAX,
            body: Some(v1::client_frame::Body::Send(v1::SendMessage {
                target: Some(v1::send_message::Target::ConversationId(42)),
                client_msg_id: "c-1".into(),
                content: Some(v1::Content::text("héllo")),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn round_trip_both_formats() {
        for format in [Format::Binary, Format::Json] {
            let frame = send_frame();
            let bytes = encode(&frame, format);
            let back: v1::ClientFrame = decode(&bytes, format, 1 << 16).unwrap();
            assert_eq!(back, frame);
        }
    }

    #[test]
    fn json_is_canonical_proto3() {
        let json: serde_json::Value = serde_json::from_slice(&encode(&send_frame(), Format::Json)).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            r#"{"requestId":"18446744073709551615","send":{"conversationId":"42","clientMsgId":"c-1","content":{"text":{"body":"héllo"}}}}"#,
        )
        .unwrap();
        assert_eq!(json, expected, "lowerCamelCase names, 64-bit integers as strings");
        // Numbers for 64-bit ids and original proto field names are accepted too.
        let lenient: v1::ClientFrame =
            decode(br#"{"request_id": 3, "ping": {}}"#, Format::Json, 100).unwrap();
        assert_eq!(lenient.request_id, 3);
    }

    #[test]
    fn limit_checked_before_parsing() {
        let err = decode::<v1::ClientFrame>(&[0u8; 11], Format::Binary, 10).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { size: 11, limit: 10 }));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            &b"\xff\xff\xff\xff\xff"[..],
            b"\x0a\xff",
            b"{",
            b"[1,2]",
            b"\"x\"",
        ] {
            let _ = decode::<v1::ClientFrame>(garbage, Format::Binary, 100);
            assert!(decode::<v1::ClientFrame>(garbage, Format::Json, 100).is_err());
        }
    }

    #[test]
    fn error_codes_have_wire_names() {
        assert_eq!(v1::ErrorCode::NotFound.name(), "NOT_FOUND");
        let json = encode(
            &v1::ServerFrame::error(1, v1::ErrorCode::RateLimited, "slow down"),
            Format::Json,
        );
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"response":{"requestId":"1","error":{"code":"RATE_LIMITED","message":"slow down"}}}"#
        );
    }
}
