//! Full-text search of our messages.

use crate::client::unexpected;
use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};

impl Client {
    /// Messages matching `query` in our conversations (or only
    /// `conversation_id`), newest first; `before_message_id` pages (0: from
    /// the newest). Words match whole, the last one as a prefix; Chinese,
    /// Japanese and Korean text matches any run of characters.
    pub async fn search(
        &self,
        query: &str,
        conversation_id: Option<u64>,
        before_message_id: u64,
        limit: u32,
    ) -> Result<v1::Messages> {
        let request = v1::SearchMessages {
            query: query.to_owned(),
            conversation_id: conversation_id.unwrap_or(0),
            before_message_id,
            limit,
        };
        match self.request(Body::SearchMessages(request)).await? {
            Reply::Messages(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }
}
