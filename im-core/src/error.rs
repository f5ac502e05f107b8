//! The engine's error type and its mapping to wire error codes.

use im_protocol::v1::ErrorCode;

/// Everything that can go wrong in the engine. Each variant maps to one wire
/// [`ErrorCode`] (see [`Error::code`]); the string is a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Missing, wrong or expired credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// An unknown user, conversation or message.
    #[error("not found: {0}")]
    NotFound(String),
    /// A malformed request or bad field value.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Over a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Too many requests.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// Conflicts with existing state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A backend (store, fan-out) is unreachable; the request can be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// The client speaks a protocol version this server does not.
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The wire error code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::RateLimited(_) => ErrorCode::RateLimited,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
            Error::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
        }
    }

    /// The message without the code prefix, as sent on the wire.
    pub fn message(&self) -> &str {
        match self {
            Error::Unauthenticated(m)
            | Error::PermissionDenied(m)
            | Error::NotFound(m)
            | Error::InvalidArgument(m)
            | Error::TooLarge(m)
            | Error::RateLimited(m)
            | Error::Conflict(m)
            | Error::Unavailable(m)
            | Error::Internal(m)
            | Error::UnsupportedVersion(m) => m,
        }
    }

    /// The error a wire error stands for (an answer from another node).
    pub fn from_wire(e: &im_protocol::v1::Error) -> Self {
        use im_protocol::v1::ErrorCode;
        let m = e.message.clone();
        match ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal) {
            ErrorCode::Unauthenticated => Error::Unauthenticated(m),
            ErrorCode::PermissionDenied => Error::PermissionDenied(m),
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::InvalidArgument => Error::InvalidArgument(m),
            ErrorCode::TooLarge => Error::TooLarge(m),
            ErrorCode::RateLimited => Error::RateLimited(m),
            ErrorCode::Conflict => Error::Conflict(m),
            ErrorCode::Unavailable => Error::Unavailable(m),
            ErrorCode::UnsupportedVersion => Error::UnsupportedVersion(m),
            ErrorCode::Internal | ErrorCode::Unspecified => Error::Internal(m),
        }
    }

    /// The wire representation.
    pub fn to_wire(&self) -> im_protocol::v1::Error {
        im_protocol::v1::Error {
            code: self.code() as i32,
            message: self.message().to_owned(),
        }
    }
}
