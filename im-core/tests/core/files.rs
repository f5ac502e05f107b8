//! The engine's files: uploads (limits, resume, hash, MIME), who may read,
//! files in messages, and the clean-up, on the memory backends and on
//! SQLite with an `FsBlobStore`.

use bytes::Bytes;
use futures_util::StreamExt;
use im_core::blob::{BlobStore, FsBlobStore, FsBlobStoreConfig, MemoryBlobStore};
use im_core::clock::ManualClock;
use im_core::im_protocol::v1;
use im_core::model::{FileStatus, MediaFacts};
use im_core::store::{SqliteStore, SqliteStoreConfig, Store};
use im_core::{Caller, Engine, EngineConfig, Error, FilesConfig, PasswordAuthConfig, UploadRequest};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const HOUR: i64 = 3600 * 1000;

fn config(max: u64, quota: Option<u64>) -> EngineConfig {
    EngineConfig {
        files: FilesConfig {
            max_file_bytes: max,
            daily_quota_bytes: quota,
            resume_window_ms: 2 * HOUR,
            unreferenced_ttl_ms: 3 * HOUR,
        },
        ..Default::default()
    }
}

fn engine_with(
    config: EngineConfig,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    clock: ManualClock,
) -> Engine {
    Engine::builder()
        .password_auth(PasswordAuthConfig {
            argon2_m_cost: 256,
            argon2_t_cost: 1,
            ..Default::default()
        })
        .config(config)
        .store(store)
        .blobs(blobs)
        .clock(Arc::new(clock))
        .build()
}

fn engine(config: EngineConfig) -> (Engine, ManualClock, MemoryBlobStore) {
    let clock = ManualClock::new(1_800_000_000_000);
    let blobs = MemoryBlobStore::new();
    let e = engine_with(
        config,
        Arc::new(im_core::MemoryStore::new()),
        Arc::new(blobs.clone()),
        clock.clone(),
    );
    (e, clock, blobs)
}

async fn user(e: &Engine, name: &str) -> Caller {
    Caller::user(e.register(name, "password123", "").await.unwrap().user.id)
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    im_core::blob::conformance::pattern(n, seed)
}

/// The data as a stream of `chunk`-sized pieces.
fn chunks(
    data: &[u8],
    chunk: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
    let parts: Vec<_> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(parts)
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn upload(name: &str, size: usize) -> UploadRequest {
    UploadRequest {
        name: name.into(),
        size: size as u64,
        facts: MediaFacts::default(),
    }
}

async fn read_all(
    e: &Engine,
    who: &Caller,
    id: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>, Error> {
    let download = e.open_file(who.clone(), id).await?;
    let mut stream = download.read(range).await?;
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    Ok(out)
}

fn media(conv: u64, file_id: &str, id: &str) -> v1::SendMessage {
    v1::SendMessage {
        target: Some(v1::send_message::Target::ConversationId(conv)),
        client_msg_id: id.into(),
        content: Some(v1::Content {
            kind: Some(v1::content::Kind::Image(v1::Media {
                file_id: file_id.into(),
                name: "lies.exe".into(),
                mime_type: "application/x-lie".into(),
                size: 1,
                caption: "look".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_upload_in_chunks_completes_with_hash_and_sniffed_type() {
    let (e, _, _) = engine(config(1 << 20, None));
    let a = user(&e, "alice").await;
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    data.extend(bytes(100_000, 1));
    let file = e
        .begin_upload(a.clone(), upload("photo.png", data.len()))
        .await
        .unwrap();
    assert_eq!(file.status, FileStatus::Uploading);
    assert_eq!(file.id.len(), 32);
    let state = e
        .upload_chunks(a.clone(), &file.id, 0, chunks(&data, 4_000))
        .await
        .unwrap();
    assert_eq!(state.offset, data.len() as u64);
    assert_eq!(state.file.status, FileStatus::Complete);
    assert_eq!(state.file.sha256, sha(&data));
    assert_eq!(state.file.mime_type, "image/png");
    assert_eq!(read_all(&e, &a, &file.id, None).await.unwrap(), data);
    assert_eq!(
        read_all(&e, &a, &file.id, Some(10..20)).await.unwrap(),
        &data[10..20]
    );
    assert!(matches!(
        e.open_file(a.clone(), &file.id)
            .await
            .unwrap()
            .read(Some(0..data.len() as u64 + 1))
            .await
            .err(),
        Some(Error::InvalidArgument(_))
    ));
    // Completed: no more bytes.
    assert!(matches!(
        e.upload_chunks(a.clone(), &file.id, data.len() as u64, chunks(b"x", 1))
            .await,
        Err(Error::Conflict(_))
    ));
    // An empty file completes at once.
    let empty = e.begin_upload(a.clone(), upload("empty", 0)).await.unwrap();
    let state = e
        .upload_chunks(a.clone(), &empty.id, 0, chunks(b"", 1))
        .await
        .unwrap();
    assert_eq!(state.file.sha256, sha(b""));
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_stored_offset() {
    let (e, _, _) = engine(config(1 << 20, None));
    let a = user(&e, "alice").await;
    let b = user(&e, "bobby").await;
    let data = bytes(500_000, 2);
    let file = e
        .begin_upload(a.clone(), upload("big.bin", data.len()))
        .await
        .unwrap();
    // The client goes away after about half.
    let half: Vec<Result<Bytes, std::io::Error>> = data[..250_000]
        .chunks(10_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::other("connection reset"))))
        .collect();
    let err = e
        .upload_chunks(a.clone(), &file.id, 0, futures_util::stream::iter(half))
        .await;
    assert!(matches!(err, Err(Error::Unavailable(_))), "{err:?}");
    let state = e.upload_offset(a.clone(), &file.id).await.unwrap();
    assert_eq!(state.offset, 250_000);
    assert!(matches!(
        e.upload_offset(b.clone(), &file.id).await,
        Err(Error::PermissionDenied(_))
    ));
    // Not readable while uploading, not even by its uploader.
    assert!(matches!(
        e.open_file(a.clone(), &file.id).await,
        Err(Error::NotFound(_))
    ));
    // A wrong offset is refused without touching the bytes.
    assert!(matches!(
        e.upload_chunks(a.clone(), &file.id, 100, chunks(&data[100..], 1000))
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        e.upload_chunks(b.clone(), &file.id, 250_000, chunks(&data[250_000..], 1000))
            .await,
        Err(Error::PermissionDenied(_))
    ));
    // A part, then the rest.
    let part = e
        .upload_chunks(
            a.clone(),
            &file.id,
            250_000,
            chunks(&data[250_000..300_000], 7_000),
        )
        .await
        .unwrap();
    assert_eq!((part.offset, part.file.status), (300_000, FileStatus::Uploading));
    let done = e
        .upload_chunks(a.clone(), &file.id, 300_000, chunks(&data[300_000..], 9_999))
        .await
        .unwrap();
    assert_eq!(
        done.file.sha256,
        sha(&data),
        "the stored prefix is hashed on resume"
    );
    assert_eq!(done.file.mime_type, "application/octet-stream");
    assert_eq!(read_all(&e, &a, &file.id, None).await.unwrap(), data);
}

#[tokio::test]
async fn over_the_limit_is_refused_and_leaves_nothing() {
    let (e, _, blobs) = engine(config(100_000, Some(150_000)));
    let a = user(&e, "alice").await;
    assert!(matches!(
        e.begin_upload(a.clone(), upload("huge", 100_001)).await,
        Err(Error::TooLarge(_))
    ));
    assert!(blobs.list().await.unwrap().is_empty());
    // Declared small, streamed more: refused before the extra chunk is stored.
    let file = e.begin_upload(a.clone(), upload("liar", 50_000)).await.unwrap();
    let err = e
        .upload_chunks(a.clone(), &file.id, 0, chunks(&bytes(200_000, 3), 10_000))
        .await;
    assert!(matches!(err, Err(Error::TooLarge(_))), "{err:?}");
    assert!(blobs.list().await.unwrap().is_empty(), "the blob is deleted");
    assert!(
        e.store().file(&file.id).await.unwrap().is_none(),
        "and the metadata"
    );
    // The quota counts what was begun in the last 24 hours (the refused
    // upload no longer counts).
    e.begin_upload(a.clone(), upload("one", 90_000)).await.unwrap();
    assert!(matches!(
        e.begin_upload(a.clone(), upload("two", 90_000)).await,
        Err(Error::TooLarge(m)) if m.contains("quota")
    ));
    e.begin_upload(a.clone(), upload("three", 60_000)).await.unwrap();
}

#[tokio::test]
async fn only_the_uploader_and_members_it_was_shared_with_read_it() {
    let (e, _, _) = engine(config(1 << 20, None));
    let a = user(&e, "alice").await;
    let b = user(&e, "bobby").await;
    let c = user(&e, "carol").await;
    let group = e.create_group(a.clone(), "g", &[b.user_id]).await.unwrap();
    let data = "Notes, in UTF-8: déjà vu.\n".repeat(40).into_bytes();
    let file = e
        .begin_upload(a.clone(), upload("notes.txt", data.len()))
        .await
        .unwrap();
    e.upload_chunks(a.clone(), &file.id, 0, chunks(&data, 100))
        .await
        .unwrap();

    assert_eq!(read_all(&e, &a, &file.id, None).await.unwrap(), data);
    assert!(matches!(
        read_all(&e, &b, &file.id, None).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        e.open_file(b.clone(), "0123456789abcdef0123456789abcdef").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.open_file(b.clone(), "../../etc/passwd").await,
        Err(Error::NotFound(_))
    ));
    // Bob cannot send a file he may not read; carol (not a member) cannot share it either.
    assert!(matches!(
        e.send_message(b.clone(), media(group.id, &file.id, "b1")).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        e.send_message(c.clone(), media(group.id, &file.id, "c1")).await,
        Err(Error::PermissionDenied(_))
    ));
    let ack = e
        .send_message(a.clone(), media(group.id, &file.id, "a1"))
        .await
        .unwrap();
    assert_eq!(
        read_all(&e, &b, &file.id, Some(5..10)).await.unwrap(),
        &data[5..10]
    );
    assert!(matches!(
        read_all(&e, &c, &file.id, None).await,
        Err(Error::PermissionDenied(_))
    ));
    // The stored message carries the server's metadata, not the client's.
    let history = e
        .history(
            b.clone(),
            v1::GetHistory {
                conversation_id: group.id,
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let msg = history.messages.iter().find(|m| m.id == ack.message_id).unwrap();
    let Some(v1::content::Kind::Image(m)) = msg.content.as_ref().unwrap().kind.as_ref() else {
        panic!("an image");
    };
    assert_eq!(
        (m.name.as_str(), m.mime_type.as_str(), m.size),
        ("notes.txt", "text/plain", data.len() as u64)
    );
    assert_eq!(
        (m.sha256.as_str(), m.caption.as_str()),
        (sha(&data).as_str(), "look")
    );
    // Bob may now forward it; he lists it among the files he received.
    let received = e.received_files(b.clone(), 10).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].file.id, file.id);
    assert!(e.received_files(a.clone(), 10).await.unwrap().is_empty());
    let direct = v1::SendMessage {
        target: Some(v1::send_message::Target::ToUserId(c.user_id)),
        ..media(0, &file.id, "b2")
    };
    e.send_message(b.clone(), direct).await.unwrap();
    assert_eq!(read_all(&e, &c, &file.id, None).await.unwrap(), data);
    // A message needs a complete file.
    let half = e.begin_upload(a.clone(), upload("half", 10)).await.unwrap();
    assert!(matches!(
        e.send_message(a.clone(), media(group.id, &half.id, "a2")).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        e.send_message(a.clone(), media(group.id, "", "a3")).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn hostile_names_are_stored_safely() {
    let (e, _, blobs) = engine(config(1 << 20, None));
    let a = user(&e, "alice").await;
    let long = "x".repeat(10_000);
    for (name, stored) in [
        ("../../etc/passwd", "passwd"),
        ("a\u{0}b\u{1b}[31mc\n.txt", "ab[31mc.txt"),
        (long.as_str(), &long[..255]),
        ("..", "file"),
    ] {
        let file = e.begin_upload(a.clone(), upload(name, 3)).await.unwrap();
        assert_eq!(file.name, stored);
        e.upload_chunks(a.clone(), &file.id, 0, chunks(b"abc", 3))
            .await
            .unwrap();
    }
    for blob in blobs.list().await.unwrap() {
        assert_eq!(blob.id.to_string().len(), 32);
    }
}

#[tokio::test]
async fn housekeeping_removes_abandoned_and_unreferenced_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteStoreConfig::new(dir.path().join("im.sqlite3")))
        .await
        .unwrap();
    let blobs = FsBlobStore::open(FsBlobStoreConfig::new(dir.path().join("files")))
        .await
        .unwrap();
    let clock = ManualClock::new(im_core::model::now_ms());
    let e = engine_with(
        config(1 << 20, None),
        Arc::new(store),
        Arc::new(blobs.clone()),
        clock.clone(),
    );
    let a = user(&e, "alice").await;
    let group = e.create_group(a.clone(), "g", &[]).await.unwrap();
    let data = bytes(10_000, 5);
    let aborted = e
        .begin_upload(a.clone(), upload("aborted", 10_000))
        .await
        .unwrap();
    let cut = futures_util::stream::iter(vec![
        Ok(Bytes::copy_from_slice(&data[..4_000])),
        Err(std::io::Error::other("gone")),
    ]);
    assert!(e.upload_chunks(a.clone(), &aborted.id, 0, cut).await.is_err());
    let lonely = e.begin_upload(a.clone(), upload("lonely", 10_000)).await.unwrap();
    e.upload_chunks(a.clone(), &lonely.id, 0, chunks(&data, 1_000))
        .await
        .unwrap();
    let shared = e.begin_upload(a.clone(), upload("shared", 10_000)).await.unwrap();
    e.upload_chunks(a.clone(), &shared.id, 0, chunks(&data, 1_000))
        .await
        .unwrap();
    e.send_message(a.clone(), media(group.id, &shared.id, "m"))
        .await
        .unwrap();
    assert_eq!(blobs.list().await.unwrap().len(), 3);

    assert_eq!(
        e.file_housekeeping().await.unwrap(),
        Default::default(),
        "nothing is due yet"
    );
    clock.advance_ms(2 * HOUR + 1);
    let sweep = e.file_housekeeping().await.unwrap();
    assert_eq!((sweep.abandoned, sweep.unreferenced), (1, 0));
    assert!(matches!(
        e.upload_offset(a.clone(), &aborted.id).await,
        Err(Error::NotFound(_))
    ));
    clock.advance_ms(HOUR);
    let sweep = e.file_housekeeping().await.unwrap();
    assert_eq!((sweep.abandoned, sweep.unreferenced), (0, 1));
    let left: Vec<String> = blobs
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(left, std::slice::from_ref(&shared.id));
    assert!(e.open_file(a.clone(), &shared.id).await.is_ok());
    // A blob whose metadata is gone (a crash between the two deletes) goes too.
    e.store().delete_file(&shared.id).await.unwrap();
    clock.advance_ms(3 * HOUR);
    assert_eq!(e.file_housekeeping().await.unwrap().orphans, 1);
    assert!(blobs.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn one_stream_per_upload_at_a_time() {
    let (e, _, _) = engine(config(1 << 20, None));
    let a = user(&e, "alice").await;
    let data = bytes(20_000, 6);
    let file = e.begin_upload(a.clone(), upload("x", data.len())).await.unwrap();
    // A client that sends a chunk and then nothing, until its connection drops.
    let first = Bytes::copy_from_slice(&data[..5_000]);
    let (drop_tx, drop_rx) = tokio::sync::oneshot::channel::<()>();
    let dropped = futures_util::stream::once(async move {
        let _ = drop_rx.await;
        Err(std::io::Error::other("connection closed"))
    });
    let stalled = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(first)]).chain(dropped);
    let (e2, a2, id) = (e.clone(), a.clone(), file.id.clone());
    let running = tokio::spawn(async move { e2.upload_chunks(a2, &id, 0, stalled).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(matches!(
        e.upload_chunks(a.clone(), &file.id, 0, chunks(&data, 1_000)).await,
        Err(Error::Conflict(m)) if m.contains("in progress")
    ));
    // Dropping the call does not stop the upload's task half way...
    running.abort();
    let _ = running.await;
    assert!(matches!(
        e.upload_chunks(a.clone(), &file.id, 0, chunks(&data, 1_000))
            .await,
        Err(Error::Conflict(_))
    ));
    // ...its stream ending does: then the upload is free again.
    drop_tx.send(()).unwrap();
    let started = std::time::Instant::now();
    let done = loop {
        let state = e.upload_offset(a.clone(), &file.id).await.unwrap();
        let rest = chunks(&data[state.offset as usize..], 1_000);
        match e.upload_chunks(a.clone(), &file.id, state.offset, rest).await {
            Ok(done) => break done,
            // The first task is still finishing.
            Err(Error::Conflict(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(done.offset, data.len() as u64);
    assert_eq!(done.file.sha256, sha(&data));
}
