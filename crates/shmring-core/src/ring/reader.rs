//! The single consumer's half of the byte-ring protocol.

use super::{advance, count, distance, pack, position, Found, RingRef, COUNT_MASK};
use crate::error::Corrupted;
use crate::sync::Ordering;

/// The single consumer's half of the protocol (SPSC only; MPMC consumers
/// CAS the head word instead, see `mpmc`). Positions are in words, modulo
/// 2^[`POSITION_BITS`](super::POSITION_BITS).
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) ring: RingRef,
    /// Local read position; at or past the released one.
    head: u64,
    /// The head word as last stored to shared memory.
    released: u64,
    /// The tail position as last loaded; at or past `head`.
    cached_tail: u64,
    /// Data records taken up to `head`, for the head word's count; only its
    /// low [`COUNT_BITS`](super::COUNT_BITS) matter.
    popped: u64,
}

impl Reader {
    pub(crate) fn attach(ring: RingRef) -> Result<Self, Corrupted> {
        let shared = ring.shared();
        // ORDERING: Acquire — pairs with the previous consumer's Release.
        let head = shared.consumer.head.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the producer's Release of the tail
        // word; loaded after the head, so never behind it (see `ring_count`).
        let tail = shared.producer.tail.load(Ordering::Acquire);
        ring.check_words(head, tail)?;
        Ok(Reader {
            ring,
            head: position(head),
            released: head,
            cached_tail: position(tail),
            popped: count(head),
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
            let avail = distance(self.head, self.cached_tail);
            let found = self.ring.record_at(self.head, avail)?;
            if found.pad {
                self.head = advance(self.head, found.size);
                continue;
            }
            return Ok(Some(found));
        }
    }

    /// Loads the tail word after the cached tail ran out; whether there is
    /// anything new.
    #[inline]
    fn reload_tail(&mut self) -> Result<bool, Corrupted> {
        // ORDERING: Acquire — pairs with the producer's Release store of the
        // tail word: the records before it are complete.
        let tail = self.ring.shared().producer.tail.load(Ordering::Acquire);
        // Within the capacity of the released head, and not behind the
        // local head (records up to it were seen published)...
        self.ring.check_words(self.released, tail)?;
        let released = position(self.released);
        if distance(released, self.head) > distance(released, position(tail)) {
            return Err(Corrupted::new("ring tail", tail));
        }
        // ... and counting no more records past the local head than fit.
        let ahead = count(tail).wrapping_sub(self.popped) & COUNT_MASK;
        if ahead > distance(self.head, position(tail)) {
            return Err(Corrupted::new("ring counts (pushed - popped)", ahead));
        }
        self.cached_tail = position(tail);
        Ok(self.head != self.cached_tail)
    }

    /// Consumes the record `peek` returned.
    #[inline(always)]
    pub(crate) fn advance(&mut self, found: &Found) {
        self.head = advance(self.head, found.size);
        self.popped = self.popped.wrapping_add(1);
    }

    /// Gives the consumed space back to the producer: one store of the head
    /// word, position and count together. Returns whether there was
    /// anything to give back.
    #[inline(always)]
    pub(crate) fn release(&mut self) -> bool {
        if self.head == position(self.released) {
            return false;
        }
        let word = pack(self.popped, self.head);
        // ORDERING: Release — our reads of the released records happen before
        // the producer may overwrite them; pairs with its Acquire of the head
        // word.
        self.ring
            .shared()
            .consumer
            .head
            .store(word, Ordering::Release);
        self.released = word;
        true
    }
}
