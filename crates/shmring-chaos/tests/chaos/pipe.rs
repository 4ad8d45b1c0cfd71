//! Pipe episodes, one at a time, alternating at random between three kinds:
//!
//! * *writer killed*: the writer end is killed (at random or at a ring
//!   failpoint); the reader must drain, see EOF in time, and have received
//!   exactly what the writer sent (plus the one in doubt);
//! * *reader killed*: the reader end is killed (at random or after a
//!   receive) one or more times and re-opened by a new process, either at
//!   once (it must continue exactly where the dead one stopped, less at most
//!   the message it was receiving) or only after the writer, finding the
//!   ring full, got `BrokenPipe` (then the new reader drains and sees EOF).
//!   See `shmring_chaos::channel`;
//! * *handover*: long messages (up to 6,000 bytes through a 4 KiB ring with
//!   256-byte fragments) while both ends change hands in the middle of
//!   messages: writers killed (at random or between the records of a
//!   message, at a ring failpoint) and replaced by a process that takes the
//!   end over by name or inherits it from this one; readers killed (at
//!   random, at a read failpoint, after a receive) and replaced likewise,
//!   or the reading end claimed here, read from with tries (which keep half
//!   a message) and handed to a child; the last writer and the last reader
//!   sometimes stopped (`SIGSTOP`) for up to 300 ms. Every message received
//!   is checked whole and one writer's (see `shmring_chaos::pipe_faults`).

use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::os::unix::process::ExitStatusExt;

use shmring::pipe::{Connection, End, Pipe};
use shmring::process::{Process, ProcessBuilder};
use shmring_chaos::channel::{self, Death};
use shmring_chaos::ledger::{Chan, ChanWord, Counter, HandoverWord, PipeWord, HANDOVER_WRITERS};
use shmring_chaos::pipe_faults::{self, ReadCheck, Received};
use shmring_chaos::HookSetup;
use shmring_testkit::unique_name;

use crate::children;
use crate::run::{Fate, Gone, Kind, Run, Running};

const READER: Kind = Kind::ChanReader(Chan::Pipe);
/// Longest an episode may last before it counts as stuck.
const EPISODE_LIMIT: Duration = Duration::from_secs(20);

/// A pipe for a writer-kill or reader-kill episode.
fn create() -> (String, Pipe) {
    let name = unique_name("chaos-pipe");
    let pipe = Pipe::builder()
        .ring_bytes(4096)
        .duplex(false)
        .create(&name)
        .expect("pipe");
    (name, pipe)
}

pub enum Episode {
    WriterKilled(WriterKilled),
    ReaderKilled(ReaderKilled),
    Handover(Box<Handover>),
}

impl Episode {
    pub fn start(run: &mut Run) -> Episode {
        run.pipe_episodes += 1;
        match run.rng.below(3) {
            0 => Episode::WriterKilled(WriterKilled::start(run)),
            1 => Episode::ReaderKilled(ReaderKilled::start(run)),
            _ => Episode::Handover(Box::new(Handover::start(run))),
        }
    }

    /// Advances the episode; true when it is over (and checked).
    pub fn step(&mut self, run: &mut Run) -> bool {
        match self {
            Episode::WriterKilled(e) => e.step(run),
            Episode::ReaderKilled(e) => e.step(run),
            Episode::Handover(e) => e.step(run),
        }
    }

    /// After the stop flag: runs the episode to its end.
    pub fn finish(mut self, run: &mut Run) {
        let deadline = Instant::now() + EPISODE_LIMIT;
        while !self.step(run) {
            if Instant::now() > deadline {
                run.failures
                    .push("a pipe episode did not end after the stop".into());
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The writer is killed; one reader, never killed, reads to EOF.
pub struct WriterKilled {
    name: String,
    _pipe: Pipe,
    writer: Option<Running>,
    reader: Child,
    writer_gone_at: Option<Instant>,
}

impl WriterKilled {
    fn start(run: &mut Run) -> WriterKilled {
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
        let (name, pipe) = create();
        run.names.pipe = name.clone();
        // Never killed: no failpoint, no clock.
        let hook = HookSetup {
            ledger: run.ledger_path.clone(),
            ..HookSetup::default()
        };
        let reader = Process::new(&children::PIPE_READER, (hook, name.clone()))
            .into_command()
            .expect("prepare pipe reader")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn pipe reader");
        let fate = run.fate(Kind::PipeWriter);
        let writer = Some(run.spawn(Kind::PipeWriter, fate));
        WriterKilled {
            name,
            _pipe: pipe,
            writer,
            reader,
            writer_gone_at: None,
        }
    }

    fn step(&mut self, run: &mut Run) -> bool {
        if let Some(w) = self.writer.as_mut() {
            match run.poll(w) {
                None => return false,
                Some(Gone::Killed(_)) => {}
                // Stopped by the flag (or failed).
                Some(Gone::Exited(s)) if s.success() => {}
                Some(gone) => run.failures.push(format!("pipe writer: {gone:?}")),
            }
            self.writer = None;
            self.writer_gone_at = Some(Instant::now());
        }
        let waited = self.writer_gone_at.map_or(Duration::ZERO, |t| t.elapsed());
        match self.reader.try_wait().expect("try_wait") {
            Some(_) => {
                self.check(run);
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

    fn check(&mut self, run: &mut Run) {
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
    }
}

/// The reader is killed and replaced; the writer is never killed.
pub struct ReaderKilled {
    _pipe: Pipe,
    writer: Option<Running>,
    reader: Option<Running>,
    /// When the next reader may start; `None` while waiting for the writer
    /// to end (it must get `BrokenPipe`).
    restart_at: Option<Instant>,
    /// A reader ended at end of file.
    read_to_end: bool,
    kills: u32,
    started: Instant,
}

impl ReaderKilled {
    fn start(run: &mut Run) -> ReaderKilled {
        channel::reset(&run.ledger, Chan::Pipe);
        let (name, pipe) = create();
        run.names.chan_pipe = name;
        let writer = run.spawn(Kind::ChanWriter(Chan::Pipe), Fate::Never);
        let fate = run.fate(READER);
        let reader = run.spawn(READER, fate);
        ReaderKilled {
            _pipe: pipe,
            writer: Some(writer),
            reader: Some(reader),
            restart_at: None,
            read_to_end: false,
            kills: 0,
            started: Instant::now(),
        }
    }

    fn step(&mut self, run: &mut Run) -> bool {
        if let Some(w) = self.writer.as_mut() {
            match run.poll(w) {
                None => {}
                // Ended by `BrokenPipe` or by the stop flag.
                Some(Gone::Exited(s)) if s.success() => self.writer = None,
                Some(gone) => {
                    run.failures.push(format!("pipe sender: {gone:?}"));
                    self.writer = None;
                }
            }
        }
        if let Some(r) = self.reader.as_mut() {
            if let Some(gone) = run.poll(r) {
                self.reader = None;
                self.reader_gone(run, gone);
            }
        } else if self.read_to_end {
            if self.writer.is_none() {
                self.check(run);
                return true;
            }
        } else {
            let last_reader = self.writer.is_none() || run.ledger.stopping();
            let due = last_reader || self.restart_at.is_some_and(|t| Instant::now() >= t);
            if due {
                let fate = if last_reader {
                    Fate::Never
                } else {
                    run.fate(READER)
                };
                self.reader = Some(run.spawn(READER, fate));
            }
        }
        if self.started.elapsed() > EPISODE_LIMIT {
            run.failures.push(format!(
                "pipe reader-kill episode stuck (writer {}, reader {})",
                if self.writer.is_some() {
                    "running"
                } else {
                    "gone"
                },
                if self.reader.is_some() {
                    "running"
                } else {
                    "gone"
                },
            ));
            for r in [self.writer.as_mut(), self.reader.as_mut()]
                .into_iter()
                .flatten()
            {
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
            return true;
        }
        false
    }

    fn reader_gone(&mut self, run: &mut Run, gone: Gone) {
        let at = match gone {
            Gone::Killed(at) => at,
            Gone::Exited(s) => {
                // ORDERING: Acquire — the reader is gone; pairs with its
                // Release of `Done`.
                let done = run
                    .ledger
                    .chan(Chan::Pipe, ChanWord::Done)
                    .load(Ordering::Acquire);
                if !s.success() || done != 1 {
                    run.failures.push(format!("pipe reader ended with {s}"));
                }
                self.read_to_end = true;
                return;
            }
        };
        self.kills += 1;
        channel::reader_died(&run.ledger, Chan::Pipe, Death::at(at));
        // ORDERING: Acquire — pairs with the readers' Release.
        let ever_attached = run
            .ledger
            .chan(Chan::Pipe, ChanWord::AttachedAt)
            .load(Ordering::Acquire)
            != 0;
        // Wait for `BrokenPipe` (only if some reader had claimed the end:
        // an end never claimed is "not yet attached", and the writer may
        // wait forever), or replace the reader at once.
        let wait_for_writer = ever_attached && (self.kills >= 3 || run.rng.below(2) == 0);
        self.restart_at = if wait_for_writer {
            None
        } else {
            Some(Instant::now() + Duration::from_micros(run.rng.below(10_000)))
        };
    }

    fn check(&mut self, run: &mut Run) {
        if let Err(e) = channel::check_end(&run.ledger, Chan::Pipe) {
            eprintln!("chaos: pipe reader-kill episode: {e}");
            run.pipe_violations += 1;
        }
    }
}

/// How a handover episode's process is to end.
#[derive(Clone, Copy, Debug)]
enum HandFate {
    /// Killed by the parent this long after its start.
    Kill(Duration),
    /// Kills itself at the N-th hit of a failpoint (killed by the parent
    /// after [`FAILPOINT_FALLBACK`] if it never gets there).
    Failpoint(&'static str, u64),
    /// Ends by itself (quota, end of file, `BrokenPipe`, the stop flag).
    Never,
}

const FAILPOINT_FALLBACK: Duration = Duration::from_millis(300);

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own unreaped child; no memory involved.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// A `SIGSTOP` this long after the start, a `SIGCONT` after `length`.
#[derive(Debug)]
struct Stop {
    at: Duration,
    length: Duration,
    since: Option<Instant>,
    over: bool,
}

/// A process of a handover episode.
struct Proc {
    child: Child,
    fate: HandFate,
    stop: Option<Stop>,
    started: Instant,
    label: &'static str,
}

/// How a handover process went.
enum Ended {
    Killed,
    Exited(bool),
}

impl Proc {
    /// Reaps it if gone (tallying a kill), stops, continues or kills it
    /// when due. `Some` once it is gone.
    fn poll(&mut self, run: &mut Run) -> Option<Ended> {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            if status.signal() != Some(libc::SIGKILL) {
                return Some(Ended::Exited(status.success()));
            }
            let at = match self.fate {
                HandFate::Failpoint(name, _) => name,
                _ => "random",
            };
            *run.kills
                .entry(format!("{} at {at}", self.label))
                .or_default() += 1;
            run.total_kills += 1;
            return Some(Ended::Killed);
        }
        let age = self.started.elapsed();
        if let Some(stop) = self.stop.as_mut() {
            match stop.since {
                None if !stop.over && age >= stop.at => {
                    signal(&self.child, libc::SIGSTOP);
                    stop.since = Some(Instant::now());
                    run.ledger.add(Counter::HandoverStops, 1);
                }
                Some(since) if since.elapsed() >= stop.length => {
                    signal(&self.child, libc::SIGCONT);
                    stop.since = None;
                    stop.over = true;
                }
                _ => {}
            }
        }
        let due = match self.fate {
            HandFate::Kill(after) => after,
            HandFate::Failpoint(..) => FAILPOINT_FALLBACK,
            HandFate::Never => return None,
        };
        if age >= due {
            let _ = self.child.kill();
        }
        None
    }

    fn signal(&self, sig: libc::c_int) {
        signal(&self.child, sig);
    }
}

/// The handover episode (see the module docs and
/// `shmring_chaos::pipe_faults`).
pub struct Handover {
    name: String,
    pipe: Pipe,
    writer: Option<Proc>,
    reader: Option<Proc>,
    /// The reading end, claimed here: tries left before it goes to a child.
    held: Option<(Connection, u32)>,
    /// Writers started, and how many the episode plans (the last one sends
    /// a quota and closes; the others are killed).
    writers: u32,
    writers_planned: u32,
    readers: u32,
    readers_planned: u32,
    /// When the next writer or reader starts (`None`: one runs, or none
    /// will).
    next_writer: Option<Instant>,
    next_reader: Option<Instant>,
    writer_deaths: u64,
    reader_deaths: u64,
    handed_over: u64,
    started: Instant,
}

impl Handover {
    fn start(run: &mut Run) -> Handover {
        run.ledger.reset_handover();
        let name = unique_name("chaos-handover");
        let pipe = Pipe::builder()
            .ring_bytes(4096)
            .fragment_bytes(256)
            .duplex(false)
            .create(&name)
            .expect("pipe");
        run.ledger.add(Counter::HandoverEpisodes, 1);
        let now = Instant::now();
        Handover {
            name,
            pipe,
            writer: None,
            reader: None,
            held: None,
            writers: 0,
            writers_planned: 1 + run.rng.below(3) as u32,
            readers: 0,
            readers_planned: 1 + run.rng.below(4) as u32,
            next_writer: Some(now),
            next_reader: Some(now),
            writer_deaths: 0,
            reader_deaths: 0,
            handed_over: 0,
            started: now,
        }
    }

    /// The hook of a handover child whose fate is `fate`.
    fn hook(run: &Run, fate: HandFate) -> HookSetup {
        HookSetup {
            ledger: run.ledger_path.clone(),
            failpoint: match fate {
                HandFate::Failpoint(name, n) => Some((name.to_string(), n)),
                _ => None,
            },
            consumer: None,
            died_at: None,
        }
    }

    /// Starts a handover child prepared by `builder` (`handed`: it was
    /// handed its end, which `builder` carries).
    fn spawn(
        run: &mut Run,
        builder: ProcessBuilder,
        fate: HandFate,
        handed: bool,
        label: &'static str,
    ) -> Proc {
        let mut cmd = builder.into_command().expect("hand the end over");
        cmd.stdin(Stdio::null());
        if handed {
            run.ledger.add(Counter::HandoverHandedOver, 1);
        }
        Proc {
            child: cmd.spawn().expect("spawn handover child"),
            fate,
            stop: None,
            started: Instant::now(),
            label,
        }
    }

    /// A stop of 50 to 300 ms, 1 to 30 ms after the start, one time in two.
    fn maybe_stop(run: &mut Run) -> Option<Stop> {
        (run.rng.below(2) == 0).then(|| Stop {
            at: Duration::from_micros(1_000 + run.rng.below(29_000)),
            length: Duration::from_millis(50 + run.rng.below(250)),
            since: None,
            over: false,
        })
    }

    fn start_writer(&mut self, run: &mut Run) {
        self.writers += 1;
        let w = self.writers;
        let last = w >= self.writers_planned || run.ledger.stopping();
        let points = [
            "ring.claimed",
            "ring.payload-written",
            "ring.header-written",
            "ring.published",
        ];
        let fate = match run.rng.below(2) {
            _ if last => HandFate::Never,
            0 => HandFate::Kill(Duration::from_micros(500 + run.rng.below(30_000))),
            _ => HandFate::Failpoint(
                points[run.rng.below(points.len() as u64) as usize],
                1 + run.rng.below(200),
            ),
        };
        // The last writer sends a quota and closes; the others, until
        // they are killed.
        let quota = if last {
            20 + run.rng.below(100)
        } else {
            u64::MAX
        };
        // One time in two the end is claimed here (taking it over from the
        // dead writer) and handed to the child.
        let held = (run.rng.below(2) == 0)
            .then(|| self.pipe.connection(End::Second).ok())
            .flatten();
        let hook = Self::hook(run, fate);
        let builder = match held.as_ref() {
            Some(conn) => Process::new(&children::HANDOVER_WRITER_HANDED, (hook, conn, w, quota)),
            None => Process::new(
                &children::HANDOVER_WRITER,
                (hook, self.name.clone(), w, quota),
            ),
        };
        let mut proc = Self::spawn(run, builder, fate, held.is_some(), "handover-writer");
        if last {
            proc.stop = Self::maybe_stop(run);
        }
        self.writer = Some(proc);
    }

    fn start_reader(&mut self, run: &mut Run) {
        // After the first, one time in two: the end is claimed here (taking
        // it over from the dead reader), read from with tries, and handed
        // to the next reader later.
        if self.readers > 0 && self.held.is_none() && run.rng.below(2) == 0 {
            if let Ok(conn) = self.pipe.connection(End::First) {
                self.held = Some((conn, 1 + run.rng.below(30) as u32));
                return;
            }
        }
        self.spawn_reader(run, None);
    }

    fn spawn_reader(&mut self, run: &mut Run, share: Option<&Connection>) {
        self.readers += 1;
        let last = self.readers >= self.readers_planned || run.ledger.stopping();
        let points = ["spsc.read", "spsc.released", "chaos.reader-got"];
        let fate = match run.rng.below(2) {
            _ if last => HandFate::Never,
            0 => HandFate::Kill(Duration::from_micros(500 + run.rng.below(30_000))),
            _ => HandFate::Failpoint(
                points[run.rng.below(points.len() as u64) as usize],
                1 + run.rng.below(100),
            ),
        };
        let seed = run.rng.below(u64::MAX);
        let hook = Self::hook(run, fate);
        let builder = match share {
            Some(conn) => Process::new(&children::HANDOVER_READER_HANDED, (hook, conn, seed)),
            None => Process::new(&children::HANDOVER_READER, (hook, self.name.clone(), seed)),
        };
        let mut proc = Self::spawn(run, builder, fate, share.is_some(), "handover-reader");
        if last {
            proc.stop = Self::maybe_stop(run);
        }
        self.reader = Some(proc);
    }

    /// The end held here: a few tries (recorded like a reader's), then
    /// handed to the next reader. True at end of file.
    fn read_held(&mut self, run: &mut Run) -> bool {
        let Some((conn, left)) = self.held.as_mut() else {
            return false;
        };
        let mut check = ReadCheck::new(&run.ledger);
        for _ in 0..8 {
            if let Received::End = pipe_faults::receive(conn, &mut check, false) {
                self.held = None;
                return true;
            }
        }
        *left -= 1;
        if *left == 0 {
            let (conn, _) = self.held.take().expect("held");
            // Whatever part of a message it holds is lost with it.
            self.handed_over += 1;
            self.spawn_reader(run, Some(&conn));
        }
        false
    }

    fn step(&mut self, run: &mut Run) -> bool {
        let now = Instant::now();
        let mut writing_over = false;
        if let Some(w) = self.writer.as_mut() {
            match w.poll(run) {
                None => {}
                Some(Ended::Killed) => {
                    self.writer = None;
                    self.writer_deaths += 1;
                    let delay = Duration::from_micros(run.rng.below(5_000));
                    self.next_writer = Some(now + delay);
                }
                Some(Ended::Exited(ok)) => {
                    if !ok {
                        run.failures.push("a handover writer failed".into());
                    }
                    self.writer = None;
                    self.next_writer = None;
                    writing_over = true;
                }
            }
        } else if self.next_writer.is_some_and(|t| now >= t) {
            if self.writers as usize >= HANDOVER_WRITERS {
                run.failures.push("too many handover writers".into());
                self.next_writer = None;
            } else {
                self.next_writer = None;
                self.start_writer(run);
            }
        } else if self.next_writer.is_none() {
            writing_over = true;
        }
        let mut reading_over = false;
        if let Some(r) = self.reader.as_mut() {
            match r.poll(run) {
                None => {}
                Some(Ended::Killed) => {
                    self.reader = None;
                    self.reader_deaths += 1;
                    let delay = Duration::from_micros(run.rng.below(5_000));
                    self.next_reader = Some(now + delay);
                }
                Some(Ended::Exited(ok)) => {
                    // ORDERING: Acquire — the reader is gone; pairs with
                    // its Release of `Done`.
                    let done = run
                        .ledger
                        .handover(HandoverWord::Done)
                        .load(Ordering::Acquire);
                    if !ok || done != 1 {
                        run.failures.push("a handover reader failed".into());
                    }
                    self.reader = None;
                    self.next_reader = None;
                    reading_over = true;
                }
            }
        } else if self.held.is_some() {
            if self.read_held(run) {
                self.next_reader = None;
                reading_over = true;
            }
        } else if self.next_reader.is_some_and(|t| now >= t) {
            self.next_reader = None;
            self.start_reader(run);
        } else if self.next_reader.is_none() {
            reading_over = true;
        }
        if writing_over && reading_over {
            self.check(run);
            return true;
        }
        if self.started.elapsed() > EPISODE_LIMIT {
            run.failures.push(format!(
                "pipe handover episode {} stuck ({} writers, {} readers)",
                self.name, self.writers, self.readers
            ));
            for p in [self.writer.as_mut(), self.reader.as_mut()]
                .into_iter()
                .flatten()
            {
                p.signal(libc::SIGCONT);
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            return true;
        }
        false
    }

    /// The episode's tally: losses within what the faults allow, and no
    /// end nobody caused.
    fn check(&mut self, run: &mut Run) {
        let l = &run.ledger;
        let lost = pipe_faults::lost(l, self.writers);
        let allowed = self.reader_deaths + self.handed_over;
        l.add(Counter::HandoverLost, lost);
        l.add(Counter::HandoverAllowedLoss, allowed);
        l.add(Counter::HandoverWriterDeaths, self.writer_deaths);
        l.add(Counter::HandoverReaderDeaths, self.reader_deaths);
        if lost > allowed {
            eprintln!(
                "chaos: handover {}: {lost} messages lost, {allowed} allowed ({} readers killed, \
                 {} handed over)",
                self.name, self.reader_deaths, self.handed_over
            );
            run.pipe_violations += 1;
        }
        // ORDERING: Acquire — every process of the episode is gone.
        let word = |w| l.handover(w).load(Ordering::Acquire);
        // A `BrokenPipe` needs a death: a reader's, or a writer's that the
        // reader noticed (closing the pipe) before the next writer came.
        let deaths = self.writer_deaths + self.reader_deaths;
        if word(HandoverWord::Broken) == 1 && deaths == 0 {
            eprintln!("chaos: handover {}: BrokenPipe and nobody died", self.name);
            l.add(Counter::HandoverFalseEnds, 1);
        }
        let caused = deaths > 0 || word(HandoverWord::Finished) == 1 || l.stopping();
        if word(HandoverWord::Done) == 1 && !caused {
            eprintln!("chaos: handover {}: end of file nobody caused", self.name);
            l.add(Counter::HandoverFalseEnds, 1);
        }
    }
}

/// The handover episodes' line of the summary.
pub fn print_handover(run: &Run) {
    let l = &run.ledger;
    println!(
        "chaos: pipe handovers: {} episodes, {} long messages whole, {} torn, {} spliced, {} \
         reordered, {} lost ({} allowed), {} truncated reported; {} writers and {} readers \
         killed, {} ends handed to children, {} stops, {} false ends",
        l.get(Counter::HandoverEpisodes),
        l.get(Counter::HandoverMessages),
        l.get(Counter::HandoverTorn),
        l.get(Counter::HandoverSpliced),
        l.get(Counter::HandoverReordered),
        l.get(Counter::HandoverLost),
        l.get(Counter::HandoverAllowedLoss),
        l.get(Counter::HandoverTruncated),
        l.get(Counter::HandoverWriterDeaths),
        l.get(Counter::HandoverReaderDeaths),
        l.get(Counter::HandoverHandedOver),
        l.get(Counter::HandoverStops),
        l.get(Counter::HandoverFalseEnds),
    );
}

/// What the handover episodes must not have seen: `(what, count)`.
pub fn handover_problems(run: &Run) -> [(&'static str, u64); 4] {
    let l = &run.ledger;
    [
        ("torn pipe messages", l.get(Counter::HandoverTorn)),
        ("spliced pipe messages", l.get(Counter::HandoverSpliced)),
        ("reordered pipe messages", l.get(Counter::HandoverReordered)),
        ("false pipe ends", l.get(Counter::HandoverFalseEnds)),
    ]
}
