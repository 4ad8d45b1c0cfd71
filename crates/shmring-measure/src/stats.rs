//! Percentiles over raw samples (exact: nearest rank, no histogram).

use crate::Latency;

/// The nearest-rank `p`-quantile (`p` in `0.0..=1.0`) of `sorted`, which
/// must be sorted ascending: the smallest sample with at least a fraction
/// `p` of all samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    debug_assert!(
        sorted.windows(2).all(|w| w[0] <= w[1]),
        "samples not sorted"
    );
    let p = p.clamp(0.0, 1.0);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorts `samples` (nanoseconds) and summarises them.
pub fn latency_from_samples(mut samples: Vec<u64>) -> Latency {
    samples.sort_unstable();
    Latency {
        p50_ns: percentile(&samples, 0.50),
        p99_ns: percentile(&samples, 0.99),
        p999_ns: percentile(&samples, 0.999),
        max_ns: samples.last().copied().unwrap_or(0),
        samples: samples.len() as u64,
        min_ns: samples.first().copied().unwrap_or(0),
    }
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
    fn summary_sorts_and_keeps_extremes() {
        let l = latency_from_samples(vec![9, 1, 5, 3, 7, 2, 8, 4, 6, 10]);
        assert_eq!(
            (l.min_ns, l.p50_ns, l.p99_ns, l.max_ns, l.samples),
            (1, 5, 10, 10, 10)
        );
        assert_eq!(latency_from_samples(Vec::new()), Latency::default());
    }
}
