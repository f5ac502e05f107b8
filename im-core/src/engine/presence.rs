//! Sessions arriving and leaving, presence across nodes, and the presence
//! lease of this node.

use super::{Caller, Engine, Inner};
use crate::error::{Error, Result};
use crate::fanout::Audience;
use crate::model::{ConversationId, DeviceId, SessionId, UserId};
use crate::presence::PresenceChange;
use crate::sessions::SessionEvents;
use im_protocol::v1;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

impl Engine {
    /// Registers a connected, authenticated session of a user's device; its
    /// events arrive on the returned receiver. Call [`Engine::disconnect`]
    /// when it ends.
    pub async fn connect(&self, user_id: UserId, device: DeviceId) -> SessionEvents {
        let events = self.inner.sessions.register(user_id, device.clone());
        self.call_device_back(user_id, device);
        self.start_presence_upkeep();
        let now = self.now_ms();
        match self
            .inner
            .presence
            .connected(&self.inner.node_id, user_id, events.id, now)
            .await
        {
            Ok(Some(change)) => {
                // Off the connect path: finding the contacts takes store reads.
                // Generation numbers let clients order presence events that race.
                let engine = self.clone();
                tokio::spawn(async move { engine.announce_presence(change).await });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(user_id, error = %e, "presence: could not register a session"),
        }
        events
    }

    /// Removes a session; announces the user offline if it was their last
    /// live one on any node.
    pub async fn disconnect(&self, user_id: UserId, session_id: SessionId) {
        let Some(gone) = self.inner.sessions.unregister(user_id, session_id) else {
            return;
        };
        if !gone.device_still_connected {
            self.call_device_gone(user_id, gone.device);
        }
        let now = self.now_ms();
        match self
            .inner
            .presence
            .disconnected(&self.inner.node_id, user_id, session_id, now)
            .await
        {
            Ok(Some(change)) => self.went_offline(change).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(user_id, error = %e, "presence: could not end a session"),
        }
    }

    pub(super) async fn went_offline(&self, change: PresenceChange) {
        if let Err(e) = self.inner.store.set_last_seen(change.user_id, change.at).await {
            tracing::warn!(user_id = change.user_id, error = %e, "could not record last seen");
        }
        self.announce_presence(change).await;
    }

    pub(super) async fn announce_presence(&self, change: PresenceChange) {
        let mut contacts = match self.contacts(change.user_id).await {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "presence: could not list contacts");
                return;
            }
        };
        // Neither side of a block sees the other's presence; unsure of the
        // blocks, say nothing.
        match self.block_relations(change.user_id).await {
            Ok(blocks) if blocks.is_empty() => {}
            Ok(blocks) => contacts.retain(|u| !blocks.either_way(*u)),
            Err(e) => {
                tracing::warn!(error = %e, "presence: could not read blocks");
                return;
            }
        }
        if contacts.is_empty() {
            return;
        }
        let presence = v1::Presence {
            user_id: change.user_id,
            online: change.online,
            last_seen: if change.online { 0 } else { change.at },
            generation: change.generation,
        };
        let envelope = self.envelope(
            0,
            Audience::users(contacts),
            0,
            v1::event::Kind::Presence(presence),
        );
        self.dispatch(&envelope, None);
    }

    /// Renews this node's presence lease (registering its sessions again if
    /// the lease had lapsed) and takes offline the users of nodes whose lease
    /// expired. The engine runs it every third of the lease while it has
    /// sessions; call it yourself only to force it.
    pub async fn presence_upkeep(&self) -> Result<()> {
        let (presence, node) = (&self.inner.presence, &self.inner.node_id);
        let now = self.now_ms();
        if !presence.renew(node, now).await? {
            // The registry dropped this node's sessions: register the live
            // ones again, and say those users are back.
            for (user_id, session) in self.inner.sessions.snapshot() {
                let change = presence.connected(node, user_id, session, now).await?;
                if !self.inner.sessions.contains(user_id, session) {
                    // It ended meanwhile: its disconnect may have come first.
                    if let Some(gone) = presence.disconnected(node, user_id, session, now).await? {
                        self.went_offline(gone).await;
                    }
                    continue;
                }
                if let Some(change) = change {
                    self.announce_presence(change).await;
                }
            }
        }
        for change in presence.expire(now).await? {
            self.went_offline(change).await;
        }
        Ok(())
    }

    pub(super) fn start_presence_upkeep(&self) {
        if self.inner.presence_upkeep.set(()).is_err() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = Duration::from_millis(
            u64::try_from(self.inner.config.presence_lease_ms / 3)
                .unwrap_or(1)
                .max(1),
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                // The task ends with the engine.
                let Some(inner) = weak.upgrade() else { break };
                let engine = Engine { inner };
                if let Err(e) = engine.presence_upkeep().await {
                    tracing::warn!(error = %e, "presence: lease renewal failed");
                }
            }
        });
    }

    /// Presence of users the caller shares a direct conversation or a
    /// (not large) group with, or of the caller; others are left out, and
    /// so are users the caller blocks or is blocked by (as if unknown).
    pub async fn presence(&self, caller: Caller, ids: &[UserId]) -> Result<Vec<v1::Presence>> {
        if ids.len() > self.inner.config.max_page_size as usize {
            return Err(Error::TooLarge(format!(
                "at most {} ids",
                self.inner.config.max_page_size
            )));
        }
        let contacts: BTreeSet<UserId> = self.contacts(caller.user_id).await?.into_iter().collect();
        let blocks = self.block_relations(caller.user_id).await?;
        let ids: Vec<UserId> = ids
            .iter()
            .copied()
            .filter(|id| *id == caller.user_id || (contacts.contains(id) && !blocks.either_way(*id)))
            .collect();
        let stored: HashMap<UserId, i64> = self
            .inner
            .store
            .users_by_ids(&ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u.last_seen))
            .collect();
        let live = self.inner.presence.presence(&ids, self.now_ms()).await?;
        Ok(live
            .into_iter()
            .filter_map(|p| {
                let last_stored = *stored.get(&p.user_id)?;
                Some(v1::Presence {
                    user_id: p.user_id,
                    online: p.online,
                    last_seen: if p.online { 0 } else { last_stored },
                    generation: p.generation,
                })
            })
            .collect())
    }

    /// Whether any device of the user is live on any node (the push decision).
    pub async fn has_live_device(&self, user_id: UserId) -> Result<bool> {
        self.inner.presence.has_live_device(user_id, self.now_ms()).await
    }

    /// Users who see this user's presence: members of their direct
    /// conversations and of groups up to the large-group threshold.
    pub(super) async fn contacts(&self, user_id: UserId) -> Result<Vec<UserId>> {
        let shared: Vec<ConversationId> = self
            .inner
            .store
            .user_conversations(user_id)
            .await?
            .into_iter()
            .filter(|(conv, _)| {
                let small_group = conv.kind == v1::ConversationKind::Group
                    && conv.member_count <= self.inner.config.large_group_threshold;
                conv.kind == v1::ConversationKind::Direct || small_group
            })
            .map(|(conv, _)| conv.id)
            .collect();
        let mut out: BTreeSet<UserId> = self
            .inner
            .store
            .members_of(&shared)
            .await?
            .into_iter()
            .map(|(_, user)| user)
            .collect();
        out.remove(&user_id);
        Ok(out.into_iter().collect())
    }
}
