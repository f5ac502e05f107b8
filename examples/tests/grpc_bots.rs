//! The `grpc-bots` example against a real server: the bots create a room over
//! gRPC and hear each other's every line, in order.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_talk_through_a_room_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = im_server::ServerConfig::default();
    config.server.listen = "127.0.0.1:0".into();
    config.grpc.listen = "127.0.0.1:0".into();
    config.store.url = format!("sqlite://{}", dir.path().join("im.sqlite3").display());
    config.auth.argon2_m_cost = 256;
    config.auth.argon2_t_cost = 1;
    let server = im_server::Server::bind(config).await.unwrap();
    let url = format!("grpc://{}", server.grpc_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut lines = Vec::new();
    im_examples::grpc_bots::converse(&url, ("ada", "babbage"), "password123", |l| lines.push(l))
        .await
        .unwrap();
    assert!(lines[0].starts_with("ada created room"), "{lines:?}");
    // Each line was heard by the other bot, in turn, with consecutive seqs.
    let said: Vec<_> = lines[1..].iter().map(String::as_str).collect();
    assert_eq!(said.len(), 6, "{lines:?}");
    assert!(
        said[0].starts_with("#") && said[0].contains(" ada: Hello!"),
        "{said:?}"
    );
    assert!(said[1].contains(" babbage: It is."), "{said:?}");
    assert!(
        said[5].contains(" babbage: Then we will never miss a word."),
        "{said:?}"
    );
    let seqs: Vec<u64> = said
        .iter()
        .map(|l| l[1..l.find(' ').unwrap()].parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // A second run signs the same bots in again.
    let mut again = Vec::new();
    im_examples::grpc_bots::converse(&url, ("ada", "babbage"), "password123", |l| again.push(l))
        .await
        .unwrap();
    assert_eq!(again.len(), 7);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
