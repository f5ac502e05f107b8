//! Call signalling: typed requests for the four call frames, and where call
//! events go.
//!
//! These are the raw protocol operations, available without any feature. The
//! `calls` module (feature `webrtc`) builds peer connections on top of them;
//! an application with its own WebRTC stack can use them directly.
//!
//! **Where call events go.** By default every call event arrives in the
//! client's [`Events`](crate::Events) as [`Event::Call`]. After
//! [`Client::take_call_events`] they go to the returned [`CallEventReceiver`]
//! instead, in the order the server sent them, and no longer appear in
//! `Events`; if that receiver is dropped, they go back to `Events`.
//!
//! **After a reconnect** the client accepts the call this device is in again
//! (the one it last started or accepted and has not left), which tells the
//! server, on whichever node, that the device is back within its reconnect
//! window. If the call ended meanwhile, the server no longer knows it and the
//! client hands on an `ended` event (`CALL_END_REASON_HUNG_UP`) for it, so
//! that whoever follows the call events stops it too.

use crate::client::{Inner, unexpected};
use crate::{Client, Event, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why a call operation failed on this side (the server's refusals are
/// [`Error::Server`](crate::Error::Server)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// This device knows no such call (never seen, or already over).
    #[error("no call {0} on this device")]
    UnknownCall(u64),
    /// The call is not in a state that allows this (e.g. accepting a call
    /// that is not ringing here, adding a track to a call not yet running).
    #[error("call {call_id}: {reason}")]
    WrongState {
        /// The call.
        call_id: u64,
        /// What is wrong.
        reason: String,
    },
    /// No peer connection with this user in this call.
    #[error("call {call_id}: no connection with user {user_id}")]
    UnknownPeer {
        /// The call.
        call_id: u64,
        /// The user.
        user_id: u64,
    },
    /// The WebRTC stack refused or failed an operation.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A peer sent a signal payload that cannot be used (bad SDP or candidate).
    #[error("bad signal payload: {0}")]
    BadSignal(String),
    /// Waited too long (e.g. for a data channel to open).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The calls manager has stopped (its client was closed or dropped).
    #[error("the calls manager has stopped")]
    Stopped,
}

/// Call events taken from the client's event stream by
/// [`Client::take_call_events`].
#[derive(Debug)]
pub struct CallEventReceiver {
    rx: mpsc::UnboundedReceiver<v1::CallEvent>,
}

impl CallEventReceiver {
    /// The next call event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<v1::CallEvent> {
        self.rx.recv().await
    }

    /// The next call event if one is ready.
    pub fn try_next(&mut self) -> Option<v1::CallEvent> {
        self.rx.try_recv().ok()
    }
}

impl Inner {
    /// Hands a call event to the registered receiver, or to `Events` if
    /// there is none (or it was dropped).
    pub(crate) fn route_call_event(&self, call: v1::CallEvent) {
        if matches!(call.kind, Some(v1::call_event::Kind::Ended(_))) {
            self.left_call(call.call_id);
        }
        let sink = self.call_sink.lock().clone();
        let Some(sink) = sink else {
            return self.emit(Event::Call(call));
        };
        if let Err(mpsc::error::SendError(call)) = sink.send(call) {
            let mut current = self.call_sink.lock();
            if current.as_ref().is_some_and(|c| c.same_channel(&sink)) {
                current.take();
            }
            drop(current);
            self.emit(Event::Call(call));
        }
    }
}

impl Inner {
    /// This device is in `call` now.
    fn in_call(&self, call: u64) {
        *self.active_call.lock() = Some(call);
    }

    /// This device is no longer in `call`.
    fn left_call(&self, call: u64) {
        let mut active = self.active_call.lock();
        if *active == Some(call) {
            *active = None;
        }
    }

    /// After a (re)connect: accepts the call this device is in again, so
    /// that the node keeping it knows the device is back.
    pub(crate) async fn resume_call(self: Arc<Self>) {
        let Some(call) = *self.active_call.lock() else {
            return;
        };
        let accept = Body::CallUpdate(v1::CallUpdate {
            call_id: call,
            kind: v1::CallUpdateKind::Accept as i32,
        });
        match self.request(accept).await {
            Err(e)
                if matches!(
                    e.code(),
                    Some(v1::ErrorCode::NotFound | v1::ErrorCode::PermissionDenied)
                ) =>
            {
                tracing::debug!(call, "the call ended while this device was away");
                self.route_call_event(v1::CallEvent {
                    call_id: call,
                    conversation_id: 0,
                    kind: Some(v1::call_event::Kind::Ended(v1::CallEndReason::HungUp as i32)),
                });
            }
            Err(e) => {
                tracing::debug!(call, error = %e, "could not resume the call (the next connection tries again)")
            }
            Ok(_) => {}
        }
    }
}

impl Client {
    /// Sends call events to the returned receiver instead of [`Events`](crate::Events)
    /// from now on (a second call replaces the first receiver). The calls
    /// manager of feature `webrtc` does this itself.
    pub fn take_call_events(&self) -> CallEventReceiver {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner().call_sink.lock() = Some(tx);
        CallEventReceiver { rx }
    }

    async fn call_reply(&self, body: Body) -> Result<v1::Call> {
        match self.request(body).await? {
            Reply::Call(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn call_update(&self, call_id: u64, kind: v1::CallUpdateKind) -> Result<()> {
        self.ok_call(Body::CallUpdate(v1::CallUpdate {
            call_id,
            kind: kind as i32,
        }))
        .await
    }

    /// Calls `invitee_ids` (empty: every other member) in a conversation we
    /// are a member of; every device of each invitee rings. If an invitee is
    /// already ringing us in that conversation, the answer is that call,
    /// joined (glare on one server node).
    ///
    /// ```no_run
    /// # async fn demo(client: im_client_sdk::Client, conversation_id: u64) -> im_client_sdk::Result<()> {
    /// use im_client_sdk::v1;
    /// let media = v1::CallMedia { audio: true, video: false, screen: false };
    /// let call = client.call_invite(conversation_id, &[], media).await?;
    /// println!("call {} rings, {} in it", call.call_id, call.participants.len());
    /// # Ok(()) }
    /// ```
    pub async fn call_invite(
        &self,
        conversation_id: u64,
        invitee_ids: &[u64],
        media: v1::CallMedia,
    ) -> Result<v1::Call> {
        let call = self
            .call_reply(Body::CallInvite(v1::CallInvite {
                conversation_id,
                invitee_ids: invitee_ids.to_vec(),
                media: Some(media),
            }))
            .await?;
        if !call.participants.is_empty() {
            self.inner().in_call(call.call_id);
        }
        Ok(call)
    }

    /// Tells the caller that this device rings.
    pub async fn call_ringing(&self, call_id: u64) -> Result<()> {
        self.call_update(call_id, v1::CallUpdateKind::Ringing).await
    }

    /// Takes a ringing call (or joins a running call of the conversation).
    /// The answer lists the devices in the call now: this device joined, so
    /// it makes the SDP offer to each of the others.
    pub async fn call_accept(&self, call_id: u64) -> Result<v1::Call> {
        let call = self
            .call_reply(Body::CallUpdate(v1::CallUpdate {
                call_id,
                kind: v1::CallUpdateKind::Accept as i32,
            }))
            .await?;
        self.inner().in_call(call_id);
        Ok(call)
    }

    /// Declines a ringing call, on every device of ours.
    pub async fn call_reject(&self, call_id: u64) -> Result<()> {
        self.call_update(call_id, v1::CallUpdateKind::Reject).await
    }

    /// Declines a ringing call because we are in another call.
    pub async fn call_busy(&self, call_id: u64) -> Result<()> {
        self.call_update(call_id, v1::CallUpdateKind::Busy).await
    }

    /// Leaves a call; before anyone answered, the caller cancels it.
    pub async fn call_hang_up(&self, call_id: u64) -> Result<()> {
        self.inner().left_call(call_id);
        self.call_update(call_id, v1::CallUpdateKind::HangUp).await
    }

    /// Sends an SDP offer or answer, or a trickled ICE candidate, to one
    /// user of the call (the server relays it to the right device). The
    /// payload is relayed unread; it may be at most
    /// `HelloOk.limits.max_signal_bytes` long (`TOO_LARGE` otherwise).
    ///
    /// ```no_run
    /// # async fn demo(client: im_client_sdk::Client, call_id: u64, peer: u64, sdp: String) -> im_client_sdk::Result<()> {
    /// use im_client_sdk::v1::SignalKind;
    /// client.call_signal(call_id, peer, SignalKind::Offer, sdp).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call_signal(
        &self,
        call_id: u64,
        to_user_id: u64,
        kind: v1::SignalKind,
        payload: String,
    ) -> Result<()> {
        self.ok_call(Body::CallSignal(v1::CallSignal {
            call_id,
            to_user_id,
            kind: kind as i32,
            payload,
        }))
        .await
    }

    /// The STUN and TURN servers to use for calls (TURN credentials expire:
    /// ask again for each call).
    pub async fn ice_servers(&self) -> Result<Vec<v1::IceServer>> {
        match self.request(Body::GetIceServers(v1::GetIceServers {})).await? {
            Reply::IceServers(s) => Ok(s.servers),
            other => Err(unexpected(other)),
        }
    }
}
