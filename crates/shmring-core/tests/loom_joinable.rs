//! loom models of JoinableQueue's task accounting (`joinable.rs`): unfinished
//! = records queued + what every peer's slot counts, each step one atomic
//! operation. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmring-core --release --test loom_joinable
//! ```
//!
//! The queue is reduced to what the accounting needs from it: a published
//! count (the tail word, stored with Release by the producer) and a taken
//! count (the head word, CASed by consumers with AcqRel), which is exactly
//! how the ring's position words carry their record counts.
//!
//! Every actor runs in a spawned thread, and each model asserts a floor on
//! the interleavings it explored (see `tests/loom.rs`). The model waiter
//! ignores deadlines, so a joiner that misses the last wake-up sleeps
//! forever, which loom reports as a deadlock. The "work" a consumer does on
//! a task is a write to a `loom::cell::UnsafeCell` that the joiner reads
//! after `join` returns: loom reports a data race if `join` can return
//! before the `task_done` that followed the work.
#![cfg(loom)]

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;
use shmring_core::heap::ThreadWaiter;
use shmring_core::joinable::{unfinished, TaskCounter, TaskSlot};
use shmring_core::wait::{Until, WaitPolicy};

#[path = "support/loom_model.rs"]
mod loom_model;
use loom_model::model;

/// No spin, one endless slice: a sleeper wakes only when woken, and the
/// slow check (where recovery runs) comes once, before the first sleep.
const POLICY: WaitPolicy = WaitPolicy {
    spin_ns: 0,
    max_spin_ns: 0,
    slice_ns: u64::MAX,
};

/// A queue of `published - taken` records, the task counter, two slots,
/// and the work cells of up to two tasks.
struct Shared {
    published: AtomicU64,
    taken: AtomicU64,
    tasks: TaskCounter,
    slots: [TaskSlot; 2],
    work: [UnsafeCell<u32>; 2],
}

// SAFETY: each cell is written by the consumer that took its task only, and
// read by others only after the `task_done` that follows the write: exactly
// the claim these models check (loom reports any access pair not ordered).
unsafe impl Sync for Shared {}

impl Shared {
    fn new(queued: u64) -> Arc<Shared> {
        Arc::new(Shared {
            published: AtomicU64::new(queued),
            taken: AtomicU64::new(0),
            tasks: TaskCounter::default(),
            slots: [TaskSlot::default(), TaskSlot::default()],
            work: [UnsafeCell::new(0), UnsafeCell::new(0)],
        })
    }

    /// A producer publishes one more record (its tail store).
    fn put(&self) {
        // ORDERING: Release, as the ring's tail store; pairs with the
        // Acquire loads in `take` and `queued`. Only one producer here.
        let p = self.published.load(Ordering::Relaxed);
        self.published.store(p + 1, Ordering::Release);
    }

    /// One try of consumer `c`: if there is a record, announce the take
    /// (its intent: the head it expects), take it (the head CAS), end the
    /// announcement. Returns the task index.
    fn take(&self, c: usize, w: &ThreadWaiter) -> Option<u64> {
        // ORDERING: Acquire, as a consumer's loads of the head and tail.
        let head = self.taken.load(Ordering::Acquire);
        let tail = self.published.load(Ordering::Acquire);
        if head >= tail {
            return None;
        }
        self.slots[c].announce(head).unwrap();
        let took = self
            .taken
            // ORDERING: AcqRel, as the head CAS of a take.
            .compare_exchange(head, head + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        self.slots[c].end_take(took, &self.tasks, w);
        took.then_some(head)
    }

    /// Whether the head moved on from the one `intent` names.
    fn intent_taken(&self, intent: u64) -> bool {
        // ORDERING: Acquire, as `mpmc::Queue::intent_taken`.
        self.taken.load(Ordering::Acquire) != intent
    }

    /// Records queued, as `Queue::len` reads them: head word first.
    fn queued(&self) -> u64 {
        // ORDERING: Acquire on both, head first (see joinable.rs).
        let taken = self.taken.load(Ordering::Acquire);
        let published = self.published.load(Ordering::Acquire);
        published.saturating_sub(taken)
    }

    fn unfinished(&self) -> u64 {
        unfinished(self.queued(), &self.slots)
    }

    /// Does task `i`'s work (before marking it done).
    fn work_on(&self, i: u64) {
        // SAFETY: only task i's taker writes cell i; loom checks that every
        // read of it is ordered after this write.
        self.work[i as usize].with_mut(|v| unsafe { *v = i as u32 + 1 });
    }

    /// Reads task `i`'s work (after `join`).
    fn result_of(&self, i: usize) -> u32 {
        // SAFETY: as in `work_on`; a read not ordered after the write is a
        // race that loom reports.
        self.work[i].with(|v| unsafe { *v })
    }

    fn join(&self, w: &ThreadWaiter, recover: &mut dyn FnMut(&Shared) -> u64) -> u64 {
        let mut dropped = 0;
        self.tasks
            .join(w, Until::Never, &POLICY, &mut |slow| {
                if slow {
                    dropped += recover(self);
                }
                self.unfinished()
            })
            .unwrap();
        dropped
    }
}

#[test]
fn join_waits_for_every_task_put_before_it_and_misses_no_wakeup() {
    // Task 0 is queued before anyone starts; task 1 is put by a producer
    // racing the others. The consumer takes and finishes task 0, then
    // retries until it has task 1 too. The joiner may return as soon as
    // nothing is queued or held (possibly before task 1 is put), but never
    // before task 0's work is visible; a missed wake-up deadlocks it.
    model("tasks join", 2_000, || {
        let s = Shared::new(1);
        let w = ThreadWaiter::default();
        s.slots[0].claim(1, &s.tasks, &w, &mut |_| true);
        let producer = {
            let s = s.clone();
            thread::spawn(move || s.put())
        };
        let consumer = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                let mut done = 0;
                while done < 2 {
                    match s.take(0, &w) {
                        Some(i) => {
                            s.work_on(i);
                            assert!(s.slots[0].done(&s.tasks, &w));
                            done += 1;
                        }
                        None => thread::yield_now(),
                    }
                }
            })
        };
        let joiner = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                assert_eq!(s.join(&w, &mut |_| 0), 0);
                assert_eq!(s.result_of(0), 1, "join returned before task 0");
            })
        };
        producer.join().unwrap();
        consumer.join().unwrap();
        joiner.join().unwrap();
        assert_eq!(s.unfinished(), 0);
    });
}

#[test]
fn a_take_in_flight_is_never_missed_by_a_joiner() {
    // One task queued; a consumer takes it (announce, CAS, end) and marks
    // it done. Whatever instant the joiner reads its sum at, the task is
    // counted in the queue, in flight, or held, until it is done: a join
    // that returns must see the work.
    model("tasks in flight", 300, || {
        let s = Shared::new(1);
        let w = ThreadWaiter::default();
        s.slots[0].claim(1, &s.tasks, &w, &mut |_| true);
        let consumer = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                let i = s.take(0, &w).expect("the one task");
                s.work_on(i);
                assert!(s.slots[0].done(&s.tasks, &w));
            })
        };
        let joiner = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                s.join(&w, &mut |_| 0);
                assert_eq!(s.result_of(0), 1, "join returned before the task was done");
            })
        };
        consumer.join().unwrap();
        joiner.join().unwrap();
    });
}

#[test]
fn a_dead_takers_slot_is_dropped_while_a_live_consumer_finishes() {
    // Peer 7 (slot 1) died in the middle of a take: announced, maybe CASed.
    // A live consumer (slot 0) takes what is left and finishes. The
    // joiner's recovery drops slot 1; it must then return with the live
    // task's work visible, having dropped exactly the dead take.
    model("tasks dead taker", 300, || {
        let s = Shared::new(2);
        let w = ThreadWaiter::default();
        s.slots[0].claim(1, &s.tasks, &w, &mut |_| true);
        s.slots[1].claim(7, &s.tasks, &w, &mut |_| true);
        s.slots[1].announce(0).unwrap();
        // ORDERING: AcqRel, the dead taker's CAS of task 0 (it got that
        // far, then died before ending its take).
        s.taken.fetch_add(1, Ordering::AcqRel);
        let consumer = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                let i = s.take(0, &w).expect("task 1");
                s.work_on(i);
                assert!(s.slots[0].done(&s.tasks, &w));
            })
        };
        let joiner = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                let dropped = s.join(&w, &mut |s| {
                    s.slots[1].reclaim_if_dead(
                        &s.tasks,
                        &ThreadWaiter::default(),
                        &mut |g| g == 7,
                        &mut |intent| s.intent_taken(intent),
                    )
                });
                assert_eq!(dropped, 1, "the take in flight had taken task 0");
                assert_eq!(s.result_of(1), 2, "join returned before task 1 was done");
            })
        };
        consumer.join().unwrap();
        joiner.join().unwrap();
        assert_eq!(s.tasks.lost(), 1);
    });
}

#[test]
fn a_dead_holders_tasks_are_dropped_exactly_once() {
    // Peer 7 died holding two tasks. Two joiners' recoveries and a new peer
    // (generation 8) taking over the same row all race to drop them:
    // exactly one may, and the row ends up the new peer's.
    model("tasks drop once", 800, || {
        let tasks = Arc::new(TaskCounter::default());
        let w = ThreadWaiter::default();
        let slot = Arc::new(TaskSlot::default());
        slot.claim(7, &tasks, &w, &mut |_| true);
        for intent in 0..2 {
            slot.announce(intent).unwrap();
            slot.end_take(true, &tasks, &w);
        }
        let reclaimers: Vec<_> = (0..2)
            .map(|_| {
                let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
                thread::spawn(move || {
                    slot.reclaim_if_dead(&tasks, &w, &mut |g| g == 7, &mut |_| true)
                })
            })
            .collect();
        let newcomer = {
            let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
            thread::spawn(move || {
                let dropped = slot.claim(8, &tasks, &w, &mut |_| true);
                slot.announce(2).unwrap();
                slot.end_take(true, &tasks, &w); // it takes a third task
                dropped
            })
        };
        let mut dropped: u64 = reclaimers.into_iter().map(|r| r.join().unwrap()).sum();
        dropped += newcomer.join().unwrap();
        assert_eq!(dropped, 2, "the dead peer's two tasks, once");
        assert_eq!(tasks.lost(), 2);
        assert_eq!(slot.get(), (8, (0, 1)));
    });
}

#[test]
fn a_loss_is_reported_by_the_join_that_waited_through_it_or_by_the_next() {
    // Peer 7 died holding a task. A joiner waits (recovering dead slots on
    // its slow check) while another party (a second joiner's recovery, or
    // the row's next attacher) empties the slot too. The slot is emptied
    // before the loss is counted, so the waiting joiner may see nothing
    // unfinished and no loss yet, and return `Ok` (found by the review of
    // this protocol); the loss is then reported by the next join, once.
    // (Only the death of the party that emptied the slot between its CAS
    // and its count leaves a loss unreported; the accounting is exact
    // either way.)
    model("tasks loss reported once", 20, || {
        let tasks = Arc::new(TaskCounter::default());
        let w = ThreadWaiter::default();
        let slot = Arc::new(TaskSlot::default());
        slot.claim(7, &tasks, &w, &mut |_| true);
        slot.announce(0).unwrap();
        slot.end_take(true, &tasks, &w);
        let join = |tasks: &TaskCounter, w: &ThreadWaiter, slot: &TaskSlot| {
            let mark = tasks.loss_mark();
            tasks
                .join(w, Until::Never, &POLICY, &mut |slow| {
                    if slow {
                        slot.reclaim_if_dead(tasks, w, &mut |g| g == 7, &mut |_| true);
                    }
                    slot.outstanding()
                })
                .unwrap();
            tasks.report_losses(mark)
        };
        let joiner = {
            let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
            thread::spawn(move || join(&tasks, &w, &slot))
        };
        let other = {
            let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
            thread::spawn(move || slot.reclaim_if_dead(&tasks, &w, &mut |g| g == 7, &mut |_| true))
        };
        let first = joiner.join().unwrap();
        other.join().unwrap();
        let next = {
            let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
            thread::spawn(move || join(&tasks, &w, &slot))
        };
        assert_eq!(first + next.join().unwrap(), 1, "reported once");
        assert_eq!(tasks.lost(), 1);
    });
}
