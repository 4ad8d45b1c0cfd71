//! The parent's process machinery: spawning children (an entry point of
//! this binary, its [`Setup`] with an incarnation number, and its role's
//! own arguments), and carrying out each one's *fate*: killed at a
//! random time or at a failpoint, or stopped (`SIGSTOP`) at a random time
//! or at a failpoint and continued (`SIGCONT`) 50–500 ms later (or, now and
//! then, killed while stopped). The board records every death and stop
//! before it happens, so survivors' reports can be checked against them.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::process::ProcessBuilder;
use shmring_chaos::faults::board::{now_ns, Board, IncWord};
use shmring_chaos::faults::hook::{Action, Setup};

/// xorshift64*: reproducible by seed.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo * 1000 + self.below((hi - lo) * 1000))
    }
}

/// How a child is to be faulted.
#[derive(Clone, Debug)]
pub enum Fate {
    /// `SIGKILL` from the parent this long after the start (or the last
    /// continue).
    Kill(Duration),
    /// `SIGSTOP` from the parent this long after the start.
    Stop(Duration),
    /// At the N-th hit of a failpoint the child kills or stops itself; if
    /// it never gets there within the fallback, the parent does it.
    At(&'static str, u64, Action),
    /// Nothing.
    Never,
}

/// Where a child is.
#[derive(Debug)]
enum State {
    Running,
    /// Stop stamped; waiting until `/proc` says it is stopped.
    Stopping {
        since: Instant,
        pause: Duration,
    },
    /// Stopped; continue (or kill) at `until`.
    Stopped {
        until: Instant,
        kill: bool,
    },
}

pub struct Proc {
    /// False for a child that must never die (a stopped one is always
    /// continued).
    pub killable: bool,
    pub role: &'static str,
    pub slot: usize,
    pub inc: u64,
    child: Child,
    fate: Fate,
    /// What the fate label of a kill is.
    label: String,
    since: Instant,
    state: State,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is stopped or being stopped.
    pub fn stopped(&self) -> bool {
        !matches!(self.state, State::Running)
    }
}

/// How a child ended.
#[derive(Debug)]
pub enum Gone {
    /// Killed (by its fate): the label says how.
    Killed(String),
    /// Exited on its own (status 0, or a failure).
    Exited(ExitStatus),
}

/// The fallback after which the parent carries out an unreached failpoint
/// fate itself.
const FALLBACK: Duration = Duration::from_millis(300);

/// A stopped child must show as stopped in `/proc` within this long.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct Fleet {
    pub board_path: PathBuf,
    pub ledger_path: PathBuf,
    pub board: Board,
    pub rng: Rng,
    next_inc: u64,
    pub kills: BTreeMap<String, u64>,
    pub stops: BTreeMap<String, u64>,
    pub failures: Vec<String>,
    /// When false, fates are not carried out (a round is ending).
    pub faulting: bool,
    /// When false, a stopped child is never killed instead of continued.
    pub kill_stopped: bool,
    /// Every stop of every incarnation: `(stopped, continued)` in ns.
    stop_log: HashMap<u64, Vec<(u64, u64)>>,
    child_limit_s: u64,
}

impl Fleet {
    /// `child_limit_s`: each child's watchdog (it aborts a child the parent
    /// lost track of).
    pub fn new(board_path: PathBuf, ledger_path: PathBuf, seed: u64, child_limit_s: u64) -> Fleet {
        let board = Board::create(&board_path).expect("create board");
        Fleet {
            board_path,
            ledger_path,
            board,
            rng: Rng(seed),
            next_inc: 1,
            kills: BTreeMap::new(),
            stops: BTreeMap::new(),
            failures: Vec::new(),
            faulting: true,
            kill_stopped: true,
            stop_log: HashMap::new(),
            child_limit_s,
        }
    }

    pub fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }

    pub fn total_stops(&self) -> u64 {
        self.stops.values().sum()
    }

    /// The incarnation the next spawn will get.
    pub fn peek_inc(&self) -> u64 {
        self.next_inc
    }

    /// Starts a child of role `role` (its name in the tallies) in slot
    /// `slot` with `fate`: `start` makes its process from the [`Setup`]
    /// prepared here (the role's entry point, the setup, the role's own
    /// arguments).
    pub fn spawn(
        &mut self,
        role: &'static str,
        slot: usize,
        fate: Fate,
        start: impl FnOnce(Setup) -> ProcessBuilder,
    ) -> Proc {
        let inc = self.next_inc;
        self.next_inc += 1;
        self.board.begin_inc(inc);
        let setup = Setup {
            board: self.board_path.clone(),
            ledger: self.ledger_path.clone(),
            inc,
            slot,
            parent: std::process::id(),
            limit_s: self.child_limit_s,
            at: match &fate {
                Fate::At(name, n, action) => Some((name.to_string(), *n, *action)),
                _ => None,
            },
            consumer: None,
        };
        let mut cmd = start(setup).into_command().expect("prepare child");
        cmd.stdin(Stdio::null());
        let child = cmd.spawn().expect("spawn child");
        // ORDERING: Release — the child writes it too; either is right.
        self.board
            .inc(inc, IncWord::Pid)
            .store(u64::from(child.id()), Ordering::Release);
        let label = label(role, &fate);
        Proc {
            killable: true,
            role,
            slot,
            inc,
            child,
            fate,
            label,
            since: Instant::now(),
            state: State::Running,
        }
    }

    /// Stamps `p`'s death and sends it `SIGKILL` (reaped by `poll`).
    pub fn kill(&mut self, p: &mut Proc) {
        self.board.stamp_death(p.inc);
        let _ = p.child.kill();
    }

    fn signal(p: &Proc, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own unreaped child, so it cannot have been reused.
        unsafe {
            libc::kill(p.pid() as libc::pid_t, sig);
        }
    }

    fn begin_stop(&mut self, p: &mut Proc, by_parent: bool) {
        if by_parent {
            // ORDERING: Release — stamped before the stop, like a death.
            self.board
                .inc(p.inc, IncWord::StoppedSince)
                .store(now_ns(), Ordering::Release);
            Self::signal(p, libc::SIGSTOP);
        }
        let pause = self.rng.millis(50, 500);
        p.state = State::Stopping {
            since: Instant::now(),
            pause,
        };
    }

    /// Polls one child: reaps it if gone, carries out its fate when due.
    /// `refate` gives a continued child its next fate. `Some` once gone.
    pub fn poll(&mut self, p: &mut Proc, refate: &mut dyn FnMut(&mut Rng) -> Fate) -> Option<Gone> {
        if let Some(status) = p.child.try_wait().expect("try_wait") {
            if status.signal() != Some(libc::SIGKILL) {
                return Some(Gone::Exited(status));
            }
            if self.board.inc_value(p.inc, IncWord::DiedAt) == Some(0) {
                // Killed by nobody we know of: stamp it now.
                self.board.stamp_death(p.inc);
            }
            *self.kills.entry(p.label.clone()).or_default() += 1;
            return Some(Gone::Killed(p.label.clone()));
        }
        let elapsed = p.since.elapsed();
        match p.state {
            State::Running => {
                // A child that stopped itself at its failpoint (the parent
                // stamps its own stops and leaves `Running` at once).
                if self.board.inc_value(p.inc, IncWord::StoppedSince) != Some(0) {
                    self.begin_stop(p, false);
                    return None;
                }
                if !self.faulting {
                    return None;
                }
                match p.fate.clone() {
                    Fate::Kill(after) if elapsed >= after => self.kill(p),
                    Fate::Stop(after) if elapsed >= after => {
                        self.begin_stop(p, true);
                        p.fate = Fate::Never;
                    }
                    Fate::At(name, _, action) if elapsed >= FALLBACK => {
                        // Never reached: the parent does it now.
                        let by = format!("{} random (after {name})", p.role);
                        match action {
                            Action::Kill => {
                                p.label = by;
                                self.kill(p);
                            }
                            Action::Stop => {
                                p.label = label(p.role, &Fate::Stop(Duration::ZERO));
                                p.fate = Fate::Never;
                                self.begin_stop(p, true);
                            }
                        }
                    }
                    _ => {}
                }
            }
            State::Stopping { since, pause } => {
                if is_stopped(p.pid()) {
                    let kill =
                        self.faulting && self.kill_stopped && p.killable && self.rng.chance(10);
                    p.state = State::Stopped {
                        until: Instant::now() + pause,
                        kill,
                    };
                } else if since.elapsed() > STOP_LIMIT {
                    self.failures.push(format!(
                        "{} (incarnation {}) never showed as stopped",
                        p.role, p.inc
                    ));
                    Self::signal(p, libc::SIGCONT);
                    p.state = State::Running;
                }
            }
            State::Stopped { until, kill } => {
                if Instant::now() >= until || !self.faulting {
                    *self.stops.entry(p.label.clone()).or_default() += 1;
                    let since = self
                        .board
                        .inc_value(p.inc, IncWord::StoppedSince)
                        .unwrap_or(0);
                    self.stop_log
                        .entry(p.inc)
                        .or_default()
                        .push((since, now_ns()));
                    if kill && self.faulting {
                        p.label = format!("{} while stopped", p.role);
                        self.kill(p);
                        return None;
                    }
                    Self::signal(p, libc::SIGCONT);
                    // ORDERING: Release — after the continue: a reader that
                    // sees 0 knows it runs again.
                    self.board
                        .inc(p.inc, IncWord::StoppedSince)
                        .store(0, Ordering::Release);
                    p.state = State::Running;
                    p.fate = refate(&mut self.rng);
                    p.label = label(p.role, &p.fate);
                    p.since = Instant::now();
                }
            }
        }
        None
    }

    /// Ends every fault of every child in `procs` at once (continuing the
    /// stopped ones: one of them may hold what the others wait for) and
    /// waits until all exit (at most `limit`, then kills the rest and
    /// records a failure). `None` for one that had to be killed.
    pub fn end_all(&mut self, procs: &mut [&mut Proc], limit: Duration) -> Vec<Option<Gone>> {
        let was = std::mem::replace(&mut self.faulting, false);
        for p in procs.iter_mut() {
            p.fate = Fate::Never;
        }
        let mut out: Vec<Option<Gone>> = procs.iter().map(|_| None).collect();
        let mut left = procs.len();
        let deadline = Instant::now() + limit;
        while left != 0 {
            for (p, gone) in procs.iter_mut().zip(out.iter_mut()) {
                if gone.is_none() {
                    // Keeps continuing a self-stop that comes late.
                    *gone = self.poll(p, &mut |_| Fate::Never);
                    if gone.is_some() {
                        left -= 1;
                    }
                }
            }
            if left != 0 && Instant::now() > deadline {
                for (p, gone) in procs.iter_mut().zip(&out) {
                    if gone.is_none() {
                        self.failures.push(format!(
                            "{} (slot {}, incarnation {}) did not exit within {limit:?}",
                            p.role, p.slot, p.inc
                        ));
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                    }
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.faulting = was;
        out
    }

    /// Gives `p` a new fate from now on (not a failpoint one: those are
    /// fixed at the spawn).
    pub fn refate(&mut self, p: &mut Proc, fate: Fate) {
        p.label = label(p.role, &fate);
        p.fate = fate;
        p.since = Instant::now();
    }

    /// Records a failure for an unexpected end.
    pub fn unexpected(&mut self, p: &Proc, gone: &Gone) {
        self.failures.push(format!(
            "{} (slot {}, incarnation {}) ended unexpectedly: {gone:?}",
            p.role, p.slot, p.inc
        ));
    }

    /// The stops of `inc`: `(stopped, continued)` in ns.
    pub fn stops_of(&self, inc: u64) -> Vec<(u64, u64)> {
        self.stop_log.get(&inc).cloned().unwrap_or_default()
    }

    /// How long `inc` was stopped between `from` and `to` (ns): time in
    /// which it could not notice anything.
    pub fn stopped_during(&self, inc: u64, from: u64, to: u64) -> u64 {
        self.stops_of(inc)
            .iter()
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }

    /// When `inc` was killed (ns), if it was.
    pub fn died_at(&self, inc: u64) -> Option<u64> {
        self.board
            .inc_value(inc, IncWord::DiedAt)
            .filter(|&t| t != 0)
    }
}

fn label(role: &str, fate: &Fate) -> String {
    match fate {
        Fate::Kill(_) | Fate::Never => format!("{role} random"),
        Fate::Stop(_) => format!("{role} random"),
        Fate::At(name, _, _) => format!("{role} at {name}"),
    }
}

use shmring_testkit::is_stopped;
