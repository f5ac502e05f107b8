//! The fan-out conformance suite: two node instances sharing one bus.
#![allow(missing_docs, clippy::unwrap_used)]

use super::*;
use crate::event::SharedEvent;
use crate::model::{DeviceAddress, DeviceId};
use im_protocol::v1;
use parking_lot::Mutex;
use std::time::Duration;

/// Generates one `#[tokio::test]` per check; `$make` is an async expression
/// returning `(Arc<dyn FanOut>, Arc<dyn FanOut>, guard)`: two nodes on one bus.
#[macro_export]
macro_rules! fanout_conformance_tests {
    ($make:expr) => {
        $crate::fanout_conformance_tests!(@tests $make;
            each_other_node_gets_each_envelope_once_and_never_its_own,
            order_is_kept_per_partition,
            envelope_fields_survive);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (a, b, _guard) = $make.await;
                $crate::fanout::conformance::$name(a, b).await;
            }
        )*
    };
}

#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Envelope>>);

impl FanOutHandler for Recorder {
    fn deliver(&self, envelope: Envelope) {
        self.0.lock().push(envelope);
    }
}

impl Recorder {
    /// What arrived once `n` envelopes did (or after 5 s), plus a moment
    /// for stray duplicates.
    async fn wait_for(&self, n: usize) -> Vec<Envelope> {
        for _ in 0..500 {
            if self.0.lock().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.lock().clone()
    }
}

fn envelope(node: &str, conv: u64, seq: u64) -> Envelope {
    Envelope {
        conversation_id: conv,
        origin_node: node.into(),
        audience: Audience::members(),
        member_version: 1,
        payload: Payload::Event(SharedEvent::new(v1::event::Kind::Message(v1::Message {
            conversation_id: conv,
            seq,
            ..Default::default()
        }))),
    }
}

fn seq_of(e: &Envelope) -> (u64, u64) {
    match e.event().and_then(|e| e.kind()) {
        Some(v1::event::Kind::Message(m)) => (m.conversation_id, m.seq),
        _ => (0, 0),
    }
}

pub async fn each_other_node_gets_each_envelope_once_and_never_its_own(
    a: Arc<dyn FanOut>,
    b: Arc<dyn FanOut>,
) {
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    a.subscribe(ra.clone());
    b.subscribe(rb.clone());
    for seq in 1..=20 {
        let (node, name) = if seq % 2 == 0 { (&a, "a") } else { (&b, "b") };
        node.publish(&envelope(name, 1, seq));
    }
    for (r, other) in [(ra, "b"), (rb, "a")] {
        let got = r.wait_for(10).await;
        assert!(got.iter().all(|e| &*e.origin_node == other), "never its own");
        let mut seqs: Vec<_> = got.iter().map(|e| seq_of(e).1).collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=20).filter(|s| (s % 2 == 0) == (other == "a")).collect();
        assert_eq!(seqs, expected, "each once");
    }
}

pub async fn order_is_kept_per_partition(a: Arc<dyn FanOut>, b: Arc<dyn FanOut>) {
    let r = Arc::new(Recorder::default());
    b.subscribe(r.clone());
    for seq in 1..=50 {
        for conv in [7, 8] {
            a.publish(&envelope("a", conv, seq));
        }
    }
    let got = r.wait_for(100).await;
    for conv in [7, 8] {
        let seqs: Vec<_> = got
            .iter()
            .map(seq_of)
            .filter(|(c, _)| *c == conv)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    }
}

pub async fn envelope_fields_survive(a: Arc<dyn FanOut>, b: Arc<dyn FanOut>) {
    let r = Arc::new(Recorder::default());
    b.subscribe(r.clone());
    let phone = DeviceAddress {
        user_id: 2,
        device: DeviceId::new("phone"),
    };
    let mut sent = envelope("a", 3, 9);
    sent.audience = Audience::users(vec![1, 2, 3])
        .except_user(1)
        .except_device(phone.clone());
    a.publish(&sent);
    let mut to_device = envelope("a", 0, 10);
    to_device.audience = Audience::device(phone.clone());
    a.publish(&to_device);
    let relay = Arc::new(v1::CallRelay {
        kind: Some(v1::call_relay::Kind::Device(v1::CallDevice {
            call_id: 5,
            user_id: 2,
            device_id: "phone".into(),
        })),
    });
    let between_nodes = Envelope {
        conversation_id: 0,
        origin_node: "a".into(),
        audience: Audience::nodes(),
        member_version: 0,
        payload: Payload::Call(relay.clone()),
    };
    a.publish(&between_nodes);
    let mut got = r.wait_for(3).await;
    assert_eq!(got.len(), 3);
    let at = got.iter().position(|e| e.event().is_none()).unwrap();
    let carried = got.remove(at);
    assert_eq!(carried.audience.to, Target::Nodes);
    assert!(matches!(&carried.payload, Payload::Call(r) if *r == relay));
    // Two partitions: no order between them is promised.
    got.sort_by_key(|e| seq_of(e).1);
    assert_eq!(got[0].audience, sent.audience);
    assert_eq!(got[0].member_version, 1);
    assert_eq!(&*got[0].origin_node, "a");
    assert_eq!(seq_of(&got[0]), (3, 9));
    assert_eq!(got[1].audience.to, Target::Device(phone));
    assert_eq!(
        got[1].partition_key(),
        2,
        "no conversation: keyed by the device's user"
    );
}

/// For a backend that routes (e.g. `RedisFanOut` with `Routing`): three
/// nodes `a`, `b`, `c` named so in `directory`. An envelope for listed users
/// or one device reaches only the nodes where those users have sessions,
/// once each; one for members reaches every other node.
pub async fn listed_audiences_reach_only_the_nodes_serving_them(
    nodes: [Arc<dyn FanOut>; 3],
    directory: Arc<dyn crate::presence::PresenceRegistry>,
) {
    let [a, b, c] = nodes;
    // User 7 on node b (two sessions), user 8 on node c, user 9 nowhere.
    for (node, user, session) in [("b", 7, 1), ("b", 7, 2), ("c", 8, 3)] {
        directory.connected(node, user, session, 1_000).await.unwrap();
    }
    let (rb, rc) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    b.subscribe(rb.clone());
    c.subscribe(rc.clone());
    let to = |seq: u64, audience: Audience| {
        let mut e = envelope("a", 1, seq);
        e.audience = audience;
        e
    };
    let phone = DeviceAddress {
        user_id: 8,
        device: DeviceId::new("phone"),
    };
    a.publish(&to(1, Audience::users(vec![7])));
    a.publish(&to(2, Audience::users(vec![9])));
    a.publish(&to(3, Audience::users(vec![7, 8])));
    a.publish(&to(4, Audience::device(phone)));
    a.publish(&to(5, Audience::members()));
    a.publish(&to(6, Audience::nodes()));
    // Routed and unrouted envelopes may travel different ways (Kafka: two
    // topics), so only the set is checked here; order per partition is
    // checked above.
    let seqs = |got: Vec<Envelope>| {
        let mut seqs: Vec<u64> = got.iter().map(|e| seq_of(e).1).collect();
        seqs.sort_unstable();
        seqs
    };
    assert_eq!(
        seqs(rb.wait_for(4).await),
        vec![1, 3, 5, 6],
        "node b: user 7's, the members' and every node's"
    );
    assert_eq!(
        seqs(rc.wait_for(4).await),
        vec![3, 4, 5, 6],
        "node c: user 8's, the members' and every node's"
    );
}
