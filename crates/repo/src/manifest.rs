//! Manifests: the record of one backup, and its commit point. A backup exists exactly when its
//! manifest exists; the manifest is written after every blob it references, with create-only
//! semantics, so a crashed or concurrent run can never leave a half-written backup visible.

use crate::layout::Encoding;
use crate::{BackupId, BlobId};
use serde::{Deserialize, Serialize};

/// One backed-up object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Key relative to the source root (e.g. `wal/00000000178.wal`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Blob holding the content (BLAKE3 of the plaintext).
    pub blob: BlobId,
    /// How the blob is stored (absent: raw).
    #[serde(default, skip_serializing_if = "Encoding::is_raw")]
    pub encoding: Encoding,
    /// Opaque class label chosen by the source (e.g. `parquet`, `wal`).
    pub class: String,
    /// Where in a pack the stored blob lies (absent: it is an object of its own, `blobs/…`).
    /// Boxed: an entry is held for every object of a backup, and most of those held at a time
    /// (an incremental's previous entries) need no slice room of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<Box<PackSlice>>,
    /// What the source layer read in the blob's content and keeps for a later backup that takes
    /// the entry over, so that it need not read the blob again (a snapshot file's header, §4.3);
    /// opaque to the repository. Boxed like `pack`: most entries have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<Box<serde_json::Value>>,
}

/// A stored blob inside a pack (DESIGN §3.4b): the bytes `offset..offset + length` of
/// `packs/<hh>/<pack>` are the blob in its stored form (its encoding's, as a blob object of
/// its own would hold them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackSlice {
    /// The pack: BLAKE3 of its bytes.
    #[serde(rename = "id")]
    pub pack: BlobId,
    /// Where the stored blob begins.
    pub offset: u64,
    /// Its stored length.
    pub length: u64,
}

impl PackSlice {
    /// The first byte after the slice (`None` past `u64::MAX`: a corrupt manifest).
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.length)
    }
}

/// Totals of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of entries.
    pub entries: u64,
    /// Sum of entry sizes.
    pub bytes: u64,
    /// Bytes read from the source by this run.
    pub bytes_read: u64,
    /// Bytes written to the repository by this run (new blobs).
    pub bytes_uploaded: u64,
    /// New blobs written by this run.
    pub blobs_uploaded: u64,
    /// Bytes those new blobs take in the repository (after compression).
    #[serde(default)]
    pub bytes_stored: u64,
}

/// The manifest of one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version (equals the repository format version that wrote it).
    pub format_version: u32,
    /// Backup id.
    pub id: BackupId,
    /// `influxdb3-backup <version>`.
    pub tool_version: String,
    /// RFC 3339 start of the run.
    pub started_at: String,
    /// RFC 3339 end of the run (just before the manifest was written).
    pub finished_at: String,
    /// Source description, owned by the caller (opaque to the repository).
    pub source: serde_json::Value,
    /// Totals.
    pub summary: Summary,
    /// Entries, sorted by path.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Structural problems that make a manifest unusable: duplicate or unsafe paths.
    pub fn structural_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut previous: Option<&str> = None;
        for entry in &self.entries {
            if let Some(prev) = previous {
                if prev >= entry.path.as_str() {
                    problems.push(format!(
                        "entries not strictly sorted by path at {:?} (duplicate or out of order)",
                        entry.path
                    ));
                }
            }
            if !is_safe_relative_path(&entry.path) {
                problems.push(format!("unsafe entry path {:?}", entry.path));
            }
            previous = Some(&entry.path);
        }
        let bytes: u64 = self.entries.iter().map(|e| e.size).sum();
        if self.summary.entries != self.entries.len() as u64 || self.summary.bytes != bytes {
            problems.push(format!(
                "summary says {} entries / {} bytes, entries add up to {} / {}",
                self.summary.entries,
                self.summary.bytes,
                self.entries.len(),
                bytes
            ));
        }
        problems
    }
}

/// A relative path with no empty, `.` or `..` segment and no leading `/`.
fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structural_problems_are_found() {
        let entry = |p: &str| Entry {
            path: p.into(),
            size: 1,
            blob: BlobId::of(b"x"),
            encoding: Encoding::Raw,
            class: "x".into(),
            pack: None,
            facts: None,
        };
        let mut manifest = Manifest {
            format_version: 1,
            id: BackupId::new(std::time::SystemTime::now()),
            tool_version: "t".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::Value::Null,
            summary: Summary {
                entries: 2,
                bytes: 2,
                ..Summary::default()
            },
            entries: vec![entry("a"), entry("b/c")],
        };
        assert!(manifest.structural_problems().is_empty());
        manifest.entries = vec![entry("b"), entry("../a")];
        let problems = manifest.structural_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
