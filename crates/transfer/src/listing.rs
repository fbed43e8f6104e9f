//! [`FastListing`]: a local directory store whose recursive listings walk the directory tree
//! directly.
//!
//! `LocalFileSystem::list` stats every entry twice and turns each path into a URL and back; at
//! 100 000 files in as many directories that took 0.9 s, most of a no-change incremental
//! backup. This walk reads each directory once, takes the entry type from the directory
//! listing, stats files only, and builds keys by joining names. It answers only where its keys
//! are exactly `LocalFileSystem`'s: every name plain ([`crate::local::is_plain_key`]) and no
//! symbolic link on the way; anything else is listed by `LocalFileSystem` itself. Files that
//! `LocalFileSystem` hides (its in-flight `name#<digits>` writes) are hidden here too. Every
//! other operation is `LocalFileSystem`'s.

use crate::local::{is_plain_key, store_error};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

/// A [`LocalFileSystem`] rooted at a directory, with fast recursive listings.
#[derive(Debug)]
pub struct FastListing {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
}

impl FastListing {
    /// Wrap `inner`, which must be rooted at `root`.
    pub fn new(inner: LocalFileSystem, root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(inner),
            root: root.into(),
        }
    }
}

impl std::fmt::Display for FastListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// Why the walk gave up: the tree holds something only `LocalFileSystem` names right.
struct NotPlain;

enum Walked {
    Objects(Vec<ObjectMeta>),
    Fallback,
}

/// Threads of one walk. Reading directories of a tree not in the page cache waits on the disk,
/// not the CPU: 16 threads listed 101 000 cold directories in 2.0–2.3 s where 4 took 3.4–3.7 s
/// (64 gained nothing more); warm, the extra threads cost nothing measurable.
const WALK_THREADS: usize = 16;
/// Directories of one level below which a level is read on the calling thread alone.
const WALK_PARALLEL_FROM: usize = 64;

/// Every file under `dir` whose key starts with `prefix` (empty or ending in `/`), read level
/// by level, the directories of a wide level by [`WALK_THREADS`] threads.
fn walk(dir: &FsPath, prefix: &str) -> std::io::Result<Walked> {
    let mut objects = Vec::new();
    let mut level: Pending = vec![(dir.to_path_buf(), prefix.to_string())];
    while !level.is_empty() {
        let chunk = if level.len() < WALK_PARALLEL_FROM {
            level.len()
        } else {
            level.len().div_ceil(WALK_THREADS)
        };
        let read: Vec<Read> = std::thread::scope(|scope| {
            let workers: Vec<_> = level
                .chunks(chunk)
                .map(|dirs| scope.spawn(move || read_dirs(dirs)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("listing thread failed")))
                })
                .collect()
        });
        let mut next = Vec::new();
        for result in read {
            match result? {
                Some((found, below)) => {
                    objects.extend(found);
                    next.extend(below);
                }
                None => return Ok(Walked::Fallback),
            }
        }
        level = next;
    }
    Ok(Walked::Objects(objects))
}

/// Read `dirs`: their files, and their subdirectories to read next; `None` when a name is not
/// plain.
fn read_dirs(dirs: &[(PathBuf, String)]) -> Read {
    let (mut objects, mut below) = (Vec::new(), Vec::new());
    for (dir, prefix) in dirs {
        match walk_one(dir, prefix, &mut objects, &mut below) {
            Ok(Ok(())) => {}
            Ok(Err(NotPlain)) => return Ok(None),
            // A directory removed while listed holds nothing any more (as LocalFileSystem).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some((objects, below)))
}

type Pending = Vec<(PathBuf, String)>;
/// What reading some directories found: files, and directories to read next (`None`: a name
/// is not plain).
type Read = std::io::Result<Option<(Vec<ObjectMeta>, Pending)>>;

fn walk_one(
    dir: &FsPath,
    prefix: &str,
    objects: &mut Vec<ObjectMeta>,
    pending: &mut Pending,
) -> std::io::Result<std::result::Result<(), NotPlain>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Ok(Err(NotPlain));
        };
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            return Ok(Err(NotPlain));
        }
        if file_type.is_dir() {
            if !is_plain_key(name) {
                return Ok(Err(NotPlain));
            }
            pending.push((entry.path(), format!("{prefix}{name}/")));
            continue;
        }
        if !file_type.is_file() || is_hidden_write(name) {
            continue;
        }
        if !is_plain_key(name) {
            return Ok(Err(NotPlain));
        }
        let metadata = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        objects.push(object_meta(format!("{prefix}{name}"), &metadata));
    }
    Ok(Ok(()))
}

/// `LocalFileSystem`'s in-flight write files, `name#<digits>`, which it never lists.
fn is_hidden_write(name: &str) -> bool {
    match name.split_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// The metadata `LocalFileSystem` reports for a file (its ETag scheme included).
fn object_meta(key: String, metadata: &std::fs::Metadata) -> ObjectMeta {
    let modified = metadata.modified().unwrap_or(std::time::UNIX_EPOCH);
    let micros = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let size = metadata.len();
    ObjectMeta {
        location: Path::from(key),
        last_modified: chrono::DateTime::<chrono::Utc>::from(modified),
        size,
        e_tag: Some(format!("\"{inode:x}-{micros:x}-{size:x}\"")),
        version: None,
    }
}

#[async_trait]
impl ObjectStore for FastListing {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key_prefix = prefix.map(|p| format!("{p}/")).unwrap_or_default();
        if !key_prefix.is_empty() && !is_plain_key(key_prefix.trim_end_matches('/')) {
            return self.inner.list(prefix);
        }
        let dir = self.root.join(&key_prefix);
        let inner = self.inner.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let walked = tokio::task::spawn_blocking(move || walk(&dir, &key_prefix))
                .await
                .map_err(store_error)?
                .map_err(store_error)?;
            Ok(match walked {
                Walked::Objects(objects) => {
                    futures::stream::iter(objects.into_iter().map(Ok)).boxed()
                }
                Walked::Fallback => inner.list(prefix.as_ref()),
            })
        })
        .map(
            |listed: Result<BoxStream<'static, Result<ObjectMeta>>>| match listed {
                Ok(stream) => stream,
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            },
        )
        .flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn listed(store: &dyn ObjectStore, prefix: Option<&str>) -> Vec<(String, u64)> {
        let prefix = prefix.map(Path::from);
        let mut out: Vec<(String, u64)> = store
            .list(prefix.as_ref())
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .unwrap();
        out.sort();
        out
    }

    fn write(root: &FsPath, key: &str, bytes: &[u8]) {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// The fast walk and `LocalFileSystem` list the same keys and sizes, for plain trees and
    /// for trees where the walk must hand over.
    #[tokio::test]
    async fn lists_exactly_what_local_file_system_lists() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "wal/00000000001.wal", b"w");
        write(
            root,
            "dbs/1-2/2026-11-25/10-00/0000000012.parquet",
            b"parquet",
        );
        write(root, "snapshots/00000000000000000001.info.json", b"{}");
        write(root, "catalog/v3/snapshot#12", b"in flight: hidden");
        std::fs::create_dir_all(root.join("empty/dir")).unwrap();
        let plain = FastListing::new(LocalFileSystem::new_with_prefix(root).unwrap(), root);
        let reference = LocalFileSystem::new_with_prefix(root).unwrap();
        for prefix in [None, Some("dbs"), Some("catalog"), Some("missing")] {
            assert_eq!(
                listed(&plain, prefix).await,
                listed(&reference, prefix).await,
                "prefix {prefix:?}"
            );
        }
        assert!(listed(&plain, None)
            .await
            .iter()
            .all(|(k, _)| !k.ends_with("#12")));
        assert!(
            matches!(walk(root, "").unwrap(), Walked::Objects(o) if o.len() == 3),
            "a plain tree is walked, not handed over"
        );
        // Names that need encoding: the walk hands over, the answer is still the reference's.
        write(root, "catalog/v3/snapshot#x", b"not a staging name: listed");
        write(root, "dbs/odd name/x.parquet", b"x");
        assert_eq!(listed(&plain, None).await, listed(&reference, None).await);
        assert!(listed(&plain, None)
            .await
            .iter()
            .any(|(k, _)| k.contains("odd")));
        assert!(matches!(walk(root, "").unwrap(), Walked::Fallback));
    }
}
