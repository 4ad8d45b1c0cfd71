//! loom models of the robust lock. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmring-core --release --test lock_loom
//! ```
//!
//! Every actor runs in a spawned thread, and each model asserts a floor on
//! the interleavings it explored (see `tests/loom.rs`). The model waiter
//! ignores deadlines, so a lost wake-up is a deadlock loom reports.
#![cfg(loom)]

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::thread;
use shmring_core::heap::ThreadWaiter;
use shmring_core::lock::{Acquired, LockShared, FLAVOR_LOCK};
use shmring_core::wait::{Until, WaitPolicy};

#[path = "support/loom_model.rs"]
mod loom_model;
use loom_model::model;

/// No spin, one endless slice: a sleeper wakes only when woken.
const POLICY: WaitPolicy = WaitPolicy {
    spin_ns: 0,
    max_spin_ns: 0,
    slice_ns: u64::MAX,
};

/// Shared state a critical section mutates without atomics: loom flags any
/// two unsynchronised accesses, i.e. a mutual-exclusion failure.
struct Guarded {
    lock: LockShared,
    value: UnsafeCell<u32>,
}

fn alive(_: u64) -> bool {
    true
}

#[test]
fn lock_handoff_is_exclusive_and_loses_no_wakeup() {
    model("lock handoff", 50, || {
        let g = Arc::new(Guarded {
            lock: LockShared::new(FLAVOR_LOCK),
            value: UnsafeCell::new(0),
        });
        let w = ThreadWaiter::default();
        let threads: Vec<_> = (1..=2u64)
            .map(|token| {
                let (g, w) = (g.clone(), w.clone());
                thread::spawn(move || {
                    let got = g.lock.acquire(token, &w, Until::Never, &POLICY, &mut alive);
                    assert_eq!(got, Ok(Acquired::Yes));
                    // SAFETY: the lock is held; loom checks that claim.
                    g.value.with_mut(|v| unsafe { *v += 1 });
                    g.lock.release_owned(token, &w).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads joined.
        assert_eq!(g.value.with(|v| unsafe { *v }), 2);
        assert_eq!(g.lock.owner(), 0);
    });
}

#[test]
fn release_by_another_thread_wakes_the_sleeper() {
    // Python's Lock may be released by anyone: token 1 holds it, a third
    // party releases it, and the blocked acquirer must be woken.
    model("release any", 20, || {
        let lock = Arc::new(LockShared::new(FLAVOR_LOCK));
        let w = ThreadWaiter::default();
        assert_eq!(lock.try_acquire(1, &mut alive), Some(Acquired::Yes));
        let (l, w2) = (lock.clone(), w.clone());
        let waiter = thread::spawn(move || {
            assert_eq!(
                l.acquire(2, &w2, Until::Never, &POLICY, &mut alive),
                Ok(Acquired::Yes)
            );
        });
        let (l, w3) = (lock.clone(), w.clone());
        let releaser = thread::spawn(move || l.release_any(&w3).unwrap());
        waiter.join().unwrap();
        releaser.join().unwrap();
        assert_eq!(lock.owner(), 2);
    });
}

#[test]
fn dead_holder_is_taken_over_by_exactly_one() {
    model("takeover", 10, || {
        let lock = Arc::new(LockShared::new(FLAVOR_LOCK));
        assert_eq!(lock.try_acquire(9, &mut alive), Some(Acquired::Yes));
        let takers: Vec<_> = (1..=2u64)
            .map(|token| {
                let l = lock.clone();
                thread::spawn(move || l.try_acquire(token, &mut |t| t != 9))
            })
            .collect();
        let got: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let died = got
            .iter()
            .filter(|g| **g == Some(Acquired::OwnerDied))
            .count();
        assert_eq!(died, 1, "{got:?}");
        assert!(got.contains(&None));
        assert_eq!(lock.recoveries(), 1);
    });
}
