//! `MemoryStore`: everything in process memory. The default for tests and
//! for embedders who do not need persistence.

use super::{Store, StoreError, StoreResult, direct_key, direct_new};
use crate::model::*;
use async_trait::async_trait;
use im_protocol::v1;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod admin;
mod append;
mod changes;
mod contacts;
mod files;
mod members;
mod messages;
mod threads;

/// An in-memory [`Store`]. Data is lost when it is dropped.
///
/// ```
/// use im_core::store::{MemoryStore, Store};
/// use std::sync::Arc;
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: BTreeMap<UserId, UserRecord>,
    tokens: HashMap<String, (UserId, i64)>,
    /// External identities: (issuer, subject) to user.
    identities: HashMap<(String, String), UserId>,
    conversations: BTreeMap<ConversationId, Conv>,
    direct: HashMap<String, ConversationId>,
    dedup: HashMap<(UserId, String), (ConversationId, u64)>,
    next_user: u64,
    next_conversation: u64,
    next_message: u64,
    /// Uploaded files and their shares.
    files: files::Files,
    /// Friend requests, friendships, blocks.
    contacts: contacts::Contacts,
}

/// Who reacted to one message: each emoji in first-use order, with its
/// users ordered by (time, user).
type Reactions = Vec<(String, Vec<(i64, UserId)>)>;

struct Conv {
    record: ConversationRecord,
    direct_key: Option<String>,
    members: BTreeMap<UserId, MemberRecord>,
    /// Bumped by every membership change.
    member_version: u64,
    /// Index = seq - 1.
    messages: Vec<v1::Message>,
    /// What members deleted for themselves: (user, message) to the
    /// member's private version of the deletion; 0 for a message hidden
    /// when stored because the member blocks its sender.
    hidden: HashMap<(UserId, MessageId), u64>,
    /// The former contents of edited messages, oldest first.
    edits: HashMap<MessageId, Vec<FormerContent>>,
    /// Who reacted with what: per message, each emoji in first-use order
    /// with its users ordered by (time, user).
    reactions: HashMap<MessageId, Reactions>,
    /// Each member's read cursor in each thread: (root, user) to seq.
    thread_reads: HashMap<(MessageId, UserId), u64>,
    /// Bans, pending invitations and join requests, by user.
    admin: admin::Admin,
}

impl Conv {
    /// The index of a message in `messages` (ids grow with seq).
    fn index_of(&self, id: MessageId) -> Option<usize> {
        self.messages.binary_search_by_key(&id, |m| m.id).ok()
    }

    /// A message as `viewer` sees it.
    fn seen_by(&self, viewer: UserId, m: &v1::Message) -> v1::Message {
        if self.hidden.contains_key(&(viewer, m.id)) {
            m.deleted_stub()
        } else {
            m.clone()
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    fn new_conversation(
        &mut self,
        new: NewConversation,
        members: Vec<(UserId, v1::Role)>,
        direct_key: Option<String>,
    ) -> ConversationRecord {
        let NewConversation {
            kind,
            title,
            ephemeral,
            created_by,
            created_at,
            ..
        } = new;
        self.next_conversation += 1;
        let id = self.next_conversation;
        let members: BTreeMap<_, _> = members
            .into_iter()
            .map(|(user_id, role)| (user_id, MemberRecord::new(id, user_id, role, created_at)))
            .collect();
        let record = ConversationRecord {
            id,
            kind,
            title,
            ephemeral,
            created_by,
            created_at,
            last_seq: 0,
            last_version: 0,
            member_count: members.len() as u32,
            message_ttl_ms: 0,
            join_policy: ConversationRecord::default_join_policy(kind),
            members_muted: false,
        };
        if let Some(key) = &direct_key {
            self.direct.insert(key.clone(), id);
        }
        self.conversations.insert(
            id,
            Conv {
                record: record.clone(),
                direct_key,
                members,
                member_version: 0,
                messages: Vec::new(),
                hidden: HashMap::new(),
                edits: HashMap::new(),
                reactions: HashMap::new(),
                thread_reads: HashMap::new(),
                admin: admin::Admin::default(),
            },
        );
        record
    }

    fn conv(&mut self, id: ConversationId) -> StoreResult<&mut Conv> {
        self.conversations
            .get_mut(&id)
            .ok_or_else(|| StoreError::NotFound(format!("conversation {id}")))
    }
}

fn matches_prefix(u: &UserRecord, prefix: &str) -> bool {
    u.username.to_lowercase().starts_with(prefix) || u.display_name.to_lowercase().starts_with(prefix)
}

impl Inner {
    fn create_user(&mut self, user: NewUser) -> StoreResult<UserRecord> {
        let lower = user.username.to_lowercase();
        if self.users.values().any(|u| u.username.to_lowercase() == lower) {
            return Err(StoreError::Conflict(format!(
                "user name {:?} is taken",
                user.username
            )));
        }
        self.next_user += 1;
        let record = UserRecord {
            id: self.next_user,
            username: user.username,
            display_name: user.display_name,
            avatar_url: String::new(),
            password_hash: user.password_hash,
            created_at: user.created_at,
            last_seen: 0,
        };
        self.users.insert(record.id, record.clone());
        Ok(record)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        self.inner.lock().create_user(user)
    }

    async fn user_by_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserRecord>> {
        let inner = self.inner.lock();
        let id = inner.identities.get(&(issuer.to_owned(), subject.to_owned()));
        Ok(id.and_then(|id| inner.users.get(id)).cloned())
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<UserRecord> {
        let mut inner = self.inner.lock();
        let key = (issuer.to_owned(), subject.to_owned());
        if inner.identities.contains_key(&key) {
            return Err(StoreError::Conflict(format!(
                "identity {issuer}/{subject} is already mapped"
            )));
        }
        let created = inner.create_user(user)?;
        inner.identities.insert(key, created.id);
        Ok(created)
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let lower = username.to_lowercase();
        let inner = self.inner.lock();
        Ok(inner
            .users
            .values()
            .find(|u| u.username.to_lowercase() == lower)
            .cloned())
    }

    async fn users_by_ids(&self, ids: &[UserId]) -> StoreResult<Vec<UserRecord>> {
        let inner = self.inner.lock();
        Ok(ids.iter().filter_map(|id| inner.users.get(id).cloned()).collect())
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
        let prefix = prefix.to_lowercase();
        let inner = self.inner.lock();
        let mut found: Vec<_> = inner
            .users
            .values()
            .filter(|u| matches_prefix(u, &prefix))
            .cloned()
            .collect();
        found.sort_by_key(|u| u.username.to_lowercase());
        found.truncate(limit as usize);
        Ok(found)
    }

    async fn update_profile(
        &self,
        user: UserId,
        display_name: Option<String>,
        avatar_url: Option<String>,
    ) -> StoreResult<UserRecord> {
        let mut inner = self.inner.lock();
        let u = inner
            .users
            .get_mut(&user)
            .ok_or_else(|| StoreError::NotFound(format!("user {user}")))?;
        if let Some(d) = display_name {
            u.display_name = d;
        }
        if let Some(a) = avatar_url {
            u.avatar_url = a;
        }
        Ok(u.clone())
    }

    async fn set_last_seen(&self, user: UserId, at: i64) -> StoreResult<()> {
        if let Some(u) = self.inner.lock().users.get_mut(&user) {
            u.last_seen = at;
        }
        Ok(())
    }

    async fn insert_token(&self, token_hash: &str, user: UserId, expires_at: i64) -> StoreResult<()> {
        self.inner
            .lock()
            .tokens
            .insert(token_hash.to_owned(), (user, expires_at));
        Ok(())
    }

    async fn token(&self, token_hash: &str) -> StoreResult<Option<(UserId, i64)>> {
        Ok(self.inner.lock().tokens.get(token_hash).copied())
    }

    async fn delete_token(&self, token_hash: &str) -> StoreResult<()> {
        self.inner.lock().tokens.remove(token_hash);
        Ok(())
    }

    async fn purge_expired_tokens(&self, now: i64) -> StoreResult<u64> {
        let mut inner = self.inner.lock();
        let before = inner.tokens.len();
        inner.tokens.retain(|_, (_, expires_at)| *expires_at > now);
        Ok((before - inner.tokens.len()) as u64)
    }

    async fn create_conversation(&self, new: NewConversation) -> StoreResult<ConversationRecord> {
        let mut inner = self.inner.lock();
        let members = std::iter::once((new.created_by, v1::Role::Owner)).chain(
            new.members
                .iter()
                .filter(|&&m| m != new.created_by)
                .map(|&m| (m, v1::Role::Member)),
        );
        let members: Vec<_> = members.collect();
        Ok(inner.new_conversation(new, members, None))
    }

    async fn direct_conversation(&self, a: UserId, b: UserId, now: i64) -> StoreResult<ConversationRecord> {
        let key = direct_key(a, b);
        let mut inner = self.inner.lock();
        if let Some(id) = inner.direct.get(&key).copied() {
            return Ok(inner.conv(id)?.record.clone());
        }
        inner.check_new_direct(a, b)?;
        let members: Vec<_> = if a == b {
            vec![(a, v1::Role::Member)]
        } else {
            vec![(a, v1::Role::Member), (b, v1::Role::Member)]
        };
        Ok(inner.new_conversation(direct_new(a, now), members, Some(key)))
    }

    async fn conversation(&self, id: ConversationId) -> StoreResult<Option<ConversationRecord>> {
        Ok(self.inner.lock().conversations.get(&id).map(|c| c.record.clone()))
    }

    async fn delete_conversation(&self, id: ConversationId) -> StoreResult<()> {
        let mut inner = self.inner.lock();
        if let Some(conv) = inner.conversations.remove(&id) {
            if let Some(key) = conv.direct_key {
                inner.direct.remove(&key);
            }
            inner.dedup.retain(|_, (c, _)| *c != id);
            inner.files.unshare_conversation(id);
        }
        Ok(())
    }

    async fn rename_conversation(&self, id: ConversationId, title: &str) -> StoreResult<()> {
        self.inner.lock().conv(id)?.record.title = title.to_owned();
        Ok(())
    }

    async fn list_rooms(&self, limit: u32) -> StoreResult<Vec<ConversationRecord>> {
        let inner = self.inner.lock();
        let mut rooms: Vec<_> = inner
            .conversations
            .values()
            .filter(|c| c.record.kind == v1::ConversationKind::Room)
            .map(|c| c.record.clone())
            .collect();
        rooms.sort_by(|a, b| b.member_count.cmp(&a.member_count).then(a.id.cmp(&b.id)));
        rooms.truncate(limit as usize);
        Ok(rooms)
    }

    async fn member(&self, conversation: ConversationId, user: UserId) -> StoreResult<Option<MemberRecord>> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .get(&conversation)
            .and_then(|c| c.members.get(&user).cloned()))
    }

    async fn members(&self, conversation: ConversationId) -> StoreResult<Vec<MemberRecord>> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .get(&conversation)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn user_conversations(&self, user: UserId) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .values()
            .filter_map(|c| c.members.get(&user).map(|m| (c.record.clone(), m.clone())))
            .collect())
    }

    async fn user_conversations_in(
        &self,
        user: UserId,
        after: ConversationId,
        until: Option<ConversationId>,
        limit: Option<usize>,
    ) -> StoreResult<Vec<(ConversationRecord, MemberRecord)>> {
        use std::ops::Bound;
        let upper = until.map_or(Bound::Unbounded, Bound::Included);
        if until.is_some_and(|u| u <= after) {
            return Ok(Vec::new());
        }
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .range((Bound::Excluded(after), upper))
            .filter_map(|(_, c)| c.members.get(&user).map(|m| (c.record.clone(), m.clone())))
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    async fn members_of(
        &self,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<(ConversationId, UserId)>> {
        let mut ids = conversations.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let inner = self.inner.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.conversations.get(id))
            .flat_map(|c| c.members.keys().map(|&user| (c.record.id, user)))
            .collect())
    }

    async fn members_page(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<MemberRecord>> {
        use std::ops::Bound;
        let inner = self.inner.lock();
        Ok(inner.conversations.get(&conversation).map_or_else(Vec::new, |c| {
            c.members
                .range((Bound::Excluded(after_user), Bound::Unbounded))
                .take(limit as usize)
                .map(|(_, m)| m.clone())
                .collect()
        }))
    }

    async fn standing(&self, conversation: ConversationId, user: UserId) -> StoreResult<Standing> {
        Ok(self.inner.lock().standing(conversation, user))
    }

    async fn invitations_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(ConversationRecord, InvitationRecord)>> {
        Ok(self.inner.lock().invitations_of(user, limit))
    }

    async fn join_requests(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<JoinRequestRecord>> {
        Ok(self.inner.lock().join_requests(conversation, limit))
    }

    async fn bans(
        &self,
        conversation: ConversationId,
        after_user: UserId,
        limit: u32,
    ) -> StoreResult<Vec<BanRecord>> {
        Ok(self.inner.lock().bans(conversation, after_user, limit))
    }

    async fn append_message_then(&self, new: NewMessage, on_commit: CommitHook) -> StoreResult<Appended> {
        // Under the lock: hooks run in commit order.
        self.inner.lock().append(new, on_commit)
    }

    async fn member_list(&self, conversation: ConversationId) -> StoreResult<Option<(u64, Arc<[UserId]>)>> {
        let inner = self.inner.lock();
        Ok(inner.conversations.get(&conversation).map(|c| {
            let list: Arc<[UserId]> = c.members.keys().copied().collect::<Vec<_>>().into();
            (c.member_version, list)
        }))
    }

    async fn history(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        Ok(self.inner.lock().history(conversation, viewer, page, limit))
    }

    async fn changes(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        after_version: u64,
        after_private_version: u64,
        limit: u32,
    ) -> StoreResult<ChangePage> {
        Ok(self
            .inner
            .lock()
            .changes(conversation, viewer, after_version, after_private_version, limit))
    }

    async fn message(&self, conversation: ConversationId, id: MessageId) -> StoreResult<Option<v1::Message>> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .get(&conversation)
            .and_then(|c| Some(c.messages[c.index_of(id)?].clone())))
    }

    async fn change_message(&self, change: MessageChange, on_commit: ChangeHook) -> StoreResult<Changed> {
        // Under the lock: hooks run in commit order.
        self.inner.lock().change_message(change, on_commit)
    }

    async fn hide_messages(
        &self,
        conversation: ConversationId,
        user: UserId,
        messages: &[MessageId],
        on_commit: HideHook,
    ) -> StoreResult<Hidden> {
        self.inner
            .lock()
            .hide_messages(conversation, user, messages, on_commit)
    }

    async fn edit_history(
        &self,
        conversation: ConversationId,
        message: MessageId,
    ) -> StoreResult<Vec<FormerContent>> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .get(&conversation)
            .and_then(|c| c.edits.get(&message).cloned())
            .unwrap_or_default())
    }

    async fn unread_count(
        &self,
        conversation: ConversationId,
        user: UserId,
        after_seq: u64,
    ) -> StoreResult<u64> {
        let inner = self.inner.lock();
        Ok(inner
            .conversations
            .get(&conversation)
            .map_or(0, |c| messages::unread(c, user, after_seq)))
    }

    async fn last_messages(
        &self,
        viewer: UserId,
        conversations: &[ConversationId],
    ) -> StoreResult<Vec<v1::Message>> {
        let inner = self.inner.lock();
        let mut seen = std::collections::HashSet::new();
        Ok(conversations
            .iter()
            .filter(|&&id| seen.insert(id))
            .filter_map(|id| {
                let conv = inner.conversations.get(id)?;
                Some(conv.seen_by(viewer, conv.messages.last()?))
            })
            .collect())
    }

    async fn unread_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>> {
        // A conversation listed twice counts from its lowest cursor.
        let mut lowest: BTreeMap<ConversationId, u64> = BTreeMap::new();
        for &(id, after_seq) in cursors {
            let e = lowest.entry(id).or_insert(after_seq);
            *e = (*e).min(after_seq);
        }
        let inner = self.inner.lock();
        Ok(lowest
            .into_iter()
            .filter_map(|(id, after_seq)| {
                let n = messages::unread(inner.conversations.get(&id)?, user, after_seq);
                (n > 0).then_some((id, n))
            })
            .collect())
    }

    async fn unread_mention_counts(
        &self,
        user: UserId,
        cursors: &[(ConversationId, u64)],
    ) -> StoreResult<Vec<(ConversationId, u64)>> {
        Ok(self.inner.lock().unread_mention_counts(user, cursors))
    }

    async fn pinned(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        Ok(self.inner.lock().pinned(conversation, viewer, limit))
    }

    async fn thread_replies(
        &self,
        conversation: ConversationId,
        root: MessageId,
        viewer: UserId,
        page: Page,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        Ok(self
            .inner
            .lock()
            .thread_replies(conversation, root, viewer, page, limit))
    }

    async fn threads(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        root: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<ThreadStats>> {
        Ok(self.inner.lock().threads(conversation, viewer, root, limit))
    }

    async fn search_messages(
        &self,
        user: UserId,
        query: &crate::search::SearchQuery,
        conversation: Option<ConversationId>,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<v1::Message>> {
        let inner = self.inner.lock();
        let mut hits: Vec<v1::Message> = inner
            .conversations
            .values()
            .filter(|c| c.members.contains_key(&user) && conversation.is_none_or(|id| id == c.record.id))
            .flat_map(|c| {
                c.messages.iter().filter(move |m| {
                    m.recalled_at == 0
                        && before.is_none_or(|b| m.id < b)
                        && !c.hidden.contains_key(&(user, m.id))
                        && m.content
                            .as_ref()
                            .is_some_and(|content| query.matches(&crate::search::content_tokens(content)))
                })
            })
            .cloned()
            .collect();
        hits.sort_unstable_by_key(|m| std::cmp::Reverse(m.id));
        hits.truncate(limit as usize);
        Ok(hits)
    }

    async fn expired_messages(&self, now: i64, limit: u32) -> StoreResult<Vec<(ConversationId, MessageId)>> {
        let inner = self.inner.lock();
        let mut due: Vec<(i64, ConversationId, MessageId)> = inner
            .conversations
            .values()
            .flat_map(|c| c.messages.iter())
            .filter(|m| m.expires_at != 0 && m.expires_at <= now && m.recalled_at == 0)
            .map(|m| (m.expires_at, m.conversation_id, m.id))
            .collect();
        due.sort_unstable();
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|(_, c, m)| (c, m))
            .collect())
    }

    async fn mark_thread_read(
        &self,
        conversation: ConversationId,
        root: MessageId,
        user: UserId,
        seq: u64,
    ) -> StoreResult<u64> {
        self.inner.lock().mark_thread_read(conversation, root, user, seq)
    }

    async fn advance_cursors(
        &self,
        conversation: ConversationId,
        user: UserId,
        read: Option<u64>,
        delivered: Option<u64>,
    ) -> StoreResult<MemberRecord> {
        self.inner
            .lock()
            .advance_cursors(conversation, user, read, delivered)
    }

    async fn set_member_settings(
        &self,
        conversation: ConversationId,
        user: UserId,
        settings: MemberSettings,
    ) -> StoreResult<Option<MemberRecord>> {
        Ok(self
            .inner
            .lock()
            .set_member_settings(conversation, user, settings))
    }

    async fn create_file(&self, file: NewFile) -> StoreResult<FileRecord> {
        self.inner.lock().create_file(file)
    }

    async fn file(&self, id: &str) -> StoreResult<Option<FileRecord>> {
        Ok(self.inner.lock().file(id))
    }

    async fn file_progress(&self, id: &str, stored_bytes: u64, at: i64) -> StoreResult<()> {
        self.inner.lock().file_progress(id, stored_bytes, at)
    }

    async fn complete_file(&self, id: &str, done: FileCompletion) -> StoreResult<FileRecord> {
        self.inner.lock().complete_file(id, done)
    }

    async fn delete_file(&self, id: &str) -> StoreResult<bool> {
        Ok(self.inner.lock().delete_file(id))
    }

    async fn files_exist(&self, ids: &[FileId]) -> StoreResult<Vec<FileId>> {
        let inner = self.inner.lock();
        Ok(ids
            .iter()
            .filter(|id| inner.file(id).is_some())
            .cloned()
            .collect())
    }

    async fn file_shared_with(&self, id: &str, user: UserId) -> StoreResult<bool> {
        Ok(self.inner.lock().file_shared_with(id, user))
    }

    async fn files_shared_with(&self, user: UserId, limit: u32) -> StoreResult<Vec<SharedFile>> {
        Ok(self.inner.lock().files_shared_with(user, limit))
    }

    async fn uploaded_bytes_since(&self, user: UserId, since: i64) -> StoreResult<u64> {
        Ok(self.inner.lock().uploaded_bytes_since(user, since))
    }

    async fn expired_files(
        &self,
        stale_before: i64,
        unshared_before: i64,
        limit: u32,
    ) -> StoreResult<Vec<FileRecord>> {
        Ok(self
            .inner
            .lock()
            .expired_files(stale_before, unshared_before, limit))
    }

    async fn delete_expired_file(
        &self,
        id: &str,
        stale_before: i64,
        unshared_before: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .inner
            .lock()
            .delete_expired_file(id, stale_before, unshared_before))
    }

    async fn send_friend_request(&self, new: NewFriendRequest) -> StoreResult<FriendRequestRecord> {
        self.inner.lock().send_friend_request(new)
    }

    async fn respond_friend_request(
        &self,
        from: UserId,
        to: UserId,
        accept: bool,
        at: i64,
    ) -> StoreResult<FriendRequestRecord> {
        self.inner.lock().respond_friend_request(from, to, accept, at)
    }

    async fn remove_friend(&self, user: UserId, other: UserId) -> StoreResult<ContactRemoved> {
        self.inner.lock().remove_friend(user, other)
    }

    async fn friends(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
        Ok(self.inner.lock().friends_of(user))
    }

    async fn friend_requests(&self, user: UserId) -> StoreResult<Vec<FriendRequestRecord>> {
        Ok(self.inner.lock().friend_requests(user))
    }

    async fn block_user(&self, blocker: UserId, blocked: UserId, at: i64) -> StoreResult<BlockOutcome> {
        self.inner.lock().block_user(blocker, blocked, at)
    }

    async fn unblock_user(&self, blocker: UserId, blocked: UserId) -> StoreResult<()> {
        self.inner.lock().unblock_user(blocker, blocked)
    }

    async fn blocked_users(&self, user: UserId) -> StoreResult<Vec<(UserId, i64)>> {
        Ok(self.inner.lock().blocked_users(user))
    }

    async fn block_relations(&self, user: UserId) -> StoreResult<BlockRelations> {
        Ok(self.inner.lock().block_relations(user))
    }

    async fn contact_state(&self, a: UserId, b: UserId) -> StoreResult<ContactState> {
        Ok(self.inner.lock().contact_state(a, b))
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("MemoryStore")
            .field("users", &inner.users.len())
            .field("conversations", &inner.conversations.len())
            .finish_non_exhaustive()
    }
}
