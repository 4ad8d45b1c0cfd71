//! Adversarial review of the counted position words and the MPMC queue
//! built on them: one test per finding, each failing on the code it was
//! written against (see the commit that fixes it).
#![cfg(not(loom))]

use std::cell::{Cell, RefCell};

use shmring_core::failpoint;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::{Producer, Queue, QueueConfig};
use shmring_core::RingConfig;

fn queue(rings: u64, capacity: u64, max_record: u64, max_len: u64) -> Queue {
    heap::queue(&QueueConfig {
        rings,
        ring: RingConfig {
            capacity,
            max_record,
        },
        max_len,
    })
    .unwrap()
}

thread_local! {
    /// The producer a failpoint hook runs a batch of, once, on this thread.
    static RACER: RefCell<Option<Producer<ThreadWaiter>>> = const { RefCell::new(None) };
    /// Whether the hook is armed on this thread.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// At the first `ring.claimed` on an armed thread, a second producer runs
/// a whole batch: what another process's `try_push_many` does while this
/// one is between computing its room and publishing.
fn race_a_batch(name: &'static str, _context: &[u8]) {
    if name != "ring.claimed" || !ARMED.get() {
        return;
    }
    ARMED.set(false);
    RACER.with_borrow_mut(|racer| {
        let racer = racer.as_mut().expect("a racer is set");
        let msgs = [&b"b"[..]; 4];
        racer.try_push_many(msgs).expect("room for the racer");
    });
}

/// Finding 1: `maxsize` overshoot. The queue documents that concurrent
/// pushes overshoot `max_len` by at most one per producer, but
/// `try_push_many` sized its whole batch from one reading of `len` and
/// published it at once: two producers racing with batches each put
/// `max_len` records, so the overshoot grew with the batch (here to twice
/// `max_len`), and with more producers to `producers * max_len`.
#[test]
fn racing_batches_overshoot_max_len_by_at_most_one_per_producer() {
    const { assert!(failpoint::ENABLED) };
    let max_len = 4;
    let q = queue(2, 4096, 16, max_len);
    let w = ThreadWaiter::default();
    let mut first = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    let second = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    failpoint::set_hook(Some(race_a_batch));
    let pushed = std::thread::scope(|s| {
        s.spawn(|| {
            RACER.set(Some(second));
            ARMED.set(true);
            let msgs = [&b"a"[..]; 4];
            let pushed = first.try_push_many(msgs);
            assert!(!ARMED.get(), "the racing batch ran");
            RACER.set(None);
            pushed
        })
        .join()
        .unwrap()
    });
    assert!(pushed.is_ok(), "{pushed:?}");
    let producers = 2;
    assert!(
        q.len() <= max_len + producers,
        "{} records queued with max_len {max_len} and {producers} producers",
        q.len()
    );
}
