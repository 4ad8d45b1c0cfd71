//! Blocking round-trip tails of the wait policies, interleaved, beside the
//! floors: the adaptive default against fixed spins, the futex ping-pong
//! with and without a 5 µs spin and the polling spin ring.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin tailprobe -- [ROUND_TRIPS [PASSES [CASES [BUSY [nopin]]]]]
//! ```
//!
//! CASES is a comma-separated list (default `d,5,0,f`): `d` Pipe with the
//! default (adaptive) policy, `5` Pipe with a fixed 5 µs spin, `0` Pipe
//! sleeping at once, `s` SPSC ring default, `q` MPMC queue default, `f`
//! futex ping-pong, `fs` futex with a 5 µs spin, `sr` spin ring
//! (polling), `sq` the spin ring polling each slot's sequence word, `pp` Pipe (polling). BUSY starts that many busy-loop
//! processes per measurement (`4 nopin` on a 2-CPU host: six processes on
//! two CPUs). Every pass runs every case once, so a slow phase of the
//! machine hits all alike. Set `SHMRING_FULL_FENCES=1` to compare with
//! full fences on every publish.
use shmring_measure::{round_trip_with, Mechanism, Mode, Params, Tuning};

fn main() {
    shmring_measure::run_peer_if_child();
    let a: Vec<String> = std::env::args().collect();
    let n: u64 = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let passes: u32 = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let which = a.get(3).cloned().unwrap_or_else(|| "d,5,0,f".into());
    let busy: u32 = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let pin = a.get(5).is_none_or(|s| s != "nopin");
    let p = Params {
        payload: 8,
        round_trips: n,
        mode: Mode::Blocking,
        busy,
        pin,
        ..Params::default()
    };
    for pass in 0..passes {
        for c in which.split(',') {
            let (name, m, spin) = match c {
                "d" => ("pipe default", Mechanism::ShmringPipe, None),
                "5" => ("pipe fixed 5us", Mechanism::ShmringPipe, Some(5_000)),
                "0" => ("pipe fixed 0", Mechanism::ShmringPipe, Some(0)),
                "s" => ("spsc default", Mechanism::ShmringSpsc, None),
                "f" => ("futex (no spin)", Mechanism::FutexPingPong, None),
                "fs" => ("futex-spin", Mechanism::FutexSpin, None),
                "q" => ("queue default", Mechanism::ShmringQueue, None),
                "sr" => ("spin-ring (poll)", Mechanism::SpinRing, None),
                "sq" => ("spin-ring-seq", Mechanism::SpinRingSeq, None),
                "pp" => ("pipe (poll)", Mechanism::ShmringPipe, None),
                _ => panic!("case {c}"),
            };
            let t = Tuning {
                spin_ns: spin,
                ..Tuning::default()
            };
            let mut p = p.clone();
            if c == "sr" || c == "sq" || c == "pp" {
                p.mode = Mode::Polling;
            }
            let start = std::time::Instant::now();
            match round_trip_with(m, &p, &t) {
                Ok(l) => println!(
                    "pass {pass} {name:<16} p50 {:>7} p99 {:>7} p99.9 {:>7} max {:>9} slow {:>4} ({:>5}) ({:.1}s)",
                    l.p50_ns, l.p99_ns, l.p999_ns, l.max_ns, l.slow_run, l.slow_count, start.elapsed().as_secs_f64()
                ),
                Err(e) => println!("pass {pass} {name}: {e}"),
            }
        }
    }
}
