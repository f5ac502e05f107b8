//! What flows in a call: local tracks the application writes encoded samples
//! to, remote tracks it reads RTP packets from, and data channels.

use crate::CallError;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use webrtc::data_channel::{DataChannel as RtcDataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

/// An RTP packet of a remote track (header and payload), from the `rtc` crate.
pub use rtc::rtp::Packet as RtpPacket;

/// The kinds of media a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Voice: Opus, 48 kHz, 20 ms frames are usual.
    Audio,
    /// Camera: VP8.
    Video,
    /// Screen share: VP8, a video track of its own.
    Screen,
}

impl TrackKind {
    /// The media stream id the track is sent under; the receiving side tells
    /// a screen share from a camera by it.
    pub fn stream_id(self) -> &'static str {
        match self {
            TrackKind::Audio => "im-audio",
            TrackKind::Video => "im-video",
            TrackKind::Screen => "im-screen",
        }
    }

    /// The kind of a remote track sent under `stream_id` with RTP kind
    /// `rtp_kind` (a stream id from another client maps by its RTP kind).
    pub(crate) fn from_remote(stream_id: &str, rtp_kind: RtpCodecKind) -> TrackKind {
        match stream_id {
            "im-screen" => TrackKind::Screen,
            "im-video" => TrackKind::Video,
            "im-audio" => TrackKind::Audio,
            _ if rtp_kind == RtpCodecKind::Audio => TrackKind::Audio,
            _ => TrackKind::Video,
        }
    }

    pub(crate) fn rtp_kind(self) -> RtpCodecKind {
        match self {
            TrackKind::Audio => RtpCodecKind::Audio,
            TrackKind::Video | TrackKind::Screen => RtpCodecKind::Video,
        }
    }

    /// The codec samples of this kind must be encoded with.
    pub fn codec(self) -> RTCRtpCodec {
        match self {
            TrackKind::Audio => RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            TrackKind::Video | TrackKind::Screen => RTCRtpCodec {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: String::new(),
                rtcp_feedback: vec![],
            },
        }
    }
}

/// One peer connection's copy of a local track (a WebRTC track binds to one
/// sender, so a mesh call has one per peer).
pub(crate) struct Binding {
    pub(crate) user_id: u64,
    pub(crate) track: Arc<TrackLocalStaticSample>,
    pub(crate) sender: Arc<dyn RtpSender>,
    ssrc: u32,
    /// The negotiated payload type; `u16::MAX` until known.
    payload_type: AtomicU16,
}

impl Binding {
    /// A new sample track of `kind` for one peer, with a random SSRC.
    pub(crate) fn track(kind: TrackKind, id: &str) -> Result<(Arc<TrackLocalStaticSample>, u32), CallError> {
        let ssrc: u32 = rand::random();
        let track = MediaStreamTrack::new(
            kind.stream_id().to_owned(),
            id.to_owned(),
            id.to_owned(),
            kind.rtp_kind(),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: kind.codec(),
                ..Default::default()
            }],
        );
        let track = TrackLocalStaticSample::new(Instant::now(), track).map_err(webrtc_error)?;
        Ok((Arc::new(track), ssrc))
    }

    pub(crate) fn new(
        user_id: u64,
        track: Arc<TrackLocalStaticSample>,
        ssrc: u32,
        sender: Arc<dyn RtpSender>,
    ) -> Self {
        Binding {
            user_id,
            track,
            sender,
            ssrc,
            payload_type: AtomicU16::new(u16::MAX),
        }
    }

    /// The payload type negotiated for this sender, once there is one.
    async fn payload_type(&self) -> Option<u8> {
        let known = self.payload_type.load(Ordering::Relaxed);
        if known != u16::MAX {
            return Some(known as u8);
        }
        let params = self.sender.get_parameters().await.ok()?;
        let pt = params.rtp_parameters.codecs.first()?.payload_type;
        self.payload_type.store(u16::from(pt), Ordering::Relaxed);
        Some(pt)
    }
}

struct LocalInner {
    id: String,
    kind: TrackKind,
    call_id: u64,
    bindings: Mutex<Vec<Arc<Binding>>>,
    removed: AtomicBool,
}

/// A track this device sends in a call, to every peer. The application
/// writes encoded samples (Opus for audio, VP8 for video and screen); the
/// SDK packetizes them into RTP. Cheap to clone.
#[derive(Clone)]
pub struct LocalTrack {
    inner: Arc<LocalInner>,
}

impl LocalTrack {
    pub(crate) fn new(call_id: u64, kind: TrackKind) -> LocalTrack {
        LocalTrack {
            inner: Arc::new(LocalInner {
                id: format!("{}-{:08x}", kind.stream_id(), rand::random::<u32>()),
                kind,
                call_id,
                bindings: Mutex::new(Vec::new()),
                removed: AtomicBool::new(false),
            }),
        }
    }

    /// The track's id (also its label on the other side).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Audio, video or screen.
    pub fn kind(&self) -> TrackKind {
        self.inner.kind
    }

    /// The call it belongs to.
    pub fn call_id(&self) -> u64 {
        self.inner.call_id
    }

    /// Sends one encoded sample (e.g. an Opus frame of 20 ms) to every
    /// connected peer. Returns to how many peers it went: a sample written
    /// before a peer's connection has negotiated this track is dropped for
    /// that peer, as a live microphone's would be.
    pub async fn write_sample(&self, data: Bytes, duration: Duration) -> Result<usize, CallError> {
        if self.inner.removed.load(Ordering::SeqCst) {
            return Err(CallError::WrongState {
                call_id: self.inner.call_id,
                reason: format!("track {} was removed", self.inner.id),
            });
        }
        let bindings = self.inner.bindings.lock().clone();
        let sample = Sample {
            data,
            duration,
            ..Sample::new(Instant::now())
        };
        let mut sent = 0;
        for b in bindings {
            let Some(pt) = b.payload_type().await else {
                continue;
            };
            // Fails only while the sender is not bound yet (not negotiated)
            // or after its connection closed: that peer misses the sample.
            if b.track
                .sample_writer(b.ssrc, pt)
                .write_sample(&sample)
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        Ok(sent)
    }

    pub(crate) fn add_binding(&self, binding: Arc<Binding>) {
        self.inner.bindings.lock().push(binding);
    }

    /// Takes the binding for peer `user_id`, if any.
    pub(crate) fn take_binding(&self, user_id: u64) -> Option<Arc<Binding>> {
        let mut bindings = self.inner.bindings.lock();
        let i = bindings.iter().position(|b| b.user_id == user_id)?;
        Some(bindings.remove(i))
    }

    pub(crate) fn mark_removed(&self) {
        self.inner.removed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn same(&self, other: &LocalTrack) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("id", &self.inner.id)
            .field("kind", &self.inner.kind)
            .field("call_id", &self.inner.call_id)
            .field("peers", &self.inner.bindings.lock().len())
            .finish()
    }
}

/// A track a peer sends us. Read its RTP packets with [`RemoteTrack::recv`].
#[derive(Clone)]
pub struct RemoteTrack {
    user_id: u64,
    kind: TrackKind,
    id: String,
    track: Arc<dyn TrackRemote>,
    /// Set when a renegotiation stops the peer sending it (the WebRTC stack
    /// does not end a remote track itself then).
    ended: watch::Receiver<bool>,
}

impl RemoteTrack {
    /// The track, and the switch that ends it.
    pub(crate) async fn new(user_id: u64, track: Arc<dyn TrackRemote>) -> (RemoteTrack, watch::Sender<bool>) {
        let stream_id = track.stream_id().await;
        let kind = TrackKind::from_remote(&stream_id, track.kind().await);
        let id = track.track_id().await;
        let (end, ended) = watch::channel(false);
        let remote = RemoteTrack {
            user_id,
            kind,
            id,
            track,
            ended,
        };
        (remote, end)
    }

    /// Who sends it.
    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    /// Audio, video or screen (from the sender's stream id).
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// The sender's id of the track.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next RTP packet; `None` once the track has ended (its sender
    /// removed it, or the connection closed).
    pub async fn recv(&self) -> Option<RtpPacket> {
        let mut ended = self.ended.clone();
        loop {
            if *ended.borrow_and_update() {
                return None;
            }
            tokio::select! {
                event = self.track.poll() => match event? {
                    TrackRemoteEvent::OnRtpPacket(packet) => return Some(packet),
                    TrackRemoteEvent::OnEnded => return None,
                    _ => {}
                },
                changed = ended.changed() => {
                    if changed.is_err() && !*ended.borrow() {
                        // The connection's task is gone: the track ends with it.
                        return None;
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .finish()
    }
}

/// A message received on a data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMessage {
    /// Sent as text (UTF-8) rather than binary.
    pub is_text: bool,
    /// The bytes.
    pub data: Bytes,
}

/// An open data channel with one peer: reliable and ordered. Cheap to clone;
/// one task should read it.
#[derive(Clone)]
pub struct DataChannel {
    user_id: u64,
    label: String,
    channel: Arc<dyn RtcDataChannel>,
}

impl DataChannel {
    pub(crate) fn new(user_id: u64, label: String, channel: Arc<dyn RtcDataChannel>) -> DataChannel {
        DataChannel {
            user_id,
            label,
            channel,
        }
    }

    /// The peer at the other end.
    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    /// The label it was opened with.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends binary data.
    pub async fn send(&self, data: &[u8]) -> Result<(), CallError> {
        self.channel
            .send(BytesMut::from(data))
            .await
            .map_err(webrtc_error)
    }

    /// Sends text.
    pub async fn send_text(&self, text: &str) -> Result<(), CallError> {
        self.channel.send_text(text).await.map_err(webrtc_error)
    }

    /// The next message; `None` once the channel is closed.
    pub async fn recv(&self) -> Option<DataMessage> {
        loop {
            match self.channel.poll().await? {
                DataChannelEvent::OnMessage(m) => {
                    return Some(DataMessage {
                        is_text: m.is_string,
                        data: m.data.freeze(),
                    });
                }
                DataChannelEvent::OnClose => return None,
                _ => {}
            }
        }
    }

    /// Closes the channel (both ends see it end).
    pub async fn close(&self) -> Result<(), CallError> {
        self.channel.close().await.map_err(webrtc_error)
    }
}

impl std::fmt::Debug for DataChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannel")
            .field("user_id", &self.user_id)
            .field("label", &self.label)
            .finish()
    }
}

pub(crate) fn webrtc_error(e: webrtc::error::Error) -> CallError {
    CallError::WebRtc(e.to_string())
}
