//! `calls`: call signalling relayed between the two devices of each pair
//! (SDP offers, as a call's renegotiation or trickled candidates would be):
//! the engine's call path, from `CallSignal` to the peer's `call` event.

use crate::inbox::{Clock, Inbox, payload};
use crate::scenario::{Load, Report, Target, connect_all, register_users};
use crate::stats::{Latency, cpu_seconds};
use anyhow::{Context, bail};
use im_protocol::v1;
use std::sync::Arc;
use std::time::{Duration, Instant};
use v1::client_frame::Body;
use v1::response::Result as Reply;

/// `calls`: `pairs` calls set up (invite, accept) between two users each;
/// then each caller sends SDP offers of `load.size` bytes to its peer at
/// `load.rate` per second (flat out without a rate, one at a time). Latency
/// runs from just before the `CallSignal` to the peer's event; every acked
/// signal must reach the peer exactly once.
pub async fn calls(target: &Target, pairs: usize, load: Load) -> anyhow::Result<Report> {
    if pairs == 0 {
        bail!("need at least one pair");
    }
    let tokens = register_users(target.addr, 2 * pairs).await?;
    let clock = Clock(Instant::now());
    let (conns, inboxes) = connect_all(target, &tokens, clock).await?;
    let mut calls = Vec::with_capacity(pairs);
    for p in 0..pairs {
        let (caller, callee) = (&conns[2 * p], &conns[2 * p + 1]);
        let to = v1::send_message::Target::ToUserId(callee.user_id);
        let conversation_id = caller
            .send(to, format!("call-{p}"), "hi".into())
            .await?
            .conversation_id;
        let invite = Body::CallInvite(v1::CallInvite {
            conversation_id,
            invitee_ids: vec![callee.user_id],
            media: Some(v1::CallMedia {
                audio: true,
                ..Default::default()
            }),
        });
        let Reply::Call(call) = caller.call(invite).await? else {
            bail!("invite answered without a call");
        };
        let accept = Body::CallUpdate(v1::CallUpdate {
            call_id: call.call_id,
            kind: v1::CallUpdateKind::Accept as i32,
        });
        callee.call(accept).await.context("accept")?;
        calls.push(call.call_id);
    }
    let conns = Arc::new(conns);
    let cpu_before = target.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, call_id) in calls.iter().copied().enumerate() {
        let conns = conns.clone();
        tasks.push(tokio::spawn(async move {
            let (caller, callee) = (&conns[2 * p], &conns[2 * p + 1]);
            let interval = load.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
            let mut next = Instant::now();
            let (mut acked, mut errors) = (0u64, 0u64);
            while started.elapsed() < load.duration {
                if let Some(iv) = interval {
                    next += iv;
                    tokio::time::sleep_until(next.into()).await;
                }
                let body = Body::CallSignal(v1::CallSignal {
                    call_id,
                    to_user_id: callee.user_id,
                    kind: v1::SignalKind::Offer as i32,
                    payload: payload(clock, load.size),
                });
                match caller.call(body).await {
                    Ok(_) => acked += 1,
                    Err(_) => errors += 1,
                }
            }
            (acked, errors)
        }));
    }
    let mut sent = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (acked, e) = task.await?;
        errors += e;
        sent.push(acked);
    }
    let send_wall = started.elapsed().as_secs_f64();
    let acked: u64 = sent.iter().sum();
    let received =
        |inboxes: &[Arc<Inbox>]| -> u64 { inboxes.iter().map(|i| i.signals.lock().len() as u64).sum() };
    let deadline = Instant::now() + load.settle;
    while received(&inboxes) < acked && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = target.server_pid.and_then(cpu_seconds);
    let (mut lost, mut duplicates, mut samples) = (0u64, 0u64, Vec::new());
    for (p, sent) in sent.iter().enumerate() {
        let got = std::mem::take(&mut *inboxes[2 * p + 1].signals.lock());
        lost += sent.saturating_sub(got.len() as u64);
        duplicates += (got.len() as u64).saturating_sub(*sent);
        samples.extend(got);
        // The caller hears nothing of its own signals.
        duplicates += inboxes[2 * p].signals.lock().len() as u64;
    }
    for c in conns.iter() {
        c.close();
    }
    let deliveries = acked.saturating_sub(lost);
    Ok(Report {
        scenario: "calls".into(),
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
