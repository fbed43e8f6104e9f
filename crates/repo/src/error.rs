//! Repository errors. Each variant names the repository object concerned and, where an operator
//! can act, the fix.

/// Errors of repository operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no repository at the location (no `config` object).
    #[error("no backup repository at {location}: it has no `config` object (run `create` to initialise one, or check --repo)")]
    NotFound {
        /// Where we looked.
        location: String,
    },
    /// The location holds objects but no repository config: refuse to write into it.
    #[error("{location} is not empty and is not a backup repository (found {example}); choose an empty location for --repo")]
    Foreign {
        /// Where we looked.
        location: String,
        /// One object found there.
        example: String,
    },
    /// The repository was written by a newer format version.
    #[error("repository format version {found} is newer than this tool supports ({supported}); upgrade influxdb3-backup")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Highest version supported.
        supported: u32,
    },
    /// A repository object does not parse.
    #[error("repository object {key} is corrupt: {reason}")]
    Corrupt {
        /// Object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `latest` of a repository that holds no backup.
    #[error("the repository at {location} holds no backup yet")]
    NoBackups {
        /// The repository.
        location: String,
    },
    /// No backup has this id.
    #[error("no backup {id} in the repository (run `list` to see the backups)")]
    NoSuchBackup {
        /// Requested id.
        id: String,
    },
    /// A manifest with this id exists already.
    #[error("a backup with id {id} already exists")]
    Exists {
        /// The id.
        id: String,
    },
    /// Another process holds a conflicting lock.
    #[error("the repository is locked: {holder}; wait for it to finish, or if that process is gone, run `unlock` (stale locks expire after 30 minutes)")]
    Locked {
        /// Who holds it.
        holder: String,
    },
    /// The repository key is missing or wrong.
    #[error("{message}")]
    Key {
        /// What is wrong and the fix.
        message: String,
    },
    /// The store failed.
    #[error("repository store error on {key}: {source}")]
    Store {
        /// Object key or prefix.
        key: String,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
}

impl Error {
    pub(crate) fn store(key: impl ToString, source: object_store::Error) -> Self {
        Error::Store {
            key: key.to_string(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
