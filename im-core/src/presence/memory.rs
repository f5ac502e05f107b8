//! [`MemoryPresence`]: presence for the nodes of one process (the default,
//! and the reference the conformance suite is written against).

use super::{NodeId, PresenceChange, PresenceRegistry, UserPresence};
use crate::error::Result;
use crate::model::{SessionId, UserId};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// In-memory [`PresenceRegistry`]. Shared by several engines in one process
/// it behaves as a cluster registry; across processes use a shared backend.
#[derive(Debug)]
pub struct MemoryPresence {
    /// How long a node's sessions count after its last renewal, ms.
    lease_ms: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Lease deadline and sessions of each node.
    nodes: HashMap<Arc<str>, Node>,
    /// Users with at least one session somewhere, or reported online.
    users: HashMap<UserId, User>,
    /// The last generation handed out.
    last_generation: u64,
}

#[derive(Debug, Default)]
struct Node {
    lease_until: i64,
    sessions: HashSet<(UserId, SessionId)>,
}

#[derive(Debug, Default)]
struct User {
    /// Sessions per node.
    sessions: HashMap<Arc<str>, usize>,
    /// The last change reported was "online".
    reported_online: bool,
    generation: u64,
}

impl MemoryPresence {
    /// A registry where a node's sessions lapse `lease_ms` after its last
    /// renewal (the engine renews every third of it).
    pub fn new(lease_ms: i64) -> Self {
        Self {
            lease_ms: lease_ms.max(1),
            state: Mutex::new(State::default()),
        }
    }
}

impl Default for MemoryPresence {
    /// A 30-second lease.
    fn default() -> Self {
        Self::new(30_000)
    }
}

impl State {
    /// Time-based so that generations still order after a restart of the
    /// registry; +1 keeps them strictly increasing.
    fn next_generation(&mut self, now: i64) -> u64 {
        let micros = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
        self.last_generation = micros.max(self.last_generation + 1);
        self.last_generation
    }

    fn node_live(&self, node: &str, now: i64) -> bool {
        self.nodes.get(node).is_some_and(|n| n.lease_until > now)
    }

    fn user_live(&self, user: &User, now: i64) -> bool {
        user.sessions
            .iter()
            .any(|(node, &n)| n > 0 && self.node_live(node, now))
    }

    /// Reports the user's transition if their liveness differs from what
    /// was reported last; drops users with nothing left to remember.
    fn settle(&mut self, user_id: UserId, now: i64) -> Option<PresenceChange> {
        let live = self.users.get(&user_id).is_some_and(|u| self.user_live(u, now));
        let reported = self.users.get(&user_id).is_some_and(|u| u.reported_online);
        let change = (live != reported).then(|| {
            let generation = self.next_generation(now);
            let user = self.users.entry(user_id).or_default();
            user.reported_online = live;
            user.generation = generation;
            PresenceChange {
                user_id,
                online: live,
                generation,
                at: now,
            }
        });
        // Offline users cost nothing: their generation order is kept by the
        // time-based counter, their last seen time by the store.
        if self
            .users
            .get(&user_id)
            .is_some_and(|u| !u.reported_online && u.sessions.is_empty())
        {
            self.users.remove(&user_id);
        }
        change
    }

    fn remove_session(&mut self, node: &str, user_id: UserId, session: SessionId) {
        let removed = self
            .nodes
            .get_mut(node)
            .is_some_and(|n| n.sessions.remove(&(user_id, session)));
        if !removed {
            return;
        }
        if let Some(user) = self.users.get_mut(&user_id)
            && let Some(count) = user.sessions.get_mut(node)
        {
            *count -= 1;
            if *count == 0 {
                user.sessions.remove(node);
            }
        }
    }

    /// Removes every session of a node; the users it affected.
    fn drop_node(&mut self, node: &str) -> Vec<UserId> {
        let Some(n) = self.nodes.remove(node) else {
            return Vec::new();
        };
        let mut users: Vec<UserId> = n.sessions.iter().map(|(u, _)| *u).collect();
        users.sort_unstable();
        users.dedup();
        for user_id in &users {
            if let Some(user) = self.users.get_mut(user_id) {
                user.sessions.remove(node);
            }
        }
        users
    }
}

#[async_trait]
impl PresenceRegistry for MemoryPresence {
    async fn connected(
        &self,
        node: &NodeId,
        user_id: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let mut state = self.state.lock();
        let key: Arc<str> = match state.nodes.get_key_value(node) {
            Some((k, _)) => k.clone(),
            None => node.into(),
        };
        let n = state.nodes.entry(key.clone()).or_default();
        // A node that registers a session is alive.
        n.lease_until = n.lease_until.max(now + self.lease_ms);
        if n.sessions.insert((user_id, session)) {
            *state
                .users
                .entry(user_id)
                .or_default()
                .sessions
                .entry(key)
                .or_default() += 1;
        }
        Ok(state.settle(user_id, now))
    }

    async fn disconnected(
        &self,
        node: &NodeId,
        user_id: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let mut state = self.state.lock();
        state.remove_session(node, user_id, session);
        Ok(state.settle(user_id, now))
    }

    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool> {
        let mut state = self.state.lock();
        if let Some(n) = state.nodes.get_mut(node) {
            n.lease_until = n.lease_until.max(now + self.lease_ms);
            return Ok(true);
        }
        let fresh = Node {
            lease_until: now + self.lease_ms,
            sessions: HashSet::new(),
        };
        state.nodes.insert(node.into(), fresh);
        Ok(false)
    }

    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>> {
        let mut state = self.state.lock();
        let users = state.drop_node(node);
        Ok(users.into_iter().filter_map(|u| state.settle(u, now)).collect())
    }

    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>> {
        let mut state = self.state.lock();
        let expired: Vec<Arc<str>> = state
            .nodes
            .iter()
            .filter(|(_, n)| n.lease_until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut users = Vec::new();
        for node in expired {
            users.extend(state.drop_node(&node));
        }
        users.sort_unstable();
        users.dedup();
        Ok(users.into_iter().filter_map(|u| state.settle(u, now)).collect())
    }

    async fn presence(&self, users: &[UserId], now: i64) -> Result<Vec<UserPresence>> {
        let state = self.state.lock();
        Ok(users
            .iter()
            .map(|&user_id| match state.users.get(&user_id) {
                Some(u) => UserPresence {
                    user_id,
                    online: state.user_live(u, now),
                    generation: u.generation,
                },
                None => UserPresence {
                    user_id,
                    online: false,
                    generation: 0,
                },
            })
            .collect())
    }
}
