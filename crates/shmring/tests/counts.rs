//! Peer-row statistics under threads: every update of a counter slot is an
//! atomic add, so handles of one attachment counting at once lose nothing.

use std::time::Duration;

use shmring::queue::Queue;
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
    let q = Queue::<u64>::builder()
        .ring_bytes(1 << 16)
        .max_message(64)
        .anonymous()
        .unwrap();
    let mut sender = q.sender().unwrap();
    let mut receiver = q.receiver();
    std::thread::scope(|s| {
        let q = &q;
        s.spawn(move || {
            for i in 0..N {
                q.put(i).unwrap();
            }
        });
        s.spawn(move || {
            for _ in 0..N {
                q.get().unwrap();
            }
        });
        s.spawn(|| {
            for i in 0..N {
                sender.put(i).unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..N {
                receiver.get().unwrap();
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

/// Each futex call counts in the row of the attachment whose handle made
/// it: two handles of one named queue in one process, one asleep in `get`,
/// the other putting (and so waking it).
#[test]
fn futex_calls_count_in_the_row_of_the_handle_that_made_them() {
    use shmring::segment::{inspect, PeerCounter::BlockedWaits, PeerCounter::Wakes};
    let _dog = Watchdog::new(Duration::from_secs(60), "futex counts per row");
    let name = shmring_testkit::unique_name("counts-rows");
    let sleeper = Queue::<u64>::builder().create(&name).unwrap();
    let waker = Queue::<u64>::open(&name).unwrap();
    let row = |q: &Queue<u64>| q.segment().peer_token() as u32 - 1;
    std::thread::scope(|s| {
        let got = s.spawn(|| sleeper.get_timeout(Duration::from_secs(30)).unwrap());
        while sleeper.segment().counter_sum(BlockedWaits) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        waker.put(1).unwrap();
        assert_eq!(got.join().unwrap(), 1);
    });
    let info = inspect(&name).unwrap();
    let counters = |r: u32| {
        let peer = info.peers.iter().find(|p| p.row == r).expect("row");
        (peer.counters.get(BlockedWaits), peer.counters.get(Wakes))
    };
    let (slept, woke) = counters(row(&sleeper));
    assert!(slept >= 1, "the sleeper's row counts its sleep");
    assert_eq!(woke, 0, "the sleeper woke nobody");
    let (slept, woke) = counters(row(&waker));
    assert_eq!(slept, 0, "the waker never slept");
    assert!(woke >= 1, "the waker's row counts its wake-up");
}
