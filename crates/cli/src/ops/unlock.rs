//! `unlock`: remove locks left by dead processes (or every lock).

use anyhow::Result;
use ib3_repo::lock::LockInfo;
use ib3_repo::Repository;
use serde::Serialize;

/// What `unlock` removed, or would remove.
#[derive(Debug, Serialize)]
pub struct UnlockReport {
    /// Repository location.
    pub repository: String,
    /// Nothing was removed: `removed` lists the locks that would have been.
    pub dry_run: bool,
    /// Locks removed.
    pub removed: Vec<LockInfo>,
}

/// Run `unlock`.
pub async fn unlock(repo: &Repository, stale_only: bool, dry_run: bool) -> Result<UnlockReport> {
    let now = std::time::SystemTime::now();
    let removed = if dry_run {
        repo.unlockable(stale_only, now).await?
    } else {
        repo.unlock(stale_only, now).await?
    };
    Ok(UnlockReport {
        repository: repo.location().to_string(),
        dry_run,
        removed,
    })
}
