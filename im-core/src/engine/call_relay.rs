//! Calls across nodes. A call's state is kept by the node that made it: the
//! call id carries that node's tag. Its events reach devices on every node
//! through the fan-out like any other event, addressed to devices. A
//! request for the call that arrives at another node (the callee's accept,
//! an SDP answer, a candidate) travels to the keeper as a `CallCommand` in
//! an envelope for every node; the keeper runs it as if it had arrived
//! there and sends the outcome back as a `CallCommandReply` for the asking
//! node, which answers its client. Envelopes of one call share a partition,
//! so a device's offer and its candidates keep their order.
//!
//! A device of this node in a call kept elsewhere is remembered, so that
//! when its last session here ends the keeper hears of it (`CallDevice`)
//! and starts its reconnect window. When it comes back (on any node) its
//! client accepts the call again, which tells the keeper it is back.
//!
//! If the keeper does not answer within [`REPLY_TIMEOUT`] (it is gone, or
//! the bus is down, or no node ever made that id), the request fails with
//! `UNAVAILABLE`; a call whose keeper died is lost with it (its clients hang
//! up). A node with no other node on its fan-out answers `NOT_FOUND` at once.

use super::Engine;
use crate::call::{CallId, Endpoint};
use crate::error::{Error, Result};
use crate::fanout::{Audience, Envelope, Payload};
use crate::model::{DeviceId, UserId};
use im_protocol::v1;
use im_protocol::v1::call_command::Body;
use im_protocol::v1::call_command_reply::Result as Outcome;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a node waits for the keeper of a call to answer a request.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests waiting for another node, and this node's devices in calls
/// other nodes keep.
#[derive(Debug, Default)]
pub(super) struct Relay {
    next_request: AtomicU64,
    waiting: parking_lot::Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    devices: parking_lot::Mutex<HashMap<(UserId, DeviceId), CallId>>,
    /// Relays from other nodes, handled one at a time in arrival order by
    /// one task (started with the first), off the fan-out's delivery tasks:
    /// a command may wait for the store.
    incoming: std::sync::OnceLock<mpsc::UnboundedSender<(Arc<v1::CallRelay>, Arc<str>)>>,
}

/// Forgets a request's waiter however the request ends (answered, timed
/// out, or dropped with its connection).
struct Waiting<'a> {
    relay: &'a Relay,
    request: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.relay.waiting.lock().remove(&self.request);
    }
}

impl Relay {
    /// The call kept elsewhere that this device was in, forgotten.
    pub(super) fn forget(&self, user: UserId, device: &DeviceId) -> Option<CallId> {
        self.devices.lock().remove(&(user, device.clone()))
    }

    /// Forgets that the device is in `call` (not another call it is in).
    fn forget_call(&self, device: &(UserId, DeviceId), call: CallId) {
        let mut devices = self.devices.lock();
        if devices.get(device) == Some(&call) {
            devices.remove(device);
        }
    }
}

impl Engine {
    /// Whether this node keeps `call` (made it).
    pub(super) fn keeps_call(&self, call: CallId) -> bool {
        call >> super::calls::COUNTER_BITS == self.inner.calls.tag
    }

    /// Runs a device's request on the node that keeps its call and returns
    /// the outcome: the call for an accept.
    pub(super) async fn forward_call_request(&self, from: &Endpoint, body: Body) -> Result<Option<v1::Call>> {
        let relay = &self.inner.calls.relay;
        let call = match &body {
            Body::Update(u) => u.call_id,
            Body::Signal(s) => s.call_id,
        };
        let counter = call & ((1 << super::calls::COUNTER_BITS) - 1);
        if counter == 0 || !self.inner.fanout.has_other_nodes() {
            // No node made it (counters start at 1), or there is no other node.
            return Err(Error::NotFound(format!("unknown call {call}")));
        }
        let request = relay.next_request.fetch_add(1, Ordering::Relaxed);
        let kind = match &body {
            Body::Update(u) => Some(u.kind()),
            Body::Signal(_) => None,
        };
        let key = (from.user, from.device.clone());
        // In the call once the keeper accepts: remembered before asking, so
        // that a connection dropped while the answer travels still tells the
        // keeper. Leaving forgets it.
        match kind {
            Some(v1::CallUpdateKind::Accept) | None => {
                relay.devices.lock().insert(key.clone(), call);
            }
            Some(v1::CallUpdateKind::Ringing) => {}
            Some(_) => relay.forget_call(&key, call),
        }
        let (tx, rx) = oneshot::channel();
        relay.waiting.lock().insert(request, tx);
        let _waiting = Waiting { relay, request };
        self.publish_relay(v1::call_relay::Kind::Command(v1::CallCommand {
            request,
            call_id: call,
            user_id: from.user,
            device_id: from.device.as_str().to_owned(),
            body: Some(body),
        }));
        let outcome = match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                return Err(Error::Unavailable(format!(
                    "the node that keeps call {call} did not answer"
                )));
            }
        };
        match outcome {
            Outcome::Error(e) => {
                if kind == Some(v1::CallUpdateKind::Accept) {
                    relay.forget_call(&key, call);
                }
                Err(Error::from_wire(&e))
            }
            Outcome::Call(c) => Ok(Some(c)),
            Outcome::Ok(_) => Ok(None),
        }
    }

    /// Tells the keeper of `call` that a device of it lost its last session here.
    pub(super) fn relay_device_gone(&self, call: CallId, user: UserId, device: &DeviceId) {
        self.publish_relay(v1::call_relay::Kind::Device(v1::CallDevice {
            call_id: call,
            user_id: user,
            device_id: device.as_str().to_owned(),
        }));
    }

    /// Queues call signalling from another node for the relay task, which
    /// handles it in arrival order (the fan-out keeps one call's relays in
    /// order).
    pub(super) fn receive_call_relay(&self, relay: Arc<v1::CallRelay>, origin: Arc<str>) {
        let queue = self.inner.calls.relay.incoming.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Arc<v1::CallRelay>, Arc<str>)>();
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                while let Some((relay, origin)) = rx.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    Engine { inner }.on_call_relay(&relay, &origin).await;
                }
            });
            tx
        });
        let _ = queue.send((relay, origin));
    }

    /// Call signalling from another node: a request for a call kept here,
    /// the answer to a request of this node, or a device that went away.
    pub(super) async fn on_call_relay(&self, relay: &v1::CallRelay, origin: &str) {
        match &relay.kind {
            Some(v1::call_relay::Kind::Command(c)) if self.keeps_call(c.call_id) => {
                let result = match self.run_command(c, origin).await {
                    Ok(Some(call)) => Outcome::Call(call),
                    Ok(None) => Outcome::Ok(v1::Empty {}),
                    Err(e) => Outcome::Error(e.to_wire()),
                };
                self.publish_relay(v1::call_relay::Kind::Reply(v1::CallCommandReply {
                    request: c.request,
                    to_node: origin.to_owned(),
                    result: Some(result),
                }));
            }
            Some(v1::call_relay::Kind::Reply(r)) if *r.to_node == *self.inner.node_id => {
                let waiter = self.inner.calls.relay.waiting.lock().remove(&r.request);
                if let (Some(waiter), Some(result)) = (waiter, r.result.clone()) {
                    let _ = waiter.send(result);
                }
            }
            Some(v1::call_relay::Kind::Device(d)) if self.keeps_call(d.call_id) => {
                let device = Endpoint {
                    user: d.user_id,
                    device: DeviceId::new(&d.device_id),
                };
                self.device_gone_here(device, origin);
            }
            _ => {} // for another node
        }
    }

    /// A command from another node (`origin`, where its device is
    /// connected), run as if its device had sent it here.
    async fn run_command(&self, c: &v1::CallCommand, origin: &str) -> Result<Option<v1::Call>> {
        let from = Endpoint {
            user: c.user_id,
            device: DeviceId::new(&c.device_id),
        };
        match &c.body {
            Some(Body::Update(u)) => self.update_here(from, *u, origin).await,
            Some(Body::Signal(s)) => {
                let kind = self.check_signal(s)?;
                self.signal_here(from, kind, s.clone()).map(|()| None)
            }
            None => Err(Error::InvalidArgument("a call command without a body".into())),
        }
    }

    fn publish_relay(&self, kind: v1::call_relay::Kind) {
        let envelope = Envelope {
            conversation_id: 0,
            origin_node: self.inner.node_id.clone(),
            audience: Audience::nodes(),
            member_version: 0,
            payload: Payload::Call(Arc::new(v1::CallRelay { kind: Some(kind) })),
        };
        self.inner.fanout.publish(&envelope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Caller;
    use crate::fanout::{LocalBus, LocalFanOut};
    use crate::sessions::{Outbound, SessionEvents};
    use crate::store::{MemoryStore, Store};
    use v1::call_event::Kind as Heard;

    fn node(name: &str, store: &Arc<dyn Store>, bus: &Arc<LocalBus>) -> Engine {
        Engine::builder()
            .node_id(name)
            .store(store.clone())
            .fanout(Arc::new(LocalFanOut::on(bus)))
            .build()
    }

    fn on(user: UserId, device: &str) -> Caller {
        Caller {
            user_id: user,
            device: DeviceId::new(device),
            session_id: 0,
        }
    }

    /// The next call event of a session (others skipped), within 5 s.
    async fn heard(events: &mut SessionEvents) -> Heard {
        let next = async {
            loop {
                if let Some(Outbound::Event(e)) = events.recv().await
                    && let Some(v1::event::Kind::Call(c)) = e.kind()
                {
                    return c.kind.clone().unwrap();
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), next).await.unwrap()
    }

    fn update(call: CallId, kind: v1::CallUpdateKind) -> v1::CallUpdate {
        v1::CallUpdate {
            call_id: call,
            kind: kind as i32,
        }
    }

    /// Three nodes on one bus and store: Alice on node a has called Bob,
    /// whose device `b1` is on node b.
    struct Scene {
        a: Engine,
        b: Engine,
        c: Engine,
        alice: UserId,
        bob: UserId,
        alice_on_a: SessionEvents,
        bob_on_b: SessionEvents,
        call: CallId,
    }

    async fn alice_calls_bob() -> Scene {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let bus = LocalBus::new();
        let (a, b, c) = (
            node("node-a", &store, &bus),
            node("node-b", &store, &bus),
            node("node-c", &store, &bus),
        );
        let alice = a.register("alice", "password123", "").await.unwrap().user.id;
        let bob = a.register("bob", "password123", "").await.unwrap().user.id;
        let direct = store.direct_conversation(alice, bob, 0).await.unwrap().id;
        let alice_on_a = a.connect(alice, DeviceId::new("a1")).await;
        let bob_on_b = b.connect(bob, DeviceId::new("b1")).await;
        let invite = v1::CallInvite {
            conversation_id: direct,
            invitee_ids: vec![bob],
            media: Some(v1::CallMedia {
                audio: true,
                ..Default::default()
            }),
        };
        let call = a.call_invite(on(alice, "a1"), invite).await.unwrap().call_id;
        Scene {
            a,
            b,
            c,
            alice,
            bob,
            alice_on_a,
            bob_on_b,
            call,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_kept_by_one_node_is_answered_and_signalled_from_another() {
        let Scene {
            a,
            b,
            alice,
            bob,
            mut alice_on_a,
            mut bob_on_b,
            call,
            ..
        } = alice_calls_bob().await;
        assert!(a.keeps_call(call) && !b.keeps_call(call));
        assert!(matches!(heard(&mut bob_on_b).await, Heard::Incoming(_)));

        // Bob answers on node b: node a runs it and b answers Bob.
        let taken = b
            .call_update(on(bob, "b1"), update(call, v1::CallUpdateKind::Accept))
            .await;
        assert_eq!(taken.unwrap().unwrap().participants.len(), 2);
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Joined(p) if p.user_id == bob));
        let answer = v1::CallSignal {
            call_id: call,
            to_user_id: alice,
            kind: v1::SignalKind::Answer as i32,
            payload: "sdp".into(),
        };
        b.call_signal(on(bob, "b1"), answer.clone()).await.unwrap();
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Signal(s) if s.payload == "sdp"));
        // Refusals come back from the keeper with their code.
        let stranger = b.call_signal(on(bob + 100, "x"), answer).await.unwrap_err();
        assert!(matches!(stranger, Error::PermissionDenied(_)), "{stranger:?}");
        let unknown = b
            .call_update(on(bob, "b1"), update(call + 1, v1::CallUpdateKind::HangUp))
            .await;
        assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
        let never_made = update(call & !0xfff_ffff_ffff, v1::CallUpdateKind::HangUp);
        let never_made = b.call_update(on(bob, "b1"), never_made).await;
        assert!(
            matches!(never_made, Err(Error::NotFound(_))),
            "a counter of 0 is no call"
        );
        // A node alone knows at once that nobody else keeps a call.
        let alone = Engine::builder().build();
        let forged = update(call, v1::CallUpdateKind::HangUp);
        let forged = alone.call_update(on(bob, "b1"), forged).await;
        assert!(matches!(forged, Err(Error::NotFound(_))), "{forged:?}");

        // Bob's connection to node b drops: node a starts his window; he
        // comes back on node a and accepts again: he is back.
        b.disconnect(bob, bob_on_b.id).await;
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Reconnecting(p) if p.user_id == bob));
        let _bob_on_a = a.connect(bob, DeviceId::new("b1")).await;
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Reconnected(_)));

        // Alice hangs up on a: Bob, now on a, hears the end.
        a.call_update(on(alice, "a1"), update(call, v1::CallUpdateKind::HangUp))
            .await
            .unwrap();
        assert!(a.call_of(alice).is_none() && a.call_of(bob).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_device_that_returns_on_another_node_accepts_again_to_say_so() {
        let Scene {
            a: _keeper,
            b,
            c,
            bob,
            mut alice_on_a,
            bob_on_b,
            call,
            ..
        } = alice_calls_bob().await;
        b.call_update(on(bob, "b1"), update(call, v1::CallUpdateKind::Accept))
            .await
            .unwrap();
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Joined(_)));
        b.disconnect(bob, bob_on_b.id).await;
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Reconnecting(_)));
        // Node c never heard of the call: Bob's client accepts again there.
        let _bob_on_c = c.connect(bob, DeviceId::new("b1")).await;
        let back = c
            .call_update(on(bob, "b1"), update(call, v1::CallUpdateKind::Accept))
            .await;
        assert_eq!(back.unwrap().unwrap().call_id, call);
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Reconnected(p) if p.device_id == "b1"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_goodbye_from_a_node_the_device_left_is_ignored() {
        let Scene {
            a: _keeper,
            b,
            c,
            bob,
            mut alice_on_a,
            bob_on_b,
            call,
            ..
        } = alice_calls_bob().await;
        let accept = update(call, v1::CallUpdateKind::Accept);
        b.call_update(on(bob, "b1"), accept).await.unwrap();
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Joined(_)));
        // Bob's device moved to node c and said so before node b noticed
        // its old connection was dead.
        let bob_on_c = c.connect(bob, DeviceId::new("b1")).await;
        c.call_update(on(bob, "b1"), accept).await.unwrap();
        b.disconnect(bob, bob_on_b.id).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Some(Outbound::Event(e)) = alice_on_a.try_recv() {
            let reconnecting = matches!(e.kind(), Some(v1::event::Kind::Call(c)) if matches!(c.kind, Some(Heard::Reconnecting(_))));
            assert!(!reconnecting, "node b's late goodbye must not start Bob's window");
        }
        // Leaving node c, where he is now, does.
        c.disconnect(bob, bob_on_c.id).await;
        assert!(matches!(heard(&mut alice_on_a).await, Heard::Reconnecting(p) if p.user_id == bob));
    }
}
