//! Per-conversation delivery state: what has been applied, so every message
//! is emitted exactly once, in order, whether it came live or from sync.

use crate::Event;
use im_protocol::v1;
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub(crate) struct ConvState {
    /// Change-log position applied up to (everything at or below is applied).
    pub version: u64,
    /// Highest message seq emitted.
    pub seq: u64,
    /// A fill (GetChanges loop) is running.
    pub filling: bool,
    /// Another fill was asked for while one ran.
    pub refill: bool,
}

/// What to do after a live message.
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

impl Tracker {
    /// Applies one message whose version is known to follow everything applied.
    fn apply(state: &mut ConvState, m: v1::Message, emit: &mut dyn FnMut(Event)) {
        state.version = state.version.max(m.version);
        if m.seq > state.seq {
            state.seq = m.seq;
            emit(Event::Message(m));
        } else {
            emit(Event::MessageUpdated(m));
        }
    }

    /// A message that arrived live.
    pub(crate) fn live(&mut self, m: v1::Message, emit: &mut dyn FnMut(Event)) -> Live {
        let state = self.convs.entry(m.conversation_id).or_default();
        if m.version <= state.version {
            return Live::Done; // already applied
        }
        if m.version == state.version + 1 && !state.filling {
            Self::apply(state, m, emit);
            return Live::Done;
        }
        Live::Fill
    }

    /// A page of `GetChanges`, in version order, covering up to `next_version`.
    pub(crate) fn page(
        &mut self,
        conv: u64,
        messages: Vec<v1::Message>,
        next_version: u64,
        emit: &mut dyn FnMut(Event),
    ) {
        let state = self.convs.entry(conv).or_default();
        for m in messages {
            if m.version > state.version {
                Self::apply(state, m, emit);
            }
        }
        state.version = state.version.max(next_version);
    }

    /// The server said our cursor is invalid: start over.
    pub(crate) fn reset(&mut self, conv: u64) {
        let state = self.convs.entry(conv).or_default();
        state.version = 0;
        state.seq = 0;
    }

    pub(crate) fn cursors(&self) -> Vec<v1::SyncCursor> {
        self.convs
            .iter()
            .map(|(&id, s)| v1::SyncCursor {
                conversation_id: id,
                version: s.version,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, version: u64) -> v1::Message {
        v1::Message {
            conversation_id: 1,
            seq,
            version,
            ..Default::default()
        }
    }

    #[test]
    fn live_in_order_duplicates_and_gaps() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        let mut emit = |e: Event| out.push(e);
        assert_eq!(t.live(msg(1, 1), &mut emit), Live::Done);
        assert_eq!(t.live(msg(1, 1), &mut emit), Live::Done);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Fill);
        t.page(1, vec![msg(2, 2), msg(3, 3)], 3, &mut emit);
        assert_eq!(t.live(msg(3, 3), &mut emit), Live::Done);
        assert_eq!(t.live(msg(2, 4), &mut emit), Live::Done);
        let seqs: Vec<_> = out
            .iter()
            .map(|e| match e {
                Event::Message(m) => (m.seq, false),
                Event::MessageUpdated(m) => (m.seq, true),
                _ => (0, false),
            })
            .collect();
        assert_eq!(seqs, vec![(1, false), (2, false), (3, false), (2, true)]);
    }
}
