//! Per-conversation delivery state: what has been applied, so every message
//! is emitted exactly once, in seq order, whether it came live or from sync,
//! and every later change to it once after that.
//!
//! The change log holds each message once, at the version of its latest
//! state: a message missed while offline and edited later comes after newer
//! messages in the log. New messages are therefore held back until every
//! lower seq is there (at the end of a fill all are, since seqs have no
//! gaps), so `Event::Message` stays in seq order.

use crate::Event;
use im_protocol::v1;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Default, Clone)]
pub(crate) struct ConvState {
    /// Change-log position applied up to (everything at or below is applied).
    pub version: u64,
    /// Our own (private) change-log position applied up to: deletions for us.
    pub private_version: u64,
    /// Highest message seq emitted (every lower one was emitted).
    pub seq: u64,
    /// New messages held back until the seqs below them arrive.
    pending: BTreeMap<u64, v1::Message>,
    /// Messages we deleted for ourselves: changes to them are not emitted.
    hidden: HashSet<u64>,
    /// A fill (GetChanges loop) is running.
    pub filling: bool,
    /// Another fill was asked for while one ran.
    pub refill: bool,
}

/// What to do after a live event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Live {
    /// Applied or a duplicate: nothing more to do.
    Done,
    /// A gap: fetch changes for this conversation.
    Fill,
}

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub convs: HashMap<u64, ConvState>,
}

impl ConvState {
    /// Applies one message whose version is known to follow everything applied.
    fn apply(&mut self, m: v1::Message, emit: &mut dyn FnMut(Event)) {
        self.version = self.version.max(m.version);
        if m.seq > self.seq {
            let newer_held = self
                .pending
                .get(&m.seq)
                .is_some_and(|held| held.version > m.version);
            if !newer_held {
                self.pending.insert(m.seq, m);
            }
            while let Some(next) = self.pending.remove(&(self.seq + 1)) {
                self.seq = next.seq;
                emit(Event::Message(self.as_seen(next)));
            }
        } else if self.hidden.contains(&m.id) {
            // Deleted for us: it stays deleted, whatever happens to it.
        } else if m.deleted {
            self.hidden.insert(m.id);
            emit(Event::MessagesDeleted {
                conversation_id: m.conversation_id,
                message_ids: vec![m.id],
            });
        } else {
            emit(Event::MessageUpdated(m));
        }
    }

    /// A new message as we see it: a stub if we deleted it for ourselves.
    fn as_seen(&mut self, m: v1::Message) -> v1::Message {
        if m.deleted || self.hidden.contains(&m.id) {
            self.hidden.insert(m.id);
            m.deleted_stub()
        } else {
            m
        }
    }

    /// Messages we deleted for ourselves, up to a private position.
    fn hide(&mut self, conv: u64, ids: Vec<u64>, private_version: u64, emit: &mut dyn FnMut(Event)) {
        self.private_version = self.private_version.max(private_version);
        let fresh: Vec<u64> = ids.into_iter().filter(|&id| self.hidden.insert(id)).collect();
        for held in self.pending.values_mut() {
            if fresh.contains(&held.id) {
                *held = held.deleted_stub();
            }
        }
        if !fresh.is_empty() {
            emit(Event::MessagesDeleted {
                conversation_id: conv,
                message_ids: fresh,
            });
        }
    }
}

impl Tracker {
    /// A message that arrived live.
    pub(crate) fn live(&mut self, m: v1::Message, emit: &mut dyn FnMut(Event)) -> Live {
        let state = self.convs.entry(m.conversation_id).or_default();
        if m.version <= state.version {
            return Live::Done; // already applied
        }
        if m.version == state.version + 1 && !state.filling {
            state.apply(m, emit);
            return Live::Done;
        }
        Live::Fill
    }

    /// Our own deletion that arrived live (from any of our devices).
    pub(crate) fn live_deleted(&mut self, d: v1::MessagesDeleted, emit: &mut dyn FnMut(Event)) -> Live {
        let state = self.convs.entry(d.conversation_id).or_default();
        if d.private_version <= state.private_version {
            return Live::Done;
        }
        if d.private_version == state.private_version + 1 && !state.filling {
            state.hide(d.conversation_id, d.message_ids, d.private_version, emit);
            return Live::Done;
        }
        Live::Fill
    }

    /// A page of `GetChanges`: our deletions first, then the messages in
    /// version order, covering up to `next_version`.
    pub(crate) fn page(&mut self, conv: u64, changes: v1::Changes, emit: &mut dyn FnMut(Event)) {
        let state = self.convs.entry(conv).or_default();
        state.hide(
            conv,
            changes.deleted_message_ids,
            changes.next_private_version,
            emit,
        );
        for m in changes.messages {
            if m.version > state.version || m.deleted {
                state.apply(m, emit);
            }
        }
        state.version = state.version.max(changes.next_version);
    }

    /// The server said our cursor is invalid: start over.
    pub(crate) fn reset(&mut self, conv: u64) {
        let state = self.convs.entry(conv).or_default();
        *state = ConvState {
            filling: state.filling,
            refill: state.refill,
            ..Default::default()
        };
    }

    pub(crate) fn cursors(&self) -> Vec<v1::SyncCursor> {
        self.convs
            .iter()
            .map(|(&id, s)| v1::SyncCursor {
                conversation_id: id,
                version: s.version,
                private_version: s.private_version,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, version: u64) -> v1::Message {
        v1::Message {
            id: seq * 10,
            conversation_id: 1,
            seq,
            version,
            ..Default::default()
        }
    }

    fn changes(messages: Vec<v1::Message>, next_version: u64) -> v1::Changes {
        v1::Changes {
            messages,
            next_version,
            ..Default::default()
        }
    }

    fn summary(out: &[Event]) -> Vec<(&'static str, u64)> {
        out.iter()
            .map(|e| match e {
                Event::Message(m) if m.deleted => ("new-deleted", m.seq),
                Event::Message(m) => ("new", m.seq),
                Event::MessageUpdated(m) => ("updated", m.seq),
                Event::MessagesDeleted { message_ids, .. } => ("deleted", message_ids[0] / 10),
                _ => ("other", 0),
            })
            .collect()
    }

    #[test]
    fn live_in_order_duplicates_and_gaps() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push(e);
        assert_eq!(t.live(msg(1, 1), &mut emit), Live::Done);
        assert_eq!(t.live(msg(1, 1), &mut emit), Live::Done);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Fill);
        t.page(1, changes(vec![msg(2, 2), msg(3, 3)], 3), &mut emit);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Done);
        assert_eq!(t.live(msg(2, 4), &mut emit), Live::Done);
        assert_eq!(
            summary(&out),
            [("new", 1), ("new", 2), ("new", 3), ("updated", 2)]
        );
    }

    #[test]
    fn a_missed_message_changed_later_keeps_seq_order() {
        // Offline: seq 2 and 3 were sent, then 2 was edited (version 4):
        // the log holds 3 (v3) before 2 (v4).
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push(e);
        t.live(msg(1, 1), &mut emit);
        t.page(1, changes(vec![msg(3, 3)], 3), &mut emit);
        t.page(1, changes(vec![msg(2, 4)], 4), &mut emit);
        // A live change of 3 now is an update.
        assert_eq!(t.live(msg(3, 5), &mut emit), Live::Done);
        assert_eq!(
            summary(&out),
            [("new", 1), ("new", 2), ("new", 3), ("updated", 3)]
        );
    }

    #[test]
    fn deletions_for_us_stick() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push(e);
        t.live(msg(1, 1), &mut emit);
        t.live(msg(2, 2), &mut emit);
        let deleted = |ids: Vec<u64>, private_version| v1::MessagesDeleted {
            conversation_id: 1,
            message_ids: ids,
            private_version,
        };
        assert_eq!(t.live_deleted(deleted(vec![10], 1), &mut emit), Live::Done);
        assert_eq!(t.live_deleted(deleted(vec![10], 1), &mut emit), Live::Done);
        assert_eq!(t.live_deleted(deleted(vec![20], 3), &mut emit), Live::Fill);
        // A later edit of the deleted message is not shown.
        assert_eq!(t.live(msg(1, 3), &mut emit), Live::Done);
        // From a fill: our deletion of 3 (not yet seen) and 3 as a stub.
        let mut page = changes(vec![msg(3, 4).deleted_stub()], 4);
        page.deleted_message_ids = vec![30];
        page.next_private_version = 2;
        t.page(1, page, &mut emit);
        assert_eq!(
            summary(&out),
            [
                ("new", 1),
                ("new", 2),
                ("deleted", 1),
                ("deleted", 3),
                ("new-deleted", 3)
            ]
        );
        let cursor = &t.cursors()[0];
        assert_eq!((cursor.version, cursor.private_version), (4, 2));
    }

    #[test]
    fn a_message_hidden_by_a_block_fills_its_seq_as_a_stub_once() {
        // Seq 2 came from a user we block: the server never sent it live,
        // so seq 3 shows a gap, and the fill brings 2 as a stub.
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push(e);
        t.live(msg(1, 1), &mut emit);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Fill);
        t.page(
            1,
            changes(vec![msg(2, 2).deleted_stub(), msg(3, 3)], 3),
            &mut emit,
        );
        // The blocked sender edits it later: neither the change (not sent)
        // nor the stub seen again in a later fill emits anything new.
        t.page(1, changes(vec![msg(2, 5).deleted_stub()], 5), &mut emit);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Done);
        assert_eq!(summary(&out), [("new", 1), ("new-deleted", 2), ("new", 3)]);
    }
}
