//! What `report` computes from results: figures, bests over
//! repetitions, and ratios paired by repetition.

use std::fmt::Write;

use crate::{Record, Rep, Results};

/// Which figure of a repetition.
#[derive(Clone, Copy)]
pub enum Field {
    /// Median round trip.
    P50,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Slowest round trip.
    Max,
    /// The most consecutive round trips over 10 µs.
    SlowRun,
    /// Messages per second.
    Msgs,
    /// Bytes per second.
    Bytes,
    /// Nanoseconds per operation.
    NsPerOp,
}

impl Field {
    /// The figure, when this repetition has it.
    pub fn get(self, r: &Rep) -> Option<f64> {
        let int = |v: Option<u64>| v.map(|v| v as f64);
        match self {
            Field::P50 => int(r.p50_ns),
            Field::P99 => int(r.p99_ns),
            Field::P999 => int(r.p999_ns),
            Field::Max => int(r.max_ns),
            Field::SlowRun => int(r.slow_run),
            Field::Msgs => r.msgs_per_s,
            Field::Bytes => r.bytes_per_s,
            Field::NsPerOp => r.ns_per_op,
        }
    }

    /// Whether smaller is better (times) or larger (rates).
    pub fn lower_is_better(self) -> bool {
        !matches!(self, Field::Msgs | Field::Bytes)
    }
}

/// The merged results being reported.
pub struct Data {
    /// Every record, note and error.
    pub results: Results,
    /// The `growth` bin's results, when there are any.
    pub growth: Option<crate::growth::Growth>,
}

impl Data {
    /// The record described, if measured.
    pub fn find(
        &self,
        kind: &str,
        mech: &str,
        mode: &str,
        variant: &str,
        payload: usize,
    ) -> Option<&Record> {
        self.results
            .records
            .iter()
            .find(|r| r.is(kind, mech, mode, variant, payload))
    }

    /// Whether any iceoryx2 figure was measured.
    pub fn has_iceoryx2(&self) -> bool {
        self.results.records.iter().any(|r| r.mechanism == ICEORYX2)
    }
}

/// iceoryx2's mechanism name in the results.
pub const ICEORYX2: &str = "iceoryx2";

/// What the report says when iceoryx2 was not measured.
pub const ICEORYX2_ABSENT: &str = "iceoryx2: not measured (build with --features iceoryx2)";

/// The best repetition's value.
pub fn best(r: &Record, f: Field) -> Option<f64> {
    r.range(|rep| f.get(rep))
        .map(|(lo, hi)| if f.lower_is_better() { lo } else { hi })
}

/// `a ÷ b`, pairwise per repetition when both have as many, else best ÷
/// best: (central, min, max), central being the ratio of the bests.
pub fn ratio(a: &Record, b: &Record, f: Field) -> Option<(f64, f64, f64)> {
    let central = best(a, f)? / best(b, f)?;
    if a.reps.len() != b.reps.len() {
        return Some((central, central, central));
    }
    let paired: Vec<f64> = a
        .reps
        .iter()
        .zip(&b.reps)
        .filter_map(|(x, y)| Some(f.get(x)? / f.get(y)?))
        .collect();
    let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((central, lo.min(central), hi.max(central)))
}

/// `1.23× (1.10–1.40)`.
pub fn fmt_ratio((c, lo, hi): (f64, f64, f64)) -> String {
    let p = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    if (hi - lo) / c.abs().max(1e-12) < 0.005 {
        format!("{}×", p(c))
    } else {
        format!("{}× ({}–{})", p(c), p(lo), p(hi))
    }
}

/// `v` with an SI prefix.
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Nanoseconds, in ns, µs or ms.
pub fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// The min–max of `f` over repetitions, formatted by `show`.
pub fn range(r: &Record, f: Field, show: fn(f64) -> String) -> String {
    match r.range(|rep| f.get(rep)) {
        Some((lo, hi)) if (hi - lo) / hi.abs().max(1e-12) < 0.005 => show(lo),
        Some((lo, hi)) => format!("{}–{}", show(lo), show(hi)),
        None => "—".into(),
    }
}

/// `mechanism (mode) [variant]`.
pub fn name(r: &Record) -> String {
    let mut s = format!("{} ({})", r.mechanism, r.mode);
    if !r.variant.is_empty() {
        let _ = write!(s, " [{}]", r.variant);
    }
    s
}
