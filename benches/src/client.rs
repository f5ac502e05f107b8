//! A lean protocol client for load: one task per connection, binary frames,
//! requests pipelined, events handed to a callback.

use crate::scenario::TlsTarget;
use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use im_protocol::{Format, codec};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Waiters = Mutex<HashMap<u64, oneshot::Sender<Result<Reply, v1::Error>>>>;

/// The server answered a request with an error (inside the `anyhow::Error`
/// a call returns, so callers can tell e.g. `UNAVAILABLE` from the rest).
#[derive(Debug)]
pub struct ServerError(pub v1::Error);

impl ServerError {
    /// Whether `e` is a server error with this code.
    pub fn is(e: &anyhow::Error, code: v1::ErrorCode) -> bool {
        e.downcast_ref::<ServerError>()
            .is_some_and(|s| s.0.code == code as i32)
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = v1::ErrorCode::try_from(self.0.code).map_or("unknown code", |c| c.as_str_name());
        write!(f, "server error {code}: {}", self.0.message)
    }
}

impl std::error::Error for ServerError {}

/// What a connection's task writes.
enum Outgoing {
    Frame(Bytes),
    Close,
}

/// One authenticated connection.
pub struct Conn {
    out: mpsc::UnboundedSender<Outgoing>,
    waiters: Arc<Waiters>,
    next: AtomicU64,
    /// The user this connection is signed in as.
    pub user_id: u64,
}

/// Registers a user over HTTP; returns (user id, token).
pub async fn register(
    http_addr: SocketAddr,
    username: &str,
    password: &str,
) -> anyhow::Result<(u64, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let mut stream = tokio::net::TcpStream::connect(http_addr).await?;
    let req = format!(
        "POST /v1/auth/register HTTP/1.1\r\nHost: {http_addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("bad HTTP response")?;
    if !head.starts_with("HTTP/1.1 201") {
        bail!("register {username}: {head} {body}");
    }
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok((
        v["user_id"].as_u64().context("user_id")?,
        v["token"].as_str().context("token")?.to_owned(),
    ))
}

impl Conn {
    /// Connects from `source` (a loopback address, to spread source ports)
    /// to `addr`, or over TLS to `tls.addr`, authenticates with `token`, and
    /// calls `on_event` for every event.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&TlsTarget>,
        source: Option<IpAddr>,
        token: &str,
        on_event: impl Fn(v1::event::Kind) + Send + 'static,
    ) -> anyhow::Result<Conn> {
        let waiters: Arc<Waiters> = Arc::new(Mutex::new(HashMap::new()));
        let tx = websocket(addr, tls, source, Reader::new(waiters.clone(), on_event)).await?;
        Self::hello(tx, waiters, token).await
    }

    /// The same over gRPC's `Chat.Connect` stream at `addr` (one HTTP/2
    /// connection per `Conn`).
    pub async fn connect_grpc(
        addr: SocketAddr,
        token: &str,
        on_event: impl Fn(v1::event::Kind) + Send + 'static,
    ) -> anyhow::Result<Conn> {
        let waiters: Arc<Waiters> = Arc::new(Mutex::new(HashMap::new()));
        let tx = grpc(addr, Reader::new(waiters.clone(), on_event)).await?;
        Self::hello(tx, waiters, token).await
    }

    async fn hello(
        tx: mpsc::UnboundedSender<Outgoing>,
        waiters: Arc<Waiters>,
        token: &str,
    ) -> anyhow::Result<Conn> {
        let mut conn = Conn {
            out: tx,
            waiters,
            next: AtomicU64::new(1),
            user_id: 0,
        };
        match conn
            .call(Body::Hello(v1::Hello {
                protocol_version: im_protocol::PROTOCOL_VERSION,
                token: token.to_owned(),
                // Calls are made from a device.
                device_id: "im-load".into(),
            }))
            .await?
        {
            Reply::Hello(ok) => conn.user_id = ok.user.context("hello without user")?.id,
            other => bail!("unexpected hello reply {other:?}"),
        }
        Ok(conn)
    }

    /// Sends a request and waits for its reply.
    pub async fn call(&self, body: Body) -> anyhow::Result<Reply> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        let frame = v1::ClientFrame {
            request_id: id,
            body: Some(body),
        };
        self.out
            .send(Outgoing::Frame(codec::encode(&frame, Format::Binary)))
            .map_err(|_| anyhow::anyhow!("connection closed"))?;
        match rx.await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ServerError(e).into()),
            Err(_) => bail!("connection closed before the reply"),
        }
    }

    /// Sends a text message; returns the ack.
    pub async fn send(
        &self,
        target: v1::send_message::Target,
        client_msg_id: String,
        text: String,
    ) -> anyhow::Result<v1::SendAck> {
        match self
            .call(Body::Send(v1::SendMessage {
                target: Some(target),
                client_msg_id,
                content: Some(v1::Content::text(text)),
                ..Default::default()
            }))
            .await?
        {
            Reply::Ack(ack) => Ok(ack),
            other => bail!("unexpected send reply {other:?}"),
        }
    }

    /// Like [`Conn::send`], but while the server answers `UNAVAILABLE` (e.g.
    /// the database aborted one side of a deadlock between nodes) sends again
    /// with the same client message id, as the SDK does, at most `retries`
    /// times; returns the outcome and the number of retries.
    pub async fn send_retrying(
        &self,
        target: v1::send_message::Target,
        client_msg_id: String,
        text: String,
        retries: u32,
    ) -> (anyhow::Result<v1::SendAck>, u32) {
        let mut done = 0;
        loop {
            match self.send(target, client_msg_id.clone(), text.clone()).await {
                Err(e) if done < retries && ServerError::is(&e, v1::ErrorCode::Unavailable) => {
                    done += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(done))).await;
                }
                outcome => return (outcome, done),
            }
        }
    }

    /// Creates a group with these members; returns its id.
    pub async fn create_group(&self, title: &str, member_ids: Vec<u64>) -> anyhow::Result<u64> {
        match self
            .call(Body::CreateGroup(v1::CreateGroup {
                title: title.into(),
                member_ids,
            }))
            .await?
        {
            Reply::Conversation(c) => Ok(c.id),
            other => bail!("unexpected create-group reply {other:?}"),
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.out.send(Outgoing::Close);
    }
}

/// Hands each server frame to its waiter or to the event callback.
struct Reader<F> {
    waiters: Arc<Waiters>,
    on_event: F,
}

impl<F: Fn(v1::event::Kind)> Reader<F> {
    fn new(waiters: Arc<Waiters>, on_event: F) -> Self {
        Self { waiters, on_event }
    }

    fn frame(&self, data: &[u8]) {
        let Ok(frame) = codec::decode::<v1::ServerFrame>(data, Format::Binary, usize::MAX) else {
            return;
        };
        match frame.body {
            Some(v1::server_frame::Body::Response(r)) => {
                if let Some(waiter) = self.waiters.lock().remove(&r.request_id) {
                    let _ = waiter.send(match r.result {
                        Some(Reply::Error(e)) => Err(e),
                        Some(ok) => Ok(ok),
                        None => Err(v1::Error::default()),
                    });
                }
            }
            Some(v1::server_frame::Body::Event(v1::Event { kind: Some(kind) })) => (self.on_event)(kind),
            _ => {}
        }
    }

    /// The connection ended: fail every request still waiting.
    fn closed(&self) {
        self.waiters.lock().clear();
    }
}

/// A WebSocket from `source` to `addr`, or over TLS to `tls.addr`; frames
/// go out through the sender.
async fn websocket<F>(
    addr: SocketAddr,
    tls: Option<&TlsTarget>,
    source: Option<IpAddr>,
    reader: Reader<F>,
) -> anyhow::Result<mpsc::UnboundedSender<Outgoing>>
where
    F: Fn(v1::event::Kind) + Send + 'static,
{
    let addr = tls.map_or(addr, |t| t.addr);
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
    if let Some(tls) = tls {
        let stream = tls
            .roots
            .connect(&tls.server_name, stream, &[b"http/1.1"])
            .await?;
        let url = format!("wss://{}:{}/v1/ws", tls.server_name, addr.port());
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .context("websocket handshake")?;
        tokio::spawn(pump(ws, rx, reader));
    } else {
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(format!("ws://{addr}/v1/ws"), stream, Some(config))
                .await
                .context("websocket handshake")?;
        tokio::spawn(pump(ws, rx, reader));
    }
    Ok(tx)
}

/// Moves frames between a WebSocket and its connection's channel.
async fn pump<S, F>(ws: WebSocketStream<S>, mut rx: mpsc::UnboundedReceiver<Outgoing>, reader: Reader<F>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(v1::event::Kind),
{
    let message = |out| match out {
        Outgoing::Frame(bytes) => Message::Binary(bytes),
        Outgoing::Close => Message::Close(None),
    };
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if sink.feed(message(out)).await.is_err() { break; }
                while let Ok(more) = rx.try_recv() {
                    if sink.feed(message(more)).await.is_err() { break; }
                }
                if sink.flush().await.is_err() { break; }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(data))) => reader.frame(&data),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    reader.closed();
}

/// A `Chat.Connect` stream on its own HTTP/2 connection to `addr`.
async fn grpc<F>(addr: SocketAddr, reader: Reader<F>) -> anyhow::Result<mpsc::UnboundedSender<Outgoing>>
where
    F: Fn(v1::event::Kind) + Send + 'static,
{
    use im_protocol::grpc::chat_client::ChatClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .context("grpc connect")?;
    let (up, up_rx) = mpsc::unbounded_channel::<Bytes>();
    let response = ChatClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .connect(tokio_stream::wrappers::UnboundedReceiverStream::new(up_rx))
        .await
        .context("grpc stream")?;
    let mut frames = response.into_inner();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(async move {
        let mut up = Some(up);
        loop {
            tokio::select! {
                out = rx.recv(), if up.is_some() => match out {
                    Some(Outgoing::Frame(frame)) => {
                        if let Some(up) = &up {
                            let _ = up.send(frame);
                        }
                    }
                    Some(Outgoing::Close) | None => up = None,
                },
                incoming = frames.message() => match incoming {
                    // A heartbeat: answer it.
                    Ok(Some(data)) if data.is_empty() => {
                        if let Some(up) = &up {
                            let _ = up.send(Bytes::new());
                        }
                    }
                    Ok(Some(data)) => reader.frame(&data),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        reader.closed();
    });
    Ok(tx)
}
