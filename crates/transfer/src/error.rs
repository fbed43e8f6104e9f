//! Transfer errors: each names the object and which side (source or destination) failed.

use object_store::Error as StoreError;

/// Errors of a single object transfer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source object does not exist (any more).
    #[error("{key}: the object vanished from the source while it was being copied")]
    Vanished {
        /// Source key.
        key: String,
    },
    /// The bytes read do not have the size the caller expected.
    #[error("{key}: expected {expected} bytes, read {actual}")]
    SizeMismatch {
        /// Source key.
        key: String,
        /// Expected size.
        expected: u64,
        /// Size actually read.
        actual: u64,
    },
    /// The bytes do not (de)compress.
    #[error("{key}: {reason}")]
    Codec {
        /// Object key.
        key: String,
        /// What the codec said.
        reason: String,
    },
    /// Reading the source failed.
    #[error("reading {key}: {source}")]
    Read {
        /// Source key.
        key: String,
        /// Store error.
        #[source]
        source: StoreError,
    },
    /// Writing the destination failed.
    #[error("writing {key}: {source}")]
    Write {
        /// Destination key.
        key: String,
        /// Store error.
        #[source]
        source: StoreError,
    },
}

impl Error {
    /// Build a read error, mapping `NotFound` to [`Error::Vanished`].
    pub(crate) fn read(key: &object_store::path::Path, source: StoreError) -> Self {
        match source {
            StoreError::NotFound { .. } => Error::Vanished {
                key: key.to_string(),
            },
            source => Error::Read {
                key: key.to_string(),
                source,
            },
        }
    }

    /// Build a write error.
    pub(crate) fn write(key: &object_store::path::Path, source: StoreError) -> Self {
        Error::Write {
            key: key.to_string(),
            source,
        }
    }

    /// Whether retrying the whole object may help: a cut stream or an unclassified store error.
    /// Missing objects, permission and precondition failures are permanent.
    pub fn is_retryable(&self) -> bool {
        let store_error = match self {
            Error::Vanished { .. } => return false,
            Error::SizeMismatch { .. } => return true,
            Error::Codec { .. } => return false,
            Error::Read { source, .. } | Error::Write { source, .. } => source,
        };
        matches!(
            store_error,
            StoreError::Generic { .. } | StoreError::JoinError { .. }
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
