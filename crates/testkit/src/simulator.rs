//! A stand-in for a running `influxdb3 serve --object-store file` (Core 3.10, catalog v3): it
//! mutates a node's data directory the way the server does, in the server's order, from a
//! background thread, until stopped.
//!
//! What it does (format doc §3.2), every tick of 1–5 ms (seeded, [`SimConfig`]):
//! - **WAL**: writes the next `wal/{seq:011}.wal` (`idb3.001`, big-endian CRC-32 of the payload,
//!   the payload of one of the node's own WAL files: a valid file);
//! - **snapshot** every 3–15 WAL files: writes 1–3 new Parquet files
//!   `dbs/{db}/{table}/2026-11-25/{HH-MM}/{wal_seq:010}.parquet`, **then** the snapshot file
//!   `snapshots/{u64::MAX - seq:020}.info.json` (the real JSON schema, §2.2, with the exact sizes
//!   of those files, `wal_file_sequence_number` = the last WAL file written and
//!   `catalog_sequence_number` = the current catalog sequence), **then** deletes every WAL file
//!   ≤ that number except the newest K (`--snapshotted-wal-files-to-keep`, 0–2 per run);
//! - **catalog**: now and then appends `catalog/v3/logs/{seq:020}.catalog` with the next sequence
//!   (the node's newest log with its header rewritten: sequence at 0x20, header CRC at 0x08; same
//!   catalog uuid, payload and payload CRC), and now and then rewrites `catalog/v3/snapshot` in
//!   place with the current sequence. Catalog logs come before the data that needs them: a
//!   snapshot never claims a catalog sequence that is not written yet.
//!
//! Every write is atomic like object_store's `LocalFileSystem`: the bytes go to `name#<n>` (hidden
//! from object_store listings) and are renamed into place. Each visible change (rename or delete)
//! is recorded in an event log under the same lock, so [`ServerSimulator::mark`] names an instant
//! and [`ServerSimulator::wal_files_at`] answers exactly which WAL files existed then.

use serde::Serialize;
use std::collections::BTreeSet;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The 8-byte identifier of WAL files (format doc §2.1).
const WAL_MAGIC: &[u8; 8] = b"idb3.001";
/// The magic of catalog v3 files (format doc §2.7).
const CATALOG_V3_MAGIC: &[u8; 4] = b"IDB3";
/// Length of the catalog v3 file header.
const CATALOG_V3_HEADER: usize = 64;
/// 2026-11-25T00:00:00Z in seconds: the day of the fixtures' Parquet files.
const DAY_START_SECONDS: i64 = 1_795_564_800;
/// (database id, table id) pairs that the `core-3.10.0-basic` catalog defines.
pub(crate) const TABLES: [(u32, u32); 3] = [(1, 0), (1, 1), (2, 0)];

/// How the simulated server behaves. [`SimConfig::new`] gives the server-like defaults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of the PRNG: the same seed makes the same sequence of decisions.
    pub seed: u64,
    /// Node id (the prefix directory under the data dir).
    pub node_id: String,
    /// Milliseconds between two WAL files (the server's `--wal-flush-interval`).
    pub wal_interval_ms: RangeInclusive<u64>,
    /// WAL files between two snapshots (drawn again after every snapshot).
    pub wal_files_per_snapshot: RangeInclusive<u64>,
    /// `--snapshotted-wal-files-to-keep`, drawn once per run.
    pub wal_files_to_keep: RangeInclusive<u64>,
    /// New Parquet files per snapshot.
    pub parquet_files_per_snapshot: RangeInclusive<usize>,
    /// Chance, per WAL file, of appending a catalog log.
    pub catalog_log_chance: f32,
    /// Chance, per WAL file, of rewriting the catalog checkpoint in place.
    pub catalog_checkpoint_chance: f32,
}

impl SimConfig {
    /// Server-like defaults for node `node0`: a WAL file every 1–5 ms, a snapshot every 3–15 WAL
    /// files writing 1–3 Parquet files, 0–2 snapshotted WAL files kept, a catalog log on 1 WAL
    /// file in 8 and a checkpoint rewrite on 1 in 20.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            node_id: "node0".to_string(),
            wal_interval_ms: 1..=5,
            wal_files_per_snapshot: 3..=15,
            wal_files_to_keep: 0..=2,
            parquet_files_per_snapshot: 1..=3,
            catalog_log_chance: 0.125,
            catalog_checkpoint_chance: 0.05,
        }
    }
}

/// One visible change the simulator made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `wal/{seq:011}.wal` appeared.
    WalWritten {
        /// WAL sequence number.
        seq: u64,
    },
    /// `wal/{seq:011}.wal` was deleted after a snapshot covered it.
    WalDeleted {
        /// WAL sequence number.
        seq: u64,
    },
    /// A Parquet file appeared.
    ParquetWritten {
        /// Key relative to the node prefix.
        key: String,
        /// Size in bytes.
        size: u64,
    },
    /// A snapshot file appeared.
    SnapshotWritten {
        /// Snapshot sequence number.
        seq: u64,
        /// Its `wal_file_sequence_number`.
        wal_file_sequence_number: u64,
        /// Its `catalog_sequence_number`.
        catalog_sequence_number: u64,
    },
    /// A catalog log appeared.
    CatalogLogWritten {
        /// Catalog sequence number.
        seq: u64,
    },
    /// The catalog checkpoint was rewritten with this sequence.
    CatalogCheckpointWritten {
        /// Catalog sequence number in its header.
        seq: u64,
    },
}

/// An instant in the simulator's history (the number of events before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(usize);

/// Counts of what a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// WAL files written.
    pub wal_written: u64,
    /// WAL files deleted.
    pub wal_deleted: u64,
    /// Snapshot files written.
    pub snapshots: u64,
    /// Parquet files written.
    pub parquet_files: u64,
    /// Catalog logs appended.
    pub catalog_logs: u64,
    /// Catalog checkpoint rewrites.
    pub catalog_checkpoints: u64,
    /// `--snapshotted-wal-files-to-keep` of this run.
    pub wal_files_to_keep: u64,
}

/// State at start, plus every event since, guarded by one lock that is also held while each
/// change becomes visible.
#[derive(Debug)]
struct History {
    initial_wal: BTreeSet<u64>,
    initial_snapshot: Option<u64>,
    initial_catalog_sequence: u64,
    events: Vec<Event>,
}

/// A simulated server running in a background thread. Stop it with [`ServerSimulator::stop`]
/// (dropping it also stops it).
pub struct ServerSimulator {
    node_dir: PathBuf,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    handle: Option<JoinHandle<io::Result<SimStats>>>,
}

impl std::fmt::Debug for ServerSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSimulator")
            .field("node_dir", &self.node_dir)
            .finish_non_exhaustive()
    }
}

fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerSimulator {
    /// Start mutating the node `config.node_id` under `data_dir` (a copy of a Core 3.10 fixture:
    /// catalog v3, at least one WAL file, optionally snapshot files). Reads the node's current
    /// state first (next WAL number, newest snapshot, catalog sequence and templates).
    pub fn start(data_dir: &Path, config: SimConfig) -> io::Result<Self> {
        let node_dir = data_dir.join(&config.node_id);
        let server = Server::load(&node_dir, config)?;
        let history = Arc::new(Mutex::new(History {
            initial_wal: server.wal.clone(),
            initial_snapshot: server.snapshot_seq,
            initial_catalog_sequence: server.catalog_seq,
            events: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, history) = (stop.clone(), history.clone());
            std::thread::Builder::new()
                .name("influxdb3-simulator".into())
                .spawn(move || server.run(&stop, &history))?
        };
        Ok(ServerSimulator {
            node_dir,
            stop,
            history,
            handle: Some(handle),
        })
    }

    /// The node directory being mutated.
    pub fn node_dir(&self) -> &Path {
        &self.node_dir
    }

    /// Now, as a point in the event history. Every change before it is visible on disk; none
    /// after it is.
    pub fn mark(&self) -> Mark {
        Mark(lock(&self.history).events.len())
    }

    /// The WAL sequence numbers whose files existed at `mark`.
    pub fn wal_files_at(&self, mark: Mark) -> BTreeSet<u64> {
        let history = lock(&self.history);
        let mut wal = history.initial_wal.clone();
        for event in &history.events[..mark.0] {
            match event {
                Event::WalWritten { seq } => {
                    wal.insert(*seq);
                }
                Event::WalDeleted { seq } => {
                    wal.remove(seq);
                }
                _ => {}
            }
        }
        wal
    }

    /// The newest snapshot sequence number that existed at `mark`.
    pub fn newest_snapshot_at(&self, mark: Mark) -> Option<u64> {
        let history = lock(&self.history);
        history.events[..mark.0]
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::SnapshotWritten { seq, .. } => Some(*seq),
                _ => None,
            })
            .or(history.initial_snapshot)
    }

    /// The catalog sequence (newest log or checkpoint) at `mark`.
    pub fn catalog_sequence_at(&self, mark: Mark) -> u64 {
        let history = lock(&self.history);
        history.events[..mark.0]
            .iter()
            .filter_map(|e| match e {
                Event::CatalogLogWritten { seq } | Event::CatalogCheckpointWritten { seq } => {
                    Some(*seq)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
            .max(history.initial_catalog_sequence)
    }

    /// The events between two marks.
    pub fn events_between(&self, from: Mark, to: Mark) -> Vec<Event> {
        lock(&self.history).events[from.0..to.0].to_vec()
    }

    /// Stop the simulator, wait for its thread, and return what it did (or its I/O error). The
    /// history stays available: after this, [`ServerSimulator::mark`] is the final state.
    pub fn stop(&mut self) -> io::Result<SimStats> {
        self.stop.store(true, Ordering::SeqCst);
        let Some(handle) = self.handle.take() else {
            return Err(io::Error::other("the simulator was already stopped"));
        };
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for ServerSimulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// `ParquetFile` of the snapshot JSON (format doc §2.2), in the server's field order.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ParquetFile {
    pub(crate) id: u64,
    pub(crate) path: String,
    pub(crate) size_bytes: u64,
    pub(crate) row_count: u64,
    pub(crate) chunk_time: i64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
}

/// `{"tables": [[table_id, [ParquetFile…]] …]}`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct DatabaseTables {
    pub(crate) tables: Vec<(u32, Vec<ParquetFile>)>,
}

/// `PersistedSnapshotVersion::V1` (format doc §2.2), in the server's field order.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotJson {
    pub(crate) version: &'static str,
    pub(crate) node_id: String,
    pub(crate) next_file_id: u64,
    pub(crate) snapshot_sequence_number: u64,
    pub(crate) wal_file_sequence_number: u64,
    pub(crate) catalog_sequence_number: u64,
    pub(crate) parquet_size_bytes: u64,
    pub(crate) row_count: u64,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) databases: Vec<(u32, DatabaseTables)>,
    pub(crate) removed_files: Vec<(u32, DatabaseTables)>,
}

/// The simulated server's own state (owned by its thread).
struct Server {
    node_dir: PathBuf,
    config: SimConfig,
    rng: fastrand::Rng,
    /// WAL files present.
    wal: BTreeSet<u64>,
    next_wal: u64,
    wal_payloads: Vec<Vec<u8>>,
    snapshot_seq: Option<u64>,
    next_file_id: u64,
    catalog_seq: u64,
    catalog_log_template: Vec<u8>,
    catalog_checkpoint_template: Vec<u8>,
    keep: u64,
    stats: SimStats,
    temp_counter: AtomicU64,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// File names in `dir` (sorted), without temporary `#digits` files.
fn file_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.contains('#') {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// A catalog v3 file with the sequence `seq` in its header and the header CRC recomputed
/// (format doc §2.7: sequence u64 LE at 0x20; CRC-32 LE at 0x08 over bytes 0x0C..0x40).
pub fn catalog_v3_with_sequence(template: &[u8], seq: u64) -> Vec<u8> {
    let mut bytes = template.to_vec();
    bytes[0x20..0x28].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0x0C..CATALOG_V3_HEADER]);
    bytes[0x08..0x0C].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// A WAL file: `idb3.001`, CRC-32 (IEEE) of the payload big-endian, payload (format doc §2.1).
pub fn wal_file(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + payload.len());
    bytes.extend_from_slice(WAL_MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn check_catalog_v3(key: &str, bytes: &[u8]) -> io::Result<()> {
    let valid = bytes.len() >= CATALOG_V3_HEADER
        && &bytes[..4] == CATALOG_V3_MAGIC
        && bytes[0x08..0x0C] == crc32fast::hash(&bytes[0x0C..CATALOG_V3_HEADER]).to_le_bytes();
    if valid {
        Ok(())
    } else {
        Err(invalid(format!("{key} is not a valid catalog v3 file")))
    }
}

impl Server {
    fn load(node_dir: &Path, config: SimConfig) -> io::Result<Self> {
        // WAL files present and their payloads (valid WAL content to reuse).
        let mut wal = BTreeSet::new();
        let mut wal_payloads = Vec::new();
        for name in file_names(&node_dir.join("wal"))? {
            let Some(seq) = name
                .strip_suffix(".wal")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = std::fs::read(node_dir.join("wal").join(&name))?;
            if bytes.len() >= 12 && &bytes[..8] == WAL_MAGIC {
                wal_payloads.push(bytes[12..].to_vec());
            }
            wal.insert(seq);
        }
        if wal_payloads.is_empty() {
            return Err(invalid(format!(
                "{}: no WAL file to take a payload from",
                node_dir.display()
            )));
        }
        let next_wal = wal.last().map_or(1, |s| s + 1);

        // The newest snapshot: its sequence and the next Parquet file id.
        let snapshots_dir = node_dir.join("snapshots");
        let newest = match snapshots_dir.is_dir() {
            true => file_names(&snapshots_dir)?
                .into_iter()
                .find(|n| n.ends_with(".info.json")),
            false => None,
        };
        let (snapshot_seq, next_file_id) = match newest {
            Some(name) => {
                let bytes = std::fs::read(snapshots_dir.join(&name))?;
                let json: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| invalid(format!("snapshots/{name}: {e}")))?;
                let field = |f: &str| {
                    json[f]
                        .as_u64()
                        .ok_or_else(|| invalid(format!("snapshots/{name}: no {f}")))
                };
                (
                    Some(field("snapshot_sequence_number")?),
                    field("next_file_id")?,
                )
            }
            None => (None, 0),
        };

        // Catalog v3: the newest log and the checkpoint are the templates.
        let logs_dir = node_dir.join("catalog/v3/logs");
        let logs = file_names(&logs_dir)?;
        let newest_log = logs
            .last()
            .ok_or_else(|| invalid(format!("{}: no catalog log", logs_dir.display())))?;
        let catalog_log_template = std::fs::read(logs_dir.join(newest_log))?;
        check_catalog_v3(newest_log, &catalog_log_template)?;
        let checkpoint_path = node_dir.join("catalog/v3/snapshot");
        let catalog_checkpoint_template = std::fs::read(&checkpoint_path)?;
        check_catalog_v3("catalog/v3/snapshot", &catalog_checkpoint_template)?;
        let log_seq = |name: &String| {
            name.strip_suffix(".catalog")
                .and_then(|s| s.parse::<u64>().ok())
        };
        let checkpoint_seq = u64::from_le_bytes(
            catalog_checkpoint_template[0x20..0x28]
                .try_into()
                .map_err(|_| invalid("catalog/v3/snapshot: short header".into()))?,
        );
        let catalog_seq = logs
            .iter()
            .filter_map(log_seq)
            .max()
            .unwrap_or(0)
            .max(checkpoint_seq);

        let mut rng = fastrand::Rng::with_seed(config.seed);
        let keep = rng.u64(config.wal_files_to_keep.clone());
        Ok(Server {
            node_dir: node_dir.to_path_buf(),
            rng,
            wal,
            next_wal,
            wal_payloads,
            snapshot_seq,
            next_file_id,
            catalog_seq,
            catalog_log_template,
            catalog_checkpoint_template,
            keep,
            stats: SimStats {
                wal_files_to_keep: keep,
                ..SimStats::default()
            },
            temp_counter: AtomicU64::new(0),
            config,
        })
    }

    fn run(mut self, stop: &AtomicBool, history: &Mutex<History>) -> io::Result<SimStats> {
        let mut until_snapshot = self.rng.u64(self.config.wal_files_per_snapshot.clone());
        while !stop.load(Ordering::SeqCst) {
            let pause = self.rng.u64(self.config.wal_interval_ms.clone());
            std::thread::sleep(Duration::from_millis(pause));
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if self.rng.f32() < self.config.catalog_log_chance {
                self.append_catalog_log(history)?;
            }
            self.write_wal(history)?;
            until_snapshot = until_snapshot.saturating_sub(1);
            if until_snapshot == 0 {
                self.snapshot(history)?;
                until_snapshot = self.rng.u64(self.config.wal_files_per_snapshot.clone());
            }
            if self.rng.f32() < self.config.catalog_checkpoint_chance {
                self.rewrite_catalog_checkpoint(history)?;
            }
        }
        Ok(self.stats)
    }

    /// Write `bytes` at `key` atomically (temp `key#n`, then rename), recording `event` under
    /// the history lock at the moment the file becomes visible.
    fn publish(
        &self,
        key: &str,
        bytes: &[u8],
        event: Event,
        history: &Mutex<History>,
    ) -> io::Result<()> {
        let path = self.node_dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let mut temp = path.clone().into_os_string();
        temp.push(format!("#{n}"));
        std::fs::write(&temp, bytes)?;
        let mut history = lock(history);
        std::fs::rename(&temp, &path)?;
        history.events.push(event);
        Ok(())
    }

    fn write_wal(&mut self, history: &Mutex<History>) -> io::Result<()> {
        let seq = self.next_wal;
        let payload = &self.wal_payloads[(seq as usize) % self.wal_payloads.len()];
        let bytes = wal_file(payload);
        self.publish(
            &format!("wal/{seq:011}.wal"),
            &bytes,
            Event::WalWritten { seq },
            history,
        )?;
        self.wal.insert(seq);
        self.next_wal += 1;
        self.stats.wal_written += 1;
        Ok(())
    }

    fn append_catalog_log(&mut self, history: &Mutex<History>) -> io::Result<()> {
        let seq = self.catalog_seq + 1;
        let bytes = catalog_v3_with_sequence(&self.catalog_log_template, seq);
        self.publish(
            &format!("catalog/v3/logs/{seq:020}.catalog"),
            &bytes,
            Event::CatalogLogWritten { seq },
            history,
        )?;
        self.catalog_seq = seq;
        self.stats.catalog_logs += 1;
        Ok(())
    }

    fn rewrite_catalog_checkpoint(&mut self, history: &Mutex<History>) -> io::Result<()> {
        let seq = self.catalog_seq;
        let bytes = catalog_v3_with_sequence(&self.catalog_checkpoint_template, seq);
        self.publish(
            "catalog/v3/snapshot",
            &bytes,
            Event::CatalogCheckpointWritten { seq },
            history,
        )?;
        self.stats.catalog_checkpoints += 1;
        Ok(())
    }

    /// Parquet files, then the snapshot file, then the WAL deletions (format doc §3.2).
    fn snapshot(&mut self, history: &Mutex<History>) -> io::Result<()> {
        let Some(&wal_seq) = self.wal.last() else {
            return Ok(());
        };
        let seq = self.snapshot_seq.map_or(0, |s| s + 1);
        let count = self
            .rng
            .usize(self.config.parquet_files_per_snapshot.clone())
            .min(TABLES.len());
        let mut by_table: Vec<((u32, u32), ParquetFile)> = Vec::new();
        let minute = (600 + seq as i64) % 1440;
        for &(db, table) in TABLES.iter().take(count) {
            let chunk_time = (DAY_START_SECONDS + minute * 60) * 1_000_000_000;
            let key = format!(
                "dbs/{db}/{table}/2026-11-25/{:02}-{:02}/{wal_seq:010}.parquet",
                minute / 60,
                minute % 60
            );
            let bytes = self.parquet_bytes();
            self.publish(
                &key,
                &bytes,
                Event::ParquetWritten {
                    key: key.clone(),
                    size: bytes.len() as u64,
                },
                history,
            )?;
            let min_time = chunk_time + self.rng.i64(0..30_000_000_000);
            let file = ParquetFile {
                id: self.next_file_id,
                path: format!("{}/{key}", self.config.node_id),
                size_bytes: bytes.len() as u64,
                row_count: self.rng.u64(1..=60),
                chunk_time,
                min_time,
                max_time: min_time + self.rng.i64(0..30_000_000_000),
            };
            self.next_file_id += 1;
            self.stats.parquet_files += 1;
            by_table.push(((db, table), file));
        }
        let mut databases: Vec<(u32, DatabaseTables)> = Vec::new();
        for ((db, table), file) in &by_table {
            match databases.iter_mut().find(|(id, _)| id == db) {
                Some((_, tables)) => tables.tables.push((*table, vec![file.clone()])),
                None => databases.push((
                    *db,
                    DatabaseTables {
                        tables: vec![(*table, vec![file.clone()])],
                    },
                )),
            }
        }
        let files = || by_table.iter().map(|(_, f)| f);
        let snapshot = SnapshotJson {
            version: "1",
            node_id: self.config.node_id.clone(),
            next_file_id: self.next_file_id,
            snapshot_sequence_number: seq,
            wal_file_sequence_number: wal_seq,
            catalog_sequence_number: self.catalog_seq,
            parquet_size_bytes: files().map(|f| f.size_bytes).sum(),
            row_count: files().map(|f| f.row_count).sum(),
            min_time: files().map(|f| f.min_time).min().unwrap_or(i64::MAX),
            max_time: files().map(|f| f.max_time).max().unwrap_or(i64::MIN),
            databases,
            removed_files: Vec::new(),
        };
        let json = serde_json::to_vec_pretty(&snapshot).map_err(io::Error::other)?;
        self.publish(
            &format!("snapshots/{:020}.info.json", u64::MAX - seq),
            &json,
            Event::SnapshotWritten {
                seq,
                wal_file_sequence_number: wal_seq,
                catalog_sequence_number: self.catalog_seq,
            },
            history,
        )?;
        self.snapshot_seq = Some(seq);
        self.stats.snapshots += 1;

        // Delete the snapshotted WAL files except the newest `keep`, oldest first.
        let doomed: Vec<u64> = self
            .wal
            .range(..=wal_seq.saturating_sub(self.keep))
            .copied()
            .filter(|s| *s + self.keep <= wal_seq)
            .collect();
        for seq in doomed {
            let path = self.node_dir.join(format!("wal/{seq:011}.wal"));
            let mut history = lock(history);
            std::fs::remove_file(&path)?;
            history.events.push(Event::WalDeleted { seq });
            drop(history);
            self.wal.remove(&seq);
            self.stats.wal_deleted += 1;
        }
        Ok(())
    }

    /// Bytes standing in for a Parquet file (`PAR1` … `PAR1`, random inside).
    fn parquet_bytes(&mut self) -> Vec<u8> {
        let len = self.rng.usize(200..4000);
        let mut bytes = Vec::with_capacity(len + 8);
        bytes.extend_from_slice(b"PAR1");
        bytes.extend((0..len).map(|_| self.rng.u8(..)));
        bytes.extend_from_slice(b"PAR1");
        bytes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn catalog_header_rewrite_matches_the_fixture_layout() {
        let log = crate::fixture_data_dir("core-3.10.0-basic")
            .join("node0/catalog/v3/logs/00000000000000000009.catalog");
        let bytes = std::fs::read(log).unwrap();
        check_catalog_v3("log 9", &bytes).unwrap();
        // Rewriting with the same sequence reproduces the server's bytes exactly.
        assert_eq!(catalog_v3_with_sequence(&bytes, 9), bytes);
        let next = catalog_v3_with_sequence(&bytes, 10);
        check_catalog_v3("log 10", &next).unwrap();
        assert_eq!(&next[0x20..0x28], &10u64.to_le_bytes());
        assert_eq!(&next[0x10..0x20], &bytes[0x10..0x20], "same catalog uuid");
        assert_eq!(
            &next[0x28..],
            &bytes[0x28..],
            "payload and its CRC unchanged"
        );
    }

    #[test]
    fn wal_files_match_the_fixture_layout() {
        let wal = crate::fixture_data_dir("core-3.10.0-basic").join("node0/wal/00000000180.wal");
        let bytes = std::fs::read(wal).unwrap();
        assert_eq!(wal_file(&bytes[12..]), bytes);
    }

    #[test]
    fn simulates_a_server_and_records_its_history() {
        let dir = tempfile::tempdir().unwrap();
        crate::copy_fixture("core-3.10.0-basic", dir.path());
        let mut config = SimConfig::new(7);
        config.wal_files_per_snapshot = 3..=3;
        config.wal_files_to_keep = 1..=1;
        let sim = ServerSimulator::start(dir.path(), config).unwrap();
        let start = sim.mark();
        assert_eq!(
            sim.wal_files_at(start),
            (176..=180).collect::<BTreeSet<u64>>()
        );
        assert_eq!(sim.newest_snapshot_at(start), Some(59));
        std::thread::sleep(Duration::from_millis(120));
        let mut sim = sim;
        let stats = sim.stop().unwrap();
        let end = sim.mark();
        let node = sim.node_dir().to_path_buf();
        assert!(stats.snapshots >= 2, "{stats:?}");
        // What the history says at the end is what is on disk.
        let on_disk: BTreeSet<u64> = file_names(&node.join("wal"))
            .unwrap()
            .iter()
            .map(|n| n.trim_end_matches(".wal").parse().unwrap())
            .collect();
        assert_eq!(sim.wal_files_at(end), on_disk);
        let newest = 59 + stats.snapshots;
        assert_eq!(sim.newest_snapshot_at(end), Some(newest));
        // The newest snapshot is parseable, covers the WAL it claims, and its Parquet exists.
        let name = format!("snapshots/{:020}.info.json", u64::MAX - newest);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(node.join(name)).unwrap()).unwrap();
        assert_eq!(json["snapshot_sequence_number"], newest);
        let w = json["wal_file_sequence_number"].as_u64().unwrap();
        assert!(
            on_disk.iter().all(|s| *s + 1 >= w),
            "keep 1: {on_disk:?} w {w}"
        );
        for (path, recorded) in crate::snapshot_parquet_refs(&json) {
            let key = path.strip_prefix("node0/").unwrap();
            let size = std::fs::metadata(node.join(key)).unwrap().len();
            assert_eq!(size, recorded);
        }
        assert!(json["catalog_sequence_number"].as_u64().unwrap() >= 9);
        // No temporary file is left behind.
        for entry in std::fs::read_dir(node.join("wal")).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(!name.to_string_lossy().contains('#'), "{name:?}");
        }
    }
}
