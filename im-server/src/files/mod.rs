//! Files over HTTP: upload (resumable, tus-like), download (ranges, ETag),
//! the list of files received. Every rule is the engine's; this module only
//! turns HTTP into engine calls (see `docs/PROTOCOL.md`, "Files").
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/files` | begin an upload (`Upload-Length` or `Content-Length`, name in `X-File-Name` or `Content-Disposition`); the body, if any, is its first bytes |
//! | `HEAD /v1/files/{id}` | the uploader: `Upload-Offset` and `Upload-Length`; a reader of a complete file: the download's headers |
//! | `PATCH /v1/files/{id}` | continue an upload at `Upload-Offset` |
//! | `GET /v1/files/{id}` | download (a single `Range`, `If-None-Match`) |
//! | `GET /v1/files` | the files others shared in the caller's conversations |

mod headers;

use crate::responses::{Body, empty, error, json, stream_body};
use crate::shared::Shared;
use bytes::Bytes;
use headers::{RangeAsk, content_disposition, disposition_name, none_match, parse_range, percent_decode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use im_core::model::{FileRecord, FileStatus, MediaFacts};
use im_core::{Caller, Error, UploadRequest};
use std::time::Duration;

/// Header names of the resumable scheme.
const UPLOAD_LENGTH: &str = "upload-length";
const UPLOAD_OFFSET: &str = "upload-offset";

/// Routes `/v1/files` and `/v1/files/{id}`.
pub(crate) async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/v1/files").unwrap_or_default();
    // `/v1/files/{id}`: one non-empty segment after the slash.
    let item = rest
        .strip_prefix('/')
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let result = match (req.method().clone(), rest, item) {
        (Method::POST, "" | "/", _) => create(shared, req).await,
        (Method::GET, "" | "/", _) => list(shared, &req).await,
        (method, _, Some(id)) => match method {
            Method::GET => download(shared, &req, id, false).await,
            Method::HEAD => head(shared, &req, id).await,
            Method::PATCH => append(shared, req, id).await,
            _ => Err(Box::new(method_not_allowed())),
        },
        (_, "" | "/", _) => Err(Box::new(method_not_allowed())),
        _ => Err(fail(Error::NotFound("no such route".into()))),
    };
    result.unwrap_or_else(|resp| *resp)
}

fn method_not_allowed() -> Response<Body> {
    let mut resp = error(&Error::InvalidArgument("method not allowed".into()));
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// A response, or the error response that ended the handler early (boxed:
/// a response is large).
type Reply = Result<Response<Body>, Refusal>;
type Refusal = Box<Response<Body>>;

fn fail(e: Error) -> Refusal {
    Box::new(error(&e))
}

/// The caller of a request with `Authorization: Bearer <token>`.
async fn caller(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            fail(Error::Unauthenticated(
                "an Authorization: Bearer token is required".into(),
            ))
        })?;
    let user = shared.engine.authenticate(token).await.map_err(fail)?;
    Ok(Caller::user(user.id))
}

/// A header holding a decimal number; `InvalidArgument` if it is not one.
fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Refusal> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    fail(Error::InvalidArgument(format!(
                        "{name} must be a number of bytes"
                    )))
                })
        })
        .transpose()
}

fn small(headers: &HeaderMap, name: &str) -> Result<Option<u32>, Refusal> {
    number(headers, name)?
        .map(|n| u32::try_from(n).map_err(|_| fail(Error::InvalidArgument(format!("{name} is too large")))))
        .transpose()
}

/// The metadata of a file as JSON, with how many bytes are stored.
pub(crate) fn file_json(f: &FileRecord, offset: u64) -> serde_json::Value {
    serde_json::json!({
        "id": f.id,
        "name": f.name,
        "size": f.size,
        "offset": offset,
        "status": match f.status { FileStatus::Uploading => "uploading", FileStatus::Complete => "complete" },
        "mime_type": f.mime_type,
        "sha256": f.sha256,
        "uploader_id": f.uploader_id,
        "created_at": f.created_at,
        "completed_at": f.completed_at,
        "width": f.facts.width,
        "height": f.facts.height,
        "duration_ms": f.facts.duration_ms,
        "thumbnail_id": f.facts.thumbnail_id,
    })
}

fn with_offset(mut resp: Response<Body>, offset: u64) -> Response<Body> {
    resp.headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The request body as the engine's chunk stream. A client that sends
/// nothing for `idle` ends it with an error (the upload stays resumable).
fn chunks(body: Incoming, idle: Duration) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Send {
    futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Some((Err(format!("no data for {} s", idle.as_secs())), None)),
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some((Err(e.to_string()), None)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some(body)));
                    }
                }
            }
        }
    })
}

/// `POST /v1/files`: begins an upload; the body, if any, is its first bytes.
async fn create(shared: &Shared, req: Request<Incoming>) -> Reply {
    let caller = caller(shared, req.headers()).await?;
    let headers = req.headers();
    let content_length = number(headers, header::CONTENT_LENGTH.as_str())?;
    let size = match number(headers, UPLOAD_LENGTH)?.or(content_length) {
        Some(size) => size,
        None => {
            let mut resp = fail(Error::InvalidArgument(
                "the size is required: Upload-Length or Content-Length".into(),
            ));
            *resp.status_mut() = StatusCode::LENGTH_REQUIRED;
            return Err(resp);
        }
    };
    let name = headers
        .get("x-file-name")
        .map(|v| percent_decode(v.as_bytes()))
        .or_else(|| {
            headers
                .get(header::CONTENT_DISPOSITION)
                .and_then(|v| disposition_name(v.as_bytes()))
        })
        .unwrap_or_default();
    let facts = MediaFacts {
        width: small(headers, "x-media-width")?,
        height: small(headers, "x-media-height")?,
        duration_ms: small(headers, "x-media-duration-ms")?,
        thumbnail_id: headers
            .get("x-thumbnail-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|s| !s.is_empty()),
    };
    let engine = &shared.engine;
    // Refused here (over the limit or the quota) before a byte is read.
    let file = engine
        .begin_upload(caller.clone(), UploadRequest { name, size, facts })
        .await
        .map_err(fail)?;
    let body = chunks(req.into_body(), idle(shared));
    let state = engine
        .upload_chunks(caller, &file.id, 0, body)
        .await
        .map_err(fail)?;
    let mut resp = with_offset(
        json(StatusCode::CREATED, file_json(&state.file, state.offset)),
        state.offset,
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/files/{}", file.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

fn idle(shared: &Shared) -> Duration {
    Duration::from_secs(shared.config.files.idle_timeout_secs)
}

/// `PATCH /v1/files/{id}`: continues an upload at `Upload-Offset`.
async fn append(shared: &Shared, req: Request<Incoming>, id: &str) -> Reply {
    let caller = caller(shared, req.headers()).await?;
    let offset = number(req.headers(), UPLOAD_OFFSET)?
        .ok_or_else(|| fail(Error::InvalidArgument("Upload-Offset is required".into())))?;
    let body = chunks(req.into_body(), idle(shared));
    match shared
        .engine
        .upload_chunks(caller.clone(), id, offset, body)
        .await
    {
        Ok(state) => Ok(with_offset(
            json(StatusCode::OK, file_json(&state.file, state.offset)),
            state.offset,
        )),
        Err(e @ Error::Conflict(_)) => {
            // Tell the client where to continue.
            let resp = fail(e);
            Err(match shared.engine.upload_offset(caller, id).await {
                Ok(state) => Box::new(with_offset(*resp, state.offset)),
                Err(_) => resp,
            })
        }
        Err(e) => Err(fail(e)),
    }
}

/// `HEAD /v1/files/{id}`: an upload's offset for its uploader, else the
/// download's headers.
async fn head(shared: &Shared, req: &Request<Incoming>, id: &str) -> Reply {
    let caller = caller(shared, req.headers()).await?;
    if let Ok(state) = shared.engine.upload_offset(caller, id).await
        && state.file.status == FileStatus::Uploading
    {
        let mut resp = with_offset(empty(StatusCode::OK), state.offset);
        resp.headers_mut()
            .insert(UPLOAD_LENGTH, HeaderValue::from(state.file.size));
        return Ok(resp);
    }
    download(shared, req, id, true).await
}

/// `GET /v1/files/{id}` (and `HEAD` of a complete file).
async fn download(shared: &Shared, req: &Request<Incoming>, id: &str, head_only: bool) -> Reply {
    let caller = caller(shared, req.headers()).await?;
    let file = shared.engine.open_file(caller, id).await.map_err(fail)?;
    let meta = file.file().clone();
    let etag = format!("\"{}\"", meta.sha256);
    let header_str = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let mut resp = if none_match(header_str(header::IF_NONE_MATCH), &etag) {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let (status, range) = match parse_range(header_str(header::RANGE), meta.size) {
            RangeAsk::Whole => (StatusCode::OK, 0..meta.size),
            RangeAsk::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
            RangeAsk::Unsatisfiable => {
                let mut resp = fail(Error::InvalidArgument(format!(
                    "the range is outside the file's {} bytes",
                    meta.size
                )));
                *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Err(resp);
            }
        };
        let len = range.end - range.start;
        let mut resp = if head_only {
            empty(status)
        } else {
            let stream = file.read(Some(range.clone())).await.map_err(fail)?;
            stream_body(status, stream)
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::PARTIAL_CONTENT
            && let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        let mime = if meta.mime_type == "text/plain" {
            "text/plain; charset=utf-8"
        } else {
            meta.mime_type.as_str()
        };
        if let Ok(v) = HeaderValue::from_str(mime) {
            h.insert(header::CONTENT_TYPE, v);
        }
        let inline = ["image/", "audio/", "video/"]
            .iter()
            .any(|p| meta.mime_type.starts_with(p));
        if let Ok(v) = HeaderValue::from_str(&content_disposition(inline, &meta.name)) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        resp
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok(resp)
}

/// `GET /v1/files?limit=N`: files others shared in the caller's conversations.
async fn list(shared: &Shared, req: &Request<Incoming>) -> Reply {
    let caller = caller(shared, req.headers()).await?;
    let limit = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let files = shared.engine.received_files(caller, limit).await.map_err(fail)?;
    let list: Vec<serde_json::Value> = files
        .iter()
        .map(|s| {
            let mut v = file_json(&s.file, s.file.size);
            v["conversation_id"] = s.conversation_id.into();
            v["shared_at"] = s.shared_at.into();
            v
        })
        .collect();
    Ok(json(StatusCode::OK, serde_json::json!({ "files": list })))
}
