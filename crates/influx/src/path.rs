//! Classification of object keys under an InfluxDB 3 node prefix, and the key templates.
//!
//! All keys handled here are **relative to the node prefix** (`wal/00000000001.wal`, not
//! `node0/wal/00000000001.wal`). Templates (format doc §0, §1):
//! - WAL `wal/{seq:011}.wal`; snapshots `snapshots/{u64::MAX - seq:020}.info.json` (inverted);
//! - snapshot checkpoints `snapshot-checkpoints/{YYYY-MM}/{u64::MAX - seq:020}.checkpoint.json`;
//! - Parquet `dbs/…/*.parquet` (ids in 3.6+, `name-id` segments in 3.0–3.5);
//! - catalog v1 `_catalog_checkpoint` + `catalogs/{seq:020}.catalog`, v2 `catalog/v2/{snapshot,logs/…}`,
//!   v3 `catalog/v3/{snapshot,logs/…}`;
//! - derived table-index state `table-snapshots/`, `db-indices/`, `table-index-conversion-completed`.

use serde::{Deserialize, Serialize};

/// Catalog layout generation (format doc §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogGeneration {
    /// 3.0–3.3: `_catalog_checkpoint` + `catalogs/`.
    V1,
    /// 3.4–3.9: `catalog/v2/`.
    V2,
    /// 3.10+: `catalog/v3/`.
    V3,
}

/// What an object under a node prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectClass {
    /// A gen1 Parquet file under `dbs/`.
    Parquet,
    /// A persisted snapshot file; `seq` is the (un-inverted) snapshot sequence number.
    Snapshot {
        /// Snapshot sequence number.
        seq: u64,
    },
    /// A snapshot checkpoint; `seq` is its (un-inverted) last snapshot sequence number.
    SnapshotCheckpoint {
        /// Last snapshot sequence number covered.
        seq: u64,
    },
    /// A WAL file.
    Wal {
        /// WAL file sequence number.
        seq: u64,
    },
    /// An immutable catalog log file.
    CatalogLog {
        /// Catalog generation.
        generation: CatalogGeneration,
        /// Catalog sequence number (from the file name).
        seq: u64,
    },
    /// The catalog checkpoint ("snapshot") of a generation, overwritten in place.
    CatalogCheckpoint {
        /// Catalog generation.
        generation: CatalogGeneration,
    },
    /// Derived table-index state the server rebuilds (never backed up).
    Derived,
    /// Anything else (kept, reported).
    Unknown,
}

/// Restore (and capture) phases, in the order objects must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Parquet files and unrecognised objects.
    Data,
    /// Snapshot files and snapshot checkpoints.
    Snapshots,
    /// WAL files.
    Wal,
    /// Catalog logs of every generation, and checkpoints of stale generations.
    CatalogLogs,
    /// The active generation's catalog checkpoint: always last.
    CatalogCheckpoint,
}

impl ObjectClass {
    /// Stable label recorded as an entry's `class` in manifests.
    pub fn label(&self) -> &'static str {
        todo!()
    }

    /// Whether the server never rewrites this object once it exists (so a repository copy under
    /// the same key and size can be reused without reading the source).
    pub fn is_immutable(&self) -> bool {
        todo!()
    }

    /// The phase this object is written in, given the active catalog generation. `None` for
    /// derived objects, which are never backed up or restored.
    pub fn phase(&self, active_catalog: Option<CatalogGeneration>) -> Option<Phase> {
        todo!()
    }
}

/// Classify a key relative to the node prefix.
pub fn classify(relative_key: &str) -> ObjectClass {
    todo!()
}

/// `wal/{seq:011}.wal`
pub fn wal_key(seq: u64) -> String {
    todo!()
}

/// `snapshots/{u64::MAX - seq:020}.info.json`
pub fn snapshot_key(seq: u64) -> String {
    todo!()
}

/// Catalog log key of a generation, e.g. `catalog/v3/logs/{seq:020}.catalog`.
pub fn catalog_log_key(generation: CatalogGeneration, seq: u64) -> String {
    todo!()
}

/// Catalog checkpoint key of a generation (`_catalog_checkpoint`, `catalog/v2/snapshot`, `catalog/v3/snapshot`).
pub fn catalog_checkpoint_key(generation: CatalogGeneration) -> &'static str {
    todo!()
}

/// The key prefix (directory) holding a generation's catalog logs (`catalogs/`, `catalog/v2/logs/`, …).
pub fn catalog_logs_dir(generation: CatalogGeneration) -> &'static str {
    todo!()
}
