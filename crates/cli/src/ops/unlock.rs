//! `unlock`: remove locks left by dead processes (or every lock).

use anyhow::Result;
use ib3_repo::lock::LockInfo;
use ib3_repo::Repository;
use serde::Serialize;

/// What `unlock` removed.
#[derive(Debug, Serialize)]
pub struct UnlockReport {
    /// Repository location.
    pub repository: String,
    /// Locks removed.
    pub removed: Vec<LockInfo>,
}

/// Run `unlock`.
pub async fn unlock(repo: &Repository, stale_only: bool) -> Result<UnlockReport> {
    let removed = repo
        .unlock(stale_only, std::time::SystemTime::now())
        .await?;
    Ok(UnlockReport {
        repository: repo.location().to_string(),
        removed,
    })
}
