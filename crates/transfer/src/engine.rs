//! Bounded parallelism: run one async job per item with at most N in flight.

use futures::stream::{self, StreamExt};
use std::future::Future;

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
}
