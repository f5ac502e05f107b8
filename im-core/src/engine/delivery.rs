//! How events leave the engine, and how other nodes' events reach this
//! node's sessions.
//!
//! Every event goes out as an [`Envelope`]: this node's sessions are served
//! at once ([`Engine::dispatch`]), then the envelope goes to the fan-out for
//! the other nodes. Stored messages are queued by the store's commit hook
//! ([`Engine::dispatch_on_commit`]), which runs in commit order per
//! conversation, and delivered from the [`Outbox`](super::outbox) in that
//! order: live events leave in sequence order however many senders race.
//! Envelopes from other nodes are resolved against this node's member lists
//! and delivered in partition order ([`RemoteEvents`]).

use super::members::MemberDirectory;
use super::outbox::{Committed, drain_later};
use super::send::{deliver_locally, runtime_of, send};
use super::{Engine, Inner};
use crate::event::SharedEvent;
use crate::fanout::{Audience, Envelope, FanOutHandler, Payload, Target};
use crate::model::{Appended, ChangeHook, Changed, CommitHook, ConversationId, Hidden, HideHook, UserId};
use im_protocol::v1;
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::mpsc;

/// Up to this many members, an envelope names its recipients; above, each
/// node resolves the conversation's members itself (a record for a room of
/// 10,000 does not carry 10,000 ids).
const LISTED_AUDIENCE: usize = 32;

impl Engine {
    /// An envelope made on this node.
    pub(super) fn envelope(
        &self,
        conversation_id: ConversationId,
        audience: Audience,
        member_version: u64,
        kind: v1::event::Kind,
    ) -> Envelope {
        Envelope {
            conversation_id,
            origin_node: self.inner.node_id.clone(),
            audience,
            member_version,
            payload: Payload::Event(SharedEvent::new(kind)),
        }
    }

    /// Serves this node's sessions, then publishes for the other nodes.
    /// `members` resolves a [`Target::Members`] audience here (the caller
    /// has the list at the envelope's version).
    pub(super) fn dispatch(&self, envelope: &Envelope, members: Option<&[UserId]>) {
        send(&self.inner, envelope, members);
    }

    /// Relays an ephemeral event (typing, a receipt) to a conversation's
    /// members as this node knows them now, leaving out `except_user`.
    /// `except_users` (ascending) are left out too: those who block the
    /// actor.
    pub(super) fn relay(
        &self,
        conversation: ConversationId,
        members: &Arc<[UserId]>,
        except_user: Option<UserId>,
        except_users: Vec<UserId>,
        kind: v1::event::Kind,
    ) {
        let mut audience = audience_of(members);
        audience.except.user = except_user;
        audience.except.users = except_users;
        let envelope = self.envelope(conversation, audience, 0, kind);
        self.dispatch(&envelope, Some(members));
    }

    /// The hook that dispatches a stored message right after its commit, in
    /// sequence order: to the members after the change but those it is
    /// hidden from (they block its sender), and to a user who just left
    /// (their other devices must learn it).
    pub(super) fn dispatch_on_commit(&self, leaver: Option<UserId>) -> CommitHook {
        let engine = self.clone();
        Box::new(move |appended: &Appended| engine.dispatch_appended(appended, leaver))
    }

    /// Runs in the commit hook: records the member list and queues the
    /// message in the outbox, in commit order. The sending task delivers it
    /// (see [`outbox`](super::outbox)); if no send is in progress in its
    /// slot, a task does.
    fn dispatch_appended(&self, appended: &Appended, leaver: Option<UserId>) {
        let conversation = appended.message.conversation_id;
        let kind = v1::event::Kind::Message(appended.message.clone());
        let mut envelope =
            self.members_envelope(conversation, &appended.members, appended.member_version, kind);
        envelope.audience.except.users = appended.hidden_from.clone();
        let to_leaver = leaver.map(|user| Envelope {
            audience: Audience::users(vec![user]),
            ..envelope.clone()
        });
        self.queue(Committed {
            envelope,
            members: appended.members.clone(),
            to_leaver,
        });
    }

    /// The hook that dispatches a changed message (edit, recall, reaction)
    /// right after its commit, in order with the conversation's appends:
    /// its new state to the members.
    pub(super) fn dispatch_on_change(&self) -> ChangeHook {
        let engine = self.clone();
        Box::new(move |changed: &Changed| {
            let conversation = changed.message.conversation_id;
            let kind = v1::event::Kind::Message(changed.message.clone());
            let mut envelope =
                engine.members_envelope(conversation, &changed.members, changed.member_version, kind);
            envelope.audience.except.users = changed.hidden_from.clone();
            engine.queue(Committed {
                envelope,
                members: changed.members.clone(),
                to_leaver: None,
            });
        })
    }

    /// The hook that tells a member's devices, right after the commit, what
    /// they deleted for themselves (nobody else hears of it).
    pub(super) fn dispatch_on_hide(&self) -> HideHook {
        let engine = self.clone();
        Box::new(move |hidden: &Hidden| {
            let kind = v1::event::Kind::Deleted(v1::MessagesDeleted {
                conversation_id: hidden.conversation_id,
                message_ids: hidden.message_ids.clone(),
                private_version: hidden.private_version,
            });
            let audience = Audience::users(vec![hidden.user_id]);
            engine.queue(Committed {
                envelope: engine.envelope(hidden.conversation_id, audience, 0, kind),
                members: Arc::from(Vec::new()),
                to_leaver: None,
            });
        })
    }

    /// An event for a conversation's members at a member list version,
    /// which this node remembers.
    fn members_envelope(
        &self,
        conversation: ConversationId,
        members: &Arc<[UserId]>,
        member_version: u64,
        kind: v1::event::Kind,
    ) -> Envelope {
        self.inner
            .members
            .remember(conversation, member_version, members.clone());
        self.envelope(conversation, audience_of(members), member_version, kind)
    }

    /// Queues a committed event in its conversation's outbox slot, in
    /// commit order; a task delivers it if no send is in progress there.
    fn queue(&self, committed: Committed) {
        let conversation = committed.envelope.conversation_id;
        if self.inner.outbox.push(conversation, committed) {
            drain_later(&self.inner, conversation);
        }
    }
}

/// The members of a conversation as an audience: listed by id when few,
/// else resolved by each node.
fn audience_of(members: &Arc<[UserId]>) -> Audience {
    if members.len() <= LISTED_AUDIENCE {
        Audience::users(members.clone())
    } else {
        Audience::members()
    }
}

/// Receives the envelopes other nodes publish. Envelopes are spread over a
/// few tasks by partition key, so each partition keeps its order while a
/// member list is read from the store for one of them.
pub(super) struct RemoteEvents {
    inner: Weak<Inner>,
    /// Started with the first envelope.
    shards: OnceLock<Vec<mpsc::UnboundedSender<Envelope>>>,
}

impl RemoteEvents {
    pub(super) fn new(inner: Weak<Inner>) -> Self {
        Self {
            inner,
            shards: OnceLock::new(),
        }
    }

    fn start(&self) -> Vec<mpsc::UnboundedSender<Envelope>> {
        let Some(runtime) = self.inner.upgrade().and_then(|inner| runtime_of(&inner)) else {
            tracing::error!(
                "fan-out: build the engine inside a tokio runtime to receive other nodes' events"
            );
            return Vec::new();
        };
        let n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 16);
        (0..n)
            .map(|_| {
                let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
                let weak = self.inner.clone();
                runtime.spawn(async move {
                    while let Some(envelope) = rx.recv().await {
                        let Some(inner) = weak.upgrade() else { break };
                        deliver_remote(&inner, &envelope).await;
                    }
                });
                tx
            })
            .collect()
    }
}

impl FanOutHandler for RemoteEvents {
    fn deliver(&self, envelope: Envelope) {
        let shards = self.shards.get_or_init(|| self.start());
        if shards.is_empty() {
            return;
        }
        let shard = (envelope.partition_key() % shards.len() as u64) as usize;
        let _ = shards[shard].send(envelope);
    }

    fn resumed(&self) {
        let Some(inner) = self.inner.upgrade() else { return };
        // Invalidations of blocks may have been lost with the rest.
        inner.blocks.clear();
        let sessions = inner.sessions.len();
        tracing::info!(sessions, "fan-out resumed: asking this node's clients to sync");
        let hint = Arc::new(SharedEvent::new(v1::event::Kind::Resync(v1::ResyncHint {
            reason: "live events between server nodes were interrupted".into(),
        })));
        inner.sessions.deliver_to_all(&hint);
    }
}

async fn deliver_remote(inner: &Arc<Inner>, envelope: &Envelope) {
    if envelope.origin_node == inner.node_id {
        return; // served when it was made
    }
    if let Payload::Call(relay) = &envelope.payload {
        let engine = Engine { inner: inner.clone() };
        engine.receive_call_relay(relay.clone(), envelope.origin_node.clone());
        return;
    }
    if envelope.audience.to == Target::Nodes {
        // A block changed: forget the two users' blocks (no session gets it).
        if let Some(v1::event::Kind::Contact(contact)) = envelope.event().and_then(|e| e.kind()) {
            Engine { inner: inner.clone() }.on_block_envelope(contact);
        }
        return;
    }
    if envelope.audience.to != Target::Members {
        deliver_locally(inner, envelope, None);
        return;
    }
    // Ephemeral events (typing, receipts) take any recent list; stored
    // messages the list of their version.
    let ephemeral = !matches!(
        envelope.event().and_then(|e| e.kind()),
        Some(v1::event::Kind::Message(_))
    );
    if ephemeral && let Some(members) = inner.members.recent(envelope.conversation_id) {
        deliver_locally(inner, envelope, Some(&members));
        return;
    }
    match MemberDirectory::resolve(inner, envelope.conversation_id, envelope.member_version).await {
        Ok(Some(members)) => deliver_locally(inner, envelope, Some(&members)),
        Ok(None) => {} // the conversation is gone
        Err(e) => tracing::warn!(
            conversation = envelope.conversation_id,
            error = %e,
            "fan-out: no member list; clients recover the event on sync"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{LocalBus, LocalFanOut};
    use crate::model::{DeviceAddress, DeviceId};
    use crate::sessions::{Outbound, SessionEvents};
    use crate::store::{MemoryStore, Store};
    use std::time::Duration;

    fn node(store: &Arc<dyn Store>, bus: &Arc<LocalBus>) -> Engine {
        Engine::builder()
            .store(store.clone())
            .fanout(Arc::new(LocalFanOut::on(bus)))
            .build()
    }

    fn typing() -> v1::event::Kind {
        v1::event::Kind::Typing(v1::TypingEvent {
            conversation_id: 0,
            user_id: 9,
            typing: true,
        })
    }

    /// How many events arrive within a moment (remote ones cross a task).
    async fn count(rx: &mut SessionEvents) -> usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::iter::from_fn(|| rx.try_recv())
            .filter(
                |o| matches!(o, Outbound::Event(e) if matches!(e.kind(), Some(v1::event::Kind::Typing(_)))),
            )
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_addressed_to_one_device_reaches_that_device_only_on_every_node() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let bus = LocalBus::new();
        let (a, b) = (node(&store, &bus), node(&store, &bus));
        let phone = DeviceId::new("phone");
        let mut phone_on_a = a.connect(1, phone.clone()).await;
        let mut phone_on_b = b.connect(1, phone.clone()).await;
        let mut laptop_on_b = b.connect(1, "laptop".into()).await;
        let mut other_user_phone = b.connect(2, phone.clone()).await;
        let to_phone = DeviceAddress {
            user_id: 1,
            device: phone.clone(),
        };
        a.dispatch(
            &a.envelope(0, Audience::device(to_phone.clone()), 0, typing()),
            None,
        );
        assert_eq!(
            [
                count(&mut phone_on_a).await,
                count(&mut phone_on_b).await,
                count(&mut laptop_on_b).await,
                count(&mut other_user_phone).await
            ],
            [1, 1, 0, 0]
        );
        // All of two users' devices but one.
        let all_but_phone = Audience::users(vec![1, 2]).except_device(to_phone);
        b.dispatch(&b.envelope(0, all_but_phone, 0, typing()), None);
        assert_eq!(
            [
                count(&mut phone_on_a).await,
                count(&mut phone_on_b).await,
                count(&mut laptop_on_b).await,
                count(&mut other_user_phone).await
            ],
            [0, 0, 1, 1]
        );
    }
}
