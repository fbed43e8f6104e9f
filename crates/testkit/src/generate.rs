//! A generator of realistic Core node trees at any size, for the benchmark (`crates/bench`):
//! N Parquet files with a size spread and distinct content, snapshot files that reference them
//! with the server's paths and sizes, WAL files after the newest snapshot, and the real catalog
//! (v3) of the `core-3.10.0-basic` fixture, whose databases and tables the paths use.
//!
//! Byte formats are the simulator's (checked against the fixtures): snapshot JSON in the server's
//! field order, WAL files with the `idb3.001` header and CRC. Parquet files are not real Parquet
//! (the tool never decodes them): `PAR1`, distinct pseudo-random bytes, `PAR1`.

use crate::simulator::{wal_file, DatabaseTables, ParquetFile, SnapshotJson, TABLES};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How Parquet file sizes are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeProfile {
    /// 512 B–4 KiB, log-uniform: per-file costs only (listing, manifest, memory) at millions
    /// of files on a disk that could not hold them at realistic sizes three times over.
    Tiny,
    /// 2–32 KiB, log-uniform: many small gen1 files (a busy node's common case).
    Small,
    /// 90% 4–256 KiB, 9% 256 KiB–16 MiB, 1% 16–256 MiB, log-uniform within each band.
    Realistic,
}

impl SizeProfile {
    fn draw(self, rng: &mut fastrand::Rng) -> u64 {
        let (low, high) = match self {
            SizeProfile::Tiny => (512, 4 << 10),
            SizeProfile::Small => (2 << 10, 32 << 10),
            SizeProfile::Realistic => match rng.u32(0..100) {
                0 => (16 << 20, 256 << 20),
                1..=9 => (256 << 10, 16 << 20),
                _ => (4 << 10, 256 << 10),
            },
        };
        let (low, high) = (f64::from(low as u32).ln(), (high as f64).ln());
        (low + rng.f64() * (high - low)).exp() as u64
    }
}

/// What to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeSpec {
    /// Node id.
    pub node_id: String,
    /// Parquet files.
    pub files: u64,
    /// Parquet files per snapshot file (50: 2 000 000 files make 40 000 snapshots).
    pub files_per_snapshot: u64,
    /// WAL files after the newest snapshot.
    pub wal_files: u64,
    /// Parquet sizes.
    pub sizes: SizeProfile,
    /// PRNG seed.
    pub seed: u64,
    /// Parquet files the server then hard-deletes (at least this many: the files of the oldest
    /// snapshot files, whole), recorded in one more snapshot file's `removed_files`: a node
    /// that lost files, whose old snapshot files still reference them.
    #[serde(default)]
    pub removed: u64,
}

impl TreeSpec {
    /// `files` small Parquet files on node `node0`, 50 per snapshot, 5 WAL files.
    pub fn new(files: u64) -> Self {
        TreeSpec {
            node_id: "node0".into(),
            files,
            files_per_snapshot: 50,
            wal_files: 5,
            sizes: SizeProfile::Small,
            seed: 1,
            removed: 0,
        }
    }
}

/// Where a generated tree stands, so that it can grow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeState {
    /// The spec it was made with.
    pub spec: TreeSpec,
    /// Parquet files written.
    pub files: u64,
    /// Their bytes.
    pub parquet_bytes: u64,
    /// Snapshot files written.
    pub snapshots: u64,
    /// The next WAL sequence number.
    pub next_wal: u64,
    /// WAL files present (oldest first).
    pub wal: Vec<u64>,
    /// PRNG state for the next file.
    pub rng_seed: u64,
    /// Parquet files hard-deleted ([`TreeSpec::removed`]).
    #[serde(default)]
    pub removed: u64,
}

/// The catalog sequence the fixture's v3 catalog reaches (logs 1–9).
const CATALOG_SEQUENCE: u64 = 9;

/// Write a node tree under `data_dir/<node_id>/`: the fixture catalog, then Parquet files and
/// the snapshots that reference them, then WAL files.
pub fn generate(data_dir: &Path, spec: &TreeSpec) -> io::Result<TreeState> {
    let node = data_dir.join(&spec.node_id);
    copy_catalog(&node)?;
    let mut state = TreeState {
        spec: spec.clone(),
        files: 0,
        parquet_bytes: 0,
        snapshots: 0,
        next_wal: 1,
        wal: Vec::new(),
        rng_seed: spec.seed,
        removed: 0,
    };
    let mut rng = fastrand::Rng::with_seed(state.rng_seed);
    add_snapshots(&node, &mut state, &mut rng, spec.files)?;
    if spec.removed > 0 {
        remove_oldest(&node, &mut state, spec.removed)?;
    }
    replace_wal(&node, &mut state, &mut rng)?;
    state.rng_seed = rng.u64(..);
    Ok(state)
}

/// Add `files` new Parquet files (and their snapshots) and new WAL files after the newest
/// snapshot, deleting the WAL files the snapshots cover, as a server does between two backups.
pub fn grow(data_dir: &Path, state: &mut TreeState, files: u64) -> io::Result<()> {
    let node = data_dir.join(&state.spec.node_id);
    let mut rng = fastrand::Rng::with_seed(state.rng_seed);
    add_snapshots(&node, state, &mut rng, files)?;
    replace_wal(&node, state, &mut rng)?;
    state.rng_seed = rng.u64(..);
    Ok(())
}

/// `files` new Parquet files, and the snapshot files that reference them.
fn add_snapshots(
    node: &Path,
    state: &mut TreeState,
    rng: &mut fastrand::Rng,
    mut files: u64,
) -> io::Result<()> {
    let per_snapshot = state.spec.files_per_snapshot.max(1);
    while files > 0 {
        let batch = files.min(per_snapshot);
        write_snapshot(node, state, rng, batch)?;
        files -= batch;
    }
    Ok(())
}

/// Delete the Parquet files of the oldest snapshot files not yet cleared, whole snapshots at a
/// time until at least `files` are gone, and write the snapshot file that records them in
/// `removed_files`, as the server does for a hard delete.
fn remove_oldest(node: &Path, state: &mut TreeState, files: u64) -> io::Result<()> {
    #[derive(serde::Deserialize)]
    struct References {
        databases: Vec<(u32, DatabaseTables)>,
    }
    let mut removed: std::collections::BTreeMap<u32, std::collections::BTreeMap<u32, Vec<_>>> =
        Default::default();
    let mut count = 0;
    let mut seq = 0;
    while count < files && seq < state.snapshots {
        let name = format!("snapshots/{:020}.info.json", u64::MAX - seq);
        let refs: References = serde_json::from_slice(&std::fs::read(node.join(name))?)?;
        for (db, tables) in refs.databases {
            for (table, list) in tables.tables {
                for file in list {
                    let key = file.path.split_once('/').map_or("", |(_, key)| key);
                    if node.join(key).exists() {
                        remove(&node.join(key))?;
                        count += 1;
                        removed
                            .entry(db)
                            .or_default()
                            .entry(table)
                            .or_default()
                            .push(file);
                    }
                }
            }
        }
        seq += 1;
    }
    let removed_files = removed
        .into_iter()
        .map(|(db, tables)| {
            let tables = tables.into_iter().collect();
            (db, DatabaseTables { tables })
        })
        .collect();
    publish_snapshot(node, state, Vec::new(), removed_files, (0, 0))?;
    state.removed += count;
    Ok(())
}

/// New WAL files after the newest snapshot; those it covers are gone.
fn replace_wal(node: &Path, state: &mut TreeState, rng: &mut fastrand::Rng) -> io::Result<()> {
    for seq in std::mem::take(&mut state.wal) {
        remove(&node.join(format!("wal/{seq:011}.wal")))?;
    }
    for _ in 0..state.spec.wal_files {
        let seq = state.next_wal;
        let mut payload = vec![0u8; 512 + rng.usize(0..4096)];
        rng.fill(&mut payload);
        write(
            &node.join(format!("wal/{seq:011}.wal")),
            &wal_file(&payload),
        )?;
        state.wal.push(seq);
        state.next_wal += 1;
    }
    Ok(())
}

/// `count` Parquet files, then the snapshot file that references them (the server's order).
fn write_snapshot(
    node: &Path,
    state: &mut TreeState,
    rng: &mut fastrand::Rng,
    count: u64,
) -> io::Result<()> {
    let mut databases: Vec<(u32, DatabaseTables)> = Vec::new();
    let mut total = (0u64, 0u64);
    for _ in 0..count {
        let id = state.files;
        let (db, table) = TABLES[(id % TABLES.len() as u64) as usize];
        let minute = (id / TABLES.len() as u64) % 1440;
        let day = 1 + (id / (TABLES.len() as u64 * 1440)) % 28;
        let key = format!(
            "dbs/{db}/{table}/2026-10-{day:02}/{:02}-{:02}/{id:010}.parquet",
            minute / 60,
            minute % 60
        );
        let size = state.spec.sizes.draw(rng).max(16);
        write_parquet(&node.join(&key), id, size, rng)?;
        let chunk_time = 1_790_000_000_000_000_000 + (id as i64) * 60_000_000_000;
        let file = ParquetFile {
            id,
            path: format!("{}/{key}", state.spec.node_id),
            size_bytes: size,
            row_count: 100,
            chunk_time,
            min_time: chunk_time,
            max_time: chunk_time + 59_000_000_000,
        };
        total = (total.0 + size, total.1 + 100);
        match databases.iter_mut().find(|(d, _)| *d == db) {
            Some((_, tables)) => match tables.tables.iter_mut().find(|(t, _)| *t == table) {
                Some((_, list)) => list.push(file),
                None => tables.tables.push((table, vec![file])),
            },
            None => databases.push((
                db,
                DatabaseTables {
                    tables: vec![(table, vec![file])],
                },
            )),
        }
        state.files += 1;
        state.parquet_bytes += size;
    }
    publish_snapshot(node, state, databases, Vec::new(), total)
}

/// Write the next snapshot file: it references `databases` (`total`: their bytes and rows) and
/// records `removed_files`, and covers two more WAL files.
fn publish_snapshot(
    node: &Path,
    state: &mut TreeState,
    databases: Vec<(u32, DatabaseTables)>,
    removed_files: Vec<(u32, DatabaseTables)>,
    total: (u64, u64),
) -> io::Result<()> {
    let seq = state.snapshots;
    let wal_seq = state.next_wal + 1;
    state.next_wal += 2;
    let snapshot = SnapshotJson {
        version: "1",
        node_id: state.spec.node_id.clone(),
        next_file_id: state.files,
        snapshot_sequence_number: seq,
        wal_file_sequence_number: wal_seq,
        catalog_sequence_number: CATALOG_SEQUENCE,
        parquet_size_bytes: total.0,
        row_count: total.1,
        min_time: 1_790_000_000_000_000_000,
        max_time: 1_790_000_000_000_000_000 + (state.files as i64) * 60_000_000_000,
        databases,
        removed_files,
    };
    let json = serde_json::to_vec_pretty(&snapshot).map_err(io::Error::other)?;
    let name = format!("snapshots/{:020}.info.json", u64::MAX - seq);
    write(&node.join(name), &json)?;
    state.snapshots += 1;
    Ok(())
}

/// `PAR1`, the file id, pseudo-random bytes, `PAR1`: `size` bytes, distinct per file.
fn write_parquet(path: &Path, id: u64, size: u64, rng: &mut fastrand::Rng) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut head = b"PAR1".to_vec();
    head.extend_from_slice(&id.to_le_bytes());
    let body = size.saturating_sub(head.len() as u64 + 4);
    file.write_all(&head[..head.len().min(size as usize)])?;
    let mut chunk = vec![0u8; 64 << 10];
    let mut left = body;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        rng.fill(&mut chunk[..n]);
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    if size >= head.len() as u64 + 4 {
        file.write_all(b"PAR1")?;
    }
    file.flush()
}

/// The v3 catalog of `core-3.10.0-basic` (defines the databases and tables of [`TABLES`]).
fn copy_catalog(node: &Path) -> io::Result<()> {
    let from = crate::fixture_data_dir("core-3.10.0-basic").join("node0/catalog");
    copy_dir(&from, &node.join("catalog"))
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::write(&target, std::fs::read(entry.path())?)?;
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated tree is a node the tool's parsers accept: snapshots reference every Parquet
    /// file with its size, WAL files follow the newest snapshot; growing adds a snapshot.
    #[test]
    fn generated_trees_are_consistent_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = generate(dir.path(), &TreeSpec::new(120)).expect("generate");
        assert_eq!((state.files, state.snapshots), (120, 3));
        let node = dir.path().join("node0");
        let newest = node.join(format!("snapshots/{:020}.info.json", u64::MAX - 2));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&newest).expect("snapshot")).expect("json");
        assert_eq!(json["wal_file_sequence_number"], 6);
        let first = &json["databases"][0][1]["tables"][0][1][0];
        let path = dir.path().join(first["path"].as_str().expect("path"));
        assert_eq!(
            std::fs::metadata(&path).expect("parquet").len(),
            first["size_bytes"].as_u64().expect("size")
        );
        assert!(node.join("wal/00000000007.wal").exists());
        grow(dir.path(), &mut state, 10).expect("grow");
        assert_eq!((state.files, state.snapshots), (130, 4));
        assert!(!node.join("wal/00000000007.wal").exists());
        assert!(node.join("wal/00000000014.wal").exists());
    }

    /// Removals delete the oldest snapshot files' Parquet files, whole, and one more snapshot
    /// file records them; the WAL follows it.
    #[test]
    fn removals_are_recorded_in_a_snapshot_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = TreeSpec {
            removed: 60,
            ..TreeSpec::new(120)
        };
        let state = generate(dir.path(), &spec).expect("generate");
        assert_eq!((state.files, state.snapshots, state.removed), (120, 4, 100));
        let node = dir.path().join("node0");
        let removal = node.join(format!("snapshots/{:020}.info.json", u64::MAX - 3));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&removal).expect("snapshot")).expect("json");
        let recorded = crate::snapshot_parquet_refs(&serde_json::json!({
            "databases": json["removed_files"].clone()
        }));
        assert_eq!(recorded.len(), 100);
        assert!(recorded
            .iter()
            .all(|(path, _)| !dir.path().join(path).exists()));
        assert_eq!(json["wal_file_sequence_number"], 8);
        assert!(node.join("wal/00000000009.wal").exists());
    }
}
