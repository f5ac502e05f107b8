//! File metadata and shares in the [`MemoryStore`](super::MemoryStore).

use super::Inner;
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use std::collections::{BTreeMap, HashMap};

/// Files and where they were shared.
#[derive(Default)]
pub(super) struct Files {
    files: HashMap<FileId, FileRecord>,
    /// File → conversation → when it was first shared there.
    shares: HashMap<FileId, BTreeMap<ConversationId, i64>>,
}

impl Files {
    /// Checks that every file a message refers to is complete (before anything
    /// of the append is written).
    pub(super) fn check_shareable(&self, ids: &[FileId]) -> StoreResult<()> {
        for id in ids {
            match self.files.get(id) {
                Some(f) if f.status == FileStatus::Complete => {}
                _ => return Err(StoreError::NotFound(format!("file {id}"))),
            }
        }
        Ok(())
    }

    /// Records the shares of an appended message.
    pub(super) fn share(&mut self, ids: &[FileId], conversation: ConversationId, at: i64) {
        for id in ids {
            self.shares
                .entry(id.clone())
                .or_default()
                .entry(conversation)
                .or_insert(at);
        }
    }

    /// Forgets the shares in a deleted conversation.
    pub(super) fn unshare_conversation(&mut self, conversation: ConversationId) {
        for convs in self.shares.values_mut() {
            convs.remove(&conversation);
        }
        self.shares.retain(|_, convs| !convs.is_empty());
    }

    fn get_mut(&mut self, id: &str) -> StoreResult<&mut FileRecord> {
        self.files
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("file {id}")))
    }

    fn expired(&self, f: &FileRecord, stale_before: i64, unshared_before: i64) -> bool {
        match f.status {
            FileStatus::Uploading => f.updated_at < stale_before,
            FileStatus::Complete => {
                f.completed_at.is_some_and(|t| t < unshared_before)
                    && self.shares.get(&f.id).is_none_or(|s| s.is_empty())
            }
        }
    }
}

impl Inner {
    pub(super) fn create_file(&mut self, new: NewFile) -> StoreResult<FileRecord> {
        if self.files.files.contains_key(&new.id) {
            return Err(StoreError::Conflict(format!("file {} exists", new.id)));
        }
        let record = FileRecord {
            id: new.id.clone(),
            uploader_id: new.uploader_id,
            name: new.name,
            size: new.size,
            stored_bytes: 0,
            mime_type: String::new(),
            sha256: String::new(),
            status: FileStatus::Uploading,
            created_at: new.created_at,
            updated_at: new.created_at,
            completed_at: None,
            facts: new.facts,
        };
        self.files.files.insert(new.id, record.clone());
        Ok(record)
    }

    pub(super) fn file(&self, id: &str) -> Option<FileRecord> {
        self.files.files.get(id).cloned()
    }

    pub(super) fn file_progress(&mut self, id: &str, stored: u64, at: i64) -> StoreResult<()> {
        let f = self.files.get_mut(id)?;
        f.stored_bytes = stored;
        f.updated_at = at;
        Ok(())
    }

    pub(super) fn complete_file(&mut self, id: &str, done: FileCompletion) -> StoreResult<FileRecord> {
        let f = self.files.get_mut(id)?;
        if f.status == FileStatus::Complete {
            return Err(StoreError::Conflict(format!("file {id} is already complete")));
        }
        f.status = FileStatus::Complete;
        f.stored_bytes = f.size;
        f.mime_type = done.mime_type;
        f.sha256 = done.sha256;
        f.updated_at = done.completed_at;
        f.completed_at = Some(done.completed_at);
        Ok(f.clone())
    }

    pub(super) fn delete_file(&mut self, id: &str) -> bool {
        self.files.shares.remove(id);
        self.files.files.remove(id).is_some()
    }

    pub(super) fn file_shared_with(&self, id: &str, user: UserId) -> bool {
        self.files.shares.get(id).is_some_and(|convs| {
            convs.keys().any(|c| {
                self.conversations
                    .get(c)
                    .is_some_and(|conv| conv.members.contains_key(&user))
            })
        })
    }

    pub(super) fn files_shared_with(&self, user: UserId, limit: u32) -> Vec<SharedFile> {
        let mut out: Vec<SharedFile> = self
            .files
            .shares
            .iter()
            .filter_map(|(id, convs)| Some((self.files.files.get(id)?, convs)))
            .filter(|(f, _)| f.uploader_id != user)
            .flat_map(|(f, convs)| {
                convs
                    .iter()
                    .filter(|(c, _)| {
                        self.conversations
                            .get(*c)
                            .is_some_and(|conv| conv.members.contains_key(&user))
                    })
                    .map(|(&conversation_id, &shared_at)| SharedFile {
                        file: f.clone(),
                        conversation_id,
                        shared_at,
                    })
            })
            .collect();
        out.sort_by(|a, b| b.shared_at.cmp(&a.shared_at).then(a.file.id.cmp(&b.file.id)));
        out.truncate(limit as usize);
        out
    }

    pub(super) fn uploaded_bytes_since(&self, user: UserId, since: i64) -> u64 {
        self.files
            .files
            .values()
            .filter(|f| f.uploader_id == user && f.created_at >= since)
            .map(|f| f.size)
            .sum()
    }

    pub(super) fn expired_files(
        &self,
        stale_before: i64,
        unshared_before: i64,
        limit: u32,
    ) -> Vec<FileRecord> {
        self.files
            .files
            .values()
            .filter(|f| self.files.expired(f, stale_before, unshared_before))
            .take(limit as usize)
            .cloned()
            .collect()
    }

    pub(super) fn delete_expired_file(&mut self, id: &str, stale_before: i64, unshared_before: i64) -> bool {
        let expired = self
            .files
            .files
            .get(id)
            .is_some_and(|f| self.files.expired(f, stale_before, unshared_before));
        expired && self.delete_file(id)
    }
}
