//! [`DieselStore`]: the [`Store`] impl shared by the diesel backends. Each
//! method picks where its statements run (a pooled reader, or a writer shard
//! inside a group-commit batch) and calls into [`queries`](super::queries).

use super::SqlConnection;
use super::queries::{self, ContactCache, MemberCache};
use super::rows::MessageRow;
use super::writer::{DieselCore, WriteStats};
use crate::model::*;
use crate::store::{Store, StoreError, StoreResult, direct_key};
use async_trait::async_trait;
use im_protocol::v1;
use std::sync::Arc;

/// A [`Store`] on a diesel connection type `C`. Use it through its aliases,
/// [`SqliteStore`](crate::store::SqliteStore) and `PostgresStore`, whose
/// modules open it.
pub struct DieselStore<C: SqlConnection> {
    /// Member lists used by the sending path (see `MemberCache`).
    members: MemberCache,
    /// Blocks among members used by the sending path (see `ContactCache`).
    contacts: ContactCache,
    /// Reader pool and group-commit writer.
    core: DieselCore<C>,
}

impl<C: SqlConnection> DieselStore<C> {
    pub(crate) fn new(core: DieselCore<C>) -> Self {
        Self {
            members: MemberCache::default(),
            contacts: ContactCache::default(),
            core,
        }
    }

    /// What the group-commit writer committed so far.
    pub fn write_stats(&self) -> WriteStats {
        self.core.stats()
    }

    /// Runs a contact change between `a` and `b`, which bumps the
    /// `contact_version` of the conversations they share: their rows are
    /// locked up front with the batch's others, in one order, so the change
    /// never deadlocks with the appends of other writers (one the two
    /// joined meanwhile is bumped too, locked on the way).
    async fn write_between<R, F>(&self, a: UserId, b: UserId, f: F) -> StoreResult<R>
    where
        F: FnOnce(&mut C) -> StoreResult<R> + Send + 'static,
        R: Send + 'static,
    {
        let shared = self
            .core
            .read(move |c| queries::shared_conversations(c, a, b))
            .await?;
        self.core.write_locking(shared, f).await
    }
}

#[async_trait]
impl<C: SqlConnection> Store for DieselStore<C> {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        self.core.write(move |c| queries::create_user(c, &user)).await
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserRecord>> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.core
            .read(move |c| queries::user_by_identity(c, &issuer, &subject))
            .await
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<UserRecord> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.core
            .write(move |c| queries::create_user_with_identity(c, &user, &issuer, &subject))
            .await
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let lower = username.to_lowercase();
        self.core.read(move |c| queries::user_by_name(c, &lower)).await
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<UserRecord>> {
        let ids = ids.to_vec();
        self.core.read(move |c| queries::users_by_ids(c, &ids)).await
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let escaped: String = prefix
            .to_lowercase()
            .chars()
            .flat_map(|ch| match ch {
                '%' | '_' | '\\' => vec!['\\', ch],
                _ => vec![ch],
            })
            .collect();
        let pattern = format!("{escaped}%");
        self.core
            .read(move |c| queries::search_users(c, &pattern, limit))
            .await
    }

    async fn update_profile(
        &self,
        user: UserId,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<UserRecord> {
        self.core
            .write(move |c| queries::update_profile(c, user, display_name.as_deref(), avatar_url.as_deref()))
            .await
    }

    async fn set_last_seen(&self, user: UserId, at: i64) -> StoreResult<()> {
        self.core
            .write(move |c| queries::set_last_seen(c, user, at))
            .await
    }

    async fn insert_token(&self, token_hash: &str, user: UserId, expires_at: i64) -> StoreResult<()> {
        let hash = token_hash.to_owned();
        self.core
            .write(move |c| queries::insert_token(c, &hash, user, expires_at))
            .await
    }

    async fn token(&self, token_hash: &str) -> StoreResult<Option<(UserId, i64)>> {
        let hash = token_hash.to_owned();
        self.core.read(move |c| queries::token(c, &hash)).await
    }

    async fn delete_token(&self, token_hash: &str) -> StoreResult<()> {
        let hash = token_hash.to_owned();
        self.core.write(move |c| queries::delete_token(c, &hash)).await
    }

    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
        self.core
            .write(move |c| queries::purge_expired_tokens(c, now))
            .await
    }

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<ConversationRecord> {
        self.core
            .write(move |c| queries::create_conversation(c, &new))
            .await
    }

    async fn direct_conversation(&self, a: UserId, b: UserId, now: i64) -> StoreResult<ConversationRecord> {
        let key = direct_key(a, b);
        let lookup = key.clone();
        let created = self
            .core
            .write_sharded(a.min(b), move |c| {
                queries::direct_conversation(c, a, b, &key, now)
            })
            .await;
        match created {
            // Another node created it between our look-up and insert.
            Err(StoreError::Conflict(_)) => {
                self.core
                    .read(move |c| {
                        queries::direct_by_key(c, &lookup)?
                            .ok_or_else(|| StoreError::NotFound("row not found".into()))
                    })
                    .await
            }
            other => other,
        }
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        self.core.read(move |c| queries::conversation(c, id)).await
    }

    async fn delete_conversation(&self, id: ConversationId) -> StoreResult<()> {
        self.core
            .write_keyed(id, move |c| queries::delete_conversation(c, id))
            .await
    }

    async fn rename_conversation(&self, id: ConversationId, title: &str) -> StoreResult<()> {
        let title = title.to_owned();
        self.core
            .write_keyed(id, move |c| queries::rename_conversation(c, id, &title))
            .await
    }

    async fn list_rooms(&self, limit: u32) -> StoreResult<Vec<ConversationRecord>> {
        self.core.read(move |c| queries::list_rooms(c, limit)).await
    }

    async fn member(&self, conversation: ConversationId, user: UserId) -> StoreResult<Option<MemberRecord>> {
        self.core
            .read(move |c| queries::member(c, conversation, user))
            .await
    }

    async fn members(&self, conversation: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        self.core.read(move |c| queries::members(c, conversation)).await
    }

    async fn member_list(&self, conversation: ConversationId) -> StoreResult<Option<(u64, Arc<[UserId]>)>> {
        self.core
            .read(move |c| queries::member_list(c, conversation))
            .await
    }

    async fn user_conversations(&self, user: UserId) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        self.core
            .read(move |c| queries::user_conversations(c, user))
            .await
    }

    async fn user_conversations_in(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        self.core
            .read(move |c| queries::user_conversations_in(c, user, after, until, limit))
            .await
    }

    async fn members_of(
        &self,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<(ConversationId, UserId)>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let conversations = conversations.to_vec();
        self.core
            .read(move |c| queries::members_of(c, &conversations))
            .await
    }

    async fn members_page(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        self.core
            .read(move |c| queries::members_page(c, conversation, after_user, limit))
            .await
    }

    async fn standing(&self, conversation: ConversationId, user: UserId) -> StoreResult<Standing> {
        self.core
            .read(move |c| queries::standing(c, conversation, user))
            .await
    }

    async fn invitations_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, InvitationRecord)>> {
        self.core
            .read(move |c| queries::invitations_of(c, user, limit))
            .await
    }

    async fn join_requests(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequestRecord>> {
        self.core
            .read(move |c| queries::join_requests(c, conversation, limit))
            .await
    }

    async fn bans(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<BanRecord>> {
        self.core
            .read(move |c| queries::bans(c, conversation, after_user, limit))
            .await
    }

    async fn append_message_then(&self, new: NewMessage, on_commit: CommitHook) -> StoreResult<Appended> {
        let cache = self.members.clone();
        let contacts = self.contacts.clone();
        let dedup_key = new.client_msg_id.clone().map(|id| (new.sender_id as i64, id));
        // The writer runs completions in commit order: the hook of each
        // message of a conversation runs before the next one's.
        let after_commit = move |appended: &Appended| {
            if !appended.duplicate {
                on_commit(appended);
            }
        };
        let result = self
            .core
            .write_keyed_then(
                new.conversation_id,
                move |c| queries::append_message(c, &cache, &contacts, new),
                after_commit,
            )
            .await;
        match result {
            Err(StoreError::Unavailable(e)) => {
                // The batch may not have committed: forget lists read inside it.
                self.members.lock().clear();
                self.contacts.lock().clear();
                Err(StoreError::Unavailable(e))
            }
            // A retry of this message committed on another node between
            // our look-up and insert: answer as the duplicate it is.
            Err(StoreError::Conflict(_)) if dedup_key.is_some() => {
                let (sender, client_id) = dedup_key.unwrap_or_default();
                let row: MessageRow = self
                    .core
                    .read(move |c| {
                        queries::message_by_client_id(c, sender, &client_id)?
                            .ok_or_else(|| StoreError::NotFound("row not found".into()))
                    })
                    .await?;
                Ok(Appended {
                    message: row.into(),
                    duplicate: true,
                    member_count: 0,
                    members: std::sync::Arc::from(Vec::new()),
                    member_version: 0,
                    hidden_from: Vec::new(),
                })
            }
            other => other,
        }
    }

    async fn history(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        self.core
            .read(move |c| queries::history(c, conversation, viewer, page, limit))
            .await
    }

    async fn changes(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        after_version: u64,
        after_private_version: u64,
        limit: u32,
    ) -> StoreResult<ChangePage> {
        self.core
            .read(move |c| {
                queries::changes(
                    c,
                    conversation,
                    viewer,
                    after_version,
                    after_private_version,
                    limit,
                )
            })
            .await
    }

    async fn message(&self, conversation: ConversationId, id: MessageId) -> StoreResult<Option<v1::Message>> {
        self.core
            .read(move |c| queries::message(c, conversation, id))
            .await
    }

    async fn change_message(&self, change: MessageChange, on_commit: ChangeHook) -> StoreResult<Changed> {
        let cache = self.members.clone();
        let after_commit = move |changed: &Changed| {
            if changed.changed {
                on_commit(changed);
            }
        };
        let result = self
            .core
            .write_keyed_then(
                change.conversation_id,
                move |c| queries::change_message(c, &cache, change),
                after_commit,
            )
            .await;
        if let Err(StoreError::Unavailable(_)) = &result {
            // The batch may not have committed: forget lists read inside it.
            self.members.lock().clear();
        }
        result
    }

    async fn hide_messages(
        &self,
        conversation: ConversationId,
        user: UserId,
        messages: &[MessageId],
        on_commit: HideHook,
    ) -> StoreResult<Hidden> {
        let messages = messages.to_vec();
        let after_commit = move |hidden: &Hidden| {
            if !hidden.message_ids.is_empty() {
                on_commit(hidden);
            }
        };
        self.core
            .write_keyed_then(
                conversation,
                move |c| queries::hide_messages(c, conversation, user, &messages),
                after_commit,
            )
            .await
    }

    async fn edit_history(
        &self,
        conversation: ConversationId,
        message: MessageId,
    ) -> StoreResult<Vec<FormerContent>> {
        self.core
            .read(move |c| queries::edit_history(c, conversation, message))
            .await
    }

    async fn unread_count(
        &self,
        conversation: ConversationId,
        user: UserId,
        after_seq: u64,
    ) -> StoreResult<u64> {
        self.core
            .read(move |c| queries::unread_count(c, conversation, user, after_seq))
            .await
    }

    async fn last_messages(
        &self,
        viewer: UserId,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<v1::Message>> {
        if conversations.is_empty() {
            return Ok(Vec::new());
        }
        let conversations = conversations.to_vec();
        self.core
            .read(move |c| queries::last_messages(c, viewer, &conversations))
            .await
    }

    async fn unread_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let cursors = cursors.to_vec();
        self.core
            .read(move |c| queries::unread_counts(c, user, &cursors))
            .await
    }

    async fn unread_mention_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let cursors = cursors.to_vec();
        self.core
            .read(move |c| queries::unread_mention_counts(c, user, &cursors))
            .await
    }

    async fn pinned(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        self.core
            .read(move |c| queries::pinned(c, conversation, viewer, limit))
            .await
    }

    async fn thread_replies(
        &self,
        conversation: ConversationId,
        root: MessageId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        self.core
            .read(move |c| queries::thread_replies(c, conversation, root, viewer, page, limit))
            .await
    }

    async fn threads(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        root: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<ThreadStats>> {
        self.core
            .read(move |c| queries::threads(c, conversation, viewer, root, limit))
            .await
    }

    async fn search_messages(
        &self,
        user: UserId,
        query: &crate::search::SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        let query = query.clone();
        self.core
            .read(move |c| queries::search_messages(c, user, &query, conversation, before, limit))
            .await
    }

    async fn expired_messages(&self, now: i64, limit: u32) -> StoreResult<Vec<(ConversationId, MessageId)>> {
        self.core
            .read(move |c| queries::expired_messages(c, now, limit))
            .await
    }

    async fn mark_thread_read(
        &self,
        conversation: ConversationId,
        root: MessageId,
        user: UserId,
        seq: u64,
    ) -> StoreResult<u64> {
        self.core
            .write_keyed(conversation, move |c| {
                queries::mark_thread_read(c, conversation, root, user, seq)
            })
            .await
    }

    async fn advance_cursors(
        &self,
        conversation: ConversationId,
        user: UserId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> StoreResult<MemberRecord> {
        self.core
            .write_keyed(conversation, move |c| {
                queries::advance_cursors(c, conversation, user, read, delivered)
            })
            .await
    }

    async fn set_member_settings(
        &self,
        conversation: ConversationId,
        user: UserId,
        settings: MemberSettings,
    ) -> StoreResult<Option<MemberRecord>> {
        self.core
            .write_keyed(conversation, move |c| {
                queries::set_member_settings(c, conversation, user, settings)
            })
            .await
    }

    async fn create_file(&self, file: NewFile) -> StoreResult<FileRecord> {
        self.core.write(move |c| queries::create_file(c, &file)).await
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        let id = id.to_owned();
        self.core.read(move |c| queries::file(c, &id)).await
    }

    async fn file_progress(&self, id: &str, stored_bytes: u64, at: i64) -> StoreResult<()> {
        let id = id.to_owned();
        self.core
            .write(move |c| queries::file_progress(c, &id, stored_bytes, at))
            .await
    }

    async fn complete_file(&self, id: &str, done: FileCompletion) -> StoreResult<FileRecord> {
        let id = id.to_owned();
        self.core
            .write(move |c| queries::complete_file(c, &id, &done))
            .await
    }

    async fn delete_file(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_owned();
        self.core.write(move |c| queries::delete_file(c, &id)).await
    }

    async fn files_exist(&self, ids: &[FileId]) -> StoreResult<Vec<FileId>> {
        let ids = ids.to_vec();
        self.core.read(move |c| queries::files_exist(c, &ids)).await
    }

    async fn file_shared_with(&self, id: &str, user: UserId) -> StoreResult<bool> {
        let id = id.to_owned();
        self.core
            .read(move |c| queries::file_shared_with(c, &id, user))
            .await
    }

    async fn files_shared_with(&self, user: UserId, limit: u32) -> StoreResult<Vec<SharedFile>> {
        self.core
            .read(move |c| queries::files_shared_with(c, user, limit))
            .await
    }

    async fn uploaded_bytes_since(&self, user: UserId, since: i64) -> StoreResult<u64> {
        self.core
            .read(move |c| queries::uploaded_bytes_since(c, user, since))
            .await
    }

    async fn expired_files(
        &self,
        stale_before: i64,
        unshared_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<FileRecord>> {
        self.core
            .read(move |c| queries::expired_files(c, stale_before, unshared_before, limit))
            .await
    }

    async fn delete_expired_file(
        &self,
        id: &str,
        stale_before: i64,
        unshared_before: i64,
    ) -> StoreResult<bool> {
        let id = id.to_owned();
        let deleted = self
            .core
            .write(move |c| queries::delete_expired_file(c, &id, stale_before, unshared_before))
            .await;
        match deleted {
            // An append shared it meanwhile (PostgreSQL's foreign key): keep it.
            Err(StoreError::Conflict(_)) => Ok(false),
            other => other,
        }
    }

    async fn send_friend_request(&self, new: NewFriendRequest) -> StoreResult<FriendRequestRecord> {
        let (from, to) = (new.from, new.to);
        self.write_between(from, to, move |c| queries::send_friend_request(c, &new))
            .await
    }

    async fn respond_friend_request(
        &self,
        from: UserId,
        to: UserId,
        accept: bool,
        at: i64,
    ) -> StoreResult<FriendRequestRecord> {
        self.write_between(from, to, move |c| {
            queries::respond_friend_request(c, from, to, accept, at)
        })
        .await
    }

    async fn remove_friend(&self, user: UserId, other: UserId) -> StoreResult<ContactRemoved> {
        self.write_between(user, other, move |c| queries::remove_friend(c, user, other))
            .await
    }

    async fn friends(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
        self.core.read(move |c| queries::friends_of(c, user)).await
    }

    async fn friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequestRecord>> {
        self.core.read(move |c| queries::friend_requests(c, user)).await
    }

    async fn block_user(&self, blocker: UserId, blocked: UserId, at: i64) -> StoreResult<BlockOutcome> {
        self.write_between(blocker, blocked, move |c| {
            queries::block_user(c, blocker, blocked, at)
        })
        .await
    }

    async fn unblock_user(&self, blocker: UserId, blocked: UserId) -> StoreResult<()> {
        self.write_between(blocker, blocked, move |c| {
            queries::unblock_user(c, blocker, blocked)
        })
        .await
    }

    async fn blocked_users(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
        self.core.read(move |c| queries::blocked_users(c, user)).await
    }

    async fn block_relations(&self, user: UserId) -> StoreResult<BlockRelations> {
        self.core.read(move |c| queries::block_relations(c, user)).await
    }

    async fn contact_state(&self, a: UserId, b: UserId) -> StoreResult<ContactState> {
        self.core.read(move |c| queries::contact_state(c, a, b)).await
    }

    async fn health(&self) -> StoreResult<()> {
        self.core.health().await
    }

    async fn close(&self) -> StoreResult<()> {
        self.core.close().await
    }
}

impl<C: SqlConnection> std::fmt::Debug for DieselStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore").finish_non_exhaustive()
    }
}
