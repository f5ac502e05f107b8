//! Changes to stored messages: edits, recalls and reactions (the
//! conversation's next version), deletions for one member (the member's
//! next private version), the edit history, and how a member sees what
//! they deleted (stubs).

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::conversations::{MemberCache, members_at};
use super::search::{index_content, unindex_content};
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::{StoreError, StoreResult, reactions as summary};
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use im_protocol::v1;
use prost::Message as _;
use std::collections::HashSet;

/// The member's row, or `NotMember`.
pub(super) fn member_of<C: SqlConnection>(c: &mut C, conversation: i64, user: i64) -> StoreResult<MemberRow> {
    members::table
        .find((conversation, user))
        .select(MEMBER)
        .first_row::<MemberRow, _>(c)
        .optional()?
        .ok_or(StoreError::NotMember(conversation as u64))
}

/// See `Store::message`.
pub(crate) fn message<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    id: MessageId,
) -> StoreResult<Option<v1::Message>> {
    let row: Option<MessageRow> = messages::table
        .find(id as i64)
        .filter(messages::conversation_id.eq(conversation as i64))
        .select(MESSAGE)
        .first_row(c)
        .optional()?;
    Ok(row.map(Into::into))
}

/// The writes of a change, given the message's new state.
type Write<C> = Box<dyn FnOnce(&mut C, &v1::Message) -> StoreResult<()>>;

/// See `Store::change_message`: the checks, then (if something changes)
/// the conversation's next version and the writes.
pub(crate) fn change_message<C: SqlConnection>(
    c: &mut C,
    cache: &MemberCache,
    change: MessageChange,
) -> StoreResult<Changed> {
    let conv_id = change.conversation_id as i64;
    let id = change.message_id as i64;
    if change.kind != ChangeKind::Expire {
        member_of(c, conv_id, change.actor as i64)?;
    }
    let mut next = message(c, change.conversation_id, change.message_id)?
        .ok_or_else(|| StoreError::NotFound(format!("message {id}")))?;
    let recalled = next.recalled_at != 0;
    // The writes, run once the change is known to change something.
    let write: Write<C> = match change.kind {
        ChangeKind::Edit(_) | ChangeKind::React { .. } | ChangeKind::Pin { pinned: true } if recalled => {
            return Err(StoreError::Conflict(format!("message {id} was recalled")));
        }
        ChangeKind::Edit(content) => {
            if next.content.as_ref() == Some(&content) {
                return unchanged(c, cache, conv_id, next);
            }
            let written_at = if next.edited_at != 0 {
                next.edited_at
            } else {
                next.created_at
            };
            let former_content = next.content.replace(content).unwrap_or_default();
            let former = former_content.encode_to_vec();
            next.edited_at = change.at;
            Box::new(move |c: &mut C, m: &v1::Message| {
                unindex_content(c, id, &former_content)?;
                index_content(
                    c,
                    id,
                    conv_id,
                    m.content.as_ref().unwrap_or(&v1::Content::default()),
                )?;
                diesel::insert_into(message_edits::table)
                    .values((
                        message_edits::message_id.eq(id),
                        message_edits::written_at.eq(written_at),
                        message_edits::content.eq(former),
                    ))
                    .run(c)?;
                let content = m.content.as_ref().map(|c| c.encode_to_vec()).unwrap_or_default();
                diesel::update(messages::table.find(id))
                    .set((
                        messages::content.eq(content),
                        messages::edited_at.eq(m.edited_at),
                        messages::version.eq(m.version as i64),
                    ))
                    .run(c)?;
                Ok(())
            })
        }
        ChangeKind::Recall | ChangeKind::Expire => {
            let expire = change.kind == ChangeKind::Expire;
            if recalled || (expire && (next.expires_at == 0 || next.expires_at > change.at)) {
                return unchanged(c, cache, conv_id, next);
            }
            let erased = next.content.clone().unwrap_or_default();
            next.content = None;
            next.edited_at = 0;
            next.reactions.clear();
            next.recalled_at = change.at;
            next.recalled_by = if expire { 0 } else { change.actor };
            next.reply_to = None;
            next.mention_user_ids.clear();
            next.mention_all = false;
            next.forwarded = None;
            next.pinned_at = 0;
            next.pinned_by = 0;
            Box::new(move |c: &mut C, m: &v1::Message| {
                unindex_content(c, id, &erased)?;
                diesel::delete(message_edits::table.filter(message_edits::message_id.eq(id))).run(c)?;
                diesel::delete(reactions::table.filter(reactions::message_id.eq(id))).run(c)?;
                diesel::delete(
                    mentions::table
                        .filter(mentions::conversation_id.eq(conv_id))
                        .filter(mentions::seq.eq(m.seq as i64)),
                )
                .run(c)?;
                diesel::update(messages::table.find(id))
                    .set((
                        messages::content.eq(Vec::<u8>::new()),
                        messages::edited_at.eq(0),
                        messages::reactions.eq(None::<Vec<u8>>),
                        messages::recalled_at.eq(m.recalled_at),
                        messages::recalled_by.eq(m.recalled_by as i64),
                        messages::meta.eq(None::<Vec<u8>>),
                        messages::pinned_at.eq(0),
                        messages::pinned_by.eq(0),
                        messages::version.eq(m.version as i64),
                    ))
                    .run(c)?;
                Ok(())
            })
        }
        ChangeKind::React { emoji, remove } => {
            let key = (id, emoji.clone(), change.actor as i64);
            let has = reactions::table
                .find(key.clone())
                .select(reactions::user_id)
                .first_row::<i64, _>(c)
                .optional()?
                .is_some();
            if has != remove {
                return unchanged(c, cache, conv_id, next);
            }
            if !remove
                && next.reactions.len() >= MAX_REACTION_KINDS
                && !next.reactions.iter().any(|r| r.emoji == emoji)
            {
                return Err(StoreError::Conflict(format!(
                    "a message holds at most {MAX_REACTION_KINDS} different reactions"
                )));
            }
            if remove {
                diesel::delete(reactions::table.find(key)).run(c)?;
            } else {
                diesel::insert_into(reactions::table)
                    .values((
                        reactions::message_id.eq(id),
                        reactions::emoji.eq(&emoji),
                        reactions::user_id.eq(change.actor as i64),
                        reactions::created_at.eq(change.at),
                    ))
                    .run(c)?;
            }
            let of_emoji = reactions::table
                .filter(reactions::message_id.eq(id))
                .filter(reactions::emoji.eq(&emoji));
            let count: i64 = of_emoji.count().row(c)?;
            let first: Vec<i64> = of_emoji
                .order((reactions::created_at.asc(), reactions::user_id.asc()))
                .limit(REACTION_USERS_LISTED as i64)
                .select(reactions::user_id)
                .rows(c)?;
            summary::set_entry(
                &mut next.reactions,
                &emoji,
                count as u32,
                first.into_iter().map(|u| u as u64).collect(),
            );
            Box::new(move |c: &mut C, m: &v1::Message| {
                diesel::update(messages::table.find(id))
                    .set((
                        messages::reactions.eq(encode_reactions(&m.reactions)),
                        messages::version.eq(m.version as i64),
                    ))
                    .run(c)?;
                Ok(())
            })
        }
        ChangeKind::Pin { pinned } => {
            if (next.pinned_at != 0) == pinned {
                return unchanged(c, cache, conv_id, next);
            }
            (next.pinned_at, next.pinned_by) = if pinned { (change.at, change.actor) } else { (0, 0) };
            Box::new(move |c: &mut C, m: &v1::Message| {
                diesel::update(messages::table.find(id))
                    .set((
                        messages::pinned_at.eq(m.pinned_at),
                        messages::pinned_by.eq(m.pinned_by as i64),
                        messages::version.eq(m.version as i64),
                    ))
                    .run(c)?;
                Ok(())
            })
        }
    };
    let (version, member_version): (i64, i64) = diesel::update(conversations::table.find(conv_id))
        .set(conversations::last_version.eq(conversations::last_version + 1))
        .returning((conversations::last_version, conversations::member_version))
        .row(c)?;
    next.version = version as u64;
    write(c, &next)?;
    let members = members_at(c, cache, conv_id, member_version)?.ids.clone();
    Ok(Changed {
        message: next,
        changed: true,
        hidden_from: super::contacts::hidden_from_message(c, id, &members)?,
        members,
        member_version: member_version as u64,
    })
}

/// The outcome of a change that changes nothing.
fn unchanged<C: SqlConnection>(
    c: &mut C,
    cache: &MemberCache,
    conv_id: i64,
    message: v1::Message,
) -> StoreResult<Changed> {
    let member_version: i64 = conversations::table
        .find(conv_id)
        .select(conversations::member_version)
        .first_row(c)?;
    Ok(Changed {
        message,
        changed: false,
        members: members_at(c, cache, conv_id, member_version)?.ids.clone(),
        member_version: member_version as u64,
        hidden_from: Vec::new(),
    })
}

/// See `Store::hide_messages`.
pub(crate) fn hide_messages<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
    list: &[MessageId],
) -> StoreResult<Hidden> {
    let conv_id = conversation as i64;
    let me = member_of(c, conv_id, user as i64)?;
    let wanted = ids(list);
    let mut found = HashSet::new();
    let mut already = HashSet::new();
    for chunk in wanted.chunks(CHUNK) {
        let rows: Vec<i64> = messages::table
            .filter(messages::conversation_id.eq(conv_id))
            .filter(messages::id.eq_any(chunk))
            .select(messages::id)
            .rows(c)?;
        found.extend(rows);
        let rows: Vec<i64> = hidden_messages::table
            .filter(hidden_messages::user_id.eq(user as i64))
            .filter(hidden_messages::message_id.eq_any(chunk))
            .select(hidden_messages::message_id)
            .rows(c)?;
        already.extend(rows);
    }
    if let Some(missing) = wanted.iter().find(|id| !found.contains(*id)) {
        return Err(StoreError::NotFound(format!("message {missing}")));
    }
    let mut new_ids = Vec::new();
    for id in wanted {
        if already.insert(id) {
            new_ids.push(id);
        }
    }
    let mut hidden = Hidden {
        conversation_id: conversation,
        user_id: user,
        message_ids: Vec::new(),
        private_version: me.private_version as u64,
    };
    if new_ids.is_empty() {
        return Ok(hidden);
    }
    let version: i64 = diesel::update(members::table.find((conv_id, user as i64)))
        .set(members::private_version.eq(members::private_version + 1))
        .returning(members::private_version)
        .row(c)?;
    for &id in &new_ids {
        diesel::insert_into(hidden_messages::table)
            .values((
                hidden_messages::user_id.eq(user as i64),
                hidden_messages::message_id.eq(id),
                hidden_messages::conversation_id.eq(conv_id),
                hidden_messages::private_version.eq(version),
            ))
            .run(c)?;
    }
    hidden.message_ids = new_ids.into_iter().map(|id| id as u64).collect();
    hidden.private_version = version as u64;
    Ok(hidden)
}

/// See `Store::edit_history`.
pub(crate) fn edit_history<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    id: MessageId,
) -> StoreResult<Vec<FormerContent>> {
    if message(c, conversation, id)?.is_none() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, Vec<u8>)> = message_edits::table
        .filter(message_edits::message_id.eq(id as i64))
        .order(message_edits::id.asc())
        .select((message_edits::written_at, message_edits::content))
        .rows(c)?;
    Ok(rows
        .into_iter()
        .map(|(written_at, content)| FormerContent {
            content: v1::Content::decode(&content[..]).unwrap_or_default(),
            written_at,
        })
        .collect())
}

/// Replaces the messages `viewer` deleted for themselves by stubs: one
/// look-up per chunk of ids.
pub(crate) fn stub_hidden<C: SqlConnection>(
    c: &mut C,
    viewer: UserId,
    messages: &mut [v1::Message],
) -> StoreResult<()> {
    let wanted: Vec<i64> = messages.iter().map(|m| m.id as i64).collect();
    let mut hidden = HashSet::new();
    for chunk in wanted.chunks(CHUNK) {
        let rows: Vec<i64> = hidden_messages::table
            .filter(hidden_messages::user_id.eq(viewer as i64))
            .filter(hidden_messages::message_id.eq_any(chunk))
            .select(hidden_messages::message_id)
            .rows(c)?;
        hidden.extend(rows);
    }
    if hidden.is_empty() {
        return Ok(());
    }
    for m in messages.iter_mut() {
        if hidden.contains(&(m.id as i64)) {
            *m = m.deleted_stub();
        }
    }
    Ok(())
}

/// The messages `viewer` deleted for themselves after a private position,
/// in the order deleted, and their private position now.
pub(crate) fn deleted_after<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    viewer: UserId,
    after_private_version: u64,
) -> StoreResult<(Vec<MessageId>, u64)> {
    let conv_id = conversation as i64;
    let ids: Vec<i64> = hidden_messages::table
        .filter(hidden_messages::conversation_id.eq(conv_id))
        .filter(hidden_messages::user_id.eq(viewer as i64))
        .filter(hidden_messages::private_version.gt(after_private_version as i64))
        .order((
            hidden_messages::private_version.asc(),
            hidden_messages::message_id.asc(),
        ))
        .select(hidden_messages::message_id)
        .rows(c)?;
    let position: Option<i64> = members::table
        .find((conv_id, viewer as i64))
        .select(members::private_version)
        .first_row(c)
        .optional()?;
    Ok((
        ids.into_iter().map(|id| id as u64).collect(),
        position.unwrap_or(0) as u64,
    ))
}
