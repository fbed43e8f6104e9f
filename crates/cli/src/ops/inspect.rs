//! `inspect`: the read-only report on a live node (see [`ib3_influx::inspect`]), or with
//! `--cluster-id` on a whole Enterprise cluster: its members, storage engine, cluster files,
//! built-in backups, each member node, and the cluster catalog judged against what they need.

use super::create::not_a_node;
use crate::exit::{Failure, NOT_A_NODE};
use crate::stores::{NodeStore, RootStore};
use anyhow::Result;
use ib3_influx::cluster::{survey, ClusterSurvey, Role};
use ib3_influx::inspect::{inspect_cluster_catalog, Inspection};
use ib3_influx::rules::CatalogScope;
use serde::Serialize;

/// Run `inspect` on one node.
pub async fn inspect(source: &NodeStore, concurrency: usize) -> Result<Inspection> {
    let scope = CatalogScope::Here;
    match ib3_influx::inspect::inspect(source.node.as_ref(), &source.node_id, scope, concurrency)
        .await
    {
        Err(ib3_influx::Error::NotANode { message }) => Err(not_a_node(source, message).await),
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
    let cluster = match survey(root.store.as_ref(), cluster_id).await {
        Err(ib3_influx::Error::NotANode { message }) => return Err(Failure::new(
            NOT_A_NODE, message,
        )
        .hint("check --cluster-id and the store options (--object-store, --data-dir, --bucket)")
        .into()),
        other => other?,
    };
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
