//! The presence conformance suite, run against every [`PresenceRegistry`]
//! backend with two nodes sharing it.
#![allow(missing_docs, clippy::unwrap_used)]

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
            a_node_removed_at_shutdown_takes_its_users_offline,
            first_sessions_on_two_nodes_at_once_report_online_once,
            two_nodes_expiring_at_once_report_each_user_once,
            user_nodes_names_every_node_serving_each_user);
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

/// Two instances of one shared registry (as two processes would open it),
/// seen as one: calls for node A go to `a`, for any other node to `b`, and
/// calls that name no node alternate, so every check also runs across
/// instances.
#[derive(Debug)]
pub struct TwoInstances {
    a: Arc<dyn PresenceRegistry>,
    b: Arc<dyn PresenceRegistry>,
    flip: AtomicBool,
}

impl TwoInstances {
    /// Joins two instances; pass the result to the suite.
    pub fn join(a: Arc<dyn PresenceRegistry>, b: Arc<dyn PresenceRegistry>) -> Arc<dyn PresenceRegistry> {
        Arc::new(Self {
            a,
            b,
            flip: AtomicBool::new(false),
        })
    }

    fn of(&self, node: &NodeId) -> &Arc<dyn PresenceRegistry> {
        if node == A { &self.a } else { &self.b }
    }

    fn next(&self) -> &Arc<dyn PresenceRegistry> {
        if self.flip.fetch_xor(true, Ordering::Relaxed) {
            &self.b
        } else {
            &self.a
        }
    }
}

#[async_trait::async_trait]
impl PresenceRegistry for TwoInstances {
    async fn connected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        self.of(node).connected(node, user, session, now).await
    }
    async fn disconnected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        self.of(node).disconnected(node, user, session, now).await
    }
    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool> {
        self.of(node).renew(node, now).await
    }
    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>> {
        self.of(node).remove_node(node, now).await
    }
    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>> {
        self.next().expire(now).await
    }
    async fn presence(&self, users: &[UserId], now: i64) -> Result<Vec<UserPresence>> {
        self.next().presence(users, now).await
    }
    async fn user_nodes(&self, users: &[UserId]) -> Result<Option<Vec<(UserId, String)>>> {
        self.next().user_nodes(users).await
    }
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

pub async fn first_sessions_on_two_nodes_at_once_report_online_once(
    r: Arc<dyn PresenceRegistry>,
    _lease: i64,
) {
    // Many users at once, so that the two nodes' calls for a user overlap.
    let mut tasks = tokio::task::JoinSet::new();
    for user in 100..164 {
        let r = r.clone();
        tasks.spawn(async move {
            let (a, b) = tokio::join!(r.connected(A, user, 1, T0), r.connected(B, user, 2, T0));
            let ups = [a.unwrap(), b.unwrap()];
            assert_eq!(
                ups.iter().flatten().filter(|c| c.online).count(),
                1,
                "user {user}: {ups:?}"
            );
            let (a, b) = tokio::join!(
                r.disconnected(A, user, 1, T0 + 1),
                r.disconnected(B, user, 2, T0 + 1)
            );
            let downs = [a.unwrap(), b.unwrap()];
            assert_eq!(
                downs.iter().flatten().filter(|c| !c.online).count(),
                1,
                "user {user}: {downs:?}"
            );
            assert!(!is_online(&r, user, T0 + 2).await);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

pub async fn two_nodes_expiring_at_once_report_each_user_once(r: Arc<dyn PresenceRegistry>, lease: i64) {
    let users: Vec<UserId> = (1..=20).collect();
    for &user in &users {
        r.connected(A, user, user, T0).await.unwrap();
    }
    r.connected(B, 21, 21, T0).await.unwrap();
    let now = T0 + lease + 1;
    assert!(r.renew(B, now).await.unwrap());
    let (x, y) = tokio::join!(r.expire(now), r.expire(now));
    let mut reported: Vec<UserId> = x
        .unwrap()
        .into_iter()
        .chain(y.unwrap())
        .map(|c| c.user_id)
        .collect();
    reported.sort_unstable();
    assert_eq!(reported, users, "each of A's users once, none of B's");
}

/// Routing by node relies on it: for each user, every node with a
/// registered session of theirs, once (a registry that cannot say,
/// answering `None`, is not fit for routing and fails this check).
pub async fn user_nodes_names_every_node_serving_each_user(r: Arc<dyn PresenceRegistry>, _lease: i64) {
    r.connected(A, 1, 10, T0).await.unwrap();
    r.connected(B, 1, 20, T0).await.unwrap();
    r.connected(B, 1, 21, T0).await.unwrap();
    r.connected(B, 2, 22, T0).await.unwrap();
    let sorted = |pairs: Option<Vec<(UserId, String)>>| {
        let mut pairs = pairs.expect("the registry can say where users are");
        pairs.sort();
        pairs
    };
    let pair = |user: UserId, node: &str| (user, node.to_owned());
    assert_eq!(
        sorted(r.user_nodes(&[1, 2, 3]).await.unwrap()),
        vec![pair(1, A), pair(1, B), pair(2, B)],
        "each node once per user, nothing for a user without sessions"
    );
    r.disconnected(A, 1, 10, T0 + 1).await.unwrap();
    assert_eq!(
        sorted(r.user_nodes(&[1]).await.unwrap()),
        vec![pair(1, B)],
        "gone with its last session there"
    );
}
