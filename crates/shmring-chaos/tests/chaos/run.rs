//! The parent's machinery: which children exist, how each is to die,
//! spawning, reaping and killing them, and the tallies.

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::process::Process;
use shmring_chaos::ledger::{now_ns, Chan, DeathClock, Ledger, PipeWord};
use shmring_chaos::{split_tag, HookSetup};

use crate::children;

/// The Dict's own failpoint variable (`shmring::dict`): `dict:NAME:N`.
const DICT_FAILPOINT_VAR: &str = "SHMRING_DICT_FAILPOINT";

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

/// The names of the shared objects the children open (empty: not made
/// yet).
#[derive(Debug, Default)]
pub struct Names {
    /// The queue of the producers and consumers.
    pub queue: String,
    /// The lock workers' lock.
    pub lock: String,
    /// The dict workers' dict.
    pub dict: String,
    /// The SPSC ring of the reader-kill channel.
    pub spsc: String,
    /// The pipe of the current writer-kill episode.
    pub pipe: String,
    /// The pipe of the current reader-kill episode.
    pub chan_pipe: String,
}

impl Names {
    /// The ring or pipe of channel `c`.
    fn chan(&self, c: Chan) -> String {
        match c {
            Chan::Spsc => self.spsc.clone(),
            Chan::Pipe => self.chan_pipe.clone(),
        }
    }
}

/// The parent's names and files, and its tallies.
pub struct Run {
    pub ledger_path: PathBuf,
    pub ledger: Ledger,
    /// The shared objects, which the children open by name.
    pub names: Names,
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
        let mut hook = HookSetup {
            ledger: self.ledger_path.clone(),
            failpoint: None,
            consumer: None,
            died_at: kind.death_clock(),
        };
        // The Dict's failpoints are its own, set by its own variable.
        let mut dict_failpoint = None;
        if let Fate::Failpoint(name, n) = &fate {
            if name.starts_with("dict:") {
                dict_failpoint = Some(format!("{name}:{n}"));
            } else {
                hook.failpoint = Some((name.to_string(), *n));
            }
        }
        let names = &self.names;
        let builder = match kind {
            Kind::Producer(p) => Process::new(&children::PRODUCER, (hook, names.queue.clone(), p)),
            Kind::Consumer(c) => {
                hook.consumer = Some(c);
                Process::new(&children::CONSUMER, (hook, names.queue.clone(), c))
            }
            Kind::Lock => Process::new(&children::LOCK_WORKER, (hook, names.lock.clone())),
            Kind::Dict(d) => Process::new(&children::DICT_WORKER, (hook, names.dict.clone(), d)),
            Kind::PipeWriter => Process::new(&children::PIPE_WRITER, (hook, names.pipe.clone())),
            Kind::ChanWriter(c) => Process::new(&children::CHAN_WRITER, (hook, c, names.chan(c))),
            Kind::ChanReader(c) => Process::new(&children::CHAN_READER, (hook, c, names.chan(c))),
        };
        let mut cmd = builder.into_command().expect("prepare child");
        cmd.stdin(Stdio::null());
        match dict_failpoint {
            Some(v) => cmd.env(DICT_FAILPOINT_VAR, v),
            None => cmd.env_remove(DICT_FAILPOINT_VAR),
        };
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
