//! `create`: capture a consistent cut of a node into the repository and commit its manifest.
//!
//! Incremental by construction: an immutable source object that the newest backup of the same
//! node already holds under the same key and size (its blob still present) is recorded again
//! without reading the source; new content is named by its hash, so identical bytes are stored
//! once. Mutable objects (the catalog checkpoint) are always read again.

use super::by_path::{EntriesByPath, PreviousEntries, ReuseCursor, Run};
use super::codecs;
use super::record::{
    set_written_until, written_after, written_until, BackupSource, SourceRecord, PRODUCT,
};
use super::{now_rfc3339, tool_version};
use crate::exit::{Failure, NOT_A_NODE};
use crate::progress::Bar;
use crate::stores::{discover_nodes, NodeStore};
use anyhow::{Context, Result};
use bytes::Bytes;
use ib3_influx::assess::Reader;
use ib3_influx::cut::{
    take_consistent_cut, Capture, Captured, CutOptions, CutReport, SourceObject,
};
use ib3_influx::path::{ObjectClass, Phase};
use ib3_influx::rules::{Finding, Severity};
use ib3_influx::snapshot::SnapshotHeader;
use ib3_repo::chunks::UnchangedChunks;
use ib3_repo::lock::LockKind;
use ib3_repo::manifest::{PackSlice, Summary};
use ib3_repo::{
    layout, BackupId, BlobId, BlobIndex, Encoding, Entry, EntryChunk, Manifest, Repository,
};
use ib3_transfer::listing::ListingHints;
use ib3_transfer::local::{LocalCopied, LocalCopy, SmallFile};
use ib3_transfer::{
    copy_content_addressed, put_content_addressed, read_hashed, CasCopy, CopyOptions,
};
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

mod plan;
mod store_packs;

pub use plan::{plan, CreatePlan};

/// Objects, each with its position in a phase's list.
type Numbered = Vec<(usize, SourceObject)>;

/// Results of files copied on plain threads, a few at a time, each with the file's position in
/// its list.
type Copied = UnboundedReceiver<Vec<(usize, Result<LocalCopied, ib3_transfer::Error>)>>;

/// A blob this run stored or found stored: the plaintext's size and id, how it is stored, and
/// where, if in a pack.
struct StoredBlob {
    size: u64,
    blob: BlobId,
    encoding: Encoding,
    pack: Option<PackSlice>,
}

/// What `create` backs up.
pub enum CreateSource {
    /// One node (Core, or one Enterprise node whose catalog is captured with it).
    Node(NodeStore),
    /// An Enterprise cluster: its catalog, cluster files and member nodes.
    Cluster(super::create_cluster::ClusterSource),
}

/// `--rescan-after`'s default: list a node's Parquet tree once a day.
pub const DEFAULT_RESCAN_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Options of `create`, resolved.
pub struct CreateOptions {
    /// What to back up.
    pub source: CreateSource,
    /// The repository store and its location text.
    pub repo: (Arc<dyn ObjectStore>, String),
    /// Objects in flight.
    pub concurrency: usize,
    /// Re-plans allowed.
    pub max_replans: u32,
    /// Write a backup that breaks rules.
    pub allow_inconsistent: bool,
    /// Read every snapshot file again: settle none (DESIGN §4.3), so that no kept header is
    /// taken over.
    pub reread_snapshots: bool,
    /// How old the last listing of a node's Parquet tree may be for this run to follow the
    /// snapshot files from the previous backup instead of listing it again (DESIGN §4.6).
    pub rescan_after: std::time::Duration,
    /// zstd level for compressible objects (`None`: store everything as is).
    pub compression: Option<i32>,
    /// Key of an encrypted repository.
    pub keys: ib3_repo::keys::KeySource,
    /// Progress bar.
    pub bar: Bar,
    /// The data dir and repository directory when both are local: small files are then copied
    /// by plain threads instead of through the stores (see `ib3_transfer::local`). `None`: every
    /// byte goes through the stores given above.
    pub local: Option<LocalDirs>,
}

impl CreateOptions {
    /// A backup of `source` into `repo` with the command line's defaults: 16 objects in flight,
    /// 10 re-plans, zstd level 3, `--rescan-after` 24 h, an unencrypted repository, no progress
    /// bar, every byte through the stores.
    pub fn new(source: CreateSource, repo: (Arc<dyn ObjectStore>, String)) -> Self {
        CreateOptions {
            source,
            repo,
            concurrency: 16,
            max_replans: 10,
            allow_inconsistent: false,
            reread_snapshots: false,
            rescan_after: DEFAULT_RESCAN_AFTER,
            compression: Some(3),
            keys: ib3_repo::keys::KeySource::default(),
            bar: Bar::new(false),
            local: None,
        }
    }
}

/// A local data dir and a local repository directory.
#[derive(Debug, Clone)]
pub struct LocalDirs {
    /// The data dir (the source store's root).
    pub data_dir: PathBuf,
    /// The repository directory.
    pub repo_dir: PathBuf,
}

/// What `create` did.
#[derive(Debug, Serialize)]
pub struct CreateReport {
    /// Id of the new backup.
    pub backup_id: String,
    /// Repository location.
    pub repository: String,
    /// Whether this run initialised the repository.
    pub repository_created: bool,
    /// The record stored in the manifest (node or cluster, layout, consistent points, findings).
    pub source: serde_json::Value,
    /// Whether every consistency rule held.
    pub consistent: bool,
    /// Objects in the backup.
    pub entries: u64,
    /// Bytes in the backup.
    pub bytes: u64,
    /// Bytes read from the source by this run.
    pub bytes_read: u64,
    /// Bytes actually uploaded (new content).
    pub bytes_uploaded: u64,
    /// New blobs uploaded.
    pub blobs_uploaded: u64,
    /// Bytes those new blobs take in the repository (after compression).
    pub bytes_stored: u64,
    /// `bytes_uploaded / bytes_stored` (1.0 when nothing was uploaded).
    pub compression_ratio: f64,
    /// Entries taken over from the previous backup without reading the source.
    pub entries_reused: u64,
    /// Entry chunks of the manifest (DESIGN.md §3.6).
    pub entry_chunks: u64,
    /// Entry chunks this run stored as new blobs (its manifest's and its progress records'):
    /// the unchanged ones are the previous backup's.
    pub entry_chunks_written: u64,
    /// Re-plans needed.
    pub replans: u32,
    /// Wall time.
    pub duration_seconds: f64,
}

#[derive(Default)]
struct Stats {
    bytes_read: AtomicU64,
    bytes_uploaded: AtomicU64,
    blobs_uploaded: AtomicU64,
    bytes_stored: AtomicU64,
    reused: AtomicU64,
    chunks_written: AtomicU64,
}

/// The [`Capture`] that stores source objects as repository blobs. Keys it is given are relative
/// to `source`; entries are recorded under `prefix` + key (empty for a node backup, the member's
/// prefix for a cluster backup, whose entries are keyed from the store root).
pub(super) struct RepoCapture {
    pub(super) source: Arc<dyn ObjectStore>,
    pub(super) prefix: String,
    repo: Repository,
    /// The blobs this run may take as stored ([`known_blobs`]).
    index: Arc<Mutex<BlobIndex>>,
    /// Whether `index` still lacks blobs of `previous`. An incremental that takes its known blobs
    /// from the previous backup tables them all (at 2 000 000 entries a quarter of a second)
    /// only when it has many objects to store; for a few (a no-change run's catalog and WAL) it
    /// adds the blobs their paths had ([`RepoCapture::known_blobs_ready`]).
    index_pending: bool,
    /// Whether `index` holds, or is to hold, the blobs of every previous entry: an entry is then
    /// reused without asking it.
    index_of_previous: bool,
    previous: PreviousEntries,
    /// Hints for the listing of a local node, from `previous` ([`listing_hints`]).
    hints: Option<ListingHints>,
    /// The previous backup's Parquet tree, for the cut to follow the snapshots from instead of
    /// listing it ([`Capture::earlier_parquet`], [`follows_snapshots`]).
    earlier_parquet: Option<EarlierParquet>,
    /// The prefixes (a node's `""`, a cluster member's `<id>/`) under which `previous` holds
    /// snapshot files whose references were all captured as recorded or found absent, with
    /// what was found absent ([`Previous::settled`]).
    settled: Settled,
    /// Which new entries are the previous backup's unchanged, for its chunks to be referenced
    /// again as they are ([`RepoCapture::entries_of`]); `None` where positions do not carry over.
    unchanged: Option<UnchangedChunks>,
    entries: Mutex<EntriesByPath>,
    cache: Mutex<KeptReads>,
    wal_findings: Mutex<Vec<Finding>>,
    stats: Stats,
    concurrency: usize,
    /// `concurrency`, shared by the objects stored alone and the small ones read for packs
    /// (packs are written a few at a time beside them: `store_packs::PACKS_IN_FLIGHT`).
    in_flight: ib3_transfer::InFlight,
    /// Turns of the objects that stream in parts ([`RepoCapture::capture_streamed`]), so that
    /// their parts stay within `--concurrency` too (12 parts of 8 MiB at `--concurrency 4`, and
    /// 64 at the default 16, before).
    streams: ib3_transfer::StreamTurns,
    copy: CopyOptions,
    compression: Option<i32>,
    bar: Bar,
    progress_record: ProgressRecord,
    /// Set when source and repository are local directories.
    local: Option<LocalCapture>,
    /// The latest time the store says an object this run was given was written, starting from
    /// the time the previous runs' entries were written until ([`Previous::written_until`])
    /// (`source.newest_modified`, [`crate::ops::record::set_written_until`]).
    newest_modified: Option<SystemTime>,
}

/// The directories of a local-to-local capture: the data dir, and the directory of the current
/// source prefix within it.
struct LocalCapture {
    dirs: LocalDirs,
    source_dir: PathBuf,
}

/// Least time between two periodic progress records.
const RECORD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Least time since the run began, or since its last record, for the end of a phase to record
/// progress. A record costs a flush of the repository's file system, which waits for every blob
/// written so far; a run of a few seconds (an incremental) would flush once per phase to save at
/// most a few seconds of work after a crash. A run that fails records what it stored whenever
/// it fails.
const PHASE_END_RECORD_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// When a progress record is considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordWhen {
    /// Between chunks of a phase: every [`RECORD_INTERVAL`] (or longer, when a record is slow).
    Periodic,
    /// At the end of a phase: after [`PHASE_END_RECORD_AFTER`].
    PhaseEnd,
    /// The run is failing: always (a re-run resumes from it).
    Failed,
}

/// Partial-progress records of this run (see [`Repository::write_partial`]), written only when
/// the run stored new blobs since the last one: when [`RecordWhen`] says so.
struct ProgressRecord {
    id: BackupId,
    source: serde_json::Value,
    dirty: std::sync::atomic::AtomicBool,
    last: Mutex<Instant>,
    /// Time between periodic records: [`RECORD_INTERVAL`], or more when a record is slow.
    interval: Mutex<std::time::Duration>,
    /// Entry chunks known stored: the previous backup's, and those this run's records wrote.
    chunks: Mutex<HashSet<BlobId>>,
}

/// Whether a capture hands an object's bytes to [`RepoCapture::inspect_read`]: WAL files (checked)
/// and state files or files changed in place (parsed by the cut).
fn keeps_bytes(class: &ObjectClass) -> bool {
    class.is_state_file() || !class.is_immutable() || matches!(class, ObjectClass::Wal { .. })
}

/// The entry path of `key` under `prefix` (empty, or ending in `/`).
fn full_path<'k>(prefix: &str, key: &'k str) -> std::borrow::Cow<'k, str> {
    // A node backup's entry paths are its keys: no copy per object.
    if prefix.is_empty() {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(format!("{prefix}{key}"))
    }
}

/// The positions of `items` for which a test is false, in order: tested in parts of at least
/// `per_thread` items, one thread per core, each part by a test of its own that `tester` makes
/// (it may keep state from one item to the next).
fn positions_where_not<T: Sync, F: FnMut(&T) -> bool>(
    items: &[T],
    per_thread: usize,
    tester: impl Fn() -> F + Sync,
) -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = cores.min(items.len() / per_thread.max(1)).max(1);
    let part = items.len().div_ceil(threads).max(1);
    let parts: Vec<(usize, &[T])> = items
        .chunks(part)
        .enumerate()
        .map(|(n, chunk)| (n * part, chunk))
        .collect();
    ib3_transfer::local::run_parallel(&parts, threads, |&(start, chunk)| {
        let mut test = tester();
        (0..chunk.len())
            .filter(|&i| !test(&chunk[i]))
            .map(|i| start + i)
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked; the data is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RepoCapture {
    /// The entry path of a key relative to the current source.
    fn full<'k>(&self, key: &'k str) -> std::borrow::Cow<'k, str> {
        full_path(&self.prefix, key)
    }

    /// Free what only the capture needed (the previous backup's entries by path, this run's
    /// entries by path, bytes kept for the cut) before the manifest is built: at millions of
    /// objects each is hundreds of megabytes.
    fn release_lookups(&mut self) {
        drop_in_background((
            std::mem::take(&mut self.previous),
            std::mem::take(&mut *lock(&self.entries)),
        ));
        *lock(&self.cache) = KeptReads::default();
    }

    /// Point the capture at another prefix of the store root (cluster members).
    pub(super) fn switch_to(&mut self, source: Arc<dyn ObjectStore>, prefix: &str) {
        // Before the first member's entries are taken out of `previous` (the next member may
        // store what an earlier one reused).
        self.add_pending_blobs();
        self.source = source;
        self.prefix = format!("{prefix}/");
        if let Some(local) = &mut self.local {
            local.source_dir = local.dirs.data_dir.join(prefix);
        }
    }

    /// Whether the entry recorded by the previous backup can stand for this object unread (its
    /// blob in `index`); if so, it is marked reused there (found through `cursor`), which
    /// captures the object (no copy of the entry is made: the lookups below fall back to reused
    /// previous entries).
    fn reuse(&self, object: &SourceObject, index: &BlobIndex, cursor: &mut ReuseCursor) -> bool {
        if !object.class.is_immutable() {
            return false;
        }
        cursor.reuse_if(
            self.full(&object.key).as_ref(),
            object.modified,
            |previous| {
                previous.size == object.size && (self.index_of_previous || index.holds(previous))
            },
        )
    }

    /// Make the index of known blobs ready to store `objects` ([`RepoCapture::index_pending`]):
    /// for a few, the blobs the previous backup had at their paths (content they share with
    /// another path is stored again); for more, every previous entry's. Once entries were taken
    /// out (they lose their pack slices), a listing of the repository stands for them.
    async fn known_blobs_ready(&mut self, objects: &[(usize, &SourceObject)]) -> Result<()> {
        if !self.index_pending {
            return Ok(());
        }
        if self.previous.untaken().is_none() {
            let listed = self.repo.blob_index().await?;
            *lock(&self.index) = listed;
            self.index_pending = false;
        } else if objects.len() <= FEW_TO_STORE {
            let mut index = lock(&self.index);
            for (_, object) in objects {
                if let Some(entry) = self.previous.get(self.full(&object.key).as_ref()) {
                    index.insert_entry(entry, entry.size);
                }
            }
        } else {
            self.add_pending_blobs();
        }
        Ok(())
    }

    /// Add every previous entry's blob to the index if it lacks them and none is taken yet.
    fn add_pending_blobs(&mut self) {
        let Some(entries) = self.previous.untaken().filter(|_| self.index_pending) else {
            return;
        };
        let mut index = lock(&self.index);
        // Sized up front: growing rehashes every blob so far into fresh memory.
        let packed = entries.iter().filter(|e| e.pack.is_some()).count();
        index.reserve(entries.len() - packed, packed);
        for entry in entries {
            index.insert_entry(entry, entry.size);
        }
        drop(index);
        self.index_pending = false;
    }

    /// The positions of `objects` that the previous backup's entries cannot stand for
    /// ([`RepoCapture::reuse`]). In parts, on one thread per core (500 000 objects: 0.28 s ->
    /// 0.21 s on two), each walking the previous entries beside its objects (a listing comes in
    /// key order).
    fn not_reusable(&self, objects: &[SourceObject]) -> Vec<usize> {
        let index = lock(&self.index);
        let index = &*index;
        positions_where_not(objects, 50_000, || {
            let mut cursor = self.previous.reuse_cursor();
            move |object: &SourceObject| self.reuse(object, index, &mut cursor)
        })
    }

    /// The entry this run captured at `path`: copied, or reused from the previous backup.
    fn captured(&self, path: &str) -> Option<Entry> {
        let fresh = lock(&self.entries).get(path).cloned();
        fresh.or_else(|| self.previous.get_reused(path).cloned())
    }

    /// Capture `objects` (each with its index in `outcomes`), recording each entry as soon as
    /// its blob is stored. Plainly named local files are copied on a few plain threads that live
    /// for the whole call; the rest go through the stores, `concurrency` at a time. Nothing waits
    /// for a batch's slowest object (in batches of 256, a full backup of 100 000 small files
    /// took 5–15% longer). After the first error nothing new is begun, what was begun finishes
    /// (and is recorded, for a resumed run), and the error is returned.
    async fn capture_all(
        &self,
        objects: &[(usize, &SourceObject)],
        outcomes: &mut [Captured],
    ) -> Result<()> {
        use futures::StreamExt;
        let stop = Arc::new(AtomicBool::new(false));
        // Room for every entry at once: grown as they arrive, the set held its old and new
        // tables together at each doubling (a third of its peak).
        lock(&self.entries).reserve(objects.len());
        let (direct, through_stores) = self.split_direct(objects);
        let (copying, mut copied) = self.copy_locally(&direct, stop.clone());
        let copied = futures::stream::poll_fn(move |cx| copied.poll_recv(cx))
            .flat_map(futures::stream::iter)
            .map(|(j, result)| {
                let (i, object) = &direct[j];
                (*i, self.entry_of_local(object, result))
            });
        let not_stopped =
            |_: &(usize, SourceObject)| futures::future::ready(!stop.load(Ordering::Relaxed));
        // Small objects go into packs, the others alone: `concurrency` objects at a time in all.
        let (packable, alone) = self.split_packable(through_stores);
        let packed = Box::pin(self.capture_packed(packable, &stop));
        let streamed =
            futures::stream::iter(alone)
                .take_while(not_stopped)
                .map(|(i, object)| async move {
                    (i, self.in_flight.run(self.capture_one(object)).await)
                })
                .buffer_unordered(self.concurrency.max(1));
        let streamed = futures::stream::select(streamed, packed);
        let mut results = futures::stream::select(copied, streamed);
        let (mut received, mut failure) = (0, None);
        while let Some((i, result)) = results.next().await {
            received += 1;
            match result {
                Ok(Some(entry)) => lock(&self.entries).insert(entry),
                Ok(None) => outcomes[i] = Captured::Vanished,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    failure.get_or_insert(e);
                }
            }
            if failure.is_none() {
                self.record_progress(RecordWhen::Periodic).await;
            }
        }
        drop(results);
        let joined = match copying {
            Some(copying) => copying.await.context("local copy thread failed"),
            None => Ok(()),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        joined?;
        if received != objects.len() {
            anyhow::bail!(
                "internal error: {received} of {} objects captured",
                objects.len()
            );
        }
        Ok(())
    }

    /// `objects` split into those copied file to file ([`Self::copies_locally`]) and the rest,
    /// which alone are copied (they go to tasks of their own): at 2 000 000 files a copy of
    /// every object held a few hundred megabytes for the whole capture.
    fn split_direct<'o>(
        &self,
        objects: &[(usize, &'o SourceObject)],
    ) -> (Vec<(usize, &'o SourceObject)>, Numbered) {
        if self.local.is_none() {
            return (
                Vec::new(),
                objects.iter().map(|(i, o)| (*i, (*o).clone())).collect(),
            );
        }
        let (direct, other): (Vec<_>, Vec<_>) = objects
            .iter()
            .copied()
            .partition(|(_, object)| self.copies_locally(object));
        (
            direct,
            other.into_iter().map(|(i, o)| (i, o.clone())).collect(),
        )
    }

    /// Whether `object` takes the local path (plainly named; small, or large and stored as is
    /// without being parsed).
    fn copies_locally(&self, object: &SourceObject) -> bool {
        let small = object.size <= self.copy.small_object_threshold;
        let raw = self.encode_for(&object.class).is_identity() && !keeps_bytes(&object.class);
        (small || raw) && ib3_transfer::local::is_plain_key(&object.key)
    }

    /// Start copying `objects` from the local source directory into the local repository on
    /// plain threads (one hand-off for all of them); results arrive on the channel a few at a
    /// time, each with the object's position in `objects`. The threads take no more files once `stop` is set, which
    /// they do themselves when the receiver is gone.
    fn copy_locally(
        &self,
        objects: &[(usize, &SourceObject)],
        stop: Arc<AtomicBool>,
    ) -> (Option<JoinHandle<()>>, Copied) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let Some(local) = self.local.as_ref().filter(|_| !objects.is_empty()) else {
            return (None, receiver);
        };
        let files: Vec<SmallFile> = objects
            .iter()
            .map(|(_, o)| SmallFile {
                key: o.key.clone(),
                expected: o.class.is_immutable().then_some(o.size),
                encode: self.encode_for(&o.class),
                keep_bytes: keeps_bytes(&o.class),
            })
            .collect();
        let source = local.source_dir.clone();
        let repo_dir = local.dirs.repo_dir.clone();
        let encrypted = self.repo.keys().is_some();
        let index = self.index.clone();
        let bar = self.bar.clone();
        let threads = self.concurrency.min(ib3_transfer::local::MAX_THREADS);
        let copying = tokio::task::spawn_blocking(move || {
            let pack_name = |h: &blake3::Hash| layout::pack_key(&BlobId::from(*h));
            let copy = LocalCopy {
                source: &source,
                destination: &repo_dir,
                staging_key: &layout::staging_key,
                name_for: &|h, compressed| codecs::blob_key(h, compressed, encrypted),
                is_known: &|h| lock(&index).contains(&BlobId::from(*h)),
                progress: &bar,
                // Encrypted blobs stay files of their own (each is one age file, DESIGN §3.4a).
                pack_name: (!encrypted).then_some(&pack_name),
            };
            copy.run_each(&files, threads, &stop, |results| {
                if sender.send(results).is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        });
        (Some(copying), receiver)
    }

    /// The entry of a file [`Self::copy_locally`] copied (or its error, or `None` if it vanished).
    fn entry_of_local(
        &self,
        object: &SourceObject,
        result: Result<LocalCopied, ib3_transfer::Error>,
    ) -> Result<Option<Entry>> {
        let stored = result.map(|copied| {
            if let Some(bytes) = copied.bytes {
                self.inspect_read(object, bytes);
            }
            let packed = copied.packed.as_ref().map(codecs::pack_slice);
            self.record(copied.copy, packed)
        });
        self.entry_of(object, stored)
    }

    /// What a read of a whole object feeds: WAL files are checked, state files are kept for the
    /// cut to parse.
    fn inspect_read(&self, object: &SourceObject, bytes: Bytes) {
        if let ObjectClass::Wal { .. } = object.class {
            if let Err(e) = ib3_influx::wal::check_wal(&object.key, &bytes) {
                lock(&self.wal_findings).push(Finding {
                    severity: Severity::Warning,
                    code: "corrupt-file".into(),
                    object: Some(self.full(&object.key).into_owned()),
                    message: format!(
                        "{e} (backed up as is; the server skips such a file on replay)"
                    ),
                });
            }
        } else {
            lock(&self.cache).keep(self.full(&object.key).into_owned(), bytes);
        }
    }

    async fn capture_one(&self, object: SourceObject) -> Result<Option<Entry>> {
        let key = Path::from(object.key.as_str());
        let expected = object.class.is_immutable().then_some(object.size);
        // Large WAL files stream (unchecked); every other kept object is read whole.
        let large_wal = matches!(object.class, ObjectClass::Wal { .. })
            && object.size > self.copy.small_object_threshold;
        let copied = if keeps_bytes(&object.class) && !large_wal {
            self.capture_whole(&object, &key, expected).await
        } else {
            self.capture_streamed(&object, &key).await
        };
        self.entry_of(&object, copied)
    }

    /// The entry of a captured object (`None`: it vanished from the source).
    fn entry_of(
        &self,
        object: &SourceObject,
        copied: Result<StoredBlob, ib3_transfer::Error>,
    ) -> Result<Option<Entry>> {
        let StoredBlob {
            size,
            blob,
            encoding,
            pack,
        } = match copied {
            Ok(done) => done,
            Err(ib3_transfer::Error::Vanished { .. }) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("backing up {}", object.key)),
        };
        self.stats.bytes_read.fetch_add(size, Ordering::Relaxed);
        Ok(Some(Entry {
            path: self.full(&object.key).into_owned(),
            size,
            blob,
            encoding,
            class: object.class.label().to_string(),
            pack: pack.map(Box::new),
            facts: None,
        }))
    }

    async fn capture_whole(
        &self,
        object: &SourceObject,
        key: &Path,
        expected: Option<u64>,
    ) -> Result<StoredBlob, ib3_transfer::Error> {
        let (bytes, hash) = read_hashed(self.source.as_ref(), key, expected, &self.bar).await?;
        self.inspect_read(object, bytes.clone());
        let stored = put_content_addressed(
            self.repo.store().as_ref(),
            bytes,
            hash,
            &|h, compressed| codecs::blob_key(h, compressed, self.repo.keys().is_some()),
            &|h| lock(&self.index).contains(&BlobId::from(*h)),
            &self.encode_for(&object.class),
            &self.copy,
        )
        .await?;
        Ok(self.record(stored, None))
    }

    async fn capture_streamed(
        &self,
        object: &SourceObject,
        key: &Path,
    ) -> Result<StoredBlob, ib3_transfer::Error> {
        // Read twice only what cannot change between the reads.
        let copy = CopyOptions {
            hash_before_upload: self.copy.hash_before_upload && object.class.is_immutable(),
            ..self.copy.clone()
        };
        let copied = async {
            copy_content_addressed(
                self.source.as_ref(),
                key,
                object.size,
                self.repo.store().as_ref(),
                &layout::staging_key(),
                &|h, compressed| codecs::blob_key(h, compressed, self.repo.keys().is_some()),
                &|h| lock(&self.index).contains(&BlobId::from(*h)),
                &self.encode_for(&object.class),
                &copy,
                &self.bar,
            )
            .await
        };
        // Its turn is held inside the object's own (`in_flight`), and never waits on one: no
        // cycle between the two bounds.
        let stored = self.streams.run(object.size, copied).await?;
        Ok(self.record(stored, None))
    }

    /// Parquet is ZSTD inside already: stored as is. Everything else (WAL, JSON, catalog) is
    /// compressed when compression is on. Everything is encrypted in an encrypted repository.
    fn encode_for(&self, class: &ObjectClass) -> ib3_transfer::Codec {
        let level = self.compression.filter(|_| *class != ObjectClass::Parquet);
        codecs::encode(level, self.repo.keys())
    }

    /// Account for a stored (or found) blob, written into a pack at `packed` or not.
    fn record(&self, stored: CasCopy, packed: Option<PackSlice>) -> StoredBlob {
        let blob = BlobId::from(stored.hash);
        let mut index = lock(&self.index);
        if !stored.uploaded {
            let (encoding, pack) = index.find_stored(&blob).unwrap_or_default();
            return StoredBlob {
                size: stored.size,
                blob,
                encoding,
                pack,
            };
        }
        let encoding = Encoding::of(stored.compressed, self.repo.keys().is_some());
        match packed {
            Some(slice) => index.insert_packed(blob, encoding, slice),
            None => index.insert(blob, encoding, stored.stored),
        }
        self.stats
            .bytes_uploaded
            .fetch_add(stored.size, Ordering::Relaxed);
        self.stats
            .bytes_stored
            .fetch_add(stored.stored, Ordering::Relaxed);
        self.stats.blobs_uploaded.fetch_add(1, Ordering::Relaxed);
        self.progress_record.dirty.store(true, Ordering::Relaxed);
        StoredBlob {
            size: stored.size,
            blob,
            encoding,
            pack: packed,
        }
    }
}

impl RepoCapture {
    /// Write the partial-progress record if new blobs were stored since the last one and it is
    /// due (see [`RecordWhen`]). A failure only costs resumability: it is logged.
    async fn record_progress(&self, when: RecordWhen) {
        let record = &self.progress_record;
        let since = lock(&record.last).elapsed();
        let due = match when {
            RecordWhen::Periodic => since >= *lock(&record.interval),
            RecordWhen::PhaseEnd => since >= PHASE_END_RECORD_AFTER,
            RecordWhen::Failed => true,
        };
        if !due || !record.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        // Only what the previous backup does not hold already: a resuming run reads that backup
        // too, so an incremental's record stays as small as its changes.
        let mut entries: Vec<Entry> = lock(&self.entries)
            .values()
            .filter(|e| self.previous.get(&e.path) != Some(e))
            .cloned()
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut source = record.source.clone();
        set_written_until(&mut source, self.newest_modified);
        let partial = Manifest {
            format_version: ib3_repo::config::FORMAT_VERSION,
            id: record.id.clone(),
            tool_version: tool_version(),
            started_at: String::new(),
            finished_at: now_rfc3339(),
            source,
            summary: Summary::default(),
            entries,
        };
        let known = lock(&record.chunks).clone();
        match self.repo.write_partial(&partial, &known).await {
            Ok(written) => {
                self.stats
                    .chunks_written
                    .fetch_add(written.new, Ordering::Relaxed);
                lock(&record.chunks).extend(written.chunks.iter().map(|c| c.blob));
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record progress (a re-run after a crash would read more again)")
            }
        }
        // A record costs time in proportion to the entries (seconds at millions): space them so
        // that recording takes at most a tenth of the run.
        *lock(&record.interval) = RECORD_INTERVAL.max(started.elapsed() * 10);
        *lock(&record.last) = Instant::now();
    }
}

impl RepoCapture {
    /// Where the captured object `key` is read from: bytes kept for it (given once: each state
    /// file is parsed once), or its entry.
    fn to_read(&self, key: &str) -> ib3_influx::Result<Result<Bytes, Entry>> {
        if let Some(bytes) = lock(&self.cache).take(key) {
            return Ok(Ok(bytes));
        }
        self.captured(key)
            .map(Err)
            .ok_or_else(|| ib3_influx::Error::Capture(format!("{key} was not captured")))
    }

    /// The plaintext of `entry`'s blob (for the object `key`), from the local repository on a
    /// blocking thread or through the repository's store.
    async fn read_stored(&self, entry: &Entry, key: &str) -> ib3_influx::Result<Bytes> {
        let read = match &self.local {
            Some(local) => tokio::task::spawn_blocking(self.local_job(local, entry))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|read| read)
                .map(Bytes::from),
            None => codecs::read_entry(&self.repo, entry)
                .await
                .map_err(anyhow::Error::from),
        };
        read.map_err(|e| read_failed(entry, key, format!("{e:#}")))
    }

    /// Read `entry`'s blob from the local repository on this (blocking) thread.
    fn local_job(&self, local: &LocalCapture, entry: &Entry) -> impl FnOnce() -> Result<Vec<u8>> {
        let (dir, (blob_key, _)) = (local.dirs.repo_dir.clone(), codecs::stored_at(entry));
        let codec = codecs::decode(entry.encoding, self.repo.keys());
        let slice = codecs::local_slice(entry);
        move || {
            Ok(ib3_transfer::local::read_plain_file(
                &dir, &blob_key, slice, &codec,
            )?)
        }
    }
}

/// Bytes of state files kept from their capture for the cut to parse ([`RepoCapture::to_read`]),
/// up to [`KeptReads::BUDGET`] at a time: past it, a file is read back from the repository when
/// the cut asks (the bytes it was stored from). Unbounded, a full backup of 2 000 000 files held
/// its 40 000 snapshot files' bytes at once, some 700 MB, until the cut parsed them.
#[derive(Default)]
struct KeptReads {
    bytes: HashMap<String, Bytes>,
    held: usize,
}

impl KeptReads {
    const BUDGET: usize = 64 * 1024 * 1024;

    /// Keep `bytes` for `key`, if the budget has room. Whatever was kept for `key` before goes
    /// either way: a catalog checkpoint captured again in a later round has new bytes, and the
    /// old ones must not be parsed in their place.
    fn keep(&mut self, key: String, bytes: Bytes) {
        if let Some(replaced) = self.bytes.remove(&key) {
            self.held -= replaced.len();
        }
        if self.held + bytes.len() > Self::BUDGET {
            return;
        }
        self.held += bytes.len();
        self.bytes.insert(key, bytes);
    }

    /// The bytes kept for `key` (given once).
    fn take(&mut self, key: &str) -> Option<Bytes> {
        let bytes = self.bytes.remove(key)?;
        self.held -= bytes.len();
        Some(bytes)
    }
}

/// A failed read of `entry`'s blob (for the object `key`).
fn read_failed(entry: &Entry, key: &str, e: impl std::fmt::Display) -> ib3_influx::Error {
    let (blob_key, _) = codecs::stored_at(entry);
    ib3_influx::Error::Capture(format!(
        "reading repository blob {blob_key} (for {key}): {e}"
    ))
}

impl Reader for RepoCapture {
    async fn read(&self, key: &str) -> ib3_influx::Result<Bytes> {
        let key = self.full(key);
        let key = key.as_ref();
        match self.to_read(key)? {
            Ok(bytes) => Ok(bytes),
            Err(entry) => self.read_stored(&entry, key).await,
        }
    }

    /// An incremental re-reads thousands of snapshot files: from a local repository each is
    /// read and parsed in one hand-off.
    async fn read_parsed<T: Send + 'static>(
        &self,
        key: &str,
        parse: impl FnOnce(&[u8]) -> ib3_influx::Result<T> + Send + 'static,
    ) -> ib3_influx::Result<T> {
        let full = self.full(key).into_owned();
        let bytes = match (&self.local, self.to_read(&full)?) {
            (_, Ok(kept)) => kept,
            (Some(local), Err(entry)) => {
                let read = self.local_job(local, &entry);
                let job = tokio::task::spawn_blocking(move || read().map(|bytes| parse(&bytes)));
                return match job.await {
                    Ok(Ok(parsed)) => parsed,
                    Ok(Err(e)) => Err(read_failed(&entry, &full, format!("{e:#}"))),
                    Err(e) => Err(read_failed(&entry, &full, e)),
                };
            }
            (None, Err(entry)) => self.read_stored(&entry, &full).await?,
        };
        tokio::task::spawn_blocking(move || parse(&bytes))
            .await
            .map_err(|e| ib3_influx::Error::Capture(format!("parsing {full}: {e}")))?
    }
}

impl Capture for RepoCapture {
    async fn capture(
        &mut self,
        phase: Phase,
        objects: &[SourceObject],
    ) -> ib3_influx::Result<Vec<Captured>> {
        let newest = objects.iter().filter_map(|o| o.modified).max();
        self.newest_modified = self.newest_modified.max(newest);
        // Reused entries are captured as they are found; the rest are read.
        let to_capture: Vec<(usize, &SourceObject)> = self
            .not_reusable(objects)
            .into_iter()
            .map(|i| (i, &objects[i]))
            .collect();
        let reused = objects.len() - to_capture.len();
        if !to_capture.is_empty() {
            self.known_blobs_ready(&to_capture)
                .await
                .map_err(|e| ib3_influx::Error::Capture(format!("{e:#}")))?;
        }
        self.stats
            .reused
            .fetch_add(reused as u64, Ordering::Relaxed);
        let to_read = to_capture.iter().map(|(_, o)| o.size).sum();
        self.bar.phase(super::phase_label(phase), to_read);
        let mut outcomes = vec![Captured::Yes; objects.len()];
        self.capture_all(&to_capture, &mut outcomes)
            .await
            .map_err(|e| ib3_influx::Error::Capture(format!("{e:#}")))?;
        self.record_progress(RecordWhen::PhaseEnd).await;
        Ok(outcomes)
    }

    /// A snapshot file reused from the previous backup is the one that backup judged; if no rule
    /// found a Parquet file of that backup missing or of another size, and every Parquet file
    /// it held is reused here (same path and size), what the snapshot references is captured
    /// as recorded, and the cut need not read its references again.
    fn settled_snapshots(&self, keys: &[&str]) -> Vec<bool> {
        let absences = self.settled.get(&self.prefix).filter(|_| {
            self.previous
                .all_reused_under(&format!("{}dbs/", self.prefix))
        });
        let fresh = lock(&self.entries);
        // A file found absent before and present again: its references must be judged anew.
        let returned = |absences: &Absences| {
            absences
                .keys
                .iter()
                .any(|key| fresh.get(&self.full(key)).is_some())
        };
        if absences.is_none_or(returned) {
            return vec![false; keys.len()];
        }
        keys.iter()
            .map(|key| {
                let path = self.full(key);
                fresh.get(&path).is_none() && self.previous.get_reused(&path).is_some()
            })
            .collect()
    }

    /// The header the previous backup kept with the entry it took `key` over from.
    fn known_header(&self, key: &str) -> Option<SnapshotHeader> {
        let entry = self.previous.get_reused(self.full(key).as_ref())?;
        SnapshotHeader::from_facts(entry.facts.as_deref()?)
    }

    fn offers_earlier_parquet(&self) -> bool {
        self.earlier_parquet.is_some()
    }

    /// The previous backup's Parquet tree, unless `rest` shows that the node is no longer the
    /// one that backup saw: the server never deletes or rewrites a snapshot file, so one of that
    /// backup's snapshot files gone, of another size or written since that backup means the
    /// node was replaced (restored from an older backup, or started afresh), and only a listing
    /// shows its tree.
    fn earlier_parquet(&mut self, rest: &[SourceObject]) -> Option<Vec<(String, u64)>> {
        let earlier = self.earlier_parquet.as_mut()?;
        let listed: HashMap<&str, &SourceObject> = rest
            .iter()
            .filter(|o| matches!(o.class, ObjectClass::Snapshot { .. }))
            .map(|o| (o.key.as_str(), o))
            .collect();
        let until = earlier.written_until;
        let same = |object: &SourceObject, size: u64| {
            object.size == size && !written_after(object.modified, until)
        };
        let changed = earlier
            .snapshots
            .iter()
            .find(|(key, size)| !listed.get(key.as_str()).is_some_and(|o| same(o, *size)));
        if let Some((key, _)) = changed {
            tracing::info!(
                snapshot = %key,
                "a previous snapshot file is gone, changed or written since: listing dbs/"
            );
            self.earlier_parquet = None;
            return None;
        }
        Some(std::mem::take(&mut earlier.files))
    }
}

/// `entry` (at `position` among the previous backup's entries, if taken over unchanged) with the
/// snapshot `header` the cut read in its content kept as its facts (DESIGN §4.3); an entry that
/// gains them is no longer the previous one unchanged.
fn with_header(
    mut entry: Entry,
    position: Option<usize>,
    header: Option<&SnapshotHeader>,
) -> (Entry, Option<usize>) {
    let Some(header) = header else {
        return (entry, position);
    };
    let kept = entry.facts.as_deref().and_then(SnapshotHeader::from_facts);
    if kept.as_ref() == Some(header) {
        return (entry, position);
    }
    entry.facts = Some(Box::new(header.to_facts()));
    (entry, None)
}

/// The value at `key` of `items` (in key order), walked beside keys asked in increasing order:
/// one comparison per key asked or item passed (at millions of keys with long common prefixes,
/// the comparisons are what such a walk costs).
fn walk_to<'a, V>(
    items: &mut std::iter::Peekable<impl Iterator<Item = (&'a String, V)>>,
    key: &str,
) -> Option<V> {
    while let Some((at, _)) = items.peek() {
        match at.as_str().cmp(key) {
            std::cmp::Ordering::Less => {
                items.next();
            }
            std::cmp::Ordering::Equal => return items.next().map(|(_, value)| value),
            std::cmp::Ordering::Greater => return None,
        }
    }
    None
}

/// Run `create`.
pub async fn create(options: CreateOptions) -> Result<CreateReport> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let (repo_store, repo_location) = options.repo;
    let (repo, repository_created) = Repository::open_or_init_with(
        repo_store,
        repo_location.clone(),
        &tool_version(),
        &options.keys,
    )
    .await?;
    // Shared: other creates may run; a prune (exclusive) may not delete blobs under us.
    let lock = repo.lock(LockKind::Shared, "create").await?;
    let settings = Settings {
        concurrency: options.concurrency,
        max_replans: options.max_replans,
        allow_inconsistent: options.allow_inconsistent,
        reread_snapshots: options.reread_snapshots,
        rescan_after: options.rescan_after,
        compression: options.compression,
        bar: options.bar,
        started_at,
        local: options.local,
    };
    let result = capture_and_commit(&repo, &lock, options.source, settings).await;
    let released = lock.release().await;
    let Committed {
        manifest,
        outcome,
        reused,
        entry_chunks,
        entry_chunks_written,
    } = result?;
    released?;
    let summary = &manifest.summary;
    let report = CreateReport {
        backup_id: manifest.id.to_string(),
        repository: repo_location,
        repository_created,
        source: manifest.source.clone(),
        consistent: outcome.consistent,
        entries: summary.entries,
        bytes: summary.bytes,
        bytes_read: summary.bytes_read,
        bytes_uploaded: summary.bytes_uploaded,
        blobs_uploaded: summary.blobs_uploaded,
        bytes_stored: summary.bytes_stored,
        compression_ratio: if summary.bytes_stored == 0 {
            1.0
        } else {
            summary.bytes_uploaded as f64 / summary.bytes_stored as f64
        },
        entries_reused: reused,
        entry_chunks,
        entry_chunks_written,
        replans: outcome.replans,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    drop_in_background(manifest);
    Ok(report)
}

/// Free `value` on a thread of its own: a manifest of 100 000 entries is 200 000 allocations
/// to free (~10 ms; the cut's objects and the lookups by path as many again), which the run need
/// not wait for (the process may even exit first).
fn drop_in_background<T: Send + 'static>(value: T) {
    if let Err(e) = std::thread::Builder::new().spawn(move || drop(value)) {
        tracing::debug!(error = %e, "no thread to free memory on: freed here");
    }
}

/// How a run captures (the resolved options other than the stores).
pub(super) struct Settings {
    pub(super) concurrency: usize,
    pub(super) max_replans: u32,
    pub(super) allow_inconsistent: bool,
    reread_snapshots: bool,
    rescan_after: std::time::Duration,
    compression: Option<i32>,
    pub(super) bar: Bar,
    started_at: SystemTime,
    local: Option<LocalDirs>,
}

/// What capturing a source produced: the manifest's entries and source record.
pub(super) struct Outcome {
    pub(super) entries: Vec<Entry>,
    pub(super) record: serde_json::Value,
    pub(super) consistent: bool,
    pub(super) replans: u32,
}

impl CreateSource {
    /// The data dir, when the source is a local directory.
    pub fn data_dir(&self) -> Option<&PathBuf> {
        match self {
            CreateSource::Node(node) => node.data_dir.as_ref(),
            CreateSource::Cluster(cluster) => cluster.root.data_dir.as_ref(),
        }
    }

    /// The fields a manifest's (or progress record's) source document must match for its
    /// entries to stand for this source's objects unread.
    fn identity(&self) -> serde_json::Value {
        match self {
            CreateSource::Node(node) => serde_json::json!({
                "product": PRODUCT,
                "node_id": node.node_id,
                "location": node.location,
            }),
            CreateSource::Cluster(cluster) => cluster.identity(),
        }
    }
}

/// What [`capture_and_commit`] committed.
struct Committed {
    manifest: Manifest,
    outcome: Outcome,
    /// Entries reused unread.
    reused: u64,
    entry_chunks: u64,
    entry_chunks_written: u64,
}

/// Capture the source into the repository and commit its manifest.
async fn capture_and_commit(
    repo: &Repository,
    held: &ib3_repo::lock::Lock,
    source: CreateSource,
    settings: Settings,
) -> Result<Committed> {
    let started = Instant::now();
    let identity = source.identity();
    let Previous {
        entries: previous,
        earlier,
        superseded,
        chunks,
        settled,
        written_until,
        ..
    } = previous_entries(repo, &identity, &source, &settings).await?;
    let (hints, earlier_parquet) = match earlier {
        Some(EarlierListing::Hints(hints)) => (Some(hints), None),
        Some(EarlierListing::Parquet(parquet)) => (None, Some(parquet)),
        None => (None, None),
    };
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        entries = previous.len(),
        "create: loaded the previous backup's entries"
    );
    let index = known_blobs(repo, &previous, superseded.is_empty()).await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        listed_blobs = index.as_ref().map(BlobIndex::len),
        "create: known blobs"
    );
    let unchanged = unchanged_chunks(&source, &previous, &chunks);
    let run_id = BackupId::new(settings.started_at);
    let (first_store, first_prefix) = match &source {
        CreateSource::Node(node) => (node.node.clone(), String::new()),
        CreateSource::Cluster(cluster) => (cluster.root.store.clone(), String::new()),
    };
    let copy = CopyOptions {
        // A local file costs little to read twice; a bucket's object, a second GET.
        hash_before_upload: source.data_dir().is_some(),
        ..CopyOptions::default()
    };
    let mut capture = RepoCapture {
        source: first_store,
        prefix: first_prefix,
        repo: repo.clone(),
        index_pending: index.is_none(),
        index_of_previous: index.is_none(),
        index: Arc::new(Mutex::new(index.unwrap_or_default())),
        newest_modified: written_until,
        local: settings.local.clone().map(|dirs| LocalCapture {
            source_dir: match &source {
                CreateSource::Node(node) => dirs.data_dir.join(&node.node_id),
                CreateSource::Cluster(_) => dirs.data_dir.clone(),
            },
            dirs,
        }),
        previous,
        hints,
        earlier_parquet,
        settled: if settings.reread_snapshots {
            Settled::new()
        } else {
            settled
        },
        // A node's entries come out of the cut in the order its previous backup's did.
        unchanged,
        entries: Mutex::new(EntriesByPath::default()),
        cache: Mutex::new(KeptReads::default()),
        wal_findings: Mutex::new(Vec::new()),
        stats: Stats::default(),
        concurrency: settings.concurrency,
        in_flight: ib3_transfer::InFlight::new(settings.concurrency),
        streams: ib3_transfer::StreamTurns::new(settings.concurrency, &copy),
        copy,
        compression: settings.compression,
        bar: settings.bar.clone(),
        progress_record: ProgressRecord {
            id: run_id.clone(),
            source: identity,
            dirty: std::sync::atomic::AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
            interval: Mutex::new(RECORD_INTERVAL),
            chunks: Mutex::new(chunks.iter().map(|c| c.blob).collect()),
        },
    };
    let captured = match &source {
        CreateSource::Node(node) => capture_node(&mut capture, node, &settings).await,
        CreateSource::Cluster(cluster) => {
            super::create_cluster::capture(&mut capture, cluster, &settings).await
        }
    };
    let mut outcome = match captured {
        Ok(outcome) => outcome,
        Err(e) => {
            capture.record_progress(RecordWhen::Failed).await;
            return Err(e);
        }
    };
    settings.bar.finish();
    capture.release_lookups();
    set_written_until(&mut outcome.record, capture.newest_modified);
    let stats = &capture.stats;
    let entries = std::mem::take(&mut outcome.entries);
    let summary = Summary {
        entries: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
        bytes_read: stats.bytes_read.load(Ordering::Relaxed),
        bytes_uploaded: stats.bytes_uploaded.load(Ordering::Relaxed),
        blobs_uploaded: stats.blobs_uploaded.load(Ordering::Relaxed),
        bytes_stored: stats.bytes_stored.load(Ordering::Relaxed),
    };
    let manifest = Manifest {
        format_version: ib3_repo::config::FORMAT_VERSION,
        id: run_id.clone(),
        tool_version: tool_version(),
        started_at: humantime::format_rfc3339_seconds(settings.started_at).to_string(),
        finished_at: now_rfc3339(),
        source: outcome.record.clone(),
        summary,
        entries,
    };
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "create: captured and judged"
    );
    ensure_blobs_survived(repo, held, &manifest).await?;
    // The commit point: every blob above is stored; a backup exists once this succeeds.
    let known_chunks = lock(&capture.progress_record.chunks).clone();
    let written = repo
        .write_manifest_reusing(&manifest, &known_chunks, capture.unchanged.as_ref())
        .await?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "create: committed the manifest"
    );
    // This backup holds everything its own and earlier unfinished runs' records offered.
    for id in superseded.iter().chain([&run_id]) {
        if let Err(e) = repo.remove_partial(id).await {
            tracing::warn!(error = %e, "could not remove a progress record (prune removes it later)");
        }
    }
    Ok(Committed {
        manifest,
        outcome,
        reused: stats.reused.load(Ordering::Relaxed),
        entry_chunks: written.chunks.len() as u64,
        entry_chunks_written: written.new + stats.chunks_written.load(Ordering::Relaxed),
    })
}

/// Cut one node (its catalog included) into the repository.
async fn capture_node(
    capture: &mut RepoCapture,
    source: &NodeStore,
    settings: &Settings,
) -> Result<Outcome> {
    let cut_options = CutOptions {
        node_prefix: source.node_id.clone(),
        max_replans: settings.max_replans,
        allow_inconsistent: settings.allow_inconsistent,
        catalog_in_prefix: true,
    };
    if let Some(listing) = &source.listing {
        listing.set_hints(capture.hints.take());
    }
    let cut = take_consistent_cut(source.node.as_ref(), capture, &cut_options).await;
    if let Some(listing) = &source.listing {
        listing.set_hints(None);
    }
    let cut = as_node(source, cut).await?;
    let entries = capture.entries_of(&cut)?;
    let mut record = source_record(source, &cut, capture.take_wal_findings());
    capture.carry_absences(&mut record, &cut);
    record.parquet_listed_at = match capture.earlier_parquet.take() {
        Some(earlier) if cut.parquet_followed => Some(earlier.listed_at),
        _ => Some(humantime::format_rfc3339_seconds(settings.started_at).to_string()),
    };
    let replans = cut.replans;
    drop_in_background(cut);
    Ok(Outcome {
        entries,
        consistent: record.consistent,
        record: serde_json::to_value(&record)?,
        replans,
    })
}

impl RepoCapture {
    /// The manifest entries of a cut taken at the current prefix, moved out of the capture's
    /// lookups (the cut is over: nothing reads them there again).
    pub(super) fn entries_of(&mut self, cut: &CutReport) -> Result<Vec<Entry>> {
        let entries = self
            .entries
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The cut's keys in order, and so their paths: the reused entries come out in one pass.
        let mut reused = self.previous.reused_in_order(&self.prefix);
        let prefix = &self.prefix;
        let mut unchanged = self.unchanged.as_mut();
        // Sized up front: grown by doubling, the entries were copied over and over into fresh
        // memory (at 300 000 files, a tenth of a no-change run's page faults).
        let mut out = Vec::with_capacity(cut.objects.len());
        // Both in key order: the headers are met walking beside the keys, not looked up in a
        // tree once per key (at 2 000 000 keys and 40 000 headers, a fifth of a second).
        let mut headers = cut.snapshot_headers.iter().peekable();
        let fresh_none = entries.is_empty();
        for key in cut.objects.keys() {
            let path = full_path(prefix, key);
            let path = path.as_ref();
            let fresh = if fresh_none { None } else { entries.take(path) };
            let (entry, position) = match fresh {
                Some(fresh) => (fresh, None),
                None => reused
                    .take(path)
                    .map(|(entry, at)| (entry, Some(at)))
                    .with_context(|| {
                        format!("internal error: {path} is in the cut but was not captured")
                    })?,
            };
            let header = walk_to(&mut headers, key);
            let (entry, position) = with_header(entry, position, header);
            if let Some(unchanged) = unchanged.as_deref_mut() {
                unchanged.push(position);
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Add to `record`, the record of a cut at the current prefix, what the previous backup
    /// found absent there and this cut did not report itself ([`carry_absences`]).
    pub(super) fn carry_absences(&self, record: &mut SourceRecord, cut: &CutReport) {
        if let Some(absences) = self.settled.get(&self.prefix) {
            carry_absences(record, absences, cut);
        }
    }

    /// The entries captured at the current prefix whose keys are in `keys`.
    pub(super) fn entries_for<'a>(&self, keys: impl IntoIterator<Item = &'a String>) -> Vec<Entry> {
        keys.into_iter()
            .filter_map(|key| self.captured(self.full(key).as_ref()))
            .collect()
    }

    /// Findings about corrupt WAL files seen since the last call.
    pub(super) fn take_wal_findings(&self) -> Vec<Finding> {
        std::mem::take(&mut *lock(&self.wal_findings))
    }
}

/// The blobs this run may take as present, listed from the repository; `None` for those of
/// the previous entries (built from them when needed: [`RepoCapture::index_pending`]). An
/// incremental run takes them from the newest backup of the same source: GC never deletes a
/// blob a manifest references, and this run's shared lock keeps `prune` out until it commits (a
/// lost lock re-checks everything, see [`ensure_blobs_survived`]). A first backup of a source
/// lists `blobs/`, to store content other sources hold only once, and so does a run resuming
/// from progress records, whose blobs may have been collected.
async fn known_blobs(
    repo: &Repository,
    previous: &PreviousEntries,
    only_from_manifest: bool,
) -> Result<Option<BlobIndex>> {
    if previous.is_empty() || !only_from_manifest {
        return Ok(Some(repo.blob_index().await?));
    }
    Ok(None)
}

/// Objects a capture stores at most for the index of known blobs to take only the blobs their
/// paths had in the previous backup (see `RepoCapture::known_blobs_ready`).
pub const FEW_TO_STORE: usize = 1_000;

/// Before committing: while this run's lock was held no prune could run. If the lock was lost
/// (removed by `unlock`, or stale after a long pause), a prune may have collected blobs this run
/// reused or stored: check them all before the manifest may reference them.
async fn ensure_blobs_survived(
    repo: &Repository,
    held: &ib3_repo::lock::Lock,
    manifest: &Manifest,
) -> Result<()> {
    if held.still_held().await? {
        return Ok(());
    }
    tracing::warn!(
        "the repository lock was lost during the run; checking every blob before committing"
    );
    let missing = ib3_repo::check::check_presence(manifest, &repo.blob_index().await?);
    match missing.first() {
        None => Ok(()),
        Some(first) => Err(anyhow::anyhow!(
            "the repository lock was lost during the run and {} blobs this backup needs are gone (e.g. {} for {}): a prune ran meanwhile; run create again",
            missing.len(),
            first.blob,
            first.path
        )),
    }
}

/// Entries that may stand for source objects without reading them: those of the newest backup
/// of the same source (node or cluster, and store location), and those recorded by its runs that
/// never committed (killed or failed), by path; with what its listing of the Parquet tree gives
/// this run's: the tree itself to follow the snapshots from ([`follows_snapshots`]), or else, for
/// a node in a local data dir, listing hints ([`listing_hints`]).
async fn previous_entries(
    repo: &Repository,
    identity: &serde_json::Value,
    source: &CreateSource,
    settings: &Settings,
) -> Result<Previous> {
    let mut previous = Previous::default();
    // Oldest first: a progress record's entries replace the backup's of the same path.
    let mut runs = Vec::new();
    // When the newest backup began: the listing hints trust what has not changed since.
    let mut began = None;
    // When that backup's Parquet tree was last listed, if this run may follow the snapshots.
    let mut followed_from = None;
    for id in repo.list_backups().await?.iter().rev() {
        // Headers first: only the matching backup's entries are read.
        let stored = repo.load_stored_manifest(id).await?;
        if same_source(&stored.manifest.source, identity) {
            previous.newest = Some(id.clone());
            previous.chunks.clone_from(&stored.entry_chunks);
            began = humantime::parse_rfc3339(&stored.manifest.started_at).ok();
            let record = BackupSource::parse(&stored.manifest.source).ok();
            previous.settled = settling(record.as_ref());
            if let Some(BackupSource::Node(record)) = &record {
                followed_from = follows_snapshots(record, source, settings);
            }
            runs.push(Run {
                written_until: written_until(&stored.manifest.source, &stored.manifest.finished_at),
                entries: repo.load_entries(stored).await?.entries,
            });
            break;
        }
    }
    for partial in repo.partials().await? {
        if same_source(&partial.source, identity) {
            previous.superseded.push(partial.id.clone());
            runs.push(Run {
                written_until: written_until(&partial.source, &partial.finished_at),
                entries: partial.entries,
            });
        }
    }
    // A progress record's entries were never judged.
    if !previous.superseded.is_empty() {
        previous.settled.clear();
        followed_from = None;
    }
    let began = began.filter(|_| wants_listing_hints(source));
    previous.written_until = runs.iter().filter_map(|run| run.written_until).max();
    (previous.entries, previous.earlier) =
        PreviousEntries::from_runs_beside(runs, |entries| match &followed_from {
            Some(listed_at) => Some(EarlierListing::Parquet(EarlierParquet {
                files: parquet_tree(entries)
                    .map(|(path, size)| (path.to_string(), size))
                    .collect(),
                snapshots: entries
                    .iter()
                    .filter(|entry| entry.path.starts_with("snapshots/"))
                    .map(|entry| (entry.path.clone(), entry.size))
                    .collect(),
                listed_at: listed_at.clone(),
                // One run: the backup's (a progress record stops the following).
                written_until: previous.written_until,
            })),
            None => began.map(|began| EarlierListing::Hints(listing_hints(entries, began))),
        });
    Ok(previous)
}

/// When the previous backup (node source record `previous`) of a Core node last listed its Parquet
/// tree, if this run may follow the snapshot files from that backup's tree instead of listing
/// it (DESIGN §4.6): its cut was consistent, and that listing is younger than `--rescan-after`
/// (a listing now and then drops what the server deleted without a record: files past their
/// retention). `None` for an Enterprise cluster, whose compactor writes Parquet files no
/// snapshot file records.
fn follows_snapshots(
    previous: &SourceRecord,
    source: &CreateSource,
    settings: &Settings,
) -> Option<String> {
    if !matches!(source, CreateSource::Node(_)) {
        return None;
    }
    let listed_at = previous
        .parquet_listed_at
        .clone()
        .filter(|_| previous.product == PRODUCT && previous.consistent)?;
    let age = settings
        .started_at
        .duration_since(humantime::parse_rfc3339(&listed_at).ok()?)
        .ok()?;
    (age < settings.rescan_after).then_some(listed_at)
}

/// The entries of a node's Parquet tree (`dbs/`, where nearly all files are), in path order.
fn parquet_tree(entries: &[Entry]) -> impl Iterator<Item = (&str, u64)> + Clone {
    entries
        .iter()
        .filter(|entry| entry.path.starts_with("dbs/"))
        .map(|entry| (entry.path.as_str(), entry.size))
}

/// What lets the manifest of a node's backup reference its previous backup's chunks again: the
/// cut gives a node's entries in the order that backup's manifest holds them (`None`: a cluster,
/// or previous entries merged from several runs, whose positions are no manifest's).
fn unchanged_chunks(
    source: &CreateSource,
    previous: &PreviousEntries,
    chunks: &[EntryChunk],
) -> Option<UnchangedChunks> {
    let node = matches!(source, CreateSource::Node(_));
    (node && previous.as_loaded() && !chunks.is_empty()).then(|| UnchangedChunks::new(chunks))
}

/// The entry-path prefixes under which a backup's (parsed) snapshot files have every reference
/// captured as recorded or found absent, each with what was found absent ([`absences_of`]): a
/// node backup's `""`, a cluster backup's `<id>/` for each member whose cut says so; none for
/// anything else.
fn settling(source: Option<&BackupSource>) -> Settled {
    match source {
        Some(BackupSource::Node(record)) => absences_of(record)
            .map(|absences| (String::new(), absences))
            .into_iter()
            .collect(),
        Some(BackupSource::Cluster(record)) => record
            .members
            .iter()
            .filter_map(|member| {
                let absences = absences_of(member.node.as_ref()?)?;
                Some((format!("{}/", member.node_id), absences))
            })
            .collect(),
        None => Settled::new(),
    }
}

/// What a node backup's cut found absent of the Parquet files its snapshot files reference
/// (removed by the server, recorded or not), if that is all it found about Parquet files and the
/// cut was consistent: every other reference was captured with its recorded size. The snapshot
/// files of such a backup settle for the next run, which carries these findings over for them
/// ([`Absences`]; DESIGN §4.3).
fn absences_of(record: &SourceRecord) -> Option<Absences> {
    if record.product != PRODUCT || !record.consistent {
        return None;
    }
    let findings: Vec<serde_json::Value> = record
        .findings
        .as_array()?
        .iter()
        .filter(|finding| is_about_parquet(finding))
        .cloned()
        .collect();
    let only_absences = findings.iter().all(|finding| {
        matches!(
            finding["code"].as_str(),
            Some("parquet-removed-by-server" | "parquet-missing")
        )
    });
    let removed = record.removed_by_server.as_array()?.clone();
    let keys = removed
        .iter()
        .map(|removed| Some(removed["path"].as_str()?.split_once('/')?.1.to_string()))
        .collect::<Option<Vec<String>>>()?;
    only_absences.then_some(Absences {
        keys,
        findings,
        removed,
    })
}

/// Whether a recorded finding is about a Parquet file (or names no code, and may be).
fn is_about_parquet(finding: &serde_json::Value) -> bool {
    finding["code"]
        .as_str()
        .is_none_or(|code| code.starts_with("parquet-"))
}

/// Add to `record` what the previous backup found absent ([`Absences`]) and the cut did not
/// report itself: files still absent, referenced by snapshot files that settled (judged without
/// their references). Most severe findings first, as the judge orders them.
fn carry_absences(record: &mut SourceRecord, absences: &Absences, cut: &CutReport) {
    if absences.keys.is_empty() {
        return;
    }
    let still_absent = |full_key: &str| {
        full_key
            .split_once('/')
            .is_some_and(|(_, key)| !cut.objects.contains_key(key))
    };
    extend_unreported(
        &mut record.findings,
        &absences.findings,
        "object",
        still_absent,
    );
    if let Some(findings) = record.findings.as_array_mut() {
        findings.sort_by_key(|f| std::cmp::Reverse(severity_rank(&f["severity"])));
    }
    extend_unreported(
        &mut record.removed_by_server,
        &absences.removed,
        "path",
        still_absent,
    );
}

/// Add to `list` (a JSON array of objects naming a file in `field`) each of `carried` whose file
/// is `still_absent` and not named in `list` already.
fn extend_unreported(
    list: &mut serde_json::Value,
    carried: &[serde_json::Value],
    field: &str,
    still_absent: impl Fn(&str) -> bool,
) {
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let reported: HashSet<String> = list
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_string))
        .collect();
    list.extend(
        carried
            .iter()
            .filter(|item| {
                item[field]
                    .as_str()
                    .is_some_and(|file| still_absent(file) && !reported.contains(file))
            })
            .cloned(),
    );
}

/// Order of a recorded finding's severity: errors highest.
fn severity_rank(severity: &serde_json::Value) -> u8 {
    match severity.as_str() {
        Some("error") => 2,
        Some("warning") => 1,
        _ => 0,
    }
}

/// What the previous backup's listing of a local node found under `dbs/` (the Parquet tree,
/// where nearly all files are), as hints that spare re-reading its unchanged directories
/// (`transfer::listing::ListingHints`; DESIGN §2): the server never changes a Parquet file in
/// place, so the files of a directory unchanged since are listed with the sizes that backup
/// found, unread and not stat-ed. A Parquet file a snapshot references that a listing missed is
/// captured by reference (§4.3 step 3) whatever the hints said.
fn listing_hints(previous: &[Entry], began: SystemTime) -> ListingHints {
    // In path order (as the entries are): the hints take them in one pass.
    ListingHints::new(parquet_tree(previous), began)
}

/// Whether a backup of `source` hands its listing hints ([`listing_hints`]): a node in a local
/// data dir.
fn wants_listing_hints(source: &CreateSource) -> bool {
    matches!(source, CreateSource::Node(node) if node.listing.is_some())
}

/// What earlier runs of the same source left: see [`previous_entries`].
#[derive(Default)]
struct Previous {
    /// Entries by path.
    entries: PreviousEntries,
    /// The newest committed backup of the source, whose entries `entries` holds.
    newest: Option<BackupId>,
    /// What the newest backup's listing of the Parquet tree gives this run's.
    earlier: Option<EarlierListing>,
    /// Progress records this run's backup supersedes.
    superseded: Vec<BackupId>,
    /// Entry chunks of the newest backup, in order: stored, and kept so while this run holds
    /// its lock.
    chunks: Vec<EntryChunk>,
    /// Where `entries` are those of one backup (no progress record) whose snapshots' Parquet
    /// references were all captured as recorded or found absent ([`settling`]): under these
    /// prefixes its snapshot files, reused, have settled references
    /// ([`RepoCapture::settled_snapshots`]); with what that backup found absent there.
    settled: Settled,
    /// The latest [`Run::written_until`] of `entries`' runs: this run takes over entries of
    /// objects written until then, some unlisted (a followed Parquet tree), so its own record
    /// says no earlier time.
    written_until: Option<SystemTime>,
}

/// Prefix (a node's `""`, a cluster member's `<id>/`) → what the previous backup found absent
/// there, for each prefix whose snapshot files settle ([`settling`]).
type Settled = BTreeMap<String, Absences>;

/// Referenced Parquet files a node backup's cut found absent, with its findings about them: a
/// snapshot file that settles is judged without its references, so the next run would no
/// longer see them absent; it carries these over instead ([`carry_absences`]).
#[derive(Default)]
struct Absences {
    /// Their keys, relative to the node.
    keys: Vec<String>,
    /// The findings about them (`parquet-removed-by-server`, `parquet-missing`), as recorded.
    findings: Vec<serde_json::Value>,
    /// Their `removed_by_server` entries, as recorded.
    removed: Vec<serde_json::Value>,
}

/// What a previous backup's listing of a node's Parquet tree gives this run: see
/// [`previous_entries`].
enum EarlierListing {
    /// The tree itself, to follow the snapshots from.
    Parquet(EarlierParquet),
    /// Hints for listing it again.
    Hints(ListingHints),
}

/// A node's Parquet tree as the previous backup held it ([`follows_snapshots`]).
struct EarlierParquet {
    /// Paths and sizes, in path order; handed to the cut once.
    files: Vec<(String, u64)>,
    /// The snapshot files of that backup, paths and sizes: the node must still hold them all.
    snapshots: Vec<(String, u64)>,
    /// When the tree was last listed (RFC 3339): by the previous backup, or by the one it
    /// followed the snapshots from, and so on back.
    listed_at: String,
    /// [`Run::written_until`] of that backup: a snapshot file written later is another file.
    written_until: Option<SystemTime>,
}

/// Whether a manifest's (or partial record's) source document has every field of `identity`.
fn same_source(document: &serde_json::Value, identity: &serde_json::Value) -> bool {
    let Some(fields) = identity.as_object() else {
        return false;
    };
    fields
        .iter()
        .all(|(name, value)| document.get(name).unwrap_or(&serde_json::Value::Null) == value)
}

pub(super) fn source_record(
    source: &NodeStore,
    cut: &CutReport,
    wal_findings: Vec<Finding>,
) -> SourceRecord {
    let mut findings = cut.judgement.findings.clone();
    findings.extend(wal_findings);
    SourceRecord {
        product: PRODUCT.to_string(),
        node_id: source.node_id.clone(),
        object_store: source.kind.to_string(),
        location: source.location.clone(),
        active_catalog: cut.layout.active_catalog,
        layout: serde_json::to_value(&cut.layout).unwrap_or_default(),
        server_versions: cut.layout.server_versions().to_string(),
        consistent: !cut.judgement.has_errors(),
        point: serde_json::to_value(&cut.judgement.point).unwrap_or_default(),
        removed_by_server: serde_json::to_value(&cut.judgement.removed_by_server)
            .unwrap_or_default(),
        findings: serde_json::to_value(&findings).unwrap_or_default(),
        replan_reasons: cut.replan_reasons.clone(),
        vanished: cut.vanished.clone(),
        derived_skipped: cut.derived_skipped,
        parquet_listed_at: None,
        parquet_followed: cut.parquet_followed,
    }
}

/// Explain an empty or foreign node prefix, naming the node prefixes that do exist.
pub async fn not_a_node(source: &NodeStore, message: String) -> anyhow::Error {
    let nodes = discover_nodes(source.root.as_ref()).await;
    let found = if nodes.is_empty() {
        "it holds no InfluxDB 3 node at all".to_string()
    } else {
        format!("the node prefixes it holds: {}", nodes.join(", "))
    };
    let hint = match nodes.as_slice() {
        [only] => format!("pass --node-id {only}"),
        [] => match node_dir_given(source).await {
            Some(hint) => hint,
            None => "check --data-dir: it must be the directory `influxdb3 serve --data-dir` uses"
                .to_string(),
        },
        _ => "pass one of them with --node-id".to_string(),
    };
    Failure::new(
        NOT_A_NODE,
        format!(
            "no InfluxDB 3 node {:?} in {}: {message}; {found}",
            source.node_id, source.location
        ),
    )
    .hint(hint)
    .into()
}

/// `result`, where a source that is not a node is reported as [`not_a_node`] reports it.
pub(super) async fn as_node<T>(source: &NodeStore, result: ib3_influx::Result<T>) -> Result<T> {
    match result {
        Err(ib3_influx::Error::NotANode { message }) => Err(not_a_node(source, message).await),
        other => Ok(other?),
    }
}

/// The fix when `--data-dir` names a node's own directory rather than the data dir holding it.
async fn node_dir_given(source: &NodeStore) -> Option<String> {
    let given = source.data_dir.as_ref()?;
    if !crate::stores::root_is_a_node(source.root.as_ref()).await {
        return None;
    }
    // Absolute, so that `--data-dir node0` or `.` still has a parent and a name to show.
    let dir = std::fs::canonicalize(given).unwrap_or_else(|_| given.clone());
    let parent = dir.parent()?;
    let name = dir.file_name()?.to_string_lossy();
    Some(format!(
        "{} is a node's own directory: pass the data dir that holds it, `--data-dir {} \
         --node-id {name}`",
        dir.display(),
        parent.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walking_to_keys_in_order_finds_each_value_once() {
        let keys: Vec<String> = ["a/1", "a/2", "c", "e"].map(String::from).to_vec();
        let mut items = keys.iter().zip(1..).peekable();
        let found: Vec<_> = ["0", "a/1", "a/15", "b", "c", "c", "d", "e", "f"]
            .iter()
            .map(|key| walk_to(&mut items, key))
            .collect();
        let expected = [
            None,
            Some(1),
            None,
            None,
            Some(3),
            None,
            None,
            Some(4),
            None,
        ];
        assert_eq!(found, expected);
        assert!(items.peek().is_none());
    }

    #[test]
    fn positions_that_fail_come_in_order_from_every_part() {
        let items: Vec<u32> = (0..1_003).collect();
        let even = |i: &u32| i % 2 == 0;
        let expected: Vec<usize> = (0..1_003).filter(|i| i % 2 == 1).collect();
        // Small parts (one per core) and one part: positions stay right across part boundaries.
        for per_thread in [1, 7, 500, 10_000] {
            assert_eq!(positions_where_not(&items, per_thread, || even), expected);
        }
        assert!(positions_where_not(&[] as &[u32], 1, || even).is_empty());
        assert!(positions_where_not(&items, 1, || |_: &u32| true).is_empty());
    }

    fn header(wal: u64) -> SnapshotHeader {
        let snapshot = ib3_influx::snapshot::PersistedSnapshot {
            node_id: "node0".into(),
            snapshot_sequence_number: 7,
            wal_file_sequence_number: wal,
            catalog_sequence_number: 3,
            parquet_size_bytes: 100,
            row_count: 10,
            files: Vec::new(),
            removed_files: Vec::new(),
        };
        SnapshotHeader::of(&snapshot).unwrap_or_else(|| panic!("no removals: a header"))
    }

    /// Kept bytes stay within the budget, each is given once, and bytes captured again replace
    /// (or, not fitting, drop) what was kept for the same key.
    #[test]
    fn kept_reads_stay_within_their_budget_and_are_given_once() {
        let mut kept = KeptReads::default();
        let half = Bytes::from(vec![7u8; KeptReads::BUDGET / 2 + 1]);
        kept.keep("a".into(), half.clone());
        kept.keep("b".into(), half.clone());
        assert!(kept.take("b").is_none(), "kept beyond the budget");
        assert_eq!(kept.take("a").map(|b| b.len()), Some(half.len()));
        assert!(kept.take("a").is_none(), "given twice");
        kept.keep("b".into(), half.clone());
        assert!(kept.take("b").is_some(), "the budget was not given back");
        // Captured again with bytes that do not fit: the old bytes are not served for it.
        kept.keep("c".into(), Bytes::from_static(b"old"));
        kept.keep("d".into(), half.clone());
        kept.keep("c".into(), half.clone());
        assert!(kept.take("c").is_none(), "stale bytes served");
        assert!(kept.take("d").is_some());
    }

    /// An entry keeps the header the cut read as its facts; one that gains or changes them is
    /// no longer the previous backup's entry unchanged (its chunk must be encoded again).
    #[test]
    fn an_entry_that_gains_a_header_is_no_longer_unchanged() {
        let entry = Entry {
            path: "snapshots/18446744073709551608.info.json".into(),
            size: 10,
            blob: BlobId::of(b"snapshot"),
            encoding: ib3_repo::Encoding::Zstd,
            class: "snapshot".into(),
            pack: None,
            facts: None,
        };
        let (same, at) = with_header(entry.clone(), Some(4), None);
        assert_eq!((same, at), (entry.clone(), Some(4)));

        let (gained, at) = with_header(entry, Some(4), Some(&header(20)));
        assert_eq!(at, None);
        let kept = gained.facts.as_deref().and_then(SnapshotHeader::from_facts);
        assert_eq!(kept, Some(header(20)));

        let (again, at) = with_header(gained.clone(), Some(5), Some(&header(20)));
        assert_eq!((again, at), (gained.clone(), Some(5)));

        let (changed, at) = with_header(gained, Some(5), Some(&header(21)));
        assert_eq!(at, None);
        let kept = changed
            .facts
            .as_deref()
            .and_then(SnapshotHeader::from_facts);
        assert_eq!(kept, Some(header(21)));
    }
}
