//! Files over HTTP in tests: a small hyper client (one connection per
//! request), deterministic pseudo-random file contents that are generated
//! chunk by chunk (never whole in memory), and streaming hashes.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Bytes `range` of the file made from `seed`: byte `i` is byte `i % 8` of
/// a 64-bit mix of `seed` and `i / 8`.
pub fn content(seed: u64, range: Range<u64>) -> Bytes {
    let start_word = range.start / 8;
    let end_word = range.end.div_ceil(8);
    let mut out = Vec::with_capacity(((end_word - start_word) * 8) as usize);
    for w in start_word..end_word {
        let mut z = seed ^ w.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let skip = (range.start - start_word * 8) as usize;
    Bytes::from(out).slice(skip..skip + (range.end - range.start) as usize)
}

/// SHA-256 (hex) of bytes `range` of the file made from `seed`.
pub fn content_sha(seed: u64, range: Range<u64>) -> String {
    let mut h = Sha256::new();
    let mut at = range.start;
    while at < range.end {
        let end = (at + (1 << 20)).min(range.end);
        h.update(content(seed, at..end));
        at = end;
    }
    hex::encode(h.finalize())
}

/// The file's `range` as a body of 64 KiB chunks; `sent` counts the bytes
/// the client took from it. With `fail_at`, the body fails after that many
/// bytes (a dropped connection).
pub fn content_body(seed: u64, range: Range<u64>, fail_at: Option<u64>, sent: Arc<AtomicU64>) -> Body {
    let stream = futures_util::stream::unfold(range.start, move |at| {
        let sent = sent.clone();
        async move {
            if let Some(fail) = fail_at
                && at >= range.start + fail
            {
                // Stops the stream once.
                return (at < range.end)
                    .then(|| (Err::<Frame<Bytes>, BoxError>("connection cut".into()), range.end));
            }
            if at >= range.end {
                return None;
            }
            let mut end = (at + 65_536).min(range.end);
            if let Some(fail) = fail_at {
                end = end.min(range.start + fail);
            }
            sent.fetch_add(end - at, Ordering::SeqCst);
            Some((Ok(Frame::data(content(seed, at..end))), end))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

pub fn bytes_body(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn no_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Sends one request on a new connection.
pub async fn send(addr: SocketAddr, req: Request<Body>) -> Result<Response<Incoming>, hyper::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// A request with a bearer token and headers.
pub fn request(
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Body,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(body).unwrap()
}

/// The whole body (small responses only).
pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

pub async fn body_json(resp: Response<Incoming>) -> serde_json::Value {
    serde_json::from_slice(&body_bytes(resp).await).unwrap()
}

/// The body's length and SHA-256, read as a stream.
pub async fn body_sha(resp: Response<Incoming>) -> (u64, String) {
    let mut h = Sha256::new();
    let mut len = 0u64;
    let mut stream = resp.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        h.update(&chunk);
    }
    (len, hex::encode(h.finalize()))
}

pub fn header(resp: &Response<Incoming>, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Every regular file under `dir`, relative paths.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The first `len` bytes of the file made from `seed`, then a body that
/// sends nothing more and never ends (a client waiting on a slow disk):
/// whatever the server answers, the client is listening.
pub fn stalling_body(seed: u64, len: u64) -> Body {
    let first = futures_util::stream::iter(
        (0..len)
            .step_by(65_536)
            .map(move |at| Ok::<_, BoxError>(Frame::data(content(seed, at..(at + 65_536).min(len))))),
    );
    StreamBody::new(first.chain(futures_util::stream::pending())).boxed_unsync()
}
