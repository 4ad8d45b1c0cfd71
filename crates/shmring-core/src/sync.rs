//! The one place that names atomics and spin hints.
//!
//! Under `cfg(loom)` everything here is loom's model-checked version, so the
//! algorithms in this crate can be explored by loom without a single `cfg` in
//! their own code. Nothing else in the crate imports `core::sync::atomic`.

#[cfg(not(loom))]
pub use core::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Under loom, a compiler barrier is modelled as the full fence the
/// heavy side's barrier gives it (see `wait::Waiter::light_wakers`).
#[cfg(loom)]
pub use loom::sync::atomic::fence as compiler_fence;

/// One step of a busy-wait.
///
/// A CPU pause hint normally; under loom a yield, so the model checker
/// schedules another thread instead of exploring an endless spin.
#[inline(always)]
pub fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
