//! What a named create costs with 1, 1,000 and 10,000 segments present in
//! `/dev/shm`, and what the sweep costs per segment.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin create_latency
//! cargo run --release -p shmring-benches --bin create_latency -- --present 1,1000,10000 --iterations 2000 --json out.json
//! ```
//!
//! For each count, the segments present are made first (`UnlinkPolicy::Never`
//! Lock segments of 8 KiB, every peer detached: what the sweep must look at
//! and keep), then `--iterations` times a fresh segment is created and
//! dropped (its name removed), each step timed: median, p99 and the slowest
//! of create and of create + drop. The automatic sweep runs as in
//! production (at most once a period, on a background thread), confined to
//! the benchmark's names and its own stamp; the create that started it is
//! among those timed. Then:
//!
//! - `auto sweep`: one automatic sweep, from the create that starts it to
//!   its end (it examines at most 256 files);
//! - `sweep/segment`: the explicit `segment::sweep` over every segment
//!   present (each one examined), divided by their number.
//!
//! The target: create latency independent of the number of segments
//! present. Needs about 80 MB of `/dev/shm` for 10,000. Options: `--present
//! LIST` (default 1,1000,10000), `--iterations N` (default 2000), `--json
//! FILE`. Run it on a quiet machine.

use std::time::{Duration, Instant};

use shmring::segment::{self, AutoSweepConfig};
use shmring::{CreateOptions, ObjectKind, Segment, UnlinkPolicy};

struct Args {
    present: Vec<usize>,
    iterations: usize,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        present: vec![1, 1000, 10_000],
        iterations: 2000,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--present" => {
                let v = it.next().ok_or("--present needs a list")?;
                a.present = v
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|_| format!("--present: {n:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--iterations" => {
                let v = it.next().ok_or("--iterations needs a value")?;
                a.iterations = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--iterations: {v:?}"))?;
            }
            "--json" => a.json = Some(it.next().ok_or("--json needs a file")?),
            "-h" | "--help" => {
                println!(
                    "usage: create_latency [--present 1,1000,10000] [--iterations N] [--json FILE]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(a)
}

fn lock_segment(name: &str, opts: &CreateOptions) -> Segment {
    Segment::create(name, ObjectKind::Lock, [0; 8], 64, opts, |_, _| Ok(()))
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

/// Median, p99 and maximum, in microseconds.
fn summary(mut samples: Vec<Duration>) -> [f64; 3] {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    [at(0.5), at(0.99), at(1.0)]
}

struct Row {
    present: usize,
    create: [f64; 3],
    create_drop: [f64; 3],
    auto_sweep_ms: f64,
    sweep_per_segment_us: f64,
}

fn measure(present: usize, iterations: usize, run: &str) -> Row {
    let prefix = format!("{run}-{present}");
    let scope = prefix.clone();
    let config = |period| AutoSweepConfig {
        period,
        prefix: prefix.clone(),
        scope: scope.clone(),
        ..AutoSweepConfig::default()
    };
    let never = CreateOptions {
        unlink: UnlinkPolicy::Never,
        peer_rows: 4,
        reclaim_abandoned: false,
        ..CreateOptions::default()
    };
    let names: Vec<String> = (0..present).map(|i| format!("/{prefix}-p{i}")).collect();
    for name in &names {
        drop(lock_segment(name, &never));
    }

    // Creates, as in production: the first may start the period's sweep.
    segment::configure_auto_sweep(config(Duration::from_secs(3600)));
    let opts = CreateOptions {
        peer_rows: 4,
        ..CreateOptions::default()
    };
    let mut create = Vec::with_capacity(iterations);
    let mut create_drop = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let name = format!("/{prefix}-c{i}");
        let t0 = Instant::now();
        let s = lock_segment(&name, &opts);
        let t1 = Instant::now();
        drop(s);
        let t2 = Instant::now();
        create.push(t1 - t0);
        create_drop.push(t2 - t0);
    }
    segment::wait_for_auto_sweep();

    // One automatic sweep, end to end (a new scope: due at once).
    let sweep_scope = format!("{scope}-auto");
    segment::configure_auto_sweep(AutoSweepConfig {
        scope: sweep_scope.clone(),
        ..config(Duration::from_secs(3600))
    });
    let t0 = Instant::now();
    drop(lock_segment(&format!("/{prefix}-auto"), &opts));
    segment::wait_for_auto_sweep();
    let auto_sweep = t0.elapsed();

    // The explicit sweep over everything present.
    let t0 = Instant::now();
    let removed = segment::sweep(&prefix, Duration::from_secs(3600)).expect("sweep");
    let sweep = t0.elapsed();
    assert!(removed.is_empty(), "the sweep removed {removed:?}");

    for name in &names {
        let _ = Segment::unlink(name);
    }
    let uid = unsafe_geteuid();
    for s in [&scope, &sweep_scope] {
        let _ = std::fs::remove_file(format!("/dev/shm/.shmring-sweep-{uid}.{s}"));
    }
    Row {
        present,
        create: summary(create),
        create_drop: summary(create_drop),
        auto_sweep_ms: auto_sweep.as_secs_f64() * 1e3,
        sweep_per_segment_us: sweep.as_secs_f64() * 1e6 / present.max(1) as f64,
    }
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("create_latency: {e}");
        std::process::exit(2);
    });
    let run = format!("shmring-create-bench-{}", std::process::id());
    println!(
        "{:>8}  {:>29}  {:>29}  {:>10}  {:>13}",
        "present", "create µs (median/p99/max)", "create+drop µs", "auto sweep", "sweep/segment"
    );
    let mut rows = Vec::new();
    for &present in &args.present {
        let r = measure(present, args.iterations, &run);
        println!(
            "{:>8}  {:>9.1} {:>9.1} {:>9.1}  {:>9.1} {:>9.1} {:>9.1}  {:>7.2} ms  {:>10.2} µs",
            r.present,
            r.create[0],
            r.create[1],
            r.create[2],
            r.create_drop[0],
            r.create_drop[1],
            r.create_drop[2],
            r.auto_sweep_ms,
            r.sweep_per_segment_us
        );
        rows.push(r);
    }
    if let Some(path) = args.json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "present": r.present,
                    "iterations": args.iterations,
                    "create_us": {"median": r.create[0], "p99": r.create[1], "max": r.create[2]},
                    "create_drop_us": {"median": r.create_drop[0], "p99": r.create_drop[1], "max": r.create_drop[2]},
                    "auto_sweep_ms": r.auto_sweep_ms,
                    "sweep_per_segment_us": r.sweep_per_segment_us,
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&items).expect("json");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }
}
