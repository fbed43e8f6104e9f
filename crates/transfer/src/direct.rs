//! Writes that bypass the page cache (`O_DIRECT`) where the file system takes them: the bytes go
//! from this process's buffer to the disk, and no page of the backup is left in memory.
//!
//! A backup's blobs and packs are written once and not read again by this run, and every one of
//! them is flushed to disk before the manifest commits (DESIGN §3.7), so passing them through the
//! page cache only adds a copy per byte and fills the host's memory with pages nobody wants —
//! evicting what the InfluxDB server beside it keeps cached. On the VM these figures come from,
//! writing 2.4 GiB through the page cache and flushing it took 16–32 s (most of it in the kernel
//! copying into freshly allocated pages), and the same bytes written directly 1.5 s (`dd`).
//!
//! Direct writes need the buffer's address, the file offset and the length aligned to the
//! device's logical block: [`ALIGN`] (4 KiB) covers every common one. So only whole aligned
//! blocks of an aligned buffer are written directly; the first write that is not — the tail of a
//! file, or anything a file system refuses — switches the file back to ordinary writes for the
//! rest of it. Only files on local disk file systems are written directly (not NFS, SMB, FUSE or
//! tmpfs: see `DIRECT_FILE_SYSTEMS`), and one that refuses the flag is written as before.
//! Nothing here changes what ends up in a file.

use std::fs::File;
use std::io::Write;

/// Alignment of buffers, offsets and lengths of direct writes.
pub const ALIGN: usize = 4096;

/// Files smaller than this are not worth the two extra system calls of switching.
const DIRECT_FROM: usize = 64 * 1024;

/// Whether `bytes` start where a direct write can take them from.
pub fn is_aligned(bytes: &[u8]) -> bool {
    bytes.as_ptr().align_offset(ALIGN) == 0
}

/// A zeroed buffer of a fixed length whose first byte is [`ALIGN`]-aligned.
pub struct AlignedBuf(AlignedVec);

impl AlignedBuf {
    /// `len` zero bytes, aligned.
    pub fn new(len: usize) -> Self {
        let mut bytes = AlignedVec::with_capacity(len);
        bytes.buf.resize(bytes.start + len, 0);
        Self(bytes)
    }

    /// The aligned bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0.buf[self.0.start..]
    }
}

/// A growable byte buffer whose content starts at an [`ALIGN`]-aligned address, as long as it
/// stays within the capacity it was made with (beyond, it is still correct, only not aligned).
pub struct AlignedVec {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedVec {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf: Vec<u8> = Vec::with_capacity(capacity + ALIGN);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf.resize(start, 0);
        Self { buf, start }
    }

    /// The content.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Forget the content, keeping the room.
    pub fn clear(&mut self) {
        self.buf.truncate(self.start);
    }
}

/// A file being written, directly while it can be.
pub struct DirectWrite {
    file: File,
    direct: bool,
}

impl DirectWrite {
    /// Write `file` from now on directly if `expected` bytes are worth it and its file system
    /// takes direct writes; otherwise as before.
    pub fn new(file: File, expected: usize) -> Self {
        let direct = expected >= DIRECT_FROM && set_direct(&file, true);
        Self { file, direct }
    }

    /// For writing `bytes` whole: directly only from an aligned buffer (a pack's), since from
    /// any other nothing would be.
    pub fn for_bytes(file: File, bytes: &[u8]) -> Self {
        Self::new(file, if is_aligned(bytes) { bytes.len() } else { 0 })
    }

    /// Append `bytes`: the whole aligned blocks of an aligned buffer directly, anything else (and
    /// everything after it) through the page cache.
    pub fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let rest = if self.direct {
            let done = self.write_direct(bytes)?;
            &bytes[done..]
        } else {
            bytes
        };
        if !rest.is_empty() && self.direct {
            self.direct = false;
            if !set_direct(&self.file, false) {
                return Err(std::io::Error::other(
                    "cannot switch a file back from direct writes",
                ));
            }
        }
        self.file.write_all(rest)
    }

    /// Write the leading whole blocks of `bytes` directly; how many bytes were written (the rest
    /// is for ordinary writes: a tail, an unaligned buffer, or a refusal).
    fn write_direct(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if !is_aligned(bytes) {
            return Ok(0);
        }
        let whole = bytes.len() / ALIGN * ALIGN;
        let mut done = 0;
        while done < whole {
            match self.file.write(&bytes[done..whole]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                // A short write that leaves the offset unaligned ends the direct part.
                Ok(n) if n % ALIGN != 0 => return Ok(done + n),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Refused (an alignment this file system needs beyond ALIGN): nothing written.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Ok(done),
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Whether writes still go directly to the disk.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file, back.
    pub fn into_file(self) -> File {
        self.file
    }
}

/// Local disk file systems (`statfs` magic numbers) whose direct writes go to the disk: ext2–4,
/// XFS, btrfs, F2FS, bcachefs, ZFS. On a network file system (NFS, SMB) a direct write is a
/// synchronous round trip to the server each, where buffered writes travel in the background;
/// on tmpfs there is no disk to write to.
const DIRECT_FILE_SYSTEMS: [u32; 6] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0xF2F5_2010,
    0xCA45_1A4E,
    0x2FC1_2FC1,
];

/// Whether `file` lies on a file system of [`DIRECT_FILE_SYSTEMS`].
#[cfg(target_os = "linux")]
fn on_local_disk(file: &File) -> bool {
    rustix::fs::fstatfs(file).is_ok_and(|fs| {
        // The magic is 32 bits wide, whatever the width (and sign) of the field holding it.
        let magic = (i128::from(fs.f_type) & 0xFFFF_FFFF) as u32;
        DIRECT_FILE_SYSTEMS.contains(&magic)
    })
}

/// Turn direct writes on or off for `file`; whether that was done.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use rustix::fs::OFlags;
    if on && !on_local_disk(file) {
        return false;
    }
    let Ok(flags) = rustix::fs::fcntl_getfl(file) else {
        return false;
    };
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags).is_ok()
}

/// Elsewhere every write goes through the page cache.
#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> bool {
    !on
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn written(parts: &[&[u8]], expected: usize) -> (Vec<u8>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = DirectWrite::new(File::create_new(&path).unwrap(), expected);
        let was_direct = out.is_direct();
        // Wherever the tests run: a file on a local disk is written directly, others are not.
        #[cfg(target_os = "linux")]
        assert_eq!(
            was_direct,
            expected >= DIRECT_FROM && on_local_disk(out.file()),
            "direct writes on {}",
            dir.path().display()
        );
        for part in parts {
            out.write_all(part).unwrap();
        }
        out.into_file().sync_all().unwrap();
        (std::fs::read(&path).unwrap(), was_direct)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn aligned_buffers_are_aligned_and_sized() {
        let mut block = AlignedBuf::new(3 * ALIGN);
        assert_eq!(block.as_mut_slice().len(), 3 * ALIGN);
        assert_eq!(block.as_mut_slice().as_ptr().align_offset(ALIGN), 0);
        let mut bytes = AlignedVec::with_capacity(8 * ALIGN);
        assert!(bytes.is_empty());
        bytes.extend_from_slice(&[7; 100]);
        assert_eq!(bytes.as_slice(), &[7; 100][..]);
        assert_eq!(bytes.as_slice().as_ptr().align_offset(ALIGN), 0);
        bytes.clear();
        assert_eq!(bytes.len(), 0);
    }

    #[test]
    fn blocks_tails_and_unaligned_buffers_all_land_in_order() {
        let mut block = AlignedBuf::new(16 * ALIGN);
        let first = pattern(16 * ALIGN, 1);
        block.as_mut_slice().copy_from_slice(&first);
        let second = pattern(16 * ALIGN, 2);
        let mut again = AlignedBuf::new(16 * ALIGN);
        again.as_mut_slice().copy_from_slice(&second);
        let tail = pattern(1234, 3);
        let (content, _) = written(
            &[block.as_mut_slice(), again.as_mut_slice(), &tail],
            40 * ALIGN,
        );
        let expected = [first, second, tail].concat();
        assert_eq!(content.len(), expected.len());
        assert!(content == expected, "the file holds other bytes");
        // An unaligned buffer (one byte into an aligned one) first: nothing goes direct, all lands.
        let shifted = &block.as_mut_slice()[1..];
        let owned = shifted.to_vec();
        let (content, _) = written(&[&owned[..], &owned[..]], 40 * ALIGN);
        assert!(content == [owned.clone(), owned].concat());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn files_off_a_local_disk_are_not_written_directly() {
        // tmpfs (`/dev/shm`) takes `O_DIRECT` on recent kernels, but has no disk to spare.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("f");
        let mut out = DirectWrite::new(File::create_new(&path).unwrap(), 1 << 20);
        assert!(!out.is_direct());
        let mut block = AlignedBuf::new(4 * ALIGN);
        out.write_all(block.as_mut_slice()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 4 * ALIGN);
    }

    #[test]
    fn small_files_are_not_written_directly() {
        let (content, direct) = written(&[b"small"], 5);
        assert_eq!(content, b"small");
        assert!(!direct);
    }
}
