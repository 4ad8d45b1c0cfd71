//! One-way stream throughput of shmring's handles beside the spin-ring
//! floor, interleaved: the A/B tool for a change to the per-message path
//! (run it before and after, or under `perf record -g`).
//!
//! ```text
//! cargo run --release -p shmring-benches --bin streamprobe -- [MESSAGES [PASSES [CASES [PAYLOAD [blocking]]]]]
//! ```
//!
//! CASES is a comma-separated list (default `sr,qv,qvi,p`): `sr` spin ring, `sq` the spin ring polling each slot's sequence word,
//! `s` SPSC ring, `q` MPMC byte queue, `qv` `Queue<Vec<u8>>` with `get`,
//! `qvi` the same with `get_into`, `p` Pipe. PAYLOAD defaults to 8 bytes.
//! Polling unless the fifth argument is `blocking`. Every pass runs every
//! case once, so a slow phase of the machine hits all alike.
use shmring_measure::{stream, Mechanism, Mode, Params};

fn main() {
    shmring_measure::run_peer_if_child();
    let a: Vec<String> = std::env::args().collect();
    let messages: u64 = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let passes: u32 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = a.get(3).cloned().unwrap_or_else(|| "sr,qv,qvi,p".into());
    let payload: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    let mode = if a.get(5).is_some_and(|s| s == "blocking") {
        Mode::Blocking
    } else {
        Mode::Polling
    };
    for pass in 0..passes {
        for c in which.split(',') {
            let m = match c {
                "sr" => Mechanism::SpinRing,
                "sq" => Mechanism::SpinRingSeq,
                "s" => Mechanism::ShmringSpsc,
                "q" => Mechanism::ShmringQueue,
                "qv" => Mechanism::ShmringQueueVec,
                "qvi" => Mechanism::ShmringQueueVecInto,
                "p" => Mechanism::ShmringPipe,
                _ => panic!("unknown case {c}"),
            };
            // The spin ring has no blocking form: it always polls.
            let mode = if matches!(m, Mechanism::SpinRing | Mechanism::SpinRingSeq) {
                Mode::Polling
            } else {
                mode
            };
            let p = Params {
                payload,
                messages,
                mode,
                ..Params::default()
            };
            match stream(m, &p) {
                Ok(t) => println!(
                    "pass {pass} {:<24} {:>8.2} M msgs/s {:>8.2} GB/s",
                    m.name(),
                    t.msgs_per_s / 1e6,
                    t.bytes_per_s / 1e9
                ),
                Err(e) => println!("pass {pass} {}: {e}", m.name()),
            }
        }
    }
}
