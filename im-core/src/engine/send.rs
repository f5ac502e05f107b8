//! The last step of every event: this node's sessions, then the fan-out
//! for the other nodes.

use super::Inner;
use crate::fanout::{Envelope, Target};
use crate::model::UserId;

/// Serves this node's sessions, then publishes for the other nodes.
pub(super) fn send(inner: &Inner, envelope: &Envelope, members: Option<&[UserId]>) {
    deliver_locally(inner, envelope, members);
    inner.fanout.publish(envelope);
}

/// Queues an envelope's event for the recipients connected to this node.
pub(super) fn deliver_locally(inner: &Inner, envelope: &Envelope, members: Option<&[UserId]>) {
    let Some(event) = envelope.event() else {
        return; // between nodes only
    };
    let except = &envelope.audience.except;
    match &envelope.audience.to {
        Target::Users(users) => inner.sessions.deliver_to_users(users, except, event),
        Target::Device(device) => inner.sessions.deliver_to_device(device, event),
        Target::Nodes => {}
        Target::Members => match members {
            Some(list) => inner.sessions.deliver_to_users(list, except, event),
            None => tracing::error!(
                conversation = envelope.conversation_id,
                "members audience without a member list"
            ),
        },
    }
}

/// The runtime to start work on: the one the engine was built in, else the
/// current one (none on a thread outside every runtime).
pub(super) fn runtime_of(inner: &Inner) -> Option<tokio::runtime::Handle> {
    inner
        .runtime
        .clone()
        .or_else(|| tokio::runtime::Handle::try_current().ok())
}
