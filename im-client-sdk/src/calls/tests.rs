//! Two or three peer tasks wired to each other in-process (no server): the
//! negotiation (first offer, answers, trickled candidates, renegotiation,
//! collisions), media and data channels over real peer connections on
//! 127.0.0.1 with host candidates only.

use super::peer::{self, PeerCommand, PeerHandle, PeerSetup, SignalSink};
use super::{CallEvent, DataChannel, LocalTrack, RemoteTrack, TrackKind};
use im_protocol::v1;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

const WAIT: Duration = Duration::from_secs(10);

/// Delivers each signal straight to the addressed peer's task, keyed by
/// (sender, receiver) so a three-party mesh routes per pair.
#[derive(Default)]
struct Wire {
    peers: Mutex<HashMap<(u64, u64), mpsc::UnboundedSender<PeerCommand>>>,
}

struct WireEnd {
    wire: Arc<Wire>,
    from: u64,
}

#[async_trait::async_trait]
impl SignalSink for WireEnd {
    async fn send(&self, _call_id: u64, to: u64, kind: v1::SignalKind, payload: String) -> crate::Result<()> {
        let target = self.wire.peers.lock().get(&(to, self.from)).cloned();
        if let Some(target) = target {
            let _ = target.send(PeerCommand::Signal { kind, payload });
        }
        Ok(())
    }
}

/// The events of one side, with a buffer so waiting for one kind keeps the
/// others.
struct Side {
    rx: mpsc::UnboundedReceiver<CallEvent>,
    seen: Vec<CallEvent>,
}

impl Side {
    async fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&CallEvent) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|e| pick(e).is_some()) {
            return pick(&self.seen.remove(i)).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}; saw {:?}", self.seen))
                .expect("events ended");
            if let CallEvent::Error { error, .. } = &event {
                panic!("waiting for {what}: {error}");
            }
            match pick(&event) {
                Some(t) => return t,
                None => self.seen.push(event),
            }
        }
    }

    async fn connected(&mut self, user: u64) {
        self.wait("connected", |e| {
            matches!(e, CallEvent::Connected { user_id, .. } if *user_id == user).then_some(())
        })
        .await
    }

    async fn channel(&mut self, user: u64) -> DataChannel {
        self.wait("data channel", |e| match e {
            CallEvent::DataChannel { channel, .. } if channel.user_id() == user => Some(channel.clone()),
            _ => None,
        })
        .await
    }

    async fn track(&mut self, user: u64, kind: TrackKind) -> RemoteTrack {
        self.wait("remote track", |e| match e {
            CallEvent::RemoteTrack { track, .. } if track.user_id() == user && track.kind() == kind => {
                Some(track.clone())
            }
            _ => None,
        })
        .await
    }
}

fn loopback() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 0))]
}

/// Peer `me`'s connection with `user`, wired.
fn connect(
    wire: &Arc<Wire>,
    me: u64,
    user: u64,
    media: v1::CallMedia,
    tracks: Vec<LocalTrack>,
    channel: Option<&str>,
) -> (PeerHandle, Side) {
    let (events, rx) = mpsc::unbounded_channel();
    let handle = peer::spawn(PeerSetup {
        call_id: 1,
        me,
        user_id: user,
        media,
        tracks,
        auto_channel: channel.map(str::to_owned),
        udp_addrs: loopback(),
        ice_servers: Vec::new(),
        open_timeout: WAIT,
        signals: Arc::new(WireEnd {
            wire: wire.clone(),
            from: me,
        }),
        events,
    });
    wire.peers.lock().insert((me, user), handle.commands());
    (handle, Side { rx, seen: Vec::new() })
}

const AUDIO: v1::CallMedia = v1::CallMedia {
    audio: true,
    video: false,
    screen: false,
};

/// Writes 20 ms Opus-sized frames until told to stop (at most 10 s).
fn stream(track: LocalTrack) -> oneshot::Sender<()> {
    let (stop, mut stopped) = oneshot::channel();
    tokio::spawn(async move {
        let frame = bytes::Bytes::from(vec![0xf8u8; 60]);
        for _ in 0..500 {
            if stopped.try_recv().is_ok() {
                return;
            }
            let _ = track.write_sample(frame.clone(), Duration::from_millis(20)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stop
}

async fn packets(track: &RemoteTrack, n: usize) -> Vec<u16> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let p = tokio::time::timeout(WAIT, track.recv())
            .await
            .expect("RTP within 10 s")
            .expect("track open");
        seqs.push(p.header.sequence_number);
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_connect_exchange_data_in_order_and_audio() {
    let wire = Arc::new(Wire::default());
    let mic = LocalTrack::new(1, TrackKind::Audio);
    let (a, mut a_events) = connect(&wire, 1, 2, AUDIO, vec![mic.clone()], Some("chat"));
    let (b, mut b_events) = connect(&wire, 2, 1, AUDIO, Vec::new(), Some("chat"));
    a.send(PeerCommand::Negotiate);
    a_events.connected(2).await;
    b_events.connected(1).await;

    let (a_chat, b_chat) = (a_events.channel(2).await, b_events.channel(1).await);
    assert_eq!((a_chat.label(), b_chat.label()), ("chat", "chat"));
    for i in 0..100 {
        a_chat.send_text(&format!("a{i}")).await.unwrap();
        b_chat.send(format!("b{i}").as_bytes()).await.unwrap();
    }
    for i in 0..100 {
        let m = tokio::time::timeout(WAIT, b_chat.recv()).await.unwrap().unwrap();
        assert!(m.is_text);
        assert_eq!(m.data, format!("a{i}").as_bytes(), "in order");
        let m = tokio::time::timeout(WAIT, a_chat.recv()).await.unwrap().unwrap();
        assert!(!m.is_text);
        assert_eq!(m.data, format!("b{i}").as_bytes(), "in order");
    }

    let stop = stream(mic.clone());
    let heard = b_events.track(1, TrackKind::Audio).await;
    let seqs = packets(&heard, 20).await;
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{seqs:?}");
    let _ = stop.send(());

    // An explicit channel on a connection that has SCTP already: no renegotiation needed.
    let (reply, opened) = oneshot::channel();
    b.send(PeerCommand::OpenChannel {
        label: "files".into(),
        reply,
    });
    let b_files = tokio::time::timeout(WAIT, opened)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let a_files = a_events.channel(2).await;
    assert_eq!(a_files.label(), "files");
    b_files.send(b"x").await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, a_files.recv())
            .await
            .unwrap()
            .unwrap()
            .data,
        "x".as_bytes()
    );

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_added_mid_call_by_the_answerer_renegotiates_and_arrives() {
    let wire = Arc::new(Wire::default());
    let (a, mut a_events) = connect(&wire, 1, 2, AUDIO, Vec::new(), None);
    let (b, mut b_events) = connect(&wire, 2, 1, AUDIO, Vec::new(), None);
    a.send(PeerCommand::Negotiate);
    a_events.connected(2).await;
    b_events.connected(1).await;

    let screen = LocalTrack::new(1, TrackKind::Screen);
    b.send(PeerCommand::AddTrack(screen.clone()));
    let stop = stream(screen.clone());
    let shared = a_events.track(2, TrackKind::Screen).await;
    assert_eq!(shared.id(), screen.id());
    packets(&shared, 5).await;
    let _ = stop.send(());

    // Removing it renegotiates again; the track ends on the other side.
    b.send(PeerCommand::RemoveTrack(screen.clone()));
    let gone = a_events
        .wait("track ended", |e| match e {
            CallEvent::RemoteTrackEnded { track_id, .. } => Some(track_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(gone, screen.id());
    let ended = tokio::time::timeout(WAIT, async { while shared.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the removed track ends");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_renegotiating_at_once_resolve_and_both_tracks_arrive() {
    let wire = Arc::new(Wire::default());
    let (a, mut a_events) = connect(&wire, 1, 2, AUDIO, Vec::new(), None);
    let (b, mut b_events) = connect(&wire, 2, 1, AUDIO, Vec::new(), None);
    a.send(PeerCommand::Negotiate);
    a_events.connected(2).await;
    b_events.connected(1).await;

    let (a_cam, b_cam) = (
        LocalTrack::new(1, TrackKind::Video),
        LocalTrack::new(1, TrackKind::Video),
    );
    a.send(PeerCommand::AddTrack(a_cam.clone()));
    b.send(PeerCommand::AddTrack(b_cam.clone()));
    let (stop_a, stop_b) = (stream(a_cam), stream(b_cam));
    packets(&b_events.track(1, TrackKind::Video).await, 5).await;
    packets(&a_events.track(2, TrackKind::Video).await, 5).await;
    let _ = (stop_a.send(()), stop_b.send(()));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_channel_opened_mid_call_without_an_automatic_one_opens() {
    let wire = Arc::new(Wire::default());
    let (a, mut a_events) = connect(&wire, 1, 2, AUDIO, Vec::new(), None);
    let (b, mut b_events) = connect(&wire, 2, 1, AUDIO, Vec::new(), None);
    a.send(PeerCommand::Negotiate);
    a_events.connected(2).await;
    b_events.connected(1).await;
    let (reply, opened) = oneshot::channel();
    b.send(PeerCommand::OpenChannel {
        label: "late".into(),
        reply,
    });
    let late = tokio::time::timeout(WAIT, opened)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let other = a_events.channel(2).await;
    late.send_text("hi").await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, other.recv())
            .await
            .unwrap()
            .unwrap()
            .data,
        "hi".as_bytes()
    );
    a.close().await;
    b.close().await;
}
