//! What every connection of the reference server shares.

use crate::config::ServerConfig;
use im_core::Engine;
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
}

impl Shared {
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
