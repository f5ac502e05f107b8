//! Short smoke runs of every load scenario against a real server, so the
//! generator and its exactly-once verification cannot silently rot. These
//! check correctness only; no test asserts a time.

use im_benches::cluster::{self, Shape};
use im_benches::scenario::{self, Load, Target};
use im_core::store::postgres::testing::TempSchema;
use std::time::Duration;

/// A server in this process with a cheap password hash and no rate limit:
/// its target (WebSocket), its gRPC address, and its stop switch.
async fn start(
    store_url: String,
    tune: impl FnOnce(&mut im_server::ServerConfig),
) -> (Target, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut config = im_server::ServerConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.grpc.listen = "127.0.0.1:0".into();
    config.store.url = store_url;
    config.auth.argon2_m_cost = 256;
    config.auth.argon2_t_cost = 1;
    config.limits.requests_per_second = 1_000_000.0;
    config.limits.request_burst = 1_000_000.0;
    tune(&mut config);
    let server = im_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let grpc = server.grpc_addr();
    // With a TLS listener, the target's sessions use it (trusting the
    // system roots: tests through the binary pass their own CA).
    let tls = server.tls_addr().map(|addr| im_benches::scenario::TlsTarget {
        addr,
        server_name: addr.ip().to_string(),
        roots: im_client_sdk::TlsConfig::new(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let target = Target {
        addr,
        server_pid: Some(std::process::id()),
        sources: vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()],
        grpc: None,
        tls,
    };
    (target, grpc.unwrap(), stop)
}

async fn server() -> (
    Target,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
    let (target, grpc, stop) = start(url, |_| {}).await;
    (target, grpc, stop, dir)
}

fn short() -> Load {
    Load {
        duration: Duration::from_millis(700),
        rate: None,
        window: 4,
        size: 100,
        settle: Duration::from_secs(15),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_verifies_exactly_once_delivery() {
    let (target, _, stop, _dir) = server().await;

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

    let r = im_benches::typing::typing(
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

    let r = im_benches::calls::calls(
        &target,
        3,
        Load {
            rate: Some(100.0),
            size: 1500,
            ..short()
        },
    )
    .await
    .unwrap();
    assert!(r.verified(), "{r:?}");
    assert!(
        r.acked > 0 && r.deliveries == r.acked,
        "every signal reaches the peer once: {r:?}"
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
async fn the_dm_and_group_scenarios_run_over_grpc_too() {
    let (mut target, grpc, stop, _dir) = server().await;
    target.grpc = Some(grpc);
    let r = scenario::dm(&target, 3, short()).await.unwrap();
    assert!(
        r.verified() && r.acked > 0 && r.deliveries == 2 * r.acked,
        "{r:?}"
    );
    let group = Load {
        rate: Some(200.0),
        ..short()
    };
    let r = scenario::group(&target, 12, 2, group).await.unwrap();
    assert!(
        r.verified() && r.acked > 0 && r.deliveries == 12 * r.acked,
        "{r:?}"
    );
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_spreads_connections_over_worker_processes() {
    let (target, _, stop, _dir) = server().await;
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

/// Writes a test CA's certificate and a server certificate it signed for
/// 127.0.0.1 (with its key) to `dir`; returns (ca, cert, key) paths.
fn test_certificates(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = ["ca.pem", "cert.pem", "key.pem"].map(|name| dir.join(name));
    std::fs::write(&paths[0], ca_pem).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_dm_scenario_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = test_certificates(dir.path());
    let url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
    let (target, _, stop) = start(url, |c| {
        c.tls = Some(im_server::config::TlsSection {
            cert_file: cert.display().to_string(),
            key_file: key.display().to_string(),
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        });
    })
    .await;
    let tls_addr = target.tls.as_ref().unwrap().addr;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_im-load"))
        .args(["--addr", &target.addr.to_string()])
        .args(["--tls-addr", &tls_addr.to_string()])
        .arg("--root-cert")
        .arg(&ca)
        .args(["dm", "--pairs", "2", "--duration", "0.5"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["acked"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["lost"], 0);

    // Trusting the system roots only, the test CA's certificate is refused.
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_im-load"))
        .args(["--addr", &target.addr.to_string()])
        .args(["--tls-addr", &tls_addr.to_string()])
        .args(["dm", "--pairs", "1", "--duration", "0.2"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    stop.send(()).unwrap();
}

/// Two nodes on one PostgreSQL schema; `redis_channel`: joined by the Redis
/// at 127.0.0.1:6379 on that channel, `None`: not joined at all (local fan-out).
async fn two_nodes(
    schema: &TempSchema,
    redis_channel: Option<&str>,
) -> (Vec<Target>, Vec<tokio::sync::oneshot::Sender<()>>) {
    let (mut nodes, mut stops) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (target, _, stop) = start(schema.url(), |c| {
            c.store.pool_size = 2;
            c.store.writers = 2;
            if let Some(channel) = redis_channel {
                c.fanout.backend = "redis".into();
                c.fanout.url =
                    std::env::var("IM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
                c.fanout.channel = channel.to_owned();
            }
        })
        .await;
        nodes.push(target);
        stops.push(stop);
    }
    (nodes, stops)
}

/// A Redis channel no other run uses.
fn unique_channel() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("im-load-smoke-{}-{nanos}", std::process::id())
}

fn small() -> Shape {
    Shape {
        cross_pairs: 2,
        same_node_pairs: 2,
        groups: 1,
        group_size: 6,
        group_senders: 2,
    }
}

/// The cluster scenario over two nodes joined by Redis: every delivery
/// verified, both kinds measured; and over two nodes that are *not* joined
/// (each fans out only to its own clients), the verification must fail,
/// which shows that it really checks the deliveries across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenario_verifies_deliveries_across_nodes() {
    let schema = TempSchema::create();
    let channel = unique_channel();
    let (nodes, stops) = two_nodes(&schema, Some(&channel)).await;
    let pids = [std::process::id()];
    let load = Load {
        rate: Some(200.0),
        ..short()
    };
    let r = cluster::cluster(&nodes, &pids, small(), load).await.unwrap();
    assert!(r.verified(), "{r:#?}");
    assert_eq!((r.nodes, r.cross_node_pairs, r.same_node_pairs), (2, 2, 2));
    assert!(r.report.acked > 0, "{r:#?}");
    // Each message reaches its sender and every other member: the other
    // members' copies are split by side, the sender's own is in neither.
    assert_eq!(
        (r.cross_node.deliveries + r.same_node.deliveries) as u64 + r.report.acked,
        r.report.deliveries,
        "{r:#?}"
    );
    assert!(
        r.cross_node.deliveries > 0 && r.same_node.deliveries > 0,
        "{r:#?}"
    );
    assert!(r.cross_node.latency.p99_us > 0 && r.deliveries_per_server_cpu_sec.is_some());
    for stop in stops {
        let _ = stop.send(());
    }

    // Same schema, not joined: what crosses nodes never arrives live.
    let (nodes, stops) = two_nodes(&schema, None).await;
    let load = Load {
        settle: Duration::from_millis(1500),
        ..load
    };
    let r = cluster::cluster(&nodes, &pids, small(), load).await.unwrap();
    assert!(!r.verified(), "{r:#?}");
    assert!(r.report.lost > 0 && r.cross_node.deliveries == 0, "{r:#?}");
    assert!(r.same_node.deliveries > 0 && r.report.duplicates == 0, "{r:#?}");
    for stop in stops {
        let _ = stop.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_cluster_scenario_and_reports_json() {
    let schema = TempSchema::create();
    let channel = unique_channel();
    let (nodes, stops) = two_nodes(&schema, Some(&channel)).await;
    let addrs: Vec<String> = nodes.iter().map(|t| t.addr.to_string()).collect();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_im-load"))
        .args(["cluster", "--nodes", &addrs.join(",")])
        .args(["--server-pids", &std::process::id().to_string()])
        .args([
            "--pairs",
            "2",
            "--same-node-pairs",
            "2",
            "--groups",
            "1",
            "--group-size",
            "4",
        ])
        .args(["--duration", "0.5", "--rate", "100", "--window", "1"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scenario"], "cluster");
    assert_eq!(report["lost"], 0);
    assert!(
        report["cross_node"]["deliveries"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["same_node"]["latency"]["p99_us"].as_u64().is_some(),
        "{report}"
    );
    assert!(
        report["deliveries_per_server_cpu_sec"].as_f64().is_some(),
        "{report}"
    );
    for stop in stops {
        let _ = stop.send(());
    }
}

/// The store measurements (`im-store-bench`) on a small store of each kind:
/// searches find what they look for and a catch-up covers every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_measurements_run_on_sqlite_and_postgres() {
    use im_benches::search;
    use im_core::store::{PostgresStore, PostgresStoreConfig, SqliteStore, SqliteStoreConfig, Store};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let schema = TempSchema::create();
    let stores: [Arc<dyn Store>; 2] = [
        Arc::new(
            SqliteStore::open(SqliteStoreConfig::new(dir.path().join("s.sqlite3")))
                .await
                .unwrap(),
        ),
        Arc::new(
            PostgresStore::open(PostgresStoreConfig::new(schema.url()))
                .await
                .unwrap(),
        ),
    ];
    for store in stores {
        let (loaded, members) = search::load(&store, 30, 20, 600, 8).await.unwrap();
        let report = search::search(&store, loaded, &members, 5).await.unwrap();
        assert_eq!(
            report.english_word.count + report.cjk_two.count + report.cjk_one.count,
            15
        );
        assert!(report.mean_hits >= 1.0, "terms come from the users' own messages");
        let sync = search::sync_after_changes(store.clone(), 300).await.unwrap();
        assert_eq!((sync.messages, sync.requests), (300, 2));
        store.close().await.unwrap();
    }
}
