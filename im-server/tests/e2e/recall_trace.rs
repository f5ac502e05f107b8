//! A recalled message leaves no trace of its text in the SQLite database
//! file: not in the message row, its edit history, its reactions' row or
//! the full-text index,
//! and not in the write-ahead log once the server stopped (SQLite's
//! `secure_delete` zeroes freed space; a clean shutdown checkpoints and
//! truncates the log).

use crate::support::*;

/// True if any of the database's files holds `needle`.
fn database_holds(db: &std::path::Path, needle: &str) -> bool {
    ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recalled_message_leaves_no_trace_in_the_database_file() {
    let server = TestServer::start(Backend::Sqlite).await;
    let db = server.sqlite_path().expect("a SQLite database file");
    let (alice, _a) = server.register("alice").await;
    let (bob, _b) = server.register("bob").await;
    let g = alice.create_group("secrets", &[bob.user().id]).await.unwrap().id;
    // One word: the index keeps it as one term (front-compressed against the
    // term before it, so its tail is what can be found in the file).
    let secret = "quixoticzebra7431";
    let tail = "zebra7431";
    let id = alice
        .send_text(g, &format!("the code is {secret}"))
        .await
        .unwrap()
        .message_id;
    alice
        .edit_text(g, id, &format!("the code is {secret}, really"))
        .await
        .unwrap();
    bob.react(g, id, "👀").await.unwrap();
    let kept = "unremarkable-heron-5512";
    alice.send_text(g, kept).await.unwrap();
    // More traffic on the same pages after it.
    for i in 0..50 {
        bob.send_text(g, &format!("chatter {i}")).await.unwrap();
    }
    assert!(
        database_holds(&db, secret),
        "the text is stored before the recall"
    );
    let hits = bob.search("quixoticzebra", None, 0, 10).await.unwrap().messages;
    assert_eq!(
        hits.iter().map(|m| m.id).collect::<Vec<_>>(),
        [id],
        "and searchable"
    );

    alice.recall(g, id).await.unwrap();
    assert!(alice.edit_history(g, id).await.unwrap().is_empty());
    assert!(
        bob.search("quixoticzebra", None, 0, 10)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // Stopped, the files kept.
    let _stopped = server.stop_and_keep().await;
    assert!(
        !database_holds(&db, secret) && !database_holds(&db, tail),
        "no trace of a recalled message's text"
    );
    assert!(database_holds(&db, kept), "what was not recalled is still there");
}
