//! External identities and the commit hook.

use super::*;

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        display_name: name.into(),
        password_hash: String::new(),
        created_at: 1,
    }
}

pub async fn external_identities_map_to_one_user(store: Arc<dyn Store>) {
    assert!(store.user_by_identity("host", "u-1").await.unwrap().is_none());
    let created = store
        .create_user_with_identity(new_user("hostuser"), "host", "u-1")
        .await
        .unwrap();
    assert_eq!(
        store.user_by_identity("host", "u-1").await.unwrap(),
        Some(created.clone())
    );
    assert!(
        store.user_by_identity("other", "u-1").await.unwrap().is_none(),
        "issuers are apart"
    );
    // A second first sight of the same identity writes nothing.
    assert!(matches!(
        store
            .create_user_with_identity(new_user("hostuser2"), "host", "u-1")
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store.user_by_name("hostuser2").await.unwrap().is_none(),
        "rolled back"
    );
    // A taken user name is a conflict too, and maps nothing.
    assert!(matches!(
        store
            .create_user_with_identity(new_user("HOSTUSER"), "host", "u-2")
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.user_by_identity("host", "u-2").await.unwrap().is_none());
}

pub async fn commit_hooks_run_in_sequence_order(store: Arc<dyn Store>) {
    let owner = user(&store, "hooked").await;
    let conv = group(&store, owner.id, vec![]).await;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let appends = (0..100).map(|n| {
        let seen = seen.clone();
        let store = store.clone();
        async move {
            let new = NewMessage {
                conversation_id: conv.id,
                sender_id: owner.id,
                client_msg_id: Some(format!("h{n}")),
                content: v1::Content::text("x"),
                created_at: 1,
                membership: None,
                ..Default::default()
            };
            store
                .append_message_then(new, Box::new(move |a: &Appended| seen.lock().push(a.message.seq)))
                .await
                .unwrap()
        }
    });
    let handles: Vec<_> = appends.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(*seen.lock(), (1..=100).collect::<Vec<_>>(), "once each, in order");
    // A duplicate or a refused append calls no hook.
    let again = NewMessage {
        conversation_id: conv.id,
        sender_id: owner.id,
        client_msg_id: Some("h0".into()),
        content: v1::Content::text("x"),
        created_at: 1,
        membership: None,
        ..Default::default()
    };
    let dup = store
        .append_message_then(again, Box::new(|_: &Appended| panic!("no hook for a duplicate")))
        .await
        .unwrap();
    assert!(dup.duplicate);
    let (version, members) = store.member_list(conv.id).await.unwrap().unwrap();
    assert_eq!(&members[..], &[owner.id]);
    let outsider = user(&store, "outsider9").await;
    let add = NewMessage {
        conversation_id: conv.id,
        sender_id: 0,
        client_msg_id: None,
        content: v1::Content::text("added"),
        created_at: 1,
        membership: Some(Membership::Add(vec![(outsider.id, v1::Role::Member)])),
        ..Default::default()
    };
    let added = store.append_message(add).await.unwrap();
    assert!(
        added.member_version > version,
        "a membership change bumps the version"
    );
    let (after, members) = store.member_list(conv.id).await.unwrap().unwrap();
    assert_eq!(after, added.member_version);
    assert_eq!(members.len(), 2);
    assert!(store.member_list(987_654).await.unwrap().is_none());
}
