//! An exact model of one byte ring: where the producer writes, where the
//! consumer reads, which padding records exist, and what the counters say.
//!
//! It follows the algorithm of [`shmring_core::ring`] step for step (claim, pad at
//! the wrap, publish, skip padding, release), on plain integers, so the
//! fuzzers can predict every result of the real ring, `Full` included.

use std::collections::VecDeque;

use shmring_core::error::PushError;
use shmring_core::record::{self, Mark};
use shmring_core::ring::{RingConfig, COUNT_BITS, POSITION_BITS, POSITION_MASK};

/// One record: position, size in words, payload with its framing marks
/// (`None`: padding).
type Record = (u64, u64, Option<(Vec<u8>, Mark)>);

/// Counts are modulo 2^COUNT_BITS, as in a position word.
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

// The position word arithmetic, written again from the packing that
// `shmring_core::ring` documents (rather than borrowed from it), so that a
// mistake there shows up as a disagreement with the model.

/// The position word of `count` records at word position `position`.
pub fn pack(count: u64, position: u64) -> u64 {
    (count << POSITION_BITS) | (position & POSITION_MASK)
}

/// Words from position `from` forward to position `to` (modular).
fn distance(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & POSITION_MASK
}

/// Position `position` moved on by `words` (modular).
fn advance(position: u64, words: u64) -> u64 {
    position.wrapping_add(words) & POSITION_MASK
}

/// The model. Field names follow `shmring_core::ring::Writer` and
/// `shmring_core::ring::Reader`; positions are in words modulo 2^POSITION_BITS,
/// counts modulo 2^COUNT_BITS, as in the ring's position words.
#[derive(Debug)]
pub struct RingModel {
    /// The data area in words.
    pub words: u64,
    /// The largest payload a record may carry.
    pub max_record: u64,
    /// The producer's local write position.
    pub tail: u64,
    /// The tail in shared memory.
    pub published: u64,
    /// The consumer's local read position.
    pub head: u64,
    /// The head in shared memory.
    pub released: u64,
    written: u64,
    published_count: u64,
    taken: u64,
    released_count: u64,
    /// Every record from `head` on (published or not), in position order.
    records: VecDeque<Record>,
}

impl RingModel {
    /// An empty ring whose head and tail words both say `count` records
    /// and position `position`.
    pub fn new(config: &RingConfig, position: u64, count: u64) -> Self {
        let position = position & ((1 << POSITION_BITS) - 1);
        let count = count & COUNT_MASK;
        RingModel {
            words: config.capacity / 8,
            max_record: config.max_record,
            tail: position,
            published: position,
            head: position,
            released: position,
            written: count,
            published_count: count,
            taken: count,
            released_count: count,
            records: VecDeque::new(),
        }
    }

    fn free(&self) -> u64 {
        self.words - distance(self.released, self.tail)
    }

    /// `Writer::claim`: the position of the record, after any padding.
    pub fn claim(&mut self, len: usize) -> Result<u64, PushError> {
        if len as u64 > self.max_record {
            let max = self.max_record as usize;
            return Err(PushError::TooLarge { len, max });
        }
        let size = record::record_size(len as u64) / 8;
        loop {
            let to_end = self.words - (self.tail & (self.words - 1));
            if size <= to_end {
                return if self.free() >= size {
                    Ok(self.tail)
                } else {
                    Err(PushError::Full)
                };
            }
            if self.free() < to_end {
                return Err(PushError::Full);
            }
            self.records.push_back((self.tail, to_end, None));
            self.tail = advance(self.tail, to_end);
        }
    }

    /// `Writer::commit` of the record claimed at `position`.
    pub fn commit(&mut self, position: u64, payload: Vec<u8>, mark: Mark) {
        assert_eq!(position, self.tail, "model: commit where claimed");
        let size = record::record_size(payload.len() as u64) / 8;
        self.records
            .push_back((position, size, Some((payload, mark))));
        self.tail = advance(self.tail, size);
        self.written = (self.written + 1) & COUNT_MASK;
    }

    /// `Writer::write`: claim and commit.
    pub fn write(&mut self, payload: &[u8], mark: Mark) -> Result<(), PushError> {
        let at = self.claim(payload.len())?;
        self.commit(at, payload.to_vec(), mark);
        Ok(())
    }

    /// `Producer::space_needed`: the bytes that records of `lens` take from
    /// the local tail, laid out as `claim` lays them out (a record that
    /// does not fit before the end pads to it and starts again at 0),
    /// whatever room is free.
    pub fn space_needed(&self, lens: &[usize]) -> u64 {
        let mut index = self.tail & (self.words - 1);
        let mut used = 0;
        for &n in lens {
            let size = record::record_size(n as u64) / 8;
            if size > self.words {
                return u64::MAX;
            }
            if size > self.words - index {
                used += self.words - index;
                index = 0;
            }
            used += size;
            index = (index + size) % self.words;
        }
        used * 8
    }

    /// `Writer::publish`.
    pub fn publish(&mut self) {
        self.published = self.tail;
        self.published_count = self.written;
    }

    /// `Writer::attach`: a new producer starts at the published tail; what
    /// the old one wrote but never published is forgotten.
    pub fn reattach_producer(&mut self) {
        self.tail = self.published;
        self.written = self.published_count;
        // The records from the released head up to the published tail stay.
        let (from, keep) = (self.head, distance(self.head, self.published));
        self.records.retain(|r| distance(from, r.0) < keep);
    }

    /// `Reader::peek`: skips published padding; the length and the mark of
    /// the next published data record, if any.
    pub fn peek(&mut self) -> Option<(usize, Mark)> {
        loop {
            if self.head == self.published {
                return None;
            }
            let (at, size, payload) = self.records.front().expect("model: record at head");
            assert_eq!(*at, self.head, "model: records are contiguous");
            match payload {
                Some((p, mark)) => return Some((p.len(), *mark)),
                None => {
                    self.head = advance(self.head, *size);
                    self.records.pop_front();
                }
            }
        }
    }

    /// `Reader::advance` past the record `peek` found; returns its payload
    /// and mark.
    pub fn advance(&mut self) -> (Vec<u8>, Mark) {
        let (_, size, payload) = self.records.pop_front().expect("model: a record to take");
        self.head = advance(self.head, size);
        self.taken = (self.taken + 1) & COUNT_MASK;
        payload.expect("model: peek returned data")
    }

    /// `Reader::release`.
    pub fn release(&mut self) {
        self.released = self.head;
        self.released_count = self.taken;
    }

    /// One MPMC take (`take_from`): padding and the record are each
    /// released at once, as the consumers' CAS does. `None`: empty.
    pub fn take_racy(&mut self) -> Option<Vec<u8>> {
        let found = self.peek();
        self.release();
        found?;
        let payload = self.advance();
        self.release();
        Some(payload.0)
    }

    /// [`take_racy`](Self::take_racy) of a record that starts before
    /// position `limit` only (the tail a ring's hand-back left): padding
    /// before it is taken, a record from it on is left. `None`: none there.
    pub fn take_racy_below(&mut self, limit: u64) -> Option<Vec<u8>> {
        loop {
            let before = distance(self.head, limit);
            if self.head == self.published || before == 0 || before > self.words {
                self.release();
                return None;
            }
            let (at, size, payload) = self.records.front().expect("model: record at head");
            assert_eq!(*at, self.head, "model: records are contiguous");
            if payload.is_some() {
                let payload = self.advance();
                self.release();
                return Some(payload.0);
            }
            self.head = advance(self.head, *size);
            self.records.pop_front();
        }
    }

    /// What `ring_count` reports: exact.
    pub fn len(&self) -> u64 {
        self.published_count.wrapping_sub(self.released_count) & COUNT_MASK
    }

    /// What `ring_is_empty` reports: nothing published past the released
    /// head but (at most) one padding record that ends at the tail.
    pub fn is_empty(&self) -> bool {
        if self.released == self.published {
            return true;
        }
        assert_eq!(self.head, self.released, "model: snapshot between ops");
        match self.records.front() {
            Some((at, size, None)) => advance(*at, *size) == self.published,
            _ => false,
        }
    }

    /// What `Ring::free_bytes` reports.
    pub fn free_published(&self) -> u64 {
        (self.words - distance(self.released, self.published)) * 8
    }

    /// What the producer's `free_bytes` reports.
    pub fn free_for_producer(&self) -> u64 {
        self.free() * 8
    }
}
