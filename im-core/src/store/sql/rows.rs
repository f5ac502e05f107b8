//! Rows as read from the tables, the column lists that select them, and their
//! conversions to the model types.
//!
//! Each row is selected by an explicit column tuple (`USER`, `CONVERSATION`,
//! ...) whose order is the struct's field order. Unlike `as_select()`, a
//! column tuple does not name a backend, so one query value runs on SQLite
//! and PostgreSQL alike (see [`Loads`](super::Loads)).

use super::schema::*;
use crate::model::*;
use diesel::Queryable;
use im_protocol::v1;
use prost::Message as _;

/// The columns of a [`UserRow`], in field order.
pub(crate) const USER: (
    users::id,
    users::username,
    users::display_name,
    users::avatar_url,
    users::password_hash,
    users::created_at,
    users::last_seen,
) = (
    users::id,
    users::username,
    users::display_name,
    users::avatar_url,
    users::password_hash,
    users::created_at,
    users::last_seen,
);

/// A user as stored.
#[derive(Queryable)]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) username: String,
    pub(crate) display_name: String,
    pub(crate) avatar_url: String,
    pub(crate) password_hash: String,
    pub(crate) created_at: i64,
    pub(crate) last_seen: i64,
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> Self {
        UserRecord {
            id: r.id as u64,
            username: r.username,
            display_name: r.display_name,
            avatar_url: r.avatar_url,
            password_hash: r.password_hash,
            created_at: r.created_at,
            last_seen: r.last_seen,
        }
    }
}

/// The columns of a [`ConvRow`], in field order.
pub(crate) const CONVERSATION: (
    conversations::id,
    conversations::kind,
    conversations::title,
    conversations::ephemeral,
    conversations::created_by,
    conversations::created_at,
    conversations::last_seq,
    conversations::last_version,
    conversations::member_count,
    conversations::message_ttl_ms,
    conversations::join_policy,
    conversations::members_muted,
) = (
    conversations::id,
    conversations::kind,
    conversations::title,
    conversations::ephemeral,
    conversations::created_by,
    conversations::created_at,
    conversations::last_seq,
    conversations::last_version,
    conversations::member_count,
    conversations::message_ttl_ms,
    conversations::join_policy,
    conversations::members_muted,
);

/// A conversation as stored (without its direct key and member version).
#[derive(Queryable)]
pub(crate) struct ConvRow {
    pub(crate) id: i64,
    pub(crate) kind: i32,
    pub(crate) title: String,
    pub(crate) ephemeral: bool,
    pub(crate) created_by: i64,
    pub(crate) created_at: i64,
    pub(crate) last_seq: i64,
    pub(crate) last_version: i64,
    pub(crate) member_count: i32,
    pub(crate) message_ttl_ms: i64,
    pub(crate) join_policy: i32,
    pub(crate) members_muted: bool,
}

impl From<ConvRow> for ConversationRecord {
    fn from(r: ConvRow) -> Self {
        ConversationRecord {
            id: r.id as u64,
            kind: v1::ConversationKind::try_from(r.kind).unwrap_or(v1::ConversationKind::Unspecified),
            title: r.title,
            ephemeral: r.ephemeral,
            created_by: r.created_by as u64,
            created_at: r.created_at,
            last_seq: r.last_seq as u64,
            last_version: r.last_version as u64,
            member_count: r.member_count as u32,
            message_ttl_ms: r.message_ttl_ms,
            join_policy: v1::JoinPolicy::try_from(r.join_policy).unwrap_or(v1::JoinPolicy::Unspecified),
            members_muted: r.members_muted,
        }
    }
}

/// The columns of a [`MemberRow`], in field order.
pub(crate) const MEMBER: (
    members::conversation_id,
    members::user_id,
    members::role,
    members::joined_at,
    members::read_seq,
    members::delivered_seq,
    members::pinned_at,
    members::muted_until,
    members::archived,
    members::marked_unread,
    members::private_version,
    members::send_muted_until,
) = (
    members::conversation_id,
    members::user_id,
    members::role,
    members::joined_at,
    members::read_seq,
    members::delivered_seq,
    members::pinned_at,
    members::muted_until,
    members::archived,
    members::marked_unread,
    members::private_version,
    members::send_muted_until,
);

/// A membership as stored.
#[derive(Queryable)]
pub(crate) struct MemberRow {
    pub(crate) conversation_id: i64,
    pub(crate) user_id: i64,
    pub(crate) role: i32,
    pub(crate) joined_at: i64,
    pub(crate) read_seq: i64,
    pub(crate) delivered_seq: i64,
    pub(crate) pinned_at: i64,
    pub(crate) muted_until: i64,
    pub(crate) archived: bool,
    pub(crate) marked_unread: bool,
    pub(crate) private_version: i64,
    pub(crate) send_muted_until: i64,
}

impl From<MemberRow> for MemberRecord {
    fn from(r: MemberRow) -> Self {
        MemberRecord {
            conversation_id: r.conversation_id as u64,
            user_id: r.user_id as u64,
            role: v1::Role::try_from(r.role).unwrap_or(v1::Role::Member),
            joined_at: r.joined_at,
            read_seq: r.read_seq as u64,
            delivered_seq: r.delivered_seq as u64,
            settings: MemberSettings {
                pinned_at: r.pinned_at,
                muted_until: r.muted_until,
                archived: r.archived,
                marked_unread: r.marked_unread,
            },
            private_version: r.private_version as u64,
            send_muted_until: r.send_muted_until,
        }
    }
}

/// The columns of a [`MessageRow`], in field order.
#[allow(clippy::type_complexity)]
pub(crate) const MESSAGE: (
    messages::id,
    messages::conversation_id,
    messages::seq,
    messages::version,
    messages::sender_id,
    messages::client_msg_id,
    messages::created_at,
    messages::content,
    messages::edited_at,
    messages::recalled_at,
    messages::recalled_by,
    messages::reactions,
    messages::thread_root_id,
    messages::pinned_at,
    messages::pinned_by,
    messages::meta,
    messages::expires_at,
) = (
    messages::id,
    messages::conversation_id,
    messages::seq,
    messages::version,
    messages::sender_id,
    messages::client_msg_id,
    messages::created_at,
    messages::content,
    messages::edited_at,
    messages::recalled_at,
    messages::recalled_by,
    messages::reactions,
    messages::thread_root_id,
    messages::pinned_at,
    messages::pinned_by,
    messages::meta,
    messages::expires_at,
);

/// A message as stored; the content is the encoded `v1::Content` (empty
/// once recalled), the reactions the encoded `v1::Message` holding only
/// its reactions ([`encode_reactions`]).
#[derive(Queryable)]
pub(crate) struct MessageRow {
    pub(crate) id: i64,
    pub(crate) conversation_id: i64,
    pub(crate) seq: i64,
    pub(crate) version: i64,
    pub(crate) sender_id: i64,
    pub(crate) client_msg_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) content: Vec<u8>,
    pub(crate) edited_at: i64,
    pub(crate) recalled_at: i64,
    pub(crate) recalled_by: i64,
    pub(crate) reactions: Option<Vec<u8>>,
    pub(crate) thread_root_id: i64,
    pub(crate) pinned_at: i64,
    pub(crate) pinned_by: i64,
    pub(crate) meta: Option<Vec<u8>>,
    pub(crate) expires_at: i64,
}

impl From<MessageRow> for v1::Message {
    fn from(r: MessageRow) -> Self {
        let recalled = r.recalled_at != 0;
        let meta = r
            .meta
            .and_then(|b| v1::Message::decode(&b[..]).ok())
            .unwrap_or_default();
        v1::Message {
            id: r.id as u64,
            conversation_id: r.conversation_id as u64,
            seq: r.seq as u64,
            version: r.version as u64,
            sender_id: r.sender_id as u64,
            client_msg_id: r.client_msg_id.unwrap_or_default(),
            created_at: r.created_at,
            content: if recalled {
                None
            } else {
                v1::Content::decode(&r.content[..]).ok()
            },
            edited_at: r.edited_at,
            recalled_at: r.recalled_at,
            recalled_by: r.recalled_by as u64,
            deleted: false,
            reactions: r
                .reactions
                .and_then(|b| v1::Message::decode(&b[..]).ok())
                .map(|m| m.reactions)
                .unwrap_or_default(),
            reply_to: meta.reply_to,
            mention_user_ids: meta.mention_user_ids,
            mention_all: meta.mention_all,
            thread_root_id: r.thread_root_id as u64,
            forwarded: meta.forwarded,
            pinned_at: r.pinned_at,
            pinned_by: r.pinned_by as u64,
            expires_at: r.expires_at,
        }
    }
}

/// The stored form of what a sender attached (`None`: nothing): the
/// message's reply, mentions and forwarding origin.
pub(crate) fn encode_meta(m: &v1::Message) -> Option<Vec<u8>> {
    let meta = v1::Message {
        reply_to: m.reply_to,
        mention_user_ids: m.mention_user_ids.clone(),
        mention_all: m.mention_all,
        forwarded: m.forwarded,
        ..Default::default()
    };
    (meta != v1::Message::default()).then(|| meta.encode_to_vec())
}

/// The stored form of a reaction summary (`None`: no reactions).
pub(crate) fn encode_reactions(reactions: &[v1::Reaction]) -> Option<Vec<u8>> {
    (!reactions.is_empty()).then(|| {
        v1::Message {
            reactions: reactions.to_vec(),
            ..Default::default()
        }
        .encode_to_vec()
    })
}

/// Converts rows to messages.
pub(crate) fn messages_of(rows: Vec<MessageRow>) -> Vec<v1::Message> {
    rows.into_iter().map(Into::into).collect()
}

/// The columns of a [`FileRow`], in field order.
#[allow(clippy::type_complexity)]
pub(crate) const FILE: (
    files::id,
    files::uploader_id,
    files::name,
    files::size,
    files::stored_bytes,
    files::mime_type,
    files::sha256,
    files::status,
    files::created_at,
    files::updated_at,
    files::completed_at,
    files::width,
    files::height,
    files::duration_ms,
    files::thumbnail_id,
) = (
    files::id,
    files::uploader_id,
    files::name,
    files::size,
    files::stored_bytes,
    files::mime_type,
    files::sha256,
    files::status,
    files::created_at,
    files::updated_at,
    files::completed_at,
    files::width,
    files::height,
    files::duration_ms,
    files::thumbnail_id,
);

/// `files.status` of an upload in progress.
pub(crate) const FILE_UPLOADING: i32 = 0;
/// `files.status` of a complete file.
pub(crate) const FILE_COMPLETE: i32 = 1;

/// A file's metadata as stored.
#[derive(Queryable)]
pub(crate) struct FileRow {
    pub(crate) id: String,
    pub(crate) uploader_id: i64,
    pub(crate) name: String,
    pub(crate) size: i64,
    pub(crate) stored_bytes: i64,
    pub(crate) mime_type: String,
    pub(crate) sha256: String,
    pub(crate) status: i32,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) completed_at: Option<i64>,
    pub(crate) width: Option<i64>,
    pub(crate) height: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) thumbnail_id: Option<String>,
}

impl From<FileRow> for FileRecord {
    fn from(r: FileRow) -> Self {
        FileRecord {
            id: r.id,
            uploader_id: r.uploader_id as u64,
            name: r.name,
            size: r.size as u64,
            stored_bytes: r.stored_bytes as u64,
            mime_type: r.mime_type,
            sha256: r.sha256,
            status: if r.status == FILE_COMPLETE {
                FileStatus::Complete
            } else {
                FileStatus::Uploading
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            facts: MediaFacts {
                width: r.width.map(|v| v as u32),
                height: r.height.map(|v| v as u32),
                duration_ms: r.duration_ms.map(|v| v as u32),
                thumbnail_id: r.thumbnail_id,
            },
        }
    }
}

/// The columns of a [`BanRow`], in field order.
pub(crate) const BAN: (
    bans::conversation_id,
    bans::user_id,
    bans::banned_by,
    bans::created_at,
) = (
    bans::conversation_id,
    bans::user_id,
    bans::banned_by,
    bans::created_at,
);

/// A ban as stored.
#[derive(Queryable)]
pub(crate) struct BanRow {
    pub(crate) conversation_id: i64,
    pub(crate) user_id: i64,
    pub(crate) banned_by: i64,
    pub(crate) created_at: i64,
}

impl From<BanRow> for BanRecord {
    fn from(r: BanRow) -> Self {
        BanRecord {
            conversation_id: r.conversation_id as u64,
            user_id: r.user_id as u64,
            banned_by: r.banned_by as u64,
            created_at: r.created_at,
        }
    }
}

/// The columns of an [`InvitationRow`], in field order.
pub(crate) const INVITATION: (
    invitations::conversation_id,
    invitations::user_id,
    invitations::invited_by,
    invitations::created_at,
) = (
    invitations::conversation_id,
    invitations::user_id,
    invitations::invited_by,
    invitations::created_at,
);

/// A pending invitation as stored.
#[derive(Queryable)]
pub(crate) struct InvitationRow {
    pub(crate) conversation_id: i64,
    pub(crate) user_id: i64,
    pub(crate) invited_by: i64,
    pub(crate) created_at: i64,
}

impl From<InvitationRow> for InvitationRecord {
    fn from(r: InvitationRow) -> Self {
        InvitationRecord {
            conversation_id: r.conversation_id as u64,
            user_id: r.user_id as u64,
            invited_by: r.invited_by as u64,
            created_at: r.created_at,
        }
    }
}

/// The columns of a [`JoinRequestRow`], in field order.
pub(crate) const JOIN_REQUEST: (
    join_requests::conversation_id,
    join_requests::user_id,
    join_requests::created_at,
) = (
    join_requests::conversation_id,
    join_requests::user_id,
    join_requests::created_at,
);

/// A pending join request as stored.
#[derive(Queryable)]
pub(crate) struct JoinRequestRow {
    pub(crate) conversation_id: i64,
    pub(crate) user_id: i64,
    pub(crate) created_at: i64,
}

impl From<JoinRequestRow> for JoinRequestRecord {
    fn from(r: JoinRequestRow) -> Self {
        JoinRequestRecord {
            conversation_id: r.conversation_id as u64,
            user_id: r.user_id as u64,
            created_at: r.created_at,
        }
    }
}
