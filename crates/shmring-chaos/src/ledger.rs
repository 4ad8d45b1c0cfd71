//! The ledger: a small file-backed shared mapping where children record what
//! they did, so that what a killed process knew survives it.
//!
//! All of it is `AtomicU64` words; every process maps the same file. Layout
//! (in words): [`Counter`]s, then per-producer, per-consumer, lock, dict,
//! pipe and channel words, then two bitmaps per producer (delivered, in
//! doubt), each [`MAX_SEQ`] bits.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::wire::{CodecError, Field};

/// Producer identities in the queue scenario.
pub const PRODUCERS: usize = 3;
/// Consumer identities in the queue scenario.
pub const CONSUMERS: usize = 2;
/// Worker identities in the lock and dict scenarios (each).
pub const WORKERS: usize = 2;
/// Sequence numbers per producer the bitmaps can hold; producers stop there.
pub const MAX_SEQ: u64 = 1 << 25;

/// Shared counters, summed over every process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Set once: children finish their current step and exit.
    Stop = 0,
    /// Messages whose checksum, length or filler was wrong.
    Torn,
    /// Messages delivered a second time.
    Duplicated,
    /// A lock taken with `Acquired::Yes` while its pair was inconsistent.
    LockViolations,
    /// Locks taken over from a dead holder (`Acquired::OwnerDied`).
    OwnerDied,
    /// Dict keys found with neither their old nor their new value.
    DictViolations,
    /// Dict updates completed.
    DictUpdates,
    /// Lock critical sections completed.
    LockRounds,
    /// Longest wait for a lock that ended in a takeover from a dead holder,
    /// ns (`fetch_max`): what the liveness bound is about.
    MaxLockWaitNs,
    /// Longest dict `update_with`, ns.
    MaxDictWaitNs,
    /// Longest time from a pipe writer's death to the reader's EOF, ns.
    MaxEofNs,
    /// Pipe episodes whose reader saw a gap, a duplicate or a torn message.
    PipeViolations,
    /// Messages received over pipes.
    PipeMessages,
    /// Longest wait for a lock of any kind, ns (reported, not bounded: a
    /// live holder descheduled on a busy machine counts too).
    MaxLockWaitAnyNs,
    /// Queue deliveries whose sequence number was not above the last one
    /// this consumer saw from the same producer incarnation (FIFO per
    /// producer broken).
    OutOfOrder,
    /// Queue deliveries that came, on one ring, after a delivery from a
    /// later owner of that ring (a dead producer's records must come first).
    RingOrder,
    /// Producer incarnations started (each takes the next number).
    Incarnations,
    /// Channel readers' violations: a gap, a duplicate, a reordering or a
    /// torn message (see [`crate::channel`]).
    ReaderViolations,
    /// Channel messages lost with a killed reader (at most one per death).
    ReaderLost,
    /// Channel messages received.
    ReaderMessages,
    /// `Closed` answers to an SPSC writer whose reader died.
    ClosedSeen,
    /// `BrokenPipe` answers to a pipe writer whose reader died.
    BrokenPipeSeen,
    /// `Closed`/`BrokenPipe` answers while the reader lived.
    Spurious,
    /// Longest time from an SPSC reader's death (or the push's start, if
    /// later) to the writer's `Closed`, or to a timed-out retry while the
    /// reader stayed dead, ns.
    MaxClosedNs,
    /// Longest time from a pipe reader's death (or the send's start) to the
    /// writer's `BrokenPipe`, ns.
    MaxBrokenPipeNs,
    /// Pipe handover episodes ([`crate::pipe_faults`]): messages received
    /// whole.
    HandoverMessages,
    /// Handover messages that were not one message: the tail of one
    /// (no valid head).
    HandoverTorn,
    /// Handover messages with a valid head but the wrong length or body:
    /// two messages (or two writers') spliced.
    HandoverSpliced,
    /// Handover messages received twice or out of order.
    HandoverReordered,
    /// `TruncatedMessage` reports to handover readers (allowed: a writer
    /// died mid-message and was replaced, or died at end of file).
    HandoverTruncated,
    /// Handover messages sent and never received (computed by the parent).
    HandoverLost,
    /// Losses the faults allow: one per reader killed or end handed over.
    HandoverAllowedLoss,
    /// An end of file nobody caused, or a `BrokenPipe` while every reader
    /// lived.
    HandoverFalseEnds,
    /// Handover episodes run.
    HandoverEpisodes,
    /// Handover writers killed.
    HandoverWriterDeaths,
    /// Handover readers killed.
    HandoverReaderDeaths,
    /// Handover ends handed to a child by the parent.
    HandoverHandedOver,
    /// Handover processes stopped (`SIGSTOP`, then `SIGCONT`).
    HandoverStops,
}

const COUNTERS: usize = 48;
const _: () = assert!((Counter::HandoverStops as usize) < COUNTERS);
const _: () = assert!((HandoverWord::Writers as usize) + 4 * HANDOVER_WRITERS <= HANDOVER_WORDS);
const _: () = assert!((ChanWord::ToldOf as usize) < CHAN_WORDS);
const PRODUCER_BASE: usize = COUNTERS;
const CONSUMER_BASE: usize = PRODUCER_BASE + 2 * PRODUCERS;
const LOCK_BASE: usize = CONSUMER_BASE + CONSUMERS;
const DICT_BASE: usize = LOCK_BASE + 2;
const PIPE_BASE: usize = DICT_BASE + 2 * WORKERS;
const PIPE_WORDS: usize = 6;
const CHAN_BASE: usize = PIPE_BASE + PIPE_WORDS;
const CHAN_WORDS: usize = 16;
const HANDOVER_BASE: usize = CHAN_BASE + 2 * CHAN_WORDS;
const HANDOVER_WORDS: usize = 48;
/// Writer incarnations one handover episode may have (each has its words).
pub const HANDOVER_WRITERS: usize = 8;
const BITMAP_BASE: usize = (HANDOVER_BASE + HANDOVER_WORDS).next_multiple_of(8);
const BITMAP_WORDS: usize = (MAX_SEQ / 64) as usize;
const TOTAL_WORDS: usize = BITMAP_BASE + 2 * PRODUCERS * BITMAP_WORDS;

/// Words of the pipe episode (reset by the parent for each one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeWord {
    /// Messages the writer finished sending.
    Sent = 0,
    /// Sequence number + 1 of the message being sent (0: none).
    Sending,
    /// `CLOCK_MONOTONIC` ns of the writer's death (written by the killer).
    DiedAt,
    /// Messages the reader got (a prefix 0..n when all is well).
    Received,
    /// 1 once the reader saw EOF and wrote its figures.
    Done,
    /// Reader's own violations (gap, duplicate, torn, wrong error).
    Violations,
}

/// A channel whose reader is killed: a plain SPSC ring, or a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Chan {
    /// The SPSC ring scenario (one writer for the whole run).
    Spsc = 0,
    /// The pipe episodes whose reader end is killed.
    Pipe,
}

impl Field for Chan {
    fn put(&self, out: &mut Vec<u8>) {
        (*self == Chan::Pipe).put(out);
    }

    fn take(input: &mut &[u8]) -> Result<Chan, CodecError> {
        Ok(if bool::take(input)? {
            Chan::Pipe
        } else {
            Chan::Spsc
        })
    }
}
crate::wire_message!(Chan);

/// Words of a [`Chan`]. `Sent`, `Sending`, `Expected`, `InFlight` and the
/// skip words count from 0 for the channel's current ring or pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChanWord {
    /// Messages the writer finished sending.
    Sent = 0,
    /// Sequence number + 1 of the message being sent (0: none).
    Sending,
    /// The next sequence number the readers expect: everything below it
    /// was received and recorded.
    Expected,
    /// `Expected + 1` while a reader is inside a receive, else 0.
    InFlight,
    /// The `Expected` value the two skip words apply to.
    SkipBase,
    /// Fewest messages the next reader must find missing after `SkipBase`
    /// (readers that died after consuming one).
    MinSkip,
    /// Most it may find missing (readers that died inside a receive).
    MaxSkip,
    /// `CLOCK_MONOTONIC` ns of the last reader death (written by the killer
    /// just before the kill).
    DiedAt,
    /// `CLOCK_MONOTONIC` ns at which the last reader had claimed its end.
    AttachedAt,
    /// 1 once a pipe reader saw end of file.
    Done,
    /// The `DiedAt` value of the last death the writer was told of.
    ToldOf,
}

/// Words of the current pipe handover episode ([`crate::pipe_faults`]),
/// reset by the parent for each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverWord {
    /// `(writer << 32) | (seq + 1)` of the last message the readers
    /// recorded (0: none yet).
    LastSeen = 0,
    /// 1 once a reader saw end of file.
    Done,
    /// 1 once a writer got `BrokenPipe`.
    Broken,
    /// 1 once the last writer sent its whole quota (then it closes).
    Finished,
    /// First of the per-writer words (see [`HandoverWriterWord`]).
    Writers,
}

/// Per-writer words of a handover episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverWriterWord {
    /// Messages the writer finished sending.
    Sent = 0,
    /// Sequence number + 1 of the message being sent (0: none).
    Sending,
    /// Its messages the readers recorded.
    Delivered,
    /// Highest sequence number + 1 of its messages the readers recorded.
    MaxSeen,
}

/// Whose death a ledger clock word records (written just before `SIGKILL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathClock {
    /// The writer of a writer-kill pipe episode ([`PipeWord::DiedAt`]).
    PipeWriter,
    /// The reader of a channel ([`ChanWord::DiedAt`]).
    Reader(Chan),
}

impl Field for DeathClock {
    fn put(&self, out: &mut Vec<u8>) {
        // A reader's clock, and whose.
        match self {
            DeathClock::PipeWriter => false.put(out),
            DeathClock::Reader(c) => {
                true.put(out);
                c.put(out);
            }
        }
    }

    fn take(input: &mut &[u8]) -> Result<DeathClock, CodecError> {
        Ok(if bool::take(input)? {
            DeathClock::Reader(Chan::take(input)?)
        } else {
            DeathClock::PipeWriter
        })
    }
}

/// A mapped ledger. Cheap to share by reference; every access is atomic.
#[derive(Debug)]
pub struct Ledger {
    map: MmapRaw,
}

impl Ledger {
    /// Creates (zeroed) the ledger file at `path`.
    ///
    /// # Errors
    ///
    /// The file could not be created, sized or mapped.
    pub fn create(path: &Path) -> std::io::Result<Ledger> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len((TOTAL_WORDS * 8) as u64)?;
        Self::map(&file)
    }

    /// Opens the ledger file at `path`.
    ///
    /// # Errors
    ///
    /// The file could not be opened or mapped.
    pub fn open(path: &Path) -> std::io::Result<Ledger> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(&file)
    }

    fn map(file: &File) -> std::io::Result<Ledger> {
        let map = MmapRaw::map_raw(file)?;
        if map.len() < TOTAL_WORDS * 8 {
            return Err(std::io::Error::other("ledger file too short"));
        }
        Ok(Ledger { map })
    }

    fn words(&self) -> &[AtomicU64] {
        // AtomicU64 is valid for any bytes and for concurrent access from
        // other processes; the slice borrows `self`, which keeps the mapping.
        // SAFETY: the mapping is page aligned and at least TOTAL_WORDS * 8
        // bytes (checked in `map`).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), TOTAL_WORDS) }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words()[i]
    }

    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        // ORDERING: Acquire — pairs with the Release RMWs below; the parent
        // reads after the children are gone anyway.
        self.word(c as usize).load(Ordering::Acquire)
    }

    /// Adds to a counter.
    pub fn add(&self, c: Counter, n: u64) {
        // ORDERING: Release — publishes what the child did before counting.
        self.word(c as usize).fetch_add(n, Ordering::Release);
    }

    /// Raises a maximum.
    pub fn max(&self, c: Counter, v: u64) {
        // ORDERING: Relaxed — a statistic.
        self.word(c as usize).fetch_max(v, Ordering::Relaxed);
    }

    /// Whether the parent asked everyone to stop.
    pub fn stopping(&self) -> bool {
        self.get(Counter::Stop) != 0
    }

    /// `(next, pushing)` words of producer `p`: the next sequence number to
    /// push, and `seq + 1` while `seq` is being pushed.
    pub fn producer(&self, p: usize) -> (&AtomicU64, &AtomicU64) {
        let base = PRODUCER_BASE + 2 * p;
        (self.word(base), self.word(base + 1))
    }

    /// Consumer `c`'s in-flight word: `(producer << 40 | seq) + 1` of the
    /// record it last copied out and has not yet recorded, or 0.
    pub fn in_flight(&self, c: usize) -> &AtomicU64 {
        self.word(CONSUMER_BASE + c)
    }

    /// The pair a lock protects: equal outside critical sections.
    pub fn lock_pair(&self) -> (&AtomicU64, &AtomicU64) {
        (self.word(LOCK_BASE), self.word(LOCK_BASE + 1))
    }

    /// `(done, intent)` of dict worker `d`: its key's confirmed value, and
    /// the value it is writing.
    pub fn dict_worker(&self, d: usize) -> (&AtomicU64, &AtomicU64) {
        let base = DICT_BASE + 2 * d;
        (self.word(base), self.word(base + 1))
    }

    /// A word of the current pipe episode.
    pub fn pipe(&self, w: PipeWord) -> &AtomicU64 {
        self.word(PIPE_BASE + w as usize)
    }

    /// A word of channel `c`.
    pub fn chan(&self, c: Chan, w: ChanWord) -> &AtomicU64 {
        self.word(CHAN_BASE + c as usize * CHAN_WORDS + w as usize)
    }

    /// A word of the current pipe handover episode.
    pub fn handover(&self, w: HandoverWord) -> &AtomicU64 {
        self.word(HANDOVER_BASE + w as usize)
    }

    /// A word of writer `writer` (1-based, at most [`HANDOVER_WRITERS`]) of
    /// the current pipe handover episode.
    ///
    /// # Panics
    ///
    /// When `writer` is out of range.
    pub fn handover_writer(&self, writer: u32, w: HandoverWriterWord) -> &AtomicU64 {
        let slot = writer as usize;
        assert!((1..=HANDOVER_WRITERS).contains(&slot), "writer {writer}");
        self.word(HANDOVER_BASE + HandoverWord::Writers as usize + 4 * (slot - 1) + w as usize)
    }

    /// Zeroes the words of the pipe handover episode (no process of it
    /// runs).
    pub fn reset_handover(&self) {
        for i in 0..HANDOVER_WORDS {
            // ORDERING: SeqCst — no child of the episode exists yet.
            self.word(HANDOVER_BASE + i).store(0, Ordering::SeqCst);
        }
    }

    /// The word that records the time of death of `clock`'s process.
    pub fn died_at(&self, clock: DeathClock) -> &AtomicU64 {
        match clock {
            DeathClock::PipeWriter => self.pipe(PipeWord::DiedAt),
            DeathClock::Reader(c) => self.chan(c, ChanWord::DiedAt),
        }
    }

    /// Takes the next producer incarnation number (never 0).
    pub fn next_incarnation(&self) -> u32 {
        // ORDERING: AcqRel — one modification order for every incarnation;
        // a ring's next owner takes its number after its predecessor (which
        // took one before publishing anything) was seen dead, so numbers
        // grow along each ring.
        let n = self
            .word(Counter::Incarnations as usize)
            .fetch_add(1, Ordering::AcqRel);
        u32::try_from(n + 1).expect("fewer than 2^32 incarnations")
    }

    fn bit(&self, which: usize, p: usize, seq: u64) -> (&AtomicU64, u64) {
        assert!(
            p < PRODUCERS && seq < MAX_SEQ,
            "seq {seq} of {p} out of range"
        );
        let base = BITMAP_BASE + (which * PRODUCERS + p) * BITMAP_WORDS;
        (self.word(base + (seq / 64) as usize), 1 << (seq % 64))
    }

    /// Marks `seq` of producer `p` delivered; false if it already was.
    pub fn deliver(&self, p: usize, seq: u64) -> bool {
        let (w, b) = self.bit(0, p, seq);
        // ORDERING: AcqRel — exactly one deliverer sees the bit clear.
        w.fetch_or(b, Ordering::AcqRel) & b == 0
    }

    /// Whether `seq` of `p` was delivered.
    pub fn delivered(&self, p: usize, seq: u64) -> bool {
        let (w, b) = self.bit(0, p, seq);
        // ORDERING: Acquire — pairs with `deliver`.
        w.load(Ordering::Acquire) & b != 0
    }

    /// Marks `seq` of `p` as in doubt: its producer died while pushing it,
    /// so it may be delivered once or never.
    pub fn set_in_doubt(&self, p: usize, seq: u64) {
        let (w, b) = self.bit(1, p, seq);
        // ORDERING: Release — before the producer moves past it.
        w.fetch_or(b, Ordering::Release);
    }

    /// Whether `seq` of `p` is in doubt.
    pub fn in_doubt(&self, p: usize, seq: u64) -> bool {
        let (w, b) = self.bit(1, p, seq);
        // ORDERING: Acquire — pairs with `set_in_doubt`.
        w.load(Ordering::Acquire) & b != 0
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (comparable across processes).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
