//! `list`: the backups in a repository, oldest first, with their consistent points.

use super::record::BackupSource;
use anyhow::Result;
use ib3_repo::Repository;
use serde::Serialize;

/// One backup as listed.
#[derive(Debug, Serialize)]
pub struct BackupSummary {
    /// Backup id.
    pub backup_id: String,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// End time (RFC 3339).
    pub finished_at: String,
    /// What the backup is of: `node0`, `cluster c1`, `cluster c1 built-in backup b1`.
    pub subject: Option<String>,
    /// Node id (node backups).
    pub node_id: Option<String>,
    /// Cluster id (Enterprise cluster backups).
    pub cluster_id: Option<String>,
    /// Source store location.
    pub location: Option<String>,
    /// Whether the backup is consistent.
    pub consistent: Option<bool>,
    /// Snapshot sequence captured.
    pub snapshot_sequence_number: Option<u64>,
    /// First WAL file to replay.
    pub wal_first: Option<u64>,
    /// Last WAL file captured.
    pub wal_last: Option<u64>,
    /// Catalog sequence captured.
    pub catalog_sequence: Option<u64>,
    /// Entries.
    pub entries: u64,
    /// Bytes.
    pub bytes: u64,
    /// Bytes uploaded by the run that made it.
    pub bytes_uploaded: u64,
}

/// The listing.
#[derive(Debug, Serialize)]
pub struct ListReport {
    /// Repository location.
    pub repository: String,
    /// Backups, oldest first.
    pub backups: Vec<BackupSummary>,
}

/// Run `list`.
pub async fn list(repo: &Repository) -> Result<ListReport> {
    let mut backups = Vec::new();
    for id in repo.list_backups().await? {
        // The header says all a listing shows: entry chunks are not read.
        let manifest = repo.load_stored_manifest(&id).await?.manifest;
        let source = BackupSource::parse(&manifest.source).ok();
        let (node, cluster) = match &source {
            Some(BackupSource::Node(r)) => (Some(r), None),
            Some(BackupSource::Cluster(c)) => (None, Some(c)),
            None => (None, None),
        };
        // A cluster's point is its catalog's; nodes' snapshot and WAL ranges are per node.
        let point_of = node.or_else(|| cluster.and_then(|c| c.catalog.as_deref()));
        let point = |field: &str| {
            point_of
                .and_then(|r| r.point.get(field))
                .and_then(|v| v.as_u64())
        };
        backups.push(BackupSummary {
            backup_id: id.to_string(),
            started_at: manifest.started_at.clone(),
            finished_at: manifest.finished_at.clone(),
            subject: source.as_ref().map(BackupSource::subject),
            node_id: node.map(|r| r.node_id.clone()),
            cluster_id: cluster.map(|c| c.cluster_id.clone()),
            location: source.as_ref().map(|s| s.location().to_string()),
            consistent: source.as_ref().map(BackupSource::consistent),
            snapshot_sequence_number: node.and_then(|_| point("snapshot_sequence_number")),
            wal_first: node.and_then(|_| point("wal_first")),
            wal_last: node.and_then(|_| point("wal_last")),
            catalog_sequence: point("catalog_sequence"),
            entries: manifest.summary.entries,
            bytes: manifest.summary.bytes,
            bytes_uploaded: manifest.summary.bytes_uploaded,
        });
    }
    Ok(ListReport {
        repository: repo.location().to_string(),
        backups,
    })
}
