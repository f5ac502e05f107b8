//! The `im-server` binary as an operator runs it: configuration commands,
//! environment overrides, and a clean exit on SIGTERM.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_im-server"))
}

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

#[test]
fn check_config_accepts_the_example_and_rejects_bad_values() {
    let ok = bin()
        .arg("check-config")
        .arg("--config")
        .arg(example_config())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration is valid"));

    // The example file parses into exactly the defaults.
    let parsed = im_server::ServerConfig::load(Some(&example_config())).unwrap();
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", im_server::ServerConfig::default())
    );

    let env = bin()
        .arg("check-config")
        .env("IM__SERVER__LISTEN", "127.0.0.1:9999")
        .env("IM__LIMITS__MAX_PAGE_SIZE", "77")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&env.stdout);
    assert!(env.status.success());
    assert!(
        out.contains("127.0.0.1:9999") && out.contains("max_page_size: 77"),
        "{out}"
    );

    for (key, value) in [
        ("IM__SERVER__LISTEN", "not an address"),
        ("IM__STORE__URL", "mysql://nope"),
        ("IM__LIMITS__MAX_FRAME_BYTES", "12"),
        ("IM__SERVER__NO_SUCH_KEY", "1"),
    ] {
        let bad = bin().arg("check-config").env(key, value).output().unwrap();
        assert!(!bad.status.success(), "{key}={value} should be refused");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = 5\n[nonsense]\n").unwrap();
    assert!(
        !bin()
            .arg("check-config")
            .arg("--config")
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serves_then_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = bin()
        .env("IM__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "IM__STORE__URL",
            format!("sqlite://{}", dir.path().join("data/im.sqlite3").display()),
        )
        .env("IM__LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let health = loop {
        if let Some(r) = get(port, "/healthz") {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"));
    assert!(get(port, "/readyz").unwrap().starts_with("HTTP/1.1 200"));
    assert!(dir.path().join("data/im.sqlite3").exists());

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert_eq!(exit.code(), Some(0), "{logs}");
    assert!(
        logs.contains("SIGTERM received") && logs.contains("shutdown complete"),
        "{logs}"
    );
    assert!(
        logs.lines().all(|l| l.trim().is_empty() || l.starts_with('{')),
        "json logs: {logs}"
    );
}
