//! One peer connection with one remote participant, driven by one task.
//!
//! The task owns the connection and handles, in order: commands from the
//! manager (signals received, make an offer, add or remove a track, open a
//! data channel) and the connection's own events, which the WebRTC handler
//! only forwards (a handler runs on the connection's driver and must not
//! wait for it). Negotiation follows the W3C "perfect negotiation" pattern:
//! after any local change it offers once the connection is stable; if both
//! sides offer at once, the polite side (see [`rules::polite`]) rolls its
//! offer back and answers, the other ignores the colliding offer.

use crate::calls::CallEvent;
mod negotiate;

use crate::CallError;
use crate::calls::media::{Binding, DataChannel, LocalTrack, RemoteTrack, webrtc_error};
use crate::calls::rules::{self, encode_candidate};
use im_protocol::v1;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use webrtc::data_channel::{DataChannel as RtcDataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

/// Where a peer's outgoing signals go: the server (`CallSignal`), or in
/// tests straight to the other peer.
#[async_trait::async_trait]
pub(crate) trait SignalSink: Send + Sync + 'static {
    async fn send(
        &self,
        call_id: u64,
        to_user_id: u64,
        kind: v1::SignalKind,
        payload: String,
    ) -> crate::Result<()>;
}

/// What the manager asks of a peer.
pub(crate) enum PeerCommand {
    /// A signal from the peer.
    Signal {
        kind: v1::SignalKind,
        payload: String,
    },
    /// We joined: make the first offer.
    Negotiate,
    AddTrack(LocalTrack),
    RemoveTrack(LocalTrack),
    OpenChannel {
        label: String,
        reply: oneshot::Sender<Result<DataChannel, CallError>>,
    },
}

/// Everything a peer needs to start.
pub(crate) struct PeerSetup {
    pub(crate) call_id: u64,
    pub(crate) me: u64,
    pub(crate) user_id: u64,
    /// Media of the call: the first offer asks to receive these even if we
    /// send none of them, so the other side can answer with its tracks.
    pub(crate) media: v1::CallMedia,
    /// Our tracks in the call: attached before the first offer or answer.
    pub(crate) tracks: Vec<LocalTrack>,
    /// A data channel to open as part of the first offer.
    pub(crate) auto_channel: Option<String>,
    pub(crate) udp_addrs: Vec<SocketAddr>,
    pub(crate) ice_servers: Vec<v1::IceServer>,
    pub(crate) open_timeout: Duration,
    pub(crate) signals: Arc<dyn SignalSink>,
    pub(crate) events: mpsc::UnboundedSender<CallEvent>,
}

/// The manager's handle on a peer task. Dropping it closes the connection.
pub(crate) struct PeerHandle {
    tx: mpsc::UnboundedSender<PeerCommand>,
    task: tokio::task::JoinHandle<()>,
}

impl PeerHandle {
    pub(crate) fn send(&self, command: PeerCommand) {
        let _ = self.tx.send(command);
    }

    /// Where commands to the peer go (tests wire two peers directly).
    #[cfg(test)]
    pub(crate) fn commands(&self) -> mpsc::UnboundedSender<PeerCommand> {
        self.tx.clone()
    }

    /// Closes the connection and waits (at most 3 s) until it is closed.
    pub(crate) async fn close(self) {
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// Starts the task of a peer connection.
pub(crate) fn spawn(setup: PeerSetup) -> PeerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(setup, rx));
    PeerHandle { tx, task }
}

/// What the WebRTC handler forwards to the peer task.
enum Internal {
    Candidate(RTCIceCandidateInit),
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
    Channel(Arc<dyn RtcDataChannel>),
    /// The SCTP association is up (a channel of ours opened).
    SctpReady,
}

struct Forward(mpsc::UnboundedSender<Internal>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Forward {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json()
            && !init.candidate.is_empty()
        {
            let _ = self.0.send(Internal::Candidate(init));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(Internal::State(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn RtcDataChannel>) {
        let _ = self.0.send(Internal::Channel(channel));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.0.send(Internal::Track(track));
    }
}

/// Builds a peer connection: default codecs (Opus, VP8...) and interceptors
/// (NACK, RTCP reports), no mDNS (no multicast socket; candidates are plain
/// addresses), UDP sockets on `udp_addrs` only.
async fn build(setup: &PeerSetup, forward: Forward) -> Result<Arc<dyn PeerConnection>, CallError> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().map_err(webrtc_error)?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).map_err(webrtc_error)?;
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let servers = setup
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(servers).build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(forward))
        .with_udp_addrs(setup.udp_addrs.clone())
        .build()
        .await
        .map_err(webrtc_error)?;
    Ok(Arc::new(pc))
}

struct Peer {
    setup: PeerSetup,
    pc: Arc<dyn PeerConnection>,
    /// Signals to the peer, sent in order by a task of their own.
    out: mpsc::UnboundedSender<(v1::SignalKind, String)>,
    /// We may start a negotiation: we were told to make the first offer, or
    /// the first offer from the peer has been answered.
    may_offer: bool,
    /// A local change waits for the next offer.
    needs_offer: bool,
    polite: bool,
    /// Our last colliding offer was ignored by us (impolite side): errors
    /// of its candidates are expected.
    ignoring_offer: bool,
    /// Tracks to attach at the first negotiation.
    pending_tracks: Vec<LocalTrack>,
    attached: Vec<(LocalTrack, Arc<Binding>)>,
    /// Candidates that came before the remote description.
    early_candidates: Vec<RTCIceCandidateInit>,
    /// A data channel was created but SCTP is not negotiated yet.
    channels_pending: bool,
    connected: bool,
    /// Remote tracks announced to the application, by track id, with the
    /// switch that ends each.
    remote_tracks: Vec<(String, watch::Sender<bool>)>,
    /// Our channel that puts SCTP into the first offer (see [`SCTP_LABEL`]).
    sctp_channel: Option<Arc<dyn RtcDataChannel>>,
    /// A data channel has opened, so the SCTP association is up. A channel
    /// created while the association is still shaking hands is never
    /// opened by webrtc 0.21, so requests wait for this.
    sctp_ready: bool,
    /// `sctp_ready` for the task that wakes the driver until then.
    sctp_up_flag: Arc<AtomicBool>,
    /// Channel requests waiting for `sctp_ready`.
    waiting_channels: Vec<(String, oneshot::Sender<Result<DataChannel, CallError>>)>,
    /// To send ourselves `SctpReady` from a waiting task.
    internal: mpsc::UnboundedSender<Internal>,
}

/// The label of the data channel the first offer always carries, so that
/// SCTP is negotiated with the connection: webrtc 0.21 starts the SCTP
/// association only when DTLS connects, so a data channel added by a later
/// renegotiation would never open. Never shown to the application.
const SCTP_LABEL: &str = "im-sctp";

async fn run(mut setup: PeerSetup, mut commands: mpsc::UnboundedReceiver<PeerCommand>) {
    let (internal_tx, mut internal) = mpsc::unbounded_channel();
    let pc = match build(&setup, Forward(internal_tx.clone())).await {
        Ok(pc) => pc,
        Err(error) => {
            let _ = setup.events.send(CallEvent::Error {
                call_id: setup.call_id,
                user_id: setup.user_id,
                error,
            });
            return;
        }
    };
    let (out, mut out_rx) = mpsc::unbounded_channel::<(v1::SignalKind, String)>();
    let (sink, call_id, to) = (setup.signals.clone(), setup.call_id, setup.user_id);
    tokio::spawn(async move {
        while let Some((kind, payload)) = out_rx.recv().await {
            if let Err(e) = sink.send(call_id, to, kind, payload).await {
                tracing::debug!(call_id, to, ?kind, error = %e, "signal not delivered");
            }
        }
    });
    let pending_tracks = std::mem::take(&mut setup.tracks);
    let mut peer = Peer {
        polite: rules::polite(setup.me, setup.user_id),
        setup,
        pc,
        out,
        may_offer: false,
        needs_offer: false,
        ignoring_offer: false,
        pending_tracks,
        attached: Vec::new(),
        early_candidates: Vec::new(),
        channels_pending: false,
        connected: false,
        remote_tracks: Vec::new(),
        sctp_channel: None,
        sctp_ready: false,
        sctp_up_flag: Arc::new(AtomicBool::new(false)),
        waiting_channels: Vec::new(),
        internal: internal_tx,
    };
    loop {
        let result = tokio::select! {
            command = commands.recv() => match command {
                Some(command) => peer.command(command).await,
                None => break,
            },
            event = internal.recv() => match event {
                Some(event) => peer.internal(event).await,
                None => break,
            },
        };
        if let Err(error) = result {
            peer.emit(CallEvent::Error {
                call_id: peer.setup.call_id,
                user_id: peer.setup.user_id,
                error,
            });
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), peer.pc.close()).await;
    for (track, _) in &peer.attached {
        track.take_binding(peer.setup.user_id);
    }
}

impl Peer {
    fn emit(&self, event: CallEvent) {
        let _ = self.setup.events.send(event);
    }

    fn signal(&self, kind: v1::SignalKind, payload: String) {
        let _ = self.out.send((kind, payload));
    }

    async fn command(&mut self, command: PeerCommand) -> Result<(), CallError> {
        match command {
            PeerCommand::Signal { kind, payload } => match kind {
                v1::SignalKind::Offer => self.remote_offer(payload).await,
                v1::SignalKind::Answer => self.remote_answer(payload).await,
                v1::SignalKind::Candidate => self.remote_candidate(&payload).await,
                v1::SignalKind::Unspecified => Err(CallError::BadSignal("signal of no kind".into())),
            },
            PeerCommand::Negotiate => {
                self.may_offer = true;
                for track in std::mem::take(&mut self.pending_tracks) {
                    self.attach(track).await?;
                }
                self.receive_call_media().await?;
                self.first_channel(self.setup.auto_channel.clone()).await?;
                self.needs_offer = true;
                self.maybe_offer().await
            }
            PeerCommand::AddTrack(track) => {
                if self.may_offer {
                    self.attach(track).await?;
                    self.needs_offer = true;
                    self.maybe_offer().await
                } else {
                    self.pending_tracks.push(track);
                    Ok(())
                }
            }
            PeerCommand::RemoveTrack(track) => {
                self.pending_tracks.retain(|t| !t.same(&track));
                if let Some(i) = self.attached.iter().position(|(t, _)| t.same(&track)) {
                    let (track, binding) = self.attached.remove(i);
                    track.take_binding(self.setup.user_id);
                    self.pc
                        .remove_track(&binding.sender)
                        .await
                        .map_err(webrtc_error)?;
                    self.needs_offer = true;
                    self.maybe_offer().await?;
                }
                Ok(())
            }
            PeerCommand::OpenChannel { label, reply } => {
                if !self.sctp_ready && self.has_sctp().await {
                    self.waiting_channels.push((label, reply));
                    return Ok(());
                }
                self.open_channel(label, reply).await
            }
        }
    }

    async fn open_channel(
        &mut self,
        label: String,
        reply: oneshot::Sender<Result<DataChannel, CallError>>,
    ) -> Result<(), CallError> {
        let channel = match self.create_channel(&label).await {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return Ok(());
            }
        };
        let (user_id, timeout) = (self.setup.user_id, self.setup.open_timeout);
        tokio::spawn(async move {
            let _ = reply.send(wait_open(user_id, label, channel, timeout).await);
        });
        if self.channels_pending {
            self.needs_offer = true;
        }
        self.maybe_offer().await
    }

    /// The channel that comes with the first negotiation: the application's
    /// automatic one (`label`), or the hidden [`SCTP_LABEL`] one. A task
    /// waits until it opens (then the association is up), and meanwhile
    /// wakes the connection's driver every 5 ms: webrtc 0.21 sends the SCTP
    /// packets that follow DTLS (INIT) and the association (channel OPEN)
    /// only at the driver's next timer, about 200 ms later each, unless
    /// something wakes it.
    async fn first_channel(&mut self, label: Option<String>) -> Result<(), CallError> {
        let channel = self
            .create_channel(label.as_deref().unwrap_or(SCTP_LABEL))
            .await?;
        if label.is_none() {
            self.sctp_channel = Some(channel.clone());
        }
        let (events, user_id, call_id) = (self.setup.events.clone(), self.setup.user_id, self.setup.call_id);
        let (timeout, internal) = (self.setup.open_timeout, self.internal.clone());
        let (kick, ready) = (channel.clone(), self.sctp_up_flag.clone());
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + timeout;
            while !ready.load(Ordering::Acquire) && tokio::time::Instant::now() < until {
                // Any call on a channel wakes the driver; this one changes nothing.
                if kick.set_buffered_amount_low_threshold(0).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tokio::spawn(async move {
            let opened = wait_open(user_id, label.clone().unwrap_or_default(), channel, timeout).await;
            if opened.is_ok() {
                let _ = internal.send(Internal::SctpReady);
            }
            let event = match (label, opened) {
                (Some(_), Ok(channel)) => CallEvent::DataChannel { call_id, channel },
                (_, Err(error)) => CallEvent::Error {
                    call_id,
                    user_id,
                    error,
                },
                (None, Ok(_)) => return,
            };
            let _ = events.send(event);
        });
        Ok(())
    }

    /// The association is up: open the channels that waited for it.
    async fn sctp_up(&mut self) -> Result<(), CallError> {
        self.sctp_ready = true;
        self.sctp_up_flag.store(true, Ordering::Release);
        for (label, reply) in std::mem::take(&mut self.waiting_channels) {
            self.open_channel(label, reply).await?;
        }
        Ok(())
    }

    async fn internal(&mut self, event: Internal) -> Result<(), CallError> {
        match event {
            Internal::Candidate(candidate) => {
                self.signal(v1::SignalKind::Candidate, encode_candidate(&candidate));
            }
            Internal::State(state) => match state {
                RTCPeerConnectionState::Connected if !self.connected => {
                    self.connected = true;
                    self.emit(CallEvent::Connected {
                        call_id: self.setup.call_id,
                        user_id: self.setup.user_id,
                    });
                }
                RTCPeerConnectionState::Failed => {
                    self.connected = false;
                    self.emit(CallEvent::ConnectionFailed {
                        call_id: self.setup.call_id,
                        user_id: self.setup.user_id,
                    });
                }
                _ => {}
            },
            Internal::Track(track) => {
                let (track, end) = RemoteTrack::new(self.setup.user_id, track).await;
                self.remote_tracks.push((track.id().to_owned(), end));
                self.emit(CallEvent::RemoteTrack {
                    call_id: self.setup.call_id,
                    track,
                });
            }
            Internal::Channel(channel) => {
                let label = channel.label().await.unwrap_or_default();
                if label == SCTP_LABEL {
                    // The peer's hidden channel; ours is kept (if any).
                    self.sctp_channel.get_or_insert(channel);
                } else {
                    let channel = DataChannel::new(self.setup.user_id, label, channel);
                    self.emit(CallEvent::DataChannel {
                        call_id: self.setup.call_id,
                        channel,
                    });
                }
                // The peer's channel opened: the association is up.
                self.sctp_up().await?;
            }
            Internal::SctpReady => self.sctp_up().await?,
        }
        Ok(())
    }

    /// Adds a local track to the connection (one sample track per peer).
    async fn attach(&mut self, track: LocalTrack) -> Result<(), CallError> {
        let (local, ssrc) = Binding::track(track.kind(), track.id())?;
        let sender = self
            .pc
            .add_track(local.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_error)?;
        let binding = Arc::new(Binding::new(self.setup.user_id, local, ssrc, sender));
        track.add_binding(binding.clone());
        self.attached.push((track, binding));
        Ok(())
    }

    /// Before the first offer: a receiving transceiver for each medium of
    /// the call we do not send, so the answer can carry the peer's tracks.
    async fn receive_call_media(&mut self) -> Result<(), CallError> {
        let sending = |kind: rtc::rtp_transceiver::rtp_sender::RtpCodecKind| {
            self.attached.iter().any(|(t, _)| t.kind().rtp_kind() == kind)
        };
        let media = &self.setup.media;
        let mut wanted = Vec::new();
        if media.audio || !(media.video || media.screen || self.setup.auto_channel.is_some()) {
            wanted.push(super::TrackKind::Audio.rtp_kind());
        }
        if media.video || media.screen {
            wanted.push(super::TrackKind::Video.rtp_kind());
        }
        wanted.retain(|&k| !sending(k));
        for kind in wanted {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            };
            self.pc
                .add_transceiver_from_kind(kind, Some(init))
                .await
                .map_err(webrtc_error)?;
        }
        Ok(())
    }

    async fn create_channel(&mut self, label: &str) -> Result<Arc<dyn RtcDataChannel>, CallError> {
        let channel = self
            .pc
            .create_data_channel(label, None)
            .await
            .map_err(webrtc_error)?;
        if !self.has_sctp().await {
            // Offered with the next negotiation (see `unnegotiated`).
            self.channels_pending = true;
        }
        Ok(channel)
    }
}

/// Waits (bounded) until a channel we created is open.
async fn wait_open(
    user_id: u64,
    label: String,
    channel: Arc<dyn RtcDataChannel>,
    timeout: Duration,
) -> Result<DataChannel, CallError> {
    let opened = tokio::time::timeout(timeout, async {
        loop {
            match channel.poll().await {
                Some(DataChannelEvent::OnOpen) => return Ok(()),
                Some(DataChannelEvent::OnClose) | None => {
                    return Err(CallError::WebRtc(format!(
                        "data channel {label} closed before it opened"
                    )));
                }
                Some(_) => {}
            }
        }
    })
    .await;
    match opened {
        Ok(Ok(())) => Ok(DataChannel::new(user_id, label, channel)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CallError::Timeout(format!("data channel {label} to open"))),
    }
}
