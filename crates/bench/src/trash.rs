//! What the bench no longer needs (an earlier round's repository or copy, an earlier run's work
//! directory), moved aside with a rename and removed only at the end of the run.
//!
//! Removing a tree of 100 000 files frees 100 000 inodes, and on ext4 without a journal (the
//! disk of the VM these figures come from) the inode allocator then checks every free inode it
//! passes for a recent deletion (`recently_deleted`: one buffer-cache lookup each, and an inode
//! freed less than 60 s ago, or 300 s while its inode-table block is dirty, is passed over).
//! Every new file scans past all of them in its group: a full backup of 100 000 small files
//! took 7.8–16.9 s right after such a removal against 5.1–5.5 s five minutes after the last
//! one (`perf`: 50–75% of its CPU time in that check, then none).
//! A tool that writes one file per blob (`cp -r`, influxdb3-backup) would pay for the bench's
//! own cleanup of the previous round and `restic`, which writes a few large pack files, would
//! not. A rename frees no inode. When the file system runs short of space, the trash is emptied
//! early and the bench says so (the next rounds then pay for that removal).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Free space to keep, in trees: the next round writes up to four copies of the tree (ours,
/// `cp -r`, `cp -r` + `sync`, `restic`), plus room for the rest.
const FREE_TREES: u64 = 5;

/// A directory of retired outputs, inside the work directory (so a rename reaches it).
pub struct Trash {
    dir: PathBuf,
    moved: u64,
    tree_bytes: u64,
}

impl Trash {
    /// The trash of `work` (created when first used).
    fn of(work: &Path) -> Self {
        Trash {
            dir: work.join("trash"),
            moved: 0,
            tree_bytes: 0,
        }
    }

    /// Make `work` an empty directory, retiring what an earlier run left there into the new
    /// work directory's trash.
    pub fn fresh_work_dir(work: &Path) -> Result<Self> {
        let mut trash = Trash::of(work);
        if !work.exists() {
            std::fs::create_dir_all(work)
                .with_context(|| format!("creating {}", work.display()))?;
            return Ok(trash);
        }
        let aside = work.with_extension(format!("earlier-{}", std::process::id()));
        std::fs::rename(work, &aside)
            .with_context(|| format!("moving {} aside", work.display()))?;
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        trash.retire(&aside)?;
        Ok(trash)
    }

    /// The size of the tree the bench copies: how much free space a round needs.
    pub fn set_tree_bytes(&mut self, bytes: u64) {
        self.tree_bytes = bytes;
    }

    /// Move `path` into the trash, or, when the file system is short of space, empty the trash
    /// and remove `path`.
    pub fn retire(&mut self, path: &Path) -> Result<()> {
        if self.space_is_short()? {
            eprintln!(
                "  (short of space: removing earlier rounds' outputs now; creating files may be \
                 slower for a few minutes on ext4 without a journal)"
            );
            self.empty()?;
            return std::fs::remove_dir_all(path)
                .with_context(|| format!("removing {}", path.display()));
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let to = self.dir.join(self.moved.to_string());
        self.moved += 1;
        std::fs::rename(path, &to)
            .with_context(|| format!("moving {} to {}", path.display(), to.display()))
    }

    /// Remove everything retired.
    pub fn empty(&mut self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    fn space_is_short(&self) -> Result<bool> {
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        let stat = nix::sys::statvfs::statvfs(parent)
            .with_context(|| format!("reading the free space of {}", parent.display()))?;
        let free = stat.blocks_available() * stat.fragment_size();
        Ok(free < FREE_TREES.saturating_mul(self.tree_bytes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retired_outputs_stay_until_emptied_and_an_earlier_run_is_retired_too() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        std::fs::create_dir_all(work.join("repo")).unwrap();
        std::fs::write(work.join("repo/blob"), b"earlier run").unwrap();

        let mut trash = Trash::fresh_work_dir(&work).unwrap();
        assert_eq!(entries(&work), ["trash"]);
        std::fs::create_dir_all(work.join("copy")).unwrap();
        std::fs::write(work.join("copy/file"), b"round 1").unwrap();
        trash.retire(&work.join("copy")).unwrap();
        assert_eq!(entries(&work), ["trash"]);
        assert_eq!(entries(&work.join("trash")), ["0", "1"]);
        assert_eq!(
            std::fs::read(work.join("trash/1/file")).unwrap(),
            b"round 1"
        );

        trash.empty().unwrap();
        assert!(entries(&work).is_empty());
        assert_eq!(
            entries(root.path()),
            ["work"],
            "nothing left beside the work dir"
        );
    }

    #[test]
    fn short_of_space_removes_at_once() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let mut trash = Trash::fresh_work_dir(&work).unwrap();
        trash.set_tree_bytes(u64::MAX / FREE_TREES);
        std::fs::create_dir_all(work.join("a")).unwrap();
        std::fs::create_dir_all(work.join("trash/0")).unwrap();
        trash.retire(&work.join("a")).unwrap();
        assert!(entries(&work).is_empty());
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}
