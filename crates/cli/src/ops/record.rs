//! The `source` document of a manifest for an InfluxDB 3 node: what was backed up and the
//! consistent point it represents. The repository treats it as opaque JSON; this module owns it.

use ib3_influx::path::CatalogGeneration;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// `manifest.source` for an InfluxDB 3 node backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Always `influxdb3`.
    pub product: String,
    /// Node id (object-store prefix).
    pub node_id: String,
    /// `file`, `s3`, ….
    pub object_store: String,
    /// Data dir or bucket.
    pub location: String,
    /// Active catalog generation at backup time (decides the restore phase of checkpoints).
    pub active_catalog: Option<CatalogGeneration>,
    /// Layout found (generation, stale catalogs, Parquet naming).
    pub layout: serde_json::Value,
    /// Server versions writing that layout.
    pub server_versions: String,
    /// Whether every consistency rule held.
    pub consistent: bool,
    /// The consistent point (snapshot, WAL range, catalog sequence, counts).
    pub point: serde_json::Value,
    /// Referenced Parquet files the server had removed.
    pub removed_by_server: serde_json::Value,
    /// Findings of the rules at capture time.
    pub findings: serde_json::Value,
    /// Re-plans and why.
    pub replan_reasons: Vec<String>,
    /// Objects that vanished during the run.
    pub vanished: Vec<String>,
    /// Derived objects left out.
    pub derived_skipped: u64,
    /// When the node's Parquet tree (`dbs/`) was last listed, RFC 3339: by this backup, or by
    /// the one whose tree it followed the snapshot files from (DESIGN §4.6). Absent in
    /// backups of earlier versions and of cluster members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_listed_at: Option<String>,
    /// Whether this backup took `dbs/` from the previous one and followed the snapshot files
    /// instead of listing it (DESIGN §4.6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parquet_followed: bool,
}

/// The field of every backup's and progress record's `source` document that says when, in the
/// source store's clock, the newest object the run was given had been written (RFC 3339).
const NEWEST_MODIFIED: &str = "newest_modified";

/// Record in `source` (a backup's or progress record's document) the newest write time the store
/// reported among the objects the run was given.
pub fn set_written_until(source: &mut serde_json::Value, newest: Option<SystemTime>) {
    if let (Some(fields), Some(newest)) = (source.as_object_mut(), newest) {
        let at = humantime::format_rfc3339_nanos(newest).to_string();
        fields.insert(NEWEST_MODIFIED.into(), at.into());
    }
}

/// When every object that a backup or progress record (`source` document, `finished_at`) took
/// in had last been written, as far as it tells: the newest write time its store reported (the
/// store's clock, so the host's clock may differ), and no later than the run's end — a second
/// after `finished_at`, which is in whole seconds — should an object be dated in the future.
/// `None` for a record of neither (a corrupt one).
pub fn written_until(source: &serde_json::Value, finished_at: &str) -> Option<SystemTime> {
    let newest = source
        .get(NEWEST_MODIFIED)
        .and_then(|v| v.as_str())
        .and_then(|at| humantime::parse_rfc3339(at).ok());
    let end = humantime::parse_rfc3339(finished_at)
        .ok()
        .map(|at| at + Duration::from_secs(1));
    match (newest, end) {
        (Some(newest), Some(end)) => Some(newest.min(end)),
        (newest, end) => newest.or(end),
    }
}

/// Whether an object the store says was written at `modified` was written after a run that
/// took objects in until `until` ([`written_until`]): then it is not the object that run read,
/// whatever its key and size. Unknown times answer no.
pub fn written_after(modified: Option<SystemTime>, until: Option<SystemTime>) -> bool {
    matches!((modified, until), (Some(modified), Some(until)) if modified > until)
}

/// `source.product` of InfluxDB 3 backups.
pub const PRODUCT: &str = "influxdb3";

/// `source.product` of InfluxDB 3 Enterprise cluster backups (entries are keyed from the store
/// root: `<cluster_id>/…`, `<node_id>/…`).
pub const PRODUCT_ENTERPRISE: &str = "influxdb3-enterprise";

/// What an Enterprise backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterBackupKind {
    /// The cluster's files: catalog, cluster files, every member node.
    Cluster,
    /// A copy of a backup the server wrote itself (`<cluster_id>/backups/<name>/`).
    BuiltinBackup,
}

/// `manifest.source` for an Enterprise backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Always [`PRODUCT_ENTERPRISE`].
    pub product: String,
    /// Cluster files or a built-in backup.
    pub kind: ClusterBackupKind,
    /// Cluster id (prefix of the catalog and cluster files).
    pub cluster_id: String,
    /// `file`, `s3`, ….
    pub object_store: String,
    /// Data dir or bucket.
    pub location: String,
    /// Storage engine found (`parquet` for a file-level backup).
    pub storage_mode: String,
    /// Server versions writing the cluster catalog's layout.
    pub server_versions: String,
    /// Whether every member and the catalog held every consistency rule.
    pub consistent: bool,
    /// The cluster catalog's cut (its `node_id` is the cluster id); absent for a built-in backup.
    pub catalog: Option<Box<SourceRecord>>,
    /// Member nodes: compactors first, then data nodes.
    pub members: Vec<MemberRecord>,
    /// The nodes `--node-id` asked for (empty: every member found). A backup of some nodes is
    /// its own retention group.
    #[serde(default)]
    pub selected: Vec<String>,
    /// Cluster files backed up (license files, `enterprise`), relative to the cluster prefix.
    pub cluster_files: Vec<String>,
    /// Prefixes at the store root that were left out, and why.
    pub skipped: serde_json::Value,
    /// The built-in backup copied (kind `builtin-backup`).
    pub builtin_backup: Option<String>,
}

/// One member node of a cluster backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Node id (prefix).
    pub node_id: String,
    /// `compactor` or `data`.
    pub role: String,
    /// What the cluster catalog says about it.
    pub registration: String,
    /// The node's cut (WAL, snapshots, Parquet), absent when it holds none (a compactor).
    pub node: Option<SourceRecord>,
    /// Compactor output objects (`cs/`, `cd/`, `c/`) captured.
    pub compaction_objects: u64,
    /// Rounds the compactor output needed to be captured without a file vanishing.
    pub compaction_rounds: u32,
}

/// A manifest's source, by product.
#[derive(Debug, Clone)]
pub enum BackupSource {
    /// A Core node (or one Enterprise node backed up alone): entries relative to the node.
    Node(SourceRecord),
    /// An Enterprise cluster or built-in backup: entries relative to the store root.
    Cluster(ClusterRecord),
}

impl BackupSource {
    /// Read a manifest's `source` document.
    pub fn parse(source: &serde_json::Value) -> Result<Self, serde_json::Error> {
        match source.get("product").and_then(|p| p.as_str()) {
            Some(PRODUCT_ENTERPRISE) => serde_json::from_value(source.clone()).map(Self::Cluster),
            _ => serde_json::from_value(source.clone()).map(Self::Node),
        }
    }

    /// What the backup is of, for listings and retention groups: `node0`, `cluster c1`,
    /// `cluster c1 built-in backup b1`.
    pub fn subject(&self) -> String {
        match self {
            Self::Node(r) => r.node_id.clone(),
            Self::Cluster(r) => match &r.builtin_backup {
                Some(name) => format!("cluster {} built-in backup {name}", r.cluster_id),
                None if !r.selected.is_empty() => {
                    format!("cluster {} nodes {}", r.cluster_id, r.selected.join(","))
                }
                None => format!("cluster {}", r.cluster_id),
            },
        }
    }

    /// Source store location.
    pub fn location(&self) -> &str {
        match self {
            Self::Node(r) => &r.location,
            Self::Cluster(r) => &r.location,
        }
    }

    /// Whether the backup held every consistency rule.
    pub fn consistent(&self) -> bool {
        match self {
            Self::Node(r) => r.consistent,
            Self::Cluster(r) => r.consistent,
        }
    }
}
