//! Round-trip summaries without keeping the samples: a log-linear
//! histogram (HDR style: fixed memory, O(1) record, ~0.4% quantiles) and
//! the runs of slow round trips.
//!
//! # Buckets
//!
//! Values below 256 have a bucket each (exact). Above, every power of two
//! `[2^k, 2^(k+1))` is cut into 128 buckets of equal width `2^(k-7)`, so a
//! bucket is at most 1/128 of its lower bound wide; a quantile is reported
//! as the middle of its bucket, at most half a width (1/256 of the value)
//! from the exact sample. 7,424 buckets cover every `u64`: 58 KiB, taken
//! (and touched, so that no page fault lands in a measurement) once.

use std::fmt;

use crate::Latency;

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 7;
/// Buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Buckets in all: 256 exact ones, then 128 for each power of two from
/// 2^8 to 2^63.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// How far a [`Histogram::quantile`] may be from the exact nearest-rank
/// quantile of the recorded values, relative to that value: 1/256 (about
/// 0.4%). Values below 256 are exact, and so are the minimum and maximum.
pub const RELATIVE_PRECISION: f64 = 1.0 / 256.0;

/// A round trip slower than this (10 µs, in ns) is *slow*: [`SlowRuns`]
/// counts them and their longest run.
pub const SLOW_NS: u64 = 10_000;

/// The bucket of `v`.
#[inline]
fn bucket(v: u64) -> usize {
    // The position of the highest set bit (0 for 0 and 1).
    let msb = 63 - (v | 1).leading_zeros();
    // 0 below 256, where every value has a bucket of its own.
    let shift = msb.saturating_sub(SUB_BITS);
    // `v >> shift` is in [128, 256) from 256 on (in [0, 256) below), so
    // the buckets of consecutive powers of two follow each other.
    (shift as usize) * SUB + (v >> shift) as usize
}

/// The lowest value of bucket `i` and its width.
fn bounds(i: usize) -> (u64, u64) {
    if i < 2 * SUB {
        return (i as u64, 1);
    }
    let shift = (i / SUB - 1) as u32;
    let sub = (i - shift as usize * SUB) as u64;
    (sub << shift, 1 << shift)
}

/// The 1-based nearest rank of the `p`-quantile among `n` values: the
/// smallest rank with at least a fraction `p` of the values at or below
/// it (`p` clamped to `0.0..=1.0`; rank 1 for `p = 0`).
pub(crate) fn rank(p: f64, n: u64) -> u64 {
    let p = p.clamp(0.0, 1.0);
    ((p * n as f64).ceil() as u64).clamp(1, n.max(1))
}

/// A log-linear histogram of `u64` values (nanoseconds here): fixed memory,
/// O(1) [`record`](Self::record), quantiles within [`RELATIVE_PRECISION`],
/// exact count, minimum and maximum.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram, its memory already touched.
    pub fn new() -> Histogram {
        let mut counts = vec![0u64; BUCKETS].into_boxed_slice();
        // A zeroed allocation may be fresh pages that fault on first write;
        // write every one now, not during a measurement. (`black_box`: the
        // compiler must not drop stores of the zeros it knows are there.)
        for c in counts.iter_mut().step_by(512) {
            *c = std::hint::black_box(0);
        }
        Histogram {
            counts,
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Adds one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest value recorded (exact); 0 when empty.
    pub fn min(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.min
        }
    }

    /// The largest value recorded (exact); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The nearest-rank `p`-quantile (`p` in `0.0..=1.0`: the smallest
    /// value with at least a fraction `p` of all values at or below it),
    /// within [`RELATIVE_PRECISION`] of the exact one: the middle of its
    /// bucket, kept between the minimum and the maximum; exact for the
    /// first and last rank. 0 when empty.
    pub fn quantile(&self, p: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let rank = rank(p, self.count);
        if rank == 1 {
            return self.min;
        }
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                // `low + width / 2` cannot overflow: the last bucket starts
                // at 255 << 56 and is 2^56 wide.
                return (low + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Counts values above a threshold and the longest run of them in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowRuns {
    threshold: u64,
    current: u64,
    longest: u64,
    count: u64,
}

impl Default for SlowRuns {
    /// Slow means above [`SLOW_NS`].
    fn default() -> Self {
        SlowRuns::new(SLOW_NS)
    }
}

impl SlowRuns {
    /// Slow means strictly above `threshold`.
    pub fn new(threshold: u64) -> SlowRuns {
        SlowRuns {
            threshold,
            current: 0,
            longest: 0,
            count: 0,
        }
    }

    /// Adds the next value in order.
    #[inline]
    pub fn record(&mut self, v: u64) {
        if v > self.threshold {
            self.current += 1;
            self.count += 1;
            self.longest = self.longest.max(self.current);
        } else {
            self.current = 0;
        }
    }

    /// The longest run of consecutive values above the threshold.
    pub fn longest(&self) -> u64 {
        self.longest
    }

    /// How many values were above the threshold.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Round-trip times as they are measured, in order: a [`Histogram`] and
/// [`SlowRuns`] above [`SLOW_NS`], summarised by [`latency`](Self::latency).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    histogram: Histogram,
    slow: SlowRuns,
}

impl Recorder {
    /// An empty recorder (its memory touched: see [`Histogram::new`]).
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Adds the next round trip, in nanoseconds.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.histogram.record(ns);
        self.slow.record(ns);
    }

    /// The histogram so far.
    pub fn histogram(&self) -> &Histogram {
        &self.histogram
    }

    /// The summary: percentiles, extremes, slow round trips and the
    /// percentile curve.
    pub fn latency(&self) -> Latency {
        let h = &self.histogram;
        Latency {
            p50_ns: h.quantile(0.50),
            p99_ns: h.quantile(0.99),
            p999_ns: h.quantile(0.999),
            max_ns: h.max(),
            samples: h.len(),
            min_ns: h.min(),
            slow_run: self.slow.longest(),
            slow_count: self.slow.count(),
            curve: crate::CURVE_LEVELS.map(|p| h.quantile(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::percentile;

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in (0, 1].
        fn unit(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        }
    }

    const LEVELS: [f64; 16] = [
        0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999,
        0.99999, 1.0,
    ];

    /// Every level of `values`' histogram against the exact nearest rank.
    fn check_against_exact(what: &str, values: &[u64]) {
        let mut h = Histogram::new();
        values.iter().for_each(|&v| h.record(v));
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        assert_eq!(h.len(), values.len() as u64, "{what}");
        assert_eq!(h.min(), sorted[0], "{what}: min");
        assert_eq!(h.max(), *sorted.last().unwrap(), "{what}: max");
        for p in LEVELS {
            let exact = percentile(&sorted, p);
            let got = h.quantile(p);
            // |got - exact| <= exact / 256, in integers (u128: no overflow).
            let off = u128::from(got.abs_diff(exact)) * 256;
            assert!(
                off <= u128::from(exact),
                "{what}: p{p}: {got} against exact {exact}"
            );
            if exact < 256 || p == 0.0 || p == 1.0 {
                assert_eq!(got, exact, "{what}: p{p} should be exact");
            }
        }
    }

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        // Every bucket boundary maps to its bucket, and the value before it
        // to the previous one; widths stay within 1/128 of the lower bound.
        let mut prev_end = 0u64;
        for i in 0..BUCKETS {
            let (low, width) = bounds(i);
            assert_eq!(low, prev_end, "bucket {i} starts where {} ended", i - 1);
            assert_eq!(bucket(low), i);
            assert_eq!(bucket(low + (width - 1)), i);
            if i >= 2 * SUB {
                assert!(width * 128 <= low, "bucket {i}: {width} wide at {low}");
            }
            prev_end = low.wrapping_add(width);
        }
        assert_eq!(prev_end, 0, "the last bucket ends at 2^64");
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket(0), 0);
    }

    #[test]
    fn uniform_values_within_precision() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut values: Vec<u64> = (1..=100_000).collect();
        // Shuffle: the order of recording must not matter.
        for i in (1..values.len()).rev() {
            values.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        check_against_exact("1..=100000", &values);
    }

    #[test]
    fn long_tailed_and_bimodal_values_within_precision() {
        let mut rng = Rng(42);
        // Exponential with a 2 µs mean above a 150 ns floor: the shape of a
        // round trip with a tail.
        let exp: Vec<u64> = (0..200_000)
            .map(|_| 150 + (-rng.unit().ln() * 2_000.0) as u64)
            .collect();
        check_against_exact("exponential", &exp);
        // 99% near 300 ns, 1% near 50 µs (spin ring vs a preempted peer).
        let bimodal: Vec<u64> = (0..100_000)
            .map(|_| {
                let jitter = rng.next() % 40;
                if rng.next().is_multiple_of(100) {
                    50_000 + jitter * 100
                } else {
                    280 + jitter
                }
            })
            .collect();
        check_against_exact("bimodal", &bimodal);
        // Pareto-like: spans many powers of two.
        let heavy: Vec<u64> = (0..50_000)
            .map(|_| (100.0 / rng.unit().powf(0.8)) as u64)
            .collect();
        check_against_exact("heavy tail", &heavy);
    }

    #[test]
    fn empty_one_and_constant() {
        let h = Histogram::new();
        assert!(h.is_empty());
        assert_eq!((h.quantile(0.5), h.min(), h.max(), h.len()), (0, 0, 0, 0));
        let mut one = Histogram::new();
        one.record(12_345);
        for p in LEVELS {
            assert_eq!(one.quantile(p), 12_345, "p{p}");
        }
        // Every sample equal: exact at every level (clamped to min..=max).
        check_against_exact("constant", &[777_777; 1000]);
        check_against_exact("two", &[1, 1_000_000]);
    }

    #[test]
    fn huge_values() {
        let values = [
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            1 << 40,
            3,
            0,
            u64::MAX / 3,
        ];
        check_against_exact("huge", &values);
        let mut h = Histogram::new();
        (0..1000).for_each(|_| h.record(u64::MAX));
        assert_eq!(h.quantile(0.5), u64::MAX);
        let mut rng = Rng(7);
        let near_top: Vec<u64> = (0..10_000).map(|_| rng.next() | (1 << 63)).collect();
        check_against_exact("top half of u64", &near_top);
    }

    #[test]
    fn slow_runs_count_the_longest_streak_above_the_threshold() {
        let mut s = SlowRuns::new(10);
        for v in [1, 11, 12, 5, 10, 20, 30, 40, 9, 11] {
            s.record(v);
        }
        // 10 itself is not slow (strictly above); the streak 20, 30, 40.
        assert_eq!((s.longest(), s.count()), (3, 6));
        let mut none = SlowRuns::default();
        none.record(SLOW_NS);
        assert_eq!((none.longest(), none.count()), (0, 0));
        let mut all = SlowRuns::default();
        (0..5).for_each(|_| all.record(SLOW_NS + 1));
        assert_eq!((all.longest(), all.count()), (5, 5));
    }

    #[test]
    fn recorder_summarises_in_order() {
        let mut r = Recorder::new();
        for v in [200, 20_000, 30_000, 100, 15_000, 250] {
            r.record(v);
        }
        let l = r.latency();
        assert_eq!((l.min_ns, l.max_ns, l.samples), (100, 30_000, 6));
        assert_eq!((l.slow_run, l.slow_count), (2, 3));
        // Below 256: exact.
        assert_eq!(l.p50_ns, 250);
        // 15,000 lies in the bucket [14,976, 15,040): its middle.
        assert_eq!(l.p99_ns, 30_000);
        assert_eq!(r.histogram().quantile(0.6), 15_008);
        assert_eq!(crate::CURVE_LEVELS[0], 0.5);
        assert_eq!(l.curve[0], l.p50_ns);
        assert!(l.curve.windows(2).all(|w| w[0] <= w[1]));
        assert!(l.curve.iter().all(|&v| (l.min_ns..=l.max_ns).contains(&v)));
        assert_eq!(Recorder::new().latency().samples, 0);
    }
}
