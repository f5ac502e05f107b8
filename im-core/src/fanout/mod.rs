//! The [`FanOut`] trait: carries [`Envelope`]s from the node that made them
//! to every other node, and [`LocalFanOut`], its in-process implementation.
//!
//! A node serves its own sessions itself, before it publishes (the engine's
//! sending path does both); the fan-out only reaches the *other* nodes, so a
//! single node never pays for a bus.
//!
//! # Guarantees every backend gives (checked by the conformance suite)
//! * **Carrier, not store**: at most once. Whatever it drops, clients recover
//!   from the [`Store`](crate::store::Store) on sync.
//! * **Other nodes only**: an envelope published through one instance
//!   reaches the subscribers of every other instance on the bus, once, and
//!   never comes back to its own.
//! * **Order per partition**: envelopes with the same
//!   [`partition_key`](Envelope::partition_key) published by one node reach
//!   every other node in the order they were published. The engine publishes
//!   a conversation's events in sequence order, so order holds end to end.
//! * **Publishing never waits for a remote broker**: [`FanOut::publish`]
//!   queues and returns; a client's ack is never held up by the bus. When the
//!   bus cannot take an envelope (broker unreachable, queue full) the backend
//!   drops it and logs it; the store still has the data and clients recover
//!   it on sync.
//! * **Says when it was interrupted**: once envelopes flow again after an
//!   outage, a backend calls [`FanOutHandler::resumed`], so the node's
//!   clients sync what they missed instead of waiting for the next event.

use crate::error::Result;
use async_trait::async_trait;
use std::sync::Arc;

#[cfg(any(feature = "redis", feature = "kafka"))]
mod cluster_wire;
mod envelope;
#[cfg(feature = "kafka")]
mod kafka_fanout;
mod local;
#[cfg(feature = "redis")]
mod redis_fanout;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(all(feature = "kafka", any(test, feature = "testing")))]
pub mod kafka_testing;

#[cfg(any(feature = "redis", feature = "kafka"))]
pub use cluster_wire::Routing;
pub use envelope::{Audience, Envelope, EnvelopeError, Payload, Target};
#[cfg(feature = "kafka")]
pub use kafka_fanout::{KafkaFanOut, KafkaFanOutConfig};
pub use local::{LocalBus, LocalFanOut};
#[cfg(feature = "redis")]
pub use redis_fanout::{RedisFanOut, RedisFanOutConfig};

/// Receives the envelopes other nodes published (a node's engine).
pub trait FanOutHandler: Send + Sync + 'static {
    /// Takes one envelope. Must not block: queue the work and return.
    fn deliver(&self, envelope: Envelope);
    /// The bus was interrupted (broker outage, lost subscription) and
    /// carries envelopes again: what other nodes published meanwhile may be
    /// lost. The engine tells its sessions to sync. Must not block.
    fn resumed(&self) {}
}

/// Carries envelopes between nodes. See the module docs for the guarantees.
#[async_trait]
pub trait FanOut: Send + Sync + std::fmt::Debug + 'static {
    /// Hands an envelope to the bus for every other node; never waits for a
    /// remote broker.
    fn publish(&self, envelope: &Envelope);
    /// Adds a subscriber: it gets every envelope other nodes publish from now on.
    fn subscribe(&self, handler: Arc<dyn FanOutHandler>);
    /// Whether other nodes may be listening (a broker; a shared bus with
    /// other instances). A node alone answers a request for another node's
    /// state (a call another node keeps) at once instead of asking the bus.
    fn has_other_nodes(&self) -> bool {
        true
    }
    /// `Ok` while envelopes can reach the other nodes and theirs arrive;
    /// `Unavailable` during a broker outage (sends are still stored and
    /// acked; live delivery between nodes resumes when it ends).
    async fn health(&self) -> Result<()> {
        Ok(())
    }
    /// Stops delivering and flushes what is queued; called at shutdown.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
