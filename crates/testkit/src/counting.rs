//! [`CountingStore`]: an `ObjectStore` wrapper that counts what is read through it (GET requests
//! and body bytes), to prove independently of the tool's own counters which source objects a
//! run read — and that can run a hook before a read, to act in the middle of a run, or hold each
//! GET (or uploaded part) a while and report how many were in flight at once.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Runs before a GET of the given key.
pub type Hook = Box<dyn Fn(&str) + Send + Sync>;

/// Counts GETs and the bytes of their bodies, per key.
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    bytes: Arc<AtomicU64>,
    gets: Mutex<BTreeMap<String, u64>>,
    puts: Mutex<Vec<String>>,
    hook: Option<Hook>,
    /// How long each GET waits before it is answered.
    delay: Option<std::time::Duration>,
    gets_in_flight: AtomicUsize,
    peak_gets: AtomicUsize,
    /// Parts of multipart uploads being written, of every upload, and the most at once.
    parts: Arc<PartsInFlight>,
}

/// Parts of multipart uploads in flight, across uploads.
#[derive(Debug, Default)]
struct PartsInFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl std::fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

impl CountingStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore {
            inner,
            bytes: Arc::new(AtomicU64::new(0)),
            gets: Mutex::new(BTreeMap::new()),
            puts: Mutex::new(Vec::new()),
            hook: None,
            delay: None,
            gets_in_flight: AtomicUsize::new(0),
            peak_gets: AtomicUsize::new(0),
            parts: Arc::default(),
        }
    }

    /// Wrap `inner`, answering each GET after `delay`, so that GETs a caller runs at once
    /// overlap and [`CountingStore::peak_gets`] counts them.
    pub fn with_delay(inner: Arc<dyn ObjectStore>, delay: std::time::Duration) -> Self {
        CountingStore {
            delay: Some(delay),
            ..CountingStore::new(inner)
        }
    }

    /// The most GETs that were waiting for their answer at once.
    pub fn peak_gets(&self) -> usize {
        self.peak_gets.load(Ordering::SeqCst)
    }

    /// The most parts of multipart uploads (of all uploads together) being written at once.
    /// With a delay ([`CountingStore::with_delay`]) each part also waits that long.
    pub fn peak_parts(&self) -> usize {
        self.parts.peak.load(Ordering::SeqCst)
    }

    /// Wrap `inner`, calling `hook` with the key before every GET.
    pub fn with_hook(inner: Arc<dyn ObjectStore>, hook: Hook) -> Self {
        CountingStore {
            hook: Some(hook),
            ..CountingStore::new(inner)
        }
    }

    /// Body bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Keys written so far (single and multipart uploads), in the order the writes started.
    pub fn keys_written(&self) -> Vec<String> {
        self.puts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn record_put(&self, location: &Path) {
        if let Ok(mut puts) = self.puts.lock() {
            puts.push(location.to_string());
        }
    }

    /// Keys read so far, with the number of GETs of each.
    pub fn keys_read(&self) -> BTreeMap<String, u64> {
        self.gets.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.record_put(location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.record_put(location);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountedUpload {
            inner,
            parts: self.parts.clone(),
            delay: self.delay,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if let Some(hook) = &self.hook {
            hook(location.as_ref());
        }
        if let Ok(mut gets) = self.gets.lock() {
            *gets.entry(location.to_string()).or_default() += 1;
        }
        let now = self.gets_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_gets.fetch_max(now, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let answered = self.inner.get_opts(location, options).await;
        self.gets_in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut result = answered?;
        // Count what the caller actually consumes: turn a file payload into a counted stream.
        let stream = match result.payload {
            GetResultPayload::Stream(stream) => stream,
            GetResultPayload::File(file, path) => {
                let bytes = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    let mut file = file;
                    file.read_to_end(&mut buf).map(|_| buf)
                })
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "counting",
                    source: Box::new(e),
                })?
                .map_err(|e| object_store::Error::Generic {
                    store: "counting",
                    source: format!("{}: {e}", path.display()).into(),
                })?;
                futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) }).boxed()
            }
        };
        let counter = self.bytes.clone();
        result.payload = GetResultPayload::Stream(
            stream
                .inspect(move |chunk| {
                    if let Ok(chunk) = chunk {
                        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    }
                })
                .boxed(),
        );
        Ok(result)
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
}

/// A multipart upload whose parts [`PartsInFlight`] counts while they are written.
#[derive(Debug)]
struct CountedUpload {
    inner: Box<dyn MultipartUpload>,
    parts: Arc<PartsInFlight>,
    delay: Option<std::time::Duration>,
}

#[async_trait]
impl MultipartUpload for CountedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (parts, delay) = (self.parts.clone(), self.delay);
        let now = parts.now.fetch_add(1, Ordering::SeqCst) + 1;
        parts.peak.fetch_max(now, Ordering::SeqCst);
        let written = self.inner.put_part(data);
        Box::pin(async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let result = written.await;
            parts.now.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
