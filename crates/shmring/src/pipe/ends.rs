//! The two halves of a connection: the ring it reads and the ring it
//! writes, each with the role this end holds on it.

use shmring_core::error::{PopError, PushError};
use shmring_core::spsc;
use shmring_core::sync::AtomicU64;
use shmring_core::wait::WaitPolicy;

use super::error::{eof, from_pop, from_push};
use super::PipeError;
use crate::attach::holder_gone;
use crate::segment::Segment;
use crate::sys::FutexWaiter;

/// The ring this end reads: its consumer role is ours.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) consumer: spsc::Consumer<FutexWaiter>,
    pub(super) ring: spsc::Ring,
    /// The ring's maximum record: a record this long is a fragment with more
    /// to follow.
    pub(super) fragment: usize,
}

/// The ring this end writes: its producer role is ours.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) producer: spsc::Producer<FutexWaiter>,
    pub(super) ring: spsc::Ring,
    pub(super) fragment: usize,
}

/// Whether the process holding the other role of `ring` (`word`) is gone;
/// if so, closes the ring on its behalf, so that every later check is the
/// flag alone (no system call) and a re-opened end finds it closed, as
/// Python's dead descriptor would be.
pub(super) fn peer_gone(ring: &spsc::Ring, word: &AtomicU64, segment: &Segment) -> bool {
    let gone = holder_gone(word, segment);
    if gone {
        ring.close(&FutexWaiter);
    }
    gone
}

impl Incoming {
    /// The other end (the producer of this ring) is gone: see [`peer_gone`].
    pub(super) fn writer_gone(&self, segment: &Segment) -> bool {
        peer_gone(&self.ring, self.ring.owner_words().0, segment)
    }

    /// Blocks until a record is there, hands its payload to `f` in place and
    /// consumes it. `mid_message` says whether earlier fragments of the same
    /// message were read (for the end-of-file error).
    pub(super) fn next_record<R>(
        &mut self,
        segment: &Segment,
        policy: &WaitPolicy,
        mid_message: bool,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PipeError> {
        let mut f = Some(f);
        loop {
            match self.consumer.read() {
                // The grant drops at the end of the arm: consumed.
                Ok(grant) => return Ok((f.take().expect("called once"))(&grant)),
                Err(PopError::Empty) => {}
                Err(e) => return Err(from_pop(e, mid_message)),
            }
            let ring = &self.ring;
            let writer = ring.owner_words().0;
            let readable = self
                .consumer
                .wait_readable(None, policy, &mut || peer_gone(ring, writer, segment));
            if readable == Ok(false) {
                return Err(eof(mid_message));
            }
        }
    }
}

impl Outgoing {
    /// Pushes one record, blocking while the ring is full.
    pub(super) fn push(
        &mut self,
        record: &[u8],
        segment: &Segment,
        policy: &WaitPolicy,
    ) -> Result<(), PipeError> {
        match self.producer.try_push(record) {
            Ok(()) => return Ok(()),
            Err(PushError::Full) => {}
            Err(e) => return Err(from_push(e)),
        }
        let ring = &self.ring;
        let reader = ring.owner_words().1;
        self.producer
            .push(record, None, policy, &mut || {
                peer_gone(ring, reader, segment)
            })
            .map_err(from_push)
    }
}
