//! Full-text search: indexing a message's tokens in the transaction that
//! stores, edits or erases it, the search itself, and reindexing when the
//! tokenizer changed. The index is backend-specific (SQLite FTS5,
//! PostgreSQL tsvector), behind [`SqlConnection`]'s search methods.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use crate::model::*;
use crate::search::{SearchQuery, TOKENIZER_VERSION, content_tokens};
use crate::store::StoreResult;
use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use im_protocol::v1;

/// Indexes a message's content (nothing for content without text).
pub(crate) fn index_content<C: SqlConnection>(
    c: &mut C,
    message: i64,
    conversation: i64,
    content: &v1::Content,
) -> StoreResult<()> {
    let tokens = content_tokens(content);
    if !tokens.is_empty() {
        c.index_text(message, conversation, &tokens)?;
    }
    Ok(())
}

/// Removes a message's content from the index (`content`: what was indexed).
pub(crate) fn unindex_content<C: SqlConnection>(
    c: &mut C,
    message: i64,
    content: &v1::Content,
) -> StoreResult<()> {
    let tokens = content_tokens(content);
    if !tokens.is_empty() {
        c.unindex_text(message, &tokens)?;
    }
    Ok(())
}

/// See `Store::search_messages`: the ids from the index, then the messages.
pub(crate) fn search_messages<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    query: &SearchQuery,
    conversation: Option<ConversationId>,
    before: Option<MessageId>,
    limit: u32,
) -> StoreResult<Vec<v1::Message>> {
    let ids = c.search_ids(
        user as i64,
        query,
        conversation.map_or(0, |c| c as i64),
        before.map_or(i64::MAX, |b| b as i64),
        limit as i64,
    )?;
    let mut rows: Vec<MessageRow> = messages::table
        .filter(messages::id.eq_any(&ids))
        .select(MESSAGE)
        .rows(c)?;
    rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
    Ok(messages_of(rows))
}

/// Indexes every message again if the index was built by another
/// tokenizer version (or not at all: messages stored before search
/// existed). Runs once when the store opens, in chunks.
pub(crate) fn reindex_if_needed<C: SqlConnection>(c: &mut C) -> StoreResult<()> {
    let built: Option<i32> = search_index::table
        .find(1)
        .select(search_index::tokenizer_version)
        .first_row(c)
        .optional()?;
    if built == Some(TOKENIZER_VERSION as i32) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    c.clear_text_index()?;
    let mut after = 0i64;
    let mut indexed = 0u64;
    loop {
        let rows: Vec<(i64, i64, Vec<u8>)> = messages::table
            .filter(messages::id.gt(after))
            .filter(messages::recalled_at.eq(0))
            .order(messages::id.asc())
            .limit(1_000)
            .select((messages::id, messages::conversation_id, messages::content))
            .rows(c)?;
        let Some(&(last, _, _)) = rows.last() else {
            break;
        };
        for (id, conversation, content) in rows {
            let content = <v1::Content as prost::Message>::decode(&content[..]).unwrap_or_default();
            index_content(c, id, conversation, &content)?;
            indexed += 1;
        }
        after = last;
    }
    diesel::delete(search_index::table).run(c)?;
    diesel::insert_into(search_index::table)
        .values((
            search_index::id.eq(1),
            search_index::tokenizer_version.eq(TOKENIZER_VERSION as i32),
        ))
        .run(c)?;
    if indexed > 0 {
        tracing::info!(messages = indexed, elapsed = ?started.elapsed(), "search index rebuilt");
    }
    Ok(())
}
