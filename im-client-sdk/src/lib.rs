//! # im-client-sdk
//!
//! An async Rust client for the im chat server.
//!
//! * **Typed calls** for every request of the protocol ([`Client`]).
//! * **An event stream** ([`Events`]) that delivers every message of every
//!   conversation **exactly once, in sequence order**, live or recovered.
//! * **Reconnect** with exponential back-off and jitter, over several server
//!   URLs; after each reconnect it **resyncs** by itself (`Sync`, then
//!   `GetChanges` per changed conversation).
//! * **TLS**: `wss://` URLs over rustls; the server's certificate is
//!   verified against the system roots or the application's own CA
//!   ([`TlsConfig`]), and a refused one is an [`Error::Tls`] saying why.
//! * **Files** ([`Client::files`], [`FileClient`]): upload from a path or a
//!   stream with progress, resumed after a dropped connection; download to
//!   a path or a stream with `Range` resume; [`Client::send_file`].
//! * **An outbox**: [`Client::send`] queues the message with a client message
//!   id; it is (re)sent until the server acks it, across reconnects, and the
//!   server's deduplication makes sure it is stored once.
//! * **Group administration**: invitations, join policies and requests,
//!   kick, ban, mute, roles, ownership, dissolve, the member list
//!   ([`Client::invite_members`], [`Client::kick`], [`Client::ban`],
//!   [`Client::mute_member`] ...).
//! * **Contacts**: friend requests ([`Client::send_friend_request`],
//!   [`Client::accept_friend_request`]...), the friends list, blocks
//!   ([`Client::block`]) and their events ([`Event::Contact`]).
//! * **Call signalling**: typed requests ([`Client::call_invite`],
//!   [`Client::call_accept`], [`Client::call_signal`], [`Client::ice_servers`]
//!   ...) and call events ([`Event::Call`], or a stream of their own with
//!   [`Client::take_call_events`]).
//! * **Calls** (feature `webrtc`): voice, video, screen share and data
//!   channels over WebRTC peer connections, one per remote participant
//!   (mesh), negotiated through the server; see the `calls` module.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `webrtc` | no | the `calls` module: a calls manager that rings, answers, and connects peers with the `webrtc` crate (0.21) |
//!
//! ```no_run
//! # async fn demo() -> Result<(), im_client_sdk::Error> {
//! use im_client_sdk::{Client, ClientConfig, Credentials, Event};
//! // wss:// verifies the server's certificate; see [`TlsConfig`].
//! let config = ClientConfig::new("ws://127.0.0.1:8080/v1/ws");
//! let (client, mut events) = Client::connect(
//!     config,
//!     Credentials::Login { username: "alice".into(), password: "correct horse".into() },
//! )
//! .await?;
//! let room = client.create_room("lobby", false).await?;
//! client.send_text(room.id, "hello").await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Message(m) = event {
//!         println!("#{} {:?}", m.seq, m.content);
//!     }
//! }
//! # Ok(()) }
//! ```
#![warn(missing_debug_implementations, unreachable_pub)]

mod call_api;
#[cfg(feature = "webrtc")]
pub mod calls;
mod client;
mod contacts;
mod conversation_settings;
pub mod files;
mod group_admin;
mod link;
mod message_changes;
mod search;
mod threads;
pub mod tls;
mod tracker;
pub mod transport;

pub use call_api::{CallError, CallEventReceiver};
pub use client::{Client, ClientConfig, Credentials, Events};
pub use conversation_settings::{MUTED_FOREVER, SettingsChange};
pub use files::{FileClient, FileInfo, MediaKind, Progress, Upload};
pub use group_admin::MUTED_UNTIL_LIFTED;
pub use im_protocol::{self, Format, v1};
pub use threads::{ForwardTo, SendOptions};
pub use tls::TlsConfig;

/// Everything the client reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Connected and authenticated (again).
    Connected {
        /// Who we are.
        user: v1::User,
    },
    /// After a (re)connect: every conversation is caught up.
    Synced,
    /// The connection was lost; the client reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The server is closing the connection (e.g. shutting down).
    Closing {
        /// The server's reason.
        reason: String,
    },
    /// A new message, exactly once per (conversation, seq), in seq order.
    Message(v1::Message),
    /// A new state of a message already delivered (edit, recall, reaction),
    /// in change-log order. Not sent for messages we deleted for ourselves.
    MessageUpdated(v1::Message),
    /// We deleted these messages for ourselves (on this or another of our
    /// devices): show them as deleted ([`v1::Message::deleted_stub`]). An
    /// id may not have been delivered yet; it then comes as a stub.
    MessagesDeleted {
        /// The conversation.
        conversation_id: u64,
        /// The messages.
        message_ids: Vec<u64>,
    },
    /// A member's read or delivered cursor moved.
    Receipt(v1::ReceiptEvent),
    /// Someone is typing or stopped.
    Typing(v1::TypingEvent),
    /// A contact came online or went offline.
    Presence(v1::Presence),
    /// We are no longer a member of this conversation (we left, were
    /// removed or banned, or it was dissolved): drop it.
    ConversationRemoved(u64),
    /// The server asked to rebuild this conversation from scratch; messages
    /// will be delivered again from seq 1.
    ConversationReset(u64),
    /// The token was refused and no password is known: the client stopped.
    AuthFailed(String),
    /// Our own settings of a conversation changed on another of our devices
    /// (pinned, muted, archived, marked unread).
    ConversationSettings(v1::ConversationSettingsEvent),
    /// Call signalling for this device (ringing, joins, SDP, candidates,
    /// end), unless taken with [`Client::take_call_events`], as the calls
    /// manager does.
    Call(v1::CallEvent),
    /// We were invited to a group or room: accept with
    /// [`Client::accept_invitation`] or decline.
    Invitation(Box<v1::Invitation>),
    /// A change that concerns us in a conversation we are not a member of
    /// (a refused join request, a ban, an invitation declined on another
    /// of our devices).
    Notice(v1::ConversationNotice),
    /// A friend request, friendship or block of ours changed: a request
    /// to or from us, an answer, a friend removed, or (from another of our
    /// devices) a block or unblock.
    Contact(v1::ContactEvent),
}

/// Errors of the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error.
    #[error("{code:?}: {message}")]
    Server {
        /// The typed code.
        code: v1::ErrorCode,
        /// The server's message.
        message: String,
    },
    /// Not connected (the client is reconnecting), or the connection dropped
    /// before the answer arrived.
    #[error("not connected")]
    Disconnected,
    /// No answer within the request time-out.
    #[error("request timed out")]
    Timeout,
    /// Could not reach the server.
    #[error("connection failed: {0}")]
    Connect(String),
    /// TLS refused: the server's certificate is not trusted, not valid for
    /// the host or expired, or the configured roots cannot be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server sent something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// An HTTP exchange (files) failed in transit.
    #[error("http: {0}")]
    Http(String),
    /// A local file or stream could not be read or written.
    #[error("i/o: {0}")]
    Io(String),
    /// A call operation failed on this side.
    #[error("call: {0}")]
    Call(#[from] CallError),
}

impl Error {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<v1::ErrorCode> {
        match self {
            Error::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Server { code, .. } => matches!(
                code,
                v1::ErrorCode::Unavailable | v1::ErrorCode::RateLimited | v1::ErrorCode::Internal
            ),
            Error::Disconnected | Error::Timeout | Error::Connect(_) | Error::Http(_) => true,
            Error::Protocol(_) | Error::Tls(_) | Error::Closed | Error::Io(_) | Error::Call(_) => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
