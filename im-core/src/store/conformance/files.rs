//! Conformance checks of file metadata and shares.

use super::{group, text, user};
use crate::model::*;
use crate::store::{Store, StoreError};
use im_protocol::v1;
use std::sync::Arc;

fn new_file(id: &str, uploader: UserId, size: u64, at: i64) -> NewFile {
    NewFile {
        id: id.into(),
        uploader_id: uploader,
        name: "photo.png".into(),
        size,
        created_at: at,
        facts: MediaFacts {
            width: Some(640),
            height: Some(480),
            duration_ms: None,
            thumbnail_id: Some("thumb".into()),
        },
    }
}

async fn complete(store: &Arc<dyn Store>, id: &str, uploader: UserId, at: i64) -> FileRecord {
    store.create_file(new_file(id, uploader, 10, at)).await.unwrap();
    store
        .complete_file(
            id,
            FileCompletion {
                mime_type: "image/png".into(),
                sha256: "ab".repeat(32),
                completed_at: at,
            },
        )
        .await
        .unwrap()
}

fn image(conv: ConversationId, sender: UserId, file: &str) -> NewMessage {
    let mut m = text(conv, sender, "", None);
    m.content = v1::Content {
        kind: Some(v1::content::Kind::Image(v1::Media {
            file_id: file.into(),
            ..Default::default()
        })),
    };
    m
}

pub async fn file_metadata_lifecycle(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let created = store.create_file(new_file("f1", a.id, 1000, 100)).await.unwrap();
    assert_eq!(created.status, FileStatus::Uploading);
    assert_eq!(
        (created.size, created.stored_bytes, created.updated_at),
        (1000, 0, 100)
    );
    assert_eq!(created.facts.width, Some(640));
    assert_eq!(created.facts.thumbnail_id.as_deref(), Some("thumb"));
    assert!(matches!(
        store.create_file(new_file("f1", a.id, 5, 100)).await,
        Err(StoreError::Conflict(_))
    ));
    store.file_progress("f1", 400, 150).await.unwrap();
    let f = store.file("f1").await.unwrap().unwrap();
    assert_eq!((f.stored_bytes, f.updated_at), (400, 150));
    assert!(matches!(
        store.file_progress("nope", 1, 1).await,
        Err(StoreError::NotFound(_))
    ));
    let done = FileCompletion {
        mime_type: "image/png".into(),
        sha256: "cd".repeat(32),
        completed_at: 200,
    };
    let f = store.complete_file("f1", done.clone()).await.unwrap();
    assert_eq!(f.status, FileStatus::Complete);
    assert_eq!((f.stored_bytes, f.completed_at), (1000, Some(200)));
    assert_eq!(
        (f.mime_type.as_str(), f.sha256.as_str()),
        ("image/png", &*"cd".repeat(32))
    );
    assert_eq!(store.file("f1").await.unwrap().unwrap(), f);
    assert!(matches!(
        store.complete_file("f1", done.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.complete_file("nope", done).await,
        Err(StoreError::NotFound(_))
    ));

    store.create_file(new_file("f2", a.id, 24, 300)).await.unwrap();
    assert_eq!(store.uploaded_bytes_since(a.id, 0).await.unwrap(), 1024);
    assert_eq!(store.uploaded_bytes_since(a.id, 101).await.unwrap(), 24);
    assert_eq!(store.uploaded_bytes_since(a.id + 1000, 0).await.unwrap(), 0);
    let mut exist = store
        .files_exist(&["f2".into(), "nope".into(), "f1".into()])
        .await
        .unwrap();
    exist.sort();
    assert_eq!(exist, ["f1", "f2"]);
    assert!(store.delete_file("f1").await.unwrap());
    assert!(!store.delete_file("f1").await.unwrap());
    assert_eq!(store.file("f1").await.unwrap(), None);
}

pub async fn files_are_shared_by_the_append(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let c = user(&store, "c").await;
    let g = group(&store, a.id, vec![b.id]).await;
    complete(&store, "pic", a.id, 10).await;
    store.create_file(new_file("half", a.id, 10, 10)).await.unwrap();
    assert!(!store.file_shared_with("pic", b.id).await.unwrap());

    // An unknown or incomplete file refuses the whole append: no seq used.
    for missing in ["nope", "half"] {
        assert!(matches!(
            store.append_message(image(g.id, a.id, missing)).await,
            Err(StoreError::NotFound(_))
        ));
    }
    // A non-member's message shares nothing.
    assert!(matches!(
        store.append_message(image(g.id, c.id, "pic")).await,
        Err(StoreError::NotMember(_))
    ));
    assert!(!store.file_shared_with("pic", b.id).await.unwrap());

    let sent = store.append_message(image(g.id, a.id, "pic")).await.unwrap();
    assert_eq!(sent.message.seq, 1, "refused appends took no seq");
    assert!(store.file_shared_with("pic", b.id).await.unwrap());
    assert!(store.file_shared_with("pic", a.id).await.unwrap());
    assert!(!store.file_shared_with("pic", c.id).await.unwrap());
    assert!(!store.file_shared_with("half", b.id).await.unwrap());
    // Sharing again (another message) is not an error.
    store.append_message(image(g.id, a.id, "pic")).await.unwrap();

    let received = store.files_shared_with(b.id, 10).await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].file.id.as_str(), received[0].conversation_id),
        ("pic", g.id)
    );
    assert!(
        store.files_shared_with(a.id, 10).await.unwrap().is_empty(),
        "not one's own uploads"
    );
    assert!(store.files_shared_with(c.id, 10).await.unwrap().is_empty());
    // Leaving the conversation ends access.
    let mut leave = text(g.id, 0, "left", None);
    leave.membership = Some(Membership::Remove(b.id));
    store.append_message(leave).await.unwrap();
    assert!(!store.file_shared_with("pic", b.id).await.unwrap());
}

pub async fn expired_files_and_guarded_delete(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    store.create_file(new_file("stale", a.id, 10, 100)).await.unwrap();
    store.create_file(new_file("fresh", a.id, 10, 900)).await.unwrap();
    complete(&store, "old", a.id, 100).await;
    complete(&store, "new", a.id, 900).await;
    complete(&store, "kept", a.id, 100).await;
    store.append_message(image(g.id, a.id, "kept")).await.unwrap();

    let mut ids: Vec<String> = store
        .expired_files(500, 500, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["old", "stale"]);
    assert_eq!(store.expired_files(500, 500, 1).await.unwrap().len(), 1);
    // The delete re-checks the rule.
    assert!(!store.delete_expired_file("kept", 500, 500).await.unwrap());
    assert!(!store.delete_expired_file("fresh", 500, 500).await.unwrap());
    assert!(!store.delete_expired_file("new", 500, 500).await.unwrap());
    assert!(store.delete_expired_file("stale", 500, 500).await.unwrap());
    assert!(store.delete_expired_file("old", 500, 500).await.unwrap());
    assert!(!store.delete_expired_file("old", 500, 500).await.unwrap());
    assert!(store.file("kept").await.unwrap().is_some());
    // Progress keeps an upload alive.
    store.file_progress("fresh", 5, 2000).await.unwrap();
    assert!(!store.delete_expired_file("fresh", 1000, 1000).await.unwrap());
    // A deleted conversation no longer keeps its files.
    store.delete_conversation(g.id).await.unwrap();
    assert!(store.delete_expired_file("kept", 500, 500).await.unwrap());
}

pub async fn sharing_races_the_cleanup(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let g = group(&store, a.id, vec![]).await;
    for i in 0..20 {
        let id = format!("race{i}");
        complete(&store, &id, a.id, 100).await;
        let (s1, s2) = (store.clone(), store.clone());
        let (id1, id2) = (id.clone(), id.clone());
        let append = tokio::spawn(async move { s1.append_message(image(g.id, a.id, &id1)).await });
        let delete = tokio::spawn(async move { s2.delete_expired_file(&id2, 500, 500).await });
        let (appended, deleted) = (append.await.unwrap(), delete.await.unwrap().unwrap());
        let exists = store.file(&id).await.unwrap().is_some();
        match (appended.is_ok(), deleted) {
            // The message won: the file stays, shared.
            (true, false) => assert!(exists && store.file_shared_with(&id, a.id).await.unwrap(), "{id}"),
            // The clean-up won: the message was refused.
            (false, true) => assert!(!exists, "{id}"),
            (sent, deleted) => panic!("{id}: message stored {sent}, file deleted {deleted}"),
        }
    }
}
