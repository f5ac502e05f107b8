//! # im-core
//!
//! The chat engine as a library, with no sockets: users and auth,
//! conversations (direct, groups, public rooms), messages with a gap-free
//! sequence per conversation, idempotent sends, sync after reconnect,
//! receipts, typing and presence.
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | [`Engine`]: every operation, authorization in one place |
//! | [`connection`] | one client connection: the sans-IO session driver and the loop every transport runs |
//! | [`store`] | the [`Store`] trait, [`MemoryStore`], `SqliteStore` |
//! | [`fanout`] | the [`FanOut`] trait, the cross-node [`Envelope`], [`LocalFanOut`] |
//! | [`auth`] | the [`Authenticator`] trait and password accounts |
//! | [`sessions`] | sessions connected to this node |
//!
//! | feature | default | what |
//! |---|---|---|
//! | `sqlite` | yes | `SqliteStore` (diesel, bundled SQLite) |
//! | `postgres` | no | `PostgresStore` (diesel, libpq) |
//!
//! Backends are injected as `Arc<dyn Trait>` through [`EngineBuilder`]; each
//! trait has a conformance suite ([`store_conformance_tests!`],
//! [`fanout_conformance_tests!`]) that every backend runs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
//! use im_core::{Caller, Engine};
//! let engine = Engine::builder().build(); // memory store, local fan-out
//! let alice = engine.register("alice", "long enough", "").await?;
//! let room = engine.create_room(Caller::user(alice.user.id), "lobby", false).await?;
//! assert_eq!(engine.list_rooms(10).await?[0].member_count, 1);
//! # let _ = room; Ok(()) }
//! ```

pub mod auth;
pub mod clock;
pub mod connection;
pub mod engine;
pub mod error;
pub mod event;
pub mod fanout;
pub mod model;
pub mod presence;
pub mod sessions;
pub mod store;

pub use auth::{Authenticator, Identity, LOCAL_ISSUER, PasswordAuthConfig, PasswordAuthenticator};
pub use clock::{Clock, SystemClock};
pub use connection::{Connection, ConnectionConfig};
pub use engine::{Authenticated, Caller, Engine, EngineBuilder, EngineConfig};
pub use error::{Error, Result};
pub use event::SharedEvent;
pub use fanout::{Audience, Envelope, FanOut, FanOutHandler, LocalBus, LocalFanOut, Target};
pub use im_protocol;
pub use presence::{MemoryPresence, PresenceRegistry};
pub use store::{MemoryStore, Store};
#[cfg(feature = "postgres")]
pub use store::{PostgresStore, PostgresStoreConfig};
#[cfg(feature = "sqlite")]
pub use store::{SqliteStore, SqliteStoreConfig};
