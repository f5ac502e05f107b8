//! Diesel errors classified into [`StoreError`].
//!
//! The kind diesel reports decides: a unique or foreign-key violation is a `Conflict`; a
//! closed connection (PostgreSQL SQLSTATE class 08, or a broken connection)
//! and a serialization failure (SQLSTATE 40001) are `Unavailable`; a missing
//! row is `NotFound`. For the errors diesel reports as `Unknown`, each backend
//! recognises its transient conditions ([`sqlite`](crate::store::sqlite):
//! `SQLITE_BUSY`, `SQLITE_LOCKED`; [`postgres`](crate::store::postgres):
//! deadlock, SQLSTATE 40P01). Everything else is `Backend`.

use crate::store::StoreError;
use diesel::result::{DatabaseErrorKind, Error as D};

impl From<D> for StoreError {
    fn from(e: D) -> Self {
        match &e {
            D::NotFound => StoreError::NotFound("row not found".into()),
            D::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(info.message().to_owned())
            }
            // A row refers to one being deleted at the same time (a file
            // shared while the clean-up removes it): one side loses.
            D::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                StoreError::Conflict(info.message().to_owned())
            }
            D::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            // Lock conflicts between nodes: the database aborted one side; retrying succeeds.
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            D::DatabaseError(DatabaseErrorKind::Unknown, info) if transient(info.message()) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            _ => StoreError::Backend(format!("store: {e}")),
        }
    }
}

/// Whether an error diesel could not classify is one of a backend's
/// transient conditions.
fn transient(message: &str) -> bool {
    #[cfg(feature = "sqlite")]
    if crate::store::sqlite::is_transient(message) {
        return true;
    }
    #[cfg(feature = "postgres")]
    if crate::store::postgres::is_transient(message) {
        return true;
    }
    false
}

/// The database cannot be reached (opening, pool time-out).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, message: &str) -> D {
        D::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn diesel_errors_are_classified_by_kind() {
        assert_eq!(
            StoreError::from(D::NotFound),
            StoreError::NotFound("row not found".into())
        );
        assert_eq!(
            StoreError::from(db(DatabaseErrorKind::UniqueViolation, "dup")),
            StoreError::Conflict("dup".into())
        );
        for kind in [
            DatabaseErrorKind::ClosedConnection,
            DatabaseErrorKind::SerializationFailure,
        ] {
            assert_eq!(
                StoreError::from(db(kind, "x")),
                StoreError::Unavailable("x".into())
            );
        }
        assert_eq!(
            StoreError::from(db(DatabaseErrorKind::CheckViolation, "bad")),
            StoreError::Backend("store: bad".into())
        );
        assert_eq!(
            StoreError::from(db(DatabaseErrorKind::Unknown, "syntax error")),
            StoreError::Backend("store: syntax error".into())
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_busy_and_locked_are_transient() {
        for message in ["database is locked", "database table is locked: members"] {
            assert!(StoreError::from(db(DatabaseErrorKind::Unknown, message)).is_transient());
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_deadlocks_are_transient() {
        assert!(StoreError::from(db(DatabaseErrorKind::Unknown, "deadlock detected")).is_transient());
    }
}
