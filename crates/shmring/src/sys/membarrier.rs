//! `membarrier(2)`: the heavy side of the wait protocol's asymmetric fence.
//!
//! A process whose wakers publish with a compiler barrier only (see
//! `shmring_core::wait`, "Why the fences") must be registered with
//! `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` before its first such
//! publish; a sleeper (in any process) then calls
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED` after raising `waiters`, which makes
//! every running thread of every registered process run a full memory
//! barrier before the call returns.
//!
//! Registration is per address space: it survives `fork` (the child's copy
//! of the address space keeps it) and is dropped by `execve`, after which
//! the new program registers again on its first publish. Measured on the
//! development VM (2 vCPUs): 0.4 µs per barrier with no other registered
//! process running, 3.8 µs with one running on the other CPU (an IPI).

use std::sync::atomic::{AtomicU8, Ordering};

use shmring_core::wait::HeavyFence;

const UNKNOWN: u8 = 0;
const LIGHT: u8 = 1;
const HEAVY: u8 = 2;

/// Whether this process registered (`LIGHT`), could not (`HEAVY`), or has
/// not tried yet.
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

fn membarrier(cmd: libc::c_int) -> bool {
    // SAFETY: membarrier takes no pointers; any command value is safe to
    // pass (an unknown one is EINVAL).
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0u32, 0i32) == 0 }
}

/// Whether this process's wakers may use a compiler barrier alone:
/// registers the process on the first call (one system call per process).
#[inline]
pub(crate) fn light_wakers() -> bool {
    // ORDERING: Relaxed — a process-local cache of the registration's
    // outcome (partner: the store in `register`); the registration itself
    // is a system call, which every thread's first publish follows.
    match STATE.load(Ordering::Relaxed) {
        LIGHT => true,
        HEAVY => false,
        _ => register(),
    }
}

#[cold]
fn register() -> bool {
    let ok = std::env::var_os(HEAVY_ENV).is_none()
        && membarrier(libc::MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
    // ORDERING: Relaxed — see `light_wakers`. Two threads racing here
    // both register (idempotent) and store the same outcome.
    STATE.store(if ok { LIGHT } else { HEAVY }, Ordering::Relaxed);
    ok
}

/// Set (to anything) to make this process's wakers use full fences: for
/// tests that mix both kinds of wakers, and a way out on a system where
/// the barrier misbehaves.
pub const HEAVY_ENV: &str = "SHMRING_FULL_FENCES";

/// Whether this kernel may offer `MEMBARRIER_CMD_GLOBAL_EXPEDITED`
/// (`MEMBARRIER_CMD_QUERY`, asked once per process). Only a query that
/// answers without the command says no: then no process can have
/// registered, so no waker is light. A refused query (no system call, or a
/// seccomp filter, which may answer ENOSYS too) says nothing about other
/// processes: maybe.
fn kernel_has_global_expedited() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        // SAFETY: as in `membarrier`; QUERY returns the supported commands'
        // bit mask, or -1 (ENOSYS on a kernel without the call).
        let mask =
            unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_QUERY, 0u32, 0i32) };
        mask < 0 || mask & libc::c_long::from(libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0
    })
}

/// The sleeper's heavy fence. `NotNeeded` on a kernel that says it lacks
/// the command (nobody can be light there: no 1 ms slices for nothing),
/// `Failed` when the call is refused otherwise (a seccomp filter: a light
/// waker elsewhere may then miss this sleeper, which therefore sleeps in
/// short slices).
pub(crate) fn heavy_fence() -> HeavyFence {
    if membarrier(libc::MEMBARRIER_CMD_GLOBAL_EXPEDITED) {
        HeavyFence::Done
    } else if kernel_has_global_expedited() {
        HeavyFence::Failed
    } else {
        HeavyFence::NotNeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_supports_the_barrier() {
        // The development and CI machines run kernels well past 4.16; if
        // this fails, every sleeper sleeps in 1 ms slices (correct, slower).
        assert!(light_wakers() || std::env::var_os(HEAVY_ENV).is_some());
        assert_eq!(heavy_fence(), HeavyFence::Done);
    }
}
