//! `list`: the backups in a repository, oldest first, with their consistent points.

use super::record::SourceRecord;
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
    /// Node id.
    pub node_id: Option<String>,
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
        let manifest = repo.load_manifest(&id).await?;
        let record: Option<SourceRecord> = serde_json::from_value(manifest.source.clone()).ok();
        let point = |field: &str| {
            record
                .as_ref()
                .and_then(|r| r.point.get(field))
                .and_then(|v| v.as_u64())
        };
        backups.push(BackupSummary {
            backup_id: id.to_string(),
            started_at: manifest.started_at.clone(),
            finished_at: manifest.finished_at.clone(),
            node_id: record.as_ref().map(|r| r.node_id.clone()),
            location: record.as_ref().map(|r| r.location.clone()),
            consistent: record.as_ref().map(|r| r.consistent),
            snapshot_sequence_number: point("snapshot_sequence_number"),
            wal_first: point("wal_first"),
            wal_last: point("wal_last"),
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
