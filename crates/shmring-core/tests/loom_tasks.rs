//! loom models of JoinableQueue's task counter (`tasks.rs`): `add`,
//! `done`, `join`, and the per-peer slots whose held tasks are forgiven when
//! their peer dies. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmring-core --release --test loom_tasks
//! ```
//!
//! Every actor runs in a spawned thread, and each model asserts a floor on
//! the interleavings it explored (see `tests/loom.rs`). The model waiter
//! ignores deadlines, so a joiner that misses the last wake-up sleeps
//! forever, which loom reports as a deadlock. The "work" a consumer does on
//! its task is a write to a `loom::cell::UnsafeCell` that the joiner reads
//! after `join` returns: loom reports a data race if `join` can return
//! without the `done` that followed the work happening before it.
#![cfg(loom)]

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering as LoomOrdering};
use loom::thread;
use shmring_core::heap::ThreadWaiter;
use shmring_core::tasks::{TaskCounter, TaskSlot};
use shmring_core::wait::WaitPolicy;

#[path = "support/loom_model.rs"]
mod loom_model;
use loom_model::model;

/// No spin, one endless slice: a sleeper wakes only when woken, and the
/// slow check (where recovery runs) comes once, before the first sleep.
const POLICY: WaitPolicy = WaitPolicy {
    spin_ns: 0,
    slice_ns: u64::MAX,
};

/// What the tasks' consumers write and the joiner reads after `join`.
struct Shared {
    tasks: TaskCounter,
    work: [UnsafeCell<u32>; 2],
}

// SAFETY: each cell is written by its task's consumer only, and read by
// others only after the `done` that follows the write: exactly the claim
// these models check (loom reports any access pair that is not ordered).
unsafe impl Sync for Shared {}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            tasks: TaskCounter::default(),
            work: [UnsafeCell::new(0), UnsafeCell::new(0)],
        })
    }

    /// Does task `i`'s work (before marking it done).
    fn work_on(&self, i: usize) {
        // SAFETY: only task i's consumer writes cell i; loom checks that
        // every read of it is ordered after this write.
        self.work[i].with_mut(|v| unsafe { *v = i as u32 + 1 });
    }

    /// Reads task `i`'s work (after `join`).
    fn result_of(&self, i: usize) -> u32 {
        // SAFETY: as in `work_on`; a read not ordered after the write is a
        // race that loom reports.
        self.work[i].with(|v| unsafe { *v })
    }
}

#[test]
fn join_waits_for_the_tasks_before_it_and_misses_no_wakeup() {
    // Task 0 is put before the joiner starts; task 1 is put by a producer
    // that races everyone, and handed to the consumer through a flag (the
    // ring's publish, reduced to its Release/Acquire pair). The consumer
    // must never find a task the count does not hold yet (add, then
    // publish); the joiner may return as soon as the count touches zero,
    // which needs task 0 done, so task 0's work must be visible to it.
    model("tasks join", 6_000, || {
        let s = Shared::new();
        let w = ThreadWaiter::default();
        s.tasks.add(1);
        let published = Arc::new(AtomicU32::new(0));
        let producer = {
            let (s, published) = (s.clone(), published.clone());
            thread::spawn(move || {
                s.tasks.add(1);
                // ORDERING: Release — the publish after `add`; pairs with
                // the consumer's Acquire load.
                published.store(1, LoomOrdering::Release);
            })
        };
        let consumer = {
            let (s, w, published) = (s.clone(), w.clone(), published.clone());
            thread::spawn(move || {
                s.work_on(0);
                s.tasks.done(&w).unwrap();
                // ORDERING: Acquire — pairs with the producer's Release.
                while published.load(LoomOrdering::Acquire) == 0 {
                    thread::yield_now();
                }
                s.work_on(1);
                s.tasks
                    .done(&w)
                    .expect("task 1 was counted before published");
            })
        };
        let joiner = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                s.tasks.join(&w, None, &POLICY).unwrap();
                assert_eq!(s.result_of(0), 1, "join returned before task 0");
            })
        };
        producer.join().unwrap();
        consumer.join().unwrap();
        joiner.join().unwrap();
        assert_eq!(s.tasks.unfinished(), 0);
        assert_eq!(s.tasks.done(&w), Err(shmring_core::tasks::TooManyDone));
    });
}

#[test]
fn two_consumers_finishing_together_wake_the_joiner_once_all_are_done() {
    model("tasks two done", 1_000, || {
        let s = Shared::new();
        let w = ThreadWaiter::default();
        s.tasks.add(2);
        let consumers: Vec<_> = (0..2)
            .map(|i| {
                let (s, w) = (s.clone(), w.clone());
                thread::spawn(move || {
                    s.work_on(i);
                    s.tasks.done(&w).unwrap();
                })
            })
            .collect();
        let joiner = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                s.tasks.join(&w, None, &POLICY).unwrap();
                assert_eq!((s.result_of(0), s.result_of(1)), (1, 2));
            })
        };
        for c in consumers {
            c.join().unwrap();
        }
        joiner.join().unwrap();
    });
}

#[test]
fn a_joiner_forgives_a_dead_holder_while_a_live_consumer_finishes() {
    // Peer 7 got task 0 and died holding it; a live consumer finishes task
    // 1. The joiner's recovery (its one slow check) reclaims peer 7's slot
    // and forgives its task, racing the consumer's `done`; either order
    // must end with the joiner awake, one task forgiven, and task 1's work
    // visible.
    model("tasks forgive", 40, || {
        let s = Shared::new();
        let w = ThreadWaiter::default();
        let slot = Arc::new(TaskSlot::default());
        s.tasks.add(2);
        assert_eq!(slot.claim(7, &s.tasks, &w), 0);
        slot.hold(1);
        let consumer = {
            let (s, w) = (s.clone(), w.clone());
            thread::spawn(move || {
                s.work_on(1);
                s.tasks.done(&w).unwrap();
            })
        };
        let joiner = {
            let (s, w, slot) = (s.clone(), w.clone(), slot.clone());
            thread::spawn(move || {
                let forgiven = s.tasks.join_with(&w, None, &POLICY, &mut |t| {
                    slot.reclaim_if_dead(t, &w, &mut |generation| generation == 7)
                });
                assert_eq!(forgiven, Ok(1));
                assert_eq!(s.result_of(1), 2);
            })
        };
        consumer.join().unwrap();
        joiner.join().unwrap();
        assert_eq!(s.tasks.unfinished(), 0);
        assert_eq!(slot.get(), (0, 0));
    });
}

#[test]
fn a_dead_holders_tasks_are_forgiven_exactly_once() {
    // Peer 7 died holding two tasks. Two joiners' recoveries and a new peer
    // (generation 8) taking over the same row all race to forgive them:
    // exactly one may, and the row ends up the new peer's, empty.
    model("tasks forgive once", 800, || {
        let tasks = Arc::new(TaskCounter::default());
        let w = ThreadWaiter::default();
        let slot = Arc::new(TaskSlot::default());
        tasks.add(3);
        slot.claim(7, &tasks, &w);
        slot.hold(2);
        let reclaimers: Vec<_> = (0..2)
            .map(|_| {
                let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
                thread::spawn(move || slot.reclaim_if_dead(&tasks, &w, &mut |g| g == 7))
            })
            .collect();
        let newcomer = {
            let (tasks, w, slot) = (tasks.clone(), w.clone(), slot.clone());
            thread::spawn(move || {
                let forgiven = slot.claim(8, &tasks, &w);
                slot.hold(1); // it gets the third task
                forgiven
            })
        };
        let mut forgiven: u64 = reclaimers.into_iter().map(|r| r.join().unwrap()).sum();
        forgiven += newcomer.join().unwrap();
        assert_eq!(forgiven, 2, "the dead peer's two tasks, once");
        assert_eq!(tasks.unfinished(), 1);
        assert_eq!(slot.get(), (8, 1));
    });
}
