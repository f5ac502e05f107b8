//! Contacts: friend requests, friendships, blocks, and what the sending path
//! needs of them (the blocks among a conversation's members, cached under
//! the conversation's `contact_version`).

use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use diesel::prelude::{BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl};
use im_protocol::v1;
use std::sync::Arc;

/// What the sending path knows of the contacts among a conversation's
/// members, read at a `(member_version, contact_version)`: every block,
/// member list and friendship change that matters bumps one of the two in
/// the database (whichever node made it), so an entry is used only while
/// it is current.
#[derive(Debug, Default)]
pub(crate) struct ConvContacts {
    /// A direct conversation.
    direct: bool,
    /// Blocks between members: (blocker, blocked), ascending.
    blocks: Vec<(UserId, UserId)>,
    /// The two members of a direct conversation are friends (true for a
    /// conversation with oneself: nobody to be friends with).
    friends: bool,
}

impl ConvContacts {
    /// Refuses a message from `sender` to a direct conversation: without
    /// friendship (when asked), or with a block either way.
    pub(crate) fn check_direct_send(&self, sender: UserId, needs_friendship: bool) -> StoreResult<()> {
        if !self.direct || sender == 0 {
            return Ok(());
        }
        if needs_friendship && !self.friends {
            return Err(StoreError::Forbidden(FRIENDS_ONLY.into()));
        }
        if self.anyone_blocks(sender) {
            return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
        }
        if !self.blocks.is_empty() {
            return Err(StoreError::Forbidden(YOU_BLOCKED.into()));
        }
        Ok(())
    }

    /// The members who block `sender`, ascending.
    pub(crate) fn blockers_of(&self, sender: UserId) -> Vec<UserId> {
        if sender == 0 {
            return Vec::new();
        }
        let mut out: Vec<UserId> = self
            .blocks
            .iter()
            .filter(|&&(_, blocked)| blocked == sender)
            .map(|&(blocker, _)| blocker)
            .collect();
        out.sort_unstable();
        out
    }

    /// True if some member blocks `sender`.
    pub(crate) fn anyone_blocks(&self, sender: UserId) -> bool {
        self.blocks.iter().any(|&(_, blocked)| blocked == sender)
    }
}

/// [`ConvContacts`] by conversation, with the versions they were read at.
pub(crate) type ContactCache =
    Arc<parking_lot::Mutex<std::collections::HashMap<i64, ((i64, i64), Arc<ConvContacts>)>>>;

/// Most conversations cached; past it the cache starts over.
const CONTACT_CACHE_ENTRIES: usize = 100_000;

/// The contacts among the members of `conversation` at these versions,
/// from the cache or the database (three small reads, after a membership or
/// contact change only).
pub(crate) fn contacts_at<C: SqlConnection>(
    c: &mut C,
    cache: &ContactCache,
    conversation: i64,
    versions: (i64, i64),
    members: &[UserId],
) -> StoreResult<Arc<ConvContacts>> {
    if let Some((v, entry)) = cache.lock().get(&conversation)
        && *v == versions
    {
        return Ok(entry.clone());
    }
    let kind: i32 = conversations::table
        .find(conversation)
        .select(conversations::kind)
        .first_row(c)?;
    let of_members = || {
        members::table
            .filter(members::conversation_id.eq(conversation))
            .select(members::user_id)
    };
    let rows: Vec<(i64, i64)> = blocks::table
        .filter(blocks::blocker.eq_any(of_members()))
        .filter(blocks::blocked.eq_any(of_members()))
        .order((blocks::blocker.asc(), blocks::blocked.asc()))
        .select((blocks::blocker, blocks::blocked))
        .rows(c)?;
    let direct = kind == v1::ConversationKind::Direct as i32;
    let friends = match members {
        [a, b] if direct => are_friends(c, *a, *b)?,
        _ => true,
    };
    let entry = Arc::new(ConvContacts {
        direct,
        blocks: rows.into_iter().map(|(a, b)| (a as u64, b as u64)).collect(),
        friends,
    });
    let mut cache = cache.lock();
    if cache.len() >= CONTACT_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(conversation, (versions, entry.clone()));
    Ok(entry)
}

/// Records `message` as hidden from `users` (they block its sender): no
/// private version, as nothing was deleted by them.
pub(crate) fn hide_from<C: SqlConnection>(
    c: &mut C,
    conversation: i64,
    message: i64,
    users: &[UserId],
) -> StoreResult<()> {
    for &user in users {
        diesel::insert_into(hidden_messages::table)
            .values((
                hidden_messages::user_id.eq(user as i64),
                hidden_messages::message_id.eq(message),
                hidden_messages::conversation_id.eq(conversation),
                hidden_messages::private_version.eq(0i64),
            ))
            .on_conflict_do_nothing()
            .run(c)?;
    }
    Ok(())
}

/// The members `message` was hidden from when stored (they blocked its
/// sender), ascending.
pub(crate) fn hidden_from_message<C: SqlConnection>(
    c: &mut C,
    message: i64,
    members: &[UserId],
) -> StoreResult<Vec<UserId>> {
    let mut users: Vec<UserId> = hidden_messages::table
        .filter(hidden_messages::message_id.eq(message))
        .filter(hidden_messages::private_version.eq(0i64))
        .select(hidden_messages::user_id)
        .rows::<i64, _>(c)?
        .into_iter()
        .map(|u| u as u64)
        .filter(|u| members.binary_search(u).is_ok())
        .collect();
    users.sort_unstable();
    Ok(users)
}

fn are_friends<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<bool> {
    Ok(friends::table
        .find((a as i64, b as i64))
        .select(friends::since)
        .first_row::<i64, _>(c)
        .optional()?
        .is_some())
}

fn blocks_user<C: SqlConnection>(c: &mut C, blocker: UserId, blocked: UserId) -> StoreResult<bool> {
    Ok(blocks::table
        .find((blocker as i64, blocked as i64))
        .select(blocks::created_at)
        .first_row::<i64, _>(c)
        .optional()?
        .is_some())
}

/// Refuses a new direct conversation between users with a block.
pub(crate) fn check_new_direct<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<()> {
    if a != b && (blocks_user(c, a, b)? || blocks_user(c, b, a)?) {
        return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
    }
    Ok(())
}

/// The conversations both users are members of, ascending: those whose
/// `contact_version` a change between them bumps.
pub(crate) fn shared_conversations<C: SqlConnection>(
    c: &mut C,
    a: UserId,
    b: UserId,
) -> StoreResult<Vec<u64>> {
    let of = |c: &mut C, user: UserId| -> StoreResult<Vec<i64>> {
        Ok(members::table
            .filter(members::user_id.eq(user as i64))
            .order(members::conversation_id.asc())
            .select(members::conversation_id)
            .rows(c)?)
    };
    let theirs: std::collections::HashSet<i64> = of(c, b)?.into_iter().collect();
    Ok(of(c, a)?
        .into_iter()
        .filter(|id| theirs.contains(id))
        .map(|id| id as u64)
        .collect())
}

/// Bumps the `contact_version` of every conversation `a` and `b` share,
/// read again here (the caller locked those it knew of).
fn bump_shared<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<()> {
    let shared = ids(&shared_conversations(c, a, b)?);
    for chunk in shared.chunks(CHUNK) {
        diesel::update(conversations::table.filter(conversations::id.eq_any(chunk)))
            .set(conversations::contact_version.eq(conversations::contact_version + 1))
            .run(c)?;
    }
    Ok(())
}

type RequestRow = (i64, i64, String, i32, i64, i64);

const REQUEST: (
    friend_requests::from_user,
    friend_requests::to_user,
    friend_requests::message,
    friend_requests::state,
    friend_requests::created_at,
    friend_requests::updated_at,
) = (
    friend_requests::from_user,
    friend_requests::to_user,
    friend_requests::message,
    friend_requests::state,
    friend_requests::created_at,
    friend_requests::updated_at,
);

fn record((from, to, message, state, created_at, updated_at): RequestRow) -> FriendRequestRecord {
    FriendRequestRecord {
        from: from as u64,
        to: to as u64,
        message,
        state: v1::FriendRequestState::try_from(state).unwrap_or(v1::FriendRequestState::Pending),
        created_at,
        updated_at,
    }
}

fn request<C: SqlConnection>(
    c: &mut C,
    from: UserId,
    to: UserId,
) -> StoreResult<Option<FriendRequestRecord>> {
    Ok(friend_requests::table
        .find((from as i64, to as i64))
        .select(REQUEST)
        .first_row::<RequestRow, _>(c)
        .optional()?
        .map(record))
}

fn set_state<C: SqlConnection>(
    c: &mut C,
    from: UserId,
    to: UserId,
    state: v1::FriendRequestState,
    at: i64,
) -> StoreResult<()> {
    diesel::update(friend_requests::table.find((from as i64, to as i64)))
        .set((
            friend_requests::state.eq(state as i32),
            friend_requests::updated_at.eq(at),
        ))
        .run(c)?;
    Ok(())
}

fn befriend<C: SqlConnection>(c: &mut C, a: UserId, b: UserId, at: i64) -> StoreResult<()> {
    for (user, friend) in [(a, b), (b, a)] {
        diesel::insert_into(friends::table)
            .values((
                friends::user_id.eq(user as i64),
                friends::friend_id.eq(friend as i64),
                friends::since.eq(at),
            ))
            .on_conflict_do_nothing()
            .run(c)?;
    }
    bump_shared(c, a, b)
}

/// Ends a friendship (and its requests); true if there was one.
fn end_friendship<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<bool> {
    let (a, b) = (a as i64, b as i64);
    let n = diesel::delete(
        friends::table.filter(
            (friends::user_id.eq(a).and(friends::friend_id.eq(b)))
                .or(friends::user_id.eq(b).and(friends::friend_id.eq(a))),
        ),
    )
    .run(c)?;
    if n > 0 {
        drop_requests(c, a as u64, b as u64)?;
    }
    Ok(n > 0)
}

/// Deletes the requests between two users, both ways.
fn drop_requests<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<()> {
    let (a, b) = (a as i64, b as i64);
    diesel::delete(
        friend_requests::table.filter(
            (friend_requests::from_user
                .eq(a)
                .and(friend_requests::to_user.eq(b)))
            .or(friend_requests::from_user
                .eq(b)
                .and(friend_requests::to_user.eq(a))),
        ),
    )
    .run(c)?;
    Ok(())
}

/// `user` and `other` differ and `other` exists.
fn known_other<C: SqlConnection>(c: &mut C, user: UserId, other: UserId) -> StoreResult<()> {
    if user == other {
        return Err(StoreError::Invalid("not with yourself".into()));
    }
    let found: Option<i64> = users::table
        .find(other as i64)
        .select(users::id)
        .first_row(c)
        .optional()?;
    found.ok_or_else(|| StoreError::NotFound(format!("user {other}")))?;
    Ok(())
}

/// See `Store::send_friend_request`.
pub(crate) fn send_friend_request<C: SqlConnection>(
    c: &mut C,
    new: &NewFriendRequest,
) -> StoreResult<FriendRequestRecord> {
    let (from, to, at) = (new.from, new.to, new.at);
    known_other(c, from, to)?;
    if blocks_user(c, to, from)? {
        return Err(StoreError::Forbidden(CANNOT_MESSAGE.into()));
    }
    if blocks_user(c, from, to)? {
        return Err(StoreError::Forbidden(YOU_BLOCKED.into()));
    }
    if are_friends(c, from, to)? {
        return Err(StoreError::Conflict(format!("already friends with user {to}")));
    }
    let pending = |r: &Option<FriendRequestRecord>| {
        r.as_ref()
            .is_some_and(|r| r.state == v1::FriendRequestState::Pending)
    };
    let mine = request(c, from, to)?;
    if pending(&mine) {
        return Err(StoreError::Conflict(format!(
            "a friend request to user {to} is already pending"
        )));
    }
    let mutual = pending(&request(c, to, from)?);
    let state = if mutual {
        v1::FriendRequestState::Accepted
    } else {
        v1::FriendRequestState::Pending
    };
    if mine.is_some() {
        diesel::delete(friend_requests::table.find((from as i64, to as i64))).run(c)?;
    }
    diesel::insert_into(friend_requests::table)
        .values((
            friend_requests::from_user.eq(from as i64),
            friend_requests::to_user.eq(to as i64),
            friend_requests::message.eq(&new.message),
            friend_requests::state.eq(state as i32),
            friend_requests::created_at.eq(at),
            friend_requests::updated_at.eq(at),
        ))
        .run(c)?;
    if mutual {
        set_state(c, to, from, v1::FriendRequestState::Accepted, at)?;
        befriend(c, from, to, at)?;
    }
    Ok(FriendRequestRecord {
        from,
        to,
        message: new.message.clone(),
        state,
        created_at: at,
        updated_at: at,
    })
}

/// See `Store::respond_friend_request`.
pub(crate) fn respond_friend_request<C: SqlConnection>(
    c: &mut C,
    from: UserId,
    to: UserId,
    accept: bool,
    at: i64,
) -> StoreResult<FriendRequestRecord> {
    let mut found = request(c, from, to)?
        .filter(|r| r.state == v1::FriendRequestState::Pending)
        .ok_or_else(|| StoreError::NotFound(format!("no pending friend request from user {from}")))?;
    found.state = if accept {
        v1::FriendRequestState::Accepted
    } else {
        v1::FriendRequestState::Declined
    };
    found.updated_at = at;
    set_state(c, from, to, found.state, at)?;
    if accept {
        befriend(c, from, to, at)?;
    }
    Ok(found)
}

/// See `Store::remove_friend`.
pub(crate) fn remove_friend<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    other: UserId,
) -> StoreResult<ContactRemoved> {
    if end_friendship(c, user, other)? {
        bump_shared(c, user, other)?;
        return Ok(ContactRemoved::Friendship);
    }
    let n = diesel::delete(
        friend_requests::table
            .find((user as i64, other as i64))
            .filter(friend_requests::state.eq(v1::FriendRequestState::Pending as i32)),
    )
    .run(c)?;
    if n > 0 {
        return Ok(ContactRemoved::Request);
    }
    Err(StoreError::NotFound(format!(
        "no friendship with, nor pending request to, user {other}"
    )))
}

/// See `Store::friends`.
pub(crate) fn friends_of<C: SqlConnection>(c: &mut C, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
    let rows: Vec<(i64, i64)> = friends::table
        .filter(friends::user_id.eq(user as i64))
        .order((friends::since.desc(), friends::friend_id.asc()))
        .select((friends::friend_id, friends::since))
        .rows(c)?;
    Ok(rows.into_iter().map(|(f, s)| (f as u64, s)).collect())
}

/// See `Store::friend_requests`.
pub(crate) fn friend_requests<C: SqlConnection>(
    c: &mut C,
    user: UserId,
) -> StoreResult<Vec<FriendRequestRecord>> {
    let user = user as i64;
    let rows: Vec<RequestRow> = friend_requests::table
        .filter(
            friend_requests::from_user
                .eq(user)
                .or(friend_requests::to_user.eq(user)),
        )
        .order((
            friend_requests::updated_at.desc(),
            friend_requests::from_user.asc(),
            friend_requests::to_user.asc(),
        ))
        .select(REQUEST)
        .rows(c)?;
    Ok(rows.into_iter().map(record).collect())
}

/// See `Store::block_user`.
pub(crate) fn block_user<C: SqlConnection>(
    c: &mut C,
    blocker: UserId,
    blocked: UserId,
    at: i64,
) -> StoreResult<BlockOutcome> {
    known_other(c, blocker, blocked)?;
    if blocks_user(c, blocker, blocked)? {
        return Err(StoreError::Conflict(format!("user {blocked} is already blocked")));
    }
    let ended_friendship = end_friendship(c, blocker, blocked)?;
    let withdrew_request =
        request(c, blocker, blocked)?.is_some_and(|r| r.state == v1::FriendRequestState::Pending);
    drop_requests(c, blocker, blocked)?;
    diesel::insert_into(blocks::table)
        .values((
            blocks::blocker.eq(blocker as i64),
            blocks::blocked.eq(blocked as i64),
            blocks::created_at.eq(at),
        ))
        .run(c)?;
    bump_shared(c, blocker, blocked)?;
    Ok(BlockOutcome {
        ended_friendship,
        withdrew_request,
    })
}

/// See `Store::unblock_user`.
pub(crate) fn unblock_user<C: SqlConnection>(c: &mut C, blocker: UserId, blocked: UserId) -> StoreResult<()> {
    let n = diesel::delete(blocks::table.find((blocker as i64, blocked as i64))).run(c)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("user {blocked} is not blocked")));
    }
    bump_shared(c, blocker, blocked)
}

/// See `Store::blocked_users`.
pub(crate) fn blocked_users<C: SqlConnection>(c: &mut C, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
    let rows: Vec<(i64, i64)> = blocks::table
        .filter(blocks::blocker.eq(user as i64))
        .order((blocks::created_at.desc(), blocks::blocked.asc()))
        .select((blocks::blocked, blocks::created_at))
        .rows(c)?;
    Ok(rows.into_iter().map(|(b, at)| (b as u64, at)).collect())
}

/// See `Store::block_relations`.
pub(crate) fn block_relations<C: SqlConnection>(c: &mut C, user: UserId) -> StoreResult<BlockRelations> {
    let user = user as i64;
    let rows: Vec<(i64, i64)> = blocks::table
        .filter(blocks::blocker.eq(user).or(blocks::blocked.eq(user)))
        .select((blocks::blocker, blocks::blocked))
        .rows(c)?;
    let mut out = BlockRelations::default();
    for (blocker, blocked) in rows {
        if blocker == user {
            out.blocks.push(blocked as u64);
        } else {
            out.blocked_by.push(blocker as u64);
        }
    }
    out.blocks.sort_unstable();
    out.blocked_by.sort_unstable();
    Ok(out)
}

/// See `Store::contact_state`.
pub(crate) fn contact_state<C: SqlConnection>(c: &mut C, a: UserId, b: UserId) -> StoreResult<ContactState> {
    Ok(ContactState {
        friends: are_friends(c, a, b)?,
        a_blocks_b: blocks_user(c, a, b)?,
        b_blocks_a: blocks_user(c, b, a)?,
    })
}
