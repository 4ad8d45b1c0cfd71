//! Adversarial review of the counted position words and the MPMC queue
//! built on them: one test per finding, each failing on the code it was
//! written against (see the commit that fixes it).
#![cfg(not(loom))]

use std::cell::{Cell, RefCell};

use shmring_core::failpoint;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::{Producer, Queue, QueueConfig};
use shmring_core::ring::{COUNT_BITS, POSITION_BITS};
use shmring_core::{PopError, RingConfig};

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

/// A position word: `count` records, word position `position` (both
/// modulo their widths), as `crate::ring` packs them.
fn word(count: u64, position: u64) -> u64 {
    let count_mask = (1u64 << COUNT_BITS) - 1;
    let position_mask = (1u64 << POSITION_BITS) - 1;
    ((count & count_mask) << POSITION_BITS) | (position & position_mask)
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

/// Finding 2: the ABA bound of the ring docs. They say a consumer holding a
/// cached tail word across a stall is fooled only once the ring has seen
/// 2^38 words *and* a multiple of 2^26 records, "so that the very same
/// 64-bit word is back". But the cached tail is trusted whenever the head
/// lies less than a capacity behind it (modulo 2^38), which happens a
/// capacity's worth of words earlier, with any record count that uniform
/// traffic produces. A consumer state left idle (a pooled one of a queue
/// handle, say) through that much traffic then read stale words past the
/// real tail as records, and reported a healthy, empty ring `Corrupted`.
///
/// The traffic is simulated: the position words are moved on (as a quiet
/// ring would have them), then one real lap of pushes and pops leaves the
/// data area as that traffic would.
#[test]
fn a_consumer_idle_through_nearly_2_pow_38_words_does_not_report_corruption() {
    // 8 words of data; 8-byte payloads take 2 words each.
    let q = queue(1, 64, 8, 0);
    let w = ThreadWaiter::default();
    let mut producer = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    producer.try_push(b"record 0").unwrap();
    producer.try_push(b"record 1").unwrap();
    // The idle consumer takes one record and caches the tail word
    // (2 records, position 4); another takes the second.
    let mut idle = q.consumer(w.clone());
    let mut buf = Vec::new();
    assert_eq!(idle.try_pop(&mut buf), Ok(8));
    assert_eq!(q.consumer(w.clone()).try_pop(&mut buf), Ok(8));
    drop(producer);
    // 2^38 - 4 words (2^37 - 2 records) later, less the lap run for real
    // below: the queue is empty at position 0 (mod 2^38), count 0 (mod
    // 2^26). The tail word the idle consumer cached is not back (it was
    // 2 records at position 4), nor is any multiple of 2^26 records done.
    let lap = 8;
    let (tail, head) = q.position_words(0);
    let start = word(0u64.wrapping_sub(lap / 2), 0u64.wrapping_sub(lap));
    tail.store(start, std::sync::atomic::Ordering::SeqCst);
    head.store(start, std::sync::atomic::Ordering::SeqCst);
    let mut producer = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    let mut other = q.consumer(w.clone());
    for i in 0..lap / 2 {
        producer.try_push(&i.to_le_bytes()).unwrap();
        assert_eq!(other.try_pop(&mut buf), Ok(8));
    }
    assert_eq!(
        q.position_words(0)
            .0
            .load(std::sync::atomic::Ordering::SeqCst),
        word(0, 0)
    );
    assert_eq!(q.len(), 0);
    assert_eq!(other.try_pop(&mut buf), Err(PopError::Empty));
    // The idle consumer comes back: the queue is empty and healthy.
    assert_eq!(idle.try_pop(&mut buf), Err(PopError::Empty));
}

/// Finding 2, what the fix above could not reach: in a ring of 128 MiB or
/// more every lap writes the same stamps, so the stale header a consumer
/// idle through nearly 2^38 words found past the real tail decoded as a
/// record; it took that stale record (a duplicate) and moved the head past
/// the real tail, after which the producer's next push reported the ring
/// corrupted for good. Rings now stop at 64 MiB (2^23 words, below the
/// stamp's period): such a ring is refused, and the largest legal one
/// takes nothing stale. One lap of the largest ring runs for real (64 MiB
/// of heap).
#[test]
fn a_ring_whose_laps_stamp_alike_is_refused() {
    let config = RingConfig {
        capacity: 128 << 20,
        max_record: 8,
    };
    assert!(config.validate().is_err());
}

#[test]
fn a_consumer_idle_through_nearly_2_pow_38_words_of_the_largest_ring_takes_nothing_stale() {
    let capacity = shmring_core::ring::MAX_CAPACITY;
    let q = queue(1, capacity, 8, 0);
    let w = ThreadWaiter::default();
    let mut producer = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    producer.try_push(b"record 0").unwrap();
    producer.try_push(b"record 1").unwrap();
    let mut idle = q.consumer(w.clone());
    let mut buf = Vec::new();
    assert_eq!(idle.try_pop(&mut buf), Ok(8));
    assert_eq!(q.consumer(w.clone()).try_pop(&mut buf), Ok(8));
    drop(producer);
    // As in the test above, with a lap of 2^24 words.
    let lap = capacity / 8;
    let (tail, head) = q.position_words(0);
    let start = word(0u64.wrapping_sub(lap / 2), 0u64.wrapping_sub(lap));
    tail.store(start, std::sync::atomic::Ordering::SeqCst);
    head.store(start, std::sync::atomic::Ordering::SeqCst);
    let mut producer = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    let mut other = q.consumer(w.clone());
    for i in 0..lap / 2 {
        producer.try_push(&i.to_le_bytes()).unwrap();
        assert_eq!(other.try_pop(&mut buf), Ok(8));
    }
    assert_eq!(q.len(), 0);
    assert_eq!(idle.try_pop(&mut buf), Err(PopError::Empty), "took {buf:?}");
    producer.try_push(b"after").unwrap();
}
