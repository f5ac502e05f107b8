//! Test support: a real server on 127.0.0.1:0 with a temporary SQLite file,
//! SDK clients, a cuttable TCP proxy, a raw WebSocket client and raw HTTP;
//! on the TLS transport, with a certificate of a test CA.
#![allow(dead_code)]

pub mod certs;
pub mod grpc;
pub mod http_files;
pub mod memory;
pub mod process;
mod raw;

pub use certs::TestTls;
#[allow(unused_imports)] // not every test binary uses every one
pub use raw::{Proxy, RawWs, SilentWs};

use im_client_sdk::{Client, ClientConfig, Credentials, Event, Events, TlsConfig, v1};
use im_core::store::postgres::testing::TempSchema;
use im_server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PASSWORD: &str = "password123";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Where a test server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh schema in the PostgreSQL test database.
    Postgres,
}

/// How the SDK and raw clients reach a test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over TCP on 127.0.0.1.
    WebSocket,
    /// The in-memory duplex of [`memory`]: the session driver without a socket.
    Memory,
    /// gRPC's `Chat.Connect` stream over HTTP/2 on 127.0.0.1.
    Grpc,
    /// WebSocket over TLS (`wss://`) on the server's TLS listener, with a
    /// certificate of a test CA that the clients trust.
    WebSocketTls,
    /// gRPC over TLS (`grpcs://`), trusting the test CA.
    GrpcTls,
}

/// Keeps a test server's data alive across restarts; removes it at the end.
pub struct Data {
    _dir: tempfile::TempDir,
    _schema: Option<TempSchema>,
}

pub struct TestServer {
    /// The plain HTTP and WebSocket listener.
    pub addr: SocketAddr,
    /// The TLS listener, if the server has one.
    pub tls_addr: Option<SocketAddr>,
    /// Its certificate files and CA.
    pub tls: Option<Arc<TestTls>>,
    /// The gRPC listener.
    pub grpc_addr: SocketAddr,
    /// The gRPC-over-TLS listener, on the gRPC TLS transport.
    pub grpc_tls_addr: Option<SocketAddr>,
    pub max_frame: usize,
    pub transport: Transport,
    pub server: im_server::ServerHandle,
    /// The connector of SDK clients on the memory transport.
    memory: Arc<memory::MemoryConnector>,
    config: ServerConfig,
    dir: Arc<Data>,
    stop_tx: oneshot::Sender<()>,
    handle: JoinHandle<im_server::Result<()>>,
}

/// A stopped server whose data directory is kept for a restart.
pub struct StoppedServer {
    config: ServerConfig,
    dir: Arc<Data>,
    transport: Transport,
    tls: Option<Arc<TestTls>>,
}

/// A server configuration for tests on `backend`, and the data it uses.
pub fn test_config(backend: Backend) -> (ServerConfig, Data) {
    let dir = tempfile::tempdir().unwrap();
    let mut schema = None;
    let mut c = ServerConfig::default();
    c.server.listen = "127.0.0.1:0".into();
    c.grpc.listen = "127.0.0.1:0".into();
    c.server.shutdown_timeout_secs = 5;
    c.store.url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("im.sqlite3").display()),
        Backend::Postgres => {
            let s = TempSchema::create();
            let url = s.url();
            schema = Some(s);
            url
        }
    };
    // Cheap hashes keep tests fast; production uses the defaults.
    c.auth.argon2_m_cost = 256;
    c.auth.argon2_t_cost = 1;
    c.limits.requests_per_second = 100_000.0;
    c.limits.request_burst = 100_000.0;
    c.files.dir = dir.path().join("files").display().to_string();
    (
        c,
        Data {
            _dir: dir,
            _schema: schema,
        },
    )
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let (mut config, data) = test_config(backend);
        adjust(&mut config);
        Self::launch(config, Arc::new(data), Transport::WebSocket, None).await
    }

    /// A server whose SDK and raw clients use `transport`.
    pub async fn start_on(backend: Backend, transport: Transport) -> Self {
        Self::start_on_with(backend, transport, |_| {}).await
    }

    /// The same, with adjusted settings.
    pub async fn start_on_with(
        backend: Backend,
        transport: Transport,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let (mut config, data) = test_config(backend);
        let mut tls = None;
        if matches!(transport, Transport::WebSocketTls | Transport::GrpcTls) {
            let files = TestTls::new();
            config.tls = Some(files.section());
            tls = Some(Arc::new(files));
        }
        if transport == Transport::GrpcTls {
            config.grpc.tls_listen = Some("127.0.0.1:0".into());
        }
        adjust(&mut config);
        Self::launch(config, Arc::new(data), transport, tls).await
    }

    /// A server with a TLS listener (certificate files of `tls`) beside the
    /// plain one; its SDK clients use TLS.
    pub async fn start_tls(backend: Backend, tls: Arc<TestTls>) -> Self {
        let (mut config, data) = test_config(backend);
        config.tls = Some(tls.section());
        Self::launch(config, Arc::new(data), Transport::WebSocketTls, Some(tls)).await
    }

    async fn launch(
        config: ServerConfig,
        dir: Arc<Data>,
        transport: Transport,
        tls: Option<Arc<TestTls>>,
    ) -> Self {
        let server = Server::bind(config.clone()).await.unwrap();
        let addr = server.local_addr();
        let tls_addr = server.tls_addr();
        assert_eq!(tls_addr.is_some(), config.tls.is_some());
        let grpc_addr = server.grpc_addr().expect("gRPC is on in tests");
        let grpc_tls_addr = server.grpc_tls_addr();
        let server_handle = server.handle();
        let memory = memory::MemoryConnector::new(server_handle.clone(), config.limits.max_frame_bytes);
        assert!(addr.ip().is_loopback());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        Self {
            addr,
            tls_addr,
            tls,
            grpc_addr,
            grpc_tls_addr,
            max_frame: config.limits.max_frame_bytes,
            transport,
            server: server_handle,
            memory,
            config,
            dir,
            stop_tx,
            handle,
        }
    }

    /// Graceful shutdown; panics if the server fails to stop cleanly.
    pub async fn stop_and_keep(self) -> StoppedServer {
        let _ = self.stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("server stops within its deadline")
            .unwrap()
            .unwrap();
        let mut config = self.config;
        config.server.listen = self.addr.to_string();
        config.grpc.listen = self.grpc_addr.to_string();
        if let Some(addr) = self.grpc_tls_addr {
            config.grpc.tls_listen = Some(addr.to_string());
        }
        if let (Some(section), Some(addr)) = (&mut config.tls, self.tls_addr) {
            section.listen = addr.to_string();
        }
        StoppedServer {
            config,
            dir: self.dir,
            transport: self.transport,
            tls: self.tls,
        }
    }

    pub async fn stop(self) {
        self.stop_and_keep().await;
    }

    /// Stops, then starts a new server on the same database file (new port).
    pub async fn restart(self) -> Self {
        let stopped = self.stop_and_keep().await;
        let mut config = stopped.config;
        config.server.listen = "127.0.0.1:0".into();
        config.grpc.listen = "127.0.0.1:0".into();
        if config.grpc.tls_listen.is_some() {
            config.grpc.tls_listen = Some("127.0.0.1:0".into());
        }
        if let Some(section) = &mut config.tls {
            section.listen = "127.0.0.1:0".into();
        }
        Self::launch(config, stopped.dir, stopped.transport, stopped.tls).await
    }

    /// Where this server keeps uploaded files.
    pub fn files_dir(&self) -> std::path::PathBuf {
        self.config.files.dir.clone().into()
    }

    /// The SQLite database file of a server on [`Backend::Sqlite`].
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.config.store.url.strip_prefix("sqlite://").map(Into::into)
    }

    /// The URL SDK clients use: `wss://` to the TLS listener on the TLS
    /// transport, `grpc://` on gRPC, else `ws://` to the plain listener.
    pub fn url(&self) -> String {
        match (self.transport, self.tls_addr) {
            (Transport::Grpc, _) => format!("grpc://{}", self.grpc_addr),
            (Transport::GrpcTls, _) => {
                format!("grpcs://{}", self.grpc_tls_addr.expect("a gRPC TLS listener"))
            }
            (Transport::WebSocketTls, Some(tls)) => format!("wss://{tls}/v1/ws"),
            _ => format!("ws://{}/v1/ws", self.addr),
        }
    }

    /// What the server's SDK clients trust: its test CA only (the system
    /// roots without a TLS listener).
    pub fn client_tls(&self) -> TlsConfig {
        self.tls.as_ref().map_or_else(TlsConfig::new, |t| t.client_tls())
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = client_config(&self.url());
        config.tls = self.client_tls();
        if self.transport == Transport::Memory {
            config.connector = self.memory.clone();
        }
        config
    }

    pub async fn connect(&self, credentials: Credentials) -> (Client, Events) {
        Client::connect(self.client_config(), credentials).await.unwrap()
    }

    pub async fn connect_via(&self, url: &str, credentials: Credentials) -> (Client, Events) {
        let mut config = client_config(url);
        config.tls = self.client_tls();
        Client::connect(config, credentials).await.unwrap()
    }

    /// A way to the server whose connections the test can cut.
    pub async fn cuttable(&self) -> Cuttable {
        match self.transport {
            Transport::WebSocket => Cuttable::Proxy(Proxy::start(self.addr).await),
            Transport::Grpc => Cuttable::Proxy(Proxy::start_grpc(self.grpc_addr).await),
            Transport::GrpcTls => {
                let upstream = self.grpc_tls_addr.expect("a gRPC TLS listener");
                Cuttable::Proxy(Proxy::start_for(upstream, "grpcs", Some(self.client_tls())).await)
            }
            Transport::WebSocketTls => {
                let upstream = self.tls_addr.expect("a TLS listener");
                Cuttable::Proxy(Proxy::start_for(upstream, "wss", Some(self.client_tls())).await)
            }
            Transport::Memory => {
                Cuttable::Memory(memory::MemoryConnector::new(self.server.clone(), self.max_frame))
            }
        }
    }

    /// A bare client on the server's transport, for bad input.
    pub async fn raw(&self, token: Option<&str>) -> RawClient {
        match self.transport {
            Transport::WebSocket => RawClient::Ws(Box::new(RawWs::connect(self.addr, token).await)),
            Transport::WebSocketTls => {
                let addr = self.tls_addr.expect("a TLS listener");
                let tls = self.client_tls();
                RawClient::Ws(Box::new(RawWs::connect_with(addr, token, Some(&tls)).await))
            }
            Transport::Grpc => RawClient::Grpc(Box::new(
                grpc::RawGrpc::connect(self.grpc_addr, token, None).await,
            )),
            Transport::GrpcTls => {
                let addr = self.grpc_tls_addr.expect("a gRPC TLS listener");
                let tls = self.client_tls();
                RawClient::Grpc(Box::new(grpc::RawGrpc::connect(addr, token, Some(&tls)).await))
            }
            Transport::Memory => {
                RawClient::Memory(memory::RawDuplex::connect(&self.server, self.max_frame, token))
            }
        }
    }

    pub async fn register(&self, name: &str) -> (Client, Events) {
        self.connect(Credentials::Register {
            username: name.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
    }

    pub async fn login(&self, name: &str) -> (Client, Events) {
        self.connect(Credentials::Login {
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await
    }
}

impl StoppedServer {
    /// Starts again on the same address and database file.
    pub async fn start_again(self) -> TestServer {
        TestServer::launch(self.config, self.dir, self.transport, self.tls).await
    }
}

pub fn client_config(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url);
    c.reconnect_min = Duration::from_millis(20);
    c.reconnect_max = Duration::from_millis(300);
    c
}

/// Waits for an event matching `pred`, skipping others.
pub async fn wait_for(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("expected event did not arrive")
}

/// The next call event whose kind matches `pred` (other events skipped).
pub async fn call_event(events: &mut Events, pred: impl Fn(&v1::call_event::Kind) -> bool) -> v1::CallEvent {
    let call = |e: &Event| matches!(e, Event::Call(c) if c.kind.as_ref().is_some_and(&pred));
    match wait_for(events, call).await {
        Event::Call(c) => c,
        _ => unreachable!("wait_for returns a matching event"),
    }
}

/// All events up to and including the first one matching `pred`.
pub async fn events_until(events: &mut Events, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(e) => {
                    let done = pred(&e);
                    seen.push(e);
                    if done {
                        return;
                    }
                }
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("expected event did not arrive");
    seen
}

/// Collects `n` new messages of a conversation (other events are skipped).
pub async fn messages(events: &mut Events, conversation: u64, n: usize) -> Vec<v1::Message> {
    let mut out = Vec::new();
    let result = tokio::time::timeout(WAIT, async {
        while out.len() < n {
            match events.next().await {
                Some(Event::Message(m)) if m.conversation_id == conversation => out.push(m),
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    assert!(
        result.is_ok() && out.len() == n,
        "got {} of {n} messages",
        out.len()
    );
    out
}

/// Asserts no further message of the conversation arrives within a moment.
pub async fn assert_no_more_messages(events: &mut Events, conversation: u64) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(e) = events.try_next() {
        if let Event::Message(m) = &e {
            assert_ne!(m.conversation_id, conversation, "unexpected extra message {m:?}");
        }
    }
}

pub fn text_of(m: &v1::Message) -> String {
    m.content
        .as_ref()
        .and_then(|c| c.as_text())
        .map_or_else(|| "<non-text>".to_owned(), str::to_owned)
}

/// Connections that a test cuts at will: through a TCP proxy or a memory relay.
pub enum Cuttable {
    Proxy(Proxy),
    Memory(Arc<memory::MemoryConnector>),
}

impl Cuttable {
    pub async fn connect(&self, credentials: Credentials) -> (Client, Events) {
        let config = match self {
            Cuttable::Proxy(p) => {
                let mut c = client_config(&p.url());
                if let Some(tls) = &p.tls {
                    c.tls = tls.clone();
                }
                c
            }
            Cuttable::Memory(m) => {
                let mut c = client_config("memory:");
                c.connector = m.clone();
                c
            }
        };
        Client::connect(config, credentials).await.unwrap()
    }

    /// Drops every connection made through it.
    pub fn cut(&self) {
        match self {
            Cuttable::Proxy(p) => p.cut(),
            Cuttable::Memory(m) => m.cut(),
        }
    }

    /// Connections made through it so far.
    pub fn connections(&self) -> usize {
        match self {
            Cuttable::Proxy(p) => p.connections(),
            Cuttable::Memory(m) => m.connections(),
        }
    }
}

/// A bare client on either transport.
pub enum RawClient {
    Ws(Box<RawWs>),
    Memory(memory::RawDuplex),
    Grpc(Box<grpc::RawGrpc>),
}

impl RawClient {
    pub async fn send_json(&mut self, text: &str) {
        match self {
            RawClient::Ws(w) => w.send_json(text).await,
            RawClient::Memory(m) => m.send(text.as_bytes().to_vec(), im_client_sdk::Format::Json),
            RawClient::Grpc(g) => g.send_json(text),
        }
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        match self {
            RawClient::Ws(w) => w.send_binary(data).await,
            RawClient::Memory(m) => m.send(data, im_client_sdk::Format::Binary),
            RawClient::Grpc(g) => g.send(data),
        }
    }

    pub async fn next_json(&mut self) -> serde_json::Value {
        match self {
            RawClient::Ws(w) => w.next_json().await,
            RawClient::Memory(m) => m.next_json().await,
            RawClient::Grpc(g) => g.next_json().await,
        }
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

    pub async fn closed(&mut self) -> Option<u16> {
        match self {
            RawClient::Ws(w) => w.closed().await,
            RawClient::Memory(m) => m.closed().await,
            RawClient::Grpc(g) => g.closed().await,
        }
    }
}

/// A minimal HTTP/1.1 request; returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
