//! Pacing: a cap on the bytes per second a run sends to stores, or fetches from them, shared by
//! every request of the run ([`Pace`]), and a store wrapper whose requests wait their turn
//! ([`PacedStore`]).
//!
//! Each request reserves the time its bytes take at the chosen rate, right after the
//! reservations before it, and is sent once no more than [`BURST`] of its reservation lies
//! ahead; its body then goes at the link's speed. So by any moment a run has moved at most the
//! rate times (the seconds since it began + 2 × `BURST`) each way: the rate holds on average
//! over a few requests, not within one, and no request is slowed down while in flight, where
//! the store client's request timeout would cut it. Time left idle is not saved up beyond
//! `BURST`.
//!
//! Uploads: a PUT or one part of a multipart upload is a request. A PUT under [`PROMPT_BELOW`]
//! (a lock's refresh, a small record) goes at once, its bytes counted all the same: a lock must
//! not wait behind minutes of data until it looks abandoned.
//!
//! Downloads: a request's size must be known before it goes, so a read of a whole object (or of
//! a range open at one end) first asks for the object's size (a `HEAD` with the read's
//! conditions); and a read larger than [`RANGE`] goes as ranged reads of `RANGE`, each in its
//! turn, so that none waits long with its body unread.

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How much sending a run that has been idle may do at once, in seconds of the rate.
pub const BURST: Duration = Duration::from_secs(1);

/// PUTs smaller than this go at once (their bytes counted): locks and small records.
pub const PROMPT_BELOW: u64 = 64 * 1024;

/// Paced reads larger than this go as ranged reads of this size, each in its turn.
pub const RANGE: u64 = 8 * 1024 * 1024;

/// A rate shared by the requests of a run: each reserves its bytes' share of time in turn.
#[derive(Debug)]
pub struct Pace {
    bytes_per_second: f64,
    /// When the bytes reserved so far have had their time.
    free_at: Mutex<Option<Instant>>,
}

impl Pace {
    /// At most `bytes_per_second` (at least 1) on average.
    pub fn new(bytes_per_second: u64) -> Self {
        Pace {
            bytes_per_second: bytes_per_second.max(1) as f64,
            free_at: Mutex::new(None),
        }
    }

    /// The rate, in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second as u64
    }

    /// Reserve the time `bytes` take after everything reserved before, and return when they may
    /// go: the end of the reservations before them, less the [`BURST`] an idle run has in hand.
    fn reserve(&self, bytes: u64) -> Instant {
        let now = Instant::now();
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = free_at.map_or(earliest, |at| at.max(earliest));
        let end = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_second);
        *free_at = Some(end);
        // What is reserved beyond the burst waits for its time to come.
        end.checked_sub(BURST).unwrap_or(end).max(now)
    }

    /// Wait until `bytes` may be sent.
    pub async fn wait_for(&self, bytes: u64) {
        tokio::time::sleep_until(self.reserve(bytes)).await;
    }

    /// Count `bytes` sent without waiting: later requests wait for them instead.
    pub fn count(&self, bytes: u64) {
        self.reserve(bytes);
    }
}

/// A store whose uploads (PUTs and multipart parts) wait their turn at one [`Pace`] and whose
/// reads wait theirs at another, each where given; listings and deletes pass through.
#[derive(Debug)]
pub struct PacedStore {
    inner: Arc<dyn ObjectStore>,
    uploads: Option<Arc<Pace>>,
    downloads: Option<Arc<Pace>>,
}

impl PacedStore {
    /// `inner` with its uploads paced by `uploads` and its reads by `downloads` (which other
    /// stores of the run may share).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        uploads: Option<Arc<Pace>>,
        downloads: Option<Arc<Pace>>,
    ) -> Self {
        PacedStore {
            inner,
            uploads,
            downloads,
        }
    }

    /// A read in its turn at `pace`: its size learnt first where the request does not say it,
    /// and a large one split into ranged reads of [`RANGE`].
    async fn paced_get(
        &self,
        pace: &Arc<Pace>,
        location: &Path,
        options: GetOptions,
    ) -> Result<GetResult> {
        if let Some(GetRange::Bounded(r)) = &options.range {
            let len = r.end.saturating_sub(r.start);
            if len <= RANGE {
                // Its size is known; past the end the store answers as it would unpaced.
                pace.wait_for(len).await;
                return self.inner.get_opts(location, options).await;
            }
        }
        let head = GetOptions {
            head: true,
            range: None,
            ..options.clone()
        };
        let meta = self.inner.get_opts(location, head).await?.meta;
        let range = match &options.range {
            None => 0..meta.size,
            Some(r) => match r.as_range(meta.size) {
                Ok(range) => range,
                // An impossible range: the store answers it as it would unpaced.
                Err(_) => return self.inner.get_opts(location, options).await,
            },
        };
        let mut chunks = split(range.clone()).into_iter();
        let Some(first) = chunks.next() else {
            // Nothing to read (an empty object): nothing to wait for.
            return self.inner.get_opts(location, options).await;
        };
        let ranged = move |r: std::ops::Range<u64>| GetOptions {
            range: Some(GetRange::Bounded(r)),
            head: false,
            ..options.clone()
        };
        pace.wait_for(first.end - first.start).await;
        let opening = self.inner.get_opts(location, ranged(first)).await?;
        if opening.meta.size != meta.size {
            return Err(changed_while_read(location, meta.size, opening.meta.size));
        }
        let (attributes, extensions) = (opening.attributes.clone(), opening.extensions.clone());
        let (inner, at, pace, size) = (
            self.inner.clone(),
            location.clone(),
            pace.clone(),
            meta.size,
        );
        let rest = futures::stream::iter(chunks).then(move |r| {
            let (inner, at, pace, options) =
                (inner.clone(), at.clone(), pace.clone(), ranged(r.clone()));
            async move {
                pace.wait_for(r.end - r.start).await;
                let part = inner.get_opts(&at, options).await?;
                if part.meta.size != size {
                    return Err(changed_while_read(&at, size, part.meta.size));
                }
                Ok(part.into_stream())
            }
        });
        let stream = opening.into_stream().chain(rest.try_flatten()).boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes,
            extensions,
        })
    }
}

/// An object read in ranges that changed size between them.
fn changed_while_read(location: &Path, before: u64, after: u64) -> object_store::Error {
    object_store::Error::Generic {
        store: "paced read",
        source: format!("{location} changed while read in ranges: {before} bytes, then {after}")
            .into(),
    }
}

/// `range` cut into consecutive ranges of at most [`RANGE`] bytes.
fn split(range: std::ops::Range<u64>) -> Vec<std::ops::Range<u64>> {
    let mut chunks = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = range.end.min(start.saturating_add(RANGE));
        chunks.push(start..end);
        start = end;
    }
    chunks
}

impl std::fmt::Display for PacedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// The parts of one multipart upload, each sent in its turn.
#[derive(Debug)]
struct PacedParts {
    inner: Box<dyn MultipartUpload>,
    pace: Arc<Pace>,
}

#[async_trait]
impl MultipartUpload for PacedParts {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let bytes = data.content_length() as u64;
        // The part takes its number now, in the caller's order; its request waits for its turn.
        let send = self.inner.put_part(data);
        let pace = self.pace.clone();
        let paced: BoxFuture<'static, Result<()>> = Box::pin(async move {
            pace.wait_for(bytes).await;
            send.await
        });
        paced
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for PacedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if let Some(pace) = &self.uploads {
            let bytes = payload.content_length() as u64;
            if bytes < PROMPT_BELOW {
                pace.count(bytes);
            } else {
                pace.wait_for(bytes).await;
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(match &self.uploads {
            Some(pace) => Box::new(PacedParts {
                inner,
                pace: pace.clone(),
            }),
            None => inner,
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match &self.downloads {
            Some(pace) if !options.head => self.paced_get(pace, location, options).await,
            _ => self.inner.get_opts(location, options).await,
        }
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        if let Some(pace) = &self.downloads {
            let bytes = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
            pace.wait_for(bytes).await;
        }
        self.inner.get_ranges(location, ranges).await
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

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    const MIB: u64 = 1024 * 1024;

    /// 10 MiB of PUTs and parts at 1 MiB/s: the last request goes after 8 s of (tokio's paused)
    /// time, the rate's 10 s less twice the burst, and at no moment had more than the rate
    /// times (the time since the start + 2 s) gone.
    #[tokio::test(start_paused = true)]
    async fn puts_and_parts_go_at_the_rate_on_average() {
        let store = PacedStore::new(
            Arc::new(InMemory::new()),
            Some(Arc::new(Pace::new(MIB))),
            None,
        );
        let began = Instant::now();
        let within_bound = |sent: u64| {
            let allowed = MIB as f64 * (began.elapsed().as_secs_f64() + 2.0);
            assert!(
                sent as f64 <= allowed,
                "{sent} B sent by {:?}",
                began.elapsed()
            );
        };
        let mut sent = 0;
        for i in 0..4 {
            let payload = PutPayload::from(vec![0u8; MIB as usize]);
            store
                .put(&Path::from(format!("small/{i}")), payload)
                .await
                .unwrap();
            sent += MIB;
            within_bound(sent);
        }
        let mut upload = store.put_multipart(&Path::from("large")).await.unwrap();
        let parts: Vec<_> = (0..3)
            .map(|_| upload.put_part(PutPayload::from(vec![1u8; 2 * MIB as usize])))
            .collect();
        for part in parts {
            part.await.unwrap();
            sent += 2 * MIB;
            within_bound(sent);
        }
        upload.complete().await.unwrap();
        let took = began.elapsed();
        assert_eq!(took.as_secs(), 8, "{took:?}");
        let large = store.get(&Path::from("large")).await.unwrap();
        assert_eq!(large.bytes().await.unwrap().len(), 6 * MIB as usize);
    }

    /// Time left idle is not saved up beyond the burst: after a pause the rate holds again.
    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up() {
        let pace = Pace::new(MIB);
        pace.wait_for(MIB).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let began = Instant::now();
        for _ in 0..5 {
            pace.wait_for(MIB).await;
        }
        // 5 MiB: 1 s of burst in hand, then one each second with a second's lead.
        assert_eq!(began.elapsed().as_secs(), 3);
    }

    /// A small PUT (a lock's refresh) goes at once behind 10 s of queued data; the data after
    /// it waits for its bytes too.
    #[tokio::test(start_paused = true)]
    async fn small_puts_go_at_once_and_count() {
        let pace = Arc::new(Pace::new(MIB));
        let store = PacedStore::new(Arc::new(InMemory::new()), Some(pace.clone()), None);
        pace.count(10 * MIB);
        let began = Instant::now();
        store
            .put(&Path::from("lock"), vec![0u8; 1000].into())
            .await
            .unwrap();
        assert_eq!(began.elapsed(), Duration::ZERO);
        let payload = vec![0u8; 64 * 1024];
        store
            .put(&Path::from("data"), payload.into())
            .await
            .unwrap();
        // 10 MiB, 1000 B and 64 KiB reserved from a second before the start end after ~9.06 s;
        // the last goes a second before its end.
        assert_eq!(began.elapsed().as_secs(), 8);
    }

    /// An object of `len` bytes that does not repeat within a range.
    fn content(len: u64) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect()
    }

    /// Reads at 1 MiB/s: a whole 20 MiB object goes as three ranged reads in their turns and
    /// comes back whole; a bounded range, an open one and `get_ranges` wait for their bytes; an
    /// empty object reads at once. Uploads stay unpaced when only reads are.
    #[tokio::test(start_paused = true)]
    async fn reads_go_at_the_rate_in_ranges() {
        let inner = Arc::new(InMemory::new());
        let (big, empty) = (Path::from("big"), Path::from("empty"));
        let body = content(20 * MIB);
        inner.put(&big, body.clone().into()).await.unwrap();
        let store = PacedStore::new(inner, None, Some(Arc::new(Pace::new(MIB))));
        store.put(&empty, PutPayload::default()).await.unwrap();
        let began = Instant::now();
        let whole = store.get(&big).await.unwrap();
        assert_eq!(whole.range, 0..20 * MIB);
        assert_eq!(whole.bytes().await.unwrap(), body);
        // 20 MiB reserved from a second before the start; the last range (4 MiB) went a second
        // before its end.
        assert_eq!(began.elapsed().as_secs(), 18);
        let range = store.get_range(&big, MIB..3 * MIB).await.unwrap();
        assert_eq!(range, body[MIB as usize..3 * MIB as usize]);
        assert_eq!(began.elapsed().as_secs(), 20);
        let options = GetOptions {
            range: Some(GetRange::Offset(19 * MIB)),
            ..Default::default()
        };
        let tail = store.get_opts(&big, options).await.unwrap();
        assert_eq!(tail.bytes().await.unwrap(), body[19 * MIB as usize..]);
        let ranges = store
            .get_ranges(&big, &[0..MIB, 2 * MIB..4 * MIB])
            .await
            .unwrap();
        assert_eq!(ranges[1], body[2 * MIB as usize..4 * MIB as usize]);
        assert_eq!(began.elapsed().as_secs(), 24);
        let nothing = store.get(&empty).await.unwrap().bytes().await.unwrap();
        assert!(nothing.is_empty());
        let up = PutPayload::from(vec![0u8; 8 * MIB as usize]);
        store.put(&Path::from("up"), up).await.unwrap();
        assert_eq!(began.elapsed().as_secs(), 24);
    }

    /// A read in ranges of an object replaced meanwhile by one of another size fails, naming it.
    #[tokio::test(start_paused = true)]
    async fn an_object_changed_between_ranges_is_an_error() {
        let inner = Arc::new(InMemory::new());
        let key = Path::from("k");
        inner.put(&key, content(20 * MIB).into()).await.unwrap();
        let store = PacedStore::new(inner.clone(), None, Some(Arc::new(Pace::new(MIB))));
        let mut stream = store.get(&key).await.unwrap().into_stream();
        stream.next().await.unwrap().unwrap();
        inner.put(&key, content(30 * MIB).into()).await.unwrap();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            if let Err(e) = chunk {
                failed = Some(e.to_string());
                break;
            }
        }
        let failed = failed.expect("no error");
        assert!(
            failed.contains("k changed while read in ranges"),
            "{failed}"
        );
    }
}
