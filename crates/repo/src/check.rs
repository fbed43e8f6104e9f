//! Verification of backups against the blobs present: every blob present, raw ones with the
//! entry's size, packed ones in a pack long enough to hold them. (Content re-hashing, which decompresses, is the caller's: it streams.)

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
    /// The pack holding the blob ends before the blob does.
    PackTooShort {
        /// The pack.
        pack: BlobId,
        /// Bytes the entry's slice needs.
        needed: u64,
        /// Bytes the pack has.
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
            let problem = match (&entry.pack, index.size(&entry.blob, entry.encoding)) {
                (Some(slice), _) => match index.pack_size(&slice.pack) {
                    None => BlobProblem::Missing,
                    // A pack too short to hold the slice: cut off, or the wrong pack.
                    Some(actual) if slice.end().is_none_or(|end| actual < end) => {
                        BlobProblem::PackTooShort {
                            pack: slice.pack,
                            needed: slice.end().unwrap_or(u64::MAX),
                            actual,
                        }
                    }
                    Some(_) => return None,
                },
                (None, None) => BlobProblem::Missing,
                // A raw blob is the plaintext: its size is the entry's. A compressed one is
                // checked by content (--read-data).
                (None, Some(actual)) if entry.encoding.is_raw() && actual != entry.size => {
                    BlobProblem::SizeMismatch {
                        expected: entry.size,
                        actual,
                    }
                }
                (None, Some(_)) => return None,
            };
            Some(EntryProblem {
                path: entry.path.clone(),
                blob: entry.blob,
                problem,
            })
        })
        .collect()
}
