//! The calls manager's decisions as plain functions, without I/O: what to do
//! with an incoming call (ring, busy, glare), who makes the first offer, who
//! yields when both sides renegotiate at once, and the wire format of the
//! signal payloads.

use crate::CallError;
use im_protocol::v1;
use webrtc::peer_connection::RTCIceCandidateInit;

/// Where a call stands on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// We invited; nobody has joined yet.
    Outgoing,
    /// It rings here; we have not answered.
    Incoming,
    /// We are in it (we accepted, or someone joined our call).
    Active,
}

/// What the decision about an incoming call needs to know of one call of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallView {
    pub(crate) call_id: u64,
    pub(crate) conversation_id: u64,
    pub(crate) phase: Phase,
    /// Whom we invited (empty: every other member of the conversation).
    pub(crate) invitees: Vec<u64>,
}

/// What to do with an `incoming` call event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncomingDecision {
    /// Ring (answer RINGING) and tell the application.
    Ring,
    /// We are in another call: answer BUSY.
    Busy,
    /// Glare, and their call has the lower id: hang up ours and accept theirs.
    AcceptReplacing {
        /// Our call, to hang up.
        ours: u64,
    },
    /// Glare, and our call has the lower id: leave theirs alone; their side
    /// hangs it up and accepts ours.
    KeepOurs {
        /// Our call, which wins.
        ours: u64,
    },
    /// We know this call already (a repeated event): nothing to do.
    Duplicate,
}

/// Decides about an incoming call `call_id` in `conversation_id` from
/// `from_user`, given our calls.
///
/// * **Glare**: we are calling `from_user` (or everyone) in the same
///   conversation and nobody has answered yet, and they call us: the call
///   with the lower id wins; the side whose own call has the higher id hangs
///   it up and accepts the other.
/// * **Busy**: we are in a call (running, or one we are placing) when
///   another one comes in. Being rung by another call is not busy: both ring.
pub(crate) fn decide_incoming(
    ours: &[CallView],
    call_id: u64,
    conversation_id: u64,
    from_user: u64,
) -> IncomingDecision {
    if ours.iter().any(|c| c.call_id == call_id) {
        return IncomingDecision::Duplicate;
    }
    let glare = ours.iter().find(|c| {
        c.phase == Phase::Outgoing
            && c.conversation_id == conversation_id
            && (c.invitees.is_empty() || c.invitees.contains(&from_user))
    });
    if let Some(glare) = glare {
        // Only this one call of ours may be in progress, or we would be busy.
        let others_busy = ours
            .iter()
            .any(|c| c.call_id != glare.call_id && c.phase != Phase::Incoming);
        if !others_busy {
            return if call_id < glare.call_id {
                IncomingDecision::AcceptReplacing { ours: glare.call_id }
            } else {
                IncomingDecision::KeepOurs { ours: glare.call_id }
            };
        }
    }
    if ours.iter().any(|c| c.phase != Phase::Incoming) {
        IncomingDecision::Busy
    } else {
        IncomingDecision::Ring
    }
}

/// The devices to which we, having just joined, make an offer: everyone in
/// the call's participant list but our own user (the mesh is addressed by
/// user id; one device per user is in a call).
pub(crate) fn offer_targets(me: u64, participants: &[v1::CallPeer]) -> Vec<u64> {
    let mut users: Vec<u64> = participants
        .iter()
        .map(|p| p.user_id)
        .filter(|&u| u != me)
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// In a renegotiation collision (both sides sent an offer), the polite side
/// rolls its own back and answers; the impolite side ignores the other's
/// offer. Both sides must agree: the one with the higher user id is polite.
pub(crate) fn polite(me: u64, peer: u64) -> bool {
    me > peer
}

/// The application's view of why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Everyone hung up (or all but one left).
    HungUp,
    /// Nobody answered in time (for a ringing device: we did not answer).
    NoAnswer,
    /// The caller gave up before anyone answered.
    Cancelled,
    /// Declined (for a ringing device: on another of our devices).
    Rejected,
    /// Every invitee was in another call.
    Busy,
    /// Every participant's connection dropped and none came back in time.
    Vanished,
    /// The server gave no reason this SDK knows.
    Other,
}

impl From<v1::CallEndReason> for EndReason {
    fn from(r: v1::CallEndReason) -> Self {
        match r {
            v1::CallEndReason::HungUp => EndReason::HungUp,
            v1::CallEndReason::NoAnswer => EndReason::NoAnswer,
            v1::CallEndReason::Cancelled => EndReason::Cancelled,
            v1::CallEndReason::Rejected => EndReason::Rejected,
            v1::CallEndReason::Busy => EndReason::Busy,
            v1::CallEndReason::Vanished => EndReason::Vanished,
            v1::CallEndReason::Unspecified => EndReason::Other,
        }
    }
}

/// Whether a call that rang here and ended this way counts as missed.
pub(crate) fn missed(phase: Phase, reason: EndReason) -> bool {
    phase == Phase::Incoming && matches!(reason, EndReason::NoAnswer | EndReason::Cancelled)
}

/// A `CANDIDATE` payload: the W3C `RTCIceCandidateInit` as JSON
/// (`{"candidate":"candidate:…","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"…"}`),
/// the shape browsers produce, so any client can read it.
pub(crate) fn encode_candidate(candidate: &RTCIceCandidateInit) -> String {
    serde_json::to_string(candidate).unwrap_or_default()
}

/// Reads a `CANDIDATE` payload.
pub(crate) fn decode_candidate(payload: &str) -> Result<RTCIceCandidateInit, CallError> {
    serde_json::from_str(payload).map_err(|e| CallError::BadSignal(format!("candidate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(call_id: u64, conversation_id: u64, phase: Phase, invitees: &[u64]) -> CallView {
        CallView {
            call_id,
            conversation_id,
            phase,
            invitees: invitees.to_vec(),
        }
    }

    #[test]
    fn with_no_call_an_incoming_call_rings() {
        assert_eq!(decide_incoming(&[], 5, 1, 7), IncomingDecision::Ring);
        let ringing = [view(4, 2, Phase::Incoming, &[])];
        assert_eq!(
            decide_incoming(&ringing, 5, 1, 7),
            IncomingDecision::Ring,
            "being rung is not busy: both ring"
        );
    }

    #[test]
    fn in_a_running_or_outgoing_call_we_are_busy() {
        let running = [view(4, 2, Phase::Active, &[7])];
        assert_eq!(decide_incoming(&running, 5, 1, 7), IncomingDecision::Busy);
        let calling_elsewhere = [view(4, 2, Phase::Outgoing, &[7])];
        assert_eq!(
            decide_incoming(&calling_elsewhere, 5, 1, 7),
            IncomingDecision::Busy,
            "calling someone in another conversation"
        );
        let calling_someone_else = [view(4, 1, Phase::Outgoing, &[8])];
        assert_eq!(
            decide_incoming(&calling_someone_else, 5, 1, 7),
            IncomingDecision::Busy,
            "same conversation, but we did not invite the caller"
        );
    }

    #[test]
    fn glare_the_lower_call_id_wins() {
        let ours_higher = [view(9, 1, Phase::Outgoing, &[7])];
        assert_eq!(
            decide_incoming(&ours_higher, 5, 1, 7),
            IncomingDecision::AcceptReplacing { ours: 9 }
        );
        let ours_lower = [view(3, 1, Phase::Outgoing, &[7])];
        assert_eq!(
            decide_incoming(&ours_lower, 5, 1, 7),
            IncomingDecision::KeepOurs { ours: 3 }
        );
        let everyone = [view(9, 1, Phase::Outgoing, &[])];
        assert_eq!(
            decide_incoming(&everyone, 5, 1, 7),
            IncomingDecision::AcceptReplacing { ours: 9 },
            "we invited every member, the caller among them"
        );
    }

    #[test]
    fn an_answered_call_is_no_glare_but_busy() {
        let answered = [view(9, 1, Phase::Active, &[7])];
        assert_eq!(decide_incoming(&answered, 5, 1, 7), IncomingDecision::Busy);
    }

    #[test]
    fn glare_while_also_in_another_call_is_busy() {
        let calls = [view(9, 1, Phase::Outgoing, &[7]), view(2, 3, Phase::Active, &[8])];
        assert_eq!(decide_incoming(&calls, 5, 1, 7), IncomingDecision::Busy);
    }

    #[test]
    fn a_known_call_is_a_duplicate() {
        let calls = [view(5, 1, Phase::Incoming, &[])];
        assert_eq!(decide_incoming(&calls, 5, 1, 7), IncomingDecision::Duplicate);
    }

    #[test]
    fn the_joiner_offers_to_everyone_else_in_the_call() {
        let peer = |user_id: u64, device: &str| v1::CallPeer {
            user_id,
            device_id: device.into(),
        };
        let participants = [peer(1, "a"), peer(3, "c"), peer(2, "me"), peer(3, "c2")];
        assert_eq!(offer_targets(2, &participants), vec![1, 3]);
        assert!(offer_targets(2, &[peer(2, "me")]).is_empty());
    }

    #[test]
    fn exactly_one_side_of_a_pair_is_polite() {
        for (a, b) in [(1, 2), (9, 4), (100, 101)] {
            assert_ne!(polite(a, b), polite(b, a));
        }
    }

    #[test]
    fn only_an_unanswered_ringing_call_that_timed_out_or_was_cancelled_is_missed() {
        assert!(missed(Phase::Incoming, EndReason::NoAnswer));
        assert!(missed(Phase::Incoming, EndReason::Cancelled));
        assert!(!missed(Phase::Incoming, EndReason::Rejected));
        assert!(!missed(Phase::Active, EndReason::HungUp));
        assert!(!missed(Phase::Outgoing, EndReason::NoAnswer));
        assert_eq!(EndReason::from(v1::CallEndReason::Vanished), EndReason::Vanished);
    }

    #[test]
    fn candidates_travel_as_w3c_json() {
        let c = RTCIceCandidateInit {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: Some("abcd".into()),
            url: None,
        };
        let payload = encode_candidate(&c);
        assert!(payload.contains("\"sdpMLineIndex\":0"), "{payload}");
        assert!(payload.contains("\"sdpMid\":\"0\""), "{payload}");
        assert_eq!(decode_candidate(&payload).unwrap(), c);
        assert!(matches!(
            decode_candidate("not json"),
            Err(CallError::BadSignal(_))
        ));
    }
}
