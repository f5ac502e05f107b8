//! `[contacts]`: whether direct messages need friendship, the friend
//! request limit, and how long a node keeps users' blocks.

use crate::error::{Result, ServerError};
use serde::Deserialize;

/// `[contacts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContactsSection {
    /// Only friends may message each other in direct conversations
    /// (default false: anyone who is not blocked may).
    pub direct_requires_friendship: bool,
    /// Most friend requests a user may have waiting for an answer (default 500).
    pub max_pending_requests: usize,
    /// How long a node keeps a user's blocks to filter presence, typing
    /// and receipts, seconds (default 30; 0: read them every time). Blocks
    /// reach every node at once through the fan-out; this bounds only what
    /// a lost fan-out record leaves stale. Messages never depend on it.
    pub block_cache_secs: u64,
}

impl Default for ContactsSection {
    fn default() -> Self {
        let d = im_core::ContactsConfig::default();
        Self {
            direct_requires_friendship: d.direct_requires_friendship,
            max_pending_requests: d.max_pending_requests,
            block_cache_secs: (d.block_cache_ms / 1000) as u64,
        }
    }
}

impl ContactsSection {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        if !(1..=100_000).contains(&self.max_pending_requests) {
            return Err(ServerError::Config(
                "contacts.max_pending_requests must be 1 to 100000".into(),
            ));
        }
        if self.block_cache_secs > 3_600 {
            return Err(ServerError::Config(
                "contacts.block_cache_secs must be at most 3600".into(),
            ));
        }
        Ok(())
    }

    /// The engine's settings.
    pub fn contacts_config(&self) -> im_core::ContactsConfig {
        im_core::ContactsConfig {
            direct_requires_friendship: self.direct_requires_friendship,
            max_pending_requests: self.max_pending_requests,
            block_cache_ms: (self.block_cache_secs * 1000) as i64,
        }
    }
}
