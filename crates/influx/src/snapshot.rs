//! Persisted snapshot files (`snapshots/*.info.json`) and snapshot checkpoints
//! (`snapshot-checkpoints/*/*.checkpoint.json`): the fields a backup needs (format doc §2.2, §2.3).

use serde::Serialize;

/// One Parquet file referenced by a snapshot or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParquetRef {
    /// Database id.
    pub db_id: u32,
    /// Table id.
    pub table_id: u32,
    /// Parquet file id.
    pub file_id: u64,
    /// Full object key as recorded, **including the node prefix** (`node0/dbs/…`).
    pub path: String,
    /// Size recorded by the server; the object must have exactly this size.
    pub size_bytes: u64,
    /// Rows in the file.
    pub row_count: u64,
    /// Minimum timestamp (ns).
    pub min_time: i64,
    /// Maximum timestamp (ns).
    pub max_time: i64,
}

/// A parsed `snapshots/*.info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistedSnapshot {
    /// `node_id` (alias `writer_id`).
    pub node_id: String,
    /// Snapshot sequence number.
    pub snapshot_sequence_number: u64,
    /// Last WAL file covered by snapshots up to this one.
    pub wal_file_sequence_number: u64,
    /// Catalog sequence at snapshot time.
    pub catalog_sequence_number: u64,
    /// Total Parquet bytes as recorded.
    pub parquet_size_bytes: u64,
    /// Total rows as recorded.
    pub row_count: u64,
    /// Files added (`databases`).
    pub files: Vec<ParquetRef>,
    /// Files removed by the server (`removed_files`, 3.2+; empty when absent).
    pub removed_files: Vec<ParquetRef>,
}

/// A parsed `snapshot-checkpoints/{YYYY-MM}/*.checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCheckpoint {
    /// `node_id`.
    pub node_id: String,
    /// `YYYY-MM`.
    pub year_month: String,
    /// Last snapshot sequence number folded into this checkpoint.
    pub last_snapshot_sequence_number: u64,
    /// WAL sequence covered.
    pub wal_file_sequence_number: u64,
    /// Catalog sequence at checkpoint time.
    pub catalog_sequence_number: u64,
    /// Cumulative file set of the month.
    pub files: Vec<ParquetRef>,
    /// Removals referring to earlier months.
    pub pending_removed_files: Vec<ParquetRef>,
}

/// Parse a snapshot file; `object` names it in errors.
pub fn parse_snapshot(object: &str, bytes: &[u8]) -> crate::Result<PersistedSnapshot> {
    todo!()
}

/// Parse a snapshot checkpoint file; `object` names it in errors.
pub fn parse_snapshot_checkpoint(object: &str, bytes: &[u8]) -> crate::Result<SnapshotCheckpoint> {
    todo!()
}
