//! `prune`: apply a retention policy per node, then garbage-collect the blobs only the removed
//! backups held. Holds the exclusive repository lock; `--dry-run` prints the plan only.

use super::record::BackupSource;
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
    /// Local repositories: `name#N` files of writes killed mid-way (object_store's staging,
    /// invisible to listings) removed once older than the grace period.
    pub local_leftovers_removed: u64,
}

/// Run `prune`.
pub async fn prune(
    repo: &Repository,
    local_dir: Option<&std::path::Path>,
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
    let swept = match (&result, local_dir) {
        (Ok(_), Some(dir)) if !dry_run => sweep_local_leftovers(dir, grace),
        _ => 0,
    };
    lock.release().await?;
    result.map(|mut report| {
        report.local_leftovers_removed = swept;
        report
    })
}

async fn plan_and_execute(
    repo: &Repository,
    policy: &KeepPolicy,
    grace: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    let mut candidates = Vec::new();
    for id in repo.list_backups().await? {
        let manifest = repo.load_stored_manifest(&id).await?.manifest;
        let group = BackupSource::parse(&manifest.source)
            .map(|s| format!("{} ({})", s.subject(), s.location()))
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
        local_leftovers_removed: 0,
    })
}

/// Remove `name#<digits>` files older than `grace` under a local repository directory: the
/// staging files `object_store`'s `LocalFileSystem` leaves when a write is killed. No listing
/// shows them, so only a walk of the directory finds them. Best effort; returns how many went.
fn sweep_local_leftovers(dir: &std::path::Path, grace: Duration) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += sweep_local_leftovers(&path, grace);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_staging = name
            .rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= grace);
        if is_staging && old && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}
