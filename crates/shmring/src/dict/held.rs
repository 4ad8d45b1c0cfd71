//! How a handle takes and holds the table's lock: this thread's note that
//! it holds it (so a re-entrant call fails instead of waiting for itself),
//! the process-local lock that serialises the attachment's threads, and the
//! shared robust lock, each waited for no longer than the handle's lock
//! timeout ([`Dict::set_lock_timeout`]).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use shmring_core::wait::{Deadline, Until, Waiter};

use super::*;
use crate::segment::PeerCounter;

/// The shared lock, the process-local one taken before it, and this
/// thread's note that it holds them. Fields drop in order: the shared lock
/// is released first.
pub(super) struct Held<'a> {
    guard: Locked<'a, FutexWaiter>,
    _local: LocalHeld<'a>,
    _mark: HeldMark,
}

impl<'a> std::ops::Deref for Held<'a> {
    type Target = Locked<'a, FutexWaiter>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

thread_local! {
    /// The dicts (by segment file, see `Segment::file_id`) whose lock this
    /// thread holds: only ever more than one when `update_with`'s closure
    /// uses another dict.
    static HELD: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread holds (or is about to take) the lock of the dict `id`.
struct HeldMark {
    id: (u64, u64),
}

impl HeldMark {
    /// Notes that this thread takes the lock of dict `id`.
    ///
    /// # Errors
    ///
    /// [`DictError::Reentrant`] when it holds it already (inside
    /// `update_with`): through any handle, waiting would be for itself.
    fn enter(id: (u64, u64)) -> Result<HeldMark, DictError> {
        HELD.with_borrow_mut(|held| {
            if held.contains(&id) {
                return Err(DictError::Reentrant);
            }
            held.push(id);
            Ok(HeldMark { id })
        })
    }
}

impl Drop for HeldMark {
    fn drop(&mut self) {
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().rposition(|id| *id == self.id) {
                held.swap_remove(at);
            }
        });
    }
}

/// A process-local lock with a timed wait (`std::sync::Mutex` has none):
/// one attachment's threads take it before the shared lock, one at a time.
///
/// Uncontended, taking and releasing it is one atomic operation each;
/// a thread that finds it held sleeps on the condition variable, and marks
/// the lock so that its release signals.
#[derive(Debug, Default)]
pub(super) struct LocalLock {
    /// [`LOCAL_FREE`], [`LOCAL_HELD`], or [`LOCAL_WAITED`].
    state: AtomicU8,
    /// How many threads wait in `take`; the condition variable's mutex.
    /// Held only inside `take` and `LocalHeld::drop`, never while user
    /// code runs, so it is never poisoned by a panic of ours (and a
    /// poisoned one is still sound).
    waiters: Mutex<u32>,
    freed: Condvar,
}

const LOCAL_FREE: u8 = 0;
const LOCAL_HELD: u8 = 1;
/// Held, and a thread may be waiting: the release signals.
const LOCAL_WAITED: u8 = 2;

/// Holds a [`LocalLock`] until dropped.
struct LocalHeld<'a>(&'a LocalLock);

impl LocalLock {
    /// Takes it, waiting while another thread holds it until `deadline`
    /// (on the clock `now` reads; `None`: forever). `None` when the
    /// deadline passed first.
    fn take(
        &self,
        deadline: Option<Deadline>,
        now: impl Fn() -> Deadline,
    ) -> Option<LocalHeld<'_>> {
        // ORDERING: Acquire on success — pairs with the Release swap in
        // `LocalHeld::drop`: the previous holder's call happened before.
        if self
            .state
            .compare_exchange(LOCAL_FREE, LOCAL_HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(LocalHeld(self));
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        *waiters += 1;
        // Marking it LOCAL_WAITED under the mutex, and sleeping without letting
        // go of the mutex in between, is what makes a release's signal
        // (sent under the mutex) reach us. Found free, it is ours (still
        // marked LOCAL_WAITED: others may wait too).
        // ORDERING: Acquire — as the fast path's.
        while self.state.swap(LOCAL_WAITED, Ordering::Acquire) != LOCAL_FREE {
            waiters = match deadline {
                None => self
                    .freed
                    .wait(waiters)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.0.saturating_sub(now().0);
                    if left == 0 {
                        *waiters -= 1;
                        return None;
                    }
                    let wait = self.freed.wait_timeout(waiters, Duration::from_nanos(left));
                    wait.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        *waiters -= 1;
        Some(LocalHeld(self))
    }
}

impl Drop for LocalHeld<'_> {
    fn drop(&mut self) {
        // ORDERING: Release — pairs with the Acquire in `take`.
        if self.0.state.swap(LOCAL_FREE, Ordering::Release) == LOCAL_WAITED {
            // Under the mutex: a waiter between its mark and its sleep
            // holds it, so the signal cannot fall between the two.
            let waiters = self
                .0
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *waiters > 0 {
                self.0.freed.notify_one();
            }
        }
    }
}

impl<K: Message, V: Message> Dict<K, V> {
    /// Takes the table's lock, waiting no longer than the handle's lock
    /// timeout; after a dead holder, the table is recovered first.
    ///
    /// # Errors
    ///
    /// [`DictError::Reentrant`] (this thread holds it), [`DictError::Timeout`]
    /// (another thread of this attachment, or a live holder in another
    /// process, kept it past the lock timeout), [`DictError::Corrupted`]
    /// (recovery found garbage).
    pub(super) fn locked(&self) -> Result<Held<'_>, DictError> {
        // Before the local lock: re-entering it would deadlock, and through
        // another handle the shared lock would wait for ourselves.
        let mark = HeldMark::enter(self.segment.file_id())?;
        // One deadline for both waits (`Now` stays a single try of each and
        // reads no clock unless the local lock is held).
        let deadline = self.lock_until.deadline(|| self.waiter.now());
        let until = match self.lock_until {
            Until::Now => Until::Now,
            _ => Until::from(deadline),
        };
        // One caller per attachment at a time: the core treats its own token
        // in the owner word as stale, which is only sound when this process
        // never races itself for the shared lock.
        let Some(local) = self.local.take(deadline, || self.waiter.now()) else {
            return Err(self.timed_out());
        };
        let segment = &self.segment;
        let got = self.history.with(|history| {
            self.table.lock(
                segment.peer_token(),
                &self.waiter,
                until,
                &self.policy,
                history,
                &mut |t| segment.is_peer_alive(t),
            )
        });
        match got {
            Ok(guard) => Ok(Held {
                guard,
                _local: local,
                _mark: mark,
            }),
            Err(LockTableError::Corrupted(c)) => Err(c.into()),
            Err(LockTableError::Timeout) => Err(self.timed_out()),
        }
    }

    /// Counts a timeout in this peer's row (not for a handle whose lock
    /// timeout is zero: a try that finds the lock held is an answer, as for
    /// `Lock`) and returns its error.
    fn timed_out(&self) -> DictError {
        if !self.lock_until.is_now() {
            self.segment.add_to_counter(PeerCounter::Timeouts, 1);
        }
        DictError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    fn clock(start: Instant) -> impl Fn() -> Deadline {
        move || Deadline(start.elapsed().as_nanos() as u64)
    }

    /// A release wakes a thread waiting without a deadline, and a waiter
    /// that timed out leaves the count right: the next waiter is still
    /// woken by the next release (a release signals only counted waiters).
    #[test]
    fn a_release_wakes_the_waiter_after_another_timed_out() {
        let lock = LocalLock::default();
        let start = Instant::now();
        let now = clock(start);
        let held = lock.take(None, &now).expect("free");
        // Times out while held: 20 ms from now.
        let soon = Deadline(now().0 + 20_000_000);
        assert!(lock.take(Some(soon), &now).is_none());
        assert_eq!(*lock.waiters.lock().unwrap(), 0);
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let again = lock.take(None, clock(start)).expect("no deadline");
                // ORDERING: Relaxed — read after the scope joins this thread.
                got.store(true, Ordering::Relaxed);
                drop(again);
            });
            while *lock.waiters.lock().unwrap() == 0 {
                std::thread::yield_now();
            }
            drop(held);
        });
        // ORDERING: Relaxed — the scope's join ordered the store before this.
        assert!(got.load(Ordering::Relaxed));
        assert_eq!(lock.state.load(Ordering::Relaxed), LOCAL_FREE);
        assert_eq!(*lock.waiters.lock().unwrap(), 0);
    }
}
