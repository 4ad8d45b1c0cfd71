//! Peer-row statistics under threads: every update of a counter slot is an
//! atomic add, so handles of one attachment counting at once lose nothing.

use std::time::Duration;

use shmring::queue::{Queue, QueueOptions};
use shmring::segment::PeerCounter;
use shmring_testkit::Watchdog;

/// Messages each of the four counting parties moves.
const N: u64 = 500_000;

/// `Queue::put` and `Queue::get` (two threads sharing one handle) count under
/// the handle's mutexes; a `Sender` and a `Receiver` of the same handle count
/// in batches, from two more threads, into the same peer row. A plain
/// load-and-store update under one mutex loses the other's adds.
#[test]
fn a_queue_handle_and_its_sender_and_receiver_count_exactly() {
    let _dog = Watchdog::new(Duration::from_secs(240), "counts under threads");
    let options = QueueOptions {
        ring_bytes: 1 << 16,
        max_message: 64,
        ..Default::default()
    };
    let q = Queue::<u64>::create_anonymous(options, &Default::default()).unwrap();
    let mut sender = q.sender().unwrap();
    let mut receiver = q.receiver();
    std::thread::scope(|s| {
        let q = &q;
        s.spawn(move || {
            for i in 0..N {
                q.put(i, None).unwrap();
            }
        });
        s.spawn(move || {
            for _ in 0..N {
                q.get(None).unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..N {
                sender.put(i, None).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..N {
                receiver.get(None).unwrap();
            }
        });
    });
    // The batched handles add what is left when they drop.
    drop((sender, receiver));
    let segment = q.segment();
    let sum = |c| segment.counter_sum(c);
    let item = std::mem::size_of::<u64>() as u64;
    assert_eq!(sum(PeerCounter::Puts), 2 * N, "puts");
    assert_eq!(sum(PeerCounter::Gets), 2 * N, "gets");
    assert_eq!(sum(PeerCounter::BytesIn), 2 * N * item, "bytes in");
    assert_eq!(sum(PeerCounter::BytesOut), 2 * N * item, "bytes out");
}
