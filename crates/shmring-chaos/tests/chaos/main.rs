//! The chaos run: kill -9 at random times and at failpoints, restart, and
//! account for every message (see the crate docs for the bookkeeping).
//!
//! A test without the libtest harness: `main` is the parent, or (through
//! `run_child`) one of the children's entry points in `children.rs`, which
//! run the roles of `shmring_chaos::roles`, `shmring_chaos::channel` and
//! `shmring_chaos::pipe_faults` with typed arguments.
//!
//! Knobs (environment):
//! * `SHMRING_CHAOS_KILLS` — kills to perform (default 2,000: the CI short
//!   mode). Long mode: `SHMRING_CHAOS_KILLS=100000
//!   SHMRING_CHAOS_MAX_SECONDS=1800 cargo test -p shmring-chaos --test chaos`.
//! * `SHMRING_CHAOS_MAX_SECONDS` — give up (and fail) after this long
//!   (default 170).
//! * `SHMRING_CHAOS_SEED` — the random seed (printed at the start).
//! * `SHMRING_CHAOS_SLACK_MS` — allowed blocking beyond the 100 ms liveness
//!   slice (default 400: this runs 15 processes on as few as 2 cores).
//!
//! Required to be 0: lost, duplicated, torn, out of order (per producer
//! incarnation), ring order, lock, dict and pipe violations, channel reader
//! violations and spurious `Closed`/`BrokenPipe`; torn, spliced and
//! reordered messages and false ends of the pipe handover episodes (and
//! their losses within what their faults allow); every survivor's longest
//! block after a death within the liveness slice plus the slack.

mod account;
mod children;
mod pipe;
mod run;
mod spsc;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::dict::Dict;
use shmring::lock::Lock;
use shmring::mpmc::ByteQueue;
use shmring_chaos::ledger::{now_ns, Chan, Counter, Ledger, CONSUMERS, PRODUCERS, WORKERS};
use shmring_chaos::{roles, split_tag};
use shmring_testkit::unique_name;

use run::{Gone, Kind, Names, Rng, Run};

const LIVENESS_SLICE_MS: u64 = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    shmring_testkit::run_child(&children::all());
    parent();
}

fn parent() {
    let kills_wanted = env_u64("SHMRING_CHAOS_KILLS", 2_000);
    let max_seconds = env_u64("SHMRING_CHAOS_MAX_SECONDS", 170);
    let slack_ms = env_u64("SHMRING_CHAOS_SLACK_MS", 400);
    let seed = env_u64("SHMRING_CHAOS_SEED", now_ns() | 1);
    let bound = Duration::from_millis(LIVENESS_SLICE_MS + slack_ms);
    println!("chaos: {kills_wanted} kills, seed {seed}, up to {max_seconds} s");
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let ledger_path = dir.join(format!("shmring-chaos-ledger-{}", std::process::id()));
    let ledger = Ledger::create(&ledger_path).expect("create ledger");
    let queue_name = unique_name("chaos-queue");
    let queue = ByteQueue::builder()
        .producers(8)
        .ring_bytes(1 << 12)
        .max_message(64)
        .maxsize(0)
        .create(&queue_name)
        .expect("create queue");
    let lock_name = unique_name("chaos-lock");
    let _lock = Lock::builder().create(&lock_name).expect("create lock");
    let dict_name = unique_name("chaos-dict");
    let _dict: Dict<u64, u64> = Dict::builder().create(&dict_name).expect("create dict");
    let mut run = Run {
        ledger_path: ledger_path.clone(),
        ledger,
        names: Names {
            queue: queue_name,
            lock: lock_name,
            dict: dict_name,
            ..Names::default()
        },
        rng: Rng(seed),
        kills: HashMap::new(),
        total_kills: 0,
        failures: Vec::new(),
        dead_in_flight: Default::default(),
        consumer_deaths: 0,
        pipe_episodes: 0,
        pipe_violations: 0,
        reader_deaths: HashMap::new(),
    };
    let kinds: Vec<Kind> = (0..PRODUCERS)
        .map(Kind::Producer)
        .chain((0..CONSUMERS).map(Kind::Consumer))
        .chain((0..WORKERS).map(|_| Kind::Lock))
        .chain((0..WORKERS).map(Kind::Dict))
        .collect();
    let started = Instant::now();
    let mut running: Vec<run::Running> = kinds
        .iter()
        .map(|&k| {
            let fate = run.fate(k);
            run.spawn(k, fate)
        })
        .collect();
    let mut spsc = spsc::Spsc::start(&mut run);
    let mut pipe = pipe::Episode::start(&mut run);
    while run.total_kills < kills_wanted && started.elapsed().as_secs() < max_seconds {
        for r in running.iter_mut() {
            match run.poll(r) {
                None => continue,
                Some(Gone::Killed(_)) => {}
                Some(Gone::Exited(status)) => run.failures.push(format!(
                    "{:?} exited with {status} (fate {:?})",
                    r.kind, r.fate
                )),
            }
            let fate = run.fate(r.kind);
            *r = run.spawn(r.kind, fate);
        }
        spsc.step(&mut run, bound);
        if pipe.step(&mut run) {
            pipe = pipe::Episode::start(&mut run);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    // Stop: children finish their step and exit; writers stop sending and
    // close, so readers see EOF.
    run.ledger.add(Counter::Stop, 1);
    stop(&mut run, running);
    let spsc_drained = spsc.finish(&mut run);
    pipe.finish(&mut run);
    let drained = roles::drain(&run.ledger, &queue);
    let report = account::account(&run, drained);
    account::print_others(&run);
    pipe::print_handover(&run);
    let mut by_cause: Vec<_> = run.kills.iter().collect();
    by_cause.sort();
    println!(
        "chaos: {} kills in {:.1} s ({:.0} kills/s); by cause: {by_cause:?}",
        run.total_kills,
        elapsed.as_secs_f64(),
        run.total_kills as f64 / elapsed.as_secs_f64(),
    );
    println!("chaos: {report}");
    let l = &run.ledger;
    println!(
        "chaos: duplicated {}, torn {}, out of order {} (ring order {}), lock violations {}, \
         dict violations {}, pipe violations {}; spsc ring drained at the end: {spsc_drained}",
        l.get(Counter::Duplicated),
        l.get(Counter::Torn),
        l.get(Counter::OutOfOrder),
        l.get(Counter::RingOrder),
        l.get(Counter::LockViolations),
        l.get(Counter::DictViolations),
        run.pipe_violations
    );
    let blocked = [
        Counter::MaxLockWaitNs,
        Counter::MaxDictWaitNs,
        Counter::MaxEofNs,
        Counter::MaxClosedNs,
        Counter::MaxBrokenPipeNs,
    ];
    let (worst, longest) = blocked
        .iter()
        .map(|&c| (c, l.get(c)))
        .max_by_key(|&(_, v)| v)
        .expect("counters");
    println!(
        "chaos: longest blocked survivor {} ms ({worst:?}); bound {} ms",
        longest / 1_000_000,
        bound.as_millis()
    );
    let _ = std::fs::remove_file(&ledger_path);
    let mut problems = run.failures.clone();
    for (what, n) in [
        ("lost", report.lost),
        ("duplicated", l.get(Counter::Duplicated)),
        ("torn", l.get(Counter::Torn)),
        ("out of order", l.get(Counter::OutOfOrder)),
        ("ring order", l.get(Counter::RingOrder)),
        ("lock violations", l.get(Counter::LockViolations)),
        ("dict violations", l.get(Counter::DictViolations)),
        ("pipe violations", run.pipe_violations),
        (
            "channel reader violations",
            l.get(Counter::ReaderViolations),
        ),
        ("spurious Closed/BrokenPipe", l.get(Counter::Spurious)),
    ]
    .into_iter()
    .chain(pipe::handover_problems(&run))
    {
        if n != 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    for (c, v) in blocked.iter().map(|&c| (c, l.get(c))) {
        if v > bound.as_nanos() as u64 {
            problems.push(format!("{c:?} = {} ms", v / 1_000_000));
        }
    }
    // Every lock holder killed inside its critical section is reported to
    // exactly one next taker (the last one may have had no successor).
    let held_deaths: u64 = ["chaos.lock-half", "chaos.lock-done", "lock.releasing"]
        .iter()
        .map(|p| run.kills.get(&format!("lock at {p}")).copied().unwrap_or(0))
        .sum();
    if l.get(Counter::OwnerDied) + 1 < held_deaths {
        problems.push(format!(
            "{held_deaths} lock holders died holding it, {} takeovers reported",
            l.get(Counter::OwnerDied)
        ));
    }
    if report.in_flight_lost > run.consumer_deaths {
        problems.push("more in-flight losses than consumer deaths".into());
    }
    let reader_deaths: u64 = run.reader_deaths.values().sum();
    if l.get(Counter::ReaderLost) > reader_deaths {
        problems.push("more messages lost with readers than reader deaths".into());
    }
    // The scenarios must have happened at all.
    if kills_wanted >= 1_000 {
        for (what, n) in [
            (
                "spsc reader deaths",
                run.reader_deaths.get(&Chan::Spsc).copied(),
            ),
            (
                "pipe reader deaths",
                run.reader_deaths.get(&Chan::Pipe).copied(),
            ),
            ("`Closed` to a writer", Some(l.get(Counter::ClosedSeen))),
            (
                "`BrokenPipe` to a writer",
                Some(l.get(Counter::BrokenPipeSeen)),
            ),
        ] {
            if n.unwrap_or(0) == 0 {
                problems.push(format!("no {what} in {} kills", run.total_kills));
            }
        }
    }
    if run.total_kills < kills_wanted {
        problems.push(format!("only {} kills in {max_seconds} s", run.total_kills));
    }
    assert!(problems.is_empty(), "chaos found: {problems:#?}");
    println!("chaos: ok");
}

/// Waits for the queue, lock and dict children to exit after the stop flag.
fn stop(run: &mut Run, running: Vec<run::Running>) {
    for mut r in running {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match r.child.try_wait().expect("try_wait") {
                Some(status) if status.success() || status.signal() == Some(libc::SIGKILL) => break,
                Some(status) => {
                    run.failures
                        .push(format!("{:?} ended with {status}", r.kind));
                    break;
                }
                None if Instant::now() > deadline => {
                    run.failures.push(format!("{:?} did not stop", r.kind));
                    let _ = r.child.kill();
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        if let Kind::Consumer(c) = r.kind {
            // A consumer killed just now, or stopped: its word is final.
            // ORDERING: SeqCst — the child is gone.
            if let Some(t) = split_tag(run.ledger.in_flight(c).swap(0, Ordering::SeqCst)) {
                run.dead_in_flight.insert(t);
            }
        }
    }
}
