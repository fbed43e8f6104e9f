//! Work over many paths split by hash among threads: the references of tens of thousands of
//! snapshot files, judged against the captured objects (`rules`, `cut`). Each check is a
//! hash-map lookup or two, each a cache miss; on one thread, at 500 000 files, judging took a
//! third of a second, a tenth of a no-change incremental.

use std::hash::BuildHasher;

/// Below this many paths per thread, another thread costs more than it saves.
const PATHS_PER_SHARD: usize = 50_000;
/// Threads at most.
const MAX_SHARDS: usize = 8;

/// One of `of` parts of the set of paths, by hash.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shard {
    pub(crate) index: u64,
    pub(crate) of: usize,
}

impl Shard {
    /// Whether `path` is in this part.
    pub(crate) fn holds(self, path: &str) -> bool {
        self.of == 1 || rustc_hash::FxBuildHasher.hash_one(path) % self.of as u64 == self.index
    }
}

/// `work` run on every part of `paths` paths, one thread each (one per core, none for fewer
/// than [`PATHS_PER_SHARD`] paths), its results concatenated in no particular order.
pub(crate) fn in_shards<T: Send>(paths: usize, work: impl Fn(Shard) -> Vec<T> + Sync) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let of = cores.min(paths / PATHS_PER_SHARD).clamp(1, MAX_SHARDS);
    if of == 1 {
        return work(Shard { index: 0, of });
    }
    let work = &work;
    std::thread::scope(|scope| {
        let shards: Vec<_> = (0..of as u64)
            .map(|index| scope.spawn(move || work(Shard { index, of })))
            .collect();
        shards
            .into_iter()
            .flat_map(|shard| match shard.join() {
                Ok(found) => found,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_in_exactly_one_shard() {
        let paths: Vec<String> = (0..1000)
            .map(|i| format!("node0/dbs/1/2/{i}.parquet"))
            .collect();
        for of in [1, 2, 3, 8] {
            for path in &paths {
                let holding = (0..of as u64)
                    .filter(|&index| Shard { index, of }.holds(path))
                    .count();
                assert_eq!(holding, 1, "{path} in {holding} of {of}");
            }
        }
    }

    #[test]
    fn shards_cover_the_work_once() {
        let paths: Vec<String> = (0..200_000).map(|i| format!("p/{i}")).collect();
        let mut found = in_shards(paths.len(), |shard| {
            paths.iter().filter(|p| shard.holds(p)).cloned().collect()
        });
        found.sort();
        let mut expected = paths.clone();
        expected.sort();
        assert_eq!(found, expected);
    }
}
