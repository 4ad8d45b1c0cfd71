//! The task accounting of a JoinableQueue: `put` adds a task, `task_done`
//! marks one done, `join` sleeps until none is left.
//!
//! # What "unfinished" is
//!
//! There is no shared counter of unfinished tasks. A task is unfinished
//! while its item is in the queue, or while the consumer that took it has
//! not marked it done; so
//!
//! ```text
//! unfinished = records in the queue + Σ over peers (takes in flight + tasks held)
//! ```
//!
//! where each peer counts its own in one word of its own, a [`TaskSlot`].
//! Every step a process makes changes exactly one shared word, in one
//! atomic operation:
//!
//! | step | the one word it changes |
//! |---|---|
//! | `put` publishes a record | the ring's tail word (it carries the count) |
//! | `get` announces a take | own slot: `in_flight + 1` |
//! | `get` takes the record | the ring's head word (CAS; it carries the count) |
//! | `get` ends its take | own slot: `in_flight - 1, held + 1` (took) or `in_flight - 1` (found nothing) |
//! | `task_done` | a slot: `held - 1` |
//!
//! So a process killed at any instruction leaves every task counted
//! exactly where it is: in the queue, or in the slot of the (dead) process
//! that was taking or holding it. A take announced but not yet ended counts
//! the item twice (in the queue and in flight) until it ends: that only
//! makes `join` wait a little longer, never return early.
//!
//! # Crash recovery
//!
//! A dead process's slot holds exactly the tasks lost with it (taken or
//! being taken, never done). A joiner that finds a slot whose peer is dead
//! empties it with one CAS, which is the whole recovery: the sum above
//! drops by what the slot held, and the joiner reports that many tasks
//! lost. A new peer that takes over the row does the same with one swap.
//! Nothing is ever written off for a process that is alive, however long
//! it is stopped: a peer is dead only when the kernel released its liveness
//! lock (see the engine's peer table), never after a timeout.
//!
//! # Reading the sum
//!
//! [`unfinished`] must see the queue before the slots: a consumer announces
//! its take (Release) before its CAS takes the record, so a reader whose
//! (Acquire) load of the ring sees the record gone also sees the
//! announcement in the slot it reads afterwards. Read the other way round,
//! a task moving from the queue to a slot could be missed by both reads.

use crate::layout::Padded;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{block_on, Deadline, TimedOut, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

/// The joiners' wait word and the count of tasks lost with dead peers.
/// Lives in shared memory; zeroed is a valid initial state.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskCounter {
    /// Tasks dropped from dead peers' slots so far (wrapping): how `join`
    /// tells "all done" from "done, but some were lost". Added to after the
    /// slot was emptied, so a process killed in between under-reports.
    lost: Padded<AtomicU64>,
    /// Joiners sleep here; woken whenever a slot's count drops to zero.
    all_done: Padded<WaitWord>,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<TaskCounter>() == 256);

/// `task_done` was called more often than tasks were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyDone;

impl core::fmt::Display for TooManyDone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl std::error::Error for TooManyDone {}

/// A take could not be announced: this slot already has
/// [`MAX_IN_FLIGHT`] takes in flight or [`MAX_HELD`] tasks held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotFull;

impl core::fmt::Display for SlotFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("too many tasks held or being taken by one handle")
    }
}

impl std::error::Error for SlotFull {}

impl TaskCounter {
    /// Tasks dropped from dead peers' slots so far (wrapping; compare two
    /// readings).
    pub fn lost(&self) -> u64 {
        // ORDERING: Relaxed — a report; the slots carry the accounting.
        self.lost.load(Ordering::Relaxed)
    }

    /// Records `n` tasks dropped with a dead peer and wakes the joiners.
    fn dropped<W: Waiter + ?Sized>(&self, n: u64, waiter: &W) {
        // ORDERING: Relaxed — a report (partner: the load in `lost`); the
        // slot's own CAS already published the change that matters.
        self.lost.fetch_add(n, Ordering::Relaxed);
        self.wake_joiners(waiter);
    }

    /// Wakes the joiners if any is asleep (no system call otherwise). Call
    /// after a change that may have brought the sum to zero.
    #[inline]
    pub fn wake_joiners<W: Waiter + ?Sized>(&self, waiter: &W) {
        self.all_done.wake_if_waiting(waiter, WAKE_ALL);
    }

    /// Sleeps until `unfinished(slow)` returns 0, or `deadline`.
    ///
    /// `unfinished` computes the sum (see the module docs); `slow` is true
    /// on the slow checks of [`block_on`] (once per `policy.slice_ns` and at
    /// the deadline), where it should first empty the slots of dead peers.
    ///
    /// # Errors
    ///
    /// [`TimedOut`].
    pub fn join<W: Waiter + ?Sized>(
        &self,
        waiter: &W,
        deadline: Option<Deadline>,
        policy: &WaitPolicy,
        unfinished: &mut dyn FnMut(bool) -> u64,
    ) -> Result<(), TimedOut> {
        block_on(&self.all_done, waiter, deadline, policy, |slow| {
            (unfinished(slow) == 0).then_some(())
        })
    }
}

/// The sum of the module docs: `queue_len` (read *first*) plus what every
/// slot counts (read after). Saturating: hostile slots cannot overflow it.
pub fn unfinished(queue_len: u64, slots: &[TaskSlot]) -> u64 {
    slots.iter().fold(queue_len, |sum, slot| {
        sum.saturating_add(slot.outstanding())
    })
}

/// One peer's task slot, one `u64` in shared memory:
///
/// ```text
/// bits 32..64  generation: the high half of the peer token of its owner (0 = unused)
/// bits 24..32  in_flight: takes announced and not yet ended
/// bits  0..24  held: tasks taken and not yet marked done
/// ```
///
/// Only its owner changes `in_flight`; `held` goes up by its owner's takes
/// and down by `task_done` of any process (a task marked done by another
/// process than the one that took it). Any value is safe to read: a garbage
/// generation is a dead peer, and counts only delay `join`.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct TaskSlot(AtomicU64);

const HELD_BITS: u32 = 24;
const HELD_MASK: u64 = (1 << HELD_BITS) - 1;
const IN_FLIGHT_ONE: u64 = 1 << HELD_BITS;
const IN_FLIGHT_MASK: u64 = 0xFF << HELD_BITS;
const COUNTS_MASK: u64 = IN_FLIGHT_MASK | HELD_MASK;

/// Most takes one slot can have in flight at once (threads of one handle).
pub const MAX_IN_FLIGHT: u32 = 0xFF;
/// Most tasks one slot can hold.
pub const MAX_HELD: u32 = HELD_MASK as u32;

/// `(in_flight, held)` of a slot word.
#[inline]
fn counts(word: u64) -> (u32, u32) {
    (
        ((word & IN_FLIGHT_MASK) >> HELD_BITS) as u32,
        (word & HELD_MASK) as u32,
    )
}

impl TaskSlot {
    /// Updates the word with `f` (returning `None` leaves it and fails) in a
    /// CAS loop; returns the new word.
    #[inline]
    fn update(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Option<u64> {
        // ORDERING: Acquire load and AcqRel CAS — Release publishes this
        // change (and everything the caller did before it, such as the work
        // on a task before `done`) to a reader's Acquire load; Acquire keeps
        // the read-modify-write chain ordered. Relaxed on failure: retried.
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            let new = f(current)?;
            match self
                .0
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(new),
                Err(now) => current = now,
            }
        }
    }

    /// Takes the slot for the peer of `generation` (at attach). Whatever a
    /// previous owner left (necessarily dead or gone: the row is ours now)
    /// is dropped; returns how many tasks that was, and wakes the joiners
    /// if it was any.
    pub fn claim<W: Waiter + ?Sized>(
        &self,
        generation: u32,
        tasks: &TaskCounter,
        waiter: &W,
    ) -> u64 {
        // ORDERING: AcqRel — Acquire reads the previous owner's final counts
        // (pairs with its Release updates); Release orders the claim before
        // our first announcement.
        let old = self.0.swap(u64::from(generation) << 32, Ordering::AcqRel);
        let (in_flight, held) = counts(old);
        let lost = u64::from(in_flight) + u64::from(held);
        if old >> 32 == u64::from(generation) || lost == 0 {
            return 0;
        }
        tasks.dropped(lost, waiter);
        lost
    }

    /// Announces a take (before trying to take a record).
    ///
    /// # Errors
    ///
    /// [`SlotFull`] when [`MAX_IN_FLIGHT`] takes are in flight, or the slot
    /// holds so many tasks that a successful take could not be counted.
    #[inline]
    pub fn begin_take(&self) -> Result<(), SlotFull> {
        let announced = self.update(|w| {
            let (in_flight, held) = counts(w);
            let room = in_flight < MAX_IN_FLIGHT && held + in_flight < MAX_HELD;
            room.then_some(w + IN_FLIGHT_ONE)
        });
        failpoint!("tasks.announced");
        announced.map(drop).ok_or(SlotFull)
    }

    /// Ends a take announced with [`begin_take`](Self::begin_take): `took`
    /// moves it to the held tasks, otherwise it is dropped (and the joiners
    /// are woken if that emptied the slot).
    #[inline]
    pub fn end_take<W: Waiter + ?Sized>(&self, took: bool, tasks: &TaskCounter, waiter: &W) {
        let new = self.update(|w| {
            if w & IN_FLIGHT_MASK == 0 {
                return None; // not ours to end (a hostile write): leave it
            }
            let w = w - IN_FLIGHT_ONE;
            // `begin_take` left room for the take; only a hostile write
            // can have filled `held` since, and then it saturates.
            Some(if took && w & HELD_MASK != HELD_MASK {
                w + 1
            } else {
                w
            })
        });
        if !took && new.is_some_and(|w| w & COUNTS_MASK == 0) {
            tasks.wake_joiners(waiter);
        }
    }

    /// Marks one held task of this slot done; wakes the joiners when the
    /// slot is then empty. `false` when it holds none.
    pub fn done<W: Waiter + ?Sized>(&self, tasks: &TaskCounter, waiter: &W) -> bool {
        let new = self.update(|w| (w & HELD_MASK != 0).then(|| w - 1));
        failpoint!("tasks.done");
        match new {
            Some(w) => {
                if w & COUNTS_MASK == 0 {
                    tasks.wake_joiners(waiter);
                }
                true
            }
            None => false,
        }
    }

    /// Takes in flight plus tasks held (a snapshot).
    #[inline]
    pub fn outstanding(&self) -> u64 {
        let (in_flight, held) = self.get().1;
        u64::from(in_flight) + u64::from(held)
    }

    /// The slot's `(generation, (in_flight, held))` (a snapshot).
    pub fn get(&self) -> (u32, (u32, u32)) {
        // ORDERING: Acquire — pairs with the Release updates of the owner
        // (and of `task_done` callers): their work is visible after.
        let w = self.0.load(Ordering::Acquire);
        ((w >> 32) as u32, counts(w))
    }

    /// If the slot counts anything and `is_dead(generation)` says its owner
    /// is dead, empties it with one CAS (exactly one of the reclaimers and
    /// the row's next owner wins) and wakes the joiners. Returns how many
    /// tasks it dropped.
    pub fn reclaim_if_dead<W: Waiter + ?Sized>(
        &self,
        tasks: &TaskCounter,
        waiter: &W,
        is_dead: &mut dyn FnMut(u32) -> bool,
    ) -> u64 {
        // ORDERING: Acquire — as in `get`: the counts we drop are final.
        let seen = self.0.load(Ordering::Acquire);
        let (in_flight, held) = counts(seen);
        let lost = u64::from(in_flight) + u64::from(held);
        let generation = (seen >> 32) as u32;
        if lost == 0 || !is_dead(generation) {
            return 0;
        }
        // ORDERING: AcqRel — Acquire as above; Release orders the reclaim
        // before the joiners' wake. Relaxed on failure: someone else
        // reclaimed, or the row was taken over, or the owner changed it (a
        // live owner: `is_dead` was wrong about nobody; we just retry later).
        if self
            .0
            .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        tasks.dropped(lost, waiter);
        lost
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::heap::ThreadWaiter;

    fn policy() -> WaitPolicy {
        WaitPolicy {
            spin_ns: 0,
            slice_ns: 1_000,
        }
    }

    #[test]
    fn a_take_counts_once_in_flight_then_held() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot::default();
        assert_eq!(slot.claim(7, &t, &w), 0);
        slot.begin_take().unwrap();
        assert_eq!(slot.get(), (7, (1, 0)));
        slot.end_take(true, &t, &w);
        assert_eq!(slot.get(), (7, (0, 1)));
        slot.begin_take().unwrap();
        slot.end_take(false, &t, &w);
        assert_eq!(slot.get(), (7, (0, 1)));
        assert!(slot.done(&t, &w));
        assert!(!slot.done(&t, &w), "nothing held");
        assert_eq!(slot.outstanding(), 0);
    }

    #[test]
    fn join_waits_for_queue_and_slots() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slots = [TaskSlot::default(), TaskSlot::default()];
        slots[0].claim(1, &t, &w);
        slots[0].begin_take().unwrap();
        slots[0].end_take(true, &t, &w);
        assert_eq!(unfinished(2, &slots), 3);
        let timed_out = t.join(&w, Some(w.now()), &policy(), &mut |_| unfinished(0, &slots));
        assert_eq!(timed_out, Err(TimedOut));
        assert!(slots[0].done(&t, &w));
        assert_eq!(
            t.join(&w, None, &policy(), &mut |_| unfinished(0, &slots)),
            Ok(())
        );
    }

    #[test]
    fn dead_slots_are_dropped_once_and_live_ones_never() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot::default();
        slot.claim(7, &t, &w);
        for _ in 0..2 {
            slot.begin_take().unwrap();
            slot.end_take(true, &t, &w);
        }
        slot.begin_take().unwrap(); // killed mid-take
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |_| false), 0);
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |g| g == 7), 3);
        assert_eq!(slot.reclaim_if_dead(&t, &w, &mut |_| true), 0);
        assert_eq!(slot.outstanding(), 0);
        // A new owner of the row drops what a dead one left.
        slot.claim(8, &t, &w);
        slot.begin_take().unwrap();
        slot.end_take(true, &t, &w);
        assert_eq!(slot.claim(9, &t, &w), 1);
        assert_eq!(slot.claim(9, &t, &w), 0, "already ours");
        assert_eq!(t.lost(), 4);
    }

    #[test]
    fn a_full_slot_refuses_announcements() {
        let slot = TaskSlot(AtomicU64::new((1 << 32) | u64::from(MAX_HELD)));
        assert_eq!(slot.begin_take(), Err(SlotFull));
        let slot = TaskSlot(AtomicU64::new((1 << 32) | IN_FLIGHT_MASK));
        assert_eq!(slot.begin_take(), Err(SlotFull));
    }

    #[test]
    fn hostile_words_never_underflow() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot(AtomicU64::new(u64::MAX));
        slot.end_take(true, &t, &w);
        slot.end_take(false, &t, &w);
        assert!(slot.done(&t, &w));
        let slot = TaskSlot(AtomicU64::new(0));
        slot.end_take(true, &t, &w); // nothing in flight: left alone
        assert_eq!(slot.get(), (0, (0, 0)));
        assert!(!slot.done(&t, &w));
        assert_eq!(
            unfinished(u64::MAX, &[TaskSlot(AtomicU64::new(u64::MAX))]),
            u64::MAX
        );
    }
}
