//! How cost grows with the message size, and what many queues cost
//! (issue 4, target 8). See `shmring_benches::growth` for what is measured.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin growth -- --json benches/results/growth.json
//! cargo run --release -p shmring-benches --bin report -- benches/results/results.json
//! ```
//!
//! `report` picks up `growth.json` beside `results.json` (or `--growth
//! FILE`). Options: `--quick` (counts / 20, one repetition, 100 queues: a
//! few seconds), `--reps N` (default 3), `--queues N` (default 1,000),
//! `--json FILE` (default: stdout), `--no-pin`. With the defaults, 20 to
//! 35 s on a 2-CPU VM (over a minute while other work loads it).

use std::collections::HashMap;

use shmring_benches::growth::{self, Growth, SIZES};
use shmring_benches::machine::Machine;
use shmring_benches::zero_copy::Touch;
use shmring_benches::{queues, Record, Rep};
use shmring_measure::Mode;

struct Args {
    quick: bool,
    reps: u32,
    queues: usize,
    json: Option<String>,
    pin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        reps: 3,
        queues: 1000,
        json: None,
        pin: true,
    };
    let (mut reps, mut queues) = (None, None);
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, what: &str| -> Result<u64, String> {
        let v = v.ok_or(format!("{what} needs a value"))?;
        v.parse().map_err(|_| format!("{what}: not a number: {v}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--reps" => reps = Some(number(it.next(), "--reps")? as u32),
            "--queues" => queues = Some(number(it.next(), "--queues")? as usize),
            "--json" => a.json = Some(it.next().ok_or("--json needs a file")?),
            "--no-pin" => a.pin = false,
            "-h" | "--help" => {
                println!(
                    "usage: growth [--quick] [--reps N] [--queues N] [--json FILE] [--no-pin]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    a.reps = reps.unwrap_or(if a.quick { 1 } else { 3 }).max(1);
    a.queues = queues.unwrap_or(if a.quick { 100 } else { 1000 }).max(1);
    Ok(a)
}

fn key(kind: &str, mechanism: &str, variant: &str, size: usize) -> Record {
    Record {
        kind: kind.into(),
        mechanism: mechanism.into(),
        mode: Mode::Polling.to_string(),
        variant: variant.into(),
        payload: size,
        reps: Vec::new(),
    }
}

/// One figure, or why it failed.
type Figure = Result<(Record, Rep), String>;

/// One repetition at one size: every figure, in a fixed order, handed to
/// `out` as it is measured.
fn one_size(size: usize, a: &Args, out: &mut dyn FnMut(Figure)) {
    let rts = growth::round_trips(size, a.quick);
    for (touch, variant) in [
        (Touch::Header, growth::HEADER_ONLY),
        (Touch::All, growth::EVERY_BYTE),
    ] {
        out(
            growth::zero_copy_round_trip(size, touch, rts, a.pin).map(|l| {
                (
                    key(
                        growth::ZERO_COPY,
                        growth::ZERO_COPY_MECHANISM,
                        variant,
                        size,
                    ),
                    Rep::latency(&l),
                )
            }),
        );
    }
    let p = growth::copying_params(size, a.quick, a.pin);
    let m = shmring_measure::Mechanism::ShmringSpsc;
    out(shmring_measure::round_trip(m, &p)
        .map(|l| {
            (
                key("round_trip", growth::COPYING_MECHANISM, "", size),
                Rep::latency(&l),
            )
        })
        .map_err(|e| e.to_string()));
    out(shmring_measure::stream(m, &p)
        .map(|r| {
            (
                key("stream", growth::COPYING_MECHANISM, "", size),
                Rep::rate(&r),
            )
        })
        .map_err(|e| e.to_string()));
    let ring = shmring_benches::zero_copy::ring_config(size).capacity as usize;
    for (variant, working_set) in [(growth::HOT, size), (growth::RING_SIZED, ring)] {
        let rate = growth::memcpy_rate(size, working_set);
        let rep = Rep {
            bytes_per_s: Some(rate),
            msgs_per_s: Some(rate / size as f64),
            ..Rep::default()
        };
        out(Ok((
            key(growth::MEMCPY, growth::MEMCPY_MECHANISM, variant, size),
            rep,
        )));
    }
}

fn summary(r: &Record, rep: &Rep) -> String {
    match (rep.p50_ns, rep.bytes_per_s) {
        (Some(p50), _) => format!("p50 {p50} ns, p99 {} ns", rep.p99_ns.unwrap_or(0)),
        (_, Some(b)) => format!("{:.2} GB/s", b / 1e9),
        _ => format!("{r:?}"),
    }
}

fn main() {
    // A measurement peer (this binary re-executed) does its job and exits.
    shmring_benches::peer::run_peer_if_child();
    shmring::process::run_child(&[&queues::OPENER]);
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("growth: {e}");
            std::process::exit(2);
        }
    };
    let mut g = Growth {
        machine: Machine::this(),
        command: std::iter::once("growth".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        repetitions: a.reps,
        round_trips: SIZES
            .iter()
            .map(|&s| (s, growth::round_trips(s, a.quick)))
            .collect(),
        messages: SIZES
            .iter()
            .map(|&s| (s, growth::messages(s, a.quick)))
            .collect(),
        ..Growth::default()
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    for rep in 0..a.reps {
        for size in SIZES {
            one_size(size, &a, &mut |figure| match figure {
                Ok((key, figures)) => {
                    let name = format!(
                        "{} {} [{}] {}",
                        key.kind,
                        key.mechanism,
                        key.variant,
                        growth::size_label(size)
                    );
                    eprintln!(
                        "[{}/{}] {name}: {}",
                        rep + 1,
                        a.reps,
                        summary(&key, &figures)
                    );
                    let i = *index.entry(name).or_insert_with(|| {
                        g.records.push(key);
                        g.records.len() - 1
                    });
                    g.records[i].reps.push(figures);
                }
                Err(e) => {
                    eprintln!("[{}/{}] {size} B: error: {e}", rep + 1, a.reps);
                    g.errors.push(format!("{}: {e}", growth::size_label(size)));
                }
            });
        }
    }
    for (shape, options) in [queues::default_shape(), queues::small_shape()] {
        let per_queue = options.producers * options.ring_bytes + (64 << 10);
        let room = queues::shm_room();
        let mut n = a.queues;
        if (n as u64) * per_queue * 3 / 2 > room {
            n = (room * 2 / 3 / per_queue) as usize;
            g.notes.push(format!(
                "{shape}: only {n} queues (not {}): /dev/shm or memory has {} MiB available",
                a.queues,
                room >> 20
            ));
        }
        match queues::measure(&shape, &options, n.max(1)) {
            Ok(f) => {
                eprintln!(
                    "queues {shape}: create mean {:.1} µs (p99 {:.1}), open mean {:.1} µs (p99 {:.1}), {} KiB allocated per queue",
                    f.create_mean_ns / 1e3,
                    f.create_p99_ns as f64 / 1e3,
                    f.open_mean_ns / 1e3,
                    f.open_p99_ns as f64 / 1e3,
                    f.allocated_bytes >> 10
                );
                g.queues.push(f);
            }
            Err(e) => {
                eprintln!("queues {shape}: error: {e}");
                g.errors.push(format!("queues {shape}: {e}"));
            }
        }
    }
    let json = serde_json::to_string_pretty(&g).expect("results serialise");
    match &a.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, json + "\n") {
                eprintln!("growth: writing {path}: {e}");
                std::process::exit(1);
            }
            eprintln!("growth: wrote {path}");
        }
        None => println!("{json}"),
    }
}
