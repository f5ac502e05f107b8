//! Every statement of the diesel stores, once, as functions generic over the
//! connection ([`SqlConnection`](super::SqlConnection)). Each function runs
//! on whatever connection it is given: the caller
//! ([`DieselStore`](super::DieselStore)) decides whether that is a pooled
//! reader or a writer inside a group-commit batch (and so inside a savepoint).
//!
//! | module | statements |
//! |---|---|
//! | `accounts` | users and tokens |
//! | `admin` | membership changes (joins, invitations, join requests, bans, roles, mutes, the join policy) and their reads |
//! | `changes` | edits, recalls, reactions, deletions for one member, the edit history |
//! | `contacts` | friend requests, friendships, blocks, the blocks among members cached for the sending path |
//! | `conversations` | conversations, members, the member-list cache of the sending path |
//! | `files` | file metadata, shares, the clean-up |
//! | `threads` | threads and their read cursors, pinned messages, unread-mention counts |
//! | `search` | the full-text index (through the backend's [`SqlConnection`](super::SqlConnection) methods), search, reindexing |
//! | `messages` | the append (sending path), history, changes, last messages, unread counts, cursors |

mod accounts;
mod admin;
mod after_cursors;
mod changes;
mod contacts;
mod conversations;
mod files;
mod messages;
mod search;
mod threads;

pub(crate) use accounts::*;
pub(crate) use admin::*;
pub(crate) use changes::*;
pub(crate) use contacts::*;
pub(crate) use conversations::*;
pub(crate) use files::*;
pub(crate) use messages::*;
pub(crate) use search::*;
pub(crate) use threads::*;

/// Most ids bound in one `IN (...)` list (SQLite allows 32,766 parameters,
/// PostgreSQL 65,535); longer lists take a few queries.
const CHUNK: usize = 500;

fn ids(list: &[u64]) -> Vec<i64> {
    list.iter().map(|&i| i as i64).collect()
}
