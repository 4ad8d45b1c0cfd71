//! Python's queue behaviours (python-semantics.md §1–3), one test per bullet
//! where it applies, plus real processes.

use std::time::{Duration, Instant};

use shmring::codec::Message;
use shmring::process::{Entry, EntryResult};
use shmring::queue::{
    GetError, GetTimeoutError, JoinTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue,
    SimpleQueue, TryGetError, TryJoinError, TryPutError,
};
use shmring::{Builder, CreateError};
use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, Watchdog};

fn anon<T: Message>(maxsize: u64) -> Queue<T> {
    Queue::new(maxsize).unwrap()
}

#[test]
fn fifo_and_types() {
    let q = anon::<String>(0);
    for s in ["a", "bb", "ccc"] {
        q.put(s.to_string()).unwrap();
    }
    assert_eq!(q.len(), 3);
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.get().unwrap(), "bb");
    assert_eq!(q.try_get().unwrap(), "ccc");
    assert!(q.is_empty());
}

#[test]
fn maxsize_full_gives_the_item_back() {
    let q = anon::<u64>(2);
    assert_eq!(q.maxsize(), 2);
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full());
    match q.try_put(3) {
        Err(TryPutError::Full(3)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn put_timeout_on_a_full_queue_waits_then_fails() {
    let _dog = Watchdog::new(Duration::from_secs(20), "put timeout");
    let q = anon::<u64>(1);
    q.put(1).unwrap();
    let start = Instant::now();
    match q.put_timeout(2, Duration::from_millis(50)) {
        Err(PutTimeoutError::Timeout(2)) => {}
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn get_timeout_on_an_empty_queue_waits_then_fails() {
    let _dog = Watchdog::new(Duration::from_secs(20), "get timeout");
    let q = anon::<u64>(0);
    let start = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(50)),
        Err(GetTimeoutError::Timeout)
    ));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn zero_timeout_tries_once() {
    let q = anon::<u64>(1);
    assert!(matches!(
        q.get_timeout(Duration::ZERO),
        Err(GetTimeoutError::Timeout)
    ));
    q.put_timeout(1, Duration::ZERO).unwrap();
    assert!(matches!(
        q.put_timeout(2, Duration::ZERO),
        Err(PutTimeoutError::Timeout(2))
    ));
    // A deadline already past is a single try too.
    let past = std::time::Instant::now();
    assert!(matches!(
        q.put_deadline(3, past),
        Err(PutTimeoutError::Timeout(3))
    ));
    assert_eq!(q.get_deadline(past).unwrap(), 1);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

#[test]
fn close_fails_this_handle_only() {
    let name = unique_name("queue-close");
    let a = Queue::<u32>::builder().create(&name).unwrap();
    let b = Queue::<u32>::open(&name).unwrap();
    a.put(1).unwrap();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.put(2), Err(PutError::Closed(2))));
    assert!(matches!(a.get(), Err(GetError::Closed)));
    assert_eq!(b.get().unwrap(), 1, "another handle is unaffected");
    b.put(3).unwrap();
}

#[test]
fn shutdown_wakes_a_sleeping_getter_in_another_thread() {
    let _dog = Watchdog::new(Duration::from_secs(20), "shutdown");
    let q = std::sync::Arc::new(anon::<u32>(0));
    q.put(5).unwrap();
    let getter = {
        let q = q.clone();
        std::thread::spawn(move || (q.get().map_err(|e| e.to_string()), q.get().is_err()))
    };
    std::thread::sleep(Duration::from_millis(20));
    q.shutdown();
    let (first, second_failed) = getter.join().unwrap();
    assert_eq!(first, Ok(5), "what was queued is still delivered");
    assert!(second_failed);
    assert!(matches!(q.put(6), Err(PutError::ShutDown(6))));
}

#[test]
fn too_large_and_undecodable_messages_are_errors() {
    let q = Queue::<Vec<u8>>::builder()
        .max_message(16)
        .ring_bytes(4096)
        .anonymous()
        .unwrap();
    assert!(matches!(q.put(vec![0; 17]), Err(PutError::TooLarge(v, 17)) if v.len() == 17));
    // The same segment read as another type: a decode error, not garbage.
    let name = unique_name("queue-types");
    let bytes = Queue::<Vec<u8>>::builder().create(&name).unwrap();
    bytes.put(vec![0xff, 0xfe]).unwrap();
    let text = Queue::<String>::open(&name).unwrap();
    assert!(matches!(text.get(), Err(GetError::Decode(_))));
}

#[test]
fn bad_options_are_named_as_the_user_set_them() {
    let bad = |b: Builder<Queue<u8>>| b.anonymous().unwrap_err();
    let option = |e: &CreateError| match e {
        CreateError::InvalidOption { option, .. } => *option,
        other => panic!("not an invalid option: {other}"),
    };
    let e = bad(Queue::builder().producers(0));
    assert_eq!(option(&e), "producers", "{e}");
    assert!(
        e.to_string().contains("`producers`: 0 must be between 1"),
        "{e}"
    );
    let e = bad(Queue::builder().ring_bytes(1000));
    assert_eq!(option(&e), "ring_bytes", "{e}");
    assert!(e.to_string().contains("power of two"), "{e}");
    // The core's words ("capacity", "maximum record") never reach the user.
    let e = bad(Queue::builder().ring_bytes(4096).max_message(8192));
    assert_eq!(option(&e), "max_message", "{e}");
    let text = e.to_string();
    assert!(text.contains("do not fit"), "{text}");
    assert!(text.contains("`ring_bytes`"), "{text}");
    assert!(
        !text.contains("capacity") && !text.contains("maximum record"),
        "{text}"
    );
    // The engine's queue and ring, and every queue kind, say the same.
    let e = shmring::mpmc::ByteQueue::builder()
        .ring_bytes(4096)
        .max_message(8192)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "max_message", "{e}");
    let e = shmring::spsc::Ring::builder()
        .ring_bytes(100)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "ring_bytes", "{e}");
    let e = JoinableQueue::<u8>::builder()
        .producers(0)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "producers", "{e}");
    let e = SimpleQueue::<u8>::builder()
        .ring_bytes(4096)
        .max_message(8192)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "max_message", "{e}");
    // A pipe's record bound is its `fragment_bytes`.
    let e = shmring::pipe::Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(8192)
        .pair()
        .unwrap_err();
    assert_eq!(option(&e), "fragment_bytes", "{e}");
    let e = shmring::pipe::Pipe::builder()
        .fragment_bytes(4)
        .pair()
        .unwrap_err();
    assert_eq!(option(&e), "fragment_bytes", "{e}");
    let e = shmring::dict::Dict::<u8, u8>::builder()
        .capacity(0)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "capacity", "{e}");
    let e = shmring::dict::Dict::<u8, u8>::builder()
        .max_key(0)
        .anonymous()
        .unwrap_err();
    assert_eq!(option(&e), "max_key", "{e}");
}

#[test]
fn joinable_task_done_too_many_times() {
    let q = JoinableQueue::<u8>::new(0).unwrap();
    assert_eq!(
        q.task_done().unwrap_err().to_string(),
        "task_done() called too many times"
    );
    q.put(1).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    q.get().unwrap();
    q.task_done().unwrap();
    assert!(q.task_done().is_err());
    q.join().unwrap();
}

#[test]
fn joinable_join_waits_for_task_done() {
    let _dog = Watchdog::new(Duration::from_secs(20), "join");
    let q = std::sync::Arc::new(JoinableQueue::<u32>::new(0).unwrap());
    for i in 0..3 {
        q.put(i).unwrap();
    }
    assert!(
        q.join_timeout(Duration::from_millis(20)).is_err(),
        "3 unfinished"
    );
    let worker = {
        let q = q.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                q.get().unwrap();
                std::thread::sleep(Duration::from_millis(5));
                q.task_done().unwrap();
            }
        })
    };
    q.join().unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    worker.join().unwrap();
}

#[test]
fn simple_queue_put_get_empty_close() {
    let q = SimpleQueue::<u64>::new().unwrap();
    assert!(q.is_empty());
    q.put(9).unwrap();
    assert!(!q.is_empty());
    assert_eq!(q.get().unwrap(), 9);
    q.close();
    let err = q.put(1).unwrap_err();
    assert_eq!(err.to_string(), "handle is closed");
    assert!(matches!(err, PutError::Closed(1)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
}

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// Squares what it takes from `q` onto `results`, marking each task done,
/// until the queue is shut down.
fn joinable_worker((q, results): (JoinableQueue<u64>, Queue<u64>)) -> EntryResult {
    loop {
        match q.get() {
            Ok(n) => {
                results.put(n * n)?;
                q.task_done()?;
            }
            Err(GetError::ShutDown) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
static JOINABLE_WORKER: Entry<(JoinableQueue<u64>, Queue<u64>)> = shmring::entry!(joinable_worker);

/// Puts 0..10_000 through one sender.
fn sender((q,): (Queue<u64>,)) -> EntryResult {
    let mut tx = q.sender()?;
    for i in 0..10_000u64 {
        tx.put_timeout(i, Duration::from_secs(20))?;
    }
    Ok(())
}
static SENDER: Entry<(Queue<u64>,)> = shmring::entry!(sender);

/// Blocks in `get` (spins 5 µs, then sleeps) until the parent puts; exits
/// 0 once it has the value.
fn sleeper((q,): (Queue<u64>,)) -> EntryResult {
    assert_eq!(q.get_timeout(Duration::from_secs(20))?, 42);
    Ok(())
}
static SLEEPER: Entry<(Queue<u64>,)> = shmring::entry!(sleeper);

/// Puts `id * 1000 + 0..100` and exits (its handle, and with it its
/// producer ring, handed back on the way out).
fn producer_of_100((q, id): (Queue<u64>, u64)) -> EntryResult {
    for i in 0..100 {
        q.put_timeout(id * 1000 + i, Duration::from_secs(20))?;
    }
    Ok(())
}
static PRODUCER_OF_100: Entry<(Queue<u64>, u64)> = shmring::entry!(producer_of_100);

#[test]
fn child_entry() {
    run_child(&[&JOINABLE_WORKER, &SENDER, &SLEEPER, &PRODUCER_OF_100]);
}

/// The seed's ending: join the producers, then put the sentinel. It comes
/// out after everything the producers put, although it goes into a ring
/// of its own that a scan may reach first (the parent's, claimed before
/// the producers claimed theirs).
#[test]
fn a_put_after_the_producers_were_joined_comes_after_their_items() {
    let _dog = Watchdog::new(Duration::from_secs(60), "sentinel after joined producers");
    let q = anon::<u64>(0);
    q.put(1).unwrap(); // the parent's ring is ring 0
    assert_eq!(q.get().unwrap(), 1);
    let children: Vec<_> = (1..=3u64)
        .map(|id| spawn_child(CHILD_TEST, &PRODUCER_OF_100, (&q, id)))
        .collect();
    for c in children {
        assert!(wait_child(c, Duration::from_secs(20)).success());
    }
    q.put(u64::MAX).unwrap(); // the sentinel
    let mut got = Vec::new();
    loop {
        let item = q.get_timeout(Duration::from_secs(5)).unwrap();
        if item == u64::MAX {
            break;
        }
        got.push(item);
    }
    assert_eq!(
        got.len(),
        300,
        "the sentinel came before {} items",
        300 - got.len()
    );
    for id in 1..=3u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|i| i / 1000 == id).collect();
        assert_eq!(mine, (0..100).map(|i| id * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn sleeps_and_wakes_are_counted_and_polling_counts_neither() {
    use shmring::segment::PeerCounter::{BlockedWaits, Wakes};
    let _dog = Watchdog::new(Duration::from_secs(60), "sleep/wake counters");
    // Polling traffic makes no futex call, so it counts neither.
    let busy = anon::<u64>(0);
    for i in 0..10_000 {
        busy.try_put(i).unwrap();
        assert_eq!(busy.try_get().unwrap(), i);
    }
    let seg = busy.segment();
    assert_eq!(
        (seg.counter_sum(BlockedWaits), seg.counter_sum(Wakes)),
        (0, 0)
    );
    // A child asleep in `get`: its row counts the sleep before the put that
    // wakes it, and the put counts the wake in ours.
    let q = anon::<u64>(0);
    let child = spawn_child(CHILD_TEST, &SLEEPER, (&q,));
    let slept = shmring_testkit::wait_until(Duration::from_secs(20), || {
        q.segment().counter_sum(BlockedWaits) >= 1
    });
    assert!(slept, "the child never counted a sleep");
    assert_eq!(q.segment().counter_sum(Wakes), 0, "nobody woke it yet");
    q.put(42).unwrap();
    assert!(wait_child(child, Duration::from_secs(20)).success());
    assert!(q.segment().counter_sum(Wakes) >= 1, "the put woke it");
}

#[test]
fn sender_and_receiver_across_processes_fifo_per_sender_and_counted() {
    let _dog = Watchdog::new(Duration::from_secs(60), "sender/receiver");
    let q = Queue::<u64>::new(64).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| spawn_child(CHILD_TEST, &SENDER, (&q,)))
        .collect();
    let mut rx = q.receiver();
    // Two senders of 0..10_000 each: every value arrives twice, and the
    // arrivals split into two increasing runs, one per sender (FIFO per
    // sender), which the loop below rebuilds greedily.
    let mut seen = vec![0u8; 10_000];
    let mut last = [None::<u64>; 2];
    for _ in 0..20_000 {
        let v = rx.get_timeout(Duration::from_secs(20)).unwrap();
        seen[v as usize] += 1;
        // A value continues whichever sender's sequence it extends.
        let slot = last
            .iter()
            .position(|l| l.map_or(v == 0, |l| l + 1 == v))
            .unwrap_or_else(|| panic!("{v} continues neither sender: {last:?}"));
        last[slot] = Some(v);
    }
    assert!(seen.iter().all(|&n| n == 2));
    assert!(matches!(rx.try_get(), Err(TryGetError::Empty)));
    for c in children {
        assert!(wait_child(c, Duration::from_secs(20)).success());
    }
    drop(rx); // flushes the receiver's counts
    let gets = q.segment().counter_sum(shmring::segment::PeerCounter::Gets);
    let puts = q.segment().counter_sum(shmring::segment::PeerCounter::Puts);
    assert_eq!((puts, gets), (20_000, 20_000));
}

#[test]
fn sender_gives_the_item_back_and_shares_the_queue_s_limits() {
    let q = anon::<u64>(2);
    let mut tx = q.sender().unwrap();
    tx.put(1).unwrap();
    q.put(2).unwrap();
    match tx.try_put(3) {
        Err(TryPutError::Full(3)) => {}
        other => panic!("{other:?}"),
    }
    let mut rx = q.receiver();
    let mut got = [rx.try_get().unwrap(), q.try_get().unwrap()];
    got.sort();
    assert_eq!(got, [1, 2]);
    q.shutdown();
    assert!(matches!(
        tx.try_put(4),
        Err(TryPutError::Put(PutError::ShutDown(4)))
    ));
    assert!(matches!(rx.get(), Err(GetError::ShutDown)));
}

#[test]
fn joinable_queue_across_processes() {
    let _dog = Watchdog::new(Duration::from_secs(60), "joinable across processes");
    let q = JoinableQueue::<u64>::new(0).unwrap();
    let results = Queue::<u64>::new(0).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| spawn_child(CHILD_TEST, &JOINABLE_WORKER, (&q, &results)))
        .collect();
    for n in 1..=100u64 {
        q.put(n).unwrap();
    }
    q.join_timeout(Duration::from_secs(30))
        .expect("workers marked every task done");
    let mut sum = 0;
    while let Ok(v) = results.try_get() {
        sum += v;
    }
    assert_eq!(sum, (1..=100u64).map(|n| n * n).sum::<u64>());
    q.shutdown();
    for w in workers {
        assert!(wait_child(w, Duration::from_secs(20)).success());
    }
}

#[cfg(feature = "serde")]
#[test]
fn serde_messages_through_a_queue() {
    use shmring::codec::Serde;
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
        item: String,
        qty: Vec<u16>,
    }
    let q = anon::<Serde<Order>>(0);
    let order = Order {
        id: 7,
        item: "bun".into(),
        qty: vec![1, 2],
    };
    q.put(Serde(order)).unwrap();
    let Serde(back) = q.get().unwrap();
    assert_eq!(
        back,
        Order {
            id: 7,
            item: "bun".into(),
            qty: vec![1, 2]
        }
    );
}

#[test]
fn each_form_of_join_reports_in_its_own_type() {
    let q = JoinableQueue::<u64>::new(0).unwrap();
    assert_eq!(q.try_join(), Ok(()));
    q.put(1).unwrap();
    assert_eq!(q.try_join(), Err(TryJoinError::Unfinished));
    let start = std::time::Instant::now();
    assert_eq!(
        q.join_deadline(start + Duration::from_millis(30)),
        Err(JoinTimeoutError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(
        q.try_join(),
        Err(TryJoinError::Unfinished),
        "held, not done"
    );
    q.task_done().unwrap();
    assert_eq!(q.join_timeout(Duration::ZERO), Ok(()));
    q.join().unwrap();
}

#[test]
fn closing_a_handle_and_shutting_the_queue_down_are_told_apart() {
    let a = anon::<u64>(0);
    a.put(1).unwrap();
    a.close();
    let err = a.put(2).unwrap_err();
    assert!(matches!(err, PutError::Closed(2)) && err.is_closed());
    assert_eq!(err.to_string(), "handle is closed");
    let b = anon::<u64>(0);
    b.put(1).unwrap();
    b.shutdown();
    let err = b.try_put(2).unwrap_err();
    assert!(matches!(err, TryPutError::Put(PutError::ShutDown(2))) && err.is_closed());
    assert_eq!(err.to_string(), "queue is shut down");
    assert_eq!(
        b.get_timeout(Duration::from_secs(1)).unwrap(),
        1,
        "drained first"
    );
    let err = b.get_timeout(Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, GetTimeoutError::Get(GetError::ShutDown)) && err.is_closed());
}

#[test]
fn a_deadline_bounds_a_put_and_a_get_from_below() {
    let q = anon::<u64>(1);
    q.put(1).unwrap();
    let start = std::time::Instant::now();
    let err = q
        .put_deadline(2, start + Duration::from_millis(40))
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(err.into_inner(), 2, "the item comes back");
    assert_eq!(q.get().unwrap(), 1);
    let start = std::time::Instant::now();
    assert!(q
        .get_deadline(start + Duration::from_millis(40))
        .unwrap_err()
        .is_timeout());
    assert!(start.elapsed() >= Duration::from_millis(40));
}

/// Byte messages of every length class (empty, part of a word, the
/// word-at-a-time sizes and past them) come out whole whichever way they
/// are taken: `get` of the queue (a pooled buffer the item takes over),
/// `get` of a `Receiver` (its own buffer, taken over), and `get_into` into
/// the caller's buffer, which keeps its allocation while the messages fit.
/// A `String` that is not UTF-8 is a decode error and the next one is
/// whole again.
#[test]
fn byte_messages_come_out_whole_from_every_form_of_get() {
    let lens = [0usize, 1, 7, 8, 9, 63, 64, 65, 200, 1000, 3, 0, 500];
    let msg = |i: usize, len: usize| (0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<u8>>();
    let q = Queue::<Vec<u8>>::builder()
        .max_message(1024)
        .ring_bytes(1 << 16)
        .anonymous()
        .unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver();
    let mut buf = Vec::with_capacity(1024);
    let at = buf.as_ptr();
    for round in 0..3 {
        for (i, &len) in lens.iter().enumerate() {
            tx.put(msg(i, len)).unwrap();
            let got = match (round + i) % 3 {
                0 => q.get().unwrap(),
                1 => rx.get().unwrap(),
                _ => {
                    assert_eq!(rx.get_into(&mut buf).unwrap(), len);
                    assert_eq!(buf.as_ptr(), at, "get_into reuses the buffer");
                    buf.clone()
                }
            };
            assert_eq!(got, msg(i, len), "round {round}, message {i}");
        }
    }
    // The timed and the trying forms, and an empty queue.
    tx.put(msg(1, 70)).unwrap();
    assert_eq!(rx.try_get_into(&mut buf).unwrap(), 70);
    assert_eq!(buf, msg(1, 70));
    assert!(matches!(rx.try_get_into(&mut buf), Err(TryGetError::Empty)));
    assert!(matches!(
        rx.get_into_timeout(&mut buf, Duration::from_millis(5)),
        Err(GetTimeoutError::Timeout)
    ));
    tx.put(msg(2, 5)).unwrap();
    assert_eq!(
        rx.get_into_timeout(&mut buf, Duration::from_secs(5))
            .unwrap(),
        5
    );
    assert_eq!(buf, msg(2, 5));
    assert_eq!(buf.as_ptr(), at);

    // Strings: the same, and bytes that are not UTF-8 in between.
    let name = unique_name("queue-owned-strings");
    let bytes = Queue::<Vec<u8>>::builder().create(&name).unwrap();
    let text = Queue::<String>::open(&name).unwrap();
    let mut text_rx = text.receiver();
    // One message queued at a time: the two handles put into rings of
    // their own, and FIFO holds per ring only.
    for (i, s) in ["", "a", "ünïcode", &"x".repeat(100)].iter().enumerate() {
        let get = |text_rx: &mut shmring::queue::Receiver<String>| {
            if i % 2 == 0 {
                text.get()
            } else {
                text_rx.get()
            }
        };
        text.put(s.to_string()).unwrap();
        assert_eq!(get(&mut text_rx).unwrap(), *s);
        bytes.put(vec![0xff, 0xfe]).unwrap();
        assert!(matches!(get(&mut text_rx), Err(GetError::Decode(_))));
        text.put(format!("{s}!")).unwrap();
        assert_eq!(get(&mut text_rx).unwrap(), format!("{s}!"));
    }
}
