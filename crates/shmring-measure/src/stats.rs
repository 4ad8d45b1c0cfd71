//! Exact percentiles over a sorted set (the reference the histogram is
//! tested against, and small sets such as create times), and the summary
//! of a list of samples.

use crate::histogram::{rank, Recorder};
use crate::Latency;

/// The nearest-rank `p`-quantile (`p` in `0.0..=1.0`) of `sorted`, which
/// must be sorted ascending: the smallest sample with at least a fraction
/// `p` of all samples at or below it. 0 for no samples. Exact, for sets
/// small enough to keep; round trips go through a
/// [`Histogram`](crate::Histogram).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    debug_assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "samples not sorted"
    );
    sorted[rank(p, sorted.len() as u64) as usize - 1]
}

/// Summarises `samples` (nanoseconds, in the order they were measured:
/// the slow runs depend on it) as a [`Recorder`] would have.
pub fn latency_from_samples(samples: impl IntoIterator<Item = u64>) -> Latency {
    let mut r = Recorder::new();
    samples.into_iter().for_each(|ns| r.record(ns));
    r.latency()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_one_to_a_thousand() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&v, 1.0), 1000);
        assert_eq!(percentile(&v, 0.0), 1);
    }

    #[test]
    fn small_and_empty_sets() {
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[1, 2], 0.5), 1);
        assert_eq!(percentile(&[1, 2], 0.51), 2);
    }

    #[test]
    fn summary_keeps_extremes_and_slow_runs() {
        let l = latency_from_samples(vec![9, 1, 5, 3, 7, 2, 8, 4, 6, 10]);
        assert_eq!(
            (l.min_ns, l.p50_ns, l.p99_ns, l.max_ns, l.samples),
            (1, 5, 10, 10, 10)
        );
        assert_eq!((l.slow_run, l.slow_count), (0, 0));
        let slow = latency_from_samples([20_000, 300, 20_001, 20_002, 300]);
        assert_eq!((slow.slow_run, slow.slow_count), (2, 3));
        assert_eq!(latency_from_samples(Vec::new()), Latency::default());
    }
}
