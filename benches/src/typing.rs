//! `typing`: typing indicators relayed to a group (not stored), the
//! ephemeral relay path.

use crate::inbox::{Clock, Inbox};
use crate::scenario::{Load, Report, Target, connect_all, register_users};
use crate::stats::{Latency, cpu_seconds};
use anyhow::bail;
use im_protocol::v1;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
