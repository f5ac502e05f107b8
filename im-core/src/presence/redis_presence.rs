//! [`RedisPresence`]: presence shared by the server processes of a cluster,
//! kept in Redis (feature `redis`).
//!
//! Every operation is one Lua script, so it is atomic across nodes. Times
//! are the engine's (the `now` arguments), never Redis's clock, so leases
//! behave exactly as in [`MemoryPresence`](super::MemoryPresence).
//!
//! Keys, under a prefix (default `im:presence`):
//! * `{p}:leases` hash: node → lease deadline (ms; 0 once expired);
//! * `{p}:lapsed` set: nodes dropped since their last renewal;
//! * `{p}:user:{id}` hash: `node␟session` → node, the user's sessions
//!   (also where `user_nodes` finds the nodes to route a user's events to);
//! * `{p}:node:{node}` set: `user␟session`, to drop a node's sessions;
//! * `{p}:online:{id}`: the generation of the user's "online", present
//!   while the user was last reported online;
//! * `{p}:gen`: the last generation handed out (time-based, + 1 when the
//!   clocks of the nodes lag).

use super::{NodeId, PresenceChange, PresenceRegistry, UserPresence};
use crate::error::{Error, Result};
use crate::model::{SessionId, UserId};
use async_trait::async_trait;

/// Settings of a [`RedisPresence`].
#[derive(Debug, Clone)]
pub struct RedisPresenceConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of every key (default `im:presence`); nodes of one cluster share it.
    pub prefix: String,
    /// How long a node's sessions count after its last renewal, ms (default 30 s).
    pub lease_ms: i64,
}

impl RedisPresenceConfig {
    /// Defaults for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "im:presence".into(),
            lease_ms: 30_000,
        }
    }
}

/// Presence for several server processes, in Redis. See the module docs.
pub struct RedisPresence {
    conn: redis::aio::MultiplexedConnection,
    prefix: String,
    lease_ms: i64,
    /// Built (and hashed) once; Redis caches them by hash.
    scripts: Scripts,
}

struct Scripts {
    connected: redis::Script,
    disconnected: redis::Script,
    renew: redis::Script,
    expire: redis::Script,
    remove_node: redis::Script,
    presence: redis::Script,
    user_nodes: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{COMMON}\n{body}"));
        Self {
            connected: script(CONNECTED),
            disconnected: script(DISCONNECTED),
            renew: script(RENEW),
            expire: script(EXPIRE),
            remove_node: script(REMOVE_NODE),
            presence: script(PRESENCE),
            user_nodes: script(USER_NODES),
        }
    }
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("prefix", &self.prefix)
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

/// Shared Lua: the generation counter and the settling of one user.
const COMMON: &str = r#"
local p = ARGV[1]
local now = tonumber(ARGV[2])
local function next_gen()
  local t = now * 1000
  local g = tonumber(redis.call('GET', p .. ':gen') or '0')
  if t > g then g = t else g = g + 1 end
  redis.call('SET', p .. ':gen', string.format('%.0f', g))
  return g
end
local function live(uid)
  local fields = redis.call('HVALS', p .. ':user:' .. uid)
  for _, node in ipairs(fields) do
    local lease = tonumber(redis.call('HGET', p .. ':leases', node) or '0')
    if lease > now then return true end
  end
  return false
end
-- Reports a transition as {uid, online, gen}, or nothing.
local function settle(uid, out)
  local is_live = live(uid)
  local reported = redis.call('EXISTS', p .. ':online:' .. uid) == 1
  if is_live ~= reported then
    local g = next_gen()
    if is_live then
      redis.call('SET', p .. ':online:' .. uid, string.format('%.0f', g))
      table.insert(out, uid); table.insert(out, 1); table.insert(out, string.format('%.0f', g))
    else
      redis.call('DEL', p .. ':online:' .. uid)
      table.insert(out, uid); table.insert(out, 0); table.insert(out, string.format('%.0f', g))
    end
  end
end
-- Drops every session of a node; settles its users.
local function drop_node(node, out)
  redis.call('HSET', p .. ':leases', node, 0)
  redis.call('SADD', p .. ':lapsed', node)
  local members = redis.call('SMEMBERS', p .. ':node:' .. node)
  local users = {}
  for _, m in ipairs(members) do
    local sep = string.find(m, '\31', 1, true)
    local uid = string.sub(m, 1, sep - 1)
    local session = string.sub(m, sep + 1)
    redis.call('HDEL', p .. ':user:' .. uid, node .. '\31' .. session)
    users[uid] = true
  end
  redis.call('DEL', p .. ':node:' .. node)
  local sorted = {}
  for uid, _ in pairs(users) do table.insert(sorted, tonumber(uid)) end
  table.sort(sorted)
  for _, uid in ipairs(sorted) do settle(tostring(uid), out) end
end
"#;

const CONNECTED: &str = r#"
local node, uid, session, lease_ms = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local old = tonumber(redis.call('HGET', p .. ':leases', node) or '0')
local until_ = now + lease_ms
if old > until_ then until_ = old end
redis.call('HSET', p .. ':leases', node, string.format('%.0f', until_))
redis.call('HSET', p .. ':user:' .. uid, node .. '\31' .. session, node)
redis.call('SADD', p .. ':node:' .. node, uid .. '\31' .. session)
local out = {}
settle(uid, out)
return out
"#;

const DISCONNECTED: &str = r#"
local node, uid, session = ARGV[3], ARGV[4], ARGV[5]
redis.call('HDEL', p .. ':user:' .. uid, node .. '\31' .. session)
redis.call('SREM', p .. ':node:' .. node, uid .. '\31' .. session)
local out = {}
settle(uid, out)
return out
"#;

const RENEW: &str = r#"
local node, lease_ms = ARGV[3], tonumber(ARGV[4])
local old = redis.call('HGET', p .. ':leases', node)
local lapsed = redis.call('SREM', p .. ':lapsed', node)
local prev = tonumber(old or '0')
local until_ = now + lease_ms
if prev > until_ then until_ = prev end
redis.call('HSET', p .. ':leases', node, string.format('%.0f', until_))
if old and lapsed == 0 and prev > 0 then return 1 else return 0 end
"#;

const EXPIRE: &str = r#"
local out = {}
local leases = redis.call('HGETALL', p .. ':leases')
for i = 1, #leases, 2 do
  local lease = tonumber(leases[i + 1])
  if lease > 0 and lease <= now then drop_node(leases[i], out) end
end
return out
"#;

const REMOVE_NODE: &str = r#"
local out = {}
if redis.call('HEXISTS', p .. ':leases', ARGV[3]) == 1 then drop_node(ARGV[3], out) end
return out
"#;

const PRESENCE: &str = r#"
local out = {}
for i = 3, #ARGV do
  local uid = ARGV[i]
  local on = 0
  if live(uid) then on = 1 end
  table.insert(out, on)
  table.insert(out, redis.call('GET', p .. ':online:' .. uid) or '0')
end
return out
"#;

const USER_NODES: &str = r#"
local out = {}
for i = 3, #ARGV do
  local seen = {}
  for _, node in ipairs(redis.call('HVALS', p .. ':user:' .. ARGV[i])) do
    if not seen[node] then
      seen[node] = true
      table.insert(out, ARGV[i])
      table.insert(out, node)
    end
  end
end
return out
"#;

impl RedisPresence {
    /// Connects. `Unavailable` if Redis cannot be reached now.
    pub async fn connect(config: RedisPresenceConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: config.prefix,
            lease_ms: config.lease_ms.max(1),
            scripts: Scripts::new(),
        })
    }

    async fn run(&self, script: &redis::Script, now: i64, args: &[String]) -> Result<redis::Value> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix).arg(now);
        for a in args {
            invocation.arg(a);
        }
        invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn changes(
        &self,
        script: &redis::Script,
        now: i64,
        args: &[String],
    ) -> Result<Vec<PresenceChange>> {
        let value = self.run(script, now, args).await?;
        let flat: Vec<String> = redis::from_redis_value(&value).map_err(unavailable)?;
        flat.chunks(3)
            .map(|c| {
                let parse = |s: &str| {
                    s.parse::<u64>()
                        .map_err(|e| Error::Internal(format!("presence: {e}")))
                };
                Ok(PresenceChange {
                    user_id: parse(&c[0])?,
                    online: c[1] == "1",
                    generation: parse(&c[2])?,
                    at: now,
                })
            })
            .collect()
    }
}

#[async_trait]
impl PresenceRegistry for RedisPresence {
    async fn connected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let args = [
            node.to_owned(),
            user.to_string(),
            session.to_string(),
            self.lease_ms.to_string(),
        ];
        Ok(self.changes(&self.scripts.connected, now, &args).await?.pop())
    }

    async fn disconnected(
        &self,
        node: &NodeId,
        user: UserId,
        session: SessionId,
        now: i64,
    ) -> Result<Option<PresenceChange>> {
        let args = [node.to_owned(), user.to_string(), session.to_string()];
        Ok(self.changes(&self.scripts.disconnected, now, &args).await?.pop())
    }

    async fn renew(&self, node: &NodeId, now: i64) -> Result<bool> {
        let value = self
            .run(
                &self.scripts.renew,
                now,
                &[node.to_owned(), self.lease_ms.to_string()],
            )
            .await?;
        let kept: i64 = redis::from_redis_value(&value).map_err(unavailable)?;
        Ok(kept == 1)
    }

    async fn remove_node(&self, node: &NodeId, now: i64) -> Result<Vec<PresenceChange>> {
        self.changes(&self.scripts.remove_node, now, &[node.to_owned()])
            .await
    }

    async fn expire(&self, now: i64) -> Result<Vec<PresenceChange>> {
        self.changes(&self.scripts.expire, now, &[]).await
    }

    async fn user_nodes(&self, users: &[UserId]) -> Result<Option<Vec<(UserId, String)>>> {
        let args: Vec<String> = users.iter().map(u64::to_string).collect();
        let value = self.run(&self.scripts.user_nodes, 0, &args).await?;
        let flat: Vec<String> = redis::from_redis_value(&value).map_err(unavailable)?;
        flat.chunks(2)
            .map(|pair| {
                let user = pair[0]
                    .parse()
                    .map_err(|e| Error::Internal(format!("presence: {e}")))?;
                Ok((user, pair[1].clone()))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    async fn presence(&self, users: &[UserId], now: i64) -> Result<Vec<UserPresence>> {
        let args: Vec<String> = users.iter().map(u64::to_string).collect();
        let value = self.run(&self.scripts.presence, now, &args).await?;
        let flat: Vec<String> = redis::from_redis_value(&value).map_err(unavailable)?;
        Ok(users
            .iter()
            .zip(flat.chunks(2))
            .map(|(&user_id, c)| UserPresence {
                user_id,
                online: c[0] == "1",
                generation: c[1].parse().unwrap_or(0),
            })
            .collect())
    }
}
