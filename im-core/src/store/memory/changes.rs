//! Changes to stored messages in the [`MemoryStore`](super::MemoryStore):
//! edits, recalls, reactions (the conversation's next version), and
//! deletions for one member (the member's next private version), each
//! under the store's one lock with its hook.

use super::Inner;
use crate::model::*;
use crate::store::{StoreError, StoreResult, reactions};

impl Inner {
    /// See `Store::change_message`.
    pub(super) fn change_message(
        &mut self,
        change: MessageChange,
        on_commit: ChangeHook,
    ) -> StoreResult<Changed> {
        let conv = self.member_conv(change.conversation_id)?;
        if change.kind != ChangeKind::Expire && !conv.members.contains_key(&change.actor) {
            return Err(StoreError::NotMember(change.conversation_id));
        }
        let index = conv
            .index_of(change.message_id)
            .ok_or_else(|| StoreError::NotFound(format!("message {}", change.message_id)))?;
        let id = change.message_id;
        let mut next = conv.messages[index].clone();
        let recalled = next.recalled_at != 0;
        let changed = match change.kind {
            ChangeKind::Edit(_) | ChangeKind::React { .. } | ChangeKind::Pin { pinned: true } if recalled => {
                return Err(StoreError::Conflict(format!("message {id} was recalled")));
            }
            ChangeKind::Edit(content) => {
                let same = next.content.as_ref() == Some(&content);
                if !same {
                    let written_at = if next.edited_at != 0 {
                        next.edited_at
                    } else {
                        next.created_at
                    };
                    let former = next.content.replace(content).unwrap_or_default();
                    conv.edits.entry(id).or_default().push(FormerContent {
                        content: former,
                        written_at,
                    });
                    next.edited_at = change.at;
                }
                !same
            }
            ChangeKind::Recall | ChangeKind::Expire => {
                let expire = change.kind == ChangeKind::Expire;
                let due = !expire || (next.expires_at != 0 && next.expires_at <= change.at);
                let erase = !recalled && due;
                if erase {
                    next.content = None;
                    next.edited_at = 0;
                    next.reactions.clear();
                    next.recalled_at = change.at;
                    next.recalled_by = if expire { 0 } else { change.actor };
                    next.reply_to = None;
                    next.mention_user_ids.clear();
                    next.mention_all = false;
                    next.forwarded = None;
                    next.pinned_at = 0;
                    next.pinned_by = 0;
                    conv.edits.remove(&id);
                    conv.reactions.remove(&id);
                }
                erase
            }
            ChangeKind::React { emoji, remove } => {
                let kinds = conv.reactions.entry(id).or_default();
                let entry = kinds.iter().position(|(e, _)| *e == emoji);
                let has = entry.is_some_and(|i| kinds[i].1.iter().any(|&(_, u)| u == change.actor));
                if has == remove {
                    let users = match entry {
                        None => {
                            if kinds.len() >= MAX_REACTION_KINDS {
                                return Err(StoreError::Conflict(format!(
                                    "a message holds at most {MAX_REACTION_KINDS} different reactions"
                                )));
                            }
                            kinds.push((emoji.clone(), Vec::new()));
                            &mut kinds.last_mut().expect("just pushed").1
                        }
                        Some(i) => &mut kinds[i].1,
                    };
                    if remove {
                        users.retain(|&(_, u)| u != change.actor);
                    } else {
                        users.push((change.at, change.actor));
                        users.sort_unstable();
                    }
                    let count = users.len() as u32;
                    let first = users
                        .iter()
                        .take(REACTION_USERS_LISTED)
                        .map(|&(_, u)| u)
                        .collect();
                    kinds.retain(|(_, users)| !users.is_empty());
                    reactions::set_entry(&mut next.reactions, &emoji, count, first);
                }
                has == remove
            }
            ChangeKind::Pin { pinned } => {
                let change_it = (next.pinned_at != 0) != pinned;
                if change_it {
                    (next.pinned_at, next.pinned_by) =
                        if pinned { (change.at, change.actor) } else { (0, 0) };
                }
                change_it
            }
        };
        if changed {
            conv.record.last_version += 1;
            next.version = conv.record.last_version;
            conv.messages[index] = next.clone();
        }
        // Hidden when stored from members who blocked the sender (no
        // private version): they hear nothing of it.
        let mut hidden_from: Vec<UserId> = conv
            .hidden
            .iter()
            .filter(|&(&(user, m), &pv)| m == id && pv == 0 && conv.members.contains_key(&user))
            .map(|(&(user, _), _)| user)
            .collect();
        hidden_from.sort_unstable();
        let outcome = Changed {
            message: next,
            changed,
            members: conv.members.keys().copied().collect::<Vec<_>>().into(),
            member_version: conv.member_version,
            hidden_from,
        };
        if changed {
            // Under the lock: hooks run in commit order.
            on_commit(&outcome);
        }
        Ok(outcome)
    }

    /// See `Store::hide_messages`.
    pub(super) fn hide_messages(
        &mut self,
        conversation: ConversationId,
        user: UserId,
        ids: &[MessageId],
        on_commit: HideHook,
    ) -> StoreResult<Hidden> {
        let conv = self.member_conv(conversation)?;
        let Some(member) = conv.members.get(&user) else {
            return Err(StoreError::NotMember(conversation));
        };
        if let Some(missing) = ids.iter().find(|&&id| conv.index_of(id).is_none()) {
            return Err(StoreError::NotFound(format!("message {missing}")));
        }
        let mut new_ids: Vec<MessageId> = Vec::new();
        for &id in ids {
            if !conv.hidden.contains_key(&(user, id)) && !new_ids.contains(&id) {
                new_ids.push(id);
            }
        }
        let mut hidden = Hidden {
            conversation_id: conversation,
            user_id: user,
            message_ids: Vec::new(),
            private_version: member.private_version,
        };
        if new_ids.is_empty() {
            return Ok(hidden);
        }
        let version = member.private_version + 1;
        for &id in &new_ids {
            conv.hidden.insert((user, id), version);
        }
        if let Some(m) = conv.members.get_mut(&user) {
            m.private_version = version;
        }
        hidden.message_ids = new_ids;
        hidden.private_version = version;
        on_commit(&hidden);
        Ok(hidden)
    }
}

impl Inner {
    /// A conversation for a member's request: an unknown one answers as
    /// one the user is not a member of (as the SQL stores do), so the
    /// answer tells nothing about which conversations exist.
    pub(super) fn member_conv(&mut self, id: ConversationId) -> StoreResult<&mut super::Conv> {
        self.conversations.get_mut(&id).ok_or(StoreError::NotMember(id))
    }
}

/// Forgets what a member who left deleted for themselves (a member who
/// comes back starts a new private log); what blocks hid from them (no
/// private version) stays hidden.
pub(super) fn forget_member(conv: &mut super::Conv, user: UserId) {
    conv.hidden.retain(|(u, _), pv| *u != user || *pv == 0);
}
