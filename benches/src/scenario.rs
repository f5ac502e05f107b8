//! The load scenarios. Each returns a [`Report`] that includes its own
//! verification: every acked message delivered exactly once to every member.

use crate::client::{Conn, register};
use crate::stats::{Latency, cpu_seconds, rss_kib};
use anyhow::{Context, bail};
use im_protocol::v1;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the server is and how to observe it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's HTTP/WebSocket address.
    pub addr: SocketAddr,
    /// The server's process id, to read its memory and CPU time.
    pub server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over (empty: the default).
    pub sources: Vec<IpAddr>,
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
    /// Requests that failed.
    pub errors: u64,
}

impl Report {
    /// True when the verification found nothing wrong.
    pub fn verified(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.connect_failures == 0 && self.errors == 0
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

/// Received messages of one connection: counts per (conversation, seq), and
/// latencies; and the arrival times of typing events per typist.
#[derive(Default)]
pub struct Inbox {
    counts: Mutex<HashMap<u64, Vec<u8>>>,
    latencies: Mutex<Vec<u64>>,
    total: AtomicU64,
    typing: Mutex<HashMap<u64, Vec<u64>>>,
}

/// Microseconds since the scenario's clock started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

impl Inbox {
    fn record(&self, clock: Clock, m: &v1::Message) {
        let Some(text) = m.content.as_ref().and_then(|c| c.as_text()) else {
            return; // system messages are not part of the measurement
        };
        if let Some(sent) = text.split('|').next().and_then(|t| t.parse::<u64>().ok()) {
            self.latencies.lock().push(clock.now_us().saturating_sub(sent));
        }
        let mut counts = self.counts.lock();
        let seqs = counts.entry(m.conversation_id).or_default();
        let i = m.seq as usize;
        if seqs.len() <= i {
            seqs.resize(i + 1, 0);
        }
        seqs[i] = seqs[i].saturating_add(1);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, conv: u64, seq: u64) -> u8 {
        self.counts
            .lock()
            .get(&conv)
            .and_then(|s| s.get(seq as usize).copied())
            .unwrap_or(0)
    }
}

/// Checks that every acked seq of each conversation reached each of its
/// members exactly once: returns (lost, duplicates, deliveries).
pub fn verify(expectations: &[(u64, &[usize], &[u64])], inboxes: &[Arc<Inbox>]) -> (u64, u64, u64) {
    let (mut lost, mut duplicates, mut deliveries) = (0u64, 0u64, 0u64);
    for &(conversation, members, seqs) in expectations {
        for &member in members {
            for &seq in seqs {
                match inboxes[member].count(conversation, seq) {
                    0 => lost += 1,
                    n => {
                        deliveries += 1;
                        duplicates += u64::from(n - 1);
                    }
                }
            }
        }
    }
    (lost, duplicates, deliveries)
}

fn payload(clock: Clock, size: usize) -> String {
    let mut text = format!("{}|", clock.now_us());
    while text.len() < size {
        text.push('x');
    }
    text
}

async fn connect_one(
    target: &Target,
    i: usize,
    token: &str,
    inbox: Arc<Inbox>,
    clock: Clock,
) -> anyhow::Result<Conn> {
    let source = (!target.sources.is_empty()).then(|| target.sources[i % target.sources.len()]);
    let connect = Conn::connect(target.addr, source, token, move |kind| match kind {
        v1::event::Kind::Message(m) => inbox.record(clock, &m),
        v1::event::Kind::Typing(t) => inbox
            .typing
            .lock()
            .entry(t.user_id)
            .or_default()
            .push(clock.now_us()),
        _ => {}
    });
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

/// A message stream: one sender into one conversation, received by `members`.
struct Stream {
    sender: usize,
    conversation: v1::send_message::Target,
    conversation_id: u64,
    members: Vec<usize>,
}

/// Drives senders for `duration` (each at `rate` msgs/s, or flat out with
/// `window` in flight), then waits for deliveries and verifies them.
async fn drive(
    name: &str,
    target: &Target,
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
    } = load;
    let cpu_before = target.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        for lane in 0..window.max(1) {
            let conns = conns.clone();
            let errors = errors.clone();
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
                    match conns[sender].send(target, id, payload(clock, size)).await {
                        Ok(ack) => acked.push(ack.seq),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
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
    let deadline = Instant::now() + Duration::from_secs(15);
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
    let cpu_after = target.server_pid.and_then(cpu_seconds);
    let (lost, duplicates, deliveries) = verify(&expectations, &inboxes);
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
        errors: errors.load(Ordering::Relaxed),
        ..Default::default()
    })
}

/// Connects one connection per token, each with its own inbox.
async fn connect_all(
    target: &Target,
    tokens: &[(u64, String)],
    clock: Clock,
) -> anyhow::Result<(Vec<Conn>, Vec<Arc<Inbox>>)> {
    let mut conns = Vec::new();
    let mut inboxes = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        let inbox = Arc::new(Inbox::default());
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
}

/// Streams of `pairs` chatting pairs: connections (0, 1), (2, 3), ... each
/// open their direct conversation with a first message, then both send.
async fn pair_streams(conns: &[Conn], pairs: usize) -> anyhow::Result<Vec<Stream>> {
    let mut streams = Vec::new();
    for p in 0..pairs {
        let (a, b) = (2 * p, 2 * p + 1);
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
    let streams = pair_streams(&conns, pairs).await?;
    drive("dm", target, Arc::new(conns), inboxes, streams, clock, load).await
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
    drive("group", target, Arc::new(conns), inboxes, streams, clock, load).await
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
    let mut streams = pair_streams(&conns, pairs).await?;
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
    let mut report = drive("mixed", target, Arc::new(conns), inboxes, streams, clock, load).await?;
    let (held, _reconnects, churn_failures) = churn_task.await.context("churn task")?;
    report.connections += held;
    report.connect_failures = idle_failures + churn_failures;
    Ok(report)
}

/// `typing`: a group of `members`, `typists` of them toggling their typing
/// indicator at `load.rate` per second each (not stored: the relay path).
/// Latency pairs the n-th event of a typist at a receiver with its n-th send
/// (the server keeps order per typist); every other member must get every
/// acked typing change exactly once.
pub async fn typing(target: &Target, members: usize, typists: usize, load: Load) -> anyhow::Result<Report> {
    if typists == 0 || typists > members {
        bail!("need 1 <= typists <= members");
    }
    let tokens = register_users(target.addr, members).await?;
    let clock = Clock(Instant::now());
    let (conns, inboxes) = connect_all(target, &tokens, clock).await?;
    let ids: Vec<u64> = conns.iter().map(|c| c.user_id).collect();
    let conversation_id = conns[0].create_group("typing", ids).await?;
    let conns = Arc::new(conns);
    let cpu_before = target.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..typists {
        let conns = conns.clone();
        tasks.push(tokio::spawn(async move {
            let interval = load.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
            let mut next = Instant::now();
            let (mut sent, mut errors, mut on) = (Vec::new(), 0u64, true);
            while started.elapsed() < load.duration {
                if let Some(iv) = interval {
                    next += iv;
                    tokio::time::sleep_until(next.into()).await;
                }
                let at = clock.now_us();
                let body = v1::client_frame::Body::Typing(v1::SetTyping {
                    conversation_id,
                    typing: on,
                });
                match conns[t].call(body).await {
                    Ok(_) => sent.push(at),
                    Err(_) => errors += 1,
                }
                on = !on;
            }
            (conns[t].user_id, sent, errors)
        }));
    }
    let mut sent_by = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (user, sent, e) = task.await?;
        errors += e;
        sent_by.push((user, sent));
    }
    let send_wall = started.elapsed().as_secs_f64();
    let expected: usize = sent_by.iter().map(|(_, s)| s.len() * (members - 1)).sum();
    let received = |inboxes: &[Arc<Inbox>]| -> usize {
        inboxes
            .iter()
            .map(|i| i.typing.lock().values().map(Vec::len).sum::<usize>())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while received(&inboxes) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = target.server_pid.and_then(cpu_seconds);
    let (mut lost, mut duplicates, mut deliveries, mut samples) = (0u64, 0u64, 0u64, Vec::new());
    for (r, inbox) in inboxes.iter().enumerate() {
        let typing = inbox.typing.lock();
        for (t, (user, sent)) in sent_by.iter().enumerate() {
            if t == r {
                continue; // the typist itself gets nothing
            }
            let got = typing.get(user).map_or(&[][..], Vec::as_slice);
            lost += sent.len().saturating_sub(got.len()) as u64;
            duplicates += got.len().saturating_sub(sent.len()) as u64;
            deliveries += got.len().min(sent.len()) as u64;
            samples.extend(got.iter().zip(sent).map(|(recv, at)| recv.saturating_sub(*at)));
        }
    }
    for c in conns.iter() {
        c.close();
    }
    let acked: u64 = sent_by.iter().map(|(_, s)| s.len() as u64).sum();
    Ok(Report {
        scenario: "typing".into(),
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
        errors,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: u64, seq: u64) -> v1::Message {
        v1::Message {
            conversation_id: conv,
            seq,
            content: Some(v1::Content::text("5|x")),
            ..Default::default()
        }
    }

    #[test]
    fn verification_finds_losses_and_duplicates() {
        let clock = Clock(Instant::now());
        let inboxes = vec![Arc::new(Inbox::default()), Arc::new(Inbox::default())];
        for seq in [1, 2, 3] {
            inboxes[0].record(clock, &msg(7, seq));
        }
        inboxes[1].record(clock, &msg(7, 1));
        inboxes[1].record(clock, &msg(7, 1));
        inboxes[1].record(clock, &msg(7, 3));
        let members = [0, 1];
        assert_eq!(verify(&[(7, &members, &[1, 2, 3])], &inboxes), (1, 1, 5));
        assert_eq!(verify(&[(7, &members[..1], &[1, 2, 3])], &inboxes), (0, 0, 3));
        assert_eq!(inboxes[1].latencies.lock().len(), 3);
    }
}
