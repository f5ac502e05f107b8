//! Messages: the append (sending path), reads of history and of the change
//! log (as one member sees them), last messages, unread counts, cursors.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::after_cursors::AfterCursors;
use super::changes::{deleted_after, stub_hidden};
use super::contacts::{ContactCache, contacts_at, hide_from};
use super::conversations::{MemberCache, members_at};
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::expiry;
use crate::store::mentions::mentioned_members;
use crate::store::{StoreError, StoreResult};
use diesel::dsl::count_star;
use diesel::prelude::{BoolExpressionMethods, ExpressionMethods, JoinOnDsl, OptionalExtension, QueryDsl};
use im_protocol::v1;
use std::sync::Arc;

/// A message stored earlier by `sender` with `client_msg_id`.
pub(crate) fn message_by_client_id<C: SqlConnection>(
    c: &mut C,
    sender: i64,
    client_msg_id: &str,
) -> StoreResult<Option<MessageRow>> {
    Ok(messages::table
        .filter(messages::sender_id.eq(sender))
        .filter(messages::client_msg_id.eq(client_msg_id))
        .select(MESSAGE)
        .first_row::<MessageRow, _>(c)
        .optional()?)
}

/// The sending path, inside a writer batch: dedup, membership change, the
/// next seq and version (the row lock that orders writers of a
/// conversation), authorization, insert. See the `Store` trait docs.
pub(crate) fn append_message<C: SqlConnection>(
    c: &mut C,
    cache: &MemberCache,
    contact_cache: &ContactCache,
    new: NewMessage,
) -> StoreResult<Appended> {
    let conv_id = new.conversation_id as i64;
    if let Some(cid) = &new.client_msg_id
        && let Some(row) = message_by_client_id(c, new.sender_id as i64, cid)?
    {
        let member_count: i32 = conversations::table
            .find(row.conversation_id)
            .select(conversations::member_count)
            .first_row(c)
            .optional()?
            .unwrap_or(0);
        return Ok(Appended {
            message: row.into(),
            duplicate: true,
            member_count: member_count as u32,
            members: Arc::from(Vec::new()),
            member_version: 0,
            hidden_from: Vec::new(),
        });
    }
    if let Some(change) = &new.membership {
        super::admin::apply_membership(c, conv_id, change, new.created_at)?;
    }
    if let Some(ttl) = new.message_ttl {
        diesel::update(conversations::table.find(conv_id))
            .set(conversations::message_ttl_ms.eq(ttl))
            .run(c)?;
    }
    let returned = (
        conversations::last_seq,
        conversations::last_version,
        conversations::member_version,
        conversations::member_count,
        conversations::message_ttl_ms,
        conversations::members_muted,
        conversations::contact_version,
    );
    // Takes the row lock that orders every writer of this conversation.
    let bumped: Option<(i64, i64, i64, i32, i64, bool, i64)> = if new.membership.is_some() {
        let member_count: i64 = members::table
            .filter(members::conversation_id.eq(conv_id))
            .count()
            .row(c)?;
        diesel::update(conversations::table.find(conv_id))
            .set((
                conversations::last_seq.eq(conversations::last_seq + 1),
                conversations::last_version.eq(conversations::last_version + 1),
                conversations::member_count.eq(member_count as i32),
                conversations::member_version.eq(conversations::member_version + 1),
            ))
            .returning(returned)
            .row(c)
            .optional()?
    } else {
        diesel::update(conversations::table.find(conv_id))
            .set((
                conversations::last_seq.eq(conversations::last_seq + 1),
                conversations::last_version.eq(conversations::last_version + 1),
            ))
            .returning(returned)
            .row(c)
            .optional()?
    };
    let Some((seq, version, member_version, member_count, ttl, members_muted, contact_version)) = bumped
    else {
        return Err(StoreError::NotFound(format!("conversation {conv_id}")));
    };
    let cached = members_at(c, cache, conv_id, member_version)?;
    if new.sender_id != 0 {
        // A member who may send (roles and mutes come with the cached
        // list): else this rolls back to the savepoint, no seq is used.
        cached.check_sender(new.conversation_id, new.sender_id, members_muted, new.created_at)?;
    }
    let members = cached.ids.clone();
    // Blocks and friendship: cached with the versions just read, so a user
    // with no block costs no statement here.
    let contacts = contacts_at(
        c,
        contact_cache,
        conv_id,
        (member_version, contact_version),
        &members,
    )?;
    contacts.check_direct_send(new.sender_id, new.direct_needs_friendship)?;
    let hidden_from = contacts.blockers_of(new.sender_id);
    let file_ids = content_file_ids(&new.content);
    if !file_ids.is_empty() {
        // Rolls back with the savepoint if a file is missing: nothing stored.
        super::share_files(c, &file_ids, conv_id, new.created_at)?;
    }
    let mut message = v1::Message {
        id: 0,
        conversation_id: new.conversation_id,
        seq: seq as u64,
        version: version as u64,
        sender_id: new.sender_id,
        client_msg_id: new.client_msg_id.clone().unwrap_or_default(),
        created_at: new.created_at,
        forwarded: new.forwarded,
        expires_at: expiry(new.sender_id, new.created_at, ttl),
        ..Default::default()
    };
    attach_links(c, &new, &members, &mut message)?;
    let content = prost::Message::encode_to_vec(&new.content);
    let id: i64 = diesel::insert_into(messages::table)
        .values((
            messages::conversation_id.eq(conv_id),
            messages::seq.eq(seq),
            messages::version.eq(version),
            messages::sender_id.eq(new.sender_id as i64),
            messages::client_msg_id.eq(&new.client_msg_id),
            messages::created_at.eq(new.created_at),
            messages::content.eq(&content),
            messages::thread_root_id.eq(message.thread_root_id as i64),
            messages::meta.eq(encode_meta(&message)),
            messages::expires_at.eq(message.expires_at),
        ))
        .returning(messages::id)
        .row(c)?;
    // One row per mentioned user, or one for everyone (user 0).
    let mentioned = if message.mention_all {
        vec![0]
    } else {
        message.mention_user_ids.clone()
    };
    for user in mentioned {
        diesel::insert_into(mentions::table)
            .values((
                mentions::conversation_id.eq(conv_id),
                mentions::user_id.eq(user as i64),
                mentions::seq.eq(seq),
                mentions::sender_id.eq(new.sender_id as i64),
            ))
            .run(c)?;
    }
    super::search::index_content(c, id, conv_id, &new.content)?;
    if !hidden_from.is_empty() {
        hide_from(c, conv_id, id, &hidden_from)?;
    }
    message.id = id as u64;
    message.content = Some(new.content);
    Ok(Appended {
        message,
        duplicate: false,
        member_count: member_count as u32,
        members,
        member_version: member_version as u64,
        hidden_from,
    })
}

/// The reply, thread and mentions of a new message, checked against the
/// conversation: the quoted message and the thread root must be in it
/// (the root not itself in a thread); only members stay mentioned.
fn attach_links<C: SqlConnection>(
    c: &mut C,
    new: &NewMessage,
    members: &[UserId],
    message: &mut v1::Message,
) -> StoreResult<()> {
    let find = |c: &mut C, id: MessageId, what: &str| {
        super::changes::message(c, new.conversation_id, id)?.ok_or_else(|| {
            StoreError::NotFound(format!(
                "{what} {id} is not in conversation {}",
                new.conversation_id
            ))
        })
    };
    if let Some(id) = new.reply_to {
        let quoted = find(c, id, "quoted message")?;
        message.reply_to = Some(v1::ReplyRef {
            message_id: quoted.id,
            seq: quoted.seq,
            sender_id: quoted.sender_id,
        });
    }
    if let Some(id) = new.thread_root {
        if find(c, id, "thread root")?.thread_root_id != 0 {
            return Err(StoreError::Invalid(format!(
                "message {id} is a reply in a thread: reply in its root's thread"
            )));
        }
        message.thread_root_id = id;
    }
    message.mention_user_ids = mentioned_members(&new.mentions, members);
    message.mention_all = new.mention_all;
    Ok(())
}

/// See `Store::expired_messages`.
pub(crate) fn expired_messages<C: SqlConnection>(
    c: &mut C,
    now: i64,
    limit: u32,
) -> StoreResult<Vec<(ConversationId, MessageId)>> {
    let rows: Vec<(i64, i64)> = messages::table
        .filter(messages::expires_at.ne(0))
        .filter(messages::expires_at.le(now))
        .filter(messages::recalled_at.eq(0))
        .order(messages::expires_at.asc())
        .limit(limit as i64)
        .select((messages::conversation_id, messages::id))
        .rows(c)?;
    Ok(rows.into_iter().map(|(c, m)| (c as u64, m as u64)).collect())
}

pub(crate) fn history<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    viewer: UserId,
    page: Page,
    limit: u32,
) -> StoreResult<Vec<v1::Message>> {
    let base = messages::table
        .filter(messages::conversation_id.eq(conversation as i64))
        .select(MESSAGE)
        .limit(limit as i64);
    let mut page = match page {
        Page::Before(before) => {
            let before = if before == 0 { i64::MAX } else { before as i64 };
            let mut rows = messages_of(
                base.filter(messages::seq.lt(before))
                    .order(messages::seq.desc())
                    .rows(c)?,
            );
            rows.reverse();
            rows
        }
        Page::After(after) => messages_of(
            base.filter(messages::seq.gt(after as i64))
                .order(messages::seq.asc())
                .rows(c)?,
        ),
    };
    stub_hidden(c, viewer, &mut page)?;
    Ok(page)
}

pub(crate) fn changes<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    viewer: UserId,
    after_version: u64,
    after_private_version: u64,
    limit: u32,
) -> StoreResult<ChangePage> {
    let limit = limit.max(1) as usize;
    let mut messages = messages_of(
        messages::table
            .filter(messages::conversation_id.eq(conversation as i64))
            .filter(messages::version.gt(after_version as i64))
            .order(messages::version.asc())
            .limit(limit as i64 + 1)
            .select(MESSAGE)
            .rows(c)?,
    );
    let covered_to = (messages.len() > limit).then(|| messages[limit - 1].version);
    messages.truncate(limit);
    stub_hidden(c, viewer, &mut messages)?;
    let (deleted, private_version) = deleted_after(c, conversation, viewer, after_private_version)?;
    Ok(ChangePage {
        messages,
        covered_to,
        deleted,
        private_version,
    })
}

pub(crate) fn unread_count<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
    after_seq: u64,
) -> StoreResult<u64> {
    let n: i64 = messages::table
        .filter(messages::conversation_id.eq(conversation as i64))
        .filter(messages::seq.gt(after_seq as i64))
        .filter(messages::sender_id.ne(user as i64))
        .filter(messages::recalled_at.eq(0))
        .filter(messages::thread_root_id.eq(0))
        .filter(
            messages::id.ne_all(
                hidden_messages::table
                    .filter(hidden_messages::conversation_id.eq(conversation as i64))
                    .filter(hidden_messages::user_id.eq(user as i64))
                    .select(hidden_messages::message_id),
            ),
        )
        .count()
        .row(c)?;
    Ok(n as u64)
}

/// The message at `last_seq` of each conversation: one indexed look-up each
/// on `(conversation_id, seq)`.
pub(crate) fn last_messages<C: SqlConnection>(
    c: &mut C,
    viewer: UserId,
    conversations: &[ConversationId],
) -> StoreResult<Vec<v1::Message>> {
    let mut list = ids(conversations);
    list.sort_unstable();
    list.dedup();
    let mut out = Vec::with_capacity(list.len());
    for chunk in list.chunks(CHUNK) {
        let rows: Vec<MessageRow> = messages::table
            .inner_join(
                conversations::table.on(conversations::id
                    .eq(messages::conversation_id)
                    .and(conversations::last_seq.eq(messages::seq))),
            )
            .filter(conversations::id.eq_any(chunk))
            .select(MESSAGE)
            .rows(c)?;
        out.extend(rows.into_iter().map(v1::Message::from));
    }
    stub_hidden(c, viewer, &mut out)?;
    Ok(out)
}

/// One `GROUP BY` query per chunk of conversations, each conversation with
/// its own cursor (see [`AfterCursors`]).
pub(crate) fn unread_counts<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    cursors: &[(ConversationId, u64)],
) -> StoreResult<Vec<(ConversationId, u64)>> {
    // A conversation listed twice counts from its lowest cursor.
    let mut lowest = std::collections::BTreeMap::new();
    for &(id, after_seq) in cursors {
        let e = lowest.entry(id as i64).or_insert(after_seq as i64);
        *e = (*e).min(after_seq as i64);
    }
    let lowest: Vec<(i64, i64)> = lowest.into_iter().collect();
    let mut out = Vec::new();
    // Two parameters per conversation.
    for chunk in lowest.chunks(CHUNK / 2) {
        let conversations: Vec<i64> = chunk.iter().map(|&(id, _)| id).collect();
        let rows: Vec<(i64, i64)> = messages::table
            .filter(messages::sender_id.ne(user as i64))
            .filter(messages::recalled_at.eq(0))
            .filter(messages::thread_root_id.eq(0))
            .filter(
                messages::id.ne_all(
                    hidden_messages::table
                        .filter(hidden_messages::conversation_id.eq_any(conversations))
                        .filter(hidden_messages::user_id.eq(user as i64))
                        .select(hidden_messages::message_id),
                ),
            )
            .filter(AfterCursors::new(chunk, messages::conversation_id, messages::seq))
            .group_by(messages::conversation_id)
            .select((messages::conversation_id, count_star()))
            .rows(c)?;
        out.extend(rows.into_iter().map(|(conv, n)| (conv as u64, n as u64)));
    }
    Ok(out)
}

pub(crate) fn advance_cursors<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
    read: Option<u64>,
    delivered: Option<u64>,
) -> StoreResult<MemberRecord> {
    let key = (conversation as i64, user as i64);
    let current: MemberRow = members::table
        .find(key)
        .select(MEMBER)
        .first_row(c)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {user} is not a member of {conversation}")))?;
    let last: i64 = conversations::table
        .find(conversation as i64)
        .select(conversations::last_seq)
        .first_row(c)?;
    let read_seq = read.map_or(current.read_seq, |r| current.read_seq.max((r as i64).min(last)));
    let delivered_seq = delivered
        .map_or(current.delivered_seq, |d| {
            current.delivered_seq.max((d as i64).min(last))
        })
        .max(read_seq);
    // Reading clears "marked unread".
    let marked_unread = current.marked_unread && read.is_none();
    let row: MemberRow = diesel::update(members::table.find(key))
        .set((
            members::read_seq.eq(read_seq),
            members::delivered_seq.eq(delivered_seq),
            members::marked_unread.eq(marked_unread),
        ))
        .returning(MEMBER)
        .row(c)?;
    Ok(row.into())
}

pub(crate) fn set_member_settings<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
    settings: MemberSettings,
) -> StoreResult<Option<MemberRecord>> {
    let row: Option<MemberRow> = diesel::update(members::table.find((conversation as i64, user as i64)))
        .set((
            members::pinned_at.eq(settings.pinned_at),
            members::muted_until.eq(settings.muted_until),
            members::archived.eq(settings.archived),
            members::marked_unread.eq(settings.marked_unread),
        ))
        .returning(MEMBER)
        .row(c)
        .optional()?;
    Ok(row.map(Into::into))
}
