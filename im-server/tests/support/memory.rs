//! A second transport for the end-to-end cases: an in-memory duplex that
//! drives the engine's session driver through the server's
//! [`ServerHandle`], with no socket. The SDK reaches it through a
//! [`Connector`]; connections can be cut like the TCP proxy cuts sockets.

use bytes::Bytes;
use im_client_sdk::transport::{
    ConnectFuture, ConnectOptions, Connector, FrameChannel, FromServer, ToServer,
};
use im_client_sdk::{Format, v1};
use im_core::connection::{Close, FrameTransport, Incoming, Transmit, TransportError};
use im_server::ServerHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Client to server.
enum Up {
    Frame(Bytes, Format),
    Close,
}

/// Server to client.
enum Down {
    Frame(Bytes, Format),
    Closed { code: Option<u16>, reason: String },
}

/// The server's side of the duplex.
struct DuplexTransport {
    up: mpsc::UnboundedReceiver<Up>,
    down: mpsc::UnboundedSender<Down>,
    /// Frames beyond this are refused unread, as the WebSocket transport does.
    hard_limit: usize,
}

impl FrameTransport for DuplexTransport {
    async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
        match self.up.recv().await? {
            Up::Frame(data, _) if data.len() > self.hard_limit => Some(Err(TransportError::TooLarge)),
            Up::Frame(data, format) => Some(Ok(Incoming::Frame(data, format))),
            Up::Close => None,
        }
    }

    async fn feed(&mut self, transmit: Transmit) -> Result<(), TransportError> {
        match transmit {
            Transmit::Frame(data, format) => self
                .down
                .send(Down::Frame(data, format))
                .map_err(|_| TransportError::Failed("client gone".into())),
            // Nothing to ping: the duplex cannot go silent.
            Transmit::Ping | Transmit::Close(_) => Ok(()),
        }
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn close(&mut self, close: Option<Close>) {
        if let Some(c) = close {
            let _ = self.down.send(Down::Closed {
                code: Some(c.code.websocket()),
                reason: c.reason,
            });
        }
    }
}

/// Opens a duplex to the server: the client's ends.
fn open(
    server: &ServerHandle,
    max_frame: usize,
    token: Option<&str>,
) -> (mpsc::UnboundedSender<Up>, mpsc::UnboundedReceiver<Down>) {
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let transport = DuplexTransport {
        up: up_rx,
        down: down_tx,
        hard_limit: max_frame * 4,
    };
    server
        .serve(transport, token.map(str::to_owned))
        .expect("server accepts");
    (up_tx, down_rx)
}

/// The SDK's way to the duplex. Every connection runs through a relay task
/// that [`MemoryConnector::cut`] aborts, dropping both ends at once.
#[derive(Debug)]
pub struct MemoryConnector {
    server: ServerHandle,
    max_frame: usize,
    relays: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
    connections: AtomicUsize,
}

impl MemoryConnector {
    pub fn new(server: ServerHandle, max_frame: usize) -> Arc<Self> {
        Arc::new(Self {
            server,
            max_frame,
            relays: parking_lot::Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        })
    }

    /// Drops every connection made through this connector.
    pub fn cut(&self) {
        for relay in self.relays.lock().drain(..) {
            relay.abort();
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MemoryConnector {
    fn drop(&mut self) {
        self.cut();
    }
}

impl Connector for MemoryConnector {
    fn connect<'a>(&'a self, _url: &'a str, options: &'a ConnectOptions) -> ConnectFuture<'a> {
        let format = options.format;
        Box::pin(async move {
            let (up, mut down) = open(&self.server, self.max_frame, None);
            let (to_server, mut from_client) = mpsc::unbounded_channel::<ToServer>();
            let (to_client, from_server) = mpsc::unbounded_channel::<FromServer>();
            let relay = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        out = from_client.recv() => match out {
                            Some(ToServer::Frame(data)) => { let _ = up.send(Up::Frame(data, format)); }
                            Some(ToServer::Close) | None => {
                                let _ = up.send(Up::Close);
                                break;
                            }
                        },
                        back = down.recv() => match back {
                            Some(Down::Frame(data, _)) => { let _ = to_client.send(FromServer::Frame(data)); }
                            Some(Down::Closed { code, reason }) => {
                                let _ = to_client.send(FromServer::Closed { code, reason });
                                break;
                            }
                            None => {
                                let _ = to_client.send(FromServer::Closed { code: None, reason: "connection lost".into() });
                                break;
                            }
                        },
                    }
                }
            });
            self.connections.fetch_add(1, Ordering::SeqCst);
            self.relays.lock().push(relay.abort_handle());
            Ok(FrameChannel {
                to_server,
                from_server,
            })
        })
    }
}

/// A bare duplex client for feeding the server bad input.
pub struct RawDuplex {
    up: mpsc::UnboundedSender<Up>,
    down: mpsc::UnboundedReceiver<Down>,
}

impl RawDuplex {
    pub fn connect(server: &ServerHandle, max_frame: usize, token: Option<&str>) -> Self {
        let (up, down) = open(server, max_frame, token);
        Self { up, down }
    }

    pub fn send(&mut self, data: Vec<u8>, format: Format) {
        let _ = self.up.send(Up::Frame(Bytes::from(data), format));
    }

    /// The next server frame as canonical JSON; panics if the connection closed.
    pub async fn next_json(&mut self) -> serde_json::Value {
        match tokio::time::timeout(Duration::from_secs(30), self.down.recv()).await {
            Ok(Some(Down::Frame(data, format))) => {
                let frame: v1::ServerFrame =
                    im_client_sdk::im_protocol::codec::decode(&data, format, usize::MAX).unwrap();
                serde_json::to_value(&frame).unwrap()
            }
            Ok(Some(Down::Closed { code, reason })) => panic!("closed: {code:?} {reason}"),
            Ok(None) => panic!("connection lost"),
            Err(_) => panic!("no frame"),
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match self.down.recv().await {
                    Some(Down::Closed { code, .. }) => return code,
                    Some(Down::Frame(..)) => {}
                    None => return None,
                }
            }
        })
        .await
        .expect("server closes")
    }
}
