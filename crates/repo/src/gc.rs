//! Garbage collection after `prune` removes backups: plan, then execute (DESIGN.md §3.10).
//!
//! Mark and sweep: the live blobs are those referenced by every manifest that stays, and the
//! live packs those holding at least one of them (a pack is deleted whole or kept whole). A blob no
//! remaining manifest references is deleted only once it is older than the grace period, so the
//! blobs a crashed or concurrent `create` uploaded but has not committed yet survive (the
//! exclusive lock keeps live `create`s out; the grace period protects against clocks and
//! against runs whose lock expired). Manifests are deleted first, then blobs, then stale staging
//! objects.

use crate::layout::{self, Encoding};
use crate::{BackupId, BlobId, Entry, Error, Repository, Result};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// What a garbage collection will do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcPlan {
    /// Manifests to delete (the backups `prune` removes).
    pub remove_backups: Vec<BackupId>,
    /// Blobs to delete (id, encoding, stored size): unreferenced and older than the grace period.
    pub remove_blobs: Vec<(BlobId, Encoding, u64)>,
    /// Packs to delete (id, size): no blob in them referenced, older than the grace period.
    pub remove_packs: Vec<(BlobId, u64)>,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: u64,
    /// Staging objects and partial-progress records to delete (older than the grace period).
    pub remove_staging: Vec<String>,
    /// Bytes the deleted blobs free.
    pub bytes_freed: u64,
    /// Bytes of all blobs before.
    pub bytes_before: u64,
}

fn older_than(meta: &ObjectMeta, grace: Duration, now: SystemTime) -> bool {
    let modified = SystemTime::from(meta.last_modified);
    now.duration_since(modified).is_ok_and(|age| age >= grace)
}

/// Plan removing `remove` and collecting what only they referenced.
pub async fn plan_gc(
    repo: &Repository,
    remove: &[BackupId],
    grace: Duration,
    now: SystemTime,
) -> Result<GcPlan> {
    let removing: HashSet<&BackupId> = remove.iter().collect();
    let mut live = Live::default();
    for id in repo.list_backups().await? {
        if removing.contains(&id) {
            continue;
        }
        mark_live(repo, &id, &mut live).await?;
    }
    let mut plan = GcPlan {
        remove_backups: remove.to_vec(),
        ..GcPlan::default()
    };
    let blobs = repo.list_prefix(layout::BLOBS).await?;
    plan.remove_blobs = plan
        .sweep(blobs, grace, now, |key| {
            layout::blob_id_of(key).filter(|blob| !live.blobs.contains(blob))
        })
        .into_iter()
        .map(|((id, encoding), size)| (id, encoding, size))
        .collect();
    // A pack goes whole once no remaining entry points into it (packs are never rewritten).
    let packs = repo.list_prefix(layout::PACKS).await?;
    plan.remove_packs = plan.sweep(packs, grace, now, |key| {
        layout::pack_id_of(key).filter(|pack| !live.packs.contains(pack))
    });
    // In-flight uploads and progress records of runs that never committed.
    let mut leftovers = repo.list_prefix(layout::STAGING).await?;
    leftovers.extend(repo.list_prefix(layout::PARTIAL).await?);
    for meta in leftovers {
        if older_than(&meta, grace, now) {
            plan.remove_staging.push(meta.location.to_string());
        }
    }
    Ok(plan)
}

/// What the remaining manifests reference: blob objects and packs.
#[derive(Default)]
struct Live {
    blobs: HashSet<(BlobId, Encoding)>,
    packs: HashSet<BlobId>,
}

impl Live {
    fn mark(&mut self, entries: &[Entry]) {
        for entry in entries {
            match &entry.pack {
                Some(slice) => self.packs.insert(slice.pack),
                None => self.blobs.insert((entry.blob, entry.encoding)),
            };
        }
    }
}

/// Mark the blobs a manifest references, its entry chunks included. A chunk already marked was
/// read for another manifest: backups share most chunks, so each distinct one is read once.
async fn mark_live(repo: &Repository, id: &BackupId, live: &mut Live) -> Result<()> {
    let stored = repo.load_stored_manifest(id).await?;
    live.mark(&stored.manifest.entries);
    let key = layout::manifest_key(id);
    for chunk in &stored.entry_chunks {
        if live.blobs.insert((chunk.blob, chunk.encoding)) {
            let entries = repo.load_entry_chunk(chunk, &key).await?;
            live.mark(&entries);
        }
    }
    Ok(())
}

impl GcPlan {
    /// Count `listed` into the totals and return the objects to delete: those `unreferenced`
    /// names (it knows the key and no remaining manifest references it) and older than the
    /// grace period, with their sizes. Younger ones are counted as kept for the grace period.
    fn sweep<T>(
        &mut self,
        listed: Vec<ObjectMeta>,
        grace: Duration,
        now: SystemTime,
        unreferenced: impl Fn(&Path) -> Option<T>,
    ) -> Vec<(T, u64)> {
        let mut remove = Vec::new();
        for meta in listed {
            self.bytes_before += meta.size;
            let Some(id) = unreferenced(&meta.location) else {
                continue;
            };
            if older_than(&meta, grace, now) {
                self.bytes_freed += meta.size;
                remove.push((id, meta.size));
            } else {
                self.blobs_in_grace += 1;
            }
        }
        remove
    }

    /// Carry the plan out: manifests first (a backup disappears whole), then blobs and staging.
    pub async fn execute(&self, repo: &Repository) -> Result<()> {
        for id in &self.remove_backups {
            delete(repo, &layout::manifest_key(id)).await?;
        }
        for (id, encoding, _) in &self.remove_blobs {
            delete(repo, &layout::blob_key(id, *encoding)).await?;
        }
        for (id, _) in &self.remove_packs {
            delete(repo, &layout::pack_key(id)).await?;
        }
        for key in &self.remove_staging {
            delete(repo, &Path::from(key.as_str())).await?;
        }
        Ok(())
    }
}

async fn delete(repo: &Repository, key: &Path) -> Result<()> {
    match repo.store().delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store(key, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::Summary;
    use crate::{Entry, Manifest};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, PutPayload};
    use std::sync::Arc;

    async fn backup(repo: &Repository, blobs: &[&[u8]]) -> BackupId {
        let mut entries = Vec::new();
        for (i, content) in blobs.iter().enumerate() {
            let id = BlobId::of(content);
            repo.store()
                .put(
                    &layout::blob_key(&id, Encoding::Raw),
                    PutPayload::from(content.to_vec()),
                )
                .await
                .unwrap();
            entries.push(Entry {
                path: format!("f{i}"),
                size: content.len() as u64,
                blob: id,
                encoding: Encoding::Raw,
                class: "x".into(),
                pack: None,
                facts: None,
            });
        }
        commit(repo, entries).await
    }

    /// Commit a backup of `entries` (a few milliseconds after the last one: ids are times).
    async fn commit(repo: &Repository, entries: Vec<Entry>) -> BackupId {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let manifest = Manifest {
            format_version: 1,
            id: BackupId::new(SystemTime::now()),
            tool_version: "t".into(),
            started_at: String::new(),
            finished_at: String::new(),
            source: serde_json::Value::Null,
            summary: Summary {
                entries: entries.len() as u64,
                bytes: entries.iter().map(|e| e.size).sum(),
                ..Summary::default()
            },
            entries,
        };
        repo.write_manifest(&manifest).await.unwrap();
        manifest.id
    }

    #[tokio::test]
    async fn collects_only_what_removed_backups_alone_held_after_the_grace() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (repo, _) = Repository::open_or_init(store, "mem", "t").await.unwrap();
        let old = backup(&repo, &[b"shared", b"only-old"]).await;
        let new = backup(&repo, &[b"shared", b"only-new"]).await;
        // The old backup's entry chunk goes with it.
        let old_chunk = repo.load_stored_manifest(&old).await.unwrap().entry_chunks;
        let old_chunk = (old_chunk[0].blob, old_chunk[0].encoding);
        repo.store()
            .put(
                &Path::from("staging/abc"),
                PutPayload::from_static(b"partial"),
            )
            .await
            .unwrap();

        let in_grace = plan_gc(
            &repo,
            std::slice::from_ref(&old),
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .await
        .unwrap();
        assert!(in_grace.remove_blobs.is_empty());
        assert_eq!(in_grace.blobs_in_grace, 2);
        assert!(in_grace.remove_staging.is_empty());

        let later = SystemTime::now() + Duration::from_secs(7200);
        let plan = plan_gc(
            &repo,
            std::slice::from_ref(&old),
            Duration::from_secs(3600),
            later,
        )
        .await
        .unwrap();
        let removed: HashSet<(BlobId, Encoding)> =
            plan.remove_blobs.iter().map(|(b, e, _)| (*b, *e)).collect();
        assert_eq!(
            removed,
            HashSet::from([(BlobId::of(b"only-old"), Encoding::Raw), old_chunk])
        );
        assert_eq!(
            plan.bytes_freed,
            plan.remove_blobs
                .iter()
                .map(|(_, _, size)| size)
                .sum::<u64>()
        );
        assert_eq!(plan.remove_staging, ["staging/abc"]);
        plan.execute(&repo).await.unwrap();
        assert_eq!(repo.list_backups().await.unwrap(), vec![new.clone()]);
        let index = repo.blob_index().await.unwrap();
        assert!(index.contains(&BlobId::of(b"shared")) && index.contains(&BlobId::of(b"only-new")));
        // The two blobs and the remaining backup's entry chunk.
        assert_eq!(index.len(), 3);
        assert_eq!(repo.load_manifest(&new).await.unwrap().entries.len(), 2);
    }

    /// Store `members` as one pack; entries for each, as a backup would reference them.
    async fn pack_of(repo: &Repository, members: &[&[u8]]) -> (BlobId, Vec<Entry>) {
        let bytes: Vec<u8> = members.concat();
        let pack = BlobId::of(&bytes);
        repo.store()
            .put(&layout::pack_key(&pack), PutPayload::from(bytes))
            .await
            .unwrap();
        let mut offset = 0;
        let entries = members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                let length = member.len() as u64;
                let slice = crate::manifest::PackSlice {
                    pack,
                    offset,
                    length,
                };
                offset += length;
                Entry {
                    path: format!("p{i}"),
                    size: length,
                    blob: BlobId::of(member),
                    encoding: Encoding::Raw,
                    class: "x".into(),
                    pack: Some(Box::new(slice)),
                    facts: None,
                }
            })
            .collect();
        (pack, entries)
    }

    #[tokio::test]
    async fn a_pack_goes_whole_once_no_remaining_entry_points_into_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (repo, _) = Repository::open_or_init(store, "mem", "t").await.unwrap();
        let (pack, entries) = pack_of(&repo, &[b"first", b"second"]).await;
        let both = commit(&repo, entries.clone()).await;
        let second_only = commit(&repo, entries[1..].to_vec()).await;
        let later = SystemTime::now() + Duration::from_secs(7200);
        let grace = Duration::from_secs(3600);

        // Removing the backup of both: the other still points into the pack.
        let plan = plan_gc(&repo, std::slice::from_ref(&both), grace, later)
            .await
            .unwrap();
        assert!(plan.remove_packs.is_empty(), "{plan:?}");
        // Young, it waits for the grace period even when nothing points into it.
        let removing = [both.clone(), second_only.clone()];
        let young = plan_gc(&repo, &removing, grace, SystemTime::now())
            .await
            .unwrap();
        assert!(young.remove_packs.is_empty() && young.blobs_in_grace >= 1);
        // Both removed: the pack goes, whole.
        let plan = plan_gc(&repo, &removing, grace, later).await.unwrap();
        assert_eq!(plan.remove_packs, [(pack, 11)]);
        plan.execute(&repo).await.unwrap();
        assert_eq!(repo.blob_index().await.unwrap().pack_size(&pack), None);
    }
}
