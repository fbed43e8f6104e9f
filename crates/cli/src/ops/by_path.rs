//! Manifest entries looked up by path, each path stored once. A `create` holds its own entries
//! in an [`EntriesByPath`] and the previous backup's in a [`PreviousEntries`]: at millions of
//! objects a map keyed by a copy of each path would hold every path twice.

use super::record::written_after;
use ib3_repo::Entry;
use rustc_hash::{FxBuildHasher, FxHashSet};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// An entry that hashes and compares as its path.
#[derive(Debug)]
struct ByPath(Entry);

impl Hash for ByPath {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same as `str`'s hash: lookups by `&str` find it (`Borrow<str>`).
        self.0.path.as_str().hash(state);
    }
}

impl PartialEq for ByPath {
    fn eq(&self, other: &Self) -> bool {
        self.0.path == other.0.path
    }
}

impl Eq for ByPath {}

impl Borrow<str> for ByPath {
    fn borrow(&self) -> &str {
        &self.0.path
    }
}

/// Entries by path (at most one per path).
#[derive(Debug, Default)]
pub(super) struct EntriesByPath(FxHashSet<ByPath>);

impl EntriesByPath {
    /// The entry of `path`.
    pub(super) fn get(&self, path: &str) -> Option<&Entry> {
        self.0.get(path).map(|e| &e.0)
    }

    /// Add an entry, replacing the one of the same path.
    pub(super) fn insert(&mut self, entry: Entry) {
        self.0.replace(ByPath(entry));
    }

    /// Make room for `more` entries.
    pub(super) fn reserve(&mut self, more: usize) {
        self.0.reserve(more);
    }

    /// Remove the entry of `path` and return it.
    pub(super) fn take(&mut self, path: &str) -> Option<Entry> {
        self.0.take(path).map(|e| e.0)
    }

    /// Whether it holds no entry.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every entry, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().map(|e| &e.0)
    }
}

/// The entries of earlier runs of a source, in path order (as a manifest holds them), found by
/// path through a table of their positions, each marked when this run reuses it. Kept in order,
/// the reused entries come out for the new manifest, itself in path order, in one pass that
/// reads memory in sequence: taken one by one out of a hash set, each cost a few cache misses
/// (at 500 000 files, most of the 0.25 s between judging a cut and writing its manifest).
#[derive(Default)]
pub(super) struct PreviousEntries {
    /// Sorted by path, one per path. A path emptied by [`ReusedInOrder::take`] is taken; it
    /// lies in one of `taken_runs` and sorts as that run's prefix.
    entries: Vec<Entry>,
    /// Whether this run reuses each entry.
    reused: Vec<AtomicBool>,
    /// Positions in `entries`, hashed by path.
    positions: hashbrown::HashTable<u32>,
    /// Whether `entries` are one run's, in its order (positions are those of its manifest).
    as_loaded: bool,
    /// The runs entries may have been taken from ([`PreviousEntries::reused_in_order`]), in
    /// position order, none inside another.
    taken_runs: Vec<TakenRun>,
    /// [`Run::written_until`] of each run the entries came from, oldest first.
    written_until: Vec<Option<SystemTime>>,
    /// The run each entry came from (empty: all from the first).
    run_of: Vec<u16>,
}

/// The entries one earlier run recorded: a backup's, or a progress record's.
pub(super) struct Run {
    pub entries: Vec<Entry>,
    /// No object the run captured had been written later than this, in the store's clock
    /// (`None`: unknown, the run is older than this rule). An object the store says was written
    /// later is another than the one the entry was made from, whatever its key and size: the
    /// node was restored in place from an older backup, or started afresh, and writes keys
    /// again with other content.
    pub written_until: Option<SystemTime>,
}

/// The entries under `prefix`, at positions `at`, some of them taken (paths emptied). Every path
/// there starts with `prefix`, so a path that does not compares with each of them as it does
/// with `prefix`: searches stay sound with the emptied paths standing for `prefix`. (Compared as
/// itself, the empty string, an emptied path sorts before every path: a binary search for a
/// cluster catalog that sorts before the members taken could land among their entries and find
/// no catalog file, and a member cut after one that sorts later could be told that every entry
/// under its `dbs/` was reused when none had been looked at.)
struct TakenRun {
    prefix: String,
    at: Range<usize>,
}

impl PreviousEntries {
    /// The entries of `runs`, oldest first: where two hold a path, the later one's entry counts
    /// (a run that never committed recorded what it found after the backup it follows).
    #[cfg(test)]
    pub(super) fn from_runs(runs: Vec<Vec<Entry>>) -> Self {
        Self::from_runs_beside(tests::untimed(runs), |_| ()).0
    }

    /// [`PreviousEntries::from_runs`], and what `also` makes of the entries in path order, on
    /// another thread while their positions are tabled (at 2 000 000 entries each pass is a
    /// sixth of a second). `also` runs a second time, after sorting, if they were out of order.
    pub(super) fn from_runs_beside<T: Send>(
        runs: Vec<Run>,
        also: impl Fn(&[Entry]) -> T + Sync,
    ) -> (Self, T) {
        let written_until: Vec<Option<SystemTime>> = runs.iter().map(|r| r.written_until).collect();
        let single = runs.len() == 1;
        // One run is taken as it is: collected anew, its entries were copied to fresh memory.
        let (mut entries, mut run_of) = match <[Run; 1]>::try_from(runs) {
            Ok([run]) => (run.entries, Vec::new()),
            Err(runs) => flattened(runs),
        };
        // One run is almost always in order already (a manifest's entries are sorted): its
        // positions are tabled in the pass that checks the order, each path read once.
        let in_order = single.then(|| beside(&entries, positions_if_ordered, &also));
        let (positions, made, as_loaded) = match in_order {
            Some((Some(positions), made)) => (positions, made, true),
            _ => {
                (entries, run_of) = latest_of_each_path(entries, run_of);
                let (positions, made) = beside(&entries, positions_if_ordered, &also);
                (positions.unwrap_or_default(), made, false)
            }
        };
        let reused = entries.iter().map(|_| AtomicBool::new(false)).collect();
        let previous = Self {
            entries,
            reused,
            positions,
            as_loaded,
            taken_runs: Vec::new(),
            written_until,
            run_of,
        };
        (previous, made)
    }

    /// Whether the object at entry `i`, which the store says was last written at `modified`,
    /// was written after the run that recorded the entry ([`Run::written_until`]).
    fn written_since_recorded(&self, i: usize, modified: Option<SystemTime>) -> bool {
        let run = self.run_of.get(i).map_or(0, |&r| usize::from(r));
        written_after(modified, self.written_until.get(run).copied().flatten())
    }

    fn position(&self, path: &str) -> Option<usize> {
        let entries = &self.entries;
        self.positions
            .find(hash(path), |&j| entries[j as usize].path == path)
            .map(|&j| j as usize)
    }

    /// The entry of `path`.
    pub(super) fn get(&self, path: &str) -> Option<&Entry> {
        self.position(path).map(|i| &self.entries[i])
    }

    /// The entry of `path`, if marked reused ([`PreviousEntries::reuse_if`]).
    pub(super) fn get_reused(&self, path: &str) -> Option<&Entry> {
        self.position(path)
            .filter(|&i| self.reused[i].load(Ordering::Relaxed))
            .map(|i| &self.entries[i])
    }

    /// Mark the entry of `path` reused if there is one, the object (last written at `modified`,
    /// if the store said) was not written since the entry was recorded, and `reusable` says so;
    /// whether it was.
    pub(super) fn reuse_if(
        &self,
        path: &str,
        modified: Option<SystemTime>,
        reusable: impl FnOnce(&Entry) -> bool,
    ) -> bool {
        let Some(i) = self.position(path) else {
            return false;
        };
        let reuse = !self.written_since_recorded(i, modified) && reusable(&self.entries[i]);
        if reuse {
            self.reused[i].store(true, Ordering::Relaxed);
        }
        reuse
    }

    /// A cursor that marks entries reused like [`PreviousEntries::reuse_if`], for paths asked
    /// mostly in increasing order (a listing's).
    pub(super) fn reuse_cursor(&self) -> ReuseCursor<'_> {
        ReuseCursor {
            previous: self,
            next: None,
        }
    }

    /// Whether every entry whose path starts with `prefix` is marked reused (true when none
    /// does). False under a prefix whose entries were given out ([`ReusedInOrder::take`]).
    pub(super) fn all_reused_under(&self, prefix: &str) -> bool {
        if self.taken_run_holding(prefix).is_some() {
            return false;
        }
        // Only the marks of the run are read (not millions of paths).
        self.reused[self.run_under(prefix)]
            .iter()
            .all(|reused| reused.load(Ordering::Relaxed))
    }

    /// A cursor that takes reused entries for paths under `prefix` asked in increasing order.
    pub(super) fn reused_in_order(&mut self, prefix: &str) -> ReusedInOrder<'_> {
        let next = match self.taken_run_holding(prefix) {
            Some(run) => run.at.start,
            None => {
                let run = self.run_under(prefix);
                let next = run.start;
                self.add_taken_run(prefix, run);
                next
            }
        };
        ReusedInOrder {
            previous: self,
            next,
        }
    }

    /// Record that entries under `prefix`, at `at`, may be taken (a run inside it is dropped).
    fn add_taken_run(&mut self, prefix: &str, at: Range<usize>) {
        if at.is_empty() {
            return;
        }
        self.taken_runs
            .retain(|run| !(at.start <= run.at.start && run.at.end <= at.end));
        let i = self
            .taken_runs
            .partition_point(|run| run.at.start < at.start);
        let prefix = prefix.to_owned();
        self.taken_runs.insert(i, TakenRun { prefix, at });
    }

    /// The taken run whose prefix `path` starts with.
    fn taken_run_holding(&self, path: &str) -> Option<&TakenRun> {
        self.taken_runs
            .iter()
            .find(|run| path.starts_with(&run.prefix))
    }

    /// The taken run at position `i`.
    fn taken_run_at(&self, i: usize) -> Option<&TakenRun> {
        let run = self.taken_runs.partition_point(|run| run.at.end <= i);
        self.taken_runs.get(run).filter(|run| run.at.contains(&i))
    }

    /// What the entry at `i` sorts as: its path, or, taken, its run's prefix.
    fn sorts_as(&self, i: usize) -> &str {
        let path = self.entries[i].path.as_str();
        if path.is_empty() {
            if let Some(run) = self.taken_run_at(i) {
                return &run.prefix;
            }
        }
        path
    }

    /// The first position whose entry does not sort before `path`; for a path inside a taken
    /// run, its start (at or before that position: emptied entries cannot be placed).
    fn lower_bound(&self, path: &str) -> usize {
        match self.taken_run_holding(path) {
            Some(run) => run.at.start,
            None => first_where_not(0..self.entries.len(), |i| self.sorts_as(i) < path),
        }
    }

    /// The positions of the entries whose paths start with `prefix` (one run, as they are
    /// sorted), found by binary search; `prefix` is not inside a taken run.
    fn run_under(&self, prefix: &str) -> Range<usize> {
        let start = self.lower_bound(prefix);
        let end = first_where_not(start..self.entries.len(), |i| {
            self.sorts_as(i).starts_with(prefix)
        });
        start..end
    }

    /// Walking the sorted entries from `from` to `path`: `Ok` with its position if an entry has
    /// it, else `Err` with the position of the first entry after it. One comparison per entry
    /// passed or met (at millions of paths that share long prefixes the comparisons are most of
    /// a walk's time); a taken run that sorts before `path` is passed in one step.
    fn advance_to(&self, from: usize, path: &str) -> Result<usize, usize> {
        let mut at = from;
        while let Some(entry) = self.entries.get(at) {
            let here = entry.path.as_str();
            if here.is_empty() {
                let run = self.taken_run_at(at);
                if let Some(run) = run.filter(|run| !path.starts_with(&run.prefix)) {
                    if run.prefix.as_str() > path {
                        return Err(at);
                    }
                    at = run.at.end;
                    continue;
                }
            }
            match here.cmp(path) {
                std::cmp::Ordering::Less => at += 1,
                std::cmp::Ordering::Equal => return Ok(at),
                std::cmp::Ordering::Greater => return Err(at),
            }
        }
        Err(at)
    }

    /// Whether the entries are one run's, each at its position in that run's manifest.
    pub(super) fn as_loaded(&self) -> bool {
        self.as_loaded
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in path order.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Every entry as loaded (none taken), for what they reference: `None` once entries may
    /// have been taken (a taken entry's pack slice went with it).
    pub(super) fn untaken(&self) -> Option<&[Entry]> {
        self.taken_runs
            .is_empty()
            .then_some(self.entries.as_slice())
    }
}

/// See [`PreviousEntries::reused_in_order`].
pub(super) struct ReusedInOrder<'a> {
    previous: &'a mut PreviousEntries,
    /// Entries before this position are behind every path asked so far.
    next: usize,
}

impl ReusedInOrder<'_> {
    /// The reused entry of `path`, moved out (given once), and its position; `path` must be
    /// greater than every path asked before.
    pub(super) fn take(&mut self, path: &str) -> Option<(Entry, usize)> {
        let found = self.previous.advance_to(self.next, path);
        // A path found is behind the next one asked (greater): the walk starts past it.
        self.next = found.map_or_else(|at| at, |at| at + 1);
        let i = found.ok()?;
        (self.previous.reused[i].swap(false, Ordering::Relaxed))
            .then(|| (take_entry(&mut self.previous.entries[i]), i))
    }
}

/// See [`PreviousEntries::reuse_cursor`]. A path is found by walking the entries on from where
/// the walk for the path before stopped; one for which the walk passes no entry (absent, or asked
/// after a greater one) is looked up as [`PreviousEntries::reuse_if`] does. At millions of paths
/// in order, a lookup each (the path hashed, a table slot, the entry and its path: three cache
/// misses) cost a tenth of a no-change incremental's CPU time, where the walk reads the entries
/// in the order they lie in memory.
pub(super) struct ReuseCursor<'a> {
    previous: &'a PreviousEntries,
    /// Where the walk stopped: every entry before it is before the last path walked to
    /// (`None`: nothing asked yet).
    next: Option<usize>,
}

impl ReuseCursor<'_> {
    /// [`PreviousEntries::reuse_if`] for `path`.
    pub(super) fn reuse_if(
        &mut self,
        path: &str,
        modified: Option<SystemTime>,
        reusable: impl FnOnce(&Entry) -> bool,
    ) -> bool {
        // First asked: one binary search (parts of a listing start anywhere in it).
        let previous = self.previous;
        let from = self.next.unwrap_or_else(|| previous.lower_bound(path));
        let at = match previous.advance_to(from, path) {
            Ok(at) => at,
            // Met an entry after it without passing one: `path` is absent, or before the
            // cursor (asked out of order). Looked up: once per new file when asked in order.
            Err(at) if at == from => return self.previous.reuse_if(path, modified, reusable),
            // Passed entries before it: it is not before the cursor, and absent.
            Err(at) => {
                self.next = Some(at);
                return false;
            }
        };
        self.next = Some(at);
        let reuse =
            !previous.written_since_recorded(at, modified) && reusable(&previous.entries[at]);
        if reuse {
            self.previous.reused[at].store(true, Ordering::Relaxed);
        }
        reuse
    }
}

/// The first of `range` for which `before` is false; `before` is true for a start of `range`
/// and false for the rest (a binary search).
fn first_where_not(range: Range<usize>, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (range.start, range.end);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// The entries of `runs` (oldest first) one after another, and beside them the run each came
/// from.
fn flattened(runs: Vec<Run>) -> (Vec<Entry>, Vec<u16>) {
    let mut run_of = Vec::with_capacity(runs.iter().map(|r| r.entries.len()).sum());
    let mut entries = Vec::with_capacity(run_of.capacity());
    for (run, r) in runs.into_iter().enumerate() {
        let run = u16::try_from(run).unwrap_or(u16::MAX);
        run_of.extend(std::iter::repeat_n(run, r.entries.len()));
        entries.extend(r.entries);
    }
    (entries, run_of)
}

/// `entries` sorted by path, one per path: of those with one path, the last (the latest run's).
/// `run_of` (the run of each, or empty) is kept beside them.
fn latest_of_each_path(entries: Vec<Entry>, run_of: Vec<u16>) -> (Vec<Entry>, Vec<u16>) {
    let tagged = !run_of.is_empty();
    let runs = run_of.into_iter().chain(std::iter::repeat(0));
    let mut both: Vec<(Entry, u16)> = entries.into_iter().zip(runs).collect();
    // Stable: of entries with one path, the last is the latest run's.
    both.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    both.reverse();
    both.dedup_by(|later, earlier| later.0.path == earlier.0.path);
    both.reverse();
    let (entries, run_of): (Vec<Entry>, Vec<u16>) = both.into_iter().unzip();
    (entries, if tagged { run_of } else { Vec::new() })
}

/// `first` and `second` of `entries`, on two threads.
fn beside<A: Send, B: Send>(
    entries: &[Entry],
    first: impl FnOnce(&[Entry]) -> A + Send,
    second: impl FnOnce(&[Entry]) -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let other = scope.spawn(|| second(entries));
        let first = first(entries);
        let second = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    })
}

/// Positions of `entries` hashed by path, if their paths are in strictly increasing order.
fn positions_if_ordered(entries: &[Entry]) -> Option<hashbrown::HashTable<u32>> {
    let mut positions = hashbrown::HashTable::with_capacity(entries.len());
    let mut before: Option<&str> = None;
    for (i, entry) in entries.iter().enumerate() {
        if before.is_some_and(|before| before >= entry.path.as_str()) {
            return None;
        }
        before = Some(&entry.path);
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        positions.insert_unique(hash(&entry.path), at, |&j: &u32| {
            hash(&entries[j as usize].path)
        });
    }
    Some(positions)
}

/// Move an entry out, leaving one with an empty path (which no lookup finds and which sorts
/// before, so is behind, every path a cursor asks for).
fn take_entry(slot: &mut Entry) -> Entry {
    Entry {
        path: std::mem::take(&mut slot.path),
        size: slot.size,
        blob: slot.blob,
        encoding: slot.encoding,
        class: std::mem::take(&mut slot.class),
        pack: slot.pack.take(),
        facts: slot.facts.take(),
    }
}

fn hash(path: &str) -> u64 {
    FxBuildHasher.hash_one(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ib3_repo::{BlobId, Encoding};

    /// Runs that tell no time.
    pub(super) fn untimed(runs: Vec<Vec<Entry>>) -> Vec<Run> {
        runs.into_iter()
            .map(|entries| Run {
                entries,
                written_until: None,
            })
            .collect()
    }

    /// An object written after the run that recorded its entry is not that entry's object, even
    /// at the same size; each entry is judged by the time of its own run.
    #[test]
    fn an_object_written_since_its_entry_was_recorded_is_not_reused() {
        let at = |secs: u64| Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        let backup = Run {
            entries: vec![entry("a/1", b"x"), entry("a/2", b"y"), entry("a/3", b"z")],
            written_until: at(100),
        };
        let partial = Run {
            entries: vec![entry("a/2", b"v")],
            written_until: at(200),
        };
        let (previous, ()) = PreviousEntries::from_runs_beside(vec![backup, partial], |_| ());
        assert!(
            previous.reuse_if("a/1", at(100), |_| true),
            "written by then"
        );
        assert!(
            !previous.reuse_if("a/3", at(101), |_| true),
            "written after the backup"
        );
        assert!(
            previous.reuse_if("a/2", at(150), |_| true),
            "the partial's entry, its time"
        );
        let mut cursor = previous.reuse_cursor();
        assert!(
            !cursor.reuse_if("a/1", at(150), |_| true),
            "the backup's entry, its time"
        );
        assert!(!cursor.reuse_if("a/2", at(201), |_| true));
        assert!(
            cursor.reuse_if("a/3", None, |_| true),
            "no time told: size decides"
        );
        let old = PreviousEntries::from_runs(vec![vec![entry("b", b"1")]]);
        assert!(
            old.reuse_if("b", at(10_000_000_000), |_| true),
            "a run that tells no time"
        );
    }

    fn entry(path: &str, content: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            size: content.len() as u64,
            blob: BlobId::of(content),
            encoding: Encoding::Raw,
            class: "parquet".into(),
            pack: None,
            facts: None,
        }
    }

    #[test]
    fn looks_up_by_path_and_replaces() {
        let mut entries = EntriesByPath::default();
        entries.insert(entry("a/1", b"x"));
        entries.insert(entry("a/2", b"y"));
        entries.insert(entry("a/1", b"zz"));
        assert_eq!(entries.values().count(), 2);
        assert_eq!(entries.get("a/1").unwrap().blob, BlobId::of(b"zz"));
        assert_eq!(entries.get("a/2").unwrap().size, 1);
        assert!(entries.get("a/3").is_none());
        assert_eq!(entries.take("a/2").unwrap().blob, BlobId::of(b"y"));
        assert!(entries.take("a/2").is_none());
        assert_eq!(entries.values().count(), 1);
    }

    #[test]
    fn only_entries_marked_reused_are_given_and_each_once() {
        let run = vec![entry("a/1", b"x"), entry("a/2", b"y"), entry("a/3", b"z")];
        let mut previous = PreviousEntries::from_runs(vec![run]);
        assert_eq!(previous.len(), 3);
        assert!(previous.get_reused("a/1").is_none());
        assert!(previous.reused_in_order("").take("a/1").is_none());
        assert!(!previous.reuse_if("a/9", None, |_| true));
        assert!(!previous.reuse_if("a/2", None, |e| e.size == 99));
        assert!(previous.reuse_if("a/1", None, |e| e.size == 1));
        assert!(previous.reuse_if("a/3", None, |_| true));
        assert_eq!(previous.get_reused("a/1").unwrap().blob, BlobId::of(b"x"));
        assert!(previous.get_reused("a/2").is_none());
        assert_eq!(previous.get("a/2").unwrap().blob, BlobId::of(b"y"));
        let mut cursor = previous.reused_in_order("");
        assert!(cursor.take("a/2").is_none());
        assert_eq!(cursor.take("a/3").unwrap(), (entry("a/3", b"z"), 2));
        assert!(previous.reused_in_order("").take("a/3").is_none());
        assert!(previous.get("a/3").is_none(), "a taken entry is gone");
        assert_eq!(
            previous.get("a/2").unwrap().size,
            1,
            "an entry not reused stays"
        );
    }

    #[test]
    fn a_cursor_takes_reused_entries_in_path_order() {
        let run: Vec<Entry> = ["a/1", "a/2", "b/1", "b/2", "c"]
            .iter()
            .map(|p| entry(p, p.as_bytes()))
            .collect();
        let mut previous = PreviousEntries::from_runs(vec![run]);
        assert!(previous.as_loaded());
        assert!(!previous.all_reused_under("b/"));
        for path in ["a/2", "b/1", "b/2"] {
            assert!(previous.reuse_if(path, None, |_| true));
        }
        assert!(previous.all_reused_under("b/"));
        assert!(!previous.all_reused_under("a/"), "a/1 is not reused");
        assert!(previous.all_reused_under("x/"), "nothing there");
        let mut cursor = previous.reused_in_order("");
        // Paths asked in order, some absent from the previous entries, some not reused.
        let asked = ["a/1", "a/2", "a/3", "b/1", "b/2", "c", "d"];
        let taken: Vec<Option<String>> = asked
            .iter()
            .map(|p| cursor.take(p).map(|(e, at)| format!("{}@{at}", e.path)))
            .collect();
        let expected = [
            None,
            Some("a/2@1"),
            None,
            Some("b/1@2"),
            Some("b/2@3"),
            None,
            None,
        ];
        assert_eq!(taken, expected.map(|p| p.map(String::from)));
        assert!(previous.get_reused("b/1").is_none(), "given once");
        assert_eq!(previous.get("c").unwrap().path, "c");
    }

    /// A cursor marks what `reuse_if` marks, for paths asked in order, out of order, twice, or
    /// absent, and starting anywhere.
    #[test]
    fn a_reuse_cursor_marks_what_lookups_mark() {
        let paths = ["a/1", "a/2", "b/1", "b/2", "c", "d/1", "d/2"];
        let run = || -> Vec<Entry> { paths.iter().map(|p| entry(p, p.as_bytes())).collect() };
        let not_b2 = |e: &Entry| e.path != "b/2";
        let orders: [&[&str]; 6] = [
            &["a/1", "a/2", "b/1", "b/2", "c", "d/1", "d/2"],
            &["b/15", "c", "d/2", "e"],
            &["c", "a/2", "b/2", "d/1", "a/1", "d/2"],
            &["d/2", "d/1", "c", "b/2", "b/1", "a/2", "a/1"],
            &["a/2", "a/2", "0", "b/1", "b/1", "zz", "a/1"],
            &[],
        ];
        for asked in orders {
            let (with_lookups, with_cursor) = (
                PreviousEntries::from_runs(vec![run()]),
                PreviousEntries::from_runs(vec![run()]),
            );
            let looked_up: Vec<bool> = asked
                .iter()
                .map(|p| with_lookups.reuse_if(p, None, not_b2))
                .collect();
            let mut cursor = with_cursor.reuse_cursor();
            let walked: Vec<bool> = asked
                .iter()
                .map(|p| cursor.reuse_if(p, None, not_b2))
                .collect();
            assert_eq!(walked, looked_up, "asked {asked:?}");
            for path in paths {
                assert_eq!(
                    with_cursor.get_reused(path).is_some(),
                    with_lookups.get_reused(path).is_some(),
                    "{path} after {asked:?}"
                );
            }
        }
        let previous = PreviousEntries::from_runs(vec![run()]);
        let mut cursor = previous.reuse_cursor();
        assert!(cursor.reuse_if("c", None, |_| true));
        assert!(
            cursor.reuse_if("a/1", None, |_| true),
            "out of order, still found"
        );
        assert!(previous.get_reused("a/1").is_some() && previous.get_reused("c").is_some());
    }

    /// Once one member's entries are taken (their paths emptied), lookups of another prefix, on
    /// either side of it, still find what they would have found before: a catalog under a
    /// cluster id that sorts before the members, and a member cut after one that sorts later.
    #[test]
    fn taking_one_prefix_leaves_the_others_found_as_before() {
        let mut paths = vec!["c/1".to_string(), "c/2".to_string()];
        // The member taken first is the largest: a binary search's first probes land in it.
        for (member, files) in [("m", 200), ("n", 200), ("z", 2000)] {
            paths.extend((0..files).map(|i| format!("{member}/dbs/{i:04}")));
        }
        let run: Vec<Entry> = paths.iter().map(|p| entry(p, p.as_bytes())).collect();
        let mut previous = PreviousEntries::from_runs(vec![run]);
        let take_all = |previous: &mut PreviousEntries, prefix: &str| {
            let under: Vec<&String> = paths.iter().filter(|p| p.starts_with(prefix)).collect();
            for path in &under {
                assert!(previous.reuse_if(path, None, |_| true));
            }
            let mut cursor = previous.reused_in_order(prefix);
            for path in &under {
                assert!(cursor.take(path).is_some(), "{path}");
            }
        };
        take_all(&mut previous, "z/");
        for path in paths
            .iter()
            .filter(|p| p.starts_with("n/") && !p.ends_with("0007"))
        {
            assert!(previous.reuse_if(path, None, |_| true));
        }
        assert!(!previous.all_reused_under("n/dbs/"), "n/dbs/0007 is not");
        assert!(previous.reuse_if("n/dbs/0007", None, |_| true));
        assert!(previous.all_reused_under("n/dbs/"));
        take_all(&mut previous, "m/");
        take_all(&mut previous, "n/");
        assert!(
            !previous.all_reused_under("m/"),
            "taken: no longer reusable"
        );
        let mut cursor = previous.reuse_cursor();
        assert!(
            cursor.reuse_if("c/1", None, |_| true),
            "the first path asked"
        );
        assert!(cursor.reuse_if("c/2", None, |_| true));
        assert!(!cursor.reuse_if("m/dbs/0001", None, |_| true), "taken");
        assert!(!previous
            .reuse_cursor()
            .reuse_if("z/dbs/0001", None, |_| true));
        let mut cursor = previous.reused_in_order("c/");
        assert_eq!(cursor.take("c/1").unwrap().1, 0);
        assert_eq!(cursor.take("c/2").unwrap().1, 1);
    }

    #[test]
    fn later_runs_win_and_any_order_is_sorted() {
        let backup = vec![entry("a/1", b"old"), entry("a/2", b"y")];
        let partial = vec![entry("a/3", b"new"), entry("a/1", b"newer")];
        let previous = PreviousEntries::from_runs(vec![backup, partial]);
        assert!(
            !previous.as_loaded(),
            "two runs: positions are no manifest's"
        );
        let paths: Vec<&str> = previous.values().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a/1", "a/2", "a/3"]);
        assert_eq!(previous.get("a/1").unwrap().blob, BlobId::of(b"newer"));
        let unordered = vec![entry("b", b"1"), entry("a", b"2"), entry("b", b"3")];
        let previous = PreviousEntries::from_runs(vec![unordered]);
        assert!(!previous.as_loaded(), "sorted anew");
        assert_eq!(previous.len(), 2);
        assert_eq!(previous.get("b").unwrap().blob, BlobId::of(b"3"));
        assert!(PreviousEntries::from_runs(Vec::new()).is_empty());
    }

    #[test]
    fn what_is_made_beside_the_positions_sees_the_entries_in_path_order() {
        let paths =
            |entries: &[Entry]| -> Vec<String> { entries.iter().map(|e| e.path.clone()).collect() };
        let ordered = vec![entry("a", b"1"), entry("b", b"2")];
        let (previous, seen) = PreviousEntries::from_runs_beside(untimed(vec![ordered]), paths);
        assert!(previous.as_loaded());
        assert_eq!(seen, ["a", "b"]);
        let unordered = vec![entry("b", b"1"), entry("a", b"2"), entry("b", b"3")];
        let (previous, seen) = PreviousEntries::from_runs_beside(untimed(vec![unordered]), paths);
        assert!(!previous.as_loaded());
        assert_eq!(seen, ["a", "b"], "made again from the sorted entries");
        let runs = vec![vec![entry("c", b"1")], vec![entry("a", b"2")]];
        let (_, seen) = PreviousEntries::from_runs_beside(untimed(runs), paths);
        assert_eq!(seen, ["a", "c"]);
    }
}
