//! proptest over the one model of a ring
//! (`shmring_fuzz_support::model::RingModel`, the fuzzers' model): random
//! byte strings decoded into op sequences by the `ring_ops` harnesses, so
//! that `cargo test` runs the differential check the fuzzers run, with
//! proptest's shrinking on a failure.
//!
//! What the harnesses check, on rings that may start just before their
//! position or count words wrap: every result of every push (single,
//! batch, marked, blocking with a past deadline, zero-copy reserve) and pop
//! (single, batch, read grant, blocking) against the model, `len`,
//! `is_empty`, `is_full`, `free_bytes` and the closed flags after each, a
//! final drain in order (SPSC), FIFO per producer and every record once
//! (MPMC: producers claiming, dying and being adopted, two consumers);
//! fresh handles taking over (a new process), closes; and hostile position
//! words stored between operations, after which any answer but a panic, or
//! a payload longer than the largest record, is fine.
#![cfg(not(loom))]

use proptest::prelude::*;
use shmring_fuzz_support::{mpmc_ops, spsc_ops};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn spsc_matches_the_ring_model(data in prop::collection::vec(any::<u8>(), 0..1500)) {
        spsc_ops(&data);
    }

    #[test]
    fn mpmc_matches_the_ring_model(data in prop::collection::vec(any::<u8>(), 0..1500)) {
        mpmc_ops(&data);
    }
}

/// The case the earlier proptest (its own `VecDeque` model) once shrank
/// to: on a 64-byte ring, a batch of an empty and a 49-byte record, then a
/// pop. The 49-byte record (8 words) does not fit beside the empty one
/// (1 word): the batch reports one record pushed, not `Full`. Spelled out
/// as the harness's bytes: capacity 64, largest record 56, start at 0;
/// `try_push_many` of lengths 0 and 49 (length words 0 and 49 << 3 | 3);
/// `try_pop`; then the final drain.
#[test]
fn a_batch_of_an_empty_and_a_long_record_then_a_pop() {
    spsc_ops(&[0, 56, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0x8b, 0x01, 0, 7]);
}
