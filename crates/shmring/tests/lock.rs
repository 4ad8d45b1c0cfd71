//! Lock and RLock: Python's behaviours on real segments, and between real
//! processes (this binary re-executes itself, see `shmring_testkit`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use shmring::dict::Dict;
use shmring::lock::{
    AcquireTimeoutError, Acquired, Lock, LockGuard, RLock, RLockGuard, ReleaseError,
    TryAcquireError,
};
use shmring::process::{Entry, EntryResult};
use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, wait_until, Watchdog};

const ROUNDS: u64 = 300;

/// Why Python's `acquire` returns `False`, as the old
/// `acquire(block, timeout)` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    WouldBlock,
    Timeout,
}

/// Python's unguarded `acquire(block=True, timeout=None)` written with the
/// four forms, as the Python binding writes it: the guard is leaked, so the
/// lock stays held until `release`.
trait PyAcquire {
    fn py_acquire(&self, block: bool, timeout: Option<Duration>) -> Result<Acquired, Refused>;
}

macro_rules! py_acquire {
    ($lock:ty, $guard:ident) => {
        impl PyAcquire for $lock {
            fn py_acquire(
                &self,
                block: bool,
                timeout: Option<Duration>,
            ) -> Result<Acquired, Refused> {
                match (block, timeout) {
                    (false, _) => match self.try_acquire() {
                        Ok(guard) => Ok($guard::leak(guard)),
                        Err(TryAcquireError::WouldBlock) => Err(Refused::WouldBlock),
                        Err(e) => panic!("try_acquire: {e}"),
                    },
                    (true, None) => Ok($guard::leak(self.acquire().unwrap())),
                    (true, Some(timeout)) => match self.acquire_timeout(timeout) {
                        Ok(guard) => Ok($guard::leak(guard)),
                        Err(AcquireTimeoutError::Timeout) => Err(Refused::Timeout),
                        Err(e) => panic!("acquire_timeout: {e}"),
                    },
                }
            }
        }
    };
}

py_acquire!(Lock, LockGuard);
py_acquire!(RLock, RLockGuard);

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's own watchdog.
fn child_dog() -> Watchdog {
    Watchdog::new(Duration::from_secs(60), "lock child")
}

/// Adds one to the dict's "counter", `ROUNDS` times, each under the lock.
fn increment((lock, counter): (Lock, Dict<String, u64>)) -> EntryResult {
    let _dog = child_dog();
    let key = "counter".to_string();
    for _ in 0..ROUNDS {
        let guard = lock.acquire()?;
        assert!(!guard.owner_died());
        // A deliberately non-atomic read-modify-write: only the lock
        // keeps it from losing updates.
        let v = counter.get(&key)?.unwrap_or(0);
        counter.insert(&key, &(v + 1))?;
    }
    Ok(())
}
static INCREMENT: Entry<(Lock, Dict<String, u64>)> = shmring::entry!(increment);

/// Takes `ready` (to say it holds what it was given), then waits for the
/// test to release `go` before it lets go.
fn say_ready_then_wait_for_go(ready: &Lock, go: &Lock) {
    assert_eq!(ready.py_acquire(true, None), Ok(Acquired::Yes));
    let _go = go.acquire_timeout(Duration::from_secs(50)).unwrap();
}

/// Takes `lock`, says so and waits for `go` (see
/// [`say_ready_then_wait_for_go`]), then releases it.
fn hold_until_go((lock, go, ready): (Lock, Lock, Lock)) -> EntryResult {
    let _dog = child_dog();
    assert_eq!(lock.py_acquire(true, None), Ok(Acquired::Yes));
    say_ready_then_wait_for_go(&ready, &go);
    lock.release()?;
    Ok(())
}
static HOLD_UNTIL_GO: Entry<(Lock, Lock, Lock)> = shmring::entry!(hold_until_go);

/// [`hold_until_go`] with an RLock, taken twice.
fn hold_rlock_until_go((rlock, go, ready): (RLock, Lock, Lock)) -> EntryResult {
    let _dog = child_dog();
    assert_eq!(rlock.py_acquire(true, None), Ok(Acquired::Yes));
    assert_eq!(rlock.py_acquire(true, None), Ok(Acquired::Yes));
    say_ready_then_wait_for_go(&ready, &go);
    rlock.release()?;
    rlock.release()?;
    Ok(())
}
static HOLD_RLOCK_UNTIL_GO: Entry<(RLock, Lock, Lock)> = shmring::entry!(hold_rlock_until_go);

/// Takes the lock and sleeps until killed.
fn hold_forever((lock,): (Lock,)) -> EntryResult {
    let _dog = child_dog();
    let _guard = lock.acquire()?;
    std::thread::sleep(Duration::from_secs(600)); // until killed
    Ok(())
}
static HOLD_FOREVER: Entry<(Lock,)> = shmring::entry!(hold_forever);

#[test]
fn child_entry() {
    run_child(&[
        &INCREMENT,
        &HOLD_UNTIL_GO,
        &HOLD_RLOCK_UNTIL_GO,
        &HOLD_FOREVER,
    ]);
}

#[test]
fn try_acquire_on_a_held_lock_fails_at_once_and_ignores_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(20), "try acquire");
    let lock = Lock::new().unwrap();
    assert_eq!(lock.py_acquire(true, None), Ok(Acquired::Yes));
    let start = Instant::now();
    // Python: `timeout` is ignored when block=False.
    let got = lock.py_acquire(false, Some(Duration::from_secs(10)));
    assert_eq!(got, Err(Refused::WouldBlock));
    assert!(start.elapsed() < Duration::from_secs(5));
    // Not recursive: the holder itself does not get it again.
    assert_eq!(lock.py_acquire(false, None), Err(Refused::WouldBlock));
    lock.release().unwrap();
    assert_eq!(lock.py_acquire(false, None), Ok(Acquired::Yes));
}

#[test]
fn timeout_on_a_held_lock() {
    let _dog = Watchdog::new(Duration::from_secs(20), "timed acquire");
    let lock = Lock::new().unwrap();
    let _held = lock.acquire().unwrap();
    let start = Instant::now();
    let got = lock.py_acquire(true, Some(Duration::from_millis(150)));
    assert_eq!(got, Err(Refused::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(matches!(
        lock.acquire_timeout(Duration::from_millis(10)),
        Err(AcquireTimeoutError::Timeout)
    ));
}

#[test]
fn zero_timeout_tries_once() {
    let _dog = Watchdog::new(Duration::from_secs(20), "zero timeout");
    let lock = Lock::new().unwrap();
    assert_eq!(
        lock.py_acquire(true, Some(Duration::ZERO)),
        Ok(Acquired::Yes)
    );
    // A timed form that tries once reports a timeout (it was `WouldBlock`
    // when one method served both): Python's `False` either way.
    assert_eq!(
        lock.py_acquire(true, Some(Duration::ZERO)),
        Err(Refused::Timeout)
    );
    assert_eq!(
        lock.acquire_timeout(Duration::ZERO).unwrap_err(),
        AcquireTimeoutError::Timeout
    );
}

#[test]
fn releasing_an_unheld_lock_is_an_error() {
    let lock = Lock::new().unwrap();
    let err = lock.release().unwrap_err();
    assert_eq!(err, ReleaseError::NotHeld);
    assert_eq!(err.to_string(), "semaphore or lock released too many times");
    let _ = lock.py_acquire(false, None).unwrap();
    lock.release().unwrap();
    assert_eq!(lock.release(), Err(ReleaseError::NotHeld));
}

#[test]
fn any_attachment_may_release_a_lock() {
    let name = unique_name("lock-release-any");
    let a = Lock::builder().create(&name).unwrap();
    let b = Lock::open(&name).unwrap();
    let _ = a.py_acquire(false, None).unwrap();
    assert!(b.is_locked());
    b.release().unwrap();
    assert!(!a.is_locked());
    // The guard of `a` does not release a lock `b` took since.
    let guard = a.acquire().unwrap();
    a.release().unwrap();
    let _ = b.py_acquire(false, None).unwrap();
    drop(guard);
    assert!(b.is_locked());
}

#[test]
fn a_lock_is_not_an_rlock() {
    let name = unique_name("lock-flavor");
    let _lock = Lock::builder().create(&name).unwrap();
    assert!(RLock::open(&name).is_err());
}

#[test]
fn rlock_recursion_and_release_counts() {
    let _dog = Watchdog::new(Duration::from_secs(20), "rlock recursion");
    let lock = RLock::new().unwrap();
    assert!(!lock.is_owned());
    for _ in 0..3 {
        assert_eq!(lock.py_acquire(true, None), Ok(Acquired::Yes));
    }
    {
        let _guard = lock.acquire().unwrap();
        assert!(lock.is_owned());
    }
    let other = lock.clone();
    std::thread::spawn(move || {
        assert_eq!(other.py_acquire(false, None), Err(Refused::WouldBlock));
        let err = other.release().unwrap_err();
        assert_eq!(err, ReleaseError::NotOwner);
        assert_eq!(
            err.to_string(),
            "attempt to release recursive lock not owned by thread"
        );
    })
    .join()
    .unwrap();
    for _ in 0..3 {
        lock.release().unwrap();
    }
    assert!(!lock.is_owned());
    assert_eq!(lock.release(), Err(ReleaseError::NotOwner));
    // Now free for another thread.
    let other = lock.clone();
    std::thread::spawn(move || {
        assert_eq!(other.py_acquire(false, None), Ok(Acquired::Yes));
        other.release().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn four_processes_increment_a_counter_under_the_lock() {
    let _dog = Watchdog::new(Duration::from_secs(120), "lock contention");
    let (lock_name, dict_name) = (unique_name("lock-count"), unique_name("lock-count-d"));
    let lock = Lock::builder().create(&lock_name).unwrap();
    let dict: Dict<String, u64> = Dict::builder().create(&dict_name).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| spawn_child(CHILD_TEST, &INCREMENT, (&lock, &dict)))
        .collect();
    for child in children {
        assert!(wait_child(child, Duration::from_secs(100)).success());
    }
    assert_eq!(dict.get(&"counter".to_string()).unwrap(), Some(4 * ROUNDS));
    assert!(!lock.is_locked());
    assert_eq!(lock.recoveries(), 0);
}

/// Starts a child that takes the lock and hangs; returns it once it holds.
fn holder(lock: &Lock) -> std::process::Child {
    let child = spawn_child(CHILD_TEST, &HOLD_FOREVER, (lock,));
    assert!(wait_until(Duration::from_secs(20), || lock.is_locked()));
    child
}

#[test]
fn sigkilled_holder_is_reported_to_a_try_acquire() {
    let _dog = Watchdog::new(Duration::from_secs(60), "dead holder, try");
    let name = unique_name("lock-dead-try");
    let lock = Lock::builder().create(&name).unwrap();
    let mut child = holder(&lock);
    assert_eq!(lock.py_acquire(false, None), Err(Refused::WouldBlock));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lock.py_acquire(false, None), Ok(Acquired::OwnerDied));
    assert_eq!(lock.recoveries(), 1);
    lock.release().unwrap();
    assert_eq!(lock.py_acquire(false, None), Ok(Acquired::Yes));
}

#[test]
fn sigkilled_holder_is_reported_to_a_sleeping_waiter_promptly() {
    let _dog = Watchdog::new(Duration::from_secs(60), "dead holder, sleeper");
    let name = unique_name("lock-dead-wait");
    let lock = Lock::builder().create(&name).unwrap();
    let mut child = holder(&lock);
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill has no memory-safety preconditions; the child is
        // not reaped yet, so the pid is still its.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    });
    let start = Instant::now();
    let guard = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
    let waited = start.elapsed();
    assert!(guard.owner_died());
    assert!(waited >= Duration::from_millis(200));
    // One liveness slice (100 ms) after the death, plus scheduling slack:
    // far below the 20 s timeout.
    assert!(waited < Duration::from_secs(5), "took {waited:?}");
    killer.join().unwrap();
    child.wait().unwrap();
}

/// Checks mutual exclusion: `enter` panics if two holders overlap.
#[derive(Default)]
struct Exclusive {
    inside: AtomicBool,
    /// Incremented with a plain load and store: only exclusion keeps it
    /// exact.
    count: AtomicU64,
}

impl Exclusive {
    fn enter(&self) {
        assert!(
            !self.inside.swap(true, Ordering::SeqCst),
            "two holders at once"
        );
        let n = self.count.load(Ordering::Relaxed);
        std::hint::spin_loop();
        self.count.store(n + 1, Ordering::Relaxed);
        self.inside.store(false, Ordering::SeqCst);
    }
}

const THREADS: u64 = 4;
const THREAD_ROUNDS: u64 = 2_000;

#[test]
fn threads_sharing_one_lock_handle_exclude_each_other() {
    let _dog = Watchdog::new(Duration::from_secs(120), "lock threads");
    let lock = Lock::new().unwrap();
    let state = Exclusive::default();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (lock, state) = (&lock, &state);
            s.spawn(move || {
                for i in 0..THREAD_ROUNDS {
                    // Guards, explicit acquire/release, and try loops mixed.
                    match (t + i) % 3 {
                        0 => {
                            let guard = lock.acquire().unwrap();
                            assert!(!guard.owner_died());
                            state.enter();
                        }
                        1 => {
                            let got = lock.py_acquire(true, Some(Duration::from_secs(60)));
                            assert_eq!(got, Ok(Acquired::Yes));
                            state.enter();
                            lock.release().unwrap();
                        }
                        _ => {
                            while lock.py_acquire(false, None).is_err() {
                                std::thread::yield_now();
                            }
                            state.enter();
                            lock.release().unwrap();
                        }
                    }
                }
            });
        }
    });
    assert_eq!(state.count.load(Ordering::Relaxed), THREADS * THREAD_ROUNDS);
    assert!(!lock.is_locked());
    assert_eq!(lock.recoveries(), 0);
}

#[test]
fn another_thread_may_release_a_lock_and_the_holders_guard_then_leaves_it_alone() {
    let _dog = Watchdog::new(Duration::from_secs(60), "lock release by another thread");
    let lock = Lock::new().unwrap();
    let guard = lock.acquire().unwrap();
    // Python: any thread may release a Lock.
    std::thread::scope(|s| {
        s.spawn(|| lock.release().unwrap());
    });
    assert!(!lock.is_locked());
    assert_eq!(lock.release(), Err(ReleaseError::NotHeld));
    // A third thread of the same handle takes it; the first guard's drop
    // must not release *that* acquisition.
    let taken = Barrier::new(2);
    let dropped = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mine = lock.acquire().unwrap();
            taken.wait();
            dropped.wait();
            assert!(lock.is_locked(), "another thread's guard released my lock");
            assert_eq!(lock.py_acquire(false, None), Err(Refused::WouldBlock));
            drop(mine);
        });
        taken.wait();
        drop(guard);
        dropped.wait();
    });
    assert!(!lock.is_locked());
}

#[test]
fn a_lock_guard_may_be_dropped_on_another_thread() {
    let _dog = Watchdog::new(Duration::from_secs(60), "lock guard on another thread");
    let lock = Lock::new().unwrap();
    let guard = lock.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || drop(guard));
    });
    assert!(!lock.is_locked());
    assert_eq!(lock.py_acquire(false, None), Ok(Acquired::Yes));
}

#[test]
fn rlock_is_owned_by_a_thread_not_by_the_handle() {
    let _dog = Watchdog::new(Duration::from_secs(120), "rlock threads");
    let lock = RLock::new().unwrap();
    let state = Exclusive::default();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (lock, state) = (&lock, &state);
            s.spawn(move || {
                for _ in 0..THREAD_ROUNDS {
                    let outer = lock.acquire().unwrap();
                    assert!(lock.is_owned());
                    let inner = lock.acquire().unwrap(); // recursion: this thread only
                    state.enter();
                    drop(inner);
                    assert!(lock.is_owned());
                    drop(outer);
                }
            });
        }
    });
    assert_eq!(state.count.load(Ordering::Relaxed), THREADS * THREAD_ROUNDS);
    // A thread of the same handle, and of a clone, does not re-enter the
    // holder's lock: it waits, and cannot release it.
    let _held = lock.acquire().unwrap();
    let clone = lock.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(!lock.is_owned());
            assert_eq!(
                lock.py_acquire(true, Some(Duration::from_millis(200))),
                Err(Refused::Timeout)
            );
            assert_eq!(clone.py_acquire(false, None), Err(Refused::WouldBlock));
            assert_eq!(lock.release(), Err(ReleaseError::NotOwner));
        });
    });
    assert!(lock.is_owned());
}

#[test]
fn the_longest_timeout_waits_instead_of_overflowing() {
    let _dog = Watchdog::new(Duration::from_secs(60), "Duration::MAX");
    let lock = Lock::new().unwrap();
    assert_eq!(
        lock.py_acquire(true, Some(Duration::MAX)),
        Ok(Acquired::Yes)
    );
    let rlock = RLock::new().unwrap();
    assert_eq!(
        rlock.py_acquire(true, Some(Duration::MAX)),
        Ok(Acquired::Yes)
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            // Held by the main thread: waits until it lets go.
            assert_eq!(
                lock.py_acquire(true, Some(Duration::MAX)),
                Ok(Acquired::Yes)
            );
            assert_eq!(
                rlock.py_acquire(true, Some(Duration::MAX)),
                Ok(Acquired::Yes)
            );
            lock.release().unwrap();
            rlock.release().unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        lock.release().unwrap();
        rlock.release().unwrap();
    });
    let guard = lock.acquire_timeout(Duration::MAX).unwrap();
    assert!(!guard.owner_died());
}

/// A holder SIGSTOPped for 500 ms is alive: waiters keep waiting (no false
/// `OwnerDied`), and get the lock normally once it runs again and lets go.
fn stopped_holder_is_not_taken_over(recursive: bool) {
    let name = unique_name("lock-stop");
    let (go_name, ready_name) = (unique_name("lock-stop-go"), unique_name("lock-stop-ready"));
    let plain = (!recursive).then(|| Lock::builder().create(&name).unwrap());
    let rlock = recursive.then(|| RLock::builder().create(&name).unwrap());
    let go = Lock::builder().create(&go_name).unwrap();
    let go_guard = go.acquire().unwrap();
    let ready = Lock::builder().create(&ready_name).unwrap();
    let child = match (&plain, &rlock) {
        (Some(l), _) => spawn_child(CHILD_TEST, &HOLD_UNTIL_GO, (l, &go, &ready)),
        (_, Some(r)) => spawn_child(CHILD_TEST, &HOLD_RLOCK_UNTIL_GO, (r, &go, &ready)),
        _ => unreachable!(),
    };
    assert!(
        wait_until(Duration::from_secs(30), || ready.is_locked()),
        "the child never took the lock"
    );
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the child is ours
    // and not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let got = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let wait = Some(Duration::from_secs(60));
            let result = match (&plain, &rlock) {
                (Some(l), _) => l.py_acquire(true, wait),
                (_, Some(r)) => r.py_acquire(true, wait),
                _ => unreachable!(),
            };
            got.store(true, Ordering::SeqCst);
            // An RLock is released by the thread that holds it.
            if let (Ok(_), Some(r)) = (result, &rlock) {
                r.release().unwrap();
            }
            result
        });
        // Several liveness slices (100 ms) pass while the holder is stopped.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!got.load(Ordering::SeqCst), "took a stopped holder's lock");
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        drop(go_guard);
        assert_eq!(waiter.join().unwrap(), Ok(Acquired::Yes));
    });
    assert!(wait_child(child, Duration::from_secs(60)).success());
    match (&plain, &rlock) {
        (Some(l), _) => {
            assert_eq!(l.recoveries(), 0);
            l.release().unwrap();
        }
        (_, Some(r)) => assert_eq!(r.recoveries(), 0),
        _ => unreachable!(),
    }
}

#[test]
fn a_stopped_lock_holder_is_waited_for_not_taken_over() {
    let _dog = Watchdog::new(Duration::from_secs(120), "stopped lock holder");
    stopped_holder_is_not_taken_over(false);
}

#[test]
fn a_stopped_rlock_holder_is_waited_for_not_taken_over() {
    let _dog = Watchdog::new(Duration::from_secs(120), "stopped rlock holder");
    stopped_holder_is_not_taken_over(true);
}

#[test]
fn the_four_acquire_forms_return_guards_that_release_on_drop() {
    let _dog = Watchdog::new(Duration::from_secs(60), "four forms");
    let lock = Lock::new().unwrap();
    {
        let guard = lock.acquire().unwrap();
        assert!(!guard.owner_died());
        assert!(lock.is_locked());
        assert_eq!(lock.try_acquire().unwrap_err(), TryAcquireError::WouldBlock);
        let start = Instant::now();
        let err = lock.acquire_timeout(Duration::from_millis(50)).unwrap_err();
        assert_eq!(err, AcquireTimeoutError::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(50));
        let start = Instant::now();
        let deadline = start + Duration::from_millis(50);
        assert!(lock.acquire_deadline(deadline).unwrap_err().is_timeout());
        assert!(Instant::now() >= deadline);
        // A deadline already past tries once.
        let past = Instant::now();
        assert!(lock.acquire_deadline(past).unwrap_err().is_timeout());
    }
    assert!(!lock.is_locked());
    drop(lock.try_acquire().unwrap());
    drop(lock.acquire_timeout(Duration::from_secs(10)).unwrap());
    drop(
        lock.acquire_deadline(Instant::now() + Duration::from_secs(10))
            .unwrap(),
    );
    assert!(!lock.is_locked());
    // A waiter in another thread gets it once the guard is dropped.
    let guard = lock.acquire().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| lock.acquire_timeout(Duration::from_secs(60)).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        drop(guard);
        assert!(waiter.join().unwrap());
    });
    assert!(!lock.is_locked());
}

#[test]
fn acquire_errors_read_as_python_and_nest() {
    use std::error::Error as _;
    let would = TryAcquireError::WouldBlock;
    assert!(would.is_would_block());
    assert_eq!(would.to_string(), "lock is held by another holder");
    assert!(would.source().is_none());
    let timeout = AcquireTimeoutError::Timeout;
    assert!(timeout.is_timeout());
    assert_eq!(timeout.to_string(), "timed out waiting for the lock");
    assert!(timeout.source().is_none());
    assert_eq!(
        ReleaseError::NotHeld.to_string(),
        "semaphore or lock released too many times"
    );
}

#[test]
fn a_leaked_guard_leaves_the_lock_held_until_release() {
    let _dog = Watchdog::new(Duration::from_secs(20), "leak");
    let lock = Lock::new().unwrap();
    assert_eq!(lock.acquire().unwrap().leak(), Acquired::Yes);
    assert!(lock.is_locked());
    assert!(lock.try_acquire().is_err());
    lock.release().unwrap();
    assert!(!lock.is_locked());
    assert_eq!(lock.release(), Err(ReleaseError::NotHeld));

    let rlock = RLock::new().unwrap();
    assert_eq!(rlock.acquire().unwrap().leak(), Acquired::Yes);
    assert_eq!(rlock.try_acquire().unwrap().leak(), Acquired::Yes);
    {
        let _level = rlock.acquire_timeout(Duration::ZERO).unwrap();
        let _level = rlock
            .acquire_deadline(Instant::now() + Duration::from_secs(1))
            .unwrap();
    }
    assert!(rlock.is_owned());
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(rlock.try_acquire().unwrap_err().is_would_block());
            assert!(rlock
                .acquire_timeout(Duration::from_millis(20))
                .unwrap_err()
                .is_timeout());
            assert_eq!(rlock.release(), Err(ReleaseError::NotOwner));
        });
    });
    rlock.release().unwrap();
    assert!(rlock.is_owned(), "two levels were leaked");
    rlock.release().unwrap();
    assert!(!rlock.is_owned());
    assert_eq!(rlock.release(), Err(ReleaseError::NotOwner));
}

#[test]
fn only_a_wait_that_runs_out_counts_as_a_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(20), "timeout counter");
    use shmring::segment::{self, PeerCounter};
    let name = unique_name("lock-timeouts");
    let lock = Lock::builder().create(&name).unwrap();
    let _held = lock.acquire().unwrap();
    let timeouts = || {
        segment::inspect(&name)
            .unwrap()
            .counters()
            .get(PeerCounter::Timeouts)
    };
    assert!(lock.try_acquire().is_err());
    assert_eq!(timeouts(), 0, "a try is an answer, not a timeout");
    assert!(lock.acquire_timeout(Duration::from_millis(5)).is_err());
    assert_eq!(timeouts(), 1);
    let deadline = Instant::now() + Duration::from_millis(5);
    assert!(lock.acquire_deadline(deadline).is_err());
    assert_eq!(timeouts(), 2);
}

#[test]
fn a_dead_holder_is_reported_on_the_guard_of_every_form() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dead holder, four forms");
    for form in 0..4 {
        let name = unique_name("lock-dead-forms");
        let lock = Lock::builder().create(&name).unwrap();
        let mut child = holder(&lock);
        child.kill().unwrap();
        child.wait().unwrap();
        let guard = match form {
            0 => lock.acquire().unwrap(),
            1 => lock.try_acquire().unwrap(),
            2 => lock.acquire_timeout(Duration::from_secs(20)).unwrap(),
            _ => lock
                .acquire_deadline(Instant::now() + Duration::from_secs(20))
                .unwrap(),
        };
        assert!(guard.owner_died(), "form {form}");
        assert_eq!(guard.leak(), Acquired::OwnerDied);
        assert_eq!(lock.recoveries(), 1);
        lock.release().unwrap();
        assert!(!lock.acquire().unwrap().owner_died());
    }
}
