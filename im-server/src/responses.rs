//! Building HTTP responses: the body type, JSON and error bodies, file
//! streams. Shared by the route table (`http`) and the file routes (`files`).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use im_core::Error;

/// Every response body: a buffer, or a stream (file downloads).
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The error of a response body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body from a buffer.
fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response without a body.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A response streaming a file's bytes, never whole in memory.
pub(crate) fn stream_body(status: StatusCode, stream: im_core::blob::BlobStream) -> Response<Body> {
    use futures_util::TryStreamExt;
    let frames = stream
        .map_ok(hyper::body::Frame::data)
        .map_err(|e| Box::new(e) as BoxError);
    let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
    *resp.status_mut() = status;
    resp
}

pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// The HTTP status of an engine error.
fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::InvalidArgument(_) | Error::UnsupportedVersion(_) => StatusCode::BAD_REQUEST,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn error(e: &Error) -> Response<Body> {
    json(
        status_of(e),
        serde_json::json!({"error": {"code": e.code().name(), "message": e.message()}}),
    )
}
