//! TLS: the SDK verifies the server's certificate, the server serves a
//! certificate replaced on disk without a restart, plain and TLS listeners
//! serve one server side by side, and a slow handshake stalls nobody.

use crate::support::certs::TestCa;
use crate::support::*;
use im_client_sdk::{Client, Credentials, Error, TlsConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn register(name: &str) -> Credentials {
    Credentials::Register {
        username: name.into(),
        password: PASSWORD.into(),
        display_name: String::new(),
    }
}

fn login(name: &str) -> Credentials {
    Credentials::Login {
        username: name.into(),
        password: PASSWORD.into(),
    }
}

/// Connects to `url` trusting `tls`; the client is closed again at once.
async fn try_connect(url: &str, tls: TlsConfig, credentials: Credentials) -> Result<(), Error> {
    let mut config = client_config(url);
    config.tls = tls;
    let (client, _events) = Client::connect(config, credentials).await?;
    client.close();
    Ok(())
}

fn only(ca: &TestCa) -> TlsConfig {
    TlsConfig::new().only_custom_roots(true).add_root_pem(ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_refuses_a_certificate_it_does_not_trust_with_a_clear_error() {
    let server = TestServer::start_on(Backend::Sqlite, Transport::WebSocketTls).await;
    let url = server.url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");

    // Issued by another CA: not trusted.
    let stranger = TestCa::new("some other CA");
    match try_connect(&url, only(&stranger), register("wary")).await {
        Err(Error::Tls(message)) => {
            assert!(
                message.contains("certificate not trusted: UnknownIssuer"),
                "{message}"
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // The system roots do not know the test CA either.
    let refused = try_connect(&url, TlsConfig::new(), register("wary"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Tls(m) if m.contains("UnknownIssuer")),
        "{refused}"
    );
    assert!(!refused.is_transient(), "retrying cannot help");

    // The right CA, but a certificate for another name.
    let tls = server.tls.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls.ca.issue(&["elsewhere.test"]);
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let misnamed = TestServer::start_with(Backend::Sqlite, |c| {
        c.tls = Some(im_server::config::TlsSection {
            cert_file: cert_file.display().to_string(),
            key_file: key_file.display().to_string(),
            listen: "127.0.0.1:0".into(),
            ..Default::default()
        });
    })
    .await;
    let misnamed_url = format!("wss://{}/v1/ws", misnamed.tls_addr.unwrap());
    match try_connect(&misnamed_url, only(&tls.ca), register("wary")).await {
        Err(Error::Tls(message)) => assert!(
            message.contains("not valid for this host") && message.contains("elsewhere.test"),
            "{message}"
        ),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // A bad custom root is a TLS error before anything is sent.
    let bad_root = TlsConfig::new().add_root_pem("-----BEGIN CERTIFICATE-----\nAAAA\n");
    assert!(matches!(
        try_connect(&url, bad_root, register("wary")).await,
        Err(Error::Tls(_))
    ));

    // Trusting the test CA, the same server is fine, by IP and by name.
    try_connect(&url, only(&tls.ca), register("trusting"))
        .await
        .unwrap();
    let by_name = format!("wss://localhost:{}/v1/ws", server.tls_addr.unwrap().port());
    try_connect(&by_name, only(&tls.ca), login("trusting"))
        .await
        .unwrap();
    misnamed.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
    let files = Arc::new(TestTls::new());
    let server = TestServer::start_tls(Backend::Sqlite, files.clone()).await;
    let url = server.url();
    let first_ca = &files.ca;
    let mut config = client_config(&url);
    config.tls = only(first_ca);
    let (early, _early_events) = Client::connect(config, register("early")).await.unwrap();
    let conv = early.create_group("before and after", &[]).await.unwrap().id;

    // The certificate and key are replaced by a pair of another CA.
    let second_ca = TestCa::new("the next CA");
    second_ca.write_server_pair(files.cert_file.parent().unwrap());
    let started = Instant::now();
    loop {
        match try_connect(&url, only(&second_ca), login("early")).await {
            Ok(()) => break,
            Err(Error::Tls(m)) if m.contains("UnknownIssuer") => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "the new certificate was not served in time"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    // The old certificate is no longer served...
    let refused = try_connect(&url, only(first_ca), login("early"))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Tls(m) if m.contains("UnknownIssuer")),
        "{refused}"
    );
    // ...but the connection made with it goes on: same process, no restart.
    early.send_text(conv, "still here").await.unwrap();

    // A broken pair on disk keeps the one in use.
    std::fs::write(&files.cert_file, "not a certificate\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    try_connect(&url, only(&second_ca), login("early")).await.unwrap();
    early.send_text(conv, "and still").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_listeners_serve_one_server_side_by_side() {
    let server = TestServer::start_on(Backend::Sqlite, Transport::WebSocketTls).await;
    let plain_url = format!("ws://{}/v1/ws", server.addr);
    let (plain, mut plain_events) = server.connect_via(&plain_url, register("plain")).await;
    let (secure, mut secure_events) = server.register("secure").await;
    let conv = plain
        .send_direct(secure.user().id, "over ws://")
        .await
        .unwrap()
        .conversation_id;
    secure.send_text(conv, "over wss://").await.unwrap();
    for events in [&mut plain_events, &mut secure_events] {
        let got = messages(events, conv, 2).await;
        assert_eq!(
            got.iter().map(text_of).collect::<Vec<_>>(),
            ["over ws://", "over wss://"]
        );
    }
    // HTTP routes over TLS too.
    let reply = https_get(server.tls_addr.unwrap(), &server.client_tls(), "/healthz").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    server.stop().await;
}

/// `GET path` over TLS to `addr`, trusting `tls`; the whole answer.
async fn https_get(addr: std::net::SocketAddr, tls: &TlsConfig, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stream = tls.connect("127.0.0.1", tcp, &[b"http/1.1"]).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_with_the_same_tls_config_resumes_its_session() {
    let server = TestServer::start_on(Backend::Sqlite, Transport::WebSocketTls).await;
    let tls_addr = server.tls_addr.unwrap();
    let tls = server.client_tls();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
        let mut stream = tls.connect("127.0.0.1", tcp, &[b"http/1.1"]).await.unwrap();
        kinds.push(stream.get_ref().1.handshake_kind());
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Reading to the end also takes the server's session tickets.
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
        assert!(reply.starts_with(b"HTTP/1.1 200"));
    }
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, [Some(Full), Some(Resumed)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_connections_count_against_one_limit() {
    let server = TestServer::start_on_with(Backend::Sqlite, Transport::WebSocketTls, |c| {
        c.server.max_connections = 1;
    })
    .await;
    let tls_addr = server.tls_addr.unwrap();
    // A plain WebSocket holds the only permit (taken first: a connection
    // that just closed gives its permit back a moment later, in its task).
    let held = RawWs::connect(server.addr, None).await;
    let reply = https_get(tls_addr, &server.client_tls(), "/healthz").await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("connection limit reached"), "{reply}");
    drop(held);
    // Once the WebSocket's task ended, the permit serves a TLS client.
    let started = Instant::now();
    loop {
        let reply = https_get(tls_addr, &server.client_tls(), "/healthz").await;
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_handshakes_stall_nobody_and_are_dropped_after_the_timeout() {
    let files = Arc::new(TestTls::new());
    let (mut config, data) = test_config(Backend::Sqlite);
    let mut section = files.section();
    section.handshake_timeout_ms = 2_000;
    config.tls = Some(section);
    let server = im_server::Server::bind(config).await.unwrap();
    let tls_addr = server.tls_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    // Twenty connections that never finish a handshake, and one of garbage.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(tls_addr).await.unwrap());
    }
    let mut garbage = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n\x16\x03\x01garbage")
        .await
        .unwrap();
    // A real client is served at once (handshakes taken in turn would keep
    // it waiting 40 s, beyond its 10 s connect time-out).
    let started = Instant::now();
    let url = format!("wss://{tls_addr}/v1/ws");
    try_connect(&url, files.client_tls(), register("patient"))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    // The garbage is dropped at once, the silent ones after the time-out.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), garbage.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_) | Err(_))), "garbage connection closed");
    for stream in &mut silent {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a silent handshake is dropped after its time-out"
        );
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    drop(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_verifies_the_certificate_and_serves_a_replaced_one_without_a_restart() {
    let server = TestServer::start_on(Backend::Sqlite, Transport::GrpcTls).await;
    let url = server.url();
    assert!(url.starts_with("grpcs://127.0.0.1:"), "{url}");
    let files = server.tls.clone().unwrap();
    match try_connect(&url, only(&TestCa::new("some other CA")), register("careful")).await {
        Err(Error::Tls(message)) => assert!(message.contains("UnknownIssuer"), "{message}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    // A plain gRPC client on the TLS port gets nowhere either.
    let plain = format!("grpc://{}", server.grpc_tls_addr.unwrap());
    assert!(
        try_connect(&plain, TlsConfig::new(), register("careful"))
            .await
            .is_err()
    );
    try_connect(&url, only(&files.ca), register("careful"))
        .await
        .unwrap();

    // The pair on disk is replaced: the gRPC listener serves the new one too.
    let second_ca = TestCa::new("the next CA");
    second_ca.write_server_pair(files.cert_file.parent().unwrap());
    let started = Instant::now();
    while let Err(e) = try_connect(&url, only(&second_ca), login("careful")).await {
        assert!(matches!(&e, Error::Tls(m) if m.contains("UnknownIssuer")), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the new certificate was not served in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        try_connect(&url, only(&files.ca), login("careful")).await,
        Err(Error::Tls(_))
    ));
    server.stop().await;
}
