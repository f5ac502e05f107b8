//! The ICE servers handed to clients: STUN, and TURN with time-limited
//! credentials derived from a secret shared with the TURN server (the "TURN
//! REST API" scheme that coturn implements as `use-auth-secret`), so no
//! per-user TURN account exists and a leaked credential expires by itself.

use crate::model::UserId;
use base64::Engine as _;
use hmac::{Hmac, Mac};

/// Which STUN and TURN servers clients use, and how TURN credentials are made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceConfig {
    /// STUN URLs, e.g. `stun:stun.example.com:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs, e.g. `turn:turn.example.com:3478?transport=udp`, `turns:…`.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`);
    /// empty: TURN is not offered.
    pub turn_secret: String,
    /// How long a TURN credential is valid, seconds (default when 0: 24 h).
    pub turn_ttl_secs: u64,
}

/// One entry of the ICE server list (the shape of WebRTC's `RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// The server's URLs.
    pub urls: Vec<String>,
    /// TURN: the time-limited user name (`<expiry unix seconds>:<user id>`).
    pub username: String,
    /// TURN: base64 of HMAC-SHA1(secret, username).
    pub credential: String,
}

impl IceConfig {
    /// The servers for `user` at `now_ms`: STUN as configured, and TURN with
    /// a credential valid until `now + turn_ttl_secs`.
    pub fn servers_for(&self, user: UserId, now_ms: i64) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: String::new(),
                credential: String::new(),
            });
        }
        if !self.turn_urls.is_empty() && !self.turn_secret.is_empty() {
            let ttl = if self.turn_ttl_secs == 0 {
                86_400
            } else {
                self.turn_ttl_secs
            };
            let expiry = (now_ms / 1000).max(0) as u64 + ttl;
            let username = format!("{expiry}:{user}");
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                credential: turn_credential(&self.turn_secret, &username),
                username,
            });
        }
        servers
    }
}

/// base64(HMAC-SHA1(secret, username)): what a TURN server with the same
/// secret computes to check the password.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_turn_rest_scheme() {
        // The value a TURN server with this secret expects (checked with
        // Python's hmac, sha1 and base64).
        assert_eq!(
            turn_credential("north-secret", "1700003600:42"),
            "Vvpl3+GzWo2LZteNDmUf0K3+qHY="
        );
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            turn_secret: "north-secret".into(),
            turn_ttl_secs: 3_600,
        };
        let servers = config.servers_for(42, 1_700_000_000_500);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, ["stun:stun.example.com:3478"]);
        assert!(servers[0].username.is_empty());
        assert_eq!(servers[1].username, "1700003600:42");
        assert_eq!(servers[1].credential, "Vvpl3+GzWo2LZteNDmUf0K3+qHY=");
        // Without a secret, no TURN; without anything, an empty list.
        let stun_only = IceConfig {
            turn_secret: String::new(),
            ..config
        };
        assert_eq!(stun_only.servers_for(42, 0).len(), 1);
        assert!(IceConfig::default().servers_for(42, 0).is_empty());
    }
}
