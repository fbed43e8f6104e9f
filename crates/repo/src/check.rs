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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::{PackSlice, Summary};
    use crate::{BackupId, Encoding, Entry};

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            format_version: crate::config::FORMAT_VERSION,
            id: BackupId::new(std::time::SystemTime::now()),
            tool_version: "t".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::Value::Null,
            summary: Summary::default(),
            entries,
        }
    }

    fn packed(path: &str, pack: BlobId, offset: u64, length: u64) -> Entry {
        Entry {
            path: path.into(),
            size: length,
            blob: BlobId::of(path.as_bytes()),
            encoding: Encoding::Raw,
            class: "parquet".into(),
            pack: Some(Box::new(PackSlice {
                pack,
                offset,
                length,
            })),
            facts: None,
        }
    }

    #[test]
    fn a_packed_blob_needs_its_pack_long_enough() {
        let (pack, gone) = (BlobId::of(b"pack"), BlobId::of(b"gone"));
        let mut index = BlobIndex::default();
        index.insert_pack(pack, 100);
        let checked = manifest(vec![
            packed("a", pack, 0, 60),
            packed("b", pack, 60, 40),
            packed("c", pack, 60, 41),
            packed("d", gone, 0, 1),
            packed("e", pack, u64::MAX, 2),
        ]);
        let problems: Vec<(String, BlobProblem)> = check_presence(&checked, &index)
            .into_iter()
            .map(|p| (p.path, p.problem))
            .collect();
        let short = |needed| BlobProblem::PackTooShort {
            pack,
            needed,
            actual: 100,
        };
        assert_eq!(
            problems,
            [
                ("c".to_string(), short(101)),
                ("d".to_string(), BlobProblem::Missing),
                ("e".to_string(), short(u64::MAX)),
            ]
        );
        assert!(index.holds(&checked.entries[1]) && !index.holds(&checked.entries[2]));
    }
}
