//! loom model of the async sleeper's handshake (the `shmring` crate's
//! `aio`): a sleeper that registers, re-checks, queues a futex wait that
//! does not block it (io_uring's `FUTEX_WAIT`) and then gives the wait up
//! (its future was dropped, or its slice ran out) must pass on a wake-up
//! the wait already took, or a second sleeper on the same word sleeps
//! through the publish that was meant for it. Run as `tests/loom.rs` says.
//!
//! The model futex is a FIFO of queued waits, each woken at most once, and
//! a wake of one goes to exactly one of them, as `FUTEX_WAKE` does: the
//! wake a given-up wait swallowed is then really gone unless passed on
//! (a futex that woke everyone would hide the bug). A sleeper asleep
//! forever shows up as loom's deadlock.
#![cfg(loom)]

use std::collections::VecDeque;

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use shmring_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmring_core::wait::{Deadline, WaitWord, Waiter, WAKE_ALL};

#[path = "support/loom_model.rs"]
mod loom_model;
use loom_model::model;

/// One queued wait.
#[derive(Default)]
struct Queued {
    woken: Mutex<bool>,
    cond: Condvar,
}

/// The model futex (see the module docs).
#[derive(Default)]
struct Futex {
    queue: Mutex<VecDeque<Arc<Queued>>>,
}

impl Futex {
    /// Queues a wait while `word == key` (checked under the queue's lock,
    /// as the kernel does under its bucket lock); `None`: the word changed.
    fn arm(&self, word: &AtomicU32, key: u32) -> Option<Arc<Queued>> {
        let mut queue = self.queue.lock().unwrap();
        // ORDERING: SeqCst — the mutex orders it against a waker's bump.
        if word.load(Ordering::SeqCst) != key {
            return None;
        }
        let queued = Arc::new(Queued::default());
        queue.push_back(queued.clone());
        Some(queued)
    }

    /// Cancels a queued wait; `true` when it had already been woken (its
    /// wake must be passed on).
    fn cancel(&self, queued: &Arc<Queued>) -> bool {
        let mut queue = self.queue.lock().unwrap();
        match queue.iter().position(|q| Arc::ptr_eq(q, queued)) {
            Some(i) => {
                queue.remove(i);
                false
            }
            None => true,
        }
    }
}

impl Waiter for Futex {
    fn wait(&self, word: &AtomicU32, expected: u32, _deadline: Option<Deadline>) {
        if let Some(queued) = self.arm(word, expected) {
            let mut woken = queued.woken.lock().unwrap();
            while !*woken {
                woken = queued.cond.wait(woken).unwrap();
            }
        }
    }

    fn wake(&self, _word: &AtomicU32, count: u32) {
        let mut queue = self.queue.lock().unwrap();
        for _ in 0..count {
            let Some(queued) = queue.pop_front() else {
                break;
            };
            *queued.woken.lock().unwrap() = true;
            queued.cond.notify_one();
        }
    }

    fn now(&self) -> Deadline {
        Deadline(0)
    }
}

struct Shared {
    word: WaitWord,
    futex: Futex,
    /// Items published and not yet taken.
    items: AtomicU64,
    /// The async sleeper took the item (then it wakes everybody, so the
    /// sync sleeper stops waiting for an item that is gone).
    async_took: AtomicU32,
}

impl Shared {
    fn take(&self) -> bool {
        // ORDERING: AcqRel — takes what the producer's Release add
        // published.
        self.items
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The async sleeper: tries, registers, re-checks, queues its wait, and
/// then is dropped while the wait is queued (or already woken): it
/// deregisters, cancels, and passes on a wake its wait took when
/// `pass_on`.
fn async_sleeper_dropped(s: &Shared, pass_on: bool) {
    let took = |s: &Shared| {
        // ORDERING: Release — pairs with the sync sleeper's Acquire load.
        s.async_took.store(1, Ordering::Release);
        s.word.wake_now(&s.futex, WAKE_ALL);
    };
    if s.take() {
        return took(s);
    }
    let registration = s.word.register(&s.futex);
    if s.take() {
        s.word.deregister();
        return took(s);
    }
    let queued = s.futex.arm(s.word.seq(), registration.key);
    // The future is dropped here, before it saw the completion.
    s.word.deregister();
    if let Some(queued) = queued {
        if s.futex.cancel(&queued) && pass_on {
            s.futex.wake(s.word.seq(), 1);
        }
    } else if s.take() {
        // The word had changed: the wait completed at once, and a future
        // dropped before its re-check passes that on too (modelled as the
        // re-check itself, which is what the pass-on leads to).
        took(s);
    }
}

/// The sync sleeper: `block_on`'s steps with the model futex, until it
/// takes the item or the async sleeper says it took it.
fn sync_sleeper(s: &Shared) {
    // ORDERING: Acquire — pairs with the Release store in `took`.
    let done = |s: &Shared| s.take() || s.async_took.load(Ordering::Acquire) == 1;
    loop {
        if done(s) {
            return;
        }
        let registration = s.word.register(&s.futex);
        if done(s) {
            s.word.deregister();
            return;
        }
        s.futex.wait(s.word.seq(), registration.key, None);
        s.word.deregister();
    }
}

fn handshake(pass_on: bool) {
    let s = Arc::new(Shared {
        word: WaitWord::default(),
        futex: Futex::default(),
        items: AtomicU64::new(0),
        async_took: AtomicU32::new(0),
    });
    let producer = {
        let s = s.clone();
        thread::spawn(move || {
            // ORDERING: Release — publishes the item; pairs with the
            // AcqRel take.
            s.items.fetch_add(1, Ordering::Release);
            s.word.wake_if_waiting(&s.futex, 1);
        })
    };
    let dropped = {
        let s = s.clone();
        thread::spawn(move || async_sleeper_dropped(&s, pass_on))
    };
    let sleeper = {
        let s = s.clone();
        thread::spawn(move || sync_sleeper(&s))
    };
    producer.join().unwrap();
    dropped.join().unwrap();
    sleeper.join().unwrap();
    // ORDERING: Relaxed — every actor was joined.
    assert_eq!(
        s.items.load(Ordering::Relaxed),
        0,
        "the item was taken once"
    );
    assert_eq!(s.word.waiters(), 0, "no registration left behind");
}

/// With `handshake(false)` (no pass-on) loom reports the sync sleeper
/// asleep forever, a deadlock (checked by hand, 2026-12-03; it cannot be a
/// `should_panic` test, as loom aborts the process on a deadlock), so this
/// model is not passing by accident.
#[test]
fn a_dropped_async_wait_passes_its_wake_on() {
    model("async handshake", 10_000, || handshake(true));
}
