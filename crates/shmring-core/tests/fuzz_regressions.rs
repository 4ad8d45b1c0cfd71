//! The fuzz targets' hooks as ordinary tests: every crash input the fuzzer
//! found (inline, with what it found), and a quick sweep of pseudo-random
//! inputs so the hooks themselves cannot rot. Replay a fuzzer artifact with
//! `cargo fuzz run ring_ops fuzz/artifacts/ring_ops/crash-…` or by pasting it
//! here.
#![cfg(not(loom))]

use shmring_core::dict::{self, DictConfig};
use shmring_core::heap::ThreadWaiter;
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::wait::{Deadline, Until, WaitHistory, WaitPolicy};
use shmring_fuzz_support::{dict_ops, mpmc_ops, region_ops, ring_ops, spsc_ops};
use shmring_testkit::pseudo_random_inputs;

#[test]
fn spsc_sweep() {
    for input in pseudo_random_inputs(1, 300, 400) {
        spsc_ops(&input);
    }
}

#[test]
fn mpmc_sweep() {
    for input in pseudo_random_inputs(2, 300, 400) {
        mpmc_ops(&input);
    }
}

#[test]
fn region_sweep() {
    for input in pseudo_random_inputs(3, 300, 600) {
        region_ops(&input);
    }
}

#[test]
fn dict_sweep() {
    for input in pseudo_random_inputs(4, 300, 400) {
        dict_ops(&input);
    }
}

#[test]
fn empty_and_tiny_pseudo_random_inputs() {
    for input in [&[][..], &[0], &[1], &[2], &[2, 2, 2], &[255; 3]] {
        ring_ops(input);
        dict_ops(input);
    }
}

/// The crash artifacts as found (`tests/fuzz_inputs/`). Each panicked
/// before its bug was fixed; the hooks no longer steer around them
/// (`shmring_fuzz_support::known` is all off), and the bugs' own tests are below.
///
/// * `ring_ops-dict-tombstones`: `dict/ops.rs` insert, "attempt to
///   multiply with overflow" (a scribbled dict region).
/// * `dict_ops-tombstones-wrap`: the same line, "attempt to add with
///   overflow", after a removal wrapped a wrong count below zero.
/// * `ring_ops-dict-tombstones-wrap`: the same line, reached after the
///   region hook's one-time clamp (a later removal wrapped the count).
/// * `ring_ops-queue-len-overflow`: `mpmc::Queue::len`, "attempt to add
///   with overflow" in its `sum()` (a scribbled queue region).
/// * `ring_ops-dict-claimed-len`: a harness finding, not a core one. The
///   hostile peer rewrote a dict's capacity so that its layout described
///   exactly the too-long length a fresh attacher then claimed; attach
///   rightly accepted a header that matches the length it was given, and
///   the hook's "a wrong length is refused" assertion fired. The hook now
///   allocates the slack it claims and asserts that an accepted length is
///   the one the header describes.
#[test]
fn crash_artifacts() {
    ring_ops(include_bytes!("fuzz_inputs/ring_ops-dict-tombstones"));
    dict_ops(include_bytes!("fuzz_inputs/dict_ops-tombstones-wrap"));
    ring_ops(include_bytes!("fuzz_inputs/ring_ops-queue-len-overflow"));
    ring_ops(include_bytes!("fuzz_inputs/ring_ops-dict-tombstones-wrap"));
    ring_ops(include_bytes!("fuzz_inputs/ring_ops-dict-claimed-len"));
}

/// Finding 2, minimal: hostile `pushed` counters in two producer rings made
/// `Queue::len` (and so `try_push` with a `max_len`, and the facades'
/// `qsize`/`full`) overflow in its `sum()`: a panic with overflow checks.
/// The counts now live in the top bits of the tail words: the hostile
/// values go there.
#[test]
fn queue_len_survives_huge_counters() {
    use shmring_core::layout::Padded;
    use shmring_core::mpmc::{Queue, QueueConfig, QueueLayout};
    use shmring_core::RingConfig;
    let config = QueueConfig {
        rings: 2,
        ring: RingConfig {
            capacity: 64,
            max_record: 8,
        },
        max_len: 0,
    };
    let layout = QueueLayout::new(&config).unwrap();
    let region: std::sync::Arc<Vec<Padded<[AtomicU64; 16]>>> = std::sync::Arc::new(
        (0..layout.total.div_ceil(128))
            .map(|_| Padded(Default::default()))
            .collect(),
    );
    let base = std::ptr::NonNull::from(&region[..]).cast::<u8>();
    // SAFETY: zeroed, 128-aligned, `total` bytes, private to this test.
    unsafe { Queue::init_in_place(base, layout.total, &config) }.unwrap();
    // SAFETY: valid while `region` (the keep-alive) lives; atomics only.
    let queue = unsafe { Queue::attach_in_place(base, layout.total, region.clone()) }.unwrap();
    let waiter = ThreadWaiter::default();
    let _producers: Vec<_> = (1..=2)
        .map(|token| {
            queue
                .claim_producer(token, waiter.clone(), &mut |_| false)
                .unwrap()
        })
        .collect();
    for (i, value) in [(0, u64::MAX - 1), (1, u64::MAX << 38)].into_iter() {
        let tail = layout.rings_offset + i * 640 + 128;
        // The tail word of ring i, as a hostile peer would write it.
        region[tail / 128].0[tail % 128 / 8].store(value, Ordering::Relaxed);
    }
    let _ = queue.len();
    assert!(queue.checked_len().is_err(), "ring 1's count, no room");
}

/// Finding 1, minimal: a hostile peer writes a huge `tombstones` into the
/// table's derived state; the next insert of a new key computes
/// `(len + tombstones + 1) * 4` and panics on overflow (debug builds and
/// any build with overflow checks). It must be an error or a recount,
/// never a panic.
#[test]
fn dict_insert_survives_huge_tombstones() {
    let table = dict::heap(&DictConfig {
        capacity: 4,
        max_key: 8,
        max_value: 8,
    })
    .unwrap();
    let waiter = ThreadWaiter::default();
    let policy = WaitPolicy::default();
    let header = std::ptr::from_ref(table.lock_state()).cast::<u8>();
    // SAFETY: the lock is the first field of the table header; the derived
    // state starts at offset 256 (`active`, `len`, `tombstones`, ...), all
    // atomic words, inside the header while `table` lives.
    let tombstones = unsafe { &*header.add(256 + 16).cast::<AtomicU64>() };
    tombstones.store(u64::MAX / 2, Ordering::Relaxed);
    let mut guard = table
        .lock(
            1,
            &waiter,
            Until::At(Deadline(0)),
            &policy,
            &mut WaitHistory::default(),
            &mut |_| false,
        )
        .unwrap();
    let _ = guard.insert(b"key", b"value", None);
}
