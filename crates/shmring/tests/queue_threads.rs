//! Threads sharing one queue handle (`Queue`, `JoinableQueue` and
//! `SimpleQueue` are `Send + Sync`): no call waits behind another thread's
//! blocking call, timed calls time out, and nothing is lost or duplicated.
//!
//! The review behind these tests measured a `try_get` taking 1.5 s (and a
//! `get` with a 50 ms timeout 1.55 s) because another thread of the same
//! handle was asleep in `get` holding the handle's mutex. Here the sleeping
//! thread is never released by the test until the other calls returned, so
//! a call that waits behind it hangs, and the watchdog fails the test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use shmring::queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, SimpleQueue,
    TryGetError, TryPutError,
};
use shmring_testkit::Watchdog;

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Queue<u64>>();
    send_sync::<JoinableQueue<u64>>();
    send_sync::<SimpleQueue<u64>>();
};

/// What the tests need of a queue facade with timeouts.
trait Timed: Send + Sync + 'static {
    fn put(&self, v: u64) -> Result<(), PutError<u64>>;
    fn try_put(&self, v: u64) -> Result<(), TryPutError<u64>>;
    fn put_timeout(&self, v: u64, timeout: Duration) -> Result<(), PutTimeoutError<u64>>;
    fn get(&self) -> Result<u64, GetError>;
    fn try_get(&self) -> Result<u64, TryGetError>;
    fn get_timeout(&self, timeout: Duration) -> Result<u64, GetTimeoutError>;
    fn done(&self) {}
}

/// The facade's own methods, for the [`Timed`] trait.
macro_rules! timed {
    ($ty:ident) => {
        fn put(&self, v: u64) -> Result<(), PutError<u64>> {
            $ty::put(self, v)
        }
        fn try_put(&self, v: u64) -> Result<(), TryPutError<u64>> {
            $ty::try_put(self, v)
        }
        fn put_timeout(&self, v: u64, timeout: Duration) -> Result<(), PutTimeoutError<u64>> {
            $ty::put_timeout(self, v, timeout)
        }
        fn get(&self) -> Result<u64, GetError> {
            $ty::get(self)
        }
        fn try_get(&self) -> Result<u64, TryGetError> {
            $ty::try_get(self)
        }
        fn get_timeout(&self, timeout: Duration) -> Result<u64, GetTimeoutError> {
            $ty::get_timeout(self, timeout)
        }
    };
}

impl Timed for Queue<u64> {
    timed!(Queue);
}

impl Timed for JoinableQueue<u64> {
    timed!(JoinableQueue);
    fn done(&self) {
        self.task_done().unwrap();
    }
}

/// Waits until `flag` is set, then a little more: the other thread is then
/// (almost certainly) asleep in its call.
fn settle(flag: &AtomicBool) {
    // ORDERING: Acquire — pairs with the Release store before the call.
    while !flag.load(Ordering::Acquire) {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(50));
}

fn get_side<Q: Timed>(q: Arc<Q>) {
    let started = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let (q, started) = (q.clone(), started.clone());
        thread::spawn(move || {
            // ORDERING: Release — pairs with `settle`.
            started.store(true, Ordering::Release);
            let got = q.get().unwrap();
            q.done();
            got
        })
    };
    settle(&started);
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(50)),
        Err(GetTimeoutError::Timeout)
    ));
    // Only now is the sleeper released.
    q.put(7).unwrap();
    assert_eq!(sleeper.join().unwrap(), 7);
}

fn put_side<Q: Timed>(q: Arc<Q>) {
    q.put(1).unwrap(); // maxsize 1: full
    let started = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let (q, started) = (q.clone(), started.clone());
        thread::spawn(move || {
            // ORDERING: Release — pairs with `settle`.
            started.store(true, Ordering::Release);
            q.put(2).unwrap();
        })
    };
    settle(&started);
    assert!(matches!(q.try_put(3), Err(TryPutError::Full(3))));
    assert!(matches!(
        q.put_timeout(4, Duration::from_millis(50)),
        Err(PutTimeoutError::Timeout(4))
    ));
    // Only now is the sleeper released: it puts 2 once 1 is taken.
    assert_eq!(q.get().unwrap(), 1);
    q.done();
    sleeper.join().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 2);
    q.done();
}

#[test]
fn a_sleeping_get_blocks_no_other_thread_of_the_handle() {
    let _dog = Watchdog::new(Duration::from_secs(30), "get side");
    get_side(Arc::new(Queue::new(0).unwrap()));
    get_side(Arc::new(JoinableQueue::new(0).unwrap()));
}

#[test]
fn a_sleeping_put_blocks_no_other_thread_of_the_handle() {
    let _dog = Watchdog::new(Duration::from_secs(30), "put side");
    put_side(Arc::new(Queue::new(1).unwrap()));
    put_side(Arc::new(JoinableQueue::new(1).unwrap()));
}

#[test]
fn simple_queue_put_and_empty_do_not_wait_behind_a_sleeping_get() {
    let _dog = Watchdog::new(Duration::from_secs(30), "simple queue");
    let q = Arc::new(SimpleQueue::<u64>::new().unwrap());
    let started = Arc::new(AtomicBool::new(false));
    let sleeper = {
        let (q, started) = (q.clone(), started.clone());
        thread::spawn(move || {
            // ORDERING: Release — pairs with `settle`.
            started.store(true, Ordering::Release);
            q.get().unwrap()
        })
    };
    settle(&started);
    assert!(q.is_empty());
    q.put(9).unwrap();
    assert_eq!(sleeper.join().unwrap(), 9);
}

#[test]
fn close_wakes_this_handles_sleepers() {
    let _dog = Watchdog::new(Duration::from_secs(30), "close wakes");
    let q = Arc::new(Queue::<u64>::new(1).unwrap());
    q.put(1).unwrap();
    let getter_q = Arc::new(Queue::<u64>::new(0).unwrap());
    let started = Arc::new(AtomicBool::new(false));
    let putter = {
        let (q, started) = (q.clone(), started.clone());
        thread::spawn(move || {
            // ORDERING: Release — pairs with `settle`.
            started.store(true, Ordering::Release);
            q.put(2)
        })
    };
    let getter = {
        let q = getter_q.clone();
        thread::spawn(move || q.get())
    };
    settle(&started);
    q.close();
    getter_q.close();
    assert!(matches!(putter.join().unwrap(), Err(PutError::Closed(2))));
    assert!(matches!(getter.join().unwrap(), Err(GetError::Closed)));
}

#[test]
fn threads_sharing_handles_lose_and_duplicate_nothing() {
    // Four threads put through one handle while four get through another
    // (and one more through the putting handle), with a small maxsize so
    // that puts block and wake often. Every value arrives exactly once, and
    // each thread's values in order (one producer ring per handle: FIFO
    // holds per handle, so per thread too).
    let _dog = Watchdog::new(Duration::from_secs(120), "threads share handles");
    const PER: u64 = 5_000;
    let name = shmring_testkit::unique_name("queue-threads");
    let tx = Arc::new(Queue::<u64>::builder().maxsize(8).create(&name).unwrap());
    let rx = Arc::new(Queue::<u64>::open(&name).unwrap());
    let putters: Vec<_> = (0..4u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..PER {
                    tx.put(t << 32 | i).unwrap();
                }
            })
        })
        .collect();
    let getters: Vec<_> = (0..5)
        .map(|g| {
            let q = if g == 4 { tx.clone() } else { rx.clone() };
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.get_timeout(Duration::from_millis(500)) {
                        Ok(v) => got.push(v),
                        Err(GetTimeoutError::Timeout) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for p in putters {
        p.join().unwrap();
    }
    let mut last = [None::<u64>; 4];
    let mut all = Vec::new();
    for g in getters {
        let got = g.join().unwrap();
        let mut seen = [None::<u64>; 4];
        for &v in &got {
            let (t, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
            assert!(seen[t].is_none_or(|s| s < i), "thread {t} out of order");
            seen[t] = Some(i);
            last[t] = last[t].max(Some(i));
        }
        all.extend(got);
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "duplicates");
    assert_eq!(all.len() as u64, 4 * PER, "lost values");
}
