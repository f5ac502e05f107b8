//! Identifiers and the records the store keeps.
//!
//! Messages are kept as the wire type [`v1::Message`]: the content is stored
//! encoded, exactly as clients sent it, so the store never needs to change
//! when a content type gains a field.

use im_protocol::v1;

mod contacts;
pub use contacts::*;

/// A user id, assigned by the store.
pub type UserId = u64;
/// A conversation id, assigned by the store.
pub type ConversationId = u64;
/// A message id, unique across the server.
pub type MessageId = u64;
/// A session (one connection of one device) on this node.
pub type SessionId = u64;

/// A device or app install, as its client names itself in `Hello` (at most
/// 64 bytes). Empty when the client gave none; then every such connection
/// of a user shares the empty device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(std::sync::Arc<str>);

impl Default for DeviceId {
    /// The empty device id, shared: connections without one allocate nothing.
    fn default() -> Self {
        static EMPTY: std::sync::OnceLock<std::sync::Arc<str>> = std::sync::OnceLock::new();
        Self(EMPTY.get_or_init(|| std::sync::Arc::from("")).clone())
    }
}

impl DeviceId {
    /// Wraps a device id (not validated here; `Hello` checks the length).
    pub fn new(id: &str) -> Self {
        if id.is_empty() {
            return Self::default();
        }
        Self(id.into())
    }

    /// The id as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DeviceId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

/// One device of one user: where an event for a single device goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceAddress {
    /// The user.
    pub user_id: UserId,
    /// Their device.
    pub device: DeviceId,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Store-assigned id.
    pub id: UserId,
    /// Unique (case-insensitively) login name.
    pub username: String,
    /// Name shown to others.
    pub display_name: String,
    /// Avatar image URL, may be empty.
    pub avatar_url: String,
    /// argon2id PHC string; empty for users managed by the host product.
    pub password_hash: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Last disconnect, Unix ms (0: never).
    pub last_seen: i64,
}

impl UserRecord {
    /// The public profile.
    pub fn to_wire(&self) -> v1::User {
        v1::User {
            id: self.id,
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Unix ms.
    pub created_at: i64,
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRecord {
    /// Store-assigned id.
    pub id: ConversationId,
    /// Direct, group or room.
    pub kind: v1::ConversationKind,
    /// Title (empty for direct conversations).
    pub title: String,
    /// Deleted when the last member leaves.
    pub ephemeral: bool,
    /// Creator.
    pub created_by: UserId,
    /// Unix ms.
    pub created_at: i64,
    /// Sequence number of the newest message.
    pub last_seq: u64,
    /// Newest change-log position.
    pub last_version: u64,
    /// Current number of members.
    pub member_count: u32,
    /// Messages sent now disappear this long after sending, ms (0: never).
    pub message_ttl_ms: i64,
    /// Who may become a member: open (rooms always), approval or invite
    /// only (the default of groups); unspecified for direct conversations.
    pub join_policy: v1::JoinPolicy,
    /// Only owners and admins may send (the whole group is muted).
    pub members_muted: bool,
}

impl ConversationRecord {
    /// The wire form, without per-caller fields.
    pub fn to_wire(&self) -> v1::Conversation {
        v1::Conversation {
            id: self.id,
            kind: self.kind as i32,
            title: self.title.clone(),
            ephemeral: self.ephemeral,
            created_by: self.created_by,
            created_at: self.created_at,
            last_seq: self.last_seq,
            last_version: self.last_version,
            member_count: self.member_count,
            message_ttl_ms: self.message_ttl_ms,
            join_policy: self.join_policy as i32,
            members_muted: self.members_muted,
            ..Default::default()
        }
    }

    /// The join policy a new conversation of this kind starts with.
    pub fn default_join_policy(kind: v1::ConversationKind) -> v1::JoinPolicy {
        match kind {
            v1::ConversationKind::Room => v1::JoinPolicy::Open,
            v1::ConversationKind::Group => v1::JoinPolicy::InviteOnly,
            _ => v1::JoinPolicy::Unspecified,
        }
    }
}

/// A conversation to create.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// Group or room (direct ones go through `Store::direct_conversation`).
    pub kind: v1::ConversationKind,
    /// Title.
    pub title: String,
    /// Deleted when empty.
    pub ephemeral: bool,
    /// Creator; becomes owner.
    pub created_by: UserId,
    /// Unix ms.
    pub created_at: i64,
    /// Initial members besides the creator (plain members).
    pub members: Vec<UserId>,
}

/// A user's membership in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The member.
    pub user_id: UserId,
    /// Owner, admin or member.
    pub role: v1::Role,
    /// Unix ms.
    pub joined_at: i64,
    /// Highest seq the member has read.
    pub read_seq: u64,
    /// Highest seq delivered to one of the member's devices.
    pub delivered_seq: u64,
    /// The member's own settings of the conversation.
    pub settings: MemberSettings,
    /// The member's private change-log position: bumped by each deletion
    /// "for me" (see `Store::hide_messages`).
    pub private_version: u64,
    /// The member may not send until then (Unix ms; 0: not muted;
    /// `i64::MAX`: until lifted), set by an owner or admin
    /// ([`Membership::Mute`]). Not to be confused with
    /// [`MemberSettings::muted_until`], the member's own notification mute.
    pub send_muted_until: i64,
}

/// A member's own settings of a conversation (each member has theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemberSettings {
    /// When the member pinned it (Unix ms); 0: not pinned.
    pub pinned_at: i64,
    /// Notifications muted until (Unix ms); 0: not muted; `i64::MAX`: forever.
    pub muted_until: i64,
    /// Archived (kept out of the main list by clients).
    pub archived: bool,
    /// Marked unread by the member; reading clears it.
    pub marked_unread: bool,
}

impl MemberSettings {
    /// The wire form.
    pub fn to_wire(self) -> v1::ConversationSettings {
        v1::ConversationSettings {
            pinned_at: self.pinned_at,
            muted_until: self.muted_until,
            archived: self.archived,
            marked_unread: self.marked_unread,
        }
    }
}

impl MemberRecord {
    /// The wire form.
    pub fn to_wire(&self) -> v1::Member {
        v1::Member {
            user_id: self.user_id,
            role: self.role as i32,
            joined_at: self.joined_at,
            read_seq: self.read_seq,
            delivered_seq: self.delivered_seq,
            send_muted_until: self.send_muted_until,
        }
    }

    /// True if the member may send at `now` in a conversation whose
    /// members are muted or not: owners and admins always; members unless
    /// muted (alone, until after `now`, or all of them).
    pub fn may_send(&self, members_muted: bool, now: i64) -> bool {
        may_send(self.role, self.send_muted_until, members_muted, now)
    }

    /// A new member's record, with nothing read and default settings.
    pub fn new(conversation_id: ConversationId, user_id: UserId, role: v1::Role, joined_at: i64) -> Self {
        Self {
            conversation_id,
            user_id,
            role,
            joined_at,
            read_seq: 0,
            delivered_seq: 0,
            settings: MemberSettings::default(),
            private_version: 0,
            send_muted_until: 0,
        }
    }
}

/// The sending rule, once for every store: owners and admins may always
/// send; members unless the whole conversation is muted or they are muted
/// until after `now`.
pub fn may_send(role: v1::Role, send_muted_until: i64, members_muted: bool, now: i64) -> bool {
    matches!(role, v1::Role::Owner | v1::Role::Admin) || (!members_muted && send_muted_until <= now)
}

/// A change of who belongs to a conversation, or of its administration,
/// stored atomically with the system message announcing it (see the
/// `Store` docs). Each one bumps the conversation's
/// member list version, so caches of members, roles and mutes keyed by it
/// stay exact.
///
/// What must hold in the transaction is checked there: a variant that
/// fails writes nothing and uses no sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Membership {
    /// Add these users with these roles (users already members are left as
    /// they are); their pending invitations and join requests are dropped.
    /// `StoreError::Forbidden` if
    /// one of them is banned.
    Add(Vec<(UserId, v1::Role)>),
    /// Remove this user.
    Remove(UserId),
    /// Invite these users (`by` invites): members and users invited
    /// already are skipped. `Forbidden` if one of them is banned.
    Invite {
        /// The invitees.
        users: Vec<UserId>,
        /// Who invites.
        by: UserId,
    },
    /// The user accepts their invitation: a member (role member), the
    /// invitation dropped. `NotFound` if they have none.
    AcceptInvitation(UserId),
    /// The user declines their invitation: dropped. `NotFound` if none.
    DeclineInvitation(UserId),
    /// The user asks to join (a join request; one asked already stays as
    /// it was). `Forbidden` if banned, `Conflict` if a member.
    RequestJoin(UserId),
    /// A join request is approved (the user becomes a member) or refused;
    /// either way it is dropped. `NotFound` if there is none.
    DecideJoin {
        /// Who asked.
        user: UserId,
        /// Approve (else refuse).
        approve: bool,
    },
    /// Ban a user: removed if a member, their invitation and join request
    /// dropped, the ban recorded (a ban recorded already stays as it was).
    Ban {
        /// The banned user.
        user: UserId,
        /// Who bans.
        by: UserId,
    },
    /// Lift a ban. `NotFound` if the user is not banned.
    Unban(UserId),
    /// Give members these roles. `NotFound` if one is not a member.
    Roles(Vec<(UserId, v1::Role)>),
    /// Mute a member until a time (Unix ms; 0 lifts the mute). `NotFound`
    /// if not a member.
    Mute {
        /// The member.
        user: UserId,
        /// Until when.
        until: i64,
    },
    /// Mute (or unmute) the conversation: only owners and admins may send.
    MuteAll(bool),
    /// Set the join policy.
    Policy(v1::JoinPolicy),
}

/// A pending invitation to a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The invitee.
    pub user_id: UserId,
    /// Who invited them.
    pub invited_by: UserId,
    /// Unix ms.
    pub created_at: i64,
}

/// A pending request to join a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequestRecord {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who asks.
    pub user_id: UserId,
    /// Unix ms.
    pub created_at: i64,
}

/// A user banned from a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The banned user.
    pub user_id: UserId,
    /// Who banned them.
    pub banned_by: UserId,
    /// Unix ms.
    pub created_at: i64,
}

/// Where a user stands with a conversation besides membership (see
/// `Store::standing`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// Their membership, if a member.
    pub member: Option<MemberRecord>,
    /// Their ban, if banned.
    pub ban: Option<BanRecord>,
    /// Their pending invitation.
    pub invitation: Option<InvitationRecord>,
    /// Their pending join request.
    pub join_request: Option<JoinRequestRecord>,
}

/// A message to append.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    /// Target conversation.
    pub conversation_id: ConversationId,
    /// Sender (0 for system messages).
    pub sender_id: UserId,
    /// Client-chosen id for idempotent retries; unique per sender.
    pub client_msg_id: Option<String>,
    /// Content.
    pub content: v1::Content,
    /// Unix ms.
    pub created_at: i64,
    /// A membership change to apply in the same transaction.
    pub membership: Option<Membership>,
    /// Quotes this message of the conversation (checked by the store).
    pub reply_to: Option<MessageId>,
    /// Posted in the thread under this message of the conversation, which
    /// must not itself be in a thread (checked by the store).
    pub thread_root: Option<MessageId>,
    /// Users mentioned; the store keeps the members among them.
    pub mentions: Vec<UserId>,
    /// Mentions everyone.
    pub mention_all: bool,
    /// Where a forwarded copy came from.
    pub forwarded: Option<v1::Forwarded>,
    /// Sets the conversation's message time to live (ms, 0: off) in the
    /// same transaction (with the notice announcing it).
    pub message_ttl: Option<i64>,
    /// In a direct conversation, the sender must be the other member's
    /// friend (`Forbidden` otherwise): the engine's
    /// `direct_requires_friendship`.
    pub direct_needs_friendship: bool,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The stored message (the first one, for a duplicate).
    pub message: v1::Message,
    /// True when `(sender, client_msg_id)` was already stored: nothing was written.
    pub duplicate: bool,
    /// Member count after the membership change.
    pub member_count: u32,
    /// The members after the change, ascending: the recipients of the
    /// message. Empty for a duplicate (nothing new to deliver).
    pub members: std::sync::Arc<[UserId]>,
    /// The conversation's member list version after the change: increases
    /// with every membership change (0 for a duplicate).
    pub member_version: u64,
    /// Members the message is hidden from, ascending: they block its
    /// sender. They read it as a stub, and live delivery leaves them out.
    pub hidden_from: Vec<UserId>,
}

/// Called by a store with a message it just stored, right after the commit,
/// in commit order for each conversation (see `Store::append_message_then`).
pub type CommitHook = Box<dyn FnOnce(&Appended) + Send>;

/// A change to a stored message (see
/// `Store::change_message`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageChange {
    /// The conversation the message is in.
    pub conversation_id: ConversationId,
    /// The message.
    pub message_id: MessageId,
    /// Who makes the change: must be a member (checked in its transaction).
    pub actor: UserId,
    /// When, Unix ms.
    pub at: i64,
    /// What changes.
    pub kind: ChangeKind,
}

/// What a [`MessageChange`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// New content, marked edited at the change's time; the former content
    /// goes to the edit history. The current content again changes nothing.
    Edit(v1::Content),
    /// Erases the content, reactions and edit history and marks the message
    /// recalled by the actor. Recalling it again changes nothing.
    Recall,
    /// Adds the actor's reaction with `emoji`, or takes it back with
    /// `remove`. Adding one that exists or removing an absent one changes
    /// nothing.
    React {
        /// The emoji.
        emoji: String,
        /// Take it back.
        remove: bool,
    },
    /// Pins the message in its conversation (by the actor, at the change's
    /// time), or unpins it. Pinning a pinned one or unpinning an unpinned
    /// one changes nothing.
    Pin {
        /// Pin, or unpin.
        pinned: bool,
    },
    /// Erases an expired message as a recall by nobody (`recalled_by` 0):
    /// made by the server, not a member (the actor is ignored). Changes
    /// nothing before `expires_at` or if already erased.
    Expire,
}

/// The most different emoji on one message.
pub const MAX_REACTION_KINDS: usize = 50;
/// The most users listed per emoji in [`v1::Reaction::user_ids`].
pub const REACTION_USERS_LISTED: usize = 20;

/// The outcome of a [`MessageChange`].
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The message's state after the change.
    pub message: v1::Message,
    /// False when the change changed nothing: no version was used and the
    /// hook was not called.
    pub changed: bool,
    /// The members now, ascending: who hears of the change.
    pub members: std::sync::Arc<[UserId]>,
    /// The conversation's member list version.
    pub member_version: u64,
    /// Members the message is hidden from because they block its sender
    /// (see [`Appended::hidden_from`]): they hear nothing of the change.
    pub hidden_from: Vec<UserId>,
}

/// Called with a change right after its commit, in commit order with the
/// conversation's appends (see `Store::change_message`).
pub type ChangeHook = Box<dyn FnOnce(&Changed) + Send>;

/// The outcome of deleting messages for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The member.
    pub user_id: UserId,
    /// The messages hidden now (those hidden before are left out), in the
    /// order asked.
    pub message_ids: Vec<MessageId>,
    /// The member's private change-log position after it.
    pub private_version: u64,
}

/// Called with a deletion for one member right after its commit.
pub type HideHook = Box<dyn FnOnce(&Hidden) + Send>;

/// A page of a conversation's change log as one member sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangePage {
    /// The latest states of the messages changed after the position, in
    /// version order; those the member deleted for themselves as stubs
    /// ([`v1::Message::deleted_stub`]).
    pub messages: Vec<v1::Message>,
    /// `Some(v)` when the limit cut the page short: it covers the log up to
    /// version `v` only.
    pub covered_to: Option<u64>,
    /// The messages the member deleted for themselves after the private
    /// position, in the order deleted (those deleted together by id).
    pub deleted: Vec<MessageId>,
    /// The member's private position (0 if not a member).
    pub private_version: u64,
}

/// A thread of a conversation as one member sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ThreadStats {
    /// The thread's root, as the member sees it.
    pub root: v1::Message,
    /// Replies in the thread (recalled ones included: they keep their place).
    pub reply_count: u32,
    /// Replies after the member's thread read cursor, not theirs, not recalled.
    pub unread_count: u32,
    /// The member's read cursor in the thread (0: nothing read).
    pub read_seq: u64,
    /// Seq of the newest reply.
    pub last_reply_seq: u64,
    /// Time of the newest reply, Unix ms.
    pub last_reply_at: i64,
}

/// One former content of an edited message.
#[derive(Debug, Clone, PartialEq)]
pub struct FormerContent {
    /// The content.
    pub content: v1::Content,
    /// When it was written (sent, or the edit that wrote it), Unix ms.
    pub written_at: i64,
}

/// Direction of a history page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest `limit` messages with seq below this (0 = from the end), returned oldest first.
    Before(u64),
    /// The oldest `limit` messages with seq above this.
    After(u64),
}

/// A file's id: the id of its bytes in the blob store, as text
/// (32 lowercase hex digits).
pub type FileId = String;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Bytes are still arriving (or the upload was interrupted and may resume).
    Uploading,
    /// Every declared byte is stored, hashed and typed.
    Complete,
}

/// Optional media facts a client supplies with an upload (display hints:
/// the server does not decode media to check them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaFacts {
    /// Pixels, for images and videos.
    pub width: Option<u32>,
    /// Pixels, for images and videos.
    pub height: Option<u32>,
    /// Length of audio or video, ms.
    pub duration_ms: Option<u32>,
    /// A thumbnail the same user uploaded as a file of its own.
    pub thumbnail_id: Option<FileId>,
}

/// A file's metadata, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Server-generated id.
    pub id: FileId,
    /// Who uploaded it.
    pub uploader_id: UserId,
    /// The client's name for it, sanitized: for display only, never a path.
    pub name: String,
    /// Size the uploader declared, bytes.
    pub size: u64,
    /// Bytes stored when last recorded (the blob's length is the live
    /// figure while uploading; equals `size` once complete).
    pub stored_bytes: u64,
    /// Sniffed from the bytes at completion (empty while uploading).
    pub mime_type: String,
    /// Lowercase hex SHA-256 of the bytes (empty while uploading).
    pub sha256: String,
    /// Uploading or complete.
    pub status: FileStatus,
    /// When the upload began, Unix ms.
    pub created_at: i64,
    /// Last progress (begin, an interruption, completion), Unix ms.
    pub updated_at: i64,
    /// When the last byte was stored, Unix ms.
    pub completed_at: Option<i64>,
    /// Width, height, duration, thumbnail, as the uploader gave them.
    pub facts: MediaFacts,
}

/// A file to record at the start of an upload.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Server-generated id.
    pub id: FileId,
    /// Uploader.
    pub uploader_id: UserId,
    /// Sanitized name.
    pub name: String,
    /// Declared size, bytes.
    pub size: u64,
    /// Unix ms.
    pub created_at: i64,
    /// Optional media facts.
    pub facts: MediaFacts,
}

/// What completing an upload records.
#[derive(Debug, Clone)]
pub struct FileCompletion {
    /// Sniffed MIME type.
    pub mime_type: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Unix ms.
    pub completed_at: i64,
}

/// A file shared in a conversation, as listed for one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// The file.
    pub file: FileRecord,
    /// The conversation it was shared in.
    pub conversation_id: ConversationId,
    /// When it was (first) shared there, Unix ms.
    pub shared_at: i64,
}

/// The files a message's content refers to (its media file and thumbnail):
/// an append records each as shared in the message's conversation.
pub fn content_file_ids(content: &v1::Content) -> Vec<FileId> {
    use v1::content::Kind;
    match &content.kind {
        Some(Kind::Image(m) | Kind::Audio(m) | Kind::Video(m) | Kind::File(m) | Kind::Voice(m)) => {
            [&m.file_id, &m.thumbnail_file_id]
                .into_iter()
                .filter(|id| !id.is_empty())
                .cloned()
                .collect()
        }
        Some(Kind::Bundle(b)) => b
            .items
            .iter()
            .filter_map(|item| item.content.as_ref())
            .flat_map(content_file_ids)
            .collect(),
        _ => Vec::new(),
    }
}
