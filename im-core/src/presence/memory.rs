//! [`MemoryPresence`]: presence for the nodes of one process (the default,
//! and the reference the conformance suite is written against).
//!
//! Kept small per connected user (one map entry, the first session inline,
//! no allocation), since every idle connection pays for it.

use super::{NodeId, PresenceChange, PresenceRegistry, UserPresence};
use crate::error::Result;
use crate::model::{SessionId, UserId};
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
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
    /// Every node ever seen; users refer to them by index.
    nodes: Vec<Node>,
    node_index: HashMap<Arc<str>, u32>,
    /// Users with at least one session somewhere, or reported online.
    users: HashMap<UserId, User>,
    /// The last generation handed out.
    last_generation: u64,
}

#[derive(Debug)]
struct Node {
    lease_until: i64,
    /// Its lease expired and its sessions were dropped.
    dropped: bool,
    /// Dropped since its last renewal: the next `renew` tells the node to
    /// register its sessions again (even if a new session revived it).
    lapsed: bool,
}

/// A session: the node it is on, and its id there.
type Session = (u32, SessionId);

#[derive(Debug, Default)]
struct User {
    /// The first session, inline (most users have one).
    first: Option<Session>,
    /// Any others.
    more: Vec<Session>,
    /// The last change reported was "online".
    reported_online: bool,
    generation: u64,
}

impl User {
    fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.first.iter().chain(self.more.iter())
    }

    fn insert(&mut self, session: Session) {
        if self.sessions().any(|s| *s == session) {
            return;
        }
        match self.first {
            None => self.first = Some(session),
            Some(_) => self.more.push(session),
        }
    }

    /// Keeps the sessions `keep` says yes to.
    fn retain(&mut self, keep: impl Fn(&Session) -> bool) {
        self.more.retain(&keep);
        if self.first.as_ref().is_some_and(|s| !keep(s)) {
            self.first = self.more.pop();
        }
        if self.first.is_none() {
            self.first = self.more.pop();
        }
        if self.more.is_empty() {
            self.more = Vec::new();
        }
    }
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

    /// The node's index, the node created if new.
    fn node(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.node_index.get(name) {
            return i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            lease_until: 0,
            dropped: false,
            lapsed: false,
        });
        self.node_index.insert(name.into(), i);
        i
    }

    fn node_live(&self, node: u32, now: i64) -> bool {
        let n = &self.nodes[node as usize];
        !n.dropped && n.lease_until > now
    }

    fn user_live(&self, user: &User, now: i64) -> bool {
        user.sessions().any(|&(node, _)| self.node_live(node, now))
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
            .is_some_and(|u| !u.reported_online && u.first.is_none())
        {
            self.users.remove(&user_id);
        }
        change
    }

    /// Removes every session on the nodes `dropped` says yes to; the users
    /// it affected, ascending.
    fn drop_sessions(&mut self, dropped: impl Fn(u32) -> bool) -> Vec<UserId> {
        let mut affected = Vec::new();
        for (&user_id, user) in self.users.iter_mut() {
            if user.sessions().any(|&(node, _)| dropped(node)) {
                user.retain(|&(node, _)| !dropped(node));
                affected.push(user_id);
            }
        }
        affected.sort_unstable();
        affected
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
        let index = state.node(node);
        let n = &mut state.nodes[index as usize];
        // A node that registers a session is alive.
        n.dropped = false;
        n.lease_until = n.lease_until.max(now + self.lease_ms);
        state.users.entry(user_id).or_default().insert((index, session));
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
        let Some(&index) = state.node_index.get(node) else {
            return Ok(None);
        };
        if let Some(user) = state.users.get_mut(&user_id) {
            user.retain(|&s| s != (index, session));
        }
        Ok(state.settle(user_id, now))
    }

    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool> {
        let mut state = self.state.lock();
        let index = state.node(node);
        let n = &mut state.nodes[index as usize];
        let kept = !n.dropped && !n.lapsed && n.lease_until > 0;
        n.dropped = false;
        n.lapsed = false;
        n.lease_until = n.lease_until.max(now + self.lease_ms);
        Ok(kept)
    }

    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>> {
        let mut state = self.state.lock();
        let Some(&index) = state.node_index.get(node) else {
            return Ok(Vec::new());
        };
        let n = &mut state.nodes[index as usize];
        n.dropped = true;
        n.lapsed = true;
        let users = state.drop_sessions(|n| n == index);
        Ok(users.into_iter().filter_map(|u| state.settle(u, now)).collect())
    }

    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>> {
        let mut state = self.state.lock();
        let mut expired = vec![false; state.nodes.len()];
        for (i, n) in state.nodes.iter_mut().enumerate() {
            if !n.dropped && n.lease_until <= now {
                n.dropped = true;
                n.lapsed = true;
                expired[i] = true;
            }
        }
        if !expired.contains(&true) {
            return Ok(Vec::new());
        }
        let users = state.drop_sessions(|n| expired[n as usize]);
        Ok(users.into_iter().filter_map(|u| state.settle(u, now)).collect())
    }

    async fn user_nodes(&self, users: &[UserId]) -> Result<Option<Vec<(UserId, String)>>> {
        let state = self.state.lock();
        let name_of: HashMap<u32, &Arc<str>> = state.node_index.iter().map(|(n, &i)| (i, n)).collect();
        let mut pairs = Vec::new();
        for &user_id in users {
            let Some(user) = state.users.get(&user_id) else {
                continue;
            };
            let nodes: std::collections::BTreeSet<u32> = user.sessions().map(|&(node, _)| node).collect();
            pairs.extend(nodes.into_iter().map(|i| (user_id, name_of[&i].to_string())));
        }
        Ok(Some(pairs))
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
