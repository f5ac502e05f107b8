//! One WebSocket connection: writes frames, matches responses to requests,
//! and hands events to a callback.

use crate::{Error, Result};
use futures_util::{SinkExt, StreamExt};
use im_protocol::{Format, codec, v1};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<v1::response::Result>>>>;

/// A live connection.
pub(crate) struct Link {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    closed: AtomicBool,
    format: Format,
}

impl Link {
    /// Connects and starts the I/O task. `on_event` is called for every event,
    /// in order, on the I/O task; `on_close` once when the connection ends.
    pub(crate) async fn connect(
        url: &str,
        format: Format,
        on_event: impl Fn(v1::event::Kind) + Send + 'static,
        on_close: impl FnOnce(String) + Send + 'static,
    ) -> Result<Arc<Link>> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20));
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_with_config(url, Some(config), true),
        )
        .await
        .map_err(|_| Error::Connect(format!("{url}: timed out")))?
        .map_err(|e| Error::Connect(format!("{url}: {e}")))?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let link = Arc::new(Link {
            out: tx,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            format,
        });
        let io_link = link.clone();
        tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let reason = loop {
                tokio::select! {
                    out = rx.recv() => {
                        let Some(msg) = out else { break "closed by client".to_owned() };
                        let is_close = matches!(msg, Message::Close(_));
                        let mut ok = sink.feed(msg).await.is_ok();
                        while ok {
                            match rx.try_recv() {
                                Ok(more) => ok = sink.feed(more).await.is_ok(),
                                Err(_) => break,
                            }
                        }
                        if !ok || sink.flush().await.is_err() {
                            break "write failed".to_owned();
                        }
                        if is_close {
                            break "closed by client".to_owned();
                        }
                    }
                    incoming = stream.next() => {
                        let (data, fmt) = match incoming {
                            Some(Ok(Message::Binary(b))) => (b, Format::Binary),
                            Some(Ok(Message::Text(t))) => (bytes::Bytes::from(t), Format::Json),
                            Some(Ok(Message::Close(frame))) => {
                                break frame.map_or_else(|| "closed by server".to_owned(), |f| f.reason.to_string());
                            }
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => break e.to_string(),
                            None => break "connection lost".to_owned(),
                        };
                        match codec::decode::<v1::ServerFrame>(&data, fmt, usize::MAX) {
                            Ok(v1::ServerFrame { body: Some(v1::server_frame::Body::Response(r)) }) => {
                                let waiter = io_link.pending.lock().remove(&r.request_id);
                                if let Some(waiter) = waiter {
                                    let result = match r.result {
                                        Some(v1::response::Result::Error(e)) => Err(Error::Server {
                                            code: v1::ErrorCode::try_from(e.code).unwrap_or(v1::ErrorCode::Unspecified),
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
                            Ok(v1::ServerFrame { body: Some(v1::server_frame::Body::Event(v1::Event { kind: Some(kind) })) }) => on_event(kind),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "undecodable frame from server"),
                        }
                    }
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
        let msg = match self.format {
            Format::Binary => Message::Binary(bytes),
            Format::Json => Message::Text(
                tokio_tungstenite::tungstenite::Utf8Bytes::try_from(bytes)
                    .map_err(|e| Error::Protocol(e.to_string()))?,
            ),
        };
        if self.out.send(msg).is_err() || self.is_closed() {
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
        let _ = self.out.send(Message::Close(None));
    }
}
