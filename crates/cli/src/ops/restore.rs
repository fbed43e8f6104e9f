//! `restore`: write a backup into an empty node prefix in the server's order — Parquet, then
//! snapshot files and checkpoints, then WAL, then catalog logs, then the catalog checkpoint last
//! — reading every object back and checking its size and hash against the manifest. From a local
//! repository into a local data dir each file is read back before it is renamed into place (a
//! corrupt blob never lands); through the stores, objects are hashed as written and read back
//! at the end. A restore into a local data dir then flushes it to disk before it reports success.
//!
//! A marker object (`.influxdb3-backup-restore.json` under the node prefix) is written first and
//! removed last, so an interrupted restore is recognised on the next run and never mistaken for
//! a good one.

use super::now_rfc3339;
use super::record::{BackupSource, ClusterRecord, MemberRecord, SourceRecord};
use crate::exit::{Failure, TARGET_REFUSED, USAGE, VERIFY_FAILED};
use crate::progress::Bar;
use crate::stores::RootStore;
use anyhow::{Context, Result};
use futures::TryStreamExt;
use ib3_influx::path::{classify, classify_cluster, CatalogGeneration, ObjectClass, Phase};
use ib3_repo::{layout, Entry, Manifest};
use ib3_transfer::local::BlobToFile;
use ib3_transfer::{
    for_each_bounded, hash_object, stream_copy, Codec, CopyOptions, InFlight, StreamTurns,
};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod from_packs;

/// Key (under the node prefix) of the in-progress marker.
pub const MARKER: &str = ".influxdb3-backup-restore.json";

/// Options of `restore`, resolved.
pub struct RestoreOptions {
    /// The repository.
    pub repo: ib3_repo::Repository,
    /// The backup's manifest, already loaded.
    pub manifest: Manifest,
    /// Its source record.
    pub source: BackupSource,
    /// The target store root (data dir or bucket).
    pub target: RootStore,
    /// Cluster backups: the member nodes to restore (empty: the whole cluster).
    pub nodes: Vec<String>,
    /// Plan only.
    pub dry_run: bool,
    /// Replace a non-empty target.
    pub force: bool,
    /// Owner of restored files.
    pub chown: Option<(u32, u32)>,
    /// How long to watch the target WAL before a forced restore.
    pub live_check: Duration,
    /// Objects in flight.
    pub concurrency: usize,
    /// Progress bar.
    pub bar: Bar,
    /// The repository directory, when the repository is local: with a local target, small
    /// files are then restored and read back on plain threads (`ib3_transfer::local`).
    pub repo_dir: Option<PathBuf>,
}

/// One step of the plan: one phase, for one or more prefixes.
#[derive(Debug, Serialize)]
pub struct PhasePlan {
    /// Phase.
    pub phase: Phase,
    /// Prefixes written in this step (node ids, the cluster id).
    pub prefixes: Vec<String>,
    /// Objects written.
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The restore plan.
#[derive(Debug, Serialize)]
pub struct RestorePlan {
    /// Backup restored.
    pub backup_id: String,
    /// What is restored: `node0`, `cluster c1`, `cluster c1 built-in backup b1`.
    pub subject: String,
    /// Node id (node backups).
    pub node_id: Option<String>,
    /// Cluster id (cluster backups).
    pub cluster_id: Option<String>,
    /// Prefixes written, in order.
    pub prefixes: Vec<String>,
    /// Target store location.
    pub target: String,
    /// Steps in write order.
    pub phases: Vec<PhasePlan>,
    /// Objects already at the target that the backup replaces (with --force).
    pub replaces: Vec<String>,
    /// Objects at the target not in the backup, deleted (with --force).
    pub deletes: Vec<String>,
    /// What the operator must know (stop the server, versions to start, licenses).
    pub warnings: Vec<String>,
}

/// What `restore` did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// The plan.
    pub plan: RestorePlan,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Objects written.
    pub objects_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Objects read back and found identical to the backup.
    pub objects_verified: u64,
    /// Wall time.
    pub duration_seconds: f64,
}

/// What a prefix of the target is in the restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A Core node: its catalog is inside.
    Node,
    /// The cluster prefix: catalog, `enterprise`, licenses.
    Cluster,
    /// A cluster's data node.
    Data,
    /// A cluster's compactor.
    Compactor,
    /// A built-in backup's directory.
    Builtin,
}

/// One prefix of the target and the backup's entries for it (keys relative to the prefix).
struct Unit {
    prefix: String,
    role: Role,
    store: Arc<dyn ObjectStore>,
    entries: Vec<Entry>,
    active_catalog: Option<CatalogGeneration>,
    /// Objects at the target under the prefix that the restore owns (see [`Unit::owns`]): it
    /// replaces or deletes them; other objects (a cluster's built-in backups) are left alone.
    existing: Vec<ObjectMeta>,
}

impl Unit {
    fn phase_of(&self, key: &str) -> Option<Phase> {
        match self.role {
            Role::Node => classify(key).phase(self.active_catalog),
            Role::Cluster => classify_cluster(key).phase(self.active_catalog),
            Role::Data | Role::Compactor => classify(key).phase(None),
            Role::Builtin => Some(Phase::BuiltinBackup),
        }
    }

    /// Whether an object at the target is the restore's business (replaced or deleted).
    fn owns(&self, key: &str) -> bool {
        if key == MARKER {
            return true;
        }
        match self.role {
            Role::Cluster => matches!(
                classify_cluster(key),
                ObjectClass::CatalogLog { .. }
                    | ObjectClass::CatalogCheckpoint { .. }
                    | ObjectClass::ClusterConfig
            ),
            _ => true,
        }
    }

    /// Whether an object not in the backup is deleted by --force: never a license or the
    /// `enterprise` file (the target's own), never what the restore does not own.
    fn deletes(&self, key: &str) -> bool {
        self.owns(key)
            && key != MARKER
            && !(self.role == Role::Cluster && classify_cluster(key) == ObjectClass::ClusterConfig)
    }

    fn shown(&self, key: &str) -> String {
        match self.role {
            Role::Node => key.to_string(),
            _ => format!("{}/{key}", self.prefix),
        }
    }

    fn is_node(&self) -> bool {
        matches!(self.role, Role::Node | Role::Data | Role::Compactor)
    }
}

/// One write step: a phase over some units, its writes borrowed from the units' entries (at
/// 2 000 000 entries each copy of them held half a gigabyte).
struct Step<'u> {
    phase: Phase,
    writes: Writes<'u>,
}

/// Run `restore`.
pub async fn restore(mut options: RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    // The units hold the manifest's entries from here on (moved, not copied).
    let entries = std::mem::take(&mut options.manifest.entries);
    let mut units = units(&options, entries).await?;
    for unit in &mut units {
        let listed = list_all(unit.store.as_ref()).await?;
        unit.existing = listed
            .into_iter()
            .filter(|m| unit.owns(m.location.as_ref()))
            .collect();
    }
    refuse_unsafe_target(&options, &units).await?;
    let mut warnings = warnings(&options);
    check_kept_catalog(&options, &units, &mut warnings).await?;
    let steps = steps(&units);
    let plan = plan(&options, &units, &steps, warnings);
    if options.dry_run {
        return Ok(RestoreReport {
            plan,
            dry_run: true,
            objects_written: 0,
            bytes_written: 0,
            objects_verified: 0,
            duration_seconds: started.elapsed().as_secs_f64(),
        });
    }
    for unit in &units {
        write_marker(unit.store.as_ref(), &options).await?;
    }
    for unit in &units {
        delete_others(unit).await?;
    }
    let copy = CopyOptions::default();
    let streams = StreamTurns::new(options.concurrency, &copy);
    let mut written = (0u64, 0u64);
    let mut verified = 0u64;
    let mut to_read_back = Vec::new();
    for step in steps {
        options.bar.phase(
            &format!("restoring {}", super::phase_label(step.phase)),
            step.writes.iter().map(|(_, e)| e.size).sum(),
        );
        let (direct, through_stores) = split_local(&options, &units, step.writes);
        let mut results = restore_locally(&options, &units, direct).await;
        // Restored locally means read back already (before the rename into place).
        verified += results.len() as u64;
        to_read_back.extend(through_stores.iter().copied());
        let (packed, alone): (Writes, Writes) = through_stores
            .into_iter()
            .partition(|(_, entry)| entry.pack.is_some());
        // `concurrency` objects written at a time, alone or from packs; large ones also take
        // turns for their parts (inside their object's turn, never waiting on one).
        let in_flight = InFlight::new(options.concurrency);
        let alone = for_each_bounded(alone, options.concurrency, |(unit, entry)| {
            let target = units[unit].store.clone();
            let (repo, copy, bar, streams) = (&options.repo, &copy, &options.bar, &streams);
            let restored = async move {
                let restored = restore_one(repo, target.as_ref(), entry, copy, bar);
                streams.run(entry.size, restored).await
            };
            in_flight.run(restored)
        });
        let packed = from_packs::restore_from_packs(&options, &units, packed, &in_flight);
        let (alone, packed) = futures::join!(alone, packed);
        results.extend(alone.into_iter().chain(packed));
        for result in results {
            let size = result?;
            written.0 += 1;
            written.1 += size;
        }
    }
    verified += read_back(&units, &options, to_read_back).await?;
    if let (Some((uid, gid)), Some(dir)) = (options.chown, &options.target.data_dir) {
        for unit in &units {
            chown_tree(&dir.join(&unit.prefix), uid, gid)?;
        }
    }
    make_durable(&options).await?;
    for unit in units.iter().rev() {
        unit.store
            .delete(&Path::from(MARKER))
            .await
            .with_context(|| format!("removing the restore marker of {}/", unit.prefix))?;
    }
    options.bar.finish();
    Ok(RestoreReport {
        plan,
        dry_run: false,
        objects_written: written.0,
        bytes_written: written.1,
        objects_verified: verified,
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The prefixes a backup restores into, with its entries split among them: a node backup is
/// one; a cluster backup is the cluster prefix (unless only some nodes are restored into a
/// store that has the cluster's catalog already), then data nodes, then compactors.
async fn units(options: &RestoreOptions, entries: Vec<Entry>) -> Result<Vec<Unit>> {
    let root = &options.target.store;
    let unit = |prefix: &str, role, entries, active_catalog| Unit {
        prefix: prefix.to_string(),
        role,
        store: Arc::new(PrefixStore::new(root.clone(), prefix)) as Arc<dyn ObjectStore>,
        entries,
        active_catalog,
        existing: Vec::new(),
    };
    let cluster = match &options.source {
        BackupSource::Node(record) => {
            return Ok(vec![unit(
                &record.node_id,
                Role::Node,
                entries,
                record.active_catalog,
            )]);
        }
        BackupSource::Cluster(cluster) => cluster,
    };
    let under = |prefix: &str| -> Vec<Entry> {
        let prefix = format!("{prefix}/");
        entries
            .iter()
            .filter_map(|e| {
                let path = e.path.strip_prefix(&prefix)?.to_string();
                Some(Entry { path, ..e.clone() })
            })
            .collect()
    };
    if let Some(name) = &cluster.builtin_backup {
        let prefix = format!("{}/backups/{name}", cluster.cluster_id);
        return Ok(vec![unit(&prefix, Role::Builtin, under(&prefix), None)]);
    }
    let members = selected_members(cluster, &options.nodes)?;
    let mut units = Vec::new();
    let whole = options.nodes.is_empty();
    if whole || !has_catalog(root.as_ref(), &cluster.cluster_id).await? {
        let active = cluster.catalog.as_ref().and_then(|c| c.active_catalog);
        units.push(unit(
            &cluster.cluster_id,
            Role::Cluster,
            under(&cluster.cluster_id),
            active,
        ));
    }
    for role in [Role::Data, Role::Compactor] {
        for member in members.iter().filter(|m| member_role(m) == role) {
            units.push(unit(&member.node_id, role, under(&member.node_id), None));
        }
    }
    Ok(units)
}

fn member_role(member: &MemberRecord) -> Role {
    if member.role == "compactor" {
        Role::Compactor
    } else {
        Role::Data
    }
}

/// The members named by `--node-id` (each must be in the backup), or all.
fn selected_members<'a>(
    cluster: &'a ClusterRecord,
    requested: &[String],
) -> Result<Vec<&'a MemberRecord>> {
    if requested.is_empty() {
        return Ok(cluster.members.iter().collect());
    }
    requested
        .iter()
        .map(|id| {
            cluster
                .members
                .iter()
                .find(|m| &m.node_id == id)
                .ok_or_else(|| {
                    let held: Vec<&str> =
                        cluster.members.iter().map(|m| m.node_id.as_str()).collect();
                    Failure::new(
                        USAGE,
                        format!(
                            "this backup of cluster {} holds no node {id:?}",
                            cluster.cluster_id
                        ),
                    )
                    .hint(format!("nodes in the backup: {}", held.join(", ")))
                    .into()
                })
        })
        .collect()
}

/// Whether the target holds a catalog under `prefix`.
async fn has_catalog(root: &dyn ObjectStore, prefix: &str) -> Result<bool> {
    Ok(!catalog_keys(root, prefix).await?.is_empty())
}

/// Catalog files under `prefix` (relative keys).
async fn catalog_keys(root: &dyn ObjectStore, prefix: &str) -> Result<Vec<String>> {
    let under = format!("{prefix}/");
    let listed: Vec<ObjectMeta> = root
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .context("listing the restore target")?;
    Ok(listed
        .into_iter()
        .filter_map(|m| m.location.as_ref().strip_prefix(&under).map(str::to_string))
        .filter(|k| {
            matches!(
                classify_cluster(k),
                ObjectClass::CatalogLog { .. } | ObjectClass::CatalogCheckpoint { .. }
            )
        })
        .collect())
}

async fn list_all(store: &dyn ObjectStore) -> Result<Vec<ObjectMeta>> {
    store
        .list(None)
        .try_collect()
        .await
        .context("listing the restore target")
}

/// Refuse a target with an incomplete restore, a non-empty target without --force, and a target
/// whose WAL advances (a running server).
async fn refuse_unsafe_target(options: &RestoreOptions, units: &[Unit]) -> Result<()> {
    for unit in units.iter().filter(|u| !u.existing.is_empty()) {
        let where_ = format!("{}/{}", options.target.location, unit.prefix);
        let marker = unit.existing.iter().any(|m| m.location.as_ref() == MARKER);
        if marker && !options.force {
            return Err(Failure::new(
                TARGET_REFUSED,
                format!("an earlier restore into {where_} did not complete: the prefix holds a partial restore that no server may start on"),
            )
            .hint("run the restore again with --force to replace it")
            .into());
        }
        if !options.force {
            return Err(Failure::new(
                TARGET_REFUSED,
                format!(
                    "{where_} already holds {} (e.g. {}); restore writes only into an empty prefix",
                    crate::output::objects(unit.existing.len() as u64),
                    unit.existing[0].location
                ),
            )
            .hint("restore into an empty --data-dir or bucket, or pass --force to replace what is there (objects not in the backup are deleted)")
            .into());
        }
    }
    let watched: Vec<&Unit> = units
        .iter()
        .filter(|u| u.is_node() && !u.existing.is_empty())
        .collect();
    if let Some(prefix) = wal_advances(&watched, options.live_check).await? {
        return Err(Failure::new(
            TARGET_REFUSED,
            format!("new WAL files appeared under {}/{prefix}/wal while watching it: an InfluxDB 3 server is writing there", options.target.location),
        )
        .hint("stop the server on the target before restoring")
        .into());
    }
    Ok(())
}

/// The prefix (if any) whose WAL gained files while `watch` passed.
async fn wal_advances(units: &[&Unit], watch: Duration) -> Result<Option<String>> {
    if units.is_empty() {
        return Ok(None);
    }
    let wal = Path::from("wal");
    let list = |store: Arc<dyn ObjectStore>| {
        let wal = wal.clone();
        async move {
            store
                .list(Some(&wal))
                .map_ok(|m| m.location.to_string())
                .try_collect::<BTreeSet<String>>()
                .await
                .context("listing the target WAL")
        }
    };
    let mut before = Vec::new();
    for unit in units {
        before.push(list(unit.store.clone()).await?);
    }
    tokio::time::sleep(watch).await;
    for (unit, before) in units.iter().zip(before) {
        let after = list(unit.store.clone()).await?;
        if after.difference(&before).next().is_some() {
            return Ok(Some(unit.prefix.clone()));
        }
    }
    Ok(None)
}

/// Restoring some nodes into a cluster whose catalog is kept: that catalog must reach what the
/// nodes' data needs (the catalog only grows, so a live cluster's does).
async fn check_kept_catalog(
    options: &RestoreOptions,
    units: &[Unit],
    warnings: &mut Vec<String>,
) -> Result<()> {
    let BackupSource::Cluster(cluster) = &options.source else {
        return Ok(());
    };
    if cluster.builtin_backup.is_some() || units.iter().any(|u| u.role == Role::Cluster) {
        return Ok(());
    }
    let needed = units
        .iter()
        .filter_map(|u| cluster.members.iter().find(|m| m.node_id == u.prefix))
        .filter_map(|m| {
            m.node
                .as_ref()?
                .point
                .get("catalog_sequence_required")?
                .as_u64()
        })
        .max()
        .unwrap_or(0);
    let keys = catalog_keys(options.target.store.as_ref(), &cluster.cluster_id).await?;
    let newest = newest_log_sequence(&keys);
    if newest.is_some_and(|seq| seq < needed) {
        return Err(Failure::new(
            TARGET_REFUSED,
            format!(
                "the catalog of cluster {} at the target reaches sequence {} but the restored nodes' data needs {needed}: the server would drop their rows",
                cluster.cluster_id,
                newest.unwrap_or(0)
            ),
        )
        .hint("restore the whole cluster (without --node-id) into an empty store, or restore a newer backup")
        .into());
    }
    warnings.push(format!(
        "the target already holds cluster {}'s catalog (newest log {}); it is kept, and only the nodes are restored",
        cluster.cluster_id,
        newest.map_or_else(|| "none".to_string(), |s| s.to_string())
    ));
    Ok(())
}

/// The highest catalog log sequence of the newest generation among `keys`.
fn newest_log_sequence(keys: &[String]) -> Option<u64> {
    keys.iter()
        .filter_map(|k| match classify_cluster(k) {
            ObjectClass::CatalogLog { generation, seq } => Some((generation, seq)),
            _ => None,
        })
        .max()
        .map(|(_, seq)| seq)
}

/// Write steps in order. A node backup: its phases. A cluster: the cluster prefix's catalog
/// logs, checkpoint and cluster files first; then every data node phase by phase; then every
/// compactor, its node files and then `c/`, `cd/`, `cs/` (DESIGN.md §4.5).
fn steps(units: &[Unit]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for group in [
        &[Role::Node, Role::Builtin][..],
        &[Role::Cluster],
        &[Role::Data],
        &[Role::Compactor],
    ] {
        let mut phases: BTreeMap<Phase, Writes> = BTreeMap::new();
        for (i, unit) in units.iter().enumerate() {
            if !group.contains(&unit.role) {
                continue;
            }
            for entry in &unit.entries {
                if let Some(phase) = unit.phase_of(&entry.path) {
                    phases.entry(phase).or_default().push((i, entry));
                }
            }
        }
        steps.extend(
            phases
                .into_iter()
                .map(|(phase, writes)| Step { phase, writes }),
        );
    }
    steps
}

fn plan(
    options: &RestoreOptions,
    units: &[Unit],
    steps: &[Step],
    warnings: Vec<String>,
) -> RestorePlan {
    let mut replaces = Vec::new();
    let mut deletes = Vec::new();
    // An empty target (the usual case) needs no table of the backup's paths.
    for unit in units.iter().filter(|unit| !unit.existing.is_empty()) {
        let in_backup: BTreeSet<&str> = unit.entries.iter().map(|e| e.path.as_str()).collect();
        for meta in &unit.existing {
            let key = meta.location.as_ref();
            if in_backup.contains(key) {
                replaces.push(unit.shown(key));
            } else if unit.deletes(key) {
                deletes.push(unit.shown(key));
            }
        }
    }
    let phases = steps
        .iter()
        .map(|step| {
            let prefixes: BTreeSet<&str> = step
                .writes
                .iter()
                .map(|(i, _)| units[*i].prefix.as_str())
                .collect();
            PhasePlan {
                phase: step.phase,
                prefixes: prefixes.into_iter().map(str::to_string).collect(),
                objects: step.writes.len() as u64,
                bytes: step.writes.iter().map(|(_, e)| e.size).sum(),
            }
        })
        .collect();
    let (node_id, cluster_id) = match &options.source {
        BackupSource::Node(r) => (Some(r.node_id.clone()), None),
        BackupSource::Cluster(c) => (None, Some(c.cluster_id.clone())),
    };
    RestorePlan {
        backup_id: options.manifest.id.to_string(),
        subject: options.source.subject(),
        node_id,
        cluster_id,
        prefixes: units.iter().map(|u| u.prefix.clone()).collect(),
        target: options.target.location.clone(),
        phases,
        replaces,
        deletes,
        warnings,
    }
}

fn warnings(options: &RestoreOptions) -> Vec<String> {
    match &options.source {
        BackupSource::Node(record) => node_warnings(record),
        BackupSource::Cluster(cluster) if cluster.builtin_backup.is_some() => vec![format!(
            "this restores the server's own backup files only: recover from them with `influxdb3 create restore` on the compactor, into a store with cluster id {} and the same node ids",
            cluster.cluster_id
        )],
        BackupSource::Cluster(cluster) => cluster_warnings(cluster, &options.target),
    }
}

fn node_warnings(record: &SourceRecord) -> Vec<String> {
    let mut warnings = vec![
        "the InfluxDB 3 server on the target must be stopped during the restore; start it afterwards".to_string(),
        format!(
            "start a server of the version that wrote this backup ({}) or newer: a catalog cannot be loaded by an older binary",
            record.server_versions
        ),
    ];
    if record.active_catalog == Some(CatalogGeneration::V1) {
        warnings.push("this node has a 3.0–3.3 (v1) catalog: start it with a 3.4–3.9 server once before upgrading to 3.10+, which cannot migrate a v1 catalog directly".to_string());
    }
    if !record.consistent {
        warnings.push("this backup was written with --allow-inconsistent: `verify` lists what is wrong with it".to_string());
    }
    warnings.push("the processing-engine plugin directory (--plugin-dir) is local to the server and not in this backup".to_string());
    warnings
}

fn cluster_warnings(cluster: &ClusterRecord, target: &RootStore) -> Vec<String> {
    let mut warnings = vec![
        "every node of the cluster must be stopped during the restore; afterwards start the data nodes first, then the compactor".to_string(),
        format!(
            "start servers of the version that wrote this backup ({}) or newer: a catalog cannot be loaded by an older binary",
            cluster.server_versions
        ),
    ];
    let moved = cluster.object_store != target.kind || cluster.location != target.location;
    let licenses: Vec<&str> = cluster
        .cluster_files
        .iter()
        .map(String::as_str)
        .filter(|f| ib3_influx::path::LICENSE_FILES.contains(f))
        .collect();
    let active = cluster.catalog.as_ref().and_then(|c| c.active_catalog);
    if moved && !licenses.is_empty() && active < Some(CatalogGeneration::V3) {
        warnings.push(format!(
            "the license ({}) was issued by a server before 3.10, when licenses were bound to the object-store provider, bucket and path: restored from {} {} into {} {}, it may be rejected. Fix: start the servers with --license-file pointing at a license for the new location (or request one), or upgrade to 3.10+, whose licenses are portable",
            licenses.join(", "),
            cluster.object_store,
            cluster.location,
            target.kind,
            target.location
        ));
    }
    if !cluster.consistent {
        warnings.push("this backup was written with --allow-inconsistent: `verify` lists what is wrong with it".to_string());
    }
    warnings.push("the processing-engine plugin directories (--plugin-dir) are local to the servers and not in this backup".to_string());
    warnings
}

/// With --force: delete what the backup does not hold and the restore owns.
async fn delete_others(unit: &Unit) -> Result<()> {
    if unit.existing.is_empty() {
        return Ok(());
    }
    let in_backup: BTreeSet<&str> = unit.entries.iter().map(|e| e.path.as_str()).collect();
    for meta in &unit.existing {
        let key = meta.location.as_ref();
        if in_backup.contains(key) || !unit.deletes(key) {
            continue;
        }
        unit.store
            .delete(&meta.location)
            .await
            .with_context(|| format!("deleting {} from the target", unit.shown(key)))?;
    }
    Ok(())
}

async fn write_marker(target: &dyn ObjectStore, options: &RestoreOptions) -> Result<()> {
    let body = serde_json::json!({
        "backup_id": options.manifest.id,
        "started_at": now_rfc3339(),
        "tool": super::tool_version(),
    });
    target
        .put(
            &Path::from(MARKER),
            PutPayload::from(serde_json::to_vec_pretty(&body)?),
        )
        .await
        .context("writing the restore marker")?;
    Ok(())
}

/// The local directories of a local-to-local restore: the repository's and the target's.
fn local_dirs(options: &RestoreOptions) -> Option<(&PathBuf, &PathBuf)> {
    options
        .repo_dir
        .as_ref()
        .zip(options.target.data_dir.as_ref())
}

/// Entries to write, each with the index of its unit.
type Writes<'u> = Vec<(usize, &'u Entry)>;

/// Which of a step's writes go straight from file to file (local repository and target, plainly
/// named, small or stored as is) and which through the stores.
fn split_local<'u>(
    options: &RestoreOptions,
    units: &[Unit],
    writes: Writes<'u>,
) -> (Writes<'u>, Writes<'u>) {
    if local_dirs(options).is_none() {
        return (Vec::new(), writes);
    }
    let small = CopyOptions::default().small_object_threshold;
    writes.into_iter().partition(|(unit, entry)| {
        (entry.size <= small || entry.encoding == ib3_repo::Encoding::Raw)
            && ib3_transfer::local::is_plain_key(&entry.path)
            && ib3_transfer::local::is_plain_key(&units[*unit].prefix)
    })
}

/// `writes` grouped by unit, in unit order; units without writes are left out.
fn by_unit<'u>(units: &'u [Unit], writes: Writes<'u>) -> Vec<(&'u Unit, Vec<&'u Entry>)> {
    let mut grouped: Vec<Vec<&Entry>> = units.iter().map(|_| Vec::new()).collect();
    for (unit, entry) in writes {
        grouped[unit].push(entry);
    }
    units
        .iter()
        .zip(grouped)
        .filter(|(_, entries)| !entries.is_empty())
        .collect()
}

/// Files restored file to file per hand-off to the copying threads: their owned paths (about
/// 150 bytes a file) are held a batch at a time, not for a whole phase of millions.
const LOCAL_BATCH: usize = 65_536;

/// Restore `writes` file to file on plain threads (see [`split_local`]); sizes written.
async fn restore_locally(
    options: &RestoreOptions,
    units: &[Unit],
    writes: Writes<'_>,
) -> Vec<Result<u64>> {
    let Some((repo_dir, data_dir)) = local_dirs(options) else {
        return Vec::new();
    };
    let mut results = Vec::with_capacity(writes.len());
    for (unit, entries) in by_unit(units, writes) {
        let target_dir = data_dir.join(&unit.prefix);
        for batch in entries.chunks(LOCAL_BATCH) {
            let copied = match restore_batch(options, batch, repo_dir, &target_dir).await {
                Ok(copied) => copied,
                Err(e) => return vec![Err(e)],
            };
            for (entry, result) in batch.iter().zip(copied) {
                results.push(
                    result
                        .map_err(anyhow::Error::from)
                        .and_then(|copied| check_restored(entry, copied))
                        .with_context(|| {
                            format!("restoring {} from blob {}", entry.path, entry.blob)
                        }),
                );
            }
        }
    }
    results
}

/// Restore `batch` from the repository directory into `target_dir` on plain threads; what each
/// file holds as read back.
async fn restore_batch(
    options: &RestoreOptions,
    batch: &[&Entry],
    repo_dir: &std::path::Path,
    target_dir: &std::path::Path,
) -> Result<Vec<ib3_transfer::Result<ib3_transfer::Copied>>> {
    let files: Vec<BlobToFile> = batch
        .iter()
        .map(|entry| BlobToFile {
            blob_key: super::codecs::stored_at(entry).0.to_string(),
            slice: super::codecs::local_slice(entry),
            decode: super::codecs::decode(entry.encoding, options.repo.keys()),
            key: entry.path.clone(),
            size: entry.size,
            hash: blake3::Hash::from_bytes(entry.blob.0),
        })
        .collect();
    let (repo_dir, target_dir) = (repo_dir.to_path_buf(), target_dir.to_path_buf());
    let (bar, threads) = (
        options.bar.clone(),
        options.concurrency.min(ib3_transfer::local::MAX_THREADS),
    );
    tokio::task::spawn_blocking(move || {
        ib3_transfer::local::restore_files(&files, &repo_dir, &target_dir, threads, &bar)
    })
    .await
    .map_err(|e| anyhow::anyhow!("restore thread failed: {e}"))
}

/// The size restored, if the content restored is the blob's (else the blob is corrupt).
fn check_restored(entry: &Entry, copied: ib3_transfer::Copied) -> Result<u64> {
    if ib3_repo::BlobId::from(copied.hash) != entry.blob {
        return Err(Failure::new(
            VERIFY_FAILED,
            format!(
                "blob {} (for {}) is corrupt in the repository: its content hashes to {}",
                entry.blob, entry.path, copied.hash
            ),
        )
        .hint("run `verify --read-data`; restore another backup")
        .into());
    }
    Ok(copied.size)
}

/// Restore an entry whose blob is an object of its own (those in packs: `from_packs`), streamed
/// and hashed on the way.
async fn restore_one(
    repo: &ib3_repo::Repository,
    target: &dyn ObjectStore,
    entry: &Entry,
    copy: &CopyOptions,
    bar: &Bar,
) -> Result<u64> {
    let keys = repo.keys();
    let copied = stream_copy(
        repo.store().as_ref(),
        &layout::blob_key(&entry.blob, entry.encoding),
        target,
        &Path::from(entry.path.as_str()),
        Some(entry.size),
        &super::codecs::decode(entry.encoding, keys),
        copy,
        bar,
    )
    .await
    .with_context(|| format!("restoring {} from blob {}", entry.path, entry.blob))?;
    check_restored(entry, copied)
}

/// Read back every object written through the stores and compare size and hash with the
/// manifest; the number verified.
async fn read_back(units: &[Unit], options: &RestoreOptions, written: Writes<'_>) -> Result<u64> {
    options
        .bar
        .phase("reading back", written.iter().map(|(_, e)| e.size).sum());
    let results = for_each_bounded(written, options.concurrency, |(unit, entry)| async move {
        let unit = &units[unit];
        let key = Path::from(entry.path.as_str());
        let shown = unit.shown(&entry.path);
        let got = hash_object(unit.store.as_ref(), &key, &Codec::identity(), &options.bar)
            .await
            .with_context(|| format!("reading back {shown}"))?;
        check_read_back(&shown, entry, got.size, got.hash)
    })
    .await;
    let mut verified = 0;
    for result in results {
        result?;
        verified += 1;
    }
    Ok(verified)
}

/// A restore into a local directory is on disk before it reports success (and before its
/// markers go): one flush of the target's file system.
async fn make_durable(options: &RestoreOptions) -> Result<()> {
    let Some(dir) = options.target.data_dir.clone() else {
        return Ok(());
    };
    options.bar.phase("flushing to disk", 0);
    tokio::task::spawn_blocking(move || {
        ib3_repo::durable::flush_tree(&dir).with_context(|| {
            format!(
                "flushing the restored files under {} to disk",
                dir.display()
            )
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("flush thread failed: {e}"))?
}

/// A restored object must have the size and hash the manifest records.
fn check_read_back(shown: &str, entry: &Entry, size: u64, hash: blake3::Hash) -> Result<()> {
    if size != entry.size || ib3_repo::BlobId::from(hash) != entry.blob {
        return Err(Failure::new(
            VERIFY_FAILED,
            format!(
                "restored {shown} does not match the backup ({size} bytes, hash {hash}; expected {} bytes, {})",
                entry.size, entry.blob
            ),
        )
        .into());
    }
    Ok(())
}

/// Parse `UID:GID`.
pub fn parse_chown(spec: &str) -> Result<(u32, u32)> {
    let parsed = spec
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
    parsed.ok_or_else(|| {
        Failure::new(USAGE, format!("--chown {spec:?} is not UID:GID"))
            .hint("numeric ids, e.g. --chown 1500:1500 (the influxdb3 Docker image runs as 1500)")
            .into()
    })
}

fn chown_tree(dir: &std::path::Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to {uid}:{gid}", dir.display()))?;
    if dir.is_dir() {
        for child in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let child = child.with_context(|| format!("reading {}", dir.display()))?;
            chown_tree(&child.path(), uid, gid)?;
        }
    }
    Ok(())
}
