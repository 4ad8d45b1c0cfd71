//! The algorithms and the shared-memory layout of shmring.
//!
//! Everything here is written against memory handed in by the caller and a
//! [`wait::Waiter`] for sleeping: no system calls, no clocks. That is what
//! lets loom (`RUSTFLAGS="--cfg loom"`) and Miri check all of it on heap
//! memory, and it is why the engine crate `shmring` is the only place with
//! FFI.
//!
//! * [`spsc`]: the single-producer single-consumer byte ring (variable-length
//!   records, padding at the wrap, cached positions, zero-copy grants,
//!   batches).
//! * [`mpmc`]: the multi-producer multi-consumer queue built from one such
//!   ring per producer, with optimistic copy-then-CAS consumers, so a process
//!   killed at any instruction leaves nothing stuck.
//! * [`wait`]: wait words and the sleeper/waker protocol.
//! * [`lock`]: a robust lock whose holder's death is detected and reported
//!   to the next taker.
//! * `dict`: a hash table for many writers whose every operation survives
//!   the death of its process (not under loom: it is all behind the lock).
//! * [`heap`]: the same structures on the heap, for tests and models.
//!
//! Every index and length read from shared memory is checked before use; a
//! bad value is an error ([`error::Corrupted`]), never a panic or undefined
//! behaviour.
#![warn(missing_docs)]

extern crate alloc;

#[macro_use]
pub mod failpoint;
mod bytes;
#[cfg(not(loom))]
pub mod dict;
pub mod error;
pub mod heap;
pub mod joinable;
pub mod layout;
pub mod lock;
pub mod mpmc;
pub mod record;
pub mod ring;
pub mod spsc;
pub mod sync;
pub mod wait;

pub use error::{ConfigError, Corrupted, PopError, PushError};
pub use ring::RingConfig;
