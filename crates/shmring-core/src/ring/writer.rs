//! The producer's half of the byte-ring protocol.

use super::{small, RingRef};
use crate::bytes;
use crate::error::{Corrupted, PushError};
use crate::record;
use crate::sync::Ordering;

/// The producer's half of the protocol.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) ring: RingRef,
    /// Local write position; `>= published`.
    tail: u64,
    /// The tail as last stored to shared memory.
    published: u64,
    /// The head as last loaded; the true head is `>=` it.
    cached_head: u64,
    /// Records written (published or not), for `len`.
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
        // of the tail, so its last records are fully visible before we follow.
        let tail = shared.producer.tail.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the consumers' Release of the head.
        let head = shared.consumer.head.load(Ordering::Acquire);
        ring.check_span(head, tail)?;
        // ORDERING: Relaxed — a statistic; only the producer writes it.
        let pushed = shared.producer.pushed.load(Ordering::Relaxed);
        Ok(Writer {
            ring,
            tail,
            published: tail,
            cached_head: head,
            pushed,
            racy,
        })
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.ring.capacity - (self.tail - self.cached_head)
    }

    /// Whether the last known state leaves room for `size` bytes, re-reading
    /// the head if the cached one says no.
    #[inline]
    fn has_room(&mut self, size: u64) -> Result<bool, Corrupted> {
        if self.free() >= size {
            return Ok(true);
        }
        // ORDERING: Acquire — pairs with the consumer's Release store (or
        // CAS) of the head: its reads of the space happen before we reuse it.
        let head = self.ring.shared().consumer.head.load(Ordering::Acquire);
        if head < self.cached_head || head > self.published {
            return Err(Corrupted::new("ring head", head));
        }
        self.cached_head = head;
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
        let size = record::record_size(len as u64);
        loop {
            let index = self.tail & self.ring.mask;
            let to_end = self.ring.capacity - index;
            if size <= to_end {
                if !self.has_room(size)? {
                    return Err(PushError::Full);
                }
                return Ok((index / 8) as usize);
            }
            // Does not fit before the end: pad to the end and wrap.
            if !self.has_room(to_end)? {
                return Err(PushError::Full);
            }
            let pad = record::encode_pad((to_end - record::HEADER) as u32, self.tail);
            // ORDERING: Release — pairs with the Acquire header load in
            // `record_at` (see there); the tail's Release publishes it too.
            self.ring.data()[(index / 8) as usize].store(pad, Ordering::Release);
            self.tail += to_end;
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
    /// tagged CONT when `continues` (see [`crate::record`]).
    #[inline(always)]
    pub(crate) fn commit(&mut self, word: usize, len: usize, continues: bool) {
        debug_assert_eq!((self.tail & self.ring.mask) / 8, word as u64);
        let header = record::encode_data(len as u32, continues, self.tail);
        // ORDERING: Release — pairs with the Acquire header load in
        // `record_at` (see there); the tail's Release publishes it too.
        self.ring.data()[word].store(header, Ordering::Release);
        self.tail += record::record_size(len as u64);
        self.pushed += 1;
    }

    /// Copies `msg` into a new record (not yet published), tagged CONT when
    /// `continues` (a constant `false` costs nothing: this is inlined).
    ///
    /// The common case (a small record that fits before the end of the data
    /// area in the room already known) is decided from process-local state
    /// alone; anything else takes [`Writer::claim`]'s general path.
    #[inline(always)]
    pub(crate) fn write(&mut self, msg: &[u8], continues: bool) -> Result<(), PushError> {
        let room_end = self.cached_head + self.ring.capacity;
        match write_small(&self.ring, self.tail, room_end, msg, continues) {
            Some(size) => {
                self.tail += size;
                self.pushed += 1;
                Ok(())
            }
            None => self.write_general(msg, continues),
        }
    }

    /// [`Writer::write`] for a record that is large, needs a fresh look at
    /// the head, or meets the end of the data area.
    #[inline(never)]
    fn write_general(&mut self, msg: &[u8], continues: bool) -> Result<(), PushError> {
        let word = self.claim(msg.len())?;
        failpoint!("ring.claimed");
        self.write_payload(word, msg);
        failpoint!("ring.payload-written");
        self.commit(word, msg.len(), continues);
        failpoint!("ring.header-written");
        Ok(())
    }

    /// Writes as many of `msgs` (each with its CONT mark) as fit, in order
    /// (not yet published). Returns how many, and why the next one did not
    /// go in, if one did not.
    ///
    /// The same steps as [`Writer::write`] one after the other, with the
    /// position in a local between general-path records (the stores into
    /// the data area could alias `self` as far as the compiler knows, so
    /// fields would be re-read and re-written around every record).
    #[inline]
    pub(crate) fn write_many<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = (&'m [u8], bool)>,
    ) -> (usize, Option<PushError>) {
        let mut n = 0;
        // Records written since `self.tail` and `self.pushed` were synced.
        let mut unsynced = 0;
        let mut tail = self.tail;
        let mut room_end = self.cached_head + self.ring.capacity;
        for (msg, continues) in msgs {
            if let Some(size) = write_small(&self.ring, tail, room_end, msg, continues) {
                tail += size;
                unsynced += 1;
                n += 1;
                continue;
            }
            self.tail = tail;
            self.pushed += unsynced;
            unsynced = 0;
            if let Err(e) = self.write_general(msg, continues) {
                return (n, Some(e));
            }
            n += 1;
            tail = self.tail;
            room_end = self.cached_head + self.ring.capacity;
        }
        self.tail = tail;
        self.pushed += unsynced;
        (n, None)
    }

    /// Makes everything written so far visible. Returns whether there was
    /// anything new (and so whether a sleeper may need waking).
    #[inline(always)]
    pub(crate) fn publish(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        let line = &self.ring.shared().producer;
        // ORDERING: Release — publishes the records (payloads and headers
        // stored above); pairs with the consumers' Acquire load of the tail.
        line.tail.store(self.tail, Ordering::Release);
        failpoint!("ring.published");
        // ORDERING: Relaxed — a statistic for `len`, stored after the tail so
        // it never counts a record that is not there yet.
        line.pushed.store(self.pushed, Ordering::Relaxed);
        self.published = self.tail;
        true
    }

    /// Bytes free as far as this writer knows (re-reads the head).
    pub(crate) fn free_now(&mut self) -> Result<u64, Corrupted> {
        self.has_room(u64::MAX)?;
        Ok(self.free())
    }
}

/// Writes `msg` as a record at position `tail` when it is small, fits before
/// the end of the data area, and fits below `room_end` (the cached head plus
/// the capacity); returns the record's size. `None` leaves everything
/// untouched for the general path to decide.
#[inline(always)]
fn write_small(
    ring: &RingRef,
    tail: u64,
    room_end: u64,
    msg: &[u8],
    continues: bool,
) -> Option<u64> {
    let len = msg.len();
    if len > small::SMALL || len as u64 > ring.max_record {
        return None;
    }
    let index = tail & ring.mask;
    // `len <= SMALL`: no overflow.
    let size = record::HEADER + len.next_multiple_of(8) as u64;
    if size > ring.capacity - index || size > room_end - tail {
        return None;
    }
    let word = (index / 8) as usize;
    let data = ring.data();
    failpoint!("ring.claimed");
    small::store(&data[word + 1..word + 1 + len.div_ceil(8)], msg);
    failpoint!("ring.payload-written");
    // ORDERING: Release — pairs with the Acquire header load in `record_at`
    // (see there); the tail's Release publishes it too.
    let header = record::encode_data(len as u32, continues, tail);
    data[word].store(header, Ordering::Release);
    failpoint!("ring.header-written");
    Some(size)
}
