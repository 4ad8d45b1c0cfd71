//! Wait words: how a sleeper and a waker meet across processes.
//!
//! A [`WaitWord`] is two `u32`s in shared memory: `seq`, the futex word, and
//! `waiters`, the number of sleepers between registering and leaving. The
//! ring code never blocks by itself; the sleeping and waking are injected
//! through the [`Waiter`] trait (a futex in the engine, a condition variable in
//! tests and loom models), and this module runs the protocol around it.
//!
//! # The protocol
//!
//! Sleeper ([`block_on`]): try → short bounded spin → (slow check, when one
//! is due) → `key = seq` → `waiters += 1` → fence → re-check →
//! `wait(seq, key, deadline)` → `waiters -= 1` → loop. `key` is read
//! *before* the re-check, so a wake that lands between the re-check and the
//! sleep has changed `seq`, and the futex returns at once instead of
//! sleeping through it.
//!
//! Waker ([`WaitWord::wake_if_waiting`]): after the store that publishes,
//! fence → `if waiters != 0 { seq += 1; wake }`. No sleeper, no system call:
//! that single load is what keeps the hot path out of the kernel.
//!
//! # Why the two `SeqCst` fences
//!
//! Each side stores one location and then loads the other (the waker stores
//! the ring position and loads `waiters`; the sleeper stores `waiters` and
//! loads the ring position). With only release/acquire both loads may read the
//! old values (the store-buffer outcome), and then the waker skips the wake
//! while the sleeper goes to sleep on data it never saw: a lost wake-up. A
//! `SeqCst` fence on both sides between the store and the load forbids that
//! outcome: whichever fence comes first in the single total order, the other
//! side's load after its own fence sees the first side's store.

use crate::sync::{fence, AtomicU32, Ordering};

/// A point on the waiter's monotonic clock, in nanoseconds.
///
/// The core never reads a clock; it asks [`Waiter::now`]. In the engine this
/// is `CLOCK_MONOTONIC`, the clock `FUTEX_WAIT_BITSET` measures deadlines on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub u64);

impl Deadline {
    /// The deadline `nanos` after `self`, saturating at the end of time.
    #[inline]
    pub fn after(self, nanos: u64) -> Deadline {
        Deadline(self.0.saturating_add(nanos))
    }
}

/// Sleeping and waking on a 32-bit word, plus the clock deadlines are
/// measured on.
///
/// Implementations: the futex waiter in the `shmring` crate, and
/// [`crate::heap::ThreadWaiter`] for single-process tests and models.
pub trait Waiter {
    /// Sleeps while `*word == expected`, until woken, until `deadline`, or
    /// spuriously. Returning says nothing about why: the caller re-checks.
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Deadline>);

    /// Wakes up to `count` sleepers on `word`.
    fn wake(&self, word: &AtomicU32, count: u32);

    /// The current time on the clock deadlines use.
    fn now(&self) -> Deadline;
}

/// Wake every sleeper, not just one.
pub const WAKE_ALL: u32 = i32::MAX as u32;

/// A sleeper and a waker meet here. Lives in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WaitWord {
    /// The futex word. Bumped (wrapping) by every wake; a sleeper passes the
    /// value it read before its re-check, so a bump in between cancels the
    /// sleep.
    seq: AtomicU32,
    /// Sleepers currently registered. A sleeper killed while registered leaves
    /// it one too high forever: wakers then make a harmless extra system call
    /// per publish. Never too low, so never a lost wake-up.
    waiters: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<WaitWord>() == 8);

impl WaitWord {
    /// Waker side: call after the store that made progress visible. Makes a
    /// system call only when a sleeper is registered; returns whether it did.
    #[inline]
    pub fn wake_if_waiting<W: Waiter + ?Sized>(&self, waiter: &W, count: u32) -> bool {
        // ORDERING: SeqCst fence between the caller's publishing store and the
        // load of `waiters`; pairs with the fence in `block_on` between
        // `waiters += 1` and the re-check (see the module docs).
        fence(Ordering::SeqCst);
        // ORDERING: Relaxed — the fence above orders it.
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.wake_now(waiter, count);
        true
    }

    /// Wakes sleepers unconditionally (close, shutdown).
    pub fn wake_now<W: Waiter + ?Sized>(&self, waiter: &W, count: u32) {
        // ORDERING: Release — a sleeper that reads the new `seq` also sees
        // what was published before the wake; pairs with the Acquire load of
        // `seq` in `block_on`.
        self.seq.fetch_add(1, Ordering::Release);
        waiter.wake(&self.seq, count);
    }

    /// Sleepers registered right now (a snapshot, for statistics and tests).
    pub fn waiters(&self) -> u32 {
        // ORDERING: Relaxed — a statistic.
        self.waiters.load(Ordering::Relaxed)
    }
}

/// How long to spin before sleeping and how often a sleeper wakes by itself.
#[derive(Clone, Copy, Debug)]
pub struct WaitPolicy {
    /// Busy-wait budget before registering as a sleeper, in nanoseconds.
    /// Keep it to a few microseconds: when both ends share a core a long spin
    /// only steals the peer's time.
    pub spin_ns: u64,
    /// Longest single sleep. After each one the check runs in its slow form
    /// (`slow == true`), which is where peers' liveness is re-checked, so a
    /// dead peer never leaves a sleeper blocked for longer than this.
    pub slice_ns: u64,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            spin_ns: 5_000,
            slice_ns: 100_000_000,
        }
    }
}

/// How long a call may wait: the one wait vocabulary of shmring.
///
/// Every blocking operation takes an `Until`, built once where the caller's
/// words are read (the facades' `x`, `try_x`, `x_timeout` and `x_deadline`
/// methods) and passed down unchanged to the single internal operation that
/// tries, spins and sleeps ([`block_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Try once and never sleep: the `try_` forms (Python's `block=False`
    /// and negative or zero timeouts). The clock is never read.
    Now,
    /// Never give up: wait as long as it takes.
    Never,
    /// Give up at this instant (the `_deadline` forms).
    At(Deadline),
    /// Give up this many nanoseconds after the call starts waiting (the
    /// `_timeout` forms). The clock is read only if the first attempt
    /// fails, so a call that does not wait never reads it. `After(0)` is
    /// [`Until::Now`].
    After(u64),
}

impl Until {
    /// The `_timeout` forms: `timeout` after the call starts waiting (a
    /// zero timeout tries once; a huge one saturates at the end of time).
    #[inline]
    pub fn after(timeout: core::time::Duration) -> Until {
        match u64::try_from(timeout.as_nanos()) {
            Ok(0) => Until::Now,
            Ok(nanos) => Until::After(nanos),
            Err(_) => Until::After(u64::MAX),
        }
    }

    /// Whether this is a single try ([`Until::Now`] or `After(0)`).
    #[inline]
    pub fn is_now(self) -> bool {
        matches!(self, Until::Now | Until::After(0))
    }

    /// The absolute deadline, reading the clock through `now` only for the
    /// relative form; `None` for [`Until::Never`]. [`Until::Now`] is the
    /// deadline that has already passed.
    #[inline]
    pub fn deadline(self, now: impl FnOnce() -> Deadline) -> Option<Deadline> {
        match self {
            Until::Now => Some(Deadline(0)),
            Until::Never => None,
            Until::At(d) => Some(d),
            Until::After(nanos) => Some(now().after(nanos)),
        }
    }
}

impl From<Option<Deadline>> for Until {
    /// `None` is [`Until::Never`].
    fn from(deadline: Option<Deadline>) -> Until {
        deadline.map_or(Until::Never, Until::At)
    }
}

/// What a blocking call ended with when it did not get its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl core::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

/// Spin rounds before `block_on` first reads the clock (one pause hint
/// each, so well under the default spin budget).
const CLOCK_FREE_ROUNDS: u32 = 16;

/// The sleeper's side of the protocol.
///
/// Calls `check(slow)` until it returns `Some`, spinning first for
/// `policy.spin_ns`, then sleeping on `word` in slices of at most
/// `policy.slice_ns` until `until` (an `Option<Deadline>` converts: `None`
/// is no deadline). `slow` is true on one check before the first sleep
/// (made before registering as a sleeper), on the first check after each
/// full slice, and on the last check before a timeout: expensive checks
/// such as peer liveness belong there.
///
/// # Errors
///
/// [`TimedOut`] when the deadline passes with `check` still `None`; `check`
/// has then run once more after the deadline.
#[inline]
pub fn block_on<W, R>(
    word: &WaitWord,
    waiter: &W,
    until: impl Into<Until>,
    policy: &WaitPolicy,
    check: impl FnMut(bool) -> Option<R>,
) -> Result<R, TimedOut>
where
    W: Waiter + ?Sized,
{
    block_on_paced(word, waiter, until, policy, &mut SlowPace::default(), check)
}

/// Least time between two slow checks made before a first sleep by calls
/// that share a [`SlowPace`] (1 ms).
pub const SLOW_PACE_NS: u64 = 1_000_000;

/// When the next slow check before a first sleep is due, kept across the
/// blocking calls of one handle (see [`block_on_paced`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowPace {
    due: Deadline,
}

impl Default for SlowPace {
    /// Due at once.
    fn default() -> Self {
        SlowPace { due: Deadline(0) }
    }
}

/// [`block_on`] for a handle that blocks again and again: the slow check
/// before a first sleep is skipped when one ran less than [`SLOW_PACE_NS`]
/// ago in an earlier call sharing `pace`.
///
/// A receiver that sleeps on every message (no spin) otherwise made a
/// liveness probe, a system call, before every sleep. The bound on
/// noticing a dead peer does not change: one probe at least every slice
/// while asleep (the first check after a full slice is slow). A fresh
/// `SlowPace` makes it exactly [`block_on`].
///
/// # Errors
///
/// As [`block_on`].
pub fn block_on_paced<W, R>(
    word: &WaitWord,
    waiter: &W,
    until: impl Into<Until>,
    policy: &WaitPolicy,
    pace: &mut SlowPace,
    mut check: impl FnMut(bool) -> Option<R>,
) -> Result<R, TimedOut>
where
    W: Waiter + ?Sized,
{
    if let Some(r) = check(false) {
        return Ok(r);
    }
    let until = until.into();
    if until.is_now() {
        return Err(TimedOut); // "try once"
    }
    // One pause hint per check, never a growing backoff: this is a single
    // waiter polling a flag, not contenders retrying a CAS, and a long pause
    // step only delays noticing the answer (it cost a 1.7x round trip when
    // it grew to 64 pauses).
    //
    // A few clock-free rounds first: when the peer answers within a
    // microsecond (the common case a spin is for), no clock is read at all.
    // Only relative timeouts may start late by these rounds; an absolute
    // deadline is honoured as given.
    if policy.spin_ns > 0 && !matches!(until, Until::At(_)) {
        for _ in 0..CLOCK_FREE_ROUNDS {
            crate::sync::spin_hint();
            if let Some(r) = check(false) {
                return Ok(r);
            }
        }
    }
    let start = waiter.now();
    let deadline = until.deadline(|| start);
    if deadline.is_some_and(|d| start >= d) {
        return Err(TimedOut);
    }
    if policy.spin_ns > 0 {
        let spin_until = start.after(policy.spin_ns);
        let mut rounds = 0u32;
        loop {
            crate::sync::spin_hint();
            if let Some(r) = check(false) {
                return Ok(r);
            }
            rounds += 1;
            // Reading the clock costs about as much as a short spin; do it on
            // every fourth round only.
            if rounds.is_multiple_of(4) {
                let now = waiter.now();
                if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                    break;
                }
            }
        }
    }
    // The first check before the first sleep is a slow one (unless `pace`
    // says one ran just now): a peer that is already dead is noticed now,
    // not a slice later.
    //
    // The slow check runs *before* registering, not as the re-check after
    // it: a liveness probe is a system call, and a publish that lands while
    // we are registered makes the waker bump `seq` and call FUTEX_WAKE
    // although nobody sleeps yet, and then our wait returns EAGAIN. With
    // the probe inside that window, 2,200 blocking round trips with no spin
    // made 7,143 futex calls (3,292 EAGAIN); with it before, 2,507 (704),
    // both under strace, which widens the window. The re-check after
    // registering stays: it is the one the no-lost-wake-up argument needs.
    let mut next_slow = pace.due;
    loop {
        let now = waiter.now();
        if deadline.is_some_and(|d| now >= d) {
            return check(true).ok_or(TimedOut);
        }
        if now >= next_slow {
            next_slow = now.after(policy.slice_ns);
            pace.due = now.after(SLOW_PACE_NS);
            if let Some(r) = check(true) {
                return Ok(r);
            }
        }
        // ORDERING: Acquire — reads the `seq` a waker bumped after
        // publishing; pairs with the Release bump in `wake_now`. Read before
        // the re-check (see the module docs).
        let key = word.seq.load(Ordering::Acquire);
        // ORDERING: the RMW itself may be Relaxed; the SeqCst fence after it
        // is what pairs with the fence in `wake_if_waiting`.
        word.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if let Some(r) = check(false) {
            // ORDERING: Relaxed — only a count; nothing is published by it.
            word.waiters.fetch_sub(1, Ordering::Relaxed);
            return Ok(r);
        }
        let until = match deadline {
            Some(d) => d.min(now.after(policy.slice_ns)),
            None => now.after(policy.slice_ns),
        };
        waiter.wait(&word.seq, key, Some(until));
        // ORDERING: Relaxed — only a count.
        word.waiters.fetch_sub(1, Ordering::Relaxed);
        if let Some(r) = check(false) {
            return Ok(r);
        }
    }
}
