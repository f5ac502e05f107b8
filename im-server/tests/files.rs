//! Files over HTTP, end to end: real servers on 127.0.0.1:0 with a SQLite
//! store and an `FsBlobStore` in a temporary directory (and, for the memory
//! bound, a real server process).

mod support;

use im_client_sdk::v1;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use support::http_files::*;
use support::{Backend, TestServer};

const MIB: u64 = 1 << 20;

fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

/// Uploads the file made from `seed` in one `POST`; returns its id.
async fn upload(server: &TestServer, token: &str, name: &str, seed: u64, len: u64) -> String {
    let req = request(
        "POST",
        "/v1/files",
        token,
        &[("content-length", len.to_string()), ("x-file-name", name.into())],
        content_body(seed, 0..len, None, counter()),
    );
    let resp = send(server.addr, req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let json = body_json(resp).await;
    assert_eq!(json["status"], "complete");
    json["id"].as_str().unwrap().to_owned()
}

async fn get(
    server: &TestServer,
    token: &str,
    id: &str,
    headers: &[(&str, String)],
) -> hyper::Response<hyper::body::Incoming> {
    send(
        server.addr,
        request("GET", &format!("/v1/files/{id}"), token, headers, no_body()),
    )
    .await
    .unwrap()
}

fn image(file_id: &str) -> v1::Content {
    v1::Content {
        kind: Some(v1::content::Kind::Image(v1::Media {
            file_id: file_id.into(),
            ..Default::default()
        })),
    }
}

/// Runs a case on a SQLite and on a PostgreSQL store.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(Backend::Postgres).await;
            }
        }
    )*};
}

on_both_stores!(
    an_interrupted_upload_resumes_and_completes_with_the_right_hash,
    members_download_after_a_message_others_are_refused_and_ranges_are_exact,
);

async fn an_interrupted_upload_resumes_and_completes_with_the_right_hash(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _events) = server.register("alice").await;
    let token = alice.token();
    let len = 8 * MIB + 12_345;
    // Create the upload, then send its bytes and cut the connection at about half.
    let create = request(
        "POST",
        "/v1/files",
        &token,
        &[
            ("upload-length", len.to_string()),
            ("content-length", "0".into()),
            ("x-file-name", "big.bin".into()),
        ],
        no_body(),
    );
    let resp = send(server.addr, create).await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(header(&resp, "upload-offset"), "0");
    let location = header(&resp, "location");
    let id = body_json(resp).await["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/files/{id}"));
    let cut = request(
        "PATCH",
        &location,
        &token,
        &[("upload-offset", "0".into()), ("content-length", len.to_string())],
        content_body(7, 0..len, Some(len / 2), counter()),
    );
    assert!(send(server.addr, cut).await.is_err(), "the body failed half way");
    // Resume: ask for the offset, send the rest (the server may still be
    // taking in the first half for a moment: 409 means ask again).
    let started = Instant::now();
    let done = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "could not resume");
        let head = send(server.addr, request("HEAD", &location, &token, &[], no_body()))
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(&head, "upload-length"), len.to_string());
        let offset: u64 = header(&head, "upload-offset").parse().unwrap();
        assert!(offset <= len / 2, "no more than was sent is stored");
        let rest = request(
            "PATCH",
            &location,
            &token,
            &[
                ("upload-offset", offset.to_string()),
                ("content-length", (len - offset).to_string()),
            ],
            content_body(7, offset..len, None, counter()),
        );
        // 409 (or the connection closed on that answer while the body was
        // still going out): the first request is still being taken in.
        let resp = match send(server.addr, rest).await {
            Ok(resp) if resp.status() != 409 => resp,
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        assert_eq!(resp.status(), 200);
        assert!(offset > 0, "the first half was kept");
        break body_json(resp).await;
    };
    assert_eq!(done["status"], "complete");
    assert_eq!(done["offset"], len);
    assert_eq!(done["sha256"], content_sha(7, 0..len));
    let (got, sha) = body_sha(get(&server, &token, &id, &[]).await).await;
    assert_eq!((got, sha), (len, content_sha(7, 0..len)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_is_refused_early_and_leaves_nothing() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.files.max_file_bytes = MIB).await;
    let (alice, _events) = server.register("alice").await;
    let token = alice.token();
    // Declared too large: refused before a byte of the body is read.
    let req = request(
        "POST",
        "/v1/files",
        &token,
        &[("content-length", (2 * MIB).to_string())],
        stalling_body(1, 0),
    );
    let resp = send(server.addr, req).await.unwrap();
    assert_eq!(resp.status(), 413);
    let json = body_json(resp).await;
    assert_eq!(json["error"]["code"], "TOO_LARGE", "{json}");
    // Declared within the limit, streamed past it (a chunked body): refused
    // at the chunk that passes it, which is not stored.
    let req = request(
        "POST",
        "/v1/files",
        &token,
        &[("upload-length", MIB.to_string())],
        stalling_body(2, MIB + 65_536),
    );
    let resp = tokio::time::timeout(Duration::from_secs(30), send(server.addr, req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(body_json(resp).await["error"]["code"], "TOO_LARGE");
    // Nothing on disk, no metadata.
    let started = Instant::now();
    while !files_under(&server.files_dir()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "left on disk: {:?}",
            files_under(&server.files_dir())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = im_core::SqliteStore::open(im_core::SqliteStoreConfig::new(server.sqlite_path().unwrap()))
        .await
        .unwrap();
    use im_core::Store;
    assert!(
        store
            .expired_files(i64::MAX, i64::MAX, 100)
            .await
            .unwrap()
            .is_empty(),
        "no metadata left"
    );
    store.close().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_leaves_nothing_after_the_cleanup_time() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.files.resume_window_secs = 1;
        c.files.cleanup_interval_secs = 1;
    })
    .await;
    let (alice, _events) = server.register("alice").await;
    let token = alice.token();
    let len = 4 * MIB;
    let req = request(
        "POST",
        "/v1/files",
        &token,
        &[("content-length", len.to_string())],
        content_body(3, 0..len, Some(MIB), counter()),
    );
    assert!(send(server.addr, req).await.is_err());
    let started = Instant::now();
    // The partial upload is kept for the resume window...
    while files_under(&server.files_dir()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the partial upload was never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...then the clean-up removes it.
    while !files_under(&server.files_dir()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still on disk: {:?}",
            files_under(&server.files_dir())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = im_core::SqliteStore::open(im_core::SqliteStoreConfig::new(server.sqlite_path().unwrap()))
        .await
        .unwrap();
    use im_core::Store;
    assert!(
        store
            .expired_files(i64::MAX, i64::MAX, 100)
            .await
            .unwrap()
            .is_empty(),
        "no metadata left"
    );
    store.close().await.unwrap();
    server.stop().await;
}

async fn members_download_after_a_message_others_are_refused_and_ranges_are_exact(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, _ae) = server.register("alice").await;
    let (bob, _be) = server.register("bobby").await;
    let (carol, _ce) = server.register("carol").await;
    let len = 3 * MIB + 17;
    let id = upload(&server, &alice.token(), "holiday.jpg", 11, len).await;

    assert_eq!(
        get(&server, &bob.token(), &id, &[]).await.status(),
        403,
        "not shared yet"
    );
    assert_eq!(get(&server, "not-a-token", &id, &[]).await.status(), 401);
    let unknown = get(&server, &bob.token(), "0123456789abcdef0123456789abcdef", &[]).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(body_json(unknown).await["error"]["code"], "NOT_FOUND");
    for path in [
        format!("/v1/filesx{}", &id[1..]),
        format!("/v1/files/{id}/x"),
        "/v1/files//".into(),
    ] {
        let resp = send(server.addr, request("GET", &path, &alice.token(), &[], no_body()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }

    let group = alice.create_group("trip", &[bob.user().id]).await.unwrap();
    let ack = alice
        .send(v1::send_message::Target::ConversationId(group.id), image(&id))
        .await
        .unwrap();
    // The stored message has the server's metadata.
    let history = bob.history(group.id, 0, 10).await.unwrap();
    let msg = history.messages.iter().find(|m| m.id == ack.message_id).unwrap();
    let Some(v1::content::Kind::Image(media)) = msg.content.as_ref().unwrap().kind.as_ref() else {
        panic!()
    };
    assert_eq!(
        (media.size, media.sha256.as_str()),
        (len, content_sha(11, 0..len).as_str())
    );
    assert_eq!(media.name, "holiday.jpg");

    let resp = get(&server, &bob.token(), &id, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), len.to_string());
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(
        header(&resp, "content-disposition"),
        "attachment; filename=\"holiday.jpg\"; filename*=UTF-8''holiday.jpg"
    );
    let etag = header(&resp, "etag");
    assert_eq!(etag, format!("\"{}\"", content_sha(11, 0..len)));
    assert_eq!(body_sha(resp).await, (len, content_sha(11, 0..len)));
    let resp = get(&server, &carol.token(), &id, &[]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(body_json(resp).await["error"]["code"], "PERMISSION_DENIED");

    for (range, want, content_range) in [
        ("bytes=1000-1999", 1000..2000, format!("bytes 1000-1999/{len}")),
        (
            "bytes=-10",
            len - 10..len,
            format!("bytes {}-{}/{len}", len - 10, len - 1),
        ),
        (
            &*format!("bytes={}-", MIB),
            MIB..len,
            format!("bytes {MIB}-{}/{len}", len - 1),
        ),
    ] {
        let resp = get(&server, &bob.token(), &id, &[("range", range.into())]).await;
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(header(&resp, "content-range"), content_range);
        assert_eq!(body_bytes(resp).await, content(11, want), "{range}");
    }
    let resp = get(&server, &bob.token(), &id, &[("range", format!("bytes={len}-"))]).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range"), format!("bytes */{len}"));
    let resp = get(&server, &bob.token(), &id, &[("if-none-match", etag.clone())]).await;
    assert_eq!(resp.status(), 304);
    assert!(body_bytes(resp).await.is_empty());
    // HEAD of a complete file: the download's headers, no body.
    let head = send(
        server.addr,
        request("HEAD", &format!("/v1/files/{id}"), &bob.token(), &[], no_body()),
    )
    .await
    .unwrap();
    assert_eq!(
        (head.status().as_u16(), header(&head, "content-length")),
        (200, len.to_string())
    );
    // Bob lists it among the files he received.
    let list = body_json(
        send(
            server.addr,
            request("GET", "/v1/files", &bob.token(), &[], no_body()),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(list["files"][0]["id"], id.as_str());
    assert_eq!(list["files"][0]["conversation_id"], group.id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_stored_and_shown_safely() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (alice, _events) = server.register("alice").await;
    let token = alice.token();
    let long = "n".repeat(10_000);
    let cases = [
        ("..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("bad%00name%1B%5B31m%0A.txt", "badname[31m.txt"),
        (long.as_str(), &long[..255]),
        ("%2E%2E", "file"),
    ];
    for (i, (sent, stored)) in cases.iter().enumerate() {
        let req = request(
            "POST",
            "/v1/files",
            &token,
            &[("content-length", "5".into()), ("x-file-name", (*sent).into())],
            bytes_body(&b"hello"[..]),
        );
        let resp = send(server.addr, req).await.unwrap();
        assert_eq!(resp.status(), 201, "case {i}");
        let json = body_json(resp).await;
        assert_eq!(json["name"], *stored, "case {i}");
        assert_eq!(json["mime_type"], "text/plain");
        let resp = get(&server, &token, json["id"].as_str().unwrap(), &[]).await;
        let disposition = header(&resp, "content-disposition");
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
        assert!(!disposition.contains('/') && !disposition.contains('\\') && !disposition.contains('\n'));
        assert_eq!(header(&resp, "content-type"), "text/plain; charset=utf-8");
    }
    // The name in Content-Disposition (RFC 6266) is read as well.
    let req = request(
        "POST",
        "/v1/files",
        &token,
        &[
            ("content-length", "5".into()),
            (
                "content-disposition",
                "attachment; filename*=UTF-8''..%2F%C3%A9t%C3%A9.txt".into(),
            ),
        ],
        bytes_body(&b"hello"[..]),
    );
    assert_eq!(
        body_json(send(server.addr, req).await.unwrap()).await["name"],
        "été.txt"
    );
    // On disk: only server ids, two levels deep, and nothing else anywhere.
    let on_disk = files_under(&server.files_dir());
    assert_eq!(on_disk.len(), cases.len() + 1);
    for path in &on_disk {
        let (shard, id) = path.split_once('/').unwrap();
        assert_eq!(id.len(), 32, "{path}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{path}"
        );
        assert_eq!(shard, &id[..2]);
    }
    let data_dir = server.files_dir().parent().unwrap().to_path_buf();
    assert!(
        files_under(&data_dir)
            .iter()
            .all(|p| !p.contains("passwd") && !p.contains("win.ini"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_nobody_reads_is_dropped_after_the_idle_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(Backend::Sqlite, |c| c.files.idle_timeout_secs = 1).await;
    let (alice, _events) = server.register("alice").await;
    let len = 64 * MIB;
    let id = upload(&server, &alice.token(), "big.bin", 41, len).await;
    // Ask for it, then read nothing for a while.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let ask = format!(
        "GET /v1/files/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        alice.token()
    );
    tcp.write_all(ask.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What the socket buffers held arrives, then the end: the server gave up.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the connection is still open after {got} bytes"),
        }
    }
    assert!(got < len as usize, "the whole file arrived ({got} bytes)");
    server.stop().await;
}

/// Resident and peak memory of a process, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_file_streams_through_a_server_process_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let mut process = support::process::Process::spawn_with(
        &format!("sqlite://{}", dir.path().join("im.sqlite3").display()),
        &[("IM__FILES__DIR", files.display().to_string())],
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", process.port).parse().unwrap();
    let (status, body) = support::http(
        addr,
        "POST",
        "/v1/auth/register",
        r#"{"username":"alice","password":"password123"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let upload = |seed: u64, len: u64| {
        let token = token.clone();
        async move {
            let req = request(
                "POST",
                "/v1/files",
                &token,
                &[("content-length", len.to_string())],
                content_body(seed, 0..len, None, counter()),
            );
            let resp = send(addr, req).await.unwrap();
            assert_eq!(resp.status(), 201);
            body_json(resp).await
        }
    };
    let download = |id: String| {
        let token = token.clone();
        async move {
            body_sha(
                send(
                    addr,
                    request("GET", &format!("/v1/files/{id}"), &token, &[], no_body()),
                )
                .await
                .unwrap(),
            )
            .await
        }
    };
    // Warm up: buffers and threads that any upload allocates.
    let warm = upload(1, 4 * MIB).await;
    download(warm["id"].as_str().unwrap().to_owned()).await;
    let pid = process.child.id();
    let (before, _) = memory_kib(pid);

    let len = 200 * MIB;
    let uploaded = upload(2, len).await;
    let want = content_sha(2, 0..len);
    assert_eq!(uploaded["sha256"], want.as_str());
    let (got_len, got_sha) = download(uploaded["id"].as_str().unwrap().to_owned()).await;
    assert_eq!((got_len, got_sha), (len, want));

    let (after, peak) = memory_kib(pid);
    let growth = peak.max(after).saturating_sub(before);
    eprintln!("server memory: {before} KiB before, {after} KiB after, peak {peak} KiB");
    assert!(growth < 64 * 1024, "resident memory grew by {growth} KiB");
    process.kill();
}

#[path = "files/sdk.rs"]
mod sdk;

#[path = "files/grpc.rs"]
mod grpc;
