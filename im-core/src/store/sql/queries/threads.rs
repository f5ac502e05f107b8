//! Threads (replies under a root message, each member's read cursor in
//! them), pinned messages, and unread-mention counts.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::CHUNK;
use super::after_cursors::AfterCursors;
use super::changes::{member_of, stub_hidden};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use diesel::dsl::{count_star, max};
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use im_protocol::v1;

/// See `Store::unread_mention_counts`: one `GROUP BY` per chunk.
pub(crate) fn unread_mention_counts<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    cursors: &[(ConversationId, u64)],
) -> StoreResult<Vec<(ConversationId, u64)>> {
    let mut lowest = std::collections::BTreeMap::new();
    for &(id, after_seq) in cursors {
        let e = lowest.entry(id as i64).or_insert(after_seq as i64);
        *e = (*e).min(after_seq as i64);
    }
    let lowest: Vec<(i64, i64)> = lowest.into_iter().collect();
    let mut out = Vec::new();
    for chunk in lowest.chunks(CHUNK / 2) {
        let rows: Vec<(i64, i64)> = mentions::table
            .filter(mentions::user_id.eq_any([user as i64, 0]))
            .filter(mentions::sender_id.ne(user as i64))
            .filter(
                mentions::sender_id.ne_all(
                    blocks::table
                        .filter(blocks::blocker.eq(user as i64))
                        .select(blocks::blocked),
                ),
            )
            .filter(AfterCursors::new(chunk, mentions::conversation_id, mentions::seq))
            .group_by(mentions::conversation_id)
            .select((mentions::conversation_id, count_star()))
            .rows(c)?;
        out.extend(rows.into_iter().map(|(conv, n)| (conv as u64, n as u64)));
    }
    Ok(out)
}

/// See `Store::pinned`.
pub(crate) fn pinned<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    viewer: UserId,
    limit: u32,
) -> StoreResult<Vec<v1::Message>> {
    let mut list = messages_of(
        messages::table
            .filter(messages::conversation_id.eq(conversation as i64))
            .filter(messages::pinned_at.ne(0))
            .order((messages::pinned_at.desc(), messages::seq.desc()))
            .limit(limit as i64)
            .select(MESSAGE)
            .rows(c)?,
    );
    stub_hidden(c, viewer, &mut list)?;
    Ok(list)
}

/// See `Store::thread_replies`.
pub(crate) fn thread_replies<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    root: MessageId,
    viewer: UserId,
    page: Page,
    limit: u32,
) -> StoreResult<Vec<v1::Message>> {
    let base = messages::table
        .filter(messages::conversation_id.eq(conversation as i64))
        .filter(messages::thread_root_id.eq(root as i64))
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

/// See `Store::threads`.
pub(crate) fn threads<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    viewer: UserId,
    root: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<ThreadStats>> {
    let conv_id = conversation as i64;
    let roots: Vec<i64> = match root {
        Some(root) => vec![root as i64],
        None => messages::table
            .filter(messages::conversation_id.eq(conv_id))
            .filter(messages::thread_root_id.ne(0))
            .group_by(messages::thread_root_id)
            .order(max(messages::seq).desc())
            .limit(limit as i64)
            .select(messages::thread_root_id)
            .rows(c)?,
    };
    let mut out = Vec::with_capacity(roots.len());
    for root_id in roots {
        let Some(root) = super::changes::message(c, conversation, root_id as u64)? else {
            continue;
        };
        let replies = messages::table
            .filter(messages::conversation_id.eq(conv_id))
            .filter(messages::thread_root_id.eq(root_id));
        let Some((last_reply_seq, last_reply_at)) = replies
            .order(messages::seq.desc())
            .select((messages::seq, messages::created_at))
            .first_row::<(i64, i64), _>(c)
            .optional()?
        else {
            continue;
        };
        let reply_count: i64 = replies.count().row(c)?;
        let read_seq: i64 = thread_reads::table
            .find((conv_id, root_id, viewer as i64))
            .select(thread_reads::read_seq)
            .first_row(c)
            .optional()?
            .unwrap_or(0);
        let unread: i64 = replies
            .filter(messages::seq.gt(read_seq))
            .filter(messages::sender_id.ne(viewer as i64))
            .filter(messages::recalled_at.eq(0))
            .select(count_star())
            .row(c)?;
        let mut root = [root];
        stub_hidden(c, viewer, &mut root)?;
        let [root] = root;
        out.push(ThreadStats {
            root,
            reply_count: reply_count as u32,
            unread_count: unread as u32,
            read_seq: read_seq as u64,
            last_reply_seq: last_reply_seq as u64,
            last_reply_at,
        });
    }
    Ok(out)
}

/// See `Store::mark_thread_read`.
pub(crate) fn mark_thread_read<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    root: MessageId,
    user: UserId,
    seq: u64,
) -> StoreResult<u64> {
    let conv_id = conversation as i64;
    member_of(c, conv_id, user as i64)?;
    let is_root = super::changes::message(c, conversation, root)?.is_some_and(|m| m.thread_root_id == 0);
    if !is_root {
        return Err(StoreError::NotFound(format!(
            "thread {root} in conversation {conversation}"
        )));
    }
    let last: i64 = conversations::table
        .find(conv_id)
        .select(conversations::last_seq)
        .first_row(c)?;
    let key = (conv_id, root as i64, user as i64);
    let current: i64 = thread_reads::table
        .find(key)
        .select(thread_reads::read_seq)
        .first_row(c)
        .optional()?
        .unwrap_or(-1);
    let read = (seq as i64).min(last).max(current.max(0));
    if current < 0 {
        diesel::insert_into(thread_reads::table)
            .values((
                thread_reads::conversation_id.eq(conv_id),
                thread_reads::root_id.eq(root as i64),
                thread_reads::user_id.eq(user as i64),
                thread_reads::read_seq.eq(read),
            ))
            .run(c)?;
    } else if read > current {
        diesel::update(thread_reads::table.find(key))
            .set(thread_reads::read_seq.eq(read))
            .run(c)?;
    }
    Ok(read as u64)
}
