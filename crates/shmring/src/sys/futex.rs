//! The futex [`Waiter`]: how the core's wait protocol sleeps across processes.
//!
//! Shared futexes only: `FUTEX_PRIVATE_FLAG` would key the wait queue on the
//! process's address space, and a waker in another process would never find
//! the sleeper. Deadlines are absolute `CLOCK_MONOTONIC` times, which is what
//! `FUTEX_WAIT_BITSET` takes when `FUTEX_CLOCK_REALTIME` is not set, so a
//! sleep that is interrupted and restarted never extends the deadline.

use std::ptr::NonNull;

use shmring_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmring_core::wait::{Deadline, HeavyFence, Waiter};

/// Sleeps and wakes with `futex(2)` on a word in shared memory.
///
/// A waiter made by a segment attachment (the facades' handles use those)
/// also counts its sleeps and wake-ups in that attachment's peer row
/// ([`PeerCounter::BlockedWaits`](crate::segment::PeerCounter::BlockedWaits)
/// and [`Wakes`](crate::segment::PeerCounter::Wakes)): it carries a pointer
/// to the two counters, so counting costs one relaxed add next to the
/// system call and no look-up. [`FutexWaiter::new`] counts nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct FutexWaiter {
    /// The peer row's `BlockedWaits` counter; `Wakes` is the next slot.
    counters: Option<NonNull<AtomicU64>>,
}

// SAFETY: the pointer is only used for relaxed atomic adds to counters in
// shared memory, which any thread may make; `counting`'s contract keeps
// them valid for as long as the waiter or any copy of it is used.
unsafe impl Send for FutexWaiter {}
// SAFETY: as above.
unsafe impl Sync for FutexWaiter {}

impl FutexWaiter {
    /// A waiter that counts nothing.
    pub const fn new() -> FutexWaiter {
        FutexWaiter { counters: None }
    }

    /// A waiter that counts its sleeps in `counters[0]` and its wake-ups
    /// in `counters[1]`.
    ///
    /// # Safety
    ///
    /// Both counters stay valid for as long as the waiter or any copy of it
    /// is used: only handles that keep the mapping holding them alive may
    /// store one, and none hands it out.
    pub(crate) unsafe fn counting(counters: &[AtomicU64; 2]) -> FutexWaiter {
        FutexWaiter {
            counters: Some(NonNull::from(&counters[0])),
        }
    }

    /// Adds one to the sleep (`wake == false`) or wake-up counter, if any.
    #[inline]
    fn count(&self, wake: bool) {
        if let Some(first) = self.counters {
            // SAFETY: `counting`'s caller keeps both counters (the second
            // right after the first) valid while any copy of us is used.
            let slot = unsafe { first.add(usize::from(wake)).as_ref() };
            // ORDERING: Relaxed — a statistic (partner: none; tools read it
            // Relaxed too).
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn to_timespec(deadline: Deadline) -> libc::timespec {
    let secs = deadline.0 / 1_000_000_000;
    libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        // < 10^9, fits any c_long.
        tv_nsec: (deadline.0 % 1_000_000_000) as libc::c_long,
    }
}

impl Waiter for FutexWaiter {
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Deadline>) {
        let ts = deadline.map(to_timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        self.count(false);
        // Every outcome (woken, EAGAIN because the word changed, EINTR,
        // ETIMEDOUT) just returns: the caller re-checks.
        // SAFETY: `word` is a live, aligned atomic the kernel only reads;
        // `ts_ptr` is null or points to `ts`, which outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            );
        }
    }

    fn wake(&self, word: &AtomicU32, count: u32) {
        self.count(true);
        let count = count.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: `word` is a live, aligned atomic; FUTEX_WAKE does not
        // access memory through it, it only names the wait queue. The result
        // (number woken, or an error for a bad address) is of no use here.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
        }
    }

    fn now(&self) -> Deadline {
        super::clock::now()
    }

    fn preempted(&self) -> bool {
        super::process::preempted_since_last_call()
    }

    fn crowded(&self) -> bool {
        super::process::cpus_crowded()
    }

    #[inline]
    fn light_wakers(&self) -> bool {
        super::membarrier::light_wakers()
    }

    #[inline]
    fn heavy_fence(&self) -> HeavyFence {
        super::membarrier::heavy_fence()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    // The child's entry point is the shmring the test kit links (this
    // crate as a dependency of its own tests); what it runs is this build's.
    use shmring::process::{Entry, EntryResult};
    use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, Watchdog};

    use super::*;
    use crate::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};
    use crate::sys::now;

    /// Word 0 of the object: the futex word. Word 1: the child's "ready" flag.
    fn words(seg: &Segment) -> (&AtomicU32, &AtomicU32) {
        let base = seg.object_ptr().as_ptr().cast::<AtomicU32>();
        // SAFETY: the object region is 4096-aligned, at least 8 bytes long,
        // lives as long as `seg`, and is only accessed atomically.
        unsafe { (&*base, &*base.add(1)) }
    }

    /// The waiter of [`wait_and_wake_across_processes`]: opens the segment
    /// `name` (its raw object words are the test's), says it is ready and
    /// sleeps on word 0 until it is woken with a new value.
    fn waiter((name,): (String,)) -> EntryResult {
        let _dog = Watchdog::new(Duration::from_secs(30), "futex child");
        let seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())?;
        let (word, ready) = words(&seg);
        // ORDERING: Release/Acquire on the flag only orders the test's
        // handshake; the futex word itself is checked in the loop.
        ready.store(1, Ordering::Release);
        let mut sleeps = 0u32;
        while word.load(Ordering::Acquire) == 0 {
            FutexWaiter::new().wait(word, 0, None);
            sleeps += 1;
        }
        assert!(sleeps >= 1);
        Ok(())
    }
    static WAITER: Entry<(String,)> = shmring::entry!(waiter);

    /// Child side of the cross-process tests (returns at once in a normal run).
    #[test]
    fn child_entry() {
        run_child(&[&WAITER]);
    }

    fn create(name: &str) -> Segment {
        Segment::create(
            name,
            ObjectKind::SpscRing,
            [0; 8],
            4096,
            &CreateOptions::default(),
            |_, _| Ok(()),
        )
        .unwrap()
    }

    #[test]
    fn wait_and_wake_across_processes() {
        let _dog = Watchdog::new(Duration::from_secs(30), "futex wait/wake across processes");
        let name = unique_name("futex");
        let seg = create(&name);
        let (word, ready) = words(&seg);
        let child = spawn_child("sys::futex::tests::child_entry", &WAITER, (name,));
        while ready.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Give the child time to go to sleep in the kernel.
        std::thread::sleep(Duration::from_millis(100));
        word.store(1, Ordering::Release);
        FutexWaiter::new().wake(word, u32::MAX);
        let status = wait_child(child, Duration::from_secs(20));
        assert!(status.success(), "child failed: {status}");
    }

    #[test]
    fn timed_wait_returns_after_deadline() {
        let _dog = Watchdog::new(Duration::from_secs(20), "timed futex wait");
        let word = AtomicU32::new(7);
        let start = Instant::now();
        let deadline = now().after(100_000_000);
        // Spurious returns are allowed: loop until the deadline has passed.
        while FutexWaiter::new().now() < deadline {
            FutexWaiter::new().wait(&word, 7, Some(deadline));
        }
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn wait_on_changed_word_and_zero_timeout_return() {
        let _dog = Watchdog::new(Duration::from_secs(20), "futex wait that must not sleep");
        let word = AtomicU32::new(1);
        FutexWaiter::new().wait(&word, 0, None); // value differs: EAGAIN at once
        FutexWaiter::new().wait(&word, 1, Some(now()));
        FutexWaiter::new().wake(&word, u32::MAX); // nobody sleeping: harmless
    }
}
