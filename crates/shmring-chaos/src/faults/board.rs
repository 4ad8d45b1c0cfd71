//! The fault harness's board: a file-backed shared mapping of `AtomicU64`
//! words that every process of the run maps.
//!
//! Layout, in words: the [`Word`]s; then [`SLOTS`] slots of
//! [`SLOT_WORDS`] words (per-scenario state: which incarnation holds a pipe
//! end, what a consumer is doing, ...); then one entry of [`IncWord`]s per
//! incarnation (indexed by `incarnation % MAX_INCS`, tagged with the
//! incarnation so a reused entry is told apart); then the report log,
//! [`MAX_REPORTS`] entries of [`ReportWord`]s.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapRaw;

/// Shared words: flags set by the parent, counters added by children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// Nonzero: the children of the current round or phase finish their
    /// step and exit.
    Stop = 0,
    /// Bystanders exit when this differs from the value they started with.
    Release,
    /// Next free report entry (`fetch_add`).
    ReportCursor,
    /// Producers that found themselves blocked in `put` while the queue was
    /// observed empty, for longer than the wedge bound.
    ProducerWedges,
    /// A lock wait that never ended (the acquire timed out).
    LockWedges,
    /// Holders of a named segment that found the name no longer leading to
    /// their segment's file while they held it.
    NamesLost,
    /// Errors a role did not expect (printed by the role).
    UnexpectedErrors,
    /// A lock taken with `Acquired::Yes` while what it protects was half
    /// updated.
    LockViolations,
    /// Pipe readers that saw a gap, a duplicate, a reordering or a torn
    /// message.
    PipeViolations,
    /// Messages received over pipes.
    PipeMessages,
    /// Lock critical sections completed.
    LockRounds,
    /// Creates and opens done in the name scenario.
    NameHolds,
    /// `AlreadyExists` (or `NotFound` for an opener) in the name scenario:
    /// expected while another process holds (or nobody holds) the name.
    NameBusy,
    /// Holds that took the name from a creator that was still creating
    /// (the create scenario): must stay 0.
    CreatorLockouts,
    /// `task_done` refused (called too many times).
    TaskDoneErrors,
    /// Bystanders started (children that inherit and never open).
    Bystanders,
}

const WORDS: usize = 32;
const _: () = assert!((Word::Bystanders as usize) < WORDS);

/// Per-scenario slots.
pub const SLOTS: usize = 32;
/// Words per slot.
pub const SLOT_WORDS: usize = 16;

/// Words of one incarnation's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncWord {
    /// The incarnation number this entry currently describes.
    Tag = 0,
    /// Its process id.
    Pid,
    /// `CLOCK_MONOTONIC` ns written just before it was sent `SIGKILL` (by
    /// the parent, or by itself at a failpoint); 0 while alive.
    DiedAt,
    /// ns at which it was stopped (written before the `SIGSTOP`); 0 while
    /// running. Cleared after the `SIGCONT`.
    StoppedSince,
    /// Queue producers: ns right after their producer ring was claimed.
    ClaimedAt,
    /// Queue producers: ns right before they let their ring go.
    ReleasingAt,
    /// Lock workers: the peer token of their attachment to lock 0.
    Token0,
    /// Lock workers: the peer token of their attachment to lock 1.
    Token1,
}

/// Incarnation entries (numbers wrap around this).
pub const MAX_INCS: usize = 1 << 16;
const INC_WORDS: usize = 8;

/// Words of one report entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportWord {
    /// 1 once the other words are written.
    Ready = 0,
    /// A [`Report`] code.
    Kind,
    /// The reporting incarnation.
    Reporter,
    /// Whose death is reported: an incarnation, or (for `OwnerDied`) the
    /// dead holder's peer token.
    Blamed,
    /// ns at which the report came.
    At,
    /// ns at which the reporter began waiting for what it got.
    Since,
    /// Scenario-specific detail (a lock index, a sequence number).
    Detail,
}

/// Report entries.
pub const MAX_REPORTS: usize = 1 << 14;
const REPORT_WORDS: usize = 8;

/// What a report says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Report {
    /// A lock or recursive lock acquired with `Acquired::OwnerDied`;
    /// `Blamed` is the replaced holder's peer token.
    OwnerDied = 1,
    /// A pipe reader got end of file while its writer had not closed;
    /// `Blamed` is the writer's incarnation.
    PipeEof,
    /// A pipe writer got `BrokenPipe`; `Blamed` is the reader's incarnation.
    BrokenPipe,
    /// A spare producer got a producer ring (the queue has as many rings as
    /// producers): the parent checks that a holder was dead or gone.
    SpareClaim,
    /// A restarted producer got its ring; `Blamed` is its predecessor
    /// (killed), `Since` when it began trying.
    SuccessorClaim,
    /// A lock wait timed out; `Blamed` is the holder's peer token then.
    LockTimeout,
}

impl Report {
    /// Inverse of `as u64`.
    pub fn from_u64(v: u64) -> Option<Report> {
        [
            Report::OwnerDied,
            Report::PipeEof,
            Report::BrokenPipe,
            Report::SpareClaim,
            Report::SuccessorClaim,
            Report::LockTimeout,
        ]
        .into_iter()
        .find(|r| *r as u64 == v)
    }
}

/// One report, as read back by the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What it says.
    pub kind: Report,
    /// Who said it.
    pub reporter: u64,
    /// Whose death (see [`ReportWord::Blamed`]).
    pub blamed: u64,
    /// When.
    pub at: u64,
    /// Since when the reporter waited.
    pub since: u64,
    /// Detail.
    pub detail: u64,
}

const SLOT_BASE: usize = WORDS;
const INC_BASE: usize = SLOT_BASE + SLOTS * SLOT_WORDS;
const REPORT_BASE: usize = INC_BASE + MAX_INCS * INC_WORDS;
const TOTAL_WORDS: usize = REPORT_BASE + MAX_REPORTS * REPORT_WORDS;

/// A mapped board. Every access is atomic.
#[derive(Debug)]
pub struct Board {
    map: MmapRaw,
}

impl Board {
    /// Creates (zeroed) the board file at `path`.
    ///
    /// # Errors
    ///
    /// The file could not be created, sized or mapped.
    pub fn create(path: &Path) -> std::io::Result<Board> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len((TOTAL_WORDS * 8) as u64)?;
        Self::map(&file)
    }

    /// Opens the board file at `path`.
    ///
    /// # Errors
    ///
    /// The file could not be opened or mapped.
    pub fn open(path: &Path) -> std::io::Result<Board> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(&file)
    }

    fn map(file: &File) -> std::io::Result<Board> {
        let map = MmapRaw::map_raw(file)?;
        if map.len() < TOTAL_WORDS * 8 {
            return Err(std::io::Error::other("board file too short"));
        }
        Ok(Board { map })
    }

    fn word_at(&self, i: usize) -> &AtomicU64 {
        assert!(i < TOTAL_WORDS, "board word {i} out of range");
        // AtomicU64 is valid for any bytes and for concurrent access from
        // other processes; the reference borrows `self`, which keeps the
        // mapping.
        // SAFETY: the mapping is page aligned and at least TOTAL_WORDS * 8
        // bytes (checked in `map`); `i < TOTAL_WORDS` (asserted above).
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>().add(i) }
    }

    /// A shared word.
    pub fn word(&self, w: Word) -> &AtomicU64 {
        self.word_at(w as usize)
    }

    /// Reads a shared word.
    pub fn get(&self, w: Word) -> u64 {
        // ORDERING: Acquire — pairs with the Release RMWs of `add` and the
        // parent's Release stores of the flags.
        self.word(w).load(Ordering::Acquire)
    }

    /// Adds to a counter.
    pub fn add(&self, w: Word, n: u64) {
        // ORDERING: Release — publishes what the adder did before counting.
        self.word(w).fetch_add(n, Ordering::Release);
    }

    /// Whether the parent asked the current children to stop.
    pub fn stopping(&self) -> bool {
        self.get(Word::Stop) != 0
    }

    /// Word `w` of slot `s`.
    pub fn slot(&self, s: usize, w: usize) -> &AtomicU64 {
        assert!(
            s < SLOTS && w < SLOT_WORDS,
            "slot {s} word {w} out of range"
        );
        self.word_at(SLOT_BASE + s * SLOT_WORDS + w)
    }

    /// Word `w` of incarnation `inc`'s entry (whatever incarnation the entry
    /// describes now: compare [`IncWord::Tag`] where that matters).
    pub fn inc(&self, inc: u64, w: IncWord) -> &AtomicU64 {
        let i = (inc as usize) % MAX_INCS;
        self.word_at(INC_BASE + i * INC_WORDS + w as usize)
    }

    /// Zeroes incarnation `inc`'s entry and tags it (the parent, before
    /// spawning it).
    pub fn begin_inc(&self, inc: u64) {
        for w in [
            IncWord::Pid,
            IncWord::DiedAt,
            IncWord::StoppedSince,
            IncWord::ClaimedAt,
            IncWord::ReleasingAt,
            IncWord::Token0,
            IncWord::Token1,
        ] {
            // ORDERING: Release — before the tag that makes the entry valid.
            self.inc(inc, w).store(0, Ordering::Release);
        }
        // ORDERING: Release — readers check the tag with Acquire first.
        self.inc(inc, IncWord::Tag).store(inc, Ordering::Release);
    }

    /// Word `w` of `inc`'s entry if the entry still describes `inc`.
    pub fn inc_value(&self, inc: u64, w: IncWord) -> Option<u64> {
        // ORDERING: Acquire — pairs with the Release store of the tag.
        if self.inc(inc, IncWord::Tag).load(Ordering::Acquire) != inc {
            return None;
        }
        // ORDERING: Acquire — pairs with the writer's Release store.
        Some(self.inc(inc, w).load(Ordering::Acquire))
    }

    /// Stamps `inc`'s time of death (just before the `SIGKILL`).
    pub fn stamp_death(&self, inc: u64) {
        // ORDERING: Release — read by survivors and the parent after the
        // death was noticed.
        self.inc(inc, IncWord::DiedAt)
            .store(now_ns(), Ordering::Release);
    }

    /// Appends a report. Returns false when the log is full.
    pub fn report(
        &self,
        kind: Report,
        reporter: u64,
        blamed: u64,
        since: u64,
        detail: u64,
    ) -> bool {
        let at = now_ns();
        // ORDERING: Relaxed — only the RMW's uniqueness matters; the entry
        // is published by its Ready word.
        let i = self
            .word(Word::ReportCursor)
            .fetch_add(1, Ordering::Relaxed) as usize;
        if i >= MAX_REPORTS {
            return false;
        }
        let base = REPORT_BASE + i * REPORT_WORDS;
        for (w, v) in [
            (ReportWord::Kind, kind as u64),
            (ReportWord::Reporter, reporter),
            (ReportWord::Blamed, blamed),
            (ReportWord::At, at),
            (ReportWord::Since, since),
            (ReportWord::Detail, detail),
        ] {
            // ORDERING: Relaxed — published by the Release store of Ready.
            self.word_at(base + w as usize).store(v, Ordering::Relaxed);
        }
        // ORDERING: Release — pairs with the Acquire load in `reports`.
        self.word_at(base + ReportWord::Ready as usize)
            .store(1, Ordering::Release);
        true
    }

    /// Every complete report in `from..`, and the cursor (where the next
    /// call should start). Reports whose writer died before finishing are
    /// skipped.
    pub fn reports(&self, from: usize) -> (Vec<Entry>, usize) {
        // ORDERING: Acquire — pairs with nothing in particular: the entries
        // are read through their own Ready words.
        let end = (self.word(Word::ReportCursor).load(Ordering::Acquire) as usize).min(MAX_REPORTS);
        let mut out = Vec::new();
        for i in from..end {
            let base = REPORT_BASE + i * REPORT_WORDS;
            // ORDERING: Acquire — pairs with the Release store in `report`.
            if self.word_at(base).load(Ordering::Acquire) != 1 {
                continue;
            }
            // ORDERING: Relaxed — ordered by the Acquire of Ready above.
            let w = |r: ReportWord| self.word_at(base + r as usize).load(Ordering::Relaxed);
            let Some(kind) = Report::from_u64(w(ReportWord::Kind)) else {
                continue;
            };
            out.push(Entry {
                kind,
                reporter: w(ReportWord::Reporter),
                blamed: w(ReportWord::Blamed),
                at: w(ReportWord::At),
                since: w(ReportWord::Since),
                detail: w(ReportWord::Detail),
            });
        }
        (out, end)
    }

    /// Whether more reports were made than the log holds.
    pub fn reports_overflowed(&self) -> bool {
        self.get(Word::ReportCursor) as usize > MAX_REPORTS
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (comparable across processes).
pub fn now_ns() -> u64 {
    crate::ledger::now_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_entries_are_tagged() {
        let path = std::env::temp_dir().join(format!("shmring-board-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let board = Board::create(&path).unwrap();
        board.begin_inc(7);
        assert_eq!(board.inc_value(7, IncWord::DiedAt), Some(0));
        assert_eq!(board.inc_value(7 + MAX_INCS as u64, IncWord::DiedAt), None);
        board.stamp_death(7);
        assert!(board.inc_value(7, IncWord::DiedAt).unwrap() > 0);
        assert!(board.report(Report::PipeEof, 3, 7, 11, 12));
        let (got, next) = board.reports(0);
        assert_eq!(next, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].kind,
                got[0].reporter,
                got[0].blamed,
                got[0].since,
                got[0].detail
            ),
            (Report::PipeEof, 3, 7, 11, 12)
        );
        assert_eq!(board.reports(next).0.len(), 0);
        drop(board);
        std::fs::remove_file(&path).unwrap();
    }
}
