//! The peer table: one 128-byte row per attachment, and liveness by OFD locks.
//!
//! ```text
//! offset size field          notes
//!      0    4 generation     bumped (skipping 0) by each attach and each clean detach
//!      4    4 state          0 never used, 1 attached, 2 detached cleanly (informational)
//!      8    4 pid            attaching process, as seen in its own pid namespace
//!     12    4 reserved
//!     16    8 attached_at    CLOCK_MONOTONIC nanoseconds of the attach
//!     24    8 reserved
//!     32   96 counters       [u64; 12], see PeerCounter; slots 8..12 reserved
//! ```
//!
//! # Lock bytes
//!
//! Every lock is an open-file-description (OFD) write lock on one byte of
//! the segment file, which the kernel drops when the last descriptor of the
//! description closes (at death, before the process is a zombie):
//!
//! | bytes | what |
//! |---|---|
//! | [`INIT_LOCK_BYTE`] (0) | the segment's name lock (see the `names` module) |
//! | `1..`[`PEER_LOCK_BASE`] | free for the objects |
//! | [`PEER_LOCK_BASE`]` + i` | row `i`'s *liveness* byte: held by the row's attachment for as long as it lives |
//! | [`CLAIM_LOCK_BASE`]` + i` | row `i`'s *claim* byte: held by whoever is taking row `i` (for a few system calls), or by a reclaim deciding (every row's) |
//! | [`LOCK_BYTES_END`]`..`[`OBJECT_LOCK_BASE`] | unused |
//! | from [`OBJECT_LOCK_BASE`] | free for the objects |
//!
//! # Liveness
//!
//! A peer (the attachment a token `generation << 32 | row + 1` names) is
//! alive while row `row`'s liveness byte is held *and* the row's generation
//! still equals the token's. Whoever asks about a token or a row
//! ([`is_peer_alive`], `Segment::peers`, `inspect`'s rows) asks the
//! liveness byte only (`F_OFD_GETLK`), reading the generation before and
//! after. (What must know that *nobody* is attached or attaching asks the
//! claim bytes too: a reclaim, `unlink_unless_in_use`, the sweep's probe of
//! every lock byte, a leftover's `creator_alive`, `inspect`'s
//! `attaching`.)
//!
//! [`is_peer_alive`]: super::Segment::is_peer_alive
//!
//! # Attaching
//!
//! An attacher (a create or an open, each with its own open file
//! description) looks for a row, in order, and for each:
//!
//! 1. skips it if its liveness byte is held (a hint, one `F_OFD_GETLK`: a
//!    live peer has it);
//! 2. takes its claim byte without waiting (skips the row if it cannot:
//!    another attacher is taking it, or a reclaim holds every claim);
//! 3. asks again, holding the claim, whether the liveness byte is held (a
//!    peer took the row between 1 and 2): then lets the claim go and skips
//!    the row;
//! 4. bumps the generation (skipping 0) and writes its pid and attach time
//!    ([`PeerRow::claim`]);
//! 5. takes the liveness byte;
//! 6. lets the claim byte go.
//!
//! A clean detach bumps the generation (the token is dead from then on)
//! and then lets the liveness byte go; it never takes the claim byte.
//!
//! Why this order: between steps 2 and 5 the row's previous holder is dead
//! or detached (its liveness byte is free, and nobody takes it without the
//! claim, which we hold), and the newcomer holds only the claim byte, which
//! no liveness check asks. So the previous holder's token reads dead for
//! the whole attach, however long the attacher is stopped there (a
//! `SIGSTOP`, a preemption): before step 4 the liveness byte is free; from
//! step 4 on the generation is no longer the old token's. The newcomer's
//! own token is alive from step 5 on; nobody has it before the attach
//! returns.
//!
//! # Interleavings
//!
//! *Two attachers of one row.* The claim byte admits one at a time; the
//! other skips the row (step 2), or, claiming it after the first let it
//! go, finds the liveness byte held (step 3) and skips it. The liveness
//! byte is only ever taken under the claim, so step 5 cannot find it held
//! by another peer. (A process outside the protocol that locks it anyway,
//! which only the segment's owner or a writer can, makes step 5 fail: the
//! attacher marks the row detached, lets the claim go and goes on to the
//! next row.)
//!
//! *An attacher and a detaching peer.* The detacher's generation bump comes
//! before its unlock; an attacher that saw the byte free at step 3 bumps
//! again, so the detacher's token stays dead.
//!
//! *An attacher and a reclaimer.* A reclaim (also [`unlink_unless_in_use`]
//! and the removal decisions built on it) takes, under the name lock, every
//! claim byte at once (all or nothing, without waiting) and then asks the
//! liveness bytes. If an attacher holds a claim (steps 2 to 6), the reclaim
//! fails to take them and keeps the segment ("a peer is attaching"). If the
//! attacher finished, its liveness byte is held and the reclaim keeps the
//! segment ("a peer is alive"). If the reclaim holds the claims, every
//! attacher fails step 2 on every row, gets `PeerTableFull`, waits for the
//! name lock (which the reclaim lets go only *after* the claims) and looks
//! the name up again. So while a reclaim holds the claims and finds no
//! liveness byte held, nobody is attached and nobody can attach, and
//! nobody writes a row (only a claim holder or a liveness holder does).
//!
//! *Deaths.* An attacher killed at step 2 or 3 leaves the row as it was
//! (the kernel drops its claim). Killed at step 4, it leaves a row with a
//! fresh generation, its pid, and no liveness lock: a peer that died
//! attached, which is what it is (a reclaim counts it as a dead peer, and
//! nobody ever had its token). Killed at step 5 or 6, both bytes go
//! together. In every case the row is free for the next attacher, no token
//! of a dead process reads alive, and no byte stays held.
//!
//! *Observers.* An observer that reads generation `g`, then finds the
//! liveness byte held, then reads `g` again, has seen the byte held under
//! generation `g`: a newcomer takes the byte only after its bump (and
//! the `fcntl` calls order its Release store of the generation before the
//! lock that the observer's `F_OFD_GETLK` sees), so a held byte under `g`
//! is `g`'s holder's.
//!
//! [`unlink_unless_in_use`]: super::unlink_unless_in_use
//!
//! # Crash behaviour
//!
//! See "Deaths" above: no window in which a dead peer reads alive. A clean
//! detach bumps the generation before unlocking, so it has no window
//! either.

use shmring_core::sync::{AtomicU32, AtomicU64, Ordering};

use super::header::MAX_PEER_ROWS;

/// Size of one peer row.
pub(crate) const PEER_ROW_LEN: usize = 128;

/// The segment's name lock (held by whoever removes the segment's name, and
/// by the creator of the fallback create path while it builds the file
/// under its private name; see the `names` module).
pub(crate) const INIT_LOCK_BYTE: u64 = 0;

/// The liveness byte of peer row 0; row `i` uses `PEER_LOCK_BASE + i`.
pub(crate) const PEER_LOCK_BASE: u64 = 1024;

/// The claim byte of peer row 0; row `i` uses `CLAIM_LOCK_BASE + i`.
pub(crate) const CLAIM_LOCK_BASE: u64 = PEER_LOCK_BASE + MAX_PEER_ROWS as u64;

/// The end (exclusive) of the lock bytes the segment itself uses: the name
/// lock, every liveness byte and every claim byte lie below it.
pub(crate) const LOCK_BYTES_END: u64 = CLAIM_LOCK_BASE + MAX_PEER_ROWS as u64;

/// First lock byte reserved for objects beyond the peer rows.
#[allow(dead_code)] // documented reservation; objects will use it.
pub(crate) const OBJECT_LOCK_BASE: u64 = 1 << 20;

const _: () = assert!(LOCK_BYTES_END <= OBJECT_LOCK_BASE);

/// Row `row`'s liveness byte.
pub(crate) fn liveness_byte(row: u32) -> u64 {
    PEER_LOCK_BASE + u64::from(row)
}

/// Row `row`'s claim byte.
pub(crate) fn claim_byte(row: u32) -> u64 {
    CLAIM_LOCK_BASE + u64::from(row)
}

/// Number of counter slots in a row.
pub(crate) const COUNTER_SLOTS: usize = 12;

pub(crate) const STATE_ATTACHED: u32 = 1;
pub(crate) const STATE_DETACHED: u32 = 2;

/// One row of the peer table. Only the holder of the row's claim byte (an
/// attacher, [`PeerRow::claim`]) or of its liveness byte (the attachment:
/// its counters, and [`PeerRow::release`]) writes it.
#[repr(C, align(128))]
pub(crate) struct PeerRow {
    pub(crate) generation: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) pid: AtomicU32,
    pub(crate) reserved0: AtomicU32,
    pub(crate) attached_at: AtomicU64,
    pub(crate) reserved1: AtomicU64,
    pub(crate) counters: [AtomicU64; COUNTER_SLOTS],
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<PeerRow>() == PEER_ROW_LEN);
    assert!(align_of::<PeerRow>() == PEER_ROW_LEN);
    assert!(offset_of!(PeerRow, generation) == 0);
    assert!(offset_of!(PeerRow, state) == 4);
    assert!(offset_of!(PeerRow, pid) == 8);
    assert!(offset_of!(PeerRow, reserved0) == 12);
    assert!(offset_of!(PeerRow, attached_at) == 16);
    assert!(offset_of!(PeerRow, reserved1) == 24);
    assert!(offset_of!(PeerRow, counters) == 32);
};

/// Per-peer statistics slots. Each attachment adds to its own row only, so
/// counting never shares a cache line; readers sum all rows. Rows keep their
/// counts when they are reused, so a sum includes peers that have left.
///
/// Who counts what: the queue facades (`Queue`, `JoinableQueue`,
/// `SimpleQueue`) count puts, gets, their encoded bytes and timeouts, and
/// `JoinableQueue::join` the tasks it wrote off as recovered; `Lock` and
/// `RLock` count timeouts and dead holders taken over. Every object counts
/// its futex calls, in the row of the attachment that made them: sleeps in
/// `BlockedWaits` and wake-ups in `Wakes` (the futex layer counts them, so
/// the hot path, which makes none, pays nothing). A pipe's `Connection`
/// counts the messages and bytes it sends (`Puts`, `BytesIn`) and receives
/// (`Gets`, `BytesOut`), as `Sender`/`Receiver` do: in batches of 64, and
/// the rest when it closes. Beyond those, the raw rings (`spsc`, `mpmc`)
/// and the dict count nothing yet (their depths and recoveries are in the
/// object figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerCounter {
    /// Messages put (slot 0).
    Puts = 0,
    /// Messages got (slot 1).
    Gets = 1,
    /// Payload bytes put (slot 2).
    BytesIn = 2,
    /// Payload bytes got (slot 3).
    BytesOut = 3,
    /// Sleeps: futex waits made (slot 4). An operation that sleeps again
    /// after a spurious or periodic wake-up counts each sleep.
    BlockedWaits = 4,
    /// Wake system calls made (slot 5), one per `FUTEX_WAKE`, whether or not
    /// anyone was still asleep.
    Wakes = 5,
    /// Operations that timed out (slot 6).
    Timeouts = 6,
    /// Slots or locks recovered from dead peers (slot 7).
    Recovered = 7,
}

/// One peer row as seen by [`super::Segment::peers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Index of the row in the peer table.
    pub row: u32,
    /// The pid written by the row's last holder (in its pid namespace).
    pub pid: u32,
    /// The token of the row's last holder; see [`super::Segment::is_peer_alive`].
    pub token: u64,
    /// Whether that holder was alive when the table was read.
    pub alive: bool,
}

/// The token for `row` at `generation` (nonzero: rows count from 1 inside).
pub(crate) fn token(row: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | (u64::from(row) + 1)
}

/// Splits a token into `(row, generation)`; `None` for tokens no attach can
/// have produced (row part or generation 0).
pub(crate) fn split_token(token: u64) -> Option<(u32, u32)> {
    let row_plus_one = token as u32;
    let generation = (token >> 32) as u32;
    if row_plus_one == 0 || generation == 0 {
        return None;
    }
    Some((row_plus_one - 1, generation))
}

/// The generation after `g`, skipping 0 (which means "never attached").
pub(crate) fn next_generation(g: u32) -> u32 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl PeerRow {
    /// Fills the row for a new holder (who holds its claim byte and found
    /// its liveness byte free, see the module docs) and returns the new
    /// generation.
    pub(crate) fn claim(&self, pid: u32, now_ns: u64) -> u32 {
        // ORDERING: Relaxed — only the claim holder writes the generation
        // now (the previous holder's `release` came before its unlock of
        // the liveness byte, which our F_OFD_GETLK saw free: the kernel's
        // lock orders them); re-published by the Release store below.
        let generation = next_generation(self.generation.load(Ordering::Relaxed));
        // ORDERING: Relaxed — published by the Release store of `generation`.
        self.pid.store(pid, Ordering::Relaxed);
        self.state.store(STATE_ATTACHED, Ordering::Relaxed);
        self.attached_at.store(now_ns, Ordering::Relaxed);
        // ORDERING: Release — publishes pid/state; pairs with the Acquire
        // load in `generation()` (is_peer_alive, peers).
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// Marks a clean detach; the holder's token is dead from here on, even
    /// before its lock is released.
    pub(crate) fn release(&self, generation: u32) {
        // ORDERING: Relaxed — informational, published with the generation.
        self.state.store(STATE_DETACHED, Ordering::Relaxed);
        // ORDERING: Release — pairs with the Acquire load in `generation()`.
        self.generation
            .store(next_generation(generation), Ordering::Release);
    }

    /// The row's current generation.
    pub(crate) fn generation(&self) -> u32 {
        // ORDERING: Acquire — pairs with the Release stores in `claim` and
        // `release`, so the pid read after it is the holder's.
        self.generation.load(Ordering::Acquire)
    }

    /// The pid of the last holder.
    pub(crate) fn pid(&self) -> u32 {
        // ORDERING: Relaxed — after `generation()`'s Acquire; informational.
        self.pid.load(Ordering::Relaxed)
    }

    /// Adds to one of this row's counters (wrapping). Always an atomic add:
    /// every handle of this attachment, in any thread, adds to the same row
    /// (a queue handle under its mutexes, its `Sender`s and `Receiver`s, the
    /// futex layer), so a plain load and store would lose their updates.
    #[inline]
    pub(crate) fn add(&self, counter: PeerCounter, n: u64) {
        // ORDERING: Relaxed — a statistic; threads of the holder's process
        // add concurrently, hence the RMW; readers (`get`) only want some
        // recent value.
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// One of this row's counters.
    pub(crate) fn get(&self, counter: PeerCounter) -> u64 {
        // ORDERING: Relaxed — a statistic.
        self.counters[counter as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(split_token(token(0, 1)), Some((0, 1)));
        assert_eq!(split_token(token(4095, u32::MAX)), Some((4095, u32::MAX)));
        assert_eq!(split_token(0), None);
        assert_eq!(split_token(1), None); // generation 0
        assert_eq!(split_token(1 << 32), None); // row part 0
        assert_ne!(token(0, 1), 0);
        assert_eq!(next_generation(u32::MAX), 1);
    }
}
