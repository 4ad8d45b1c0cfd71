//! The operating-system boundary: the only module of shmring with FFI.
//!
//! Everything that calls into `libc` lives below this module and returns plain
//! `io::Result`s; the segment and the facades add context (names, sizes) when
//! they turn those into [`crate::error::SegmentError`]s.
//!
//! - [`clock`]: `CLOCK_MONOTONIC`, the clock every deadline is measured on.
//! - [`futex`]: the [`FutexWaiter`] that puts the core's wait protocol to sleep.
//! - [`shm`]: `shm_open`, `memfd_create`, sizing, sealing, mapping, fd inheritance.
//! - [`lock`]: open-file-description byte locks, used for peer liveness.
//! - [`membarrier`]: the heavy side of the wait protocol's asymmetric fence.
//! - [`process`]: signals, the parent-death signal of daemon children, and a
//!   thread's involuntary context switches (the wait's crowded-CPU test).
//! - `uring` (feature `tokio`): io_uring futex waits for async sleepers.

pub(crate) mod clock;
pub(crate) mod futex;
pub(crate) mod lock;
pub(crate) mod membarrier;
pub(crate) mod process;
pub(crate) mod shm;
#[cfg(feature = "tokio")]
pub(crate) mod uring;

pub(crate) use clock::{now, now_coarse, until_instant};
pub use futex::FutexWaiter;
