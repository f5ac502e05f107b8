//! [`Envelope`]: one event and who it is for, as the fan-out carries it
//! between nodes (the protobuf `FanOutEnvelope`, version 1).

use crate::event::SharedEvent;
use crate::model::{ConversationId, DeviceAddress, DeviceId, UserId};
use crate::sessions::Except;
use bytes::Bytes;
use im_protocol::v1;
use prost::Message as _;
use std::sync::Arc;

/// Who gets an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every member of the envelope's conversation, as the receiving node
    /// knows them (at the envelope's `member_version`).
    Members,
    /// These users, every device.
    Users(Arc<[UserId]>),
    /// Exactly one device.
    Device(DeviceAddress),
    /// Every node, and no session: call signalling between nodes
    /// ([`Payload::Call`]).
    Nodes,
}

/// The recipients of an envelope: a target, minus what is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// Who.
    pub to: Target,
    /// Left out.
    pub except: Except,
}

impl Audience {
    /// Every device of these users.
    pub fn users(users: impl Into<Arc<[UserId]>>) -> Self {
        Self {
            to: Target::Users(users.into()),
            except: Except::default(),
        }
    }

    /// Every member of the envelope's conversation.
    pub fn members() -> Self {
        Self {
            to: Target::Members,
            except: Except::default(),
        }
    }

    /// Every node, no session.
    pub fn nodes() -> Self {
        Self {
            to: Target::Nodes,
            except: Except::default(),
        }
    }

    /// One device.
    pub fn device(address: DeviceAddress) -> Self {
        Self {
            to: Target::Device(address),
            except: Except::default(),
        }
    }

    /// The same audience without one user's devices.
    #[must_use]
    pub fn except_user(mut self, user: UserId) -> Self {
        self.except.user = Some(user);
        self
    }

    /// The same audience without one device.
    #[must_use]
    pub fn except_device(mut self, device: DeviceAddress) -> Self {
        self.except.device = Some(device);
        self
    }

    /// The same audience without these users' devices.
    #[must_use]
    pub fn except_users(mut self, mut users: Vec<UserId>) -> Self {
        users.sort_unstable();
        users.dedup();
        self.except.users = users;
        self
    }
}

/// One event on its way to the sessions of every node.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The conversation the event belongs to: the partition key (0 for none).
    pub conversation_id: ConversationId,
    /// The node that made it.
    pub origin_node: Arc<str>,
    /// Who gets it.
    pub audience: Audience,
    /// For [`Target::Members`]: the member list version the event was made
    /// at (0: any recent list will do, for ephemeral events).
    pub member_version: u64,
    /// What it carries.
    pub payload: Payload,
}

/// What an envelope carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// An event for sessions, encoded at most once per wire format on each node.
    Event(Arc<SharedEvent>),
    /// Call signalling between nodes (a request for the node that keeps a
    /// call, its answer, a device that went away); no session gets it.
    Call(Arc<v1::CallRelay>),
}

/// An envelope that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not a protobuf `FanOutEnvelope`.
    #[error("undecodable envelope: {0}")]
    Undecodable(String),
    /// Written by a newer node in a format this one does not know.
    #[error("envelope version {0} is not supported (this node reads version {v})", v = Envelope::VERSION)]
    UnsupportedVersion(u32),
    /// A required part is missing.
    #[error("envelope without {0}")]
    Incomplete(&'static str),
}

impl Envelope {
    /// The event it carries, if it carries one.
    pub fn event(&self) -> Option<&Arc<SharedEvent>> {
        match &self.payload {
            Payload::Event(event) => Some(event),
            Payload::Call(_) => None,
        }
    }

    /// The envelope format this node writes and reads.
    pub const VERSION: u32 = 1;

    /// Orders envelopes: those with the same key keep their order end to
    /// end. The conversation, or for events of no conversation the user they
    /// concern (so presence of one user keeps its order too).
    pub fn partition_key(&self) -> u64 {
        if self.conversation_id != 0 {
            return self.conversation_id;
        }
        match (&self.audience.to, &self.payload) {
            (Target::Device(d), _) => d.user_id,
            // A call's signalling keeps its order between nodes.
            (_, Payload::Call(relay)) => relay_call(relay),
            (_, Payload::Event(event)) => match event.kind() {
                Some(v1::event::Kind::Presence(p)) => p.user_id,
                _ => 0,
            },
        }
    }

    /// The protobuf encoding.
    pub fn to_bytes(&self) -> Bytes {
        self.to_proto().encode_to_vec().into()
    }

    /// The protobuf message (to encode after a prefix of a backend's own).
    pub(crate) fn to_proto(&self) -> v1::FanOutEnvelope {
        let device = |d: &DeviceAddress| v1::DeviceAddress {
            user_id: d.user_id,
            device_id: d.device.as_str().to_owned(),
        };
        let to = match &self.audience.to {
            Target::Members => v1::audience::To::Members(v1::Empty {}),
            Target::Users(ids) => v1::audience::To::Users(v1::UserIds { ids: ids.to_vec() }),
            Target::Device(d) => v1::audience::To::Device(device(d)),
            Target::Nodes => v1::audience::To::Nodes(v1::Empty {}),
        };
        let (event, call) = match &self.payload {
            Payload::Event(event) => match &event.frame().body {
                Some(v1::server_frame::Body::Event(e)) => (Some(e.clone()), None),
                _ => (None, None),
            },
            Payload::Call(relay) => (None, Some((**relay).clone())),
        };
        v1::FanOutEnvelope {
            version: Self::VERSION,
            conversation_id: self.conversation_id,
            origin_node: self.origin_node.to_string(),
            audience: Some(v1::Audience {
                to: Some(to),
                except_user: self.audience.except.user.unwrap_or(0),
                except_device: self.audience.except.device.as_ref().map(device),
                except_users: self.audience.except.users.clone(),
            }),
            event,
            member_version: self.member_version,
            call,
        }
    }

    /// Reads an envelope written by [`Envelope::to_bytes`] on any node.
    pub fn from_bytes(data: &[u8]) -> Result<Self, EnvelopeError> {
        let e = v1::FanOutEnvelope::decode(data).map_err(|e| EnvelopeError::Undecodable(e.to_string()))?;
        if e.version != Self::VERSION {
            return Err(EnvelopeError::UnsupportedVersion(e.version));
        }
        let audience = e.audience.ok_or(EnvelopeError::Incomplete("audience"))?;
        let device = |d: v1::DeviceAddress| DeviceAddress {
            user_id: d.user_id,
            device: DeviceId::new(&d.device_id),
        };
        let to = match audience.to.ok_or(EnvelopeError::Incomplete("target"))? {
            v1::audience::To::Members(_) => Target::Members,
            v1::audience::To::Users(u) => Target::Users(u.ids.into()),
            v1::audience::To::Device(d) => Target::Device(device(d)),
            v1::audience::To::Nodes(_) => Target::Nodes,
        };
        let payload = match (e.event.and_then(|ev| ev.kind), e.call) {
            (Some(kind), _) => Payload::Event(SharedEvent::new(kind)),
            (None, Some(relay)) if relay.kind.is_some() => Payload::Call(Arc::new(relay)),
            _ => return Err(EnvelopeError::Incomplete("event")),
        };
        Ok(Self {
            conversation_id: e.conversation_id,
            origin_node: e.origin_node.into(),
            audience: Audience {
                to,
                except: Except {
                    user: (audience.except_user != 0).then_some(audience.except_user),
                    device: audience.except_device.map(device),
                    users: {
                        let mut users = audience.except_users;
                        users.sort_unstable();
                        users
                    },
                },
            },
            member_version: e.member_version,
            payload,
        })
    }
}

/// The call a relay is about (its partition key).
fn relay_call(relay: &v1::CallRelay) -> u64 {
    match &relay.kind {
        Some(v1::call_relay::Kind::Command(c)) => c.call_id,
        Some(v1::call_relay::Kind::Device(d)) => d.call_id,
        Some(v1::call_relay::Kind::Reply(r)) => r.request,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_wire_and_refuses_other_versions() {
        let envelope = Envelope {
            conversation_id: 9,
            origin_node: "node-a".into(),
            audience: Audience::members()
                .except_user(3)
                .except_device(DeviceAddress {
                    user_id: 4,
                    device: DeviceId::new("phone"),
                })
                .except_users(vec![8, 5]),
            member_version: 12,
            payload: Payload::Event(SharedEvent::new(v1::event::Kind::Typing(v1::TypingEvent {
                conversation_id: 9,
                user_id: 3,
                typing: true,
            }))),
        };
        let back = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
        assert_eq!(back.conversation_id, 9);
        assert_eq!(&*back.origin_node, "node-a");
        assert_eq!(back.audience, envelope.audience);
        assert_eq!(back.member_version, 12);
        assert_eq!(back.event().unwrap().frame(), envelope.event().unwrap().frame());
        assert_eq!(back.partition_key(), 9);

        // Call signalling between nodes: every node, no session, keyed by call.
        let relay = v1::CallRelay {
            kind: Some(v1::call_relay::Kind::Device(v1::CallDevice {
                call_id: 77,
                user_id: 4,
                device_id: "phone".into(),
            })),
        };
        let between_nodes = Envelope {
            conversation_id: 0,
            origin_node: "node-a".into(),
            audience: Audience::nodes(),
            member_version: 0,
            payload: Payload::Call(Arc::new(relay.clone())),
        };
        let back = Envelope::from_bytes(&between_nodes.to_bytes()).unwrap();
        assert_eq!(back.audience.to, Target::Nodes);
        assert!(matches!(&back.payload, Payload::Call(r) if **r == relay));
        assert_eq!(back.partition_key(), 77);
        assert!(back.event().is_none());
        let mut empty = between_nodes.to_proto();
        empty.call = Some(v1::CallRelay { kind: None });
        assert_eq!(
            Envelope::from_bytes(&empty.encode_to_vec()).unwrap_err(),
            EnvelopeError::Incomplete("event")
        );

        let mut newer = v1::FanOutEnvelope::decode(&envelope.to_bytes()[..]).unwrap();
        newer.version = 2;
        assert_eq!(
            Envelope::from_bytes(&newer.encode_to_vec()).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
        assert!(matches!(
            Envelope::from_bytes(b"\xff\xff"),
            Err(EnvelopeError::Undecodable(_))
        ));
    }
}
