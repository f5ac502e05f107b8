//! Negotiation of one peer connection: offers after local changes once the
//! connection is stable, answers, trickled candidates, and the W3C "perfect
//! negotiation" rule for collisions (the polite side rolls its offer back).

use super::{CallEvent, Peer};
use crate::CallError;
use crate::calls::media::webrtc_error;
use crate::calls::rules::decode_candidate;
use im_protocol::v1;
use webrtc::peer_connection::RTCSessionDescription;

/// Candidates kept before the remote description arrives.
const MAX_EARLY_CANDIDATES: usize = 256;

impl Peer {
    pub(super) async fn has_sctp(&self) -> bool {
        self.pc
            .current_local_description()
            .await
            .is_some_and(|d| d.sdp.contains("m=application"))
    }

    pub(super) async fn is_stable(&self) -> bool {
        self.pc.pending_local_description().await.is_none()
            && self.pc.pending_remote_description().await.is_none()
    }

    /// Whether something local is not negotiated yet: a transceiver without
    /// a mid (a track added where no offered section could carry it), or a
    /// data channel without SCTP.
    pub(super) async fn unnegotiated(&self) -> bool {
        for t in self.pc.get_transceivers().await {
            if matches!(t.mid().await, Ok(None)) {
                return true;
            }
        }
        self.channels_pending && !self.has_sctp().await
    }

    /// Offers if a change waits and the connection is stable.
    pub(super) async fn maybe_offer(&mut self) -> Result<(), CallError> {
        if !self.may_offer || !self.needs_offer || !self.is_stable().await {
            return Ok(());
        }
        self.needs_offer = false;
        let offer = self.pc.create_offer(None).await.map_err(webrtc_error)?;
        let sdp = offer.sdp.clone();
        self.pc.set_local_description(offer).await.map_err(webrtc_error)?;
        self.signal(v1::SignalKind::Offer, sdp);
        Ok(())
    }

    /// Ends the remote tracks the peer no longer sends (a renegotiation
    /// turned their transceiver's direction away from receiving).
    pub(super) async fn end_stopped_tracks(&mut self) {
        if self.remote_tracks.is_empty() {
            return;
        }
        for t in self.pc.get_transceivers().await {
            if t.current_direction().await.is_ok_and(|d| d.has_recv()) {
                continue;
            }
            let Ok(Some(receiver)) = t.receiver().await else {
                continue;
            };
            let id = receiver.track().track_id().await;
            if let Some(i) = self.remote_tracks.iter().position(|(tid, _)| *tid == id) {
                let (track_id, end) = self.remote_tracks.remove(i);
                end.send_replace(true);
                self.emit(CallEvent::RemoteTrackEnded {
                    call_id: self.setup.call_id,
                    user_id: self.setup.user_id,
                    track_id,
                });
            }
        }
    }

    /// After reaching a stable state: end the tracks the peer stopped, offer
    /// whatever is still not negotiated.
    pub(super) async fn after_stable(&mut self) -> Result<(), CallError> {
        self.end_stopped_tracks().await;
        if self.has_sctp().await {
            self.channels_pending = false;
        }
        if self.unnegotiated().await {
            self.needs_offer = true;
        }
        self.maybe_offer().await
    }

    pub(super) async fn remote_offer(&mut self, sdp: String) -> Result<(), CallError> {
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| CallError::BadSignal(e.to_string()))?;
        let collision = self.pc.pending_local_description().await.is_some();
        self.ignoring_offer = collision && !self.polite;
        if self.ignoring_offer {
            tracing::debug!(call_id = self.setup.call_id, "offer collision: ours stands");
            return Ok(());
        }
        if collision {
            let rollback = RTCSessionDescription::rollback(None).map_err(webrtc_error)?;
            self.pc
                .set_local_description(rollback)
                .await
                .map_err(webrtc_error)?;
            self.needs_offer = true;
        }
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(webrtc_error)?;
        self.flush_candidates().await;
        // Answering the first offer: our tracks go into the sections it
        // offered (a track no section fits is offered after), and a channel
        // of our own if it offers SCTP, to watch the association come up.
        self.may_offer = true;
        if self.sctp_channel.is_none()
            && self
                .pc
                .remote_description()
                .await
                .is_some_and(|d| d.sdp.contains("m=application"))
        {
            self.first_channel(None).await?;
        }
        for track in std::mem::take(&mut self.pending_tracks) {
            self.attach(track).await?;
        }
        let answer = self.pc.create_answer(None).await.map_err(webrtc_error)?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(webrtc_error)?;
        self.signal(v1::SignalKind::Answer, sdp);
        self.after_stable().await
    }

    pub(super) async fn remote_answer(&mut self, sdp: String) -> Result<(), CallError> {
        if self.pc.pending_local_description().await.is_none() {
            tracing::debug!(
                call_id = self.setup.call_id,
                "an answer to no offer of ours: dropped"
            );
            return Ok(());
        }
        let answer = RTCSessionDescription::answer(sdp).map_err(|e| CallError::BadSignal(e.to_string()))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(webrtc_error)?;
        self.flush_candidates().await;
        self.after_stable().await
    }

    pub(super) async fn remote_candidate(&mut self, payload: &str) -> Result<(), CallError> {
        let candidate = decode_candidate(payload)?;
        if self.pc.remote_description().await.is_none() {
            // Kept until the offer arrives; a peer sending more before any
            // offer is not a real one (a browser gathers a few dozen).
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(CallError::BadSignal("too many candidates before an offer".into()));
            }
            self.early_candidates.push(candidate);
            return Ok(());
        }
        match self.pc.add_ice_candidate(candidate).await {
            Err(_) if self.ignoring_offer => Ok(()),
            other => other.map_err(webrtc_error),
        }
    }

    pub(super) async fn flush_candidates(&mut self) {
        for candidate in std::mem::take(&mut self.early_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                tracing::debug!(call_id = self.setup.call_id, error = %e, "early candidate refused");
            }
        }
    }
}
