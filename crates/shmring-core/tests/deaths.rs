//! A thread "killed" between two steps of a protocol: a failpoint hook
//! panics in that thread only, and the handle it held is forgotten, as a
//! killed process's would be (no destructor runs). What it leaves behind
//! must be exactly what a process killed there leaves in shared memory.
//! The chaos harness (`crates/shmring-chaos`) does the same with real
//! processes and SIGKILL.
#![cfg(not(loom))]

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use shmring_core::failpoint;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::{Queue, QueueConfig};
use shmring_core::{PopError, PushError, RingConfig};

thread_local! {
    /// The failpoint this thread dies at, if any.
    static DIE_AT: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The process-wide hook: panics in a thread that chose this failpoint
/// (other test threads of this binary pass through).
fn die_here(name: &'static str, _context: &[u8]) {
    if DIE_AT.get() == Some(name) {
        DIE_AT.set(None);
        panic!("killed at failpoint {name}");
    }
}

/// Runs `f` on a fresh thread that dies at failpoint `at`; whether it did.
fn dies_at<F: FnOnce() + Send>(at: &'static str, f: F) -> bool {
    const { assert!(failpoint::ENABLED, "tests/deaths.rs needs the failpoints") };
    failpoint::set_hook(Some(die_here));
    std::thread::scope(|s| {
        s.spawn(|| {
            DIE_AT.set(Some(at));
            catch_unwind(AssertUnwindSafe(f)).is_err()
        })
        .join()
        .expect("the panic was caught")
    })
}

fn queue(rings: u64, max_len: u64) -> Queue {
    heap::queue(&QueueConfig {
        rings,
        ring: RingConfig {
            capacity: 256,
            max_record: 16,
        },
        max_len,
    })
    .unwrap()
}

/// The queue issue's first breach: a consumer killed between taking a
/// record (its head CAS) and counting it left `len` one too high forever,
/// and with `max_len = 1` the empty queue refused every put for good.
#[test]
fn consumer_killed_after_its_take_leaves_len_exact() {
    let q = queue(2, 1);
    let w = ThreadWaiter::default();
    let mut p = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    for round in 0..3u8 {
        p.try_push(&[round; 4]).unwrap();
        assert_eq!(q.len(), 1);
        let mut c = q.consumer(w.clone());
        let died = dies_at("mpmc.cas-done", || {
            let _ = c.try_pop(&mut Vec::new());
        });
        assert!(died, "the consumer reached the failpoint");
        std::mem::forget(c);
        assert_eq!(q.len(), 0, "round {round}: the record is gone");
        assert!(q.is_empty());
        // The take happened: the queue has room again and holds nothing.
        let mut c = q.consumer(w.clone());
        assert_eq!(c.try_pop(&mut Vec::new()), Err(PopError::Empty));
    }
    p.try_push(b"room").unwrap();
    assert_eq!(p.try_push(b"full"), Err(PushError::Full), "max_len 1");
}

/// The other direction: a producer killed right after publishing (before
/// it counted the records, in the old layout) skewed `len` low, and every
/// such death added to the skew.
#[test]
fn producer_killed_after_publishing_leaves_len_exact() {
    let q = queue(1, 0);
    let w = ThreadWaiter::default();
    for token in 1..=3u64 {
        // Each producer takes over the ring of the one before (dead).
        let mut p = q
            .claim_producer(token, w.clone(), &mut |t| t < token)
            .unwrap();
        assert_eq!(p.ring_index(), 0);
        p.try_push(b"before").unwrap();
        let died = dies_at("ring.published", || {
            let _ = p.try_push_many([&b"a"[..], b"b"]);
        });
        assert!(died, "the producer reached the failpoint");
        std::mem::forget(p);
        assert_eq!(q.len(), 3 * token, "after producer {token} died");
    }
    let mut c = q.consumer(w);
    let mut buf = Vec::new();
    for _ in 0..9 {
        c.try_pop(&mut buf).unwrap();
    }
    assert_eq!(c.try_pop(&mut buf), Err(PopError::Empty));
    assert_eq!(q.len(), 0);
}

/// An SPSC consumer killed after releasing: `len` exact too.
#[test]
fn spsc_consumer_killed_after_releasing_leaves_len_exact() {
    let ring = heap::ring(&RingConfig {
        capacity: 256,
        max_record: 16,
    })
    .unwrap();
    let w = ThreadWaiter::default();
    let mut p = ring.producer(w.clone()).unwrap();
    p.try_push_many([&b"1"[..], b"2", b"3"]).unwrap();
    let mut c = ring.consumer(w.clone()).unwrap();
    let died = dies_at("spsc.released", || {
        let _ = c.try_pop(&mut Vec::new());
    });
    assert!(died);
    std::mem::forget(c);
    assert_eq!(ring.len(), 2);
    let mut c = ring.consumer(w).unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.try_pop(&mut buf), Ok(1));
    assert_eq!(buf, b"2");
    assert_eq!(ring.len(), 1);
}
