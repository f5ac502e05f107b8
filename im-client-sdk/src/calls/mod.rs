//! Voice, video and screen-share calls over WebRTC (feature `webrtc`).
//!
//! [`Calls`] is a calls manager built from a [`Client`](crate::Client): it
//! takes the client's call events (with [`Client::take_call_events`](crate::Client::take_call_events); they no
//! longer appear in the client's [`Events`](crate::Events)), rings, answers,
//! and keeps one WebRTC peer connection per remote participant (a mesh),
//! negotiated through the server's `CallSignal` relay with trickle ICE. What
//! happens comes out as typed [`CallEvent`]s on the [`CallEvents`] stream.
//!
//! * **Place a call**: [`Calls::start`] in a conversation with chosen media;
//!   peers ring; [`CallEvent::Ringing`], then [`CallEvent::PeerJoined`] and
//!   [`CallEvent::Connected`] per peer, or [`CallEvent::Rejected`],
//!   [`CallEvent::Busy`], [`CallEvent::NoAnswer`] and [`CallEvent::Ended`].
//! * **Answer**: [`CallEvent::Incoming`], then [`Calls::accept`] or
//!   [`Calls::reject`]; [`CallEvent::AnsweredElsewhere`] if another of our
//!   devices took it; [`CallEvent::Missed`] if it stopped ringing unanswered.
//! * **Media**: the application encodes (the SDK captures nothing):
//!   [`Calls::add_track`] gives a [`LocalTrack`] to write Opus or VP8
//!   samples to; adding or removing one mid-call (a screen share)
//!   renegotiates every connection. Remote tracks arrive as
//!   [`CallEvent::RemoteTrack`] with a [`RemoteTrack`] that yields RTP
//!   packets, and end with [`CallEvent::RemoteTrackEnded`].
//! * **Data**: [`Calls::open_data_channel`] with one peer, or
//!   [`CallConfig::data_channel`] to open one with every peer as part of the
//!   first negotiation; the remote side gets [`CallEvent::DataChannel`].
//!
//! **Rules the manager applies by itself**: a device in a call answers BUSY
//! to another incoming call; *glare* (we are calling a user who calls us in
//! the same conversation, neither answered): the call with the lower id
//! wins, the side whose own call has the higher id hangs it up and accepts
//! the other ([`CallEvent::Replaced`]); the device that joined a call makes
//! the SDP offer to each peer already in it.
//!
//! **Signal payloads** (for clients in other languages): `OFFER` and
//! `ANSWER` carry the SDP text; `CANDIDATE` carries the W3C
//! `RTCIceCandidateInit` as JSON (`candidate`, `sdpMid`, `sdpMLineIndex`,
//! `usernameFragment`).
//!
//! **Network**: ICE servers come from the server (`GetIceServers`) unless
//! [`CallConfig::ice_servers`] says otherwise; host candidates come from
//! [`CallConfig::udp_addrs`] (every non-loopback IPv4 interface by default;
//! [`CallConfig::loopback`] binds 127.0.0.1 only, for tests). mDNS is off:
//! no multicast socket, candidates carry plain addresses.
//!
//! ```no_run
//! # async fn demo(client: im_client_sdk::Client, conversation_id: u64) -> im_client_sdk::Result<()> {
//! use im_client_sdk::calls::{CallConfig, CallEvent, Calls, TrackKind};
//! use im_client_sdk::v1::CallMedia;
//! use std::time::Duration;
//!
//! let (calls, mut events) = Calls::new(&client, CallConfig::default());
//! let media = CallMedia { audio: true, video: false, screen: false };
//! let call = calls.start(conversation_id, &[], media).await?;
//! let mic = calls.add_track(call.call_id, TrackKind::Audio).await?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         CallEvent::Connected { user_id, .. } => {
//!             println!("connected to {user_id}");
//!             let opus_frame = bytes::Bytes::from_static(&[0xf8, 0xff, 0xfe]);
//!             mic.write_sample(opus_frame, Duration::from_millis(20)).await?;
//!         }
//!         CallEvent::RemoteTrack { track, .. } => {
//!             tokio::spawn(async move { while let Some(rtp) = track.recv().await { let _ = rtp; } });
//!         }
//!         CallEvent::Ended { .. } => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod manager;
mod media;
mod peer;
mod rules;
#[cfg(test)]
mod tests;

pub use manager::{CallEvents, Calls};
pub use media::{DataChannel, DataMessage, LocalTrack, RemoteTrack, RtpPacket, TrackKind};
pub use rules::EndReason;

use crate::CallError;
use im_protocol::v1;
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of a [`Calls`] manager.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Local UDP addresses the peer connections bind; each gives host
    /// candidates. A wildcard (`0.0.0.0:0`, the default) means every
    /// non-loopback interface of that family; a concrete address binds
    /// exactly that one.
    pub udp_addrs: Vec<SocketAddr>,
    /// STUN and TURN servers. `None` (the default): ask the server
    /// (`GetIceServers`) for each call. `Some(list)`: use these; an empty
    /// list means host candidates only.
    pub ice_servers: Option<Vec<v1::IceServer>>,
    /// Open a data channel with this label to every peer as part of the
    /// first negotiation (default: none). Both sides get
    /// [`CallEvent::DataChannel`].
    pub data_channel: Option<String>,
    /// How long [`Calls::open_data_channel`] waits for the channel to open
    /// (default 10 s).
    pub open_timeout: Duration,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            udp_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            ice_servers: None,
            data_channel: None,
            open_timeout: Duration::from_secs(10),
        }
    }
}

impl CallConfig {
    /// Host candidates on 127.0.0.1 only and no STUN or TURN server: calls
    /// between processes of one machine, never touching another address
    /// (tests, demos).
    pub fn loopback() -> Self {
        CallConfig {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ice_servers: Some(Vec::new()),
            ..CallConfig::default()
        }
    }
}

/// What happens in calls, as the [`Calls`] manager reports it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CallEvent {
    /// A call rings here (the manager has answered RINGING): [`Calls::accept`]
    /// or [`Calls::reject`] it.
    Incoming {
        /// The call.
        call_id: u64,
        /// Its conversation.
        conversation_id: u64,
        /// The caller's device.
        from: v1::CallPeer,
        /// The media the call starts with.
        media: v1::CallMedia,
    },
    /// A device of an invitee rings.
    Ringing {
        /// The call.
        call_id: u64,
        /// The ringing device.
        peer: v1::CallPeer,
    },
    /// Another of our devices took the call; it no longer rings here.
    AnsweredElsewhere {
        /// The call.
        call_id: u64,
    },
    /// A call that rang here stopped ringing unanswered (timed out, or the
    /// caller gave up). [`CallEvent::Ended`] follows.
    Missed {
        /// The call.
        call_id: u64,
        /// The caller.
        from: v1::CallPeer,
    },
    /// An incoming call was answered BUSY because we are in another call.
    BusyDeclined {
        /// The declined call.
        call_id: u64,
        /// Its caller.
        from: v1::CallPeer,
    },
    /// Glare: both sides called each other; `old_call_id` (ours, hung up)
    /// was replaced by `call_id` (theirs, accepted).
    Replaced {
        /// Our call, hung up.
        old_call_id: u64,
        /// The call we are in now.
        call_id: u64,
    },
    /// A device is in the call with us now; its peer connection is being
    /// negotiated.
    PeerJoined {
        /// The call.
        call_id: u64,
        /// The device.
        peer: v1::CallPeer,
    },
    /// The peer connection with a participant is up (media and data flow).
    Connected {
        /// The call.
        call_id: u64,
        /// The participant.
        user_id: u64,
    },
    /// The peer connection with a participant failed (ICE found no path).
    ConnectionFailed {
        /// The call.
        call_id: u64,
        /// The participant.
        user_id: u64,
    },
    /// The user declined the call.
    Rejected {
        /// The call.
        call_id: u64,
        /// Who declined.
        user_id: u64,
    },
    /// The user is in another call.
    Busy {
        /// The call.
        call_id: u64,
        /// Who is busy.
        user_id: u64,
    },
    /// The user did not answer in time.
    NoAnswer {
        /// The call.
        call_id: u64,
        /// Who did not answer.
        user_id: u64,
    },
    /// A participant's connection to the server dropped; they may come back.
    Reconnecting {
        /// The call.
        call_id: u64,
        /// The participant's device.
        peer: v1::CallPeer,
    },
    /// A participant is back.
    Reconnected {
        /// The call.
        call_id: u64,
        /// The participant's device.
        peer: v1::CallPeer,
    },
    /// A participant left; its peer connection is closed.
    PeerLeft {
        /// The call.
        call_id: u64,
        /// The device that left.
        peer: v1::CallPeer,
    },
    /// A participant sends us a track.
    RemoteTrack {
        /// The call.
        call_id: u64,
        /// The track; read its RTP packets.
        track: RemoteTrack,
    },
    /// A participant stopped sending a track (removed it, e.g. ended a
    /// screen share); its [`RemoteTrack::recv`] returns `None` from now on.
    RemoteTrackEnded {
        /// The call.
        call_id: u64,
        /// The participant.
        user_id: u64,
        /// The track's id ([`RemoteTrack::id`]).
        track_id: String,
    },
    /// A data channel is open: one the peer opened, or the one of
    /// [`CallConfig::data_channel`].
    DataChannel {
        /// The call.
        call_id: u64,
        /// The channel.
        channel: DataChannel,
    },
    /// The call is over for this device; every connection is closed.
    Ended {
        /// The call.
        call_id: u64,
        /// Why.
        reason: EndReason,
    },
    /// Something failed with one participant (negotiation, a bad signal).
    Error {
        /// The call.
        call_id: u64,
        /// The participant.
        user_id: u64,
        /// What.
        error: CallError,
    },
}
