//! Bounded parallelism: run one async job per item with at most N in flight, and one bound
//! shared by several streams of jobs.

use futures::stream::{self, StreamExt};
use std::future::Future;
use std::sync::Arc;

/// Run `job` for every item with at most `concurrency` jobs in flight; results come back in the
/// order of `items`. Every job runs to completion (a failure does not cancel the others), so the
/// caller sees every outcome.
pub async fn for_each_bounded<T, R, F, Fut>(items: Vec<T>, concurrency: usize, job: F) -> Vec<R>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R>,
{
    stream::iter(items)
        .map(job)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// One bound on the jobs in flight of a run whose jobs come from several streams (objects stored
/// alone and those read for packs, say): each stream keeps its own order and buffering, and a
/// job waits here for a turn, so `--concurrency` bounds the run, not each stream apart. A job
/// holds its turn while it runs — also while its stream is not polled, so bound only one stage
/// of a pipeline: a stage whose turns wait on a later stage that needs turns too can deadlock.
#[derive(Clone, Debug)]
pub struct InFlight(Arc<tokio::sync::Semaphore>);

impl InFlight {
    /// At most `limit` jobs at once (at least one).
    pub fn new(limit: usize) -> Self {
        InFlight(Arc::new(tokio::sync::Semaphore::new(limit.max(1))))
    }

    /// Run `job` once a turn is free.
    pub async fn run<F: Future>(&self, job: F) -> F::Output {
        // The semaphore is never closed, so acquiring cannot fail; were it closed, the job
        // would run unbounded rather than not at all.
        let _turn = self.0.acquire().await.ok();
        job.await
    }
}

/// Turns of the copies that stream in parts: each keeps up to `part_concurrency` parts in
/// flight, so a `part_concurrency`-th of `concurrency` of them stream at once. Their parts then
/// stay within `concurrency` too, and their buffers within `concurrency` × part size (without
/// it, `concurrency` large objects at once kept four parts of 8 MiB each in flight). Smaller
/// copies, one request each, pass without a turn.
#[derive(Clone, Debug)]
pub struct StreamTurns {
    turns: InFlight,
    threshold: u64,
}

impl StreamTurns {
    /// Turns for a run of `concurrency` copies made with `copy`.
    pub fn new(concurrency: usize, copy: &crate::CopyOptions) -> Self {
        StreamTurns {
            turns: InFlight::new(concurrency / copy.part_concurrency.max(1)),
            threshold: copy.small_object_threshold,
        }
    }

    /// Run the copy `job` of an object of `size` bytes, after a turn if it streams in parts.
    /// Hold no other turn that these turns' holders wait on (see [`InFlight`]).
    pub async fn run<F: Future>(&self, size: u64, job: F) -> F::Output {
        if size > self.threshold {
            self.turns.run(job).await
        } else {
            job.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn keeps_order_and_bounds_concurrency() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let out = for_each_bounded((0..40u64).collect(), 3, |i| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(40 - i)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..40u64).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    /// Two streams, each buffering 4 jobs, sharing a bound of 3: never more than 3 run.
    #[tokio::test]
    async fn a_shared_bound_holds_across_streams() {
        let bound = InFlight::new(3);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let stream_of = |base: u64| {
            let (bound, in_flight, peak) = (bound.clone(), in_flight.clone(), peak.clone());
            for_each_bounded((0..12u64).collect(), 4, move |i| {
                let (bound, in_flight, peak) = (bound.clone(), in_flight.clone(), peak.clone());
                async move {
                    bound
                        .run(async {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(5 + i)).await;
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await;
                    base + i
                }
            })
        };
        let (a, b) = futures::join!(stream_of(0), stream_of(100));
        assert_eq!(a, (0..12).collect::<Vec<_>>());
        assert_eq!(b, (100..112).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
