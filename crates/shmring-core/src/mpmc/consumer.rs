//! The consumer side of the MPMC queue: scan the rings, copy a record out
//! optimistically, CAS the head past it.
//!
//! # What a take touches
//!
//! The ring's consumer line (a load of the head and the CAS), the record's
//! data words, and the queue's `space` wait word (read-mostly). Not the
//! producer's line: each consumer keeps, per ring, a tail it loaded earlier
//! (with Acquire). Tails only grow, so while a ring's head is below that
//! cached tail the records up to it are published and visible, and the
//! producer's line is loaded again only when the head catches up with it.
//! Without that, every take pulled the line the producer stores on every
//! push. The closed flag is read only when a scan finds nothing.

use alloc::vec::Vec;

use crate::bytes;
use crate::error::{Corrupted, PopError};
use crate::ring::{small, RingRef};
use crate::sync::Ordering;
use crate::wait::{block_on, Until, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

use super::Queue;

/// A consumer's handle. Any number, in any processes.
#[derive(Debug, Clone)]
pub struct Consumer<W> {
    queue: Queue,
    /// The ring to look at first next time (rotates, for fairness); below
    /// the rings in use, or 0 (that count only grows).
    next: usize,
    /// Per ring, a tail loaded earlier with Acquire (0 before the first).
    /// Never trusted beyond the checks every tail gets.
    tails: Vec<u64>,
    waiter: W,
}

/// What one attempt on one ring found.
enum Take {
    Got,
    Empty,
}

impl<W: Waiter + Clone> Consumer<W> {
    pub(super) fn new(queue: Queue, waiter: W) -> Self {
        let rings = queue.rings.len();
        Consumer {
            queue,
            next: 0,
            tails: alloc::vec![0; rings],
            waiter,
        }
    }

    /// Copies the next record of some ring into `buf` (replacing its
    /// contents) and returns its length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and every ring drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        if self.scan(buf)? {
            return Ok(buf.len());
        }
        self.try_pop_after_empty_scan(buf)
    }

    /// The end of `try_pop` when every ring looks empty: was it closed?
    #[inline(never)]
    fn try_pop_after_empty_scan(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        // The flag, then one more scan: a record published before the close
        // is then seen by it (the Acquire pairs with the close's Release).
        let closed = self.queue.shared().closed();
        if closed && self.scan(buf)? {
            return Ok(buf.len());
        }
        Err(if closed {
            PopError::Closed
        } else {
            PopError::Empty
        })
    }

    /// One pass over the rings in use, from the rotating start; whether a
    /// record was taken into `buf`.
    #[inline(always)]
    fn scan(&mut self, buf: &mut Vec<u8>) -> Result<bool, Corrupted> {
        let n = self.queue.rings_in_use();
        // `next < n` unless a hostile peer shrank the count.
        let mut i = if self.next < n { self.next } else { 0 };
        for _ in 0..n {
            debug_assert!(i < n && n <= self.queue.rings.len());
            let space = &self.queue.shared().space;
            let ring = &self.queue.rings[i];
            if let Take::Got = take_from(ring, &mut self.tails[i], space, buf, &self.waiter)? {
                self.next = if i + 1 == n { 0 } else { i + 1 };
                return Ok(true);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        Ok(false)
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
/// `cached_tail` is this consumer's last Acquire load of the ring's tail.
#[inline(always)]
fn take_from<W: Waiter + ?Sized>(
    ring: &RingRef,
    cached_tail: &mut u64,
    space: &WaitWord,
    buf: &mut Vec<u8>,
    waiter: &W,
) -> Result<Take, Corrupted> {
    let line = &ring.shared().consumer;
    loop {
        // ORDERING: Acquire — pairs with other consumers' Release CAS.
        let head = line.head.load(Ordering::Acquire);
        let mut tail = *cached_tail;
        if head >= tail {
            // ORDERING: Acquire — pairs with the producer's Release of the
            // tail: the records before it are complete.
            tail = ring.shared().producer.tail.load(Ordering::Acquire);
            *cached_tail = tail;
            if head == tail {
                return Ok(Take::Empty);
            }
        }
        // For correct peers `head < tail` and `tail - head <= capacity`:
        // the producer stored this tail only after loading a head at least
        // `tail - capacity`, and our Acquire of the tail makes that load
        // happen before our (later) load of the head. A cached tail keeps
        // this: the head we load now is no older than that one.
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
                    // Look at the tail afresh next time: a bad value is
                    // reported again only if it is still there.
                    *cached_tail = 0;
                    return Err(c);
                }
                continue; // raced with another consumer and the producer
            }
        };
        if !found.pad {
            if found.len <= small::SMALL {
                small::load(ring.payload_words(&found), found.len, buf);
            } else {
                buf.clear();
                buf.resize(found.len, 0);
                bytes::load(ring.data(), found.payload_word, buf, false);
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    use alloc::vec::Vec;

    use crate::heap::{self, ThreadWaiter};
    use crate::mpmc::QueueConfig;
    use crate::ring::RingConfig;

    /// A CONT record in a queue's ring (no queue producer writes one) is
    /// taken like a DATA record, and counted.
    #[test]
    fn continuation_record_is_delivered_like_data() {
        let config = QueueConfig {
            rings: 1,
            ring: RingConfig {
                capacity: 256,
                max_record: 16,
            },
            max_len: 0,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let mut producer = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        producer.writer.write(b"begins", false).unwrap();
        producer.writer.write(b"continues", true).unwrap();
        producer.writer.publish();
        assert_eq!(queue.len(), 2);
        let mut consumer = queue.consumer(waiter);
        let mut buf = Vec::new();
        assert_eq!(consumer.try_pop(&mut buf), Ok(6));
        assert_eq!(buf, b"begins");
        assert_eq!(consumer.try_pop(&mut buf), Ok(9));
        assert_eq!(buf, b"continues");
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
    }
}
