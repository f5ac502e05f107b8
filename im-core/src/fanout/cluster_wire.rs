//! What the cluster backends (Redis, Kafka) share: records that start with
//! the publishing node instance's id, so a node skips its own, and the
//! handlers a node's incoming envelopes go to.

use super::{Envelope, FanOutHandler};
use parking_lot::RwLock;
use std::sync::Arc;

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

    /// Hands a record that another instance made to the subscribers; skips
    /// this instance's own and logs unreadable ones.
    pub(super) fn receive(&self, record: &[u8], subscribers: &Subscribers, backend: &str) {
        let Some((origin, body)) = record.split_at_checked(16) else {
            tracing::warn!(backend, "fan-out: a record too short to carry an envelope");
            return;
        };
        if origin == self.0 {
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
