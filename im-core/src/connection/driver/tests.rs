//! The session driver's rules, one test each, with made-up instants.
use super::*;
use crate::event::SharedEvent;
use im_protocol::v1::response::Result as Reply;

fn driver(now: Instant) -> SessionDriver {
    SessionDriver::new(Arc::new(ConnectionConfig::default()), now)
}

fn ping_frame(id: u64, format: Format) -> Bytes {
    codec::encode(
        &v1::ClientFrame {
            request_id: id,
            body: Some(v1::client_frame::Body::Ping(v1::Ping {})),
        },
        format,
    )
}

fn ok(id: u64) -> Outcome {
    Outcome {
        reply: v1::ServerFrame::response(id, Reply::Ok(v1::Empty {})),
        session: None,
        close: None,
        session_lifetime: None,
    }
}

fn decoded(t: Transmit) -> v1::ServerFrame {
    match t {
        Transmit::Frame(b, f) => codec::decode(&b, f, usize::MAX).unwrap(),
        other => panic!("not a frame: {other:?}"),
    }
}

fn response_id(t: Transmit) -> (u64, Option<i32>) {
    match decoded(t).body {
        Some(v1::server_frame::Body::Response(r)) => {
            let code = match r.result {
                Some(Reply::Error(e)) => Some(e.code),
                _ => None,
            };
            (r.request_id, code)
        }
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn requests_run_one_at_a_time_in_order_with_bounded_read_ahead() {
    let now = Instant::now();
    let mut d = driver(now);
    for id in 1..=MAX_PIPELINE as u64 {
        assert!(d.wants_input());
        d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
    }
    assert!(!d.wants_input(), "read-ahead is bounded");
    let first = d.next_request(now).unwrap();
    assert_eq!(first.request_id, 1);
    assert!(d.next_request(now).is_none(), "one request at a time");
    assert!(d.wants_input());
    d.request_done(now, &ok(1));
    assert_eq!(response_id(d.poll_transmit().unwrap()), (1, None));
    assert_eq!(d.next_request(now).unwrap().request_id, 2);
}

#[test]
fn requests_over_the_rate_limit_are_refused_without_running() {
    let now = Instant::now();
    let config = ConnectionConfig {
        requests_per_second: 1.0,
        request_burst: 2.0,
        ..Default::default()
    };
    let mut d = SessionDriver::new(Arc::new(config), now);
    for id in 1..=3 {
        d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
    }
    for id in 1..=2 {
        assert_eq!(d.next_request(now).unwrap().request_id, id);
        d.request_done(now, &ok(id));
        assert_eq!(response_id(d.poll_transmit().unwrap()), (id, None));
    }
    assert!(d.next_request(now).is_none());
    assert_eq!(
        response_id(d.poll_transmit().unwrap()),
        (3, Some(v1::ErrorCode::RateLimited as i32))
    );
    d.handle_frame(now, &ping_frame(4, Format::Binary), Format::Binary);
    let later = now + Duration::from_secs(1);
    assert_eq!(d.next_request(later).unwrap().request_id, 4, "a token per second");
}

#[test]
fn undecodable_frame_is_answered_with_request_id_zero_in_its_format() {
    let now = Instant::now();
    let mut d = driver(now);
    d.handle_frame(now, b"{not json", Format::Json);
    match d.poll_transmit().unwrap() {
        Transmit::Frame(b, Format::Json) => {
            let text = std::str::from_utf8(&b).unwrap();
            assert!(text.contains("INVALID_ARGUMENT"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let too_big = vec![0u8; ConnectionConfig::default().max_frame_bytes + 1];
    d.handle_frame(now, &too_big, Format::Binary);
    assert_eq!(
        response_id(d.poll_transmit().unwrap()),
        (0, Some(v1::ErrorCode::TooLarge as i32))
    );
    assert!(d.is_open(), "bad frames do not close the connection");
}

#[test]
fn events_follow_the_format_of_the_latest_request() {
    let now = Instant::now();
    let mut d = driver(now);
    d.handle_frame(now, &ping_frame(1, Format::Json), Format::Json);
    d.next_request(now).unwrap();
    d.request_done(now, &ok(1));
    d.poll_transmit().unwrap();
    d.handle_event(Outbound::Event(SharedEvent::new(v1::event::Kind::Typing(
        v1::TypingEvent::default(),
    ))));
    assert!(matches!(
        d.poll_transmit(),
        Some(Transmit::Frame(_, Format::Json))
    ));
}

#[test]
fn heartbeat_pings_then_idle_client_is_closed_with_paused_time() {
    let start = Instant::now();
    let config = ConnectionConfig::default();
    let beat = Duration::from_millis(u64::from(config.heartbeat_interval_ms));
    let mut d = driver(start);
    assert_eq!(d.poll_timeout(), Some(start + beat));
    d.handle_timeout(start + beat / 2);
    assert!(d.poll_transmit().is_none(), "not due yet");
    d.handle_timeout(start + beat);
    assert_eq!(d.poll_transmit(), Some(Transmit::Ping));
    // The client answers the first ping, then goes silent.
    d.handle_activity(start + beat);
    let mut now = start + beat;
    let idle = Duration::from_millis(u64::from(config.idle_timeout_ms));
    while d.is_open() {
        now = d.poll_timeout().unwrap();
        d.handle_timeout(now);
        assert!(
            now <= start + beat + idle + beat,
            "closed within one heartbeat of the idle limit"
        );
    }
    assert!(now >= start + beat + idle);
    let last: Vec<_> = std::iter::from_fn(|| d.poll_transmit()).collect();
    assert!(matches!(
        last.last(),
        Some(Transmit::Close(Some(Close {
            code: CloseCode::GoingAway,
            ..
        })))
    ));
}

#[test]
fn shutdown_finishes_the_request_in_flight_refuses_the_rest_and_says_when_to_return() {
    let now = Instant::now();
    let mut d = driver(now);
    for id in 1..=3 {
        d.handle_frame(now, &ping_frame(id, Format::Binary), Format::Binary);
    }
    d.next_request(now).unwrap();
    d.shutdown();
    assert!(!d.is_open() && !d.is_closed(), "waits for the request in flight");
    assert!(d.poll_transmit().is_none());
    d.request_done(now, &ok(1));
    assert_eq!(response_id(d.poll_transmit().unwrap()), (1, None));
    for id in 2..=3 {
        assert_eq!(
            response_id(d.poll_transmit().unwrap()),
            (id, Some(v1::ErrorCode::Unavailable as i32))
        );
    }
    match decoded(d.poll_transmit().unwrap()).body {
        Some(v1::server_frame::Body::Event(v1::Event {
            kind: Some(v1::event::Kind::Closing(c)),
        })) => assert_eq!(
            c.reconnect_after_ms,
            ConnectionConfig::default().reconnect_after_ms
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d.poll_transmit(),
        Some(Transmit::Close(Some(Close {
            code: CloseCode::GoingAway,
            ..
        })))
    ));
    assert!(d.is_closed());
}

#[test]
fn a_session_ends_when_its_token_expires_with_a_typed_reason() {
    let now = Instant::now();
    let mut d = driver(now);
    d.handle_frame(now, &ping_frame(1, Format::Json), Format::Json);
    d.next_request(now).unwrap();
    let mut hello = ok(1);
    hello.session_lifetime = Some(Duration::from_secs(5));
    d.request_done(now, &hello);
    d.poll_transmit().unwrap();
    assert_eq!(
        d.poll_timeout(),
        Some(now + Duration::from_secs(5)),
        "before the first heartbeat"
    );
    d.handle_timeout(now + Duration::from_secs(4));
    assert!(d.is_open());
    d.handle_timeout(now + Duration::from_secs(5));
    match decoded(d.poll_transmit().unwrap()).body {
        Some(v1::server_frame::Body::Event(v1::Event {
            kind: Some(v1::event::Kind::Closing(c)),
        })) => {
            assert_eq!(c.code, v1::CloseReason::TokenExpired as i32);
            assert_eq!(c.reconnect_after_ms, 0);
        }
        other => panic!("{other:?}"),
    }
    match d.poll_transmit() {
        Some(Transmit::Close(Some(c))) => {
            assert_eq!(c.code, CloseCode::TokenExpired);
            assert_eq!(c.code.websocket(), 4001);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_logout_answered_while_closing_still_ends_the_connection() {
    let now = Instant::now();
    for begin in [
        SessionDriver::handle_peer_closed as fn(&mut SessionDriver),
        SessionDriver::shutdown,
    ] {
        let mut d = driver(now);
        d.handle_frame(now, &ping_frame(1, Format::Binary), Format::Binary);
        d.next_request(now).unwrap();
        begin(&mut d);
        let mut logout = ok(1);
        logout.close = Some("logged out".into());
        d.request_done(now, &logout);
        assert!(d.is_closed(), "no request in flight, nothing left to wait for");
        let last = std::iter::from_fn(|| d.poll_transmit()).last();
        assert!(matches!(last, Some(Transmit::Close(_))), "{last:?}");
    }
}

#[test]
fn overflow_and_transport_errors_close_with_their_codes() {
    let now = Instant::now();
    let mut d = driver(now);
    d.handle_overflow();
    assert!(matches!(
        d.poll_transmit(),
        Some(Transmit::Close(Some(Close {
            code: CloseCode::TryAgainLater,
            ..
        })))
    ));
    let mut d = driver(now);
    d.handle_transport_error(&TransportError::TooLarge);
    assert!(matches!(
        d.poll_transmit(),
        Some(Transmit::Close(Some(Close {
            code: CloseCode::TooLarge,
            ..
        })))
    ));
    let mut d = driver(now);
    d.handle_peer_closed();
    assert_eq!(d.poll_transmit(), Some(Transmit::Close(None)));
}
