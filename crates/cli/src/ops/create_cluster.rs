//! `create --cluster-id`: back up an InfluxDB 3 Enterprise cluster in the documented order
//! (DESIGN.md §4.5) — compactor output first, then every member node (each its own consistent
//! cut, without a catalog), then the cluster catalog, captured last and judged against the
//! highest catalog sequence any node's data needs, then the `enterprise` file and the licenses.
//! Or, with `--builtin-backup`, copy a backup the server wrote itself.
//!
//! Entries are keyed from the store root (`<cluster_id>/…`, `<node_id>/…`).

use super::create::{source_record, Outcome, RepoCapture, Settings};
use super::record::{ClusterBackupKind, ClusterRecord, MemberRecord, PRODUCT_ENTERPRISE};
use crate::exit::{Failure, INCONSISTENT, NOT_A_NODE, PACHA_TREE, USAGE};
use crate::stores::{NodeStore, RootStore};
use anyhow::Result;
use ib3_influx::cluster::{ClusterSurvey, Member, Registration, Role, StorageMode};
use ib3_influx::cut::{
    list_classified, take_catalog_cut, take_consistent_cut, Capture, Captured, CutOptions,
    SourceObject,
};
use ib3_influx::path::{ObjectClass, Phase, ENTERPRISE_FILE, LICENSE_FILES};
use ib3_repo::Entry;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;

/// An Enterprise cluster to back up.
pub struct ClusterSource {
    /// The store root (data dir or bucket).
    pub root: RootStore,
    /// The cluster id.
    pub cluster_id: String,
    /// Member nodes to include (empty: every member found).
    pub nodes: Vec<String>,
    /// Copy this built-in backup instead of the cluster's files.
    pub builtin_backup: Option<String>,
}

impl ClusterSource {
    /// The fields an earlier backup of the same source has (see `create::same_source`).
    pub(super) fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "product": PRODUCT_ENTERPRISE,
            "cluster_id": self.cluster_id,
            "location": self.root.location,
            "builtin_backup": self.builtin_backup,
        })
    }

    fn prefix(&self, prefix: &str) -> NodeStore {
        self.root.node(prefix)
    }
}

/// Survey the cluster, then capture it (or its built-in backup) in the documented order.
pub(super) async fn capture(
    capture: &mut RepoCapture,
    source: &ClusterSource,
    settings: &Settings,
) -> Result<Outcome> {
    let survey = super::inspect::survey_cluster(&source.root, &source.cluster_id).await?;
    if let Some(name) = &source.builtin_backup {
        return copy_builtin_backup(capture, source, &survey, name, settings).await;
    }
    refuse_pacha_tree(&survey)?;
    let members = select_members(&survey, &source.nodes)?;
    let mut records = Vec::new();
    let mut entries = Vec::new();
    let mut replans = 0;
    let mut required = 0;
    // Compactor output first (it summarises the nodes' data: older than what follows).
    let mut compaction = BTreeMap::new();
    for member in members.iter().filter(|m| m.role == Role::Compactor) {
        let (found, rounds) = capture_compaction(capture, source, member, settings).await?;
        compaction.insert(member.node_id.clone(), (found.len() as u64, rounds));
        entries.extend(found);
    }
    for member in &members {
        let node = if member.has_node_files {
            let (cut_entries, record) = cut_member(capture, source, member, settings).await?;
            entries.extend(cut_entries);
            replans += record.replan_reasons.len() as u32;
            let needs = record.point.get("catalog_sequence_required");
            required = required.max(needs.and_then(|v| v.as_u64()).unwrap_or(0));
            Some(record)
        } else {
            None
        };
        let (compaction_objects, compaction_rounds) =
            compaction.get(&member.node_id).copied().unwrap_or((0, 0));
        records.push(MemberRecord {
            node_id: member.node_id.clone(),
            role: label(member.role).into(),
            registration: registration_label(member.registration).into(),
            node,
            compaction_objects,
            compaction_rounds,
        });
    }
    let (catalog_entries, catalog) = cut_catalog(capture, source, required, settings).await?;
    entries.extend(catalog_entries);
    replans += catalog.replan_reasons.len() as u32;
    let cluster_files = capture_cluster_files(capture, source).await?;
    let cluster_keys: Vec<String> = cluster_files.iter().map(|e| strip(source, e)).collect();
    entries.extend(cluster_files);
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let consistent = catalog.consistent
        && records
            .iter()
            .all(|m| m.node.as_ref().is_none_or(|n| n.consistent));
    let record = ClusterRecord {
        product: PRODUCT_ENTERPRISE.into(),
        kind: ClusterBackupKind::Cluster,
        cluster_id: source.cluster_id.clone(),
        object_store: source.root.kind.into(),
        location: source.root.location.clone(),
        storage_mode: "parquet".into(),
        server_versions: catalog.server_versions.clone(),
        consistent,
        catalog: Some(Box::new(catalog)),
        members: records,
        selected: selected(&source.nodes),
        cluster_files: cluster_keys,
        skipped: serde_json::to_value(&survey.skipped)?,
        builtin_backup: None,
    };
    Ok(Outcome {
        entries,
        record: serde_json::to_value(&record)?,
        consistent,
        replans,
    })
}

use super::inspect::role_label as label;

/// The requested node ids, sorted and deduplicated.
fn selected(requested: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = requested.iter().collect();
    set.into_iter().cloned().collect()
}

fn registration_label(registration: Registration) -> &'static str {
    match registration {
        Registration::Registered => "registered",
        Registration::NotRegistered => "not-registered",
        Registration::Unconfirmed => "unconfirmed",
    }
}

fn strip(source: &ClusterSource, entry: &Entry) -> String {
    let prefix = format!("{}/", source.cluster_id);
    entry
        .path
        .strip_prefix(&prefix)
        .unwrap_or(&entry.path)
        .to_string()
}

/// A PachaTree cluster's files cannot be copied consistently by file: refuse, and name the
/// server's own backup and how to keep a copy of it.
pub(super) fn refuse_pacha_tree(survey: &ClusterSurvey) -> Result<()> {
    if survey.storage_mode.is_parquet() {
        return Ok(());
    }
    let mode = match survey.storage_mode {
        StorageMode::PachaTree => "the PachaTree storage engine",
        StorageMode::ParquetAndPachaTree => {
            "both storage engines (an upgrade to PachaTree in progress)"
        }
        _ => "a storage engine other than Parquet",
    };
    let set_by = survey
        .storage_mode_set_by
        .as_deref()
        .map(|k| format!(" (set by {k})"))
        .unwrap_or_default();
    let existing = if survey.builtin_backups.is_empty() {
        String::new()
    } else {
        format!(
            "; built-in backups present: {}",
            survey.builtin_backups.join(", ")
        )
    };
    Err(Failure::new(
        PACHA_TREE,
        format!(
            "cluster {} runs {mode}{set_by}: its files cannot be backed up consistently by copying them{existing}",
            survey.cluster_id
        ),
    )
    .hint(format!(
        "back it up with the server's own `influxdb3 create backup` (run on the compactor), then keep a verified off-site copy with `influxdb3-backup create --cluster-id {} --builtin-backup NAME`",
        survey.cluster_id
    ))
    .into())
}

/// The members to back up: `requested` (each must be a node prefix of the cluster), or every
/// member found. Compactors first.
pub(super) fn select_members(survey: &ClusterSurvey, requested: &[String]) -> Result<Vec<Member>> {
    let found = || {
        survey
            .members
            .iter()
            .map(|m| format!("{} ({})", m.node_id, label(m.role)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if requested.is_empty() {
        if survey.members.is_empty() {
            return Err(Failure::new(
                NOT_A_NODE,
                format!(
                    "cluster {} has a catalog but no node prefix with node files beside it",
                    survey.cluster_id
                ),
            )
            .hint("check the store options: the nodes' wal/, snapshots/ and dbs/ live under <node-id>/ at the store root")
            .into());
        }
        return Ok(survey.members.clone());
    }
    let mut chosen = Vec::new();
    for id in requested {
        crate::stores::check_node_id(id)?;
        match survey.members.iter().find(|m| &m.node_id == id) {
            Some(member) => chosen.push(member.clone()),
            None => {
                let skipped = survey.skipped.iter().find(|s| &s.prefix == id);
                let why = skipped.map_or_else(
                    || "no such node prefix".to_string(),
                    |s| format!("{id}/ is left out: {}", s.reason),
                );
                return Err(Failure::new(
                    NOT_A_NODE,
                    format!(
                        "--node-id {id} is not a member of cluster {}: {why}",
                        survey.cluster_id
                    ),
                )
                .hint(format!("members found: {}", found()))
                .into());
            }
        }
    }
    chosen.sort_by(|a, b| (a.role, &a.node_id).cmp(&(b.role, &b.node_id)));
    chosen.dedup();
    Ok(chosen)
}

/// A compactor's output directories, in the order a backup captures them, with their phases.
pub(super) const COMPACTION: [(&str, Phase); 3] = [
    ("cs", Phase::CompactionSummaries),
    ("cd", Phase::CompactionDetails),
    ("c", Phase::CompactedData),
];

/// Capture a compactor's `cs/`, `cd/` and `c/` in that order, repeated until a round in which no
/// listed file vanished (the compactor removes superseded output): the result is then exactly
/// the files listed at that round's start. Returns the entries and the rounds taken.
async fn capture_compaction(
    capture: &mut RepoCapture,
    source: &ClusterSource,
    member: &Member,
    settings: &Settings,
) -> Result<(Vec<Entry>, u32)> {
    let store = source.prefix(&member.node_id).node;
    capture.switch_to(store.clone(), &member.node_id);
    let mut round = 0;
    loop {
        round += 1;
        let mut listed = Vec::new();
        let mut vanished = 0;
        for (dir, phase) in COMPACTION {
            let objects = list_classified(store.as_ref(), Some(dir)).await?;
            let outcomes = capture.capture(phase, &objects).await?;
            vanished += outcomes
                .iter()
                .filter(|c| **c == Captured::Vanished)
                .count();
            listed.extend(
                objects
                    .into_iter()
                    .zip(outcomes)
                    .filter(|(_, c)| *c == Captured::Yes)
                    .map(|(o, _)| o.key),
            );
        }
        if vanished == 0 || round > settings.max_replans {
            if vanished > 0 {
                tracing::warn!(
                    node = member.node_id,
                    vanished,
                    "compactor output kept changing; backed up what the last round captured"
                );
            }
            return Ok((capture.entries_for(&listed), round));
        }
        tracing::info!(
            node = member.node_id,
            vanished,
            "compactor files vanished while copied; capturing its output again"
        );
    }
}

/// One member's consistent cut (WAL, snapshots, Parquet; its catalog is the cluster's).
async fn cut_member(
    capture: &mut RepoCapture,
    source: &ClusterSource,
    member: &Member,
    settings: &Settings,
) -> Result<(Vec<Entry>, super::record::SourceRecord)> {
    let node = source.prefix(&member.node_id);
    capture.switch_to(node.node.clone(), &member.node_id);
    let options = CutOptions {
        node_prefix: member.node_id.clone(),
        max_replans: settings.max_replans,
        allow_inconsistent: settings.allow_inconsistent,
        catalog_in_prefix: false,
    };
    let cut = take_consistent_cut(node.node.as_ref(), capture, &options).await?;
    let entries = capture.entries_of(&cut)?;
    let mut record = source_record(&node, &cut, capture.take_wal_findings());
    capture.carry_absences(&mut record, &cut);
    Ok((entries, record))
}

/// The cluster catalog, after every node: at least `required` (what the nodes' data needs).
async fn cut_catalog(
    capture: &mut RepoCapture,
    source: &ClusterSource,
    required: u64,
    settings: &Settings,
) -> Result<(Vec<Entry>, super::record::SourceRecord)> {
    let cluster = source.prefix(&source.cluster_id);
    capture.switch_to(cluster.node.clone(), &source.cluster_id);
    let options = CutOptions {
        node_prefix: source.cluster_id.clone(),
        max_replans: settings.max_replans,
        allow_inconsistent: settings.allow_inconsistent,
        catalog_in_prefix: true,
    };
    let cut = match take_catalog_cut(
        cluster.node.as_ref(),
        capture,
        &source.cluster_id,
        required,
        &options,
    )
    .await
    {
        Err(ib3_influx::Error::Inconsistent { message }) => {
            return Err(Failure::new(INCONSISTENT, message)
                .hint(
                    "the catalog is behind the nodes' data or damaged: run `inspect --cluster-id`",
                )
                .into())
        }
        other => other?,
    };
    let entries = capture.entries_of(&cut)?;
    Ok((entries, source_record(&cluster, &cut, Vec::new())))
}

/// The `enterprise` file and the license files that exist now (read whole, every time).
async fn capture_cluster_files(
    capture: &mut RepoCapture,
    source: &ClusterSource,
) -> Result<Vec<Entry>> {
    let cluster = source.prefix(&source.cluster_id).node;
    capture.switch_to(cluster.clone(), &source.cluster_id);
    let objects = cluster_files(cluster.as_ref()).await?;
    let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
    capture.capture(Phase::ClusterConfig, &objects).await?;
    Ok(capture.entries_for(&keys))
}

/// The `enterprise` file and the license files under the cluster prefix (`cluster`) now.
pub(super) async fn cluster_files(cluster: &dyn ObjectStore) -> Result<Vec<SourceObject>> {
    let mut objects = Vec::new();
    for name in [ENTERPRISE_FILE].into_iter().chain(LICENSE_FILES) {
        match cluster.head(&Path::from(name)).await {
            Ok(meta) => objects.push(SourceObject {
                class: ObjectClass::ClusterConfig,
                ..SourceObject::listed(meta)
            }),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(objects)
}

/// Copy the server's own backup `<cluster>/backups/<name>/` (opaque files), repeated until two
/// listings agree, so a backup still being written is never taken for a complete one.
async fn copy_builtin_backup(
    capture: &mut RepoCapture,
    source: &ClusterSource,
    survey: &ClusterSurvey,
    name: &str,
    settings: &Settings,
) -> Result<Outcome> {
    if name.is_empty() || name.contains('/') || !survey.builtin_backups.iter().any(|b| b == name) {
        let found = if survey.builtin_backups.is_empty() {
            "there is none".to_string()
        } else {
            format!("found: {}", survey.builtin_backups.join(", "))
        };
        return Err(Failure::new(
            if name.contains('/') {
                USAGE
            } else {
                NOT_A_NODE
            },
            format!(
                "no built-in backup {name:?} under {}/backups/ in {} ({found})",
                source.cluster_id, source.root.location
            ),
        )
        .hint("list them with `influxdb3 show backups`, or `influxdb3-backup inspect --cluster-id`")
        .into());
    }
    let prefix = format!("{}/backups/{name}", source.cluster_id);
    let store = source.prefix(&prefix).node;
    capture.switch_to(store.clone(), &prefix);
    for _ in 0..=settings.max_replans {
        let before = list_opaque(store.as_ref()).await?;
        let outcomes = capture.capture(Phase::BuiltinBackup, &before).await?;
        let after = list_opaque(store.as_ref()).await?;
        if outcomes.iter().all(|c| *c == Captured::Yes) && after == before {
            let keys: Vec<String> = before.iter().map(|o| o.key.clone()).collect();
            let record = ClusterRecord {
                product: PRODUCT_ENTERPRISE.into(),
                kind: ClusterBackupKind::BuiltinBackup,
                cluster_id: source.cluster_id.clone(),
                object_store: source.root.kind.into(),
                location: source.root.location.clone(),
                storage_mode: serde_json::to_value(survey.storage_mode)?
                    .as_str()
                    .unwrap_or("unknown")
                    .into(),
                server_versions: "3.10+ (Enterprise, PachaTree)".into(),
                consistent: true,
                catalog: None,
                members: Vec::new(),
                selected: Vec::new(),
                cluster_files: Vec::new(),
                skipped: serde_json::Value::Array(Vec::new()),
                builtin_backup: Some(name.to_string()),
            };
            return Ok(Outcome {
                entries: capture.entries_for(&keys),
                record: serde_json::to_value(&record)?,
                consistent: true,
                replans: 0,
            });
        }
    }
    Err(Failure::new(
        INCONSISTENT,
        format!(
            "built-in backup {prefix}/ changed while it was copied: the server is still writing it"
        ),
    )
    .hint("wait until `influxdb3 show backups` reports it complete, then run create again")
    .into())
}

/// Every object under a built-in backup's prefix, sorted.
async fn list_opaque(store: &dyn ObjectStore) -> Result<Vec<SourceObject>> {
    let mut objects: Vec<SourceObject> = list_classified(store, None)
        .await?
        .into_iter()
        .map(|o| SourceObject {
            class: ObjectClass::BuiltinBackup,
            ..o
        })
        .collect();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}
