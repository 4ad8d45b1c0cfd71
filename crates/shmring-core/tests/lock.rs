//! The robust lock on the heap: Python's Lock behaviours, takeover of a dead
//! holder, and mutual exclusion between threads.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring_core::heap::ThreadWaiter;
use shmring_core::lock::{Acquired, LockShared, ReleaseError, FLAVOR_LOCK};
use shmring_core::wait::{Deadline, TimedOut, Until, WaitPolicy, Waiter};

fn alive(_: u64) -> bool {
    true
}

#[test]
fn uncontended_acquire_and_release() {
    let lock = LockShared::new(FLAVOR_LOCK);
    let w = ThreadWaiter::default();
    assert_eq!(lock.flavor(), FLAVOR_LOCK);
    assert_eq!(lock.try_acquire(1, &mut alive), Some(Acquired::Yes));
    assert_eq!(lock.owner(), 1);
    assert_eq!(lock.try_acquire(2, &mut alive), None);
    // Not recursive: the same token does not get it twice.
    assert_eq!(lock.try_acquire(1, &mut alive), None);
    lock.release_owned(1, &w).unwrap();
    assert_eq!(lock.owner(), 0);
}

#[test]
fn release_errors() {
    let lock = LockShared::new(FLAVOR_LOCK);
    let w = ThreadWaiter::default();
    assert_eq!(lock.release_any(&w), Err(ReleaseError::NotHeld));
    assert_eq!(lock.release_owned(3, &w), Err(ReleaseError::NotHeld));
    assert_eq!(lock.try_acquire(3, &mut alive), Some(Acquired::Yes));
    assert_eq!(
        lock.release_owned(4, &w),
        Err(ReleaseError::NotOwner { owner: 3 })
    );
    // Python's Lock: anyone may release it.
    lock.release_any(&w).unwrap();
    assert_eq!(lock.release_any(&w), Err(ReleaseError::NotHeld));
}

#[test]
fn dead_holder_is_taken_over_once() {
    let lock = LockShared::new(FLAVOR_LOCK);
    assert_eq!(lock.try_acquire(7, &mut alive), Some(Acquired::Yes));
    let mut dead7 = |t: u64| t != 7;
    // Without the probe a held lock is just held.
    assert_eq!(lock.try_acquire_with(8, false, &mut dead7), None);
    assert_eq!(lock.try_acquire(8, &mut dead7), Some(Acquired::OwnerDied));
    assert_eq!(lock.owner(), 8);
    assert_eq!(lock.recoveries(), 1);
    // 8 is alive: a third party waits.
    assert_eq!(lock.try_acquire(9, &mut dead7), None);
}

#[test]
fn garbage_owner_is_taken_over() {
    let lock = LockShared::new(FLAVOR_LOCK);
    assert_eq!(lock.try_acquire(u64::MAX, &mut alive), Some(Acquired::Yes));
    let mut only_small = |t: u64| t < 100;
    assert_eq!(
        lock.try_acquire(5, &mut only_small),
        Some(Acquired::OwnerDied)
    );
}

#[test]
fn timed_acquire_times_out_and_probes_at_the_deadline() {
    let lock = LockShared::new(FLAVOR_LOCK);
    let w = ThreadWaiter::default();
    let policy = WaitPolicy::default();
    assert_eq!(lock.try_acquire(1, &mut alive), Some(Acquired::Yes));
    let start = Instant::now();
    let deadline = w.now().after(50_000_000);
    assert_eq!(
        lock.acquire(2, &w, Until::At(deadline), &policy, &mut alive),
        Err(TimedOut)
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    // A deadline already past is "try once", and the last check probes
    // liveness; so is `Until::Now`, which never reads the clock.
    let past = Until::At(Deadline(0));
    assert_eq!(
        lock.acquire(2, &w, Until::Now, &policy, &mut alive),
        Err(TimedOut)
    );
    assert_eq!(
        lock.acquire(2, &w, past, &policy, &mut |t| t != 1),
        Ok(Acquired::OwnerDied)
    );
    lock.release_owned(2, &w).unwrap();
    assert_eq!(lock.try_acquire(1, &mut alive), Some(Acquired::Yes));
    assert_eq!(
        lock.acquire(2, &w, Until::Now, &policy, &mut |t| t != 1),
        Ok(Acquired::OwnerDied)
    );
}

#[test]
fn sleeping_waiter_notices_a_dead_holder_within_a_slice() {
    let lock = Arc::new(LockShared::new(FLAVOR_LOCK));
    let w = ThreadWaiter::default();
    let policy = WaitPolicy {
        spin_ns: 1_000,
        max_spin_ns: 0,
        slice_ns: 20_000_000,
    };
    assert_eq!(lock.try_acquire(1, &mut alive), Some(Acquired::Yes));
    let dead = Arc::new(AtomicU64::new(0));
    let d = dead.clone();
    let start = Instant::now();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        d.store(1, Ordering::SeqCst);
    });
    let got = lock.acquire(2, &w, Until::Never, &policy, &mut |t| {
        t != 1 || dead.load(Ordering::SeqCst) == 0
    });
    assert_eq!(got, Ok(Acquired::OwnerDied));
    assert!(start.elapsed() >= Duration::from_millis(30));
    killer.join().unwrap();
}

#[test]
fn threads_are_mutually_exclusive() {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 2_000;
    let lock = Arc::new(LockShared::new(FLAVOR_LOCK));
    let counter = Arc::new(AtomicU64::new(0));
    let w = ThreadWaiter::default();
    let handles: Vec<_> = (1..=THREADS)
        .map(|token| {
            let (lock, counter, w) = (lock.clone(), counter.clone(), w.clone());
            std::thread::spawn(move || {
                let policy = WaitPolicy::default();
                for _ in 0..ROUNDS {
                    let got = lock.acquire(token, &w, Until::Never, &policy, &mut alive);
                    assert_eq!(got, Ok(Acquired::Yes));
                    // A non-atomic increment: lost updates if two hold it.
                    let v = counter.load(Ordering::Relaxed);
                    std::hint::spin_loop();
                    counter.store(v + 1, Ordering::Relaxed);
                    lock.release_owned(token, &w).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), THREADS * ROUNDS);
    assert_eq!(lock.owner(), 0);
}
