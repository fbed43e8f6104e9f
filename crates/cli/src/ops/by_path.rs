//! [`EntriesByPath`]: manifest entries looked up by path, each path stored once. A `create` holds
//! the previous backup's entries and its own this way; at millions of objects a map keyed by a
//! copy of each path would hold every path twice.

use ib3_repo::Entry;
use rustc_hash::FxHashSet;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

/// An entry that hashes and compares as its path, and whether a run reuses it.
#[derive(Debug)]
pub(super) struct ByPath {
    entry: Entry,
    reused: AtomicBool,
}

impl ByPath {
    /// The entry.
    pub(super) fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Record that this run takes the entry as it is (see [`EntriesByPath::get_reused`]).
    pub(super) fn reuse(&self) {
        self.reused.store(true, Ordering::Relaxed);
    }

    fn is_reused(&self) -> bool {
        self.reused.load(Ordering::Relaxed)
    }
}

impl Hash for ByPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as `str`'s hash: lookups by `&str` find it (`Borrow<str>`).
        self.entry.path.as_str().hash(state);
    }
}

impl PartialEq for ByPath {
    fn eq(&self, other: &Self) -> bool {
        self.entry.path == other.entry.path
    }
}

impl Eq for ByPath {}

impl Borrow<str> for ByPath {
    fn borrow(&self) -> &str {
        &self.entry.path
    }
}

/// Entries by path (at most one per path).
#[derive(Debug, Default)]
pub(super) struct EntriesByPath(FxHashSet<ByPath>);

impl EntriesByPath {
    /// The entry of `path`.
    pub(super) fn get(&self, path: &str) -> Option<&Entry> {
        self.0.get(path).map(ByPath::entry)
    }

    /// The entry of `path` and its reuse mark.
    pub(super) fn slot(&self, path: &str) -> Option<&ByPath> {
        self.0.get(path)
    }

    /// The entry of `path`, if marked reused ([`ByPath::reuse`]).
    pub(super) fn get_reused(&self, path: &str) -> Option<&Entry> {
        self.0
            .get(path)
            .filter(|e| e.is_reused())
            .map(ByPath::entry)
    }

    /// Add an entry, replacing the one of the same path.
    pub(super) fn insert(&mut self, entry: Entry) {
        self.0.replace(ByPath {
            entry,
            reused: AtomicBool::new(false),
        });
    }

    /// Remove the entry of `path` and return it.
    pub(super) fn take(&mut self, path: &str) -> Option<Entry> {
        self.0.take(path).map(|e| e.entry)
    }

    /// Remove the entry of `path` and return it, if marked reused (one lookup: an entry not
    /// reused, rare where this is asked, is put back).
    pub(super) fn take_reused(&mut self, path: &str) -> Option<Entry> {
        let slot = self.0.take(path)?;
        if slot.is_reused() {
            Some(slot.entry)
        } else {
            self.0.insert(slot);
            None
        }
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().map(ByPath::entry)
    }
}

impl Extend<Entry> for EntriesByPath {
    fn extend<I: IntoIterator<Item = Entry>>(&mut self, entries: I) {
        let entries = entries.into_iter();
        self.0.reserve(entries.size_hint().0);
        for entry in entries {
            self.insert(entry);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ib3_repo::{BlobId, Encoding};

    fn entry(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            size: content.len() as u64,
            blob: BlobId::of(content),
            encoding: Encoding::Raw,
            class: "parquet".into(),
        }
    }

    #[test]
    fn looks_up_by_path_and_replaces() {
        let mut entries = EntriesByPath::default();
        assert!(entries.is_empty());
        entries.extend([entry("a/1", b"x"), entry("a/2", b"y")]);
        entries.insert(entry("a/1", b"zz"));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.get("a/1").unwrap().blob, BlobId::of(b"zz"));
        assert_eq!(entries.get("a/2").unwrap().size, 1);
        assert!(entries.get("a/3").is_none());
        assert_eq!(entries.values().count(), 2);
        assert_eq!(entries.take("a/2").unwrap().blob, BlobId::of(b"y"));
        assert!(entries.take("a/2").is_none());
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn only_entries_marked_reused_are_given_as_reused() {
        let mut entries = EntriesByPath::default();
        entries.extend([entry("a/1", b"x"), entry("a/2", b"y")]);
        assert!(entries.get_reused("a/1").is_none());
        assert!(entries.take_reused("a/1").is_none());
        entries.slot("a/1").unwrap().reuse();
        assert_eq!(entries.get_reused("a/1").unwrap().blob, BlobId::of(b"x"));
        assert!(entries.get_reused("a/2").is_none());
        assert!(entries.slot("a/3").is_none());
        assert_eq!(entries.take_reused("a/1").unwrap().blob, BlobId::of(b"x"));
        assert!(entries.take_reused("a/1").is_none());
        assert!(entries.take_reused("a/2").is_none());
        assert_eq!(entries.len(), 1, "an entry not reused stays");
        // Replacing an entry clears its mark.
        entries.slot("a/2").unwrap().reuse();
        entries.insert(entry("a/2", b"z"));
        assert!(entries.get_reused("a/2").is_none());
    }
}
