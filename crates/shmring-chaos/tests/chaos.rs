//! The chaos run: kill -9 at random times and at failpoints, restart, and
//! account for every message (see the crate docs for the bookkeeping).
//!
//! A test without the libtest harness: `main` is the parent, or, with
//! `SHMRING_TEST_ROLE` set, one of the child roles of `shmring_chaos::roles`.
//!
//! Knobs (environment):
//! * `SHMRING_CHAOS_KILLS` — kills to perform (default 2,000: the CI short
//!   mode). Long mode: `SHMRING_CHAOS_KILLS=100000 cargo test --release -p
//!   shmring-chaos --test chaos`.
//! * `SHMRING_CHAOS_MAX_SECONDS` — give up (and fail) after this long
//!   (default 170).
//! * `SHMRING_CHAOS_SEED` — the random seed (printed at the start).
//! * `SHMRING_CHAOS_SLACK_MS` — allowed blocking beyond the 100 ms liveness
//!   slice (default 400: this runs 11 processes on as few as 2 cores).

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::core::RingConfig;
use shmring::dict::{Dict, DictConfig};
use shmring::lock::Lock;
use shmring::mpmc::{Queue, QueueConfig};
use shmring::pipe::{Pipe, PipeConfig};
use shmring::CreateOptions;
use shmring_chaos::ledger::{now_ns, Counter, Ledger, PipeWord, CONSUMERS, PRODUCERS, WORKERS};
use shmring_chaos::{roles, split_tag, CONSUMER_VAR, FAILPOINT_VAR, LEDGER_VAR, PIPE_WRITER_VAR};
use shmring_testkit::{role, unique_name, ROLE_VAR};

const LIVENESS_SLICE_MS: u64 = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

fn main() {
    if let Some(role) = role() {
        child(&role);
        return;
    }
    parent();
}

fn child(role: &str) {
    let ledger = shmring_chaos::install_hook();
    let id = || var("SHMRING_CHAOS_ID").parse::<usize>().expect("id");
    match role {
        "producer" => roles::producer(&ledger, &var("QUEUE"), id()),
        "consumer" => roles::consumer(&ledger, &var("QUEUE"), id()),
        "lock" => roles::lock_worker(&ledger, &var("LOCK")),
        "dict" => roles::dict_worker(&ledger, &var("DICT"), id()),
        "pipe-writer" => roles::pipe_writer(&ledger, &var("PIPE")),
        "pipe-reader" => roles::pipe_reader(&ledger, &var("PIPE")),
        other => panic!("unknown role {other}"),
    }
}

/// xorshift64*: enough randomness for choosing fates, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Producer(usize),
    Consumer(usize),
    Lock,
    Dict(usize),
    PipeWriter,
}

impl Kind {
    fn failpoints(self) -> &'static [&'static str] {
        match self {
            Kind::Producer(_) | Kind::PipeWriter => &[
                "ring.claimed",
                "ring.payload-written",
                "ring.header-written",
                "ring.published",
            ],
            Kind::Consumer(_) => &[
                "mpmc.copied",
                "mpmc.cas-done",
                "mpmc.counted",
                "chaos.consumer-got",
            ],
            Kind::Lock => &[
                "lock.acquire-cas",
                "lock.releasing",
                "chaos.lock-half",
                "chaos.lock-done",
            ],
            Kind::Dict(_) => &[
                "dict:slot-allocated",
                "dict:slot-written",
                "dict:published",
                "dict:slot-freeing",
                "dict:index-written",
                "dict:flipped",
                "lock.acquire-cas",
                "lock.releasing",
            ],
        }
    }
}

/// How the current incarnation of a child is to die.
#[derive(Clone, Debug)]
enum Fate {
    /// Killed by the parent this long after its start.
    Random(Duration),
    /// Kills itself at the N-th hit of a failpoint; killed by the parent
    /// after the fallback if it never gets there.
    Failpoint(&'static str, u64),
}

struct Running {
    kind: Kind,
    child: Child,
    fate: Fate,
    started: Instant,
}

/// The parent's names and files, and its tallies.
struct Run {
    exe: PathBuf,
    ledger_path: PathBuf,
    ledger: Ledger,
    names: HashMap<&'static str, String>,
    rng: Rng,
    kills: HashMap<String, u64>,
    total_kills: u64,
    failures: Vec<String>,
    /// In-flight tags of consumers that died (each explains at most one loss).
    dead_in_flight: HashSet<(u32, u32)>,
    consumer_deaths: u64,
    pipe_episodes: u64,
    pipe_violations: u64,
}

const FALLBACK: Duration = Duration::from_millis(300);

impl Run {
    fn spawn(&mut self, kind: Kind, fate: Fate) -> Running {
        let mut cmd = Command::new(&self.exe);
        cmd.env(LEDGER_VAR, &self.ledger_path)
            .env_remove(FAILPOINT_VAR)
            .env_remove("SHMRING_DICT_FAILPOINT")
            .stdin(Stdio::null());
        for (k, v) in &self.names {
            cmd.env(k, v);
        }
        let (role, id) = match kind {
            Kind::Producer(p) => ("producer", p),
            Kind::Consumer(c) => {
                cmd.env(CONSUMER_VAR, c.to_string());
                ("consumer", c)
            }
            Kind::Lock => ("lock", 0),
            Kind::Dict(d) => ("dict", d),
            Kind::PipeWriter => {
                cmd.env(PIPE_WRITER_VAR, "1");
                ("pipe-writer", 0)
            }
        };
        cmd.env(ROLE_VAR, role)
            .env("SHMRING_CHAOS_ID", id.to_string());
        if let Fate::Failpoint(name, n) = &fate {
            let var = if name.starts_with("dict:") {
                "SHMRING_DICT_FAILPOINT"
            } else {
                FAILPOINT_VAR
            };
            cmd.env(var, format!("{name}:{n}"));
        }
        let child = cmd.spawn().expect("spawn child");
        Running {
            kind,
            child,
            fate,
            started: Instant::now(),
        }
    }

    fn fate(&mut self, kind: Kind) -> Fate {
        if self.rng.below(2) == 0 {
            Fate::Random(Duration::from_micros(500 + self.rng.below(40_000)))
        } else {
            let name = self.rng.pick(kind.failpoints());
            Fate::Failpoint(name, 1 + self.rng.below(200))
        }
    }

    /// Polls one child: reaps it if dead (tallying how), kills it when its
    /// time has come. Returns whether it is gone.
    fn poll(&mut self, r: &mut Running) -> bool {
        if let Some(status) = r.child.try_wait().expect("try_wait") {
            let kind = match r.kind {
                Kind::Producer(_) => "producer",
                Kind::Consumer(_) => "consumer",
                Kind::Lock => "lock",
                Kind::Dict(_) => "dict",
                Kind::PipeWriter => "pipe-writer",
            };
            let label = match (&r.fate, status.signal()) {
                (Fate::Failpoint(name, _), Some(libc::SIGKILL)) => format!("{kind} at {name}"),
                (_, Some(libc::SIGKILL)) => format!("{kind} at random"),
                _ => {
                    self.failures.push(format!(
                        "{:?} exited with {status} (fate {:?})",
                        r.kind, r.fate
                    ));
                    return true;
                }
            };
            *self.kills.entry(label).or_default() += 1;
            self.total_kills += 1;
            if let Kind::Consumer(c) = r.kind {
                self.consumer_deaths += 1;
                // ORDERING: SeqCst — the child is dead and reaped; its
                // stores are visible; we reset the word for its successor.
                let tag = self.ledger.in_flight(c).swap(0, Ordering::SeqCst);
                if let Some(t) = split_tag(tag) {
                    self.dead_in_flight.insert(t);
                }
            }
            return true;
        }
        let due = match r.fate {
            Fate::Random(after) => after,
            Fate::Failpoint(..) => FALLBACK,
        };
        if r.started.elapsed() >= due && self.may_kill(r.kind) {
            if r.kind == Kind::PipeWriter {
                // ORDERING: Release — read by the reader after its EOF.
                self.ledger
                    .pipe(PipeWord::DiedAt)
                    .store(now_ns(), Ordering::Release);
            }
            r.fate = Fate::Random(due);
            let _ = r.child.kill();
        }
        false
    }

    /// A pipe writer is killed only once attached (it sent something):
    /// an end never claimed is "not yet attached", not "gone".
    fn may_kill(&self, kind: Kind) -> bool {
        // ORDERING: Acquire — pairs with the writer's Release.
        kind != Kind::PipeWriter || self.ledger.pipe(PipeWord::Sent).load(Ordering::Acquire) > 0
    }
}

fn parent() {
    let kills_wanted = env_u64("SHMRING_CHAOS_KILLS", 2_000);
    let max_seconds = env_u64("SHMRING_CHAOS_MAX_SECONDS", 170);
    let slack_ms = env_u64("SHMRING_CHAOS_SLACK_MS", 400);
    let seed = env_u64("SHMRING_CHAOS_SEED", now_ns() | 1);
    println!("chaos: {kills_wanted} kills, seed {seed}, up to {max_seconds} s");
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let ledger_path = dir.join(format!("shmring-chaos-ledger-{}", std::process::id()));
    let ledger = Ledger::create(&ledger_path).expect("create ledger");
    let opts = CreateOptions::default();
    let queue_name = unique_name("chaos-queue");
    let queue_config = QueueConfig {
        rings: 8,
        ring: RingConfig {
            capacity: 1 << 12,
            max_record: 64,
        },
        max_len: 0,
    };
    let queue = Queue::create(&queue_name, queue_config, &opts).expect("create queue");
    let lock_name = unique_name("chaos-lock");
    let _lock = Lock::create(&lock_name, (), &opts).expect("create lock");
    let dict_name = unique_name("chaos-dict");
    let _dict: Dict<u64, u64> =
        Dict::create(&dict_name, DictConfig::default(), &opts).expect("create dict");
    let names = HashMap::from([
        ("QUEUE", queue_name),
        ("LOCK", lock_name),
        ("DICT", dict_name),
    ]);
    let mut run = Run {
        exe: std::env::current_exe().expect("current_exe"),
        ledger_path: ledger_path.clone(),
        ledger,
        names,
        rng: Rng(seed),
        kills: HashMap::new(),
        total_kills: 0,
        failures: Vec::new(),
        dead_in_flight: HashSet::new(),
        consumer_deaths: 0,
        pipe_episodes: 0,
        pipe_violations: 0,
    };
    let kinds: Vec<Kind> = (0..PRODUCERS)
        .map(Kind::Producer)
        .chain((0..CONSUMERS).map(Kind::Consumer))
        .chain((0..WORKERS).map(|_| Kind::Lock))
        .chain((0..WORKERS).map(Kind::Dict))
        .collect();
    let started = Instant::now();
    let mut running: Vec<Running> = kinds
        .iter()
        .map(|&k| {
            let fate = run.fate(k);
            run.spawn(k, fate)
        })
        .collect();
    let mut pipe = PipeEpisode::start(&mut run);
    while run.total_kills < kills_wanted && started.elapsed().as_secs() < max_seconds {
        for r in running.iter_mut() {
            if run.poll(r) {
                let fate = run.fate(r.kind);
                *r = run.spawn(r.kind, fate);
            }
        }
        if pipe.step(&mut run, slack_ms) {
            pipe = PipeEpisode::start(&mut run);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    // Stop: children finish their step and exit; a pipe writer stops
    // sending and closes, so the reader sees EOF.
    run.ledger.add(Counter::Stop, 1);
    for mut r in running.into_iter().chain(pipe.writer.take()) {
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
    pipe.finish(&mut run, slack_ms);
    let drained = roles::drain(&run.ledger, &queue);
    let report = account(&run, drained);
    println!(
        "chaos: {} kills in {:.1} s ({:.0} kills/s); by cause: {:?}",
        run.total_kills,
        elapsed.as_secs_f64(),
        run.total_kills as f64 / elapsed.as_secs_f64(),
        {
            let mut k: Vec<_> = run.kills.iter().collect();
            k.sort();
            k
        }
    );
    println!("chaos: {report}");
    println!(
        "chaos: duplicated {}, torn {}, lock violations {}, dict violations {}, pipe violations {}",
        run.ledger.get(Counter::Duplicated),
        run.ledger.get(Counter::Torn),
        run.ledger.get(Counter::LockViolations),
        run.ledger.get(Counter::DictViolations),
        run.pipe_violations
    );
    let _ = std::fs::remove_file(&ledger_path);
    let slice_plus_slack = (LIVENESS_SLICE_MS + slack_ms) * 1_000_000;
    let l = &run.ledger;
    let mut problems = run.failures.clone();
    for (what, n) in [
        ("lost", report.lost),
        ("duplicated", l.get(Counter::Duplicated)),
        ("torn", l.get(Counter::Torn)),
        ("lock violations", l.get(Counter::LockViolations)),
        ("dict violations", l.get(Counter::DictViolations)),
        ("pipe violations", run.pipe_violations),
    ] {
        if n != 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    for c in [
        Counter::MaxLockWaitNs,
        Counter::MaxDictWaitNs,
        Counter::MaxEofNs,
    ] {
        if l.get(c) > slice_plus_slack {
            problems.push(format!("{c:?} = {} ms", l.get(c) / 1_000_000));
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
    if run.total_kills < kills_wanted {
        problems.push(format!("only {} kills in {max_seconds} s", run.total_kills));
    }
    assert!(problems.is_empty(), "chaos found: {problems:#?}");
    println!("chaos: ok");
}

/// What the final accounting found.
struct Report {
    published: u64,
    delivered: u64,
    lost: u64,
    in_flight_lost: u64,
    in_doubt_undelivered: u64,
    drained: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "queue: {} sequence numbers attempted, {} delivered ({} drained at the end), \
             {} lost, {} in-flight lost (consumer killed while taking), \
             {} in doubt and never delivered (producer killed while pushing)",
            self.published,
            self.delivered,
            self.drained,
            self.lost,
            self.in_flight_lost,
            self.in_doubt_undelivered
        )
    }
}

fn account(run: &Run, drained: u64) -> Report {
    let l = &run.ledger;
    let mut report = Report {
        published: 0,
        delivered: 0,
        lost: 0,
        in_flight_lost: 0,
        in_doubt_undelivered: 0,
        drained,
    };
    for p in 0..PRODUCERS {
        let (next, pushing) = l.producer(p);
        // ORDERING: Acquire — every producer is gone.
        let (next, pushing) = (
            next.load(Ordering::Acquire),
            pushing.load(Ordering::Acquire),
        );
        // Attempted: everything before `next`, and `next` itself if the last
        // incarnation died (or stopped) inside its push: that one is in doubt.
        let end = if pushing == next + 1 {
            l.set_in_doubt(p, next);
            next + 1
        } else {
            next
        };
        report.published += end;
        for seq in 0..end {
            if l.delivered(p, seq) {
                report.delivered += 1;
            } else if l.in_doubt(p, seq) {
                report.in_doubt_undelivered += 1;
            } else if run.dead_in_flight.contains(&(p as u32, seq as u32)) {
                report.in_flight_lost += 1;
            } else {
                report.lost += 1;
                if report.lost <= 10 {
                    eprintln!("chaos: LOST producer {p} seq {seq}");
                }
            }
        }
        for seq in end..(end + 256).min(shmring_chaos::ledger::MAX_SEQ) {
            if l.delivered(p, seq) {
                eprintln!("chaos: producer {p} seq {seq} delivered but never pushed");
                l.add(Counter::Torn, 1);
            }
        }
    }
    println!(
        "chaos: lock rounds {}, owner-died takeovers {}, max wait ending in a takeover {} ms (any wait {} ms); dict updates {}, \
         max update_with {} ms; pipe episodes {}, messages {}, max EOF after writer death {} ms",
        l.get(Counter::LockRounds),
        l.get(Counter::OwnerDied),
        l.get(Counter::MaxLockWaitNs) / 1_000_000,
        l.get(Counter::MaxLockWaitAnyNs) / 1_000_000,
        l.get(Counter::DictUpdates),
        l.get(Counter::MaxDictWaitNs) / 1_000_000,
        run.pipe_episodes,
        l.get(Counter::PipeMessages),
        l.get(Counter::MaxEofNs) / 1_000_000,
    );
    report
}

/// One pipe and its two ends: the writer is killed (at random or at a
/// failpoint), the reader must drain, see EOF in time, and have received
/// exactly what the writer sent (plus the one in doubt).
struct PipeEpisode {
    name: String,
    _pipe: Pipe,
    writer: Option<Running>,
    reader: Child,
    writer_gone_at: Option<Instant>,
}

impl PipeEpisode {
    fn start(run: &mut Run) -> PipeEpisode {
        for w in [
            PipeWord::Sent,
            PipeWord::Sending,
            PipeWord::DiedAt,
            PipeWord::Received,
            PipeWord::Done,
            PipeWord::Violations,
        ] {
            // ORDERING: SeqCst — no child of this episode exists yet.
            run.ledger.pipe(w).store(0, Ordering::SeqCst);
        }
        let name = unique_name("chaos-pipe");
        let config = PipeConfig {
            ring_bytes: 4096,
            fragment_bytes: None,
        };
        let pipe = Pipe::create(&name, false, config, &CreateOptions::default()).expect("pipe");
        run.names.insert("PIPE", name.clone());
        let reader = Command::new(&run.exe)
            .env(LEDGER_VAR, &run.ledger_path)
            .env(ROLE_VAR, "pipe-reader")
            .env("PIPE", &name)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn pipe reader");
        let fate = run.fate(Kind::PipeWriter);
        let writer = Some(run.spawn(Kind::PipeWriter, fate));
        PipeEpisode {
            name,
            _pipe: pipe,
            writer,
            reader,
            writer_gone_at: None,
        }
    }

    /// Advances the episode; true when it is over (and checked).
    fn step(&mut self, run: &mut Run, slack_ms: u64) -> bool {
        if let Some(w) = self.writer.as_mut() {
            if run.poll(w) {
                self.writer = None;
                self.writer_gone_at = Some(Instant::now());
            }
            return false;
        }
        let waited = self.writer_gone_at.map_or(Duration::ZERO, |t| t.elapsed());
        match self.reader.try_wait().expect("try_wait") {
            Some(_) => {
                self.finish(run, slack_ms);
                true
            }
            None if waited > Duration::from_secs(10) => {
                run.failures
                    .push(format!("pipe reader of {} never saw EOF", self.name));
                let _ = self.reader.kill();
                let _ = self.reader.wait();
                true
            }
            None => false,
        }
    }

    fn finish(&mut self, run: &mut Run, _slack_ms: u64) {
        let status = self.reader.wait().expect("wait reader");
        let l = &run.ledger;
        // ORDERING: Acquire — pairs with the children's Release stores.
        let word = |w| l.pipe(w).load(Ordering::Acquire);
        let (sent, sending, received) = (
            word(PipeWord::Sent),
            word(PipeWord::Sending),
            word(PipeWord::Received),
        );
        let ok_count = received == sent || (sending == sent + 1 && received == sent + 1);
        if !status.success() || word(PipeWord::Done) != 1 {
            run.failures.push(format!("pipe reader failed: {status}"));
        } else if !ok_count || word(PipeWord::Violations) != 0 {
            eprintln!(
                "chaos: pipe {}: sent {sent}, sending {sending}, received {received}, violations {}",
                self.name,
                word(PipeWord::Violations)
            );
            run.pipe_violations += 1;
        }
        run.pipe_episodes += 1;
    }
}
