//! Identity and profiles: accounts, tokens, users.

use super::{Caller, Engine};
use crate::auth::IssuedToken;
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
        let id = self.inner.auth.authenticate(token).await?;
        self.user(id).await
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
}
