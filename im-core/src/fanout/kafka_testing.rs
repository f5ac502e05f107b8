//! A real Kafka broker for tests: `tansu` (an Apache Kafka compatible broker
//! written in Rust) with in-memory storage, on a free port of 127.0.0.1.
//!
//! Install it once with `cargo install tansu --locked --features dynostore`
//! (`.ci/run` does when `tansu` is missing); `IM_TEST_TANSU` names another
//! binary. Starting panics, never skips, when the broker cannot run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `tansu` broker process, killed when dropped.
#[derive(Debug)]
pub struct KafkaBroker {
    addr: SocketAddr,
    process: Option<Child>,
}

fn binary() -> String {
    if let Ok(path) = std::env::var("IM_TEST_TANSU") {
        return path;
    }
    let in_cargo_home = std::env::var("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|home| std::path::Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin").join("tansu"));
    match in_cargo_home {
        Ok(path) if path.exists() => path.display().to_string(),
        _ => "tansu".into(),
    }
}

impl KafkaBroker {
    /// Starts a broker on a free port and waits until it takes connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut broker = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            process: None,
        };
        broker.start_again();
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker (its in-memory topics are gone with it).
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing
    /// answers, as with a broker that hangs or a network that drops
    /// everything; its topics survive, as on a broker with durable storage.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(process) = &self.process {
            let sent = Command::new("kill")
                .args([signal, &process.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "kill {signal} the Kafka broker");
        }
    }

    /// Starts the broker again on the same port (after [`KafkaBroker::stop`]).
    pub fn start_again(&mut self) {
        self.stop();
        let listener = format!("tcp://{}", self.addr);
        let process = Command::new(binary())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Kafka broker `tansu` is required for this test and cannot start: {e}. \
                     Install it with `cargo install tansu --locked --features dynostore` \
                     or set IM_TEST_TANSU."
                )
            });
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Kafka broker did not open {} within 20 s",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
