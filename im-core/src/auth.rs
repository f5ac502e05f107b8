//! The `Authenticator` trait and password accounts.

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::model::{NewUser, UserId, UserRecord};
use crate::store::Store;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

/// A token handed to a client after registration or login.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The opaque bearer token.
    pub token: String,
    /// Unix ms after which the token is refused.
    pub expires_at: i64,
    /// The account.
    pub user: UserRecord,
}

impl IssuedToken {
    /// The wire form answered to `Register` and `Login`.
    pub fn to_wire(self) -> im_protocol::v1::AuthOk {
        im_protocol::v1::AuthOk {
            user_id: self.user.id,
            user: Some(self.user.to_wire()),
            token: self.token,
            expires_at: self.expires_at,
        }
    }
}

/// The issuer of the engine's own password accounts: their subject is the
/// local user id.
pub const LOCAL_ISSUER: &str = "local";

/// Who a credential belongs to, as the authenticator that checked it says.
/// The engine maps it to a local user: for [`LOCAL_ISSUER`] the subject is
/// the user id; for any other issuer the user is looked up by
/// `(issuer, subject)` and created on first sight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Who vouches for the user: [`LOCAL_ISSUER`], a JWT issuer, a host
    /// product's name.
    pub issuer: String,
    /// The user's id at the issuer.
    pub subject: String,
    /// The user name wished for a user created on first sight (made valid
    /// and unique by the engine); `None`: derived from the subject.
    pub username: Option<String>,
    /// Shown name for a user created on first sight (empty: the user name).
    pub display_name: String,
    /// Avatar for a user created on first sight (http(s) only; else ignored).
    pub avatar_url: String,
    /// Unix ms after which the credential is refused; a connection
    /// authenticated with it is closed then (`None`: it does not expire).
    pub expires_at: Option<i64>,
}

impl Identity {
    /// A password account of this engine.
    pub fn local(user: UserId, expires_at: i64) -> Self {
        Self {
            issuer: LOCAL_ISSUER.to_owned(),
            subject: user.to_string(),
            username: None,
            display_name: String::new(),
            avatar_url: String::new(),
            expires_at: Some(expires_at),
        }
    }
}

/// Verifies credentials, and (optionally) manages accounts.
///
/// The engine asks it on every connection. Implementations: [`PasswordAuthenticator`]
/// (accounts and opaque tokens kept in the [`Store`]); a host product plugs in
/// its own to trust the tokens it issues, and its users need no second
/// sign-up: the engine creates each on first sight.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Who a token belongs to; `Unauthenticated` if it is unknown or expired.
    async fn authenticate(&self, token: &str) -> Result<Identity>;
    /// Creates an account and returns a token for it.
    async fn register(&self, _username: &str, _password: &str, _display_name: &str) -> Result<IssuedToken> {
        Err(Error::PermissionDenied(
            "registration is not available here".into(),
        ))
    }
    /// Checks a password and returns a new token.
    async fn login(&self, _username: &str, _password: &str) -> Result<IssuedToken> {
        Err(Error::PermissionDenied(
            "password login is not available here".into(),
        ))
    }
    /// Revokes a token.
    async fn logout(&self, _token: &str) -> Result<()> {
        Ok(())
    }
}

/// Settings of a [`PasswordAuthenticator`].
#[derive(Debug, Clone)]
pub struct PasswordAuthConfig {
    /// How long a token stays valid (default 30 days).
    pub token_ttl: Duration,
    /// Shortest password accepted (default 8).
    pub min_password_len: usize,
    /// argon2id memory cost in KiB (default 19456, the OWASP minimum).
    pub argon2_m_cost: u32,
    /// argon2id iterations (default 2).
    pub argon2_t_cost: u32,
}

impl PasswordAuthConfig {
    /// Checks that the values can be used (argon2 accepts the costs, the
    /// token lifetime fits in the timestamps).
    pub fn validate(&self) -> Result<()> {
        Params::new(self.argon2_m_cost, self.argon2_t_cost, 1, None)
            .map_err(|e| Error::InvalidArgument(format!("argon2 cost: {e}")))?;
        if self.token_ttl > Duration::from_secs(10 * 365 * 24 * 3600) {
            return Err(Error::InvalidArgument(
                "token lifetime is limited to 10 years".into(),
            ));
        }
        Ok(())
    }
}

impl Default for PasswordAuthConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            min_password_len: 8,
            argon2_m_cost: 19_456,
            argon2_t_cost: 2,
        }
    }
}

/// Accounts with argon2id password hashes and opaque bearer tokens, both kept
/// in the [`Store`] (tokens only as SHA-256 hashes).
pub struct PasswordAuthenticator {
    store: Arc<dyn Store>,
    config: PasswordAuthConfig,
    /// Token issue and expiry times.
    clock: Arc<dyn Clock>,
    /// A hash to verify against when the user does not exist, so a login for an
    /// unknown name takes as long as one with a wrong password.
    dummy_hash: String,
    /// At most one hash per core at a time: a flood of logins waits here
    /// (then gets `RATE_LIMITED`) instead of filling the blocking pool that
    /// store reads need.
    hashing: tokio::sync::Semaphore,
}

/// How long a login or registration waits for a hashing slot.
const HASHING_WAIT: Duration = Duration::from_secs(5);

impl PasswordAuthenticator {
    /// Accounts kept in `store`.
    pub fn new(store: Arc<dyn Store>, config: PasswordAuthConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut this = Self {
            store,
            config,
            clock: Arc::new(SystemClock),
            dummy_hash: String::new(),
            hashing: tokio::sync::Semaphore::new(cores),
        };
        // Never an empty dummy hash (that would make unknown names answer
        // faster): fall back to argon2's defaults if the configured cost is invalid.
        this.dummy_hash = this
            .hash("not a real password")
            .or_else(|_| hash_password(&Argon2::default(), "not a real password"))
            .unwrap_or_default();
        this
    }

    /// The same accounts, with time from `clock` (token issue and expiry).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn hashing_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(HASHING_WAIT, self.hashing.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::RateLimited(
                "too many logins at once; retry shortly".into(),
            )),
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.config.argon2_m_cost, self.config.argon2_t_cost, 1, None)
            .map_err(|e| Error::Internal(format!("argon2 params: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    fn hash(&self, password: &str) -> Result<String> {
        hash_password(&self.argon2()?, password)
    }

    async fn issue(&self, user: UserRecord) -> Result<IssuedToken> {
        let mut raw = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut raw);
        let token = hex::encode(raw);
        let expires_at = self.clock.now_ms() + self.config.token_ttl.as_millis() as i64;
        self.store
            .insert_token(&token_hash(&token), user.id, expires_at)
            .await?;
        Ok(IssuedToken {
            token,
            expires_at,
            user,
        })
    }
}

fn hash_password(argon2: &Argon2<'_>, password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(argon2
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_string())
}

/// The SHA-256 hex digest under which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Checks a user name: 3 to 32 ASCII letters, digits, `_`, `-`, `.` (ASCII
/// only, so no look-alike names such as a Cyrillic "а" in "alice").
pub fn validate_username(name: &str) -> Result<()> {
    let ok_len = (3..=32).contains(&name.len());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "user name must be 3 to 32 ASCII letters, digits, '_', '-' or '.'".into(),
        ))
    }
}

/// Checks a display name: 1 to 64 characters, no control characters and no
/// bidirectional overrides (which could disguise a name).
pub fn validate_display_name(name: &str) -> Result<()> {
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(Error::InvalidArgument(
            "display name must be 1 to 64 characters".into(),
        ));
    }
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(Error::InvalidArgument(
            "display name must not contain control or direction-override characters".into(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Authenticator for PasswordAuthenticator {
    async fn authenticate(&self, token: &str) -> Result<Identity> {
        if token.is_empty() || token.len() > 512 {
            return Err(Error::Unauthenticated("invalid token".into()));
        }
        match self.store.token(&token_hash(token)).await? {
            Some((user, expires_at)) if expires_at > self.clock.now_ms() => {
                Ok(Identity::local(user, expires_at))
            }
            Some(_) => Err(Error::Unauthenticated("token expired".into())),
            None => Err(Error::Unauthenticated("invalid token".into())),
        }
    }

    async fn register(&self, username: &str, password: &str, display_name: &str) -> Result<IssuedToken> {
        validate_username(username)?;
        if password.chars().count() < self.config.min_password_len || password.len() > 1024 {
            return Err(Error::InvalidArgument(format!(
                "password must be {} to 1024 characters",
                self.config.min_password_len
            )));
        }
        if !display_name.trim().is_empty() {
            validate_display_name(display_name)?;
        }
        if self.store.user_by_name(username).await?.is_some() {
            return Err(Error::Conflict(format!("user name {username:?} is taken")));
        }
        let this_hash = {
            let _slot = self.hashing_slot().await?;
            let password = password.to_owned();
            let hasher = self.argon2()?;
            tokio::task::spawn_blocking(move || hash_password(&hasher, &password))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        let display = if display_name.trim().is_empty() {
            username.to_owned()
        } else {
            display_name.trim().to_owned()
        };
        let user = self
            .store
            .create_user(NewUser {
                username: username.to_owned(),
                display_name: display,
                password_hash: this_hash,
                created_at: self.clock.now_ms(),
            })
            .await?;
        self.issue(user).await
    }

    async fn login(&self, username: &str, password: &str) -> Result<IssuedToken> {
        let user = self.store.user_by_name(username).await?;
        let stored = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let _slot = self.hashing_slot().await?;
        let password = password.to_owned();
        let verifier = self.argon2()?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored)
                .map(|parsed| verifier.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        match user {
            Some(user) if ok => self.issue(user).await,
            _ => Err(Error::Unauthenticated("wrong user name or password".into())),
        }
    }

    async fn logout(&self, token: &str) -> Result<()> {
        Ok(self.store.delete_token(&token_hash(token)).await?)
    }
}

impl std::fmt::Debug for PasswordAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordAuthenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
