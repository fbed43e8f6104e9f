//! Verification of backups against the blobs present: structure (every blob present with the
//! right size) and, with `--read-data`, content (every blob re-hashed).

use crate::{layout, BlobId, BlobIndex, Manifest, Repository};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::Serialize;
use std::collections::BTreeMap;

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
            let problem = match index.size(&entry.blob) {
                None => BlobProblem::Missing,
                Some(actual) if actual != entry.size => BlobProblem::SizeMismatch {
                    expected: entry.size,
                    actual,
                },
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

/// Re-read and re-hash every distinct blob of `manifest` (at most `concurrency` at a time),
/// streaming. Returns the problems per entry and the number of bytes read.
pub async fn check_content(
    repo: &Repository,
    manifest: &Manifest,
    concurrency: usize,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> (Vec<EntryProblem>, u64) {
    let mut blobs: BTreeMap<BlobId, Vec<&str>> = BTreeMap::new();
    for entry in &manifest.entries {
        blobs.entry(entry.blob).or_default().push(&entry.path);
    }
    let results: Vec<(BlobId, HashResult)> = futures::stream::iter(blobs.keys().copied())
        .map(|id| async move { (id, hash_blob(repo, &id, on_bytes).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut problems = Vec::new();
    let mut bytes_read = 0;
    for (id, result) in results {
        let problem = match result {
            Ok((hash, size)) => {
                bytes_read += size;
                if BlobId::from(hash) == id {
                    continue;
                }
                BlobProblem::HashMismatch {
                    actual: hash.to_hex().to_string(),
                }
            }
            Err(error) => BlobProblem::Unreadable { error },
        };
        for path in blobs.get(&id).into_iter().flatten() {
            problems.push(EntryProblem {
                path: path.to_string(),
                blob: id,
                problem: problem.clone(),
            });
        }
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    (problems, bytes_read)
}

/// Hash and size of a blob's stored bytes, or why it could not be read.
type HashResult = Result<(blake3::Hash, u64), String>;

async fn hash_blob(repo: &Repository, id: &BlobId, on_bytes: &(dyn Fn(u64) + Sync)) -> HashResult {
    let key = layout::blob_key(id);
    let result = repo.store().get(&key).await.map_err(|e| e.to_string())?;
    let mut stream = result.into_stream();
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        on_bytes(chunk.len() as u64);
    }
    Ok((hasher.finalize(), size))
}
