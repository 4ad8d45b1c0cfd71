//! Fuzz and model harnesses for shmring: not published, used by `fuzz/`
//! and by the regression and model tests of `shmring-core` and `shmring`.
//!
//! Each harness turns arbitrary bytes into operations on the real
//! structures, through their public API, and checks them against a model
//! or against the "untrusted memory" contract (DESIGN.md): any byte
//! pattern in shared memory gives errors, never undefined behaviour, a
//! panic, an out-of-bounds access (AddressSanitizer watches) or a hang.
//! Every fuzz target in `fuzz/` is a one-line shim into one of these, so a
//! crash input the fuzzer finds replays as an ordinary test.
//!
//! * [`ring_ops`]: SPSC ([`spsc_ops`]) and MPMC ([`mpmc_ops`]) op
//!   sequences, differential against [`model::RingModel`], the one exact
//!   model of a byte ring (positions, padding, counts, continuation marks,
//!   closed flags), starting anywhere, also just before the position words
//!   wrap, and with hostile position words stored between operations
//!   (after which only "no panic" is checked); or a ring, queue or dict
//!   region built by real operations and then scribbled on by a hostile
//!   peer, read through every path ([`region_ops`]).
//! * [`dict_ops`]: table operations against a `HashMap`, with dead holders
//!   and scribbled derived state recovered on the way.
//! * [`segment_bytes`]: arbitrary bytes as a segment file, opened as every
//!   kind and read through every path.
//! * [`pipe_frames`]: a hostile writer on a pipe's ring against a reading
//!   connection.
//!
//! * [`memory`]: where the checklist suites put their rings and queues: on
//!   the heap, or in a real memfd segment made by the engine.
//!
//! Every harness panics only on a model mismatch or an invariant
//! violation: a panic *is* a finding.
//!
//! Under `--cfg loom` (the core's loom models, which build this crate as a
//! dev-dependency) the crate is empty: neither the engine nor the core's
//! dict exists there.
#![warn(missing_docs)]
#![cfg(not(loom))]

mod dict;
mod input;
pub mod memory;
pub mod model;
mod mpmc;
mod pipe;
mod region;
mod segment;
mod shm_file;
mod spsc;

pub use dict::dict_ops;
pub use input::Input;
pub use mpmc::mpmc_ops;
pub use pipe::pipe_frames;
pub use region::region_ops;
pub use segment::{segment_bytes, segment_templates};
pub use spsc::spsc_ops;

/// Switches for known findings the harnesses steer around while they are
/// open, so that a fuzzing run keeps looking for new ones instead of
/// re-finding them. The finding below is fixed (its regression test in
/// `shmring-core/tests/fuzz_regressions.rs` runs); the switch stays off. (A
/// second one, `Queue::len` overflowing on hostile `pushed` counters, was
/// fixed too and its switch removed when the counts moved into the position
/// words.)
pub(crate) mod known {
    /// `dict::ops` insert: `(len + tombstones + 1) * 4` overflows (a panic
    /// with overflow checks) when a hostile peer writes a huge `tombstones`.
    /// Steered around by keeping scribbled `tombstones` below 2^32.
    pub(crate) const DICT_TOMBSTONES_OVERFLOW: bool = false;
}

/// Dispatches on the first byte: [`spsc_ops`], [`mpmc_ops`] or
/// [`region_ops`] on the rest.
pub fn ring_ops(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => spsc_ops(rest),
        1 => mpmc_ops(rest),
        _ => region_ops(rest),
    }
}
