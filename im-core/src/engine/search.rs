//! Full-text search of the caller's messages.

use super::{Caller, Engine};
use crate::error::{Error, Result};
use crate::search::{MAX_QUERY_CHARS, SearchQuery};
use im_protocol::v1;

impl Engine {
    /// Messages matching a query in the caller's conversations (or one of
    /// them), newest first, paged by message id. Words match whole, the
    /// last one as a prefix; CJK text matches any run of characters (see
    /// [`crate::search`]). Recalled messages and those the caller deleted
    /// for themselves are never found.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> im_core::Result<()> {
    /// use im_core::{Caller, Engine};
    /// use im_protocol::v1;
    /// let engine = Engine::builder().build();
    /// let alice = engine.register("alice", "correct horse", "Alice").await?;
    /// let me = Caller::user(alice.user.id);
    /// let room = engine.create_room(me.clone(), "lobby", false).await?;
    /// for text in ["lunch at noon?", "明天在东京见面"] {
    ///     let send = v1::SendMessage {
    ///         target: Some(v1::send_message::Target::ConversationId(room.id)),
    ///         content: Some(v1::Content::text(text)),
    ///         ..Default::default()
    ///     };
    ///     engine.send_message(me.clone(), send).await?;
    /// }
    /// for query in ["LUNCH", "东京"] {
    ///     let search = v1::SearchMessages { query: query.into(), ..Default::default() };
    ///     assert_eq!(engine.search_messages(me.clone(), search).await?.messages.len(), 1);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn search_messages(&self, caller: Caller, req: v1::SearchMessages) -> Result<v1::Messages> {
        if req.query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::TooLarge(format!(
                "a search query is at most {MAX_QUERY_CHARS} characters"
            )));
        }
        let query = SearchQuery::parse(&req.query)
            .ok_or_else(|| Error::InvalidArgument("the query has no word to search for".into()))?;
        let conversation = (req.conversation_id != 0).then_some(req.conversation_id);
        if let Some(id) = conversation {
            self.require_member(&caller, id).await?;
        }
        let limit = self.page(req.limit);
        let before = (req.before_message_id != 0).then_some(req.before_message_id);
        let mut messages = self
            .inner
            .store
            .search_messages(caller.user_id, &query, conversation, before, limit + 1)
            .await?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok(v1::Messages { messages, has_more })
    }
}
