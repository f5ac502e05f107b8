//! Real `im-server` processes, and the brokers a cluster of them shares.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_im-server"))
}

/// A running `im-server` process, killed when dropped. Its log goes to the
/// test's stderr when `IM_TEST_SERVER_LOG` is set, else nowhere.
pub struct Process {
    pub child: Child,
    pub port: u16,
    /// The gRPC listener's port.
    pub grpc_port: u16,
}

impl Process {
    pub fn spawn(store_url: &str) -> Self {
        Self::spawn_with::<&str, &str>(store_url, &[])
    }

    /// With more `IM__…` settings.
    pub fn spawn_with<K: AsRef<str>, V: AsRef<str>>(store_url: &str, settings: &[(K, V)]) -> Self {
        let port = free_port();
        let grpc_port = free_port();
        let mut command = bin();
        for (key, value) in settings {
            command.env(key.as_ref(), value.as_ref());
        }
        let logs = std::env::var_os("IM_TEST_SERVER_LOG").is_some();
        let child = command
            .env("IM__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("IM__GRPC__LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("IM__STORE__URL", store_url)
            .env("IM__AUTH__ARGON2_M_COST", "256")
            .env("IM__AUTH__ARGON2_T_COST", "1")
            .env("IM__LIMITS__REQUESTS_PER_SECOND", "100000")
            .env("IM__LIMITS__REQUEST_BURST", "100000")
            .env("IM__LOG__LEVEL", if logs { "info" } else { "warn" })
            .stdout(Stdio::null())
            .stderr(if logs { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            port,
            grpc_port,
        };
        let started = Instant::now();
        while !process.ready() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("server exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    /// `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        get(self.port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    }

    /// Waits (up to 30 s) until `/readyz` says `ready`.
    pub async fn wait_ready(&mut self, ready: bool) {
        for _ in 0..600 {
            if self.ready() == ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server on port {} exited: {status}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("/readyz of port {} never turned {ready}", self.port);
    }

    /// SIGKILL, and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The broker a test cluster shares, started by the test on a free port and
/// stopped with it: a `redis-server` of its own, or a Kafka broker (`tansu`).
pub struct Broker {
    kind: BrokerKind,
    redis: Option<RedisServer>,
    kafka: Option<im_core::fanout::kafka_testing::KafkaBroker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Redis,
    Kafka,
}

impl Broker {
    pub fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Redis => Self {
                kind,
                redis: Some(RedisServer::start()),
                kafka: None,
            },
            BrokerKind::Kafka => Self {
                kind,
                redis: None,
                kafka: Some(im_core::fanout::kafka_testing::KafkaBroker::start()),
            },
        }
    }

    /// The `IM__FANOUT__…` settings of a node on this broker.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![("IM__SERVER__PRESENCE_LEASE_SECS".to_owned(), "3".to_owned())];
        match (&self.redis, &self.kafka) {
            (Some(redis), _) => {
                settings.push(("IM__FANOUT__BACKEND".into(), "redis".into()));
                settings.push(("IM__FANOUT__URL".into(), redis.url()));
            }
            (_, Some(kafka)) => {
                settings.push(("IM__FANOUT__BACKEND".into(), "kafka".into()));
                settings.push(("IM__FANOUT__BROKERS".into(), kafka.brokers()));
                settings.push(("IM__FANOUT__PARTITIONS".into(), "4".into()));
                // Off by default with Kafka; the tests cover the routed way.
                settings.push(("IM__FANOUT__ROUTING".into(), "true".into()));
            }
            _ => unreachable!("a broker is running"),
        }
        settings
    }

    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// Stops the broker. Redis is killed (pub/sub and the presence keys
    /// are gone with it, as with a real Redis restart). The Kafka broker is
    /// frozen with SIGSTOP, keeping its topics as a Kafka broker with
    /// durable storage does: killing `tansu` loses its in-memory topics, and
    /// librdkafka 2.12 was seen to crash (SIGSEGV in its metadata cache)
    /// when such a broker came back without them.
    pub fn stop(&mut self) {
        if let Some(redis) = &mut self.redis {
            redis.stop();
        }
        if let Some(kafka) = &self.kafka {
            kafka.pause();
        }
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) {
        if let Some(redis) = &mut self.redis {
            redis.start_again();
        }
        if let Some(kafka) = &self.kafka {
            kafka.resume();
        }
    }
}

/// A `redis-server` on a free port that keeps nothing on disk.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.start_again();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn start_again(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server is required for this test: {e}"));
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
