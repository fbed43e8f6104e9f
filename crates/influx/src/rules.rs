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
use crate::path::CatalogGeneration;
use crate::snapshot::{PersistedSnapshot, SnapshotCheckpoint};
use serde::Serialize;
use std::collections::BTreeMap;

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
    todo!()
}
