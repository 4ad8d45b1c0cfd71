//! Channels whose *reader* is killed: a plain SPSC ring
//! ([`shmring::spsc::Ring`]) and a simplex pipe ([`shmring::pipe`]).
//!
//! # What the library promises about a dead reader
//!
//! * SPSC ring (`shmring::spsc`): a blocked `Producer::push` returns once
//!   "the consumer's process dies (checked every 100 ms)", with `Closed`
//!   ("also when the consumer died"); a role "held by a process that died is
//!   taken over by the next claimant". A push that finds room does not look
//!   at the reader at all. The ring is *not* closed by that answer, so the
//!   writer here retries the same message until a new reader has attached.
//! * Pipe (`shmring::pipe`, "Crash behaviour"): "a `send` that has to wait
//!   for room reports `BrokenPipe`" within the liveness period; the writer
//!   then closes the ring on the dead reader's behalf, so an end re-opened
//!   after that "finds it closed": it drains what was sent, then gets
//!   `Eof`. A message interrupted by a broken pipe "is never delivered".
//! * Both, from the crash contract: a killed reader loses at most the one
//!   message it was in the middle of getting, and a reader taking its
//!   place duplicates nothing and skips nothing else.
//!
//! # How it is checked
//!
//! The writer sends sequence numbers 0, 1, ... and is never killed. Each
//! reader incarnation continues from the ledger's [`ChanWord::Expected`]
//! and must see exactly `Expected, Expected + 1, ...`. Only its first
//! message may skip, by between [`ChanWord::MinSkip`] and
//! [`ChanWord::MaxSkip`] messages, which the parent sets from how the
//! previous readers died ([`reader_died`]): inside a receive (its
//! [`ChanWord::InFlight`] set) it may have consumed one; at the SPSC
//! failpoint `spsc.read` (copied, head not released) it consumed nothing;
//! at `spsc.released` or `chaos.reader-got` (after the receive returned) it
//! surely consumed one. Every other difference is a violation.
//!
//! The writer times each `Closed`/`BrokenPipe` from the reader's death (or
//! the send's start, if later) and counts one that came while the reader
//! that was attached when the send began was still alive as *spurious*.

use shmring::core::wait::Until;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmring::core::{PopError, PushError};
use shmring::pipe::{Connection, End, RecvError, SendError};
use shmring::spsc::Ring;

use crate::ledger::{now_ns, Chan, ChanWord, Counter, Ledger};
use crate::roles::throttle;
use crate::{decode, hook, message, Tag};

/// The producer identity channel payloads carry.
pub const SENDER: u32 = 1000;

/// How long an SPSC push or pop waits before looking at the stop flag.
const SLICE: Duration = Duration::from_millis(250);

fn word(ledger: &Ledger, c: Chan, w: ChanWord) -> &AtomicU64 {
    ledger.chan(c, w)
}

/// The writing end of a channel.
enum Tx {
    Ring(shmring::spsc::Producer),
    Pipe(Box<Connection>),
}

/// What one send attempt came to.
enum Sent {
    Yes,
    /// Timed out (SPSC only): the reader is slow, or none is attached.
    NotYet,
    /// `Closed` or `BrokenPipe`: the reader is gone.
    ReaderGone,
}

impl Tx {
    fn open(c: Chan, name: &str) -> Tx {
        match c {
            Chan::Spsc => Tx::Ring(
                Ring::open(name)
                    .expect("open the ring")
                    .producer()
                    .expect("claim the ring's producer role"),
            ),
            Chan::Pipe => Tx::Pipe(Box::new(
                Connection::open(name, End::Second).expect("open pipe writer end"),
            )),
        }
    }

    fn send(&mut self, msg: &[u8]) -> Sent {
        match self {
            Tx::Ring(tx) => match tx.push(msg, Until::after(SLICE)) {
                Ok(()) => Sent::Yes,
                Err(PushError::Timeout) => Sent::NotYet,
                Err(PushError::Closed) => Sent::ReaderGone,
                Err(e) => panic!("spsc writer: {e}"),
            },
            Tx::Pipe(tx) => match tx.send_bytes(msg, 0, None) {
                Ok(()) => Sent::Yes,
                Err(SendError::BrokenPipe) => Sent::ReaderGone,
                Err(e) => panic!("pipe writer: {e}"),
            },
        }
    }
}

/// The writer of channel `c` (never killed): sends 0, 1, ... until the stop
/// flag (or, for a pipe, until `BrokenPipe`), timing how long it took to
/// learn of each reader death.
pub fn writer(ledger: &Ledger, c: Chan, name: &str) {
    let mut tx = Tx::open(c, name);
    let w = |w| word(ledger, c, w);
    let (max_counter, seen_counter) = match c {
        Chan::Spsc => (Counter::MaxClosedNs, Counter::ClosedSeen),
        Chan::Pipe => (Counter::MaxBrokenPipeNs, Counter::BrokenPipeSeen),
    };
    let mut buf = Vec::new();
    // The death a `ReaderGone` already told us about.
    let mut told_of = 0;
    let mut seq = 0u64;
    while !ledger.stopping() && seq < u64::from(u32::MAX) {
        let tag = Tag {
            producer: SENDER,
            incarnation: 0,
            ring: 0,
            seq: seq as u32,
        };
        message(tag, &mut buf);
        // ORDERING: Release — read by the parent after the writer is gone.
        w(ChanWord::Sending).store(seq + 1, Ordering::Release);
        let started = now_ns();
        loop {
            // The clocks before this attempt: the reader attached after the
            // last death (`attached0 > died0`) lives unless `DiedAt` moves.
            // ORDERING: Acquire on the clocks — pairs with the killer's and
            // the reader's Release stores.
            let (died0, attached0) = (
                w(ChanWord::DiedAt).load(Ordering::Acquire),
                w(ChanWord::AttachedAt).load(Ordering::Acquire),
            );
            let outcome = tx.send(&buf);
            let now = now_ns();
            // ORDERING: Acquire — as above.
            let died = w(ChanWord::DiedAt).load(Ordering::Acquire);
            let attached = w(ChanWord::AttachedAt).load(Ordering::Acquire);
            match outcome {
                Sent::Yes => break,
                Sent::NotYet if ledger.stopping() => return,
                Sent::NotYet => {
                    // Still blocked while the reader is dead, not replaced,
                    // and had attached (an end never claimed is "not yet
                    // attached", on which a writer may wait forever).
                    if died > attached && attached != 0 && died != told_of {
                        ledger.max(max_counter, now - started.max(died));
                    }
                }
                Sent::ReaderGone => {
                    if died == died0 && attached0 > died0 {
                        eprintln!("chaos: {c:?} writer told the reader is gone while it lived");
                        ledger.add(Counter::Spurious, 1);
                    }
                    if died != told_of {
                        told_of = died;
                        // ORDERING: Release — the parent's Acquire ends its
                        // wait for this answer.
                        w(ChanWord::ToldOf).store(died, Ordering::Release);
                        ledger.add(seen_counter, 1);
                        ledger.max(max_counter, now - started.max(died));
                    }
                    match c {
                        // Never delivered: `Sent` stays below this one.
                        Chan::Pipe => return,
                        // The ring is not closed: retry once a reader is back.
                        Chan::Spsc if ledger.stopping() => return,
                        Chan::Spsc => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
        }
        seq += 1;
        // ORDERING: Release — as above.
        w(ChanWord::Sent).store(seq, Ordering::Release);
        throttle(seq);
    }
}

/// The reading end of a channel.
enum Rx {
    Ring(shmring::spsc::Consumer),
    Pipe(Box<Connection>),
}

/// What one receive came to.
enum Got {
    Message,
    /// Timed out (SPSC only).
    Nothing,
    /// End of file (pipe) or closed and drained (ring).
    End,
}

impl Rx {
    /// Claims the reading end of channel `c` (taking it over from a dead
    /// holder); panics when it cannot.
    fn open(c: Chan, name: &str) -> Rx {
        match c {
            Chan::Spsc => Rx::Ring(
                Ring::open(name)
                    .expect("open the ring")
                    .consumer()
                    .expect("claim the ring's consumer role"),
            ),
            Chan::Pipe => Rx::Pipe(Box::new(
                Connection::open(name, End::First).expect("open pipe reader end"),
            )),
        }
    }

    fn recv(&mut self, buf: &mut Vec<u8>, wait: bool) -> Got {
        match self {
            Rx::Ring(rx) => {
                let got = if wait {
                    rx.pop(buf, Until::after(Duration::from_millis(50)))
                } else {
                    rx.try_pop(buf)
                };
                match got {
                    Ok(_) => Got::Message,
                    Err(PopError::Timeout | PopError::Empty) => Got::Nothing,
                    Err(PopError::Closed) => Got::End,
                    Err(e) => panic!("spsc reader: {e}"),
                }
            }
            Rx::Pipe(rx) => match rx.recv_bytes(None) {
                Ok(got) => {
                    *buf = got;
                    Got::Message
                }
                Err(RecvError::Eof) => Got::End,
                Err(e) => panic!("pipe reader: {e}"),
            },
        }
    }
}

/// One reader incarnation's check of what it receives (see the module docs).
struct SeqCheck<'a> {
    ledger: &'a Ledger,
    c: Chan,
    expected: u64,
    /// Allowed skip before the first message: `min..=max`.
    skip: Option<(u64, u64)>,
}

impl<'a> SeqCheck<'a> {
    fn new(ledger: &'a Ledger, c: Chan) -> SeqCheck<'a> {
        // ORDERING: Acquire — pairs with the parent's and the previous
        // readers' Release stores (all of them are gone by now).
        let load = |w| word(ledger, c, w).load(Ordering::Acquire);
        let expected = load(ChanWord::Expected);
        let skip = if load(ChanWord::SkipBase) == expected {
            (load(ChanWord::MinSkip), load(ChanWord::MaxSkip))
        } else {
            (0, 0)
        };
        SeqCheck {
            ledger,
            c,
            expected,
            skip: Some(skip),
        }
    }

    fn receiving(&self) {
        // ORDERING: Release — read by the parent once we are dead.
        word(self.ledger, self.c, ChanWord::InFlight).store(self.expected + 1, Ordering::Release);
    }

    fn got(&mut self, buf: &[u8]) {
        let (lo, hi) = self.skip.take().unwrap_or((0, 0));
        let seq = match decode(buf) {
            Some(t) if t.producer == SENDER => u64::from(t.seq),
            _ => {
                eprintln!("chaos: {:?} reader: torn message", self.c);
                self.ledger.add(Counter::ReaderViolations, 1);
                return;
            }
        };
        let skipped = seq.wrapping_sub(self.expected);
        if seq < self.expected || skipped < lo || skipped > hi {
            eprintln!(
                "chaos: {:?} reader: got {seq}, expected {} skipping {lo}..={hi}",
                self.c, self.expected
            );
            self.ledger.add(Counter::ReaderViolations, 1);
        } else {
            self.ledger.add(Counter::ReaderLost, skipped);
        }
        self.ledger.add(Counter::ReaderMessages, 1);
        self.expected = self.expected.max(seq + 1);
        let w = |w| word(self.ledger, self.c, w);
        // ORDERING: Release — the parent and the next reader read these.
        w(ChanWord::Expected).store(self.expected, Ordering::Release);
        // ORDERING: Release — cleared only after `Expected` moved on.
        w(ChanWord::InFlight).store(0, Ordering::Release);
    }
}

/// A reader of channel `c`: claims the end, then receives and checks until
/// end of file (pipe) or the stop flag (ring). Killed at random or at a
/// failpoint.
pub fn reader(ledger: &Ledger, c: Chan, name: &str) {
    let mut rx = Rx::open(c, name);
    // ORDERING: Release — read by the writer's Acquire (spurious check).
    word(ledger, c, ChanWord::AttachedAt).store(now_ns(), Ordering::Release);
    let mut check = SeqCheck::new(ledger, c);
    let mut buf = Vec::new();
    loop {
        if c == Chan::Spsc && ledger.stopping() {
            return;
        }
        check.receiving();
        match rx.recv(&mut buf, true) {
            Got::Message => {
                hook("chaos.reader-got", &[]);
                check.got(&buf);
            }
            Got::Nothing => {}
            Got::End => break,
        }
    }
    // ORDERING: Release — the parent reads it after our exit.
    word(ledger, c, ChanWord::Done).store(1, Ordering::Release);
}

/// Drains an SPSC ring in the parent after everyone stopped, with the same
/// check as a reader. Returns how many messages it took.
pub fn drain(ledger: &Ledger, c: Chan, name: &str) -> u64 {
    let mut rx = Rx::open(c, name);
    let mut check = SeqCheck::new(ledger, c);
    let mut buf = Vec::new();
    let mut n = 0;
    while let Got::Message = rx.recv(&mut buf, false) {
        check.got(&buf);
        n += 1;
    }
    n
}

/// How a reader died, as far as its killer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// At a random moment: if inside a receive, it may have consumed one.
    Random,
    /// At `spsc.read`: copied, head not released: it consumed nothing.
    BeforeRelease,
    /// At `spsc.released` or `chaos.reader-got`: it consumed one.
    AfterRelease,
}

impl Death {
    /// From the failpoint a reader killed itself at (`None`: random).
    pub fn at(failpoint: Option<&str>) -> Death {
        match failpoint {
            None => Death::Random,
            Some("spsc.read") => Death::BeforeRelease,
            Some(_) => Death::AfterRelease,
        }
    }
}

/// The parent's bookkeeping after reaping a dead reader of `c`, before
/// starting the next: widens the allowed skip (see the module docs).
pub fn reader_died(ledger: &Ledger, c: Chan, how: Death) {
    let w = |w| word(ledger, c, w);
    // ORDERING: Acquire/AcqRel — the reader is reaped; pairs with its
    // Release stores. No reader runs until the next is spawned.
    let expected = w(ChanWord::Expected).load(Ordering::Acquire);
    let in_flight = w(ChanWord::InFlight).swap(0, Ordering::AcqRel) == expected + 1;
    // ORDERING: Acquire — as above (these the parent itself wrote last).
    let (mut lo, mut hi) = if w(ChanWord::SkipBase).load(Ordering::Acquire) == expected {
        (
            w(ChanWord::MinSkip).load(Ordering::Acquire),
            w(ChanWord::MaxSkip).load(Ordering::Acquire),
        )
    } else {
        (0, 0)
    };
    match how {
        Death::Random if in_flight => hi += 1,
        Death::Random | Death::BeforeRelease => {}
        Death::AfterRelease => {
            lo += 1;
            hi += 1;
        }
    }
    for (k, v) in [
        (ChanWord::SkipBase, expected),
        (ChanWord::MinSkip, lo),
        (ChanWord::MaxSkip, hi),
    ] {
        // ORDERING: Release — read by the next reader's Acquire.
        w(k).store(v, Ordering::Release);
    }
}

/// The final tally of channel `c`, once its writer and readers are gone and
/// what was left is drained: every message sent was received, except the
/// ones the last dead readers may have taken with them.
///
/// # Errors
///
/// What does not add up.
pub fn check_end(ledger: &Ledger, c: Chan) -> Result<(), String> {
    // ORDERING: Acquire — everyone who wrote these is gone.
    let load = |w| word(ledger, c, w).load(Ordering::Acquire);
    let (sent, expected) = (load(ChanWord::Sent), load(ChanWord::Expected));
    let (lo, hi) = if load(ChanWord::SkipBase) == expected {
        (load(ChanWord::MinSkip), load(ChanWord::MaxSkip))
    } else {
        (0, 0)
    };
    let missing = sent.wrapping_sub(expected);
    if expected > sent || missing < lo || missing > hi {
        return Err(format!(
            "sent {sent}, received up to {expected}, the last dead readers may have \
             taken {lo}..={hi}"
        ));
    }
    ledger.add(Counter::ReaderLost, missing);
    Ok(())
}

/// Zeroes channel `c`'s per-ring words (no writer or reader of it runs).
pub fn reset(ledger: &Ledger, c: Chan) {
    for w in [
        ChanWord::Sent,
        ChanWord::Sending,
        ChanWord::Expected,
        ChanWord::InFlight,
        ChanWord::SkipBase,
        ChanWord::MinSkip,
        ChanWord::MaxSkip,
        ChanWord::DiedAt,
        ChanWord::AttachedAt,
        ChanWord::Done,
        ChanWord::ToldOf,
    ] {
        // ORDERING: SeqCst — no process of this channel exists yet.
        word(ledger, c, w).store(0, Ordering::SeqCst);
    }
}
