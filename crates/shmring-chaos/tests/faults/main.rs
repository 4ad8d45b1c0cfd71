//! The fault run: the faults the chaos run (`tests/chaos/`) never made, and
//! the checks that find what they break (see `shmring_chaos::faults`).
//!
//! Scenarios, one after the other (each module's docs say what it checks):
//! * `queue.rs`: `Queue` with `maxsize` 1 and 8 under kills and stops, a
//!   spare producer and producers handing the queue to bystanders; wedges,
//!   every message exactly once, ring takeovers only from the dead;
//! * `queue.rs` again: `JoinableQueue`, `join` answers against the deaths,
//!   plus two deaths made on purpose whose answer is certain (a consumer
//!   killed announcing a take before taking anything: no loss while its
//!   record is still queued, `Ok` once another took it and did it; one killed
//!   holding a task, then a newcomer attaches: `PeerDied { lost: 1 }`;
//!   `joinable.rs`);
//! * `lock.rs`: `Lock`/`RLock` holders stopped and killed inside the
//!   critical section, and killed after handing the lock to a bystander;
//! * `pipe.rs`: pipe writers and readers stopped mid-message, writers
//!   killed (also after handing the pipe to a bystander);
//! * `create.rs`: creators killed mid-create (every kind); one name
//!   created, dropped and opened by three processes at once.
//!
//! A test without the libtest harness: `main` is the parent, or (through
//! `run_child`) a child: one of the roles' entry points, each taking its
//! `Setup` (board, incarnation, slot, fault, …) and its role's own
//! arguments, or the bystander.
//!
//! Knobs (environment):
//! * `SHMRING_FAULTS_SECONDS` — how long the faults go on, spread over the
//!   scenarios (default 8: the short mode of `cargo test`). Long mode:
//!   `SHMRING_FAULTS_SECONDS=600 cargo test -p shmring-chaos --test faults`
//!   (over 60 s, the scenarios take turns in 60 s cycles).
//! * `SHMRING_FAULTS_SEED` — the random seed (printed at the start).
//! * `SHMRING_FAULTS_SLACK_MS` — allowed lateness beyond the 100 ms
//!   liveness slice for noticing a death (default 400).
//! * `SHMRING_FAULTS_WEDGE_MS` — how long a producer may be refused while
//!   the queue is empty before it is a wedge (default 2000; a live
//!   consumer stopped for up to 500 ms must not count).
//! * `SHMRING_FAULTS_QUOTA` — messages per producer per queue round
//!   (default 150; 1000 in long mode).
//! * `SHMRING_FAULTS_SCENARIOS` — a comma-separated subset of `queue`,
//!   `joinable`, `locks`, `pipes`, `creators`, `names`.
//!
//! Required to be 0: false deaths (a death reported of a live process),
//! unseen deaths (noticed later than the bound), wedges, lost, duplicated,
//! torn and reordered messages, names lost, lockouts, half-made files,
//! unexpected errors, lock and pipe violations, refused `task_done`s.

mod child;
mod create;
mod fleet;
mod joinable;
mod lock;
mod pipe;
mod queue;
mod queue_roles;
mod tally;
mod verdict;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmring_chaos::faults::board::Word;
use shmring_chaos::ledger::{now_ns, Counter, Ledger};
use shmring_testkit::Watchdog;

use fleet::Fleet;
use tally::{Knobs, Tally};

const LIVENESS_SLICE_MS: u64 = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    shmring_testkit::run_child(&[
        &child::BYSTANDER,
        &queue_roles::PRODUCER,
        &queue_roles::CONSUMER,
        &queue_roles::SPARE,
        &queue_roles::PROBE_ANNOUNCE,
        &queue_roles::PROBE_HOLD,
        &queue_roles::PROBE_ATTACH,
        &lock::WORKER,
        &pipe::PIPE_WRITER,
        &pipe::PIPE_READER,
        &create::CREATOR,
        &create::NAME_CYCLER,
        &create::NAME_OPENER,
    ]);
    parent();
}

/// The scenarios and their shares of the time.
const SCENARIOS: [(&str, u64); 6] = [
    ("queue", 3),
    ("joinable", 3),
    ("locks", 2),
    ("pipes", 2),
    ("creators", 1),
    ("names", 1),
];

fn parent() {
    let seconds = env_u64("SHMRING_FAULTS_SECONDS", 8);
    let long = seconds > 60;
    let seed = env_u64("SHMRING_FAULTS_SEED", now_ns() | 1);
    let knobs = Knobs {
        bound_ms: LIVENESS_SLICE_MS + env_u64("SHMRING_FAULTS_SLACK_MS", 400),
        wedge_ms: env_u64("SHMRING_FAULTS_WEDGE_MS", 2000),
        quota: env_u64("SHMRING_FAULTS_QUOTA", if long { 1000 } else { 150 }),
    };
    let wanted: Vec<String> = std::env::var("SHMRING_FAULTS_SCENARIOS")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_else(|_| SCENARIOS.iter().map(|(s, _)| s.to_string()).collect());
    let scenarios: Vec<(&str, u64)> = SCENARIOS
        .iter()
        .copied()
        .filter(|(s, _)| wanted.iter().any(|w| w == s))
        .collect();
    assert!(!scenarios.is_empty(), "no scenario in {wanted:?}");
    // Generous: a loaded 2-core machine, and each round finishes what it began.
    let _dog = Watchdog::new(Duration::from_secs(300 + seconds * 3), "the fault run");
    println!(
        "faults: {seconds} s of faults ({} mode), seed {seed}, scenarios {:?}, liveness bound \
         {} ms, wedge bound {} ms",
        if long { "long" } else { "short" },
        scenarios.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        knobs.bound_ms,
        knobs.wedge_ms
    );
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let pid = std::process::id();
    let ledger_path = dir.join(format!("shmring-faults-ledger-{pid}"));
    let board_path = dir.join(format!("shmring-faults-board-{pid}"));
    let ledger = Ledger::create(&ledger_path).expect("create ledger");
    let mut fleet = Fleet::new(
        board_path.clone(),
        ledger_path.clone(),
        seed,
        seconds * 3 + 300,
    );
    let mut tally = Tally::default();
    let started = Instant::now();
    let weights: u64 = scenarios.iter().map(|(_, w)| w).sum();
    let cycle = if long { 60 } else { seconds };
    while started.elapsed() < Duration::from_secs(seconds) || tally.lines.is_empty() {
        for &(scenario, weight) in &scenarios {
            let budget = Duration::from_millis(cycle * 1000 * weight / weights);
            match scenario {
                "queue" => queue::run(&mut fleet, &mut tally, &knobs, false, budget),
                "joinable" => queue::run(&mut fleet, &mut tally, &knobs, true, budget),
                "locks" => lock::run(&mut fleet, &mut tally, &knobs, budget),
                "pipes" => pipe::run(&mut fleet, &mut tally, &knobs, budget),
                "creators" => create::run_creators(&mut fleet, &mut tally, budget),
                "names" => create::run_names(&mut fleet, &mut tally, budget),
                _ => unreachable!(),
            }
        }
    }
    // Bystanders still waiting: go.
    fleet.board.add(Word::Release, 1);
    let elapsed = started.elapsed();
    report(&fleet, &tally, &ledger, &knobs, elapsed);
    let problems = problems(&fleet, &tally, &ledger, seconds);
    drop(ledger);
    let _ = std::fs::remove_file(&ledger_path);
    let _ = std::fs::remove_file(&board_path);
    assert!(problems.is_empty(), "faults found: {problems:#?}");
    println!("faults: ok");
}

fn report(fleet: &Fleet, tally: &Tally, ledger: &Ledger, knobs: &Knobs, elapsed: Duration) {
    let b = &fleet.board;
    println!(
        "faults: {} kills and {} stops in {:.1} s; kills by cause: {:?}",
        fleet.total_kills(),
        fleet.total_stops(),
        elapsed.as_secs_f64(),
        fleet.kills
    );
    println!("faults: stops by cause: {:?}", fleet.stops);
    println!(
        "faults: queues: {} sequence numbers, {} in doubt (producer killed putting), {} in-flight \
         lost (consumer killed taking); {} joins ({} PeerDied); {} spare and {} successor ring \
         claims; {} bystanders",
        tally.messages,
        tally.in_doubt,
        tally.in_flight_lost,
        tally.joins,
        tally.peer_died,
        tally.spare_claims,
        tally.successor_claims,
        b.get(Word::Bystanders)
    );
    println!(
        "faults: {} death reports checked; longest from a death to its notice {} ms (bound {} ms)",
        tally.death_reports,
        tally.max_notice_ns / 1_000_000,
        knobs.bound_ms
    );
    println!(
        "faults: stops made {}, kills made {}, false deaths {}, unseen deaths {}, wedges {}, \
         lost {}, duplicated {}, torn {}, out of order {}, names lost {}, lockouts {}, half-made \
         {}, unexpected errors {}, lock violations {}, pipe violations {}, refused task_done {}",
        fleet.total_stops(),
        fleet.total_kills(),
        tally.false_deaths,
        tally.unseen_deaths,
        tally.wedges,
        tally.lost,
        ledger.get(Counter::Duplicated),
        ledger.get(Counter::Torn),
        ledger.get(Counter::OutOfOrder),
        tally.names_lost,
        tally.lockouts,
        tally.half_made,
        b.get(Word::UnexpectedErrors),
        b.get(Word::LockViolations),
        b.get(Word::PipeViolations),
        b.get(Word::TaskDoneErrors),
    );
}

fn problems(fleet: &Fleet, tally: &Tally, ledger: &Ledger, seconds: u64) -> Vec<String> {
    let b = &fleet.board;
    let mut problems = fleet.failures.clone();
    problems.extend(tally.notes.iter().cloned());
    for (what, n) in [
        ("false deaths", tally.false_deaths),
        ("unseen deaths", tally.unseen_deaths),
        ("wedges", tally.wedges),
        (
            "producers refused on an empty queue",
            b.get(Word::ProducerWedges),
        ),
        ("lost", tally.lost),
        ("duplicated", ledger.get(Counter::Duplicated)),
        ("torn", ledger.get(Counter::Torn)),
        ("out of order", ledger.get(Counter::OutOfOrder)),
        ("names lost", tally.names_lost),
        ("lockouts", tally.lockouts),
        ("half-made files", tally.half_made),
        ("unexpected errors", b.get(Word::UnexpectedErrors)),
        ("lock violations", b.get(Word::LockViolations)),
        ("pipe violations", b.get(Word::PipeViolations)),
        ("refused task_done", b.get(Word::TaskDoneErrors)),
    ] {
        if n != 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if b.reports_overflowed() {
        problems.push("the report log overflowed: some reports were not checked".into());
    }
    // The faults must have happened at all.
    if fleet.total_kills() == 0 || fleet.total_stops() == 0 {
        problems.push("no kills or no stops were made".into());
    }
    if seconds >= 8 && b.get(Word::Bystanders) == 0 {
        problems.push("no bystander was started".into());
    }
    problems
}
