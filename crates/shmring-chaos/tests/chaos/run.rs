//! The parent's machinery: which children exist, how each is to die,
//! spawning, reaping and killing them, and the tallies.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring_chaos::ledger::{now_ns, Chan, DeathClock, Ledger, PipeWord};
use shmring_chaos::{split_tag, CONSUMER_VAR, DIED_AT_VAR, FAILPOINT_VAR, LEDGER_VAR};

/// xorshift64*: enough randomness for choosing fates, reproducible by seed.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// What a child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Producer(usize),
    Consumer(usize),
    Lock,
    Dict(usize),
    /// The writer of a writer-kill pipe episode.
    PipeWriter,
    /// The writer of a reader-kill channel (never killed).
    ChanWriter(Chan),
    /// The reader of a reader-kill channel.
    ChanReader(Chan),
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
            Kind::Consumer(_) => &["mpmc.copied", "mpmc.cas-done", "chaos.consumer-got"],
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
            // The pipe reads through read grants, which have no failpoints
            // (see the report); `chaos.reader-got` is after the receive.
            Kind::ChanReader(Chan::Spsc) => &["spsc.read", "spsc.released", "chaos.reader-got"],
            Kind::ChanReader(Chan::Pipe) => &["chaos.reader-got"],
            Kind::ChanWriter(_) => &[],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Producer(_) => "producer",
            Kind::Consumer(_) => "consumer",
            Kind::Lock => "lock",
            Kind::Dict(_) => "dict",
            Kind::PipeWriter => "pipe-writer",
            Kind::ChanWriter(Chan::Spsc) => "spsc-writer",
            Kind::ChanWriter(Chan::Pipe) => "pipe-sender",
            Kind::ChanReader(Chan::Spsc) => "spsc-reader",
            Kind::ChanReader(Chan::Pipe) => "pipe-reader",
        }
    }

    /// The ledger clock the killer stamps before killing one of these.
    fn death_clock(self) -> Option<DeathClock> {
        match self {
            Kind::PipeWriter => Some(DeathClock::PipeWriter),
            Kind::ChanReader(c) => Some(DeathClock::Reader(c)),
            _ => None,
        }
    }
}

/// How the current incarnation of a child is to die.
#[derive(Clone, Debug)]
pub enum Fate {
    /// Killed by the parent this long after its start.
    Random(Duration),
    /// Kills itself at the N-th hit of a failpoint; killed by the parent
    /// after the fallback if it never gets there.
    Failpoint(&'static str, u64),
    /// Never killed: ends by itself.
    Never,
}

pub struct Running {
    pub kind: Kind,
    pub child: Child,
    pub fate: Fate,
    started: Instant,
}

/// How a child went.
#[derive(Debug)]
pub enum Gone {
    /// `SIGKILL`ed: at this failpoint, or (`None`) at a random moment.
    Killed(Option<&'static str>),
    /// Ended otherwise.
    Exited(ExitStatus),
}

/// The parent's names and files, and its tallies.
pub struct Run {
    pub ledger_path: PathBuf,
    pub ledger: Ledger,
    /// Environment variables naming the shared objects, passed to every child.
    pub names: HashMap<&'static str, String>,
    pub rng: Rng,
    pub kills: HashMap<String, u64>,
    pub total_kills: u64,
    pub failures: Vec<String>,
    /// In-flight tags of consumers that died (each explains at most one loss).
    pub dead_in_flight: HashSet<(u32, u32)>,
    pub consumer_deaths: u64,
    pub pipe_episodes: u64,
    pub pipe_violations: u64,
    pub reader_deaths: HashMap<Chan, u64>,
}

const FALLBACK: Duration = Duration::from_millis(300);

impl Run {
    pub fn spawn(&mut self, kind: Kind, fate: Fate) -> Running {
        let (role, id) = match kind {
            Kind::Producer(p) => ("producer", p),
            Kind::Consumer(c) => ("consumer", c),
            Kind::Lock => ("lock", 0),
            Kind::Dict(d) => ("dict", d),
            Kind::PipeWriter => ("pipe-writer", 0),
            Kind::ChanWriter(c) => ("chan-writer", c as usize),
            Kind::ChanReader(c) => ("chan-reader", c as usize),
        };
        let mut cmd = shmring_testkit::role_command(role);
        cmd.env(LEDGER_VAR, &self.ledger_path)
            .env_remove(FAILPOINT_VAR)
            .env_remove("SHMRING_DICT_FAILPOINT")
            .env_remove(DIED_AT_VAR)
            .stdin(Stdio::null());
        for (k, v) in &self.names {
            cmd.env(k, v);
        }
        if let Kind::Consumer(c) = kind {
            cmd.env(CONSUMER_VAR, c.to_string());
        }
        if let Some(clock) = kind.death_clock() {
            cmd.env(DIED_AT_VAR, clock.as_str());
        }
        cmd.env("SHMRING_CHAOS_ID", id.to_string());
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

    pub fn fate(&mut self, kind: Kind) -> Fate {
        let points = kind.failpoints();
        if points.is_empty() || self.rng.below(2) == 0 {
            Fate::Random(Duration::from_micros(500 + self.rng.below(40_000)))
        } else {
            Fate::Failpoint(self.rng.pick(points), 1 + self.rng.below(200))
        }
    }

    /// Polls one child: reaps it if gone (tallying a kill), kills it when
    /// its time has come. `Some` once it is gone.
    pub fn poll(&mut self, r: &mut Running) -> Option<Gone> {
        if let Some(status) = r.child.try_wait().expect("try_wait") {
            if status.signal() != Some(libc::SIGKILL) {
                return Some(Gone::Exited(status));
            }
            let at = match r.fate {
                Fate::Failpoint(name, _) => Some(name),
                _ => None,
            };
            let label = format!("{} at {}", r.kind.label(), at.unwrap_or("random"));
            *self.kills.entry(label).or_default() += 1;
            self.total_kills += 1;
            match r.kind {
                Kind::Consumer(c) => {
                    self.consumer_deaths += 1;
                    // ORDERING: SeqCst — the child is dead and reaped; its
                    // stores are visible; we reset the word for its successor.
                    let tag = self.ledger.in_flight(c).swap(0, Ordering::SeqCst);
                    if let Some(t) = split_tag(tag) {
                        self.dead_in_flight.insert(t);
                    }
                }
                Kind::ChanReader(c) => *self.reader_deaths.entry(c).or_default() += 1,
                _ => {}
            }
            return Some(Gone::Killed(at));
        }
        let due = match r.fate {
            Fate::Random(after) => after,
            Fate::Failpoint(..) => FALLBACK,
            Fate::Never => return None,
        };
        if r.started.elapsed() >= due && self.may_kill(r.kind) {
            if let Some(clock) = r.kind.death_clock() {
                // ORDERING: Release — read by the survivors after they
                // noticed the death.
                self.ledger
                    .died_at(clock)
                    .store(now_ns(), Ordering::Release);
            }
            r.fate = Fate::Random(due);
            let _ = r.child.kill();
        }
        None
    }

    /// A pipe writer is killed only once attached (it sent something):
    /// an end never claimed is "not yet attached", not "gone".
    fn may_kill(&self, kind: Kind) -> bool {
        // ORDERING: Acquire — pairs with the writer's Release.
        kind != Kind::PipeWriter || self.ledger.pipe(PipeWord::Sent).load(Ordering::Acquire) > 0
    }

    /// Polls `r` until it is gone (killing it at its due time), for at most
    /// `limit`; `None` (and a failure) if it outlived that.
    pub fn wait_gone(&mut self, r: &mut Running, limit: Duration) -> Option<Gone> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(gone) = self.poll(r) {
                return Some(gone);
            }
            if Instant::now() > deadline {
                self.failures
                    .push(format!("{} did not stop within {limit:?}", r.kind.label()));
                let _ = r.child.kill();
                let _ = r.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
