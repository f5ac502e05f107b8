//! [`Outbox`]: stored messages on their way to the sessions, in commit order.
//!
//! The store's commit hook runs right after each commit, in commit order per
//! conversation, possibly on a store writer thread: it only queues the
//! message here. The task that sent it delivers it when its append returns,
//! with every message committed before it that is still queued: one task at a
//! time drains a slot, in order, so live events leave in sequence order per
//! conversation while the fan-out work stays on the async workers and the
//! writer thread goes straight on to the next commit. A message whose sender
//! went away before its append returned (a dropped future) is drained by the
//! next sender of its slot, or by a task the hook starts when nobody is
//! sending there.

use super::{Inner, send};
use crate::fanout::Envelope;
use crate::model::{ConversationId, UserId};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Conversations share slots by id; order only matters within one.
const SLOTS: usize = 256;

/// A committed message and who gets it.
pub(super) struct Committed {
    pub(super) envelope: Envelope,
    /// The members at the message's member list version.
    pub(super) members: Arc<[UserId]>,
    /// The same event for a user who just left.
    pub(super) to_leaver: Option<Envelope>,
}

#[derive(Default)]
struct Slot {
    queue: Mutex<VecDeque<Committed>>,
    /// A task is delivering this slot's queue.
    draining: AtomicBool,
    /// Sends in progress in this slot: each drains when its append returns.
    senders: AtomicUsize,
}

/// The slots of committed messages; see the module docs.
pub(super) struct Outbox {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl Outbox {
    fn slot(&self, conversation: ConversationId) -> &Slot {
        &self.slots[(conversation % SLOTS as u64) as usize]
    }

    /// Queues a committed message (from the commit hook). True when no send
    /// is in progress in its slot, so the caller must see it drained.
    pub(super) fn push(&self, conversation: ConversationId, committed: Committed) -> bool {
        let slot = self.slot(conversation);
        slot.queue.lock().push_back(committed);
        slot.senders.load(Ordering::SeqCst) == 0
    }
}

/// Delivers everything queued in a conversation's slot, in order, unless
/// another task is at it (it then delivers what was queued meanwhile too).
pub(super) fn drain(inner: &Arc<Inner>, conversation: ConversationId) {
    let slot = inner.outbox.slot(conversation);
    loop {
        if slot
            .draining
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        let more = {
            // Cleared however this ends, a panicking delivery included.
            let _draining = Draining(&slot.draining);
            let mut delivered = 0;
            loop {
                let next = slot.queue.lock().pop_front();
                let Some(committed) = next else { break false };
                deliver_committed(inner, &committed);
                delivered += 1;
                if delivered == MAX_DRAIN {
                    break true;
                }
            }
        };
        if more {
            // A hot slot: hand the rest to a task, so that this sender's ack
            // does not wait behind everybody else's messages.
            drain_later(inner, conversation);
            return;
        }
        // A message queued after the last pop, while the flag was still set.
        if slot.queue.lock().is_empty() {
            return;
        }
    }
}

/// Most messages one drain delivers before it hands over to a task.
const MAX_DRAIN: usize = 256;

/// Clears a slot's draining flag when dropped.
struct Draining<'a>(&'a AtomicBool);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A send in progress in a slot; when it ends (returned, failed or dropped)
/// it delivers what its slot holds.
pub(super) struct Sending<'a> {
    inner: &'a Arc<Inner>,
    conversation: ConversationId,
}

impl<'a> Sending<'a> {
    pub(super) fn start(inner: &'a Arc<Inner>, conversation: ConversationId) -> Self {
        inner
            .outbox
            .slot(conversation)
            .senders
            .fetch_add(1, Ordering::SeqCst);
        Self { inner, conversation }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        drain(self.inner, self.conversation);
        let slot = self.inner.outbox.slot(self.conversation);
        slot.senders.fetch_sub(1, Ordering::SeqCst);
        // A hook that saw this send still running left its message to us.
        drain(self.inner, self.conversation);
    }
}

/// Delivers a committed message: this node's sessions, then the fan-out.
pub(super) fn deliver_committed(inner: &Inner, committed: &Committed) {
    send::send(inner, &committed.envelope, Some(&committed.members));
    if let Some(to_leaver) = &committed.to_leaver {
        send::send(inner, to_leaver, None);
    }
}

/// Drains a conversation's outbox slot on a task (here, when no runtime can
/// be found).
pub(super) fn drain_later(inner: &Arc<Inner>, conversation: ConversationId) {
    match send::runtime_of(inner) {
        Some(runtime) => {
            let inner = inner.clone();
            runtime.spawn(async move { drain(&inner, conversation) });
        }
        None => drain(inner, conversation),
    }
}
