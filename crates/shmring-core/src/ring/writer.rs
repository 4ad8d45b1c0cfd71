//! The producer's half of the byte-ring protocol.

use super::{advance, count, distance, pack, position, small, RingRef};
use crate::bytes;
use crate::error::{Corrupted, PushError};
use crate::record::{self, Mark};
use crate::sync::Ordering;

/// The producer's half of the protocol. Positions are in words, modulo
/// 2^[`POSITION_BITS`](super::POSITION_BITS) (see the module docs of
/// [`crate::ring`]).
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) ring: RingRef,
    /// Local write position; at or past the published one, and at most the
    /// capacity past `cached_head`.
    tail: u64,
    /// The tail word as last stored to shared memory.
    published: u64,
    /// The head position as last loaded; the true head is at or past it.
    cached_head: u64,
    /// Records written (published or not), for the tail word's count; only
    /// its low [`COUNT_BITS`](super::COUNT_BITS) matter.
    pushed: u64,
    /// Whether consumers copy optimistically (MPMC): then writes must be atomic.
    pub(crate) racy: bool,
}

impl Writer {
    /// Starts writing at the published tail (also when taking over the ring
    /// from a dead producer: whatever it wrote but did not publish is
    /// overwritten).
    pub(crate) fn attach(ring: RingRef, racy: bool) -> Result<Self, Corrupted> {
        let shared = ring.shared();
        // ORDERING: Acquire — pairs with the previous producer's Release store
        // of the tail word, so its last records are fully visible before we
        // follow.
        let tail = shared.producer.tail.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the consumers' Release of the head
        // word. Loaded after the tail, which no one moves while we hold the
        // role, so the pair is consistent for correct peers.
        let head = shared.consumer.head.load(Ordering::Acquire);
        ring.check_words(head, tail)?;
        Ok(Writer {
            ring,
            tail: position(tail),
            published: tail,
            cached_head: position(head),
            pushed: count(tail),
            racy,
        })
    }

    /// Words free as far as the cached head says. Never "negative": the
    /// tail stays within the capacity of the cached head (attach checked
    /// it, a claim never goes past it, and the cached head only moves up to
    /// the published tail).
    #[inline(always)]
    fn free(&self) -> u64 {
        self.ring.words() - distance(self.cached_head, self.tail)
    }

    /// Whether the last known state leaves room for `size` words, re-reading
    /// the head if the cached one says no.
    #[inline]
    fn has_room(&mut self, size: u64) -> Result<bool, Corrupted> {
        if self.free() >= size {
            return Ok(true);
        }
        // ORDERING: Acquire — pairs with the consumer's Release store (or
        // CAS) of the head word: its reads of the space happen before we
        // reuse it.
        let head = self.ring.shared().consumer.head.load(Ordering::Acquire);
        // The head moves forward only, and never past what we published.
        let published = position(self.published);
        let moved = distance(self.cached_head, position(head));
        if moved > distance(self.cached_head, published) {
            return Err(Corrupted::new("ring head", head));
        }
        self.ring.check_words(head, self.published)?;
        self.cached_head = position(head);
        Ok(self.free() >= size)
    }

    /// Makes room for a record with a `len`-byte payload and returns the word
    /// index of its header. May write (but not publish) a padding record.
    #[inline]
    pub(crate) fn claim(&mut self, len: usize) -> Result<usize, PushError> {
        if len as u64 > self.ring.max_record {
            return Err(PushError::TooLarge {
                len,
                max: self.ring.max_record as usize,
            });
        }
        let size = record::record_words(len as u64);
        loop {
            let index = self.ring.index(self.tail);
            let to_end = self.ring.words() - index as u64;
            if size <= to_end {
                if !self.has_room(size)? {
                    return Err(PushError::Full);
                }
                return Ok(index);
            }
            // Does not fit before the end: pad to the end and wrap.
            if !self.has_room(to_end)? {
                return Err(PushError::Full);
            }
            // `to_end <= words <= 2^25`: the byte length fits the field.
            let pad = record::encode_pad(((to_end - 1) * 8) as u32, self.tail);
            // ORDERING: Release — pairs with the Acquire header load in
            // `record_at` (see there); the tail's Release publishes it too.
            self.ring.data()[index].store(pad, Ordering::Release);
            self.tail = advance(self.tail, to_end);
        }
    }

    /// Copies `payload` into the record claimed at `word`.
    #[inline]
    pub(crate) fn write_payload(&self, word: usize, payload: &[u8]) {
        if payload.len() <= small::SMALL {
            let first = word + 1;
            small::store(
                &self.ring.data()[first..first + payload.len().div_ceil(8)],
                payload,
            );
        } else {
            bytes::store(self.ring.data(), word + 1, payload, !self.racy);
        }
    }

    /// Completes the record claimed at `word` with a `len`-byte payload,
    /// tagged with `mark` (see [`crate::record`]).
    #[inline(always)]
    pub(crate) fn commit(&mut self, word: usize, len: usize, mark: Mark) {
        debug_assert_eq!(self.ring.index(self.tail), word);
        let header = record::encode_data(len as u32, mark, self.tail);
        // ORDERING: Release — pairs with the Acquire header load in
        // `record_at` (see there); the tail's Release publishes it too.
        self.ring.data()[word].store(header, Ordering::Release);
        self.tail = advance(self.tail, record::record_words(len as u64));
        self.pushed = self.pushed.wrapping_add(1);
    }

    /// [`Writer::write_marked`] of a record that ends its message, tagged
    /// CONT when `continues` (what the MPMC producers write, with `false`).
    #[inline(always)]
    pub(crate) fn write(&mut self, msg: &[u8], continues: bool) -> Result<(), PushError> {
        let mark = Mark {
            continues,
            more: false,
        };
        self.write_marked(msg, mark)
    }

    /// Copies `msg` into a new record (not yet published), tagged with
    /// `mark` (a constant mark costs nothing: this is inlined).
    ///
    /// The common case (a small record that fits before the end of the data
    /// area in the room already known) is decided from process-local state
    /// alone; anything else takes [`Writer::claim`]'s general path.
    #[inline(always)]
    pub(crate) fn write_marked(&mut self, msg: &[u8], mark: Mark) -> Result<(), PushError> {
        match write_small(&self.ring, self.tail, self.free(), msg, mark) {
            Some(size) => {
                self.tail = advance(self.tail, size);
                self.pushed = self.pushed.wrapping_add(1);
                Ok(())
            }
            None => self.write_general(msg, mark),
        }
    }

    /// [`Writer::write_marked`] for a record that is large, needs a fresh
    /// look at the head, or meets the end of the data area.
    #[inline(never)]
    fn write_general(&mut self, msg: &[u8], mark: Mark) -> Result<(), PushError> {
        let word = self.claim(msg.len())?;
        failpoint!("ring.claimed");
        self.write_payload(word, msg);
        failpoint!("ring.payload-written");
        self.commit(word, msg.len(), mark);
        failpoint!("ring.header-written");
        Ok(())
    }

    /// [`Writer::write_many_marked`] of records that each end their message,
    /// each tagged CONT when its flag says so (what the MPMC producers
    /// write, with `false`).
    #[inline]
    pub(crate) fn write_many<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = (&'m [u8], bool)>,
    ) -> (usize, Option<PushError>) {
        self.write_many_marked(msgs.into_iter().map(|(msg, continues)| {
            let mark = Mark {
                continues,
                more: false,
            };
            (msg, mark)
        }))
    }

    /// Writes as many of `msgs` (each with its [`Mark`]) as fit, in order
    /// (not yet published). Returns how many, and why the next one did not
    /// go in, if one did not.
    ///
    /// The same steps as [`Writer::write_marked`] one after the other, with the
    /// position and the free room in locals between general-path records
    /// (the stores into the data area could alias `self` as far as the
    /// compiler knows, so fields would be re-read and re-written around
    /// every record).
    #[inline]
    pub(crate) fn write_many_marked<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = (&'m [u8], Mark)>,
    ) -> (usize, Option<PushError>) {
        let mut n = 0;
        // Records written since `self.tail` and `self.pushed` were synced.
        let mut unsynced = 0u64;
        let mut tail = self.tail;
        let mut free = self.free();
        for (msg, mark) in msgs {
            if let Some(size) = write_small(&self.ring, tail, free, msg, mark) {
                tail = advance(tail, size);
                free -= size;
                unsynced += 1;
                n += 1;
                continue;
            }
            self.tail = tail;
            self.pushed = self.pushed.wrapping_add(unsynced);
            unsynced = 0;
            if let Err(e) = self.write_general(msg, mark) {
                return (n, Some(e));
            }
            n += 1;
            tail = self.tail;
            free = self.free();
        }
        self.tail = tail;
        self.pushed = self.pushed.wrapping_add(unsynced);
        (n, None)
    }

    /// Makes everything written so far visible: one store of the tail word,
    /// position and count together. Returns whether there was anything new
    /// (and so whether a sleeper may need waking).
    #[inline(always)]
    pub(crate) fn publish(&mut self) -> bool {
        if self.tail == position(self.published) {
            return false;
        }
        let word = pack(self.pushed, self.tail);
        // ORDERING: Release — publishes the records (payloads and headers
        // stored above) and their count; pairs with the consumers' Acquire
        // loads of the tail word.
        self.ring
            .shared()
            .producer
            .tail
            .store(word, Ordering::Release);
        failpoint!("ring.published");
        self.published = word;
        true
    }

    /// Bytes free as far as this writer knows (re-reads the head).
    pub(crate) fn free_now(&mut self) -> Result<u64, Corrupted> {
        self.has_room(u64::MAX)?;
        Ok(self.free() * 8)
    }

    /// Bytes that records with payloads of `lens` bytes take when written
    /// one after another from the local tail: their records and the
    /// padding [`claim`](Writer::claim) writes before each one that does
    /// not fit before the end of the data area. They all go in exactly when
    /// this many bytes are free: each claim needs room for its padding and
    /// its record, out of what the claims before it left. `u64::MAX` when a
    /// payload is longer than the data area (never claimed).
    pub(crate) fn extent(&self, lens: impl IntoIterator<Item = usize>) -> u64 {
        let words = self.ring.words();
        let mut index = self.ring.index(self.tail) as u64;
        let mut total = 0u64;
        for len in lens {
            // `len / 8 + 2` words at most: no overflow.
            let size = record::record_words(len as u64);
            if size > words {
                return u64::MAX;
            }
            let to_end = words - index;
            if size > to_end {
                total = total.saturating_add(to_end);
                index = 0;
            }
            total = total.saturating_add(size);
            // `index + size <= words`: `words` itself wraps to 0.
            index = (index + size) & self.ring.mask;
        }
        total.saturating_mul(8)
    }
}

/// Writes `msg` as a record at position `tail` when it is small, fits before
/// the end of the data area, and fits in the `free` words known to be free;
/// returns the record's size in words. `None` leaves everything untouched
/// for the general path to decide.
#[inline(always)]
fn write_small(ring: &RingRef, tail: u64, free: u64, msg: &[u8], mark: Mark) -> Option<u64> {
    let len = msg.len();
    if len > small::SMALL || len as u64 > ring.max_record {
        return None;
    }
    let index = ring.index(tail);
    // `len <= SMALL`: no overflow.
    let size = 1 + len.div_ceil(8) as u64;
    if size > ring.words() - index as u64 || size > free {
        return None;
    }
    let data = ring.data();
    failpoint!("ring.claimed");
    small::store(&data[index + 1..index + 1 + len.div_ceil(8)], msg);
    failpoint!("ring.payload-written");
    let header = record::encode_data(len as u32, mark, tail);
    // ORDERING: Release — pairs with the Acquire header load in `record_at`
    // (see there); the tail's Release publishes it too.
    data[index].store(header, Ordering::Release);
    failpoint!("ring.header-written");
    Some(size)
}
