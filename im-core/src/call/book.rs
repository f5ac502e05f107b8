//! [`CallBook`]: every call of the engine, and the rules of the module docs.

use super::{
    CallAction, CallConfig, CallError, CallEvent, CallId, CallRecord, EndReason, Endpoint, Media, SignalKind,
    To,
};
use crate::model::{ConversationId, UserId};
use std::collections::{BTreeMap, HashMap};

/// A device in a call.
#[derive(Debug)]
struct Participant {
    at: Endpoint,
    /// Set while the device's connection is down: its place is kept until then.
    gone_until: Option<i64>,
}

#[derive(Debug)]
struct Call {
    conversation: ConversationId,
    caller: Endpoint,
    media: Media,
    /// When the first invitee answered.
    answered_at: Option<i64>,
    /// Invitees whose devices ring, and until when.
    ringing: BTreeMap<UserId, i64>,
    /// Who is in the call now, caller first, then in order of joining.
    participants: Vec<Participant>,
    /// Everyone who was ever in it, in order (for the history).
    ever: Vec<UserId>,
    /// Invitees who declined, who were busy, and who did not answer.
    rejected: usize,
    busy: usize,
    missed: usize,
}

impl Call {
    fn participant(&self, at: &Endpoint) -> Option<usize> {
        self.participants.iter().position(|p| &p.at == at)
    }

    fn has_user(&self, user: UserId) -> bool {
        self.participants.iter().any(|p| p.at.user == user)
    }
}

/// Every call of one engine. See the module docs for the rules.
#[derive(Debug, Default)]
pub struct CallBook {
    config: CallConfig,
    calls: BTreeMap<CallId, Call>,
    /// The call each user is in (has joined).
    in_call: HashMap<UserId, CallId>,
}

/// Actions gathered while handling one event.
type Actions = Vec<CallAction>;

/// A call and its conversation: where a delivery belongs.
type Here = (CallId, ConversationId);

fn deliver(out: &mut Actions, (call, conversation): Here, to: To, event: CallEvent) {
    out.push(CallAction::Deliver {
        call,
        conversation,
        to,
        event,
    });
}

impl CallBook {
    /// An empty book with these limits.
    pub fn new(config: CallConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The call `user` is in, if any.
    pub fn call_of(&self, user: UserId) -> Option<CallId> {
        self.in_call.get(&user).copied()
    }

    /// The devices in `call` now, caller first.
    pub fn participants(&self, call: CallId) -> Vec<Endpoint> {
        self.calls
            .get(&call)
            .map(|c| c.participants.iter().map(|p| p.at.clone()).collect())
            .unwrap_or_default()
    }

    /// The conversation `call` belongs to, while it is live.
    pub fn conversation_of(&self, call: CallId) -> Option<ConversationId> {
        self.calls.get(&call).map(|c| c.conversation)
    }

    /// The call as its participants see it: conversation, devices (caller
    /// first) and starting media.
    pub fn describe(&self, call: CallId) -> Option<(ConversationId, Vec<Endpoint>, Media)> {
        self.calls.get(&call).map(|c| {
            let devices = c.participants.iter().map(|p| p.at.clone()).collect();
            (c.conversation, devices, c.media)
        })
    }

    /// Whether `call` exists (ringing or connected).
    pub fn is_live(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// The next time [`CallBook::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<i64> {
        self.calls
            .values()
            .flat_map(|c| {
                let ringing = c.ringing.values().copied();
                let gone = c.participants.iter().filter_map(|p| p.gone_until);
                ringing.chain(gone)
            })
            .min()
    }

    /// `from` calls `invitees` in `conversation` (the engine checked they
    /// are its members). `call` must be new and greater than every earlier id.
    pub fn invite(
        &mut self,
        now: i64,
        call: CallId,
        conversation: ConversationId,
        from: Endpoint,
        invitees: &[UserId],
        media: Media,
    ) -> Result<Actions, CallError> {
        let mut invitees: Vec<UserId> = invitees.iter().copied().filter(|u| *u != from.user).collect();
        invitees.sort_unstable();
        invitees.dedup();
        if invitees.is_empty() {
            return Err(CallError::NobodyToCall);
        }
        if let Some(existing) = self.glare(conversation, &from, &invitees) {
            return self.accept(now, existing, from);
        }
        if let Some(other) = self.call_of(from.user) {
            return Err(CallError::AlreadyInCall(other));
        }
        if invitees.len() + 1 > self.config.max_participants {
            return Err(CallError::Full(call, self.config.max_participants));
        }
        if self.calls.contains_key(&call) {
            return Err(CallError::InvalidState(format!("call {call} exists")));
        }
        let mut out = Actions::new();
        let here = (call, conversation);
        let mut state = Call {
            conversation,
            caller: from.clone(),
            media,
            answered_at: None,
            ringing: BTreeMap::new(),
            participants: vec![Participant {
                at: from.clone(),
                gone_until: None,
            }],
            ever: vec![from.user],
            rejected: 0,
            busy: 0,
            missed: 0,
        };
        for user in invitees {
            if self.in_call.contains_key(&user) {
                state.busy += 1;
                deliver(&mut out, here, To::Device(from.clone()), CallEvent::Busy { user });
            } else {
                state.ringing.insert(user, now + self.config.ring_timeout_ms);
                let incoming = CallEvent::Incoming {
                    from: from.clone(),
                    conversation,
                    media,
                };
                deliver(&mut out, here, To::User(user), incoming);
            }
        }
        self.in_call.insert(from.user, call);
        self.calls.insert(call, state);
        self.settle(now, call, &mut out);
        Ok(out)
    }

    /// A ringing call in `conversation` that `from` is invited to, made by
    /// one of `invitees`: both sides called each other at once.
    fn glare(&self, conversation: ConversationId, from: &Endpoint, invitees: &[UserId]) -> Option<CallId> {
        self.calls.iter().find_map(|(id, c)| {
            let crossed = c.conversation == conversation
                && c.answered_at.is_none()
                && c.ringing.contains_key(&from.user)
                && invitees.contains(&c.caller.user);
            crossed.then_some(*id)
        })
    }

    /// One of `from`'s devices rings.
    pub fn ringing(&mut self, _now: i64, call: CallId, from: Endpoint) -> Result<Actions, CallError> {
        let state = self.calls.get(&call).ok_or(CallError::UnknownCall(call))?;
        if !state.ringing.contains_key(&from.user) {
            return Err(CallError::NotInCall(call));
        }
        let mut out = Actions::new();
        let here = (call, state.conversation);
        for p in &state.participants {
            deliver(
                &mut out,
                here,
                To::Device(p.at.clone()),
                CallEvent::Ringing { by: from.clone() },
            );
        }
        Ok(out)
    }

    /// `from` takes the call it is ringing for, or joins a connected call
    /// of its conversation (the engine checked membership). From a device
    /// already in the call it says the device is there (back after a
    /// reconnect, perhaps to another node): see [`CallBook::device_back`].
    pub fn accept(&mut self, now: i64, call: CallId, from: Endpoint) -> Result<Actions, CallError> {
        let already_in = self
            .calls
            .get(&call)
            .is_some_and(|c| c.participant(&from).is_some());
        if already_in {
            return Ok(self.device_back(now, &from));
        }
        let max = self.config.max_participants;
        let state = self.calls.get_mut(&call).ok_or(CallError::UnknownCall(call))?;
        let invited = state.ringing.contains_key(&from.user);
        if state.has_user(from.user) {
            return Err(CallError::InvalidState(format!("already in call {call}")));
        }
        if !invited && state.answered_at.is_none() {
            return Err(CallError::NotInCall(call));
        }
        if let Some(other) = self.in_call.get(&from.user) {
            return Err(CallError::AlreadyInCall(*other));
        }
        if state.participants.len() >= max {
            return Err(CallError::Full(call, max));
        }
        state.ringing.remove(&from.user);
        let mut out = Actions::new();
        let here = (call, state.conversation);
        if invited {
            deliver(
                &mut out,
                here,
                To::OtherDevices(from.clone()),
                CallEvent::AnsweredElsewhere,
            );
        }
        for p in &state.participants {
            deliver(
                &mut out,
                here,
                To::Device(p.at.clone()),
                CallEvent::Joined { by: from.clone() },
            );
            deliver(
                &mut out,
                here,
                To::Device(from.clone()),
                CallEvent::Joined { by: p.at.clone() },
            );
        }
        state.participants.push(Participant {
            at: from.clone(),
            gone_until: None,
        });
        if !state.ever.contains(&from.user) {
            state.ever.push(from.user);
        }
        if state.answered_at.is_none() {
            state.answered_at = Some(now);
            let record = CallRecord::Started {
                caller: state.caller.user,
                media: state.media,
            };
            out.push(CallAction::Record {
                call,
                conversation: state.conversation,
                record,
            });
        }
        self.in_call.insert(from.user, call);
        Ok(out)
    }

    /// `from` declines the call it is ringing for.
    pub fn reject(&mut self, now: i64, call: CallId, from: Endpoint) -> Result<Actions, CallError> {
        self.decline(now, call, from, false)
    }

    /// `from` declines the call it is ringing for because it is in another
    /// call (a client on another node answers so: this book cannot see that
    /// call).
    pub fn busy(&mut self, now: i64, call: CallId, from: Endpoint) -> Result<Actions, CallError> {
        self.decline(now, call, from, true)
    }

    fn decline(&mut self, now: i64, call: CallId, from: Endpoint, busy: bool) -> Result<Actions, CallError> {
        let state = self.calls.get_mut(&call).ok_or(CallError::UnknownCall(call))?;
        if state.ringing.remove(&from.user).is_none() {
            return Err(CallError::NotInCall(call));
        }
        let (reason, heard) = if busy {
            state.busy += 1;
            (EndReason::Busy, CallEvent::Busy { user: from.user })
        } else {
            state.rejected += 1;
            (EndReason::Rejected, CallEvent::Rejected { user: from.user })
        };
        let mut out = Actions::new();
        let here = (call, state.conversation);
        deliver(
            &mut out,
            here,
            To::OtherDevices(from.clone()),
            CallEvent::Ended { reason },
        );
        for p in &state.participants {
            deliver(&mut out, here, To::Device(p.at.clone()), heard.clone());
        }
        self.settle(now, call, &mut out);
        Ok(out)
    }

    /// `from` leaves the call: a caller before anyone answered cancels it.
    pub fn hang_up(&mut self, now: i64, call: CallId, from: Endpoint) -> Result<Actions, CallError> {
        let state = self.calls.get(&call).ok_or(CallError::UnknownCall(call))?;
        let Some(at) = state.participant(&from) else {
            return Err(CallError::NotInCall(call));
        };
        let mut out = Actions::new();
        if state.answered_at.is_none() {
            self.end(now, call, EndReason::Cancelled, &mut out);
        } else {
            self.leave(now, call, at, &mut out);
        }
        Ok(out)
    }

    /// `from` sends an SDP offer or answer or an ICE candidate to the peer
    /// `to` in the call: to the device `to` answered on, or to all of its
    /// ringing devices before it answered.
    pub fn signal(
        &mut self,
        _now: i64,
        call: CallId,
        from: Endpoint,
        to: UserId,
        kind: SignalKind,
        payload: String,
    ) -> Result<Actions, CallError> {
        let state = self.calls.get(&call).ok_or(CallError::UnknownCall(call))?;
        if state.participant(&from).is_none() {
            return Err(CallError::NotInCall(call));
        }
        let target = match state.participants.iter().find(|p| p.at.user == to) {
            Some(p) if p.at != from => To::Device(p.at.clone()),
            Some(_) => return Err(CallError::InvalidState("a signal to oneself".into())),
            None if state.ringing.contains_key(&to) => To::User(to),
            None => return Err(CallError::NotInCall(call)),
        };
        let event = CallEvent::Signal { from, kind, payload };
        Ok(vec![CallAction::Deliver {
            call,
            conversation: state.conversation,
            to: target,
            event,
        }])
    }

    /// `device`'s connection dropped: in a call, its place is kept for the
    /// reconnect window.
    pub fn device_gone(&mut self, now: i64, device: &Endpoint) -> Actions {
        let mut out = Actions::new();
        let Some(call) = self.call_of(device.user) else {
            return out;
        };
        let window = self.config.reconnect_window_ms;
        let Some(state) = self.calls.get_mut(&call) else {
            return out;
        };
        let Some(at) = state.participant(device) else {
            return out;
        };
        state.participants[at].gone_until = Some(now + window);
        let here = (call, state.conversation);
        for p in state.participants.iter().filter(|p| p.gone_until.is_none()) {
            deliver(
                &mut out,
                here,
                To::Device(p.at.clone()),
                CallEvent::Reconnecting { by: device.clone() },
            );
        }
        out
    }

    /// `device` is connected again: within its window it is back in its call.
    pub fn device_back(&mut self, _now: i64, device: &Endpoint) -> Actions {
        let mut out = Actions::new();
        let Some(call) = self.call_of(device.user) else {
            return out;
        };
        let Some(state) = self.calls.get_mut(&call) else {
            return out;
        };
        let Some(at) = state.participant(device) else {
            return out;
        };
        let here = (call, state.conversation);
        if state.participants[at].gone_until.take().is_some() {
            for p in state.participants.iter().filter(|p| &p.at != device) {
                deliver(
                    &mut out,
                    here,
                    To::Device(p.at.clone()),
                    CallEvent::Reconnected { by: device.clone() },
                );
            }
        }
        out
    }

    /// Ring time-outs and reconnect windows that passed by `now`.
    pub fn handle_timeout(&mut self, now: i64) -> Actions {
        let mut out = Actions::new();
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for call in ids {
            let Some(state) = self.calls.get_mut(&call) else {
                continue;
            };
            let here = (call, state.conversation);
            let missed: Vec<UserId> = state
                .ringing
                .iter()
                .filter(|(_, until)| **until <= now)
                .map(|(user, _)| *user)
                .collect();
            for user in missed {
                state.ringing.remove(&user);
                state.missed += 1;
                let stop = CallEvent::Ended {
                    reason: EndReason::NoAnswer,
                };
                deliver(&mut out, here, To::User(user), stop);
                for p in &state.participants {
                    deliver(
                        &mut out,
                        here,
                        To::Device(p.at.clone()),
                        CallEvent::NoAnswer { user },
                    );
                }
            }
            let everyone_gone = state.participants.iter().all(|p| p.gone_until.is_some());
            let expired = state
                .participants
                .iter()
                .position(|p| p.gone_until.is_some_and(|until| until <= now));
            match expired {
                Some(_) if everyone_gone => self.end(now, call, EndReason::Vanished, &mut out),
                Some(at) => {
                    self.leave(now, call, at, &mut out);
                    // Several windows may pass at once: look again.
                    if self.calls.contains_key(&call) {
                        out.extend(self.handle_timeout(now));
                        return out;
                    }
                }
                None => self.settle(now, call, &mut out),
            }
        }
        out
    }

    /// Participant `at` leaves a connected call; the call ends when fewer
    /// than two remain and nobody else is ringing.
    fn leave(&mut self, now: i64, call: CallId, at: usize, out: &mut Actions) {
        let Some(state) = self.calls.get_mut(&call) else {
            return;
        };
        let here = (call, state.conversation);
        let gone = state.participants.remove(at);
        self.in_call.remove(&gone.at.user);
        for p in &state.participants {
            deliver(
                out,
                here,
                To::Device(p.at.clone()),
                CallEvent::Left { by: gone.at.clone() },
            );
        }
        if state.participants.len() < 2 && state.ringing.is_empty() {
            self.end(now, call, EndReason::HungUp, out);
        } else if state.participants.is_empty() {
            self.end(now, call, EndReason::Cancelled, out);
        }
    }

    /// A call nobody can answer any more ends: missed, rejected or busy.
    fn settle(&mut self, now: i64, call: CallId, out: &mut Actions) {
        let Some(state) = self.calls.get(&call) else {
            return;
        };
        if !state.ringing.is_empty() {
            return;
        }
        if state.answered_at.is_some() {
            // Connected once; with nobody left to talk to, it is over.
            if state.participants.len() < 2 {
                self.end(now, call, EndReason::HungUp, out);
            }
            return;
        }
        let reason = if state.rejected > 0 {
            EndReason::Rejected
        } else if state.busy > 0 && state.missed == 0 {
            EndReason::Busy
        } else {
            EndReason::NoAnswer
        };
        self.end(now, call, reason, out);
    }

    /// Ends `call` for everyone still in it or ringing, and records it.
    fn end(&mut self, now: i64, call: CallId, reason: EndReason, out: &mut Actions) {
        let Some(state) = self.calls.remove(&call) else {
            return;
        };
        let here = (call, state.conversation);
        for user in state.ringing.keys() {
            deliver(out, here, To::User(*user), CallEvent::Ended { reason });
        }
        for p in &state.participants {
            self.in_call.remove(&p.at.user);
            deliver(out, here, To::Device(p.at.clone()), CallEvent::Ended { reason });
        }
        let caller = state.caller.user;
        let record = match (state.answered_at, reason) {
            (Some(at), _) => CallRecord::Ended {
                duration_ms: now - at,
                participants: state.ever,
            },
            (None, EndReason::Rejected) => CallRecord::Rejected { caller },
            (None, EndReason::Busy) => CallRecord::Busy { caller },
            (None, _) => CallRecord::Missed { caller },
        };
        out.push(CallAction::Record {
            call,
            conversation: state.conversation,
            record,
        });
    }
}
