//! [`StoreError`]: what a [`Store`](super::Store) reports when it cannot do
//! what was asked, typed so the engine never inspects message strings.
//!
//! The engine turns it into its own [`Error`](crate::Error) (and so into a
//! wire code) in one place, `impl From<StoreError> for Error` below:
//!
//! | `StoreError` | engine `Error` | wire code |
//! |---|---|---|
//! | `Unavailable` | `Unavailable` | `UNAVAILABLE` |
//! | `Conflict` | `Conflict` | `CONFLICT` |
//! | `NotFound` | `NotFound` | `NOT_FOUND` |
//! | `Invalid` | `InvalidArgument` | `INVALID_ARGUMENT` |
//! | `NotMember` | `PermissionDenied` | `PERMISSION_DENIED` |
//! | `Forbidden` | `PermissionDenied` | `PERMISSION_DENIED` |
//! | `Backend` | `Internal` | `INTERNAL` |

use crate::error::Error;
use crate::model::ConversationId;

/// An error of a [`Store`](super::Store) method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot serve the request now, but a retry may succeed: the
    /// database is unreachable, the connection broke, a lock wait timed out,
    /// a deadlock or serialization failure aborted the transaction, the
    /// outcome of a commit is unknown, or the store is closed. A write with a
    /// client message id is safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write breaks a uniqueness rule (e.g. a user name is taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is not valid against what is stored (a thread root that
    /// is itself in a thread...); nothing was written.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The user, conversation or membership does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// An append from a user who is not a member of the conversation after the
    /// append's membership change; nothing was written.
    #[error("not a member of conversation {0}")]
    NotMember(ConversationId),
    /// A rule checked in the transaction refuses the write. Of the
    /// conversation's administration: the sender is muted (alone, or with
    /// every member), or a banned user would be added, invited or asked to
    /// join. Of contacts: a block between the two users of a direct
    /// conversation or of a friend request, a direct message between users
    /// who are not friends where friendship is required. Nothing was
    /// written; the message says which rule, fit for the user (it never
    /// tells a blocked user they are blocked).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Any other failure of the backend (a bug, a schema that does not match,
    /// unreadable data); retrying will not help.
    #[error("store backend: {0}")]
    Backend(String),
}

/// Result alias of [`Store`](super::Store) methods.
pub type StoreResult<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// True if a retry may succeed ([`StoreError::Unavailable`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The one place where store errors become engine errors (and so wire codes).
/// Messages pass through unchanged.
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        use StoreError as S;
        match e {
            S::Unavailable(m) => Error::Unavailable(m),
            S::Conflict(m) => Error::Conflict(m),
            S::NotFound(m) => Error::NotFound(m),
            S::Invalid(m) => Error::InvalidArgument(m),
            S::NotMember(conversation) => {
                Error::PermissionDenied(format!("not a member of conversation {conversation}"))
            }
            S::Forbidden(m) => Error::PermissionDenied(m),
            S::Backend(m) => Error::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_protocol::v1::ErrorCode;

    #[test]
    fn store_errors_keep_their_wire_code_and_message() {
        let cases = [
            (
                StoreError::Unavailable("store: down".into()),
                ErrorCode::Unavailable,
                "store: down",
            ),
            (StoreError::Conflict("taken".into()), ErrorCode::Conflict, "taken"),
            (
                StoreError::NotFound("conversation 7".into()),
                ErrorCode::NotFound,
                "conversation 7",
            ),
            (
                StoreError::NotMember(7),
                ErrorCode::PermissionDenied,
                "not a member of conversation 7",
            ),
            (
                StoreError::Forbidden("muted".into()),
                ErrorCode::PermissionDenied,
                "muted",
            ),
            (
                StoreError::Backend("store: bug".into()),
                ErrorCode::Internal,
                "store: bug",
            ),
        ];
        for (store_error, code, message) in cases {
            let e = Error::from(store_error);
            assert_eq!((e.code(), e.message()), (code, message));
        }
    }
}
