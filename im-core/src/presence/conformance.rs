//! The presence conformance suite, run against every [`PresenceRegistry`]
//! backend with two nodes sharing it.
#![allow(missing_docs, clippy::unwrap_used)]

use super::*;
use std::sync::Arc;

/// Generates one `#[tokio::test]` per check; `$make` is an async expression
/// returning `(Arc<dyn PresenceRegistry>, lease_ms, guard)`.
#[macro_export]
macro_rules! presence_conformance_tests {
    ($make:expr) => {
        $crate::presence_conformance_tests!(@tests $make;
            online_while_any_device_on_any_node_is_connected,
            offline_after_the_last_device,
            a_lease_that_is_not_renewed_expires,
            generations_never_go_backwards_across_nodes,
            a_stale_generation_is_ignored,
            has_live_device_answers_the_push_decision,
            a_node_removed_at_shutdown_takes_its_users_offline);
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (registry, lease_ms, _guard) = $make.await;
                $crate::presence::conformance::$name(registry, lease_ms).await;
            }
        )*
    };
}

const T0: i64 = 1_800_000_000_000;
const A: &str = "node-a";
const B: &str = "node-b";

fn online(change: Option<PresenceChange>) -> Option<bool> {
    change.map(|c| c.online)
}

async fn is_online(r: &Arc<dyn PresenceRegistry>, user: UserId, now: i64) -> bool {
    r.presence(&[user], now).await.unwrap()[0].online
}

pub async fn online_while_any_device_on_any_node_is_connected(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    assert_eq!(online(r.connected(A, 1, 10, T0).await.unwrap()), Some(true));
    assert_eq!(
        online(r.connected(B, 1, 20, T0 + 1).await.unwrap()),
        None,
        "already online"
    );
    assert_eq!(online(r.connected(A, 1, 11, T0 + 2).await.unwrap()), None);
    assert_eq!(online(r.disconnected(A, 1, 10, T0 + 3).await.unwrap()), None);
    assert_eq!(
        online(r.disconnected(A, 1, 11, T0 + 4).await.unwrap()),
        None,
        "the device on B is up"
    );
    assert!(is_online(&r, 1, T0 + 5).await);
    assert!(!is_online(&r, 2, T0 + 5).await, "never connected");
}

pub async fn offline_after_the_last_device(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    r.connected(A, 1, 10, T0).await.unwrap();
    r.connected(B, 1, 20, T0).await.unwrap();
    r.disconnected(B, 1, 20, T0 + 1).await.unwrap();
    let change = r.disconnected(A, 1, 10, T0 + 2).await.unwrap().unwrap();
    assert!(!change.online);
    assert_eq!(change.at, T0 + 2);
    assert!(!is_online(&r, 1, T0 + 3).await);
    assert_eq!(
        r.disconnected(A, 1, 10, T0 + 4).await.unwrap(),
        None,
        "an unknown session changes nothing"
    );
}

pub async fn a_lease_that_is_not_renewed_expires(r: Arc<dyn PresenceRegistry>, lease: i64) {
    r.connected(A, 1, 10, T0).await.unwrap();
    r.connected(B, 2, 20, T0).await.unwrap();
    // B keeps renewing; A has died.
    let mut now = T0;
    while now < T0 + lease + 1 {
        now += lease / 4;
        assert!(r.renew(B, now).await.unwrap());
    }
    assert!(!is_online(&r, 1, now).await, "A's lease lapsed");
    assert!(is_online(&r, 2, now).await, "B renewed");
    let expired = r.expire(now).await.unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!((expired[0].user_id, expired[0].online), (1, false));
    assert!(r.expire(now + 1).await.unwrap().is_empty(), "reported once");
    assert!(
        !r.renew(A, now + 2).await.unwrap(),
        "A learns it must register again"
    );
    assert_eq!(online(r.connected(A, 1, 10, now + 3).await.unwrap()), Some(true));
}

pub async fn generations_never_go_backwards_across_nodes(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    let mut last = 0;
    let mut now = T0;
    for round in 0..5u64 {
        let node = if round % 2 == 0 { A } else { B };
        now += 1;
        let up = r.connected(node, 1, round, now).await.unwrap().unwrap();
        assert!(up.generation > last);
        last = up.generation;
        assert_eq!(r.presence(&[1], now).await.unwrap()[0].generation, last);
        // The clock of the next node may lag: generations still increase.
        let down = r.disconnected(node, 1, round, now - 1).await.unwrap().unwrap();
        assert!(down.generation > last);
        last = down.generation;
    }
}

pub async fn a_stale_generation_is_ignored(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    let up = r.connected(A, 1, 10, T0).await.unwrap().unwrap();
    let down = r.disconnected(A, 1, 10, T0 + 1).await.unwrap().unwrap();
    let up_again = r.connected(B, 1, 20, T0 + 2).await.unwrap().unwrap();
    // A receiver gets them out of order: the newest wins.
    let mut held: Option<(u64, bool)> = None;
    for change in [up, up_again, down] {
        if is_newer(held.map(|h| h.0), change.generation) {
            held = Some((change.generation, change.online));
        }
    }
    assert_eq!(
        held,
        Some((up_again.generation, true)),
        "the late offline was ignored"
    );
}

pub async fn has_live_device_answers_the_push_decision(r: Arc<dyn PresenceRegistry>, lease: i64) {
    assert!(!r.has_live_device(1, T0).await.unwrap());
    r.connected(B, 1, 20, T0).await.unwrap();
    assert!(r.has_live_device(1, T0 + 1).await.unwrap());
    assert!(
        !r.has_live_device(1, T0 + lease + 1).await.unwrap(),
        "B's lease lapsed"
    );
}

pub async fn a_node_removed_at_shutdown_takes_its_users_offline(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    r.connected(A, 1, 10, T0).await.unwrap();
    r.connected(A, 2, 11, T0).await.unwrap();
    r.connected(B, 2, 20, T0).await.unwrap();
    let gone = r.remove_node(A, T0 + 1).await.unwrap();
    assert_eq!(
        gone.iter().map(|c| (c.user_id, c.online)).collect::<Vec<_>>(),
        vec![(1, false)]
    );
    assert!(is_online(&r, 2, T0 + 2).await);
}
