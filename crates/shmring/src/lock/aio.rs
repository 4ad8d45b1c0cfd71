//! [`AsyncLock`]: a [`Lock`] whose acquire is awaited (feature `tokio`).

use std::time::Duration;

use shmring_core::lock::Acquired;
use shmring_core::wait::{TimedOut, WaitPolicy};
use tokio::time::Instant;

use super::{
    next_stamp, shared, timed, AcquireError, AcquireTimeoutError, Lock, LockGuard, ReleaseError,
    TryAcquireError,
};
use crate::aio::{block_on, keep_alive};
use crate::segment::PeerCounter;

/// A [`Lock`] whose [`acquire`](AsyncLock::acquire) is awaited: a task
/// that waits for the lock gives its thread back to the runtime and sleeps
/// in an io_uring futex wait on the lock's wait word (see [`crate::aio`]),
/// woken by the release of any holder, sync or async, in any process.
///
/// A wrapper, as [`AsyncQueue`](crate::aio::AsyncQueue) is of a queue:
/// the methods keep the sync names (`lock.acquire().await`), the guard is
/// the sync [`LockGuard`] (its drop releases without waiting, so it may
/// be dropped anywhere, and it may be held across `.await`s), and
/// [`sync`](Self::sync) gives the [`Lock`] back for the rest. Clones share
/// one attachment, as [`Lock`]'s do: tasks of one process holding clones
/// exclude each other as threads do.
///
/// There is no async `RLock`: its owner is a thread, and a task moves
/// between threads at each `.await`.
///
/// # Crash behaviour
///
/// As [`Lock::acquire`]: a holder that dies (SIGKILL included) holding the
/// lock is found dead by an awaiting task within one liveness slice (100
/// ms by default); the task takes the lock over, and its guard says so
/// ([`LockGuard::owner_died`]).
///
/// # Cancel safety
///
/// [`acquire`](Self::acquire) and [`acquire_timeout`](Self::acquire_timeout)
/// are cancel-safe: the lock is taken only inside the poll that returns
/// its guard, so a future dropped while pending holds nothing; dropping it
/// also ends its registration on the wait word, cancels its io_uring
/// wait, and passes on a release's wake-up it had already taken, so the
/// next waiter (sync or async) is not left asleep with the lock free.
///
/// A release wakes one sleeper. A pending acquire that is kept alive but
/// no longer polled (a future pinned outside a `select!` loop that has
/// moved on) still holds the wake-up its wait took, until it is polled or
/// dropped: the next waiter then finds the lock free only at its next
/// liveness check (within one slice, 100 ms by default), not at once.
/// Poll an acquire to the end or drop it.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::aio::AsyncLock;
/// use shmring::lock::Lock;
///
/// let lock = AsyncLock::new(Lock::new()?);
/// let guard = lock.acquire().await?;
/// let other = lock.clone();
/// let waiter = tokio::spawn(async move { other.acquire().await.map(|g| g.owner_died()) });
/// tokio::task::yield_now().await; // the task awaits the lock
/// drop(guard); // and is woken by the release
/// assert!(!waiter.await??);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncLock {
    lock: Lock,
}

impl From<Lock> for AsyncLock {
    fn from(lock: Lock) -> Self {
        AsyncLock { lock }
    }
}

impl AsyncLock {
    /// Wraps a lock handle.
    pub fn new(lock: Lock) -> AsyncLock {
        lock.into()
    }

    /// The sync handle (its blocking `acquire` blocks the thread: use it
    /// outside the runtime, or its `try_` form).
    pub fn sync(&self) -> &Lock {
        &self.lock
    }

    /// The sync handle back.
    pub fn into_inner(self) -> Lock {
        self.lock
    }

    /// Sets the liveness period of awaiting acquires (the spin budget is
    /// not used: an async acquire never spins).
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.lock.set_wait_policy(policy);
    }

    /// Takes the lock, awaiting it as long as it takes (as
    /// [`Lock::acquire`], without blocking the thread). The lock is never
    /// re-entered: a task awaiting a lock its own process holds through the
    /// same handle waits for that holder's release, like another process.
    ///
    /// # Blocking
    ///
    /// Never blocks the thread: tries once, then sleeps in an io_uring
    /// futex wait until a release, or until the holder is found dead
    /// (checked once per liveness slice).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type).
    ///
    /// # Errors
    ///
    /// None can happen today ([`AcquireError`] has no values).
    ///
    /// # Crash behaviour
    ///
    /// [`LockGuard::owner_died`] when the previous holder died holding it.
    pub async fn acquire(&self) -> Result<LockGuard<'_>, AcquireError> {
        loop {
            if let Ok(guard) = self.acquire_until(None, true).await {
                return Ok(guard);
            }
        }
    }

    /// As [`acquire`](Self::acquire), giving up after `timeout` (tokio's
    /// clock; zero: one try, which takes a dead holder's lock at once).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type).
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] when a live holder kept it.
    pub async fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, AcquireTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        let got = self.acquire_until(deadline, !timeout.is_zero()).await;
        timed(got.map_err(|TimedOut| TryAcquireError::WouldBlock))
    }

    /// [`Lock::try_acquire`]: one try, never awaits.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when a live holder has it.
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryAcquireError> {
        self.lock.try_acquire()
    }

    /// [`Lock::release`].
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] when it is not held.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.lock.release()
    }

    /// Whether anyone holds it (a snapshot; a dead holder still counts).
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The async form of the sync `acquire`: the same attempt (a CAS only
    /// when the word is free, a liveness probe of the holder on the slow
    /// checks), the same counters, [`crate::aio::block_on`]'s sleep.
    /// `waits`: a timeout is counted as one (not for a zero timeout).
    async fn acquire_until(
        &self,
        deadline: Option<Instant>,
        waits: bool,
    ) -> Result<LockGuard<'_>, TimedOut> {
        let lock = &self.lock;
        let segment = &lock.segment;
        let word = shared(segment);
        let token = segment.peer_token();
        let waiter = segment.waiter();
        let keep = keep_alive(segment);
        let mut stamp = 0;
        let attempt = |probe: bool| {
            if !probe && word.owner() != 0 {
                return None; // held: no need to try the CAS to learn that
            }
            let got = word.try_acquire_with(token, probe, &mut |t| segment.is_peer_alive(t))?;
            // In the poll that returns the guard: no await in between.
            stamp = next_stamp(&lock.stamps);
            Some(got)
        };
        let result = block_on(
            word.wait_word(),
            &waiter,
            &keep,
            lock.policy,
            deadline,
            attempt,
        )
        .await;
        match result {
            Ok(Acquired::OwnerDied) => segment.add_to_counter(PeerCounter::Recovered, 1),
            Err(TimedOut) if waits => segment.add_to_counter(PeerCounter::Timeouts, 1),
            _ => {}
        }
        result.map(|acquired| LockGuard {
            lock,
            acquired,
            stamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Waker};
    use std::time::{Duration, Instant};

    use super::AsyncLock;
    use crate::lock::{shared, Lock};
    use crate::WaitPolicy;

    /// Sleepers that never wake by themselves within a test (a 60 s slice).
    const LONG_SLICE: WaitPolicy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 60_000_000_000,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_dropped_pending_acquire_holds_nothing_and_leaves_no_waiter() {
        let lock = AsyncLock::new(Lock::new().unwrap());
        let word = shared(&lock.sync().segment);
        let rt = runtime();
        let _in = rt.enter();
        let held = lock.sync().acquire().unwrap();
        let mut acquire = Box::pin(lock.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        assert_eq!(word.waiters(), 1, "asleep and registered");
        drop(acquire);
        assert_eq!(word.waiters(), 0, "dropped: deregistered");
        drop(held);
        assert!(!lock.is_locked(), "the dropped acquire took nothing");
        drop(lock.try_acquire().expect("free"));
    }

    /// A release wakes one sleeper. The task's io_uring wait is queued
    /// first, so it takes the wake; its acquire is then dropped before it
    /// saw the completion. Without the pass-on, the sync sleeper behind it
    /// sleeps through its whole 20 s timeout with the lock free.
    #[test]
    fn an_acquire_dropped_after_its_wait_took_the_wake_passes_it_on() {
        let mut lock = AsyncLock::new(Lock::new().unwrap());
        lock.set_wait_policy(LONG_SLICE);
        let word = shared(&lock.sync().segment);
        let rt = runtime();
        let _in = rt.enter();
        let held = lock.sync().acquire().unwrap().leak();
        assert!(!held.owner_died());
        let mut acquire = Box::pin(lock.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        let sync = lock.sync().clone();
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                sync.acquire_timeout(Duration::from_secs(20))
                    .map(|g| g.leak())
                    .is_ok()
            });
            let start = Instant::now();
            while word.waiters() != 2 {
                assert!(start.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(50)); // and sleeps
            let start = Instant::now();
            lock.release().unwrap(); // wakes one: the io_uring wait
            std::thread::sleep(Duration::from_millis(50)); // the wake lands
            drop(acquire);
            // The driver reaps the woken, abandoned wait and passes it on.
            rt.block_on(tokio::time::sleep(Duration::from_millis(10)));
            assert!(sleeper.join().unwrap(), "the sync sleeper got the lock");
            assert!(start.elapsed() < Duration::from_secs(10));
        });
        assert_eq!(word.waiters(), 0);
        lock.release().unwrap();
    }

    /// The cost of an acquire kept alive without being polled: the wake it
    /// took is not passed on, so a sync sleeper behind it gets the free
    /// lock only at its next liveness check (its 1 s slice), not at the
    /// release; it does get it then.
    #[test]
    fn an_acquire_kept_but_not_polled_delays_the_next_waiter_one_slice() {
        const SLICE: Duration = Duration::from_secs(1);
        let policy = WaitPolicy {
            spin_ns: 0,
            max_spin_ns: 0,
            slice_ns: SLICE.as_nanos() as u64,
        };
        let lock = AsyncLock::new(Lock::new().unwrap());
        let word = shared(&lock.sync().segment);
        let rt = runtime();
        let _in = rt.enter();
        let _ = lock.sync().acquire().unwrap().leak();
        let mut acquire = Box::pin(lock.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        let mut sync = lock.sync().clone();
        sync.set_wait_policy(policy);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                sync.acquire_timeout(Duration::from_secs(20))
                    .map(|g| g.leak())
                    .is_ok()
            });
            let start = Instant::now();
            while word.waiters() != 2 {
                assert!(start.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(20)); // and sleeps
            let released = Instant::now();
            lock.release().unwrap(); // wakes one: the io_uring wait
            assert!(sleeper.join().unwrap(), "the sync sleeper got the lock");
            // Its liveness check, up to one slice after the release.
            assert!(released.elapsed() >= Duration::from_millis(300));
        });
        // The kept acquire, polled again, finds the lock taken and waits.
        assert!(acquire.as_mut().poll(&mut cx).is_pending());
        drop(acquire);
        assert_eq!(word.waiters(), 0);
        lock.release().unwrap();
    }

    /// Tasks on two threads and a sync thread contend for the lock; the
    /// tasks' acquires are cancelled by short timeouts again and again.
    /// Never two holders at once, every contender gets the lock, and at the
    /// end the lock is free with no waiter left registered.
    #[test]
    fn cancelled_acquires_under_contention_keep_exclusion() {
        const ROUNDS: u64 = 300;
        let lock = AsyncLock::new(Lock::new().unwrap());
        let word = shared(&lock.sync().segment);
        let inside = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(AtomicU64::new(0));
        let critical = |inside: &AtomicBool| {
            // ORDERING: Relaxed — the lock orders these; a second holder
            // would find `true` whatever the ordering.
            assert!(!inside.swap(true, Ordering::Relaxed), "two holders");
            std::thread::sleep(Duration::from_micros(200));
            // ORDERING: Relaxed — as above.
            inside.store(false, Ordering::Relaxed);
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        std::thread::scope(|s| {
            let sync = s.spawn(|| {
                for _ in 0..ROUNDS {
                    let g = lock
                        .sync()
                        .acquire_timeout(Duration::from_secs(20))
                        .unwrap();
                    critical(&inside);
                    drop(g);
                }
            });
            rt.block_on(async {
                let tasks = (0..4).map(|t| {
                    let (lock, inside) = (lock.clone(), inside.clone());
                    let cancelled = cancelled.clone();
                    tokio::spawn(async move {
                        let mut got = 0;
                        let mut i: u64 = 0;
                        while got < ROUNDS {
                            i += 1;
                            let wait = Duration::from_micros(100 + (i * 37 + t) % 900);
                            match tokio::time::timeout(wait, lock.acquire()).await {
                                Ok(g) => {
                                    let g = g.unwrap();
                                    critical(&inside);
                                    drop(g);
                                    got += 1;
                                    tokio::task::yield_now().await;
                                }
                                // ORDERING: Relaxed — a count read after the joins.
                                Err(_) => drop(cancelled.fetch_add(1, Ordering::Relaxed)),
                            }
                        }
                    })
                });
                for t in tasks.collect::<Vec<_>>() {
                    t.await.unwrap();
                }
            });
            sync.join().unwrap();
        });
        // ORDERING: Relaxed — the tasks were joined.
        assert!(
            cancelled.load(Ordering::Relaxed) > 0,
            "acquires were cancelled"
        );
        assert!(!lock.is_locked());
        assert_eq!(word.waiters(), 0, "no waiter left registered");
    }
}
