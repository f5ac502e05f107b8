//! Conversations and members.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::{StoreError, StoreResult, direct_new, muted_message};
use diesel::prelude::{ExpressionMethods, JoinOnDsl, OptionalExtension, QueryDsl};
use im_protocol::v1;
use std::sync::Arc;

/// Member lists by conversation, tagged with the `member_version` they were
/// read at. Every membership change (roles and mutes included) bumps
/// `member_version` in the database, so a list is used only while it is
/// current, whichever node changed it.
pub(crate) type MemberCache =
    Arc<parking_lot::Mutex<std::collections::HashMap<i64, (i64, Arc<CachedMembers>)>>>;

/// The members of a conversation at one member list version, with what the
/// sending rule needs: who manages it and who is muted. Read with the list,
/// in the same query, so checking a sender costs no round trip.
#[derive(Debug)]
pub(crate) struct CachedMembers {
    /// Every member, ascending.
    pub(crate) ids: Arc<[UserId]>,
    /// Owners and admins, ascending.
    managers: Box<[UserId]>,
    /// Members muted until a time, ascending by user.
    muted: Box<[(UserId, i64)]>,
}

impl CachedMembers {
    fn from_rows(rows: Vec<(i64, i32, i64)>) -> Self {
        let mut ids = Vec::with_capacity(rows.len());
        let mut managers = Vec::new();
        let mut muted = Vec::new();
        for (user, role, until) in rows {
            let user = user as u64;
            ids.push(user);
            if role == v1::Role::Owner as i32 || role == v1::Role::Admin as i32 {
                managers.push(user);
            } else if until != 0 {
                muted.push((user, until));
            }
        }
        Self {
            ids: ids.into(),
            managers: managers.into(),
            muted: muted.into(),
        }
    }

    /// The sending rule ([`may_send`]) for `sender` at `now`:
    /// `NotMember`, `Forbidden`, or `Ok`.
    pub(crate) fn check_sender(
        &self,
        conversation: ConversationId,
        sender: UserId,
        members_muted: bool,
        now: i64,
    ) -> StoreResult<()> {
        if self.ids.binary_search(&sender).is_err() {
            return Err(StoreError::NotMember(conversation));
        }
        let role = if self.managers.binary_search(&sender).is_ok() {
            v1::Role::Admin
        } else {
            v1::Role::Member
        };
        let until = self
            .muted
            .binary_search_by_key(&sender, |&(u, _)| u)
            .map_or(0, |i| self.muted[i].1);
        if may_send(role, until, members_muted, now) {
            Ok(())
        } else {
            Err(StoreError::Forbidden(muted_message(
                conversation,
                members_muted,
                until,
            )))
        }
    }
}

/// Most conversations whose member lists are cached; past it the cache starts over.
const MEMBER_CACHE_ENTRIES: usize = 100_000;
/// Inserts a conversation with its first members; `key` is the direct key.
fn insert_conversation<C: SqlConnection>(
    c: &mut C,
    new: &NewConversation,
    key: Option<&str>,
    members_in: &[(UserId, v1::Role)],
) -> StoreResult<ConversationRecord> {
    let now = new.created_at;
    let id: i64 = diesel::insert_into(conversations::table)
        .values((
            conversations::kind.eq(new.kind as i32),
            conversations::title.eq(&new.title),
            conversations::ephemeral.eq(new.ephemeral),
            conversations::created_by.eq(new.created_by as i64),
            conversations::created_at.eq(now),
            conversations::member_count.eq(members_in.len() as i32),
            conversations::direct_key.eq(key),
            conversations::join_policy.eq(ConversationRecord::default_join_policy(new.kind) as i32),
        ))
        .returning(conversations::id)
        .row(c)?;
    for &(user, role) in members_in {
        diesel::insert_into(members::table)
            .values((
                members::conversation_id.eq(id),
                members::user_id.eq(user as i64),
                members::role.eq(role as i32),
                members::joined_at.eq(now),
            ))
            .run(c)?;
    }
    Ok(conversations::table
        .find(id)
        .select(CONVERSATION)
        .first_row::<ConvRow, _>(c)?
        .into())
}

pub(crate) fn create_conversation<C: SqlConnection>(
    c: &mut C,
    new: &NewConversation,
) -> StoreResult<ConversationRecord> {
    let mut list = vec![(new.created_by, v1::Role::Owner)];
    for &m in &new.members {
        if !list.iter().any(|&(u, _)| u == m) {
            list.push((m, v1::Role::Member));
        }
    }
    insert_conversation(c, new, None, &list)
}

pub(crate) fn direct_by_key<C: SqlConnection>(
    c: &mut C,
    key: &str,
) -> StoreResult<Option<ConversationRecord>> {
    Ok(conversations::table
        .filter(conversations::direct_key.eq(key))
        .select(CONVERSATION)
        .first_row::<ConvRow, _>(c)
        .optional()?
        .map(Into::into))
}

/// The direct conversation of `a` and `b` under `key`, created if missing.
pub(crate) fn direct_conversation<C: SqlConnection>(
    c: &mut C,
    a: UserId,
    b: UserId,
    key: &str,
    now: i64,
) -> StoreResult<ConversationRecord> {
    if let Some(existing) = direct_by_key(c, key)? {
        return Ok(existing);
    }
    super::contacts::check_new_direct(c, a, b)?;
    let list: Vec<_> = if a == b {
        vec![(a, v1::Role::Member)]
    } else {
        vec![(a, v1::Role::Member), (b, v1::Role::Member)]
    };
    insert_conversation(c, &direct_new(a, now), Some(key), &list)
}

pub(crate) fn conversation<C: SqlConnection>(
    c: &mut C,
    id: ConversationId,
) -> StoreResult<Option<ConversationRecord>> {
    Ok(conversations::table
        .find(id as i64)
        .select(CONVERSATION)
        .first_row::<ConvRow, _>(c)
        .optional()?
        .map(Into::into))
}

pub(crate) fn delete_conversation<C: SqlConnection>(c: &mut C, id: ConversationId) -> StoreResult<()> {
    let id = id as i64;
    let indexed: Vec<(i64, Vec<u8>)> = messages::table
        .filter(messages::conversation_id.eq(id))
        .filter(messages::recalled_at.eq(0))
        .select((messages::id, messages::content))
        .rows(c)?;
    for (message, content) in indexed {
        let content = <v1::Content as prost::Message>::decode(&content[..]).unwrap_or_default();
        super::search::unindex_content(c, message, &content)?;
    }
    let of_conversation = messages::table
        .filter(messages::conversation_id.eq(id))
        .select(messages::id);
    diesel::delete(message_edits::table.filter(message_edits::message_id.eq_any(of_conversation))).run(c)?;
    diesel::delete(reactions::table.filter(reactions::message_id.eq_any(of_conversation))).run(c)?;
    diesel::delete(hidden_messages::table.filter(hidden_messages::conversation_id.eq(id))).run(c)?;
    diesel::delete(mentions::table.filter(mentions::conversation_id.eq(id))).run(c)?;
    diesel::delete(thread_reads::table.filter(thread_reads::conversation_id.eq(id))).run(c)?;
    diesel::delete(messages::table.filter(messages::conversation_id.eq(id))).run(c)?;
    diesel::delete(file_shares::table.filter(file_shares::conversation_id.eq(id))).run(c)?;
    diesel::delete(members::table.filter(members::conversation_id.eq(id))).run(c)?;
    diesel::delete(bans::table.filter(bans::conversation_id.eq(id))).run(c)?;
    diesel::delete(invitations::table.filter(invitations::conversation_id.eq(id))).run(c)?;
    diesel::delete(join_requests::table.filter(join_requests::conversation_id.eq(id))).run(c)?;
    diesel::delete(conversations::table.find(id)).run(c)?;
    Ok(())
}

pub(crate) fn rename_conversation<C: SqlConnection>(
    c: &mut C,
    id: ConversationId,
    title: &str,
) -> StoreResult<()> {
    let n = diesel::update(conversations::table.find(id as i64))
        .set(conversations::title.eq(title))
        .run(c)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("conversation {id}")));
    }
    Ok(())
}

pub(crate) fn list_rooms<C: SqlConnection>(c: &mut C, limit: u32) -> StoreResult<Vec<ConversationRecord>> {
    let rows: Vec<ConvRow> = conversations::table
        .filter(conversations::kind.eq(v1::ConversationKind::Room as i32))
        .order((conversations::member_count.desc(), conversations::id.asc()))
        .limit(limit as i64)
        .select(CONVERSATION)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

// ------------------------------------------------------------ members

pub(crate) fn member<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
) -> StoreResult<Option<MemberRecord>> {
    Ok(members::table
        .find((conversation as i64, user as i64))
        .select(MEMBER)
        .first_row::<MemberRow, _>(c)
        .optional()?
        .map(Into::into))
}

pub(crate) fn members<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
) -> StoreResult<Vec<MemberRecord>> {
    let rows: Vec<MemberRow> = members::table
        .filter(members::conversation_id.eq(conversation as i64))
        .order(members::user_id.asc())
        .select(MEMBER)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The member list and the version it is at: the version is read before and
/// after the list, and the read repeated if a change came in between.
pub(crate) fn member_list<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
) -> StoreResult<Option<(u64, Arc<[UserId]>)>> {
    let version = |c: &mut C| -> StoreResult<Option<i64>> {
        conversations::table
            .find(conversation as i64)
            .select(conversations::member_version)
            .row(c)
            .optional()
            .map_err(Into::into)
    };
    for _ in 0..8 {
        let Some(before) = version(c)? else {
            return Ok(None);
        };
        let ids: Vec<i64> = members::table
            .filter(members::conversation_id.eq(conversation as i64))
            .order(members::user_id.asc())
            .select(members::user_id)
            .rows(c)?;
        if version(c)? == Some(before) {
            let list: Arc<[UserId]> = ids.into_iter().map(|i| i as u64).collect::<Vec<_>>().into();
            return Ok(Some((before as u64, list)));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the members of conversation {conversation} keep changing"
    )))
}

pub(crate) fn user_conversations<C: SqlConnection>(
    c: &mut C,
    user: UserId,
) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
    let rows: Vec<(ConvRow, MemberRow)> = conversations::table
        .inner_join(members::table.on(members::conversation_id.eq(conversations::id)))
        .filter(members::user_id.eq(user as i64))
        .order(conversations::id.asc())
        .select((CONVERSATION, MEMBER))
        .rows(c)?;
    Ok(rows.into_iter().map(|(a, b)| (a.into(), b.into())).collect())
}

pub(crate) fn user_conversations_in<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    after: ConversationId,
    until: Option<ConversationId>,
    limit: Option<usize>,
) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
    // Ids are stored as i64: anything above i64::MAX is no bound at all.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let until = until.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    if until <= after || limit == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<(ConvRow, MemberRow)> = conversations::table
        .inner_join(members::table.on(members::conversation_id.eq(conversations::id)))
        .filter(members::user_id.eq(user as i64))
        .filter(members::conversation_id.gt(after))
        .filter(members::conversation_id.le(until))
        .order(members::conversation_id.asc())
        .limit(limit)
        .select((CONVERSATION, MEMBER))
        .rows(c)?;
    Ok(rows.into_iter().map(|(a, b)| (a.into(), b.into())).collect())
}

pub(crate) fn members_of<C: SqlConnection>(
    c: &mut C,
    conversations: &[ConversationId],
) -> StoreResult<Vec<(ConversationId, UserId)>> {
    let mut list = ids(conversations);
    list.sort_unstable();
    list.dedup();
    let mut out = Vec::new();
    for chunk in list.chunks(CHUNK) {
        let rows: Vec<(i64, i64)> = members::table
            .filter(members::conversation_id.eq_any(chunk))
            .order((members::conversation_id.asc(), members::user_id.asc()))
            .select((members::conversation_id, members::user_id))
            .rows(c)?;
        out.extend(rows.into_iter().map(|(conv, user)| (conv as u64, user as u64)));
    }
    Ok(out)
}

/// Adds a member unless they already are one (then their role stays).
pub(super) fn insert_member_if_absent<C: SqlConnection>(
    c: &mut C,
    conversation: i64,
    user: i64,
    role: i32,
    joined_at: i64,
) -> StoreResult<()> {
    diesel::insert_into(members::table)
        .values((
            members::conversation_id.eq(conversation),
            members::user_id.eq(user),
            members::role.eq(role),
            members::joined_at.eq(joined_at),
        ))
        .on_conflict_do_nothing()
        .run(c)?;
    Ok(())
}

/// The members of a conversation at `member_version`, with their roles and
/// mutes, from the cache or the database (one query).
pub(super) fn members_at<C: SqlConnection>(
    c: &mut C,
    cache: &MemberCache,
    conversation: i64,
    member_version: i64,
) -> StoreResult<Arc<CachedMembers>> {
    if let Some((v, list)) = cache.lock().get(&conversation)
        && *v == member_version
    {
        return Ok(list.clone());
    }
    let rows: Vec<(i64, i32, i64)> = members::table
        .filter(members::conversation_id.eq(conversation))
        .order(members::user_id.asc())
        .select((members::user_id, members::role, members::send_muted_until))
        .rows(c)?;
    let list = Arc::new(CachedMembers::from_rows(rows));
    let mut cache = cache.lock();
    if cache.len() >= MEMBER_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(conversation, (member_version, list.clone()));
    Ok(list)
}
