//! # im-core
//!
//! The chat engine as a library, with no sockets: identity, conversations
//! (direct, groups, public rooms), messages with a gap-free sequence per
//! conversation, idempotent sends, sync after reconnect, receipts, typing and
//! presence, on one node or several.
//!
//! | module | what |
//! |---|---|
//! | [`Engine`] | every operation; built with [`EngineBuilder`] |
//! | [`connection`] | one client connection: the sans-IO [`SessionDriver`](connection::SessionDriver) and [`serve`](connection::serve), the loop every transport runs |
//! | [`sessions`] | who is connected to this node, by user, device and session |
//! | [`store`] | the [`Store`] trait, [`MemoryStore`], `SqliteStore`, `PostgresStore` |
//! | [`fanout`] | the [`FanOut`] trait, the cross-node [`Envelope`], [`LocalFanOut`] |
//! | [`presence`] | the [`PresenceRegistry`] trait, [`MemoryPresence`], and cluster presence in Redis or in the store's database |
//! | [`auth`] | the [`Authenticator`] trait, [`Identity`] and password accounts |
//! | [`clock`] | the [`Clock`] the engine takes its time from |
//! | [`blob`] | the [`BlobStore`] trait (file bytes), [`MemoryBlobStore`], [`FsBlobStore`] |
//! | [`model`] | ids and the records the store keeps |
//!
//! | feature | default | what |
//! |---|---|---|
//! | `sqlite` | yes | `SqliteStore` (diesel, bundled SQLite) and `SqlitePresence` |
//! | `postgres` | no | `PostgresStore` (diesel, libpq) and `PostgresPresence`: a cluster's presence in its database |
//! | `redis` | no | `RedisFanOut` and `RedisPresence`: several server processes joined by Redis |
//! | `kafka` | no | `KafkaFanOut`: several server processes joined by Kafka (builds librdkafka) |
//! | `testing` | no | the conformance suites (`store_conformance_tests!`, `fanout_conformance_tests!`, `presence_conformance_tests!`, `blob_conformance_tests!`) for backends written elsewhere, and test helpers |
//!
//! Backends are injected as `Arc<dyn Trait>` through [`EngineBuilder`]; each
//! trait has a conformance suite that every backend runs.
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
#![warn(missing_debug_implementations, unreachable_pub)]

pub mod auth;
pub mod blob;
pub mod call;
pub mod clock;
pub mod connection;
mod engine;
mod error;
mod event;
pub mod fanout;
pub mod model;
pub mod presence;
pub mod search;
pub mod sessions;
pub mod store;

pub use auth::{Authenticator, Identity, LOCAL_ISSUER, PasswordAuthConfig, PasswordAuthenticator};
pub use blob::{BlobId, BlobStore, FsBlobStore, FsBlobStoreConfig, MemoryBlobStore};
pub use clock::{Clock, SystemClock};
pub use connection::{Connection, ConnectionConfig};
pub use engine::{
    Authenticated, Caller, Engine, EngineBuilder, EngineConfig, FileDownload, FileSweep, FilesConfig,
    MAX_DELETE_BATCH, MAX_EMOJI_BYTES, MAX_FILE_NAME_BYTES, MAX_FORWARD, MAX_MENTIONS, MAX_MESSAGE_TTL_MS,
    MIN_MESSAGE_TTL_MS, UploadRequest, UploadState, sanitize_file_name,
};
pub use engine::{ContactsConfig, MAX_FRIEND_REQUEST_BYTES};
pub use error::{Error, Result};
pub use event::SharedEvent;
pub use fanout::{Audience, Envelope, FanOut, FanOutHandler, LocalBus, LocalFanOut, Payload, Target};
#[cfg(feature = "kafka")]
pub use fanout::{KafkaFanOut, KafkaFanOutConfig};
#[cfg(feature = "redis")]
pub use fanout::{RedisFanOut, RedisFanOutConfig};
pub use im_protocol;
pub use presence::{MemoryPresence, PresenceRegistry};
#[cfg(feature = "postgres")]
pub use presence::{PostgresPresence, PostgresPresenceConfig};
#[cfg(feature = "redis")]
pub use presence::{RedisPresence, RedisPresenceConfig};
#[cfg(feature = "sqlite")]
pub use presence::{SqlitePresence, SqlitePresenceConfig};
pub use store::{MemoryStore, Store};
#[cfg(feature = "postgres")]
pub use store::{PostgresStore, PostgresStoreConfig};
#[cfg(feature = "sqlite")]
pub use store::{SqliteStore, SqliteStoreConfig};
