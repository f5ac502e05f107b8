//! The calls manager: one task (an actor) applies the server's call events
//! and the application's lifecycle requests (start, accept, reject, hang up)
//! in one order, so a request and the events about its call never race.
//! Track and data-channel requests go straight to the peer tasks.

use super::media::LocalTrack;
use super::peer::{self, PeerCommand, PeerHandle, PeerSetup, SignalSink};
use super::rules::{self, CallView, IncomingDecision, Phase};
use super::{CallConfig, CallEvent, DataChannel, EndReason, TrackKind};
use crate::{CallError, CallEventReceiver, Client, Result};
use im_protocol::v1::{self, call_event::Kind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The stream of [`CallEvent`]s of a [`Calls`] manager.
#[derive(Debug)]
pub struct CallEvents {
    rx: mpsc::UnboundedReceiver<CallEvent>,
}

impl CallEvents {
    /// The next event; `None` once the manager has stopped (every [`Calls`]
    /// handle dropped, or the client closed) and everything was read.
    pub async fn next(&mut self) -> Option<CallEvent> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<CallEvent> {
        self.rx.try_recv().ok()
    }
}

/// A call this device knows.
struct CallState {
    conversation_id: u64,
    phase: Phase,
    media: v1::CallMedia,
    /// Whom we invited (our own call).
    invitees: Vec<u64>,
    /// The caller (a call that rang here).
    from: Option<v1::CallPeer>,
    ice_servers: Vec<v1::IceServer>,
    /// Our tracks: every peer gets each one.
    tracks: Vec<LocalTrack>,
    /// One peer connection per remote user.
    peers: HashMap<u64, PeerHandle>,
}

struct Core {
    client: Client,
    config: CallConfig,
    me: u64,
    calls: Mutex<HashMap<u64, CallState>>,
    events: mpsc::UnboundedSender<CallEvent>,
    signals: Arc<dyn SignalSink>,
}

struct ClientSignals(Client);

#[async_trait::async_trait]
impl SignalSink for ClientSignals {
    async fn send(&self, call_id: u64, to_user_id: u64, kind: v1::SignalKind, payload: String) -> Result<()> {
        self.0.call_signal(call_id, to_user_id, kind, payload).await
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// Lifecycle requests, applied by the manager's task.
enum Op {
    Start {
        conversation_id: u64,
        invitees: Vec<u64>,
        media: v1::CallMedia,
        reply: Reply<v1::Call>,
    },
    Accept {
        call_id: u64,
        reply: Reply<v1::Call>,
    },
    Reject {
        call_id: u64,
        reply: Reply<()>,
    },
    HangUp {
        call_id: u64,
        reply: Reply<()>,
    },
}

/// The calls manager of one [`Client`]. Cheap to clone; when every clone is
/// dropped the manager hangs up nothing but closes its peer connections and
/// stops.
#[derive(Clone)]
pub struct Calls {
    core: Arc<Core>,
    ops: mpsc::UnboundedSender<Op>,
}

impl Calls {
    /// Starts a manager for `client`: from now on the client's call events
    /// go to it (not to the client's [`Events`](crate::Events)).
    pub fn new(client: &Client, config: CallConfig) -> (Calls, CallEvents) {
        let raw = client.take_call_events();
        let (events, rx) = mpsc::unbounded_channel();
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            client: client.clone(),
            config,
            me: client.user().id,
            calls: Mutex::new(HashMap::new()),
            events,
            signals: Arc::new(ClientSignals(client.clone())),
        });
        tokio::spawn(run(core.clone(), raw, ops_rx));
        (Calls { core, ops }, CallEvents { rx })
    }

    async fn op<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(make(tx)).map_err(|_| CallError::Stopped)?;
        rx.await.map_err(|_| CallError::Stopped)?
    }

    /// Calls `invitees` (empty: every other member) in a conversation. The
    /// answer is the call; if one of them was already calling us there, it
    /// is their call, joined (and we make the offers).
    pub async fn start(
        &self,
        conversation_id: u64,
        invitees: &[u64],
        media: v1::CallMedia,
    ) -> Result<v1::Call> {
        let invitees = invitees.to_vec();
        self.op(|reply| Op::Start {
            conversation_id,
            invitees,
            media,
            reply,
        })
        .await
    }

    /// Takes a call that rings here; we make the offer to everyone in it.
    pub async fn accept(&self, call_id: u64) -> Result<v1::Call> {
        self.op(|reply| Op::Accept { call_id, reply }).await
    }

    /// Declines a call that rings here (on all our devices).
    pub async fn reject(&self, call_id: u64) -> Result<()> {
        self.op(|reply| Op::Reject { call_id, reply }).await
    }

    /// Leaves a call (the caller, before anyone answered, cancels it) and
    /// closes its peer connections. No [`CallEvent::Ended`] follows for it.
    pub async fn hang_up(&self, call_id: u64) -> Result<()> {
        self.op(|reply| Op::HangUp { call_id, reply }).await
    }

    /// Adds a track we send to every participant, now and later; mid-call
    /// this renegotiates each connection (e.g. starting a screen share).
    pub async fn add_track(&self, call_id: u64, kind: TrackKind) -> Result<LocalTrack> {
        let mut calls = self.core.calls.lock();
        let call = calls.get_mut(&call_id).ok_or(CallError::UnknownCall(call_id))?;
        if call.phase == Phase::Incoming {
            return Err(CallError::WrongState {
                call_id,
                reason: "accept the call before adding tracks".into(),
            }
            .into());
        }
        let track = LocalTrack::new(call_id, kind);
        for peer in call.peers.values() {
            peer.send(PeerCommand::AddTrack(track.clone()));
        }
        call.tracks.push(track.clone());
        Ok(track)
    }

    /// Stops sending a track to everyone (renegotiates each connection).
    pub async fn remove_track(&self, track: &LocalTrack) -> Result<()> {
        let call_id = track.call_id();
        let mut calls = self.core.calls.lock();
        let call = calls.get_mut(&call_id).ok_or(CallError::UnknownCall(call_id))?;
        call.tracks.retain(|t| !t.same(track));
        track.mark_removed();
        for peer in call.peers.values() {
            peer.send(PeerCommand::RemoveTrack(track.clone()));
        }
        Ok(())
    }

    /// Opens a data channel with one participant (renegotiates if the
    /// connection has none yet) and waits until it is open, at most
    /// [`CallConfig::open_timeout`].
    pub async fn open_data_channel(&self, call_id: u64, user_id: u64, label: &str) -> Result<DataChannel> {
        let (reply, rx) = oneshot::channel();
        {
            let calls = self.core.calls.lock();
            let call = calls.get(&call_id).ok_or(CallError::UnknownCall(call_id))?;
            let peer = call
                .peers
                .get(&user_id)
                .ok_or(CallError::UnknownPeer { call_id, user_id })?;
            peer.send(PeerCommand::OpenChannel {
                label: label.to_owned(),
                reply,
            });
        }
        // The peer opens it within `open_timeout` once its SCTP association
        // is up; waiting for that is bounded too.
        let limit = self.core.config.open_timeout * 2;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(opened)) => Ok(opened?),
            Ok(Err(_)) => Err(CallError::UnknownPeer { call_id, user_id }.into()),
            Err(_) => Err(CallError::Timeout(format!("data channel {label} to open")).into()),
        }
    }

    /// The calls this device is in or is rung for, by id, with the users it
    /// has a peer connection with.
    pub fn calls(&self) -> Vec<(u64, Vec<u64>)> {
        let calls = self.core.calls.lock();
        let mut list: Vec<(u64, Vec<u64>)> = calls
            .iter()
            .map(|(&id, c)| {
                let mut peers: Vec<u64> = c.peers.keys().copied().collect();
                peers.sort_unstable();
                (id, peers)
            })
            .collect();
        list.sort_unstable();
        list
    }
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls")
            .field("user_id", &self.core.me)
            .field("calls", &self.calls())
            .finish()
    }
}

/// The manager's task: events and requests, one at a time. Ends when every
/// [`Calls`] handle is dropped or the client is closed.
async fn run(core: Arc<Core>, mut raw: CallEventReceiver, mut ops: mpsc::UnboundedReceiver<Op>) {
    loop {
        tokio::select! {
            op = ops.recv() => match op {
                Some(op) => core.apply(op).await,
                None => break,
            },
            event = raw.next() => match event {
                Some(event) => core.on_event(event).await,
                None => break,
            },
        }
    }
    let all: Vec<CallState> = core.calls.lock().drain().map(|(_, c)| c).collect();
    for call in all {
        for (_, peer) in call.peers {
            peer.close().await;
        }
    }
}

impl Core {
    fn emit(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    async fn ice_servers(&self) -> Result<Vec<v1::IceServer>> {
        match &self.config.ice_servers {
            Some(servers) => Ok(servers.clone()),
            None => self.client.ice_servers().await,
        }
    }

    /// The peer connection with `user_id` in `call`, made if there is none.
    fn peer<'a>(&self, call_id: u64, call: &'a mut CallState, user_id: u64) -> &'a PeerHandle {
        call.peers.entry(user_id).or_insert_with(|| {
            peer::spawn(PeerSetup {
                call_id,
                me: self.me,
                user_id,
                media: call.media,
                tracks: call.tracks.clone(),
                auto_channel: self.config.data_channel.clone(),
                udp_addrs: self.config.udp_addrs.clone(),
                ice_servers: call.ice_servers.clone(),
                open_timeout: self.config.open_timeout,
                signals: self.signals.clone(),
                events: self.events.clone(),
            })
        })
    }

    /// Removes a call and closes its connections.
    async fn drop_call(&self, call_id: u64) -> Option<Phase> {
        let call = self.calls.lock().remove(&call_id)?;
        for track in &call.tracks {
            track.mark_removed();
        }
        for (_, peer) in call.peers {
            peer.close().await;
        }
        Some(call.phase)
    }

    async fn apply(&self, op: Op) {
        match op {
            Op::Start {
                conversation_id,
                invitees,
                media,
                reply,
            } => {
                let _ = reply.send(self.start(conversation_id, invitees, media).await);
            }
            Op::Accept { call_id, reply } => {
                let _ = reply.send(self.accept(call_id).await);
            }
            Op::Reject { call_id, reply } => {
                let result = self.client.call_reject(call_id).await;
                self.drop_call(call_id).await;
                let _ = reply.send(result);
            }
            Op::HangUp { call_id, reply } => {
                let _ = reply.send(self.hang_up(call_id).await);
            }
        }
    }

    async fn start(
        &self,
        conversation_id: u64,
        invitees: Vec<u64>,
        media: v1::CallMedia,
    ) -> Result<v1::Call> {
        // Glare before our invite: the person we call is ringing us in this
        // conversation already (perhaps through another node); take theirs.
        let ringing_us = self.calls.lock().iter().find_map(|(&id, c)| {
            let from = c.from.as_ref()?.user_id;
            let theirs = c.phase == Phase::Incoming
                && c.conversation_id == conversation_id
                && (invitees.is_empty() || invitees.contains(&from));
            theirs.then_some(id)
        });
        if let Some(call_id) = ringing_us {
            return self.accept(call_id).await;
        }
        let ice_servers = self.ice_servers().await?;
        let call = self.client.call_invite(conversation_id, &invitees, media).await?;
        let targets = rules::offer_targets(self.me, &call.participants);
        let mut calls = self.calls.lock();
        let state = calls.entry(call.call_id).or_insert(CallState {
            conversation_id,
            phase: Phase::Outgoing,
            media: call.media.unwrap_or(media),
            invitees,
            from: None,
            ice_servers,
            tracks: Vec::new(),
            peers: HashMap::new(),
        });
        // Glare on the server: the answer is a call we joined; we offer.
        if !targets.is_empty() {
            state.phase = Phase::Active;
            for user_id in targets {
                self.peer(call.call_id, state, user_id)
                    .send(PeerCommand::Negotiate);
            }
        }
        Ok(call)
    }

    async fn accept(&self, call_id: u64) -> Result<v1::Call> {
        match self.calls.lock().get(&call_id) {
            Some(c) if c.phase == Phase::Incoming => {}
            Some(_) => {
                return Err(CallError::WrongState {
                    call_id,
                    reason: "not ringing here".into(),
                }
                .into());
            }
            None => return Err(CallError::UnknownCall(call_id).into()),
        }
        let ice_servers = self.ice_servers().await?;
        let call = match self.client.call_accept(call_id).await {
            Ok(call) => call,
            Err(e) => {
                if matches!(e.code(), Some(v1::ErrorCode::NotFound)) {
                    self.drop_call(call_id).await;
                }
                return Err(e);
            }
        };
        let mut calls = self.calls.lock();
        let state = calls.get_mut(&call_id).ok_or(CallError::UnknownCall(call_id))?;
        state.phase = Phase::Active;
        state.ice_servers = ice_servers;
        for user_id in rules::offer_targets(self.me, &call.participants) {
            self.peer(call_id, state, user_id).send(PeerCommand::Negotiate);
        }
        Ok(call)
    }

    async fn hang_up(&self, call_id: u64) -> Result<()> {
        if self.drop_call(call_id).await.is_none() {
            return Err(CallError::UnknownCall(call_id).into());
        }
        match self.client.call_hang_up(call_id).await {
            // The call ended on the server meanwhile: it is over either way.
            Err(e) if e.code() == Some(v1::ErrorCode::NotFound) => Ok(()),
            other => other,
        }
    }

    fn views(&self) -> Vec<CallView> {
        self.calls
            .lock()
            .iter()
            .map(|(&call_id, c)| CallView {
                call_id,
                conversation_id: c.conversation_id,
                phase: c.phase,
                invitees: c.invitees.clone(),
            })
            .collect()
    }

    async fn on_event(&self, event: v1::CallEvent) {
        let call_id = event.call_id;
        let Some(kind) = event.kind else { return };
        match kind {
            Kind::Incoming(incoming) => self.incoming(call_id, event.conversation_id, incoming).await,
            Kind::Ringing(peer) => self.emit(CallEvent::Ringing { call_id, peer }),
            Kind::Joined(peer) => {
                if peer.user_id == self.me {
                    return;
                }
                let mut calls = self.calls.lock();
                let Some(call) = calls.get_mut(&call_id).filter(|c| c.phase != Phase::Incoming) else {
                    return;
                };
                call.phase = Phase::Active;
                self.peer(call_id, call, peer.user_id);
                drop(calls);
                self.emit(CallEvent::PeerJoined { call_id, peer });
            }
            Kind::AnsweredElsewhere(_) => {
                if self.drop_call(call_id).await.is_some() {
                    self.emit(CallEvent::AnsweredElsewhere { call_id });
                }
            }
            Kind::RejectedBy(user_id) => self.emit(CallEvent::Rejected { call_id, user_id }),
            Kind::BusyUser(user_id) => self.emit(CallEvent::Busy { call_id, user_id }),
            Kind::NoAnswerUser(user_id) => self.emit(CallEvent::NoAnswer { call_id, user_id }),
            Kind::Signal(signal) => {
                let Some(from) = signal.from else { return };
                let kind = v1::SignalKind::try_from(signal.kind).unwrap_or(v1::SignalKind::Unspecified);
                let mut calls = self.calls.lock();
                match calls.get_mut(&call_id) {
                    Some(call) if call.phase != Phase::Incoming => {
                        call.phase = Phase::Active;
                        self.peer(call_id, call, from.user_id).send(PeerCommand::Signal {
                            kind,
                            payload: signal.payload,
                        });
                    }
                    _ => tracing::debug!(call_id, "a signal for a call we are not in: dropped"),
                }
            }
            Kind::Reconnecting(peer) => self.emit(CallEvent::Reconnecting { call_id, peer }),
            Kind::Reconnected(peer) => self.emit(CallEvent::Reconnected { call_id, peer }),
            Kind::Left(peer) => {
                let handle = self
                    .calls
                    .lock()
                    .get_mut(&call_id)
                    .and_then(|c| c.peers.remove(&peer.user_id));
                if let Some(handle) = handle {
                    handle.close().await;
                }
                self.emit(CallEvent::PeerLeft { call_id, peer });
            }
            Kind::Ended(reason) => {
                let reason = EndReason::from(v1::CallEndReason::try_from(reason).unwrap_or_default());
                let from = self.calls.lock().get(&call_id).and_then(|c| c.from.clone());
                if let Some(phase) = self.drop_call(call_id).await {
                    if rules::missed(phase, reason) {
                        self.emit(CallEvent::Missed {
                            call_id,
                            from: from.unwrap_or_default(),
                        });
                    }
                    self.emit(CallEvent::Ended { call_id, reason });
                }
            }
        }
    }

    async fn incoming(&self, call_id: u64, conversation_id: u64, incoming: v1::CallIncoming) {
        let from = incoming.from.unwrap_or_default();
        let media = incoming.media.unwrap_or_default();
        let decision = rules::decide_incoming(&self.views(), call_id, conversation_id, from.user_id);
        tracing::debug!(call_id, ?decision, "incoming call");
        let ring = |calls: &mut HashMap<u64, CallState>| {
            calls.insert(
                call_id,
                CallState {
                    conversation_id,
                    phase: Phase::Incoming,
                    media,
                    invitees: Vec::new(),
                    from: Some(from.clone()),
                    ice_servers: Vec::new(),
                    tracks: Vec::new(),
                    peers: HashMap::new(),
                },
            );
        };
        match decision {
            IncomingDecision::Ring => {
                ring(&mut self.calls.lock());
                if let Err(e) = self.client.call_ringing(call_id).await {
                    tracing::debug!(call_id, error = %e, "RINGING not sent");
                }
                self.emit(CallEvent::Incoming {
                    call_id,
                    conversation_id,
                    from,
                    media,
                });
            }
            IncomingDecision::Busy => {
                if let Err(e) = self.client.call_busy(call_id).await {
                    tracing::debug!(call_id, error = %e, "BUSY not sent");
                }
                self.emit(CallEvent::BusyDeclined { call_id, from });
            }
            IncomingDecision::AcceptReplacing { ours } => {
                if let Err(e) = self.hang_up(ours).await {
                    tracing::debug!(call_id = ours, error = %e, "hanging up our side of glare");
                }
                ring(&mut self.calls.lock());
                match self.accept(call_id).await {
                    Ok(_) => self.emit(CallEvent::Replaced {
                        old_call_id: ours,
                        call_id,
                    }),
                    Err(e) => {
                        tracing::debug!(call_id, error = %e, "accepting the other side of glare failed");
                        self.drop_call(call_id).await;
                        self.emit(CallEvent::Ended {
                            call_id: ours,
                            reason: EndReason::Other,
                        });
                    }
                }
            }
            IncomingDecision::KeepOurs { ours } => {
                tracing::debug!(call_id, ours, "glare: ours has the lower id and stands");
            }
            IncomingDecision::Duplicate => {}
        }
    }
}
