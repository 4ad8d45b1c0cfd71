//! How a handle takes and holds the table's lock: this thread's note that
//! it holds it (so a re-entrant call fails instead of waiting for itself),
//! the process-local lock that serialises the attachment's threads, and the
//! shared robust lock, each waited for no longer than the handle's lock
//! timeout ([`Dict::set_lock_timeout`]).

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
#[derive(Debug, Default)]
pub(super) struct LocalLock {
    /// Whether a thread holds it. The mutex is held only inside `take` and
    /// `LocalHeld::drop`, never while user code runs, so it is never
    /// poisoned by a panic of ours (and a poisoned one is still sound).
    held: Mutex<LocalState>,
    freed: Condvar,
}

/// What [`LocalLock`]'s mutex guards.
#[derive(Debug, Default)]
struct LocalState {
    /// A thread holds the lock.
    held: bool,
    /// Threads waiting in `take`: a release signals the condition variable
    /// only when there are some (std's `notify_one` always makes a system
    /// call, one per dict operation otherwise).
    waiting: u32,
}

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
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.waiting += 1;
        while held.held {
            held = match deadline {
                None => self
                    .freed
                    .wait(held)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.0.saturating_sub(now().0);
                    if left == 0 {
                        held.waiting -= 1;
                        return None;
                    }
                    let wait = self.freed.wait_timeout(held, Duration::from_nanos(left));
                    wait.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        held.waiting -= 1;
        held.held = true;
        Some(LocalHeld(self))
    }
}

impl Drop for LocalHeld<'_> {
    fn drop(&mut self) {
        let mut state = self.0.held.lock().unwrap_or_else(PoisonError::into_inner);
        state.held = false;
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.0.freed.notify_one();
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
        assert_eq!(lock.held.lock().unwrap().waiting, 0);
        let got = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let again = lock.take(None, clock(start)).expect("no deadline");
                // ORDERING: Relaxed — read after the scope joins this thread.
                got.store(true, Ordering::Relaxed);
                drop(again);
            });
            while lock.held.lock().unwrap().waiting == 0 {
                std::thread::yield_now();
            }
            drop(held);
        });
        // ORDERING: Relaxed — the scope's join ordered the store before this.
        assert!(got.load(Ordering::Relaxed));
        let state = lock.held.lock().unwrap();
        assert!(!state.held && state.waiting == 0);
    }
}
