//! One connection: writes frames, matches responses to requests, and hands
//! events to a callback. The bytes travel over whatever [`Connector`] the
//! client was configured with.

use crate::transport::{ConnectOptions, Connector, FromServer, ToServer};
use crate::{Error, Result};
use im_protocol::{Format, codec, v1};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<v1::response::Result>>>>;

/// A live connection.
pub(crate) struct Link {
    out: mpsc::UnboundedSender<ToServer>,
    pending: Pending,
    next_id: AtomicU64,
    closed: AtomicBool,
    format: Format,
}

impl Link {
    /// Connects and starts the reading task. `on_event` is called for every
    /// event, in order, on that task; `on_close` once when the connection ends.
    pub(crate) async fn connect(
        connector: &dyn Connector,
        url: &str,
        options: &ConnectOptions,
        on_event: impl Fn(v1::event::Kind) + Send + 'static,
        on_close: impl FnOnce(String) + Send + 'static,
    ) -> Result<Arc<Link>> {
        let channel = connector.connect(url, options).await?;
        let format = options.format;
        let link = Arc::new(Link {
            out: channel.to_server,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            format,
        });
        let io_link = link.clone();
        let mut from_server = channel.from_server;
        tokio::spawn(async move {
            let reason = loop {
                let data = match from_server.recv().await {
                    Some(FromServer::Frame(data)) => data,
                    Some(FromServer::Closed { reason, .. }) => break reason,
                    None => break "connection lost".to_owned(),
                };
                match codec::decode::<v1::ServerFrame>(&data, format, usize::MAX) {
                    Ok(v1::ServerFrame {
                        body: Some(v1::server_frame::Body::Response(r)),
                    }) => {
                        let waiter = io_link.pending.lock().remove(&r.request_id);
                        if let Some(waiter) = waiter {
                            let result = match r.result {
                                Some(v1::response::Result::Error(e)) => Err(Error::Server {
                                    code: v1::ErrorCode::try_from(e.code)
                                        .unwrap_or(v1::ErrorCode::Unspecified),
                                    message: e.message,
                                }),
                                Some(ok) => Ok(ok),
                                None => Err(Error::Protocol("empty response".into())),
                            };
                            let _ = waiter.send(result);
                        } else {
                            tracing::debug!(request_id = r.request_id, "response to no pending request");
                        }
                    }
                    Ok(v1::ServerFrame {
                        body: Some(v1::server_frame::Body::Event(v1::Event { kind: Some(kind) })),
                    }) => on_event(kind),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable frame from server"),
                }
            };
            io_link.closed.store(true, Ordering::SeqCst);
            // Dropping the waiters fails their requests with `Disconnected`.
            io_link.pending.lock().clear();
            on_close(reason);
        });
        Ok(link)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends a request and waits for its response.
    pub(crate) async fn call(
        &self,
        body: v1::client_frame::Body,
        timeout: Duration,
    ) -> Result<v1::response::Result> {
        if self.is_closed() {
            return Err(Error::Disconnected);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let frame = v1::ClientFrame {
            request_id: id,
            body: Some(body),
        };
        let bytes = codec::encode(&frame, self.format);
        if self.out.send(ToServer::Frame(bytes)).is_err() || self.is_closed() {
            self.pending.lock().remove(&id);
            return Err(Error::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Disconnected),
            Err(_) => {
                self.pending.lock().remove(&id);
                Err(Error::Timeout)
            }
        }
    }

    /// Starts a clean close.
    pub(crate) fn close(&self) {
        let _ = self.out.send(ToServer::Close);
    }
}
