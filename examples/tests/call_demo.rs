//! The `call-demo` example against its own in-process server: the call is
//! set up, the callee hears the caller's audio, and the data-channel
//! messages arrive both ways.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_call_hear_the_audio_and_exchange_a_message() {
    let (url, stop) = im_examples::call_demo::serve_in_process().await.unwrap();
    let mut lines = Vec::new();
    let report = im_examples::call_demo::call(&url, ("ada", "babbage"), "password123", |l| lines.push(l))
        .await
        .unwrap();
    assert!(lines[0].starts_with("ada calls babbage"), "{lines:?}");
    assert_eq!(report.message, "hello babbage, this is ada");
    assert_eq!(report.reply, "hi ada, loud and clear");
    // Loopback loses nothing; a frame or two may be written before the
    // callee's side of the track is bound.
    assert!(
        report.rtp_packets >= im_examples::call_demo::FRAMES - 2,
        "{} of {} frames: {lines:?}",
        report.rtp_packets,
        im_examples::call_demo::FRAMES
    );
    assert!(lines.last().unwrap().contains("hung up"), "{lines:?}");
    // A second call between the same users (logging in this time) works too.
    let again = im_examples::call_demo::call(&url, ("ada", "babbage"), "password123", |_| {})
        .await
        .unwrap();
    assert_eq!(again.reply, "hi ada, loud and clear");
    let _ = stop.send(());
}
