//! Each member's own settings of a conversation.

use super::{group, text, user};
use crate::model::MemberSettings;
use crate::store::Store;
use std::sync::Arc;

pub async fn member_settings_are_each_members_own(store: Arc<dyn Store>) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let g = group(&store, a.id, vec![b.id]).await;
    store.append_message(text(g.id, a.id, "hi", None)).await.unwrap();
    assert_eq!(
        store.member(g.id, b.id).await.unwrap().unwrap().settings,
        MemberSettings::default(),
        "nothing set at first"
    );
    let mine = MemberSettings {
        pinned_at: 7,
        muted_until: i64::MAX,
        archived: true,
        marked_unread: true,
    };
    let m = store
        .set_member_settings(g.id, b.id, mine)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.settings, mine);
    assert_eq!(store.member(g.id, b.id).await.unwrap().unwrap().settings, mine);
    assert_eq!(
        store.member(g.id, a.id).await.unwrap().unwrap().settings,
        MemberSettings::default(),
        "another member's are untouched"
    );
    let listed = store.user_conversations(b.id).await.unwrap();
    assert_eq!(listed[0].1.settings, mine, "listed with the member");
    // Delivery keeps the mark; reading clears it, and only it.
    let m = store.advance_cursors(g.id, b.id, None, Some(1)).await.unwrap();
    assert!(m.settings.marked_unread);
    let m = store.advance_cursors(g.id, b.id, Some(1), None).await.unwrap();
    assert_eq!(
        m.settings,
        MemberSettings {
            marked_unread: false,
            ..mine
        }
    );
    let c = user(&store, "c").await;
    assert!(
        store
            .set_member_settings(g.id, c.id, mine)
            .await
            .unwrap()
            .is_none(),
        "not a member"
    );
    assert!(
        store
            .set_member_settings(g.id + 1_000, b.id, mine)
            .await
            .unwrap()
            .is_none()
    );
}
