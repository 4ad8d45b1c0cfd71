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
//! | `get` announces a take (after noting its intent) | own slot: `in_flight + 1` |
//! | `get` takes the record | the ring's head word (CAS; it carries the count) |
//! | `get` ends its take | own slot: `in_flight - 1, held + 1` (took) or `in_flight - 1` (lost the CAS) |
//! | `task_done` | a slot: `held - 1` |
//!
//! So a process killed at any instruction leaves every task counted
//! exactly where it is: in the queue, or in the slot of the (dead) process
//! that was taking or holding it. A take announced but not yet ended counts
//! the item twice (in the queue and in flight) until it ends: that only
//! makes `join` wait a little longer, never return early.
//!
//! A take is announced right before the CAS that takes a data record, with
//! its *intent* (which ring, which head word the CAS expects) noted in the
//! slot first. The accounting never needs the intent; the *report* does: a
//! dead process's take in flight was a real loss if that ring's head moved
//! on (the record was taken, by the dead process or by a consumer racing it
//! for the same record, which cannot be told apart) and nothing at all if
//! the head is still there.
//!
//! # Crash recovery
//!
//! A dead process's slot holds exactly the tasks lost with it (taken or
//! being taken, never done). A joiner that finds a slot whose peer is dead
//! empties it with one CAS, which is the whole recovery: the sum above
//! drops by what the slot held, and the tasks lost (the held ones, and a
//! take in flight whose head moved on) are added to the queue's `lost`
//! count. A new peer that takes over the row does the same with one swap.
//! `join` reports the losses counted since the last `join` that reported
//! any, so a loss recovered before anyone joined is still reported once.
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
use crate::wait::{block_on, TimedOut, Until, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

/// The joiners' wait word and the count of tasks lost with dead peers.
/// Lives in shared memory; zeroed is a valid initial state.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskCounter {
    losses: Padded<Losses>,
    /// Joiners sleep here; woken whenever a slot's count drops to zero.
    all_done: Padded<WaitWord>,
}

/// How many tasks were lost, and how many of those a `join` reported.
#[repr(C)]
#[derive(Debug, Default)]
struct Losses {
    /// Tasks lost with dead peers so far (wrapping). Added to after the
    /// slot was emptied, so a process killed in between under-reports.
    lost: AtomicU64,
    /// `lost` as of the last `join` that reported losses (wrapping).
    reported: AtomicU64,
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
    /// Tasks lost with dead peers so far (wrapping; compare two readings).
    pub fn lost(&self) -> u64 {
        // ORDERING: Relaxed — a report; the slots carry the accounting.
        self.losses.lost.load(Ordering::Relaxed)
    }

    /// Where a `join` starting now counts losses from: what the last `join`
    /// that reported losses reported up to.
    pub fn loss_mark(&self) -> u64 {
        // ORDERING: Relaxed — a report (partner: `report_losses`).
        self.losses.reported.load(Ordering::Relaxed)
    }

    /// The losses counted since `mark` (a [`loss_mark`](Self::loss_mark)
    /// read when a `join` started), marked reported: a `join` starting
    /// later counts from here.
    pub fn report_losses(&self, mark: u64) -> u64 {
        let lost = self.lost();
        let new = lost.wrapping_sub(mark);
        if new != 0 {
            // ORDERING: Relaxed — a report; concurrent joiners may each
            // report the same losses (each was waiting when they happened).
            let _ = self
                .losses
                .reported
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (lost.wrapping_sub(r) as i64 > 0).then_some(lost)
                });
        }
        new
    }

    /// Records `lost` tasks lost with a dead peer (if any), and wakes the
    /// joiners: the slot it emptied may have been the last count.
    fn dropped<W: Waiter + ?Sized>(&self, lost: u64, waiter: &W) {
        if lost != 0 {
            // ORDERING: Relaxed — a report (partner: the load in `lost`);
            // the slot's own CAS already published the change that matters.
            self.losses.lost.fetch_add(lost, Ordering::Relaxed);
        }
        self.wake_joiners(waiter);
    }

    /// The wait word joiners sleep on, for a joiner that runs the
    /// [`block_on`] protocol itself (an async one) with the check of
    /// [`join`](Self::join): every change that may bring the sum to zero
    /// wakes all sleepers registered there.
    pub fn all_done_word(&self) -> &WaitWord {
        &self.all_done
    }

    /// Wakes the joiners if any is asleep (no system call otherwise). Call
    /// after a change that may have brought the sum to zero.
    #[inline]
    pub fn wake_joiners<W: Waiter + ?Sized>(&self, waiter: &W) {
        self.all_done.wake_if_waiting(waiter, WAKE_ALL);
    }

    /// Sleeps until `unfinished(slow)` returns 0, or `until`.
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
        until: Until,
        policy: &WaitPolicy,
        unfinished: &mut dyn FnMut(bool) -> u64,
    ) -> Result<(), TimedOut> {
        block_on(&self.all_done, waiter, until, policy, |slow| {
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

/// One peer's task slot: two `u64`s in shared memory. The first:
///
/// ```text
/// bits 32..64  generation: the high half of the peer token of its owner (0 = unused)
/// bits 24..32  in_flight: takes announced and not yet ended
/// bits  0..24  held: tasks taken and not yet marked done
/// ```
///
/// The second, the *intent* of the take in flight (see
/// [`crate::mpmc::Queue::take_intent`]), is written before each
/// announcement and read only when the owner is dead.
///
/// Only its owner changes `in_flight` and the intent; `held` goes up by its
/// owner's takes and down by `task_done` of any process (a task marked done
/// by another process than the one that took it). Any value is safe to
/// read: a garbage generation is a dead peer, and counts only delay `join`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskSlot {
    word: AtomicU64,
    intent: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<TaskSlot>() == 16);

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
        // on a task before `done`, or the intent before an announcement) to
        // a reader's Acquire load; Acquire keeps the read-modify-write chain
        // ordered. Acquire on failure: retried with the value seen.
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let new = f(current)?;
            match self
                .word
                .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(new),
                Err(now) => current = now,
            }
        }
    }

    /// The tasks a dead owner's slot word `word` lost: every held one, and
    /// the take in flight unless `taken` (told the slot's intent) says its
    /// head never moved. More than one take in flight is not judged (a
    /// handle announces one at a time): all count as lost.
    fn lost_in(&self, word: u64, taken: &mut dyn FnMut(u64) -> bool) -> u64 {
        let (in_flight, held) = counts(word);
        let mut lost = u64::from(in_flight) + u64::from(held);
        // ORDERING: Acquire — written (Release) before the announcement our
        // caller's Acquire load of the word saw; the owner is gone, so it is
        // final.
        if in_flight == 1 && !taken(self.intent.load(Ordering::Acquire)) {
            lost -= 1;
        }
        lost
    }

    /// Takes the slot for the peer of `generation` (at attach). Whatever a
    /// previous owner left (necessarily dead or gone: the row is ours now)
    /// is dropped, and the joiners woken; returns how many tasks were lost
    /// with it (see [`reclaim_if_dead`](Self::reclaim_if_dead) for
    /// `taken`).
    pub fn claim<W: Waiter + ?Sized>(
        &self,
        generation: u32,
        tasks: &TaskCounter,
        waiter: &W,
        taken: &mut dyn FnMut(u64) -> bool,
    ) -> u64 {
        // ORDERING: AcqRel — Acquire reads the previous owner's final counts
        // (pairs with its Release updates); Release orders the claim before
        // our first announcement.
        let old = self
            .word
            .swap(u64::from(generation) << 32, Ordering::AcqRel);
        if old >> 32 == u64::from(generation) || old & COUNTS_MASK == 0 {
            return 0;
        }
        let lost = self.lost_in(old, taken);
        tasks.dropped(lost, waiter);
        lost
    }

    /// Announces a take of the record `intent` names (see
    /// [`crate::mpmc::Queue::take_intent`]), right before its CAS.
    ///
    /// # Errors
    ///
    /// [`SlotFull`] when [`MAX_IN_FLIGHT`] takes are in flight, or the slot
    /// holds so many tasks that a successful take could not be counted.
    #[inline]
    pub fn announce(&self, intent: u64) -> Result<(), SlotFull> {
        // ORDERING: Release — read (Acquire) only after an Acquire load of
        // the word that saw the announcement below; the update's Release
        // orders this store before it.
        self.intent.store(intent, Ordering::Release);
        let announced = self.update(|w| {
            let (in_flight, held) = counts(w);
            let room = in_flight < MAX_IN_FLIGHT && held + in_flight < MAX_HELD;
            room.then_some(w + IN_FLIGHT_ONE)
        });
        failpoint!("tasks.announced");
        announced.map(drop).ok_or(SlotFull)
    }

    /// Ends a take announced with [`announce`](Self::announce): `took`
    /// moves it to the held tasks, otherwise it is dropped (and the joiners
    /// are woken if that emptied the slot).
    #[inline]
    pub fn end_take<W: Waiter + ?Sized>(&self, took: bool, tasks: &TaskCounter, waiter: &W) {
        let new = self.update(|w| {
            if w & IN_FLIGHT_MASK == 0 {
                return None; // not ours to end (a hostile write): leave it
            }
            let w = w - IN_FLIGHT_ONE;
            // `announce` left room for the take; only a hostile write
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
        let w = self.word.load(Ordering::Acquire);
        ((w >> 32) as u32, counts(w))
    }

    /// If the slot counts anything and `is_dead(generation)` says its owner
    /// is dead, empties it with one CAS (exactly one of the reclaimers and
    /// the row's next owner wins) and wakes the joiners. Returns how many
    /// tasks were lost with it: every held one, and a take in flight unless
    /// `taken(intent)` says the head it expected never moved (then the
    /// record is still queued, and nothing was lost).
    pub fn reclaim_if_dead<W: Waiter + ?Sized>(
        &self,
        tasks: &TaskCounter,
        waiter: &W,
        is_dead: &mut dyn FnMut(u32) -> bool,
        taken: &mut dyn FnMut(u64) -> bool,
    ) -> u64 {
        // ORDERING: Acquire — as in `get`: the counts we drop are final.
        let seen = self.word.load(Ordering::Acquire);
        let generation = (seen >> 32) as u32;
        if seen & COUNTS_MASK == 0 || !is_dead(generation) {
            return 0;
        }
        // ORDERING: AcqRel — Acquire as above; Release orders the reclaim
        // before the joiners' wake. Relaxed on failure: someone else
        // reclaimed, or the row was taken over, or the owner changed it (a
        // live owner: `is_dead` was wrong about nobody; we just retry later).
        if self
            .word
            .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let lost = self.lost_in(seen, taken);
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
            max_spin_ns: 0,
            slice_ns: 1_000,
        }
    }

    /// `taken` answers for intents: those in `moved` moved on.
    fn taken_if(moved: &'static [u64]) -> impl FnMut(u64) -> bool {
        move |intent| moved.contains(&intent)
    }

    #[test]
    fn a_take_counts_once_in_flight_then_held() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot::default();
        assert_eq!(slot.claim(7, &t, &w, &mut taken_if(&[])), 0);
        slot.announce(1).unwrap();
        assert_eq!(slot.get(), (7, (1, 0)));
        slot.end_take(true, &t, &w);
        assert_eq!(slot.get(), (7, (0, 1)));
        slot.announce(2).unwrap();
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
        slots[0].claim(1, &t, &w, &mut taken_if(&[]));
        slots[0].announce(1).unwrap();
        slots[0].end_take(true, &t, &w);
        assert_eq!(unfinished(2, &slots), 3);
        let timed_out = t.join(&w, Until::At(w.now()), &policy(), &mut |_| {
            unfinished(0, &slots)
        });
        assert_eq!(timed_out, Err(TimedOut));
        assert!(slots[0].done(&t, &w));
        assert_eq!(
            t.join(&w, Until::Never, &policy(), &mut |_| unfinished(0, &slots)),
            Ok(())
        );
    }

    #[test]
    fn dead_slots_are_dropped_once_and_live_ones_never() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let slot = TaskSlot::default();
        slot.claim(7, &t, &w, &mut taken_if(&[]));
        for intent in 1..=2 {
            slot.announce(intent).unwrap();
            slot.end_take(true, &t, &w);
        }
        slot.announce(3).unwrap(); // killed before its CAS took anything
        let mark = t.loss_mark();
        assert_eq!(
            slot.reclaim_if_dead(&t, &w, &mut |_| false, &mut taken_if(&[])),
            0
        );
        assert_eq!(
            slot.reclaim_if_dead(&t, &w, &mut |g| g == 7, &mut taken_if(&[])),
            2,
            "the two held; the take in flight never moved its head"
        );
        assert_eq!(slot.outstanding(), 0);
        assert_eq!(
            slot.reclaim_if_dead(&t, &w, &mut |_| true, &mut taken_if(&[])),
            0
        );
        // A new owner of the row drops what a dead one left: a take in
        // flight whose head moved on is a loss.
        slot.claim(8, &t, &w, &mut taken_if(&[]));
        slot.announce(4).unwrap();
        assert_eq!(slot.claim(9, &t, &w, &mut taken_if(&[4])), 1);
        assert_eq!(slot.claim(9, &t, &w, &mut taken_if(&[])), 0, "already ours");
        assert_eq!(t.report_losses(mark), 3);
        assert_eq!(t.loss_mark(), 3, "a join starting now counts from here");
        assert_eq!(t.report_losses(t.loss_mark()), 0);
    }

    #[test]
    fn a_full_slot_refuses_announcements() {
        let slot = TaskSlot {
            word: AtomicU64::new((1 << 32) | u64::from(MAX_HELD)),
            intent: AtomicU64::new(0),
        };
        assert_eq!(slot.announce(0), Err(SlotFull));
        let slot = TaskSlot {
            word: AtomicU64::new((1 << 32) | IN_FLIGHT_MASK),
            intent: AtomicU64::new(0),
        };
        assert_eq!(slot.announce(0), Err(SlotFull));
    }

    #[test]
    fn hostile_words_never_underflow() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        let hostile = |word| TaskSlot {
            word: AtomicU64::new(word),
            intent: AtomicU64::new(u64::MAX),
        };
        let slot = hostile(u64::MAX);
        slot.end_take(true, &t, &w);
        slot.end_take(false, &t, &w);
        assert!(slot.done(&t, &w));
        let slot = hostile(0);
        slot.end_take(true, &t, &w); // nothing in flight: left alone
        assert_eq!(slot.get(), (0, (0, 0)));
        assert!(!slot.done(&t, &w));
        assert_eq!(unfinished(u64::MAX, &[hostile(u64::MAX)]), u64::MAX);
        let dead = hostile(u64::MAX);
        let lost = dead.reclaim_if_dead(&t, &w, &mut |_| true, &mut |_| true);
        assert_eq!(lost, u64::from(MAX_IN_FLIGHT) + u64::from(MAX_HELD));
    }
}
