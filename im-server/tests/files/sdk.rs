//! The SDK's files against a real server: progress, resume after a cut
//! connection (through a proxy), download with `Range` resume.

use super::MIB;
use crate::support::http_files::*;
use crate::support::{self, Backend, TestServer};
use im_client_sdk::v1;
use std::sync::Arc;

/// Cuts the proxy's connections once `progress` passes `at` bytes.
fn cut_at(
    proxy: &Arc<support::Proxy>,
    mut progress: tokio::sync::watch::Receiver<im_client_sdk::Progress>,
    at: u64,
) -> tokio::task::JoinHandle<bool> {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            if progress.borrow().done >= at {
                proxy.cut();
                return true;
            }
        }
        false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_uploads_with_progress_resumes_after_a_cut_and_downloads() {
    use im_client_sdk::{FileClient, MediaKind, Upload};
    let server = TestServer::start(Backend::Sqlite).await;
    let (alice, _ae) = server.register("alice").await;
    let (bob, _be) = server.register("bobby").await;
    let dir = tempfile::tempdir().unwrap();
    let len = 5 * MIB + 333;
    let source = dir.path().join("video.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&source).unwrap();
        for at in (0..len).step_by(MIB as usize) {
            f.write_all(&content(21, at..(at + MIB).min(len))).unwrap();
        }
    }
    let want = content_sha(21, 0..len);

    // Through a proxy that cuts every connection once 40% is sent: the SDK
    // asks the offset and sends the rest.
    let proxy = Arc::new(support::Proxy::start(server.addr).await);
    let token = alice.clone();
    let files = FileClient::new(&proxy.url(), move || token.token())
        .unwrap()
        .part_size(MIB as usize);
    let (tx, rx) = tokio::sync::watch::channel(im_client_sdk::Progress::default());
    let cutter = cut_at(&proxy, rx.clone(), len * 2 / 5);
    let mut upload = Upload::named("holiday video.bin");
    upload.progress = Some(tx);
    let info = files.upload_path(&source, upload).await.unwrap();
    assert!(cutter.await.unwrap(), "the connection was cut mid-upload");
    assert!(info.complete);
    assert_eq!((info.size, info.sha256.as_str()), (len, want.as_str()));
    assert_eq!(
        *rx.borrow(),
        im_client_sdk::Progress {
            done: len,
            total: len
        }
    );

    // From a stream that cannot be re-read, in one piece.
    let data = content(22, 0..300_000);
    let streamed = alice
        .files()
        .unwrap()
        .upload_reader(
            std::io::Cursor::new(data.to_vec()),
            data.len() as u64,
            Upload::named("notes.txt"),
        )
        .await
        .unwrap();
    assert_eq!(streamed.sha256, content_sha(22, 0..300_000));
    // A stream shorter than declared is an error, not a hang.
    let short = alice
        .files()
        .unwrap()
        .upload_reader(std::io::Cursor::new(vec![1u8; 10]), 20, Upload::named("short"))
        .await;
    assert!(matches!(short, Err(im_client_sdk::Error::Io(_))), "{short:?}");

    // Bob is sent the file, finds it among the files he received, and
    // downloads it through the proxy, cut at half: resumed with Range.
    let group = alice.create_group("films", &[bob.user().id]).await.unwrap();
    alice
        .send_file(
            v1::send_message::Target::ConversationId(group.id),
            MediaKind::Video,
            &info.id,
            "from the trip",
        )
        .await
        .unwrap();
    let received = bob.files().unwrap().received(10).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].id.as_str(), received[0].name.as_str()),
        (info.id.as_str(), "holiday video.bin")
    );
    assert_eq!(received[0].conversation_id, Some(group.id));
    let bob_token = bob.clone();
    let bob_files = FileClient::new(&proxy.url(), move || bob_token.token()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(im_client_sdk::Progress::default());
    let cutter = cut_at(&proxy, rx.clone(), len / 2);
    let target = dir.path().join("downloaded.bin");
    let got = bob_files
        .download_to_path(&info.id, &target, Some(tx))
        .await
        .unwrap();
    assert!(cutter.await.unwrap(), "the connection was cut mid-download");
    assert_eq!(got.sha256, want);
    assert_eq!(std::fs::metadata(&target).unwrap().len(), len);
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, std::fs::read(&target).unwrap());
    assert_eq!(hex::encode(sha2::Digest::finalize(h)), want);
    // Someone the file was not shared with is refused.
    let (carol, _ce) = server.register("carol").await;
    let refused = carol
        .files()
        .unwrap()
        .download(&info.id, &mut Vec::new(), None)
        .await;
    assert_eq!(refused.unwrap_err().code(), Some(v1::ErrorCode::PermissionDenied));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_over_https_verified_like_the_chat_connection() {
    use im_client_sdk::{FileClient, Upload};
    use support::Transport;
    let server = TestServer::start_on(Backend::Sqlite, Transport::WebSocketTls).await;
    assert!(server.url().starts_with("wss://"));
    let (alice, _events) = server.register("alice").await;
    let data = content(31, 0..MIB + 7);
    let files = alice.files().unwrap();
    let info = files
        .upload_reader(
            std::io::Cursor::new(data.to_vec()),
            data.len() as u64,
            Upload::named("secret.bin"),
        )
        .await
        .unwrap();
    assert_eq!(info.sha256, content_sha(31, 0..MIB + 7));
    let mut back = Vec::new();
    files.download(&info.id, &mut back, None).await.unwrap();
    assert_eq!(back, data);
    // Without the test CA (system roots only) the server is refused.
    let token = alice.clone();
    let untrusting = FileClient::new(&server.url(), move || token.token()).unwrap();
    let refused = untrusting.received(10).await.unwrap_err();
    assert!(matches!(refused, im_client_sdk::Error::Tls(_)), "{refused:?}");
    server.stop().await;
}
