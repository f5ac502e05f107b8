//! Calls: the signalling state machine, without I/O.
//!
//! [`CallBook`] keeps every call of one engine and decides, for each
//! signalling event, who must hear of it and what the conversation's
//! history records. It does no I/O and reads no clock: events come in with
//! the time (`now_ms`), and what to do comes out as [`CallAction`]s plus a
//! next deadline ([`CallBook::poll_timeout`]) at which
//! [`CallBook::handle_timeout`] must be called. The engine turns the actions
//! into deliveries (through the fan-out, addressed to devices) and history
//! messages; the rules are tested here with a manual clock.
//!
//! # The rules
//! * **Ringing**: an invite rings every device of every invitee that is not
//!   busy (in another call): it is relayed to all of their devices. A user
//!   who does not answer within [`CallConfig::ring_timeout_ms`] has missed
//!   the call; a call nobody answered ends as **missed**.
//! * **Busy**: an invitee who is in another call is not rung; the caller
//!   hears `busy` for them, and a call whose invitees are all busy ends as
//!   **busy**.
//! * **Answered elsewhere**: when one device of a user accepts, that user's
//!   other devices stop ringing (`answered elsewhere`); from then on the
//!   call reaches that user only on the device that answered.
//! * **Glare**: when a user invites someone who is already ringing them in
//!   the same conversation (both pressed "call" at once), no second call is
//!   made: the new invite accepts the existing call, which has the lower
//!   call id because the engine numbers calls in the order it sees them.
//!   The inviter is told which call it joined.
//! * **Reconnect window**: a participant whose connection drops keeps their
//!   place for [`CallConfig::reconnect_window_ms`]; the others hear
//!   `reconnecting`, then `reconnected` or, when the window passes, that the
//!   participant left. A call whose participants have all vanished ends.
//! * **Mesh**: a call has at most [`CallConfig::max_participants`]
//!   participants (default 4); members of the conversation join and leave
//!   while it runs, and each pair negotiates its own peer connection, so
//!   SDP and candidates are addressed to one peer.
//! * **Relay**: SDP offers and answers and ICE candidates (renegotiation
//!   included) go only to the devices in the call: before the addressee
//!   answered, to all of their ringing devices; after, to the device that
//!   answered.
//! * **ICE servers**: [`IceConfig::servers_for`] gives a user STUN and TURN
//!   servers, TURN with a credential that expires (the TURN REST scheme).
//! * **History**: a call is recorded once when it connects (`started`) and
//!   once when it ends (`ended`, with its duration and participants), or
//!   once as `missed`, `rejected` or `busy` if it never connected.

mod book;
mod ice;
#[cfg(test)]
mod tests;

pub use book::CallBook;
pub use ice::{IceConfig, IceServer, turn_credential};

use crate::model::{ConversationId, DeviceId, UserId};

/// A call's id, chosen by the engine in increasing order.
pub type CallId = u64;

/// Limits and times of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    /// How long invitees' devices ring before the call counts as missed
    /// for them, ms (default 30 s).
    pub ring_timeout_ms: i64,
    /// How long a participant whose connection dropped keeps their place,
    /// ms (default 20 s).
    pub reconnect_window_ms: i64,
    /// Most participants of one call, caller included (default 4).
    pub max_participants: usize,
    /// Largest SDP or candidate payload relayed, bytes (default 32 KiB).
    pub max_signal_bytes: usize,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ring_timeout_ms: 30_000,
            reconnect_window_ms: 20_000,
            max_participants: 4,
            max_signal_bytes: 32 * 1024,
        }
    }
}

/// One device of one user: who sends and who receives signalling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The user.
    pub user: UserId,
    /// Their device.
    pub device: DeviceId,
}

impl Endpoint {
    /// `user` on `device`.
    pub fn new(user: UserId, device: &str) -> Self {
        Self {
            user,
            device: DeviceId::new(device),
        }
    }
}

/// The media a call starts with (more can be added by renegotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Media {
    /// Voice.
    pub audio: bool,
    /// Camera.
    pub video: bool,
    /// A shared screen.
    pub screen: bool,
}

/// What a relayed signal carries; its payload is the client's and is
/// passed through unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// An SDP offer (also a renegotiation, e.g. adding screen share).
    Offer,
    /// An SDP answer.
    Answer,
    /// A trickled ICE candidate.
    Candidate,
}

/// Why a call ended, as its participants hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Everyone hung up (or all but one left).
    HungUp,
    /// Nobody answered in time.
    NoAnswer,
    /// The caller gave up before anyone answered.
    Cancelled,
    /// Every invitee declined.
    Rejected,
    /// Every invitee was in another call.
    Busy,
    /// Every participant's connection dropped and none came back in time.
    Vanished,
}

/// Whom an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To {
    /// Every device of the user (ringing).
    User(UserId),
    /// One device.
    Device(Endpoint),
    /// Every device of the user except this one (answered elsewhere).
    OtherDevices(Endpoint),
}

/// What a device hears about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// You are invited: ring.
    Incoming {
        /// Who calls.
        from: Endpoint,
        /// In which conversation.
        conversation: ConversationId,
        /// With what.
        media: Media,
    },
    /// One of the invitee's devices rings.
    Ringing {
        /// The ringing device.
        by: Endpoint,
    },
    /// Someone joined the call (accepted, or joined a running call).
    Joined {
        /// The device they are in the call with.
        by: Endpoint,
    },
    /// Another of your devices took the call: stop ringing.
    AnsweredElsewhere,
    /// The user declined.
    Rejected {
        /// Who declined.
        user: UserId,
    },
    /// The user is in another call and was not rung.
    Busy {
        /// Who is busy.
        user: UserId,
    },
    /// The user did not answer in time (the call may go on with others).
    NoAnswer {
        /// Who did not answer.
        user: UserId,
    },
    /// A peer's SDP or candidate, for you.
    Signal {
        /// From whom.
        from: Endpoint,
        /// What it is.
        kind: SignalKind,
        /// The client's payload, unread.
        payload: String,
    },
    /// A participant's connection dropped; they may come back.
    Reconnecting {
        /// Who.
        by: Endpoint,
    },
    /// The participant is back.
    Reconnected {
        /// Who.
        by: Endpoint,
    },
    /// A participant left (hung up, or did not come back in time).
    Left {
        /// Who.
        by: Endpoint,
    },
    /// Your ringing stops: the call is over for you (missed, cancelled,
    /// rejected on another device) or ended for everyone.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

/// What the conversation's history records about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRecord {
    /// The call connected (the first invitee answered).
    Started {
        /// Who called.
        caller: UserId,
        /// With what.
        media: Media,
    },
    /// Nobody answered (or the caller cancelled first).
    Missed {
        /// Who called.
        caller: UserId,
    },
    /// Every invitee declined.
    Rejected {
        /// Who called.
        caller: UserId,
    },
    /// Every invitee was in another call.
    Busy {
        /// Who called.
        caller: UserId,
    },
    /// A call that connected is over.
    Ended {
        /// From the first answer to the end, ms.
        duration_ms: i64,
        /// Everyone who was in it, caller first, then in order of joining.
        participants: Vec<UserId>,
    },
}

/// What the engine must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    /// Deliver `event` about `call` to `to`.
    Deliver {
        /// The call.
        call: CallId,
        /// Its conversation.
        conversation: ConversationId,
        /// Whom.
        to: To,
        /// What.
        event: CallEvent,
    },
    /// Record `record` in the conversation's history.
    Record {
        /// The call.
        call: CallId,
        /// Where.
        conversation: ConversationId,
        /// What.
        record: CallRecord,
    },
}

/// Why the machine refused an event (the engine answers the sender with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No such call (never made, or over).
    #[error("unknown call {0}")]
    UnknownCall(CallId),
    /// The sender's device does not belong in this call (or not in this role).
    #[error("not a participant of call {0}")]
    NotInCall(CallId),
    /// The call is full.
    #[error("call {0} has its maximum of {1} participants")]
    Full(CallId, usize),
    /// The event does not fit the call's state (e.g. accepting twice).
    #[error("{0}")]
    InvalidState(String),
    /// The caller is already in a call.
    #[error("already in call {0}")]
    AlreadyInCall(CallId),
    /// An invite with no one to call but the caller.
    #[error("a call needs someone to call")]
    NobodyToCall,
}

impl From<CallError> for crate::Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::UnknownCall(_) => crate::Error::NotFound(e.to_string()),
            CallError::NotInCall(_) => crate::Error::PermissionDenied(e.to_string()),
            CallError::Full(..) => crate::Error::TooLarge(e.to_string()),
            CallError::InvalidState(_) | CallError::AlreadyInCall(_) => crate::Error::Conflict(e.to_string()),
            CallError::NobodyToCall => crate::Error::InvalidArgument(e.to_string()),
        }
    }
}
