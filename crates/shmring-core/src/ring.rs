//! One byte ring in memory: its shared block, its parameters, and the two
//! halves of its protocol (`Writer` and `Reader`) that the SPSC handles
//! use directly and the MPMC queue reuses for its per-producer rings.
//!
//! # Position words
//!
//! Each side of a ring publishes one 64-bit *position word*: the producer
//! its tail word, the consumer (or, in an MPMC queue, whichever consumer
//! wins the CAS) its head word. A word carries a position and a record
//! count together:
//!
//! ```text
//! bits  0..38  position, in 8-byte words, modulo 2^38
//! bits 38..64  count: data records before that position, modulo 2^26
//! ```
//!
//! The tail word says "records up to here are complete, and this many data
//! records have been published"; the head word says "the producer may reuse
//! everything before here, and this many data records have been taken".
//! Because the count moves in the same atomic store (or CAS) as the
//! position, no death at any instruction can leave one moved without the
//! other: [`len`](crate::spsc::Ring::len) is exact for a quiescent ring
//! whatever happened to its peers, and the MPMC take is a single CAS.
//!
//! All arithmetic on positions and counts is modular
//! ([`POSITION_BITS`], [`COUNT_BITS`]); nothing can overflow, whatever a
//! peer wrote. `position & (words - 1)` is the word index in the data area
//! (the capacity in words divides 2^38, so this holds across the wrap). For
//! correct peers, `used = (tail - head) mod 2^38` is at most the capacity in
//! words and `(pushed - popped) mod 2^26` is at most `used` (every record
//! takes at least one word); both sides check this on every load of the
//! other side's word and report [`Corrupted`] otherwise. That second bound
//! needs a count modulo 2^26 to exceed the most records a ring can hold
//! (256 MiB of 8-byte records); the record stamps need more (below), which
//! is why [`MAX_CAPACITY`] is 64 MiB.
//!
//! ## Wrap-around and ABA
//!
//! Positions wrap every 2^38 words (2 TiB of traffic through one ring),
//! counts every 2^26 records; both are harmless by themselves. What modular
//! words cannot tell apart is a value seen twice:
//!
//! * An MPMC consumer stalled (SIGSTOP, a descheduled thread) between
//!   loading a head word and its CAS is fooled only if the very same
//!   64-bit head word is back: 2^38 words **and** a multiple of 2^26
//!   records went through meanwhile. (With records of one size the second
//!   follows from the first: the counts then add no protection.)
//! * An MPMC consumer holding a cached tail word across a stall (a consumer
//!   state left idle while others take) is fooled earlier: it trusts that
//!   word while the head lies less than a capacity behind it, modulo 2^38,
//!   which is true again after 2^38 words less up to a capacity, whatever
//!   the counts are. It then reads the words between the ring's real tail
//!   and the cached one as published records. The stale header found
//!   there was written one lap (the capacity, at most 2^23 words) before
//!   the position it is read at, so its stamp (24 bits of the position) is
//!   wrong, and the consumer loads the tail afresh and carries on: that is
//!   why rings stop at 64 MiB (a ring of 2^24 words or more would stamp
//!   every lap alike). What remains is stale *payload* bytes that happen to
//!   read as a header with the right tag, stamp and a plausible length at
//!   exactly that place (about one chance in 2^32 per such stall, for data
//!   not built to look like headers): then the consumer would take a stale
//!   record and move the head past the real tail (a duplicate, and
//!   `Corrupted` for the producer from then on).
//!
//! # Records and wrapping
//!
//! See [`crate::record`]. A record never wraps: when it does not fit before
//! the end of the data area the producer writes a padding record up to the
//! end and starts again at index 0. The padding is published on its own if
//! the record itself has to wait for room, so a record as large as the whole
//! ring still fits once the consumer has caught up.
//!
//! # The fast paths
//!
//! Each side keeps a process-local copy of the other side's position (the
//! `Writer`'s cached head, the `Reader`'s cached tail) and reloads it
//! only when the copy says full (or empty). A push of a small record that
//! fits before the end of the data area in the room already known is
//! decided from local state alone and copies its payload a word at a time
//! (`small`); anything else (a large record, a reload of the head, padding
//! at the wrap) takes the general path. Every value read from shared memory
//! is still checked before use, on both paths.

use core::ptr::NonNull;

use crate::error::{ConfigError, Corrupted};
use crate::layout::Padded;
use crate::record::{self, Header, Mark};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::WaitWord;

mod reader;
pub(crate) mod small;
mod writer;

pub(crate) use reader::Reader;
pub(crate) use writer::Writer;

/// Smallest data area, in bytes.
pub const MIN_CAPACITY: u64 = 64;
/// Largest data area, in bytes (64 MiB): its 2^23 words stay below the
/// 2^24 positions a record's stamp tells apart, so a header left from the
/// previous lap never carries the stamp its place expects now, and below
/// the 2^26 records a position word's count tells apart (see the module
/// docs).
pub const MAX_CAPACITY: u64 = 1 << 26;

/// Bits of a position word holding the position (in words); the rest, the
/// top [`COUNT_BITS`], hold the record count. See the module docs.
pub const POSITION_BITS: u32 = 38;
/// Bits of a position word holding the record count.
pub const COUNT_BITS: u32 = 64 - POSITION_BITS;
/// The position part of a position word.
pub const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;
/// A count modulo 2^[`COUNT_BITS`], once shifted down.
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// One record, in a position word's count.
const COUNT_ONE: u64 = 1 << POSITION_BITS;

const _: () = assert!(MAX_CAPACITY / 8 < 1 << COUNT_BITS);
const _: () = assert!(MAX_CAPACITY / 8 < 1 << 24); // the stamp's period (`record`)
const _: () = assert!(MAX_CAPACITY / 8 <= 1 << POSITION_BITS);

/// The position word of `count` records and word position `position`
/// (both taken modulo their widths).
#[inline(always)]
pub(crate) const fn pack(count: u64, position: u64) -> u64 {
    (count << POSITION_BITS) | (position & POSITION_MASK)
}

/// The position part of a position word.
#[inline(always)]
pub(crate) const fn position(word: u64) -> u64 {
    word & POSITION_MASK
}

/// The count part of a position word.
#[inline(always)]
pub(crate) const fn count(word: u64) -> u64 {
    word >> POSITION_BITS
}

/// Words from position `from` forward to position `to` (modular).
#[inline(always)]
pub(crate) const fn distance(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & POSITION_MASK
}

/// Records from the count of word `from` forward to that of word `to`.
#[inline(always)]
const fn count_distance(from: u64, to: u64) -> u64 {
    count(to).wrapping_sub(count(from)) & COUNT_MASK
}

/// Position `position` moved on by `words` (modular).
#[inline(always)]
pub(crate) const fn advance(position: u64, words: u64) -> u64 {
    position.wrapping_add(words) & POSITION_MASK
}

/// Head word `head` moved past a record of `size` words: one more record
/// taken when it holds data (`counted`), none for padding.
#[inline(always)]
pub(crate) const fn head_past(head: u64, size: u64, counted: bool) -> u64 {
    let count = (head & !POSITION_MASK).wrapping_add(if counted { COUNT_ONE } else { 0 });
    count | advance(position(head), size)
}
/// Largest payload any ring accepts: the length field is 32 bits.
pub const MAX_RECORD_LIMIT: u64 = u32::MAX as u64 - 16;

/// Flag: the producer side closed; consumers drain what is left, then see
/// `Closed`.
pub const PRODUCER_CLOSED: u32 = 1;
/// Flag: the consumer side closed; producers see `Closed` at once.
pub const CONSUMER_CLOSED: u32 = 2;

/// The shape of one byte ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes in the data area: a power of two, [`MIN_CAPACITY`] to
    /// [`MAX_CAPACITY`]. Each record takes its payload rounded up to 8 plus an
    /// 8-byte header.
    pub capacity: u64,
    /// Largest payload in bytes (0 allowed). Its record must fit in
    /// `capacity`.
    pub max_record: u64,
}

impl RingConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Capacity`] or [`ConfigError::MaxRecord`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.capacity.is_power_of_two()
            || self.capacity < MIN_CAPACITY
            || self.capacity > MAX_CAPACITY
        {
            return Err(ConfigError::Capacity {
                capacity: self.capacity,
                min: MIN_CAPACITY,
                max: MAX_CAPACITY,
            });
        }
        let limit = (self.capacity - record::HEADER).min(MAX_RECORD_LIMIT);
        if self.max_record > limit {
            return Err(ConfigError::MaxRecord {
                max_record: self.max_record,
                limit,
            });
        }
        Ok(())
    }
}

/// Written once by the creator, read-mostly afterwards.
#[repr(C)]
#[derive(Debug)]
pub struct ConfigBlock {
    /// Data area length in bytes. Constant; read once at attach and checked.
    capacity: AtomicU64,
    /// Largest payload. Constant; read once at attach and checked.
    max_record: AtomicU64,
    /// Token of the attachment that holds the producer role; 0 = none.
    pub(crate) producer_owner: AtomicU64,
    /// Token of the attachment that holds the consumer role; 0 = none.
    pub(crate) consumer_owner: AtomicU64,
    /// `PRODUCER_CLOSED | CONSUMER_CLOSED`; bits only ever get set.
    pub(crate) flags: AtomicU32,
    /// MPMC rings: the queue's hand-back count this ring's last producer
    /// took when it handed the ring back (meaningful while
    /// `producer_owner` is 0, and for the records below
    /// `handed_back_tail` after a new claim; see `mpmc::consumer`, "Order
    /// across rings").
    /// Unused (0) in SPSC rings.
    pub(crate) handed_back: AtomicU32,
    /// MPMC rings: the tail word when that producer handed the ring back.
    /// Records below it are the handed-back producer's, and keep their
    /// drain-first place after a new producer claims the ring (see
    /// `mpmc::consumer`, "Order across rings"). In the config block's
    /// padding (a zeroed word in a fresh segment). Unused (0) in SPSC rings.
    pub(crate) handed_back_tail: AtomicU64,
}

/// Written by the producer only.
#[repr(C)]
#[derive(Debug)]
pub struct ProducerLine {
    /// The tail word (see the module docs): everything before its position
    /// is complete records, and its count is the data records published.
    pub(crate) tail: AtomicU64,
}

/// Written by the consumer (CASed by the consumers of an MPMC queue).
#[repr(C)]
#[derive(Debug)]
pub struct ConsumerLine {
    /// The head word (see the module docs): the producer may reuse
    /// everything before its position, and its count is the data records
    /// taken.
    pub(crate) head: AtomicU64,
}

/// The shared control block of one byte ring. Lives in shared memory, in
/// front of (not necessarily adjacent to) its data area.
#[repr(C)]
#[derive(Debug)]
pub struct RingShared {
    pub(crate) config: Padded<ConfigBlock>,
    pub(crate) producer: Padded<ProducerLine>,
    pub(crate) consumer: Padded<ConsumerLine>,
    /// Consumers sleep here when the ring is empty.
    pub(crate) not_empty: Padded<WaitWord>,
    /// The producer sleeps here when the ring is full.
    pub(crate) not_full: Padded<WaitWord>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<ConfigBlock>() == 48);
    assert!(size_of::<RingShared>() == 640);
    assert!(offset_of!(RingShared, producer) == 128);
    assert!(offset_of!(RingShared, consumer) == 256);
    assert!(offset_of!(RingShared, not_empty) == 384);
    assert!(offset_of!(RingShared, not_full) == 512);
    assert!(offset_of!(ConfigBlock, flags) == 32);
};

impl RingShared {
    /// A fresh control block for `config` (heap rings, tests, loom models).
    pub fn new(config: &RingConfig) -> Self {
        RingShared {
            config: Padded(ConfigBlock {
                capacity: AtomicU64::new(config.capacity),
                max_record: AtomicU64::new(config.max_record),
                producer_owner: AtomicU64::new(0),
                consumer_owner: AtomicU64::new(0),
                flags: AtomicU32::new(0),
                handed_back: AtomicU32::new(0),
                handed_back_tail: AtomicU64::new(0),
            }),
            producer: Padded(ProducerLine {
                tail: AtomicU64::new(0),
            }),
            consumer: Padded(ConsumerLine {
                head: AtomicU64::new(0),
            }),
            not_empty: Padded(WaitWord::default()),
            not_full: Padded(WaitWord::default()),
        }
    }

    /// Writes the parameters into a zeroed block in shared memory. The
    /// segment's Release store of its version publishes them.
    #[cfg(not(loom))]
    pub(crate) fn init(&self, config: &RingConfig) {
        // ORDERING: Relaxed — published by the segment's Release store of its
        // layout version; pairs with the opener's Acquire load of it.
        self.config
            .capacity
            .store(config.capacity, Ordering::Relaxed);
        self.config
            .max_record
            .store(config.max_record, Ordering::Relaxed);
    }

    /// Reads and checks the parameters.
    pub(crate) fn read_config(&self) -> Result<RingConfig, Corrupted> {
        // ORDERING: Relaxed — constants, published before the segment was
        // (see `init`).
        let config = RingConfig {
            capacity: self.config.capacity.load(Ordering::Relaxed),
            max_record: self.config.max_record.load(Ordering::Relaxed),
        };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(ConfigError::Capacity { capacity, .. }) => {
                Err(Corrupted::new("ring capacity", capacity))
            }
            Err(_) => Err(Corrupted::new("ring max_record", config.max_record)),
        }
    }

    /// The closed flags.
    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        // ORDERING: Acquire — pairs with the Release `fetch_or` in `close`, so
        // whatever was published before the close is visible after.
        self.config.flags.load(Ordering::Acquire)
    }

    /// Sets closed flags.
    pub(crate) fn set_flags(&self, bits: u32) {
        // ORDERING: Release — pairs with the Acquire load in `flags`.
        self.config.flags.fetch_or(bits, Ordering::Release);
    }
}

/// Raw access to one ring: its control block, its data words and its checked
/// parameters. Copyable; whoever holds one keeps the memory alive.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingRef {
    shared: NonNull<RingShared>,
    data: NonNull<AtomicU64>,
    /// Checked copies of the constants (never re-read from shared memory).
    /// The data area in bytes.
    pub(crate) capacity: u64,
    /// The data area in words less one (a power of two, at most 2^25,
    /// less one): a position's word index is `position & mask`.
    pub(crate) mask: u64,
    pub(crate) max_record: u64,
}

// SAFETY: a RingRef only hands out shared references to atomics; the memory
// behind it is shared between processes anyway.
unsafe impl Send for RingRef {}
// SAFETY: as above.
unsafe impl Sync for RingRef {}

impl RingRef {
    /// # Safety
    ///
    /// `shared` points to a `RingShared` and `data` to `data_words`
    /// `AtomicU64`s, both valid for reads and writes and accessed by others
    /// only through atomics or this protocol, for as long as this `RingRef`
    /// or any copy of it is used.
    pub(crate) unsafe fn new(
        shared: NonNull<RingShared>,
        data: NonNull<AtomicU64>,
        data_words: usize,
    ) -> Result<Self, Corrupted> {
        // SAFETY: the caller guarantees `shared` is valid.
        let config = unsafe { shared.as_ref() }.read_config()?;
        if config.capacity != data_words as u64 * 8 {
            return Err(Corrupted::new(
                "ring capacity vs data area",
                config.capacity,
            ));
        }
        Ok(RingRef {
            shared,
            data,
            capacity: config.capacity,
            mask: config.capacity / 8 - 1,
            max_record: config.max_record,
        })
    }

    /// The data area in words.
    #[inline(always)]
    pub(crate) fn words(&self) -> u64 {
        self.mask + 1
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &RingShared {
        // SAFETY: valid for as long as self is used (constructor contract).
        unsafe { self.shared.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn data(&self) -> &[AtomicU64] {
        // SAFETY: `words` words, valid (constructor contract; the capacity
        // was checked against the data area there).
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), self.words() as usize) }
    }

    /// Raw pointer to byte `index` of the data area (zero-copy grants).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn byte_ptr(&self, index: usize) -> *mut u8 {
        debug_assert!((index as u64) <= self.capacity);
        // SAFETY: index <= capacity, inside (or one past) the data area.
        unsafe { self.data.as_ptr().cast::<u8>().add(index) }
    }

    /// The word index of `position`.
    #[inline(always)]
    pub(crate) fn index(&self, position: u64) -> usize {
        (position & self.mask) as usize
    }

    /// Checks a head word and a tail word read from shared memory (the head
    /// loaded first, or this side's own) and returns the words between
    /// their positions: at most the capacity, and at least as many as the
    /// records their counts say lie between them.
    #[inline]
    pub(crate) fn check_words(&self, head: u64, tail: u64) -> Result<u64, Corrupted> {
        let used = distance(position(head), position(tail));
        if used > self.words() {
            return Err(Corrupted::new("ring positions (tail - head)", used));
        }
        let records = count_distance(head, tail);
        if records > used {
            return Err(Corrupted::new("ring counts (pushed - popped)", records));
        }
        Ok(used)
    }

    /// Decodes and bounds-checks the record at `position`, in front of which
    /// `avail` words (at least one) are published: the tail this side
    /// loaded with Acquire is `avail` words on. Padding comes back with
    /// `pad` set; the caller skips it by `size`.
    #[inline(always)]
    pub(crate) fn record_at(&self, position: u64, avail: u64) -> Result<Found, Corrupted> {
        debug_assert!(avail > 0 && avail <= self.words());
        let index = position & self.mask;
        // ORDERING: Acquire — pairs with the producer's Release store of the
        // header. For a single consumer the Acquire of the tail already
        // covers it; for racy MPMC consumers it matters: a header from a
        // later lap carries
        // (through the producer's Acquire of the head before it reused the
        // space) the head advance that made the reuse possible, so the
        // consumer's re-read of the head sees it and calls it a race, not
        // corruption. loom found the Relaxed version wrong.
        let word = self.data()[index as usize].load(Ordering::Acquire);
        let (len, pad, mark) = match record::decode(word, position)? {
            Header::Data { len, mark } => (u64::from(len), false, mark),
            Header::Pad { len } => (u64::from(len), true, Mark::WHOLE),
        };
        // `len < 2^32`: no overflow.
        let size = record::record_words(len);
        if pad {
            if index + size != self.words() || len % 8 != 0 {
                return Err(Corrupted::new("padding length", len));
            }
        } else if len > self.max_record {
            return Err(Corrupted::new("record length", len));
        }
        if index + size > self.words() || size > avail {
            return Err(Corrupted::new("record extent", len));
        }
        Ok(Found {
            payload_word: index as usize + 1,
            len: len as usize,
            size,
            pad,
            mark,
        })
    }

    /// The data words of the payload of `found` (bounds-checked by
    /// `record_at`; indexing checks again, which never fails).
    #[inline(always)]
    pub(crate) fn payload_words(&self, found: &Found) -> &[AtomicU64] {
        let first = found.payload_word;
        &self.data()[first..first + found.len.div_ceil(8)]
    }
}

/// A record found by [`RingRef::record_at`], already bounds-checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    /// Word index of the first payload word.
    pub(crate) payload_word: usize,
    /// Payload bytes.
    pub(crate) len: usize,
    /// Words the record takes, header included.
    pub(crate) size: u64,
    pub(crate) pad: bool,
    /// A data record's framing marks (see [`crate::record`]).
    pub(crate) mark: Mark,
}

/// Records in a ring: the count of the tail word less that of the head word,
/// the head word loaded first.
///
/// For correct peers the answer lies between the records present when the
/// head word was loaded and those present when the tail word was (it counts
/// every record published by the second load and not taken by the first),
/// so it is exact for a quiescent ring whatever deaths happened: each count
/// moves in the same atomic operation as its position.
///
/// # Errors
///
/// [`Corrupted`] when the counts say more records than the positions have
/// room for.
pub(crate) fn ring_count(ring: &RingRef) -> Result<u64, Corrupted> {
    let shared = ring.shared();
    // ORDERING: Acquire — pairs with the consumer's Release store (or CAS)
    // of the head word. That consumer loaded a tail at least as far on
    // before moving the head (its own Acquire), so our later load of the
    // tail word cannot return one behind this head: the count difference
    // and the position distance below are never "negative".
    let head = shared.consumer.head.load(Ordering::Acquire);
    // ORDERING: Acquire — pairs with the producer's Release store of the
    // tail word (see above for why after the head).
    let tail = shared.producer.tail.load(Ordering::Acquire);
    let used = distance(position(head), position(tail));
    let records = count_distance(head, tail);
    if records > used {
        return Err(Corrupted::new("ring counts (pushed - popped)", records));
    }
    // Past the capacity only when the ring moved a lot between the loads:
    // a ring never holds more records than it has words.
    Ok(records.min(ring.words()))
}

/// Whether a ring holds no published record (a snapshot). A lone padding
/// record at the end does not count: there is nothing in it to pop.
pub(crate) fn ring_is_empty(ring: &RingRef) -> bool {
    let shared = ring.shared();
    // ORDERING: Acquire on both — a snapshot consistent with what a pop would
    // see next; the head first, as in `ring_count`.
    let head = shared.consumer.head.load(Ordering::Acquire);
    // ORDERING: as above.
    let tail = shared.producer.tail.load(Ordering::Acquire);
    if position(head) == position(tail) {
        return true;
    }
    // A record that does not decode (a race with a reuse, or corruption)
    // counts as "something there": a pop will find out which.
    matches!(
        ring.check_words(head, tail)
            .and_then(|avail| ring.record_at(position(head), avail).map(|f| (f, avail))),
        Ok((found, avail)) if found.pad && found.size == avail
    )
}

/// Free bytes in a ring (a snapshot): what the positions leave of the
/// capacity, 0 when they are inconsistent.
pub(crate) fn ring_free_bytes(ring: &RingRef) -> u64 {
    let shared = ring.shared();
    // ORDERING: Acquire on both — a snapshot; see `ring_count`.
    let head = shared.consumer.head.load(Ordering::Acquire);
    // ORDERING: as above.
    let tail = shared.producer.tail.load(Ordering::Acquire);
    let used = distance(position(head), position(tail));
    ring.words().saturating_sub(used) * 8
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn word_arithmetic_is_modular() {
        let top = POSITION_MASK;
        assert_eq!(pack(3, top + 5), (3 << POSITION_BITS) | 4);
        assert_eq!(pack(u64::MAX, 7), (COUNT_MASK << POSITION_BITS) | 7);
        assert_eq!(count(pack(COUNT_MASK, 0)), COUNT_MASK);
        assert_eq!(distance(top - 2, 5), 8, "across the position wrap");
        assert_eq!(distance(5, top - 2), top - 7);
        assert_eq!(advance(top, 1), 0);
        assert_eq!(count_distance(pack(COUNT_MASK, 0), pack(1, 0)), 2);
        let head = pack(COUNT_MASK, top);
        assert_eq!(head_past(head, 3, true), pack(0, 2), "both wrap at once");
        assert_eq!(head_past(head, 3, false), pack(COUNT_MASK, 2));
    }
}
