//! Transient failures are retried: a store that answers the first reads with a server error, or
//! cuts the body stream mid-way, still yields a complete, correctly hashed copy; a permanent
//! failure is not retried.
#![allow(clippy::unwrap_used)]

use crate::{stream_copy, Codec, CopyOptions, Error, NoProgress};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions as StoreCopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How a [`FlakyStore`] misbehaves on its first `failures` reads.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The request fails (a 503 after object_store's own retries).
    ServerError,
    /// The body stream breaks after its first chunk (a dropped connection).
    CutStream,
    /// Access denied: permanent.
    Denied,
}

#[derive(Debug)]
struct FlakyStore {
    inner: InMemory,
    fault: Fault,
    failures: usize,
    reads: AtomicUsize,
}

impl std::fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlakyStore")
    }
}

fn generic(message: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "flaky",
        source: message.to_string().into(),
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
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
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if n >= self.failures {
            return self.inner.get_opts(location, options).await;
        }
        match self.fault {
            Fault::ServerError => Err(generic("503 Slow Down")),
            Fault::Denied => Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "403 AccessDenied".into(),
            }),
            Fault::CutStream => {
                let mut result = self.inner.get_opts(location, options).await?;
                let bytes = match result.payload {
                    GetResultPayload::Stream(s) => {
                        s.map(|c| c.unwrap()).collect::<Vec<Bytes>>().await
                    }
                    GetResultPayload::File(..) => unreachable!("memory store"),
                };
                let first = bytes.into_iter().next().unwrap_or_default();
                let first = first.slice(..first.len() / 2);
                let broken: BoxStream<'static, Result<Bytes>> =
                    stream::iter(vec![Ok(first), Err(generic("connection reset by peer"))]).boxed();
                result.payload = GetResultPayload::Stream(broken);
                Ok(result)
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: StoreCopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

async fn flaky(fault: Fault, failures: usize, content: &[u8]) -> FlakyStore {
    let store = FlakyStore {
        inner: InMemory::new(),
        fault,
        failures,
        reads: AtomicUsize::new(0),
    };
    store
        .inner
        .put(&Path::from("src"), content.to_vec().into())
        .await
        .unwrap();
    store
}

fn options() -> CopyOptions {
    CopyOptions {
        small_object_threshold: 4096,
        part_size: 5 * 1024 * 1024,
        part_concurrency: 2,
        retries: 3,
        ..CopyOptions::default()
    }
}

#[tokio::test]
async fn server_errors_and_cut_streams_are_retried_to_a_complete_copy() {
    let content: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    for fault in [Fault::ServerError, Fault::CutStream] {
        for size in [100usize, content.len()] {
            let src = flaky(fault, 2, &content[..size]).await;
            let dst = InMemory::new();
            let out = Path::from("dst");
            let copied = stream_copy(
                &src,
                &Path::from("src"),
                &dst,
                &out,
                Some(size as u64),
                &Codec::identity(),
                &options(),
                &NoProgress,
            )
            .await
            .unwrap_or_else(|e| panic!("{fault:?}/{size}: {e}"));
            assert_eq!(
                copied.hash,
                blake3::hash(&content[..size]),
                "{fault:?}/{size}"
            );
            assert_eq!(
                src.reads.load(Ordering::SeqCst),
                3,
                "{fault:?}/{size}: two failures, then success"
            );
            let stored = dst.get(&out).await.unwrap().bytes().await.unwrap();
            assert_eq!(stored.len(), size);
        }
    }
}

#[tokio::test]
async fn retries_are_bounded_and_permanent_errors_are_not_retried() {
    let src = flaky(Fault::ServerError, 100, b"data").await;
    let err = stream_copy(
        &src,
        &Path::from("src"),
        &InMemory::new(),
        &Path::from("d"),
        None,
        &Codec::identity(),
        &options(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    assert_eq!(
        src.reads.load(Ordering::SeqCst),
        4,
        "one try and three retries"
    );

    let src = flaky(Fault::Denied, 100, b"data").await;
    let err = stream_copy(
        &src,
        &Path::from("src"),
        &InMemory::new(),
        &Path::from("d"),
        None,
        &Codec::identity(),
        &options(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(
        src.reads.load(Ordering::SeqCst),
        1,
        "access denied is not retried"
    );
}
