//! Single-object copies: whole reads for small objects, streaming multipart uploads for large
//! ones, BLAKE3 computed on the bytes as they pass, whole-object retries for transient failures.

use crate::{Error, Progress, Result};
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::future::Future;
use std::time::Duration;

/// Tuning of single-object copies.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Objects up to this size are read whole and written with one PUT; larger ones stream.
    pub small_object_threshold: u64,
    /// Part size of streamed multipart uploads (≥ 5 MiB for S3).
    pub part_size: usize,
    /// Parts of one object uploaded concurrently (bounds memory at `part_size × this`).
    pub part_concurrency: usize,
    /// Whole-object retries after a transient failure.
    pub retries: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            small_object_threshold: 8 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            part_concurrency: 4,
            retries: 3,
        }
    }
}

/// The result of a copy: the size and BLAKE3 hash of the bytes that went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Bytes copied.
    pub size: u64,
    /// BLAKE3 of the bytes copied.
    pub hash: blake3::Hash,
}

/// The result of a content-addressed copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasCopy {
    /// Bytes read from the source.
    pub size: u64,
    /// BLAKE3 of the content, which names it at the destination.
    pub hash: blake3::Hash,
    /// Whether the content was written (false: the destination already held it).
    pub uploaded: bool,
}

/// Retry `attempt` while its error is transient, with exponential backoff.
async fn with_retries<T, F, Fut>(retries: u32, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && tries < retries => {
                tries += 1;
                tracing::warn!(error = %e, attempt = tries, "transient transfer failure, retrying");
                tokio::time::sleep(Duration::from_millis(100 << tries.min(6))).await;
            }
            other => return other,
        }
    }
}

fn check_size(key: &Path, expected: Option<u64>, actual: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(Error::SizeMismatch {
            key: key.to_string(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Read a whole object and hash it; `expected` size is checked when given.
pub async fn read_hashed(
    store: &dyn ObjectStore,
    key: &Path,
    expected: Option<u64>,
    progress: &dyn Progress,
) -> Result<(Bytes, blake3::Hash)> {
    with_retries(CopyOptions::default().retries, || async {
        let result = store.get(key).await.map_err(|e| Error::read(key, e))?;
        let bytes = result.bytes().await.map_err(|e| Error::read(key, e))?;
        check_size(key, expected, bytes.len() as u64)?;
        progress.advance(bytes.len() as u64);
        Ok((bytes.clone(), blake3::hash(&bytes)))
    })
    .await
}

/// Stream an object and hash it without keeping it in memory.
pub async fn hash_object(
    store: &dyn ObjectStore,
    key: &Path,
    progress: &dyn Progress,
) -> Result<Copied> {
    with_retries(CopyOptions::default().retries, || async {
        let result = store.get(key).await.map_err(|e| Error::read(key, e))?;
        let mut body = result.into_stream();
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::read(key, e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        Ok(Copied {
            size,
            hash: hasher.finalize(),
        })
    })
    .await
}

/// Copy `src_key` from `src` to `dst_key` on `dst`, streaming large objects through a multipart
/// upload, and return the size and hash of what was copied. `expected` size is checked when
/// given; on a mismatch nothing is left at `dst_key` that claims to be complete.
pub async fn stream_copy(
    src: &dyn ObjectStore,
    src_key: &Path,
    dst: &dyn ObjectStore,
    dst_key: &Path,
    expected: Option<u64>,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<Copied> {
    with_retries(options.retries, || {
        stream_copy_once(src, src_key, dst, dst_key, expected, options, progress)
    })
    .await
}

async fn stream_copy_once(
    src: &dyn ObjectStore,
    src_key: &Path,
    dst: &dyn ObjectStore,
    dst_key: &Path,
    expected: Option<u64>,
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<Copied> {
    let result = src
        .get(src_key)
        .await
        .map_err(|e| Error::read(src_key, e))?;
    if result.meta.size <= options.small_object_threshold {
        let bytes = result.bytes().await.map_err(|e| Error::read(src_key, e))?;
        check_size(src_key, expected, bytes.len() as u64)?;
        let hash = blake3::hash(&bytes);
        let size = bytes.len() as u64;
        dst.put(dst_key, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| Error::write(dst_key, e))?;
        progress.advance(size);
        return Ok(Copied { size, hash });
    }
    let upload = dst
        .put_multipart(dst_key)
        .await
        .map_err(|e| Error::write(dst_key, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, options.part_size);
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut body = result.into_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                // Best effort: an aborted upload leaves no object behind.
                let _ = writer.abort().await;
                return Err(Error::read(src_key, e));
            }
        };
        hasher.update(&chunk);
        size += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
        writer
            .wait_for_capacity(options.part_concurrency)
            .await
            .map_err(|e| Error::write(dst_key, e))?;
        writer.put(chunk);
    }
    if let Err(e) = check_size(src_key, expected, size) {
        let _ = writer.abort().await;
        return Err(e);
    }
    writer
        .finish()
        .await
        .map_err(|e| Error::write(dst_key, e))?;
    Ok(Copied {
        size,
        hash: hasher.finalize(),
    })
}

/// Store the content of `src_key` at `dst` under the key `name_for(hash)`, unless `is_known(hash)`
/// says the destination already holds it. Small objects are read whole and hashed before any
/// write; large ones stream to `staging_key` and are then renamed to their content key (the
/// rename is server-side within `dst`).
#[allow(clippy::too_many_arguments)]
pub async fn copy_content_addressed(
    src: &dyn ObjectStore,
    src_key: &Path,
    expected: u64,
    dst: &dyn ObjectStore,
    staging_key: &Path,
    name_for: &(dyn Fn(&blake3::Hash) -> Path + Sync),
    is_known: &(dyn Fn(&blake3::Hash) -> bool + Sync),
    options: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CasCopy> {
    if expected <= options.small_object_threshold {
        let (bytes, hash) = read_hashed(src, src_key, Some(expected), progress).await?;
        let size = bytes.len() as u64;
        if is_known(&hash) {
            return Ok(CasCopy {
                size,
                hash,
                uploaded: false,
            });
        }
        let key = name_for(&hash);
        with_retries(options.retries, || async {
            dst.put(&key, PutPayload::from_bytes(bytes.clone()))
                .await
                .map_err(|e| Error::write(&key, e))
        })
        .await?;
        return Ok(CasCopy {
            size,
            hash,
            uploaded: true,
        });
    }
    let copied = stream_copy(
        src,
        src_key,
        dst,
        staging_key,
        Some(expected),
        options,
        progress,
    )
    .await?;
    if is_known(&copied.hash) {
        dst.delete(staging_key)
            .await
            .map_err(|e| Error::write(staging_key, e))?;
        return Ok(CasCopy {
            size: copied.size,
            hash: copied.hash,
            uploaded: false,
        });
    }
    let key = name_for(&copied.hash);
    dst.rename(staging_key, &key)
        .await
        .map_err(|e| Error::write(&key, e))?;
    Ok(CasCopy {
        size: copied.size,
        hash: copied.hash,
        uploaded: true,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use object_store::memory::InMemory;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Count(AtomicU64);
    impl Progress for Count {
        fn advance(&self, bytes: u64) {
            self.0.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn small_parts() -> CopyOptions {
        CopyOptions {
            small_object_threshold: 1024,
            part_size: 5 * 1024 * 1024,
            part_concurrency: 2,
            retries: 0,
        }
    }

    async fn put(store: &InMemory, key: &str, bytes: Vec<u8>) -> Path {
        let path = Path::from(key);
        store.put(&path, bytes.into()).await.unwrap();
        path
    }

    #[tokio::test]
    async fn streams_large_objects_and_hashes_them() {
        let (src, dst) = (InMemory::new(), InMemory::new());
        let content: Vec<u8> = (0..12_345_678u32).map(|i| (i % 251) as u8).collect();
        let key = put(&src, "a/big", content.clone()).await;
        let progress = Count(AtomicU64::new(0));
        let out = Path::from("b/big");
        let copied = stream_copy(
            &src,
            &key,
            &dst,
            &out,
            Some(12_345_678),
            &small_parts(),
            &progress,
        )
        .await
        .unwrap();
        assert_eq!(copied.size, 12_345_678);
        assert_eq!(copied.hash, blake3::hash(&content));
        assert_eq!(progress.0.load(Ordering::Relaxed), 12_345_678);
        let back = dst.get(&out).await.unwrap().bytes().await.unwrap();
        assert_eq!(back.as_ref(), content.as_slice());
    }

    #[tokio::test]
    async fn size_mismatch_is_an_error_and_writes_nothing() {
        let (src, dst) = (InMemory::new(), InMemory::new());
        let key = put(&src, "a/x", vec![1; 5000]).await;
        let out = Path::from("b/x");
        let err = stream_copy(
            &src,
            &key,
            &dst,
            &out,
            Some(10),
            &small_parts(),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 10,
                    actual: 5000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(dst.head(&out).await.is_err());
    }

    #[tokio::test]
    async fn missing_source_is_vanished() {
        let (src, dst) = (InMemory::new(), InMemory::new());
        let err = stream_copy(
            &src,
            &Path::from("nope"),
            &dst,
            &Path::from("x"),
            None,
            &small_parts(),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Vanished { .. }));
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn content_addressed_copy_dedups_and_names_by_hash() {
        let (src, dst) = (InMemory::new(), InMemory::new());
        let name_for = |h: &blake3::Hash| Path::from(format!("blobs/{}", h.to_hex()));
        for (len, key) in [(100usize, "small"), (6 * 1024 * 1024, "large")] {
            let content = vec![7u8; len];
            let src_key = put(&src, key, content.clone()).await;
            let staging = Path::from(format!("staging/{key}"));
            let first = copy_content_addressed(
                &src,
                &src_key,
                len as u64,
                &dst,
                &staging,
                &name_for,
                &|_| false,
                &small_parts(),
                &NoProgress,
            )
            .await
            .unwrap();
            assert!(first.uploaded);
            assert_eq!(first.hash, blake3::hash(&content));
            let stored = dst
                .get(&name_for(&first.hash))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(stored.len(), len);
            assert!(
                dst.head(&staging).await.is_err(),
                "staging object left behind"
            );
            let again = copy_content_addressed(
                &src,
                &src_key,
                len as u64,
                &dst,
                &staging,
                &name_for,
                &|h| *h == first.hash,
                &small_parts(),
                &NoProgress,
            )
            .await
            .unwrap();
            assert!(!again.uploaded);
            assert!(
                dst.head(&staging).await.is_err(),
                "staging object left behind"
            );
        }
    }
}
