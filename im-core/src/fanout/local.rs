//! [`LocalFanOut`]: the fan-out of nodes in one process.

use super::{Envelope, FanOut, FanOutHandler};
use crate::error::Result;
use async_trait::async_trait;
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What several [`LocalFanOut`]s share: the nodes of one process (tests,
/// examples, several engines in one service).
#[derive(Default)]
pub struct LocalBus {
    /// Subscribers, each with the id of the instance it subscribed through.
    subscribers: RwLock<Vec<(u64, Arc<dyn FanOutHandler>)>>,
    next_instance: AtomicU64,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("subscribers", &self.subscribers.read().len())
            .finish()
    }
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// In-process fan-out. Alone (the default of a single node) it has nobody to
/// reach and costs nothing; several on one [`LocalBus`] behave like nodes on
/// a broker: each envelope crosses as bytes (so what works here survives a
/// real wire), synchronously on the publishing task, so the publish order is
/// the delivery order.
#[derive(Debug)]
pub struct LocalFanOut {
    bus: Arc<LocalBus>,
    instance: u64,
}

impl Default for LocalFanOut {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalFanOut {
    /// A node alone on its own bus.
    pub fn new() -> Self {
        Self::on(&LocalBus::new())
    }

    /// A node on a shared bus.
    pub fn on(bus: &Arc<LocalBus>) -> Self {
        Self {
            bus: bus.clone(),
            instance: bus.next_instance.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl FanOut for LocalFanOut {
    fn publish(&self, envelope: &Envelope) {
        let subscribers = self.bus.subscribers.read();
        let mut others = subscribers.iter().filter(|(i, _)| *i != self.instance).peekable();
        if others.peek().is_none() {
            return;
        }
        let bytes = envelope.to_bytes();
        for (_, handler) in others {
            match Envelope::from_bytes(&bytes) {
                Ok(copy) => handler.deliver(copy),
                Err(e) => tracing::error!(error = %e, "fan-out: envelope does not survive its own encoding"),
            }
        }
    }

    fn subscribe(&self, handler: Arc<dyn FanOutHandler>) {
        self.bus.subscribers.write().push((self.instance, handler));
    }

    fn has_other_nodes(&self) -> bool {
        self.bus
            .subscribers
            .read()
            .iter()
            .any(|(i, _)| *i != self.instance)
    }

    async fn close(&self) -> Result<()> {
        self.bus.subscribers.write().retain(|(i, _)| *i != self.instance);
        Ok(())
    }
}
