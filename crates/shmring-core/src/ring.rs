//! One byte ring in memory: its shared block, its parameters, and the two
//! halves of its protocol ([`Writer`] and [`Reader`]) that the SPSC handles
//! use directly and the MPMC queue reuses for its per-producer rings.
//!
//! # Positions
//!
//! `tail` (written by the producer only) and `head` (written by the consumer,
//! or CASed by the consumers of an MPMC queue) are byte positions that only
//! grow; `position & (capacity - 1)` is the byte index in the data area. They
//! are 8-byte aligned, `head <= tail` and `tail - head <= capacity` always
//! hold for correct peers; both sides check it on every load from shared
//! memory and report [`Corrupted`] otherwise. At 2^64 bytes they would wrap:
//! at 100 GB/s that is 5.8 years of continuous traffic through one ring.
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
use crate::record::{self, Header};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::WaitWord;

mod reader;
pub(crate) mod small;
mod writer;

pub(crate) use reader::Reader;
pub(crate) use writer::Writer;

/// Smallest data area, in bytes.
pub const MIN_CAPACITY: u64 = 64;
/// Largest data area, in bytes (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
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
    _reserved: AtomicU32,
}

/// Written by the producer only.
#[repr(C)]
#[derive(Debug)]
pub struct ProducerLine {
    /// Published byte position: everything before it is complete records.
    pub(crate) tail: AtomicU64,
    /// Records published so far (for `len`); stored after `tail`.
    pub(crate) pushed: AtomicU64,
}

/// Written by the consumer (CASed by the consumers of an MPMC queue).
#[repr(C)]
#[derive(Debug)]
pub struct ConsumerLine {
    /// Released byte position: the producer may reuse everything before it.
    pub(crate) head: AtomicU64,
    /// Records taken so far (for `len`); updated after `head`.
    pub(crate) popped: AtomicU64,
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
    assert!(size_of::<ConfigBlock>() == 40);
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
                _reserved: AtomicU32::new(0),
            }),
            producer: Padded(ProducerLine {
                tail: AtomicU64::new(0),
                pushed: AtomicU64::new(0),
            }),
            consumer: Padded(ConsumerLine {
                head: AtomicU64::new(0),
                popped: AtomicU64::new(0),
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
    pub(crate) capacity: u64,
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
            mask: config.capacity - 1,
            max_record: config.max_record,
        })
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &RingShared {
        // SAFETY: valid for as long as self is used (constructor contract).
        unsafe { self.shared.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn data(&self) -> &[AtomicU64] {
        // SAFETY: `capacity / 8` words, valid (constructor contract; the
        // capacity was checked against the data area there).
        unsafe { core::slice::from_raw_parts(self.data.as_ptr(), (self.capacity / 8) as usize) }
    }

    /// Raw pointer to byte `index` of the data area (zero-copy grants).
    #[cfg(not(loom))]
    #[inline(always)]
    pub(crate) fn byte_ptr(&self, index: usize) -> *mut u8 {
        debug_assert!((index as u64) <= self.capacity);
        // SAFETY: index <= capacity, inside (or one past) the data area.
        unsafe { self.data.as_ptr().cast::<u8>().add(index) }
    }

    /// Checks a (head, tail) pair read from shared memory.
    #[inline]
    pub(crate) fn check_span(&self, head: u64, tail: u64) -> Result<(), Corrupted> {
        if tail < head || tail - head > self.capacity || (head | tail) & 7 != 0 {
            return Err(Corrupted::new(
                "ring positions (tail - head)",
                tail.wrapping_sub(head),
            ));
        }
        Ok(())
    }

    /// Decodes and bounds-checks the record at `position`, which lies before
    /// `limit` (a tail this side loaded with Acquire). Padding comes back
    /// with `pad` set; the caller skips it by `size`.
    #[inline(always)]
    pub(crate) fn record_at(&self, position: u64, limit: u64) -> Result<Found, Corrupted> {
        debug_assert!(position < limit);
        let index = position & self.mask;
        // ORDERING: Acquire — pairs with the producer's Release store of the
        // header. For a single consumer the Acquire of the tail already
        // covers it; for racy MPMC consumers it matters: a header from a
        // later lap carries
        // (through the producer's Acquire of the head before it reused the
        // space) the head advance that made the reuse possible, so the
        // consumer's re-read of the head sees it and calls it a race, not
        // corruption. loom found the Relaxed version wrong.
        let word = self.data()[(index / 8) as usize].load(Ordering::Acquire);
        let (len, pad, continues) = match record::decode(word, position)? {
            Header::Data { len, continues } => (u64::from(len), false, continues),
            Header::Pad { len } => (u64::from(len), true, false),
        };
        // `len < 2^32`: no overflow.
        let size = record::HEADER + len.next_multiple_of(8);
        if pad {
            if index + size != self.capacity {
                return Err(Corrupted::new("padding length", len));
            }
        } else if len > self.max_record {
            return Err(Corrupted::new("record length", len));
        }
        if index + size > self.capacity || size > limit - position {
            return Err(Corrupted::new("record extent", len));
        }
        Ok(Found {
            payload_word: (index / 8) as usize + 1,
            len: len as usize,
            size,
            pad,
            continues,
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
    pub(crate) payload_word: usize,
    pub(crate) len: usize,
    pub(crate) size: u64,
    pub(crate) pad: bool,
    /// A data record tagged CONT (see [`crate::record`]).
    pub(crate) continues: bool,
}

/// Approximate number of records in a ring: a snapshot, already stale.
pub(crate) fn ring_len(shared: &RingShared) -> u64 {
    // ORDERING: Relaxed — statistics; the answer is approximate by contract.
    let popped = shared.consumer.popped.load(Ordering::Relaxed);
    let pushed = shared.producer.pushed.load(Ordering::Relaxed);
    pushed.saturating_sub(popped)
}

/// Whether a ring holds no published record (a snapshot). A lone padding
/// record at the end does not count: there is nothing in it to pop.
pub(crate) fn ring_is_empty(ring: &RingRef) -> bool {
    let shared = ring.shared();
    // ORDERING: Acquire on both — a snapshot consistent with what a pop would
    // see next.
    let head = shared.consumer.head.load(Ordering::Acquire);
    // ORDERING: as above.
    let tail = shared.producer.tail.load(Ordering::Acquire);
    if head >= tail {
        return true;
    }
    // A record that does not decode (a race with a reuse, or corruption)
    // counts as "something there": a pop will find out which.
    matches!(
        ring.check_span(head, tail).and_then(|()| ring.record_at(head, tail)),
        Ok(found) if found.pad && head + found.size == tail
    )
}
