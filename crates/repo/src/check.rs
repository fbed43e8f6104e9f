//! Verification of backups against the blobs present: every blob present, raw ones with the
//! entry's size. (Content re-hashing, which decompresses, is the caller's: it streams.)

use crate::{BlobId, BlobIndex, Manifest};
use serde::Serialize;

/// What is wrong with one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BlobProblem {
    /// The blob is not in the repository.
    Missing,
    /// The stored size differs from the manifest's.
    SizeMismatch {
        /// Size the manifest records.
        expected: u64,
        /// Size stored.
        actual: u64,
    },
    /// The stored bytes do not hash to the blob id.
    HashMismatch {
        /// Hash of the stored bytes.
        actual: String,
    },
    /// The blob could not be read.
    Unreadable {
        /// Error text.
        error: String,
    },
}

/// A problem with the blob behind one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryProblem {
    /// Entry path.
    pub path: String,
    /// Blob id.
    pub blob: BlobId,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: BlobProblem,
}

/// Check that every entry's blob is present with the entry's size.
pub fn check_presence(manifest: &Manifest, index: &BlobIndex) -> Vec<EntryProblem> {
    manifest
        .entries
        .iter()
        .filter_map(|entry| {
            let problem = match index.size(&entry.blob, entry.encoding) {
                None => BlobProblem::Missing,
                // A raw blob is the plaintext: its size is the entry's. A compressed one is
                // checked by content (--read-data).
                Some(actual) if entry.encoding.is_raw() && actual != entry.size => {
                    BlobProblem::SizeMismatch {
                        expected: entry.size,
                        actual,
                    }
                }
                Some(_) => return None,
            };
            Some(EntryProblem {
                path: entry.path.clone(),
                blob: entry.blob,
                problem,
            })
        })
        .collect()
}
