//! `verify`: for each backup, the manifest's structure, every blob present with the right size,
//! the consistency rules re-checked on the manifest (snapshot references, WAL contiguity and
//! CRCs of the WAL the server would replay, catalog contiguity, uuid and sequence), and with
//! `--read-data` every blob re-hashed.

use super::codecs;
use super::record::SourceRecord;
use crate::progress::Bar;
use anyhow::Result;
use bytes::Bytes;
use ib3_influx::assess::{assess, Reader};
use ib3_influx::rules::{Finding, Severity};
use ib3_repo::check::{check_presence, BlobProblem, EntryProblem};
use ib3_repo::{layout, BlobId, BlobIndex, Encoding, Manifest, Repository};
use ib3_transfer::{for_each_bounded, hash_object, read_plain};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Options of `verify`, resolved.
pub struct VerifyOptions {
    /// The repository.
    pub repo: Repository,
    /// `None`: every backup.
    pub backup: Option<String>,
    /// Re-hash every blob.
    pub read_data: bool,
    /// Objects in flight.
    pub concurrency: usize,
    /// Progress.
    pub bar: Bar,
}

/// The verdict on one backup.
#[derive(Debug, Serialize)]
pub struct BackupVerification {
    /// Backup id.
    pub backup_id: String,
    /// Whether the backup passed every check.
    pub ok: bool,
    /// Entries.
    pub entries: u64,
    /// Bytes.
    pub bytes: u64,
    /// Manifest structure problems.
    pub structure: Vec<String>,
    /// Blobs missing, of the wrong size, or (with --read-data) corrupt.
    pub blobs: Vec<EntryProblem>,
    /// Consistency findings (errors fail the backup; warnings and infos are reported).
    pub consistency: Vec<Finding>,
    /// Whether blob content was re-hashed.
    pub read_data: bool,
    /// Bytes read for --read-data.
    pub bytes_read: u64,
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// Repository location.
    pub repository: String,
    /// Whether every backup passed.
    pub ok: bool,
    /// Per backup.
    pub backups: Vec<BackupVerification>,
}

struct ManifestReader<'a> {
    repo: &'a Repository,
    blobs: HashMap<&'a str, (BlobId, Encoding)>,
}

impl Reader for ManifestReader<'_> {
    async fn read(&self, key: &str) -> ib3_influx::Result<Bytes> {
        let Some((blob, encoding)) = self.blobs.get(key) else {
            return Err(ib3_influx::Error::corrupt(key, "not in the manifest"));
        };
        let blob_key = layout::blob_key(blob, *encoding);
        read_plain(
            self.repo.store().as_ref(),
            &blob_key,
            &codecs::decode(*encoding, self.repo.keys()),
        )
        .await
        .map_err(|e| ib3_influx::Error::corrupt(format!("blob {blob} (for {key})"), e.to_string()))
    }
}

/// Re-read every distinct blob of `manifest` (at most `concurrency` at a time), streaming and
/// decompressing, and check that the plaintext hashes to its id. Returns the problems per entry
/// and the number of plaintext bytes read.
async fn check_content(
    repo: &Repository,
    manifest: &Manifest,
    concurrency: usize,
    bar: &Bar,
) -> (Vec<EntryProblem>, u64) {
    let mut blobs: BTreeMap<(BlobId, Encoding), Vec<&str>> = BTreeMap::new();
    for entry in &manifest.entries {
        blobs
            .entry((entry.blob, entry.encoding))
            .or_default()
            .push(&entry.path);
    }
    let keys: Vec<(BlobId, Encoding)> = blobs.keys().copied().collect();
    let results = for_each_bounded(keys, concurrency, |(id, encoding)| async move {
        let key = layout::blob_key(&id, encoding);
        let hashed = hash_object(
            repo.store().as_ref(),
            &key,
            &codecs::decode(encoding, repo.keys()),
            bar,
        )
        .await;
        (id, encoding, hashed)
    })
    .await;
    let mut problems = Vec::new();
    let mut bytes_read = 0;
    for (id, encoding, result) in results {
        let problem = match result {
            Ok(copied) => {
                bytes_read += copied.size;
                if BlobId::from(copied.hash) == id {
                    continue;
                }
                BlobProblem::HashMismatch {
                    actual: copied.hash.to_hex().to_string(),
                }
            }
            Err(e) => BlobProblem::Unreadable {
                error: e.to_string(),
            },
        };
        for path in blobs.get(&(id, encoding)).into_iter().flatten() {
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

/// Run `verify`.
pub async fn verify(options: VerifyOptions) -> Result<VerifyReport> {
    let lock = options
        .repo
        .lock(ib3_repo::lock::LockKind::Shared, "verify")
        .await?;
    let result = verify_locked(&options).await;
    let released = lock.release().await;
    let report = result?;
    released?;
    Ok(report)
}

async fn verify_locked(options: &VerifyOptions) -> Result<VerifyReport> {
    let ids = match &options.backup {
        Some(spec) => vec![options.repo.resolve(spec).await?],
        None => options.repo.list_backups().await?,
    };
    let index = options.repo.blob_index().await?;
    let mut backups = Vec::new();
    for id in ids {
        let manifest = options.repo.load_manifest(&id).await?;
        backups.push(verify_one(options, &index, &manifest).await?);
    }
    options.bar.finish();
    Ok(VerifyReport {
        repository: options.repo.location().to_string(),
        ok: backups.iter().all(|b| b.ok),
        backups,
    })
}

async fn verify_one(
    options: &VerifyOptions,
    index: &BlobIndex,
    manifest: &Manifest,
) -> Result<BackupVerification> {
    let structure = manifest.structural_problems();
    let mut blobs = check_presence(manifest, index);
    let consistency = if blobs.is_empty() {
        consistency(&options.repo, manifest, options.concurrency).await?
    } else {
        vec![Finding {
            severity: Severity::Error,
            code: "not-checked".into(),
            object: None,
            message: "consistency not checked: blobs are missing".into(),
        }]
    };
    let mut bytes_read = 0;
    if options.read_data {
        options
            .bar
            .phase(&format!("reading {}", manifest.id), manifest.summary.bytes);
        let (problems, read) =
            check_content(&options.repo, manifest, options.concurrency, &options.bar).await;
        bytes_read = read;
        let fresh: Vec<EntryProblem> = problems
            .into_iter()
            .filter(|p| !blobs_contains(&blobs, p))
            .collect();
        blobs.extend(fresh);
    }
    let ok = structure.is_empty()
        && blobs.is_empty()
        && !consistency.iter().any(|f| f.severity == Severity::Error);
    Ok(BackupVerification {
        backup_id: manifest.id.to_string(),
        ok,
        entries: manifest.summary.entries,
        bytes: manifest.summary.bytes,
        structure,
        blobs,
        consistency,
        read_data: options.read_data,
        bytes_read,
    })
}

fn blobs_contains(list: &[EntryProblem], problem: &EntryProblem) -> bool {
    list.iter().any(|p| p.path == problem.path)
}

async fn consistency(
    repo: &Repository,
    manifest: &Manifest,
    concurrency: usize,
) -> Result<Vec<Finding>> {
    let record: SourceRecord = match serde_json::from_value(manifest.source.clone()) {
        Ok(record) => record,
        Err(e) => {
            return Ok(vec![Finding {
                severity: Severity::Error,
                code: "not-checked".into(),
                object: None,
                message: format!("the manifest's source record does not parse ({e}): not an InfluxDB 3 backup of this tool"),
            }])
        }
    };
    let reader = ManifestReader {
        repo,
        blobs: manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), (e.blob, e.encoding)))
            .collect(),
    };
    let objects: BTreeMap<String, u64> = manifest
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.size))
        .collect();
    let assessment = assess(&reader, &record.node_id, &objects, ib3_influx::rules::CatalogScope::Here, concurrency).await?;
    Ok(assessment.judgement.findings)
}
