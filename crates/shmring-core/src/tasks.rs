//! The unfinished-task count of a JoinableQueue: `put` adds, `task_done`
//! subtracts (never below zero), `join` sleeps until it is zero.

use crate::layout::Padded;
use crate::sync::{AtomicU64, Ordering};
use crate::wait::{block_on, Deadline, TimedOut, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

/// Lives in shared memory, zeroed = no unfinished tasks.
#[repr(C)]
#[derive(Debug, Default)]
pub struct TaskCounter {
    /// Tasks put and not yet marked done.
    unfinished: Padded<AtomicU64>,
    /// Joiners sleep here.
    all_done: Padded<WaitWord>,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<TaskCounter>() == 256);

/// `task_done` was called more often than tasks were put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyDone;

impl core::fmt::Display for TooManyDone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl std::error::Error for TooManyDone {}

impl TaskCounter {
    /// Counts `n` new tasks. Call *before* publishing them, so a consumer
    /// can never mark a task done that the count does not hold yet.
    #[inline]
    pub fn add(&self, n: u64) {
        // ORDERING: Relaxed — the publish that follows (a Release store of a
        // ring's tail) orders it before any consumer's `done`.
        self.unfinished.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes back `n` counted tasks that were never published (the push
    /// failed).
    #[inline]
    pub fn cancel(&self, n: u64) {
        // ORDERING: Relaxed — nobody saw these tasks.
        self.unfinished.fetch_sub(n, Ordering::Relaxed);
    }

    /// Marks one task done; wakes joiners when none is left.
    ///
    /// # Errors
    ///
    /// [`TooManyDone`] when the count is already zero.
    pub fn done<W: Waiter + ?Sized>(&self, waiter: &W) -> Result<(), TooManyDone> {
        // ORDERING: Relaxed load, AcqRel CAS — the CAS orders the consumer's
        // work on the task before a joiner's Acquire load sees the count.
        let mut current = self.unfinished.load(Ordering::Relaxed);
        loop {
            if current == 0 {
                return Err(TooManyDone);
            }
            match self.unfinished.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        if current == 1 {
            self.all_done.wake_if_waiting(waiter, WAKE_ALL);
        }
        Ok(())
    }

    /// Tasks put and not yet done (a snapshot).
    pub fn unfinished(&self) -> u64 {
        // ORDERING: Acquire — pairs with the AcqRel CAS in `done`.
        self.unfinished.load(Ordering::Acquire)
    }

    /// Sleeps until no task is unfinished, or `deadline`.
    ///
    /// # Errors
    ///
    /// [`TimedOut`].
    pub fn join<W: Waiter + ?Sized>(
        &self,
        waiter: &W,
        deadline: Option<Deadline>,
        policy: &WaitPolicy,
    ) -> Result<(), TimedOut> {
        block_on(&self.all_done, waiter, deadline, policy, |_| {
            (self.unfinished() == 0).then_some(())
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::heap::ThreadWaiter;

    #[test]
    fn counts_and_refuses_too_many() {
        let t = TaskCounter::default();
        let w = ThreadWaiter::default();
        assert_eq!(t.done(&w), Err(TooManyDone));
        t.add(2);
        t.done(&w).unwrap();
        assert_eq!(t.unfinished(), 1);
        assert!(t.join(&w, Some(w.now()), &WaitPolicy::default()).is_err());
        t.done(&w).unwrap();
        assert_eq!(t.join(&w, None, &WaitPolicy::default()), Ok(()));
        assert_eq!(t.done(&w), Err(TooManyDone));
    }
}
