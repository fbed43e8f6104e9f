//! [`SlowStore`]: an `ObjectStore` wrapper that makes a fast local source behave like a remote
//! one, to widen the windows in which a concurrently writing server can overtake a reader.
//!
//! - every GET (and HEAD) and every listing call sleeps first;
//! - optionally, listings return keys in **lexicographic order, reading each "directory" only when
//!   the listing reaches it**, as S3, GCS and Azure page through a prefix. A local directory walk
//!   reads directories in the file system's hash order instead (on ext4 `node0/snapshots/` is
//!   read before `node0/dbs/`), which hides races that a cloud listing exposes: a listing of
//!   a node prefix reads `dbs/` before `snapshots/`.
//!
//! object_store's own `ThrottledStore` cannot wrap a `LocalFileSystem`: its `get_opts` panics
//! (`unimplemented!()`) on the file-backed payload a local store returns.

use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Delays and listing order of a [`SlowStore`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowConfig {
    /// Sleep before every GET or HEAD.
    pub get_delay: Duration,
    /// Sleep before every listing call (each directory of a lexicographic listing is one call).
    pub list_delay: Duration,
    /// Sleep before returning each listed object.
    pub list_entry_delay: Duration,
    /// List in lexicographic key order, reading each directory only when reached (cloud-like).
    pub lexicographic: bool,
}

/// An `ObjectStore` that sleeps before reads and listings (see the module docs). Writes, deletes
/// and copies pass through undelayed.
#[derive(Debug, Clone)]
pub struct SlowStore {
    inner: Arc<dyn ObjectStore>,
    config: SlowConfig,
}

impl SlowStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, config: SlowConfig) -> Self {
        SlowStore { inner, config }
    }
}

impl fmt::Display for SlowStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlowStore({})", self.inner)
    }
}

/// The future type `#[async_trait]` gives the trait's async methods.
type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

async fn pause(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

/// One step of a lexicographic listing: a directory still to read, or an object to return.
enum Pending {
    Dir(Path),
    Object(ObjectMeta),
}

impl Pending {
    fn sort_key(&self) -> String {
        match self {
            // A directory's keys all start with "dir/".
            Pending::Dir(p) => format!("{p}/"),
            Pending::Object(o) => o.location.to_string(),
        }
    }
}

fn lexicographic_list(
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    config: SlowConfig,
) -> BoxStream<'static, Result<ObjectMeta>> {
    // A stack whose top is the next key in order.
    let stack = vec![Pending::Dir(prefix)];
    stream::unfold(Some(stack), move |state| {
        let inner = inner.clone();
        async move {
            let mut stack = state?;
            loop {
                match stack.pop()? {
                    Pending::Object(meta) => {
                        pause(config.list_entry_delay).await;
                        return Some((Ok(meta), Some(stack)));
                    }
                    Pending::Dir(dir) => {
                        pause(config.list_delay).await;
                        let listed = match inner.list_with_delimiter(Some(&dir)).await {
                            Ok(listed) => listed,
                            Err(e) => return Some((Err(e), None)),
                        };
                        let mut children: Vec<Pending> = listed
                            .common_prefixes
                            .into_iter()
                            .map(Pending::Dir)
                            .chain(listed.objects.into_iter().map(Pending::Object))
                            .collect();
                        children.sort_by_key(|c| std::cmp::Reverse(c.sort_key()));
                        stack.extend(children);
                    }
                }
            }
        }
    })
    .boxed()
}

impl ObjectStore for SlowStore {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxedFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.put_opts(location, payload, opts)
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> BoxedFuture<'async_trait, Result<Box<dyn MultipartUpload>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.put_multipart_opts(location, opts)
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxedFuture<'async_trait, Result<GetResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            pause(self.config.get_delay).await;
            self.inner.get_opts(location, options).await
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let config = self.config;
        if config.lexicographic {
            return lexicographic_list(
                self.inner.clone(),
                prefix.cloned().unwrap_or_default(),
                config,
            );
        }
        let inner = self.inner.list(prefix);
        stream::once(async move {
            pause(config.list_delay).await;
            inner.then(move |item| async move {
                pause(config.list_entry_delay).await;
                item
            })
        })
        .flatten()
        .boxed()
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxedFuture<'async_trait, Result<ListResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            pause(self.config.list_delay).await;
            self.inner.list_with_delimiter(prefix).await
        })
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> BoxedFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.copy_opts(from, to, options)
    }

    fn rename_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: RenameOptions,
    ) -> BoxedFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.rename_opts(from, to, options)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn lexicographic_listing_is_sorted_and_complete() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let keys = [
            "wal/00000000002.wal",
            "dbs/1/0/a.parquet",
            "snapshots/1.info.json",
            "dbs/1/1/b.parquet",
            "catalog/v3/snapshot",
            "catalog/v3/logs/1.catalog",
            "dbs-x",
        ];
        for key in keys {
            inner.put(&Path::from(key), "x".into()).await.unwrap();
        }
        let slow = SlowStore::new(
            inner,
            SlowConfig {
                lexicographic: true,
                list_delay: Duration::from_millis(1),
                ..SlowConfig::default()
            },
        );
        let listed: Vec<String> = slow
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        let wal: Vec<String> = slow
            .list(Some(&Path::from("wal")))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(wal, ["wal/00000000002.wal"]);
        assert_eq!(slow.head(&Path::from("dbs-x")).await.unwrap().size, 1);
    }
}
