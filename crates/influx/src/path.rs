//! Classification of object keys under an InfluxDB 3 node prefix, and the key templates.
//!
//! All keys handled here are **relative to the node prefix** (`wal/00000000001.wal`, not
//! `node0/wal/00000000001.wal`). Templates (format doc §0, §1):
//! - WAL `wal/{seq:011}.wal`; snapshots `snapshots/{u64::MAX - seq:020}.info.json` (inverted);
//! - snapshot checkpoints `snapshot-checkpoints/{YYYY-MM}/{u64::MAX - seq:020}.checkpoint.json`;
//! - Parquet `dbs/…/*.parquet` (ids in 3.6+, `name-id` segments in 3.0–3.5);
//! - catalog v1 `_catalog_checkpoint` + `catalogs/{seq:020}.catalog`, v2 `catalog/v2/{snapshot,logs/…}`,
//!   v3 `catalog/v3/{snapshot,logs/…}`;
//! - derived table-index state `table-snapshots/`, `db-indices/`, `table-index-conversion-completed`;
//! - Enterprise compactor output `cs/` (summaries), `cd/` (details), `c/` (generations and
//!   compacted Parquet) under the compactor's node prefix; and, relative to the cluster prefix
//!   ([`classify_cluster`]), the cluster catalog, `commercial_license`, `trial_or_home_license`,
//!   `enterprise`, and the server's own backups `backups/<name>/…` (format doc §7).

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
    /// Enterprise compactor output under the compactor's node prefix.
    Compaction {
        /// Which compactor directory.
        kind: CompactionKind,
    },
    /// Enterprise cluster files beside the cluster catalog: the license files and the
    /// `enterprise` configuration file (opaque, rewritten by the server).
    ClusterConfig,
    /// A file of a backup the Enterprise server wrote itself (`backups/<name>/…` under the
    /// cluster prefix; PachaTree engine only). Opaque; immutable once the backup is complete.
    BuiltinBackup,
    /// Derived table-index state the server rebuilds (never backed up).
    Derived,
    /// Anything else (kept, reported).
    Unknown,
}

/// The directories of an Enterprise compactor, in restore order (what others reference first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompactionKind {
    /// `c/`: generation details and compacted Parquet files.
    Generations,
    /// `cd/`: compaction details.
    Details,
    /// `cs/`: compaction summaries.
    Summaries,
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
    /// Compactor generations and compacted Parquet (`c/`).
    CompactedData,
    /// Compaction details (`cd/`).
    CompactionDetails,
    /// Compaction summaries (`cs/`).
    CompactionSummaries,
    /// Catalog logs of every generation, and checkpoints of stale generations.
    CatalogLogs,
    /// The active generation's catalog checkpoint: last of a catalog.
    CatalogCheckpoint,
    /// Enterprise cluster files: the `enterprise` file and the licenses, after the catalog.
    ClusterConfig,
    /// Files of a backup the Enterprise server wrote itself.
    BuiltinBackup,
}

impl ObjectClass {
    /// Stable label recorded as an entry's `class` in manifests.
    pub fn label(&self) -> &'static str {
        match self {
            ObjectClass::Parquet => "parquet",
            ObjectClass::Snapshot { .. } => "snapshot",
            ObjectClass::SnapshotCheckpoint { .. } => "snapshot-checkpoint",
            ObjectClass::Wal { .. } => "wal",
            ObjectClass::CatalogLog { .. } => "catalog-log",
            ObjectClass::CatalogCheckpoint { .. } => "catalog-checkpoint",
            ObjectClass::Compaction { kind } => match kind {
                CompactionKind::Generations => "compaction-generation",
                CompactionKind::Details => "compaction-detail",
                CompactionKind::Summaries => "compaction-summary",
            },
            ObjectClass::ClusterConfig => "cluster-config",
            ObjectClass::BuiltinBackup => "builtin-backup",
            ObjectClass::Derived => "derived",
            ObjectClass::Unknown => "unknown",
        }
    }

    /// Whether this is a small file carrying the node's state that a backup parses: a snapshot
    /// file, a snapshot checkpoint or a catalog file.
    pub fn is_state_file(&self) -> bool {
        matches!(
            self,
            ObjectClass::Snapshot { .. }
                | ObjectClass::SnapshotCheckpoint { .. }
                | ObjectClass::CatalogLog { .. }
                | ObjectClass::CatalogCheckpoint { .. }
        )
    }

    /// Whether the server never rewrites this object once it exists (so a repository copy under
    /// the same key and size can be reused without reading the source).
    pub fn is_immutable(&self) -> bool {
        // Catalog checkpoints and derived state are overwritten in place (format doc §3.2);
        // unknown objects are not ours to vouch for. Compaction summaries and details are
        // undocumented: read every time. Generations (`c/`) hold compacted Parquet, written
        // once under new names like gen1 files; a built-in backup is complete before it is
        // copied.
        matches!(
            self,
            ObjectClass::Parquet
                | ObjectClass::Snapshot { .. }
                | ObjectClass::SnapshotCheckpoint { .. }
                | ObjectClass::Wal { .. }
                | ObjectClass::CatalogLog { .. }
                | ObjectClass::Compaction {
                    kind: CompactionKind::Generations
                }
                | ObjectClass::BuiltinBackup
        )
    }

    /// The phase this object is written in, given the active catalog generation. `None` for
    /// derived objects, which are never backed up or restored.
    pub fn phase(&self, active_catalog: Option<CatalogGeneration>) -> Option<Phase> {
        Some(match self {
            ObjectClass::Parquet | ObjectClass::Unknown => Phase::Data,
            ObjectClass::Snapshot { .. } | ObjectClass::SnapshotCheckpoint { .. } => {
                Phase::Snapshots
            }
            ObjectClass::Wal { .. } => Phase::Wal,
            ObjectClass::Compaction { kind } => match kind {
                CompactionKind::Generations => Phase::CompactedData,
                CompactionKind::Details => Phase::CompactionDetails,
                CompactionKind::Summaries => Phase::CompactionSummaries,
            },
            ObjectClass::ClusterConfig => Phase::ClusterConfig,
            ObjectClass::BuiltinBackup => Phase::BuiltinBackup,
            ObjectClass::CatalogLog { .. } => Phase::CatalogLogs,
            // A stale generation's checkpoint is an inert leftover: it goes with the logs, so
            // that only the active checkpoint is written last.
            ObjectClass::CatalogCheckpoint { generation } => match active_catalog {
                Some(active) if active != *generation => Phase::CatalogLogs,
                _ => Phase::CatalogCheckpoint,
            },
            ObjectClass::Derived => return None,
        })
    }
}

/// Classify a key relative to the node prefix.
pub fn classify(relative_key: &str) -> ObjectClass {
    let key = relative_key;
    if let Some(name) = key.strip_prefix("wal/") {
        return numbered(name, 11, ".wal")
            .map_or(ObjectClass::Unknown, |seq| ObjectClass::Wal { seq });
    }
    if let Some(name) = key.strip_prefix("snapshots/") {
        return numbered(name, 20, ".info.json").map_or(ObjectClass::Unknown, |n| {
            ObjectClass::Snapshot { seq: u64::MAX - n }
        });
    }
    if let Some(rest) = key.strip_prefix("snapshot-checkpoints/") {
        return classify_snapshot_checkpoint(rest);
    }
    if key.starts_with("dbs/") && key.ends_with(".parquet") {
        return ObjectClass::Parquet;
    }
    if let Some(class) = classify_catalog(key) {
        return class;
    }
    if is_derived(key) {
        return ObjectClass::Derived;
    }
    compaction_kind(key).map_or(ObjectClass::Unknown, |kind| ObjectClass::Compaction {
        kind,
    })
}

/// The compactor directory a key (relative to a node prefix) is in.
fn compaction_kind(key: &str) -> Option<CompactionKind> {
    let (dir, rest) = key.split_once('/')?;
    let kind = match dir {
        "c" => CompactionKind::Generations,
        "cd" => CompactionKind::Details,
        "cs" => CompactionKind::Summaries,
        _ => return None,
    };
    (!rest.is_empty()).then_some(kind)
}

/// Names of the license files under the cluster prefix (format doc §1.7, §7).
pub const LICENSE_FILES: [&str; 2] = ["commercial_license", "trial_or_home_license"];

/// Name of the Enterprise configuration file under the cluster prefix.
pub const ENTERPRISE_FILE: &str = "enterprise";

/// Directory of the server's own backups under the cluster prefix.
pub const BUILTIN_BACKUPS_DIR: &str = "backups/";

/// Classify a key relative to an Enterprise **cluster** prefix: the cluster catalog (any
/// generation), the cluster files, and built-in backups; anything else is unknown.
pub fn classify_cluster(relative_key: &str) -> ObjectClass {
    if let Some(class) = classify_catalog(relative_key) {
        return class;
    }
    if relative_key == ENTERPRISE_FILE || LICENSE_FILES.contains(&relative_key) {
        return ObjectClass::ClusterConfig;
    }
    match relative_key.strip_prefix(BUILTIN_BACKUPS_DIR) {
        Some(rest) if rest.contains('/') => ObjectClass::BuiltinBackup,
        _ => ObjectClass::Unknown,
    }
}

fn classify_snapshot_checkpoint(rest: &str) -> ObjectClass {
    match rest.split_once('/') {
        Some((month, name)) if is_year_month(month) => numbered(name, 20, ".checkpoint.json")
            .map_or(ObjectClass::Unknown, |n| ObjectClass::SnapshotCheckpoint {
                seq: u64::MAX - n,
            }),
        _ => ObjectClass::Unknown,
    }
}

fn classify_catalog(key: &str) -> Option<ObjectClass> {
    use CatalogGeneration::*;
    for generation in [V1, V2, V3] {
        if key == catalog_checkpoint_key(generation) {
            return Some(ObjectClass::CatalogCheckpoint { generation });
        }
        if let Some(name) = key.strip_prefix(catalog_logs_dir(generation)) {
            // A malformed name inside a logs directory is not a log the server would load.
            let class = numbered(name, 20, ".catalog").map_or(ObjectClass::Unknown, |seq| {
                ObjectClass::CatalogLog { generation, seq }
            });
            return Some(class);
        }
    }
    None
}

fn is_derived(key: &str) -> bool {
    key == "table-index-conversion-completed"
        || ["table-snapshots/", "db-indices/"]
            .iter()
            .any(|dir| key.strip_prefix(dir).is_some_and(|rest| !rest.is_empty()))
}

/// `name` = exactly `digits` ASCII digits followed by `suffix` → the number.
fn numbered(name: &str, digits: usize, suffix: &str) -> Option<u64> {
    let number = name.strip_suffix(suffix)?;
    if number.len() != digits || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 20 digits can exceed u64::MAX; such a name is not one the server writes.
    number.parse().ok()
}

fn is_year_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(s[5..].parse::<u8>(), Ok(1..=12))
}

/// Parse the catalog sequence from a catalog log key's file name (`…/{seq:020}.catalog`), in
/// whatever directory it sits.
pub fn catalog_log_seq_from_name(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    numbered(name, 20, ".catalog")
}

/// `wal/{seq:011}.wal`
pub fn wal_key(seq: u64) -> String {
    format!("wal/{seq:011}.wal")
}

/// `snapshots/{u64::MAX - seq:020}.info.json`
pub fn snapshot_key(seq: u64) -> String {
    format!("snapshots/{:020}.info.json", u64::MAX - seq)
}

/// `snapshot-checkpoints/{YYYY-MM}/{u64::MAX - seq:020}.checkpoint.json`
pub fn snapshot_checkpoint_key(year_month: &str, seq: u64) -> String {
    format!(
        "snapshot-checkpoints/{year_month}/{:020}.checkpoint.json",
        u64::MAX - seq
    )
}

/// Catalog log key of a generation, e.g. `catalog/v3/logs/{seq:020}.catalog`.
pub fn catalog_log_key(generation: CatalogGeneration, seq: u64) -> String {
    format!("{}{seq:020}.catalog", catalog_logs_dir(generation))
}

/// Catalog checkpoint key of a generation (`_catalog_checkpoint`, `catalog/v2/snapshot`, `catalog/v3/snapshot`).
pub fn catalog_checkpoint_key(generation: CatalogGeneration) -> &'static str {
    match generation {
        CatalogGeneration::V1 => "_catalog_checkpoint",
        CatalogGeneration::V2 => "catalog/v2/snapshot",
        CatalogGeneration::V3 => "catalog/v3/snapshot",
    }
}

/// The key prefix (directory) holding a generation's catalog logs (`catalogs/`, `catalog/v2/logs/`, …).
pub fn catalog_logs_dir(generation: CatalogGeneration) -> &'static str {
    match generation {
        CatalogGeneration::V1 => "catalogs/",
        CatalogGeneration::V2 => "catalog/v2/logs/",
        CatalogGeneration::V3 => "catalog/v3/logs/",
    }
}

/// Test helpers shared by this crate's unit tests: the real data directories in
/// `../shared/fixtures` (read-only).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    /// Every fixture folder the tests expect.
    pub(crate) const FIXTURES: &[&str] = &[
        "core-3.10.0-basic",
        "core-3.10.0-deleted-db",
        "core-3.10.0-retention",
        "core-3.10.0-wal-only",
        "core-3.3.0-basic",
        "core-3.3.0-deleted-db",
        "core-3.3.0-upgraded-3.9.6",
        "core-3.3.0-wal-only",
        "core-3.9.6-basic",
        "core-3.9.6-deleted-db",
        "core-3.9.6-upgraded-3.10.0",
        "core-3.9.6-wal-only",
    ];

    /// The node directory (`data/node0`) of fixture `name`.
    pub(crate) fn fixture_dir(name: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
        let dir = root.join(name).join("data/node0");
        assert!(
            dir.is_dir(),
            "fixture {name} not found at {} (the shared fixtures must sit next to the repository, \
             at ../shared/fixtures)",
            dir.display()
        );
        dir
    }

    /// Every file of a fixture: key relative to the node prefix → size.
    pub(crate) fn fixture_objects(name: &str) -> BTreeMap<String, u64> {
        let root = fixture_dir(name);
        let mut out = BTreeMap::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(path);
                } else {
                    let key = path.strip_prefix(&root).unwrap().to_str().unwrap();
                    out.insert(key.replace('\\', "/"), entry.metadata().unwrap().len());
                }
            }
        }
        out
    }

    /// The bytes of `key` in fixture `name`.
    pub(crate) fn read(name: &str, key: &str) -> Vec<u8> {
        std::fs::read(fixture_dir(name).join(key)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fixture_objects, FIXTURES};
    use super::*;
    use CatalogGeneration::*;

    #[test]
    fn classifies_every_template() {
        let cases = [
            ("wal/00000000001.wal", ObjectClass::Wal { seq: 1 }),
            ("wal/00000012345.wal", ObjectClass::Wal { seq: 12345 }),
            (
                "snapshots/18446744073709551615.info.json",
                ObjectClass::Snapshot { seq: 0 },
            ),
            (
                "snapshots/18446744073709551610.info.json",
                ObjectClass::Snapshot { seq: 5 },
            ),
            (
                "snapshot-checkpoints/2026-11/18446744073709551586.checkpoint.json",
                ObjectClass::SnapshotCheckpoint { seq: 29 },
            ),
            (
                "dbs/2/0/2026-11-25/09-02/0000000177.parquet",
                ObjectClass::Parquet,
            ),
            (
                "dbs/sensors-1/cpu-0/2026-11-25/09-02/0000000177.parquet",
                ObjectClass::Parquet,
            ),
            (
                "catalogs/00000000000000000008.catalog",
                ObjectClass::CatalogLog {
                    generation: V1,
                    seq: 8,
                },
            ),
            (
                "_catalog_checkpoint",
                ObjectClass::CatalogCheckpoint { generation: V1 },
            ),
            (
                "catalog/v2/logs/00000000000000000010.catalog",
                ObjectClass::CatalogLog {
                    generation: V2,
                    seq: 10,
                },
            ),
            (
                "catalog/v2/snapshot",
                ObjectClass::CatalogCheckpoint { generation: V2 },
            ),
            (
                "catalog/v3/logs/00000000000000000042.catalog",
                ObjectClass::CatalogLog {
                    generation: V3,
                    seq: 42,
                },
            ),
            (
                "catalog/v3/snapshot",
                ObjectClass::CatalogCheckpoint { generation: V3 },
            ),
            (
                "table-snapshots/2/0/00000000000000000001.info.json",
                ObjectClass::Derived,
            ),
            ("db-indices/1/0/index.info.json", ObjectClass::Derived),
            ("table-index-conversion-completed", ObjectClass::Derived),
        ];
        for (key, class) in cases {
            assert_eq!(classify(key), class, "{key}");
        }
    }

    #[test]
    fn malformed_names_are_unknown() {
        for key in [
            "wal/foo.wal",
            "wal/0000000001.wal",
            "wal/000000000001.wal",
            "wal/0000000000a.wal",
            "wal/00000000001.wal.tmp",
            "wal/sub/00000000001.wal",
            "wal/",
            "snapshots/1.info.json",
            "snapshots/18446744073709551615.json",
            "snapshots/99999999999999999999.info.json",
            "snapshot-checkpoints/18446744073709551586.checkpoint.json",
            "snapshot-checkpoints/2026-13/18446744073709551586.checkpoint.json",
            "snapshot-checkpoints/202611/18446744073709551586.checkpoint.json",
            "dbs/1/0/2026-11-25/09-02/0000000177.parquet.tmp",
            "dbs.parquet",
            "catalogs/8.catalog",
            "catalogs/00000000000000000008.catalog.bak",
            "catalog/v2/logs/x.catalog",
            "catalog/v2/snapshot.bak",
            "catalog/v3/logs/000000000000000000001.catalog",
            "catalog/v4/snapshot",
            "catalog/restores/abc/snapshot",
            "_catalog_checkpoint.old",
            "table-snapshots",
            "table-index-conversion-completed.bak",
            "enterprise",
            "commercial_license",
            "",
        ] {
            assert_eq!(classify(key), ObjectClass::Unknown, "{key:?}");
        }
    }

    #[test]
    fn labels_are_stable() {
        let labels: Vec<&str> = [
            ObjectClass::Parquet,
            ObjectClass::Snapshot { seq: 1 },
            ObjectClass::SnapshotCheckpoint { seq: 1 },
            ObjectClass::Wal { seq: 1 },
            ObjectClass::CatalogLog {
                generation: V3,
                seq: 1,
            },
            ObjectClass::CatalogCheckpoint { generation: V3 },
            ObjectClass::Derived,
            ObjectClass::Unknown,
        ]
        .iter()
        .map(ObjectClass::label)
        .collect();
        assert_eq!(
            labels,
            [
                "parquet",
                "snapshot",
                "snapshot-checkpoint",
                "wal",
                "catalog-log",
                "catalog-checkpoint",
                "derived",
                "unknown"
            ]
        );
    }

    #[test]
    fn immutability() {
        assert!(ObjectClass::Parquet.is_immutable());
        assert!(ObjectClass::Snapshot { seq: 1 }.is_immutable());
        assert!(ObjectClass::SnapshotCheckpoint { seq: 1 }.is_immutable());
        assert!(ObjectClass::Wal { seq: 1 }.is_immutable());
        assert!(ObjectClass::CatalogLog {
            generation: V1,
            seq: 1
        }
        .is_immutable());
        assert!(!ObjectClass::CatalogCheckpoint { generation: V3 }.is_immutable());
        assert!(!ObjectClass::Derived.is_immutable());
        assert!(!ObjectClass::Unknown.is_immutable());
    }

    #[test]
    fn phases() {
        let active = Some(V3);
        assert_eq!(ObjectClass::Parquet.phase(active), Some(Phase::Data));
        assert_eq!(ObjectClass::Unknown.phase(active), Some(Phase::Data));
        assert_eq!(
            ObjectClass::Snapshot { seq: 1 }.phase(active),
            Some(Phase::Snapshots)
        );
        assert_eq!(
            ObjectClass::SnapshotCheckpoint { seq: 1 }.phase(active),
            Some(Phase::Snapshots)
        );
        assert_eq!(ObjectClass::Wal { seq: 1 }.phase(active), Some(Phase::Wal));
        for generation in [V1, V2, V3] {
            assert_eq!(
                ObjectClass::CatalogLog { generation, seq: 1 }.phase(active),
                Some(Phase::CatalogLogs)
            );
        }
        let checkpoint = |generation| ObjectClass::CatalogCheckpoint { generation };
        assert_eq!(checkpoint(V3).phase(active), Some(Phase::CatalogCheckpoint));
        assert_eq!(checkpoint(V2).phase(active), Some(Phase::CatalogLogs));
        assert_eq!(checkpoint(V1).phase(active), Some(Phase::CatalogLogs));
        assert_eq!(checkpoint(V1).phase(None), Some(Phase::CatalogCheckpoint));
        assert_eq!(ObjectClass::Derived.phase(active), None);
        assert!(Phase::Data < Phase::Snapshots && Phase::CatalogLogs < Phase::CatalogCheckpoint);
    }

    #[test]
    fn key_builders_round_trip() {
        for seq in [0, 1, 177, 99_999_999_999] {
            assert_eq!(classify(&wal_key(seq)), ObjectClass::Wal { seq });
        }
        for seq in [0, 5, 59, u64::MAX] {
            assert_eq!(classify(&snapshot_key(seq)), ObjectClass::Snapshot { seq });
            assert_eq!(
                classify(&snapshot_checkpoint_key("2026-11", seq)),
                ObjectClass::SnapshotCheckpoint { seq }
            );
        }
        for generation in [V1, V2, V3] {
            for seq in [0, 1, 8, u64::MAX] {
                let key = catalog_log_key(generation, seq);
                assert_eq!(classify(&key), ObjectClass::CatalogLog { generation, seq });
                assert_eq!(catalog_log_seq_from_name(&key), Some(seq));
                assert!(key.starts_with(catalog_logs_dir(generation)));
            }
            assert_eq!(
                classify(catalog_checkpoint_key(generation)),
                ObjectClass::CatalogCheckpoint { generation }
            );
        }
        assert_eq!(wal_key(177), "wal/00000000177.wal");
        assert_eq!(snapshot_key(0), "snapshots/18446744073709551615.info.json");
        assert_eq!(
            catalog_log_key(V3, 9),
            "catalog/v3/logs/00000000000000000009.catalog"
        );
        assert_eq!(catalog_logs_dir(V1), "catalogs/");
    }

    /// Every file the real servers wrote is recognised; nothing is `Unknown`.
    #[test]
    fn every_fixture_file_is_recognised() {
        for fixture in FIXTURES {
            let objects = fixture_objects(fixture);
            assert!(!objects.is_empty(), "{fixture}");
            for key in objects.keys() {
                assert_ne!(classify(key), ObjectClass::Unknown, "{fixture}: {key}");
            }
        }
        let basic = fixture_objects("core-3.10.0-basic");
        let count = |label: &str| {
            basic
                .keys()
                .filter(|k| classify(k).label() == label)
                .count()
        };
        assert_eq!(count("snapshot"), 59);
        assert_eq!(count("wal"), 5);
        assert_eq!(count("catalog-log"), 9);
        assert_eq!(count("catalog-checkpoint"), 1);
        assert_eq!(count("snapshot-checkpoint"), 1);
        assert!(count("parquet") > 250);
        assert_eq!(count("derived"), 4);
    }

    #[test]
    fn compactor_and_cluster_files_are_classified() {
        let kind = |k: &str| match classify(k) {
            ObjectClass::Compaction { kind } => Some(kind),
            _ => None,
        };
        assert_eq!(
            kind("cs/00000000000000000001.json"),
            Some(CompactionKind::Summaries)
        );
        assert_eq!(kind("cd/1/2/detail.json"), Some(CompactionKind::Details));
        assert_eq!(
            kind("c/1/2/0000.parquet"),
            Some(CompactionKind::Generations)
        );
        assert_eq!(kind("c/"), None);
        assert_eq!(kind("cx/1"), None);
        assert!(!classify("cs/1").is_immutable());
        assert!(classify("c/1/2.parquet").is_immutable());
        assert!(Phase::Wal < Phase::CompactedData);
        assert!(Phase::CompactedData < Phase::CompactionDetails);
        assert!(Phase::CompactionDetails < Phase::CompactionSummaries);

        assert_eq!(
            classify_cluster("commercial_license"),
            ObjectClass::ClusterConfig
        );
        assert_eq!(
            classify_cluster("trial_or_home_license"),
            ObjectClass::ClusterConfig
        );
        assert_eq!(classify_cluster("enterprise"), ObjectClass::ClusterConfig);
        assert_eq!(
            classify_cluster("backups/nightly/manifest.json"),
            ObjectClass::BuiltinBackup
        );
        assert_eq!(classify_cluster("backups/nightly"), ObjectClass::Unknown);
        assert_eq!(
            classify_cluster("catalog/v3/logs/00000000000000000001.catalog"),
            ObjectClass::CatalogLog {
                generation: CatalogGeneration::V3,
                seq: 1
            }
        );
        assert_eq!(
            classify_cluster("wal/00000000001.wal"),
            ObjectClass::Unknown
        );
        assert_eq!(
            ObjectClass::ClusterConfig.phase(None),
            Some(Phase::ClusterConfig)
        );
    }
}
