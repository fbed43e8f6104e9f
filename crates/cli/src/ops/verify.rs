//! `verify`: for each backup, the manifest's structure, every blob present with the right size,
//! the consistency rules re-checked on the manifest (snapshot references, WAL contiguity and
//! CRCs of the WAL the server would replay, catalog contiguity, uuid and sequence), the snapshot
//! headers kept in entries (which incrementals take over unread) against the files, and with
//! `--read-data` every blob re-hashed.

use super::codecs::{self, StoredBlob};
use super::record::{BackupSource, ClusterRecord};
use crate::progress::Bar;
use anyhow::Result;
use bytes::Bytes;
use ib3_influx::assess::{assess, kept_header_findings, Reader};
use ib3_influx::path::{classify_cluster, ObjectClass};
use ib3_influx::rules::CatalogScope;
use ib3_influx::rules::{Finding, Severity};
use ib3_repo::check::{check_presence, BlobProblem, EntryProblem};
use ib3_repo::{layout, BlobId, BlobIndex, Entry, Manifest, Repository};
use ib3_transfer::{for_each_bounded, hash_object, InFlight};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Options of `verify`, resolved.
pub struct VerifyOptions {
    /// The repository.
    pub repo: Repository,
    /// `None`: every backup.
    pub backup: Option<String>,
    /// Re-hash blobs: every one (`Subset::All`, `--read-data`), or part of them
    /// (`--read-data-subset`); `None`: read no content.
    pub read_data: Option<Subset>,
    /// Objects in flight.
    pub concurrency: usize,
    /// Progress.
    pub bar: Bar,
}

/// A part of the stored blobs for `verify --read-data-subset` to read: a nightly check of a
/// repository too large to read whole each night.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Every blob (`--read-data`).
    All,
    /// Slice `n` of `of` (1-based): the blobs whose id, as a number, leaves `n - 1` when
    /// divided by `of`. Ids are BLAKE3 hashes, so the slices are even, and `1/T` … `T/T` on
    /// successive runs read every blob once.
    Slice {
        /// Which slice, from 1.
        n: u32,
        /// Slices in all.
        of: u32,
    },
    /// About this percentage of the blobs, drawn afresh each run.
    Percent(f64),
}

impl std::str::FromStr for Subset {
    type Err = String;

    /// `N/T` (1 ≤ N ≤ T) or `P%` (0 < P ≤ 100).
    fn from_str(spec: &str) -> std::result::Result<Self, String> {
        let wrong =
            || format!("{spec:?}: give a slice N/T (such as 2/7) or a percentage P% (such as 5%)");
        if let Some(percent) = spec.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| wrong())?;
            return if percent > 0.0 && percent <= 100.0 {
                Ok(Subset::Percent(percent))
            } else {
                Err(format!("{spec:?}: a percentage above 0 and at most 100"))
            };
        }
        let (n, of) = spec.split_once('/').ok_or_else(wrong)?;
        let (n, of): (u32, u32) = (
            n.trim().parse().map_err(|_| wrong())?,
            of.trim().parse().map_err(|_| wrong())?,
        );
        if n == 0 || n > of {
            return Err(format!("{spec:?}: the slice N/T needs 1 <= N <= T"));
        }
        Ok(Subset::Slice { n, of })
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subset::All => write!(f, "all"),
            Subset::Slice { n, of } => write!(f, "{n}/{of}"),
            Subset::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// Decides which blobs a run reads: those of a [`Subset`]. A percentage draws with a hasher
/// keyed afresh by each process, so successive runs read different blobs.
struct Sampler {
    subset: Subset,
    draw: std::collections::hash_map::RandomState,
}

impl Sampler {
    fn new(subset: Subset) -> Self {
        Sampler {
            subset,
            draw: std::collections::hash_map::RandomState::new(),
        }
    }

    fn reads(&self, id: &BlobId) -> bool {
        use std::hash::BuildHasher;
        match self.subset {
            Subset::All => true,
            Subset::Slice { n, of } => id_number(id) % u64::from(of) == u64::from(n - 1),
            Subset::Percent(percent) => {
                let drawn = self.draw.hash_one(id.0) as f64 / u64::MAX as f64;
                drawn * 100.0 < percent
            }
        }
    }
}

/// The first 8 bytes of a blob id as a number.
fn id_number(id: &BlobId) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&id.0[..8]);
    u64::from_le_bytes(first)
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
    /// The part of the blobs re-hashed (`--read-data-subset`); `None`: all of them.
    pub read_data_subset: Option<String>,
    /// Blobs re-hashed for this backup (those an earlier backup of the run shared are not
    /// counted again).
    pub blobs_read: u64,
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

/// Reads a backup's objects by key relative to `prefix` (empty for a node backup; a member's or
/// the cluster's prefix plus `/` in a cluster backup).
struct ManifestReader<'a> {
    repo: &'a Repository,
    blobs: &'a HashMap<&'a str, &'a Entry>,
    prefix: String,
}

impl Reader for ManifestReader<'_> {
    async fn read(&self, key: &str) -> ib3_influx::Result<Bytes> {
        let key = &format!("{}{key}", self.prefix);
        let Some(entry) = self.blobs.get(key.as_str()) else {
            return Err(ib3_influx::Error::corrupt(key, "not in the manifest"));
        };
        codecs::read_entry(self.repo, entry).await.map_err(|e| {
            ib3_influx::Error::corrupt(format!("blob {} (for {key})", entry.blob), e.to_string())
        })
    }
}

/// What reading a blob found (`None`: sound), kept for the run: backups share most blobs, and
/// each is read once however many backups reference it.
type Verdicts = HashMap<StoredBlob, Option<BlobProblem>>;

/// Re-read every distinct blob of `manifest` that `sampler` reads and that is not judged yet in
/// this run (at most `concurrency` at a time), streaming and decompressing, and check that the
/// plaintext hashes to its id. Returns the problems per entry, and the blobs and plaintext bytes
/// read.
async fn check_content(
    repo: &Repository,
    manifest: &Manifest,
    concurrency: usize,
    bar: &Bar,
    sampler: &Sampler,
    verdicts: &mut Verdicts,
) -> (Vec<EntryProblem>, u64, u64) {
    // Each distinct stored blob once: a map from each blob to its paths held a third of a
    // gigabyte at 2 000 000 entries.
    let entries = &manifest.entries;
    let mut keys: Vec<StoredBlob> = entries
        .iter()
        .map(codecs::stored_blob)
        .filter(|k| !verdicts.contains_key(k) && sampler.reads(&k.0))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let blobs_read = keys.len() as u64;
    let (packed, alone): (Vec<StoredBlob>, Vec<StoredBlob>) =
        keys.into_iter().partition(|stored| stored.2.is_some());
    // `concurrency` reads at a time, of blobs alone or of runs of packs.
    let in_flight = &InFlight::new(concurrency);
    let alone = for_each_bounded(alone, concurrency, |stored| async move {
        let hashed = in_flight.run(hash_stored(repo, stored, bar)).await;
        (stored, hashed.map_err(|e| e.to_string()))
    });
    let packed = hash_packed(repo, packed, concurrency, in_flight, bar);
    let (alone, packed) = futures::join!(alone, packed);
    let mut bytes_read = 0;
    for (stored, result) in alone.into_iter().chain(packed) {
        let id = stored.0;
        let problem = match result {
            Ok(copied) => {
                bytes_read += copied.size;
                (BlobId::from(copied.hash) != id).then(|| BlobProblem::HashMismatch {
                    actual: copied.hash.to_hex().to_string(),
                })
            }
            Err(error) => Some(BlobProblem::Unreadable { error }),
        };
        verdicts.insert(stored, problem);
    }
    let mut problems = Vec::new();
    for entry in entries {
        let stored = codecs::stored_blob(entry);
        let Some(Some(problem)) = verdicts.get(&stored) else {
            continue;
        };
        problems.push(EntryProblem {
            path: entry.path.clone(),
            blob: stored.0,
            problem: problem.clone(),
        });
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    (problems, blobs_read, bytes_read)
}

/// What hashing a stored blob's plaintext found: its size and hash, or why it cannot be read.
type Hashed = (StoredBlob, Result<ib3_transfer::Copied, String>);

/// Size and hash of the plaintext of each of `blobs` (all in packs), read a run of a pack at a
/// time (`codecs::runs_by_pack`: one ranged read per pack, not per blob), up to `concurrency`
/// runs at once, each read taking a turn of `in_flight`. A run that cannot be read makes each
/// of its blobs unreadable, with its cause.
async fn hash_packed(
    repo: &Repository,
    blobs: Vec<StoredBlob>,
    concurrency: usize,
    in_flight: &InFlight,
    bar: &Bar,
) -> Vec<Hashed> {
    use futures::StreamExt;
    let runs = codecs::runs_by_pack(blobs, packed_at);
    futures::stream::iter(runs)
        .map(|run| async move {
            match in_flight.run(codecs::read_run(repo, &run, packed_at)).await {
                Ok(stored) => run
                    .into_iter()
                    .zip(stored)
                    .map(|(blob, bytes)| (blob, hash_member(repo, blob, &bytes, bar)))
                    .collect::<Vec<Hashed>>(),
                Err(e) => {
                    let error = e.to_string();
                    run.into_iter()
                        .map(|blob| (blob, Err(error.clone())))
                        .collect()
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .flat_map(futures::stream::iter)
        .collect::<Vec<Hashed>>()
        .await
}

/// Where a blob in a pack lies (callers pass only those).
fn packed_at(stored: &StoredBlob) -> ib3_repo::manifest::PackSlice {
    codecs::slice_in_pack(&stored.0, stored.2.as_ref())
}

/// Size and hash of the plaintext of a blob read from its pack as `bytes` (its stored form).
fn hash_member(
    repo: &Repository,
    stored: StoredBlob,
    bytes: &Bytes,
    bar: &Bar,
) -> Result<ib3_transfer::Copied, String> {
    let at = packed_at(&stored);
    let undecodable = |e: std::io::Error| {
        let (key, range) = (layout::pack_key(&at.pack), at.offset..at.end().unwrap_or(0));
        format!("{key} (bytes {range:?}): {e}")
    };
    let plain = codecs::plaintext_of(bytes.clone(), stored.1, repo.keys()).map_err(undecodable)?;
    ib3_transfer::Progress::advance(bar, plain.len() as u64);
    Ok(ib3_transfer::Copied {
        size: plain.len() as u64,
        hash: blake3::hash(&plain),
        stored: bytes.len() as u64,
    })
}

/// Size and hash of a stored blob's plaintext: a blob object streamed, a blob in a pack (small)
/// read whole.
async fn hash_stored(
    repo: &Repository,
    (id, encoding, pack): StoredBlob,
    bar: &Bar,
) -> Result<ib3_transfer::Copied, ib3_transfer::Error> {
    let Some(slice) = pack else {
        let key = layout::blob_key(&id, encoding);
        let codec = codecs::decode(encoding, repo.keys());
        return hash_object(repo.store().as_ref(), &key, &codec, bar).await;
    };
    let plain = codecs::read_stored(repo, &id, encoding, Some(&slice)).await?;
    ib3_transfer::Progress::advance(bar, plain.len() as u64);
    Ok(ib3_transfer::Copied {
        size: plain.len() as u64,
        hash: blake3::hash(&plain),
        stored: slice.length,
    })
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
    let mut verdicts = Verdicts::new();
    let sampler = options.read_data.map(Sampler::new);
    for id in ids {
        match options.repo.load_manifest(&id).await {
            Ok(manifest) => backups.push(
                verify_one(options, &index, &manifest, sampler.as_ref(), &mut verdicts).await?,
            ),
            // A damaged manifest or entry chunk fails that backup; the others are still checked.
            Err(e @ ib3_repo::Error::Corrupt { .. }) => backups.push(unreadable(&id, &e)),
            Err(e) => return Err(e.into()),
        }
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
    sampler: Option<&Sampler>,
    verdicts: &mut Verdicts,
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
    let (mut blobs_read, mut bytes_read) = (0, 0);
    if let Some(sampler) = sampler {
        options
            .bar
            .phase(&format!("reading {}", manifest.id), manifest.summary.bytes);
        let (problems, read, bytes) = check_content(
            &options.repo,
            manifest,
            options.concurrency,
            &options.bar,
            sampler,
            verdicts,
        )
        .await;
        (blobs_read, bytes_read) = (read, bytes);
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
        read_data: options.read_data.is_some(),
        read_data_subset: options
            .read_data
            .filter(|subset| *subset != Subset::All)
            .map(|subset| subset.to_string()),
        blobs_read,
        bytes_read,
    })
}

/// The verdict on a backup whose manifest or entry chunks cannot be read.
fn unreadable(id: &ib3_repo::BackupId, error: &ib3_repo::Error) -> BackupVerification {
    BackupVerification {
        backup_id: id.to_string(),
        ok: false,
        entries: 0,
        bytes: 0,
        structure: vec![error.to_string()],
        blobs: Vec::new(),
        consistency: Vec::new(),
        read_data: false,
        read_data_subset: None,
        blobs_read: 0,
        bytes_read: 0,
    }
}

fn blobs_contains(list: &[EntryProblem], problem: &EntryProblem) -> bool {
    list.iter().any(|p| p.path == problem.path)
}

async fn consistency(
    repo: &Repository,
    manifest: &Manifest,
    concurrency: usize,
) -> Result<Vec<Finding>> {
    let source = match BackupSource::parse(&manifest.source) {
        Ok(source) => source,
        Err(e) => {
            return Ok(vec![finding(
                Severity::Error,
                "not-checked",
                format!("the manifest's source record does not parse ({e}): not an InfluxDB 3 backup of this tool"),
            )])
        }
    };
    let blobs: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let check = Check {
        repo,
        manifest,
        blobs: &blobs,
        concurrency,
    };
    match source {
        BackupSource::Node(record) => check.part("", &record.node_id, CatalogScope::Here).await,
        BackupSource::Cluster(record) => check.cluster(&record).await,
    }
}

fn finding(severity: Severity, code: &str, message: String) -> Finding {
    Finding {
        severity,
        code: code.into(),
        object: None,
        message,
    }
}

/// The consistency check of one manifest.
struct Check<'a> {
    repo: &'a Repository,
    manifest: &'a Manifest,
    blobs: &'a HashMap<&'a str, &'a Entry>,
    concurrency: usize,
}

impl Check<'_> {
    /// Assess the entries under `prefix` (`""`, or `<id>/`) as the node (or catalog) `id`.
    async fn part(&self, prefix: &str, id: &str, scope: CatalogScope) -> Result<Vec<Finding>> {
        Ok(self
            .assess_part(prefix, id, scope)
            .await?
            .judgement
            .findings)
    }

    async fn assess_part(
        &self,
        prefix: &str,
        id: &str,
        scope: CatalogScope,
    ) -> Result<ib3_influx::assess::Assessment> {
        let is_catalog = matches!(scope, CatalogScope::HereAtLeast(_));
        let objects: BTreeMap<String, u64> = self
            .manifest
            .entries
            .iter()
            .filter_map(|e| Some((e.path.strip_prefix(prefix)?.to_string(), e.size)))
            .filter(|(key, _)| !is_catalog || is_catalog_file(key))
            .collect();
        let reader = ManifestReader {
            repo: self.repo,
            blobs: self.blobs,
            prefix: prefix.to_string(),
        };
        let mut assessment = assess(&reader, id, &objects, scope, self.concurrency).await?;
        let kept = self.manifest.entries.iter().filter_map(|e| {
            let facts = e.facts.as_deref()?;
            Some((e.path.strip_prefix(prefix)?, facts))
        });
        let wrong = kept_header_findings(&assessment, kept);
        assessment.judgement.findings.extend(wrong);
        Ok(assessment)
    }

    /// Every member node with its own rules (catalog elsewhere), then the cluster catalog
    /// against the highest sequence their data needs. A built-in backup is opaque.
    async fn cluster(&self, record: &ClusterRecord) -> Result<Vec<Finding>> {
        if let Some(name) = &record.builtin_backup {
            return Ok(vec![finding(
                Severity::Info,
                "opaque-builtin-backup",
                format!("a copy of the server's own backup {name}: its files are checked by size and (with --read-data) hash; their content is the server's to check (`influxdb3 create restore`)"),
            )]);
        }
        let mut findings = Vec::new();
        let mut required = 0;
        for member in &record.members {
            let prefix = format!("{}/", member.node_id);
            let present = self
                .manifest
                .entries
                .iter()
                .any(|e| e.path.starts_with(&prefix));
            if !present {
                findings.push(finding(
                    Severity::Error,
                    "member-missing",
                    format!(
                        "node {} is listed as a member but the backup holds none of its files",
                        member.node_id
                    ),
                ));
                continue;
            }
            if member.node.is_none() {
                continue;
            }
            let assessment = self
                .assess_part(&prefix, &member.node_id, CatalogScope::Elsewhere)
                .await?;
            required = required.max(
                assessment
                    .judgement
                    .point
                    .catalog_sequence_required
                    .unwrap_or(0),
            );
            findings.extend(prefixed(&member.node_id, assessment.judgement.findings));
        }
        let prefix = format!("{}/", record.cluster_id);
        let catalog = self
            .part(
                &prefix,
                &record.cluster_id,
                CatalogScope::HereAtLeast(required),
            )
            .await?;
        findings.extend(prefixed(&record.cluster_id, catalog));
        for file in &record.cluster_files {
            let path = format!("{prefix}{file}");
            if !self.blobs.contains_key(path.as_str()) {
                findings.push(finding(
                    Severity::Error,
                    "cluster-file-missing",
                    format!("{path} is listed as backed up but is not in the manifest"),
                ));
            }
        }
        Ok(findings)
    }
}

fn is_catalog_file(key: &str) -> bool {
    matches!(
        classify_cluster(key),
        ObjectClass::CatalogLog { .. } | ObjectClass::CatalogCheckpoint { .. }
    )
}

/// Findings of a member, with objects named from the store root.
fn prefixed(prefix: &str, findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|mut f| {
            f.object = f.object.map(|o| format!("{prefix}/{o}"));
            f
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(i: u32) -> BlobId {
        BlobId::from(blake3::hash(&i.to_le_bytes()))
    }

    #[test]
    fn subsets_parse_and_print_back() {
        for spec in ["1/1", "2/7", "7/7", "5%", "0.5%", "100%"] {
            assert_eq!(spec.parse::<Subset>().unwrap().to_string(), spec);
        }
        for wrong in ["0/7", "8/7", "7", "1/0", "a/b", "0%", "101%", "x%", ""] {
            assert!(wrong.parse::<Subset>().is_err(), "{wrong}");
        }
    }

    /// Every blob is in exactly one slice of any count, and the slices are about even.
    #[test]
    fn slices_split_the_blobs_evenly_and_exactly() {
        let ids: Vec<BlobId> = (0..7_000).map(id).collect();
        let samplers: Vec<Sampler> = (1..=7)
            .map(|n| Sampler::new(Subset::Slice { n, of: 7 }))
            .collect();
        for id in &ids {
            assert_eq!(samplers.iter().filter(|s| s.reads(id)).count(), 1);
        }
        for sampler in &samplers {
            let read = ids.iter().filter(|id| sampler.reads(id)).count();
            assert!((850..1150).contains(&read), "{read} of 7 000 in a seventh");
        }
    }

    /// A percentage reads about that share, and another run draws other blobs.
    #[test]
    fn a_percentage_reads_about_that_share_drawn_afresh() {
        let ids: Vec<BlobId> = (0..10_000).map(id).collect();
        let drawn =
            |sampler: &Sampler| -> Vec<bool> { ids.iter().map(|id| sampler.reads(id)).collect() };
        let first = drawn(&Sampler::new(Subset::Percent(10.0)));
        let second = drawn(&Sampler::new(Subset::Percent(10.0)));
        let count = |d: &[bool]| d.iter().filter(|&&r| r).count();
        assert!((800..1200).contains(&count(&first)), "{}", count(&first));
        assert_ne!(first, second, "each run draws afresh");
        assert!(Sampler::new(Subset::All).reads(&ids[0]));
        assert!(ids
            .iter()
            .all(|id| Sampler::new(Subset::Percent(100.0)).reads(id)));
    }
}
