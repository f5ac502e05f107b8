//! What the cluster backends (Redis, Kafka) share: records that start with
//! the publishing node instance's id, so a node skips its own, the handlers
//! a node's incoming envelopes go to, and routing by node.

use super::{Audience, Envelope, FanOutHandler, Target};
use crate::model::UserId;
use crate::presence::PresenceRegistry;
use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Where a node's events for listed users go: only to the nodes where those
/// users have sessions (see the docs of `RedisFanOut` and `KafkaFanOut`).
#[derive(Debug, Clone)]
pub struct Routing {
    /// This node, as the engine names it (`EngineBuilder::node_id`) and the
    /// presence registry knows it.
    pub node: String,
    /// The registry every node of the cluster shares.
    pub directory: Arc<dyn PresenceRegistry>,
}

/// Most listed users an envelope may have to be routed; more go to every node.
pub(super) const ROUTED_USERS: usize = 64;
/// Most envelopes looked up and published in one round trip.
pub(super) const PUBLISH_BATCH: usize = 128;

/// An envelope on its way out: its record, and the users whose nodes it
/// goes to (`None`: every node).
pub(super) struct Outgoing {
    pub(super) record: Bytes,
    /// `Envelope::partition_key`.
    pub(super) key: u64,
    pub(super) users: Option<Vec<UserId>>,
}

impl Outgoing {
    /// `envelope` recorded by `origin`; `routed`: whether the backend
    /// routes by node (else the users are not looked up).
    pub(super) fn new(origin: &Origin, envelope: &Envelope, routed: bool) -> Self {
        Self {
            record: Bytes::from(origin.record(envelope)),
            key: envelope.partition_key(),
            users: routed.then(|| routed_users(&envelope.audience)).flatten(),
        }
    }
}

/// The users whose nodes an envelope for `audience` goes to, if it can be routed.
fn routed_users(audience: &Audience) -> Option<Vec<UserId>> {
    match &audience.to {
        Target::Users(users) if users.len() <= ROUTED_USERS => Some(users.to_vec()),
        Target::Device(device) => Some(vec![device.user_id]),
        _ => None,
    }
}

/// For each envelope of a batch: the other nodes it goes to, or `None` for
/// every node. One look-up for the whole batch.
pub(super) async fn destinations(routing: Option<&Routing>, batch: &[Outgoing]) -> Vec<Option<Vec<String>>> {
    let Some(routing) = routing else {
        return vec![None; batch.len()];
    };
    let mut users: Vec<UserId> = batch
        .iter()
        .filter_map(|o| o.users.as_ref())
        .flatten()
        .copied()
        .collect();
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return vec![None; batch.len()];
    }
    let pairs = match routing.directory.user_nodes(&users).await {
        Ok(Some(pairs)) => pairs,
        Ok(None) => return vec![None; batch.len()],
        Err(e) => {
            tracing::debug!(error = %e, "fan-out: routing look-up failed; sending to every node");
            return vec![None; batch.len()];
        }
    };
    let mut nodes_of: HashMap<UserId, Vec<&str>> = HashMap::new();
    for (user, node) in &pairs {
        if *node != routing.node {
            nodes_of.entry(*user).or_default().push(node);
        }
    }
    batch
        .iter()
        .map(|out| {
            let users = out.users.as_ref()?;
            let nodes: BTreeSet<&str> = users
                .iter()
                .filter_map(|u| nodes_of.get(u))
                .flatten()
                .copied()
                .collect();
            Some(nodes.into_iter().map(str::to_owned).collect())
        })
        .collect()
}

/// A node instance's random id, the first 16 bytes of each of its records.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Origin([u8; 16]);

impl Origin {
    pub(super) fn random() -> Self {
        let mut id = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut id);
        Self(id)
    }

    pub(super) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The record for `envelope`: this origin, then the encoded envelope.
    pub(super) fn record(&self, envelope: &Envelope) -> Vec<u8> {
        let body = envelope.to_proto();
        let mut record = Vec::with_capacity(16 + prost::Message::encoded_len(&body));
        record.extend_from_slice(&self.0);
        prost::Message::encode_raw(&body, &mut record);
        record
    }

    /// The record that tells the other nodes this one dropped envelopes
    /// (publishing failed for a while) and publishes again: its origin and
    /// nothing else. Their handlers hear `resumed`, so their clients sync.
    pub(super) fn resume_record(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// Hands a record that another instance made to the subscribers; skips
    /// this instance's own, turns a resume record into `resumed`, and logs
    /// unreadable ones.
    pub(super) fn receive(&self, record: &[u8], subscribers: &Subscribers, backend: &str) {
        let Some((origin, body)) = record.split_at_checked(16) else {
            tracing::warn!(backend, "fan-out: a record too short to carry an envelope");
            return;
        };
        if origin == self.0 {
            return;
        }
        if body.is_empty() {
            tracing::info!(
                backend,
                "fan-out: another node dropped envelopes while it could not publish"
            );
            subscribers.resumed();
            return;
        }
        match Envelope::from_bytes(body) {
            Ok(envelope) => subscribers.deliver(envelope),
            Err(e) => tracing::warn!(backend, error = %e, "fan-out: unreadable envelope"),
        }
    }
}

/// The handlers subscribed to one backend instance.
#[derive(Default)]
pub(super) struct Subscribers(RwLock<Vec<Arc<dyn FanOutHandler>>>);

impl Subscribers {
    pub(super) fn add(&self, handler: Arc<dyn FanOutHandler>) {
        self.0.write().push(handler);
    }

    pub(super) fn clear(&self) {
        self.0.write().clear();
    }

    fn deliver(&self, envelope: Envelope) {
        for handler in self.0.read().iter() {
            handler.deliver(envelope.clone());
        }
    }

    /// Tells every handler the bus carries envelopes again after an outage.
    pub(super) fn resumed(&self) {
        for handler in self.0.read().iter() {
            handler.resumed();
        }
    }
}
