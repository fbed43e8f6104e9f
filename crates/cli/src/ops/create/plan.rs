//! `create --dry-run`: what a backup of a node or a cluster would hold and read, from a listing
//! of what it would capture, the consistency rules applied to the source as it stands (as
//! `inspect` applies them), and the source's previous backup in the repository. It reads the
//! state files (snapshots, catalog) but no Parquet or WAL file, and writes nothing: no
//! repository is initialised and no lock is taken.

use super::{previous_entries, CreateSource, Settings};
use crate::ops::create_cluster::{
    cluster_files, refuse_pacha_tree, select_members, ClusterSource, COMPACTION,
};
use crate::ops::inspect::{inspect_cluster, inspect_listed, list_node, ClusterInspection};
use crate::progress::Bar;
use anyhow::Result;
use ib3_influx::cluster::{ClusterSurvey, Role};
use ib3_influx::cut::{list_classified, SourceObject};
use ib3_influx::inspect::Inspection;
use ib3_influx::path::{classify_cluster, ObjectClass};
use ib3_repo::Repository;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// What a backup would do, as `create --dry-run` foretells it.
#[derive(Debug, Serialize)]
pub struct CreatePlan {
    /// Always true: nothing was written.
    pub dry_run: bool,
    /// The repository.
    pub repository: String,
    /// Whether the repository exists (a backup would initialise it otherwise).
    pub repository_exists: bool,
    /// The backup of this source the run would build on, if any.
    pub previous_backup: Option<String>,
    /// A node: its layout and what the consistency rules find in it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Inspection>,
    /// A cluster: its members, each judged, and its catalog judged against their data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInspection>,
    /// Whether the source as it stands is consistent: a backup would commit without re-plans
    /// (one taken while the server snapshots re-plans until it is).
    pub consistent: bool,
    /// Objects the backup would hold (derived table indexes left out).
    pub objects: u64,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Objects it would read from the source: new or changed since the previous backup, and the
    /// files the server rewrites in place.
    pub objects_to_read: u64,
    /// Bytes of those objects: at most this much is uploaded (content the repository holds
    /// already under another path is not).
    pub bytes_to_read: u64,
    /// Objects the previous backup holds unchanged: taken over unread.
    pub objects_unchanged: u64,
}

/// Foretell a backup of `source` into the repository at `location` (`repo`, if it exists),
/// changing nothing. `rescan_after` and `concurrency` as for `create`.
pub async fn plan(
    source: CreateSource,
    repo: Option<Repository>,
    location: String,
    rescan_after: Duration,
    concurrency: usize,
) -> Result<CreatePlan> {
    let (listing, cluster) = match &source {
        CreateSource::Node(node) => (list_node(node).await?, None),
        CreateSource::Cluster(cluster) => {
            let judged = judge_cluster(cluster, concurrency).await?;
            (
                cluster_listing(cluster, &judged.cluster).await?,
                Some(judged),
            )
        }
    };
    let (reads, previous_backup) = match &repo {
        Some(repo) => {
            let settings = Settings {
                concurrency,
                max_replans: 0,
                allow_inconsistent: false,
                reread_snapshots: false,
                rescan_after,
                compression: None,
                bar: Bar::new(false),
                started_at: SystemTime::now(),
                local: None,
            };
            let previous = previous_entries(repo, &source.identity(), &source, &settings).await?;
            (Reads::against(&previous.entries, &listing), previous.newest)
        }
        None => (Reads::all(&listing), None),
    };
    let node = match &source {
        CreateSource::Node(node) => Some(inspect_listed(node, listing, concurrency).await?),
        CreateSource::Cluster(_) => None,
    };
    let consistent = match (&node, &cluster) {
        (Some(node), _) => !node.judgement.has_errors(),
        (None, Some(cluster)) => !cluster.has_errors(),
        (None, None) => true,
    };
    Ok(CreatePlan {
        dry_run: true,
        repository: location,
        repository_exists: repo.is_some(),
        previous_backup: previous_backup.map(|id| id.to_string()),
        node,
        cluster,
        consistent,
        objects: reads.objects,
        bytes: reads.bytes,
        objects_to_read: reads.objects_to_read,
        bytes_to_read: reads.bytes_to_read,
        objects_unchanged: reads.objects - reads.objects_to_read,
    })
}

/// The cluster judged as `inspect --cluster-id` does; a PachaTree cluster is refused as
/// `create` refuses it.
async fn judge_cluster(cluster: &ClusterSource, concurrency: usize) -> Result<ClusterInspection> {
    let judged = inspect_cluster(&cluster.root, &cluster.cluster_id, concurrency).await?;
    refuse_pacha_tree(&judged.cluster)?;
    Ok(judged)
}

/// What a backup of the cluster captures, keyed from the store root as its entries are: each
/// chosen member's compactor output (`cs/`, `cd/`, `c/`) and node files, then the cluster
/// catalog's files and the cluster files.
async fn cluster_listing(
    cluster: &ClusterSource,
    survey: &ClusterSurvey,
) -> Result<Vec<SourceObject>> {
    let mut listing = Vec::new();
    for member in select_members(survey, &cluster.nodes)? {
        let store = cluster.root.node(&member.node_id).node;
        let mut objects = Vec::new();
        if member.role == Role::Compactor {
            for (dir, _) in COMPACTION {
                objects.extend(list_classified(store.as_ref(), Some(dir)).await?);
            }
        }
        if member.has_node_files {
            let node_files = list_classified(store.as_ref(), None).await?;
            objects.extend(node_files.into_iter().filter(|o| !is_compaction(&o.key)));
        }
        listing.extend(under(&member.node_id, objects));
    }
    let store = cluster.root.node(&cluster.cluster_id).node;
    let catalog = list_classified(store.as_ref(), None).await?;
    let catalog = catalog.into_iter().filter(|o| {
        matches!(
            classify_cluster(&o.key),
            ObjectClass::CatalogLog { .. } | ObjectClass::CatalogCheckpoint { .. }
        )
    });
    listing.extend(under(&cluster.cluster_id, catalog));
    let files = cluster_files(store.as_ref()).await?;
    listing.extend(under(&cluster.cluster_id, files));
    Ok(listing)
}

/// Whether `key` (from a member's prefix) is compactor output.
fn is_compaction(key: &str) -> bool {
    COMPACTION.iter().any(|(dir, _)| {
        key.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// `objects` keyed from the store root: under `prefix/`.
fn under(prefix: &str, objects: impl IntoIterator<Item = SourceObject>) -> Vec<SourceObject> {
    objects
        .into_iter()
        .map(|object| SourceObject {
            key: format!("{prefix}/{}", object.key),
            ..object
        })
        .collect()
}

/// The objects a backup would hold, and those of them it would read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reads {
    objects: u64,
    bytes: u64,
    objects_to_read: u64,
    bytes_to_read: u64,
}

impl Reads {
    /// With nothing to build on: every object is read.
    fn all(listing: &[SourceObject]) -> Self {
        Self::counted(listing, |_| true)
    }

    /// Against the previous backup's entries, by the rule a backup applies: an immutable object
    /// at the same path and size, not written since that backup recorded it, is taken over
    /// unread; anything else is read.
    fn against(previous: &super::PreviousEntries, listing: &[SourceObject]) -> Self {
        Self::counted(listing, |object| {
            !object.class.is_immutable()
                || !previous.reuse_if(&object.key, object.modified, |entry| {
                    entry.size == object.size
                })
        })
    }

    fn counted(listing: &[SourceObject], read: impl Fn(&SourceObject) -> bool) -> Self {
        let mut reads = Reads::default();
        for object in listing.iter().filter(|o| o.class != ObjectClass::Derived) {
            reads.objects += 1;
            reads.bytes += object.size;
            if read(object) {
                reads.objects_to_read += 1;
                reads.bytes_to_read += object.size;
            }
        }
        reads
    }
}
