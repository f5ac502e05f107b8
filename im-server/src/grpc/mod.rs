//! gRPC (HTTP/2, tonic) on its own listener: `im.v1.Chat/Connect` carries
//! protocol sessions exactly like a WebSocket, `im.v1.Api` a few unary
//! calls, `im.v1.Files` uploads and downloads, and server reflection
//! describes them. See `grpc.proto`.
//!
//! Each accepted connection holds a permit of the server's connection limit
//! (each `Connect` stream holds one more, like a WebSocket), has its own
//! request rate limit for unary calls, and is closed gracefully (HTTP/2
//! GOAWAY) at shutdown after its sessions were told why.

mod api;
mod files;
mod session;

use crate::shared::Shared;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use im_core::connection::TokenBucket;
use im_core::{Caller, Error};
use im_protocol::grpc::{
    api_server::ApiServer, chat_server::ChatServer, error_status, files_server::FilesServer,
};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;

/// The routes of every gRPC connection: the services and reflection.
/// Built once; each connection clones it.
pub(crate) fn routes(shared: &Arc<Shared>) -> Routes {
    // Frames a little over the protocol's limit still reach the session
    // driver, which answers them with a typed TOO_LARGE; far larger ones end
    // the stream unread (the WebSocket transport does the same).
    let max_message = shared.connection.max_frame_bytes * 4;
    let chat = ChatServer::new(session::ChatService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(max_message);
    let api = ApiServer::new(api::ApiService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(max_message);
    let files = FilesServer::new(files::FilesService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(files::MAX_UPLOAD_MESSAGE);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(im_protocol::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the schema's descriptor set is valid");
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(im_protocol::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the schema's descriptor set is valid");
    Routes::new(chat)
        .add_service(api)
        .add_service(files)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .prepare()
}

/// Serves one accepted gRPC connection (plain TCP or TLS) until the client
/// leaves or the server shuts down.
pub(crate) async fn serve_connection<IO>(
    shared: Arc<Shared>,
    routes: Routes,
    io: IO,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limit = ConnectionLimit::new(&shared.connection);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(limit.clone());
        let mut routes = routes.clone();
        async move { tower_service::Service::call(&mut routes, request).await }
    });
    let heartbeat = Duration::from_millis(u64::from(shared.connection.heartbeat_interval_ms));
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(shared.config.grpc.max_streams_per_connection)
        // HTTP/2 pings find a dead peer even when no stream is open.
        .keep_alive_interval(Some(heartbeat))
        .keep_alive_timeout(heartbeat)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "grpc connection error");
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(permit);
}

/// Serves one accepted gRPC-over-TLS connection: the handshake (bounded by
/// `tls.handshake_timeout_ms`, in this connection's task), then as plain.
pub(crate) async fn serve_tls(
    shared: Arc<Shared>,
    routes: Routes,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(stream) = shared.tls_handshake(&acceptor, stream, peer).await else {
        return;
    };
    serve_connection(shared, routes, stream, peer, permit).await;
}

/// A connection's request rate limit for unary calls (sessions have their
/// own, in the session driver).
#[derive(Clone)]
pub(crate) struct ConnectionLimit(Arc<Mutex<TokenBucket>>);

impl ConnectionLimit {
    fn new(config: &im_core::ConnectionConfig) -> Self {
        let bucket = TokenBucket::new(config.requests_per_second, config.request_burst, Instant::now());
        Self(Arc::new(Mutex::new(bucket)))
    }

    /// Takes one request's token; false when the connection is over its rate.
    fn admit(&self) -> bool {
        self.0.lock().try_take(Instant::now())
    }
}

/// Spends one request of the connection's rate limit (unary calls and the
/// start of file streams; sessions have the driver's); `UNAVAILABLE` once
/// shutdown began.
fn admit<T>(shared: &Shared, request: &tonic::Request<T>) -> Result<(), Status> {
    if shared.shutdown.is_cancelled() {
        return Err(status_of(&Error::Unavailable("server is shutting down".into())));
    }
    match request.extensions().get::<ConnectionLimit>() {
        Some(limit) if !limit.admit() => Err(status_of(&Error::RateLimited(
            "too many requests on this connection".into(),
        ))),
        _ => Ok(()),
    }
}

/// The caller named by the request's bearer token, once admitted.
async fn caller<T>(shared: &Shared, request: &tonic::Request<T>) -> Result<Caller, Status> {
    admit(shared, request)?;
    let token = bearer_token(request.metadata()).ok_or_else(|| {
        status_of(&Error::Unauthenticated(
            "send `authorization: Bearer <token>` metadata".into(),
        ))
    })?;
    let user = shared
        .engine
        .authenticate(&token)
        .await
        .map_err(|e| status_of(&e))?;
    Ok(Caller::user(user.id))
}

/// The token of `authorization: Bearer <token>` metadata.
fn bearer_token(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// An engine error as a gRPC status: the one mapping every gRPC answer uses.
fn status_of(error: &Error) -> Status {
    error_status(&error.to_wire())
}
