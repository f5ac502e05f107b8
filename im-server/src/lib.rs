//! # im-server
//!
//! The reference server: wires [`im_core`] to HTTP (hyper) and WebSocket
//! (tungstenite), reads the configuration, and owns signals and graceful
//! shutdown. The library form exists so tests and embedders can start a
//! server on any listener and stop it with a future:
//!
//! ```no_run
//! # async fn demo() -> im_server::Result<()> {
//! let config = im_server::ServerConfig::default();
//! let server = im_server::Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/auth/register`, `POST /v1/auth/login` | JSON `{"username","password"}` → `{"token","user_id","expires_at"}` |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | the store answers and the server is not shutting down |
//! | `GET /v1/ws` | WebSocket; see `docs/PROTOCOL.md` |
//! | `POST /v1/files`, `HEAD`/`PATCH`/`GET /v1/files/{id}`, `GET /v1/files` | files: resumable upload, ranged download, files received (`docs/PROTOCOL.md`, "Files") |
//!
//! With a `[tls]` section the same routes are also served over TLS (HTTPS
//! and WSS) on a second listener, with a certificate reloaded when its files
//! change; see [`tls`].
#![warn(missing_debug_implementations, unreachable_pub)]

mod backends;
pub mod config;
mod error;
mod files;
mod grpc;
mod http;
mod responses;
mod shared;
pub mod tls;
pub mod websocket;
mod write_timeout;

pub use backends::{open_blobs, open_fanout, open_presence, open_store};
pub use config::ServerConfig;
pub use error::{Result, ServerError};

use backends::node_name;
use im_core::Engine;
use im_core::connection::FrameTransport;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use shared::Shared;

/// Serves connections of other transports with the server's engine, limits
/// and shutdown. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Serves one connection over `transport`, exactly as a WebSocket is
    /// served: it counts against the connection limit, and graceful shutdown
    /// tells its client and waits for it. `UNAVAILABLE` when the server is
    /// shutting down or full.
    pub fn serve<T: FrameTransport + 'static>(
        &self,
        transport: T,
        bearer_token: Option<String>,
    ) -> Result<(), im_core::Error> {
        self.shared.serve_transport(transport, bearer_token)
    }

    /// The TLS certificate of `[tls]`, if configured: a listener of
    /// another transport makes its acceptor from it (with its own ALPN,
    /// e.g. [`tls::ALPN_H2`]) and so serves the reloaded certificate too.
    pub fn tls(&self) -> Option<&tls::TlsCertificate> {
        self.shared.tls.as_ref()
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    /// The gRPC listener, unless gRPC is off.
    grpc_listener: Option<TcpListener>,
    /// The HTTPS and WSS listener of `[tls]`, if configured.
    tls_listener: Option<TcpListener>,
    /// The gRPC-over-TLS listener, if `grpc.tls_listen` is set.
    grpc_tls_listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// Pending connections the kernel queues before `accept` (the kernel caps it
/// at `net.core.somaxconn`). A short queue drops SYNs under a connection
/// burst, and each dropped SYN costs the client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Opens the store and binds the configured address.
    pub async fn bind(config: ServerConfig) -> Result<Self> {
        let addr = config.listen_addr()?;
        let listener = listen(addr).map_err(|source| ServerError::Bind { addr, source })?;
        Self::with_listener(config, listener).await
    }

    /// Opens the store and serves HTTP and WebSocket on an existing listener
    /// (and gRPC on `grpc.listen`, unless it is off, and HTTPS and WSS on
    /// `tls.listen`, if `[tls]` is set).
    pub async fn with_listener(config: ServerConfig, listener: TcpListener) -> Result<Self> {
        config.validate()?;
        let grpc_listener = match config.grpc_addr()? {
            Some(addr) => Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?),
            None => None,
        };
        let mut tls = None;
        let mut tls_listener = None;
        let grpc_tls_listener = match config.grpc_tls_addr()? {
            Some(addr) => Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?),
            None => None,
        };
        if let (Some(section), Some(addr)) = (&config.tls, config.tls_addr()?) {
            tls = Some(tls::TlsCertificate::load(&section.cert_file, &section.key_file)?);
            tls_listener = Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?);
        }
        let store = open_store(&config).await?;
        // Names this node in the presence registry and in the fan-out's routing.
        let node = node_name();
        let mut builder = Engine::builder().node_id(node.clone());
        let mut routing = None;
        if let Some(presence) = open_presence(&config).await? {
            routing = Some(im_core::fanout::Routing {
                node,
                directory: presence.clone(),
            });
            builder = builder.presence(presence);
        }
        let engine = builder
            .store(store)
            .blobs(open_blobs(&config).await?)
            .fanout(open_fanout(&config, routing).await?)
            .config(config.engine_config())
            .password_auth(config.auth_config())
            .build();
        Ok(Self {
            listener,
            grpc_listener,
            tls_listener,
            grpc_tls_listener,
            shared: Arc::new(Shared {
                engine,
                connections: Arc::new(Semaphore::new(config.server.max_connections)),
                connection: Arc::new(config.connection_config()),
                config,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                tls,
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The address gRPC listens on, unless it is off.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// The address of the HTTPS and WSS listener, if `[tls]` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// The address of gRPC over TLS, if `grpc.tls_listen` is set.
    pub fn grpc_tls_addr(&self) -> Option<SocketAddr> {
        self.grpc_tls_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// The TLS certificate of `[tls]`, if configured (see [`ServerHandle::tls`]).
    pub fn tls(&self) -> Option<&tls::TlsCertificate> {
        self.shared.tls.as_ref()
    }

    /// The engine, for embedders that add their own routes.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// A handle for serving connections that arrive through a transport of
    /// the embedder's own, alongside the server's listeners.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops
    /// accepting, tells every WebSocket client why it is closed, lets
    /// in-flight requests finish, then flushes and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Server {
            listener,
            grpc_listener,
            tls_listener,
            grpc_tls_listener,
            shared,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "im-server listening");
        let routes = grpc::routes(&shared);
        if let Some(grpc_listener) = grpc_listener {
            tracing::info!(addr = %grpc_listener.local_addr()?, "gRPC listening");
            let routes = routes.clone();
            let serve = move |shared, stream, peer, permit| {
                grpc::serve_connection(shared, routes.clone(), stream, peer, permit)
            };
            shared
                .tasks
                .spawn(accept_loop(shared.clone(), grpc_listener, Refusal::Close, serve));
        }
        let every = shared.config.tls.as_ref().map_or(0, |t| t.reload_interval_ms);
        if let Some(certificate) = shared.tls.as_ref().filter(|_| every > 0) {
            let watch = certificate
                .clone()
                .watch(Duration::from_millis(every), shared.shutdown.clone());
            shared.tasks.spawn(watch);
        }
        if let (Some(listener), Some(certificate)) = (grpc_tls_listener, &shared.tls) {
            tracing::info!(addr = %listener.local_addr()?, "gRPC over TLS listening");
            let acceptor = certificate.acceptor(&[tls::ALPN_H2]);
            let serve = move |shared, stream, peer, permit| {
                grpc::serve_tls(shared, routes.clone(), acceptor.clone(), stream, peer, permit)
            };
            shared
                .tasks
                .spawn(accept_loop(shared.clone(), listener, Refusal::Close, serve));
        }
        if let (Some(tls_listener), Some(certificate)) = (tls_listener, &shared.tls) {
            tracing::info!(addr = %tls_listener.local_addr()?, "HTTPS and WSS listening");
            // The handshake runs in the connection's task, never here.
            let acceptor = certificate.acceptor(&[tls::ALPN_HTTP1]);
            let handshake = acceptor.clone();
            let serve = move |shared, stream, peer, permit| {
                http::serve_tls(shared, handshake.clone(), stream, peer, Some(permit))
            };
            shared.tasks.spawn(accept_loop(
                shared.clone(),
                tls_listener,
                Refusal::Https503(acceptor),
                serve,
            ));
        }
        // Housekeeping: expired tokens are deleted now and then.
        let housekeeping = shared.clone();
        shared.tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = housekeeping.shutdown.cancelled() => break,
                    _ = every.tick() => match housekeeping.engine.purge_expired_tokens().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(tokens = n, "expired tokens purged"),
                        Err(e) => tracing::warn!(error = %e, "purging expired tokens failed"),
                    },
                }
            }
        });
        // Files: abandoned uploads and files no message refers to.
        let files = shared.clone();
        shared.tasks.spawn(async move {
            let period = Duration::from_secs(files.config.files.cleanup_interval_secs);
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = files.shutdown.cancelled() => break,
                    _ = every.tick() => if let Err(e) = files.engine.file_housekeeping().await {
                        tracing::warn!(error = %e, "file clean-up failed");
                    },
                }
            }
        });
        // Disappearing messages: erased every second once their time is up.
        let expiry = shared.clone();
        shared.tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = expiry.shutdown.cancelled() => break,
                    _ = every.tick() => if let Err(e) = expiry.engine.expire_messages().await {
                        tracing::warn!(error = %e, "erasing expired messages failed");
                    },
                }
            }
        });
        // Stops accepting when `shutdown` completes (the future is dropped
        // with its listener).
        let http = accept_loop(shared.clone(), listener, Refusal::Http503, http::serve_connection);
        tokio::select! {
            _ = shutdown => {}
            _ = http => {}
        }
        tracing::info!(connections = shared.engine.sessions().len(), "shutting down");
        shared.shutdown.cancel();
        shared.tasks.close();
        let deadline = Duration::from_secs(shared.config.server.shutdown_timeout_secs);
        if tokio::time::timeout(deadline, shared.tasks.wait()).await.is_err() {
            tracing::warn!("connections did not finish within the shutdown timeout");
        }
        shared
            .engine
            .shutdown()
            .await
            .map_err(|source| ServerError::Store {
                context: "closing the store".into(),
                source,
            })?;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// How a connection over the connection limit is turned away.
enum Refusal {
    /// An HTTP/1.1 503 answer (HTTP and WebSocket clients read it).
    Http503,
    /// The same after a TLS handshake (bounded like any other).
    Https503(TlsAcceptor),
    /// Just closed (an HTTP/2 client sees the connection fail and retries).
    Close,
}

/// Accepts connections until shutdown starts. Each connection holds a permit
/// of the server's connection limit while `serve` runs as a tracked task.
async fn accept_loop<F, Fut>(shared: Arc<Shared>, listener: TcpListener, refusal: Refusal, serve: F)
where
    F: Fn(Arc<Shared>, TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match shared.connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        shared.tasks.spawn(serve(shared.clone(), stream, peer, permit));
                    }
                    Err(_) => match &refusal {
                        Refusal::Http503 => {
                            shared.tasks.spawn(http::refuse(stream));
                        }
                        Refusal::Https503(acceptor) => {
                            let refuse =
                                http::serve_tls(shared.clone(), acceptor.clone(), stream, peer, None);
                            shared.tasks.spawn(refuse);
                        }
                        Refusal::Close => drop(stream),
                    },
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("tls_addr", &self.tls_addr())
            .finish_non_exhaustive()
    }
}
