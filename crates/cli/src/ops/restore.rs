//! `restore`: write a backup into an empty node prefix in the server's order — Parquet, then
//! snapshot files and checkpoints, then WAL, then catalog logs, then the catalog checkpoint last
//! — checking every object's hash as it is written and reading every object back at the end.
//!
//! A marker object (`.influxdb3-backup-restore.json` under the node prefix) is written first and
//! removed last, so an interrupted restore is recognised on the next run and never mistaken for
//! a good one.

use super::now_rfc3339;
use super::record::SourceRecord;
use crate::exit::{Failure, TARGET_REFUSED, USAGE, VERIFY_FAILED};
use crate::progress::Bar;
use crate::stores::NodeStore;
use anyhow::{Context, Result};
use futures::TryStreamExt;
use ib3_influx::path::{classify, Phase};
use ib3_repo::{layout, Entry, Manifest};
use ib3_transfer::{for_each_bounded, hash_object, stream_copy, Codec, CopyOptions};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Key (under the node prefix) of the in-progress marker.
pub const MARKER: &str = ".influxdb3-backup-restore.json";

/// Options of `restore`, resolved.
pub struct RestoreOptions {
    /// The repository.
    pub repo: ib3_repo::Repository,
    /// The backup's manifest, already loaded.
    pub manifest: Manifest,
    /// Its source record.
    pub record: SourceRecord,
    /// The target node prefix.
    pub target: NodeStore,
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
}

/// One phase of the plan.
#[derive(Debug, Serialize)]
pub struct PhasePlan {
    /// Phase.
    pub phase: Phase,
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
    /// Node id.
    pub node_id: String,
    /// Target store location.
    pub target: String,
    /// Phases in write order.
    pub phases: Vec<PhasePlan>,
    /// Objects already at the target that the backup replaces (with --force).
    pub replaces: Vec<String>,
    /// Objects at the target not in the backup, deleted (with --force).
    pub deletes: Vec<String>,
    /// What the operator must know (stop the server, versions to start).
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

/// Run `restore`.
pub async fn restore(options: RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = options.target.node.clone();
    let existing = list_all(target.as_ref()).await?;
    refuse_unsafe_target(&options, &existing).await?;
    let grouped = phases(&options.manifest, &options.record);
    let plan = plan(&options, &existing, &grouped);
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
    write_marker(target.as_ref(), &options).await?;
    for key in &plan.deletes {
        target
            .delete(&Path::from(key.as_str()))
            .await
            .with_context(|| format!("deleting {key} from the target"))?;
    }
    let copy = CopyOptions::default();
    let mut written = (0u64, 0u64);
    for (phase, entries) in grouped {
        options.bar.phase(
            &format!("restoring {}", super::phase_label(phase)),
            entries.iter().map(|e| e.size).sum(),
        );
        let results = for_each_bounded(entries, options.concurrency, |entry| {
            restore_one(&options.repo, target.as_ref(), entry, &copy, &options.bar)
        })
        .await;
        for result in results {
            let size = result?;
            written.0 += 1;
            written.1 += size;
        }
    }
    let verified = read_back(target.as_ref(), &options).await?;
    if let (Some((uid, gid)), Some(dir)) = (options.chown, &options.target.data_dir) {
        chown_tree(&dir.join(&options.target.node_id), uid, gid)?;
    }
    target
        .delete(&Path::from(MARKER))
        .await
        .context("removing the restore marker")?;
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

async fn list_all(store: &dyn ObjectStore) -> Result<Vec<ObjectMeta>> {
    store
        .list(None)
        .try_collect()
        .await
        .context("listing the restore target")
}

/// Refuse a target with an incomplete restore, a non-empty target without --force, and a target
/// whose WAL advances (a running server).
async fn refuse_unsafe_target(options: &RestoreOptions, existing: &[ObjectMeta]) -> Result<()> {
    if existing.is_empty() {
        return Ok(());
    }
    let where_ = format!("{}/{}", options.target.location, options.target.node_id);
    let marker = existing.iter().any(|m| m.location.as_ref() == MARKER);
    if marker && !options.force {
        return Err(Failure::new(
            TARGET_REFUSED,
            format!("an earlier restore into {where_} did not complete: the node prefix holds a partial restore that no server may start on"),
        )
        .hint("run the restore again with --force to replace it")
        .into());
    }
    if !options.force {
        return Err(Failure::new(
            TARGET_REFUSED,
            format!(
                "{where_} already holds {} objects (e.g. {}); restore writes only into an empty node prefix",
                existing.len(),
                existing[0].location
            ),
        )
        .hint("restore into an empty --data-dir, or pass --force to replace what is there (objects not in the backup are deleted)")
        .into());
    }
    if wal_advances(options.target.node.as_ref(), options.live_check).await? {
        return Err(Failure::new(
            TARGET_REFUSED,
            format!("new WAL files appeared under {where_}/wal while watching it: an InfluxDB 3 server is writing there"),
        )
        .hint("stop the server on the target before restoring")
        .into());
    }
    Ok(())
}

async fn wal_advances(store: &dyn ObjectStore, watch: Duration) -> Result<bool> {
    let wal = Path::from("wal");
    let list = || async {
        store
            .list(Some(&wal))
            .map_ok(|m| m.location.to_string())
            .try_collect::<BTreeSet<String>>()
            .await
            .context("listing the target WAL")
    };
    let before = list().await?;
    tokio::time::sleep(watch).await;
    let after = list().await?;
    Ok(after.difference(&before).next().is_some())
}

fn plan(
    options: &RestoreOptions,
    existing: &[ObjectMeta],
    grouped: &BTreeMap<Phase, Vec<Entry>>,
) -> RestorePlan {
    let in_backup: BTreeSet<&str> = options
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    let (replaces, deletes): (Vec<String>, Vec<String>) = existing
        .iter()
        .map(|m| m.location.to_string())
        .filter(|k| k != MARKER)
        .partition(|k| in_backup.contains(k.as_str()));
    let phases = grouped
        .iter()
        .map(|(phase, entries)| PhasePlan {
            phase: *phase,
            objects: entries.len() as u64,
            bytes: entries.iter().map(|e| e.size).sum(),
        })
        .collect();
    RestorePlan {
        backup_id: options.manifest.id.to_string(),
        node_id: options.target.node_id.clone(),
        target: options.target.location.clone(),
        phases,
        replaces,
        deletes,
        warnings: warnings(&options.record),
    }
}

fn warnings(record: &SourceRecord) -> Vec<String> {
    let mut warnings = vec![
        "the InfluxDB 3 server on the target must be stopped during the restore; start it afterwards".to_string(),
        format!(
            "start a server of the version that wrote this backup ({}) or newer: a catalog cannot be loaded by an older binary",
            record.server_versions
        ),
    ];
    if record.active_catalog == Some(ib3_influx::path::CatalogGeneration::V1) {
        warnings.push("this node has a 3.0–3.3 (v1) catalog: start it with a 3.4–3.9 server once before upgrading to 3.10+, which cannot migrate a v1 catalog directly".to_string());
    }
    if !record.consistent {
        warnings.push("this backup was written with --allow-inconsistent: `verify` lists what is wrong with it".to_string());
    }
    warnings.push("the processing-engine plugin directory (--plugin-dir) is local to the server and not in this backup".to_string());
    warnings
}

/// Entries grouped by restore phase, in write order.
fn phases(manifest: &Manifest, record: &SourceRecord) -> BTreeMap<Phase, Vec<Entry>> {
    let mut phases: BTreeMap<Phase, Vec<Entry>> = BTreeMap::new();
    for entry in &manifest.entries {
        if let Some(phase) = classify(&entry.path).phase(record.active_catalog) {
            phases.entry(phase).or_default().push(entry.clone());
        }
    }
    phases
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

async fn restore_one(
    repo: &ib3_repo::Repository,
    target: &dyn ObjectStore,
    entry: Entry,
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

/// Read every restored object back and compare size and hash with the manifest.
async fn read_back(target: &dyn ObjectStore, options: &RestoreOptions) -> Result<u64> {
    let entries = options.manifest.entries.clone();
    options
        .bar
        .phase("reading back", entries.iter().map(|e| e.size).sum());
    let results = for_each_bounded(entries, options.concurrency, |entry| async move {
        let key = Path::from(entry.path.as_str());
        let got = hash_object(target, &key, &Codec::identity(), &options.bar)
            .await
            .with_context(|| format!("reading back {}", entry.path))?;
        if got.size != entry.size || ib3_repo::BlobId::from(got.hash) != entry.blob {
            return Err(anyhow::Error::from(Failure::new(
                VERIFY_FAILED,
                format!(
                    "restored {} does not match the backup ({} bytes, hash {}; expected {} bytes, {})",
                    entry.path, got.size, got.hash, entry.size, entry.blob
                ),
            )));
        }
        Ok(())
    })
    .await;
    let mut verified = 0;
    for result in results {
        result?;
        verified += 1;
    }
    Ok(verified)
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
