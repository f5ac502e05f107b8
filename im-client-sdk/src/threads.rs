//! Replies, mentions and thread replies when sending; forwarding; pinned
//! messages; threads with our read cursor and unread count in each.

use crate::client::unexpected;
use crate::{Client, Result};
use im_protocol::v1::{self, client_frame::Body, response::Result as Reply};

/// What a message carries besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Quote this message of the same conversation.
    pub reply_to: Option<u64>,
    /// Mention these users (members; others are left out by the server).
    pub mentions: Vec<u64>,
    /// Mention everyone.
    pub mention_all: bool,
    /// Post in the thread under this message.
    pub thread_root: Option<u64>,
}

/// Where forwarded messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardTo {
    /// A conversation we are in.
    Conversation(u64),
    /// A user's direct conversation (created if needed).
    User(u64),
}

impl Client {
    /// Sends text with a reply, mentions or into a thread, through the
    /// outbox like [`Client::send_text`].
    ///
    /// ```no_run
    /// # async fn demo(client: im_client_sdk::Client, conversation: u64, question: u64, bob: u64) -> im_client_sdk::Result<()> {
    /// use im_client_sdk::SendOptions;
    /// let options = SendOptions { reply_to: Some(question), mentions: vec![bob], ..Default::default() };
    /// client.send_text_with(conversation, "@bob see above", options).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_text_with(
        &self,
        conversation_id: u64,
        text: &str,
        options: SendOptions,
    ) -> impl Future<Output = Result<v1::SendAck>> + use<> {
        self.send_message(v1::SendMessage {
            target: Some(v1::send_message::Target::ConversationId(conversation_id)),
            content: Some(v1::Content::text(text)),
            reply_to_id: options.reply_to.unwrap_or(0),
            mention_user_ids: options.mentions,
            mention_all: options.mention_all,
            thread_root_id: options.thread_root.unwrap_or(0),
            ..Default::default()
        })
    }

    /// Forwards messages of a conversation we are in: each as a copy of its
    /// own, or (`as_one`) all in one bundle message. One ack per message
    /// stored.
    pub async fn forward(
        &self,
        from_conversation_id: u64,
        message_ids: &[u64],
        to: ForwardTo,
        as_one: bool,
    ) -> Result<Vec<v1::SendAck>> {
        let target = match to {
            ForwardTo::Conversation(id) => v1::forward_messages::Target::ConversationId(id),
            ForwardTo::User(id) => v1::forward_messages::Target::ToUserId(id),
        };
        let request = v1::ForwardMessages {
            from_conversation_id,
            message_ids: message_ids.to_vec(),
            target: Some(target),
            as_one,
            client_msg_id: crate::client::random_id(),
        };
        match self.request(Body::Forward(request)).await? {
            Reply::Acks(a) => Ok(a.acks),
            other => Err(unexpected(other)),
        }
    }

    /// Pins a message (any member of a direct conversation; owners and
    /// admins of groups). Answers with its new state.
    pub async fn pin(&self, conversation_id: u64, message_id: u64) -> Result<v1::Message> {
        self.pin_call(conversation_id, message_id, false).await
    }

    /// Unpins a message.
    pub async fn unpin(&self, conversation_id: u64, message_id: u64) -> Result<v1::Message> {
        self.pin_call(conversation_id, message_id, true).await
    }

    async fn pin_call(&self, conversation_id: u64, message_id: u64, unpin: bool) -> Result<v1::Message> {
        let request = v1::PinMessage {
            conversation_id,
            message_id,
            unpin,
        };
        match self.request(Body::PinMessage(request)).await? {
            Reply::Message(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// The pinned messages of a conversation, most recently pinned first.
    pub async fn pinned(&self, conversation_id: u64, limit: u32) -> Result<Vec<v1::Message>> {
        let request = v1::ListPinned {
            conversation_id,
            limit,
        };
        match self.request(Body::ListPinned(request)).await? {
            Reply::Messages(m) => Ok(m.messages),
            other => Err(unexpected(other)),
        }
    }

    /// A thread: its summary for us and the newest `limit` replies before
    /// `before_seq` (0: the end).
    pub async fn thread(
        &self,
        conversation_id: u64,
        root_id: u64,
        before_seq: u64,
        limit: u32,
    ) -> Result<v1::Thread> {
        let request = v1::GetThread {
            conversation_id,
            root_id,
            before_seq,
            after_seq: None,
            limit,
        };
        match self.request(Body::GetThread(request)).await? {
            Reply::Thread(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// Marks a thread read up to `seq`; answers with its summary for us.
    pub async fn mark_thread_read(
        &self,
        conversation_id: u64,
        root_id: u64,
        seq: u64,
    ) -> Result<v1::ThreadSummary> {
        let request = v1::MarkThreadRead {
            conversation_id,
            root_id,
            seq,
        };
        match self.request(Body::MarkThreadRead(request)).await? {
            Reply::Thread(v1::Thread { summary: Some(s), .. }) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The threads of a conversation, most recently active first.
    pub async fn threads(&self, conversation_id: u64, limit: u32) -> Result<Vec<v1::ThreadSummary>> {
        let request = v1::ListThreads {
            conversation_id,
            limit,
        };
        match self.request(Body::ListThreads(request)).await? {
            Reply::Threads(t) => Ok(t.threads),
            other => Err(unexpected(other)),
        }
    }
}
