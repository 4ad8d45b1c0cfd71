//! The single consumer's half of the byte-ring protocol.

use super::{Found, RingRef};
use crate::error::Corrupted;
use crate::sync::Ordering;

/// The single consumer's half of the protocol (SPSC only; MPMC consumers
/// CAS the head instead, see `mpmc`).
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) ring: RingRef,
    /// Local read position; `>= released`.
    head: u64,
    /// The head as last stored to shared memory.
    released: u64,
    /// The tail as last loaded.
    cached_tail: u64,
    popped: u64,
}

impl Reader {
    pub(crate) fn attach(ring: RingRef) -> Result<Self, Corrupted> {
        let shared = ring.shared();
        // ORDERING: Acquire — pairs with the previous consumer's Release.
        let head = shared.consumer.head.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the producer's Release of the tail.
        let tail = shared.producer.tail.load(Ordering::Acquire);
        ring.check_span(head, tail)?;
        // ORDERING: Relaxed — a statistic; only the consumer writes it.
        let popped = shared.consumer.popped.load(Ordering::Relaxed);
        Ok(Reader {
            ring,
            head,
            released: head,
            cached_tail: tail,
            popped,
        })
    }

    /// The next data record, skipping (and consuming) padding; `None` when
    /// nothing is published past the head. Does not consume the record.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Result<Option<Found>, Corrupted> {
        loop {
            if self.head == self.cached_tail && !self.reload_tail()? {
                return Ok(None);
            }
            let found = self.ring.record_at(self.head, self.cached_tail)?;
            if found.pad {
                self.head += found.size;
                continue;
            }
            return Ok(Some(found));
        }
    }

    /// Loads the tail after the cached one ran out; whether there is
    /// anything new.
    #[inline]
    fn reload_tail(&mut self) -> Result<bool, Corrupted> {
        // ORDERING: Acquire — pairs with the producer's Release store of the
        // tail: the records before it are complete.
        let tail = self.ring.shared().producer.tail.load(Ordering::Acquire);
        self.ring.check_span(self.released, tail)?;
        if tail < self.head {
            return Err(Corrupted::new("ring tail", tail));
        }
        self.cached_tail = tail;
        Ok(self.head != tail)
    }

    /// Consumes the record `peek` returned.
    #[inline(always)]
    pub(crate) fn advance(&mut self, found: &Found) {
        self.head += found.size;
        self.popped += 1;
    }

    /// Gives the consumed space back to the producer. Returns whether there
    /// was anything to give back.
    #[inline(always)]
    pub(crate) fn release(&mut self) -> bool {
        if self.head == self.released {
            return false;
        }
        let line = &self.ring.shared().consumer;
        // ORDERING: Release — our reads of the released records happen before
        // the producer may overwrite them; pairs with its Acquire of the head.
        line.head.store(self.head, Ordering::Release);
        // ORDERING: Relaxed — a statistic for `len`.
        line.popped.store(self.popped, Ordering::Relaxed);
        self.released = self.head;
        true
    }
}
