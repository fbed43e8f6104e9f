//! The online consistent-cut algorithm: capture a restorable set of objects from a node prefix
//! while the server keeps writing (DESIGN.md "Consistency algorithm").
//!
//! One round:
//! 1. list the node prefix (a re-plan round: only the snapshot directories); capture Parquet and
//!    unrecognised objects, then snapshot files and snapshot checkpoints (only what is not
//!    captured yet);
//! 2. parse the captured snapshots; S = the newest, W = its `wal_file_sequence_number`; list
//!    `wal/` afresh and capture it; the files after W must run contiguously from W+1. If a
//!    required WAL file vanished, or W+1 is missing, or nothing after W exists while a newer
//!    snapshot does, the server snapshotted meanwhile and deleted WAL files: re-plan (next round,
//!    which captures only the difference, with the newer snapshot);
//! 3. capture the Parquet files the snapshots reference that no listing showed (after the WAL,
//!    which the server deletes at its next snapshot);
//! 4. list the catalog; capture its immutable logs (every generation), then the active
//!    checkpoint last, then any log appended meanwhile;
//! 5. judge the captured set with [`crate::rules`]; errors trigger another round.
//!
//! After `max_replans` rounds a cut that still breaks a rule is an [`Error::Inconsistent`]
//! (unless the caller allows it, to back up a node that is itself damaged).
//!
//! The copying is the caller's: [`Capture`] moves bytes and answers reads of captured objects.

use crate::assess::Reader;
use crate::catalog::{parse_catalog_file, CatalogFileInfo, CatalogFileKind};
use crate::layout::{detect, Layout};
use crate::path::{classify, CatalogGeneration, ObjectClass, Phase};
use crate::rules::{judge, references_in, CapturedSet, CatalogScope, Judgement};
use crate::shard::{in_shards, Shard};
use crate::snapshot::{
    parse_snapshot, parse_snapshot_checkpoint, parse_snapshot_header, ParquetRef,
    PersistedSnapshot, SnapshotCheckpoint, SnapshotHeader,
};
use crate::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::SystemTime;

/// An object under the node prefix, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceObject {
    /// Key relative to the node prefix.
    pub key: String,
    /// Size listed.
    pub size: u64,
    /// Classification of the key.
    pub class: ObjectClass,
    /// When the store says the object was last written, where a listing or `HEAD` told
    /// (`None` for what a cut takes from an earlier one unlisted): a caller reuses its
    /// earlier copy of an object only if it was not written after that copy was made.
    pub modified: Option<SystemTime>,
}

impl SourceObject {
    /// An object as a listing or `HEAD` reports it.
    pub fn listed(meta: ObjectMeta) -> Self {
        let key = String::from(meta.location);
        Self {
            class: classify(&key),
            key,
            size: meta.size,
            modified: Some(SystemTime::from(meta.last_modified)),
        }
    }

    /// An object known by key and size only (from an earlier cut, or a reference).
    pub fn unlisted(key: String, size: u64) -> Self {
        Self {
            class: classify(&key),
            key,
            size,
            modified: None,
        }
    }
}

/// Outcome of capturing one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Captured {
    /// The object is in the backup with the listed size.
    Yes,
    /// The object no longer exists at the source.
    Vanished,
}

/// The caller's side of a cut: moving bytes into the backup. [`Reader::read`] answers reads of
/// captured objects (snapshots, checkpoints, catalog files) from the backup.
pub trait Capture: Reader {
    /// Capture `objects` (all of one `phase`) into the backup and return one outcome per object,
    /// in order. Immutable objects the backup already holds with the same key and size may be
    /// answered without reading the source; mutable ones must be read again.
    fn capture(
        &mut self,
        phase: Phase,
        objects: &[SourceObject],
    ) -> impl Future<Output = Result<Vec<Captured>>> + Send;

    /// Of the captured snapshot files `keys`, which have settled references: the caller knows
    /// that every Parquet file each references is captured with its recorded size (it is the
    /// same file as in an earlier cut whose rules all held, and every Parquet file of that cut
    /// is captured here unchanged). Their references are not read (DESIGN §4.3: settled
    /// snapshots); every other field is. One answer per key, in order; by default none.
    fn settled_snapshots(&self, keys: &[&str]) -> Vec<bool> {
        vec![false; keys.len()]
    }

    /// The header of the settled snapshot file `key`, if the caller kept it from an earlier cut
    /// ([`CutReport::snapshot_headers`]): the file is then not read at all. By default none.
    fn known_header(&self, key: &str) -> Option<SnapshotHeader> {
        let _ = key;
        None
    }

    /// Whether the caller may have an earlier cut's Parquet tree ([`Capture::earlier_parquet`]):
    /// the first round then lists the rest of the node before `dbs/`. By default not.
    fn offers_earlier_parquet(&self) -> bool {
        false
    }

    /// The Parquet tree (`dbs/`) as an earlier consistent cut of this node captured it, keys and
    /// sizes in key order, to stand for a listing of it (DESIGN §4.6, following the snapshots):
    /// the server adds a Parquet file only in a snapshot, and writes the snapshot's file after
    /// its Parquet files, so what is new since that cut is referenced by a snapshot file new
    /// since, and is captured by reference (step 3). `rest` is the node's listing without
    /// `dbs/`, for the caller to decline when it shows another node than that cut's (a snapshot
    /// file of that cut gone, of another size, or written since). Asked once, at the first
    /// round. `None` (the default): list `dbs/`.
    fn earlier_parquet(&mut self, rest: &[SourceObject]) -> Option<Vec<(String, u64)>> {
        let _ = rest;
        None
    }
}

/// Tuning of a cut.
#[derive(Debug, Clone)]
pub struct CutOptions {
    /// The node prefix (`node0`), as recorded inside snapshot files.
    pub node_prefix: String,
    /// Rounds after the first before giving up.
    pub max_replans: u32,
    /// Return a cut that breaks rules instead of failing (its judgement says what is wrong).
    pub allow_inconsistent: bool,
    /// Whether the catalog lives under the node prefix (Core). An Enterprise data node's catalog
    /// lives under the cluster id: its cut leaves the catalog to [`take_catalog_cut`].
    pub catalog_in_prefix: bool,
}

/// What a cut captured and why it is consistent.
#[derive(Debug, Clone)]
pub struct CutReport {
    /// Layout found.
    pub layout: Layout,
    /// Rules applied to the final captured set.
    pub judgement: Judgement,
    /// The captured set: relative key → size. Every key here was captured.
    pub objects: BTreeMap<String, u64>,
    /// Rounds after the first.
    pub replans: u32,
    /// Why each re-plan happened.
    pub replan_reasons: Vec<String>,
    /// Objects that vanished from the source during the run.
    pub vanished: Vec<String>,
    /// Derived table-index objects left out.
    pub derived_skipped: u64,
    /// The header of each captured snapshot file that removes no files, by key: for the caller
    /// to keep, so that a later cut that finds the file settled need not read it
    /// ([`Capture::known_header`]).
    pub snapshot_headers: BTreeMap<String, SnapshotHeader>,
    /// Whether `dbs/` was taken from an earlier cut ([`Capture::earlier_parquet`]) instead of
    /// being listed.
    pub parquet_followed: bool,
}

/// Working state of a cut across rounds.
#[derive(Default)]
struct State {
    objects: BTreeMap<String, u64>,
    /// Sorted by sequence number: the judge borrows them as a slice.
    snapshots: Vec<PersistedSnapshot>,
    /// Sequence numbers (from the file names) of the snapshot files parsed.
    snapshots_parsed: BTreeSet<u64>,
    /// Headers of the snapshot files parsed (or known), by key ([`CutReport::snapshot_headers`]).
    snapshot_headers: BTreeMap<String, SnapshotHeader>,
    checkpoints: BTreeMap<String, SnapshotCheckpoint>,
    catalog_files: BTreeMap<String, CatalogFileInfo>,
    vanished: BTreeSet<String>,
    layout: Option<Layout>,
    derived_skipped: u64,
    /// `dbs/` came from an earlier cut ([`Capture::earlier_parquet`]), not a listing.
    parquet_followed: bool,
    /// Take no snapshot file as settled ([`State::read_snapshots_in_full`]).
    settle_none: bool,
}

/// Capture a consistent cut of the node prefix `source` is rooted at.
pub async fn take_consistent_cut<C: Capture + Send>(
    source: &dyn ObjectStore,
    capture: &mut C,
    options: &CutOptions,
) -> Result<CutReport> {
    let mut state = State::default();
    let mut replan_reasons = Vec::new();
    let mut round = 0u32;
    loop {
        let reason = run_round(source, capture, options, &mut state, round == 0).await?;
        let scope = if options.catalog_in_prefix {
            CatalogScope::Here
        } else {
            CatalogScope::Elsewhere
        };
        let judging = std::time::Instant::now();
        let judgement = state.judge(&options.node_prefix, scope);
        tracing::debug!(
            ms = judging.elapsed().as_millis() as u64,
            "cut: judged the captured set"
        );
        let reason = reason.or_else(|| {
            judgement
                .has_errors()
                .then(|| format!("the cut breaks a rule: {}", first_error(&judgement)))
        });
        match reason {
            Some(reason) if round < options.max_replans => {
                tracing::info!(round, %reason, "re-planning the cut");
                replan_reasons.push(reason);
                round += 1;
            }
            Some(reason) if !options.allow_inconsistent => {
                return Err(Error::Inconsistent {
                    message: format!(
                        "no consistent backup could be captured after {} re-plans: {reason}. \
                         If the server is snapshotting faster than the backup can follow, retry \
                         with a higher --max-replans or a higher --concurrency; if the source \
                         itself is damaged (run `inspect`), --allow-inconsistent backs it up as it is",
                        options.max_replans
                    ),
                });
            }
            _ => {
                let mut snapshot_headers = state.snapshot_headers;
                snapshot_headers.retain(|key, _| state.objects.contains_key(key));
                return Ok(CutReport {
                    layout: state.layout.clone().unwrap_or_else(|| detect([])),
                    judgement,
                    objects: state.objects,
                    replans: round,
                    replan_reasons,
                    vanished: state.vanished.into_iter().collect(),
                    derived_skipped: state.derived_skipped,
                    snapshot_headers,
                    parquet_followed: state.parquet_followed,
                });
            }
        }
    }
}

/// Capture a catalog that lives apart from the data it describes (an Enterprise cluster's, under
/// the cluster id), after every node's data: its logs, then its checkpoint, then late logs, and
/// judge it against `required`, the highest catalog sequence the captured nodes need. `source`
/// is rooted at the catalog's prefix. Re-planned like [`take_consistent_cut`] on a broken rule.
pub async fn take_catalog_cut<C: Capture + Send>(
    source: &dyn ObjectStore,
    capture: &mut C,
    prefix: &str,
    required: u64,
    options: &CutOptions,
) -> Result<CutReport> {
    let mut state = State::default();
    let mut replan_reasons = Vec::new();
    for round in 0..=options.max_replans {
        let mut listing = list_classified(source, Some("catalog")).await?;
        listing.extend(list_classified(source, Some("catalogs")).await?);
        listing.extend(head_classified(source, "_catalog_checkpoint").await?);
        let layout = detect(listing.iter().map(|o| o.key.as_str()));
        let active = layout.active_catalog;
        state.layout = Some(layout);
        capture_catalog(source, capture, &mut state, active).await?;
        let judgement = state.judge(prefix, CatalogScope::HereAtLeast(required));
        if !judgement.has_errors() || round == options.max_replans {
            if judgement.has_errors() && !options.allow_inconsistent {
                return Err(Error::Inconsistent {
                    message: format!(
                        "no consistent catalog under {prefix}/ after {} re-plans: {}",
                        options.max_replans,
                        first_error(&judgement)
                    ),
                });
            }
            return Ok(CutReport {
                layout: state.layout.clone().unwrap_or_else(|| detect([])),
                judgement,
                objects: state.objects,
                replans: round,
                replan_reasons,
                vanished: state.vanished.into_iter().collect(),
                derived_skipped: 0,
                snapshot_headers: BTreeMap::new(),
                parquet_followed: false,
            });
        }
        replan_reasons.push(first_error(&judgement));
    }
    Err(Error::Inconsistent {
        message: format!("no consistent catalog under {prefix}/"),
    })
}

fn first_error(judgement: &Judgement) -> String {
    match judgement.findings.first() {
        Some(f) => match &f.object {
            Some(object) if !f.message.contains(object.as_str()) => {
                format!("{object}: {}", f.message)
            }
            _ => f.message.clone(),
        },
        None => String::new(),
    }
}

/// One round; returns why the round must be re-planned, if it must.
async fn run_round<C: Capture + Send>(
    source: &dyn ObjectStore,
    capture: &mut C,
    options: &CutOptions,
    state: &mut State,
    first: bool,
) -> Result<Option<String>> {
    let started = std::time::Instant::now();
    let step =
        |what: &str| tracing::debug!(ms = started.elapsed().as_millis() as u64, "cut: {what}");
    let listing = if first {
        let listing = if capture.offers_earlier_parquet() {
            let rest = list_besides_parquet(source).await?;
            let parquet = match capture.earlier_parquet(&rest) {
                Some(parquet) => {
                    state.parquet_followed = true;
                    classified(parquet)
                }
                None => list_classified(source, Some(PARQUET_TREE)).await?,
            };
            with_parquet(rest, parquet)
        } else {
            list_classified(source, None).await?
        };
        step("listed the node prefix");
        check_is_node(&listing, &options.node_prefix)?;
        state.derived_skipped = listing
            .iter()
            .filter(|o| o.class == ObjectClass::Derived)
            .count() as u64;
        state.layout = Some(detect(listing.iter().map(|o| o.key.as_str())));
        listing
    } else {
        // A re-plan chases the server: only its new snapshots matter (their Parquet files are
        // fetched by reference below), and re-listing a node of millions of Parquet files
        // would give the server time to snapshot again.
        let listing = list_snapshots(source).await?;
        step("listed the snapshots");
        listing
    };
    let active = state.layout.as_ref().and_then(|l| l.active_catalog);

    // 1. Parquet (and unrecognised objects), then snapshot files and checkpoints.
    let mut listing = listing;
    for phase in [Phase::Data, Phase::Snapshots] {
        let todo = state.take_not_yet_captured(&mut listing, phase, active);
        state.capture(capture, phase, todo).await?;
    }
    drop(listing);
    step("captured Parquet and snapshot files");
    state.parse_snapshots(capture).await?;
    if state.parquet_followed && state.forget_recorded_removals(&options.node_prefix) {
        state.read_snapshots_in_full(capture).await?;
    }
    step("parsed the snapshot files");

    // 2. WAL after the newest captured snapshot, contiguous from W+1.
    let newest = state.newest_snapshot();
    let wal_listing = list_classified(source, Some("wal")).await?;
    let todo = state.not_yet_captured(&wal_listing, Phase::Wal, active);
    let outcomes = state.capture(capture, Phase::Wal, todo.clone()).await?;
    let wal_floor = newest.map(|(_, w)| w);
    let required_vanished = todo.iter().zip(&outcomes).find(|(o, c)| {
        **c == Captured::Vanished && wal_seq(o).zip(wal_floor).is_none_or(|(s, w)| s > w)
    });
    if let Some((object, _)) = required_vanished {
        return Ok(Some(format!(
            "{} vanished while it was copied (the server took a snapshot)",
            object.key
        )));
    }
    // A local directory listing taken while files are created can miss some of them and still
    // show later ones: list once more and fill such holes before judging the WAL.
    if state.wal_has_inner_hole(wal_floor) {
        let again = list_classified(source, Some("wal")).await?;
        let todo = state.not_yet_captured(&again, Phase::Wal, active);
        state.capture(capture, Phase::Wal, todo).await?;
    }
    if let Some(reason) = wal_needs_replan(source, state, newest).await? {
        return Ok(Some(reason));
    }
    step("captured the WAL");

    // 3. Parquet files the snapshots reference that no listing showed. After the WAL, which the
    // server deletes at its next snapshot; Parquet files outlive many snapshots. A listing also
    // walks `dbs/` before `snapshots/` (lexicographic on every cloud store): a snapshot written
    // meanwhile references Parquet files the listing had already passed.
    let (late, gone) =
        with_current_sizes(source, state.referenced_not_captured(&options.node_prefix)).await?;
    // Gone from the source: vanished, as a read of it would find, and never answered from an
    // earlier backup's copy (an incremental would otherwise keep a file a full backup lacks).
    state.vanished.extend(gone);
    state.capture(capture, Phase::Data, late).await?;
    step("captured late-referenced Parquet files");

    // 4. Catalog last: logs of every generation, then the active checkpoint, then late logs.
    if options.catalog_in_prefix {
        capture_catalog(source, capture, state, active).await?;
        step("captured the catalog");
    }
    Ok(None)
}

/// Whether the captured WAL leaves a hole after the newest captured snapshot that a newer
/// snapshot explains (then re-plan with it).
async fn wal_needs_replan(
    source: &dyn ObjectStore,
    state: &State,
    newest: Option<(u64, u64)>,
) -> Result<Option<String>> {
    let Some((snapshot_seq, w)) = newest else {
        return Ok(None);
    };
    let after: Vec<u64> = state.wal_seqs().into_iter().filter(|s| *s > w).collect();
    let hole = match after.first() {
        Some(first) if *first != w + 1 => Some(format!("WAL file {} is missing", w + 1)),
        Some(_) => None,
        None => Some(String::new()),
    };
    let Some(hole) = hole else { return Ok(None) };
    let snapshots = list_classified(source, Some("snapshots")).await?;
    let newer = snapshots
        .iter()
        .filter_map(|o| match o.class {
            ObjectClass::Snapshot { seq } if seq > snapshot_seq => Some(seq),
            _ => None,
        })
        .max();
    Ok(newer.map(|seq| {
        if hole.is_empty() {
            format!("snapshot {seq} appeared after the WAL was listed; capturing it")
        } else {
            format!("{hole} after snapshot {snapshot_seq}: snapshot {seq} covers it")
        }
    }))
}

async fn capture_catalog<C: Capture + Send>(
    source: &dyn ObjectStore,
    capture: &mut C,
    state: &mut State,
    active: Option<CatalogGeneration>,
) -> Result<()> {
    let mut listing = list_classified(source, Some("catalog")).await?;
    listing.extend(list_classified(source, Some("catalogs")).await?);
    listing.extend(head_classified(source, "_catalog_checkpoint").await?);
    let logs = state.not_yet_captured(&listing, Phase::CatalogLogs, active);
    state.capture(capture, Phase::CatalogLogs, logs).await?;
    // The checkpoint is overwritten in place: always read it again, last.
    let checkpoint: Vec<SourceObject> = listing
        .iter()
        .filter(|o| o.class.phase(active) == Some(Phase::CatalogCheckpoint))
        .cloned()
        .collect();
    state
        .capture(capture, Phase::CatalogCheckpoint, checkpoint)
        .await?;
    if let Some(generation) = active {
        let dir = crate::path::catalog_logs_dir(generation).trim_end_matches('/');
        let late = list_classified(source, Some(dir)).await?;
        let late = state.not_yet_captured(&late, Phase::CatalogLogs, active);
        state.capture(capture, Phase::CatalogLogs, late).await?;
    }
    state.parse_catalog(capture).await
}

/// The referenced objects that exist, with the size the store reports (a file whose size differs
/// from its reference is then judged `parquet-size-mismatch` rather than failing the copy), and
/// the keys of those that do not.
async fn with_current_sizes(
    source: &dyn ObjectStore,
    objects: Vec<SourceObject>,
) -> Result<(Vec<SourceObject>, Vec<String>)> {
    use futures::StreamExt;
    let heads: Vec<Result<(SourceObject, bool)>> = futures::stream::iter(objects)
        .map(|object| async move {
            match head_classified(source, &object.key).await? {
                Some(found) => Ok((found, true)),
                None => Ok((object, false)),
            }
        })
        .buffered(16)
        .collect()
        .await;
    let (mut present, mut gone) = (Vec::new(), Vec::new());
    for head in heads {
        match head? {
            (object, true) => present.push(object),
            (object, false) => gone.push(object.key),
        }
    }
    Ok((present, gone))
}

fn wal_seq(object: &SourceObject) -> Option<u64> {
    match object.class {
        ObjectClass::Wal { seq } => Some(seq),
        _ => None,
    }
}

impl State {
    /// Whether listed `object` is of `phase` and not captured with its listed size, or mutable
    /// (always re-read).
    fn wants(
        &self,
        object: &SourceObject,
        phase: Phase,
        active: Option<CatalogGeneration>,
    ) -> bool {
        object.class.phase(active) == Some(phase)
            && (!object.class.is_immutable() || self.objects.get(&object.key) != Some(&object.size))
    }

    /// The listed objects [`State::wants`].
    fn not_yet_captured(
        &self,
        listing: &[SourceObject],
        phase: Phase,
        active: Option<CatalogGeneration>,
    ) -> Vec<SourceObject> {
        listing
            .iter()
            .filter(|o| self.wants(o, phase, active))
            .cloned()
            .collect()
    }

    /// The listed objects [`State::wants`], moved out of `listing` (at millions of objects, a
    /// copy of each key costs more than the lookups).
    fn take_not_yet_captured(
        &self,
        listing: &mut Vec<SourceObject>,
        phase: Phase,
        active: Option<CatalogGeneration>,
    ) -> Vec<SourceObject> {
        // Sized up front (most of a listing is usually wanted): not grown by copying.
        let (mut todo, mut rest) = (Vec::with_capacity(listing.len()), Vec::new());
        for object in std::mem::take(listing) {
            if self.wants(&object, phase, active) {
                todo.push(object);
            } else {
                rest.push(object);
            }
        }
        *listing = rest;
        todo
    }

    async fn capture<C: Capture + Send>(
        &mut self,
        capture: &mut C,
        phase: Phase,
        objects: Vec<SourceObject>,
    ) -> Result<Vec<Captured>> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = capture.capture(phase, &objects).await?;
        let mut captured = Vec::with_capacity(objects.len());
        for (object, outcome) in objects.into_iter().zip(&outcomes) {
            match outcome {
                Captured::Yes => captured.push((object.key, object.size)),
                Captured::Vanished => {
                    // A mutable object that vanished is no longer part of the cut; an immutable
                    // one captured in an earlier round stays (its bytes are in the backup).
                    if !object.class.is_immutable() {
                        self.objects.remove(&object.key);
                    }
                    self.vanished.insert(object.key);
                }
            }
        }
        self.add_objects(captured);
        Ok(outcomes)
    }

    /// Add captured objects (keys unique). Many at once are merged in one pass: inserted one
    /// by one, each of 100 000s of keys was compared with a dozen long keys on its way down.
    fn add_objects(&mut self, captured: Vec<(String, u64)>) {
        if captured.len() < self.objects.len() / 8 {
            self.objects.extend(captured);
            return;
        }
        // Sorted (stably) and built in bulk; `append` merges the two in one pass, and where a
        // key is in both, the one just captured counts, as an insert would have it.
        let mut more: BTreeMap<String, u64> = captured.into_iter().collect();
        self.objects.append(&mut more);
    }

    async fn parse_snapshots<C: Capture>(&mut self, capture: &C) -> Result<()> {
        use futures::StreamExt;
        let keys: Vec<(&str, ObjectClass)> = self
            .keys_under("snapshot")
            .map(|k| (k, classify(k)))
            .filter(|(k, class)| match class {
                ObjectClass::Snapshot { seq } => !self.snapshots_parsed.contains(seq),
                ObjectClass::SnapshotCheckpoint { .. } => !self.checkpoints.contains_key(*k),
                _ => false,
            })
            .collect();
        let settled = if self.settle_none {
            vec![false; keys.len()]
        } else {
            capture.settled_snapshots(&keys.iter().map(|(k, _)| *k).collect::<Vec<_>>())
        };
        let (mut to_read, mut known_headers) = (Vec::with_capacity(keys.len()), Vec::new());
        for ((key, class), settled) in keys.into_iter().zip(settled) {
            let known = match class {
                ObjectClass::Snapshot { seq } if settled => {
                    capture.known_header(key).map(|header| (seq, header))
                }
                _ => None,
            };
            match known {
                Some(known) => known_headers.push((key.to_string(), known)),
                None => to_read.push((key.to_string(), class, settled)),
            }
        }
        // A settled snapshot whose header the caller kept is not read (DESIGN §4.3).
        for (key, (seq, header)) in known_headers {
            self.snapshots_parsed.insert(seq);
            self.snapshots.push(header.snapshot());
            self.snapshot_headers.insert(key, header);
        }
        let keys = to_read;
        // Read 16 at a time: an incremental re-reads thousands of them from the repository. Each
        // is parsed on the blocking pool, so that parsing, most of this step, takes every core
        // (40 000 snapshot files: 3.1 s → 1.7 s on two cores).
        let mut parsed = futures::stream::iter(keys)
            .map(|(key, class, settled)| async move {
                let named = key.clone();
                capture
                    .read_parsed(&named, move |bytes| {
                        parse_state_file(key, class, settled, bytes)
                    })
                    .await
            })
            .buffered(SNAPSHOT_READS);
        while let Some(file) = parsed.next().await {
            match file? {
                StateFile::Snapshot(key, seq, snapshot) => {
                    if let Some(header) = SnapshotHeader::of(&snapshot) {
                        self.snapshot_headers.insert(key, header);
                    }
                    self.snapshots_parsed.insert(seq);
                    self.snapshots.push(snapshot);
                }
                StateFile::Checkpoint(key, checkpoint) => {
                    self.checkpoints.insert(key, checkpoint);
                }
            }
        }
        self.snapshots.sort_by_key(|s| s.snapshot_sequence_number);
        Ok(())
    }

    async fn parse_catalog<C: Capture>(&mut self, capture: &C) -> Result<()> {
        let keys: Vec<(String, CatalogGeneration, CatalogFileKind)> = self
            .keys_under("_catalog_checkpoint")
            .chain(self.keys_under("catalog"))
            .filter_map(|k| match classify(k) {
                ObjectClass::CatalogLog { generation, .. }
                    if !self.catalog_files.contains_key(k) =>
                {
                    Some((k.to_string(), generation, CatalogFileKind::Log))
                }
                // Checkpoints change in place: parse what was captured this time.
                ObjectClass::CatalogCheckpoint { generation } => {
                    Some((k.to_string(), generation, CatalogFileKind::Checkpoint))
                }
                _ => None,
            })
            .collect();
        for (key, generation, kind) in keys {
            let bytes = capture.read(&key).await?;
            let info = parse_catalog_file(&key, generation, kind, &bytes)?;
            self.catalog_files.insert(key, info);
        }
        Ok(())
    }

    /// The Parquet files the captured snapshots (`removed_files`) and checkpoints
    /// (`pending_removed_files`) record as removed by the server.
    fn recorded_removals(&self) -> impl Iterator<Item = &ParquetRef> {
        self.snapshots
            .iter()
            .flat_map(|s| s.removed_files.iter())
            .chain(
                self.checkpoints
                    .values()
                    .flat_map(|c| c.pending_removed_files.iter()),
            )
    }

    /// Drop the Parquet files the server recorded as removed (`removed_files`,
    /// `pending_removed_files`) from a cut whose `dbs/` came from an earlier cut: the server
    /// deletes such a file before it writes the snapshot that records it, so a listing would no
    /// longer show it, and a cut that follows the snapshots holds what a listing would. Whether
    /// any was dropped.
    fn forget_recorded_removals(&mut self, node_prefix: &str) -> bool {
        let prefix = format!("{node_prefix}/");
        let removed: Vec<String> = self
            .recorded_removals()
            .filter_map(|f| f.path.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        let mut dropped = false;
        for key in removed {
            dropped |= self.objects.remove(&key).is_some();
        }
        dropped
    }

    /// Parse every snapshot file again with its references, settling none: once a cut has
    /// dropped files of the earlier cut ([`State::forget_recorded_removals`]), a snapshot file
    /// settled on that cut's tree no longer has every reference captured, and the judge must see
    /// the references the server removed, as it does in a cut that lists `dbs/`.
    async fn read_snapshots_in_full<C: Capture>(&mut self, capture: &C) -> Result<()> {
        self.settle_none = true;
        self.snapshots.clear();
        self.snapshots_parsed.clear();
        self.parse_snapshots(capture).await
    }

    /// Parquet files referenced by captured snapshots or checkpoints (and not recorded as
    /// removed) that are neither captured nor known to be gone.
    fn referenced_not_captured(&self, node_prefix: &str) -> Vec<SourceObject> {
        let removed: FxHashSet<&str> = self.recorded_removals().map(|f| f.path.as_str()).collect();
        let prefix = format!("{node_prefix}/");
        let references = references_in(&self.snapshots, self.checkpoints.values());
        let mut wanted = in_shards(references, |shard| {
            self.not_captured_in(shard, &prefix, &removed, references / shard.of + 1)
        });
        wanted.sort_unstable();
        wanted
            .into_iter()
            .map(|(key, size)| SourceObject::unlisted(key.to_string(), size))
            .collect()
    }

    /// [`State::referenced_not_captured`] of the keys in `shard`: key and recorded size.
    fn not_captured_in<'s>(
        &'s self,
        shard: Shard,
        prefix: &str,
        removed: &FxHashSet<&str>,
        capacity: usize,
    ) -> Vec<(&'s str, u64)> {
        let snapshot_refs = self.snapshots.iter().flat_map(|s| s.files.iter());
        let checkpoint_refs = self.checkpoints.values().flat_map(|c| c.files.iter());
        // Sized up front: growing would rehash every path so far (see `rules`).
        let mut wanted: FxHashMap<&str, u64> =
            FxHashMap::with_capacity_and_hasher(capacity, Default::default());
        for file in snapshot_refs.chain(checkpoint_refs) {
            let Some(key) = file.path.strip_prefix(prefix) else {
                continue;
            };
            if shard.holds(key) && !removed.contains(file.path.as_str()) {
                wanted.entry(key).or_insert(file.size_bytes);
            }
        }
        // A cut that took `dbs/` from an earlier cut looks again at a file held at another size
        // than its reference records: a listing would have shown the file as it is now.
        let followed = self.parquet_followed;
        let known = |key: &str, size: u64| match self.objects.get(key) {
            Some(held) => !followed || *held == size,
            None => self.vanished.contains(key),
        };
        if wanted.len() < self.objects.len() / FEW_REFERENCES {
            // Few references (those of new snapshots; settled ones have none): a lookup each.
            wanted.retain(|key, size| !known(key, *size));
        } else {
            // Struck off by one walk of the captured objects in order: a lookup per reference in
            // their ordered map, in snapshot order, jumped around memory (1 s at 2 000 000
            // files).
            for (key, held) in &self.objects {
                if !shard.holds(key) {
                    continue;
                }
                if let Entry::Occupied(reference) = wanted.entry(key.as_str()) {
                    if !followed || reference.get() == held {
                        reference.remove();
                    }
                }
            }
            for key in self.vanished.iter().filter(|key| shard.holds(key)) {
                wanted.remove(key.as_str());
            }
        }
        wanted.into_iter().collect()
    }

    /// (snapshot sequence, W) of the newest captured snapshot.
    fn newest_snapshot(&self) -> Option<(u64, u64)> {
        self.snapshots
            .last()
            .map(|s| (s.snapshot_sequence_number, s.wal_file_sequence_number))
    }

    /// Whether the captured WAL after `floor` (W, or nothing without snapshot) skips a number
    /// between its first and last file.
    fn wal_has_inner_hole(&self, floor: Option<u64>) -> bool {
        let seqs: Vec<u64> = self
            .wal_seqs()
            .into_iter()
            .filter(|s| floor.is_none_or(|w| *s > w))
            .collect();
        seqs.windows(2).any(|pair| pair[1] != pair[0] + 1)
    }

    /// Captured keys that start with `prefix` (a range of the sorted map, not a scan: a
    /// re-plan asks this of a cut holding millions of Parquet files).
    fn keys_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k.as_str())
            .take_while(move |k| k.starts_with(prefix))
    }

    fn wal_seqs(&self) -> Vec<u64> {
        self.keys_under("wal/")
            .filter_map(|k| match classify(k) {
                ObjectClass::Wal { seq } => Some(seq),
                _ => None,
            })
            .collect()
    }

    fn judge(&self, node_prefix: &str, scope: CatalogScope) -> Judgement {
        let checkpoints: Vec<SnapshotCheckpoint> = self.checkpoints.values().cloned().collect();
        judge(&CapturedSet {
            node_prefix,
            objects: &self.objects,
            snapshots: &self.snapshots,
            checkpoints: &checkpoints,
            catalog_files: &self.catalog_files,
            active_catalog: self.layout.as_ref().and_then(|l| l.active_catalog),
            catalog: scope,
        })
    }
}

/// List every object under `prefix` (relative to the store root), classified, derived included.
pub async fn list_classified(
    source: &dyn ObjectStore,
    prefix: Option<&str>,
) -> Result<Vec<SourceObject>> {
    let prefix = prefix.map(Path::from);
    let listed = list_fanned_out(source, prefix.as_ref())
        .await
        .map_err(|source| Error::Store {
            object: prefix
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "(node prefix)".into()),
            source,
        })?;
    // Classified run by run into one vector sized first, each run freed once read: flattened
    // first, millions of listed objects were copied once more into fresh memory.
    let mut classified = Vec::with_capacity(listed.iter().map(Vec::len).sum());
    for run in listed {
        classified.extend(run.into_iter().map(SourceObject::listed));
    }
    Ok(classified)
}

/// The node prefix listed except `dbs/`: one listing with a delimiter at the top, then each
/// other top-level prefix listed in full. In key order, as [`list_classified`] gives it.
async fn list_besides_parquet(source: &dyn ObjectStore) -> Result<Vec<SourceObject>> {
    use futures::StreamExt;
    let top = source
        .list_with_delimiter(None)
        .await
        .map_err(|source| Error::Store {
            object: "(node prefix)".into(),
            source,
        })?;
    // Runs keyed as they sort among keys: a file by its key, a prefix by itself and a `/`.
    let mut runs: Vec<(String, Vec<SourceObject>)> = top
        .objects
        .into_iter()
        .map(|meta| {
            let object = SourceObject::listed(meta);
            (object.key.clone(), vec![object])
        })
        .collect();
    let prefixes: Vec<String> = top
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .filter(|p| p != PARQUET_TREE)
        .collect();
    let listed: Vec<Result<(String, Vec<SourceObject>)>> = futures::stream::iter(prefixes)
        .map(|prefix| async move {
            let listed = list_classified(source, Some(&prefix)).await?;
            Ok((format!("{prefix}/"), listed))
        })
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
    for run in listed {
        runs.push(run?);
    }
    runs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(runs.into_iter().flat_map(|(_, run)| run).collect())
}

/// `rest` (a listing in key order without `dbs/`) with `parquet` (keys under `dbs/`, in key
/// order) where they sort.
fn with_parquet(mut rest: Vec<SourceObject>, parquet: Vec<SourceObject>) -> Vec<SourceObject> {
    let at = rest.partition_point(|o| o.key.as_str() < "dbs/");
    let after = rest.split_off(at);
    rest.reserve(parquet.len() + after.len());
    rest.extend(parquet);
    rest.extend(after);
    rest
}

/// Keys and sizes as classified source objects.
fn classified(objects: Vec<(String, u64)>) -> Vec<SourceObject> {
    objects
        .into_iter()
        .map(|(key, size)| SourceObject::unlisted(key, size))
        .collect()
}

/// The top-level prefix of a node's Parquet files.
const PARQUET_TREE: &str = "dbs";

/// The snapshot files and snapshot checkpoints, classified.
async fn list_snapshots(source: &dyn ObjectStore) -> Result<Vec<SourceObject>> {
    let mut listing = list_classified(source, Some("snapshots")).await?;
    listing.extend(list_classified(source, Some("snapshot-checkpoints")).await?);
    Ok(listing)
}

/// References fewer than the captured objects over this are looked up one by one; more, struck
/// off by one walk of the captured objects.
pub(crate) const FEW_REFERENCES: usize = 16;

/// Snapshot files read at once.
const SNAPSHOT_READS: usize = 16;

/// A parsed snapshot file (with the sequence number its name gives) or snapshot checkpoint.
enum StateFile {
    Snapshot(String, u64, PersistedSnapshot),
    Checkpoint(String, SnapshotCheckpoint),
}

/// Parse `bytes`, the snapshot file or snapshot checkpoint at `key` (classified as `class`); a
/// `settled` snapshot without its references ([`Capture::settled_snapshots`]).
fn parse_state_file(
    key: String,
    class: ObjectClass,
    settled: bool,
    bytes: &[u8],
) -> Result<StateFile> {
    Ok(match class {
        ObjectClass::Snapshot { seq } if settled => {
            let snapshot = parse_snapshot_header(&key, bytes)?;
            StateFile::Snapshot(key, seq, snapshot)
        }
        ObjectClass::Snapshot { seq } => {
            let snapshot = parse_snapshot(&key, bytes)?;
            StateFile::Snapshot(key, seq, snapshot)
        }
        _ => {
            let checkpoint = parse_snapshot_checkpoint(&key, bytes)?;
            StateFile::Checkpoint(key, checkpoint)
        }
    })
}

/// Listings in flight at once.
const LIST_CONCURRENCY: usize = 16;
/// Enough prefixes to keep the listings busy: stop descending.
const LIST_FRONTIER: usize = 4 * LIST_CONCURRENCY;
/// Levels descended at most (`dbs/<db>/<table>/<date>/`).
const LIST_DEPTH: usize = 4;

/// Every object under `prefix`, listed in parallel: descend level by level with a delimiter
/// until there are enough sub-prefixes (a node's `dbs/<db>/<table>/<date>/`), then list each of
/// them in full, [`LIST_CONCURRENCY`] at a time. A node of millions of files is listed in
/// parallel requests instead of one paged sequence (1 000 keys per request on S3). The objects
/// come in runs: those of the levels above, then each sub-prefix's, in key order.
async fn list_fanned_out(
    store: &dyn ObjectStore,
    prefix: Option<&Path>,
) -> object_store::Result<Vec<Vec<ObjectMeta>>> {
    use futures::StreamExt;
    let mut objects = Vec::new();
    let mut frontier = vec![prefix.cloned()];
    for _ in 0..LIST_DEPTH {
        if frontier.is_empty() || frontier.len() >= LIST_FRONTIER {
            break;
        }
        let levels: Vec<ListResult> = futures::stream::iter(frontier)
            .map(|p| async move { store.list_with_delimiter(p.as_ref()).await })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        frontier = Vec::new();
        for level in levels {
            objects.extend(level.objects);
            frontier.extend(level.common_prefixes.into_iter().map(Some));
        }
    }
    // Put in the order of their keys (a prefix's keys all sort where the prefix and a `/` do),
    // each listed in key order by every store: after the few files of the levels above, the
    // rest comes out as one run in order, which the cut's tree of objects takes with a merge
    // instead of sorting 100 000s of keys. Listed as they finish (listed in order, one large
    // prefix would hold back the start of every other), ordered after.
    frontier.sort_by_cached_key(|p| p.as_ref().map(|p| format!("{p}/")));
    let mut rest: Vec<(usize, Vec<ObjectMeta>)> =
        futures::stream::iter(frontier.iter().enumerate())
            .map(|(at, p)| async move {
                let listed = store.list(p.as_ref()).try_collect::<Vec<_>>().await?;
                Ok::<_, object_store::Error>((at, listed))
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
    rest.sort_unstable_by_key(|(at, _)| *at);
    let mut runs = vec![objects];
    runs.extend(rest.into_iter().map(|(_, listed)| listed));
    Ok(runs)
}

async fn head_classified(source: &dyn ObjectStore, key: &str) -> Result<Option<SourceObject>> {
    use object_store::ObjectStoreExt;
    match source.head(&Path::from(key)).await {
        Ok(meta) => Ok(Some(SourceObject::listed(meta))),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Store {
            object: key.to_string(),
            source,
        }),
    }
}

/// Refuse an empty prefix, or one with no InfluxDB 3 object in it.
fn check_is_node(listing: &[SourceObject], node_prefix: &str) -> Result<()> {
    if listing.is_empty() {
        return Err(Error::NotANode {
            message: format!("no objects under the node prefix {node_prefix}/"),
        });
    }
    let recognised = listing
        .iter()
        .any(|o| !matches!(o.class, ObjectClass::Unknown));
    if !recognised {
        return Err(Error::NotANode {
            message: format!(
                "{node_prefix}/ holds {} objects but none is an InfluxDB 3 file (no wal/, snapshots/, dbs/ or catalog); e.g. {}",
                listing.len(),
                listing[0].key
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Deterministic races: a capture that lets the "server" act between listing and copying.
    use super::*;
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    use std::path::PathBuf;
    use std::sync::Arc;

    #[test]
    fn shards_together_find_the_references_one_finds() {
        use crate::path::testing::{fixture_objects, read};
        for fixture in [
            "core-3.10.0-basic",
            "core-3.10.0-retention",
            "core-3.9.6-basic",
        ] {
            let mut state = State::default();
            for (key, size) in fixture_objects(fixture) {
                match classify(&key) {
                    ObjectClass::Snapshot { .. } => {
                        let bytes = read(fixture, &key);
                        state.snapshots.push(parse_snapshot(&key, &bytes).unwrap());
                    }
                    // Some Parquet files not captured, one of them known to be gone.
                    ObjectClass::Parquet if size % 3 == 0 => {
                        if size % 2 == 0 {
                            state.vanished.insert(key);
                        }
                        continue;
                    }
                    _ => {}
                }
                state.objects.insert(key, size);
            }
            let removed: FxHashSet<&str> = state
                .snapshots
                .iter()
                .flat_map(|s| s.removed_files.iter().map(|f| f.path.as_str()))
                .collect();
            let not_captured = |of: usize| {
                let mut all: Vec<(&str, u64)> = (0..of as u64)
                    .flat_map(|index| {
                        state.not_captured_in(Shard { index, of }, "node0/", &removed, 8)
                    })
                    .collect();
                all.sort_unstable();
                all
            };
            let whole = not_captured(1);
            assert!(!whole.is_empty(), "{fixture}");
            assert!(whole
                .iter()
                .all(|(key, _)| !state.objects.contains_key(*key)));
            assert!(whole.iter().all(|(key, _)| !state.vanished.contains(*key)));
            assert_eq!(not_captured(3), whole, "{fixture}");
            let listed = state.referenced_not_captured("node0");
            assert_eq!(listed.len(), whole.len(), "{fixture}");
        }
    }

    fn fixture_node(name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures")
            .join(name)
            .join("data/node0");
        assert!(dir.is_dir(), "missing fixture {}", dir.display());
        dir
    }

    fn files(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }

    async fn load(name: &str) -> Arc<InMemory> {
        let store = Arc::new(InMemory::new());
        let root = fixture_node(name);
        let mut all = Vec::new();
        files(&root, &root, &mut all);
        for (key, bytes) in all {
            store
                .put(&Path::from(key), PutPayload::from(bytes))
                .await
                .unwrap();
        }
        store
    }

    /// What the "server" does to the source just before the WAL phase.
    type Hook =
        Box<dyn FnOnce(Arc<InMemory>) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

    /// Copies into a map; before the first WAL phase runs `on_wal` against the source.
    struct MapCapture {
        source: Arc<InMemory>,
        copied: std::sync::Mutex<BTreeMap<String, Bytes>>,
        on_wal: Option<Hook>,
        /// Answer every snapshot file as settled.
        settle: bool,
        /// Snapshot headers kept by an earlier cut ([`Capture::known_header`]).
        headers: BTreeMap<String, SnapshotHeader>,
        /// Keys read back, in order.
        reads: std::sync::Mutex<Vec<String>>,
        /// An earlier cut's `dbs/` ([`Capture::earlier_parquet`]).
        earlier: Option<Vec<(String, u64)>>,
    }

    impl MapCapture {
        /// A cut of this capture's source, which must succeed.
        async fn cut(&mut self) -> CutReport {
            let source = self.source.clone();
            take_consistent_cut(source.as_ref(), self, &options())
                .await
                .unwrap()
        }

        fn new(source: Arc<InMemory>) -> Self {
            MapCapture {
                source,
                copied: Default::default(),
                on_wal: None,
                settle: false,
                headers: BTreeMap::new(),
                reads: Default::default(),
                earlier: None,
            }
        }
    }

    impl Reader for MapCapture {
        async fn read(&self, key: &str) -> Result<Bytes> {
            self.reads.lock().unwrap().push(key.to_string());
            Ok(self.copied.lock().unwrap().get(key).cloned().unwrap())
        }
    }

    impl Capture for MapCapture {
        async fn capture(
            &mut self,
            phase: Phase,
            objects: &[SourceObject],
        ) -> Result<Vec<Captured>> {
            if phase == Phase::Wal {
                if let Some(hook) = self.on_wal.take() {
                    hook(self.source.clone()).await;
                }
            }
            let mut out = Vec::new();
            for o in objects {
                match self.source.get(&Path::from(o.key.as_str())).await {
                    Ok(r) => {
                        let bytes = r.bytes().await.unwrap();
                        self.copied.lock().unwrap().insert(o.key.clone(), bytes);
                        out.push(Captured::Yes);
                    }
                    Err(_) => out.push(Captured::Vanished),
                }
            }
            Ok(out)
        }

        fn settled_snapshots(&self, keys: &[&str]) -> Vec<bool> {
            vec![self.settle; keys.len()]
        }

        fn known_header(&self, key: &str) -> Option<SnapshotHeader> {
            self.headers.get(key).cloned()
        }

        fn offers_earlier_parquet(&self) -> bool {
            self.earlier.is_some()
        }

        fn earlier_parquet(&mut self, _rest: &[SourceObject]) -> Option<Vec<(String, u64)>> {
            self.earlier.take()
        }
    }

    fn options() -> CutOptions {
        CutOptions {
            node_prefix: "node0".into(),
            max_replans: 3,
            allow_inconsistent: false,
            catalog_in_prefix: true,
        }
    }

    /// What a fanned-out listing lists in full comes out in key order, also where a directory's
    /// name is another's followed by a character that sorts before `/` (`a-b/…` before `a/…`);
    /// the files of the levels above (here `wal/`) come first, each level's in its order.
    #[tokio::test]
    async fn fanned_out_listings_come_in_key_order() {
        let store = InMemory::new();
        for db in ["a", "a-b", "a.b", "b"] {
            for table in ["t", "t-1"] {
                for hour in ["00-00", "00-10"] {
                    let key = format!("dbs/{db}/{table}/2026-11-25/{hour}/1.parquet");
                    store
                        .put(&Path::from(key), PutPayload::from_static(b"p"))
                        .await
                        .unwrap();
                }
            }
        }
        store
            .put(
                &Path::from("wal/00000000001.wal"),
                PutPayload::from_static(b"w"),
            )
            .await
            .unwrap();
        let keys: Vec<String> = list_classified(&store, None)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys.len(), 17);
        assert_eq!(keys[0], "wal/00000000001.wal");
        let mut sorted = keys[1..].to_vec();
        sorted.sort();
        assert_eq!(keys[1..], sorted);
    }

    /// A cut that follows the snapshot files takes an earlier cut's `dbs/` as its listing: a
    /// Parquet file that no snapshot file references stays out, and a referenced file that the
    /// earlier tree holds at another size than its reference records is looked at again and
    /// captured as it is now; the judgement is a listing's.
    #[tokio::test]
    async fn a_cut_following_the_snapshots_takes_the_earlier_tree_and_rechecks_sizes() {
        let source = load("core-3.10.0-basic").await;
        let listed = MapCapture::new(source.clone()).cut().await;
        assert!(!listed.parquet_followed);
        let mut earlier: Vec<(String, u64)> = listed
            .objects
            .iter()
            .filter(|(key, _)| key.starts_with("dbs/"))
            .map(|(key, size)| (key.clone(), *size))
            .collect();
        assert!(earlier.len() > 2);
        let (resized, size) = earlier[1].clone();
        earlier[1].1 = size + 7;
        let stray = "dbs/9/9/2030-01-01/00-00/0000000001.parquet";
        source
            .put(&Path::from(stray), PutPayload::from_static(b"PAR1 PAR1"))
            .await
            .unwrap();

        let mut capture = MapCapture::new(source.clone());
        capture.earlier = Some(earlier);
        let followed = capture.cut().await;
        assert!(followed.parquet_followed);
        assert!(!followed.objects.contains_key(stray));
        assert_eq!(followed.objects.get(&resized), Some(&size));
        assert_eq!(followed.objects, listed.objects);
        assert_eq!(followed.judgement, listed.judgement);
    }

    /// Settled snapshots are judged without their references: on a complete cut the judgement
    /// is the same as with them; the caller's word is taken, so a Parquet file missing under a
    /// settled snapshot goes unseen (which is why a caller settles only what it proved), while
    /// snapshot checkpoints are always read whole.
    #[tokio::test]
    async fn settled_snapshots_are_judged_by_their_header() {
        let source = load("core-3.10.0-basic").await;
        let cut = |settle: bool, source: Arc<InMemory>| async move {
            let mut capture = MapCapture::new(source.clone());
            capture.settle = settle;
            let report = capture.cut().await;
            (report.judgement, report.objects)
        };
        let (read, objects) = cut(false, source.clone()).await;
        let (settled, settled_objects) = cut(true, source.clone()).await;
        assert_eq!(settled, read);
        assert_eq!(settled_objects, objects);
        assert!(read.findings.is_empty(), "{:?}", read.findings);

        // The newest file: referenced by snapshots only, none of the (never settled) checkpoints.
        let parquet = objects
            .keys()
            .rev()
            .find(|k| k.ends_with(".parquet"))
            .unwrap();
        source.delete(&Path::from(parquet.as_str())).await.unwrap();
        let (read, _) = cut(false, source.clone()).await;
        let codes: Vec<&str> = read.findings.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["parquet-missing"]);
        let (settled, _) = cut(true, source).await;
        assert!(settled.findings.is_empty(), "{:?}", settled.findings);
    }

    /// A cut reports the header of every snapshot file that removes nothing; a later cut given
    /// those headers for settled files reads none of them (only those that remove files), and
    /// judges as a settled cut that reads them does.
    #[tokio::test]
    async fn kept_headers_stand_for_settled_snapshot_files_unread() {
        let source = load("core-3.10.0-retention").await;
        let mut first = MapCapture::new(source.clone());
        let read_all = first.cut().await;
        let snapshots: Vec<&String> = read_all
            .objects
            .keys()
            .filter(|k| matches!(classify(k), ObjectClass::Snapshot { .. }))
            .collect();
        assert_eq!(snapshots.len(), 32);
        // Four of the fixture's snapshot files record removals: no header is kept for them.
        let removing: Vec<&&String> = snapshots
            .iter()
            .filter(|k| !read_all.snapshot_headers.contains_key(k.as_str()))
            .collect();
        assert_eq!(removing.len(), 4, "{removing:?}");
        assert_eq!(read_all.snapshot_headers.len(), 28);

        let mut later = MapCapture::new(source.clone());
        later.settle = true;
        later.headers = read_all.snapshot_headers.clone();
        let from_headers = later.cut().await;
        // As a settled cut that reads the headers judges (settled files' references unread, so
        // the removals they would show are not: a caller settles only where there are none).
        let mut settled = MapCapture::new(source.clone());
        settled.settle = true;
        let settled = settled.cut().await;
        assert_eq!(from_headers.judgement, settled.judgement);
        assert_eq!(from_headers.judgement.point, read_all.judgement.point);
        assert_eq!(from_headers.objects, read_all.objects);
        assert_eq!(from_headers.snapshot_headers, read_all.snapshot_headers);
        let reads = later.reads.into_inner().unwrap();
        let snapshot_reads: Vec<&String> = reads
            .iter()
            .filter(|k| k.starts_with("snapshots/"))
            .collect();
        assert_eq!(snapshot_reads.len(), 4, "{snapshot_reads:?}");
        assert!(snapshot_reads.iter().all(|k| removing.contains(&k)));

        // Not settled: a kept header is not taken, every file is read.
        let mut unsettled = MapCapture::new(source.clone());
        unsettled.headers = read_all.snapshot_headers.clone();
        unsettled.cut().await;
        let reads = unsettled.reads.into_inner().unwrap();
        assert_eq!(
            reads.iter().filter(|k| k.starts_with("snapshots/")).count(),
            32
        );
    }

    #[tokio::test]
    async fn static_fixture_needs_no_replan() {
        let source = load("core-3.10.0-basic").await;
        let mut capture = MapCapture::new(source.clone());
        let report = capture.cut().await;
        assert_eq!(report.replans, 0);
        assert!(
            !report.judgement.has_errors(),
            "{:?}",
            report.judgement.findings
        );
        assert_eq!(report.judgement.point.wal_first, Some(178));
        assert_eq!(report.derived_skipped, 4);
        assert!(!report.objects.keys().any(|k| k.starts_with("db-indices")));
    }

    /// The server snapshots between our snapshot capture and our WAL listing: it writes a new
    /// snapshot covering WAL 178–179 and deletes them. The cut must re-plan and take the new one.
    #[tokio::test]
    async fn snapshot_during_backup_forces_a_replan_with_the_new_snapshot() {
        let source = load("core-3.10.0-basic").await;
        let hook = |store: Arc<InMemory>| -> futures::future::BoxFuture<'static, ()> {
            Box::pin(async move {
                let newest = crate::path::snapshot_key(59);
                let bytes = store
                    .get(&Path::from(newest))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                json["snapshot_sequence_number"] = 60.into();
                json["wal_file_sequence_number"] = 179.into();
                // Snapshot 60 persists one new Parquet file; another one, unreferenced, is
                // still being written. Both appear after the first round's listing.
                let parquet = "dbs/1/0/2026-11-25/09-59/0000000180.parquet";
                let unreferenced = "dbs/1/0/2026-11-25/09-59/0000000181.parquet";
                for key in [parquet, unreferenced] {
                    store
                        .put(
                            &Path::from(key),
                            Bytes::from_static(b"PAR1 rows PAR1").into(),
                        )
                        .await
                        .unwrap();
                }
                json["databases"] = serde_json::json!([[1, {"tables": [[0, [{
                    "id": 999, "path": format!("node0/{parquet}"), "size_bytes": 14,
                    "row_count": 1, "chunk_time": 0, "min_time": 0, "max_time": 0
                }]]]}]]);
                let key = crate::path::snapshot_key(60);
                store
                    .put(
                        &Path::from(key),
                        serde_json::to_vec_pretty(&json).unwrap().into(),
                    )
                    .await
                    .unwrap();
                for seq in [176, 177, 178, 179] {
                    store
                        .delete(&Path::from(crate::path::wal_key(seq)))
                        .await
                        .unwrap();
                }
            })
        };
        let mut capture = MapCapture::new(source.clone());
        capture.on_wal = Some(Box::new(hook));
        let report = capture.cut().await;
        assert_eq!(report.replans, 1, "{:?}", report.replan_reasons);
        assert_eq!(report.judgement.point.snapshot_sequence_number, Some(60));
        assert_eq!(report.judgement.point.wal_first, Some(180));
        assert!(
            !report.judgement.has_errors(),
            "{:?}",
            report.judgement.findings
        );
        // The re-plan fetched the new snapshot's Parquet file by reference and did not list
        // the node again (the unreferenced file is beyond the cut).
        let objects = &report.objects;
        assert!(objects.contains_key("dbs/1/0/2026-11-25/09-59/0000000180.parquet"));
        assert!(!objects.contains_key("dbs/1/0/2026-11-25/09-59/0000000181.parquet"));
    }

    /// A real hole in the WAL that no snapshot explains is not papered over.
    #[tokio::test]
    async fn wal_gap_without_a_newer_snapshot_fails_after_replans() {
        let source = load("core-3.10.0-basic").await;
        source
            .delete(&Path::from(crate::path::wal_key(179)))
            .await
            .unwrap();
        let mut capture = MapCapture::new(source.clone());
        let err = take_consistent_cut(source.as_ref(), &mut capture, &options())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Inconsistent { .. }), "{err}");
        assert!(err.to_string().contains("00000000179.wal"), "{err}");
        let mut allowed = options();
        allowed.allow_inconsistent = true;
        let report = take_consistent_cut(source.as_ref(), &mut capture, &allowed)
            .await
            .unwrap();
        assert!(report.judgement.has_errors());
    }

    #[tokio::test]
    async fn foreign_and_empty_prefixes_are_not_nodes() {
        let store = InMemory::new();
        let mut capture = MapCapture::new(Arc::new(InMemory::new()));
        let err = take_consistent_cut(&store, &mut capture, &options())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotANode { .. }));
        store
            .put(&Path::from("photos/cat.jpg"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let err = take_consistent_cut(&store, &mut capture, &options())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("none is an InfluxDB 3 file"),
            "{err}"
        );
    }

    /// An Enterprise-style split: the node's data under one prefix, its catalog under another
    /// (the cluster id). The node cut leaves the catalog out and reports what it needs; the
    /// catalog cut, taken after, must reach it.
    #[tokio::test]
    async fn catalog_elsewhere_is_captured_apart_and_judged_against_the_nodes_need() {
        let whole = load("core-3.10.0-basic").await;
        let node = Arc::new(InMemory::new());
        let cluster = Arc::new(InMemory::new());
        let keys: Vec<String> = list_classified(whole.as_ref(), None)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        for key in keys {
            let bytes = whole
                .get(&Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let to = if key.starts_with("catalog/") {
                &cluster
            } else {
                &node
            };
            to.put(&Path::from(key.as_str()), PutPayload::from(bytes))
                .await
                .unwrap();
        }
        let mut options = options();
        options.catalog_in_prefix = false;
        let mut node_capture = MapCapture::new(node.clone());
        let data = take_consistent_cut(node.as_ref(), &mut node_capture, &options)
            .await
            .unwrap();
        assert!(
            !data.judgement.has_errors(),
            "{:?}",
            data.judgement.findings
        );
        assert!(!data.objects.keys().any(|k| k.starts_with("catalog")));
        let required = data.judgement.point.catalog_sequence_required.unwrap();
        assert_eq!(required, 8);

        let mut catalog_capture = MapCapture::new(cluster.clone());
        let catalog = take_catalog_cut(
            cluster.as_ref(),
            &mut catalog_capture,
            "cluster0",
            required,
            &options,
        )
        .await
        .unwrap();
        assert_eq!(catalog.judgement.point.catalog_sequence, Some(9));
        assert_eq!(catalog.objects.len(), 10, "snapshot and 9 logs");
        let err = take_catalog_cut(
            cluster.as_ref(),
            &mut catalog_capture,
            "cluster0",
            50,
            &options,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Inconsistent { .. }), "{err}");
        assert!(err.to_string().contains("cluster0"), "{err}");
    }
}
