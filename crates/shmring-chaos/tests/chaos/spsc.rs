//! The SPSC ring scenario: one writer for the whole run, its readers killed
//! (at random, at `spsc.read`, `spsc.released`, `chaos.reader-got`) and
//! replaced. See `shmring_chaos::channel` for what is checked.
//!
//! After a death the next reader comes either at once (it must continue
//! where the dead one stopped) or only once the writer, finding the ring
//! full, has been told `Closed`; if that does not come within the bound, it
//! is a failure.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::spsc::Ring;
use shmring_chaos::channel::{self, Death};
use shmring_chaos::ledger::{Chan, ChanWord};
use shmring_testkit::unique_name;

use crate::run::{Fate, Gone, Kind, Run, Running};

const READER: Kind = Kind::ChanReader(Chan::Spsc);

/// While no reader runs: when the next one may start.
enum Gap {
    /// At this instant.
    Until(Instant),
    /// Once the writer was told of the death at `died_at` (the ledger's
    /// `ToldOf`); a failure after the deadline.
    Told { died_at: u64, deadline: Instant },
}

pub struct Spsc {
    name: String,
    _ring: Ring,
    writer: Option<Running>,
    reader: Option<Running>,
    gap: Gap,
    /// Gaps that waited for the writer's `Closed`.
    pub told_gaps: u64,
}

impl Spsc {
    pub fn start(run: &mut Run) -> Spsc {
        channel::reset(&run.ledger, Chan::Spsc);
        let name = unique_name("chaos-spsc");
        let ring = Ring::builder()
            .ring_bytes(4096)
            .max_message(64)
            .create(&name)
            .expect("create ring");
        run.names.spsc = name.clone();
        let writer = run.spawn(Kind::ChanWriter(Chan::Spsc), Fate::Never);
        let fate = run.fate(READER);
        let reader = run.spawn(READER, fate);
        Spsc {
            name,
            _ring: ring,
            writer: Some(writer),
            reader: Some(reader),
            gap: Gap::Until(Instant::now()),
            told_gaps: 0,
        }
    }

    /// One round of the parent's loop. `bound`: the liveness period plus
    /// the allowed slack.
    pub fn step(&mut self, run: &mut Run, bound: Duration) {
        if let Some(w) = self.writer.as_mut() {
            if let Some(gone) = run.poll(w) {
                run.failures
                    .push(format!("spsc writer ended early: {gone:?}"));
                self.writer = None;
            }
        }
        if let Some(r) = self.reader.as_mut() {
            match run.poll(r) {
                None => {}
                Some(gone) => {
                    self.reader = None;
                    self.reader_gone(run, gone, bound);
                }
            }
            return;
        }
        if run.ledger.stopping() {
            return;
        }
        let due = match self.gap {
            Gap::Until(at) => Instant::now() >= at,
            Gap::Told { died_at, deadline } => {
                // ORDERING: Acquire — pairs with the writer's Release.
                let told_of = run.ledger.chan(Chan::Spsc, ChanWord::ToldOf);
                if told_of.load(Ordering::Acquire) == died_at {
                    true
                } else if Instant::now() > deadline {
                    run.failures.push(format!(
                        "spsc writer not told `Closed` within {bound:?} of its reader's death"
                    ));
                    true
                } else {
                    false
                }
            }
        };
        if due {
            let fate = run.fate(READER);
            self.reader = Some(run.spawn(READER, fate));
        }
    }

    fn reader_gone(&mut self, run: &mut Run, gone: Gone, bound: Duration) {
        let at = match gone {
            Gone::Killed(at) => at,
            Gone::Exited(status) => {
                run.failures
                    .push(format!("spsc reader ended with {status}"));
                None
            }
        };
        channel::reader_died(&run.ledger, Chan::Spsc, Death::at(at));
        // ORDERING: Acquire — pairs with the readers' and killers' Release.
        let clock = |w| run.ledger.chan(Chan::Spsc, w).load(Ordering::Acquire);
        let ever_attached = clock(ChanWord::AttachedAt) != 0;
        let died_at = clock(ChanWord::DiedAt);
        self.gap = if ever_attached && run.rng.below(2) == 0 {
            self.told_gaps += 1;
            Gap::Told {
                died_at,
                // Time for the writer to fill the ring, then the bound.
                deadline: Instant::now() + bound + Duration::from_millis(200),
            }
        } else {
            Gap::Until(Instant::now() + Duration::from_micros(run.rng.below(5_000)))
        };
    }

    /// After the stop flag: lets the writer and the reader end, drains what
    /// is left, and checks the tally. Returns the messages drained.
    pub fn finish(mut self, run: &mut Run) -> u64 {
        if let Some(mut w) = self.writer.take() {
            match run.wait_gone(&mut w, Duration::from_secs(20)) {
                Some(Gone::Exited(s)) if s.success() => {}
                None => {}
                Some(gone) => run.failures.push(format!("spsc writer: {gone:?}")),
            }
        }
        if let Some(mut r) = self.reader.take() {
            match run.wait_gone(&mut r, Duration::from_secs(20)) {
                Some(Gone::Exited(s)) if s.success() => {}
                Some(Gone::Killed(at)) => {
                    channel::reader_died(&run.ledger, Chan::Spsc, Death::at(at))
                }
                None => channel::reader_died(&run.ledger, Chan::Spsc, Death::Random),
                Some(gone) => run.failures.push(format!("spsc reader: {gone:?}")),
            }
        }
        let drained = channel::drain(&run.ledger, Chan::Spsc, &self.name);
        if let Err(e) = channel::check_end(&run.ledger, Chan::Spsc) {
            run.failures.push(format!("spsc ring: {e}"));
        }
        drained
    }
}
