//! Content-addressed copies of small files between two local directories, without async round
//! trips.
//!
//! Through `object_store`'s `LocalFileSystem` every small file costs three hand-offs between the
//! async runtime and its blocking pool (open, read, write), and at 100 000 files those thread
//! wake-ups cost more CPU than the copying itself (measured: a third of a backup's CPU time in
//! futex wake-ups and context switches). Here a batch of files is copied by a few plain threads,
//! each doing read → hash → pack → write → rename synchronously: one hand-off per batch, and
//! with [`LocalCopy::run_each`] results are handed over a few at a time while copies go on.
//!
//! The semantics are those of [`crate::copy_content_addressed`] for a small object: the size is
//! checked, a missing file is [`crate::Error::Vanished`], content the destination already holds
//! is not written, and a blob appears atomically (on Linux a small one is written as an unnamed
//! file in its own directory and linked under its name; otherwise under a staging key, then
//! renamed). When the caller asks for packs ([`LocalCopy::pack_name`]), small stored blobs are
//! gathered per thread into packs, each written whole under the hash of its bytes before the
//! results of the files it holds are handed over.
//! Only keys whose file name is the key itself ([`is_plain_key`]) take this path.

use crate::copy::{check_size, pack as encode};
use crate::direct::{AlignedBuf, AlignedVec, DirectWrite};
use crate::{CasCopy, Codec, Error, NameFor, Progress, Result};
use bytes::Bytes;
use object_store::path::Path;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Threads a local batch should use at most: enough to overlap file system latency on two cores
/// without the wake-up storms of many more.
pub const MAX_THREADS: usize = 4;

/// One file to copy.
#[derive(Debug, Clone)]
pub struct SmallFile {
    /// Key relative to the source directory.
    pub key: String,
    /// Expected size (immutable files), checked against what is read.
    pub expected: Option<u64>,
    /// How to store it.
    pub encode: Codec,
    /// Hand the plaintext back to the caller (it parses it).
    pub keep_bytes: bool,
}

/// What copying one file did.
#[derive(Debug)]
pub struct LocalCopied {
    /// The content-addressed copy.
    pub copy: CasCopy,
    /// The plaintext, when [`SmallFile::keep_bytes`].
    pub bytes: Option<Bytes>,
    /// Where in a pack the stored blob was written (`None`: an object of its own, or not
    /// written).
    pub packed: Option<Packed>,
}

impl LocalCopied {
    fn of(copy: CasCopy) -> Self {
        LocalCopied {
            copy,
            bytes: None,
            packed: None,
        }
    }
}

/// A stored blob written into a pack: the bytes `offset..offset + length` of the pack named
/// `pack` (BLAKE3 of the pack's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// The pack.
    pub pack: blake3::Hash,
    /// Where the stored blob begins.
    pub offset: u64,
    /// Its stored length.
    pub length: u64,
}

/// Where a batch copies from and to.
pub struct LocalCopy<'a> {
    /// Directory the keys are relative to.
    pub source: &'a FsPath,
    /// Directory of the content-addressed destination.
    pub destination: &'a FsPath,
    /// A fresh staging key (relative to `destination`) for each write.
    pub staging_key: &'a (dyn Fn() -> Path + Sync),
    /// The destination key of a content hash, stored compressed or not.
    pub name_for: NameFor<'a>,
    /// Whether the destination already holds a hash.
    pub is_known: &'a (dyn Fn(&blake3::Hash) -> bool + Sync),
    /// Told of bytes read.
    pub progress: &'a dyn Progress,
    /// The destination key of a pack, named by the hash of its bytes: stored blobs of up to
    /// [`PACK_MEMBER_MAX`] bytes are written one after the other into packs (see [`PackWriter`])
    /// instead of each into a file of its own. `None`: every blob is a file.
    pub pack_name: Option<PackName<'a>>,
}

/// The key of a pack, from the BLAKE3 of its bytes.
pub type PackName<'a> = &'a (dyn Fn(&blake3::Hash) -> Path + Sync);

/// Whether `key` names the same file through `LocalFileSystem` and through a plain path join:
/// segments of ASCII letters, digits, `.`, `-` and `_` (no percent-encoding, no `#`).
pub fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

impl LocalCopy<'_> {
    /// Copy `files` on `threads` plain threads, handing results to `deliver` with each file's
    /// index while copies go on (no batch waits for its slowest file). No file is started once
    /// `stop` is set.
    ///
    /// Each thread hands over what it holds (`Handover`) every `HANDOVER_FILES` files, once
    /// `HANDOVER_AFTER` has passed since the first of them was done, before a file larger than
    /// a block, and at the end. Handing each result over alone woke the consumer once per file:
    /// a full backup of 100 000 small files spent 7–8% of its CPU time in those wake-ups.
    pub fn run_each(
        &self,
        files: &[SmallFile],
        threads: usize,
        stop: &AtomicBool,
        deliver: impl Fn(Vec<(usize, Result<LocalCopied>)>) + Sync,
    ) {
        let deliver = &deliver;
        with_workers(files, threads, Some(stop), |claim| {
            let mut held = Handover::new(self, deliver);
            while let Some((i, file)) = claim() {
                if file.expected.is_some_and(|size| size > RAW_BLOCK as u64) {
                    held.hand_over();
                }
                let copied = self.copy_one(file, held.pack.as_mut());
                held.push(i, copied);
            }
            held.hand_over();
        });
    }

    /// Copy one file; a small stored blob goes into `pack` when there is one.
    fn copy_one(&self, file: &SmallFile, pack: Option<&mut PackWriter>) -> Result<LocalCopied> {
        if file.encode.is_identity() && !file.keep_bytes {
            return RAW_BLOCK_BUF
                .with_borrow_mut(|block| self.copy_raw(file, block.as_mut_slice(), pack));
        }
        let key = Path::from(file.key.as_str());
        let bytes = Bytes::from(
            crate::noatime::read_file(&self.source.join(&file.key))
                .map_err(|e| read_error(&key, e))?,
        );
        check_size(&key, file.expected, bytes.len() as u64)?;
        self.progress.advance(bytes.len() as u64);
        let hash = blake3::hash(&bytes);
        let size = bytes.len() as u64;
        let kept = file.keep_bytes.then(|| bytes.clone());
        let (copy, packed) = if (self.is_known)(&hash) {
            (CasCopy::known(size, hash), None)
        } else {
            let encoded = encode(bytes, &hash, self.name_for, &file.encode)?;
            let stored = encoded.body.len() as u64;
            let compressed = encoded.compressed;
            let packed = self.store_whole(&encoded.key, &encoded.body, pack)?;
            let copy = CasCopy {
                size,
                hash,
                uploaded: true,
                compressed,
                stored,
            };
            (copy, packed)
        };
        Ok(LocalCopied {
            copy,
            bytes: kept,
            packed,
        })
    }

    /// Store a blob written whole: into `pack` when there is one and the blob is small enough,
    /// else as an object of its own ([`Self::write_atomically`]).
    fn store_whole(
        &self,
        blob_key: &Path,
        body: &[u8],
        pack: Option<&mut PackWriter>,
    ) -> Result<Option<Packed>> {
        match pack {
            Some(pack) if body.len() <= PACK_MEMBER_MAX => Ok(Some(pack.append(body))),
            _ => self.write_atomically(blob_key, body).map(|()| None),
        }
    }

    /// Copy a file stored as is through `block`, which stays in the CPU cache from the read
    /// through the hash to the write (a whole-file buffer of megabytes would not, and its fresh
    /// pages cost faults). A file that fits in the block is hashed before anything is written,
    /// so known content is never written; a larger one streams to a staging file, renamed to its
    /// content key at the end (or removed, if the content is known).
    fn copy_raw(
        &self,
        file: &SmallFile,
        block: &mut [u8],
        pack: Option<&mut PackWriter>,
    ) -> Result<LocalCopied> {
        let key = Path::from(file.key.as_str());
        let mut source = crate::noatime::open_file(&self.source.join(&file.key))
            .map_err(|e| read_error(&key, e))?;
        let first = fill(&mut source, block).map_err(|e| read_error(&key, e))?;
        self.progress.advance(first as u64);
        if first < block.len() {
            let bytes = &block[..first];
            check_size(&key, file.expected, first as u64)?;
            let hash = blake3::hash(bytes);
            if (self.is_known)(&hash) {
                return Ok(LocalCopied::of(CasCopy::known(first as u64, hash)));
            }
            let packed = self.store_whole(&(self.name_for)(&hash, false), bytes, pack)?;
            return Ok(LocalCopied {
                packed,
                ..LocalCopied::of(CasCopy::uploaded_raw(first as u64, hash))
            });
        }
        let staging_key = (self.staging_key)();
        let staging = self.destination.join(staging_key.as_ref());
        let expected = file.expected.map_or(usize::MAX, |n| n as usize);
        let streamed = with_parent(&staging, |p| std::fs::File::create_new(p))
            .map_err(|e| Error::write(&staging_key, store_error(e)))
            .and_then(|out| {
                let mut out = DirectWrite::new(out, expected);
                let streamed = self.stream(&key, &mut source, &mut out, block, first)?;
                start_write_out(out.file(), streamed.0);
                Ok(streamed)
            });
        let (size, hash) = match streamed {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&staging);
                return Err(e);
            }
        };
        let checked = check_size(&key, file.expected, size);
        if checked.is_err() || (self.is_known)(&hash) {
            let _ = std::fs::remove_file(&staging);
            return checked.map(|()| LocalCopied::of(CasCopy::known(size, hash)));
        }
        self.rename_into_place(&staging, &(self.name_for)(&hash, false))?;
        Ok(LocalCopied::of(CasCopy::uploaded_raw(size, hash)))
    }

    /// Write `block[..first]` (already read) and the rest of `source` to `out`, hashing on the
    /// way; the size and hash.
    fn stream(
        &self,
        key: &Path,
        source: &mut std::fs::File,
        out: &mut DirectWrite,
        block: &mut [u8],
        first: usize,
    ) -> Result<(u64, blake3::Hash)> {
        let write_error = |e| Error::write(key, store_error(e));
        let (mut hasher, mut size, mut n) = (blake3::Hasher::new(), 0u64, first);
        let mut behind = WriteBehind::default();
        while n > 0 {
            hasher.update(&block[..n]);
            out.write_all(&block[..n]).map_err(write_error)?;
            size += n as u64;
            if !out.is_direct() {
                behind.written(out.file(), size);
            }
            n = fill(source, block).map_err(|e| read_error(key, e))?;
            self.progress.advance(n as u64);
        }
        Ok((size, hasher.finalize()))
    }

    /// Write as an unnamed file linked under the content key when the system can ([`unnamed`]),
    /// else under a staging key, then rename to the content key (creating directories as
    /// needed): a reader never sees a partial blob, and a crash leaves at most a staging file.
    fn write_atomically(&self, blob_key: &Path, body: &[u8]) -> Result<()> {
        #[cfg(target_os = "linux")]
        {
            let target = self.destination.join(blob_key.as_ref());
            match unnamed::write(&target, body) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(Error::write(blob_key, store_error(e))),
            }
        }
        let staging_key = (self.staging_key)();
        let staging = self.destination.join(staging_key.as_ref());
        with_parent(&staging, |p| std::fs::write(p, body))
            .map_err(|e| Error::write(&staging_key, store_error(e)))?;
        self.rename_into_place(&staging, blob_key)
    }

    /// Rename a staging file to `blob_key`; on failure the staging file is removed.
    fn rename_into_place(&self, staging: &PathBuf, blob_key: &Path) -> Result<()> {
        let target = self.destination.join(blob_key.as_ref());
        let renamed = with_parent(&target, |p| std::fs::rename(staging, p));
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(staging);
            return Err(Error::write(blob_key, store_error(e)));
        }
        Ok(())
    }
}

/// Blobs written as unnamed files in their own directory (`O_TMPFILE`), linked under their
/// name once complete. Staging them in `staging/` instead serialises every writer on that one
/// directory's lock (each create and each rename out of it), and a rename between directories
/// takes the file system's rename lock too: with a few threads writing thousands of small blobs,
/// a tenth of a 1% incremental's CPU time went to spinning on those locks. An unnamed file
/// never needs cleaning up either: a crash before the link leaves nothing behind.
#[cfg(target_os = "linux")]
mod unnamed {
    use rustix::fs::{AtFlags, Mode, OFlags, CWD};
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Cleared at the first sign that this system cannot do it (no `O_TMPFILE` on the file
    /// system, no `/proc`); from then on every blob is staged.
    static SUPPORTED: AtomicBool = AtomicBool::new(true);

    /// Write `body` as `target`, atomically. `Ok(false)`: not done, stage it instead (also
    /// when `target` exists, so that a staged rename replaces it as before).
    pub(super) fn write(target: &Path, body: &[u8]) -> std::io::Result<bool> {
        if !SUPPORTED.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(dir) = target.parent() else {
            return Ok(false);
        };
        let opened = super::with_parent(target, |_| open_unnamed(dir).map_err(Into::into));
        let file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            Err(e) => match Errno::from_io_error(&e) {
                Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => return unsupported(),
                _ => return Err(e),
            },
        };
        let mut out = super::DirectWrite::for_bytes(file, body);
        out.write_all(body)?;
        let file = out.into_file();
        let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
        match rustix::fs::linkat(CWD, by_fd.as_str(), CWD, target, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(Errno::NOENT) if std::fs::metadata(dir).is_ok() => unsupported(),
            Err(e) => Err(e.into()),
        }
    }

    fn open_unnamed(dir: &Path) -> rustix::io::Result<std::os::fd::OwnedFd> {
        let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
        rustix::fs::open(dir, flags, Mode::from_raw_mode(0o666))
    }

    fn unsupported() -> std::io::Result<bool> {
        SUPPORTED.store(false, Ordering::Relaxed);
        tracing::debug!("local writes: no unnamed files here, staging every blob");
        Ok(false)
    }
}

/// Files from this size on have their write-out started as soon as they are written, so that
/// the disk works while the next files are copied and the flush at the end waits for little.
const EARLY_WRITE_OUT: u64 = 1024 * 1024;

/// A large file's write-out is started every this many bytes while it is written: without it
/// the kernel holds a file of hundreds of megabytes in memory until it is complete.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

/// Where the write-out of a file being written has been started up to.
#[derive(Default)]
struct WriteBehind {
    started: u64,
}

impl WriteBehind {
    /// `out` now holds `size` bytes: start the write-out of the last [`WRITE_BEHIND`] bytes
    /// or more, if that many are waiting.
    fn written(&mut self, out: &std::fs::File, size: u64) {
        if size - self.started >= WRITE_BEHIND {
            start_range_write_out(out, self.started, size - self.started);
            self.started = size;
        }
    }
}

/// Start writing `file` (`size` bytes) to disk without waiting, when it is large enough to be
/// worth it. `POSIX_FADV_DONTNEED` starts the write-out of dirty pages (and drops clean ones
/// from the page cache, which a backup or restore does not read again); it is advice, so
/// failure changes nothing: the caller's final flush makes everything durable either way.
fn start_write_out(file: &std::fs::File, size: u64) {
    if size >= EARLY_WRITE_OUT {
        start_range_write_out(file, 0, 0);
    }
}

/// Start writing `len` bytes of `file` from `offset` (0: to its end) to disk, without waiting.
fn start_range_write_out(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        // A length of 0 (`None`) reaches the end of the file.
        let len = std::num::NonZeroU64::new(len);
        let _ = rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Bytes a raw copy moves per read and write: small enough to stay in a core's cache between the
/// read, the hash and the write, large enough that calls are few.
const RAW_BLOCK: usize = 256 * 1024;

thread_local! {
    /// Each copying thread's block (threads of [`work_through`] live for one batch), aligned for
    /// direct writes.
    static RAW_BLOCK_BUF: std::cell::RefCell<AlignedBuf> =
        std::cell::RefCell::new(AlignedBuf::new(RAW_BLOCK));
}

/// Read from `file` at `offset` until `buf` is full or the file ends; the bytes read.
fn fill_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    use std::os::unix::fs::FileExt;
    #[cfg(windows)]
    let read_at = |buf: &mut [u8], at| std::os::windows::fs::FileExt::seek_read(file, buf, at);
    #[cfg(unix)]
    let read_at = |buf: &mut [u8], at| file.read_at(buf, at);
    fill_with(buf, |free, done| read_at(free, offset + done))
}

/// Read from `source` until `buf` is full or the file ends; the bytes read.
fn fill(source: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    fill_with(buf, |free, _| std::io::Read::read(source, free))
}

/// Call `read` (with the part of `buf` still free and the bytes read so far) until `buf` is
/// full or a read returns nothing; the bytes read.
fn fill_with(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Run `job` on every item with `threads` plain threads; results in the order of `items`.
pub fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    job: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let mut done = work_through(items, threads, None, |_, item| job(item));
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

/// `threads` plain threads take the items in order, one at a time, and run `job` on each (with
/// its index) until none is left or `stop` is set; the results with their indexes, in no order.
fn work_through<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    stop: Option<&AtomicBool>,
    job: impl Fn(usize, &T) -> R + Sync,
) -> Vec<(usize, R)> {
    with_workers(items, threads, stop, |claim| {
        let mut out = Vec::new();
        while let Some((i, item)) = claim() {
            out.push((i, job(i, item)));
        }
        out
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Hands out the next item, with its index, to the thread that calls it; `None` once every item
/// is taken or the run is stopped.
type Claim<'c, 'a, T> = dyn Fn() -> Option<(usize, &'a T)> + 'c;

/// Run `worker` on `threads` plain threads, each taking items through its claim function until
/// it says none is left; what each worker returned, in no order.
fn with_workers<'a, T: Sync, W: Send>(
    items: &'a [T],
    threads: usize,
    stop: Option<&AtomicBool>,
    worker: impl for<'c> Fn(&'c Claim<'c, 'a, T>) -> W + Sync,
) -> Vec<W> {
    let next = AtomicUsize::new(0);
    let claim = || {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return None;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        items.get(i).map(|item| (i, item))
    };
    let (claim, worker) = (&claim, &worker);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.clamp(1, items.len().max(1)))
            .map(|_| scope.spawn(move || worker(claim)))
            .collect();
        // A thread that panicked took its results with it: pass the panic on rather than
        // return fewer results than items.
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Results a copying thread hands over together at most (see [`LocalCopy::run_each`]).
const HANDOVER_FILES: usize = 256;

/// How long a copying thread holds a done result at most before handing it over (a slow disk
/// should not keep finished files from being recorded).
const HANDOVER_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// Stored blobs up to this size go into packs (when the caller packs): a file of its own costs
/// an inode, a directory entry and their write-out, which for small files is most of the work.
pub const PACK_MEMBER_MAX: usize = RAW_BLOCK;

/// A pack is written once it holds this many bytes (or at the next hand-over).
pub(crate) const PACK_TARGET: usize = 4 * 1024 * 1024;

/// The pack a copying thread is filling: stored blobs one after the other, in memory until it
/// is written whole under the hash of its bytes, so that a pack on disk is always complete and
/// never changes (like a blob).
pub struct PackWriter {
    /// Aligned, so that the pack is written directly to the disk ([`crate::direct`]).
    bytes: AlignedVec,
    // Fed as blobs are appended, while each is still in the core's cache.
    hasher: blake3::Hasher,
}

impl PackWriter {
    fn new() -> Self {
        Self {
            bytes: AlignedVec::with_capacity(PACK_TARGET + PACK_MEMBER_MAX),
            hasher: blake3::Hasher::new(),
        }
    }

    /// Append a stored blob; where it lies (the pack's name is known once it is written).
    fn append(&mut self, body: &[u8]) -> Packed {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(body);
        self.hasher.update(body);
        Packed {
            pack: blake3::Hash::from_bytes([0; 32]),
            offset,
            length: body.len() as u64,
        }
    }

    fn is_full(&self) -> bool {
        self.bytes.len() >= PACK_TARGET
    }

    /// Write the pack, if it holds anything, under its name; its hash.
    fn write(&mut self, copy: &LocalCopy) -> Option<Result<blake3::Hash>> {
        let pack_name = copy.pack_name?;
        if self.bytes.is_empty() {
            return None;
        }
        let hash = self.hasher.finalize();
        let written = copy.write_atomically(&pack_name(&hash), self.bytes.as_slice());
        self.bytes.clear();
        self.hasher.reset();
        Some(written.map(|()| hash))
    }
}

/// Results one copying thread holds until it hands them over, and the pack their small blobs
/// went into: a result is handed over only once its blob is written.
struct Handover<'c, 'd, D: Fn(Vec<(usize, Result<LocalCopied>)>)> {
    copy: &'c LocalCopy<'c>,
    deliver: &'d D,
    held: Vec<(usize, Result<LocalCopied>)>,
    since: std::time::Instant,
    pack: Option<PackWriter>,
}

impl<'c, 'd, D: Fn(Vec<(usize, Result<LocalCopied>)>)> Handover<'c, 'd, D> {
    fn new(copy: &'c LocalCopy<'c>, deliver: &'d D) -> Self {
        Self {
            copy,
            deliver,
            held: Vec::with_capacity(HANDOVER_FILES),
            since: std::time::Instant::now(),
            pack: copy.pack_name.map(|_| PackWriter::new()),
        }
    }

    /// Hold the result of file `i`, and hand over all that is held when it is time.
    fn push(&mut self, i: usize, result: Result<LocalCopied>) {
        if self.held.is_empty() {
            self.since = std::time::Instant::now();
        }
        // An error is handed over at once: it stops the run.
        let failed = result.is_err();
        self.held.push((i, result));
        let pack_full = self.pack.as_ref().is_some_and(PackWriter::is_full);
        if failed
            || pack_full
            || self.held.len() >= HANDOVER_FILES
            || self.since.elapsed() >= HANDOVER_AFTER
        {
            self.hand_over();
        }
    }

    /// Write the pack, name it in the results whose blobs it holds (or fail them, if it could
    /// not be written), and hand the results over.
    fn hand_over(&mut self) {
        if let Some(written) = self.pack.as_mut().and_then(|p| p.write(self.copy)) {
            for (_, result) in &mut self.held {
                let Ok(copied) = result else { continue };
                let Some(packed) = copied.packed.as_mut() else {
                    continue;
                };
                match &written {
                    Ok(hash) => packed.pack = *hash,
                    // The error is the pack's: each result whose blob it held fails with it.
                    Err(e) => *result = Err(same_failure(e)),
                }
            }
        }
        if !self.held.is_empty() {
            (self.deliver)(std::mem::replace(
                &mut self.held,
                Vec::with_capacity(HANDOVER_FILES),
            ));
        }
    }
}

/// A failure like `e` for another file (store errors cannot be cloned): the same key and cause.
pub(crate) fn same_failure(e: &Error) -> Error {
    match e {
        Error::Write { key, source } => Error::Write {
            key: key.clone(),
            source: store_error(source.to_string()),
        },
        // Writes fail as `Write`; anything else keeps its text.
        other => Error::Write {
            key: "a pack".into(),
            source: store_error(other.to_string()),
        },
    }
}

/// One blob to restore into a local directory.
#[derive(Debug, Clone)]
pub struct BlobToFile {
    /// The key of the blob, or of the pack holding it, relative to the repository directory.
    pub blob_key: String,
    /// In a pack: where the stored blob lies in it.
    pub slice: Option<Slice>,
    /// How to turn the stored blob into plaintext.
    pub decode: Codec,
    /// The file's key, relative to the target directory ([`is_plain_key`]).
    pub key: String,
    /// Its expected size.
    pub size: u64,
    /// Its expected BLAKE3 (the blob id).
    pub hash: blake3::Hash,
}

/// Restore blobs of a local repository into a local directory. Each file is written under a
/// hidden `name#<digits>` file (which `LocalFileSystem` and the server never list), read back
/// from there and hashed, and renamed into place only if it has the expected size and hash. A
/// blob stored as is is copied by the kernel (`copy_file_range`: its bytes never pass through
/// this process, and a file system that shares extents shares them); any other is decoded in
/// memory. Returns what each file holds as read back: a hash that is not [`BlobToFile::hash`]
/// means the blob is corrupt, and nothing was put in place for it.
pub fn restore_files(
    files: &[BlobToFile],
    repo_dir: &FsPath,
    target_dir: &FsPath,
    threads: usize,
    progress: &dyn Progress,
) -> Vec<Result<crate::Copied>> {
    make_directories(files, target_dir);
    let kernel_copy = KernelCopy::default();
    run_parallel(files, threads, |file| {
        let target = target_dir.join(&file.key);
        restore_file(file, repo_dir, &target, &kernel_copy, progress)
    })
}

/// Create the directories of `files` under `target_dir`, in order, before any file is written:
/// the server gives each Parquet file a directory of its own, and each first write would
/// otherwise walk the path to fail on the missing directory, then again. One thread: siblings
/// made in parallel queue on their parent's lock. Restoring small files, alternating: 100 000 on
/// a RAM disk 2.1–2.3 s against 3.1–3.3 s without this step; 20 000 on this VM's disk 13.3 and
/// 19.7 s against 15.3 and 22.2 s (20–23 s with four threads). Best effort: a directory that
/// cannot be made fails its files' writes, which say why.
fn make_directories(files: &[BlobToFile], target_dir: &FsPath) {
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .filter_map(|file| file.key.rsplit_once('/'))
        .map(|(dir, _)| dir)
        .collect();
    for dir in dirs {
        let _ = std::fs::create_dir_all(target_dir.join(dir));
    }
}

fn restore_file(
    file: &BlobToFile,
    repo_dir: &FsPath,
    target: &FsPath,
    kernel_copy: &KernelCopy,
    progress: &dyn Progress,
) -> Result<crate::Copied> {
    let key = Path::from(file.key.as_str());
    let write_error = |e| Error::Write {
        key: key.to_string(),
        source: store_error(e),
    };
    let hidden = PathBuf::from(format!("{}#{}", target.display(), fastrand::u32(..)));
    let mut out = with_parent(&hidden, |p| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(p)
    })
    .map_err(write_error)?;
    // The write-out starts before the read-back (which reads the pages still cached, dirty or
    // being written) so the disk works while the file is hashed; the second call drops the
    // pages the read-back left clean.
    let written = write_plaintext(file, &repo_dir.join(&file.blob_key), &mut out, kernel_copy)
        .inspect(|()| start_write_out(&out, file.size))
        .and_then(|()| hash_written(&out, file.size).map_err(write_error));
    if written.is_ok() {
        start_write_out(&out, file.size);
    }
    drop(out);
    match written {
        Ok(copied) if copied.hash == file.hash => {
            if let Err(e) = std::fs::rename(&hidden, target) {
                let _ = std::fs::remove_file(&hidden);
                return Err(write_error(e));
            }
            progress.advance(copied.size);
            Ok(copied)
        }
        other => {
            let _ = std::fs::remove_file(&hidden);
            other
        }
    }
}

/// Write the plaintext of `file`'s blob (at `blob`) into `out`, checking its size.
fn write_plaintext(
    file: &BlobToFile,
    blob: &FsPath,
    out: &mut std::fs::File,
    kernel_copy: &KernelCopy,
) -> Result<()> {
    let blob_key = Path::from(file.blob_key.as_str());
    let read_error = |e| read_error(&blob_key, e);
    let write_error = |e| Error::Write {
        key: file.key.clone(),
        source: store_error(e),
    };
    if file.decode.is_identity() && file.slice.is_none() {
        let source = std::fs::File::open(blob).map_err(read_error)?;
        let copied = copy_behind(&source, out, file.size, kernel_copy).map_err(write_error)?;
        return check_size(&blob_key, Some(file.size), copied);
    }
    let plain = read_decoded(blob, &blob_key, file.slice, &file.decode)?;
    check_size(&blob_key, Some(file.size), plain.len() as u64)?;
    std::io::Write::write_all(out, &plain).map_err(write_error)
}

/// Where a stored blob lies in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Its first byte.
    pub offset: u64,
    /// Its stored length.
    pub length: u64,
}

/// The plaintext of the stored blob `key` of the repository in `repo_dir` (with `slice`: the
/// pack `key`'s bytes there), read whole on the calling thread (a caller already on a
/// blocking thread: one hand-off instead of the store's open, read and decode hand-offs).
/// Errors read as the store's would.
pub fn read_plain_file(
    repo_dir: &FsPath,
    key: &Path,
    slice: Option<Slice>,
    codec: &crate::Codec,
) -> Result<Vec<u8>> {
    read_decoded(&repo_dir.join(key.as_ref()), key, slice, codec)
}

/// The file at `path` (the blob `key`), or its `slice`, read whole and decoded with `codec`.
fn read_decoded(
    path: &FsPath,
    key: &Path,
    slice: Option<Slice>,
    codec: &crate::Codec,
) -> Result<Vec<u8>> {
    let stored = match slice {
        Some(slice) => read_slice(path, key, slice)?,
        None => std::fs::read(path).map_err(|e| read_error(key, e))?,
    };
    if codec.is_identity() {
        return Ok(stored);
    }
    crate::decode_all(&stored, codec).map_err(|e| Error::Codec {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// The bytes of `slice` of the file at `path` (the pack `key`); a pack that ends before the
/// slice does is an error naming both.
fn read_slice(path: &FsPath, key: &Path, slice: Slice) -> Result<Vec<u8>> {
    let too_long = || Error::Codec {
        key: key.to_string(),
        reason: format!(
            "the pack ends before the slice {}..+{} a backup entry names",
            slice.offset, slice.length
        ),
    };
    let length = usize::try_from(slice.length).map_err(|_| too_long())?;
    let file = std::fs::File::open(path).map_err(|e| read_error(key, e))?;
    let mut stored = vec![0; length];
    let read = fill_at(&file, &mut stored, slice.offset).map_err(|e| read_error(key, e))?;
    if read < length {
        return Err(too_long());
    }
    Ok(stored)
}

/// Copy `source` into `out` by the kernel, [`WRITE_BEHIND`] bytes at a time with the write-out
/// of each piece started; the bytes copied. One byte more than `expected` is asked for, so that
/// a longer source shows; a short copy that ends at `expected` is the source's end.
fn copy_behind(
    source: &std::fs::File,
    out: &mut std::fs::File,
    expected: u64,
    kernel_copy: &KernelCopy,
) -> std::io::Result<u64> {
    let (mut copied, mut behind) = (0u64, WriteBehind::default());
    while copied <= expected {
        let want = WRITE_BEHIND.min(expected + 1 - copied);
        let n = kernel_copy.copy(source, out, want)?;
        copied += n;
        behind.written(out, copied);
        if n == 0 || (n < want && copied == expected) {
            break;
        }
    }
    Ok(copied)
}

/// Whether the kernel copies between the two directories of one restore (`copy_file_range(2)`).
/// Between two file systems it refuses (`EXDEV`) every file, and `std::io::copy` then asks it
/// again: two failed system calls per file. After the first such refusal the run copies through
/// a buffer without asking.
#[derive(Default)]
struct KernelCopy {
    refused: AtomicBool,
}

impl KernelCopy {
    /// Copy up to `len` bytes from `source` to `out`, each at its offset; the bytes copied, 0 at
    /// the source's end. On Linux one `copy_file_range(2)`: [`std::io::copy`] first asks both
    /// files for their metadata and copies until it sees the end, four calls where a small file
    /// needs one.
    fn copy(
        &self,
        source: &std::fs::File,
        out: &mut std::fs::File,
        len: u64,
    ) -> std::io::Result<u64> {
        #[cfg(target_os = "linux")]
        if !self.refused.load(Ordering::Relaxed) {
            use rustix::io::Errno;
            let want = usize::try_from(len).unwrap_or(usize::MAX);
            loop {
                match rustix::fs::copy_file_range(source, None, &*out, None, want) {
                    Ok(n) => return Ok(n as u64),
                    Err(Errno::INTR) => {}
                    // Refusals of the pair of file systems: ask no more in this run.
                    Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP) => {
                        self.refused.store(true, Ordering::Relaxed);
                        return copy_through_buffer(source, out, len);
                    }
                    // Refusals that may be this file's (a special file, a seal).
                    Err(Errno::INVAL | Errno::PERM) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            return std::io::copy(&mut std::io::Read::take(source, len), out);
        }
        copy_through_buffer(source, out, len)
    }
}

/// Bytes copied per read when the kernel does not copy.
const COPY_BLOCK: u64 = 1024 * 1024;

/// Copy up to `len` bytes from `source` to `out` by reading and writing, each at its offset,
/// never through `copy_file_range` (which `std::io::copy` tries first between two files); the
/// bytes copied.
fn copy_through_buffer(
    source: &std::fs::File,
    out: &mut std::fs::File,
    len: u64,
) -> std::io::Result<u64> {
    let mut buf = vec![0; len.clamp(1, COPY_BLOCK) as usize];
    let mut source = source;
    let mut copied = 0u64;
    while copied < len {
        let want = (len - copied).min(buf.len() as u64) as usize;
        let n = fill_with(&mut buf[..want], |free, _| {
            std::io::Read::read(&mut source, free)
        })?;
        std::io::Write::write_all(out, &buf[..n])?;
        copied += n as u64;
        if n < want {
            break;
        }
    }
    Ok(copied)
}

/// Size and BLAKE3 of what was written to `out`, read back from its start.
fn hash_written(out: &std::fs::File, size_hint: u64) -> std::io::Result<crate::Copied> {
    let mut buf = vec![0; size_hint.clamp(1, READ_BACK_BLOCK as u64) as usize];
    let (mut hasher, mut size) = (blake3::Hasher::new(), 0u64);
    loop {
        let n = fill_at(out, &mut buf, size)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(crate::Copied {
        size,
        hash: hasher.finalize(),
        stored: size,
    })
}

/// Bytes read per call when a restored file is read back.
const READ_BACK_BLOCK: usize = 1024 * 1024;

/// Run `op` on `path`; when its directory is missing, create it and run `op` again.
fn with_parent<T>(path: &FsPath, op: impl Fn(&FsPath) -> std::io::Result<T>) -> std::io::Result<T> {
    match op(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            op(path)
        }
        other => other,
    }
}

/// A failed read of a source file, as a failed store read (a missing file has vanished).
fn read_error(key: &Path, e: std::io::Error) -> Error {
    let source = if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: key.to_string(),
            source: Box::new(e),
        }
    } else {
        store_error(e)
    };
    Error::read(key, source)
}

/// A local file system failure as the store error `LocalFileSystem` would report.
pub(crate) fn store_error(
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: source.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use std::sync::Mutex;

    fn name_for(hash: &blake3::Hash, compressed: bool) -> Path {
        let hex = hash.to_hex();
        let suffix = if compressed { ".zst" } else { "" };
        Path::from(format!("blobs/{}/{hex}{suffix}", &hex[..2]))
    }

    fn staging_key() -> Path {
        Path::from(format!("staging/{:016x}", fastrand::u64(..)))
    }

    /// A copy from `src` into `dst`, which holds what `is_known` says.
    fn copy_between<'a>(
        src: &'a FsPath,
        dst: &'a FsPath,
        is_known: &'a (dyn Fn(&blake3::Hash) -> bool + Sync),
    ) -> LocalCopy<'a> {
        LocalCopy {
            source: src,
            destination: dst,
            staging_key: &staging_key,
            name_for: &name_for,
            is_known,
            progress: &NoProgress,
            pack_name: None,
        }
    }

    fn pack_name(hash: &blake3::Hash) -> Path {
        let hex = hash.to_hex();
        Path::from(format!("packs/{}/{hex}", &hex[..2]))
    }

    #[test]
    fn read_plain_file_decodes_and_names_what_is_missing() {
        let repo = tempfile::tempdir().unwrap();
        let plain = b"{\"snapshot\": 1}".repeat(50);
        let (raw, zst) = (Path::from("blobs/aa/raw"), Path::from("blobs/aa/z.zst"));
        std::fs::create_dir_all(repo.path().join("blobs/aa")).unwrap();
        std::fs::write(repo.path().join("blobs/aa/raw"), &plain).unwrap();
        let compressed = zstd::stream::encode_all(plain.as_slice(), 3).unwrap();
        std::fs::write(repo.path().join("blobs/aa/z.zst"), compressed).unwrap();
        let unzstd = Codec {
            decompress: true,
            ..Codec::default()
        };
        let read = |key: &Path, codec: &Codec| read_plain_file(repo.path(), key, None, codec);
        assert_eq!(read(&raw, &Codec::default()).unwrap(), plain);
        assert_eq!(read(&zst, &unzstd).unwrap(), plain);
        let not_zstd = read(&raw, &unzstd).unwrap_err().to_string();
        assert!(not_zstd.contains("blobs/aa/raw"), "{not_zstd}");
        let missing = read(&Path::from("blobs/bb/gone"), &Codec::default()).unwrap_err();
        assert!(missing.to_string().contains("blobs/bb/gone"), "{missing}");
        // As through the store: a missing blob reads as one that vanished.
        assert!(matches!(&missing, Error::Vanished { .. }), "{missing:?}");
    }

    /// Copy every file with `threads` threads; results in the order of `files`.
    fn run(copy: &LocalCopy, files: Vec<SmallFile>, threads: usize) -> Vec<Result<LocalCopied>> {
        run_parallel(&files, threads, |file| copy.copy_one(file, None))
    }

    fn file(key: &str, expected: Option<u64>, compress: bool) -> SmallFile {
        SmallFile {
            key: key.into(),
            expected,
            encode: Codec {
                compress: compress.then_some(3),
                ..Codec::default()
            },
            keep_bytes: false,
        }
    }

    #[test]
    fn plain_keys_are_told_from_encoded_ones() {
        assert!(is_plain_key("dbs/1-2/2026-11-25/10-00/0000000012.parquet"));
        assert!(is_plain_key("_catalog_checkpoint"));
        assert!(!is_plain_key("dbs/a%20b/x"));
        assert!(!is_plain_key("dbs/a b/x"));
        assert!(!is_plain_key("x#1"));
        assert!(!is_plain_key("a//b"));
        assert!(!is_plain_key("../a"));
        assert!(!is_plain_key(""));
    }

    #[test]
    fn run_each_delivers_every_result_once_with_its_index_until_stopped() {
        const FILES: usize = 400;
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let files: Vec<SmallFile> = (0..FILES)
            .map(|i| {
                let key = format!("f{i:03}");
                std::fs::write(src.path().join(&key), format!("content {i}")).unwrap();
                file(&key, None, false)
            })
            .collect();
        let copy = copy_between(src.path(), dst.path(), &|_| false);
        let (delivered, handovers) = (Mutex::new(Vec::new()), AtomicUsize::new(0));
        copy.run_each(&files, 3, &AtomicBool::new(false), |results| {
            handovers.fetch_add(1, Ordering::Relaxed);
            let mut delivered = delivered.lock().unwrap();
            for (i, result) in results {
                delivered.push((i, result.unwrap().copy.hash));
            }
        });
        let mut delivered = delivered.into_inner().unwrap();
        delivered.sort_by_key(|(i, _)| *i);
        let expected: Vec<_> = (0..FILES)
            .map(|i| (i, blake3::hash(format!("content {i}").as_bytes())))
            .collect();
        assert_eq!(delivered, expected);
        // Results are handed over together (each alone would take 400 hand-overs; only a file
        // system taking 20 ms per tiny file would come close).
        let handovers = handovers.into_inner();
        assert!(
            handovers < FILES / 4,
            "{handovers} hand-overs of {FILES} results"
        );

        // A consumer that goes away after the first hand-over: each thread finishes the file it
        // had begun, hands over what it holds and takes no other file.
        let (stop, count) = (AtomicBool::new(false), AtomicUsize::new(0));
        copy.run_each(&files, 3, &stop, |results| {
            count.fetch_add(results.len(), Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        });
        let count = count.into_inner();
        assert!(
            (1..=4 * HANDOVER_FILES).contains(&count),
            "{count} of {FILES} files copied with a stop after the first hand-over"
        );
    }

    #[test]
    fn an_error_is_handed_over_at_once() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("present"), b"here").unwrap();
        std::fs::write(src.path().join("later"), b"also here").unwrap();
        let files = vec![
            file("present", None, false),
            file("missing", None, false),
            file("later", None, false),
        ];
        let copy = copy_between(src.path(), dst.path(), &|_| false);
        let handed = Mutex::new(Vec::new());
        copy.run_each(&files, 1, &AtomicBool::new(false), |results| {
            let oks = results.iter().map(|(_, r)| r.is_ok()).collect::<Vec<_>>();
            handed.lock().unwrap().push(oks);
        });
        // The first success waits for company; the failure goes at once, with it.
        assert_eq!(
            handed.into_inner().unwrap(),
            vec![vec![true, false], vec![true]]
        );
    }

    #[test]
    fn a_panicking_job_is_passed_on_not_dropped_with_its_results() {
        let items: Vec<u32> = (0..100).collect();
        let outcome = std::panic::catch_unwind(|| {
            run_parallel(&items, 4, |&i| {
                assert_ne!(i, 57, "job failed");
                i
            })
        });
        assert!(outcome.is_err(), "results without a panic: {outcome:?}");
        assert_eq!(run_parallel(&items, 4, |&i| i * 2)[99], 198);
    }

    #[test]
    fn streams_files_larger_than_a_block_and_leaves_nothing_staged() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..2 * RAW_BLOCK + 3).map(|i| (i % 253) as u8).collect();
        let twin: Vec<u8> = big.iter().map(|b| b ^ 0x5a).collect();
        for (name, bytes) in [("big", &big), ("known", &twin), ("short", &big)] {
            std::fs::write(src.path().join(name), bytes).unwrap();
        }
        let known = blake3::hash(&twin);
        let is_known = |h: &blake3::Hash| *h == known;
        let copy = copy_between(src.path(), dst.path(), &is_known);
        let size = big.len() as u64;
        let results = run(
            &copy,
            vec![
                file("big", Some(size), false),
                file("known", Some(size), false),
                file("short", Some(size + 1), false),
            ],
            2,
        );
        let copied = results[0].as_ref().unwrap().copy;
        assert_eq!(copied, CasCopy::uploaded_raw(size, blake3::hash(&big)));
        let stored = std::fs::read(dst.path().join(name_for(&copied.hash, false).as_ref()));
        assert_eq!(stored.unwrap(), big);
        let twin_copy = results[1].as_ref().unwrap().copy;
        assert_eq!(twin_copy, CasCopy::known(size, known));
        assert!(matches!(
            results[2],
            Err(Error::SizeMismatch { actual, .. }) if actual == size
        ));
        // Only the one new blob was kept: nothing staged, nothing for the known or short file.
        assert_eq!(staged(dst.path()), 0);
        let blob_dirs = std::fs::read_dir(dst.path().join("blobs")).unwrap();
        assert_eq!(blob_dirs.count(), 1);
    }

    #[test]
    fn copies_dedups_checks_sizes_and_reports_vanished_files() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        let wal = "wal content ".repeat(100);
        std::fs::write(src.path().join("a/b/1.wal"), &wal).unwrap();
        std::fs::write(src.path().join("a/b/2.parquet"), b"parquet").unwrap();
        std::fs::write(src.path().join("a/b/3.parquet"), b"parquet").unwrap();
        let known = Mutex::new(std::collections::HashSet::new());
        known.lock().unwrap().insert(blake3::hash(b"parquet"));
        let is_known = |h: &blake3::Hash| known.lock().unwrap().contains(h);
        let copy = copy_between(src.path(), dst.path(), &is_known);
        let results = run(
            &copy,
            vec![
                file("a/b/1.wal", None, true),
                file("a/b/2.parquet", Some(7), false),
                file("a/b/3.parquet", Some(99), false),
                file("a/b/gone.parquet", Some(1), false),
            ],
            3,
        );
        let wal_copy = results[0].as_ref().unwrap().copy;
        assert!(wal_copy.uploaded && wal_copy.compressed);
        let stored =
            std::fs::read(dst.path().join(name_for(&wal_copy.hash, true).as_ref())).unwrap();
        assert_eq!(crate::decompress(&stored).unwrap(), wal.as_bytes());
        assert!(
            !results[1].as_ref().unwrap().copy.uploaded,
            "known content is not written"
        );
        assert!(matches!(results[2], Err(Error::SizeMismatch { .. })));
        assert!(matches!(results[3], Err(Error::Vanished { .. })));
        // Nothing is left in staging.
        assert_eq!(staged(dst.path()), 0);
    }

    /// Entries under `staging/` (which small blobs may never create).
    fn staged(destination: &FsPath) -> usize {
        match std::fs::read_dir(destination.join("staging")) {
            Ok(entries) => entries.count(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("{e}"),
        }
    }

    /// A small blob that already exists under its name, damaged, is replaced by the staged
    /// rename: the unnamed write never links over an existing file.
    #[test]
    fn a_damaged_blob_in_the_way_is_replaced() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("1.parquet"), b"good bytes").unwrap();
        std::fs::write(src.path().join("2.parquet"), b"other bytes").unwrap();
        let target = dst
            .path()
            .join(name_for(&blake3::hash(b"good bytes"), false).as_ref());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, b"bad").unwrap();
        let copy = copy_between(src.path(), dst.path(), &|_| false);
        let results = run(
            &copy,
            vec![
                file("1.parquet", Some(10), false),
                file("2.parquet", Some(11), false),
            ],
            2,
        );
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"good bytes");
        let other = name_for(&blake3::hash(b"other bytes"), false);
        let other = std::fs::read(dst.path().join(other.as_ref())).unwrap();
        assert_eq!(other, b"other bytes");
        assert_eq!(staged(dst.path()), 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn unnamed_writes_create_directories_and_never_replace() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("blobs/ab/abcdef");
        assert!(unnamed::write(&target, b"content").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"content");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_ne!(mode & 0o400, 0, "readable by its owner: {mode:o}");
        // The directory holds the blob alone: an unnamed file leaves no name behind.
        let names = std::fs::read_dir(target.parent().unwrap()).unwrap().count();
        assert_eq!(names, 1);
        assert!(!unnamed::write(&target, b"other").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"content");
    }

    /// A repository directory holding `blobs` (key, stored bytes).
    fn repo_with(blobs: &[(&Path, &[u8])]) -> tempfile::TempDir {
        repo_in(tempfile::tempdir().unwrap(), blobs)
    }

    fn repo_in(repo: tempfile::TempDir, blobs: &[(&Path, &[u8])]) -> tempfile::TempDir {
        for (key, bytes) in blobs {
            let path = repo.path().join(key.as_ref());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        repo
    }

    fn to_file(blob: &Path, decode: &Codec, key: &str, content: &[u8]) -> BlobToFile {
        BlobToFile {
            blob_key: blob.to_string(),
            slice: None,
            decode: decode.clone(),
            key: key.into(),
            size: content.len() as u64,
            hash: blake3::hash(content),
        }
    }

    /// Every file under `dir`, relative, sorted (hidden write files would show here).
    fn files_under(dir: &FsPath) -> Vec<String> {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let rel = path.strip_prefix(dir).unwrap();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn small_blobs_go_into_packs_named_by_their_bytes_and_large_ones_stay_files() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let json = "snapshot ".repeat(400);
        let big: Vec<u8> = (0..RAW_BLOCK + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.path().join("small.parquet"), b"tiny parquet").unwrap();
        std::fs::write(src.path().join("snap.json"), &json).unwrap();
        std::fs::write(src.path().join("big.parquet"), &big).unwrap();
        let files = vec![
            file("small.parquet", Some(12), false),
            file("snap.json", None, true),
            file("big.parquet", None, false),
        ];
        let mut copy = copy_between(src.path(), dst.path(), &|_| false);
        copy.pack_name = Some(&pack_name);
        let delivered = Mutex::new(Vec::new());
        copy.run_each(&files, 1, &AtomicBool::new(false), |results| {
            delivered.lock().unwrap().extend(results);
        });
        let mut delivered = delivered.into_inner().unwrap();
        delivered.sort_by_key(|(i, _)| *i);
        let results: Vec<LocalCopied> = delivered.into_iter().map(|(_, r)| r.unwrap()).collect();

        // Both small blobs in one pack, in their stored form, the pack named by its hash.
        let (a, b) = (results[0].packed.unwrap(), results[1].packed.unwrap());
        assert_eq!(a.pack, b.pack);
        let pack = std::fs::read(dst.path().join(pack_name(&a.pack).as_ref())).unwrap();
        assert_eq!(blake3::hash(&pack), a.pack);
        let slice = |p: Packed| &pack[p.offset as usize..(p.offset + p.length) as usize];
        assert_eq!(slice(a), b"tiny parquet");
        assert!(results[1].copy.compressed);
        assert_eq!(b.length, results[1].copy.stored);
        assert_eq!(crate::decompress(slice(b)).unwrap(), json.as_bytes());
        // The large one streamed to a file of its own; no small blob has one.
        assert_eq!(results[2].packed, None);
        let big_hash = blake3::hash(&big);
        assert_eq!(
            files_under(dst.path()),
            [
                name_for(&big_hash, false).to_string(),
                pack_name(&a.pack).to_string()
            ]
        );
    }

    #[test]
    fn a_pack_that_cannot_be_written_fails_the_files_it_held() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), b"aaa").unwrap();
        // A file where the packs' directory would be.
        std::fs::write(dst.path().join("packs"), b"in the way").unwrap();
        let mut copy = copy_between(src.path(), dst.path(), &|_| false);
        copy.pack_name = Some(&pack_name);
        let delivered = Mutex::new(Vec::new());
        copy.run_each(&[file("a", None, false)], 1, &AtomicBool::new(false), |r| {
            delivered.lock().unwrap().extend(r);
        });
        let delivered = delivered.into_inner().unwrap();
        let error = delivered[0].1.as_ref().unwrap_err().to_string();
        assert!(error.contains("packs/"), "{error}");
    }

    #[test]
    fn restores_and_reads_blobs_from_pack_slices_and_refuses_short_packs() {
        let content = "snapshot json ".repeat(50);
        let compressed = crate::compress(content.as_bytes(), 3).unwrap();
        let mut pack = b"raw member".to_vec();
        pack.extend_from_slice(&compressed);
        let pack_key = pack_name(&blake3::hash(&pack));
        let repo = repo_with(&[(&pack_key, &pack)]);
        let unzstd = Codec {
            decompress: true,
            ..Codec::default()
        };
        let in_pack =
            |offset: u64, length: u64, decode: &Codec, key: &str, plain: &[u8]| BlobToFile {
                slice: Some(Slice { offset, length }),
                ..to_file(&pack_key, decode, key, plain)
            };
        let zlen = compressed.len() as u64;
        let files = [
            in_pack(0, 10, &Codec::default(), "dbs/1.parquet", b"raw member"),
            in_pack(
                10,
                zlen,
                &unzstd,
                "snapshots/1.info.json",
                content.as_bytes(),
            ),
            // Cut off: the pack ends before this slice does.
            in_pack(
                10,
                zlen + 1,
                &unzstd,
                "snapshots/2.info.json",
                content.as_bytes(),
            ),
        ];
        let target = tempfile::tempdir().unwrap();
        let results = restore_files(&files, repo.path(), target.path(), 2, &NoProgress);
        assert_eq!(
            results[0].as_ref().unwrap().hash,
            blake3::hash(b"raw member")
        );
        assert_eq!(results[1].as_ref().unwrap().size, content.len() as u64);
        let short = results[2].as_ref().unwrap_err().to_string();
        assert!(
            short.contains(pack_key.as_ref()) && short.contains("ends before"),
            "{short}"
        );
        assert_eq!(
            files_under(target.path()),
            ["dbs/1.parquet", "snapshots/1.info.json"]
        );
        let slice = Some(Slice {
            offset: 10,
            length: zlen,
        });
        let read = read_plain_file(repo.path(), &pack_key, slice, &unzstd).unwrap();
        assert_eq!(read, content.as_bytes());
    }

    #[test]
    fn restores_decoded_files_read_back_before_they_are_put_in_place() {
        let content = "snapshot json ".repeat(50);
        let blob = name_for(&blake3::hash(content.as_bytes()), true);
        let compressed = crate::compress(content.as_bytes(), 3).unwrap();
        let repo = repo_with(&[(&blob, &compressed)]);
        let target = tempfile::tempdir().unwrap();
        let unzstd = Codec {
            decompress: true,
            ..Codec::default()
        };
        let mut longer = to_file(&blob, &unzstd, "x/bad", content.as_bytes());
        longer.size += 1;
        let files = [
            to_file(&blob, &unzstd, "snapshots/1.info.json", content.as_bytes()),
            longer,
        ];
        let results = restore_files(&files, repo.path(), target.path(), 2, &NoProgress);
        let restored = results[0].as_ref().unwrap();
        assert_eq!(restored.hash, blake3::hash(content.as_bytes()));
        assert_eq!(restored.size, content.len() as u64);
        assert!(matches!(results[1], Err(Error::SizeMismatch { .. })));
        assert_eq!(
            std::fs::read(target.path().join("snapshots/1.info.json")).unwrap(),
            content.as_bytes()
        );
        // Nothing but the restored file: no hidden write left, nothing for the failed one.
        assert_eq!(files_under(target.path()), ["snapshots/1.info.json"]);
    }

    #[test]
    fn restores_raw_blobs_of_any_size_and_refuses_corrupt_ones() {
        // Above the write-behind step and the read-back block, so that the copy takes several
        // pieces and reading back several reads.
        let big: Vec<u8> = (0..WRITE_BEHIND as usize + 3 * READ_BACK_BLOCK + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let good = name_for(&blake3::hash(&big), false);
        let mut flipped = big.clone();
        flipped[READ_BACK_BLOCK + 5] ^= 1;
        let corrupt = Path::from("blobs/cc/corrupt");
        let short = Path::from("blobs/dd/short");
        let repo = repo_with(&[(&good, &big), (&corrupt, &flipped), (&short, &big[..100])]);
        let target = tempfile::tempdir().unwrap();
        let raw = Codec::identity();
        let mut too_short = to_file(&good, &raw, "dbs/1/too_short.parquet", &big);
        too_short.size -= 1;
        let files = [
            to_file(&good, &raw, "dbs/1/a.parquet", &big),
            to_file(&corrupt, &raw, "dbs/1/b.parquet", &big),
            to_file(&short, &raw, "dbs/1/c.parquet", &big),
            too_short,
            to_file(&Path::from("blobs/ee/gone"), &raw, "dbs/1/d.parquet", &big),
        ];
        let results = restore_files(&files, repo.path(), target.path(), 3, &NoProgress);
        let restored = results[0].as_ref().unwrap();
        assert_eq!(
            (restored.size, restored.hash),
            (big.len() as u64, blake3::hash(&big))
        );
        assert_eq!(
            std::fs::read(target.path().join("dbs/1/a.parquet")).unwrap(),
            big
        );
        // A blob whose bytes are not its id's: the hash read back tells; nothing is put in place.
        assert_eq!(results[1].as_ref().unwrap().hash, blake3::hash(&flipped));
        // A blob shorter or longer than its entry says.
        assert!(matches!(
            results[2],
            Err(Error::SizeMismatch { actual: 100, .. })
        ));
        assert!(matches!(results[3], Err(Error::SizeMismatch { .. })));
        assert!(matches!(results[4], Err(Error::Vanished { .. })));
        assert_eq!(files_under(target.path()), ["dbs/1/a.parquet"]);
    }

    #[test]
    fn a_refused_kernel_copy_is_not_asked_again_and_the_buffer_copies_exactly() {
        let content: Vec<u8> = (0..2 * COPY_BLOCK as usize + 9)
            .map(|i| (i % 241) as u8)
            .collect();
        // The source on the RAM disk where there is one: another file system than the target's.
        let source_dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir());
        let source_dir = source_dir.unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        std::fs::write(source_dir.path().join("blob"), &content).unwrap();
        let open = || std::fs::File::open(source_dir.path().join("blob")).unwrap();
        let create = |name: &str| std::fs::File::create(target_dir.path().join(name)).unwrap();
        // What this kernel says to a copy between these two directories.
        let refused = matches!(
            rustix::fs::copy_file_range(open(), None, create("probe"), None, 1),
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP)
        );
        let kernel_copy = KernelCopy::default();
        let mut out = create("first");
        let copied = copy_behind(&open(), &mut out, content.len() as u64, &kernel_copy).unwrap();
        assert_eq!(copied, content.len() as u64);
        assert_eq!(
            std::fs::read(target_dir.path().join("first")).unwrap(),
            content
        );
        assert_eq!(kernel_copy.refused.load(Ordering::Relaxed), refused);
        // Once refused, by reading and writing: exactly what was asked, or up to the end.
        kernel_copy.refused.store(true, Ordering::Relaxed);
        let mut out = create("part");
        assert_eq!(kernel_copy.copy(&open(), &mut out, 5).unwrap(), 5);
        assert_eq!(
            std::fs::read(target_dir.path().join("part")).unwrap(),
            content[..5]
        );
        let mut out = create("all");
        let asked = content.len() as u64 + 100;
        assert_eq!(
            kernel_copy.copy(&open(), &mut out, asked).unwrap(),
            content.len() as u64
        );
        assert_eq!(
            std::fs::read(target_dir.path().join("all")).unwrap(),
            content
        );
    }

    #[test]
    fn restores_from_a_repository_on_another_file_system() {
        // The kernel copies only within one file system (`EXDEV` otherwise, on current Linux):
        // a repository on the RAM disk restored into the temporary directory takes the
        // fallback where both exist and differ, the kernel copy elsewhere; either way the
        // bytes, their count and the directories come out right.
        let content: Vec<u8> = (0..3 * RAW_BLOCK + 7).map(|i| (i % 249) as u8).collect();
        let small = b"a small file".to_vec();
        let (big_blob, small_blob) = (
            name_for(&blake3::hash(&content), false),
            name_for(&blake3::hash(&small), false),
        );
        let blobs: [(&Path, &[u8]); 2] = [(&big_blob, &content), (&small_blob, &small)];
        let repo = match tempfile::tempdir_in("/dev/shm") {
            Ok(dir) => repo_in(dir, &blobs),
            Err(_) => repo_with(&blobs),
        };
        let target = tempfile::tempdir().unwrap();
        let raw = Codec::identity();
        let files = [
            to_file(
                &big_blob,
                &raw,
                "dbs/1-2/3-4/2026-11-25/10-00/a.parquet",
                &content,
            ),
            to_file(
                &small_blob,
                &raw,
                "dbs/1-2/3-4/2026-11-25/10-10/b.parquet",
                &small,
            ),
        ];
        let results = restore_files(&files, repo.path(), target.path(), 2, &NoProgress);
        for (file, result) in files.iter().zip(&results) {
            let copied = result.as_ref().unwrap();
            assert_eq!((copied.size, copied.hash), (file.size, file.hash));
        }
        assert_eq!(
            std::fs::read(target.path().join(&files[0].key)).unwrap(),
            content
        );
        assert_eq!(
            std::fs::read(target.path().join(&files[1].key)).unwrap(),
            small
        );
        assert_eq!(
            files_under(target.path()),
            [files[0].key.as_str(), files[1].key.as_str()]
        );
    }
}
