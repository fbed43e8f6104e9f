//! The consistency rules of a restorable cut (format doc §4.1), as pure functions over what a
//! backup captured. The same code judges a cut while `create` runs, a manifest in `verify`, and a
//! live source in `inspect`.
//!
//! Rules:
//! 1. WAL: files after the newest captured snapshot's `wal_file_sequence_number` (W) run
//!    contiguously from W+1 (from the first WAL file when there is no snapshot).
//! 2. Parquet: every file referenced by a captured snapshot or snapshot checkpoint is captured with
//!    its recorded size, unless the server removed it: recorded in a later `removed_files` /
//!    `pending_removed_files` (info), or not recorded (warning: retention expiry or hard delete
//!    outside the loaded window leave no record, format doc §3.2).
//! 3. Catalog (active generation): a checkpoint plus logs contiguous from its sequence + 1, one
//!    catalog uuid, and a resulting sequence at least every `catalog_sequence_number` the captured
//!    snapshots and checkpoints need.

use crate::catalog::CatalogFileInfo;
use crate::path::{
    catalog_checkpoint_key, catalog_log_key, classify, snapshot_checkpoint_key, snapshot_key,
    wal_key, CatalogGeneration, ObjectClass,
};
use crate::shard::{in_shards, Shard};
use crate::snapshot::{ParquetRef, PersistedSnapshot, SnapshotCheckpoint};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Everything a cut captured, keyed by keys relative to the node prefix.
#[derive(Debug, Clone, Copy)]
pub struct CapturedSet<'a> {
    /// The node prefix (`node0`); Parquet paths in snapshots carry it.
    pub node_prefix: &'a str,
    /// Every captured object: relative key → size.
    pub objects: &'a BTreeMap<String, u64>,
    /// Parsed captured snapshot files.
    pub snapshots: &'a [PersistedSnapshot],
    /// Parsed captured snapshot checkpoints.
    pub checkpoints: &'a [SnapshotCheckpoint],
    /// Parsed captured catalog files of every generation: relative key → info.
    pub catalog_files: &'a BTreeMap<String, CatalogFileInfo>,
    /// The generation the server will load.
    pub active_catalog: Option<CatalogGeneration>,
    /// Where the catalog rule applies.
    pub catalog: CatalogScope,
}

/// Where the catalog of a captured set is, for the catalog rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogScope {
    /// In this set (a Core node: the catalog lives under the node prefix).
    Here,
    /// In this set, which must also reach this sequence (an Enterprise cluster catalog: every
    /// node's data needs it).
    HereAtLeast(u64),
    /// Captured and judged elsewhere (an Enterprise data node: the catalog lives under the
    /// cluster id); only the sequence this set needs is computed.
    Elsewhere,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational (e.g. a stale catalog generation, a recorded server-side removal).
    Info,
    /// Worth attention, not fatal (e.g. an unrecorded missing Parquet file).
    Warning,
    /// The cut is not restorable as is.
    Error,
}

/// One result of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Stable machine-readable code: `wal-gap`, `parquet-missing`, `parquet-removed-by-server`,
    /// `parquet-size-mismatch`, `catalog-missing`, `catalog-log-gap`, `catalog-uuid-mismatch`,
    /// `catalog-behind-data`, `catalog-stale-generation`, `catalog-end-marker`, `snapshot-node-mismatch`,
    /// `unknown-object`.
    pub code: String,
    /// The object concerned (relative key, or the full key for Parquet references).
    pub object: Option<String>,
    /// Explanation naming the cause and, where there is one, the fix.
    pub message: String,
}

/// The consistent point a captured set represents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsistentPoint {
    /// Newest captured snapshot sequence number (`None`: no snapshot yet).
    pub snapshot_sequence_number: Option<u64>,
    /// W: last WAL file covered by that snapshot.
    pub wal_file_sequence_number: Option<u64>,
    /// First WAL file the server will replay (W+1, or the first present without snapshot).
    pub wal_first: Option<u64>,
    /// Last captured WAL file.
    pub wal_last: Option<u64>,
    /// Active catalog generation.
    pub catalog_generation: Option<CatalogGeneration>,
    /// Catalog uuid of the active generation.
    pub catalog_uuid: Option<String>,
    /// Sequence of the captured active checkpoint.
    pub catalog_checkpoint_sequence: Option<u64>,
    /// Sequence the captured catalog reaches (checkpoint plus contiguous logs).
    pub catalog_sequence: Option<u64>,
    /// Highest catalog sequence the captured data needs.
    pub catalog_sequence_required: Option<u64>,
    /// Number of captured snapshot files.
    pub snapshot_count: u64,
    /// Number of captured Parquet files.
    pub parquet_count: u64,
    /// Number of captured WAL files.
    pub wal_count: u64,
}

/// A referenced Parquet file that is not in the cut because the server removed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedByServer {
    /// Full key as recorded in the snapshot.
    pub path: String,
    /// Recorded size.
    pub size_bytes: u64,
    /// Whether a later snapshot/checkpoint records the removal.
    pub recorded: bool,
}

/// Result of judging a captured set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// The point captured.
    pub point: ConsistentPoint,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Referenced Parquet files absent from the cut because the server removed them.
    pub removed_by_server: Vec<RemovedByServer>,
}

impl Judgement {
    /// Whether any finding is an error (the cut is not restorable).
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Apply every rule to a captured set.
pub fn judge(set: &CapturedSet<'_>) -> Judgement {
    let classes: Vec<(&str, ObjectClass)> = set
        .objects
        .keys()
        .map(|k| (k.as_str(), classify(k)))
        .collect();
    let mut judgement = Judgement::default();
    count_objects(&classes, &mut judgement.point);
    wal_rule(set, &classes, &mut judgement);
    parquet_rule(set, &mut judgement);
    catalog_rule(set, &classes, &mut judgement);
    node_rule(set, &mut judgement.findings);
    unknown_rule(&classes, &mut judgement.findings);
    // Stable: within a severity, findings stay in rule order.
    judgement
        .findings
        .sort_by_key(|f| std::cmp::Reverse(f.severity));
    judgement
}

fn finding(severity: Severity, code: &str, object: Option<String>, message: String) -> Finding {
    Finding {
        severity,
        code: code.to_string(),
        object,
        message,
    }
}

fn count_objects(classes: &[(&str, ObjectClass)], point: &mut ConsistentPoint) {
    for (_, class) in classes {
        match class {
            ObjectClass::Snapshot { .. } => point.snapshot_count += 1,
            ObjectClass::Parquet => point.parquet_count += 1,
            ObjectClass::Wal { .. } => point.wal_count += 1,
            _ => {}
        }
    }
}

/// Missing runs `(first, last)` in `present` (sorted) counted from `start`.
fn gaps(start: u64, present: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut expected = start;
    let mut out = Vec::new();
    for seq in present {
        if seq > expected {
            out.push((expected, seq - 1));
        }
        expected = expected.max(seq.saturating_add(1));
    }
    out
}

fn describe_run(noun: &str, (first, last): (u64, u64)) -> String {
    if first == last {
        format!("{noun} {first} is missing")
    } else {
        format!("{noun}s {first}–{last} are missing")
    }
}

// ---- Rule 1: WAL ----

fn newest_snapshot<'s>(set: &CapturedSet<'s>) -> Option<&'s PersistedSnapshot> {
    set.snapshots
        .iter()
        .max_by_key(|s| s.snapshot_sequence_number)
}

fn wal_rule(set: &CapturedSet<'_>, classes: &[(&str, ObjectClass)], judgement: &mut Judgement) {
    let mut seqs: Vec<u64> = classes
        .iter()
        .filter_map(|(_, c)| match c {
            ObjectClass::Wal { seq } => Some(*seq),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    let newest = newest_snapshot(set);
    let point = &mut judgement.point;
    point.snapshot_sequence_number = newest.map(|s| s.snapshot_sequence_number);
    point.wal_file_sequence_number = newest.map(|s| s.wal_file_sequence_number);
    // The server replays only WAL files after W (every file when there is no snapshot).
    let (start, replayed): (Option<u64>, Vec<u64>) = match newest {
        Some(s) => {
            let w = s.wal_file_sequence_number;
            (
                w.checked_add(1),
                seqs.into_iter().filter(|q| *q > w).collect(),
            )
        }
        None => (seqs.first().copied(), seqs),
    };
    point.wal_first = replayed.first().copied();
    point.wal_last = replayed.last().copied();
    let Some(start) = start else { return };
    for run in gaps(start, replayed) {
        let context = match newest {
            Some(s) => format!(
                "snapshot {} covers WAL files up to {}, so the server replays every WAL file from {start} on",
                s.snapshot_sequence_number, s.wal_file_sequence_number
            ),
            None => format!(
                "no snapshot was taken yet, so the server replays every WAL file from {start} on"
            ),
        };
        judgement.findings.push(finding(
            Severity::Error,
            "wal-gap",
            Some(wal_key(run.0)),
            format!(
                "{}: {context}; the rows written there would be lost on restore (the server does \
                 not notice the gap). Capture again: a newer snapshot may cover them",
                describe_run("WAL file", run)
            ),
        ));
    }
}

// ---- Rule 2: Parquet ----

/// Where a Parquet reference comes from (the newest one wins).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Referrer {
    /// A snapshot checkpoint covering snapshots up to this sequence.
    Checkpoint(u64),
    /// A snapshot file.
    Snapshot(u64),
}

impl std::fmt::Display for Referrer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Referrer::Snapshot(seq) => write!(f, "snapshot {seq}"),
            Referrer::Checkpoint(seq) => {
                write!(f, "the snapshot checkpoint of snapshots up to {seq}")
            }
        }
    }
}

impl Referrer {
    fn seq(self) -> u64 {
        match self {
            Referrer::Snapshot(seq) | Referrer::Checkpoint(seq) => seq,
        }
    }
}

/// A referenced file's newest reference, and the size it was captured with.
type Reference<'s> = (Referrer, &'s ParquetRef, Option<u64>);

/// The referenced files of one shard ([`crate::shard`]) once each (by path), with its newest reference
/// and its captured size, in no particular order. Hashed, and sizes found by one walk of the
/// captured objects in order: an ordered map of the references compared long common-prefix
/// paths some twenty times per reference, and a lookup per reference in the ordered map of
/// captured objects, in hash order, jumped around memory (4 s of a no-change backup of
/// 2 000 000 files).
fn parquet_references<'s>(
    set: &CapturedSet<'s>,
    prefix: &str,
    shard: Shard,
) -> FxHashMap<&'s str, Reference<'s>> {
    let snapshots = set.snapshots.iter().flat_map(|s| {
        let by = Referrer::Snapshot(s.snapshot_sequence_number);
        s.files.iter().map(move |f| (by, f))
    });
    let checkpoints = set.checkpoints.iter().flat_map(|c| {
        let by = Referrer::Checkpoint(c.last_snapshot_sequence_number);
        c.files.iter().map(move |f| (by, f))
    });
    // Sized up front: growing rehashes every key so far, and each key is a path read from
    // wherever its snapshot lies in memory.
    let mut refs: FxHashMap<&str, Reference<'s>> = FxHashMap::with_capacity_and_hasher(
        reference_count(set) / shard.of + 1,
        Default::default(),
    );
    for (by, file) in snapshots.chain(checkpoints) {
        if !shard.holds(&file.path) {
            continue;
        }
        refs.entry(&file.path)
            .and_modify(|(seen, seen_file, _)| {
                if (by.seq(), by) > (seen.seq(), *seen) {
                    (*seen, *seen_file) = (by, file);
                }
            })
            .or_insert((by, file, None));
    }
    if refs.len() < set.objects.len() / crate::cut::FEW_REFERENCES {
        // Few references (settled snapshots have none): a lookup each.
        for (path, (_, _, captured)) in refs.iter_mut() {
            let key = path.strip_prefix(prefix).unwrap_or(path);
            *captured = set.objects.get(key).copied();
        }
        return refs;
    }
    // Captured keys are relative to the node prefix; recorded paths carry it.
    let mut path = String::from(prefix);
    for (key, &size) in set.objects {
        path.truncate(prefix.len());
        path.push_str(key);
        if !shard.holds(&path) {
            continue;
        }
        if let Some((_, _, captured)) = refs.get_mut(path.as_str()) {
            *captured = Some(size);
        }
    }
    // A path recorded without the prefix names the captured key as it is.
    for (path, (_, _, captured)) in refs.iter_mut() {
        if !path.starts_with(prefix) {
            *captured = set.objects.get(*path).copied();
        }
    }
    refs
}

/// How many Parquet references the captured snapshots and checkpoints hold (with repeats).
fn reference_count(set: &CapturedSet<'_>) -> usize {
    references_in(set.snapshots, set.checkpoints)
}

/// How many Parquet references `snapshots` and `checkpoints` hold (with repeats).
pub(crate) fn references_in<'s>(
    snapshots: impl IntoIterator<Item = &'s PersistedSnapshot>,
    checkpoints: impl IntoIterator<Item = &'s SnapshotCheckpoint>,
) -> usize {
    let in_snapshots: usize = snapshots.into_iter().map(|s| s.files.len()).sum();
    let in_checkpoints: usize = checkpoints.into_iter().map(|c| c.files.len()).sum();
    in_snapshots + in_checkpoints
}

/// Files the server recorded as removed (`removed_files`, `pending_removed_files`), by path and id.
struct RecordedRemovals<'s> {
    paths: HashSet<&'s str>,
    ids: HashSet<u64>,
}

impl<'s> RecordedRemovals<'s> {
    fn of(set: &CapturedSet<'s>) -> Self {
        let removed = set.snapshots.iter().flat_map(|s| &s.removed_files).chain(
            set.checkpoints
                .iter()
                .flat_map(|c| &c.pending_removed_files),
        );
        let mut out = RecordedRemovals {
            paths: HashSet::new(),
            ids: HashSet::new(),
        };
        for file in removed {
            out.paths.insert(&file.path);
            out.ids.insert(file.file_id);
        }
        out
    }

    fn contains(&self, file: &ParquetRef) -> bool {
        self.paths.contains(file.path.as_str()) || self.ids.contains(&file.file_id)
    }
}

/// A referenced file the Parquet rule reports: its path, newest reference, whether the server
/// recorded it removed, and its captured size.
type Problem<'s> = (&'s str, Referrer, &'s ParquetRef, bool, Option<u64>);

/// The references of `shard` with a problem.
fn parquet_problems<'s>(
    set: &CapturedSet<'s>,
    prefix: &str,
    removals: &RecordedRemovals<'s>,
    shard: Shard,
) -> Vec<Problem<'s>> {
    parquet_references(set, prefix, shard)
        .into_iter()
        .filter_map(|(path, (by, file, size))| {
            let recorded = removals.contains(file);
            // The server does not load a file it recorded as removed: its bytes do not matter.
            let fine = size.is_some_and(|size| recorded || size == file.size_bytes);
            (!fine).then_some((path, by, file, recorded, size))
        })
        .collect()
}

fn parquet_rule(set: &CapturedSet<'_>, judgement: &mut Judgement) {
    let removals = RecordedRemovals::of(set);
    let prefix = format!("{}/", set.node_prefix);
    let mut problems = in_shards(reference_count(set), |shard| {
        parquet_problems(set, &prefix, &removals, shard)
    });
    // In path order: findings read in a stable order.
    problems.sort_unstable_by_key(|(path, ..)| *path);
    for (path, by, file, recorded, size) in problems {
        match size {
            Some(size) => judgement.findings.push(finding(
                Severity::Error,
                "parquet-size-mismatch",
                Some(path.to_string()),
                format!(
                    "{path} has {size} bytes but {by} records {} bytes: the server reads it with \
                     the recorded size, so queries touching it would fail",
                    file.size_bytes
                ),
            )),
            None => {
                judgement.findings.push(missing_parquet(path, by, recorded));
                judgement.removed_by_server.push(RemovedByServer {
                    path: path.to_string(),
                    size_bytes: file.size_bytes,
                    recorded,
                });
            }
        }
    }
}

fn missing_parquet(path: &str, by: Referrer, recorded: bool) -> Finding {
    if recorded {
        finding(
            Severity::Info,
            "parquet-removed-by-server",
            Some(path.to_string()),
            format!(
                "{path} is referenced by {by} but the server removed it (recorded as removed in \
                 a later snapshot); the server does not load it"
            ),
        )
    } else {
        finding(
            Severity::Warning,
            "parquet-missing",
            Some(path.to_string()),
            format!(
                "{path} is referenced by {by} but is not in the source; not recorded as removed \
                 — presumably expired by retention or hard-deleted by the server, otherwise lost"
            ),
        )
    }
}

// ---- Rule 3: catalog ----

fn generation_name(generation: CatalogGeneration) -> &'static str {
    match generation {
        CatalogGeneration::V1 => "v1",
        CatalogGeneration::V2 => "v2",
        CatalogGeneration::V3 => "v3",
    }
}

fn generation_of(key: &str) -> Option<CatalogGeneration> {
    match classify(key) {
        ObjectClass::CatalogLog { generation, .. }
        | ObjectClass::CatalogCheckpoint { generation } => Some(generation),
        _ => None,
    }
}

fn catalog_rule(set: &CapturedSet<'_>, classes: &[(&str, ObjectClass)], judgement: &mut Judgement) {
    let required = set
        .snapshots
        .iter()
        .map(|s| s.catalog_sequence_number)
        .chain(set.checkpoints.iter().map(|c| c.catalog_sequence_number))
        .max();
    let required = match set.catalog {
        CatalogScope::HereAtLeast(floor) => Some(required.map_or(floor, |r| r.max(floor))),
        _ => required,
    };
    judgement.point.catalog_sequence_required = required;
    if set.catalog == CatalogScope::Elsewhere {
        return;
    }
    judgement.point.catalog_generation = set.active_catalog;
    stale_generations(set, classes, &mut judgement.findings);
    let has_data = classes.iter().any(|(_, c)| {
        matches!(
            c,
            ObjectClass::Parquet
                | ObjectClass::Snapshot { .. }
                | ObjectClass::SnapshotCheckpoint { .. }
                | ObjectClass::Wal { .. }
        )
    });
    let Some(active) = set.active_catalog else {
        judgement.findings.push(finding(
            Severity::Error,
            "catalog-missing",
            None,
            "no catalog in the cut (no _catalog_checkpoint, catalog/v2/ or catalog/v3/): the \
             server would start with an empty catalog and ignore or misread the data"
                .to_string(),
        ));
        return;
    };
    let files: Vec<(&str, &CatalogFileInfo)> = set
        .catalog_files
        .iter()
        .filter(|(k, _)| generation_of(k) == Some(active))
        .map(|(k, i)| (k.as_str(), i))
        .collect();
    check_uuids(active, &files, judgement);
    let checkpoint_key = catalog_checkpoint_key(active);
    let Some(checkpoint) = set.catalog_files.get(checkpoint_key) else {
        let severity = if has_data {
            Severity::Error
        } else {
            Severity::Warning
        };
        judgement.findings.push(finding(
            severity,
            "catalog-missing",
            Some(checkpoint_key.to_string()),
            format!(
                "the active catalog checkpoint {checkpoint_key} is not in the cut (or could not be \
                 read): without it the server creates a new, empty catalog"
            ),
        ));
        return;
    };
    let reached = check_logs(active, checkpoint.sequence, &files, judgement);
    judgement.point.catalog_checkpoint_sequence = Some(checkpoint.sequence);
    judgement.point.catalog_sequence = Some(reached);
    if let Some(required) = required.filter(|r| reached < *r) {
        judgement.findings.push(finding(
            Severity::Error,
            "catalog-behind-data",
            Some(checkpoint_key.to_string()),
            format!(
                "the captured catalog reaches sequence {reached} but the captured snapshots need \
                 sequence {required}: the data refers to databases, tables or columns the catalog \
                 lacks. The catalog must be captured after the data"
            ),
        ));
    }
}

/// All files of the active generation that carry a uuid must carry the checkpoint's (or, with no
/// checkpoint uuid, the first one's): the server refuses logs of another catalog.
fn check_uuids(
    active: CatalogGeneration,
    files: &[(&str, &CatalogFileInfo)],
    judgement: &mut Judgement,
) {
    let checkpoint = catalog_checkpoint_key(active);
    let reference = files
        .iter()
        .find(|(k, i)| *k == checkpoint && i.catalog_uuid.is_some())
        .or_else(|| files.iter().find(|(_, i)| i.catalog_uuid.is_some()))
        .and_then(|(k, i)| Some((*k, i.catalog_uuid.as_deref()?)));
    let Some((reference_key, uuid)) = reference else {
        return;
    };
    judgement.point.catalog_uuid = Some(uuid.to_string());
    for (key, info) in files {
        let Some(other) = info.catalog_uuid.as_deref() else {
            continue;
        };
        if other != uuid {
            judgement.findings.push(finding(
                Severity::Error,
                "catalog-uuid-mismatch",
                Some(key.to_string()),
                format!(
                    "{key} belongs to catalog {other} but {reference_key} to catalog {uuid}: the \
                     server refuses to load a catalog whose files disagree"
                ),
            ));
        }
    }
}

/// Logs after the checkpoint must run contiguously; returns the sequence the catalog reaches.
fn check_logs(
    active: CatalogGeneration,
    floor: u64,
    files: &[(&str, &CatalogFileInfo)],
    judgement: &mut Judgement,
) -> u64 {
    let mut logs = BTreeSet::new();
    for (key, info) in files {
        let ObjectClass::CatalogLog { seq, .. } = classify(key) else {
            continue;
        };
        if info.end_marker {
            judgement.findings.push(finding(
                Severity::Warning,
                "catalog-end-marker",
                Some(key.to_string()),
                format!(
                    "{key} is an end marker (idb3.EOF.l), which a server writes when it moves the \
                     catalog to the next layout; finding one in the active generation is unexpected"
                ),
            ));
        }
        if seq > floor {
            logs.insert(seq);
        }
    }
    for run in gaps(floor.saturating_add(1), logs.iter().copied()) {
        judgement.findings.push(finding(
            Severity::Error,
            "catalog-log-gap",
            Some(catalog_log_key(active, run.0)),
            format!(
                "{} after the catalog checkpoint (sequence {floor}): the catalog changes in it \
                 would be missing on restore",
                describe_run("catalog log", run)
            ),
        ));
    }
    let mut reached = floor;
    while reached < u64::MAX && logs.contains(&(reached + 1)) {
        reached += 1;
    }
    reached
}

fn stale_generations(
    set: &CapturedSet<'_>,
    classes: &[(&str, ObjectClass)],
    findings: &mut Vec<Finding>,
) {
    let keys = classes
        .iter()
        .map(|(k, _)| *k)
        .chain(set.catalog_files.keys().map(String::as_str));
    let mut stale: BTreeMap<CatalogGeneration, BTreeSet<&str>> = BTreeMap::new();
    for key in keys {
        match generation_of(key) {
            Some(g) if Some(g) != set.active_catalog => {
                stale.entry(g).or_default().insert(key);
            }
            _ => {}
        }
    }
    for (generation, keys) in stale {
        let marker = keys
            .iter()
            .find(|k| set.catalog_files.get(**k).is_some_and(|i| i.end_marker))
            .map(|k| format!(", including the end marker {k} written by the upgrade"))
            .unwrap_or_default();
        let active = set.active_catalog.map_or("none", generation_name);
        findings.push(finding(
            Severity::Info,
            "catalog-stale-generation",
            Some(catalog_checkpoint_key(generation).to_string()),
            format!(
                "catalog generation {} ({} files{marker}) is left over from an upgrade: it is kept \
                 in the backup and restored as is, and the server ignores it (it loads {active})",
                generation_name(generation),
                keys.len()
            ),
        ));
    }
}

// ---- Node id and unknown objects ----

fn node_rule(set: &CapturedSet<'_>, findings: &mut Vec<Finding>) {
    let snapshots = set
        .snapshots
        .iter()
        .map(|s| (s.node_id.as_str(), snapshot_key(s.snapshot_sequence_number)));
    let checkpoints = set.checkpoints.iter().map(|c| {
        let key = snapshot_checkpoint_key(&c.year_month, c.last_snapshot_sequence_number);
        (c.node_id.as_str(), key)
    });
    // One finding per foreign node id: a renamed node has every snapshot "wrong".
    let mut foreign: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (node, key) in snapshots.chain(checkpoints) {
        if node != set.node_prefix {
            foreign.entry(node).or_default().push(key);
        }
    }
    for (node, mut keys) in foreign {
        keys.sort();
        findings.push(finding(
            Severity::Warning,
            "snapshot-node-mismatch",
            keys.first().cloned(),
            format!(
                "{} snapshot file(s) were written by node {node:?}, not {:?} (e.g. {}): their \
                 Parquet paths point under {node}/, which a restore under {}/ does not contain",
                keys.len(),
                set.node_prefix,
                keys[0],
                set.node_prefix
            ),
        ));
    }
}

fn unknown_rule(classes: &[(&str, ObjectClass)], findings: &mut Vec<Finding>) {
    for (key, class) in classes {
        if *class == ObjectClass::Unknown {
            findings.push(finding(
                Severity::Warning,
                "unknown-object",
                Some(key.to_string()),
                format!(
                    "{key} is not a file InfluxDB 3 writes (or its name is malformed): it is kept \
                     in the backup and restored as is"
                ),
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::{parse_catalog_file, CatalogFileKind};
    use crate::layout::detect;
    use crate::path::testing::{fixture_objects, read, FIXTURES};
    use crate::snapshot::{parse_snapshot, parse_snapshot_checkpoint};

    /// A captured set built from a fixture read from disk, derived state left out (as `inspect`
    /// and `create` do).
    struct Captured {
        node_prefix: String,
        objects: BTreeMap<String, u64>,
        snapshots: Vec<PersistedSnapshot>,
        checkpoints: Vec<SnapshotCheckpoint>,
        catalog_files: BTreeMap<String, CatalogFileInfo>,
        active: Option<CatalogGeneration>,
    }

    impl Captured {
        fn load(fixture: &str) -> Self {
            let mut objects = fixture_objects(fixture);
            objects.retain(|k, _| classify(k) != ObjectClass::Derived);
            let mut out = Captured {
                node_prefix: "node0".into(),
                active: detect(objects.keys().map(String::as_str)).active_catalog,
                objects: BTreeMap::new(),
                snapshots: Vec::new(),
                checkpoints: Vec::new(),
                catalog_files: BTreeMap::new(),
            };
            for (key, size) in objects {
                out.add(fixture, &key);
                out.objects.insert(key, size);
            }
            out
        }

        fn add(&mut self, fixture: &str, key: &str) {
            let bytes = || read(fixture, key);
            match classify(key) {
                ObjectClass::Snapshot { .. } => {
                    self.snapshots.push(parse_snapshot(key, &bytes()).unwrap());
                }
                ObjectClass::SnapshotCheckpoint { .. } => {
                    self.checkpoints
                        .push(parse_snapshot_checkpoint(key, &bytes()).unwrap());
                }
                ObjectClass::CatalogLog { generation, .. } => {
                    let info = parse_catalog_file(key, generation, CatalogFileKind::Log, &bytes());
                    self.catalog_files.insert(key.into(), info.unwrap());
                }
                ObjectClass::CatalogCheckpoint { generation } => {
                    let kind = CatalogFileKind::Checkpoint;
                    let info = parse_catalog_file(key, generation, kind, &bytes());
                    self.catalog_files.insert(key.into(), info.unwrap());
                }
                _ => {}
            }
        }

        /// Drop an object from the cut (and its parsed form).
        fn remove(&mut self, key: &str) {
            assert!(self.objects.remove(key).is_some(), "{key} not in the cut");
            self.catalog_files.remove(key);
            if let ObjectClass::Snapshot { seq } = classify(key) {
                self.snapshots.retain(|s| s.snapshot_sequence_number != seq);
            }
            self.active = detect(self.objects.keys().map(String::as_str)).active_catalog;
        }

        fn set(&self) -> CapturedSet<'_> {
            CapturedSet {
                node_prefix: &self.node_prefix,
                objects: &self.objects,
                snapshots: &self.snapshots,
                checkpoints: &self.checkpoints,
                catalog_files: &self.catalog_files,
                active_catalog: self.active,
                catalog: CatalogScope::Here,
            }
        }

        fn judge(&self) -> Judgement {
            judge(&self.set())
        }
    }

    fn codes(judgement: &Judgement, severity: Severity) -> Vec<&str> {
        judgement
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| f.code.as_str())
            .collect()
    }

    fn only<'j>(judgement: &'j Judgement, code: &str) -> &'j Finding {
        let found: Vec<&Finding> = judgement
            .findings
            .iter()
            .filter(|f| f.code == code)
            .collect();
        assert_eq!(found.len(), 1, "{code}: {:#?}", judgement.findings);
        found[0]
    }

    fn assert_sorted(judgement: &Judgement) {
        let severities: Vec<Severity> = judgement.findings.iter().map(|f| f.severity).collect();
        let mut sorted = severities.clone();
        sorted.sort_by_key(|s| std::cmp::Reverse(*s));
        assert_eq!(severities, sorted);
    }

    #[test]
    fn shards_together_find_what_one_finds() {
        for fixture in [
            "core-3.10.0-basic",
            "core-3.10.0-retention",
            "core-3.3.0-deleted-db",
        ] {
            let mut captured = Captured::load(fixture);
            // Damage some Parquet files: missing, and with another size.
            let parquet: Vec<String> = captured
                .objects
                .keys()
                .filter(|k| classify(k) == ObjectClass::Parquet)
                .cloned()
                .collect();
            for (i, key) in parquet.iter().enumerate() {
                match i % 5 {
                    0 => captured.remove(key),
                    1 => *captured.objects.get_mut(key).unwrap() += 1,
                    _ => {}
                }
            }
            let set = captured.set();
            let removals = RecordedRemovals::of(&set);
            let problems = |of: usize| {
                let mut all: Vec<(String, bool, Option<u64>)> = (0..of as u64)
                    .flat_map(|index| {
                        parquet_problems(&set, "node0/", &removals, Shard { index, of })
                    })
                    .map(|(path, _, _, recorded, size)| (path.to_string(), recorded, size))
                    .collect();
                all.sort();
                all
            };
            let whole = problems(1);
            assert!(whole.len() >= parquet.len() * 2 / 5, "{fixture}: {whole:?}");
            assert_eq!(problems(3), whole, "{fixture}");
            assert_eq!(problems(8), whole, "{fixture}");
        }
    }

    #[test]
    fn every_fixture_is_restorable() {
        for fixture in FIXTURES {
            let judgement = Captured::load(fixture).judge();
            assert!(
                !judgement.has_errors(),
                "{fixture}: {:#?}",
                judgement.findings
            );
            assert!(
                codes(&judgement, Severity::Warning).is_empty(),
                "{fixture}: {:#?}",
                judgement.findings
            );
            let point = &judgement.point;
            assert!(
                point.catalog_sequence >= point.catalog_sequence_required,
                "{fixture}"
            );
            assert!(point.catalog_uuid.is_some(), "{fixture}");
            assert_sorted(&judgement);
        }
    }

    #[test]
    fn basic_consistent_point() {
        let captured = Captured::load("core-3.10.0-basic");
        let judgement = captured.judge();
        assert!(judgement.findings.is_empty(), "{:#?}", judgement.findings);
        assert!(judgement.removed_by_server.is_empty());
        let parquet = captured
            .objects
            .keys()
            .filter(|k| classify(k) == ObjectClass::Parquet)
            .count();
        assert_eq!(
            judgement.point,
            ConsistentPoint {
                snapshot_sequence_number: Some(59),
                wal_file_sequence_number: Some(177),
                wal_first: Some(178),
                wal_last: Some(180),
                catalog_generation: Some(CatalogGeneration::V3),
                catalog_uuid: Some("54951fa1-cf60-4a90-b5b8-d2a9f41d506a".into()),
                catalog_checkpoint_sequence: Some(0),
                catalog_sequence: Some(9),
                catalog_sequence_required: Some(8),
                snapshot_count: 59,
                parquet_count: parquet as u64,
                wal_count: 5,
            }
        );
    }

    #[test]
    fn v1_and_v2_points() {
        let v1 = Captured::load("core-3.3.0-basic").judge();
        assert!(v1.findings.is_empty(), "{:#?}", v1.findings);
        assert_eq!(v1.point.catalog_generation, Some(CatalogGeneration::V1));
        assert_eq!(
            (
                v1.point.catalog_sequence,
                v1.point.catalog_sequence_required
            ),
            (Some(9), Some(8))
        );
        let upgraded = Captured::load("core-3.3.0-upgraded-3.9.6").judge();
        assert_eq!(upgraded.point.catalog_checkpoint_sequence, Some(7));
        assert_eq!(upgraded.point.catalog_sequence, Some(10));
        assert_eq!(upgraded.point.catalog_sequence_required, Some(9));
        assert_eq!(
            upgraded.point.catalog_uuid.as_deref(),
            Some("85dc77af-e4c2-4f3d-a302-835e4341d61b")
        );
    }

    #[test]
    fn upgraded_nodes_report_stale_generations() {
        let judgement = Captured::load("core-3.3.0-upgraded-3.9.6").judge();
        let stale = only(&judgement, "catalog-stale-generation");
        assert_eq!(stale.severity, Severity::Info);
        assert_eq!(stale.object.as_deref(), Some("_catalog_checkpoint"));
        assert!(
            stale.message.contains("generation v1 (9 files"),
            "{}",
            stale.message
        );
        assert!(stale
            .message
            .contains("end marker catalogs/00000000000000000008.catalog"));
        assert!(stale
            .message
            .contains("the server ignores it (it loads v2)"));
        let judgement = Captured::load("core-3.9.6-upgraded-3.10.0").judge();
        let stale = only(&judgement, "catalog-stale-generation");
        assert_eq!(stale.object.as_deref(), Some("catalog/v2/snapshot"));
        assert_eq!(judgement.findings.len(), 1);
        assert_eq!(judgement.point.catalog_sequence, Some(9));
    }

    #[test]
    fn retention_removals_are_recorded() {
        let judgement = Captured::load("core-3.10.0-retention").judge();
        assert!(!judgement.has_errors());
        assert_eq!(judgement.removed_by_server.len(), 9);
        // Every one of the 9 is listed in a later snapshot's removed_files.
        assert!(judgement.removed_by_server.iter().all(|r| r.recorded));
        assert!(judgement
            .removed_by_server
            .iter()
            .all(|r| r.path.starts_with("node0/dbs/1/0/") || r.path.starts_with("node0/dbs/3/0/")));
        assert_eq!(
            codes(&judgement, Severity::Info),
            ["parquet-removed-by-server"; 9]
        );
        assert!(judgement.findings.iter().all(|f| f
            .object
            .as_deref()
            .is_some_and(|o| o.starts_with("node0/dbs/"))));
        let point = &judgement.point;
        assert_eq!(
            (
                point.snapshot_sequence_number,
                point.wal_file_sequence_number
            ),
            (Some(32), Some(181))
        );
        assert_eq!((point.wal_first, point.wal_last), (Some(182), Some(185)));
    }

    #[test]
    fn unrecorded_missing_parquet_is_a_warning() {
        let mut captured = Captured::load("core-3.10.0-basic");
        let key = "dbs/2/0/2026-11-25/09-02/0000000177.parquet";
        let size = captured.objects[key];
        captured.remove(key);
        let judgement = captured.judge();
        assert!(!judgement.has_errors());
        let missing = only(&judgement, "parquet-missing");
        assert_eq!(missing.severity, Severity::Warning);
        assert_eq!(
            missing.object.as_deref(),
            Some("node0/dbs/2/0/2026-11-25/09-02/0000000177.parquet")
        );
        assert!(
            missing.message.contains("referenced by snapshot 59"),
            "{}",
            missing.message
        );
        assert!(missing.message.contains("not recorded as removed"));
        assert_eq!(
            judgement.removed_by_server,
            [RemovedByServer {
                path: format!("node0/{key}"),
                size_bytes: size,
                recorded: false
            }]
        );
    }

    #[test]
    fn parquet_size_mismatch() {
        let mut captured = Captured::load("core-3.10.0-basic");
        let key = "dbs/2/0/2026-11-25/09-02/0000000177.parquet";
        *captured.objects.get_mut(key).unwrap() += 1;
        let judgement = captured.judge();
        let error = only(&judgement, "parquet-size-mismatch");
        assert_eq!(error.severity, Severity::Error);
        assert_eq!(
            error.object.as_deref(),
            Some("node0/dbs/2/0/2026-11-25/09-02/0000000177.parquet")
        );
        assert!(judgement.has_errors());
        assert!(judgement.removed_by_server.is_empty());
    }

    #[test]
    fn parquet_referenced_only_by_a_checkpoint() {
        let mut captured = Captured::load("core-3.10.0-basic");
        // Snapshot 1's files are also in the checkpoint: still required without the snapshot.
        captured.remove(&snapshot_key(1));
        let referenced = &captured.checkpoints[0].files[0].path;
        let key = referenced.strip_prefix("node0/").unwrap().to_string();
        captured.remove(&key);
        let judgement = captured.judge();
        let missing = only(&judgement, "parquet-missing");
        assert!(
            missing
                .message
                .contains("the snapshot checkpoint of snapshots up to 29"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn missing_wal_after_the_snapshot_is_a_gap() {
        let mut captured = Captured::load("core-3.10.0-basic");
        captured.remove("wal/00000000179.wal");
        let judgement = captured.judge();
        let gap = only(&judgement, "wal-gap");
        assert_eq!(gap.severity, Severity::Error);
        assert_eq!(gap.object.as_deref(), Some("wal/00000000179.wal"));
        assert!(
            gap.message
                .starts_with("WAL file 179 is missing: snapshot 59 covers WAL files up to 177"),
            "{}",
            gap.message
        );
        assert_eq!(
            (judgement.point.wal_first, judgement.point.wal_last),
            (Some(178), Some(180))
        );

        let mut captured = Captured::load("core-3.10.0-basic");
        captured.remove("wal/00000000178.wal");
        captured.remove("wal/00000000179.wal");
        let judgement = captured.judge();
        let gap = only(&judgement, "wal-gap");
        assert_eq!(gap.object.as_deref(), Some("wal/00000000178.wal"));
        assert!(
            gap.message.starts_with("WAL files 178–179 are missing"),
            "{}",
            gap.message
        );
    }

    #[test]
    fn wal_up_to_the_snapshot_is_optional() {
        let mut captured = Captured::load("core-3.10.0-basic");
        for key in [
            "wal/00000000176.wal",
            "wal/00000000177.wal",
            "wal/00000000180.wal",
        ] {
            captured.remove(key);
        }
        let judgement = captured.judge();
        assert!(judgement.findings.is_empty(), "{:#?}", judgement.findings);
        assert_eq!(
            (judgement.point.wal_first, judgement.point.wal_last),
            (Some(178), Some(179))
        );
        for key in ["wal/00000000178.wal", "wal/00000000179.wal"] {
            captured.remove(key);
        }
        let judgement = captured.judge();
        assert!(judgement.findings.is_empty());
        assert_eq!(
            (judgement.point.wal_first, judgement.point.wal_last),
            (None, None)
        );
        assert_eq!(judgement.point.wal_count, 0);
    }

    #[test]
    fn wal_only_nodes() {
        for fixture in [
            "core-3.10.0-wal-only",
            "core-3.9.6-wal-only",
            "core-3.3.0-wal-only",
        ] {
            let mut captured = Captured::load(fixture);
            let judgement = captured.judge();
            assert!(
                judgement.findings.is_empty(),
                "{fixture}: {:#?}",
                judgement.findings
            );
            let point = &judgement.point;
            assert_eq!(
                (
                    point.snapshot_sequence_number,
                    point.wal_file_sequence_number
                ),
                (None, None)
            );
            assert_eq!(
                (point.wal_first, point.wal_last, point.wal_count),
                (Some(1), Some(15), 15)
            );
            assert_eq!(point.catalog_sequence_required, None);
            assert_eq!(point.catalog_sequence, Some(7));
            captured.remove("wal/00000000007.wal");
            let judgement = captured.judge();
            let gap = only(&judgement, "wal-gap");
            assert_eq!(gap.object.as_deref(), Some("wal/00000000007.wal"));
            assert!(
                gap.message.contains("no snapshot was taken yet"),
                "{}",
                gap.message
            );
            // Without a snapshot, the first WAL file present is where replay starts.
            captured.remove("wal/00000000001.wal");
            let judgement = captured.judge();
            assert_eq!(judgement.point.wal_first, Some(2));
            assert_eq!(
                only(&judgement, "wal-gap").object.as_deref(),
                Some("wal/00000000007.wal")
            );
        }
    }

    #[test]
    fn catalog_log_gap() {
        let mut captured = Captured::load("core-3.10.0-basic");
        captured.remove("catalog/v3/logs/00000000000000000005.catalog");
        let judgement = captured.judge();
        let gap = only(&judgement, "catalog-log-gap");
        assert_eq!(gap.severity, Severity::Error);
        assert_eq!(
            gap.object.as_deref(),
            Some("catalog/v3/logs/00000000000000000005.catalog")
        );
        assert!(
            gap.message
                .starts_with("catalog log 5 is missing after the catalog checkpoint (sequence 0)"),
            "{}",
            gap.message
        );
        // The catalog stops at 4, behind what the snapshots need.
        assert_eq!(judgement.point.catalog_sequence, Some(4));
        assert_eq!(
            only(&judgement, "catalog-behind-data").severity,
            Severity::Error
        );
    }

    #[test]
    fn catalog_behind_data() {
        let mut captured = Captured::load("core-3.9.6-basic");
        captured.remove("catalog/v2/logs/00000000000000000009.catalog");
        assert!(
            !captured.judge().has_errors(),
            "sequence 8 is what the snapshots need"
        );
        captured.remove("catalog/v2/logs/00000000000000000008.catalog");
        let judgement = captured.judge();
        assert_eq!(judgement.point.catalog_sequence, Some(7));
        assert_eq!(judgement.point.catalog_sequence_required, Some(8));
        let behind = only(&judgement, "catalog-behind-data");
        assert!(
            behind.message.contains("reaches sequence 7")
                && behind.message.contains("need sequence 8"),
            "{}",
            behind.message
        );
        assert_eq!(codes(&judgement, Severity::Error), ["catalog-behind-data"]);
    }

    #[test]
    fn catalog_missing() {
        let mut captured = Captured::load("core-3.10.0-basic");
        captured.remove("catalog/v3/snapshot");
        let judgement = captured.judge();
        let missing = only(&judgement, "catalog-missing");
        assert_eq!(missing.severity, Severity::Error);
        assert_eq!(missing.object.as_deref(), Some("catalog/v3/snapshot"));
        assert_eq!(judgement.point.catalog_sequence, None);

        let keys: Vec<String> = captured
            .objects
            .keys()
            .filter(|k| matches!(classify(k), ObjectClass::CatalogLog { .. }))
            .cloned()
            .collect();
        for key in keys {
            captured.remove(&key);
        }
        let judgement = captured.judge();
        assert_eq!(captured.active, None);
        let missing = only(&judgement, "catalog-missing");
        assert_eq!(
            (missing.severity, missing.object.as_deref()),
            (Severity::Error, None)
        );
        assert_eq!(judgement.point.catalog_generation, None);
    }

    #[test]
    fn empty_cut_has_no_catalog() {
        let objects = BTreeMap::new();
        let catalog_files = BTreeMap::new();
        let judgement = judge(&CapturedSet {
            node_prefix: "node0",
            objects: &objects,
            snapshots: &[],
            checkpoints: &[],
            catalog_files: &catalog_files,
            active_catalog: None,
            catalog: CatalogScope::Here,
        });
        assert_eq!(codes(&judgement, Severity::Error), ["catalog-missing"]);
        assert_eq!(judgement.point, ConsistentPoint::default());
    }

    #[test]
    fn catalog_without_checkpoint_and_without_data_is_a_warning() {
        let mut captured = Captured::load("core-3.10.0-wal-only");
        for seq in 1..=15 {
            captured.remove(&wal_key(seq));
        }
        captured.remove("catalog/v3/snapshot");
        let judgement = captured.judge();
        assert_eq!(
            only(&judgement, "catalog-missing").severity,
            Severity::Warning
        );
    }

    #[test]
    fn catalog_uuid_mismatch() {
        let mut captured = Captured::load("core-3.10.0-basic");
        let key = "catalog/v3/logs/00000000000000000003.catalog";
        captured.catalog_files.get_mut(key).unwrap().catalog_uuid =
            Some("00000000-0000-0000-0000-000000000001".into());
        let judgement = captured.judge();
        let mismatch = only(&judgement, "catalog-uuid-mismatch");
        assert_eq!(
            (mismatch.severity, mismatch.object.as_deref()),
            (Severity::Error, Some(key))
        );
        assert_eq!(
            judgement.point.catalog_uuid.as_deref(),
            Some("54951fa1-cf60-4a90-b5b8-d2a9f41d506a")
        );
    }

    #[test]
    fn end_marker_in_the_active_generation_is_a_warning() {
        let mut captured = Captured::load("core-3.9.6-basic");
        let key = "catalog/v2/logs/00000000000000000009.catalog";
        captured.catalog_files.get_mut(key).unwrap().end_marker = true;
        let judgement = captured.judge();
        let marker = only(&judgement, "catalog-end-marker");
        assert_eq!(
            (marker.severity, marker.object.as_deref()),
            (Severity::Warning, Some(key))
        );
        assert!(!judgement.has_errors());
    }

    #[test]
    fn foreign_node_snapshots_are_flagged_once() {
        let mut captured = Captured::load("core-3.10.0-deleted-db");
        for s in &mut captured.snapshots {
            s.node_id = "other".into();
        }
        let judgement = captured.judge();
        let mismatch = only(&judgement, "snapshot-node-mismatch");
        assert_eq!(mismatch.severity, Severity::Warning);
        assert!(
            mismatch
                .message
                .starts_with("29 snapshot file(s) were written by node \"other\""),
            "{}",
            mismatch.message
        );
        assert!(!judgement.has_errors());
    }

    #[test]
    fn unknown_objects_are_reported() {
        let mut captured = Captured::load("core-3.3.0-basic");
        captured.objects.insert("notes.txt".into(), 3);
        captured.objects.insert("wal/foo.wal".into(), 3);
        let judgement = captured.judge();
        let unknown: Vec<&str> = judgement
            .findings
            .iter()
            .filter(|f| f.code == "unknown-object")
            .filter_map(|f| f.object.as_deref())
            .collect();
        assert_eq!(unknown, ["notes.txt", "wal/foo.wal"]);
        assert!(!judgement.has_errors());
    }

    #[test]
    fn findings_are_sorted_most_severe_first() {
        let mut captured = Captured::load("core-3.3.0-upgraded-3.9.6");
        captured.objects.insert("notes.txt".into(), 3);
        captured.remove("wal/00000000119.wal");
        let judgement = captured.judge();
        assert_eq!(judgement.findings[0].code, "wal-gap");
        assert_eq!(judgement.findings.last().unwrap().severity, Severity::Info);
        assert_sorted(&judgement);
    }

    #[test]
    fn gaps_helper() {
        assert_eq!(gaps(1, [1, 2, 3]), []);
        assert_eq!(gaps(1, [2, 3]), [(1, 1)]);
        assert_eq!(gaps(1, [1, 4, 5, 9]), [(2, 3), (6, 8)]);
        assert_eq!(gaps(5, []), []);
        assert_eq!(gaps(5, [5, 5, 7]), [(6, 6)]);
        assert_eq!(gaps(u64::MAX, [u64::MAX]), []);
    }
}
