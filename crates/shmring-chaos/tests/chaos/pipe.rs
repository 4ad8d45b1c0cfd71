//! Pipe episodes, one at a time, alternating at random between two kinds:
//!
//! * *writer killed*: the writer end is killed (at random or at a ring
//!   failpoint); the reader must drain, see EOF in time, and have received
//!   exactly what the writer sent (plus the one in doubt);
//! * *reader killed*: the reader end is killed (at random or after a
//!   receive) one or more times and re-opened by a new process, either at
//!   once (it must continue exactly where the dead one stopped, less at most
//!   the message it was receiving) or only after the writer, finding the
//!   ring full, got `BrokenPipe` (then the new reader drains and sees EOF).
//!   See `shmring_chaos::channel`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::pipe::{Pipe, PipeConfig};
use shmring::CreateOptions;
use shmring_chaos::channel::{self, Death};
use shmring_chaos::ledger::{Chan, ChanWord, PipeWord};
use shmring_chaos::LEDGER_VAR;
use shmring_testkit::{unique_name, ROLE_VAR};

use crate::run::{Fate, Gone, Kind, Run, Running};

const READER: Kind = Kind::ChanReader(Chan::Pipe);
/// Longest an episode may last before it counts as stuck.
const EPISODE_LIMIT: Duration = Duration::from_secs(20);

fn create(run: &mut Run, var: &'static str) -> (String, Pipe) {
    let name = unique_name("chaos-pipe");
    let config = PipeConfig {
        ring_bytes: 4096,
        fragment_bytes: None,
    };
    let pipe = Pipe::create(&name, false, config, &CreateOptions::default()).expect("pipe");
    run.names.insert(var, name.clone());
    (name, pipe)
}

pub enum Episode {
    WriterKilled(WriterKilled),
    ReaderKilled(ReaderKilled),
}

impl Episode {
    pub fn start(run: &mut Run) -> Episode {
        run.pipe_episodes += 1;
        if run.rng.below(2) == 0 {
            Episode::WriterKilled(WriterKilled::start(run))
        } else {
            Episode::ReaderKilled(ReaderKilled::start(run))
        }
    }

    /// Advances the episode; true when it is over (and checked).
    pub fn step(&mut self, run: &mut Run) -> bool {
        match self {
            Episode::WriterKilled(e) => e.step(run),
            Episode::ReaderKilled(e) => e.step(run),
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
        let (name, pipe) = create(run, "PIPE");
        let reader = Command::new(&run.exe)
            .env(LEDGER_VAR, &run.ledger_path)
            .env(ROLE_VAR, "pipe-reader")
            .env("PIPE", &name)
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
        let (_, pipe) = create(run, "CHAN_PIPE");
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
