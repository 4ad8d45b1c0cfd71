//! Python's queue behaviours (python-semantics.md §1–3), one test per bullet
//! where it applies, plus real processes.

use std::time::{Duration, Instant};

use shmring::codec::Message;
use shmring::queue::{
    GetError, JoinableQueue, PutError, Queue, QueueOptions, SimpleQueue, SimpleQueueError,
};
use shmring::{CreateOptions, OpenOptions};
use shmring_testkit::{role, spawn_role, unique_name, wait_child, Watchdog};

fn anon<T: Message>(maxsize: u64) -> Queue<T> {
    let options = QueueOptions {
        maxsize,
        ..Default::default()
    };
    Queue::create_anonymous(options, &CreateOptions::default()).unwrap()
}

#[test]
fn fifo_and_types() {
    let q = anon::<String>(0);
    for s in ["a", "bb", "ccc"] {
        q.put(s.to_string(), None).unwrap();
    }
    assert_eq!(q.len(), 3);
    assert_eq!(q.get(None).unwrap(), "a");
    assert_eq!(q.get(None).unwrap(), "bb");
    assert_eq!(q.try_get().unwrap(), "ccc");
    assert!(q.is_empty());
}

#[test]
fn maxsize_full_gives_the_item_back() {
    let q = anon::<u64>(2);
    assert_eq!(q.maxsize(), 2);
    q.put(1, None).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full());
    match q.try_put(3) {
        Err(PutError::Full(3)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn put_timeout_on_a_full_queue_waits_then_fails() {
    let _dog = Watchdog::new(Duration::from_secs(20), "put timeout");
    let q = anon::<u64>(1);
    q.put(1, None).unwrap();
    let start = Instant::now();
    match q.put(2, Some(Duration::from_millis(50))) {
        Err(PutError::Timeout(2)) => {}
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
        q.get(Some(Duration::from_millis(50))),
        Err(GetError::Timeout)
    ));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn zero_timeout_tries_once() {
    let q = anon::<u64>(1);
    assert!(matches!(q.get(Some(Duration::ZERO)), Err(GetError::Empty)));
    q.put(1, Some(Duration::ZERO)).unwrap();
    assert!(matches!(
        q.put(2, Some(Duration::ZERO)),
        Err(PutError::Full(2))
    ));
}

#[test]
fn close_fails_this_handle_only() {
    let name = unique_name("queue-close");
    let a =
        Queue::<u32>::create(&name, QueueOptions::default(), &CreateOptions::default()).unwrap();
    let b = Queue::<u32>::open(&name, &OpenOptions::default()).unwrap();
    a.put(1, None).unwrap();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.put(2, None), Err(PutError::Closed(2))));
    assert!(matches!(a.get(None), Err(GetError::Closed)));
    assert_eq!(b.get(None).unwrap(), 1, "another handle is unaffected");
    b.put(3, None).unwrap();
}

#[test]
fn shutdown_wakes_a_sleeping_getter_in_another_thread() {
    let _dog = Watchdog::new(Duration::from_secs(20), "shutdown");
    let q = std::sync::Arc::new(anon::<u32>(0));
    q.put(5, None).unwrap();
    let getter = {
        let q = q.clone();
        std::thread::spawn(move || (q.get(None).map_err(|e| e.to_string()), q.get(None).is_err()))
    };
    std::thread::sleep(Duration::from_millis(20));
    q.shutdown();
    let (first, second_failed) = getter.join().unwrap();
    assert_eq!(first, Ok(5), "what was queued is still delivered");
    assert!(second_failed);
    assert!(matches!(q.put(6, None), Err(PutError::Closed(6))));
}

#[test]
fn too_large_and_undecodable_messages_are_errors() {
    let options = QueueOptions {
        max_message: 16,
        ring_bytes: 4096,
        ..Default::default()
    };
    let q = Queue::<Vec<u8>>::create_anonymous(options, &CreateOptions::default()).unwrap();
    assert!(matches!(q.put(vec![0; 17], None), Err(PutError::TooLarge(v, 17)) if v.len() == 17));
    // The same segment read as another type: a decode error, not garbage.
    let name = unique_name("queue-types");
    let bytes = Queue::<Vec<u8>>::create(&name, QueueOptions::default(), &CreateOptions::default())
        .unwrap();
    bytes.put(vec![0xff, 0xfe], None).unwrap();
    let text = Queue::<String>::open(&name, &OpenOptions::default()).unwrap();
    assert!(matches!(text.get(None), Err(GetError::Decode(_))));
}

#[test]
fn bad_options_are_config_errors() {
    let bad = |o: QueueOptions| {
        Queue::<u8>::create_anonymous(o, &CreateOptions::default())
            .unwrap_err()
            .to_string()
    };
    assert!(bad(QueueOptions {
        producers: 0,
        ..Default::default()
    })
    .contains("producer ring count"));
    assert!(bad(QueueOptions {
        ring_bytes: 1000,
        ..Default::default()
    })
    .contains("power of two"));
    assert!(bad(QueueOptions {
        ring_bytes: 4096,
        max_message: 8192,
        ..Default::default()
    })
    .contains("does not fit"));
}

#[test]
fn joinable_task_done_too_many_times() {
    let q =
        JoinableQueue::<u8>::create_anonymous(QueueOptions::default(), &CreateOptions::default())
            .unwrap();
    assert_eq!(
        q.task_done().unwrap_err().to_string(),
        "task_done() called too many times"
    );
    q.put(1, None).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    q.get(None).unwrap();
    q.task_done().unwrap();
    assert!(q.task_done().is_err());
    q.join().unwrap();
}

#[test]
fn joinable_join_waits_for_task_done() {
    let _dog = Watchdog::new(Duration::from_secs(20), "join");
    let q = std::sync::Arc::new(
        JoinableQueue::<u32>::create_anonymous(QueueOptions::default(), &CreateOptions::default())
            .unwrap(),
    );
    for i in 0..3 {
        q.put(i, None).unwrap();
    }
    assert!(
        q.join_timeout(Duration::from_millis(20)).is_err(),
        "3 unfinished"
    );
    let worker = {
        let q = q.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                q.get(None).unwrap();
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
    let q =
        SimpleQueue::<u64>::create_anonymous(QueueOptions::default(), &CreateOptions::default())
            .unwrap();
    assert!(q.is_empty());
    q.put(9).unwrap();
    assert!(!q.is_empty());
    assert_eq!(q.get().unwrap(), 9);
    q.close();
    let err = q.put(1).unwrap_err();
    assert_eq!(err.to_string(), "handle is closed");
    assert!(matches!(err, SimpleQueueError::Closed(Some(1))));
    assert!(matches!(q.get(), Err(SimpleQueueError::Closed(None))));
}

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let opts = OpenOptions::default();
    match role.as_str() {
        "joinable-worker" => {
            let q = JoinableQueue::<u64>::open_inherited("JQ", &opts).unwrap();
            let results = Queue::<u64>::open_inherited("RESULTS", &opts).unwrap();
            loop {
                match q.get(None) {
                    Ok(n) => {
                        results.put(n * n, None).unwrap();
                        q.task_done().unwrap();
                    }
                    Err(GetError::Closed) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        "sender" => {
            let q = Queue::<u64>::open_inherited("Q", &opts).unwrap();
            let mut tx = q.sender().unwrap();
            for i in 0..10_000u64 {
                tx.put(i, Some(Duration::from_secs(20))).unwrap();
            }
        }
        "sleeper" => {
            // Blocks in `get` (spins 5 µs, then sleeps) until the parent
            // puts; exits 0 once it has the value.
            let q = Queue::<u64>::open_inherited("Q", &opts).unwrap();
            assert_eq!(q.get(Some(Duration::from_secs(20))).unwrap(), 42);
        }
        other => panic!("unknown role {other}"),
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
    let mut cmd = spawn_role("child_entry", "sleeper", &[]);
    q.share_with_child(&mut cmd, "Q").unwrap();
    let child = cmd.spawn().unwrap();
    let slept = shmring_testkit::wait_until(Duration::from_secs(20), || {
        q.segment().counter_sum(BlockedWaits) >= 1
    });
    assert!(slept, "the child never counted a sleep");
    assert_eq!(q.segment().counter_sum(Wakes), 0, "nobody woke it yet");
    q.put(42, None).unwrap();
    assert!(wait_child(child, Duration::from_secs(20)).success());
    assert!(q.segment().counter_sum(Wakes) >= 1, "the put woke it");
}

#[test]
fn sender_and_receiver_across_processes_fifo_per_sender_and_counted() {
    let _dog = Watchdog::new(Duration::from_secs(60), "sender/receiver");
    let options = QueueOptions {
        maxsize: 64,
        ..QueueOptions::default()
    };
    let q = Queue::<u64>::create_anonymous(options, &CreateOptions::default()).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = spawn_role("child_entry", "sender", &[]);
            q.share_with_child(&mut cmd, "Q").unwrap();
            cmd.spawn().unwrap()
        })
        .collect();
    let mut rx = q.receiver();
    // Two senders of 0..10_000 each: every value arrives twice, and the
    // arrivals split into two increasing runs, one per sender (FIFO per
    // sender), which the loop below rebuilds greedily.
    let mut seen = vec![0u8; 10_000];
    let mut last = [None::<u64>; 2];
    for _ in 0..20_000 {
        let v = rx.get(Some(Duration::from_secs(20))).unwrap();
        seen[v as usize] += 1;
        // A value continues whichever sender's sequence it extends.
        let slot = last
            .iter()
            .position(|l| l.map_or(v == 0, |l| l + 1 == v))
            .unwrap_or_else(|| panic!("{v} continues neither sender: {last:?}"));
        last[slot] = Some(v);
    }
    assert!(seen.iter().all(|&n| n == 2));
    assert!(matches!(rx.try_get(), Err(GetError::Empty)));
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
    tx.put(1, None).unwrap();
    q.put(2, None).unwrap();
    match tx.try_put(3) {
        Err(PutError::Full(3)) => {}
        other => panic!("{other:?}"),
    }
    let mut rx = q.receiver();
    let mut got = [rx.try_get().unwrap(), q.try_get().unwrap()];
    got.sort();
    assert_eq!(got, [1, 2]);
    q.shutdown();
    assert!(matches!(tx.try_put(4), Err(PutError::Closed(4))));
    assert!(matches!(rx.get(None), Err(GetError::Closed)));
}

#[test]
fn joinable_queue_across_processes() {
    let _dog = Watchdog::new(Duration::from_secs(60), "joinable across processes");
    let q =
        JoinableQueue::<u64>::create_anonymous(QueueOptions::default(), &CreateOptions::default())
            .unwrap();
    let results =
        Queue::<u64>::create_anonymous(QueueOptions::default(), &CreateOptions::default()).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = spawn_role("child_entry", "joinable-worker", &[]);
            q.share_with_child(&mut cmd, "JQ").unwrap();
            results.share_with_child(&mut cmd, "RESULTS").unwrap();
            cmd.spawn().unwrap()
        })
        .collect();
    for n in 1..=100u64 {
        q.put(n, None).unwrap();
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
    q.put(Serde(order), None).unwrap();
    let Serde(back) = q.get(None).unwrap();
    assert_eq!(
        back,
        Order {
            id: 7,
            item: "bun".into(),
            qty: vec![1, 2]
        }
    );
}
