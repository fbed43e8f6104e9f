//! `prune`: apply a retention policy per node, then garbage-collect the blobs only the removed
//! backups held. Holds the exclusive repository lock; `--dry-run` prints the plan only.

use super::record::SourceRecord;
use crate::exit::{Failure, USAGE};
use anyhow::Result;
use ib3_repo::gc::{plan_gc, GcPlan};
use ib3_repo::lock::LockKind;
use ib3_repo::retention::{Candidate, Decision, KeepPolicy};
use ib3_repo::Repository;
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// What `prune` decided and did.
#[derive(Debug, Serialize)]
pub struct PruneReport {
    /// Repository location.
    pub repository: String,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// One decision per backup, grouped by node, newest first.
    pub decisions: Vec<Decision>,
    /// Garbage collection.
    pub gc: GcPlan,
}

/// Run `prune`.
pub async fn prune(
    repo: &Repository,
    policy: &KeepPolicy,
    grace: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    if policy.keeps_nothing() {
        return Err(Failure::new(
            USAGE,
            "no --keep-* rule given: prune would remove every backup",
        )
        .hint("give at least one rule, e.g. --keep-last 7 --keep-daily 14")
        .into());
    }
    let lock = repo.lock(LockKind::Exclusive, "prune").await?;
    let result = plan_and_execute(repo, policy, grace, dry_run).await;
    lock.release().await?;
    result
}

async fn plan_and_execute(
    repo: &Repository,
    policy: &KeepPolicy,
    grace: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    let mut candidates = Vec::new();
    for id in repo.list_backups().await? {
        let manifest = repo.load_manifest(&id).await?;
        let group = serde_json::from_value::<SourceRecord>(manifest.source.clone())
            .map(|r| format!("{} ({})", r.node_id, r.location))
            .unwrap_or_else(|_| "unknown source".to_string());
        let time = humantime::parse_rfc3339(&manifest.started_at).unwrap_or(SystemTime::UNIX_EPOCH);
        candidates.push(Candidate { id, time, group });
    }
    let decisions = policy.apply(&candidates);
    let remove: Vec<_> = decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.id.clone())
        .collect();
    let gc = plan_gc(repo, &remove, grace, SystemTime::now()).await?;
    if !dry_run {
        gc.execute(repo).await?;
    }
    Ok(PruneReport {
        repository: repo.location().to_string(),
        dry_run,
        decisions,
        gc,
    })
}
