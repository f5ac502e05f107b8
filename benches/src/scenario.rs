//! The load scenarios. Each returns a [`Report`] that includes its own
//! verification: every acked message delivered exactly once to every member.

use crate::client::{Conn, register};
use crate::inbox::{Clock, Inbox, payload, verify};
use crate::stats::{Latency, cpu_seconds_of, rss_kib};
use anyhow::{Context, bail};
use im_protocol::v1;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Where the server is and how to observe it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's HTTP/WebSocket address.
    pub addr: SocketAddr,
    /// The server's process id, to read its memory and CPU time.
    pub server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over (empty: the
    /// default; WebSocket only).
    pub sources: Vec<IpAddr>,
    /// The server's gRPC address: when set, sessions run over gRPC's
    /// `Chat.Connect` instead of WebSockets (registration stays HTTP).
    pub grpc: Option<SocketAddr>,
    /// WebSocket sessions over TLS to the server's TLS listener (users
    /// still register over plain HTTP at `addr`).
    pub tls: Option<TlsTarget>,
}

/// Where and how WebSocket connections go over TLS (`wss://`).
#[derive(Debug, Clone)]
pub struct TlsTarget {
    /// The server's TLS listener.
    pub addr: SocketAddr,
    /// The name its certificate must carry: a DNS name or an IP address.
    pub server_name: String,
    /// The roots trusted (the SDK's [`TlsConfig`](im_client_sdk::TlsConfig)).
    pub roots: im_client_sdk::TlsConfig,
}

/// What a scenario measured and verified.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Connections held at the end of the connect phase.
    pub connections: usize,
    /// Connections that failed to open or authenticate.
    pub connect_failures: usize,
    /// Connections opened and authenticated per second.
    pub connects_per_sec: f64,
    /// Server resident memory per connection, bytes (connect scenario).
    pub server_bytes_per_connection: Option<f64>,
    /// Messages acked.
    pub acked: u64,
    /// Acked messages per second.
    pub acked_per_sec: f64,
    /// Deliveries of acked messages to members.
    pub deliveries: u64,
    /// Deliveries per second.
    pub deliveries_per_sec: f64,
    /// Send (just before the request) to delivery (event received).
    pub latency: Latency,
    /// Server CPU seconds spent during the measured phase.
    pub server_cpu_secs: Option<f64>,
    /// Wall-clock seconds of the measured phase.
    pub wall_secs: f64,
    /// Acked messages some member never got.
    pub lost: u64,
    /// Deliveries beyond the first of one message to one member.
    pub duplicates: u64,
    /// Deliveries that arrived after a later message of their conversation
    /// sent from the same server node (the order the fan-out keeps).
    pub out_of_order: u64,
    /// Requests that failed (sends: after their retries).
    pub errors: u64,
    /// What the first failed request got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Sends repeated with the same client message id after `UNAVAILABLE`.
    pub retries: u64,
}

impl Report {
    /// True when the verification found nothing wrong.
    pub fn verified(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.connect_failures == 0
            && self.errors == 0
    }
}

fn run_id() -> String {
    let mut raw = [0u8; 4];
    rand::Rng::fill(&mut rand::rng(), &mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Registers `n` users (in parallel) and returns (user id, token) for each.
pub async fn register_users(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<(u64, String)>> {
    let run = run_id();
    let mut out = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for i in 0..n {
        let name = format!("load{run}x{i}");
        pending.push(tokio::spawn(async move {
            register(addr, &name, "load-password").await
        }));
        if pending.len() >= 64 || i + 1 == n {
            for p in pending.drain(..) {
                out.push(p.await??);
            }
        }
    }
    Ok(out)
}

async fn connect_one(
    target: &Target,
    i: usize,
    token: &str,
    inbox: Arc<Inbox>,
    clock: Clock,
) -> anyhow::Result<Conn> {
    let source = (!target.sources.is_empty()).then(|| target.sources[i % target.sources.len()]);
    let on_event = move |kind| match kind {
        v1::event::Kind::Message(m) => inbox.record(clock, &m),
        v1::event::Kind::Typing(t) => inbox
            .typing
            .lock()
            .entry(t.user_id)
            .or_default()
            .push(clock.now_us()),
        v1::event::Kind::Call(c) => inbox.record_call(clock, &c),
        _ => {}
    };
    let connect = async {
        match target.grpc {
            Some(grpc) => Conn::connect_grpc(grpc, token, on_event).await,
            None => Conn::connect(target.addr, target.tls.as_ref(), source, token, on_event).await,
        }
    };
    // A connection the server never accepts is a failure, not a hang.
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| anyhow::anyhow!("connect timed out"))?
}

/// Opens `count` connections with these tokens (round robin), `concurrency`
/// at a time; returns the connections and the failures.
pub async fn open_connections(
    target: &Target,
    tokens: &[(u64, String)],
    count: usize,
    concurrency: usize,
) -> (Vec<Conn>, usize) {
    let clock = Clock(Instant::now());
    let mut conns = Vec::with_capacity(count);
    let mut failures = 0;
    let mut pending = Vec::new();
    for i in 0..count {
        let target = target.clone();
        let token = tokens[i % tokens.len()].1.clone();
        pending.push(tokio::spawn(async move {
            connect_one(&target, i, &token, Arc::new(Inbox::default()), clock).await
        }));
        if pending.len() >= concurrency.max(1) || i + 1 == count {
            for p in pending.drain(..) {
                match p.await {
                    Ok(Ok(c)) => conns.push(c),
                    _ => failures += 1,
                }
            }
        }
    }
    (conns, failures)
}

/// Server memory per connection from two readings: the growth of the
/// server's resident memory while the second half of the connections opened.
/// (The first half absorbs memory the server freed earlier, e.g. after
/// registrations, which a plain before/after difference would hide.)
pub fn bytes_per_connection(
    rss_half_kib: Option<u64>,
    rss_full_kib: Option<u64>,
    second_half: usize,
) -> Option<f64> {
    match (rss_half_kib, rss_full_kib) {
        (Some(h), Some(f)) if second_half > 0 => {
            Some((f.saturating_sub(h) * 1024) as f64 / second_half as f64)
        }
        _ => None,
    }
}

/// `connect`: opens `n` authenticated connections and holds them; reports the
/// rate and the server's memory per connection.
pub async fn connect(target: &Target, n: usize, hold: Duration) -> anyhow::Result<Report> {
    let tokens = register_users(target.addr, n.div_ceil(10).max(1)).await?;
    let started = Instant::now();
    let (mut conns, mut failures) = open_connections(target, &tokens, n / 2, 256).await;
    let mut wall = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let rss_half = target.server_pid.and_then(rss_kib);
    let started = Instant::now();
    let (more, more_failures) = open_connections(target, &tokens, n - n / 2, 256).await;
    wall += started.elapsed().as_secs_f64();
    let second_half = more.len();
    conns.extend(more);
    failures += more_failures;
    tokio::time::sleep(hold).await;
    let per_conn = bytes_per_connection(rss_half, target.server_pid.and_then(rss_kib), second_half);
    let report = Report {
        scenario: "connect".into(),
        connections: conns.len(),
        connect_failures: failures,
        connects_per_sec: conns.len() as f64 / wall,
        server_bytes_per_connection: per_conn,
        wall_secs: wall,
        ..Default::default()
    };
    for c in &conns {
        c.close();
    }
    Ok(report)
}

/// Times a send is repeated after `UNAVAILABLE` before it counts as an error.
const RETRIES: u32 = 5;

/// A message stream: one sender into one conversation, received by `members`.
pub(crate) struct Stream {
    pub(crate) sender: usize,
    pub(crate) conversation: v1::send_message::Target,
    pub(crate) conversation_id: u64,
    pub(crate) members: Vec<usize>,
}

/// Drives senders for `duration` (each at `rate` msgs/s, or flat out with
/// `window` in flight), then waits for deliveries and verifies them; the
/// server CPU time is summed over `server_pids`.
pub(crate) async fn drive(
    name: &str,
    server_pids: &[u32],
    conns: Arc<Vec<Conn>>,
    inboxes: Vec<Arc<Inbox>>,
    streams: Vec<Stream>,
    clock: Clock,
    load: Load,
) -> anyhow::Result<Report> {
    let Load {
        duration,
        rate,
        window,
        size,
        settle,
    } = load;
    let cpu_before = cpu_seconds_of(server_pids);
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(OnceLock::new());
    let mut tasks = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        for lane in 0..window.max(1) {
            let conns = conns.clone();
            let (errors, retries, first_error) = (errors.clone(), retries.clone(), first_error.clone());
            let target = stream.conversation;
            let sender = stream.sender;
            let lanes = window.max(1);
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let interval = rate.map(|r| Duration::from_secs_f64(lanes as f64 / r.max(0.001)));
                let mut next = Instant::now();
                let mut i = 0u64;
                while started.elapsed() < duration {
                    if let Some(iv) = interval {
                        next += iv;
                        tokio::time::sleep_until(next.into()).await;
                    }
                    let id = format!("{s}-{lane}-{i}");
                    i += 1;
                    let text = payload(clock, size);
                    let (outcome, tries) = conns[sender].send_retrying(target, id, text, RETRIES).await;
                    retries.fetch_add(u64::from(tries), Ordering::Relaxed);
                    match outcome {
                        Ok(ack) => acked.push(ack.seq),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let _ = first_error.set(format!("{e:#}"));
                        }
                    }
                }
                (s, acked)
            }));
        }
    }
    let mut acked_by_stream: Vec<Vec<u64>> = vec![Vec::new(); streams.len()];
    for t in tasks {
        let (s, acked) = t.await?;
        acked_by_stream[s].extend(acked);
    }
    let send_wall = started.elapsed().as_secs_f64();
    let acked: u64 = acked_by_stream.iter().map(|a| a.len() as u64).sum();
    let expected: u64 = streams
        .iter()
        .zip(&acked_by_stream)
        .map(|(st, a)| (st.members.len() * a.len()) as u64)
        .sum();
    let expectations: Vec<_> = streams
        .iter()
        .zip(&acked_by_stream)
        .map(|(s, seqs)| (s.conversation_id, &s.members[..], &seqs[..]))
        .collect();
    // Wait (bounded) until every expected delivery arrived: the measured
    // phase ends with the last delivery, and anything still missing at the
    // deadline is reported as lost.
    let expected_total: u64 = expected;
    let deadline = Instant::now() + settle;
    let mut wall = started.elapsed().as_secs_f64();
    loop {
        let got: u64 = inboxes.iter().map(|i| i.total.load(Ordering::Relaxed)).sum();
        // Cheap check first; the exact one only once enough arrived (the
        // totals also count untracked messages such as the opening ones).
        if got >= expected_total && verify(&expectations, &inboxes).0 == 0 {
            wall = started.elapsed().as_secs_f64();
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_after = cpu_seconds_of(server_pids);
    let (lost, duplicates, deliveries) = verify(&expectations, &inboxes);
    let out_of_order = inboxes.iter().map(|i| i.out_of_order()).sum();
    let mut samples = Vec::new();
    for inbox in &inboxes {
        samples.append(&mut inbox.latencies.lock());
    }
    for c in conns.iter() {
        c.close();
    }
    Ok(Report {
        scenario: name.into(),
        connections: conns.len(),
        acked,
        acked_per_sec: acked as f64 / send_wall,
        deliveries,
        deliveries_per_sec: deliveries as f64 / wall,
        latency: Latency::of(samples),
        server_cpu_secs: cpu_before.zip(cpu_after).map(|(b, a)| a - b),
        wall_secs: wall,
        lost,
        duplicates,
        out_of_order,
        errors: errors.load(Ordering::Relaxed),
        first_error: first_error.get().cloned(),
        retries: retries.load(Ordering::Relaxed),
        ..Default::default()
    })
}

/// Connects one connection per token, each with its own inbox.
pub(crate) async fn connect_all(
    target: &Target,
    tokens: &[(u64, String)],
    clock: Clock,
) -> anyhow::Result<(Vec<Conn>, Vec<Arc<Inbox>>)> {
    connect_spread(std::slice::from_ref(target), tokens, clock, |_| Inbox::default()).await
}

/// Connects one connection per token, the i-th to `targets[i % n]`, each
/// with the inbox `inbox(i)`.
pub(crate) async fn connect_spread(
    targets: &[Target],
    tokens: &[(u64, String)],
    clock: Clock,
    inbox: impl Fn(usize) -> Inbox,
) -> anyhow::Result<(Vec<Conn>, Vec<Arc<Inbox>>)> {
    let mut conns = Vec::new();
    let mut inboxes = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        let inbox = Arc::new(inbox(i));
        let target = &targets[i % targets.len()];
        conns.push(connect_one(target, i, token, inbox.clone(), clock).await?);
        inboxes.push(inbox);
    }
    Ok((conns, inboxes))
}

/// Load shape shared by the message scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// How long senders send.
    pub duration: Duration,
    /// Messages per second per sender (None: flat out).
    pub rate: Option<f64>,
    /// Requests in flight per sender when flat out.
    pub window: usize,
    /// Message size in bytes (at least the timestamp).
    pub size: usize,
    /// How long to wait, once sending stopped, for the last deliveries;
    /// whatever has not arrived by then counts as lost.
    pub settle: Duration,
}

/// Streams of chatting pairs of connections, e.g. (0, 1), (2, 3), ...: each
/// pair opens its direct conversation with a first message, then both send.
pub(crate) async fn pair_streams(
    conns: &[Conn],
    pairs: impl IntoIterator<Item = (usize, usize)>,
) -> anyhow::Result<Vec<Stream>> {
    let mut streams = Vec::new();
    for (p, (a, b)) in pairs.into_iter().enumerate() {
        // The first message creates the direct conversation.
        let first = conns[a]
            .send(
                v1::send_message::Target::ToUserId(conns[b].user_id),
                format!("open-{p}"),
                "hello".into(),
            )
            .await?;
        for sender in [a, b] {
            streams.push(Stream {
                sender,
                conversation: v1::send_message::Target::ConversationId(first.conversation_id),
                conversation_id: first.conversation_id,
                members: vec![a, b],
            });
        }
    }
    Ok(streams)
}

/// `dm`: `pairs` pairs of users, both sides sending to each other.
pub async fn dm(target: &Target, pairs: usize, load: Load) -> anyhow::Result<Report> {
    let tokens = register_users(target.addr, pairs * 2).await?;
    let clock = Clock(Instant::now());
    let (conns, inboxes) = connect_all(target, &tokens, clock).await?;
    let streams = pair_streams(&conns, (0..pairs).map(|p| (2 * p, 2 * p + 1))).await?;
    drive(
        "dm",
        target.server_pid.as_slice(),
        Arc::new(conns),
        inboxes,
        streams,
        clock,
        load,
    )
    .await
}

/// `group`: one group of `members`, the first `senders` of them sending.
pub async fn group(target: &Target, members: usize, senders: usize, load: Load) -> anyhow::Result<Report> {
    if senders == 0 || senders > members {
        bail!("need 1 <= senders <= members");
    }
    let tokens = register_users(target.addr, members).await?;
    let clock = Clock(Instant::now());
    let (conns, inboxes) = connect_all(target, &tokens, clock).await?;
    let ids: Vec<u64> = conns.iter().map(|c| c.user_id).collect();
    let conversation_id = conns[0].create_group("load", ids).await?;
    let streams = (0..senders)
        .map(|sender| Stream {
            sender,
            conversation: v1::send_message::Target::ConversationId(conversation_id),
            conversation_id,
            members: (0..members).collect(),
        })
        .collect();
    drive(
        "group",
        target.server_pid.as_slice(),
        Arc::new(conns),
        inboxes,
        streams,
        clock,
        load,
    )
    .await
}

/// `mixed`: `idle` idle connections, `pairs` chatting pairs, `groups` groups of
/// `group_size` with two senders each, and reconnect churn: every second
/// `churn` idle connections close and reconnect.
pub async fn mixed(
    target: &Target,
    idle: usize,
    pairs: usize,
    groups: usize,
    group_size: usize,
    churn: usize,
    load: Load,
) -> anyhow::Result<Report> {
    let idle_tokens = register_users(target.addr, idle.div_ceil(10).max(1)).await?;
    let (mut idle_conns, idle_failures) = open_connections(target, &idle_tokens, idle, 128).await;
    let tokens = register_users(target.addr, pairs * 2 + groups * group_size).await?;
    let clock = Clock(Instant::now());
    let (conns, inboxes) = connect_all(target, &tokens, clock).await?;
    let mut streams = pair_streams(&conns, (0..pairs).map(|p| (2 * p, 2 * p + 1))).await?;
    for g in 0..groups {
        let members: Vec<usize> = (pairs * 2 + g * group_size..pairs * 2 + (g + 1) * group_size).collect();
        let ids = members.iter().map(|&m| conns[m].user_id).collect();
        let conversation_id = conns[members[0]].create_group(&format!("mixed-{g}"), ids).await?;
        for &sender in members.iter().take(2) {
            streams.push(Stream {
                sender,
                conversation: v1::send_message::Target::ConversationId(conversation_id),
                conversation_id,
                members: members.clone(),
            });
        }
    }
    // Churn runs beside the chat traffic.
    let churn_target = target.clone();
    let churn_tokens = idle_tokens.clone();
    let churn_task = tokio::spawn(async move {
        let started = Instant::now();
        let mut reconnects = 0usize;
        let mut failures = 0usize;
        let mut i = 0usize;
        while started.elapsed() < load.duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for _ in 0..churn.min(idle_conns.len()) {
                let slot = i % idle_conns.len();
                idle_conns[slot].close();
                let token = &churn_tokens[i % churn_tokens.len()].1;
                match connect_one(
                    &churn_target,
                    i,
                    token,
                    Arc::new(Inbox::default()),
                    Clock(Instant::now()),
                )
                .await
                {
                    Ok(c) => {
                        idle_conns[slot] = c;
                        reconnects += 1;
                    }
                    Err(_) => failures += 1,
                }
                i += 1;
            }
        }
        let held = idle_conns.len();
        for c in &idle_conns {
            c.close();
        }
        (held, reconnects, failures)
    });
    let mut report = drive(
        "mixed",
        target.server_pid.as_slice(),
        Arc::new(conns),
        inboxes,
        streams,
        clock,
        load,
    )
    .await?;
    let (held, _reconnects, churn_failures) = churn_task.await.context("churn task")?;
    report.connections += held;
    report.connect_failures = idle_failures + churn_failures;
    Ok(report)
}
