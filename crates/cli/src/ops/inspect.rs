//! `inspect`: the read-only report on a live node (see [`ib3_influx::inspect`]), or with
//! `--cluster-id` on a whole Enterprise cluster: its members, storage engine, cluster files,
//! built-in backups, each member node, and the cluster catalog judged against what they need.

use super::create::as_node;
use crate::exit::{Failure, NOT_A_NODE};
use crate::stores::{NodeStore, RootStore};
use anyhow::Result;
use ib3_influx::cluster::{survey, ClusterSurvey, Role};
use ib3_influx::cut::SourceObject;
use ib3_influx::inspect::{inspect_cluster_catalog, inspect_listing, Inspection};
use ib3_influx::rules::CatalogScope;
use serde::Serialize;

/// Run `inspect` on one node.
pub async fn inspect(source: &NodeStore, concurrency: usize) -> Result<Inspection> {
    let listing = list_node(source).await?;
    inspect_listed(source, listing, concurrency).await
}

/// Every object under the node prefix; an empty one is not a node (the error names the fix).
pub(super) async fn list_node(source: &NodeStore) -> Result<Vec<SourceObject>> {
    let listing = ib3_influx::inspect::list_node(source.node.as_ref(), &source.node_id).await;
    as_node(source, listing).await
}

/// The node judged from its `listing` (a Core node: its catalog with it).
pub(super) async fn inspect_listed(
    source: &NodeStore,
    listing: Vec<SourceObject>,
    concurrency: usize,
) -> Result<Inspection> {
    let (store, scope) = (source.node.as_ref(), CatalogScope::Here);
    let judged = inspect_listing(store, &source.node_id, listing, scope, concurrency).await;
    as_node(source, judged).await
}

/// The members, storage engine and files of cluster `cluster_id` at the store root `root`; no
/// cluster there is an error naming what to check.
pub(super) async fn survey_cluster(root: &RootStore, cluster_id: &str) -> Result<ClusterSurvey> {
    match survey(root.store.as_ref(), cluster_id).await {
        Err(ib3_influx::Error::NotANode { message }) => Err(Failure::new(NOT_A_NODE, message)
            .hint("check --cluster-id and the store options (--object-store, --data-dir, --bucket)")
            .into()),
        other => Ok(other?),
    }
}

/// The report on a cluster.
#[derive(Debug, Serialize)]
pub struct ClusterInspection {
    /// Members, engine, cluster files, built-in backups, prefixes left out.
    pub cluster: ClusterSurvey,
    /// Each member with node files, compactors first.
    pub members: Vec<Inspection>,
    /// The cluster catalog, judged against the highest sequence the members' data needs.
    pub catalog: Inspection,
    /// Whether a file-level backup (`create --cluster-id`) applies: the Parquet engine.
    pub file_backup_supported: bool,
}

impl ClusterInspection {
    /// Whether any member or the catalog breaks a consistency rule.
    pub fn has_errors(&self) -> bool {
        self.catalog.judgement.has_errors() || self.members.iter().any(|m| m.judgement.has_errors())
    }
}

/// Run `inspect --cluster-id`.
pub async fn inspect_cluster(
    root: &RootStore,
    cluster_id: &str,
    concurrency: usize,
) -> Result<ClusterInspection> {
    let cluster = survey_cluster(root, cluster_id).await?;
    let mut members = Vec::new();
    let mut required = 0;
    for member in cluster.members.iter().filter(|m| m.has_node_files) {
        let node = root.node(&member.node_id);
        let report = ib3_influx::inspect::inspect(
            node.node.as_ref(),
            &member.node_id,
            CatalogScope::Elsewhere,
            concurrency,
        )
        .await?;
        required = required.max(
            report
                .judgement
                .point
                .catalog_sequence_required
                .unwrap_or(0),
        );
        members.push(report);
    }
    let catalog_store = root.node(cluster_id).node;
    let catalog =
        inspect_cluster_catalog(catalog_store.as_ref(), cluster_id, required, concurrency).await?;
    Ok(ClusterInspection {
        file_backup_supported: cluster.storage_mode.is_parquet(),
        cluster,
        members,
        catalog,
    })
}

/// `compactor` or `data`.
pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Compactor => "compactor",
        Role::Data => "data",
    }
}
