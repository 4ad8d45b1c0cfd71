//! The async sleeper's wake paths under stress (feature `tokio`): many
//! sleepers of one multi-thread runtime, runtimes that start at once or
//! end while futures of theirs live on, futures that move between
//! runtimes. Every wait's slice is a minute, so a lost wake is not rescued
//! by the liveness re-check: it shows as a timeout.
#![cfg(feature = "tokio")]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::aio::{sleeps_without_polling, AsyncQueue};
use shmring::queue::Queue;
use shmring::WaitPolicy;
use shmring_testkit::Watchdog;

const LONG: Duration = Duration::from_secs(20);

fn slow_queue(capacity: u64) -> AsyncQueue<u64> {
    let q = Queue::<u64>::new(capacity).unwrap();
    q.set_wait_policy(WaitPolicy::fixed(0).with_slice(60_000_000_000));
    AsyncQueue::new(q)
}

fn current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// 1,000 tasks of a two-worker runtime, and its `block_on` future, sleep
/// on one queue; a thread puts 1,001 items, pausing now and then so that
/// the sleepers (and the latest of them, which listens to the eventfd)
/// change under the wakes. Each sleeper gets exactly one item.
#[test]
fn a_thousand_sleepers_of_a_multi_thread_runtime_are_each_woken() {
    let _dog = Watchdog::new(Duration::from_secs(60), "a thousand sleepers");
    assert!(sleeps_without_polling());
    const TASKS: u64 = 1_000;
    let q = slow_queue(4);
    let rt = multi(2);
    let got = rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.get_timeout(LONG).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await; // all asleep
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..=TASKS {
                    q.sync().put(i).unwrap();
                    if i % 37 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        let mut got = BTreeSet::new();
        got.insert(
            q.get_timeout(LONG)
                .await
                .expect("the block_on future's item (a lost wake?)"),
        );
        for task in tasks {
            let item = task.await.unwrap().expect("an item (a lost wake?)");
            assert!(got.insert(item), "{item} received twice");
        }
        producer.join().unwrap();
        got
    });
    assert_eq!(got, (0..=TASKS).collect::<BTreeSet<_>>());
}

/// Eight tasks make the first waits of fresh four-worker runtimes at once
/// (the runtime's driver entry is still being made for some of them); a
/// thread then wakes each. Twenty runtimes, one after the other.
#[test]
fn first_waits_of_a_runtime_made_at_once_are_woken() {
    let _dog = Watchdog::new(Duration::from_secs(60), "first waits at once");
    const TASKS: usize = 8;
    for _ in 0..20 {
        let queues: Vec<_> = (0..TASKS).map(|_| slow_queue(1)).collect();
        let rt = multi(4);
        let start = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = queues
            .iter()
            .cloned()
            .map(|q| {
                let start = start.clone();
                rt.spawn(async move {
                    // Holds the worker until the others came (or 100 ms
                    // passed): the waits are armed together.
                    start.fetch_add(1, Ordering::SeqCst);
                    let until = Instant::now() + Duration::from_millis(100);
                    while start.load(Ordering::SeqCst) < 4 && Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    q.get_timeout(LONG).await
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        for (i, q) in queues.iter().enumerate() {
            q.sync().put(i as u64).unwrap();
        }
        rt.block_on(async {
            for (i, task) in tasks.into_iter().enumerate() {
                assert_eq!(
                    task.await.unwrap().expect("an item (a lost wake?)"),
                    i as u64
                );
            }
        });
    }
}

/// A pending get whose first wait was armed in a runtime outlives that
/// runtime (a current-thread one, then a multi-thread one), so the
/// eventfd registration it holds is dropped after its runtime: nothing
/// panics, and the waits of later runtimes are still woken. Fifty rounds.
#[test]
fn gets_that_outlive_their_runtime_leave_later_runtimes_woken() {
    let _dog = Watchdog::new(Duration::from_secs(60), "gets outlive their runtime");
    for round in 0..50u64 {
        let (left, q) = (slow_queue(1), slow_queue(1));
        let old = if round % 2 == 0 { current() } else { multi(1) };
        let mut orphan = Box::pin(left.get_timeout(LONG));
        old.block_on(async {
            let pending = tokio::time::timeout(Duration::from_millis(5), &mut orphan).await;
            assert!(pending.is_err(), "nothing was put");
        });
        drop(old);
        let rt = if round % 3 == 0 { multi(2) } else { current() };
        let sync = q.clone();
        let put = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sync.sync().put(round).unwrap();
        });
        let got = rt.block_on(q.get_timeout(LONG));
        assert_eq!(got.expect("an item (a lost wake?)"), round);
        put.join().unwrap();
        drop(orphan); // its runtime is gone: only the wait is cancelled
        drop(rt);
    }
}

/// A get first polled in a multi-thread runtime (which stays up) is
/// finished by another runtime's `block_on`, and one first polled by a
/// current-thread runtime is finished in a multi-thread one that waited
/// before: both are woken by the put.
#[test]
fn a_get_moved_to_another_runtime_is_woken() {
    let _dog = Watchdog::new(Duration::from_secs(60), "moved gets");
    for round in 0..20u64 {
        let q = slow_queue(1);
        let (from, to) = if round % 2 == 0 {
            (multi(1), current())
        } else {
            (current(), multi(2))
        };
        if round % 2 == 1 {
            // The runtime the get moves to has waited before: it has a driver.
            let warm = slow_queue(1);
            warm.sync().put(7).unwrap();
            to.block_on(async { assert_eq!(warm.get_timeout(LONG).await.unwrap(), 7) });
        }
        let mut get = Box::pin(q.get_timeout(LONG));
        from.block_on(async {
            assert!(tokio::time::timeout(Duration::from_millis(5), &mut get)
                .await
                .is_err());
        });
        let sync = q.clone();
        let put = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sync.sync().put(round).unwrap();
        });
        let got = to.block_on(async { tokio::time::timeout(Duration::from_secs(5), get).await });
        assert_eq!(got.expect("woken (a lost wake?)").unwrap(), round);
        put.join().unwrap();
    }
}

/// The module docs: an async wait needs a runtime with I/O enabled; in
/// one without, the first wait that sleeps panics with tokio's own
/// message, as tokio's sockets do (no stable tokio API tells a runtime
/// without I/O apart beforehand).
#[test]
#[should_panic(expected = "IO is disabled")]
fn a_runtime_without_io_panics_at_the_first_sleep() {
    let _dog = Watchdog::new(Duration::from_secs(20), "no I/O driver");
    let q = slow_queue(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let sync = q.clone();
    let put = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        sync.sync().put(5).unwrap();
    });
    assert_eq!(rt.block_on(q.get_timeout(LONG)).unwrap(), 5);
    put.join().unwrap();
}

/// While four tasks of a two-worker runtime sleep in long gets, 400 more
/// make one get each that they drop after 20 to 300 µs (a wake that picked
/// a dropped get's wait must be passed on), and a thread puts one item at a
/// time, each after the last was received. Every item arrives within 5 s.
#[test]
fn wakes_taken_by_dropped_gets_are_passed_on_to_long_sleepers() {
    let _dog = Watchdog::new(Duration::from_secs(60), "dropped gets pass wakes on");
    const ITEMS: u64 = 2_000;
    const DROPPERS: u64 = 400;
    let q = slow_queue(1);
    let rt = multi(2);
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let (q, tx) = (q.clone(), tx.clone());
            rt.spawn(async move {
                while let Ok(item) = q.get_timeout(LONG).await {
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let droppers: Vec<_> = (0..DROPPERS)
        .map(|i| {
            let (q, tx) = (q.clone(), tx.clone());
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 2_500)).await;
                let limit = Duration::from_micros(20 + (i * 7_919) % 280);
                if let Ok(Ok(item)) = tokio::time::timeout(limit, q.get()).await {
                    let _ = tx.send(item);
                }
            })
        })
        .collect();
    drop(tx);
    let mut got = BTreeSet::new();
    for i in 0..ITEMS {
        q.sync().put(i).unwrap();
        let item = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("item {i} was not received (a lost wake?)"));
        assert!(got.insert(item), "{item} received twice");
        std::thread::sleep(Duration::from_micros((i * 31) % 400));
    }
    q.sync().shutdown();
    rt.block_on(async {
        for task in sleepers.into_iter().chain(droppers) {
            task.await.unwrap();
        }
    });
}
