//! The call rules, deterministically: every event carries its time.

use super::*;

const ALICE: UserId = 1;
const BOB: UserId = 2;
const CAROL: UserId = 3;
const DAVE: UserId = 4;
const ERIN: UserId = 5;
const CONV: ConversationId = 10;

fn at(user: UserId, device: &str) -> Endpoint {
    Endpoint::new(user, device)
}

fn voice() -> Media {
    Media {
        audio: true,
        ..Media::default()
    }
}

fn book() -> CallBook {
    CallBook::new(CallConfig::default())
}

/// The events `to` gets among `actions`.
fn heard(actions: &[CallAction], to: &To) -> Vec<CallEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            CallAction::Deliver { to: t, event, .. } if t == to => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn records(actions: &[CallAction]) -> Vec<CallRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            CallAction::Record { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

fn ended(reason: EndReason) -> CallEvent {
    CallEvent::Ended { reason }
}

#[test]
fn an_unanswered_call_rings_until_the_time_out_then_is_missed() {
    let mut calls = book();
    let out = calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    assert_eq!(
        heard(&out, &To::User(BOB)),
        [CallEvent::Incoming {
            from: at(ALICE, "a"),
            conversation: CONV,
            media: voice()
        }]
    );
    let out = calls.ringing(5, 1, at(BOB, "phone")).unwrap();
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Ringing { by: at(BOB, "phone") }]
    );
    assert_eq!(calls.poll_timeout(), Some(30_000));
    assert!(calls.handle_timeout(29_999).is_empty());
    let out = calls.handle_timeout(30_000);
    assert_eq!(heard(&out, &To::User(BOB)), [ended(EndReason::NoAnswer)]);
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::NoAnswer { user: BOB }, ended(EndReason::NoAnswer)]
    );
    assert_eq!(records(&out), [CallRecord::Missed { caller: ALICE }]);
    assert!(!calls.is_live(1) && calls.call_of(ALICE).is_none());
    assert_eq!(calls.poll_timeout(), None);
}

#[test]
fn a_callee_in_another_call_answers_busy() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(BOB, "b"), &[CAROL], voice()).unwrap();
    calls.accept(10, 1, at(CAROL, "c")).unwrap();
    let out = calls
        .invite(20, 2, CONV + 1, at(ALICE, "a"), &[BOB], voice())
        .unwrap();
    assert!(heard(&out, &To::User(BOB)).is_empty(), "a busy user is not rung");
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Busy { user: BOB }, ended(EndReason::Busy)]
    );
    assert_eq!(records(&out), [CallRecord::Busy { caller: ALICE }]);
    assert!(!calls.is_live(2) && calls.call_of(ALICE).is_none());
    assert_eq!(calls.call_of(BOB), Some(1), "Bob's call goes on");
}

#[test]
fn one_device_answers_and_the_others_stop_ringing() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    // Before the answer a signal reaches every device of the callee.
    let offer = String::from("v=0 offer");
    let out = calls
        .signal(1, 1, at(ALICE, "a"), BOB, SignalKind::Offer, offer.clone())
        .unwrap();
    assert_eq!(heard(&out, &To::User(BOB)).len(), 1);
    let out = calls.accept(2_000, 1, at(BOB, "laptop")).unwrap();
    assert_eq!(
        heard(&out, &To::OtherDevices(at(BOB, "laptop"))),
        [CallEvent::AnsweredElsewhere]
    );
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Joined {
            by: at(BOB, "laptop")
        }]
    );
    assert_eq!(
        records(&out),
        [CallRecord::Started {
            caller: ALICE,
            media: voice()
        }]
    );
    // After it, only the device that answered.
    let out = calls
        .signal(
            2_001,
            1,
            at(ALICE, "a"),
            BOB,
            SignalKind::Candidate,
            String::from("c"),
        )
        .unwrap();
    assert!(heard(&out, &To::User(BOB)).is_empty());
    assert_eq!(heard(&out, &To::Device(at(BOB, "laptop"))).len(), 1);
    // The phone that did not answer cannot join in the laptop's place.
    assert!(matches!(
        calls.accept(2_002, 1, at(BOB, "phone")),
        Err(CallError::InvalidState(_))
    ));
    // Hanging up ends a two-party call, recorded with its duration.
    let out = calls.hang_up(62_000, 1, at(BOB, "laptop")).unwrap();
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [
            CallEvent::Left {
                by: at(BOB, "laptop")
            },
            ended(EndReason::HungUp)
        ]
    );
    assert_eq!(
        records(&out),
        [CallRecord::Ended {
            duration_ms: 60_000,
            participants: vec![ALICE, BOB]
        }]
    );
    assert!(calls.call_of(ALICE).is_none() && calls.call_of(BOB).is_none());
}

#[test]
fn glare_two_invites_at_once_make_one_call() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    // Bob calls Alice before he saw her call: he joins hers instead.
    let out = calls.invite(3, 2, CONV, at(BOB, "b"), &[ALICE], voice()).unwrap();
    assert!(!calls.is_live(2), "no second call");
    assert_eq!(calls.call_of(BOB), Some(1));
    assert_eq!(
        heard(&out, &To::Device(at(BOB, "b"))),
        [CallEvent::Joined { by: at(ALICE, "a") }]
    );
    assert_eq!(records(&out).len(), 1, "the surviving call connected");
    // In another conversation the same two would make a separate call
    // only if neither were busy: Alice is in call 1 now.
    let out = calls
        .invite(4, 3, CONV + 1, at(CAROL, "c"), &[ALICE], voice())
        .unwrap();
    assert_eq!(records(&out), [CallRecord::Busy { caller: CAROL }]);
}

#[test]
fn a_dropped_peer_gets_a_reconnect_window_before_the_call_ends() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    calls.accept(1_000, 1, at(BOB, "b")).unwrap();
    let out = calls.device_gone(5_000, &at(BOB, "b"));
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Reconnecting { by: at(BOB, "b") }]
    );
    assert_eq!(calls.poll_timeout(), Some(25_000));
    let out = calls.device_back(10_000, &at(BOB, "b"));
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Reconnected { by: at(BOB, "b") }]
    );
    assert_eq!(calls.poll_timeout(), None);
    // Gone again, and the window passes: Bob has left, the call ends.
    calls.device_gone(20_000, &at(BOB, "b"));
    assert!(calls.handle_timeout(39_999).is_empty());
    let out = calls.handle_timeout(40_000);
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Left { by: at(BOB, "b") }, ended(EndReason::HungUp)]
    );
    assert_eq!(
        records(&out),
        [CallRecord::Ended {
            duration_ms: 39_000,
            participants: vec![ALICE, BOB]
        }]
    );
}

#[test]
fn a_call_whose_participants_all_vanish_ends() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    calls.accept(1_000, 1, at(BOB, "b")).unwrap();
    calls.device_gone(2_000, &at(ALICE, "a"));
    calls.device_gone(3_000, &at(BOB, "b"));
    let out = calls.handle_timeout(22_000);
    assert_eq!(
        heard(&out, &To::Device(at(BOB, "b"))),
        [ended(EndReason::Vanished)]
    );
    assert!(matches!(records(&out)[..], [CallRecord::Ended { .. }]));
    assert!(!calls.is_live(1) && calls.call_of(ALICE).is_none() && calls.call_of(BOB).is_none());
}

#[test]
fn rejections_end_a_call_only_when_nobody_is_left_to_answer() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    let out = calls.reject(1, 1, at(BOB, "phone")).unwrap();
    assert_eq!(
        heard(&out, &To::OtherDevices(at(BOB, "phone"))),
        [ended(EndReason::Rejected)]
    );
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Rejected { user: BOB }, ended(EndReason::Rejected)]
    );
    assert_eq!(records(&out), [CallRecord::Rejected { caller: ALICE }]);

    // A group call: one declines, another answers, the call goes on.
    let out = calls
        .invite(10, 2, CONV, at(ALICE, "a"), &[BOB, CAROL], voice())
        .unwrap();
    assert_eq!(heard(&out, &To::User(CAROL)).len(), 1);
    assert!(records(&calls.reject(11, 2, at(BOB, "b")).unwrap()).is_empty());
    assert_eq!(records(&calls.accept(12, 2, at(CAROL, "c")).unwrap()).len(), 1);
    let out = calls.hang_up(5_012, 2, at(CAROL, "c")).unwrap();
    assert_eq!(
        records(&out),
        [CallRecord::Ended {
            duration_ms: 5_000,
            participants: vec![ALICE, CAROL]
        }]
    );
}

#[test]
fn the_caller_cancelling_stops_every_ringing_device() {
    let mut calls = book();
    calls
        .invite(0, 1, CONV, at(ALICE, "a"), &[BOB, CAROL], voice())
        .unwrap();
    let out = calls.hang_up(4_000, 1, at(ALICE, "a")).unwrap();
    assert_eq!(heard(&out, &To::User(BOB)), [ended(EndReason::Cancelled)]);
    assert_eq!(heard(&out, &To::User(CAROL)), [ended(EndReason::Cancelled)]);
    assert_eq!(records(&out), [CallRecord::Missed { caller: ALICE }]);
    assert!(calls.call_of(ALICE).is_none());
}

#[test]
fn a_mesh_call_takes_members_up_to_its_limit_and_goes_on_when_one_leaves() {
    let mut calls = book();
    calls
        .invite(0, 1, CONV, at(ALICE, "a"), &[BOB, CAROL, DAVE], voice())
        .unwrap();
    calls.accept(1, 1, at(BOB, "b")).unwrap();
    calls.accept(2, 1, at(CAROL, "c")).unwrap();
    // The newcomer hears of everyone already there, to negotiate with each.
    let out = calls.accept(3, 1, at(DAVE, "d")).unwrap();
    let joined: Vec<_> = heard(&out, &To::Device(at(DAVE, "d")));
    assert_eq!(joined.len(), 3);
    assert_eq!(calls.participants(1).len(), 4);
    assert_eq!(calls.accept(4, 1, at(ERIN, "e")), Err(CallError::Full(1, 4)));
    // Each pair signals on its own: Carol's offer reaches Dave's device only.
    let out = calls
        .signal(5, 1, at(CAROL, "c"), DAVE, SignalKind::Offer, String::from("sdp"))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(heard(&out, &To::Device(at(DAVE, "d"))).len(), 1);
    // Bob leaves; the three others go on.
    let out = calls.hang_up(6, 1, at(BOB, "b")).unwrap();
    assert!(records(&out).is_empty());
    for who in [at(ALICE, "a"), at(CAROL, "c"), at(DAVE, "d")] {
        assert_eq!(
            heard(&out, &To::Device(who)),
            [CallEvent::Left { by: at(BOB, "b") }]
        );
    }
    assert_eq!(calls.participants(1).len(), 3);
    // A member joins the running call without an invitation.
    assert!(calls.accept(7, 1, at(ERIN, "e")).is_ok());
    assert_eq!(calls.participants(1).len(), 4);
    // Too many invitees at once.
    assert_eq!(
        calls.invite(8, 2, CONV + 1, at(BOB, "b"), &[11, 12, 13, 14], voice()),
        Err(CallError::Full(2, 4))
    );
}

#[test]
fn strangers_and_unknown_calls_are_refused() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    let sdp = String::from("sdp");
    assert_eq!(
        calls.signal(1, 9, at(ALICE, "a"), BOB, SignalKind::Offer, sdp.clone()),
        Err(CallError::UnknownCall(9))
    );
    // Not in the call: no signal, no accept before an answer, no reject.
    assert_eq!(
        calls.signal(1, 1, at(ERIN, "e"), BOB, SignalKind::Offer, sdp.clone()),
        Err(CallError::NotInCall(1))
    );
    assert_eq!(calls.accept(1, 1, at(ERIN, "e")), Err(CallError::NotInCall(1)));
    assert_eq!(calls.reject(1, 1, at(ERIN, "e")), Err(CallError::NotInCall(1)));
    // Another device of the caller is not the caller's device in the call.
    assert_eq!(
        calls.signal(1, 1, at(ALICE, "tablet"), BOB, SignalKind::Offer, sdp.clone()),
        Err(CallError::NotInCall(1))
    );
    assert_eq!(
        calls.signal(1, 1, at(ALICE, "a"), ERIN, SignalKind::Offer, sdp),
        Err(CallError::NotInCall(1))
    );
    // One call at a time; and a call needs a callee.
    assert_eq!(
        calls.invite(2, 2, CONV, at(ALICE, "a"), &[CAROL], voice()),
        Err(CallError::AlreadyInCall(1))
    );
    assert_eq!(
        calls.invite(2, 3, CONV, at(CAROL, "c"), &[CAROL], voice()),
        Err(CallError::NobodyToCall)
    );
    assert_eq!(
        calls.hang_up(3, 7, at(ALICE, "a")),
        Err(CallError::UnknownCall(7))
    );
}

#[test]
fn a_device_in_a_call_elsewhere_answers_busy_and_its_other_devices_stop() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    // Bob's phone is in a call this book cannot see (another node).
    let out = calls.busy(10, 1, at(BOB, "phone")).unwrap();
    assert_eq!(
        heard(&out, &To::OtherDevices(at(BOB, "phone"))),
        [ended(EndReason::Busy)]
    );
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Busy { user: BOB }, ended(EndReason::Busy)]
    );
    assert_eq!(records(&out), [CallRecord::Busy { caller: ALICE }]);
    assert!(!calls.is_live(1));
    assert_eq!(
        calls.busy(20, 1, at(BOB, "phone")),
        Err(CallError::UnknownCall(1))
    );
    // Only an invitee that rings can answer busy.
    calls
        .invite(30, 2, CONV, at(ALICE, "a"), &[BOB], voice())
        .unwrap();
    assert_eq!(calls.busy(40, 2, at(CAROL, "c")), Err(CallError::NotInCall(2)));
    assert_eq!(calls.busy(40, 2, at(ALICE, "a")), Err(CallError::NotInCall(2)));
    assert_eq!(
        calls.invite(50, 3, CONV, at(DAVE, "d"), &[DAVE], voice()),
        Err(CallError::NobodyToCall)
    );
}

#[test]
fn a_connected_call_left_alone_ends_once_nobody_rings_any_more() {
    let mut calls = book();
    calls
        .invite(0, 1, CONV, at(ALICE, "a"), &[BOB, CAROL], voice())
        .unwrap();
    calls.accept(10, 1, at(BOB, "b")).unwrap();
    // Bob leaves while Carol still rings: Alice waits for her.
    let out = calls.hang_up(20, 1, at(BOB, "b")).unwrap();
    assert!(calls.is_live(1), "Carol may still answer");
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Left { by: at(BOB, "b") }]
    );
    // Carol never answers: Alice is alone, the call ends.
    let out = calls.handle_timeout(30_000);
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::NoAnswer { user: CAROL }, ended(EndReason::HungUp)]
    );
    assert!(matches!(records(&out)[..], [CallRecord::Ended { .. }]));
    assert!(
        !calls.is_live(1) && calls.call_of(ALICE).is_none(),
        "Alice is free again"
    );

    // The same when the last ringing invitee declines.
    calls
        .invite(40_000, 2, CONV, at(ALICE, "a"), &[BOB, CAROL], voice())
        .unwrap();
    calls.accept(40_010, 2, at(BOB, "b")).unwrap();
    calls.hang_up(40_020, 2, at(BOB, "b")).unwrap();
    let out = calls.reject(40_030, 2, at(CAROL, "c")).unwrap();
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))).last(),
        Some(&ended(EndReason::HungUp))
    );
    assert!(calls.call_of(ALICE).is_none());
}

#[test]
fn accepting_again_from_the_same_device_says_it_is_back() {
    let mut calls = book();
    calls.invite(0, 1, CONV, at(ALICE, "a"), &[BOB], voice()).unwrap();
    calls.accept(10, 1, at(BOB, "phone")).unwrap();
    // Already there: nothing to tell anyone.
    assert!(calls.accept(20, 1, at(BOB, "phone")).unwrap().is_empty());
    calls.device_gone(30, &at(BOB, "phone"));
    // Back (through another node): the others hear it, the window is gone.
    let out = calls.accept(40, 1, at(BOB, "phone")).unwrap();
    assert_eq!(
        heard(&out, &To::Device(at(ALICE, "a"))),
        [CallEvent::Reconnected { by: at(BOB, "phone") }]
    );
    assert_eq!(calls.poll_timeout(), None);
    // Another device of the same user is still refused.
    assert!(matches!(
        calls.accept(50, 1, at(BOB, "laptop")),
        Err(CallError::InvalidState(_))
    ));
}
