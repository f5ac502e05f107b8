//! The engine: every operation as an async method, with authorization in one place.

use crate::auth::{Authenticator, IssuedToken, PasswordAuthConfig, PasswordAuthenticator};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::fanout::{Audience, FanOut, LocalFanOut};
use crate::model::*;
use crate::presence::{MemoryPresence, PresenceRegistry};
use crate::sessions::Sessions;
use crate::store::{MemoryStore, Store};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use prost::Message as _;
use std::collections::{BTreeSet, HashMap};
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
    /// How long this node's sessions count as online after its last lease
    /// renewal, ms; the engine renews every third of it (default 30 s).
    pub presence_lease_ms: i64,
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
            presence_lease_ms: 30_000,
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
        let auth = self
            .auth
            .unwrap_or_else(|| Arc::new(PasswordAuthenticator::new(store.clone(), self.auth_config)));
        let sessions = Arc::new(Sessions::new(self.config.session_queue));
        let presence = self
            .presence
            .unwrap_or_else(|| Arc::new(MemoryPresence::new(self.config.presence_lease_ms)));
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("node-{:016x}", rand::random::<u64>()));
        let inner = Arc::new_cyclic(|weak| {
            fanout.subscribe(Arc::new(delivery::RemoteEvents::new(weak.clone())));
            Inner {
                store,
                fanout,
                auth,
                sessions,
                presence,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                node_id: node_id.into(),
                presence_upkeep: std::sync::OnceLock::new(),
                config: self.config,
                members: members::MemberDirectory::default(),
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
    /// This node's name in presence leases (and, later, fan-out envelopes).
    node_id: Arc<str>,
    /// Started with the first session: renews this node's presence lease.
    presence_upkeep: std::sync::OnceLock<()>,
    config: EngineConfig,
    /// Member lists by conversation and version (delivery, typing).
    members: members::MemberDirectory,
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
        })),
    }
}

mod delivery;
mod members;
mod presence;

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

    /// This node's sessions.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.inner.sessions
    }

    // ------------------------------------------------------------ identity

    /// Creates a password account and returns a token.
    pub async fn register(&self, username: &str, password: &str, display_name: &str) -> Result<IssuedToken> {
        self.inner.auth.register(username, password, display_name).await
    }

    /// Logs in with a password.
    pub async fn login(&self, username: &str, password: &str) -> Result<IssuedToken> {
        self.inner.auth.login(username, password).await
    }

    /// Who a token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<UserRecord> {
        let id = self.inner.auth.authenticate(token).await?;
        self.user(id).await
    }

    /// Revokes a token.
    pub async fn logout(&self, token: &str) -> Result<()> {
        self.inner.auth.logout(token).await
    }

    async fn user(&self, id: UserId) -> Result<UserRecord> {
        self.inner
            .store
            .users_by_ids(&[id])
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    // ------------------------------------------------------------ sessions

    /// Users who see this user's presence: members of their direct
    /// conversations and of groups up to the large-group threshold.
    async fn contacts(&self, user_id: UserId) -> Result<Vec<UserId>> {
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

    /// The members of a conversation for relaying ephemeral events: a list at
    /// most [`members::RELAY_TTL`] old, refreshed by every append on this
    /// node, so a typing indicator costs no store read on a busy conversation.
    async fn relay_members(&self, conversation: ConversationId) -> Result<Arc<[UserId]>> {
        if let Some(members) = self.inner.members.recent(conversation) {
            return Ok(members);
        }
        match self.inner.store.member_list(conversation).await? {
            Some((version, members)) => {
                self.inner
                    .members
                    .remember(conversation, version, members.clone());
                Ok(members)
            }
            None => Err(Error::NotFound(format!("conversation {conversation}"))),
        }
    }

    async fn member_ids(&self, conversation: ConversationId) -> Result<Vec<UserId>> {
        Ok(self
            .inner
            .store
            .members(conversation)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }

    // ------------------------------------------------------------ authorization

    async fn conversation(&self, id: ConversationId) -> Result<ConversationRecord> {
        self.inner
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("conversation {id}")))
    }

    /// The conversation and the caller's membership; `PermissionDenied` for non-members.
    async fn require_member(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> Result<(ConversationRecord, MemberRecord)> {
        let conv = self.conversation(id).await?;
        match self.inner.store.member(id, caller.user_id).await? {
            Some(m) => Ok((conv, m)),
            None => Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            ))),
        }
    }

    fn check_title(&self, title: &str) -> Result<String> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::InvalidArgument("a title is required".into()));
        }
        if title.chars().count() > self.inner.config.max_title_chars {
            return Err(Error::TooLarge(format!(
                "title is limited to {} characters",
                self.inner.config.max_title_chars
            )));
        }
        Ok(title.to_owned())
    }

    fn page(&self, limit: u32) -> u32 {
        if limit == 0 {
            50.min(self.inner.config.max_page_size)
        } else {
            limit.min(self.inner.config.max_page_size)
        }
    }

    // ------------------------------------------------------------ users

    /// Updates the caller's profile.
    pub async fn update_profile(&self, caller: Caller, req: v1::UpdateProfile) -> Result<v1::User> {
        if let Some(d) = &req.display_name {
            crate::auth::validate_display_name(d)?;
        }
        if let Some(a) = &req.avatar_url {
            if a.len() > 2048 {
                return Err(Error::TooLarge("avatar URL is limited to 2048 bytes".into()));
            }
            if !(a.is_empty() || a.starts_with("https://") || a.starts_with("http://")) {
                return Err(Error::InvalidArgument("avatar URL must be http(s)".into()));
            }
        }
        Ok(self
            .inner
            .store
            .update_profile(
                caller.user_id,
                req.display_name.map(|d| d.trim().to_owned()),
                req.avatar_url,
            )
            .await?
            .to_wire())
    }

    /// Public profiles by id (unknown ids are left out).
    pub async fn get_users(&self, ids: &[UserId]) -> Result<Vec<v1::User>> {
        if ids.len() > self.inner.config.max_page_size as usize {
            return Err(Error::TooLarge(format!(
                "at most {} ids",
                self.inner.config.max_page_size
            )));
        }
        Ok(self
            .inner
            .store
            .users_by_ids(ids)
            .await?
            .iter()
            .map(UserRecord::to_wire)
            .collect())
    }

    /// Users by name prefix.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<v1::User>> {
        if prefix.len() > 64 {
            return Err(Error::TooLarge("search prefix is limited to 64 bytes".into()));
        }
        if prefix.trim().is_empty() {
            // The directory is searched, not listed.
            return Err(Error::InvalidArgument("a search prefix is required".into()));
        }
        Ok(self
            .inner
            .store
            .search_users(prefix, self.page(limit))
            .await?
            .iter()
            .map(UserRecord::to_wire)
            .collect())
    }

    // ------------------------------------------------------------ conversations

    /// Creates a group; the caller is owner, `members` plain members.
    pub async fn create_group(
        &self,
        caller: Caller,
        title: &str,
        members: &[UserId],
    ) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let mut ids: Vec<UserId> = members.iter().copied().filter(|&m| m != caller.user_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() + 1 > self.inner.config.max_group_members as usize {
            return Err(Error::TooLarge(format!(
                "a group has at most {} members",
                self.inner.config.max_group_members
            )));
        }
        let found = self.inner.store.users_by_ids(&ids).await?;
        if found.len() != ids.len() {
            return Err(Error::NotFound("unknown user in member list".into()));
        }
        let conv = self
            .inner
            .store
            .create_conversation(NewConversation {
                kind: v1::ConversationKind::Group,
                title: title.clone(),
                ephemeral: false,
                created_by: caller.user_id,
                created_at: self.now_ms(),
                members: ids.clone(),
            })
            .await?;
        self.append_system(
            conv.id,
            system(v1::SystemKind::Created, caller.user_id, ids, &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, conv.id).await
    }

    /// Creates a public room with the caller as owner.
    pub async fn create_room(
        &self,
        caller: Caller,
        title: &str,
        ephemeral: bool,
    ) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let conv = self
            .inner
            .store
            .create_conversation(NewConversation {
                kind: v1::ConversationKind::Room,
                title: title.clone(),
                ephemeral,
                created_by: caller.user_id,
                created_at: self.now_ms(),
                members: vec![],
            })
            .await?;
        self.append_system(
            conv.id,
            system(v1::SystemKind::Created, caller.user_id, vec![], &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, conv.id).await
    }

    /// Public rooms with their member counts, largest first.
    pub async fn list_rooms(&self, limit: u32) -> Result<Vec<v1::Room>> {
        Ok(self
            .inner
            .store
            .list_rooms(self.page(limit))
            .await?
            .into_iter()
            .map(|r| v1::Room {
                member_count: r.member_count,
                conversation: Some(r.to_wire()),
            })
            .collect())
    }

    /// Joins a public room (joining twice is a no-op).
    pub async fn join(&self, caller: Caller, id: ConversationId) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        if conv.kind != v1::ConversationKind::Room {
            return Err(Error::PermissionDenied(
                "only public rooms can be joined; groups need an invitation".into(),
            ));
        }
        if self.inner.store.member(id, caller.user_id).await?.is_none() {
            if conv.member_count >= self.inner.config.max_group_members {
                return Err(Error::TooLarge("the room is full".into()));
            }
            self.append_system(
                id,
                system(v1::SystemKind::Joined, caller.user_id, vec![caller.user_id], ""),
                Some(Membership::Add(vec![(caller.user_id, v1::Role::Member)])),
            )
            .await?;
        }
        self.conversation_for(&caller, id).await
    }

    /// Leaves a group or room. An ephemeral room is deleted when its last member leaves.
    pub async fn leave(&self, caller: Caller, id: ConversationId) -> Result<()> {
        let (conv, _) = self.require_member(&caller, id).await?;
        if conv.kind == v1::ConversationKind::Direct {
            return Err(Error::InvalidArgument(
                "a direct conversation cannot be left".into(),
            ));
        }
        // The leaver's other devices must learn it too, unless the room
        // vanishes with them: nobody is told about a room that no longer exists.
        let vanishes = conv.ephemeral;
        let engine = self.clone();
        let dispatch: CommitHook = Box::new(move |appended: &Appended| {
            if !(vanishes && appended.member_count == 0) {
                engine.dispatch_on_commit(Some(caller.user_id))(appended);
            }
        });
        let appended = self
            .store_system(
                id,
                system(v1::SystemKind::Left, caller.user_id, vec![caller.user_id], ""),
                Some(Membership::Remove(caller.user_id)),
                dispatch,
            )
            .await?;
        if appended.member_count == 0 && conv.ephemeral {
            self.inner.store.delete_conversation(id).await?;
            self.inner.members.forget(id);
        }
        Ok(())
    }

    /// Adds users to a group (owner or admin only).
    pub async fn add_members(
        &self,
        caller: Caller,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<v1::Conversation> {
        let (conv, me) = self.require_member(&caller, id).await?;
        if conv.kind != v1::ConversationKind::Group {
            return Err(Error::InvalidArgument(
                "members can only be added to groups".into(),
            ));
        }
        if !matches!(me.role, v1::Role::Owner | v1::Role::Admin) {
            return Err(Error::PermissionDenied(
                "only the owner or an admin can add members".into(),
            ));
        }
        let mut ids = users.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let existing: BTreeSet<UserId> = self.member_ids(id).await?.into_iter().collect();
        ids.retain(|u| !existing.contains(u));
        if ids.is_empty() {
            return self.conversation_for(&caller, id).await;
        }
        if existing.len() + ids.len() > self.inner.config.max_group_members as usize {
            return Err(Error::TooLarge(format!(
                "a group has at most {} members",
                self.inner.config.max_group_members
            )));
        }
        if self.inner.store.users_by_ids(&ids).await?.len() != ids.len() {
            return Err(Error::NotFound("unknown user in member list".into()));
        }
        let roles = ids.iter().map(|&u| (u, v1::Role::Member)).collect();
        self.append_system(
            id,
            system(v1::SystemKind::Added, caller.user_id, ids, ""),
            Some(Membership::Add(roles)),
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Renames a group or room (owner or admin only).
    pub async fn rename(&self, caller: Caller, id: ConversationId, title: &str) -> Result<v1::Conversation> {
        let title = self.check_title(title)?;
        let (conv, me) = self.require_member(&caller, id).await?;
        if conv.kind == v1::ConversationKind::Direct {
            return Err(Error::InvalidArgument(
                "a direct conversation has no title".into(),
            ));
        }
        if !matches!(me.role, v1::Role::Owner | v1::Role::Admin) {
            return Err(Error::PermissionDenied(
                "only the owner or an admin can rename".into(),
            ));
        }
        self.inner.store.rename_conversation(id, &title).await?;
        self.append_system(
            id,
            system(v1::SystemKind::Renamed, caller.user_id, vec![], &title),
            None,
        )
        .await?;
        self.conversation_for(&caller, id).await
    }

    /// Appends a system message; the members get it right after the commit.
    async fn append_system(
        &self,
        id: ConversationId,
        content: v1::Content,
        membership: Option<Membership>,
    ) -> Result<Appended> {
        self.store_system(id, content, membership, self.dispatch_on_commit(None))
            .await
    }

    /// Appends a system message (with its membership change, atomically);
    /// `dispatch` runs right after the commit.
    async fn store_system(
        &self,
        id: ConversationId,
        content: v1::Content,
        membership: Option<Membership>,
        dispatch: CommitHook,
    ) -> Result<Appended> {
        let new = NewMessage {
            conversation_id: id,
            sender_id: 0,
            client_msg_id: None,
            content,
            created_at: self.now_ms(),
            membership,
        };
        Ok(self.inner.store.append_message_then(new, dispatch).await?)
    }

    /// A conversation as the caller sees it, with members. Members only
    /// (anyone may look at a public room).
    pub async fn get_conversation(&self, caller: Caller, id: ConversationId) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        let me = self.inner.store.member(id, caller.user_id).await?;
        if me.is_none() && conv.kind != v1::ConversationKind::Room {
            return Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            )));
        }
        let mut wire = self.summary(&caller, conv, me, true).await?;
        wire.members = self
            .inner
            .store
            .members(id)
            .await?
            .iter()
            .map(MemberRecord::to_wire)
            .collect();
        Ok(wire)
    }

    async fn conversation_for(&self, caller: &Caller, id: ConversationId) -> Result<v1::Conversation> {
        let conv = self.conversation(id).await?;
        let me = self.inner.store.member(id, caller.user_id).await?;
        self.summary(caller, conv, me, true).await
    }

    /// The per-caller view: last message, unread count, cursors, role.
    async fn summary(
        &self,
        caller: &Caller,
        conv: ConversationRecord,
        me: Option<MemberRecord>,
        with_last_message: bool,
    ) -> Result<v1::Conversation> {
        let mut one = self
            .summaries(caller, vec![(conv, me)], with_last_message)
            .await?;
        one.pop()
            .ok_or_else(|| Error::Internal("conversation summary missing".into()))
    }

    /// [`Engine::summary`] of many conversations, in their order, with two
    /// store reads in all (last messages, unread counts), not two each.
    async fn summaries(
        &self,
        caller: &Caller,
        convs: Vec<(ConversationRecord, Option<MemberRecord>)>,
        with_last_message: bool,
    ) -> Result<Vec<v1::Conversation>> {
        let mut last_messages: HashMap<ConversationId, v1::Message> = HashMap::new();
        if with_last_message {
            let ids: Vec<ConversationId> = convs
                .iter()
                .filter(|(conv, _)| conv.last_seq > 0)
                .map(|(conv, _)| conv.id)
                .collect();
            last_messages = self
                .inner
                .store
                .last_messages(&ids)
                .await?
                .into_iter()
                .map(|m| (m.conversation_id, m))
                .collect();
        }
        let cursors: Vec<(ConversationId, u64)> = convs
            .iter()
            .filter_map(|(conv, me)| Some((conv.id, me.as_ref()?.read_seq)))
            .collect();
        let unread: HashMap<ConversationId, u64> = self
            .inner
            .store
            .unread_counts(caller.user_id, &cursors)
            .await?
            .into_iter()
            .collect();
        Ok(convs
            .into_iter()
            .map(|(conv, me)| {
                let mut wire = conv.to_wire();
                wire.last_message = last_messages.remove(&conv.id);
                if let Some(m) = me {
                    wire.unread_count = unread.get(&conv.id).copied().unwrap_or(0);
                    wire.read_seq = m.read_seq;
                    wire.delivered_seq = m.delivered_seq;
                    wire.role = m.role as i32;
                }
                wire
            })
            .collect())
    }

    /// The caller's conversations, most recently active first.
    /// The caller's conversations, most recently active first, at most
    /// `limit` (0: 50; capped by the page size); true if there are more.
    pub async fn list_conversations(
        &self,
        caller: Caller,
        limit: u32,
    ) -> Result<(Vec<v1::Conversation>, bool)> {
        let convs = self.inner.store.user_conversations(caller.user_id).await?;
        let mut out = self
            .summaries(
                &caller,
                convs.into_iter().map(|(c, m)| (c, Some(m))).collect(),
                true,
            )
            .await?;
        // Latest activity first; message ids break ties within a millisecond.
        out.sort_by_key(|c| {
            std::cmp::Reverse(
                c.last_message
                    .as_ref()
                    .map_or((c.created_at, 0, c.id), |m| (m.created_at, m.id, c.id)),
            )
        });
        let limit = self.page(limit) as usize;
        let has_more = out.len() > limit;
        out.truncate(limit);
        Ok((out, has_more))
    }

    // ------------------------------------------------------------ messages

    fn validate_content(&self, content: Option<&v1::Content>) -> Result<()> {
        let content = content.ok_or_else(|| Error::InvalidArgument("content is required".into()))?;
        let size = content.encoded_len();
        if size > self.inner.config.max_message_bytes {
            return Err(Error::TooLarge(format!(
                "message of {size} bytes exceeds the limit of {} bytes",
                self.inner.config.max_message_bytes
            )));
        }
        match &content.kind {
            None => Err(Error::InvalidArgument("content has no kind".into())),
            Some(v1::content::Kind::System(_)) => Err(Error::PermissionDenied(
                "system messages are written by the server".into(),
            )),
            Some(v1::content::Kind::Text(t)) if t.body.trim().is_empty() => {
                Err(Error::InvalidArgument("text must not be empty".into()))
            }
            Some(v1::content::Kind::Location(l))
                if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) =>
            {
                Err(Error::InvalidArgument("location out of range".into()))
            }
            Some(v1::content::Kind::Custom(c)) if c.r#type.is_empty() => {
                Err(Error::InvalidArgument("custom content needs a type".into()))
            }
            _ => Ok(()),
        }
    }

    /// Sends a message. The ack is returned only after the store committed it;
    /// a retry with the same `client_msg_id` returns the first ack.
    pub async fn send_message(&self, caller: Caller, req: v1::SendMessage) -> Result<v1::SendAck> {
        self.validate_content(req.content.as_ref())?;
        if req.client_msg_id.len() > self.inner.config.max_client_msg_id {
            return Err(Error::InvalidArgument(format!(
                "client_msg_id is limited to {} bytes",
                self.inner.config.max_client_msg_id
            )));
        }
        let conversation_id = match req.target {
            // Existence and membership are checked by the store, in the
            // transaction that appends: one round trip for a send.
            Some(v1::send_message::Target::ConversationId(id)) => id,
            Some(v1::send_message::Target::ToUserId(to)) => {
                self.user(to).await?;
                self.inner
                    .store
                    .direct_conversation(caller.user_id, to, self.now_ms())
                    .await?
                    .id
            }
            None => {
                return Err(Error::InvalidArgument(
                    "a target conversation or user is required".into(),
                ));
            }
        };
        // Authorize, dedup, sequence and store in one transaction; the
        // members get it right after the commit, in sequence order.
        let new = NewMessage {
            conversation_id,
            sender_id: caller.user_id,
            client_msg_id: (!req.client_msg_id.is_empty()).then_some(req.client_msg_id),
            content: req.content.unwrap_or_default(),
            created_at: self.now_ms(),
            membership: None,
        };
        let appended = self
            .inner
            .store
            .append_message_then(new, self.dispatch_on_commit(None))
            .await?;
        let m = &appended.message;
        let ack = v1::SendAck {
            message_id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            version: m.version,
            server_time: m.created_at,
            duplicate: appended.duplicate,
        };
        Ok(ack)
    }

    /// A page of history (members only).
    pub async fn history(&self, caller: Caller, req: v1::GetHistory) -> Result<v1::Messages> {
        if req.after_seq.is_some() && req.before_seq != 0 {
            return Err(Error::InvalidArgument(
                "give after_seq or before_seq, not both".into(),
            ));
        }
        self.require_member(&caller, req.conversation_id).await?;
        let limit = self.page(req.limit);
        let page = match req.after_seq {
            Some(after) => Page::After(after),
            None => Page::Before(req.before_seq),
        };
        let mut messages = self
            .inner
            .store
            .history(req.conversation_id, page, limit + 1)
            .await?;
        let has_more = messages.len() > limit as usize;
        if has_more {
            match page {
                Page::After(_) => {
                    messages.pop();
                }
                Page::Before(_) => {
                    messages.remove(0);
                }
            }
        }
        Ok(v1::Messages { messages, has_more })
    }

    // ------------------------------------------------------------ sync

    /// Which of the caller's conversations changed since the client's cursors.
    pub async fn sync(&self, caller: Caller, cursors: &[v1::SyncCursor]) -> Result<v1::SyncResult> {
        if cursors.len() > 100_000 {
            return Err(Error::TooLarge("too many cursors".into()));
        }
        let known: HashMap<ConversationId, u64> =
            cursors.iter().map(|c| (c.conversation_id, c.version)).collect();
        let mut stale = Vec::new();
        let mut member_of = BTreeSet::new();
        for (conv, me) in self.inner.store.user_conversations(caller.user_id).await? {
            member_of.insert(conv.id);
            if known.get(&conv.id).is_none_or(|&v| v != conv.last_version) {
                stale.push((conv, Some(me)));
            }
        }
        let changed = self.summaries(&caller, stale, false).await?;
        let removed = known
            .keys()
            .copied()
            .filter(|id| !member_of.contains(id))
            .collect();
        Ok(v1::SyncResult { changed, removed })
    }

    /// Changes after a change-log position (members only). Answers `reset`
    /// when the position is ahead of the conversation's log.
    pub async fn changes(&self, caller: Caller, req: v1::GetChanges) -> Result<v1::Changes> {
        let (conv, _) = self.require_member(&caller, req.conversation_id).await?;
        if req.after_version > conv.last_version {
            return Ok(v1::Changes {
                messages: vec![],
                next_version: 0,
                has_more: conv.last_version > 0,
                reset: true,
            });
        }
        let limit = self.page(req.limit);
        let mut messages = self
            .inner
            .store
            .changes(conv.id, req.after_version, limit + 1)
            .await?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        // The last page covers the whole log up to its end, including
        // versions absorbed by later changes of the same message.
        let next_version = if has_more {
            messages.last().map_or(req.after_version, |m| m.version)
        } else {
            conv.last_version.max(req.after_version)
        };
        Ok(v1::Changes {
            messages,
            next_version,
            has_more,
            reset: false,
        })
    }

    // ------------------------------------------------------------ receipts, typing, presence

    /// Moves the caller's read and/or delivered cursor and tells the others.
    pub async fn mark(
        &self,
        caller: Caller,
        id: ConversationId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> Result<v1::Cursor> {
        let (conv, before) = self.require_member(&caller, id).await?;
        let after = self
            .inner
            .store
            .advance_cursors(id, caller.user_id, read, delivered)
            .await?;
        if (after.read_seq, after.delivered_seq) != (before.read_seq, before.delivered_seq) {
            let receipt = v1::event::Kind::Receipt(v1::ReceiptEvent {
                conversation_id: id,
                user_id: caller.user_id,
                read_seq: after.read_seq,
                delivered_seq: after.delivered_seq,
            });
            if conv.member_count <= self.inner.config.large_group_threshold {
                let members = self.relay_members(id).await?;
                self.relay(id, &members, None, receipt);
            } else {
                // Large groups: only the reader's own devices (unread counts).
                let envelope = self.envelope(id, Audience::users(vec![caller.user_id]), 0, receipt);
                self.dispatch(&envelope, None);
            }
        }
        Ok(v1::Cursor {
            conversation_id: id,
            read_seq: after.read_seq,
            delivered_seq: after.delivered_seq,
        })
    }

    /// Relays a typing indicator to the other members (not stored; not sent
    /// in conversations above the large-group threshold).
    pub async fn typing(&self, caller: Caller, id: ConversationId, typing: bool) -> Result<()> {
        let members = self.relay_members(id).await?;
        if members.binary_search(&caller.user_id).is_err() {
            return Err(Error::PermissionDenied(format!(
                "not a member of conversation {id}"
            )));
        }
        if members.len() > self.inner.config.large_group_threshold as usize {
            return Ok(());
        }
        let event = v1::TypingEvent {
            conversation_id: id,
            user_id: caller.user_id,
            typing,
        };
        self.relay(id, &members, Some(caller.user_id), v1::event::Kind::Typing(event));
        Ok(())
    }

    // ------------------------------------------------------------ dispatch

    /// Runs one request of an authenticated session. Session-level requests
    /// (`Hello`, `Register`, `Login`, `Logout`) are handled by
    /// [`Connection`](crate::connection::Connection).
    pub async fn handle(&self, caller: Caller, body: Body) -> Result<Reply> {
        Ok(match body {
            Body::UpdateProfile(r) => Reply::User(self.update_profile(caller, r).await?),
            Body::GetUsers(r) => Reply::Users(v1::Users {
                users: self.get_users(&r.user_ids).await?,
            }),
            Body::SearchUsers(r) => Reply::Users(v1::Users {
                users: self.search_users(&r.prefix, r.limit).await?,
            }),
            Body::CreateGroup(r) => {
                Reply::Conversation(self.create_group(caller, &r.title, &r.member_ids).await?)
            }
            Body::CreateRoom(r) => {
                Reply::Conversation(self.create_room(caller, &r.title, r.ephemeral).await?)
            }
            Body::ListRooms(r) => Reply::Rooms(v1::Rooms {
                rooms: self.list_rooms(r.limit).await?,
            }),
            Body::Join(r) => Reply::Conversation(self.join(caller, r.conversation_id).await?),
            Body::Leave(r) => {
                self.leave(caller, r.conversation_id).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::AddMembers(r) => {
                Reply::Conversation(self.add_members(caller, r.conversation_id, &r.user_ids).await?)
            }
            Body::Rename(r) => Reply::Conversation(self.rename(caller, r.conversation_id, &r.title).await?),
            Body::GetConversation(r) => {
                Reply::Conversation(self.get_conversation(caller, r.conversation_id).await?)
            }
            Body::ListConversations(r) => {
                let (conversations, has_more) = self.list_conversations(caller, r.limit).await?;
                Reply::Conversations(v1::Conversations {
                    conversations,
                    has_more,
                })
            }
            Body::Send(r) => Reply::Ack(self.send_message(caller, r).await?),
            Body::GetHistory(r) => Reply::Messages(self.history(caller, r).await?),
            Body::Sync(r) => Reply::Sync(self.sync(caller, &r.cursors).await?),
            Body::GetChanges(r) => Reply::Changes(self.changes(caller, r).await?),
            Body::MarkRead(r) => {
                Reply::Cursor(self.mark(caller, r.conversation_id, Some(r.seq), None).await?)
            }
            Body::MarkDelivered(r) => {
                Reply::Cursor(self.mark(caller, r.conversation_id, None, Some(r.seq)).await?)
            }
            Body::Typing(r) => {
                self.typing(caller, r.conversation_id, r.typing).await?;
                Reply::Ok(v1::Empty {})
            }
            Body::GetPresence(r) => Reply::Presence(v1::PresenceList {
                presence: self.presence(caller, &r.user_ids).await?,
            }),
            Body::Ping(_) => Reply::Pong(v1::Pong {
                server_time: self.now_ms(),
            }),
            Body::Hello(_) | Body::Register(_) | Body::Login(_) | Body::Logout(_) => {
                return Err(Error::InvalidArgument(
                    "session request outside a connection".into(),
                ));
            }
        })
    }

    /// Deletes expired tokens from the store; run it now and then (the
    /// reference server does every 10 minutes). Returns how many went.
    pub async fn purge_expired_tokens(&self) -> Result<u64> {
        Ok(self.inner.store.purge_expired_tokens(self.now_ms()).await?)
    }

    /// Now, from the engine's clock (Unix ms).
    fn now_ms(&self) -> i64 {
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
