//! How cost grows with the message size (issue 4, target 8), measured by
//! the `growth` bin and reported by `report` (from `growth.json`):
//!
//! 1. **Zero-copy round trip** through shmring's SPSC ring (see
//!    [`crate::zero_copy`]) between two processes at [`SIZES`], touching
//!    only the sequence word (the transport's own cost, which should stay
//!    flat within ±20%) and touching every byte on both sides.
//! 2. **The copying path** (`shmring-spsc` `try_push`/`try_pop` of a
//!    `&[u8]`, through `shmring_measure`): a one-way stream's GB/s and a
//!    round trip at the same sizes, beside a single-process `memcpy` of the
//!    same size, both with the source and destination hot in cache and
//!    walking a working set as large as the ring.
//! 3. **1,000 queues** ([`crate::queues`]): create and open time per queue,
//!    and memory per queue.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin growth -- --json benches/results/growth.json
//! cargo run --release -p shmring-benches --bin report -- benches/results/results.json
//! ```

use std::hint::black_box;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shmring_measure::{custom, Latency, Mode, Params};

use crate::machine::Machine;
use crate::queues::QueueFigures;
use crate::zero_copy::{Touch, ZeroCopy};
use crate::Record;

/// The message sizes: 64 B to 4 MiB.
pub const SIZES: [usize; 5] = [64, 1 << 10, 64 << 10, 1 << 20, 4 << 20];

/// Record kind of a zero-copy round trip.
pub const ZERO_COPY: &str = "zero_copy_round_trip";
/// Mechanism name of the zero-copy path.
pub const ZERO_COPY_MECHANISM: &str = "shmring-spsc reserve/commit";
/// Variant: only the sequence word is written and read.
pub const HEADER_ONLY: &str = "header word only";
/// Variant: every byte is written and read.
pub const EVERY_BYTE: &str = "every byte";
/// Record kind of the single-process copy.
pub const MEMCPY: &str = "memcpy";
/// Mechanism name of the single-process copy.
pub const MEMCPY_MECHANISM: &str = "memcpy (1 process)";
/// Variant: source and destination of the message's size, hot in cache.
pub const HOT: &str = "hot";
/// Variant: source and destination walk a working set as large as the ring.
pub const RING_SIZED: &str = "ring-sized working set";
/// The copying path's mechanism (as `shmring_measure` names it).
pub const COPYING_MECHANISM: &str = "shmring-spsc";

/// The `growth` bin's results file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Growth {
    /// Where and when.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// Repetitions of each size's measurements (interleaved).
    pub repetitions: u32,
    /// Round trips recorded per size (zero-copy and copying alike).
    pub round_trips: Vec<(usize, u64)>,
    /// Messages streamed per size.
    pub messages: Vec<(usize, u64)>,
    /// Zero-copy and copying round trips, streams, and memcpy figures.
    pub records: Vec<Record>,
    /// The many-queues figures, one entry per queue shape.
    pub queues: Vec<QueueFigures>,
    /// Free-form notes.
    pub notes: Vec<String>,
    /// Measurements that failed.
    pub errors: Vec<String>,
}

/// Recorded round trips at `size` (a twentieth with `quick`).
pub fn round_trips(size: usize, quick: bool) -> u64 {
    let n = match size {
        0..=4096 => 100_000,
        4097..=65_536 => 20_000,
        65_537..=1_048_576 => 1_000,
        _ => 500,
    };
    if quick {
        (n / 20).max(50)
    } else {
        n
    }
}

/// Streamed messages at `size`: about 1 GiB, 200 to 2,000,000 of them
/// (a twentieth with `quick`).
pub fn messages(size: usize, quick: bool) -> u64 {
    let n = ((1u64 << 30) / size.max(1) as u64).clamp(200, 2_000_000);
    if quick {
        (n / 20).max(20)
    } else {
        n
    }
}

/// Zero-copy round trips between two processes (polling), through
/// `shmring_measure`'s driver (a custom link, see [`crate::zero_copy`]).
///
/// # Errors
///
/// The rings or the peer failed.
pub fn zero_copy_round_trip(
    size: usize,
    touch: Touch,
    count: u64,
    pin: bool,
) -> Result<Latency, String> {
    let p = Params {
        payload: size,
        round_trips: count,
        mode: Mode::Polling,
        pin,
        ..Params::default()
    };
    custom::round_trip(touch.link_name(), &p, ZeroCopy::parent).map_err(|e| e.to_string())
}

/// The copying path's round trip and stream at `size` (polling), through
/// `shmring_measure`.
pub fn copying_params(size: usize, quick: bool, pin: bool) -> Params {
    Params {
        payload: size,
        messages: messages(size, quick),
        round_trips: round_trips(size, quick),
        mode: Mode::Polling,
        pin,
        busy: 0,
    }
}

/// Single-process copy rate in bytes per second: `size` bytes at a time
/// from one buffer to another, the pair of offsets walking `working_set`
/// bytes (`size` for a hot cache), for about 0.2 s (at least 1 GiB or 64
/// copies would take longer at 5 GB/s).
pub fn memcpy_rate(size: usize, working_set: usize) -> f64 {
    let slots = (working_set / size).max(1);
    let src: Vec<u8> = (0..slots * size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; slots * size];
    let mut copy = |k: usize| {
        let at = (k % slots) * size;
        dst[at..at + size].copy_from_slice(black_box(&src[at..at + size]));
        black_box(&mut dst);
    };
    // Warm up: one pass over the working set.
    (0..slots).for_each(&mut copy);
    let mut copies = 0usize;
    let t0 = Instant::now();
    let seconds = loop {
        for _ in 0..16 {
            copy(copies);
            copies += 1;
        }
        let s = t0.elapsed().as_secs_f64();
        if s >= 0.2 && copies >= 64 {
            break s;
        }
    };
    copies as f64 * size as f64 / seconds
}

/// Formats a size: `64 B`, `1 KiB`, `4 MiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size.is_multiple_of(1 << 10) {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_counts() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(64 << 10), "64 KiB");
        assert_eq!(size_label(4 << 20), "4 MiB");
        assert_eq!(messages(4 << 20, false), 256);
        assert_eq!(messages(64, false), 2_000_000);
        assert!(round_trips(4 << 20, true) >= 50);
    }

    #[test]
    fn memcpy_moves_bytes() {
        assert!(memcpy_rate(1024, 4096) > 0.0);
    }
}
