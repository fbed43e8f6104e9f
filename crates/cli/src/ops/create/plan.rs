//! `create --dry-run`: what a backup of a node would hold and read, from a listing of the node,
//! the consistency rules applied to it as it stands, and the node's previous backup in the
//! repository. It reads the node's state files (snapshots, catalog) but no Parquet or WAL
//! file, and writes nothing: no repository is initialised and no lock is taken.

use super::{not_a_node, previous_entries, CreateSource, Settings};
use crate::exit::{Failure, USAGE};
use crate::progress::Bar;
use anyhow::Result;
use ib3_influx::cut::{list_classified, SourceObject};
use ib3_influx::inspect::{inspect_listing, Inspection};
use ib3_influx::path::ObjectClass;
use ib3_influx::rules::CatalogScope;
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
    /// The backup of this node the run would build on, if any.
    pub previous_backup: Option<String>,
    /// The node, its layout and what the consistency rules find in it now.
    pub node: Inspection,
    /// Whether the node as it stands is consistent: a backup would commit without re-plans
    /// (one taken while the server snapshots re-plans until it is).
    pub consistent: bool,
    /// Objects the backup would hold, and their bytes (derived table indexes left out).
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
    let CreateSource::Node(node) = &source else {
        return Err(Failure::new(
            USAGE,
            "create --dry-run foretells the backup of one node; with --cluster-id it is not \
             available",
        )
        .hint(
            "run `inspect --cluster-id …` to see what a cluster holds and whether it is consistent",
        )
        .into());
    };
    let listing = list_classified(node.node.as_ref(), None).await?;
    if listing.is_empty() {
        let message = format!("no objects under the node prefix {}/", node.node_id);
        return Err(not_a_node(node, message).await);
    }
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
    let inspection = inspect_listing(
        node.node.as_ref(),
        &node.node_id,
        listing,
        CatalogScope::Here,
        concurrency,
    )
    .await;
    let inspection = match inspection {
        Err(ib3_influx::Error::NotANode { message }) => return Err(not_a_node(node, message).await),
        other => other?,
    };
    Ok(CreatePlan {
        dry_run: true,
        repository: location,
        repository_exists: repo.is_some(),
        previous_backup: previous_backup.map(|id| id.to_string()),
        consistent: !inspection.judgement.has_errors(),
        node: inspection,
        objects: reads.objects,
        bytes: reads.bytes,
        objects_to_read: reads.objects_to_read,
        bytes_to_read: reads.bytes_to_read,
        objects_unchanged: reads.objects - reads.objects_to_read,
    })
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
