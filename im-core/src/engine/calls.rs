//! Calls: the requests of call signalling, checked and fed to the
//! [`CallBook`], and the book's actions carried out: events addressed to
//! devices through the fan-out, and call records in the conversation's
//! history. The rules themselves live in [`crate::call`], without I/O.

use super::{Caller, Engine, Inner};
use crate::call::{
    CallAction, CallError, CallEvent, CallId, CallRecord, EndReason, Endpoint, Media, SignalKind, To,
};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::{ConversationId, DeviceAddress, DeviceId, UserId};
use im_protocol::v1;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// The calls of this engine: the state machine, the ids it hands out and
/// the task that runs its time-outs.
#[derive(Debug)]
pub(super) struct Calls {
    book: parking_lot::Mutex<crate::call::CallBook>,
    /// The next call id: this node's tag in the high bits, a counter below,
    /// so ids increase on one node and differ between nodes.
    next_id: AtomicU64,
    /// Wakes the time-out task when a new deadline may be earlier.
    rearm: Arc<tokio::sync::Notify>,
    /// Started with the first call.
    timer: std::sync::OnceLock<()>,
    /// Call records on their way to the history, written in order by one
    /// task (a call's `started` before its `ended`).
    records: std::sync::OnceLock<mpsc::UnboundedSender<Record>>,
    /// This node's tag: the high bits of the ids of the calls it keeps.
    pub(super) tag: u64,
    /// Requests for calls other nodes keep, and devices of this node in
    /// such calls (see [`call_relay`](super::call_relay)).
    pub(super) relay: super::call_relay::Relay,
    /// For the calls kept here: the node each device in them is connected
    /// through now, so that a late "gone" from a node it left is ignored.
    via: parking_lot::Mutex<std::collections::HashMap<Endpoint, Arc<str>>>,
}

/// A call record for a conversation's history.
type Record = (CallId, ConversationId, CallRecord);

/// Bits of a call id below the node tag.
pub(super) const COUNTER_BITS: u32 = 44;

impl Calls {
    pub(super) fn new(config: crate::call::CallConfig, node_id: &str) -> Self {
        let tag = node_tag(node_id);
        Self {
            book: parking_lot::Mutex::new(crate::call::CallBook::new(config)),
            next_id: AtomicU64::new((tag << COUNTER_BITS) | 1),
            tag,
            relay: super::call_relay::Relay::default(),
            via: parking_lot::Mutex::default(),
            rearm: Arc::default(),
            timer: std::sync::OnceLock::new(),
            records: std::sync::OnceLock::new(),
        }
    }
}

/// A node's tag in call ids: 19 bits of a hash of its name (the top bit
/// stays clear, so ids fit a JSON client's signed 64-bit integers).
fn node_tag(node_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node_id.hash(&mut hasher);
    hasher.finish() & ((1 << 19) - 1)
}

impl Engine {
    /// Calls `invitee_ids` (empty: every other member) in a conversation the
    /// caller is a member of, from the caller's device. If an invitee is
    /// ringing the caller in that conversation already (glare), that call is
    /// joined instead; the answer says which call it is.
    pub async fn call_invite(&self, caller: Caller, req: v1::CallInvite) -> Result<v1::Call> {
        let from = endpoint(&caller)?;
        let id = req.conversation_id;
        self.require_member(&caller, id).await?;
        let mut invitees = self.invitees(&caller, id, &req.invitee_ids).await?;
        // Nobody rings across a block, either way.
        let blocks = self.block_relations(caller.user_id).await?;
        if !blocks.is_empty() && !invitees.is_empty() {
            invitees.retain(|u| !blocks.either_way(*u));
            if invitees.is_empty() {
                return Err(Error::PermissionDenied("cannot call this user".into()));
            }
        }
        let media = media_from(req.media.unwrap_or_default());
        if !(media.audio || media.video || media.screen) {
            return Err(Error::InvalidArgument(
                "a call needs audio, video or screen".into(),
            ));
        }
        let call = self.inner.calls.next_id.fetch_add(1, Ordering::Relaxed);
        self.remember_via(&from, &self.inner.node_id);
        let info = self.with_book(|book, now| {
            let actions = book.invite(now, call, id, from.clone(), &invitees, media)?;
            let joined = book.call_of(from.user).unwrap_or(call);
            Ok((actions, describe(book, joined)))
        })?;
        self.start_call_timer();
        // No call left: every invitee was busy (the events say so).
        Ok(info.unwrap_or(v1::Call {
            call_id: call,
            conversation_id: id,
            participants: Vec::new(),
            media: Some(wire_media(media)),
        }))
    }

    /// A device's answer to a call: ringing, accept (also joining a running
    /// call of the conversation, or, from a device already in the call,
    /// saying it is back after a reconnect), reject, busy or hang up. Accept
    /// answers with the call. A call another node keeps is handled there.
    pub async fn call_update(&self, caller: Caller, req: v1::CallUpdate) -> Result<Option<v1::Call>> {
        let from = endpoint(&caller)?;
        if !self.keeps_call(req.call_id) {
            let body = v1::call_command::Body::Update(req);
            return self.forward_call_request(&from, body).await;
        }
        let here = self.inner.node_id.clone();
        self.update_here(from, req, &here).await
    }

    /// [`Engine::call_update`] on the node that keeps the call; the device
    /// is connected to node `via`.
    pub(super) async fn update_here(
        &self,
        from: Endpoint,
        req: v1::CallUpdate,
        via: &str,
    ) -> Result<Option<v1::Call>> {
        let call = req.call_id;
        let kind = v1::CallUpdateKind::try_from(req.kind).unwrap_or_default();
        if kind == v1::CallUpdateKind::Accept {
            // Invited or not, only the conversation's members join.
            let conversation = self.inner.calls.book.lock().conversation_of(call);
            let conversation = conversation.ok_or_else(|| Error::NotFound(format!("unknown call {call}")))?;
            self.require_member(&caller_of(&from), conversation).await?;
        }
        if kind == v1::CallUpdateKind::Unspecified {
            return Err(Error::InvalidArgument("a call update needs a kind".into()));
        }
        if kind == v1::CallUpdateKind::Accept {
            self.remember_via(&from, via);
        }
        let info = self.with_book(|book, now| {
            let actions = match kind {
                v1::CallUpdateKind::Ringing => book.ringing(now, call, from)?,
                v1::CallUpdateKind::Accept => book.accept(now, call, from)?,
                v1::CallUpdateKind::Reject => book.reject(now, call, from)?,
                v1::CallUpdateKind::Busy => book.busy(now, call, from)?,
                v1::CallUpdateKind::HangUp | v1::CallUpdateKind::Unspecified => {
                    book.hang_up(now, call, from)?
                }
            };
            let info = (kind == v1::CallUpdateKind::Accept)
                .then(|| describe(book, call))
                .flatten();
            Ok((actions, info))
        })?;
        self.start_call_timer();
        Ok(info)
    }

    /// Relays an SDP offer or answer or an ICE candidate to one peer of the
    /// caller's call; the payload is passed through unread. A call another
    /// node keeps is relayed there.
    pub async fn call_signal(&self, caller: Caller, req: v1::CallSignal) -> Result<()> {
        let from = endpoint(&caller)?;
        let kind = self.check_signal(&req)?;
        if !self.keeps_call(req.call_id) {
            let body = v1::call_command::Body::Signal(req);
            return self.forward_call_request(&from, body).await.map(|_| ());
        }
        self.signal_here(from, kind, req)
    }

    /// What can be checked of a signal without its call.
    pub(super) fn check_signal(&self, req: &v1::CallSignal) -> Result<SignalKind> {
        let limit = self.inner.config.calls.max_signal_bytes;
        if req.payload.len() > limit {
            return Err(Error::TooLarge(format!(
                "a call signal of {} bytes exceeds the limit of {limit} bytes",
                req.payload.len()
            )));
        }
        match v1::SignalKind::try_from(req.kind).unwrap_or_default() {
            v1::SignalKind::Offer => Ok(SignalKind::Offer),
            v1::SignalKind::Answer => Ok(SignalKind::Answer),
            v1::SignalKind::Candidate => Ok(SignalKind::Candidate),
            v1::SignalKind::Unspecified => Err(Error::InvalidArgument("a call signal needs a kind".into())),
        }
    }

    /// [`Engine::call_signal`] on the node that keeps the call.
    pub(super) fn signal_here(&self, from: Endpoint, kind: SignalKind, req: v1::CallSignal) -> Result<()> {
        self.with_book(|book, now| {
            let actions = book.signal(now, req.call_id, from, req.to_user_id, kind, req.payload)?;
            Ok((actions, ()))
        })
    }

    /// The STUN and TURN servers for the caller, TURN with a credential that
    /// expires (see [`IceConfig`](crate::call::IceConfig)).
    pub fn ice_servers(&self, caller: &Caller) -> v1::IceServers {
        let servers = self.inner.config.ice.servers_for(caller.user_id, self.now_ms());
        v1::IceServers {
            servers: servers
                .into_iter()
                .map(|s| v1::IceServer {
                    urls: s.urls,
                    username: s.username,
                    credential: s.credential,
                })
                .collect(),
        }
    }

    /// The call `user` is in on this node, if any.
    pub fn call_of(&self, user: UserId) -> Option<CallId> {
        self.inner.calls.book.lock().call_of(user)
    }

    /// A device's last session on this node ended: in a call, it keeps its
    /// place for the reconnect window (told to the node that keeps a call
    /// of another node).
    pub(super) fn call_device_gone(&self, user: UserId, device: DeviceId) {
        if let Some(call) = self.inner.calls.relay.forget(user, &device) {
            self.relay_device_gone(call, user, &device);
        }
        let here = self.inner.node_id.clone();
        self.device_gone_here(Endpoint { user, device }, &here);
    }

    /// [`Engine::call_device_gone`] for the calls this node keeps: a session
    /// of the device on node `via` ended. Ignored if the device came back
    /// through another node since (the old node noticed late).
    pub(super) fn device_gone_here(&self, device: Endpoint, via: &str) {
        let now_on = self.inner.calls.via.lock().get(&device).cloned();
        if now_on.is_some_and(|node| *node != *via) {
            return;
        }
        let _ = self.with_book(|book, now| Ok((book.device_gone(now, &device), ())));
        self.inner.calls.rearm.notify_one();
    }

    /// A device connected: within its reconnect window it is back in its call.
    pub(super) fn call_device_back(&self, user: UserId, device: DeviceId) {
        let device = Endpoint { user, device };
        let _ = self.with_book(|book, now| {
            if book.call_of(user).is_some() {
                self.remember_via(&device, &self.inner.node_id);
            }
            Ok((book.device_back(now, &device), ()))
        });
    }

    /// Runs the ring time-outs and reconnect windows that passed; the
    /// engine's timer does this on time, tests with a manual clock call it.
    /// Forgets where devices no longer in a call were connected.
    pub(crate) fn run_call_timeouts(&self) -> Option<i64> {
        self.with_book(|book, now| {
            let actions = book.handle_timeout(now);
            let in_call = |user: &UserId| book.call_of(*user).is_some();
            self.inner.calls.via.lock().retain(|e, _| in_call(&e.user));
            Ok((actions, book.poll_timeout()))
        })
        .unwrap_or(None)
    }

    /// The node `device` is connected through now, for the calls kept here.
    fn remember_via(&self, device: &Endpoint, via: &str) {
        self.inner.calls.via.lock().insert(device.clone(), via.into());
    }

    /// Runs `f` on the call book and carries out the actions it returns while
    /// still holding the lock, so that the events and records of racing
    /// requests leave in the order the book decided them (a call's `started`
    /// before its `ended`). Carrying out never waits: events are queued for
    /// sessions and the fan-out, records for the recorder task.
    fn with_book<R>(
        &self,
        f: impl FnOnce(&mut crate::call::CallBook, i64) -> std::result::Result<(Vec<CallAction>, R), CallError>,
    ) -> Result<R> {
        let now = self.now_ms();
        let mut book = self.inner.calls.book.lock();
        let (actions, out) = f(&mut book, now)?;
        self.carry_out(actions);
        Ok(out)
    }

    /// The members a call rings: those asked for (who must be members), or
    /// every other member.
    async fn invitees(&self, caller: &Caller, id: ConversationId, asked: &[UserId]) -> Result<Vec<UserId>> {
        let max = self.inner.config.calls.max_participants;
        let everyone = asked.is_empty();
        let mut asked: Vec<UserId> = asked.iter().copied().filter(|u| *u != caller.user_id).collect();
        asked.sort_unstable();
        asked.dedup();
        if asked.len() >= max {
            return Err(Error::TooLarge(format!("a call has at most {max} participants")));
        }
        if !everyone && asked.is_empty() {
            return Err(crate::call::CallError::NobodyToCall.into());
        }
        if everyone {
            // Nobody named: every other member.
            let members = self.inner.store.members(id).await?;
            if members.len() > max {
                return Err(Error::TooLarge(format!(
                    "a call has at most {max} participants: name whom to call"
                )));
            }
            return Ok(members
                .into_iter()
                .map(|m| m.user_id)
                .filter(|u| *u != caller.user_id)
                .collect());
        }
        for user in &asked {
            if self.inner.store.member(id, *user).await?.is_none() {
                return Err(Error::PermissionDenied(format!(
                    "user {user} is not a member of conversation {id}"
                )));
            }
        }
        Ok(asked)
    }

    /// Delivers the book's events and writes its records.
    fn carry_out(&self, actions: Vec<CallAction>) {
        for action in actions {
            match action {
                CallAction::Deliver {
                    call,
                    conversation,
                    to,
                    event,
                } => {
                    let kind = v1::event::Kind::Call(wire_event(call, conversation, event));
                    let envelope = self.envelope(conversation, audience(to), 0, kind);
                    self.dispatch(&envelope, None);
                }
                CallAction::Record {
                    call,
                    conversation,
                    record,
                } => {
                    let records = self.inner.calls.records.get_or_init(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        tokio::spawn(call_recorder(Arc::downgrade(&self.inner), rx));
                        tx
                    });
                    let _ = records.send((call, conversation, record));
                }
            }
        }
    }

    /// Starts the task that runs the book's time-outs (once).
    fn start_call_timer(&self) {
        self.inner.calls.rearm.notify_one();
        self.inner.calls.timer.get_or_init(|| {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(call_timer(weak, self.inner.calls.rearm.clone()));
        });
    }
}

/// Sleeps until the book's next deadline (or until woken because a new one
/// may be earlier), then runs the time-outs; ends with the engine.
async fn call_timer(weak: Weak<Inner>, rearm: Arc<tokio::sync::Notify>) {
    /// With no deadline, look again after this long anyway.
    const IDLE: Duration = Duration::from_secs(60);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let engine = Engine { inner };
        let next = engine.run_call_timeouts();
        let wait = next.map_or(IDLE, |at| {
            Duration::from_millis(at.saturating_sub(engine.now_ms()).max(0) as u64)
        });
        drop(engine);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = rearm.notified() => {}
        }
    }
}

/// Writes call records into their conversations' history, in the order the
/// book made them; each reaches the members as a message.
async fn call_recorder(weak: Weak<Inner>, mut records: mpsc::UnboundedReceiver<Record>) {
    while let Some((call, conversation, record)) = records.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let engine = Engine { inner };
        let content = v1::Content {
            kind: Some(v1::content::Kind::Call(summary(call, record))),
        };
        if let Err(e) = engine.append_system(conversation, content, None).await {
            tracing::warn!(call, conversation, error = %e, "calls: could not record a call");
        }
    }
}

/// The device as a caller (the checks of membership take one).
fn caller_of(from: &Endpoint) -> Caller {
    Caller {
        user_id: from.user,
        device: from.device.clone(),
        session_id: 0,
    }
}

/// The caller's device as a call endpoint; calls need a connected device.
fn endpoint(caller: &Caller) -> Result<Endpoint> {
    if caller.device.as_str().is_empty() {
        return Err(Error::InvalidArgument(
            "calls are made from a connected device (say `device_id` in Hello)".into(),
        ));
    }
    Ok(Endpoint {
        user: caller.user_id,
        device: caller.device.clone(),
    })
}

fn describe(book: &crate::call::CallBook, call: CallId) -> Option<v1::Call> {
    book.describe(call)
        .map(|(conversation, devices, media)| v1::Call {
            call_id: call,
            conversation_id: conversation,
            participants: devices.iter().map(peer).collect(),
            media: Some(wire_media(media)),
        })
}

fn audience(to: To) -> Audience {
    let address = |e: Endpoint| DeviceAddress {
        user_id: e.user,
        device: e.device,
    };
    match to {
        To::User(user) => Audience::users(vec![user]),
        To::Device(e) => Audience::device(address(e)),
        To::OtherDevices(e) => Audience::users(vec![e.user]).except_device(address(e)),
    }
}

fn peer(e: &Endpoint) -> v1::CallPeer {
    v1::CallPeer {
        user_id: e.user,
        device_id: e.device.as_str().to_owned(),
    }
}

fn media_from(m: v1::CallMedia) -> Media {
    Media {
        audio: m.audio,
        video: m.video,
        screen: m.screen,
    }
}

fn wire_media(m: Media) -> v1::CallMedia {
    v1::CallMedia {
        audio: m.audio,
        video: m.video,
        screen: m.screen,
    }
}

fn wire_event(call: CallId, conversation: ConversationId, event: CallEvent) -> v1::CallEvent {
    use v1::call_event::Kind;
    let kind = match event {
        CallEvent::Incoming { from, media, .. } => Kind::Incoming(v1::CallIncoming {
            from: Some(peer(&from)),
            media: Some(wire_media(media)),
        }),
        CallEvent::Ringing { by } => Kind::Ringing(peer(&by)),
        CallEvent::Joined { by } => Kind::Joined(peer(&by)),
        CallEvent::AnsweredElsewhere => Kind::AnsweredElsewhere(v1::Empty {}),
        CallEvent::Rejected { user } => Kind::RejectedBy(user),
        CallEvent::Busy { user } => Kind::BusyUser(user),
        CallEvent::NoAnswer { user } => Kind::NoAnswerUser(user),
        CallEvent::Signal { from, kind, payload } => Kind::Signal(v1::CallSignalEvent {
            from: Some(peer(&from)),
            kind: match kind {
                SignalKind::Offer => v1::SignalKind::Offer,
                SignalKind::Answer => v1::SignalKind::Answer,
                SignalKind::Candidate => v1::SignalKind::Candidate,
            } as i32,
            payload,
        }),
        CallEvent::Reconnecting { by } => Kind::Reconnecting(peer(&by)),
        CallEvent::Reconnected { by } => Kind::Reconnected(peer(&by)),
        CallEvent::Left { by } => Kind::Left(peer(&by)),
        CallEvent::Ended { reason } => Kind::Ended(wire_reason(reason) as i32),
    };
    v1::CallEvent {
        call_id: call,
        conversation_id: conversation,
        kind: Some(kind),
    }
}

fn wire_reason(reason: EndReason) -> v1::CallEndReason {
    match reason {
        EndReason::HungUp => v1::CallEndReason::HungUp,
        EndReason::NoAnswer => v1::CallEndReason::NoAnswer,
        EndReason::Cancelled => v1::CallEndReason::Cancelled,
        EndReason::Rejected => v1::CallEndReason::Rejected,
        EndReason::Busy => v1::CallEndReason::Busy,
        EndReason::Vanished => v1::CallEndReason::Vanished,
    }
}

fn summary(call: CallId, record: CallRecord) -> v1::CallSummary {
    let mut s = v1::CallSummary {
        call_id: call,
        ..Default::default()
    };
    match record {
        CallRecord::Started { caller, media } => {
            s.outcome = v1::CallOutcome::Started as i32;
            s.caller_id = caller;
            s.media = Some(wire_media(media));
        }
        CallRecord::Missed { caller } => {
            s.outcome = v1::CallOutcome::Missed as i32;
            s.caller_id = caller;
        }
        CallRecord::Rejected { caller } => {
            s.outcome = v1::CallOutcome::Rejected as i32;
            s.caller_id = caller;
        }
        CallRecord::Busy { caller } => {
            s.outcome = v1::CallOutcome::Busy as i32;
            s.caller_id = caller;
        }
        CallRecord::Ended {
            duration_ms,
            participants,
        } => {
            s.outcome = v1::CallOutcome::Ended as i32;
            s.duration_ms = duration_ms;
            s.participant_ids = participants;
        }
    }
    s
}
