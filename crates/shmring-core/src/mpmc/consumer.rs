//! The consumer side of the MPMC queue: scan the rings, copy a record out
//! optimistically, CAS the head past it.

use alloc::vec::Vec;

use crate::bytes;
use crate::error::{Corrupted, PopError};
use crate::ring::RingRef;
use crate::sync::Ordering;
use crate::wait::{block_on, Until, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

use super::Queue;

/// A consumer's handle. Any number, in any processes.
#[derive(Debug, Clone)]
pub struct Consumer<W> {
    pub(super) queue: Queue,
    /// The ring to look at first next time (rotates, for fairness).
    pub(super) next: usize,
    pub(super) waiter: W,
}

/// What one attempt on one ring found.
enum Take {
    Got,
    Empty,
}

impl<W: Waiter + Clone> Consumer<W> {
    /// Copies the next record of some ring into `buf` (replacing its
    /// contents) and returns its length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and every ring drained), `Corrupted`.
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        // The flag before the scan: a record published before the close is
        // then seen by the scan (Acquire pairs with the close's Release).
        let closed = self.queue.shared().closed();
        let n = self.queue.rings_in_use();
        for k in 0..n {
            let i = (self.next + k) % n;
            let space = &self.queue.shared().space;
            if let Take::Got = take_from(&self.queue.rings[i], space, buf, &self.waiter)? {
                self.next = (i + 1) % n;
                return Ok(buf.len());
            }
        }
        Err(if closed {
            PopError::Closed
        } else {
            PopError::Empty
        })
    }

    /// Pops into `buf`, waiting until `deadline` (`None`: none).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `Corrupted`.
    pub fn pop(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: impl Into<Until>,
        policy: &WaitPolicy,
    ) -> Result<usize, PopError> {
        let queue = self.queue.clone();
        let waiter = self.waiter.clone();
        block_on(
            &queue.shared().not_empty,
            &waiter,
            deadline,
            policy,
            |_| match self.try_pop(buf) {
                Err(PopError::Empty) => None,
                other => Some(other),
            },
        )
        .unwrap_or(Err(PopError::Timeout))
    }
}

/// One take from one ring: copy out optimistically, then CAS the head.
fn take_from<W: Waiter + ?Sized>(
    ring: &RingRef,
    space: &WaitWord,
    buf: &mut Vec<u8>,
    waiter: &W,
) -> Result<Take, Corrupted> {
    let line = &ring.shared().consumer;
    loop {
        // ORDERING: Acquire — pairs with other consumers' Release CAS.
        let head = line.head.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the producer's Release of the tail:
        // the records before it are complete.
        let tail = ring.shared().producer.tail.load(Ordering::Acquire);
        if head == tail {
            return Ok(Take::Empty);
        }
        // The tail was read after the head, so for correct peers tail >= head
        // and, unless the head moved meanwhile, tail - head <= capacity.
        let found = ring
            .check_span(head, tail)
            .and_then(|()| ring.record_at(head, tail));
        let found = match found {
            Ok(found) => found,
            Err(c) => {
                // ORDERING: Acquire — the header and tail loads above were
                // Acquire, so if they came from a later lap, the head advance
                // that allowed it happens-before this load and is seen here.
                if line.head.load(Ordering::Acquire) == head {
                    return Err(c);
                }
                continue; // raced with another consumer and the producer
            }
        };
        if !found.pad {
            buf.clear();
            buf.resize(found.len, 0);
            bytes::load(ring.data(), found.payload_word, buf, false);
            failpoint!("mpmc.copied", buf);
        }
        // ORDERING: AcqRel on success — Release orders our copy before the
        // head moves (pairs with the producer's Acquire load of the head, so
        // it cannot overwrite what we are still reading); Acquire is for the
        // next loop round. Relaxed on failure: we re-load everything.
        if line
            .head
            .compare_exchange(head, head + found.size, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue; // another consumer took it; our copy is discarded
        }
        if found.pad {
            continue;
        }
        failpoint!("mpmc.cas-done");
        // ORDERING: Relaxed — a statistic for `len`. A consumer killed
        // between the CAS and here leaves `len` one too high.
        line.popped.fetch_add(1, Ordering::Relaxed);
        failpoint!("mpmc.counted");
        // Every producer sleeping for room waits on the one `space` word
        // (its own ring full, or `max_len` reached): wake them all, the
        // one whose ring this was and any waiting on the count.
        space.wake_if_waiting(waiter, WAKE_ALL);
        return Ok(Take::Got);
    }
}
