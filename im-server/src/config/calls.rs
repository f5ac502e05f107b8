//! `[calls]`: ring time-out, reconnect window, participants, signal size,
//! and the STUN and TURN servers handed to callers.

use crate::error::{Result, ServerError};
use serde::Deserialize;

/// `[calls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsSection {
    /// How long invitees' devices ring before the call counts as missed
    /// (default 30 s).
    pub ring_timeout_secs: u64,
    /// How long a participant whose connection dropped keeps their place
    /// (default 20 s).
    pub reconnect_window_secs: u64,
    /// Most participants of one call, caller included: a mesh, so each
    /// sends its media to every other (default 4).
    pub max_participants: usize,
    /// Largest SDP offer or answer or ICE candidate relayed, bytes (default 32 KiB).
    pub max_signal_bytes: usize,
    /// STUN URLs handed to clients, e.g. `stun:stun.example.com:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs handed to clients, e.g. `turn:turn.example.com:3478?transport=udp`.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`);
    /// clients get credentials derived from it that expire.
    pub turn_secret: String,
    /// How long a TURN credential is valid (default 24 h).
    pub turn_ttl_secs: u64,
}

impl Default for CallsSection {
    fn default() -> Self {
        let d = im_core::call::CallConfig::default();
        Self {
            ring_timeout_secs: (d.ring_timeout_ms / 1000) as u64,
            reconnect_window_secs: (d.reconnect_window_ms / 1000) as u64,
            max_participants: d.max_participants,
            max_signal_bytes: d.max_signal_bytes,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: String::new(),
            turn_ttl_secs: 86_400,
        }
    }
}

impl CallsSection {
    /// Checks values that parse but make no sense; `max_frame_bytes` bounds a signal.
    pub fn validate(&self, max_frame_bytes: usize) -> Result<()> {
        let fail = |m: &str| Err(ServerError::Config(m.to_owned()));
        if !(1..=3_600).contains(&self.ring_timeout_secs)
            || !(1..=3_600).contains(&self.reconnect_window_secs)
        {
            return fail("calls.ring_timeout_secs and calls.reconnect_window_secs must be 1 to 3600");
        }
        if !(2..=16).contains(&self.max_participants) {
            return fail("calls.max_participants must be 2 to 16");
        }
        if self.max_signal_bytes < 1024 || self.max_signal_bytes >= max_frame_bytes {
            return fail("calls.max_signal_bytes must be at least 1024 and below limits.max_frame_bytes");
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_empty() {
            return fail("calls.turn_urls needs calls.turn_secret (the TURN server's shared secret)");
        }
        if !(60..=7 * 86_400).contains(&self.turn_ttl_secs) {
            return fail("calls.turn_ttl_secs must be 60 to 604800");
        }
        let urls = self.stun_urls.iter().chain(&self.turn_urls);
        if let Some(bad) = urls.into_iter().find(|u| !is_ice_url(u)) {
            return Err(ServerError::Config(format!(
                "calls: {bad:?} is not a stun:, stuns:, turn: or turns: URL"
            )));
        }
        Ok(())
    }

    /// The engine's call settings.
    pub fn call_config(&self) -> im_core::call::CallConfig {
        im_core::call::CallConfig {
            ring_timeout_ms: (self.ring_timeout_secs * 1000) as i64,
            reconnect_window_ms: (self.reconnect_window_secs * 1000) as i64,
            max_participants: self.max_participants,
            max_signal_bytes: self.max_signal_bytes,
        }
    }

    /// The ICE servers handed to clients.
    pub fn ice_config(&self) -> im_core::call::IceConfig {
        im_core::call::IceConfig {
            stun_urls: self.stun_urls.clone(),
            turn_urls: self.turn_urls.clone(),
            turn_secret: self.turn_secret.clone(),
            turn_ttl_secs: self.turn_ttl_secs,
        }
    }
}

fn is_ice_url(url: &str) -> bool {
    ["stun:", "stuns:", "turn:", "turns:"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.trim().is_empty())
    })
}
