//! The unfinished-task count of a JoinableQueue: `put` adds, `task_done`
//! subtracts (never below zero), `join` sleeps until it is zero.
//!
//! # Crash recovery
//!
//! A consumer that dies between `get` and `task_done` would leave its task
//! unfinished forever, and every `join` hanging. Two mechanisms prevent it;
//! both run on the joiner's slow path (once per liveness slice) and never on
//! the data path:
//!
//! * **Task slots** ([`TaskSlot`]): one word per peer row,
//!   `generation << 32 | held`, where `held` counts the tasks that peer got
//!   and has not marked done. A joiner that finds a slot whose peer is dead
//!   claims it with one CAS (to 0) and [`forgives`](TaskCounter::forgive)
//!   its `held` tasks. Generation and count share one word so that a claim
//!   and a new peer reusing the row can never both take the same count.
//! * **Stall detection** (in the engine): the slots cannot see a process
//!   killed in the few instructions between taking a record and counting it
//!   held, nor one killed between counting a task and publishing it. Every
//!   such window leaves the count *too high* with nobody holding the task,
//!   never too low: the orders below are chosen for that. When two slow
//!   checks in a row see the same nonzero count, an empty queue and no live
//!   peer holding anything, the joiner forgives the rest.
//!
//! Orders (each window errs towards "unfinished, held by nobody"): `put`
//! counts, then publishes; `get` takes, then holds; `task_done` un-holds,
//! then counts done.

use crate::layout::Padded;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{block_on, Deadline, TimedOut, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

/// Lives in shared memory, zeroed = no unfinished tasks.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskCounter {
    /// Tasks put and not yet marked done.
    unfinished: Padded<AtomicU64>,
    /// Joiners sleep here.
    all_done: Padded<WaitWord>,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<TaskCounter>() == 256);

/// `task_done` was called more often than tasks were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyDone;

impl core::fmt::Display for TooManyDone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl std::error::Error for TooManyDone {}

impl TaskCounter {
    /// Counts `n` new tasks. Call *before* publishing them, so a consumer
    /// can never mark a task done that the count does not hold yet.
    #[inline]
    pub fn add(&self, n: u64) {
        // ORDERING: Relaxed — the publish that follows (a Release store of a
        // ring's tail) orders it before any consumer's `done`.
        self.unfinished.fetch_add(n, Ordering::Relaxed);
        failpoint!("tasks.added");
    }

    /// Takes back `n` counted tasks that were never published (the push
    /// failed).
    #[inline]
    pub fn cancel(&self, n: u64) {
        // ORDERING: Relaxed — nobody saw these tasks.
        self.unfinished.fetch_sub(n, Ordering::Relaxed);
    }

    /// Marks one task done; wakes joiners when none is left.
    ///
    /// # Errors
    ///
    /// [`TooManyDone`] when the count is already zero.
    pub fn done<W: Waiter + ?Sized>(&self, waiter: &W) -> Result<(), TooManyDone> {
        // ORDERING: Relaxed load, AcqRel CAS — the CAS orders the consumer's
        // work on the task before a joiner's Acquire load sees the count.
        let mut current = self.unfinished.load(Ordering::Relaxed);
        loop {
            if current == 0 {
                return Err(TooManyDone);
            }
            match self.unfinished.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        failpoint!("tasks.done");
        if current == 1 {
            self.all_done.wake_if_waiting(waiter, WAKE_ALL);
        }
        Ok(())
    }

    /// Tasks put and not yet done (a snapshot).
    pub fn unfinished(&self) -> u64 {
        // ORDERING: Acquire — pairs with the AcqRel CAS in `done`.
        self.unfinished.load(Ordering::Acquire)
    }

    /// Sleeps until no task is unfinished, or `deadline`.
    ///
    /// # Errors
    ///
    /// [`TimedOut`].
    pub fn join<W: Waiter + ?Sized>(
        &self,
        waiter: &W,
        deadline: Option<Deadline>,
        policy: &WaitPolicy,
    ) -> Result<(), TimedOut> {
        self.join_with(waiter, deadline, policy, &mut |_| 0)
            .map(|_| ())
    }

    /// As [`join`](Self::join), running `recover` on the slow path (once per
    /// `policy.slice_ns`, and at the deadline): it may [`forgive`](Self::forgive)
    /// tasks of dead peers and returns how many it forgave. Returns the total
    /// forgiven while waiting.
    ///
    /// # Errors
    ///
    /// [`TimedOut`].
    pub fn join_with<W: Waiter + ?Sized>(
        &self,
        waiter: &W,
        deadline: Option<Deadline>,
        policy: &WaitPolicy,
        recover: &mut dyn FnMut(&TaskCounter) -> u64,
    ) -> Result<u64, TimedOut> {
        let mut forgiven = 0;
        block_on(&self.all_done, waiter, deadline, policy, |slow| {
            if slow {
                forgiven += recover(self);
            }
            (self.unfinished() == 0).then_some(forgiven)
        })
    }

    /// Takes up to `n` tasks off the count without them being done (their
    /// holder died); wakes joiners if none is left. Returns how many.
    pub fn forgive<W: Waiter + ?Sized>(&self, n: u64, waiter: &W) -> u64 {
        // ORDERING: Relaxed load, AcqRel CAS — as in `done`.
        let mut current = self.unfinished.load(Ordering::Relaxed);
        loop {
            let take = n.min(current);
            if take == 0 {
                return 0;
            }
            match self.unfinished.compare_exchange_weak(
                current,
                current - take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if current == take {
                        self.all_done.wake_if_waiting(waiter, WAKE_ALL);
                    }
                    return take;
                }
                Err(now) => current = now,
            }
        }
    }
}

/// One peer's task slot: `generation << 32 | held` (0 = unused), where
/// `held` counts tasks the peer got and has not marked done, and
/// `generation` is the high half of its peer token (nonzero). Lives in
/// shared memory; any value is safe (a garbage generation is a dead peer).
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct TaskSlot(AtomicU64);

const HELD_MASK: u64 = 0xFFFF_FFFF;

impl TaskSlot {
    /// Takes the slot for the peer of `generation` (at attach). A previous
    /// holder's count (necessarily dead: the row is ours now) is forgiven;
    /// returns how many tasks that was.
    pub fn claim<W: Waiter + ?Sized>(
        &self,
        generation: u32,
        tasks: &TaskCounter,
        waiter: &W,
    ) -> u64 {
        // ORDERING: AcqRel — Acquire pairs with the previous holder's Release
        // updates (its count is read whole); Release orders our claim before
        // our first hold.
        let old = self.0.swap(u64::from(generation) << 32, Ordering::AcqRel);
        if old >> 32 == u64::from(generation) {
            return 0; // already ours (a second handle cannot share a row)
        }
        tasks.forgive(old & HELD_MASK, waiter)
    }

    /// Counts `n` more tasks held by the slot's (live) owner.
    pub fn hold(&self, n: u32) {
        // ORDERING: Release — pairs with the Acquire CAS of a reclaimer; a
        // plain add: only the owner changes the count while it lives.
        self.0.fetch_add(u64::from(n), Ordering::Release);
    }

    /// Counts one held task done (if any is held: a task got by another
    /// process may be marked done here).
    pub fn unhold(&self) {
        // ORDERING: Relaxed load, Release CAS — as for `hold`.
        let mut current = self.0.load(Ordering::Relaxed);
        while current & HELD_MASK != 0 {
            match self.0.compare_exchange_weak(
                current,
                current - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// The slot's `(generation, held)` (a snapshot).
    pub fn get(&self) -> (u32, u32) {
        // ORDERING: Acquire — pairs with the owner's Release updates.
        let v = self.0.load(Ordering::Acquire);
        ((v >> 32) as u32, (v & HELD_MASK) as u32)
    }

    /// If the slot is in use and `is_dead(generation)` says its owner died,
    /// empties it (one CAS: exactly one reclaimer, or the row's next owner,
    /// wins) and forgives its held tasks. Returns how many were forgiven.
    pub fn reclaim_if_dead<W: Waiter + ?Sized>(
        &self,
        tasks: &TaskCounter,
        waiter: &W,
        is_dead: &mut dyn FnMut(u32) -> bool,
    ) -> u64 {
        let (generation, held) = self.get();
        if generation == 0 || !is_dead(generation) {
            return 0;
        }
        let seen = u64::from(generation) << 32 | u64::from(held);
        // ORDERING: AcqRel — Acquire: the count we forgive is the final one
        // (pairs with the owner's Release updates); Release: harmless.
        // Relaxed on failure: someone else reclaimed or the row was reused.
        if self
            .0
            .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        tasks.forgive(u64::from(held), waiter)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::heap::ThreadWaiter;

    #[test]
    fn counts_and_refuses_too_many() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        assert_eq!(t.done(&w), Err(TooManyDone));
        t.add(2);
        t.done(&w).unwrap();
        assert_eq!(t.unfinished(), 1);
        assert!(t.join(&w, Some(w.now()), &WaitPolicy::default()).is_err());
        t.done(&w).unwrap();
        assert_eq!(t.join(&w, None, &WaitPolicy::default()), Ok(()));
        assert_eq!(t.done(&w), Err(TooManyDone));
    }

    #[test]
    fn dead_holders_are_forgiven_once() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot::default();
        t.add(3);
        assert_eq!(slot.claim(7, &t, &w), 0);
        slot.hold(2);
        slot.unhold();
        assert_eq!(slot.get(), (7, 1));
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |_| false), 0);
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |g| g == 7), 1);
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |_| true), 0);
        assert_eq!(t.unfinished(), 2);
        // A new owner of the row forgives what a dead one left.
        slot.claim(8, &t, &w);
        slot.hold(1);
        assert_eq!(slot.claim(9, &t, &w), 1);
        assert_eq!(t.unfinished(), 1);
        let forgiven = t.join_with(
            &w,
            None,
            &WaitPolicy {
                spin_ns: 0,
                slice_ns: 1_000,
            },
            &mut |t| t.forgive(5, &w),
        );
        assert_eq!(forgiven, Ok(1));
    }
}
