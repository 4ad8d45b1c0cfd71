//! Shared helpers of the segment tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use shmring::segment::{CreateOptions, ObjectKind, Segment};

/// Parameters every test segment is created with.
pub const PARAMS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// Object size of the test segments.
pub const OBJECT_LEN: usize = 4096;
/// Tests only use SeqCst on their mailbox words: clarity over speed.
pub const SEQ: Ordering = Ordering::SeqCst;

/// Creates a named segment with default options.
pub fn create(name: &str, kind: ObjectKind) -> Segment {
    Segment::create(
        name,
        kind,
        PARAMS,
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap()
}

/// Word `i` of the object region, used as a mailbox between test processes.
pub fn word(seg: &Segment, i: usize) -> &AtomicU64 {
    assert!((i + 1) * 8 <= seg.object_len());
    // SAFETY: in bounds (asserted), 8-aligned (the object is 4096-aligned),
    // borrowed no longer than `seg`'s mapping, and only accessed atomically.
    unsafe { &*seg.object_ptr().as_ptr().cast::<AtomicU64>().add(i) }
}

/// The file of a named segment.
pub fn path_of(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}
