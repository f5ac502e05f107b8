//! `im-load`: the load generator. Speaks the real protocol over real
//! WebSocket connections (or gRPC streams with `--grpc`), measures, and
//! verifies exactly-once delivery.
//!
//! ```text
//! im-load --addr 127.0.0.1:8080 --server-pid $(pgrep -x im-server) connect -n 20000 --workers 2
//! im-load --addr 127.0.0.1:8080 dm --pairs 50 --duration 10
//! im-load --addr 127.0.0.1:8080 group --members 100 --senders 4 --duration 10
//! im-load --addr 127.0.0.1:8080 --grpc 127.0.0.1:50051 dm --pairs 50 --duration 10
//! im-load --addr 127.0.0.1:8080 --tls-addr 127.0.0.1:8443 --root-cert ca.pem dm --pairs 50 --duration 10
//! im-load --addr 127.0.0.1:8080 typing --members 50 --typists 4 --rate 200
//! im-load --addr 127.0.0.1:8080 calls --pairs 50 --size 2000 --rate 100
//! im-load --addr 127.0.0.1:8080 mixed --idle 2000 --pairs 20 --groups 4 --group-size 50 --churn 20
//! im-load cluster --nodes 127.0.0.1:8081,127.0.0.1:8082 --server-pids 4001,4002 --pairs 20 --duration 10
//! ```
//! Prints one JSON report per run on stdout; exits 1 if verification failed.

use clap::{Parser, Subcommand};
use im_benches::cluster::{self, Shape};
use im_benches::scenario::{self, Load, Report, Target, TlsTarget};
use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "im-load", about = "Load generator for the im chat server")]
struct Cli {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Server process id, to report its memory and CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over, e.g. 127.0.0.2,127.0.0.3.
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// The server's gRPC address: run the sessions over gRPC instead of
    /// WebSockets (users still register over HTTP at `--addr`).
    #[arg(long)]
    grpc: Option<SocketAddr>,
    /// The server's TLS listener: WebSocket sessions go there over
    /// `wss://` (users still register over plain HTTP at `--addr`). Not
    /// with --grpc, nor for the cluster scenario.
    #[arg(long, conflicts_with = "grpc")]
    tls_addr: Option<SocketAddr>,
    /// PEM file of the CA to trust with --tls-addr (default: the system roots).
    #[arg(long, requires = "tls_addr")]
    root_cert: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry (default: the IP of --tls-addr).
    #[arg(long, requires = "tls_addr")]
    server_name: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(clap::Args, Clone, Copy)]
struct LoadArgs {
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Messages per second per sender (omit: flat out).
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight per sender when flat out.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds to wait for the last deliveries once sending stopped (what is
    /// still missing then counts as lost).
    #[arg(long, default_value_t = 15.0)]
    settle: f64,
}

impl From<LoadArgs> for Load {
    fn from(a: LoadArgs) -> Self {
        Load {
            duration: Duration::from_secs_f64(a.duration),
            rate: a.rate,
            window: a.window,
            size: a.size,
            settle: Duration::from_secs_f64(a.settle),
        }
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N authenticated connections and hold them idle.
    Connect {
        /// Connections in all.
        #[arg(short, default_value_t = 1000)]
        n: usize,
        /// Seconds to hold them before measuring memory.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// Worker processes (each holds n / workers connections; a process may hold 20,000 files here).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Internal: run as a worker that reports when it holds its connections.
        #[arg(long, hide = true)]
        worker: bool,
    },
    /// P pairs exchanging messages.
    Dm {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// A group of M members, K of them sending.
    Group {
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 2)]
        senders: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Typing indicators relayed to a group (not stored).
    Typing {
        #[arg(long, default_value_t = 50)]
        members: usize,
        #[arg(long, default_value_t = 4)]
        typists: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Call signalling: P calls, each caller sending SDP offers to its peer.
    Calls {
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Idle connections, chatting pairs, groups and reconnect churn together.
    Mixed {
        #[arg(long, default_value_t = 1000)]
        idle: usize,
        #[arg(long, default_value_t = 10)]
        pairs: usize,
        #[arg(long, default_value_t = 2)]
        groups: usize,
        #[arg(long, default_value_t = 20)]
        group_size: usize,
        /// Idle connections closed and reopened per second.
        #[arg(long, default_value_t = 10)]
        churn: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Several server nodes at once (client i on node i % n): 1:1 pairs across
    /// nodes and within one node, and groups with members on every node.
    Cluster {
        /// Node addresses, e.g. 127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<SocketAddr>,
        /// The nodes' process ids: their CPU time is summed.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// 1:1 pairs whose users sit on different nodes.
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// 1:1 pairs whose users sit on one node (rounded up to a multiple of the nodes).
        #[arg(long, default_value_t = 20)]
        same_node_pairs: usize,
        /// Groups, each with members on every node.
        #[arg(long, default_value_t = 2)]
        groups: usize,
        #[arg(long, default_value_t = 30)]
        group_size: usize,
        /// Senders per group.
        #[arg(long, default_value_t = 2)]
        group_senders: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let tls = cli.tls_addr.map(|addr| {
        let mut roots = im_client_sdk::TlsConfig::new();
        if let Some(file) = &cli.root_cert {
            roots = roots.add_root_file(file).only_custom_roots(true);
        }
        TlsTarget {
            addr,
            server_name: cli.server_name.clone().unwrap_or_else(|| addr.ip().to_string()),
            roots,
        }
    });
    if let Some(tls) = &tls {
        // A bad root file fails here, not once per connection.
        tls.roots.rustls_config(&[b"http/1.1"])?;
    }
    let target = Target {
        addr: cli.addr,
        server_pid: cli.server_pid,
        sources: cli.sources.clone(),
        grpc: cli.grpc,
        tls,
    };
    let report = match cli.scenario {
        Scenario::Connect { n, worker: true, .. } => {
            // Worker: register, wait for "go", open, report, hold until stdin closes.
            runtime.block_on(async {
                let tokens = scenario::register_users(target.addr, n.div_ceil(10).max(1)).await?;
                println!("{}", serde_json::json!({"registered": tokens.len()}));
                std::io::stdout().flush()?;
                let go = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map(|_| line)
                })
                .await??;
                anyhow::ensure!(go.trim() == "go", "worker expected go");
                // Two halves, each reported, so the parent can read the
                // server's memory between them; then hold until stdin closes.
                let mut conns = Vec::new();
                for half in [n / 2, n - n / 2] {
                    let started = std::time::Instant::now();
                    let (opened, failures) = scenario::open_connections(&target, &tokens, half, 256).await;
                    let wall = started.elapsed().as_secs_f64();
                    println!(
                        "{}",
                        serde_json::json!({"held": opened.len(), "failures": failures, "wall": wall})
                    );
                    std::io::stdout().flush()?;
                    conns.extend(opened);
                    let next = tokio::task::spawn_blocking(|| {
                        let mut line = String::new();
                        std::io::stdin().lock().read_line(&mut line).map(|_| line)
                    })
                    .await??;
                    if next.trim() != "go" {
                        break;
                    }
                }
                drop(conns);
                anyhow::Ok(())
            })?;
            return Ok(());
        }
        Scenario::Connect { n, hold, workers, .. } if workers > 1 => {
            connect_with_workers(&cli, &target, n, hold, workers)?
        }
        Scenario::Connect { n, hold, .. } => {
            runtime.block_on(scenario::connect(&target, n, Duration::from_secs_f64(hold)))?
        }
        Scenario::Dm { pairs, load } => runtime.block_on(scenario::dm(&target, pairs, load.into()))?,
        Scenario::Group {
            members,
            senders,
            load,
        } => runtime.block_on(scenario::group(&target, members, senders, load.into()))?,
        Scenario::Typing {
            members,
            typists,
            load,
        } => runtime.block_on(im_benches::typing::typing(&target, members, typists, load.into()))?,
        Scenario::Calls { pairs, load } => {
            runtime.block_on(im_benches::calls::calls(&target, pairs, load.into()))?
        }
        Scenario::Mixed {
            idle,
            pairs,
            groups,
            group_size,
            churn,
            load,
        } => runtime.block_on(scenario::mixed(
            &target,
            idle,
            pairs,
            groups,
            group_size,
            churn,
            load.into(),
        ))?,
        Scenario::Cluster {
            nodes,
            server_pids,
            pairs,
            same_node_pairs,
            groups,
            group_size,
            group_senders,
            load,
        } => {
            let targets: Vec<Target> = nodes
                .iter()
                .enumerate()
                .map(|(i, &addr)| Target {
                    addr,
                    server_pid: server_pids.get(i).copied(),
                    sources: cli.sources.clone(),
                    grpc: None,
                    tls: None,
                })
                .collect();
            let shape = Shape {
                cross_pairs: pairs,
                same_node_pairs,
                groups,
                group_size,
                group_senders,
            };
            let report = runtime.block_on(cluster::cluster(&targets, &server_pids, shape, load.into()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            verdict(&report.report);
            return Ok(());
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    verdict(&report);
    Ok(())
}

/// Exits 1 if the run's verification found anything wrong.
fn verdict(report: &Report) {
    if !report.verified() {
        eprintln!(
            "VERIFICATION FAILED: lost {}, duplicates {}, out of order {}, connect failures {}, errors {}",
            report.lost, report.duplicates, report.out_of_order, report.connect_failures, report.errors
        );
        std::process::exit(1);
    }
}

/// Spreads `n` connections over worker processes (each its own file limit),
/// measures the server's memory once all of them hold their share.
fn connect_with_workers(
    cli: &Cli,
    target: &Target,
    n: usize,
    hold: f64,
    workers: usize,
) -> anyhow::Result<Report> {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..workers {
        let share = n / workers + usize::from(w < n % workers);
        let mut cmd = Command::new(&exe);
        cmd.arg("--addr").arg(cli.addr.to_string());
        if let Some(tls) = cli.tls_addr {
            cmd.arg("--tls-addr").arg(tls.to_string());
        }
        if let Some(root) = &cli.root_cert {
            cmd.arg("--root-cert").arg(root);
        }
        if let Some(name) = &cli.server_name {
            cmd.arg("--server-name").arg(name);
        }
        // Each worker gets its own source address (127.0.0.2, 127.0.0.3, ...) unless given.
        let source = cli
            .sources
            .get(w % cli.sources.len().max(1))
            .copied()
            .unwrap_or_else(|| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2 + w as u8)));
        cmd.arg("--sources").arg(source.to_string());
        cmd.args(["connect", "-n", &share.to_string(), "--worker"]);
        children.push(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?);
    }
    let mut readers = Vec::new();
    for child in &mut children {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("worker stdout"))?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        anyhow::ensure!(
            line.contains("registered"),
            "worker failed to register users: {line}"
        );
        readers.push(reader);
    }
    let (mut held, mut failures, mut wall) = (0usize, 0usize, 0f64);
    let mut rss = Vec::new();
    let mut second_half = 0;
    for phase in 0..2 {
        for child in &mut children {
            let stdin = child
                .stdin
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("worker stdin"))?;
            stdin.write_all(b"go\n")?;
            stdin.flush()?;
        }
        let mut phase_wall = 0f64;
        for reader in &mut readers {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let v: serde_json::Value = serde_json::from_str(line.trim())?;
            let got = v["held"].as_u64().unwrap_or(0) as usize;
            held += got;
            if phase == 1 {
                second_half += got;
            }
            failures += v["failures"].as_u64().unwrap_or(0) as usize;
            phase_wall = phase_wall.max(v["wall"].as_f64().unwrap_or(0.0));
        }
        wall += phase_wall;
        std::thread::sleep(Duration::from_secs_f64(hold));
        rss.push(target.server_pid.and_then(im_benches::stats::rss_kib));
    }
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    Ok(Report {
        scenario: "connect".into(),
        connections: held,
        connect_failures: failures,
        connects_per_sec: held as f64 / wall.max(1e-9),
        server_bytes_per_connection: scenario::bytes_per_connection(rss[0], rss[1], second_half),
        wall_secs: wall,
        ..Default::default()
    })
}
