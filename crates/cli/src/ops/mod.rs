//! One orchestration function per command: each composes `influx` (what to copy and why it is
//! consistent), `repo` (where it goes) and `transfer` (how bytes move), and returns a
//! serialisable report that [`crate::output`] prints.

mod by_path;
pub mod codecs;
pub mod copy;
pub mod create;
pub mod create_cluster;
pub mod inspect;
pub mod list;
pub mod prune;
pub mod record;
pub mod restore;
pub mod unlock;
pub mod verify;

/// Tool name and version, as recorded in repositories and manifests.
pub fn tool_version() -> String {
    format!("influxdb3-backup {}", env!("CARGO_PKG_VERSION"))
}

/// Now, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What a phase moves, for progress bars.
pub fn phase_label(phase: ib3_influx::path::Phase) -> &'static str {
    use ib3_influx::path::Phase;
    match phase {
        Phase::Data => "Parquet files",
        Phase::Snapshots => "snapshot files",
        Phase::Wal => "WAL files",
        Phase::CatalogLogs => "catalog logs",
        Phase::CatalogCheckpoint => "catalog checkpoint",
        Phase::CompactedData => "compacted generations (c/)",
        Phase::CompactionDetails => "compaction details (cd/)",
        Phase::CompactionSummaries => "compaction summaries (cs/)",
        Phase::ClusterConfig => "cluster files (enterprise, licenses)",
        Phase::BuiltinBackup => "built-in backup files",
    }
}
