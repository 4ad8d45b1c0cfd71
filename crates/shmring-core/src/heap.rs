//! Rings and queues on the heap, and a [`Waiter`] built on a condition
//! variable: for tests, loom models, Miri, and single-process use.
//!
//! The algorithms are exactly the ones used in shared memory; only the
//! memory and the sleeping differ.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use crate::error::ConfigError;
use crate::mpmc::{Queue, QueueConfig, QueueShared};
use crate::ring::{RingConfig, RingShared};
use crate::spsc::Ring;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Deadline, Waiter};

struct HeapRing {
    shared: Box<RingShared>,
    data: Box<[AtomicU64]>,
}

fn zeroed_words(n: usize) -> Box<[AtomicU64]> {
    (0..n)
        .map(|_| AtomicU64::new(0))
        .collect::<Vec<_>>()
        .into_boxed_slice()
}

/// A new SPSC ring on the heap.
///
/// # Errors
///
/// The configuration is invalid.
pub fn ring(config: &RingConfig) -> Result<Ring, ConfigError> {
    config.validate()?;
    let heap = Arc::new(HeapRing {
        shared: Box::new(RingShared::new(config)),
        data: zeroed_words((config.capacity / 8) as usize),
    });
    let shared = NonNull::from(&*heap.shared);
    let data = NonNull::from(&heap.data[..]).cast::<AtomicU64>();
    let words = heap.data.len();
    // SAFETY: both live in `heap`, which the Ring keeps alive; nothing else
    // touches them.
    let ring = unsafe { Ring::from_parts(shared, data, words, heap) };
    Ok(ring.expect("a fresh heap ring is consistent"))
}

struct HeapQueue {
    shared: Box<QueueShared>,
    rings: Box<[RingShared]>,
    data: Box<[AtomicU64]>,
}

/// A new MPMC queue on the heap.
///
/// # Errors
///
/// The configuration is invalid.
pub fn queue(config: &QueueConfig) -> Result<Queue, ConfigError> {
    config.validate()?;
    let words = (config.ring.capacity / 8) as usize * config.rings as usize;
    let heap = Arc::new(HeapQueue {
        shared: Box::new(QueueShared::new(config)),
        rings: (0..config.rings)
            .map(|_| RingShared::new(&config.ring))
            .collect(),
        data: zeroed_words(words),
    });
    let shared = NonNull::from(&*heap.shared);
    let rings = NonNull::from(&heap.rings[..]).cast::<RingShared>();
    let data = NonNull::from(&heap.data[..]).cast::<AtomicU64>();
    // SAFETY: all three live in `heap`, which the Queue keeps alive.
    let queue = unsafe { Queue::from_parts(shared, rings, data, heap) };
    Ok(queue.expect("a fresh heap queue is consistent"))
}

/// A [`Waiter`] on a mutex and condition variable shared by every clone:
/// `wake` wakes all sleepers of all words (they re-check), which is correct
/// if not the fastest. Under loom the mutex and condvar are loom's and
/// deadlines are ignored, so a lost wake-up shows up as a deadlock.
#[derive(Clone, Default)]
pub struct ThreadWaiter {
    inner: Arc<ThreadWaiterInner>,
}

impl core::fmt::Debug for ThreadWaiter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ThreadWaiter")
    }
}

#[cfg(not(loom))]
#[derive(Default)]
struct ThreadWaiterInner {
    lock: std::sync::Mutex<()>,
    cond: std::sync::Condvar,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

#[cfg(loom)]
#[derive(Default)]
struct ThreadWaiterInner {
    lock: loom::sync::Mutex<()>,
    cond: loom::sync::Condvar,
}

impl Waiter for ThreadWaiter {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Deadline>) {
        let inner = &*self.inner;
        let guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock the waker takes: a wake cannot slip between
        // this check and the sleep (the futex's own guarantee, modelled).
        // ORDERING: SeqCst — the mutex orders it against the waker's bump.
        if word.load(Ordering::SeqCst) != expected {
            return;
        }
        #[cfg(not(loom))]
        {
            match deadline {
                None => drop(inner.cond.wait(guard)),
                Some(d) => {
                    let now = self.now();
                    if d > now {
                        let dur = std::time::Duration::from_nanos(d.0 - now.0);
                        drop(inner.cond.wait_timeout(guard, dur));
                    }
                }
            }
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            drop(inner.cond.wait(guard).unwrap());
        }
    }

    fn wake(&self, _word: &AtomicU32, _count: u32) {
        let inner = &*self.inner;
        let _guard = inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        inner.cond.notify_all();
    }

    fn now(&self) -> Deadline {
        #[cfg(not(loom))]
        {
            let epoch = *self.inner.epoch.get_or_init(std::time::Instant::now);
            Deadline(epoch.elapsed().as_nanos() as u64)
        }
        #[cfg(loom)]
        {
            Deadline(0)
        }
    }
}
