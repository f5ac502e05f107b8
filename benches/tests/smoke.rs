//! Short smoke runs of every load scenario against a real server, so the
//! generator and its exactly-once verification cannot silently rot. These
//! check correctness only; no test asserts a time.

use im_benches::scenario::{self, Load, Target};
use std::time::Duration;

async fn server() -> (Target, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = im_server::ServerConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.store.url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
    config.auth.argon2_m_cost = 256;
    config.auth.argon2_t_cost = 1;
    config.limits.requests_per_second = 1_000_000.0;
    config.limits.request_burst = 1_000_000.0;
    let server = im_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let target = Target {
        addr,
        server_pid: Some(std::process::id()),
        sources: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
    };
    (target, stop, dir)
}

fn short() -> Load {
    Load {
        duration: Duration::from_millis(700),
        rate: None,
        window: 4,
        size: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_verifies_exactly_once_delivery() {
    let (target, stop, _dir) = server().await;

    let r = scenario::connect(&target, 60, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!((r.connections, r.connect_failures), (60, 0), "{r:?}");
    assert!(r.connects_per_sec > 0.0 && r.server_bytes_per_connection.is_some());

    let r = scenario::dm(&target, 3, short()).await.unwrap();
    assert!(r.verified(), "{r:?}");
    assert!(
        r.acked > 0 && r.deliveries == 2 * r.acked,
        "each dm reaches both members: {r:?}"
    );
    assert!(r.latency.count as u64 >= r.deliveries);

    let r = scenario::group(
        &target,
        12,
        2,
        Load {
            rate: Some(200.0),
            ..short()
        },
    )
    .await
    .unwrap();
    assert!(r.verified(), "{r:?}");
    assert_eq!(r.deliveries, 12 * r.acked);

    let r = scenario::typing(
        &target,
        8,
        2,
        Load {
            rate: Some(100.0),
            ..short()
        },
    )
    .await
    .unwrap();
    assert!(r.verified(), "{r:?}");
    assert!(
        r.acked > 0 && r.deliveries == 7 * r.acked,
        "every other member gets each change: {r:?}"
    );

    let r = scenario::mixed(
        &target,
        40,
        2,
        1,
        6,
        5,
        Load {
            duration: Duration::from_millis(1500),
            ..short()
        },
    )
    .await
    .unwrap();
    assert!(r.verified(), "{r:?}");
    assert!(r.connections >= 40 + 4 + 6);
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_spreads_connections_over_worker_processes() {
    let (target, stop, _dir) = server().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_im-load"))
        .args([
            "--addr",
            &target.addr.to_string(),
            "--server-pid",
            &std::process::id().to_string(),
        ])
        .args(["connect", "-n", "50", "--workers", "2", "--hold", "0.1"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["connections"], 50);
    assert_eq!(report["connect_failures"], 0);
    stop.send(()).unwrap();
}
