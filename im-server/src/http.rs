//! HTTP/1.1 connections (hyper 1) and the route table.

use crate::responses::{Body, error, json, text};
use crate::shared::Shared;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_core::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;

/// Largest HTTP request body accepted by the JSON endpoints.
const MAX_JSON_BODY: usize = 16 * 1024;

/// Answers a connection over the limit with 503 and closes it.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":{"code":"UNAVAILABLE","message":"connection limit reached"}}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// A connection to the TLS listener: the handshake (bounded by
/// `tls.handshake_timeout_ms`, abandoned at shutdown), then the same HTTP
/// and WebSocket service as plain connections, or 503 when over the limit.
pub(crate) async fn serve_tls<S>(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: S,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(stream) = shared.tls_handshake(&acceptor, stream, peer).await else {
        return;
    };
    match permit {
        Some(permit) => serve_connection(shared, stream, peer, permit).await,
        None => refuse(stream).await,
    }
}

/// The connection's permit: moves to the WebSocket task on upgrade, else is
/// released when the HTTP connection ends.
type PermitSlot = Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>;

/// Serves HTTP/1.1 (and WebSocket upgrades) on one connection, plain or TLS.
pub(crate) async fn serve_connection<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A peer that stops reading (a download nobody reads) is dropped.
    let stall = std::time::Duration::from_secs(shared.config.files.idle_timeout_secs);
    let io = TokioIo::new(crate::write_timeout::WriteTimeout::new(stream, stall));
    let svc_shared = shared.clone();
    let slot: PermitSlot = Arc::new(std::sync::Mutex::new(Some(permit)));
    let service = hyper::service::service_fn(move |req| route(svc_shared.clone(), req, slot.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "http connection error");
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn route(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    permit: PermitSlot,
) -> Result<Response<Body>, std::convert::Infallible> {
    if req.uri().path().starts_with("/v1/files") {
        return Ok(crate::files::route(&shared, req).await);
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => ready(&shared).await,
        (&Method::POST, "/v1/auth/register") => auth(&shared, req, true).await,
        (&Method::POST, "/v1/auth/login") => auth(&shared, req, false).await,
        (&Method::GET, "/v1/ws") => websocket(&shared, req, &permit),
        (_, "/healthz" | "/readyz" | "/v1/auth/register" | "/v1/auth/login" | "/v1/ws") => {
            let mut resp = error(&Error::InvalidArgument("method not allowed".into()));
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp
        }
        _ => error(&Error::NotFound("no such route".into())),
    };
    Ok(resp)
}

/// Upgrades to the WebSocket transport; the connection's permit moves to it.
fn websocket(shared: &Shared, mut req: Request<Incoming>, permit: &PermitSlot) -> Response<Body> {
    if shared.shutdown.is_cancelled() {
        return error(&Error::Unavailable("server is shutting down".into()));
    }
    let shutdown = shared.shutdown.clone().cancelled_owned();
    match crate::websocket::upgrade(
        &mut req,
        shared.engine.clone(),
        shared.connection.clone(),
        shutdown,
    ) {
        Ok((response, serve)) => {
            let permit = permit.lock().ok().and_then(|mut slot| slot.take());
            shared.spawn_connection(serve, permit);
            response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
        }
        Err(e) => error(&e),
    }
}

async fn ready(shared: &Shared) -> Response<Body> {
    if shared.shutdown.is_cancelled() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if let Err(e) = shared.engine.store().health().await {
        tracing::warn!(error = %e, "readiness: store unavailable");
        return text(StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n");
    }
    // Sends are still stored and acked during a broker outage; only live
    // delivery between nodes waits for it.
    if let Err(e) = shared.engine.fanout_health().await {
        tracing::warn!(error = %e, "readiness: fan-out unavailable");
        return text(StatusCode::SERVICE_UNAVAILABLE, "fan-out unavailable\n");
    }
    text(StatusCode::OK, "ready\n")
}

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

async fn auth(shared: &Shared, req: Request<Incoming>, register: bool) -> Response<Body> {
    let read = Limited::new(req.into_body(), MAX_JSON_BODY).collect();
    let body = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return error(&Error::TooLarge(format!(
                "request body is limited to {MAX_JSON_BODY} bytes"
            )));
        }
        Err(_) => {
            return error(&Error::InvalidArgument(
                "request body not received in time".into(),
            ));
        }
    };
    let creds: Credentials = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(&Error::InvalidArgument(format!(
                "expected JSON {{\"username\", \"password\"}}: {e}"
            )));
        }
    };
    let issued = if register {
        shared
            .engine
            .register(&creds.username, &creds.password, &creds.display_name)
            .await
    } else {
        shared.engine.login(&creds.username, &creds.password).await
    };
    match issued {
        Ok(t) => json(
            if register {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            serde_json::json!({"token": t.token, "user_id": t.user.id, "expires_at": t.expires_at}),
        ),
        Err(e) => error(&e),
    }
}
