//! The `Store` trait: the one source of truth, and its backends.
//!
//! # Guarantees every backend gives (checked by the conformance suite, feature `testing`)
//! * **Sequence numbers**: each message appended to a conversation gets
//!   `last_seq + 1`, assigned inside the transaction that stores it, so seqs are
//!   1, 2, 3... with no gap and no repeat, even with concurrent appenders.
//! * **Change log**: every append, edit, recall or reaction takes the next
//!   `version` of the conversation; a message carries the version of its
//!   latest state. Versions commit in order per conversation, and commit
//!   hooks run in that order. A deletion "for me" takes the member's own
//!   next `private_version` instead: the others see nothing of it.
//! * **Idempotency**: an append with a `(sender, client_msg_id)` already stored
//!   writes nothing and returns the stored message with `duplicate = true`.
//! * **Durability**: a method returns `Ok` only after its write is committed.
//! * **Cursors** only move forward and never past `last_seq`.
//! * **Atomic membership**: a [`Membership`] change
//!   is committed together with the system message announcing it.
//! * **Authorized in the same transaction**: a message from a user
//!   (`sender_id != 0`) is refused with [`StoreError::NotMember`], consuming no
//!   sequence number, unless the sender is a member after the message's
//!   membership change, and with [`StoreError::Forbidden`] unless they may
//!   send then ([`may_send`]: owners and admins always, members unless the
//!   conversation is muted or they are muted until after the message's
//!   `created_at`); the append returns the members (the recipients), so
//!   the sending path needs no other store round trip (backends cache the
//!   members with their roles and mutes by the member list version, which
//!   every [`Membership`] change bumps).
//! * **Administration is atomic and enforced**: every [`Membership`]
//!   change (joins, invitations, join requests, bans, roles, mutes, the
//!   join policy) commits with its system message or not at all; a banned
//!   user is never added, invited or left with a join request, and a
//!   member never has a pending invitation or join request. Who may make a
//!   change is the engine's rule.
//! * **Batch reads**: the engine reads what it needs for many conversations
//!   ([`Store::members_of`], [`Store::last_messages`], [`Store::unread_counts`])
//!   in a bounded number of round trips, never one per conversation.
//! * **Replies, threads and mentions are checked in the append**: a
//!   `reply_to` or `thread_root` must be a message of the same conversation
//!   (`NotFound`), a thread root must not itself be in a thread
//!   (`Invalid`); only members are kept among the mentions.
//! * **Files are shared with the message**: an append whose content refers
//!   to files ([`content_file_ids`]) records each as shared in the
//!   conversation in the same transaction, and fails with
//!   [`StoreError::NotFound`] (nothing stored, no seq used) if one is not a
//!   complete file; [`Store::delete_expired_file`] never deletes a file
//!   that a committed message shares, even racing that append.
//! * **Blocks are applied in the append**: a message from a user is
//!   recorded as hidden (a stub, as if deleted for themselves, with no
//!   private version) for every member who blocks its sender when it is
//!   stored, and [`Appended::hidden_from`] lists them; in a direct
//!   conversation a block either way refuses the append with
//!   [`StoreError::Forbidden`], and so does a missing friendship when
//!   [`NewMessage::direct_needs_friendship`] is set. A user with no block
//!   costs the append no extra statement: what the blocks among a
//!   conversation's members are is cached by backends under a version that
//!   every block, unblock and friendship change of two members bumps.
//!
//! Every method reports failures as a typed [`StoreError`]; the engine turns it
//! into its own [`Error`](crate::Error) in one place.

use crate::model::*;
use async_trait::async_trait;
use im_protocol::v1;
use std::sync::Arc;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod error;
mod memory;
mod mentions;
#[cfg(feature = "postgres")]
pub mod postgres;
mod reactions;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use error::{StoreError, StoreResult};

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresStoreConfig};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{DieselStore, WriteStats};
/// For the diesel presence registry, which lives in the same database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use sql::{Run, SqlConnection, unavailable};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreConfig};

/// Persistent state of the engine. Implementations must be cheap to share
/// (`Arc<dyn Store>`) and must never block the async runtime.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user. `Conflict` if the user name is taken (case-insensitively).
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord>;
    /// The local user an external identity (issuer, subject) maps to.
    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserRecord>>;
    /// Creates a user and maps an external identity to it, atomically.
    /// `Conflict` if the user name is taken or the identity is already mapped
    /// (a concurrent first sight): nothing is written then.
    async fn create_user_with_identity(
        &self,
        user: NewUser,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<UserRecord>;
    /// Finds a user by name, case-insensitively.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    /// The users with these ids that exist, in no particular order.
    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<UserRecord>>;
    /// Users whose user name or display name starts with `prefix`
    /// (case-insensitive), ordered by user name, at most `limit`.
    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<UserRecord>>;
    /// Changes profile fields that are `Some`. `NotFound` for an unknown user.
    async fn update_profile(
        &self,
        user: UserId,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<UserRecord>;
    /// Records the time of a user's last disconnect.
    async fn set_last_seen(&self, user: UserId, at: i64) -> StoreResult<()>;

    /// Stores a session token (by its hash).
    async fn insert_token(&self, token_hash: &str, user: UserId, expires_at: i64) -> StoreResult<()>;
    /// The user and expiry of a token hash.
    async fn token(&self, token_hash: &str) -> StoreResult<Option<(UserId, i64)>>;
    /// Deletes a token; deleting an unknown one is not an error.
    async fn delete_token(&self, token_hash: &str) -> StoreResult<()>;
    /// Deletes tokens that expired at or before `now`; returns how many.
    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64>;

    /// Creates a group or room; the creator becomes owner, the others
    /// members. It starts with [`ConversationRecord::default_join_policy`]
    /// and unmuted.
    async fn create_conversation(&self, new: NewConversation) -> StoreResult<ConversationRecord>;
    /// The direct conversation of two users, created if needed: exactly one
    /// per pair. `Forbidden` (nothing created) when it does not exist yet
    /// and either user blocks the other.
    async fn direct_conversation(&self, a: UserId, b: UserId, now: i64) -> StoreResult<ConversationRecord>;
    /// A conversation by id.
    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>>;
    /// Deletes a conversation, its members and its messages, and its
    /// bans, invitations and join requests.
    async fn delete_conversation(&self, id: ConversationId) -> StoreResult<()>;
    /// Renames a conversation.
    async fn rename_conversation(&self, id: ConversationId, title: &str) -> StoreResult<()>;
    /// Public rooms, largest first, at most `limit`.
    async fn list_rooms(&self, limit: u32) -> StoreResult<Vec<ConversationRecord>>;
    /// A membership, if the user is a member.
    async fn member(&self, conversation: ConversationId, user: UserId) -> StoreResult<Option<MemberRecord>>;
    /// All members of a conversation, ordered by user id.
    async fn members(&self, conversation: ConversationId) -> StoreResult<Vec<MemberRecord>>;
    /// The conversations a user belongs to, with the membership.
    async fn user_conversations(&self, user: UserId) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>>;
    /// The conversations a user belongs to with an id in `(after, until]`
    /// (`until` `None`: no upper bound), in ascending id order, at most
    /// `limit` (`None`: all of them). Paged sync reads one id range at a time
    /// with this, so a user in very many conversations is never read whole.
    ///
    /// The default filters [`Store::user_conversations`]; backends override it
    /// with a ranged read.
    async fn user_conversations_in(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        let mut all: Vec<_> = self
            .user_conversations(user)
            .await?
            .into_iter()
            .filter(|(c, _)| c.id > after && until.is_none_or(|u| c.id <= u))
            .collect();
        all.sort_unstable_by_key(|(c, _)| c.id);
        all.truncate(limit.unwrap_or(usize::MAX));
        Ok(all)
    }
    /// The members of several conversations as `(conversation, user)` pairs,
    /// ordered by conversation then user; unknown conversations have none.
    /// One read however many conversations (backends may split very long
    /// lists into a few queries).
    async fn members_of(
        &self,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<(ConversationId, UserId)>>;

    /// A page of the members of a conversation: those with a user id above
    /// `after_user`, ascending, at most `limit` (none for an unknown
    /// conversation). The default filters [`Store::members`]; backends
    /// override it with a ranged read.
    async fn members_page(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        let mut page: Vec<MemberRecord> = self
            .members(conversation)
            .await?
            .into_iter()
            .filter(|m| m.user_id > after_user)
            .collect();
        page.sort_unstable_by_key(|m| m.user_id);
        page.truncate(limit as usize);
        Ok(page)
    }
    /// Where a user stands with a conversation: their membership, ban,
    /// pending invitation and join request, in one consistent read (all
    /// empty for an unknown conversation).
    async fn standing(&self, conversation: ConversationId, user: UserId) -> StoreResult<Standing>;
    /// The user's pending invitations with their conversations, newest
    /// first (ties by conversation id), at most `limit`.
    async fn invitations_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, InvitationRecord)>>;
    /// A conversation's pending join requests, oldest first (ties by user
    /// id), at most `limit`.
    async fn join_requests(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequestRecord>>;
    /// A conversation's bans with a user id above `after_user`, ascending,
    /// at most `limit`.
    async fn bans(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<BanRecord>>;

    /// Appends a message: see the trait docs for the guarantees.
    /// `NotFound` if the conversation does not exist.
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        self.append_message_then(new, Box::new(|_| {})).await
    }
    /// Appends a message and calls `on_commit` with it right after the
    /// commit: for the messages of one conversation stored through this
    /// store (this node), hooks run in sequence order, each before the next
    /// message's hook, even when the calls race. Not called for a duplicate
    /// or a failed append. The hook must not block (the engine queues the
    /// event for delivery there); it may run on the store's writer thread.
    async fn append_message_then(&self, new: NewMessage, on_commit: CommitHook) -> StoreResult<Appended>;
    /// The members of a conversation, ascending, with the member list
    /// version they are at (`None` for an unknown conversation): one
    /// consistent read, so the list is exactly the one of that version.
    async fn member_list(&self, conversation: ConversationId) -> StoreResult<Option<(u64, Arc<[UserId]>)>>;
    /// A page of history as `viewer` sees it (messages they deleted for
    /// themselves as [`v1::Message::deleted_stub`]s), always in ascending seq order.
    async fn history(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>>;
    /// The change log after a position, as `viewer` sees it: the latest
    /// states of the messages whose version is above `after_version`, in
    /// version order, at most `limit` (those `viewer` deleted for
    /// themselves as stubs), and every message `viewer` deleted for
    /// themselves after `after_private_version`. See [`ChangePage`].
    async fn changes(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        after_version: u64,
        after_private_version: u64,
        limit: u32,
    ) -> StoreResult<ChangePage>;
    /// A message of a conversation in its stored state (`None` if no
    /// message with this id is in this conversation).
    async fn message(&self, conversation: ConversationId, id: MessageId) -> StoreResult<Option<v1::Message>>;
    /// Applies an edit, a recall or a reaction (see [`ChangeKind`]) and
    /// calls `on_commit` right after the commit, in commit order with the
    /// conversation's appends, unless nothing changed. The change takes the
    /// conversation's next version, which becomes the message's.
    ///
    /// * `NotMember` if the actor is not a member now (or there is no such
    ///   conversation: the answer tells nothing about which exist); `NotFound` if the
    ///   message is not in the conversation; `Conflict` for an edit of, or a
    ///   reaction to, a recalled message, or a reaction beyond
    ///   [`MAX_REACTION_KINDS`] emoji. Nothing is written then.
    /// * Who may edit or recall (the sender, an admin) is the engine's rule;
    ///   the store checks only what must hold in the transaction.
    /// * A recall leaves no copy of the former content: the content, the
    ///   edit history and the reactions are deleted (backends overwrite freed
    ///   space where they can: SQLite's `secure_delete`).
    async fn change_message(&self, change: MessageChange, on_commit: ChangeHook) -> StoreResult<Changed>;
    /// Deletes messages for one member only: takes the member's next private
    /// version if any message was not hidden for them yet, and calls
    /// `on_commit` after the commit (not when nothing changed). `NotMember`
    /// if the user is not a member, `NotFound` if a message is not in the
    /// conversation (nothing is written then).
    async fn hide_messages(
        &self,
        conversation: ConversationId,
        user: UserId,
        messages: &[MessageId],
        on_commit: HideHook,
    ) -> StoreResult<Hidden>;
    /// The former contents of a message, oldest first (empty if never
    /// edited, or recalled).
    async fn edit_history(
        &self,
        conversation: ConversationId,
        message: MessageId,
    ) -> StoreResult<Vec<FormerContent>>;
    /// Number of messages of the main timeline (not thread replies) after
    /// `after_seq`, not sent by `user`, not recalled and not hidden from
    /// `user` (deleted for themselves, or sent by a user they blocked).
    async fn unread_count(
        &self,
        conversation: ConversationId,
        user: UserId,
        after_seq: u64,
    ) -> StoreResult<u64>;
    /// The latest message (highest seq) of each of these conversations that
    /// has one, as `viewer` sees it (a [`v1::Message::deleted_stub`] if they deleted it for
    /// themselves), in no particular order; conversations without messages,
    /// and unknown ones, are left out.
    async fn last_messages(
        &self,
        viewer: UserId,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<v1::Message>>;
    /// [`Store::unread_count`] for several conversations at once: for each
    /// `(conversation, after_seq)`, the number of messages of the main
    /// timeline after `after_seq` not sent by `user`, not recalled and not
    /// hidden from `user`. Conversations with no such message, and unknown
    /// ones, are left out of the answer (their count is 0), in no particular
    /// order; a conversation listed twice counts from its lowest `after_seq`.
    async fn unread_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>>;
    /// [`Store::unread_counts`] for mentions: for each `(conversation,
    /// after_seq)`, the messages after `after_seq` that mention `user` or
    /// everyone, not sent by `user`, not recalled, not from a user who was
    /// blocked by `user` when it was sent. Conversations with none are left
    /// out.
    async fn unread_mention_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>>;
    /// The pinned messages of a conversation as `viewer` sees them, most
    /// recently pinned first, at most `limit`.
    async fn pinned(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>>;
    /// A page of the replies in the thread under `root`, as `viewer` sees
    /// them, in ascending seq order (`Page` as for [`Store::history`]).
    async fn thread_replies(
        &self,
        conversation: ConversationId,
        root: MessageId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>>;
    /// Threads of a conversation as `viewer` sees them: the one under
    /// `root`, or (`None`) those with the most recent replies, newest
    /// first, at most `limit`. A root without replies has no thread and is
    /// left out.
    async fn threads(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        root: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<ThreadStats>>;
    /// Full-text search ([`crate::search`]): the messages matching `query`
    /// in the conversations `user` is a member of (only `conversation` if
    /// given), newest first, with ids below `before` if given, at most
    /// `limit`; never a recalled message or one `user` deleted for
    /// themselves.
    async fn search_messages(
        &self,
        user: UserId,
        query: &crate::search::SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>>;
    /// Messages whose `expires_at` is at or before `now` and that are not
    /// erased yet, soonest first, at most `limit`: what to erase with
    /// [`ChangeKind::Expire`].
    async fn expired_messages(&self, now: i64, limit: u32) -> StoreResult<Vec<(ConversationId, MessageId)>>;
    /// Moves a member's read cursor in a thread forward (never back, never
    /// past the conversation's `last_seq`); returns it. `NotMember` if not
    /// a member (or no such conversation), `NotFound` if `root` is not a
    /// message of the conversation that can have a thread.
    async fn mark_thread_read(
        &self,
        conversation: ConversationId,
        root: MessageId,
        user: UserId,
        seq: u64,
    ) -> StoreResult<u64>;
    /// Moves a member's read and/or delivered cursor forward (never back, never past `last_seq`).
    /// `NotFound` if not a member.
    async fn advance_cursors(
        &self,
        conversation: ConversationId,
        user: UserId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> StoreResult<MemberRecord>;

    /// Replaces a member's own settings of a conversation; `None` if the user
    /// is not a member.
    async fn set_member_settings(
        &self,
        conversation: ConversationId,
        user: UserId,
        settings: MemberSettings,
    ) -> StoreResult<Option<MemberRecord>>;

    /// Records a new upload (status uploading, nothing stored yet).
    /// `Conflict` if the id is taken.
    async fn create_file(&self, file: NewFile) -> StoreResult<FileRecord>;
    /// A file's metadata, `None` for an unknown id.
    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>>;
    /// Records an upload's progress (stored bytes, `updated_at = at`).
    /// `NotFound` for an unknown file.
    async fn file_progress(&self, id: &str, stored_bytes: u64, at: i64) -> StoreResult<()>;
    /// Marks an upload complete (stored bytes = size). `NotFound` for an
    /// unknown file, `Conflict` if it already was complete.
    async fn complete_file(&self, id: &str, done: FileCompletion) -> StoreResult<FileRecord>;
    /// Deletes a file's metadata and shares; true if it existed.
    async fn delete_file(&self, id: &str) -> StoreResult<bool>;
    /// Which of these ids name a file (in no particular order): the
    /// clean-up of blobs whose metadata is gone asks this in batches.
    async fn files_exist(&self, ids: &[FileId]) -> StoreResult<Vec<FileId>>;
    /// True if `user` is a member of a conversation the file was shared in.
    async fn file_shared_with(&self, id: &str, user: UserId) -> StoreResult<bool>;
    /// Files uploaded by others and shared in conversations `user` belongs
    /// to, most recently shared first, at most `limit` (a file shared in two
    /// of them is listed twice).
    async fn files_shared_with(&self, user: UserId, limit: u32) -> StoreResult<Vec<SharedFile>>;
    /// The declared sizes of the uploads `user` began at or after `since`, summed.
    async fn uploaded_bytes_since(&self, user: UserId, since: i64) -> StoreResult<u64>;
    /// Files to clean up, at most `limit`, in no particular order: uploads
    /// still in progress last updated before `stale_before`, and complete
    /// files completed before `unshared_before` that no message shares.
    async fn expired_files(
        &self,
        stale_before: i64,
        unshared_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<FileRecord>>;
    /// Deletes a file's metadata if it is still expired by the rule of
    /// [`Store::expired_files`], atomically with respect to an append
    /// sharing it; true if it was deleted.
    async fn delete_expired_file(
        &self,
        id: &str,
        stale_before: i64,
        unshared_before: i64,
    ) -> StoreResult<bool>;

    /// Records a friend request from `new.from` to `new.to`, or, if `to`
    /// has a pending request to `from`, makes them friends at once (both
    /// requests are then `Accepted`). Returns `from`'s request as stored.
    /// A request answered earlier is replaced by the new one.
    ///
    /// `Invalid` to oneself, `NotFound` for an unknown `to`, `Forbidden`
    /// when either blocks the other, `Conflict` when they are friends or a
    /// request from `from` is pending; nothing is written then.
    async fn send_friend_request(&self, new: NewFriendRequest) -> StoreResult<FriendRequestRecord>;
    /// Accepts (they become friends) or declines the pending request from
    /// `from` to `to`; returns it. `NotFound` if there is none pending.
    async fn respond_friend_request(
        &self,
        from: UserId,
        to: UserId,
        accept: bool,
        at: i64,
    ) -> StoreResult<FriendRequestRecord>;
    /// Ends the friendship of `user` and `other` (their requests go too),
    /// or else withdraws `user`'s pending request to `other`; says which.
    /// `NotFound` if there is neither.
    async fn remove_friend(&self, user: UserId, other: UserId) -> StoreResult<ContactRemoved>;
    /// The friends of `user` with the time each friendship began, most
    /// recent first.
    async fn friends(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>>;
    /// The friend requests `user` sent or received, in any state, most
    /// recently changed first.
    async fn friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequestRecord>>;
    /// `blocker` blocks `blocked`, atomically ending their friendship and
    /// dropping every request between them; later appends apply it (see the
    /// trait docs). `Invalid` to oneself, `NotFound` for an unknown
    /// `blocked`, `Conflict` if already blocked (nothing written).
    async fn block_user(&self, blocker: UserId, blocked: UserId, at: i64) -> StoreResult<BlockOutcome>;
    /// Lifts a block: later messages reach `blocker` again (those hidden
    /// stay hidden). `NotFound` if there was no such block.
    async fn unblock_user(&self, blocker: UserId, blocked: UserId) -> StoreResult<()>;
    /// The users `user` blocks with the time of each block, most recent first.
    async fn blocked_users(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>>;
    /// The blocks `user` is part of, both ways, in one read.
    async fn block_relations(&self, user: UserId) -> StoreResult<BlockRelations>;
    /// Friendship and blocks between `a` and `b`, in one read.
    async fn contact_state(&self, a: UserId, b: UserId) -> StoreResult<ContactState>;

    /// `Ok` if the store can serve reads and writes now (for readiness
    /// probes): cheap, and never writes. The default suits stores with
    /// nothing to lose contact with.
    async fn health(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Flushes and closes: called once at shutdown, after the last write.
    async fn close(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// When a message sent at `created_at` in a conversation whose messages
/// live `ttl_ms` disappears (0: never; messages written by the server stay).
pub(crate) fn expiry(sender: UserId, created_at: i64, ttl_ms: i64) -> i64 {
    if sender == 0 || ttl_ms <= 0 {
        0
    } else {
        created_at.saturating_add(ttl_ms)
    }
}

/// Why a member may not send, in words (shared by every store).
pub(crate) fn muted_message(conversation: ConversationId, members_muted: bool, until: i64) -> String {
    if members_muted {
        format!("only owners and admins can send in conversation {conversation} now")
    } else if until == i64::MAX {
        format!("you are muted in conversation {conversation}")
    } else {
        format!("you are muted in conversation {conversation} until {until} (Unix ms)")
    }
}

/// The conversation record of a new direct conversation started by `a`.
pub(crate) fn direct_new(a: UserId, now: i64) -> NewConversation {
    NewConversation {
        kind: v1::ConversationKind::Direct,
        title: String::new(),
        ephemeral: false,
        created_by: a,
        created_at: now,
        members: Vec::new(),
    }
}

/// The canonical key of the direct conversation of two users.
pub(crate) fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}
