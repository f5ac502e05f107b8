//! Raw clients for bad input and cut connections: a TCP proxy whose
//! connections can be cut at will, a bare WebSocket client (plain or TLS),
//! and a WebSocket that never reads.

use futures_util::{SinkExt, StreamExt};
use im_client_sdk::{TlsConfig, v1};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use super::WAIT;

/// A TCP proxy whose connections can be cut at will.
pub struct Proxy {
    pub addr: SocketAddr,
    /// `ws`, `wss` or `grpc`: what the URLs through it speak.
    scheme: &'static str,
    /// What clients through it trust, for `wss`.
    pub tls: Option<TlsConfig>,
    live: Arc<parking_lot::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepted: Arc<AtomicUsize>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to a WebSocket listener.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_for(upstream, "ws", None).await
    }

    /// A proxy to a gRPC listener.
    pub async fn start_grpc(upstream: SocketAddr) -> Self {
        Self::start_for(upstream, "grpc", None).await
    }

    /// A proxy to a listener that speaks `scheme`; `tls`: what clients
    /// through it trust.
    pub async fn start_for(upstream: SocketAddr, scheme: &'static str, tls: Option<TlsConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let live = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, a, r) = (live.clone(), accepted.clone(), refusing.clone());
        let accept_task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                a.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().push(task.abort_handle());
            }
        });
        Self {
            addr,
            scheme,
            tls,
            live,
            accepted,
            refusing,
            accept_task,
        }
    }

    /// While set, new connections are dropped as soon as they arrive.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        match self.scheme {
            "grpc" => format!("grpc://{}", self.addr),
            "grpcs" => format!("grpcs://{}", self.addr),
            "wss" => format!("wss://{}/v1/ws", self.addr),
            _ => format!("ws://{}/v1/ws", self.addr),
        }
    }

    /// Drops every proxied connection.
    pub fn cut(&self) {
        for task in self.live.lock().drain(..) {
            task.abort();
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.cut();
    }
}

/// A byte stream, plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// A bare WebSocket client for feeding the server bad input.
pub struct RawWs {
    ws: Ws,
}

impl RawWs {
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Self {
        Self::connect_with(addr, token, None).await
    }

    /// With `tls`, over TLS (`wss://`) trusting its roots.
    pub async fn connect_with(addr: SocketAddr, token: Option<&str>, tls: Option<&TlsConfig>) -> Self {
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let mut req = format!("{scheme}://{addr}/v1/ws").into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let tcp = TcpStream::connect(addr).await.unwrap();
        let stream: Box<dyn Io> = match tls {
            Some(tls) => Box::new(
                tls.connect(&addr.ip().to_string(), tcp, &[b"http/1.1"])
                    .await
                    .unwrap(),
            ),
            None => Box::new(tcp),
        };
        let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
        Self { ws }
    }

    /// Err(HTTP status) if the upgrade is refused.
    pub async fn try_connect(addr: SocketAddr) -> Result<(), u16> {
        match tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")).await {
            Ok(_) => Ok(()),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    pub async fn send_json(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        // The server may close before reading everything of a huge frame.
        let _ = self.ws.send(Message::Binary(data.into())).await;
    }

    /// The next server frame as canonical JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await.expect("connection open").expect("frame") {
                    Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                    Message::Binary(b) => {
                        let frame: v1::ServerFrame = im_client_sdk::im_protocol::codec::decode(
                            &b,
                            im_client_sdk::Format::Binary,
                            usize::MAX,
                        )
                        .unwrap();
                        return serde_json::to_value(&frame).unwrap();
                    }
                    Message::Close(c) => panic!("closed: {c:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("a frame")
    }

    /// (request id, error code) of the next response, which must be an error.
    pub async fn error_code(&mut self) -> (String, String) {
        let v = self.next_json().await;
        let r = &v["response"];
        let code = r["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {v}"));
        (r["requestId"].as_str().unwrap_or("0").to_owned(), code.to_owned())
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("server closes")
    }
}

/// A WebSocket connection made by hand on a raw socket, which never reads
/// (so it never answers pings) until asked to.
pub struct SilentWs {
    stream: TcpStream,
}

impl SilentWs {
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Self { stream }
    }

    /// Reads everything the server sent until it closed; returns the reason
    /// of its close frame (the server's frames are unmasked and small).
    pub async fn close_reason(mut self) -> String {
        let mut data = Vec::new();
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut data))
            .await
            .unwrap()
            .unwrap();
        let mut i = 0;
        while i + 2 <= data.len() {
            let opcode = data[i] & 0x0f;
            let len = (data[i + 1] & 0x7f) as usize;
            let payload = &data[i + 2..(i + 2 + len).min(data.len())];
            if opcode == 0x8 {
                return String::from_utf8_lossy(&payload[2..]).into_owned();
            }
            i += 2 + len;
        }
        panic!("no close frame in {data:?}");
    }
}
