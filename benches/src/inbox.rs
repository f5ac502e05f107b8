//! What each receiving connection records (counts per message, latencies,
//! arrival order) and the exactly-once check over all of them.

use im_protocol::v1;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Microseconds since the scenario's clock started; senders put it in the
/// message text, receivers subtract it (one process, one clock).
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Microseconds since the clock started.
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A message text of at least `size` bytes that starts with the send time.
pub(crate) fn payload(clock: Clock, size: usize) -> String {
    let mut text = format!("{}|", clock.now_us());
    while text.len() < size {
        text.push('x');
    }
    text
}

/// Where a receiving connection sits in a cluster, so that its latencies can
/// be split by where the sender sits.
pub struct Route {
    /// The node this connection is on.
    pub node: usize,
    /// The user this connection is signed in as (its own messages are neither
    /// same-node nor cross-node deliveries).
    pub user: u64,
    /// The node of every sending user.
    pub user_nodes: Arc<HashMap<u64, usize>>,
}

/// Where a delivery's sender sat relative to its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Locality {
    /// Another user on the receiver's node.
    SameNode = 0,
    /// A user on another node.
    CrossNode = 1,
}

impl Route {
    /// The node the sender sits on (unknown senders: this node).
    fn origin(&self, sender: u64) -> usize {
        self.user_nodes.get(&sender).copied().unwrap_or(self.node)
    }

    fn locality(&self, sender: u64) -> Option<Locality> {
        if sender == self.user {
            return None;
        }
        let node = *self.user_nodes.get(&sender)?;
        Some(if node == self.node {
            Locality::SameNode
        } else {
            Locality::CrossNode
        })
    }
}

/// Messages of one conversation seen by one connection.
#[derive(Default)]
struct Seen {
    /// Deliveries per seq.
    counts: Vec<u8>,
    /// The highest seq delivered so far.
    highest: u64,
    /// The highest seq delivered so far from senders on each node.
    highest_by_origin: Vec<u64>,
}

/// Received messages of one connection: counts per (conversation, seq),
/// latencies, and the arrival times of typing events per typist.
#[derive(Default)]
pub struct Inbox {
    seen: Mutex<HashMap<u64, Seen>>,
    pub(crate) latencies: Mutex<Vec<u64>>,
    /// Latencies by [`Locality`] (only with a route).
    by_locality: Mutex<[Vec<u64>; 2]>,
    pub(crate) total: AtomicU64,
    /// Messages that arrived after a higher seq of their conversation sent
    /// from the same node: the order every node keeps, broken.
    out_of_order: AtomicU64,
    /// Messages that arrived after a higher seq of their conversation sent
    /// from another node (allowed: live events of two nodes may interleave,
    /// a client fills the gap from the store).
    interleaved: AtomicU64,
    pub(crate) typing: Mutex<HashMap<u64, Vec<u64>>>,
    /// Latencies of the call signals this connection received.
    pub(crate) signals: Mutex<Vec<u64>>,
    route: Option<Route>,
}

impl Inbox {
    /// An inbox that also splits its latencies by where the sender sits.
    pub fn routed(route: Route) -> Self {
        Self {
            route: Some(route),
            ..Self::default()
        }
    }

    pub(crate) fn record(&self, clock: Clock, m: &v1::Message) {
        let Some(text) = m.content.as_ref().and_then(|c| c.as_text()) else {
            return; // system messages are not part of the measurement
        };
        if let Some(sent) = text.split('|').next().and_then(|t| t.parse::<u64>().ok()) {
            let latency = clock.now_us().saturating_sub(sent);
            self.latencies.lock().push(latency);
            if let Some(l) = self.route.as_ref().and_then(|r| r.locality(m.sender_id)) {
                self.by_locality.lock()[l as usize].push(latency);
            }
        }
        let mut seen = self.seen.lock();
        let conv = seen.entry(m.conversation_id).or_default();
        let i = m.seq as usize;
        if conv.counts.len() <= i {
            conv.counts.resize(i + 1, 0);
        }
        conv.counts[i] = conv.counts[i].saturating_add(1);
        let origin = self.route.as_ref().map_or(0, |r| r.origin(m.sender_id));
        if conv.highest_by_origin.len() <= origin {
            conv.highest_by_origin.resize(origin + 1, 0);
        }
        if m.seq < conv.highest_by_origin[origin] {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
        } else if m.seq < conv.highest {
            self.interleaved.fetch_add(1, Ordering::Relaxed);
        }
        conv.highest_by_origin[origin] = conv.highest_by_origin[origin].max(m.seq);
        conv.highest = conv.highest.max(m.seq);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// A call event: a relayed signal's latency (its payload starts with
    /// the send time).
    pub(crate) fn record_call(&self, clock: Clock, event: &v1::CallEvent) {
        if let Some(v1::call_event::Kind::Signal(s)) = &event.kind
            && let Some(sent) = s.payload.split('|').next().and_then(|t| t.parse::<u64>().ok())
        {
            self.signals.lock().push(clock.now_us().saturating_sub(sent));
        }
    }

    fn count(&self, conv: u64, seq: u64) -> u8 {
        self.seen
            .lock()
            .get(&conv)
            .and_then(|s| s.counts.get(seq as usize).copied())
            .unwrap_or(0)
    }

    /// Messages that arrived after a higher seq of their conversation sent
    /// from the same node.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }

    /// Messages that arrived after a higher seq of their conversation sent
    /// from another node.
    pub fn interleaved(&self) -> u64 {
        self.interleaved.load(Ordering::Relaxed)
    }

    /// Takes the latencies of deliveries from senders with this locality.
    pub fn take_latencies(&self, locality: Locality) -> Vec<u64> {
        std::mem::take(&mut self.by_locality.lock()[locality as usize])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: u64, seq: u64, sender_id: u64) -> v1::Message {
        v1::Message {
            conversation_id: conv,
            seq,
            sender_id,
            content: Some(v1::Content::text("5|x")),
            ..Default::default()
        }
    }

    #[test]
    fn verification_finds_losses_duplicates_and_reordering() {
        let clock = Clock(Instant::now());
        let inboxes = vec![Arc::new(Inbox::default()), Arc::new(Inbox::default())];
        for seq in [1, 2, 3] {
            inboxes[0].record(clock, &msg(7, seq, 1));
        }
        inboxes[1].record(clock, &msg(7, 1, 1));
        inboxes[1].record(clock, &msg(7, 1, 1));
        inboxes[1].record(clock, &msg(7, 3, 1));
        let members = [0, 1];
        assert_eq!(verify(&[(7, &members, &[1, 2, 3])], &inboxes), (1, 1, 5));
        assert_eq!(verify(&[(7, &members[..1], &[1, 2, 3])], &inboxes), (0, 0, 3));
        assert_eq!(inboxes[1].latencies.lock().len(), 3);
        assert_eq!(inboxes[1].out_of_order(), 0, "a duplicate is not a reordering");
        inboxes[1].record(clock, &msg(7, 2, 1));
        assert_eq!(inboxes[1].out_of_order(), 1);
        assert_eq!(inboxes[0].out_of_order(), 0);
    }

    #[test]
    fn latencies_split_by_where_the_sender_sits() {
        let clock = Clock(Instant::now());
        let user_nodes = Arc::new(HashMap::from([(1, 0), (2, 1), (3, 0)]));
        let inbox = Inbox::routed(Route {
            node: 0,
            user: 3,
            user_nodes,
        });
        inbox.record(clock, &msg(7, 1, 1)); // same node
        inbox.record(clock, &msg(7, 2, 2)); // other node
        inbox.record(clock, &msg(7, 3, 2));
        inbox.record(clock, &msg(7, 4, 3)); // its own message
        assert_eq!(inbox.take_latencies(Locality::SameNode).len(), 1);
        assert_eq!(inbox.take_latencies(Locality::CrossNode).len(), 2);
        assert_eq!(inbox.latencies.lock().len(), 4);
        // Order is kept per node of origin: seq 6 from node 1 after seq 7
        // from node 0 interleaves; seq 5 from node 1 after its seq 6 does not.
        inbox.record(clock, &msg(7, 7, 1));
        inbox.record(clock, &msg(7, 6, 2));
        assert_eq!((inbox.out_of_order(), inbox.interleaved()), (0, 1));
        inbox.record(clock, &msg(7, 5, 2));
        assert_eq!((inbox.out_of_order(), inbox.interleaved()), (1, 1));
    }
}
