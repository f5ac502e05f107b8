//! The `im-server` binary as an operator runs it: configuration commands,
//! environment overrides, and a clean exit on SIGTERM.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;
use process::{Process, bin, free_port, get};

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
        ("IM__FANOUT__BACKEND", "nats"),
        ("IM__FANOUT__PARTITIONS", "0"),
        ("IM__PRESENCE__BACKEND", "everywhere"),
        ("IM__GRPC__LISTEN", "nowhere"),
        ("IM__GRPC__MAX_STREAMS_PER_CONNECTION", "0"),
        // gRPC over TLS without a certificate.
        ("IM__GRPC__TLS_LISTEN", "127.0.0.1:0"),
    ] {
        let bad = bin().arg("check-config").env(key, value).output().unwrap();
        assert!(!bad.status.success(), "{key}={value} should be refused");
    }
    // Settings that only make sense together.
    for settings in [
        [("IM__FANOUT__BACKEND", "kafka"), ("IM__FANOUT__BROKERS", " ")],
        [
            ("IM__PRESENCE__BACKEND", "store"),
            ("IM__STORE__URL", "memory://"),
        ],
    ] {
        let bad = bin().arg("check-config").envs(settings).output().unwrap();
        assert!(!bad.status.success(), "{settings:?} should be refused");
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

#[test]
fn check_config_reads_the_tls_section_from_the_environment_and_loads_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert = write("cert.pem", pair.cert.pem());
    let key = write("key.pem", pair.signing_key.serialize_pem());
    let wrong_key = write("other-key.pem", other.signing_key.serialize_pem());
    let check = |settings: &[(&str, &str)]| {
        let out = bin()
            .arg("check-config")
            .envs(settings.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = check(&[
        ("IM__TLS__CERT_FILE", &cert),
        ("IM__TLS__KEY_FILE", &key),
        ("IM__TLS__LISTEN", "0.0.0.0:8443"),
        ("IM__TLS__RELOAD_INTERVAL_MS", "1500"),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("0.0.0.0:8443") && out.contains("reload_interval_ms: 1500"),
        "{out}"
    );
    for (settings, why) in [
        (vec![("IM__TLS__CERT_FILE", cert.as_str())], "must both be set"),
        (
            vec![("IM__TLS__CERT_FILE", &cert), ("IM__TLS__KEY_FILE", &wrong_key)],
            "other-key.pem",
        ),
        (
            vec![
                ("IM__TLS__CERT_FILE", "/nonexistent/cert.pem"),
                ("IM__TLS__KEY_FILE", &key),
            ],
            "/nonexistent/cert.pem",
        ),
        (
            vec![
                ("IM__TLS__CERT_FILE", &cert),
                ("IM__TLS__KEY_FILE", &key),
                ("IM__TLS__LISTEN", "127.0.0.1:8080"),
            ],
            "must differ from server.listen and grpc.listen",
        ),
        (
            vec![
                ("IM__TLS__CERT_FILE", &cert),
                ("IM__TLS__KEY_FILE", &key),
                ("IM__TLS__RELOAD_INTERVAL_MS", "5"),
            ],
            "reload_interval_ms",
        ),
    ] {
        let (ok, out) = check(&settings);
        assert!(
            !ok && out.contains(why),
            "{settings:?}: expected {why:?} in {out}"
        );
    }
}

/// Two server processes on one PostgreSQL database; clients on each send 500
/// messages into one group at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_keep_sequences_gap_free() {
    use im_client_sdk::{Client, ClientConfig, Credentials, v1};
    let schema = im_core::store::postgres::testing::TempSchema::create();
    let (one, two) = (Process::spawn(&schema.url()), Process::spawn(&schema.url()));
    let register = |url: String, name: &'static str| async move {
        Client::connect(
            ClientConfig::new(url),
            Credentials::Register {
                username: name.into(),
                password: "password123".into(),
                display_name: String::new(),
            },
        )
        .await
        .unwrap()
        .0
    };
    let a = register(one.url(), "node-one-user").await;
    let b = register(two.url(), "node-two-user").await;
    let group = a.create_group("shared", &[b.user().id]).await.unwrap();
    let sender = |client: Client, tag: &'static str| {
        tokio::spawn(async move {
            // 500 sends, 25 in flight at a time.
            let mut seqs = Vec::new();
            for chunk in 0..20 {
                let calls: Vec<_> = (0..25)
                    .map(|i| {
                        let c = client.clone();
                        tokio::spawn(async move {
                            let id = format!("{tag}-{}", chunk * 25 + i);
                            match c
                                .request(v1::client_frame::Body::Send(v1::SendMessage {
                                    target: Some(v1::send_message::Target::ConversationId(group.id)),
                                    client_msg_id: id.clone(),
                                    content: Some(v1::Content::text(id)),
                                    ..Default::default()
                                }))
                                .await
                                .unwrap()
                            {
                                v1::response::Result::Ack(ack) => ack.seq,
                                other => panic!("{other:?}"),
                            }
                        })
                    })
                    .collect();
                for call in calls {
                    seqs.push(call.await.unwrap());
                }
            }
            seqs
        })
    };
    let (sa, sb) = (sender(a.clone(), "a"), sender(b.clone(), "b"));
    let mut seqs = sa.await.unwrap();
    seqs.extend(sb.await.unwrap());
    seqs.sort_unstable();
    // Seq 1 is the group's creation notice; the 1,000 messages are 2..=1001.
    assert_eq!(seqs, (2..=1001).collect::<Vec<u64>>());
    for client in [&a, &b] {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = client.history_after(group.id, after, 200).await.unwrap();
            all.extend(page.messages.iter().map(|m| m.seq));
            after = *all.last().unwrap();
            if !page.has_more {
                break;
            }
        }
        assert_eq!(
            all,
            (1..=1001).collect::<Vec<u64>>(),
            "every member sees 1..=1001, no gap, no repeat"
        );
    }
}

#[test]
fn serves_then_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = bin()
        .env("IM__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("IM__GRPC__LISTEN", "127.0.0.1:0")
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
