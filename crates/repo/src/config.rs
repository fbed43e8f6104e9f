//! The repository `config` object: written once, with create-only semantics, by the first
//! `create`; read by every command, which refuses a format version newer than it knows.

use serde::{Deserialize, Serialize};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;

/// Contents of `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Repository format version; readers abort on a newer one.
    pub format_version: u32,
    /// Random id of this repository (64 bits, hex).
    pub repository_id: String,
    /// Hash naming blobs: always `blake3` in format 1.
    pub hash: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// `influxdb3-backup <version>` that created it.
    pub created_by: String,
    /// Present when the repository is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::keys::EncryptionConfig>,
}

impl RepoConfig {
    /// A fresh config for a repository created now by `tool`.
    pub fn new(tool: &str) -> Self {
        RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: format!("{:016x}", fastrand::u64(..)),
            hash: "blake3".to_string(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            created_by: tool.to_string(),
            encryption: None,
        }
    }
}
