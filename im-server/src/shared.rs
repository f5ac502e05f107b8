//! What every connection of the reference server shares.

use crate::config::ServerConfig;
use im_core::Engine;
use im_core::connection::FrameTransport;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by every connection.
pub(crate) struct Shared {
    /// The engine.
    pub(crate) engine: Engine,
    /// The configuration.
    pub(crate) config: ServerConfig,
    /// Caps TCP connections (HTTP and WebSocket).
    pub(crate) connections: Arc<Semaphore>,
    /// Cancelled when shutdown starts.
    pub(crate) shutdown: CancellationToken,
    /// Per-connection settings, shared by every connection.
    pub(crate) connection: Arc<im_core::ConnectionConfig>,
    /// Tracks every connection task, to drain them at shutdown.
    pub(crate) tasks: TaskTracker,
    /// The certificate of the TLS listeners (`[tls]`), reloaded on change;
    /// every TLS listener makes its acceptor from it with its own ALPN.
    pub(crate) tls: Option<crate::tls::TlsCertificate>,
}

impl Shared {
    /// The server side of a TLS handshake on an accepted connection, in the
    /// connection's own task: bounded by `tls.handshake_timeout_ms` and
    /// abandoned at shutdown. `None` (logged) when it did not complete.
    pub(crate) async fn tls_handshake<S>(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        stream: S,
        peer: std::net::SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let timeout = self
            .config
            .tls
            .as_ref()
            .map_or(10_000, |t| t.handshake_timeout_ms);
        let handshake = crate::tls::handshake(acceptor, stream, std::time::Duration::from_millis(timeout));
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            done = handshake => match done {
                Ok(stream) => Some(stream),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
            },
        }
    }

    /// Serves one protocol session over `transport` (a WebSocket, a gRPC
    /// stream, an embedder's own): it holds a connection permit, and
    /// graceful shutdown tells its client and waits for it. `UNAVAILABLE`
    /// when the server is shutting down or full.
    pub(crate) fn serve_transport<T: FrameTransport + 'static>(
        &self,
        transport: T,
        bearer_token: Option<String>,
    ) -> Result<(), im_core::Error> {
        if self.shutdown.is_cancelled() {
            return Err(im_core::Error::Unavailable("server is shutting down".into()));
        }
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| im_core::Error::Unavailable("connection limit reached".into()))?;
        let serve = im_core::connection::serve(
            self.engine.clone(),
            self.connection.clone(),
            transport,
            bearer_token,
            self.shutdown.clone().cancelled_owned(),
        );
        self.spawn_connection(serve, Some(permit));
        Ok(())
    }

    /// Runs a connection's future as a tracked task (drained at shutdown)
    /// that holds its permit (if it has one) until it ends. The future is
    /// boxed once: moved into an async block and awaited there it would be
    /// stored twice in every idle connection's task.
    pub(crate) fn spawn_connection(
        &self,
        serve: impl std::future::Future<Output = ()> + Send + 'static,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let serve = Box::pin(serve);
        self.tasks.spawn(async move {
            serve.await;
            drop(permit);
        });
    }
}
