//! The error type of the `influx` crate: every variant names the object it concerns.

/// Errors raised while reading or judging InfluxDB 3 objects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object's bytes do not have the expected format (bad magic, bad CRC, truncated, bad JSON).
    #[error("{object}: {reason}")]
    Corrupt {
        /// Object key (relative to the node prefix where known).
        object: String,
        /// What is wrong, in words an operator can act on.
        reason: String,
    },
    /// The object store failed.
    #[error("object store error on {object}: {source}")]
    Store {
        /// Object key or prefix.
        object: String,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
    /// The source is not an InfluxDB 3 node prefix (empty, foreign, or another node id).
    #[error("{message}")]
    NotANode {
        /// Full explanation including the fix.
        message: String,
    },
    /// No consistent cut could be captured within the allowed number of re-plans.
    #[error("{message}")]
    Inconsistent {
        /// Full explanation including the fix.
        message: String,
    },
    /// The capture callback failed (repository or transfer error), passed through.
    #[error("{0}")]
    Capture(String),
}

impl Error {
    /// A `Corrupt` error for `object`.
    pub fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// Whether this error is the store saying the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
