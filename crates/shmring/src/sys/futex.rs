//! The futex [`Waiter`]: how the core's wait protocol sleeps across processes.
//!
//! Shared futexes only: `FUTEX_PRIVATE_FLAG` would key the wait queue on the
//! process's address space, and a waker in another process would never find
//! the sleeper. Deadlines are absolute `CLOCK_MONOTONIC` times, which is what
//! `FUTEX_WAIT_BITSET` takes when `FUTEX_CLOCK_REALTIME` is not set, so a
//! sleep that is interrupted and restarted never extends the deadline.

use std::sync::RwLock;

use shmring_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmring_core::wait::{Deadline, Waiter};

/// A mapped range whose futex calls are counted, and where.
struct Counted {
    start: usize,
    end: usize,
    /// `&AtomicU64` slots in the range's own peer row, as addresses.
    waits: usize,
    wakes: usize,
}

/// This process's counted ranges: every live segment attachment registers
/// its mapping and the wait and wake counters of its peer row, so that a
/// futex call on a word in a segment counts in that attachment's row
/// (whatever the object: queue, pipe, lock, dict, raw ring), and the hot
/// path, which makes no futex call, pays nothing.
static COUNTED: RwLock<Vec<Counted>> = RwLock::new(Vec::new());

/// Counts the futex waits and wakes made on words in `start..start + len`
/// in `waits` and `wakes`.
///
/// # Safety
///
/// Both counters must stay valid until [`stop_counting`]`(start)` returns,
/// and the range must stay mapped until then.
pub(crate) unsafe fn count_calls(start: usize, len: usize, waits: &AtomicU64, wakes: &AtomicU64) {
    let mut list = COUNTED.write().unwrap_or_else(|e| e.into_inner());
    list.push(Counted {
        start,
        end: start.saturating_add(len),
        waits: waits as *const AtomicU64 as usize,
        wakes: wakes as *const AtomicU64 as usize,
    });
}

/// Stops counting the range registered at `start` (before it is unmapped).
pub(crate) fn stop_counting(start: usize) {
    let mut list = COUNTED.write().unwrap_or_else(|e| e.into_inner());
    list.retain(|c| c.start != start);
}

/// Adds one to the wait (`wake == false`) or wake counter of the range
/// holding `word`, if any.
fn count(word: &AtomicU32, wake: bool) {
    let addr = word.as_ptr() as usize;
    let list = COUNTED.read().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = list.iter().find(|c| (c.start..c.end).contains(&addr)) {
        let slot = if wake { c.wakes } else { c.waits };
        // SAFETY: registered by `count_calls`, whose caller keeps the slot
        // valid until `stop_counting`, which takes the write lock: not
        // while we hold the read lock.
        let slot = unsafe { &*(slot as *const AtomicU64) };
        // ORDERING: Relaxed — a statistic (partner: none; tools read it
        // Relaxed too).
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sleeps and wakes with `futex(2)` on a word in shared memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct FutexWaiter;

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
        count(word, false);
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
        self::count(word, true);
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use shmring_testkit::{role, spawn_role, unique_name, wait_child, Watchdog};

    use super::*;
    use crate::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};
    use crate::sys::deadline_after;

    const NAME_VAR: &str = "SHMRING_TEST_SEGMENT";

    /// Word 0 of the object: the futex word. Word 1: the child's "ready" flag.
    fn words(seg: &Segment) -> (&AtomicU32, &AtomicU32) {
        let base = seg.object_ptr().as_ptr().cast::<AtomicU32>();
        // SAFETY: the object region is 4096-aligned, at least 8 bytes long,
        // lives as long as `seg`, and is only accessed atomically.
        unsafe { (&*base, &*base.add(1)) }
    }

    /// Child side of the cross-process tests (returns at once in a normal run).
    #[test]
    fn child_entry() {
        let Some(role) = role() else { return };
        let _dog = Watchdog::new(Duration::from_secs(30), "futex child");
        let name = std::env::var(NAME_VAR).unwrap();
        let seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
        let (word, ready) = words(&seg);
        match role.as_str() {
            "waiter" => {
                // ORDERING: Release/Acquire on the flag only orders the test's
                // handshake; the futex word itself is checked in the loop.
                ready.store(1, Ordering::Release);
                let mut sleeps = 0u32;
                while word.load(Ordering::Acquire) == 0 {
                    FutexWaiter.wait(word, 0, None);
                    sleeps += 1;
                }
                assert!(sleeps >= 1);
            }
            other => panic!("unknown role {other}"),
        }
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
        let child = spawn_role(
            "sys::futex::tests::child_entry",
            "waiter",
            &[(NAME_VAR, name.clone())],
        )
        .spawn()
        .unwrap();
        while ready.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Give the child time to go to sleep in the kernel.
        std::thread::sleep(Duration::from_millis(100));
        word.store(1, Ordering::Release);
        FutexWaiter.wake(word, u32::MAX);
        let status = wait_child(child, Duration::from_secs(20));
        assert!(status.success(), "child failed: {status}");
    }

    #[test]
    fn timed_wait_returns_after_deadline() {
        let _dog = Watchdog::new(Duration::from_secs(20), "timed futex wait");
        let word = AtomicU32::new(7);
        let start = Instant::now();
        let deadline = deadline_after(Some(Duration::from_millis(100)));
        // Spurious returns are allowed: loop until the deadline has passed.
        while FutexWaiter.now() < deadline.unwrap() {
            FutexWaiter.wait(&word, 7, deadline);
        }
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn wait_on_changed_word_and_zero_timeout_return() {
        let _dog = Watchdog::new(Duration::from_secs(20), "futex wait that must not sleep");
        let word = AtomicU32::new(1);
        FutexWaiter.wait(&word, 0, None); // value differs: EAGAIN at once
        FutexWaiter.wait(&word, 1, deadline_after(Some(Duration::ZERO)));
        FutexWaiter.wake(&word, u32::MAX); // nobody sleeping: harmless
    }
}
