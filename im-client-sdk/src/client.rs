//! The client: connection supervision, resync, outbox and typed calls.

use crate::link::Link;
use crate::tls::TlsConfig;
use crate::tracker::{Live, Tracker};
use crate::transport::{ConnectOptions, Connector, UrlConnector};
use crate::{Error, Event, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use im_protocol::{Format, PROTOCOL_VERSION};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// URLs of the server nodes, tried in turn: WebSocket
    /// (`ws://host:port/v1/ws`, `wss://` with TLS) or gRPC (`grpc://host:port`,
    /// `grpcs://` with TLS).
    pub urls: Vec<String>,
    /// A stable id of this device or install.
    pub device_id: String,
    /// Binary protobuf (default) or JSON frames.
    pub format: Format,
    /// How long a call waits for a connection and then for its answer (default 10 s).
    pub request_timeout: Duration,
    /// First reconnect delay (default 100 ms); doubles up to `reconnect_max`, with jitter.
    pub reconnect_min: Duration,
    /// Longest reconnect delay (default 5 s).
    pub reconnect_max: Duration,
    /// Page size of sync fetches (default 200).
    pub page_size: u32,
    /// How URLs are reached (default: [`UrlConnector`], by scheme).
    pub connector: Arc<dyn Connector>,
    /// The roots trusted for `wss://` (and other secure) URLs (default:
    /// the system's).
    pub tls: TlsConfig,
}

impl ClientConfig {
    /// Defaults for one server URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            device_id: random_id(),
            format: Format::Binary,
            request_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            page_size: 200,
            connector: Arc::new(UrlConnector),
            tls: TlsConfig::default(),
        }
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A bearer token obtained earlier (or issued by the host product).
    Token(String),
    /// User name and password; also used to log in again if the token expires.
    Login {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// Create the account, then behave as `Login`.
    Register {
        /// User name.
        username: String,
        /// Password.
        password: String,
        /// Shown name (empty: the user name).
        display_name: String,
    },
}

/// The stream of [`Event`]s of a client.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed and everything was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ConnState {
    /// Increases with every connection.
    generation: u64,
    connected: bool,
    /// The resync of this generation finished.
    synced: bool,
    closed: bool,
}

struct OutboxItem {
    /// The request, its client message id set.
    message: v1::SendMessage,
    waiter: Option<oneshot::Sender<Result<v1::SendAck>>>,
}

struct Auth {
    token: String,
    user: v1::User,
    credentials: Credentials,
}

pub(crate) struct Inner {
    config: ClientConfig,
    /// What the connector needs from `config`, made once.
    connect_options: ConnectOptions,
    link: Mutex<Option<Arc<Link>>>,
    state: watch::Sender<ConnState>,
    tracker: Mutex<Tracker>,
    events: mpsc::UnboundedSender<Event>,
    auth: Mutex<Auth>,
    outbox: Mutex<VecDeque<OutboxItem>>,
    outbox_changed: Notify,
    closed: AtomicBool,
    /// Set by a `Closing` event: do not reconnect before this instant.
    reconnect_not_before: Mutex<Option<tokio::time::Instant>>,
    /// The highest presence generation seen per user: older events (a late
    /// "offline" from another server node) are dropped.
    presence_generations: Mutex<std::collections::HashMap<u64, u64>>,
    /// Live messages that arrived after a gap and sent the client fetching.
    gap_fills: std::sync::atomic::AtomicU64,
    /// Where call events go instead of [`Events`] (see [`Client::take_call_events`]).
    pub(crate) call_sink: Mutex<Option<mpsc::UnboundedSender<v1::CallEvent>>>,
    /// The call this device is in: after a reconnect (perhaps to another
    /// node) the client accepts it again to say it is back.
    pub(crate) active_call: Mutex<Option<u64>>,
}

/// A connection to the chat server that keeps itself connected and in sync.
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) fn random_id() -> String {
    let mut raw = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// True for a system message that ends `me`'s membership: removed or
/// banned, or the group dissolved (`me` 0: only the latter).
fn ends_membership(m: &v1::Message, me: u64) -> bool {
    let Some(v1::content::Kind::System(n)) = m.content.as_ref().and_then(|c| c.kind.as_ref()) else {
        return false;
    };
    match v1::SystemKind::try_from(n.kind) {
        Ok(v1::SystemKind::Dissolved) => true,
        Ok(v1::SystemKind::Removed | v1::SystemKind::Banned) => n.user_ids.contains(&me),
        _ => false,
    }
}

pub(crate) fn unexpected(reply: Reply) -> Error {
    Error::Protocol(format!("unexpected response {reply:?}"))
}

impl Client {
    /// Connects, authenticates and starts syncing. Fails if the first
    /// connection or the authentication fails; later disconnects are repaired
    /// by reconnecting.
    pub async fn connect(config: ClientConfig, credentials: Credentials) -> Result<(Client, Events)> {
        if config.urls.is_empty() {
            return Err(Error::Connect("no server URL".into()));
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let token = match &credentials {
            Credentials::Token(t) => t.clone(),
            _ => String::new(),
        };
        let inner = Arc::new(Inner {
            connect_options: ConnectOptions::new(config.format, config.tls.clone()),
            config,
            link: Mutex::new(None),
            state: watch::channel(ConnState::default()).0,
            tracker: Mutex::new(Tracker::default()),
            events: events_tx,
            auth: Mutex::new(Auth {
                token,
                user: v1::User::default(),
                credentials,
            }),
            outbox: Mutex::new(VecDeque::new()),
            outbox_changed: Notify::new(),
            closed: AtomicBool::new(false),
            reconnect_not_before: Mutex::new(None),
            presence_generations: Mutex::new(Default::default()),
            gap_fills: Default::default(),
            call_sink: Mutex::new(None),
            active_call: Mutex::new(None),
        });
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(supervise(inner.clone(), first_tx));
        first_rx.await.map_err(|_| Error::Closed)??;
        tokio::spawn(flush_outbox(inner.clone()));
        Ok((Client { inner }, Events { rx: events_rx }))
    }

    /// The signed-in user.
    pub fn user(&self) -> v1::User {
        self.inner.auth.lock().user.clone()
    }

    /// The first server URL (files go to its host over HTTP).
    pub(crate) fn config_url(&self) -> String {
        self.inner.config.urls[0].clone()
    }

    /// How the client verifies TLS servers (files use it too).
    pub(crate) fn tls_config(&self) -> TlsConfig {
        self.inner.config.tls.clone()
    }

    /// The id of this device, as the server knows it.
    pub fn device_id(&self) -> &str {
        &self.inner.config.device_id
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The current bearer token (to reconnect later with [`Credentials::Token`]).
    pub fn token(&self) -> String {
        self.inner.auth.lock().token.clone()
    }

    /// Whether a connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.state.borrow().connected
    }

    /// How many times a live message arrived after a gap and the client had
    /// to fetch what was missing (an event lost or reordered on the way).
    /// Zero while the server delivers every conversation in sequence order.
    pub fn gap_fills(&self) -> u64 {
        self.inner.gap_fills.load(Ordering::Relaxed)
    }

    /// Messages queued in the outbox, not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.inner.outbox.lock().len()
    }

    /// Sends one request and returns its result. Waits for a connection up to
    /// the request time-out.
    pub async fn request(&self, body: Body) -> Result<Reply> {
        self.inner.request(body).await
    }

    /// Queues a message in the outbox and resolves with the server's ack.
    /// The message is queued at once, even if the future is dropped; it is
    /// retried across reconnects until acked, and stored exactly once.
    pub fn send(
        &self,
        target: v1::send_message::Target,
        content: v1::Content,
    ) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        self.send_with_id(target, content, random_id())
    }

    /// [`Client::send`] with a client message id chosen by the caller.
    pub fn send_with_id(
        &self,
        target: v1::send_message::Target,
        content: v1::Content,
        client_msg_id: String,
    ) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        self.send_message(v1::SendMessage {
            target: Some(target),
            client_msg_id,
            content: Some(content),
            ..Default::default()
        })
    }

    /// Queues a whole `SendMessage` (a reply, mentions, a thread reply:
    /// see [`crate::SendOptions`]) in the outbox, like [`Client::send`];
    /// an empty `client_msg_id` gets a random one.
    pub fn send_message(
        &self,
        mut message: v1::SendMessage,
    ) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        if message.client_msg_id.is_empty() {
            message.client_msg_id = random_id();
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.closed.load(Ordering::SeqCst) {
            let _ = tx.send(Err(Error::Closed));
        } else {
            self.inner.outbox.lock().push_back(OutboxItem {
                message,
                waiter: Some(tx),
            });
            self.inner.outbox_changed.notify_one();
        }
        async move { rx.await.unwrap_or(Err(Error::Closed)) }
    }

    /// Sends text to a conversation.
    pub fn send_text(
        &self,
        conversation_id: u64,
        text: &str,
    ) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        self.send(
            v1::send_message::Target::ConversationId(conversation_id),
            v1::Content::text(text),
        )
    }

    /// Sends text to a user's direct conversation, creating it if needed.
    pub fn send_direct(&self, user_id: u64, text: &str) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        self.send(
            v1::send_message::Target::ToUserId(user_id),
            v1::Content::text(text),
        )
    }

    /// A page of history: the newest `limit` messages before `before_seq` (0: the end).
    pub async fn history(&self, conversation_id: u64, before_seq: u64, limit: u32) -> Result<v1::Messages> {
        match self
            .request(Body::GetHistory(v1::GetHistory {
                conversation_id,
                before_seq,
                after_seq: None,
                limit,
            }))
            .await?
        {
            Reply::Messages(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// A page of history: the oldest `limit` messages after `after_seq`.
    pub async fn history_after(
        &self,
        conversation_id: u64,
        after_seq: u64,
        limit: u32,
    ) -> Result<v1::Messages> {
        match self
            .request(Body::GetHistory(v1::GetHistory {
                conversation_id,
                before_seq: 0,
                after_seq: Some(after_seq),
                limit,
            }))
            .await?
        {
            Reply::Messages(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn conversation_call(&self, body: Body) -> Result<v1::Conversation> {
        match self.request(body).await? {
            Reply::Conversation(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn ok_call(&self, body: Body) -> Result<()> {
        match self.request(body).await? {
            Reply::Ok(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a group with these members; we are its owner.
    pub async fn create_group(&self, title: &str, member_ids: &[u64]) -> Result<v1::Conversation> {
        self.conversation_call(Body::CreateGroup(v1::CreateGroup {
            title: title.into(),
            member_ids: member_ids.to_vec(),
        }))
        .await
    }

    /// Creates a public room.
    pub async fn create_room(&self, title: &str, ephemeral: bool) -> Result<v1::Conversation> {
        self.conversation_call(Body::CreateRoom(v1::CreateRoom {
            title: title.into(),
            ephemeral,
        }))
        .await
    }

    /// Public rooms with member counts.
    pub async fn list_rooms(&self, limit: u32) -> Result<Vec<v1::Room>> {
        match self.request(Body::ListRooms(v1::ListRooms { limit })).await? {
            Reply::Rooms(r) => Ok(r.rooms),
            other => Err(unexpected(other)),
        }
    }

    /// Joins a public room.
    pub async fn join(&self, conversation_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::Join(v1::JoinConversation { conversation_id }))
            .await
    }

    /// Leaves a group or room.
    pub async fn leave(&self, conversation_id: u64) -> Result<()> {
        self.ok_call(Body::Leave(v1::LeaveConversation { conversation_id }))
            .await
    }

    /// Adds members to a group.
    pub async fn add_members(&self, conversation_id: u64, user_ids: &[u64]) -> Result<v1::Conversation> {
        self.conversation_call(Body::AddMembers(v1::AddMembers {
            conversation_id,
            user_ids: user_ids.to_vec(),
        }))
        .await
    }

    /// Renames a group or room.
    pub async fn rename(&self, conversation_id: u64, title: &str) -> Result<v1::Conversation> {
        self.conversation_call(Body::Rename(v1::RenameConversation {
            conversation_id,
            title: title.into(),
        }))
        .await
    }

    /// A conversation with its members.
    pub async fn conversation(&self, conversation_id: u64) -> Result<v1::Conversation> {
        self.conversation_call(Body::GetConversation(v1::GetConversation { conversation_id }))
            .await
    }

    /// Our most recently active conversations (at most `limit`, 0 for the
    /// server's default of 50), with last message and unread count, and
    /// whether there are more.
    pub async fn conversations_page(&self, limit: u32) -> Result<(Vec<v1::Conversation>, bool)> {
        match self
            .request(Body::ListConversations(v1::ListConversations { limit }))
            .await?
        {
            Reply::Conversations(c) => Ok((c.conversations, c.has_more)),
            other => Err(unexpected(other)),
        }
    }

    /// Our 50 most recently active conversations, with last message and unread count.
    pub async fn conversations(&self) -> Result<Vec<v1::Conversation>> {
        Ok(self.conversations_page(0).await?.0)
    }

    async fn cursor_call(&self, body: Body) -> Result<v1::Cursor> {
        match self.request(body).await? {
            Reply::Cursor(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// Marks messages up to `seq` read (tells the other members).
    pub async fn mark_read(&self, conversation_id: u64, seq: u64) -> Result<v1::Cursor> {
        self.cursor_call(Body::MarkRead(v1::MarkRead { conversation_id, seq }))
            .await
    }

    /// Marks messages up to `seq` delivered.
    pub async fn mark_delivered(&self, conversation_id: u64, seq: u64) -> Result<v1::Cursor> {
        self.cursor_call(Body::MarkDelivered(v1::MarkDelivered { conversation_id, seq }))
            .await
    }

    /// Shows or hides our typing indicator.
    pub async fn typing(&self, conversation_id: u64, typing: bool) -> Result<()> {
        self.ok_call(Body::Typing(v1::SetTyping {
            conversation_id,
            typing,
        }))
        .await
    }

    async fn users_call(&self, body: Body) -> Result<Vec<v1::User>> {
        match self.request(body).await? {
            Reply::Users(u) => Ok(u.users),
            other => Err(unexpected(other)),
        }
    }

    /// Profiles by id.
    pub async fn users(&self, user_ids: &[u64]) -> Result<Vec<v1::User>> {
        self.users_call(Body::GetUsers(v1::GetUsers {
            user_ids: user_ids.to_vec(),
        }))
        .await
    }

    /// Users whose name starts with `prefix`.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<v1::User>> {
        self.users_call(Body::SearchUsers(v1::SearchUsers {
            prefix: prefix.into(),
            limit,
        }))
        .await
    }

    /// Changes our display name and/or avatar.
    pub async fn update_profile(
        &self,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> Result<v1::User> {
        match self
            .request(Body::UpdateProfile(v1::UpdateProfile {
                display_name,
                avatar_url,
            }))
            .await?
        {
            Reply::User(u) => Ok(u),
            other => Err(unexpected(other)),
        }
    }

    /// Presence of users.
    pub async fn presence(&self, user_ids: &[u64]) -> Result<Vec<v1::Presence>> {
        match self
            .request(Body::GetPresence(v1::GetPresence {
                user_ids: user_ids.to_vec(),
            }))
            .await?
        {
            Reply::Presence(p) => Ok(p.presence),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes our token and closes the client.
    pub async fn logout(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let result = self.ok_call(Body::Logout(v1::Logout {})).await;
        self.close();
        result
    }

    /// Closes the connection and stops reconnecting. Messages still in the
    /// outbox fail with [`Error::Closed`].
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(link) = self.link.lock().take() {
            link.close();
        }
        self.state.send_modify(|s| {
            s.closed = true;
            s.connected = false;
        });
        for item in self.outbox.lock().drain(..) {
            if let Some(w) = item.waiter {
                let _ = w.send(Err(Error::Closed));
            }
        }
        self.outbox_changed.notify_one();
        // Ends the calls manager's stream, if one was registered.
        self.call_sink.lock().take();
    }

    async fn current_link(&self) -> Result<Arc<Link>> {
        let mut state = self.state.subscribe();
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        loop {
            if let Some(link) = self.link.lock().clone().filter(|l| !l.is_closed()) {
                return Ok(link);
            }
            if self.state.borrow().closed {
                return Err(Error::Closed);
            }
            match tokio::time::timeout_at(deadline, state.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => return Err(Error::Disconnected),
            }
        }
    }

    pub(crate) async fn request(&self, body: Body) -> Result<Reply> {
        let link = self.current_link().await?;
        link.call(body, self.config.request_timeout).await
    }

    fn on_event(self: &Arc<Self>, kind: v1::event::Kind) {
        match kind {
            v1::event::Kind::Message(m) => {
                let conv = m.conversation_id;
                let me = self.auth.lock().user.id;
                let mut gone = false;
                let outcome = self.tracker.lock().live(m, &mut |e| {
                    gone |= matches!(&e, Event::Message(m) if ends_membership(m, me));
                    self.emit(e)
                });
                if gone {
                    // Removed, banned, or the group was dissolved: as sync
                    // would say, without waiting for the next one.
                    self.tracker.lock().convs.remove(&conv);
                    self.emit(Event::ConversationRemoved(conv));
                    return;
                }
                self.fill_if(outcome, conv);
            }
            v1::event::Kind::Invitation(i) => self.emit(Event::Invitation(Box::new(i))),
            v1::event::Kind::Notice(n) => self.emit(Event::Notice(n)),
            v1::event::Kind::Deleted(d) => {
                let conv = d.conversation_id;
                let outcome = self.tracker.lock().live_deleted(d, &mut |e| self.emit(e));
                self.fill_if(outcome, conv);
            }
            v1::event::Kind::Receipt(r) => self.emit(Event::Receipt(r)),
            v1::event::Kind::Typing(t) => self.emit(Event::Typing(t)),
            v1::event::Kind::Presence(p) => {
                if newer_presence(&mut self.presence_generations.lock(), &p) {
                    self.emit(Event::Presence(p));
                }
            }
            v1::event::Kind::Closing(c) => {
                // The server says when to come back (e.g. after a restart).
                // Spread out (x1 to x1.5) so clients do not return all at once.
                let jitter: f64 = rand::Rng::random_range(&mut rand::rng(), 1.0..1.5);
                let wait = Duration::from_millis(u64::from(c.reconnect_after_ms).min(60_000)).mul_f64(jitter);
                *self.reconnect_not_before.lock() = Some(tokio::time::Instant::now() + wait);
                self.emit(Event::Closing { reason: c.reason })
            }
            v1::event::Kind::Call(call) => self.route_call_event(call),
            v1::event::Kind::ConversationSettings(s) => self.emit(Event::ConversationSettings(s)),
            v1::event::Kind::Contact(c) => self.emit(Event::Contact(c)),
            v1::event::Kind::Resync(hint) => {
                // The server may have missed events for us: sync as after a
                // reconnect, after a random pause of up to a second so that
                // a node's clients do not all sync at once.
                tracing::debug!(reason = %hint.reason, "the server asks for a resync");
                let generation = self.state.borrow().generation;
                let pause = Duration::from_millis(rand::Rng::random_range(&mut rand::rng(), 0..1_000));
                let inner = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    inner.resync(generation).await;
                });
            }
        }
    }

    /// Starts a fill of a conversation when a live event showed a gap.
    fn fill_if(self: &Arc<Self>, outcome: Live, conv: u64) {
        if outcome == Live::Fill {
            self.gap_fills.fetch_add(1, Ordering::Relaxed);
            let inner = self.clone();
            tokio::spawn(async move { inner.fill(conv).await });
        }
    }

    /// Fetches the changes of one conversation until caught up. One fill per
    /// conversation runs at a time; a fill asked for meanwhile makes it loop.
    async fn fill(self: &Arc<Self>, conv: u64) {
        {
            let mut t = self.tracker.lock();
            let state = t.convs.entry(conv).or_default();
            if state.filling {
                state.refill = true;
                return;
            }
            state.filling = true;
        }
        let generation = self.state.borrow().generation;
        let mut failures = 0u32;
        loop {
            let (after, after_private) = self
                .tracker
                .lock()
                .convs
                .get(&conv)
                .map_or((0, 0), |s| (s.version, s.private_version));
            let reply = self
                .request(Body::GetChanges(v1::GetChanges {
                    conversation_id: conv,
                    after_version: after,
                    limit: self.config.page_size,
                    after_private_version: after_private,
                }))
                .await;
            let mut t = self.tracker.lock();
            match reply {
                Ok(Reply::Changes(c)) => {
                    if c.reset {
                        t.reset(conv);
                        self.emit(Event::ConversationReset(conv));
                        continue;
                    }
                    let has_more = c.has_more;
                    let mut dissolved = false;
                    t.page(conv, c, &mut |e| {
                        // A page cannot hold our own removal (we would not
                        // be allowed to fetch it), but it can hold the end
                        // of a dissolved group fetched just before it went.
                        dissolved |= matches!(&e, Event::Message(m) if ends_membership(m, 0));
                        self.emit(e)
                    });
                    if dissolved {
                        t.convs.remove(&conv);
                        self.emit(Event::ConversationRemoved(conv));
                        return;
                    }
                    if has_more {
                        continue;
                    }
                    let state = t.convs.entry(conv).or_default();
                    if std::mem::take(&mut state.refill) {
                        continue;
                    }
                    state.filling = false;
                    return;
                }
                Err(Error::Server {
                    code: v1::ErrorCode::PermissionDenied | v1::ErrorCode::NotFound,
                    ..
                }) => {
                    t.convs.remove(&conv);
                    self.emit(Event::ConversationRemoved(conv));
                    return;
                }
                other => {
                    // A transient failure (rate limited, store unavailable, a
                    // timeout) on the same connection: retry with back-off.
                    // Otherwise (connection gone, closed) the next resync picks it up.
                    let s = *self.state.borrow();
                    let retry = s.generation == generation
                        && s.connected
                        && !s.closed
                        && other.as_ref().is_err_and(|e| e.is_transient());
                    tracing::debug!(conv, ?other, retry, "fill interrupted");
                    if retry {
                        drop(t);
                        failures += 1;
                        tokio::time::sleep(backoff(&self.config, failures.min(6))).await;
                        continue;
                    }
                    if let Some(state) = t.convs.get_mut(&conv) {
                        state.filling = false;
                        state.refill = false;
                    }
                    return;
                }
            }
        }
    }

    /// After a (re)connect: asks which conversations changed and fills them,
    /// in `Sync` pages of at most [`SYNC_PAGE`] cursors and answers, so a
    /// user in any number of conversations stays under the frame limit.
    async fn resync(self: Arc<Self>, generation: u64) {
        let mut cursors = self.tracker.lock().cursors();
        cursors.sort_unstable_by_key(|c| c.conversation_id);
        let mut changed: Vec<u64> = Vec::new();
        // Everything up to `after` is covered; `rest` are the cursors above it.
        let mut after = 0u64;
        let mut rest: &[v1::SyncCursor] = &cursors;
        loop {
            let (request, until) = sync_page(after, rest);
            let result = match self.sync_once(generation, request).await {
                Some(r) => r,
                None => return, // the next connection resyncs
            };
            for conv in result.removed {
                self.tracker.lock().convs.remove(&conv);
                self.emit(Event::ConversationRemoved(conv));
            }
            let page: Vec<u64> = result.changed.iter().map(|c| c.id).collect();
            for &conv in &page {
                self.fill(conv).await;
            }
            changed.extend(page);
            after = if result.has_more {
                if result.next_after_conversation_id <= after {
                    tracing::warn!(after, "sync page made no progress");
                    return; // a broken server: try again on the next connection
                }
                result.next_after_conversation_id
            } else if until != 0 {
                until
            } else {
                break;
            };
            let skip = rest.partition_point(|c| c.conversation_id <= after);
            rest = &rest[skip..];
        }
        // A fill started by a live event may still be running: `Synced`
        // promises that every changed conversation is caught up.
        while changed
            .iter()
            .any(|c| self.tracker.lock().convs.get(c).is_some_and(|s| s.filling))
        {
            let s = *self.state.borrow();
            if s.generation != generation || !s.connected {
                return; // the next connection resyncs
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut current = false;
        self.state.send_if_modified(|s| {
            current = s.generation == generation && s.connected;
            if current {
                s.synced = true;
            }
            current
        });
        if current {
            self.emit(Event::Synced);
            self.outbox_changed.notify_one();
        }
    }

    /// One `Sync` request, retried with back-off while this connection lasts.
    /// `None` when the connection is gone.
    async fn sync_once(&self, generation: u64, request: v1::Sync) -> Option<v1::SyncResult> {
        let mut attempt = 0;
        loop {
            match self.request(Body::Sync(request.clone())).await {
                Ok(Reply::Sync(r)) => return Some(r),
                other => {
                    tracing::debug!(?other, "sync failed");
                    let s = *self.state.borrow();
                    if s.generation != generation || !s.connected || s.closed {
                        return None;
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(&self.config, attempt)).await;
                }
            }
        }
    }

    /// Connects to `url` and authenticates; returns the link and a receiver
    /// that resolves when it closes.
    async fn establish(self: &Arc<Self>, url: &str) -> Result<(Arc<Link>, oneshot::Receiver<String>)> {
        let (closed_tx, closed_rx) = oneshot::channel();
        let weak = Arc::downgrade(self);
        let link = Link::connect(
            self.config.connector.as_ref(),
            url,
            &self.connect_options,
            move |kind| {
                if let Some(inner) = weak.upgrade() {
                    inner.on_event(kind);
                }
            },
            move |reason| {
                let _ = closed_tx.send(reason);
            },
        )
        .await?;
        let timeout = self.config.request_timeout;
        let token = self.auth.lock().token.clone();
        let hello = link
            .call(
                Body::Hello(v1::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    token: token.clone(),
                    device_id: self.config.device_id.clone(),
                }),
                timeout,
            )
            .await;
        let user = match hello {
            Ok(Reply::Hello(ok)) if ok.user.is_some() => ok.user,
            Ok(Reply::Hello(_)) => None,
            Err(Error::Server {
                code: v1::ErrorCode::Unauthenticated,
                ..
            }) if !token.is_empty() => None,
            Err(e) => {
                link.close();
                return Err(e);
            }
            Ok(other) => {
                link.close();
                return Err(unexpected(other));
            }
        };
        let user = match user {
            Some(u) => u,
            None => {
                let credentials = self.auth.lock().credentials.clone();
                let body = match credentials {
                    Credentials::Token(_) => {
                        link.close();
                        return Err(Error::Server {
                            code: v1::ErrorCode::Unauthenticated,
                            message: "token refused".into(),
                        });
                    }
                    Credentials::Login { username, password } => {
                        Body::Login(v1::Login { username, password })
                    }
                    Credentials::Register {
                        username,
                        password,
                        display_name,
                    } => Body::Register(v1::Register {
                        username,
                        password,
                        display_name,
                    }),
                };
                match link.call(body, timeout).await {
                    Ok(Reply::Auth(ok)) => {
                        let mut auth = self.auth.lock();
                        auth.token = ok.token;
                        // After registering once, log in on later reconnects.
                        if let Credentials::Register {
                            username, password, ..
                        } = &auth.credentials
                        {
                            auth.credentials = Credentials::Login {
                                username: username.clone(),
                                password: password.clone(),
                            };
                        }
                        ok.user.unwrap_or_default()
                    }
                    Ok(other) => {
                        link.close();
                        return Err(unexpected(other));
                    }
                    Err(e) => {
                        link.close();
                        return Err(e);
                    }
                }
            }
        };
        self.auth.lock().user = user;
        Ok((link, closed_rx))
    }
}

/// True (and remembered) if `p` is newer than any presence seen for its user.
fn newer_presence(seen: &mut std::collections::HashMap<u64, u64>, p: &v1::Presence) -> bool {
    let last = seen.entry(p.user_id).or_default();
    if p.generation <= *last && *last > 0 {
        return false;
    }
    *last = p.generation;
    true
}

fn backoff(config: &ClientConfig, attempt: u32) -> Duration {
    let base = config.reconnect_min.as_secs_f64() * 2f64.powi(attempt.min(20) as i32);
    let capped = base.min(config.reconnect_max.as_secs_f64());
    let jitter: f64 = rand::Rng::random_range(&mut rand::rng(), 0.5..=1.0);
    Duration::from_secs_f64(capped * jitter)
}

/// Cursors per `Sync` page, and the most changed conversations per answer:
/// a page of cursors or summaries stays far below the 64 KiB frame limit,
/// in JSON too.
const SYNC_PAGE: usize = 500;

/// The next `Sync` page after `after`, given the (sorted) cursors above it:
/// the first [`SYNC_PAGE`] of them, up to the last one's id, or open-ended
/// when they are the last. Returns the request and its upper bound (0: none).
fn sync_page(after: u64, rest: &[v1::SyncCursor]) -> (v1::Sync, u64) {
    let until = if rest.len() > SYNC_PAGE {
        rest[SYNC_PAGE - 1].conversation_id
    } else {
        0
    };
    let request = v1::Sync {
        cursors: rest[..rest.len().min(SYNC_PAGE)].to_vec(),
        after_conversation_id: after,
        until_conversation_id: until,
        limit: SYNC_PAGE as u32,
    };
    (request, until)
}

/// Keeps the client connected: connect, authenticate, resync, wait for the
/// connection to end, back off, repeat.
async fn supervise(inner: Arc<Inner>, first: oneshot::Sender<Result<()>>) {
    let mut first = Some(first);
    let mut attempt = 0u32;
    let mut url_index = 0usize;
    loop {
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let url = inner.config.urls[url_index % inner.config.urls.len()].clone();
        match inner.establish(&url).await {
            Ok((link, closed_rx)) => {
                attempt = 0;
                if inner.closed.load(Ordering::SeqCst) {
                    link.close();
                    return;
                }
                *inner.link.lock() = Some(link);
                let mut generation = 0;
                inner.state.send_modify(|s| {
                    s.generation += 1;
                    s.connected = true;
                    s.synced = false;
                    generation = s.generation;
                });
                inner.emit(Event::Connected {
                    user: inner.auth.lock().user.clone(),
                });
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                tokio::spawn(inner.clone().resync(generation));
                tokio::spawn(inner.clone().resume_call());
                let reason = closed_rx.await.unwrap_or_else(|_| "connection lost".into());
                inner.link.lock().take();
                inner.state.send_modify(|s| {
                    s.connected = false;
                    s.synced = false;
                });
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                inner.emit(Event::Disconnected { reason });
            }
            Err(e) => {
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                    inner.close();
                    return;
                }
                if e.code() == Some(v1::ErrorCode::Unauthenticated) {
                    inner.emit(Event::AuthFailed(e.to_string()));
                    inner.close();
                    return;
                }
                tracing::debug!(%url, error = %e, "reconnect failed");
                url_index += 1;
            }
        }
        let mut wake = tokio::time::Instant::now() + backoff(&inner.config, attempt);
        if let Some(not_before) = inner.reconnect_not_before.lock().take() {
            wake = wake.max(not_before);
        }
        tokio::time::sleep_until(wake).await;
        attempt += 1;
    }
}

/// Sends outbox messages one at a time, in order, whenever the client is
/// connected and synced; retries transient failures with the same client
/// message id, so the server stores each message once.
async fn flush_outbox(inner: Arc<Inner>) {
    let mut state = inner.state.subscribe();
    let mut failures = 0u32;
    loop {
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        let ready = {
            let s = *state.borrow_and_update();
            s.connected && s.synced
        };
        let next = if ready {
            inner.outbox.lock().front().map(|item| item.message.clone())
        } else {
            None
        };
        let Some(message) = next else {
            tokio::select! {
                _ = state.changed() => {}
                _ = inner.outbox_changed.notified() => {}
            }
            continue;
        };
        let result = match inner.request(Body::Send(message.clone())).await {
            Ok(Reply::Ack(ack)) => Ok(ack),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.is_transient() => {
                failures += 1;
                tokio::time::sleep(backoff(&inner.config, failures.min(6))).await;
            }
            result => {
                failures = 0;
                let mut outbox = inner.outbox.lock();
                if outbox
                    .front()
                    .is_some_and(|i| i.message.client_msg_id == message.client_msg_id)
                    && let Some(w) = outbox.pop_front().and_then(|i| i.waiter)
                {
                    let _ = w.send(result);
                }
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user_id", &self.inner.auth.lock().user.id)
            .field("connected", &self.is_connected())
            .field("outbox", &self.outbox_len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_presence_generation_is_dropped() {
        let mut seen = std::collections::HashMap::new();
        let p = |online, generation| v1::Presence {
            user_id: 7,
            online,
            last_seen: 0,
            generation,
        };
        assert!(newer_presence(&mut seen, &p(true, 10)));
        assert!(newer_presence(&mut seen, &p(false, 12)));
        assert!(!newer_presence(&mut seen, &p(true, 11)), "late and older");
        assert!(!newer_presence(&mut seen, &p(false, 12)), "a repeat");
        assert!(newer_presence(&mut seen, &p(true, 13)));
    }

    #[test]
    fn sync_pages_split_sorted_cursors_by_id() {
        let cursors: Vec<v1::SyncCursor> = (1..=1_001)
            .map(|i| v1::SyncCursor {
                conversation_id: i * 2,
                version: 1,
                ..Default::default()
            })
            .collect();
        let (first, until) = sync_page(0, &cursors);
        assert_eq!(first.cursors.len(), SYNC_PAGE);
        assert_eq!((first.after_conversation_id, until), (0, 1_000));
        assert_eq!(first.until_conversation_id, 1_000);
        assert_eq!(first.limit, SYNC_PAGE as u32);
        let (second, until) = sync_page(1_000, &cursors[500..]);
        assert_eq!((second.cursors.len(), until), (SYNC_PAGE, 2_000));
        let (last, until) = sync_page(2_000, &cursors[1_000..]);
        assert_eq!((last.cursors.len(), until), (1, 0), "the last page is open-ended");
        let (empty, until) = sync_page(0, &[]);
        assert_eq!(
            (empty.cursors.len(), until, empty.limit),
            (0, 0, SYNC_PAGE as u32)
        );
    }
}
