//! A robust lock in shared memory: one word naming the holder, one wait word.
//!
//! # The lock word
//!
//! `owner` is `0` while the lock is free and the *peer token* of the holder
//! while it is held (a token is nonzero and names one attachment of one
//! process for as long as it lives; see `shmring::Segment::peer_token`).
//! Storing the holder itself, rather than a "locked" bit, is what makes the
//! lock robust: anyone who finds the lock held can ask whether the holder is
//! still alive, and take a dead holder's lock over with one CAS from the dead
//! token to its own. Only one taker wins that CAS, and it is told
//! ([`Acquired::OwnerDied`]) so it can repair what the dead holder protected.
//!
//! * acquire: `CAS(0 → token)`, Acquire. One atomic, no system call.
//! * release: `CAS(holder → 0)`, Release, then
//!   [`WaitWord::wake_if_waiting`]: no system call unless someone sleeps.
//! * contended acquire: [`block_on`](crate::wait::block_on) the wait word; every slow check (once per
//!   [`WaitPolicy::slice_ns`]) asks the injected liveness probe about the
//!   holder, so a dead holder costs a waiter at most one slice.
//!
//! The core never asks the operating system anything: liveness is a closure
//! (`is_alive(token)`) and sleeping a [`Waiter`], so loom checks the protocol
//! on the heap (`tests/lock_loom.rs`).
//!
//! Any value in `owner` is safe: a garbage token fails the liveness probe and
//! is taken over like a dead one. A recursive lock keeps its recursion count
//! in the handle of its owning process (the engine's `RLock`), never here.

use crate::sync::{AtomicU64, Ordering};
use crate::wait::{block_on_with, TimedOut, Until, WaitHistory, WaitPolicy, WaitWord, Waiter};

/// [`LockShared::flavor`] of a non-recursive lock (Python's `Lock`).
pub const FLAVOR_LOCK: u64 = 1;
/// [`LockShared::flavor`] of a recursive lock (Python's `RLock`).
pub const FLAVOR_RLOCK: u64 = 2;

/// The shared state of one lock. Lives in shared memory; all atomics, so
/// every byte pattern is a valid (if possibly nonsensical) value.
#[repr(C)]
#[derive(Debug, Default)]
pub struct LockShared {
    /// `0`: free. Otherwise the peer token of the holder. Written by
    /// acquirers (CAS from 0 or from a dead token) and releasers (CAS to 0).
    owner: AtomicU64,
    /// Contended acquirers sleep here; releasers wake one of them.
    wait: WaitWord,
    /// How many times a dead holder's lock was taken over (a statistic).
    recoveries: AtomicU64,
    /// [`FLAVOR_LOCK`] or [`FLAVOR_RLOCK`]; written once by the creator.
    flavor: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<LockShared>() == 32);
    assert!(offset_of!(LockShared, owner) == 0);
    assert!(offset_of!(LockShared, wait) == 8);
    assert!(offset_of!(LockShared, recoveries) == 16);
    assert!(offset_of!(LockShared, flavor) == 24);
};

/// How an acquire succeeded.
#[must_use = "a lock taken over from a dead holder may protect half-updated state"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Acquired {
    /// The lock was free (or released) and is now ours.
    Yes,
    /// The previous holder died (or detached) holding the lock; it is now
    /// ours, and what it protected may be half-updated (`EOWNERDEAD`).
    OwnerDied,
}

impl Acquired {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(self) -> bool {
        self == Acquired::OwnerDied
    }
}

/// Why a release failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseError {
    /// The lock is not held by anyone.
    NotHeld,
    /// The lock is held, but not by the token that tried to release it.
    NotOwner {
        /// The holder's token, as found.
        owner: u64,
    },
}

impl core::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReleaseError::NotHeld => f.write_str("lock released while not held"),
            ReleaseError::NotOwner { owner } => {
                write!(f, "lock is held by another peer (token {owner:#x})")
            }
        }
    }
}

impl std::error::Error for ReleaseError {}

impl LockShared {
    /// A fresh, free lock of `flavor` (heap locks, tests, loom models).
    pub fn new(flavor: u64) -> Self {
        let lock = LockShared::default();
        lock.init(flavor);
        lock
    }

    /// Writes the flavor into a zeroed block (the creator, before the
    /// segment is published).
    pub fn init(&self, flavor: u64) {
        // ORDERING: Relaxed — published by the segment's Release store of its
        // version; pairs with the opener's Acquire load of it.
        self.flavor.store(flavor, Ordering::Relaxed);
    }

    /// The flavor written by the creator (unchecked: compare it).
    pub fn flavor(&self) -> u64 {
        // ORDERING: Relaxed — a constant published with the segment.
        self.flavor.load(Ordering::Relaxed)
    }

    /// The holder's token, or 0 (a snapshot).
    pub fn owner(&self) -> u64 {
        // ORDERING: Relaxed — a snapshot; nothing is read through it.
        self.owner.load(Ordering::Relaxed)
    }

    /// Times a dead holder's lock was taken over (a statistic).
    pub fn recoveries(&self) -> u64 {
        // ORDERING: Relaxed — a statistic.
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Sleepers registered right now (a snapshot, for tests).
    pub fn waiters(&self) -> u32 {
        self.wait.waiters()
    }

    /// The wait word contended acquirers sleep on, for a sleeper that
    /// runs the [`block_on`](crate::wait::block_on) protocol itself (an async one): it calls
    /// [`try_acquire_with`](Self::try_acquire_with) as its check, and
    /// every release wakes one sleeper registered there.
    pub fn wait_word(&self) -> &WaitWord {
        &self.wait
    }

    /// One attempt: takes the lock if it is free, or, when `probe` is set,
    /// if its holder is dead according to `is_alive`.
    ///
    /// `token` must be nonzero. A token equal to the holder's is never taken
    /// over (the lock is not recursive here). Returns `None` when the lock is
    /// held by a live holder (or by anyone, when `probe` is false).
    pub fn try_acquire_with(
        &self,
        token: u64,
        probe: bool,
        is_alive: &mut dyn FnMut(u64) -> bool,
    ) -> Option<Acquired> {
        debug_assert_ne!(token, 0, "a peer token is never 0");
        // ORDERING: Relaxed — only a guess for the CAS below, which orders.
        let mut current = self.owner.load(Ordering::Relaxed);
        loop {
            let takeover = if current == 0 {
                false
            } else if probe && current != token && !is_alive(current) {
                true
            } else {
                return None;
            };
            // ORDERING: Acquire on success — pairs with the Release CAS in
            // `release_*`: everything the previous holder wrote under the lock
            // is visible to us. (A dead holder's writes were made visible by
            // the kernel before its liveness lock was dropped, and the probe
            // that saw it dead synchronised with that.) Relaxed on failure:
            // we only retry with the value found.
            failpoint!("lock.acquire-cas");
            match self
                .owner
                .compare_exchange(current, token, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if takeover => {
                    // ORDERING: Relaxed — a statistic.
                    self.recoveries.fetch_add(1, Ordering::Relaxed);
                    return Some(Acquired::OwnerDied);
                }
                Ok(_) => return Some(Acquired::Yes),
                // Someone else moved it (acquired, released, took it over):
                // judge the new value.
                Err(found) => current = found,
            }
        }
    }

    /// Python's `acquire(block=False)`: one attempt, with the liveness probe
    /// (a lock held by a dead holder is taken over at once).
    pub fn try_acquire(
        &self,
        token: u64,
        is_alive: &mut dyn FnMut(u64) -> bool,
    ) -> Option<Acquired> {
        self.try_acquire_with(token, true, is_alive)
    }

    /// Takes the lock, waiting as long as `until` allows.
    ///
    /// # Blocking
    ///
    /// [`Until::Now`] makes one attempt and then one probe of the holder's
    /// liveness, and never sleeps or reads the clock. Otherwise spins for
    /// `policy.spin_ns`, then sleeps on the wait word in slices of
    /// `policy.slice_ns`; after each slice (and once more at the deadline)
    /// the holder's liveness is probed, so a dead holder is taken over
    /// within one slice, and always once more at the deadline.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passes first (at once for
    /// [`Until::Now`] when a live holder has it).
    pub fn acquire<W: Waiter + ?Sized>(
        &self,
        token: u64,
        waiter: &W,
        until: Until,
        policy: &WaitPolicy,
        is_alive: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Acquired, TimedOut> {
        self.acquire_with(
            token,
            waiter,
            until,
            policy,
            &mut WaitHistory::default(),
            is_alive,
        )
    }

    /// [`acquire`](LockShared::acquire) for a handle that acquires again
    /// and again: the wait learns from and records into `history` (its
    /// spin budget, and the pacing of its slow checks and crowding
    /// questions: see [`block_on_with`]).
    ///
    /// # Blocking
    ///
    /// As [`acquire`](LockShared::acquire).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passes first.
    pub fn acquire_with<W: Waiter + ?Sized>(
        &self,
        token: u64,
        waiter: &W,
        until: Until,
        policy: &WaitPolicy,
        history: &mut WaitHistory,
        is_alive: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Acquired, TimedOut> {
        self.acquire_by(waiter, until, policy, history, &mut |lock, probe| {
            lock.try_acquire_with(token, probe, is_alive)
        })
    }

    /// [`acquire`](LockShared::acquire) with the caller's own attempt:
    /// `attempt(self, probe)` must make one attempt as
    /// [`try_acquire_with`](LockShared::try_acquire_with) does (typically
    /// it calls that, wrapped in a lock of the caller's, to record which
    /// acquisition of a token this is). Waiting, liveness slices and the
    /// last probe at the deadline are as in `acquire`; `history` as in
    /// [`acquire_with`](LockShared::acquire_with).
    ///
    /// # Blocking
    ///
    /// As [`acquire`](LockShared::acquire). The first attempt is
    /// [`block_on`](crate::wait::block_on)'s own first check (no probe), so an uncontended
    /// acquire makes exactly one attempt.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when the deadline passes first.
    pub fn acquire_by<W: Waiter + ?Sized>(
        &self,
        waiter: &W,
        until: Until,
        policy: &WaitPolicy,
        history: &mut WaitHistory,
        attempt: &mut dyn FnMut(&LockShared, bool) -> Option<Acquired>,
    ) -> Result<Acquired, TimedOut> {
        block_on_with(&self.wait, waiter, until, policy, history, |slow| {
            attempt(self, slow)
        })
        // `block_on` gives up without a slow check when the deadline had
        // already passed on entry (always, for `Until::Now`): probe
        // once, so a dead holder is always noticed by the deadline at
        // the latest, and a try takes a dead holder's lock at once.
        .or_else(|TimedOut| attempt(self, true).ok_or(TimedOut))
    }

    /// Python `Lock.release()`: releases the lock whoever holds it (any
    /// process or thread may release a non-recursive lock).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] when it is free.
    pub fn release_any<W: Waiter + ?Sized>(&self, waiter: &W) -> Result<(), ReleaseError> {
        failpoint!("lock.releasing");
        // ORDERING: Relaxed — a guess for the CAS.
        let mut current = self.owner.load(Ordering::Relaxed);
        loop {
            if current == 0 {
                return Err(ReleaseError::NotHeld);
            }
            // ORDERING: Release — publishes the critical section; pairs with
            // the Acquire CAS in `try_acquire_with`.
            match self
                .owner
                .compare_exchange(current, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(found) => current = found,
            }
        }
        self.wake_one(waiter);
        Ok(())
    }

    /// Releases the lock if `token` holds it (RLock, guards, the Dict).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] when free, [`ReleaseError::NotOwner`] when
    /// held by another token (nothing is changed then).
    pub fn release_owned<W: Waiter + ?Sized>(
        &self,
        token: u64,
        waiter: &W,
    ) -> Result<(), ReleaseError> {
        failpoint!("lock.releasing");
        // ORDERING: Release — publishes the critical section; pairs with the
        // Acquire CAS in `try_acquire_with`. Relaxed on failure: we only
        // report what we found.
        match self
            .owner
            .compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {
                self.wake_one(waiter);
                Ok(())
            }
            Err(0) => Err(ReleaseError::NotHeld),
            Err(owner) => Err(ReleaseError::NotOwner { owner }),
        }
    }

    /// Wakes one sleeper, if any is registered. One woken sleeper is enough:
    /// it either takes the lock, or finds it taken by a barger whose own
    /// release wakes again; a sleeper that leaves on its deadline re-checks
    /// first (see [`block_on`](crate::wait::block_on)).
    fn wake_one<W: Waiter + ?Sized>(&self, waiter: &W) {
        // The fence inside (a full one, or a compiler barrier that the
        // sleeper's heavy fence completes) pairs our release CAS with the
        // sleeper's `waiters += 1` (see `crate::wait`).
        self.wait.wake_if_waiting(waiter, 1);
    }
}
