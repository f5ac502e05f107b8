//! Identity and profiles: accounts, tokens, users.

use super::{Caller, Engine};
use crate::auth::{Identity, IssuedToken, LOCAL_ISSUER, validate_display_name, validate_username};
use crate::error::{Error, Result};
use crate::model::*;
use im_protocol::v1;

impl Engine {
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
        Ok(self.identify(token).await?.user)
    }

    /// Who a token belongs to and until when: the authenticator's identity
    /// mapped to a local user, who is created on first sight when the issuer
    /// is not this engine (a host product's tokens need no sign-up here).
    pub async fn identify(&self, token: &str) -> Result<Authenticated> {
        let identity = self.inner.auth.authenticate(token).await?;
        let user = self.local_user(&identity).await?;
        Ok(Authenticated {
            user,
            expires_at: identity.expires_at,
        })
    }

    async fn local_user(&self, identity: &Identity) -> Result<UserRecord> {
        if identity.issuer == LOCAL_ISSUER {
            let id = identity
                .subject
                .parse()
                .map_err(|_| Error::Unauthenticated("malformed local identity".into()))?;
            // A token of a user who no longer exists proves nothing.
            return self.user(id).await.map_err(|e| match e {
                Error::NotFound(_) => Error::Unauthenticated("unknown user".into()),
                other => other,
            });
        }
        let store = &self.inner.store;
        let (issuer, subject) = (identity.issuer.as_str(), identity.subject.as_str());
        if issuer.is_empty() || subject.is_empty() || issuer.len() > 256 || subject.len() > 256 {
            return Err(Error::Unauthenticated(
                "an identity needs an issuer and a subject of at most 256 bytes".into(),
            ));
        }
        if let Some(user) = store.user_by_identity(issuer, subject).await? {
            return Ok(user);
        }
        let display_name = Some(identity.display_name.trim())
            .filter(|d| validate_display_name(d).is_ok())
            .map(str::to_owned);
        for attempt in 0..8 {
            let username = username_for(identity, attempt);
            let new = NewUser {
                display_name: display_name.clone().unwrap_or_else(|| username.clone()),
                username,
                password_hash: String::new(),
                created_at: self.now_ms(),
            };
            match store.create_user_with_identity(new, issuer, subject).await {
                Ok(user) => return self.adopt_avatar(user, &identity.avatar_url).await,
                Err(crate::store::StoreError::Conflict(_)) => {
                    // A concurrent first sight mapped it, or the name is taken.
                    if let Some(user) = store.user_by_identity(issuer, subject).await? {
                        return Ok(user);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Unavailable(
            "no free user name for a new identity; retry".into(),
        ))
    }

    /// A new user's avatar from their identity, if it is an http(s) URL.
    async fn adopt_avatar(&self, user: UserRecord, avatar_url: &str) -> Result<UserRecord> {
        if avatar_url.is_empty() || check_avatar_url(avatar_url).is_err() {
            return Ok(user);
        }
        Ok(self
            .inner
            .store
            .update_profile(user.id, None, Some(avatar_url.to_owned()))
            .await?)
    }

    /// Revokes a token.
    pub async fn logout(&self, token: &str) -> Result<()> {
        self.inner.auth.logout(token).await
    }

    pub(super) async fn user(&self, id: UserId) -> Result<UserRecord> {
        self.inner
            .store
            .users_by_ids(&[id])
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    /// Updates the caller's profile.
    pub async fn update_profile(&self, caller: Caller, req: v1::UpdateProfile) -> Result<v1::User> {
        if let Some(d) = &req.display_name {
            validate_display_name(d)?;
        }
        if let Some(a) = &req.avatar_url {
            check_avatar_url(a)?;
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
}

/// A token's user, and when the token stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The local user.
    pub user: UserRecord,
    /// Unix ms after which the token is refused (`None`: never).
    pub expires_at: Option<i64>,
}

/// A user name for an identity seen the first time: the wished name (or the
/// subject) reduced to the allowed characters; later attempts add a suffix
/// derived from the identity, then a random one.
fn username_for(identity: &Identity, attempt: u32) -> String {
    let wished = identity.username.as_deref().unwrap_or(&identity.subject);
    let mut base: String = wished
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(24)
        .collect();
    if base.len() < 3 {
        base = format!("user{base}");
    }
    let name = match attempt {
        0 => base,
        1 => {
            let digest = crate::auth::token_hash(&format!("{}/{}", identity.issuer, identity.subject));
            format!("{base}-{}", &digest[..6])
        }
        _ => format!("{base}-{:06x}", rand::random::<u32>() & 0xff_ffff),
    };
    debug_assert!(validate_username(&name).is_ok(), "{name}");
    name
}

/// An avatar is an http(s) URL of at most 2048 bytes (or empty: none).
fn check_avatar_url(url: &str) -> Result<()> {
    if url.len() > 2048 {
        return Err(Error::TooLarge("avatar URL is limited to 2048 bytes".into()));
    }
    if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::InvalidArgument("avatar URL must be http(s)".into()));
    }
    Ok(())
}
