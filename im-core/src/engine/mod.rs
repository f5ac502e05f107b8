//! The engine: every operation as an async method, with authorization in one place.

use crate::auth::{Authenticator, PasswordAuthConfig, PasswordAuthenticator};
use crate::blob::{BlobStore, MemoryBlobStore};
use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::fanout::{FanOut, LocalFanOut};
use crate::model::*;
use crate::presence::{MemoryPresence, PresenceRegistry};
use crate::sessions::Sessions;
use crate::store::{MemoryStore, Store};
use im_protocol::v1;
use std::sync::Arc;

/// Limits and behaviour of the engine. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Largest encoded message content, in bytes (default 16 KiB).
    pub max_message_bytes: usize,
    /// Most members in a group or room (default 10,000).
    pub max_group_members: u32,
    /// Largest page of history, changes, rooms or search results (default 200).
    pub max_page_size: u32,
    /// Above this many members, typing, presence and read receipts are not
    /// broadcast to the whole conversation (default 200).
    pub large_group_threshold: u32,
    /// Events queued per session before it is considered too slow and closed
    /// (its client then resyncs) (default 1024).
    pub session_queue: usize,
    /// Longest conversation title in characters (default 200).
    pub max_title_chars: usize,
    /// Longest client message id in bytes (default 64).
    pub max_client_msg_id: usize,
    /// How long after sending its sender may recall a message, ms (default
    /// 24 hours; 0: any time). Owners and admins of groups and rooms may
    /// recall any message at any time.
    pub recall_window_ms: i64,
    /// How long after sending its sender may edit a message, ms (default 0:
    /// any time).
    pub edit_window_ms: i64,
    /// How long this node's sessions count as online after its last lease
    /// renewal, ms; the engine renews every third of it (default 30 s).
    pub presence_lease_ms: i64,
    /// File size limit, daily quota and clean-up times.
    pub files: FilesConfig,
    /// Ring time-out, reconnect window, participants and signal size of calls.
    pub calls: crate::call::CallConfig,
    /// The STUN and TURN servers handed to callers.
    pub ice: crate::call::IceConfig,
    /// Friend requests, friendship for direct messages, the block cache.
    pub contacts: ContactsConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            max_group_members: 10_000,
            max_page_size: 200,
            large_group_threshold: 200,
            session_queue: 1024,
            max_title_chars: 200,
            max_client_msg_id: 64,
            recall_window_ms: 24 * 3600 * 1000,
            edit_window_ms: 0,
            presence_lease_ms: 30_000,
            files: FilesConfig::default(),
            calls: crate::call::CallConfig::default(),
            ice: crate::call::IceConfig::default(),
            contacts: ContactsConfig::default(),
        }
    }
}

/// The authenticated user behind a request, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: UserId,
    /// The device the request came from (empty when not from a connection).
    pub device: DeviceId,
    /// The session the request came on (0 when not from a connection).
    pub session_id: SessionId,
}

impl Caller {
    /// A caller without a session (embedders, bots, admin tools).
    pub fn user(user_id: UserId) -> Self {
        Self {
            user_id,
            device: DeviceId::default(),
            session_id: 0,
        }
    }
}

/// Builds an [`Engine`]; every backend defaults to its in-memory implementation.
#[derive(Default)]
#[must_use]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    fanout: Option<Arc<dyn FanOut>>,
    presence: Option<Arc<dyn PresenceRegistry>>,
    clock: Option<Arc<dyn Clock>>,
    blobs: Option<Arc<dyn BlobStore>>,
    node_id: Option<String>,
    auth: Option<Arc<dyn Authenticator>>,
    auth_config: PasswordAuthConfig,
    config: EngineConfig,
}

impl EngineBuilder {
    /// The store (default: [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    /// The fan-out (default: [`LocalFanOut`]).
    pub fn fanout(mut self, fanout: Arc<dyn FanOut>) -> Self {
        self.fanout = Some(fanout);
        self
    }
    /// The presence registry (default: [`MemoryPresence`], for one node).
    pub fn presence(mut self, presence: Arc<dyn PresenceRegistry>) -> Self {
        self.presence = Some(presence);
        self
    }
    /// Where time comes from (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Where file bytes are kept (default: [`MemoryBlobStore`]).
    pub fn blobs(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }
    /// This node's name in the cluster, unique among live nodes (default:
    /// random).
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }
    /// The authenticator (default: [`PasswordAuthenticator`] over the store).
    pub fn authenticator(mut self, auth: Arc<dyn Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }
    /// Settings of the default password authenticator.
    pub fn password_auth(mut self, config: PasswordAuthConfig) -> Self {
        self.auth_config = config;
        self
    }
    /// Limits.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// Builds the engine and subscribes its sessions to the fan-out.
    pub fn build(self) -> Engine {
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let fanout = self.fanout.unwrap_or_else(|| Arc::new(LocalFanOut::new()));
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let auth = self.auth.unwrap_or_else(|| {
            Arc::new(PasswordAuthenticator::new(store.clone(), self.auth_config).with_clock(clock.clone()))
        });
        let sessions = Arc::new(Sessions::new(self.config.session_queue));
        let presence = self
            .presence
            .unwrap_or_else(|| Arc::new(MemoryPresence::new(self.config.presence_lease_ms)));
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("node-{:016x}", rand::random::<u64>()));
        let calls = calls::Calls::new(self.config.calls.clone(), &node_id);
        let inner = Arc::new_cyclic(|weak| {
            fanout.subscribe(Arc::new(delivery::RemoteEvents::new(weak.clone())));
            Inner {
                store,
                fanout,
                auth,
                sessions,
                presence,
                clock,
                blobs: self.blobs.unwrap_or_else(|| Arc::new(MemoryBlobStore::new())),
                uploads: parking_lot::Mutex::default(),
                node_id: node_id.into(),
                presence_upkeep: std::sync::OnceLock::new(),
                config: self.config,
                members: members::MemberDirectory::default(),
                outbox: outbox::Outbox::default(),
                calls,
                blocks: blocks::BlockCache::default(),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }
        });
        Engine { inner }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    fanout: Arc<dyn FanOut>,
    auth: Arc<dyn Authenticator>,
    sessions: Arc<Sessions>,
    /// Who is online on every node.
    presence: Arc<dyn PresenceRegistry>,
    clock: Arc<dyn Clock>,
    /// File bytes.
    blobs: Arc<dyn BlobStore>,
    /// Uploads receiving bytes on this node now (one stream per upload).
    uploads: parking_lot::Mutex<std::collections::HashSet<FileId>>,
    /// This node's name in presence leases (and, later, fan-out envelopes).
    node_id: Arc<str>,
    /// Started with the first session: renews this node's presence lease.
    presence_upkeep: std::sync::OnceLock<()>,
    config: EngineConfig,
    /// Member lists by conversation and version (delivery, typing).
    members: members::MemberDirectory,
    /// Committed messages waiting for delivery, in commit order.
    outbox: outbox::Outbox,
    /// The calls this node keeps.
    calls: calls::Calls,
    /// Users' blocks, for what is relayed (presence, typing, receipts).
    blocks: blocks::BlockCache,
    /// The runtime the engine was built in, for work started off it (a
    /// store writer thread's commit hook).
    runtime: Option<tokio::runtime::Handle>,
}

/// The chat engine. Cheap to clone; all clones share state.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
/// use im_core::{Caller, Engine};
/// use im_protocol::v1;
/// let engine = Engine::builder().build();
/// let alice = engine.register("alice", "correct horse", "Alice").await?;
/// let bob = engine.register("bob", "battery staple", "Bob").await?;
/// let ack = engine
///     .send_message(
///         Caller::user(alice.user.id),
///         v1::SendMessage {
///             target: Some(v1::send_message::Target::ToUserId(bob.user.id)),
///             client_msg_id: "m1".into(),
///             content: Some(v1::Content::text("hi Bob")),
///             ..Default::default()
///         },
///     )
///     .await?;
/// assert_eq!(ack.seq, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn system(kind: v1::SystemKind, actor: UserId, users: Vec<UserId>, title: &str) -> v1::Content {
    v1::Content {
        kind: Some(v1::content::Kind::System(v1::SystemNotice {
            kind: kind as i32,
            actor_id: actor,
            user_ids: users,
            title: title.to_owned(),
            ..Default::default()
        })),
    }
}

mod admin;
mod admission;
mod authz;
mod blocks;
mod call_relay;
mod calls;
mod changes;
pub use changes::{MAX_DELETE_BATCH, MAX_EMOJI_BYTES};
mod contacts;
pub use contacts::{ContactsConfig, MAX_FRIEND_REQUEST_BYTES};
mod conversations;
mod delivery;
mod dispatch;
mod expiry;
pub use expiry::{MAX_MESSAGE_TTL_MS, MIN_MESSAGE_TTL_MS};
mod files;
pub use files::{
    FileDownload, FileSweep, FilesConfig, MAX_FILE_NAME_BYTES, UploadRequest, UploadState, sanitize_file_name,
};
mod identity;
pub use identity::Authenticated;
mod forward;
pub use forward::MAX_FORWARD;
mod members;
mod messages;
pub use messages::MAX_MENTIONS;
mod outbox;
mod presence;
mod receipts;
mod search;
mod send;
mod settings;
mod sync;
mod threads;

impl Engine {
    /// A builder with in-memory defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The limits in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Where file bytes are kept.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.inner.blobs
    }

    /// This node's sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.inner.sessions
    }

    /// Deletes expired tokens from the store; run it now and then (the
    /// reference server does every 10 minutes). Returns how many went.
    pub async fn purge_expired_tokens(&self) -> Result<u64> {
        Ok(self.inner.store.purge_expired_tokens(self.now_ms()).await?)
    }

    /// `Ok` while the fan-out reaches the other nodes (see
    /// [`FanOut::health`]); the store's is [`Store::health`].
    pub async fn fanout_health(&self) -> Result<()> {
        self.inner.fanout.health().await
    }

    /// Now, from the engine's clock (Unix ms).
    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Closes the fan-out, then the store. Call once, after the last request.
    pub async fn shutdown(&self) -> Result<()> {
        let now = self.now_ms();
        if let Err(e) = self.inner.presence.remove_node(&self.inner.node_id, now).await {
            tracing::warn!(error = %e, "presence: could not remove this node");
        }
        self.inner.fanout.close().await?;
        Ok(self.inner.store.close().await?)
    }
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("config", &self.config)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node_id", &self.inner.node_id)
            .field("sessions", &self.inner.sessions.len())
            .finish_non_exhaustive()
    }
}
