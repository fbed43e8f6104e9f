//! InfluxDB 3 Enterprise clusters (format doc §7): which prefixes of a store make up a cluster,
//! which storage engine it runs, and what its catalog registers.
//!
//! A cluster keeps its catalog, license files and `enterprise` file under the cluster id, and each
//! node's WAL, snapshots and Parquet under the node id, siblings at the store root. A compactor
//! is a node prefix holding `cs/`, `cd/` or `c/`. A prefix that has a catalog of its own is a
//! Core node (or another cluster) and never a member.
//!
//! [`survey`] only lists and reads catalog files; it changes nothing.

use crate::catalog::{
    cluster_facts, parse_catalog_file, v3_record_names_node, CatalogFileKind, ClusterFacts,
};
use crate::layout::detect;
use crate::path::{
    classify_cluster, CatalogGeneration, ObjectClass, BUILTIN_BACKUPS_DIR, ENTERPRISE_FILE,
    LICENSE_FILES,
};
use crate::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use std::collections::BTreeSet;

/// What a member prefix does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A compactor (it holds `cs/`, `cd/` or `c/`); backed up first, restored last.
    Compactor,
    /// A data node (ingest, query or process): WAL, snapshots, Parquet.
    Data,
}

/// Whether the cluster catalog registers a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
    /// Registered (read from the catalog).
    Registered,
    /// Not registered: the catalog's node list is exact (v1/v2 JSON) and does not name it.
    NotRegistered,
    /// Could not be confirmed: v3 records are not decoded and the id was not found in them.
    Unconfirmed,
}

/// A node prefix of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The node id (prefix).
    pub node_id: String,
    /// Compactor or data node.
    pub role: Role,
    /// Whether the prefix has node files (WAL, snapshots, Parquet) besides compactor output.
    pub has_node_files: bool,
    /// What the catalog says about it.
    pub registration: Registration,
}

/// A prefix at the store root that is not taken as a member, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The prefix.
    pub prefix: String,
    /// Why it is left out.
    pub reason: String,
}

/// The storage engine the cluster catalog selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageMode {
    /// The Parquet engine (the default before 3.11): file-level backups apply.
    Parquet,
    /// The upgraded PachaTree engine: back up with the server's own `influxdb3 create backup`.
    PachaTree,
    /// Both engines during an upgrade: as PachaTree.
    ParquetAndPachaTree,
    /// A v3 `SetStorageMode` record whose body is not understood: treated as PachaTree.
    Changed,
}

impl StorageMode {
    /// Whether file-level backups of this cluster are sound.
    pub fn is_parquet(self) -> bool {
        self == StorageMode::Parquet
    }
}

/// What a store holds for one cluster id.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSurvey {
    /// The cluster id (prefix).
    pub cluster_id: String,
    /// Generation of the active cluster catalog.
    pub catalog_generation: Option<CatalogGeneration>,
    /// The storage engine, and the catalog file that said so (`None`: default Parquet).
    pub storage_mode: StorageMode,
    /// The catalog file that set the storage mode, if any did.
    pub storage_mode_set_by: Option<String>,
    /// Cluster files present (license files, `enterprise`), relative to the cluster prefix.
    pub cluster_files: Vec<String>,
    /// Names of the server's own backups under `backups/`.
    pub builtin_backups: Vec<String>,
    /// Member prefixes: compactors first, then data nodes, each sorted by id.
    pub members: Vec<Member>,
    /// Prefixes at the store root left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Node ids the catalog registers that have no prefix in the store (nothing to back up).
    pub registered_without_files: Vec<String>,
}

/// Survey the cluster `cluster_id` in the store `root` (rooted at the data dir or bucket).
/// Fails with [`Error::NotANode`] when there is no cluster catalog under the cluster id.
pub async fn survey(root: &dyn ObjectStore, cluster_id: &str) -> Result<ClusterSurvey> {
    let cluster = Path::from(cluster_id);
    let keys = list_relative(root, &cluster).await?;
    let layout = detect(keys.iter().map(String::as_str));
    let Some(active) = layout.active_catalog else {
        return Err(no_cluster_catalog(root, cluster_id, &keys).await);
    };
    let facts = read_active_catalog(root, cluster_id, &keys, active).await?;
    let (storage_mode, storage_mode_set_by) = storage_mode(&facts);
    let mut cluster_files: Vec<String> = keys
        .iter()
        .filter(|k| **k == ENTERPRISE_FILE || LICENSE_FILES.contains(&k.as_str()))
        .cloned()
        .collect();
    cluster_files.sort();
    let builtin_backups = keys
        .iter()
        .filter(|k| classify_cluster(k) == ObjectClass::BuiltinBackup)
        .filter_map(|k| k.strip_prefix(BUILTIN_BACKUPS_DIR)?.split('/').next())
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let exact_registry = active != CatalogGeneration::V3;
    let registered: BTreeSet<String> = facts
        .iter()
        .flat_map(|(_, f)| f.registered_nodes.iter().cloned())
        .collect();
    let register_records: Vec<&Vec<u8>> = facts
        .iter()
        .flat_map(|(_, f)| &f.register_records)
        .collect();
    let registration = |node: &str| {
        if registered.contains(node)
            || register_records
                .iter()
                .any(|body| v3_record_names_node(body, node))
        {
            Registration::Registered
        } else if exact_registry {
            Registration::NotRegistered
        } else {
            Registration::Unconfirmed
        }
    };
    let (mut members, skipped) = find_members(root, cluster_id, &registration).await?;
    members.sort_by(|a, b| (a.role, &a.node_id).cmp(&(b.role, &b.node_id)));
    let registered_without_files = registered
        .iter()
        .filter(|id| !members.iter().any(|m| &m.node_id == *id))
        .filter(|id| !skipped.iter().any(|s| &s.prefix == *id))
        .cloned()
        .collect();
    Ok(ClusterSurvey {
        cluster_id: cluster_id.to_string(),
        catalog_generation: Some(active),
        storage_mode,
        storage_mode_set_by,
        cluster_files,
        builtin_backups,
        members,
        skipped,
        registered_without_files,
    })
}

/// Every key under `prefix`, relative to it.
async fn list_relative(root: &dyn ObjectStore, prefix: &Path) -> Result<Vec<String>> {
    let store_error = |source| Error::Store {
        object: format!("{prefix}/"),
        source,
    };
    let listed: Vec<_> = root
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(store_error)?;
    let strip = format!("{prefix}/");
    Ok(listed
        .into_iter()
        .filter_map(|m| m.location.as_ref().strip_prefix(&strip).map(str::to_string))
        .collect())
}

/// Catalog files read at once.
const CATALOG_READS: usize = 16;

/// The cluster facts of the active catalog's checkpoint and of the logs after it (key, facts),
/// oldest first. The checkpoint holds the whole state up to its sequence (v1/v2: the node list
/// and storage mode; v3: every record), so older logs add nothing.
async fn read_active_catalog(
    root: &dyn ObjectStore,
    cluster_id: &str,
    keys: &[String],
    active: CatalogGeneration,
) -> Result<Vec<(String, ClusterFacts)>> {
    let mut checkpoint = None;
    let mut logs: Vec<(u64, &String)> = Vec::new();
    for key in keys {
        match classify_cluster(key) {
            ObjectClass::CatalogLog { generation, seq } if generation == active => {
                logs.push((seq, key))
            }
            ObjectClass::CatalogCheckpoint { generation } if generation == active => {
                checkpoint = Some(key)
            }
            _ => {}
        }
    }
    let mut facts = Vec::new();
    let mut after = 0;
    if let Some(key) = checkpoint {
        if let Some(bytes) = read_catalog_file(root, cluster_id, key).await? {
            let full = format!("{cluster_id}/{key}");
            let kind = CatalogFileKind::Checkpoint;
            after = parse_catalog_file(&full, active, kind, &bytes)?.sequence;
            facts.push((full.clone(), cluster_facts(&full, active, kind, &bytes)?));
        }
    }
    logs.retain(|(seq, _)| *seq > after);
    logs.sort();
    let read: Vec<(String, Option<bytes::Bytes>)> = futures::stream::iter(logs)
        .map(|(_, key)| async move {
            let bytes = read_catalog_file(root, cluster_id, key).await?;
            Ok::<_, Error>((format!("{cluster_id}/{key}"), bytes))
        })
        .buffered(CATALOG_READS)
        .try_collect()
        .await?;
    for (full, bytes) in read {
        // A log removed by the catalog GC between listing and reading: a newer checkpoint
        // holds its content.
        if let Some(bytes) = bytes {
            let log_facts = cluster_facts(&full, active, CatalogFileKind::Log, &bytes)?;
            facts.push((full, log_facts));
        }
    }
    Ok(facts)
}

/// A catalog file's bytes, `None` when it vanished.
async fn read_catalog_file(
    root: &dyn ObjectStore,
    cluster_id: &str,
    key: &str,
) -> Result<Option<bytes::Bytes>> {
    let full = Path::from(format!("{cluster_id}/{key}"));
    let read = match root.get(&full).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    };
    match read {
        Ok(bytes) => Ok(Some(bytes)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(Error::Store {
            object: full.to_string(),
            source,
        }),
    }
}

/// The storage mode set last (files are oldest first), and by which file.
fn storage_mode(facts: &[(String, ClusterFacts)]) -> (StorageMode, Option<String>) {
    let last = facts
        .iter()
        .rev()
        .find_map(|(key, f)| f.storage_mode.as_deref().map(|m| (m, key)));
    match last {
        None => (StorageMode::Parquet, None),
        Some((mode, key)) => {
            let mode = match mode {
                "Parquet" => StorageMode::Parquet,
                "PachaTree" => StorageMode::PachaTree,
                "ParquetAndPachaTree" => StorageMode::ParquetAndPachaTree,
                _ => StorageMode::Changed,
            };
            (mode, Some(key.clone()))
        }
    }
}

/// Subdirectories that make a prefix a node.
const NODE_DIRS: [&str; 4] = ["wal", "snapshots", "dbs", "snapshot-checkpoints"];
/// Subdirectories that make a prefix a compactor.
const COMPACTOR_DIRS: [&str; 3] = ["cs", "cd", "c"];
/// Entries that give a prefix a catalog of its own (a Core node or another cluster).
const OWN_CATALOG: [&str; 3] = ["catalog", "catalogs", "_catalog_checkpoint"];

/// The member prefixes at the store root, and the node-like prefixes left out.
async fn find_members(
    root: &dyn ObjectStore,
    cluster_id: &str,
    registration: &dyn Fn(&str) -> Registration,
) -> Result<(Vec<Member>, Vec<Skipped>)> {
    let store_error = |object: String| move |source| Error::Store { object, source };
    let top = root
        .list_with_delimiter(None)
        .await
        .map_err(store_error("/".into()))?;
    let mut members = Vec::new();
    let mut skipped = Vec::new();
    for prefix in top.common_prefixes {
        let Some(node_id) = prefix.filename().map(str::to_string) else {
            continue;
        };
        if node_id == cluster_id {
            continue;
        }
        let inner = root
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(store_error(format!("{prefix}/")))?;
        let names: BTreeSet<&str> = inner
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .chain(inner.objects.iter().filter_map(|o| o.location.filename()))
            .collect();
        let has = |set: &[&str]| set.iter().any(|n| names.contains(n));
        let has_node_files = has(&NODE_DIRS);
        let is_compactor = has(&COMPACTOR_DIRS);
        if !has_node_files && !is_compactor {
            continue;
        }
        if has(&OWN_CATALOG) {
            skipped.push(Skipped {
                prefix: node_id,
                reason: "it has a catalog of its own: a Core node or another cluster, not a member of this cluster".into(),
            });
            continue;
        }
        let registration = registration(&node_id);
        if registration == Registration::NotRegistered {
            skipped.push(Skipped {
                reason: format!("it holds node files but cluster {cluster_id}'s catalog does not register it (a node of another cluster?)"),
                prefix: node_id,
            });
            continue;
        }
        members.push(Member {
            node_id,
            role: if is_compactor {
                Role::Compactor
            } else {
                Role::Data
            },
            has_node_files,
            registration,
        });
    }
    Ok((members, skipped))
}

/// Explain a cluster id with no catalog, naming the prefixes that do hold one.
async fn no_cluster_catalog(root: &dyn ObjectStore, cluster_id: &str, keys: &[String]) -> Error {
    let found = root
        .list_with_delimiter(None)
        .await
        .map(|l| {
            l.common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let what = if keys.is_empty() {
        "nothing is stored under it".to_string()
    } else {
        format!("{} objects are stored under it, but no catalog", keys.len())
    };
    let listing = if found.is_empty() {
        "the store is empty".to_string()
    } else {
        format!("prefixes at the store root: {}", found.join(", "))
    };
    Error::NotANode {
        message: format!(
            "no InfluxDB 3 Enterprise cluster {cluster_id:?}: {what} ({listing}); pass the \
             --cluster-id the servers run with (INFLUXDB3_ENTERPRISE_CLUSTER_ID)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ib3_testkit::cluster::{build_cluster, ClusterSpec};
    use object_store::local::LocalFileSystem;

    async fn survey_of(spec: &ClusterSpec<'_>) -> Result<ClusterSurvey> {
        let dir = tempfile::tempdir().expect("tempdir");
        build_cluster(dir.path(), spec);
        let store = LocalFileSystem::new_with_prefix(dir.path()).expect("store");
        survey(&store, spec.cluster_id).await
    }

    fn ids(survey: &ClusterSurvey) -> Vec<(&str, Role, Registration)> {
        survey
            .members
            .iter()
            .map(|m| (m.node_id.as_str(), m.role, m.registration))
            .collect()
    }

    #[tokio::test]
    async fn finds_the_members_of_synthetic_v1_v2_and_v3_clusters() {
        use Registration::Registered;
        for material in ["core-3.3.0-basic", "core-3.9.6-basic", "core-3.10.0-basic"] {
            let survey = survey_of(&ClusterSpec::standard(material))
                .await
                .expect("survey");
            assert_eq!(
                ids(&survey),
                vec![
                    ("comp1", Role::Compactor, Registered),
                    ("node1", Role::Data, Registered),
                    ("node2", Role::Data, Registered),
                    ("node3", Role::Data, Registered),
                ],
                "{material}"
            );
            assert!(!survey.members[0].has_node_files);
            assert!(survey.members[1].has_node_files);
            assert_eq!(survey.storage_mode, StorageMode::Parquet, "{material}");
            assert_eq!(survey.cluster_files, ["commercial_license", "enterprise"]);
            assert!(survey.skipped.is_empty() && survey.builtin_backups.is_empty());
            assert!(survey.registered_without_files.is_empty(), "{material}");
        }
    }

    #[tokio::test]
    async fn leaves_out_core_nodes_and_unregistered_prefixes() {
        let mut spec = ClusterSpec::standard("core-3.9.6-basic");
        spec.neighbours = true;
        let survey = survey_of(&spec).await.expect("survey");
        assert_eq!(survey.members.len(), 4);
        let skipped: Vec<&str> = survey.skipped.iter().map(|s| s.prefix.as_str()).collect();
        assert_eq!(skipped, ["corex", "strayx"]);
        assert!(survey.skipped[0].reason.contains("catalog of its own"));
        assert!(survey.skipped[1].reason.contains("does not register"));

        // v3 records are not decoded: an id not found in them is kept, unconfirmed.
        let mut spec = ClusterSpec::standard("core-3.10.0-basic");
        spec.neighbours = true;
        let survey = survey_of(&spec).await.expect("survey");
        let stray = survey.members.iter().find(|m| m.node_id == "strayx");
        assert_eq!(
            stray.map(|m| m.registration),
            Some(Registration::Unconfirmed)
        );
        assert_eq!(survey.skipped.len(), 1);
    }

    #[tokio::test]
    async fn detects_the_pacha_tree_engine_and_built_in_backups() {
        for (material, expected) in [
            ("core-3.9.6-basic", StorageMode::PachaTree),
            ("core-3.10.0-basic", StorageMode::PachaTree),
        ] {
            let mut spec = ClusterSpec::standard(material);
            spec.storage_mode = Some("PachaTree");
            spec.builtin_backups = vec!["nightly-1", "nightly-2"];
            let survey = survey_of(&spec).await.expect("survey");
            assert_eq!(survey.storage_mode, expected, "{material}");
            assert!(!survey.storage_mode.is_parquet());
            assert!(survey
                .storage_mode_set_by
                .as_deref()
                .is_some_and(|k| k.starts_with("cluster1/catalog/")));
            assert_eq!(survey.builtin_backups, ["nightly-1", "nightly-2"]);
        }
    }

    #[tokio::test]
    async fn a_wrong_cluster_id_names_the_prefixes_found() {
        let mut spec = ClusterSpec::standard("core-3.10.0-basic");
        spec.cluster_id = "cluster1";
        let dir = tempfile::tempdir().expect("tempdir");
        build_cluster(dir.path(), &spec);
        let store = LocalFileSystem::new_with_prefix(dir.path()).expect("store");
        let err = survey(&store, "clusterX")
            .await
            .expect_err("no such cluster");
        let message = err.to_string();
        assert!(message.contains("\"clusterX\""), "{message}");
        assert!(message.contains("cluster1, comp1, node1"), "{message}");
    }
}
