//! Media end to end: SDK calls managers (feature `webrtc`) set up real peer
//! connections through the reference server's signalling relay. Everything
//! stays on 127.0.0.1: the server listens there, the peer connections bind
//! host candidates there only, and the server hands out no STUN or TURN.

use crate::support::{Backend, PASSWORD, TestServer};
use im_client_sdk::calls::{
    CallConfig, CallEvent, CallEvents, Calls, DataChannel, EndReason, LocalTrack, RemoteTrack, TrackKind,
};
use im_client_sdk::{Client, Credentials, v1};
use std::time::Duration;
use tokio::sync::oneshot;

/// Bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(20);

const VOICE: v1::CallMedia = v1::CallMedia {
    audio: true,
    video: false,
    screen: false,
};

/// A user with a calls manager and its events, kept in a buffer so that
/// waiting for one event keeps the others.
struct Party {
    client: Client,
    calls: Calls,
    events: CallEvents,
    seen: Vec<CallEvent>,
}

impl Party {
    async fn join(server: &TestServer, name: &str, data_channel: Option<&str>) -> Party {
        let config = server.client_config();
        let (client, _events) = Client::connect(
            config,
            Credentials::Register {
                username: name.into(),
                password: PASSWORD.into(),
                display_name: String::new(),
            },
        )
        .await
        .unwrap();
        // Host candidates on 127.0.0.1 only; ICE servers asked of the server
        // (the test server configures none).
        let call_config = CallConfig {
            ice_servers: None,
            data_channel: data_channel.map(str::to_owned),
            ..CallConfig::loopback()
        };
        let (calls, events) = Calls::new(&client, call_config);
        Party {
            client,
            calls,
            events,
            seen: Vec::new(),
        }
    }

    fn id(&self) -> u64 {
        self.client.user().id
    }

    async fn wait<T>(&mut self, what: &str, mut pick: impl FnMut(&CallEvent) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|e| pick(e).is_some()) {
            return pick(&self.seen.remove(i)).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "user {}: no {what} within {WAIT:?}; saw {:?}",
                        self.id(),
                        self.seen
                    )
                })
                .expect("call events ended");
            if let CallEvent::Error { error, .. } = &event {
                panic!("user {} waiting for {what}: {error}", self.id());
            }
            match pick(&event) {
                Some(t) => return t,
                None => self.seen.push(event),
            }
        }
    }

    async fn incoming(&mut self) -> u64 {
        self.wait("incoming call", |e| match e {
            CallEvent::Incoming { call_id, .. } => Some(*call_id),
            _ => None,
        })
        .await
    }

    async fn connected(&mut self, user: u64) {
        self.wait("connection", |e| {
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

    /// Events that arrive within `d`, added to the buffer.
    async fn linger(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(until, self.events.next()).await {
            self.seen.push(e);
        }
    }
}

async fn group(owner: &Party, others: &[&Party]) -> u64 {
    let ids: Vec<u64> = others.iter().map(|p| p.id()).collect();
    owner.client.create_group("call", &ids).await.unwrap().id
}

/// Writes 60-byte "Opus" frames every 20 ms until stopped (at most 20 s).
fn stream(track: LocalTrack) -> oneshot::Sender<()> {
    let (stop, mut stopped) = oneshot::channel();
    tokio::spawn(async move {
        let frame = bytes::Bytes::from(vec![0xf8u8; 60]);
        for _ in 0..1_000 {
            if stopped.try_recv().is_ok() {
                return;
            }
            let _ = track.write_sample(frame.clone(), Duration::from_millis(20)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    stop
}

/// The sequence numbers of the next `n` RTP packets of a track.
async fn packets(track: &RemoteTrack, n: usize) -> Vec<u16> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let p = tokio::time::timeout(WAIT, track.recv())
            .await
            .expect("RTP in time")
            .expect("the track is open");
        assert!(!p.payload.is_empty());
        seqs.push(p.header.sequence_number);
    }
    seqs
}

async fn recv_text(channel: &DataChannel) -> String {
    let m = tokio::time::timeout(WAIT, channel.recv())
        .await
        .expect("a message in time")
        .expect("the channel is open");
    String::from_utf8(m.data.to_vec()).unwrap()
}

/// Caller and callee connected through the server, each with the other's
/// automatic data channel.
async fn call_between(caller: &mut Party, callee: &mut Party) -> (u64, DataChannel, DataChannel) {
    let conversation = group(caller, &[callee]).await;
    let call = caller
        .calls
        .start(conversation, &[callee.id()], VOICE)
        .await
        .unwrap();
    let id = callee.incoming().await;
    assert_eq!(id, call.call_id);
    callee.calls.accept(id).await.unwrap();
    caller.connected(callee.id()).await;
    callee.connected(caller.id()).await;
    let a = caller.channel(callee.id()).await;
    let b = callee.channel(caller.id()).await;
    (id, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_server_carries_data_both_ways_in_order_and_audio() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut alice = Party::join(&server, "alice", Some("chat")).await;
    let mut bob = Party::join(&server, "bob", Some("chat")).await;
    let conversation = group(&alice, &[&bob]).await;

    let call = alice.calls.start(conversation, &[bob.id()], VOICE).await.unwrap();
    let mic = alice
        .calls
        .add_track(call.call_id, TrackKind::Audio)
        .await
        .unwrap();
    let id = bob.incoming().await;
    alice
        .wait("ringing", |e| {
            matches!(e, CallEvent::Ringing { .. }).then_some(())
        })
        .await;
    bob.calls.accept(id).await.unwrap();
    alice.connected(bob.id()).await;
    bob.connected(alice.id()).await;

    let (a_chat, b_chat) = (alice.channel(bob.id()).await, bob.channel(alice.id()).await);
    assert_eq!((a_chat.label(), b_chat.label()), ("chat", "chat"));
    for i in 0..100 {
        a_chat.send_text(&format!("a{i}")).await.unwrap();
        b_chat.send_text(&format!("b{i}")).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(recv_text(&b_chat).await, format!("a{i}"), "in order");
        assert_eq!(recv_text(&a_chat).await, format!("b{i}"), "in order");
    }

    let stop = stream(mic);
    let heard = bob.track(alice.id(), TrackKind::Audio).await;
    let seqs = packets(&heard, 25).await;
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{seqs:?}");
    let _ = stop.send(());

    alice.calls.hang_up(id).await.unwrap();
    let reason = bob
        .wait("the end", |e| match e {
            CallEvent::Ended { reason, .. } => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, EndReason::HungUp);
    assert!(bob.calls.calls().is_empty() && alice.calls.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_share_added_mid_call_renegotiates_and_arrives() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut alice = Party::join(&server, "alice", Some("chat")).await;
    let mut bob = Party::join(&server, "bob", Some("chat")).await;
    let (id, _a, _b) = call_between(&mut alice, &mut bob).await;

    // The caller shares (the callee made the first offer: the caller's
    // connection renegotiates through the server).
    let screen = alice.calls.add_track(id, TrackKind::Screen).await.unwrap();
    let stop = stream(screen.clone());
    let shared = bob.track(alice.id(), TrackKind::Screen).await;
    assert_eq!(shared.id(), screen.id());
    packets(&shared, 10).await;

    alice.calls.remove_track(&screen).await.unwrap();
    let _ = stop.send(());
    let ended = bob
        .wait("the share to end", |e| match e {
            CallEvent::RemoteTrackEnded { track_id, .. } => Some(track_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ended, screen.id());
    assert!(tokio::time::timeout(WAIT, shared.recv()).await.unwrap().is_none());

    // And the callee shares too, the other way.
    let back = bob.calls.add_track(id, TrackKind::Screen).await.unwrap();
    let stop = stream(back);
    packets(&alice.track(bob.id(), TrackKind::Screen).await, 10).await;
    let _ = stop.send(());
    bob.calls.hang_up(id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_party_mesh_carries_data_between_every_pair_and_survives_one_leaving() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut alice = Party::join(&server, "alice", Some("mesh")).await;
    let mut bob = Party::join(&server, "bob", Some("mesh")).await;
    let mut carol = Party::join(&server, "carol", Some("mesh")).await;
    let conversation = group(&alice, &[&bob, &carol]).await;
    let (a, b, c) = (alice.id(), bob.id(), carol.id());

    let call = alice.calls.start(conversation, &[], VOICE).await.unwrap();
    let id = bob.incoming().await;
    assert_eq!(carol.incoming().await, call.call_id);
    bob.calls.accept(id).await.unwrap();
    carol.calls.accept(id).await.unwrap();

    // Every pair has its own connection and channel.
    let mut channels = Vec::new();
    for (me, party, others) in [
        (a, &mut alice, [b, c]),
        (b, &mut bob, [a, c]),
        (c, &mut carol, [a, b]),
    ] {
        for other in others {
            party.connected(other).await;
            channels.push((me, other, party.channel(other).await));
        }
    }
    for (me, other, channel) in &channels {
        channel.send_text(&format!("{me}->{other}")).await.unwrap();
    }
    for (me, other, channel) in &channels {
        assert_eq!(recv_text(channel).await, format!("{other}->{me}"));
    }
    let mut sorted: Vec<_> = alice.calls.calls();
    sorted.retain(|(call_id, _)| *call_id == id);
    assert_eq!(sorted, vec![(id, vec![b, c])]);

    // Carol leaves; Alice and Bob see it and go on talking.
    carol.calls.hang_up(id).await.unwrap();
    for party in [&mut alice, &mut bob] {
        party
            .wait("carol to leave", |e| {
                matches!(e, CallEvent::PeerLeft { peer, .. } if peer.user_id == c).then_some(())
            })
            .await;
    }
    let pair = |x: u64, y: u64| {
        channels
            .iter()
            .find(|(me, other, _)| (*me, *other) == (x, y))
            .map(|(_, _, ch)| ch.clone())
            .unwrap()
    };
    let (ab, ba) = (pair(a, b), pair(b, a));
    ab.send_text("still here").await.unwrap();
    ba.send_text("me too").await.unwrap();
    assert_eq!(recv_text(&ba).await, "still here");
    assert_eq!(recv_text(&ab).await, "me too");
    assert_eq!(alice.calls.calls(), vec![(id, vec![b])]);
    for party in [&mut alice, &mut bob] {
        party.linger(Duration::from_millis(300)).await;
        assert!(
            !party.seen.iter().any(|e| matches!(e, CallEvent::Ended { .. })),
            "the call goes on: {:?}",
            party.seen
        );
    }
    alice.calls.hang_up(id).await.unwrap();
    bob.wait("the end", |e| matches!(e, CallEvent::Ended { .. }).then_some(()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_calling_each_other_at_once_end_up_in_one_connected_call() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut alice = Party::join(&server, "alice", Some("chat")).await;
    let mut bob = Party::join(&server, "bob", Some("chat")).await;
    let conversation = group(&alice, &[&bob]).await;
    let (a, b) = (alice.id(), bob.id());

    // Glare on one node: the server answers the second invite with the
    // first call, joined; the SDK of the side that joined makes the offer.
    let (to_bob, to_alice) = ([b], [a]);
    let (ours, theirs) = tokio::join!(
        alice.calls.start(conversation, &to_bob, VOICE),
        bob.calls.start(conversation, &to_alice, VOICE)
    );
    let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
    assert_eq!(ours.call_id, theirs.call_id, "one call");
    alice.connected(b).await;
    bob.connected(a).await;
    let (ab, ba) = (alice.channel(b).await, bob.channel(a).await);
    ab.send_text("glare").await.unwrap();
    assert_eq!(recv_text(&ba).await, "glare");
    assert_eq!(alice.calls.calls(), vec![(ours.call_id, vec![b])]);
    assert_eq!(bob.calls.calls(), vec![(ours.call_id, vec![a])]);
    bob.calls.hang_up(ours.call_id).await.unwrap();
    alice
        .wait("the end", |e| matches!(e, CallEvent::Ended { .. }).then_some(()))
        .await;
}
