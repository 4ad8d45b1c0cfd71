//! Async `Lock` acquire and `JoinableQueue` join (feature `tokio`, which
//! the crate's dev-dependency on itself turns on): sync holders and
//! workers in real processes, SIGKILLed holders, timeouts, cancellation.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use shmring::aio::{AsyncJoinableQueue, AsyncLock};
use shmring::lock::{AcquireTimeoutError, Lock};
use shmring::process::{Entry, EntryResult};
use shmring::queue::{JoinError, JoinTimeoutError, JoinableQueue};
use shmring_testkit::{run_child, spawn_child, wait_child, wait_until, Watchdog};

const CHILD_TEST: &str = "child_entry";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Takes `lock`, says so by taking `ready`, waits for `go` (held by the
/// parent), then releases `lock`.
fn hold_until_go((lock, go, ready): (Lock, Lock, Lock)) -> EntryResult {
    let guard = lock.acquire_timeout(Duration::from_secs(50))?;
    let _ = ready.acquire_timeout(Duration::from_secs(50))?.leak();
    let _go = go.acquire_timeout(Duration::from_secs(50))?;
    drop(guard);
    Ok(())
}
static HOLD_UNTIL_GO: Entry<(Lock, Lock, Lock)> = shmring::entry!(hold_until_go);

/// Takes the lock and sleeps until killed.
fn hold_forever((lock,): (Lock,)) -> EntryResult {
    let _ = lock.acquire_timeout(Duration::from_secs(50))?.leak();
    shmring_testkit::sleep_forever()
}
static HOLD_FOREVER: Entry<(Lock,)> = shmring::entry!(hold_forever);

/// Gets `n` items, marking each done 2 ms later (sync).
fn slow_worker((q, n): (JoinableQueue<u64>, u64)) -> EntryResult {
    for _ in 0..n {
        q.get_timeout(Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(2));
        q.task_done()?;
    }
    Ok(())
}
static SLOW_WORKER: Entry<(JoinableQueue<u64>, u64)> = shmring::entry!(slow_worker);

/// Gets one item (a task it then holds) and sleeps until killed.
fn take_one_and_hang((q,): (JoinableQueue<u64>,)) -> EntryResult {
    q.get_timeout(Duration::from_secs(20))?;
    shmring_testkit::sleep_forever()
}
static TAKE_ONE_AND_HANG: Entry<(JoinableQueue<u64>,)> = shmring::entry!(take_one_and_hang);

/// Puts `0..n`, then joins (sync): returns once an async worker marked
/// every item done.
fn put_then_join((q, n): (JoinableQueue<u64>, u64)) -> EntryResult {
    for i in 0..n {
        q.put_timeout(i, Duration::from_secs(20))?;
    }
    q.join_timeout(Duration::from_secs(20))?;
    Ok(())
}
static PUT_THEN_JOIN: Entry<(JoinableQueue<u64>, u64)> = shmring::entry!(put_then_join);

#[test]
fn child_entry() {
    run_child(&[
        &HOLD_UNTIL_GO,
        &HOLD_FOREVER,
        &SLOW_WORKER,
        &TAKE_ONE_AND_HANG,
        &PUT_THEN_JOIN,
        &PUT_IN_BURSTS,
    ]);
}

/// A sync process holds the lock; a task awaits it (asleep: it does not
/// complete while the holder holds) and gets it when the holder releases.
#[test]
fn an_async_acquire_gets_the_lock_a_sync_process_releases() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async acquire");
    let (lock, go, ready) = (
        Lock::new().unwrap(),
        Lock::new().unwrap(),
        Lock::new().unwrap(),
    );
    let go_guard = go.acquire().unwrap();
    let child = spawn_child(CHILD_TEST, &HOLD_UNTIL_GO, (&lock, &go, &ready));
    assert!(wait_until(Duration::from_secs(20), || ready.is_locked()));
    let lock = AsyncLock::new(lock);
    runtime().block_on(async {
        let waiting = tokio::time::timeout(Duration::from_millis(200), lock.acquire()).await;
        assert!(waiting.is_err(), "held by the child: the acquire waits");
        let acquire = lock.acquire();
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(go_guard); // the child releases the lock
        };
        let (guard, ()) = tokio::join!(
            async { tokio::time::timeout(Duration::from_secs(20), acquire).await },
            release
        );
        let guard = guard.expect("the release wakes the task").unwrap();
        assert!(!guard.owner_died());
    });
    assert!(wait_child(child, Duration::from_secs(20)).success());
    assert!(!lock.is_locked(), "the guard released it");
}

/// A holder SIGKILLed while a task awaits the lock: the task gets it with
/// the dead-holder report of the sync API; a timed acquire before the kill
/// times out, no sooner than its timeout.
#[test]
fn a_holder_killed_while_a_task_awaits_hands_the_lock_over() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async acquire, dead holder");
    let lock = Lock::new().unwrap();
    let mut child = spawn_child(CHILD_TEST, &HOLD_FOREVER, (&lock,));
    assert!(wait_until(Duration::from_secs(20), || lock.is_locked()));
    let lock = AsyncLock::new(lock);
    runtime().block_on(async {
        let start = Instant::now();
        let timed = lock.acquire_timeout(Duration::from_millis(200)).await;
        assert!(matches!(timed, Err(AcquireTimeoutError::Timeout)));
        assert!(start.elapsed() >= Duration::from_millis(200));
        let kill = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            child.kill().unwrap();
        };
        let (guard, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(20), lock.acquire()),
            kill
        );
        let guard = guard.expect("the dead holder is found").unwrap();
        assert!(guard.owner_died(), "the sync API's dead-holder report");
    });
    assert!(!child.wait().unwrap().success(), "killed");
    assert_eq!(lock.sync().recoveries(), 1);
    assert!(!lock.is_locked());
}

/// An async join woken by the `task_done` calls of a sync worker process;
/// joins cancelled by a short timeout again and again while the worker
/// works change nothing. Before the worker starts, a timed join times out.
#[test]
fn an_async_join_is_woken_by_a_sync_worker_process() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async join");
    const N: u64 = 200;
    let q = JoinableQueue::<u64>::new(0).unwrap();
    for i in 0..N {
        q.put(i).unwrap();
    }
    let q = AsyncJoinableQueue::new(q);
    runtime().block_on(async {
        let start = Instant::now();
        let timed = q.join_timeout(Duration::from_millis(100)).await;
        assert!(matches!(timed, Err(JoinTimeoutError::Timeout)));
        assert!(start.elapsed() >= Duration::from_millis(100));
    });
    let child = spawn_child(CHILD_TEST, &SLOW_WORKER, (q.sync(), N));
    let cancelled = runtime().block_on(async {
        let mut cancelled = 0;
        loop {
            // Each join dropped while pending (by the timeout) must
            // deregister, or a later join would still work but the
            // count of sleepers would grow: checked by the unit tests.
            match tokio::time::timeout(Duration::from_millis(3), q.join()).await {
                Ok(joined) => break joined.map(|()| cancelled),
                Err(_) => cancelled += 1,
            }
        }
    });
    assert!(
        cancelled.unwrap() > 0,
        "some joins were cancelled while pending"
    );
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

/// The one holder of a task is SIGKILLed while a task awaits the join:
/// the join ends with the loss reported, as the sync join's.
#[test]
fn a_task_holder_killed_while_a_task_awaits_join_reports_the_loss() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async join, dead holder");
    let q = JoinableQueue::<u64>::new(0).unwrap();
    q.put(7).unwrap();
    let mut child = spawn_child(CHILD_TEST, &TAKE_ONE_AND_HANG, (&q,));
    assert!(wait_until(Duration::from_secs(20), || q.is_empty()));
    let q = AsyncJoinableQueue::new(q);
    runtime().block_on(async {
        let kill = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            child.kill().unwrap();
        };
        let (joined, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(20), q.join()),
            kill
        );
        let joined = joined.expect("the dead holder's task is dropped");
        assert_eq!(joined, Err(JoinError::PeerDied { lost: 1 }));
    });
    assert!(!child.wait().unwrap().success(), "killed");
    assert_eq!(q.unfinished_tasks(), 0);
}

/// An async worker gets every item a sync process puts, in order, and
/// marks each done; the sync process's join returns.
#[test]
fn a_sync_join_is_woken_by_an_async_worker() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async worker");
    const N: u64 = 2_000;
    let q = JoinableQueue::<u64>::new(16).unwrap();
    let child = spawn_child(CHILD_TEST, &PUT_THEN_JOIN, (&q, N));
    let q = AsyncJoinableQueue::new(q);
    runtime().block_on(async {
        for i in 0..N {
            let item = tokio::time::timeout(Duration::from_secs(20), q.get())
                .await
                .expect("the next item")
                .unwrap();
            assert_eq!(item, i, "one producer: FIFO");
            q.task_done().unwrap();
        }
    });
    assert!(wait_child(child, Duration::from_secs(20)).success());
    assert_eq!(q.unfinished_tasks(), 0);
}

/// Puts `0..n` (sync), pausing 10 ms after every 100, so that the async
/// workers fall asleep again and again.
fn put_in_bursts((q, n): (JoinableQueue<u64>, u64)) -> EntryResult {
    for i in 0..n {
        q.put_timeout(i, Duration::from_secs(20))?;
        if (i + 1) % 100 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}
static PUT_IN_BURSTS: Entry<(JoinableQueue<u64>, u64)> = shmring::entry!(put_in_bursts);

/// Four worker tasks on two threads share one handle (clones): each get
/// is raced against a short timeout, so many gets are dropped while
/// pending, while a sync process puts. Every item is got exactly once, and
/// the coordinator's join returns once all are marked done.
#[test]
fn tasks_sharing_one_handle_with_cancelled_gets_count_every_task() {
    use std::sync::{Arc, Mutex};
    let _dog = Watchdog::new(Duration::from_secs(60), "async workers, one handle");
    const N: u64 = 2_000;
    let q = JoinableQueue::<u64>::new(0).unwrap();
    let child = spawn_child(CHILD_TEST, &PUT_IN_BURSTS, (&q, N));
    let q = AsyncJoinableQueue::new(q);
    let got = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancelled = rt.block_on(async {
        let workers = (0..4).map(|_| {
            let (q, got) = (q.clone(), got.clone());
            tokio::spawn(async move {
                let mut cancelled = 0u64;
                loop {
                    match tokio::time::timeout(Duration::from_millis(2), q.get()).await {
                        Ok(Ok(item)) => {
                            got.lock().unwrap().push(item);
                            q.task_done().unwrap();
                        }
                        Ok(Err(_)) => return cancelled, // shut down
                        Err(_) => cancelled += 1,
                    }
                }
            })
        });
        let workers: Vec<_> = workers.collect();
        assert!(wait_child(child, Duration::from_secs(20)).success());
        tokio::time::timeout(Duration::from_secs(20), q.join())
            .await
            .expect("every task marked done")
            .unwrap();
        q.sync().shutdown();
        let mut cancelled = 0;
        for w in workers {
            cancelled += w.await.unwrap();
        }
        cancelled
    });
    assert!(cancelled > 0, "some gets were dropped while pending");
    let mut got = got.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "each item exactly once");
    assert_eq!(q.unfinished_tasks(), 0);
}

/// A join dropped while pending, after its slow check dropped the task of
/// a dead holder, still counts that recovery, and the next join reports
/// the loss.
#[test]
fn a_join_dropped_after_reclaiming_a_dead_holders_task_counts_it() {
    use shmring::segment::PeerCounter;
    let _dog = Watchdog::new(Duration::from_secs(60), "dropped join, dead holder");
    let q = JoinableQueue::<u64>::new(0).unwrap();
    q.put(1).unwrap();
    let mut child = spawn_child(CHILD_TEST, &TAKE_ONE_AND_HANG, (&q,));
    assert!(wait_until(Duration::from_secs(20), || q.is_empty()));
    child.kill().unwrap();
    child.wait().unwrap();
    q.put(2).unwrap(); // still queued: the join cannot end
    let q = AsyncJoinableQueue::new(q);
    runtime().block_on(async {
        // Its first check is a slow one: it drops the dead holder's task.
        let pending = tokio::time::timeout(Duration::from_millis(200), q.join()).await;
        assert!(pending.is_err(), "one task still queued");
        assert_eq!(q.sync().segment().counter_sum(PeerCounter::Recovered), 1);
        assert_eq!(q.unfinished_tasks(), 1);
        assert_eq!(q.try_get().unwrap(), 2);
        q.task_done().unwrap();
        let joined = tokio::time::timeout(Duration::from_secs(20), q.join()).await;
        assert_eq!(joined.unwrap(), Err(JoinError::PeerDied { lost: 1 }));
    });
}
