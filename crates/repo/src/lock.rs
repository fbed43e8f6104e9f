//! Repository locks (DESIGN.md §3.9): objects under `locks/`, written with create-only
//! semantics, refreshed while held, and stale once not refreshed for [`STALE_AFTER`].
//!
//! `create`, `restore` and `verify` hold shared locks; `prune` holds an exclusive one. A lock of a
//! process that died on this host is stale at once; one from another host after 30 minutes. Acquiring
//! writes our lock first and then lists the others: a conflicting live lock makes us remove ours
//! and fail, so two racing acquirers can both back off but never both proceed.

use crate::{layout, Error, Repository, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A lock not refreshed for this long belongs to a dead process.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    /// Many holders at once (create, restore, verify).
    Shared,
    /// One holder and no shared one (prune).
    Exclusive,
}

/// The content of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id (also the object name).
    pub id: String,
    /// Kind.
    pub kind: LockKind,
    /// Command holding it (`create`, `prune`, …).
    pub command: String,
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// When it was taken (seconds since the Unix epoch).
    pub created: u64,
    /// When it was last refreshed (seconds since the Unix epoch).
    pub refreshed: u64,
}

impl LockInfo {
    /// Whether the holder is gone: it stopped refreshing the lock before `now - STALE_AFTER`,
    /// or it ran on this host and its process no longer exists (a crash, `kill -9`).
    pub fn is_stale(&self, now: SystemTime) -> bool {
        let expired = secs(now).saturating_sub(self.refreshed) > STALE_AFTER.as_secs();
        expired || (self.host == hostname() && !process_exists(self.pid))
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lock_key(id: &str) -> Path {
    Path::from(format!("{}/{id}.json", layout::LOCKS))
}

/// Locks this process holds, so that an interrupted process (Ctrl-C) can remove them before it
/// exits: the one piece of process-wide state, because a signal handler has no other way to
/// reach the locks of the work it cancels.
static HELD: std::sync::Mutex<Vec<(String, Arc<dyn ObjectStore>)>> =
    std::sync::Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<(String, Arc<dyn ObjectStore>)>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remove every lock this process still holds (for an interrupted run). Best effort.
pub async fn release_all_held() {
    let locks: Vec<(String, Arc<dyn ObjectStore>)> = held().drain(..).collect();
    for (id, store) in locks {
        let _ = store.delete(&lock_key(&id)).await;
    }
}

/// A held lock; refreshed in the background until [`Lock::release`] (or drop, which stops the
/// refresh and leaves the object to expire).
#[derive(Debug)]
pub struct Lock {
    store: Arc<dyn ObjectStore>,
    info: LockInfo,
    refresher: tokio::task::JoinHandle<()>,
}

impl Lock {
    /// The lock's record.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Whether the lock object is still ours and live: no `unlock` removed it and it did not go
    /// stale (a process paused past [`STALE_AFTER`]). While it is, no prune can have run.
    pub async fn still_held(&self) -> Result<bool> {
        let key = lock_key(&self.info.id);
        let bytes = match self.store.get(&key).await {
            Ok(result) => result.bytes().await.map_err(|e| Error::store(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(Error::store(key, e)),
        };
        let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) else {
            return Ok(false);
        };
        Ok(info.id == self.info.id && !info.is_stale(SystemTime::now()))
    }

    /// Remove the lock object.
    pub async fn release(self) -> Result<()> {
        self.refresher.abort();
        held().retain(|(id, _)| *id != self.info.id);
        let key = lock_key(&self.info.id);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(key, e)),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Repository {
    /// Every lock present (unparsable lock objects are reported as corrupt).
    pub async fn locks(&self) -> Result<Vec<LockInfo>> {
        let metas = self.list_prefix(layout::LOCKS).await?;
        let mut locks = Vec::new();
        for meta in metas {
            let bytes = match self.store().get(&meta.location).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map_err(|e| Error::store(&meta.location, e))?,
                // Released between the listing and the read.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(Error::store(&meta.location, e)),
            };
            let info: LockInfo = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                key: meta.location.to_string(),
                reason: e.to_string(),
            })?;
            locks.push(info);
        }
        Ok(locks)
    }

    /// Take a lock of `kind` for `command`, failing with [`Error::Locked`] when a live
    /// conflicting lock exists.
    pub async fn lock(&self, kind: LockKind, command: &str) -> Result<Lock> {
        let now = SystemTime::now();
        let info = LockInfo {
            id: format!("{:016x}", fastrand::u64(..)),
            kind,
            command: command.to_string(),
            host: hostname(),
            pid: std::process::id(),
            created: secs(now),
            refreshed: secs(now),
        };
        let key = lock_key(&info.id);
        let body = serde_json::to_vec_pretty(&info).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store()
            .put_opts(&key, PutPayload::from(body), create)
            .await
            .map_err(|e| Error::store(&key, e))?;
        let conflict = self
            .locks()
            .await?
            .into_iter()
            .filter(|other| other.id != info.id && !other.is_stale(now))
            .find(|other| kind == LockKind::Exclusive || other.kind == LockKind::Exclusive);
        if let Some(holder) = conflict {
            let _ = self.store().delete(&key).await;
            return Err(Error::Locked {
                holder: format!(
                    "{} lock of `{}` by pid {} on {}, refreshed {}s ago",
                    match holder.kind {
                        LockKind::Shared => "a shared",
                        LockKind::Exclusive => "an exclusive",
                    },
                    holder.command,
                    holder.pid,
                    holder.host,
                    secs(now).saturating_sub(holder.refreshed)
                ),
            });
        }
        let refresher = tokio::spawn(refresh(self.store().clone(), info.clone()));
        held().push((info.id.clone(), self.store().clone()));
        Ok(Lock {
            store: self.store().clone(),
            info,
            refresher,
        })
    }

    /// The locks [`Repository::unlock`] would remove: the stale ones, or every one.
    pub async fn unlockable(&self, stale_only: bool, now: SystemTime) -> Result<Vec<LockInfo>> {
        let mut locks = self.locks().await?;
        locks.retain(|lock| !stale_only || lock.is_stale(now));
        Ok(locks)
    }

    /// Remove locks: the stale ones, or every one. Returns what was removed.
    pub async fn unlock(&self, stale_only: bool, now: SystemTime) -> Result<Vec<LockInfo>> {
        let mut removed = Vec::new();
        for lock in self.unlockable(stale_only, now).await? {
            let key = lock_key(&lock.id);
            match self.store().delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed.push(lock),
                Err(e) => return Err(Error::store(key, e)),
            }
        }
        Ok(removed)
    }
}

/// Rewrite the lock with a new `refreshed` time every [`REFRESH_EVERY`] (in place: a lock is the
/// one repository object that is updated).
async fn refresh(store: Arc<dyn ObjectStore>, mut info: LockInfo) {
    let key = lock_key(&info.id);
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        info.refreshed = secs(SystemTime::now());
        if let Ok(body) = serde_json::to_vec_pretty(&info) {
            if let Err(e) = store.put(&key, PutPayload::from(body)).await {
                tracing::warn!(error = %e, "could not refresh the repository lock");
            }
        }
    }
}

/// Whether a process with this id runs on this host (Linux `/proc`; elsewhere assume it does).
fn process_exists(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn repo() -> Repository {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        Repository::open_or_init(store, "mem", "t").await.unwrap().0
    }

    #[tokio::test]
    async fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let repo = repo().await;
        let a = repo.lock(LockKind::Shared, "create").await.unwrap();
        let b = repo.lock(LockKind::Shared, "create").await.unwrap();
        let err = repo.lock(LockKind::Exclusive, "prune").await.unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("`create`"), "{err}");
        assert_eq!(
            repo.locks().await.unwrap().len(),
            2,
            "the refused lock was removed"
        );
        a.release().await.unwrap();
        b.release().await.unwrap();
        let x = repo.lock(LockKind::Exclusive, "prune").await.unwrap();
        assert!(matches!(
            repo.lock(LockKind::Shared, "create").await,
            Err(Error::Locked { .. })
        ));
        x.release().await.unwrap();
        assert!(repo.locks().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn stale_locks_do_not_block_and_unlock_removes_them() {
        let repo = repo().await;
        let dead = LockInfo {
            id: "dead".into(),
            kind: LockKind::Exclusive,
            command: "prune".into(),
            host: "another-host".into(),
            pid: 1,
            created: 0,
            refreshed: secs(SystemTime::now() - STALE_AFTER - Duration::from_secs(60)),
        };
        let body = serde_json::to_vec(&dead).unwrap();
        repo.store()
            .put(&lock_key("dead"), body.into())
            .await
            .unwrap();
        let live = repo.lock(LockKind::Shared, "create").await.unwrap();
        let removed = repo.unlock(true, SystemTime::now()).await.unwrap();
        assert_eq!(
            removed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            ["dead"]
        );
        assert_eq!(
            repo.locks().await.unwrap().len(),
            1,
            "a live lock survives --stale-only"
        );
        assert!(live.still_held().await.unwrap());
        let removed = repo.unlock(false, SystemTime::now()).await.unwrap();
        assert_eq!(removed.len(), 1);
        assert!(
            !live.still_held().await.unwrap(),
            "an unlocked lock is no longer held"
        );
        drop(live);
    }
}
