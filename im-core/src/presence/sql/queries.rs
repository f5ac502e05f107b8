//! The presence tables as diesel sees them, and every statement of
//! [`DieselPresence`](super::DieselPresence), once, generic over the
//! connection. Each `pub(super)` function runs inside the transaction its
//! caller opened ([`PresenceConnection`](super::PresenceConnection)).
//!
//! # Locks (PostgreSQL)
//! Rows are locked in one order everywhere, so two nodes never wait for
//! each other in a cycle: node rows (several only in [`expire`], by name;
//! shared by [`connected`], which never upgrades that lock), then session
//! rows, then user rows (several only after dropping a node's
//! sessions, by id). A user's row is locked before their liveness is read,
//! so two nodes changing one user's sessions at once decide one after the
//! other, each seeing what the other committed (READ COMMITTED reads the
//! latest committed rows at each statement). SQLite takes the database's
//! write lock at `BEGIN IMMEDIATE` instead.

use super::super::{PresenceChange, UserPresence};
use super::PresenceConnection;
use crate::model::{SessionId, UserId};
use crate::store::{Run, SqlConnection, StoreResult};
use diesel::dsl::{case_when, exists};
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};

diesel::table! {
    /// Each node's lease (migration `*_presence`).
    presence_nodes (node) {
        node -> Text,
        /// Unix ms after which the node's sessions stop counting; 0 once dropped.
        lease_until -> BigInt,
        /// Dropped since its last renewal: the next renewal answers false.
        lapsed -> Bool,
        /// When it was dropped, to forget it later.
        dropped_at -> BigInt,
    }
}

diesel::table! {
    /// Live sessions, per user and node.
    presence_sessions (user_id, node, session_id) {
        user_id -> BigInt,
        node -> Text,
        session_id -> BigInt,
    }
}

diesel::table! {
    /// Per user: the last transition reported, its generation, last seen.
    presence_users (user_id) {
        user_id -> BigInt,
        online -> Bool,
        generation -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::joinable!(presence_sessions -> presence_nodes (node));
diesel::allow_tables_to_appear_in_same_query!(presence_nodes, presence_sessions, presence_users);

use presence_nodes as nodes;
use presence_sessions as sessions;
use presence_users as users;

/// A node dropped this long ago (and not back since) is forgotten. Its row
/// only remembers that it must register its sessions again when it comes
/// back, which matters only for a node cut off and then reconnected.
pub(super) const FORGET_NODE_MS: i64 = 24 * 3600 * 1000;

/// Most ids bound in one `IN (...)` list.
const CHUNK: usize = 500;

/// A session of `user` started on `node`, if the node's lease runs past
/// `now`: records the session, and reports "online" if the user was not
/// online before. `None` if the node is unknown, dropped or lapsed: roll
/// back and call [`connected_reviving`] instead.
///
/// The node's row is only share-locked: the connects of one node run side
/// by side, while a node expiring or removing it waits for them (and they
/// for it), so no session is added to a node being dropped.
pub(super) fn connected<C: PresenceConnection>(
    c: &mut C,
    node: &str,
    user: UserId,
    session: SessionId,
    now: i64,
) -> StoreResult<Option<Option<PresenceChange>>> {
    match c.node_lease_shared(node)? {
        Some(lease_until) if lease_until > now => add_session(c, node, user, session, now).map(Some),
        _ => Ok(None),
    }
}

/// Like [`connected`], for a node that is new, dropped or lapsed: first
/// (re)registers it with a lease from `now`, as a renewal would.
pub(super) fn connected_reviving<C: SqlConnection>(
    c: &mut C,
    node: &str,
    user: UserId,
    session: SessionId,
    now: i64,
    lease_ms: i64,
) -> StoreResult<Option<PresenceChange>> {
    let until = now.saturating_add(lease_ms);
    diesel::insert_into(nodes::table)
        .values((nodes::node.eq(node), nodes::lease_until.eq(until)))
        .on_conflict(nodes::node)
        .do_update()
        // Never shortens a lease (the caller's clock may be behind).
        .set(
            nodes::lease_until
                .eq(case_when(nodes::lease_until.gt(until), nodes::lease_until).otherwise(until)),
        )
        .run(c)?;
    add_session(c, node, user, session, now)
}

/// Records a session on a node whose lease runs past `now` (so the user is
/// live), and reports "online" if the user was not online before.
fn add_session<C: SqlConnection>(
    c: &mut C,
    node: &str,
    user: UserId,
    session: SessionId,
    now: i64,
) -> StoreResult<Option<PresenceChange>> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::user_id.eq(user as i64),
            sessions::node.eq(node),
            sessions::session_id.eq(session as i64),
        ))
        .on_conflict_do_nothing()
        .run(c)?;
    // Creates the user's row if new, and locks it either way.
    let reported_online: bool = diesel::insert_into(users::table)
        .values(users::user_id.eq(user as i64))
        .on_conflict(users::user_id)
        .do_update()
        .set(users::online.eq(users::online))
        .returning(users::online)
        .row(c)?;
    if reported_online {
        return Ok(None);
    }
    report(c, user, true, now).map(Some)
}

/// The lease of `node` (`None` if unknown), read without locking: for
/// backends whose write transactions are already exclusive.
#[cfg(feature = "sqlite")]
pub(super) fn node_lease<C: SqlConnection>(c: &mut C, node: &str) -> StoreResult<Option<i64>> {
    Ok(nodes::table
        .find(node)
        .select(nodes::lease_until)
        .row(c)
        .optional()?)
}

/// A session ended: forgets it, and reports "offline" if the user has no
/// live session left (or "online" if they were not reported online but are).
pub(super) fn disconnected<C: SqlConnection>(
    c: &mut C,
    node: &str,
    user: UserId,
    session: SessionId,
    now: i64,
) -> StoreResult<Option<PresenceChange>> {
    diesel::delete(sessions::table.find((user as i64, node, session as i64))).run(c)?;
    settle(c, user, now)
}

/// Extends `node`'s lease; true if the node was registered and not dropped
/// since its last renewal.
pub(super) fn renew<C: SqlConnection>(c: &mut C, node: &str, now: i64, lease_ms: i64) -> StoreResult<bool> {
    let until = now.saturating_add(lease_ms);
    let extend =
        nodes::lease_until.eq(case_when(nodes::lease_until.gt(until), nodes::lease_until).otherwise(until));
    let kept = diesel::update(
        nodes::table
            .find(node)
            .filter(nodes::lapsed.eq(false))
            .filter(nodes::lease_until.gt(0)),
    )
    .set(extend)
    .run(c)?;
    if kept == 1 {
        return Ok(true);
    }
    // Unknown, dropped, or revived by a session since it was dropped.
    diesel::insert_into(nodes::table)
        .values((nodes::node.eq(node), nodes::lease_until.eq(until)))
        .on_conflict(nodes::node)
        .do_update()
        .set((extend, nodes::lapsed.eq(false)))
        .run(c)?;
    Ok(false)
}

/// Drops `node` and its sessions at once; the users who went offline.
pub(super) fn remove_node<C: SqlConnection>(
    c: &mut C,
    node: &str,
    now: i64,
) -> StoreResult<Vec<PresenceChange>> {
    let found = diesel::update(nodes::table.find(node)).set(dropped(now)).run(c)?;
    if found == 0 {
        return Ok(Vec::new());
    }
    drop_sessions(c, &[node.to_owned()], now)
}

/// Drops every node whose lease expired by `now` and that no one dropped
/// yet, and their sessions; the users who went offline.
pub(super) fn expire<C: SqlConnection>(c: &mut C, now: i64) -> StoreResult<Vec<PresenceChange>> {
    let candidates: Vec<String> = nodes::table
        .filter(nodes::lease_until.gt(0))
        .filter(nodes::lease_until.le(now))
        .order(nodes::node)
        .select(nodes::node)
        .rows(c)?;
    let mut claimed = Vec::new();
    for node in candidates {
        // Claims the node, by name order. A node expiring the same node at
        // once waits for this row, then finds it dropped (PostgreSQL
        // re-checks the condition on the row it waited for): 0 rows.
        let hit = diesel::update(
            nodes::table
                .find(&node)
                .filter(nodes::lease_until.gt(0))
                .filter(nodes::lease_until.le(now)),
        )
        .set(dropped(now))
        .run(c)?;
        if hit == 1 {
            claimed.push(node);
        }
    }
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    drop_sessions(c, &claimed, now)
}

/// Forgets nodes dropped more than [`FORGET_NODE_MS`] ago; how many.
pub(super) fn forget_old_nodes<C: SqlConnection>(c: &mut C, now: i64) -> StoreResult<usize> {
    Ok(diesel::delete(
        nodes::table
            .filter(nodes::lease_until.eq(0))
            .filter(nodes::dropped_at.lt(now.saturating_sub(FORGET_NODE_MS))),
    )
    .run(c)?)
}

/// Whether each user has a session on a node whose lease runs past `now`,
/// and their generation.
/// (user, node) for each node where one of these users has a registered
/// session, each once.
pub(super) fn user_nodes<C: SqlConnection>(
    c: &mut C,
    users: &[UserId],
) -> StoreResult<Vec<(UserId, String)>> {
    let ids: Vec<i64> = users.iter().map(|&u| u as i64).collect();
    let mut pairs = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(i64, String)> = sessions::table
            .filter(sessions::user_id.eq_any(chunk))
            .select((sessions::user_id, sessions::node))
            .distinct()
            .rows(c)?;
        pairs.extend(rows.into_iter().map(|(u, n)| (u as UserId, n)));
    }
    Ok(pairs)
}

pub(super) fn presence<C: SqlConnection>(
    c: &mut C,
    users: &[UserId],
    now: i64,
) -> StoreResult<Vec<UserPresence>> {
    let ids: Vec<i64> = users.iter().map(|&u| u as i64).collect();
    let mut generations = std::collections::HashMap::new();
    let mut live = std::collections::HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<(i64, i64)> = users::table
            .filter(users::user_id.eq_any(chunk))
            .select((users::user_id, users::generation))
            .rows(c)?;
        generations.extend(rows);
        let online: Vec<i64> = sessions::table
            .inner_join(nodes::table)
            .filter(sessions::user_id.eq_any(chunk))
            .filter(nodes::lease_until.gt(now))
            .select(sessions::user_id)
            .distinct()
            .rows(c)?;
        live.extend(online);
    }
    Ok(users
        .iter()
        .map(|&user_id| UserPresence {
            user_id,
            online: live.contains(&(user_id as i64)),
            generation: generations.get(&(user_id as i64)).map_or(0, |&g| g.max(0) as u64),
        })
        .collect())
}

/// The columns set when a node is dropped.
fn dropped(
    now: i64,
) -> (
    diesel::dsl::Eq<nodes::lease_until, i64>,
    diesel::dsl::Eq<nodes::lapsed, bool>,
    diesel::dsl::Eq<nodes::dropped_at, i64>,
) {
    (
        nodes::lease_until.eq(0),
        nodes::lapsed.eq(true),
        nodes::dropped_at.eq(now),
    )
}

/// Deletes the sessions of dropped `nodes`; settles their users, by id.
fn drop_sessions<C: SqlConnection>(
    c: &mut C,
    nodes: &[String],
    now: i64,
) -> StoreResult<Vec<PresenceChange>> {
    let mut affected: Vec<i64> = diesel::delete(sessions::table.filter(sessions::node.eq_any(nodes)))
        .returning(sessions::user_id)
        .rows(c)?;
    affected.sort_unstable();
    affected.dedup();
    let mut changes = Vec::new();
    for user in affected {
        changes.extend(settle(c, user as UserId, now)?);
    }
    Ok(changes)
}

/// Locks the user's row, and reports a transition if their liveness now
/// differs from what was reported last. Users without a row never had a
/// session (rows are created with the first one), so nothing changes.
fn settle<C: SqlConnection>(c: &mut C, user: UserId, now: i64) -> StoreResult<Option<PresenceChange>> {
    let reported_online: Option<bool> = diesel::update(users::table.find(user as i64))
        .set(users::online.eq(users::online))
        .returning(users::online)
        .row(c)
        .optional()?;
    let Some(reported_online) = reported_online else {
        return Ok(None);
    };
    let live: bool = diesel::select(exists(
        sessions::table
            .inner_join(nodes::table)
            .filter(sessions::user_id.eq(user as i64))
            .filter(nodes::lease_until.gt(now)),
    ))
    .row(c)?;
    if live == reported_online {
        return Ok(None);
    }
    report(c, user, live, now).map(Some)
}

/// Records a transition of the (locked) user and takes its generation from
/// the row, in this transaction: larger than the user's last one, and at
/// least `now` in microseconds, so generations keep increasing even if the
/// table is emptied (as in [`MemoryPresence`](crate::presence::MemoryPresence)).
fn report<C: SqlConnection>(c: &mut C, user: UserId, online: bool, now: i64) -> StoreResult<PresenceChange> {
    let floor = now.max(0).saturating_mul(1000);
    let next = users::generation + 1;
    let generation: i64 = diesel::update(users::table.find(user as i64))
        .set((
            users::online.eq(online),
            users::generation.eq(case_when(next.gt(floor), next).otherwise(floor)),
            users::last_seen.eq(case_when(users::last_seen.gt(now), users::last_seen).otherwise(now)),
        ))
        .returning(users::generation)
        .row(c)?;
    Ok(PresenceChange {
        user_id: user,
        online,
        generation: generation.max(0) as u64,
        at: now,
    })
}
