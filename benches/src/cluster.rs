//! `cluster`: several server nodes measured at once. Clients are spread
//! evenly over the nodes (client i on node i % n); pairs chat 1:1 across
//! nodes and, for comparison, within one node; groups have members on every
//! node. Every delivery is verified like in the single-node scenarios
//! (exactly once; in order among the messages sent from one node, the order
//! the fan-out keeps), and latencies are split by whether the sender sat on
//! the receiver's node or on another one.

use crate::inbox::{Clock, Inbox, Locality, Route};
use crate::scenario::{self, Load, Report, Stream, Target};
use crate::stats::Latency;
use anyhow::bail;
use im_protocol::v1;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What runs on the cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// 1:1 pairs whose two users sit on different nodes (with one node: on it).
    pub cross_pairs: usize,
    /// 1:1 pairs whose two users sit on one node, rounded up to a multiple
    /// of the number of nodes so that every node has as many.
    pub same_node_pairs: usize,
    /// Groups, each with members on every node.
    pub groups: usize,
    /// Members per group.
    pub group_size: usize,
    /// Senders per group (consecutive members, so on different nodes).
    pub group_senders: usize,
}

/// Which clients chat with which: client indices, client i on node i % n.
#[derive(Debug, PartialEq)]
struct Layout {
    cross_pairs: Vec<(usize, usize)>,
    same_node_pairs: Vec<(usize, usize)>,
    groups: Vec<Vec<usize>>,
    clients: usize,
}

fn layout(nodes: usize, shape: &Shape) -> Layout {
    let n = nodes.max(1);
    // Neighbours (2p, 2p + 1) sit on different nodes whenever n > 1.
    let cross_pairs: Vec<_> = (0..shape.cross_pairs).map(|p| (2 * p, 2 * p + 1)).collect();
    // Blocks of 2n clients: client j of a block pairs with client j + n.
    let base = 2 * shape.cross_pairs;
    let blocks = shape.same_node_pairs.div_ceil(n);
    let same_node_pairs = (0..blocks)
        .flat_map(|b| (0..n).map(move |j| (base + 2 * n * b + j, base + 2 * n * b + j + n)))
        .collect();
    let base = base + 2 * n * blocks;
    let groups = (0..shape.groups)
        .map(|g| (base + g * shape.group_size..base + (g + 1) * shape.group_size).collect())
        .collect();
    Layout {
        cross_pairs,
        same_node_pairs,
        groups,
        clients: base + shape.groups * shape.group_size,
    }
}

/// Deliveries from senders on one side (this node, or another node).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// Deliveries with a latency sample (the sender's own copy excluded).
    pub deliveries: usize,
    /// Send (just before the request) to delivery (event decoded).
    pub latency: Latency,
}

/// What the cluster scenario measured and verified.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterReport {
    /// Totals over all nodes; `server_cpu_secs` is summed over all their pids
    /// and `latency` covers every delivery, the sender's own copy included.
    #[serde(flatten)]
    pub report: Report,
    /// Number of nodes.
    pub nodes: usize,
    /// Cross-node 1:1 pairs.
    pub cross_node_pairs: usize,
    /// Same-node 1:1 pairs.
    pub same_node_pairs: usize,
    /// Groups and their size.
    pub groups: usize,
    /// Members per group.
    pub group_size: usize,
    /// Deliveries per second of the nodes' CPU time (all pids together).
    pub deliveries_per_server_cpu_sec: Option<f64>,
    /// Deliveries whose sender sat on another node than the receiver.
    pub cross_node: Side,
    /// Deliveries whose sender sat on the receiver's node.
    pub same_node: Side,
    /// Deliveries that arrived after a later message of their conversation
    /// sent from another node. Not a failure: each node keeps its own order,
    /// but the live events of two nodes writing one conversation may
    /// interleave, and a client then fills the gap from the store (the SDK's
    /// `gap_fills`). Reordering among one node's messages is a failure
    /// (`out_of_order`).
    pub interleaved_across_nodes: u64,
}

impl ClusterReport {
    /// True when the verification found nothing wrong.
    pub fn verified(&self) -> bool {
        self.report.verified()
    }
}

/// Runs `shape` over `nodes` (their pids, for CPU time, in `server_pids`):
/// registers the users, connects client i to node i % n, opens the
/// conversations, drives them with `load` and verifies every delivery.
pub async fn cluster(
    nodes: &[Target],
    server_pids: &[u32],
    shape: Shape,
    load: Load,
) -> anyhow::Result<ClusterReport> {
    if nodes.is_empty() {
        bail!("need at least one node");
    }
    if shape.groups > 0 && (shape.group_senders == 0 || shape.group_senders > shape.group_size) {
        bail!("need 1 <= group senders <= group size");
    }
    let n = nodes.len();
    let plan = layout(n, &shape);
    if plan.clients == 0 {
        bail!("nothing to run: no pairs and no groups");
    }
    // Setup is not measured: every user is registered on the first node
    // (the nodes share the store).
    let tokens = scenario::register_users(nodes[0].addr, plan.clients).await?;
    let user_nodes: Arc<HashMap<u64, usize>> = Arc::new(
        tokens
            .iter()
            .enumerate()
            .map(|(i, (user, _))| (*user, i % n))
            .collect(),
    );
    let clock = Clock(Instant::now());
    let (conns, inboxes) = scenario::connect_spread(nodes, &tokens, clock, |i| {
        Inbox::routed(Route {
            node: i % n,
            user: tokens[i].0,
            user_nodes: user_nodes.clone(),
        })
    })
    .await?;
    let pairs = plan.cross_pairs.iter().chain(&plan.same_node_pairs).copied();
    let mut streams = scenario::pair_streams(&conns, pairs).await?;
    for (g, members) in plan.groups.iter().enumerate() {
        let ids = members.iter().map(|&m| conns[m].user_id).collect();
        let conversation_id = conns[members[0]]
            .create_group(&format!("cluster-{g}"), ids)
            .await?;
        for &sender in members.iter().take(shape.group_senders) {
            streams.push(Stream {
                sender,
                conversation: v1::send_message::Target::ConversationId(conversation_id),
                conversation_id,
                members: members.clone(),
            });
        }
    }
    let report = scenario::drive(
        "cluster",
        server_pids,
        Arc::new(conns),
        inboxes.clone(),
        streams,
        clock,
        load,
    )
    .await?;
    let side = |locality| {
        let samples: Vec<u64> = inboxes.iter().flat_map(|i| i.take_latencies(locality)).collect();
        Side {
            deliveries: samples.len(),
            latency: Latency::of(samples),
        }
    };
    Ok(ClusterReport {
        nodes: n,
        cross_node_pairs: plan.cross_pairs.len(),
        same_node_pairs: plan.same_node_pairs.len(),
        groups: plan.groups.len(),
        group_size: shape.group_size,
        deliveries_per_server_cpu_sec: report
            .server_cpu_secs
            .filter(|&cpu| cpu > 0.0)
            .map(|cpu| report.deliveries as f64 / cpu),
        interleaved_across_nodes: inboxes.iter().map(|i| i.interleaved()).sum(),
        cross_node: side(Locality::CrossNode),
        same_node: side(Locality::SameNode),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_puts_each_kind_of_pair_where_it_belongs() {
        let shape = Shape {
            cross_pairs: 4,
            same_node_pairs: 4,
            groups: 2,
            group_size: 5,
            group_senders: 2,
        };
        let plan = layout(3, &shape);
        let node = |i: usize| i % 3;
        assert!(plan.cross_pairs.iter().all(|&(a, b)| node(a) != node(b)));
        assert_eq!(plan.same_node_pairs.len(), 6, "rounded up to a multiple of 3");
        assert!(plan.same_node_pairs.iter().all(|&(a, b)| node(a) == node(b)));
        assert!(plan.groups.iter().all(|g| g.len() == 5));
        let mut all: Vec<usize> = plan
            .cross_pairs
            .iter()
            .chain(&plan.same_node_pairs)
            .flat_map(|&(a, b)| [a, b])
            .chain(plan.groups.iter().flatten().copied())
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..plan.clients).collect::<Vec<_>>(),
            "each client used once"
        );
        // One node: everything sits on it, nothing is left out.
        let one = layout(1, &shape);
        assert_eq!(one.same_node_pairs.len(), 4);
        assert_eq!(one.clients, 8 + 8 + 10);
    }
}
