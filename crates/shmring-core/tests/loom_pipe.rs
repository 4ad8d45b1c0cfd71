//! loom models of a pipe's framing over the core SPSC ring. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmring-core --release --test loom_pipe
//! ```
//!
//! The framing lives in the `shmring` crate (`pipe/ends.rs`,
//! `pipe/connection/`), which loom cannot build; it is small, so it is
//! restated here over the same ring: a message no longer than the maximum
//! record (the fragment) is one record; a longer one is records of the
//! fragment's length, the last one shorter or not, and the reader
//! reassembles. The framing marks say where a message begins and ends: the
//! first record of a message does not continue one, every later one does
//! (the ring's CONT tags), and every record but the last says more follow
//! (the MORE tags); the reader here checks that each record's marks arrive
//! with it (continuing exactly when a message is in progress), across wraps
//! and padding, in every interleaving, and ends a message where the marks
//! say, whatever the record's length. The blocking send streams a message
//! larger than the whole ring; the non-blocking one writes all of a
//! message's records at once, only when the free space covers exactly what
//! they take from where the ring stands (`Producer::space_needed`: the
//! records and the padding of a wrap on the way), and relies on the ring
//! never taking that room back.
//!
//! Every actor runs in a spawned thread, and each model asserts a floor on
//! the interleavings it explored (see `tests/loom.rs`).
#![cfg(loom)]

use loom::thread;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::record::Mark;
use shmring_core::wait::{Until, WaitPolicy};
use shmring_core::{PopError, RingConfig};

#[path = "support/loom_model.rs"]
mod loom_model;
use loom_model::model;

/// No spin, one endless slice: a sleeper wakes only when woken.
const POLICY: WaitPolicy = WaitPolicy {
    spin_ns: 0,
    max_spin_ns: 0,
    slice_ns: u64::MAX,
};

/// The fragment: the ring's maximum record. 24-byte records in a 64-byte
/// ring, so the third one in a row meets the end and pads 16 bytes.
const FRAGMENT: usize = 16;
const RING: RingConfig = RingConfig {
    capacity: 64,
    max_record: FRAGMENT as u64,
};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u8).map(|i| i.wrapping_mul(7) ^ seed).collect()
}

/// The records of one message, in order, each with its framing marks.
fn records(msg: &[u8]) -> Vec<(&[u8], Mark)> {
    if msg.len() <= FRAGMENT {
        return vec![(msg, Mark::WHOLE)];
    }
    let count = msg.len().div_ceil(FRAGMENT);
    msg.chunks(FRAGMENT)
        .enumerate()
        .map(|(i, r)| (r, Mark::nth(i, count)))
        .collect()
}

/// The reader's half of the framing: `Some(message)` when `record` ends one.
#[derive(Default)]
struct Reassembler {
    partial: Vec<u8>,
    /// Whether a message is in progress (its first record was fed).
    started: bool,
}

impl Reassembler {
    fn feed(&mut self, record: &[u8], mark: Mark) -> Option<Vec<u8>> {
        assert_eq!(
            mark.continues, self.started,
            "the record's marks did not travel with it"
        );
        self.partial.extend_from_slice(record);
        self.started = mark.more;
        (!self.started).then(|| std::mem::take(&mut self.partial))
    }
}

#[test]
fn a_message_larger_than_the_ring_is_streamed_and_reassembled() {
    // 50 bytes: records of 16, 16, 16 and 2 bytes (24 + 24 + 24 + 16 = 88
    // bytes, more than the 64-byte ring, with a 16-byte pad at the wrap),
    // then a 5-byte message. Both sides block (the pipe's `send` and
    // `recv`), so a lost wake-up on either side is a deadlock loom reports.
    // About 28,000 interleavings with the ring of 2026-11-22 and 56,000
    // with the next; the floor only proves loom explored the model.
    model("pipe stream", 10_000, || {
        let ring = heap::ring(&RING).unwrap();
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w).unwrap();
        let messages = [pattern(50, 1), pattern(5, 2)];
        let sent = messages.clone();
        let writer = thread::spawn(move || {
            p.set_wait_policy(POLICY);
            for msg in &sent {
                for (record, mark) in records(msg) {
                    p.push_marked(record, mark, Until::Never).unwrap();
                }
            }
        });
        let reader = thread::spawn(move || {
            c.set_wait_policy(POLICY);
            let (mut buf, mut reassembler, mut got) = (Vec::new(), Reassembler::default(), vec![]);
            while got.len() < 2 {
                match c.try_pop_marked(&mut buf) {
                    Ok((_, mark)) => got.extend(reassembler.feed(&buf, mark)),
                    Err(PopError::Empty) => {
                        assert_eq!(c.wait_readable(Until::Never), Ok(true));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), messages, "intact and in order");
    });
}

#[test]
fn whole_message_sends_never_leave_part_of_a_message() {
    // The non-blocking send: each message goes in only when the free space
    // covers exactly what all its records take from where the ring stands,
    // all at once. 20 bytes (24 + 16 at 0), 3 bytes (16 at 40), then 31
    // bytes (24 + 24, after an 8-byte pad at 56: 56 bytes): it waits for
    // the reader to empty the ring. The reader tries too, keeping fragments
    // between tries.
    model("pipe whole", 400, || {
        let ring = heap::ring(&RING).unwrap();
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w).unwrap();
        let messages = [pattern(20, 3), pattern(3, 4), pattern(31, 5)];
        let sent = messages.clone();
        let writer = thread::spawn(move || {
            p.set_wait_policy(POLICY);
            for msg in &sent {
                let records = records(msg);
                let need = p.space_needed(records.iter().map(|(r, _)| r.len()));
                assert!(need <= RING.capacity);
                while p.free_bytes().unwrap() < need {
                    thread::yield_now();
                }
                let written = p.try_push_many_marked(records.iter().copied()).unwrap();
                assert_eq!(written, records.len(), "free room went away");
            }
        });
        let reader = thread::spawn(move || {
            c.set_wait_policy(POLICY);
            let (mut buf, mut reassembler, mut got) = (Vec::new(), Reassembler::default(), vec![]);
            while got.len() < 3 {
                match c.try_pop_marked(&mut buf) {
                    Ok((_, mark)) => got.extend(reassembler.feed(&buf, mark)),
                    Err(PopError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
            got
        });
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), messages, "intact and in order");
    });
}
