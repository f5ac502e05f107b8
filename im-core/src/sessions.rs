//! Who is connected to this node: sessions by user, device and session, and
//! delivery of events to them: to every device of some users (optionally
//! leaving out one user or one device), or to exactly one device.
//!
//! The registry is sharded (`DashMap`): delivering to one user locks only that
//! user's shard, never the whole registry.

use crate::event::SharedEvent;
use crate::model::{DeviceAddress, DeviceId, SessionId, UserId};
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// What the engine hands a session's connection to write.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An event to send.
    Event(Arc<SharedEvent>),
    /// Close the connection with this reason (sent by embedders through
    /// their own session handling; the engine itself does not).
    Close(String),
}

/// A session's event queue. Costs about 100 bytes while empty (no buffer is
/// kept for an idle session), grows with the backlog up to `capacity`.
struct Queue {
    items: Mutex<VecDeque<Outbound>>,
    ready: Notify,
    capacity: usize,
    /// Set when an event could not be queued; the connection must then close
    /// so that its client resyncs.
    overflowed: AtomicBool,
}

impl Queue {
    fn push(&self, item: Outbound) {
        {
            let mut items = self.items.lock();
            if items.len() >= self.capacity {
                self.overflowed.store(true, Ordering::Relaxed);
                return;
            }
            items.push_back(item);
        }
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Outbound> {
        let mut items = self.items.lock();
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > 16 {
            // Give the memory of a burst back once it is written.
            *items = VecDeque::new();
        }
        item
    }
}

/// What [`Sessions::unregister`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unregistered {
    /// The session's device.
    pub device: DeviceId,
    /// Whether another session of the same device is still on this node.
    pub device_still_connected: bool,
}

struct Entry {
    id: SessionId,
    device: DeviceId,
    queue: Arc<Queue>,
}

#[derive(Default)]
struct UserSessions {
    entries: Vec<Entry>,
}

/// Who is left out of a delivery to several users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Except {
    /// Every device of this user (the typist).
    pub user: Option<UserId>,
    /// This one device.
    pub device: Option<DeviceAddress>,
    /// Every device of these users, ascending (members who block the
    /// sender of a message, or the actor of a typing indicator or receipt).
    pub users: Vec<UserId>,
}

impl Except {
    /// Every device of `user` is left out.
    fn skips_user(&self, user: UserId) -> bool {
        self.user == Some(user) || (!self.users.is_empty() && self.users.binary_search(&user).is_ok())
    }

    fn skips(&self, user: UserId, device: &DeviceId) -> bool {
        self.skips_user(user)
            || self
                .device
                .as_ref()
                .is_some_and(|d| d.user_id == user && &d.device == device)
    }
}

/// The registry of this node's sessions.
pub struct Sessions {
    by_user: DashMap<UserId, UserSessions>,
    next_id: AtomicU64,
    queue_capacity: usize,
}

/// The receiving side of a session, owned by its connection.
pub struct SessionEvents {
    /// This session's id.
    pub id: SessionId,
    /// The authenticated user.
    pub user_id: UserId,
    /// The device the session is on.
    pub device: DeviceId,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEvents")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl SessionEvents {
    /// The next event to write, waiting for one.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(item) = self.queue.pop() {
                return Some(item);
            }
            self.queue.ready.notified().await;
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.queue.pop()
    }

    /// True if events were dropped because the queue was full: the connection
    /// should close so that its client resyncs.
    pub fn overflowed(&self) -> bool {
        self.queue.overflowed.load(Ordering::Relaxed)
    }
}

impl Sessions {
    /// An empty registry; each session queues at most `queue_capacity` events.
    pub fn new(queue_capacity: usize) -> Self {
        Self {
            by_user: DashMap::new(),
            next_id: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
        }
    }

    /// Adds a session of a user's device.
    pub fn register(&self, user_id: UserId, device: DeviceId) -> SessionEvents {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: self.queue_capacity,
            overflowed: AtomicBool::new(false),
        });
        let mut user = self.by_user.entry(user_id).or_default();
        // Most users have one session: room for exactly one, not four.
        user.entries.reserve_exact(1);
        user.entries.push(Entry {
            id,
            device: device.clone(),
            queue: queue.clone(),
        });
        drop(user);
        SessionEvents {
            id,
            user_id,
            device,
            queue,
        }
    }

    /// Removes a session; `None` if it was not registered, else what is left.
    pub fn unregister(&self, user_id: UserId, id: SessionId) -> Option<Unregistered> {
        let removed = self.by_user.get_mut(&user_id).and_then(|mut user| {
            let at = user.entries.iter().position(|e| e.id == id)?;
            let device = user.entries.remove(at).device;
            let device_still_connected = user.entries.iter().any(|e| e.device == device);
            Some(Unregistered {
                device,
                device_still_connected,
            })
        });
        // Users who went offline leave no entry behind: the registry holds
        // only connected users.
        self.by_user.remove_if(&user_id, |_, u| u.entries.is_empty());
        removed
    }

    /// Whether this session is still registered.
    pub fn contains(&self, user_id: UserId, id: SessionId) -> bool {
        self.by_user
            .get(&user_id)
            .is_some_and(|u| u.entries.iter().any(|e| e.id == id))
    }

    /// Every session on this node, as (user, session).
    pub fn snapshot(&self) -> Vec<(UserId, SessionId)> {
        self.by_user
            .iter()
            .flat_map(|u| {
                let user_id = *u.key();
                u.entries.iter().map(move |e| (user_id, e.id)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Number of sessions of a user on this node.
    pub fn user_session_count(&self, user_id: UserId) -> usize {
        self.by_user.get(&user_id).map_or(0, |u| u.entries.len())
    }

    /// Number of sessions on this node.
    pub fn len(&self) -> usize {
        self.by_user.iter().map(|u| u.entries.len()).sum()
    }

    /// True if no session is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sessions {
    /// Queues an event for every session of these users, except `except`.
    pub fn deliver_to_users(&self, users: &[UserId], except: &Except, event: &Arc<SharedEvent>) {
        for &user_id in users {
            if except.skips_user(user_id) {
                continue;
            }
            let Some(user) = self.by_user.get(&user_id) else {
                continue;
            };
            for e in user.entries.iter().filter(|e| !except.skips(user_id, &e.device)) {
                e.queue.push(Outbound::Event(event.clone()));
            }
        }
    }

    /// Queues an event for every session on this node.
    pub fn deliver_to_all(&self, event: &Arc<SharedEvent>) {
        for user in self.by_user.iter() {
            for e in user.entries.iter() {
                e.queue.push(Outbound::Event(event.clone()));
            }
        }
    }

    /// Queues an event for the sessions of exactly one device.
    pub fn deliver_to_device(&self, address: &DeviceAddress, event: &Arc<SharedEvent>) {
        if let Some(user) = self.by_user.get(&address.user_id) {
            for e in user.entries.iter().filter(|e| e.device == address.device) {
                e.queue.push(Outbound::Event(event.clone()));
            }
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("users", &self.by_user.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_protocol::v1;

    fn event() -> Arc<SharedEvent> {
        SharedEvent::new(v1::event::Kind::Typing(v1::TypingEvent::default()))
    }

    fn got(s: &mut SessionEvents) -> usize {
        std::iter::from_fn(|| s.try_recv()).count()
    }

    #[test]
    fn an_event_for_one_device_reaches_that_device_only() {
        let sessions = Sessions::new(16);
        let (phone, laptop) = (DeviceId::new("phone"), DeviceId::new("laptop"));
        let mut a_phone = sessions.register(1, phone.clone());
        let mut a_phone2 = sessions.register(1, phone.clone());
        let mut a_laptop = sessions.register(1, laptop.clone());
        let mut b_phone = sessions.register(2, phone.clone());
        sessions.deliver_to_device(
            &DeviceAddress {
                user_id: 1,
                device: phone.clone(),
            },
            &event(),
        );
        assert_eq!(
            [
                got(&mut a_phone),
                got(&mut a_phone2),
                got(&mut a_laptop),
                got(&mut b_phone)
            ],
            [1, 1, 0, 0],
            "both connections of that device, no other device, not the other user's device of the same name"
        );
    }

    #[test]
    fn users_get_every_device_except_the_one_left_out() {
        let sessions = Sessions::new(16);
        let (phone, laptop) = (DeviceId::new("phone"), DeviceId::new("laptop"));
        let mut a_phone = sessions.register(1, phone.clone());
        let mut a_laptop = sessions.register(1, laptop.clone());
        let mut b_phone = sessions.register(2, phone.clone());
        let mut c_phone = sessions.register(3, phone.clone());
        let all_but_a_phone = Except {
            user: None,
            device: Some(DeviceAddress {
                user_id: 1,
                device: phone.clone(),
            }),
            users: Vec::new(),
        };
        sessions.deliver_to_users(&[1, 2], &all_but_a_phone, &event());
        assert_eq!(
            [
                got(&mut a_phone),
                got(&mut a_laptop),
                got(&mut b_phone),
                got(&mut c_phone)
            ],
            [0, 1, 1, 0]
        );
        let all_but_user_2 = Except {
            user: Some(2),
            device: None,
            users: Vec::new(),
        };
        sessions.deliver_to_users(&[1, 2], &all_but_user_2, &event());
        assert_eq!(
            [got(&mut a_phone), got(&mut a_laptop), got(&mut b_phone)],
            [1, 1, 0]
        );
    }
}
