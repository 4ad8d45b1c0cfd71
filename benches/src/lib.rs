//! shmring's benchmarks. Competitor dependencies (rtrb, crossbeam,
//! criterion, and iceoryx2 behind the off-by-default `iceoryx2` feature)
//! live only in this package.
//!
//! * `cargo bench -p shmring-benches`: criterion, in-process, on real
//!   anonymous segments: `rings` (SPSC and MPMC push/pop, batches, rtrb and
//!   crossbeam `ArrayQueue`), `blocking` (a sleeper woken by a push),
//!   `facades` (`Queue<u64>` against the raw ring; Dict operations).
//! * `xbench`: the cross-process comparison (every
//!   [`shmring_measure::Mechanism`], rtrb and crossbeam between threads,
//!   Python's multiprocessing through `python/mp_bench.py`, and iceoryx2
//!   with `--features iceoryx2`, see the `iox` module), JSON out.
//! * `growth`: issue 4's target 8, how cost grows with the message size
//!   and what 1,000 queues cost ([`growth`], [`queues`]), JSON out.
//! * `report`: the JSON to `results/REPORT.md`, `latency.svg`,
//!   `throughput.svg` and (with `growth.json` beside it) `growth.svg`.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin xbench -- --json benches/results/results.json
//! cargo run --release -p shmring-benches --bin growth -- --json benches/results/growth.json
//! cargo run --release -p shmring-benches --bin report -- benches/results/results.json
//! ```
//!
//! With iceoryx2 (its build runs bindgen: Debian's `clang` and
//! `libclang-dev`; a few minutes):
//!
//! ```text
//! cargo run --release -p shmring-benches --features iceoryx2 --bin xbench -- --json benches/results/results.json
//! ```
//!
//! This library holds what they share: the JSON schema, the machine
//! description, the thread references, the facade-overhead loop, the SVG
//! charts, and the links that `shmring_measure`'s driver runs for
//! mechanisms it does not know ([`zero_copy`], and `iox` with the
//! `iceoryx2` feature; their peer side: [`peer`]).

pub mod analysis;
pub mod facade;
pub mod growth;
pub mod growth_report;
#[cfg(feature = "iceoryx2")]
pub mod iox;
pub mod machine;
pub mod peer;
pub mod queues;
pub mod svg;
pub mod threads;
pub mod zero_copy;

use serde::{Deserialize, Serialize};

/// One results file: what ran, where, and every figure. Every field may
/// be missing (the Python script writes only records, notes and errors).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    /// Where and when.
    pub machine: machine::Machine,
    /// The command line that produced the file.
    pub command: String,
    /// Repetitions of each measurement.
    pub repetitions: u32,
    /// Round trips recorded per payload (after warm-up).
    pub round_trips: Vec<(usize, u64)>,
    /// Messages streamed per payload (after warm-up).
    pub messages: Vec<(usize, u64)>,
    /// Every measured figure.
    pub records: Vec<Record>,
    /// Measurements that failed (not the "not applicable" ones).
    pub errors: Vec<String>,
    /// Free-form notes (system-call counts, skipped parts).
    pub notes: Vec<String>,
}

/// One measurement, repeated.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// `round_trip`, `stream` or `dict`.
    pub kind: String,
    /// `shmring-spsc`, `pipe`, `rtrb (threads)`, `python mp.Queue`, ...
    pub mechanism: String,
    /// `polling` or `blocking`.
    pub mode: String,
    /// A qualifier: `""`, `"spin 0"` (sleep at once), `"batch 32"`.
    pub variant: String,
    /// Bytes per message.
    pub payload: usize,
    /// One entry per repetition.
    pub reps: Vec<Rep>,
}

/// One repetition's figures (round trip: the latency fields; stream and
/// dict: the rate fields).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Rep {
    /// Median round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<u64>,
    /// 99th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<u64>,
    /// 99.9th percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_ns: Option<u64>,
    /// Slowest round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ns: Option<u64>,
    /// The most consecutive round trips slower than
    /// [`shmring_measure::SLOW_NS`] (10 µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_run: Option<u64>,
    /// Round trips slower than [`shmring_measure::SLOW_NS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_count: Option<u64>,
    /// The percentile curve: `(level, ns)` pairs from the median up
    /// ([`shmring_measure::CURVE_LEVELS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<(f64, u64)>,
    /// Messages (or dict operations) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Payload bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    /// Nanoseconds per operation (the facade-overhead figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_per_op: Option<f64>,
}

impl Rep {
    /// A round trip's figures.
    pub fn latency(l: &shmring_measure::Latency) -> Rep {
        Rep {
            p50_ns: Some(l.p50_ns),
            p99_ns: Some(l.p99_ns),
            p999_ns: Some(l.p999_ns),
            max_ns: Some(l.max_ns),
            slow_run: Some(l.slow_run),
            slow_count: Some(l.slow_count),
            curve: shmring_measure::CURVE_LEVELS
                .into_iter()
                .zip(l.curve)
                .collect(),
            ..Rep::default()
        }
    }

    /// A stream's figures.
    pub fn rate(t: &shmring_measure::Throughput) -> Rep {
        Rep {
            msgs_per_s: Some(t.msgs_per_s),
            bytes_per_s: Some(t.bytes_per_s),
            ..Rep::default()
        }
    }
}

impl Record {
    /// The minimum and maximum over repetitions of one field.
    pub fn range(&self, field: impl Fn(&Rep) -> Option<f64>) -> Option<(f64, f64)> {
        let values: Vec<f64> = self.reps.iter().filter_map(field).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!values.is_empty()).then_some((min, max))
    }

    /// Whether this record is the one described.
    pub fn is(
        &self,
        kind: &str,
        mechanism: &str,
        mode: &str,
        variant: &str,
        payload: usize,
    ) -> bool {
        self.kind == kind
            && self.mechanism == mechanism
            && self.mode == mode
            && self.variant == variant
            && self.payload == payload
    }
}
