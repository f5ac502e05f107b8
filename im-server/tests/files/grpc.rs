//! Files over gRPC (`im.v1.Files`): the same rules as over HTTP, through
//! upload and download streams.

use super::{MIB, memory_kib};
use crate::support::grpc::{authorized, channel};
use crate::support::http_files::{content, content_sha, files_under};
use crate::support::{self, Backend, TestServer};
use bytes::Bytes;
use im_client_sdk::im_protocol::grpc::{
    ERROR_CODE_METADATA, api_client::ApiClient, files_client::FilesClient,
};
use im_client_sdk::v1::{self, file_chunk, upload_chunk};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Chunks sent per upload message.
const CHUNK: u64 = 256 * 1024;

/// The protocol's code name of a failed call.
fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> String {
    let status = result.unwrap_err();
    status
        .metadata()
        .get(ERROR_CODE_METADATA)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| format!("{:?}", status.code()))
}

/// The upload messages of the file made from `seed`, bytes `range`: the
/// position first, then chunks generated as they are sent.
fn upload_stream(
    file_id: String,
    seed: u64,
    range: std::ops::Range<u64>,
) -> impl tokio_stream::Stream<Item = v1::UploadChunk> + Send + 'static {
    let at = v1::UploadChunk {
        part: Some(upload_chunk::Part::At(v1::UploadAt {
            file_id,
            offset: range.start,
        })),
    };
    let chunks = (range.start..range.end).step_by(CHUNK as usize).map(move |from| {
        let to = (from + CHUNK).min(range.end);
        v1::UploadChunk {
            part: Some(upload_chunk::Part::Data(content(seed, from..to))),
        }
    });
    tokio_stream::iter(std::iter::once(at).chain(chunks))
}

async fn begin(files: &mut FilesClient<Channel>, token: &str, name: &str, size: u64) -> v1::FileInfo {
    let start = v1::UploadStart {
        name: name.into(),
        size,
        ..Default::default()
    };
    files
        .begin_upload(authorized(token, start))
        .await
        .unwrap()
        .into_inner()
}

/// Downloads `file_id` (from `offset`, `length` bytes, 0: to the end):
/// the metadata and the bytes' length and SHA-256.
async fn download(
    files: &mut FilesClient<Channel>,
    token: &str,
    file_id: &str,
    offset: u64,
    length: u64,
) -> Result<(v1::FileInfo, u64, String, Bytes), tonic::Status> {
    let ask = v1::DownloadFile {
        file_id: file_id.into(),
        offset,
        length,
    };
    let mut stream = files.download(authorized(token, ask)).await?.into_inner();
    let Some(v1::FileChunk {
        part: Some(file_chunk::Part::Info(info)),
    }) = stream.message().await?
    else {
        panic!("a download starts with the file's metadata");
    };
    let (mut len, mut hash, mut head) = (0u64, Sha256::new(), Vec::new());
    while let Some(chunk) = stream.message().await? {
        let Some(file_chunk::Part::Data(data)) = chunk.part else {
            panic!("only data after the metadata");
        };
        len += data.len() as u64;
        hash.update(&data);
        if head.len() < 4096 {
            head.extend_from_slice(&data[..data.len().min(4096 - head.len())]);
        }
    }
    Ok((info, len, hex::encode(hash.finalize()), Bytes::from(head)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_file_goes_up_and_down_over_grpc_in_bounded_server_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = support::process::Process::spawn_with(
        &format!("sqlite://{}", dir.path().join("im.sqlite3").display()),
        &[("IM__FILES__DIR", dir.path().join("files").display().to_string())],
    );
    let grpc: SocketAddr = format!("127.0.0.1:{}", process.grpc_port).parse().unwrap();
    let token = ApiClient::new(channel(grpc).await)
        .register(v1::Register {
            username: "streamer".into(),
            password: support::PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let files = FilesClient::new(channel(grpc).await).max_decoding_message_size(16 << 20);
    let round_trip = |seed: u64, len: u64| {
        let token = token.clone();
        let mut files = files.clone();
        async move {
            let file = begin(&mut files, &token, "big.bin", len).await;
            let done = files
                .upload(authorized(&token, upload_stream(file.id.clone(), seed, 0..len)))
                .await
                .unwrap()
                .into_inner();
            assert!(done.complete && done.offset == len, "{done:?}");
            let (_, got_len, got_sha, _) = download(&mut files, &token, &file.id, 0, 0).await.unwrap();
            (done.sha256, got_len, got_sha)
        }
    };
    // Warm up: buffers and threads that any upload allocates.
    round_trip(1, 4 * MIB).await;
    let pid = process.child.id();
    let (before, _) = memory_kib(pid);

    let len = 200 * MIB;
    let (stored_sha, got_len, got_sha) = round_trip(2, len).await;
    let want = content_sha(2, 0..len);
    assert_eq!(
        (stored_sha.as_str(), got_len, got_sha.as_str()),
        (want.as_str(), len, want.as_str())
    );

    let (after, peak) = memory_kib(pid);
    let growth = peak.max(after).saturating_sub(before);
    eprintln!("server memory: {before} KiB before, {after} KiB after, peak {peak} KiB");
    assert!(growth < 64 * 1024, "resident memory grew by {growth} KiB");
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_uploads_resume_stop_at_the_limit_and_only_readers_download_exact_ranges() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.files.max_file_bytes = 8 * MIB).await;
    let (alice, _ae) = server.register("alice").await;
    let (bob, mut bob_events) = server.register("bobby").await;
    let (eve, _ee) = server.register("eve").await;
    let (alice_token, bob_token, eve_token) = (alice.token(), bob.token(), eve.token());
    let mut files = FilesClient::new(channel(server.grpc_addr).await);

    // Over the limit: declared, or streamed past the declared size.
    let start = v1::UploadStart {
        name: "huge".into(),
        size: 9 * MIB,
        ..Default::default()
    };
    assert_eq!(
        code(files.begin_upload(authorized(&alice_token, start)).await),
        "TOO_LARGE"
    );
    let liar = begin(&mut files, &alice_token, "liar.bin", MIB).await;
    let refused = files
        .upload(authorized(
            &alice_token,
            upload_stream(liar.id.clone(), 3, 0..4 * MIB),
        ))
        .await;
    assert_eq!(code(refused), "TOO_LARGE");
    let started = Instant::now();
    while !files_under(&server.files_dir()).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a refused upload left bytes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        code(download(&mut files, &alice_token, &liar.id, 0, 0).await),
        "NOT_FOUND"
    );

    // Interrupted at about half: the stream ends early (the client stops
    // sending without finishing), then the rest follows from the stored offset.
    let len = 6 * MIB + 4321;
    let file = begin(&mut files, &alice_token, "clip.mp4", len).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut first_half = upload_stream(file.id.clone(), 9, 0..len);
    let uploading = {
        let mut files = files.clone();
        let token = alice_token.clone();
        tokio::spawn(async move {
            files
                .upload(authorized(
                    &token,
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                ))
                .await
        })
    };
    use tokio_stream::StreamExt;
    let mut sent = 0;
    while sent < len / 2 {
        let chunk = first_half.next().await.unwrap();
        if let Some(upload_chunk::Part::Data(d)) = &chunk.part {
            sent += d.len() as u64;
        }
        tx.send(chunk).await.unwrap();
    }
    // The connection drops: the call is cancelled with the stream half sent.
    uploading.abort();
    drop(tx);
    let started = Instant::now();
    let offset = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "could not resume");
        let status = files
            .upload_status(authorized(
                &alice_token,
                v1::FileRef {
                    file_id: file.id.clone(),
                },
            ))
            .await;
        match status {
            Ok(s) if s.get_ref().offset > 0 => break s.into_inner().offset,
            // Still landing (one stream per upload at a time), or nothing yet.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(offset <= sent && !file.complete);
    let rest = loop {
        let resumed = files
            .upload(authorized(
                &alice_token,
                upload_stream(file.id.clone(), 9, offset..len),
            ))
            .await;
        match resumed {
            Ok(done) => break done.into_inner(),
            Err(s) if code(Err::<(), _>(s.clone())) == "CONFLICT" => {
                assert!(started.elapsed() < Duration::from_secs(30), "{s:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    assert!(rest.complete, "{rest:?}");
    assert_eq!(rest.sha256, content_sha(9, 0..len));
    assert_eq!(rest.mime_type, "application/octet-stream");

    // Bob may read it once it is shared in a conversation of his; Eve never.
    assert_eq!(
        code(download(&mut files, &bob_token, &file.id, 0, 0).await),
        "PERMISSION_DENIED"
    );
    let to_bob = v1::send_message::Target::ToUserId(bob.user().id);
    let conversation = alice
        .send_file(to_bob, im_client_sdk::MediaKind::Video, &file.id, "")
        .await
        .unwrap()
        .conversation_id;
    let seen = support::messages(&mut bob_events, conversation, 1).await;
    let Some(v1::content::Kind::Video(media)) = seen[0].content.as_ref().and_then(|c| c.kind.clone()) else {
        panic!("{seen:?}");
    };
    assert_eq!((media.size, media.sha256.as_str()), (len, rest.sha256.as_str()));
    let (info, got_len, got_sha, _) = download(&mut files, &bob_token, &file.id, 0, 0).await.unwrap();
    assert_eq!(
        (info.name.as_str(), got_len, got_sha),
        ("clip.mp4", len, content_sha(9, 0..len))
    );
    // A range: exactly those bytes.
    let (_, range_len, _, head) = download(&mut files, &bob_token, &file.id, 1_000_000, 3000)
        .await
        .unwrap();
    assert_eq!((range_len, head), (3000, content(9, 1_000_000..1_003_000)));
    assert_eq!(
        code(download(&mut files, &bob_token, &file.id, len, 1).await),
        "INVALID_ARGUMENT"
    );
    assert_eq!(
        code(download(&mut files, &eve_token, &file.id, 0, 0).await),
        "PERMISSION_DENIED"
    );
    assert_eq!(
        code(download(&mut files, &eve_token, "0123456789abcdef", 0, 0).await),
        "NOT_FOUND"
    );
    assert_eq!(
        code(
            files
                .upload_status(tonic::Request::new(v1::FileRef {
                    file_id: file.id.clone()
                }))
                .await
        ),
        "UNAUTHENTICATED"
    );
    server.stop().await;
}
