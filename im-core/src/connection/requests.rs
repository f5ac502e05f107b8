//! [`Connection`]: what one request does to a connection's state, and the
//! engine call behind it. The [`SessionDriver`](super::SessionDriver) decides
//! when a request runs; this decides what it means.
//!
//! States: `AwaitingHello` → (`Hello`) → `Anonymous` → (`Hello` with a token,
//! `Login`, `Register`) → `Authenticated` → (`Logout`, close) → closed.

use super::ConnectionConfig;
use crate::engine::{Caller, Engine};
use crate::error::Error;
use crate::model::{DeviceId, UserId, UserRecord};
use crate::sessions::SessionEvents;
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};
use std::sync::Arc;

enum State {
    AwaitingHello,
    Anonymous,
    /// Only the id is kept: an idle connection should cost little.
    Authenticated {
        user_id: UserId,
        token: String,
        session: u64,
    },
    Closed,
}

/// What the transport must do after a frame.
#[derive(Debug)]
pub struct Outcome {
    /// The response to write.
    pub reply: v1::ServerFrame,
    /// The session just became authenticated: forward these events.
    pub session: Option<SessionEvents>,
    /// Close the connection after writing the reply, with this reason.
    pub close: Option<String>,
    /// The session just became authenticated with a token valid this long:
    /// close the connection when it runs out.
    pub session_lifetime: Option<std::time::Duration>,
}

impl Outcome {
    /// True when the reply refuses the client's protocol version.
    pub fn reply_is_version_error(&self) -> bool {
        matches!(
            &self.reply.body,
            Some(v1::server_frame::Body::Response(v1::Response {
                result: Some(Reply::Error(e)),
                ..
            })) if e.code == v1::ErrorCode::UnsupportedVersion as i32
        )
    }
}

/// One client connection's authentication state and request handling.
pub struct Connection {
    engine: Engine,
    config: Arc<ConnectionConfig>,
    state: State,
    header_token: Option<String>,
    /// The device named in `Hello`.
    device: DeviceId,
}

impl Connection {
    /// A new connection; `header_token` is a bearer token from the transport
    /// (the HTTP `Authorization` header), used at `Hello`.
    pub fn new(engine: Engine, config: Arc<ConnectionConfig>, header_token: Option<String>) -> Self {
        Self {
            engine,
            config,
            state: State::AwaitingHello,
            header_token,
            device: DeviceId::default(),
        }
    }

    /// The authenticated user, if any.
    pub fn user_id(&self) -> Option<UserId> {
        match &self.state {
            State::Authenticated { user_id, .. } => Some(*user_id),
            _ => None,
        }
    }

    /// Handles one frame; exactly one reply per frame.
    pub async fn handle(&mut self, frame: v1::ClientFrame) -> Outcome {
        let id = frame.request_id;
        let mut outcome = Outcome {
            reply: v1::ServerFrame::response(id, Reply::Ok(v1::Empty {})),
            session: None,
            close: None,
            session_lifetime: None,
        };
        let Some(body) = frame.body else {
            outcome.reply = error(id, &Error::InvalidArgument("empty or unknown request".into()));
            return outcome;
        };
        match self.dispatch(body, &mut outcome).await {
            Ok(reply) => outcome.reply = v1::ServerFrame::response(id, reply),
            Err(e) => outcome.reply = error(id, &e),
        }
        outcome
    }

    async fn dispatch(&mut self, body: Body, outcome: &mut Outcome) -> Result<Reply, Error> {
        match (&self.state, body) {
            (State::Closed, _) => Err(Error::Unavailable("connection is closing".into())),
            (State::AwaitingHello, Body::Hello(hello)) => self.hello(hello, outcome).await,
            (State::AwaitingHello, _) => Err(Error::Unauthenticated("send Hello first".into())),
            (_, Body::Hello(_)) => Err(Error::InvalidArgument("Hello was already sent".into())),
            (State::Anonymous, Body::Register(r)) => {
                let issued = self
                    .engine
                    .register(&r.username, &r.password, &r.display_name)
                    .await?;
                self.signed_in(issued, outcome).await
            }
            (State::Anonymous, Body::Login(r)) => {
                let issued = self.engine.login(&r.username, &r.password).await?;
                self.signed_in(issued, outcome).await
            }
            (State::Anonymous, _) => Err(Error::Unauthenticated(
                "authenticate first (Hello with a token, Login or Register)".into(),
            )),
            (State::Authenticated { .. }, Body::Register(_) | Body::Login(_)) => Err(Error::InvalidArgument(
                "this connection is already authenticated".into(),
            )),
            (State::Authenticated { token, .. }, Body::Logout(_)) => {
                let token = token.clone();
                self.engine.logout(&token).await?;
                self.detach().await;
                outcome.close = Some("logged out".into());
                Ok(Reply::Ok(v1::Empty {}))
            }
            (State::Authenticated { user_id, session, .. }, body) => {
                let caller = Caller {
                    user_id: *user_id,
                    device: self.device.clone(),
                    session_id: *session,
                };
                self.engine.handle(caller, body).await
            }
        }
    }

    async fn hello(&mut self, hello: v1::Hello, outcome: &mut Outcome) -> Result<Reply, Error> {
        if hello.protocol_version != im_protocol::PROTOCOL_VERSION {
            outcome.close = Some("unsupported protocol version".into());
            self.state = State::Closed;
            return Err(Error::UnsupportedVersion(format!(
                "protocol version {} is not supported; this server speaks {}",
                hello.protocol_version,
                im_protocol::PROTOCOL_VERSION
            )));
        }
        if hello.device_id.len() > 64 {
            return Err(Error::InvalidArgument("device_id is limited to 64 bytes".into()));
        }
        self.device = DeviceId::new(&hello.device_id);
        self.state = State::Anonymous;
        let token = Some(hello.token)
            .filter(|t| !t.is_empty())
            .or_else(|| self.header_token.take());
        let mut user = None;
        if let Some(token) = token {
            let signed_in = self.engine.identify(&token).await?;
            let record = signed_in.user;
            self.attach(record.clone(), token, signed_in.expires_at, outcome)
                .await?;
            user = Some(record.to_wire());
        }
        let engine_config = self.engine.config();
        Ok(Reply::Hello(v1::HelloOk {
            protocol_version: im_protocol::PROTOCOL_VERSION,
            server_version: self.config.server_version.clone(),
            user,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            idle_timeout_ms: self.config.idle_timeout_ms,
            limits: Some(v1::Limits {
                max_frame_bytes: self.config.max_frame_bytes as u32,
                max_message_bytes: engine_config.max_message_bytes as u32,
                max_group_members: engine_config.max_group_members,
                max_page_size: engine_config.max_page_size,
                max_signal_bytes: engine_config.calls.max_signal_bytes as u32,
                recall_window_ms: engine_config.recall_window_ms,
                edit_window_ms: engine_config.edit_window_ms,
            }),
        }))
    }

    /// A token was just issued on this connection: the session starts with it.
    async fn signed_in(
        &mut self,
        issued: crate::auth::IssuedToken,
        outcome: &mut Outcome,
    ) -> Result<Reply, Error> {
        let expires_at = Some(issued.expires_at);
        self.attach(issued.user.clone(), issued.token.clone(), expires_at, outcome)
            .await?;
        Ok(Reply::Auth(issued.to_wire()))
    }

    async fn attach(
        &mut self,
        user: UserRecord,
        token: String,
        expires_at: Option<i64>,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        if self.engine.sessions().user_session_count(user.id) >= self.config.max_sessions_per_user {
            return Err(Error::RateLimited(format!(
                "at most {} connections per user",
                self.config.max_sessions_per_user
            )));
        }
        let events = self.engine.connect(user.id, self.device.clone()).await;
        self.state = State::Authenticated {
            user_id: user.id,
            token,
            session: events.id,
        };
        outcome.session = Some(events);
        outcome.session_lifetime = expires_at.map(|at| {
            let left = at.saturating_sub(self.engine.now_ms()).max(0);
            std::time::Duration::from_millis(left as u64)
        });
        Ok(())
    }

    async fn detach(&mut self) {
        if let State::Authenticated { user_id, session, .. } =
            std::mem::replace(&mut self.state, State::Closed)
        {
            self.engine.disconnect(user_id, session).await;
        }
    }

    /// Ends the session (presence goes offline if it was the user's last).
    pub async fn close(mut self) {
        self.detach().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A transport that forgot `close` (or panicked) still unregisters.
        if let State::Authenticated { user_id, session, .. } =
            std::mem::replace(&mut self.state, State::Closed)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let engine = self.engine.clone();
            handle.spawn(async move { engine.disconnect(user_id, session).await });
        }
    }
}

fn error(request_id: u64, e: &Error) -> v1::ServerFrame {
    v1::ServerFrame::response(request_id, Reply::Error(e.to_wire()))
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("user_id", &self.user_id())
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}
