//! Calls end to end: a real server on 127.0.0.1:0 (SQLite) relays call
//! signalling between SDK clients, on WebSocket and on gRPC; media and data
//! flow between SDK calls managers over loopback.

mod support;

/// Peer connections set up through the server (the SDK's `webrtc` feature).
#[path = "calls/media.rs"]
mod media;

/// Signalling over WebSocket.
mod websocket {
    const TRANSPORT: crate::support::Transport = crate::support::Transport::WebSocket;
    include!("calls/signalling.rs");
}

/// The same signalling over gRPC's `Chat.Connect` stream.
mod grpc {
    const TRANSPORT: crate::support::Transport = crate::support::Transport::Grpc;
    include!("calls/signalling.rs");
}
