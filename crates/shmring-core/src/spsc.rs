//! The single-producer single-consumer byte ring.
//!
//! Variable-length records (0 bytes up to the configured maximum), a padding
//! record at the wrap, and process-local cached copies of the other side's
//! position, so that while the ring is neither empty nor full the producer
//! touches only its own line (and the reader only its own). Three ways in and
//! out: copy ([`Producer::try_push`], [`Consumer::try_pop`]), zero-copy
//! ([`Producer::reserve`] → [`WriteGrant::commit`], [`Consumer::read`] →
//! drop the [`ReadGrant`]), and batches ([`Producer::try_push_many`],
//! [`Consumer::try_pop_many`]: many records, one publish, one wake).
//!
//! The handles here are not tied to an OS: [`Ring`] is built over memory the
//! caller keeps alive (a mapped segment in the `shmring` crate, the heap in
//! [`crate::heap`]), and blocking goes through the [`Waiter`] the handle holds.

use alloc::sync::Arc;
use core::any::Any;
#[cfg(not(loom))]
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::error::{ConfigError, Corrupted, PopError, PushError};
use crate::layout::HOT_ALIGN;
use crate::ring::{
    ring_is_empty, ring_len, Reader, RingConfig, RingRef, RingShared, Writer, CONSUMER_CLOSED,
    PRODUCER_CLOSED,
};
use crate::sync::AtomicU64;
use crate::wait::{block_on, TimedOut, Until, WaitPolicy, Waiter, WAKE_ALL};

/// Something that keeps the ring's memory alive (a mapping, a heap block).
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// Where the parts of an SPSC ring lie in a region, and how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpscLayout {
    /// Offset of the data area from the start of the region.
    pub data_offset: usize,
    /// Bytes the region needs.
    pub total: usize,
}

impl SpscLayout {
    /// The layout for `config`.
    ///
    /// # Errors
    ///
    /// The configuration is invalid.
    pub fn new(config: &RingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let data_offset = core::mem::size_of::<RingShared>().next_multiple_of(HOT_ALIGN);
        Ok(SpscLayout {
            data_offset,
            total: data_offset + config.capacity as usize,
        })
    }
}

/// A validated reference to one SPSC ring, and the keep-alive of its memory.
#[derive(Clone)]
pub struct Ring {
    raw: RingRef,
    keep: KeepAlive,
}

impl core::fmt::Debug for Ring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.raw.capacity)
            .field("max_record", &self.raw.max_record)
            .finish()
    }
}

impl Ring {
    /// Initialises a ring in zeroed memory (the creator, before publishing the
    /// segment).
    ///
    /// # Safety
    ///
    /// `base` is valid for writes of `len` bytes, aligned to 128, zeroed, and
    /// not yet visible to any other process or thread.
    ///
    /// # Errors
    ///
    /// The configuration is invalid or does not fit in `len` bytes.
    #[cfg(not(loom))]
    pub unsafe fn init_in_place(
        base: NonNull<u8>,
        len: usize,
        config: &RingConfig,
    ) -> Result<(), ConfigError> {
        let layout = SpscLayout::new(config)?;
        if layout.total > len {
            return Err(ConfigError::Capacity {
                capacity: config.capacity,
                min: crate::ring::MIN_CAPACITY,
                max: (len.saturating_sub(layout.data_offset)) as u64,
            });
        }
        // SAFETY: the caller gives us `len >= size_of::<RingShared>()` zeroed,
        // aligned bytes; all-zero is a valid `RingShared` (atomics only).
        let shared = unsafe { base.cast::<RingShared>().as_ref() };
        shared.init(config);
        Ok(())
    }

    /// Attaches to a ring another process initialised, checking every
    /// parameter against `len`.
    ///
    /// # Safety
    ///
    /// `base` is valid for reads and writes of `len` bytes, aligned to 128,
    /// for as long as `keep` lives, and other parties access it only through
    /// atomics or this protocol (a hostile peer can make us read garbage, which
    /// we detect, but not break memory safety).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when a parameter is out of range or does not match `len`.
    #[cfg(not(loom))]
    pub unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Ring, Corrupted> {
        if len < core::mem::size_of::<RingShared>()
            || !(base.as_ptr() as usize).is_multiple_of(HOT_ALIGN)
        {
            return Err(Corrupted::new("ring region length", len as u64));
        }
        // SAFETY: in bounds and aligned (checked above); valid per the caller.
        let shared = unsafe { base.cast::<RingShared>().as_ref() };
        let config = shared.read_config()?;
        let layout = SpscLayout::new(&config).map_err(|_| Corrupted::new("ring config", 0))?;
        if layout.total != len {
            return Err(Corrupted::new("ring region length", len as u64));
        }
        // SAFETY: data_offset < total == len, so in bounds; 128-aligned.
        let data = unsafe { base.add(layout.data_offset) }.cast::<AtomicU64>();
        // SAFETY: both pointers lie in the caller's region, valid while `keep`
        // lives; `keep` travels with every handle made from this Ring.
        let raw = unsafe { RingRef::new(base.cast(), data, (config.capacity / 8) as usize) }?;
        Ok(Ring { raw, keep })
    }

    /// Attaches to a control block and data area that live apart (heap rings).
    ///
    /// # Safety
    ///
    /// `shared` and `data` (`data_words` words) stay valid while `keep` lives
    /// and are accessed by others only through atomics or this protocol.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the parameters are out of range or do not match.
    pub unsafe fn from_parts(
        shared: NonNull<RingShared>,
        data: NonNull<AtomicU64>,
        data_words: usize,
        keep: KeepAlive,
    ) -> Result<Ring, Corrupted> {
        // SAFETY: forwarded from our caller.
        let raw = unsafe { RingRef::new(shared, data, data_words) }?;
        Ok(Ring { raw, keep })
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        RingConfig {
            capacity: self.raw.capacity,
            max_record: self.raw.max_record,
        }
    }

    /// A producer handle. The caller makes sure there is only one (the engine
    /// claims the producer role first).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the positions in shared memory are inconsistent.
    pub fn producer<W: Waiter + Clone>(&self, waiter: W) -> Result<Producer<W>, Corrupted> {
        Ok(Producer {
            writer: Writer::attach(self.raw, false)?,
            waiter,
            _keep: self.keep.clone(),
        })
    }

    /// A consumer handle. The caller makes sure there is only one.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the positions in shared memory are inconsistent.
    pub fn consumer<W: Waiter + Clone>(&self, waiter: W) -> Result<Consumer<W>, Corrupted> {
        Ok(Consumer {
            reader: Reader::attach(self.raw)?,
            waiter,
            _keep: self.keep.clone(),
        })
    }

    /// Approximate number of records in the ring. A snapshot: stale as soon
    /// as it returns, and one too high for each consumer killed between
    /// releasing a record and counting it.
    pub fn len(&self) -> u64 {
        ring_len(self.raw.shared())
    }

    /// Whether nothing is published and unconsumed (a snapshot).
    pub fn is_empty(&self) -> bool {
        ring_is_empty(&self.raw)
    }

    /// Whether not even an empty record fits right now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.free_bytes() < crate::record::HEADER
    }

    /// Bytes free right now (a snapshot).
    pub fn free_bytes(&self) -> u64 {
        let shared = self.raw.shared();
        // ORDERING: Acquire — a snapshot; see `ring_is_empty`.
        let head = shared.consumer.head.load(crate::sync::Ordering::Acquire);
        // ORDERING: Acquire — as above.
        let tail = shared.producer.tail.load(crate::sync::Ordering::Acquire);
        self.raw.capacity.saturating_sub(tail.saturating_sub(head))
    }

    /// Closes both sides: producers get `Closed` at once, consumers drain
    /// what is left and then get `Closed`. Every sleeper wakes.
    pub fn close<W: Waiter + ?Sized>(&self, waiter: &W) {
        close_ring(self.raw.shared(), PRODUCER_CLOSED | CONSUMER_CLOSED, waiter);
    }

    /// The closed flags (`PRODUCER_CLOSED`, `CONSUMER_CLOSED`).
    pub fn closed_flags(&self) -> u32 {
        self.raw.shared().flags()
    }

    /// The role words, for the engine to claim producer and consumer roles.
    pub fn owner_words(&self) -> (&crate::sync::AtomicU64, &crate::sync::AtomicU64) {
        let c = &self.raw.shared().config;
        (&c.producer_owner, &c.consumer_owner)
    }
}

fn close_ring<W: Waiter + ?Sized>(shared: &RingShared, bits: u32, waiter: &W) {
    shared.set_flags(bits);
    shared.not_empty.wake_now(waiter, WAKE_ALL);
    shared.not_full.wake_now(waiter, WAKE_ALL);
}

/// The writing end of an SPSC ring.
#[derive(Debug)]
pub struct Producer<W> {
    writer: Writer,
    waiter: W,
    _keep: KeepAlive,
}

impl<W: Waiter + Clone> Producer<W> {
    #[inline]
    fn check_open(&self) -> Result<(), PushError> {
        if self.writer.ring.shared().flags() != 0 {
            return Err(PushError::Closed);
        }
        Ok(())
    }

    #[inline]
    fn publish_and_wake(&mut self, count: u32) {
        if self.writer.publish() {
            self.writer
                .ring
                .shared()
                .not_empty
                .wake_if_waiting(&self.waiter, count);
        }
    }

    /// Copies `msg` in as one record, if it fits now.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.check_open()?;
        let result = self.writer.write(msg);
        // On `Full` this also publishes a padding record written on the way:
        // the consumer has to pass it before the room we wait for can appear.
        self.publish_and_wake(1);
        result
    }

    /// Copies in as many of `msgs` as fit now, in order, with one publish and
    /// one wake. Returns how many went in; the first one that did not is the
    /// next to retry.
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first one did not.
    pub fn try_push_many<'m, I>(&mut self, msgs: I) -> Result<usize, PushError>
    where
        I: IntoIterator<Item = &'m [u8]>,
    {
        self.check_open()?;
        let (n, first_err) = self.writer.write_many(msgs);
        self.publish_and_wake(n.clamp(1, WAKE_ALL as usize) as u32);
        match (n, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(n),
        }
    }

    /// Pushes `msg`, waiting for room until `deadline` (`None`: no deadline).
    /// `peer_gone` runs on the slow path (after each sleep slice); when it
    /// says the consumer is gone the push fails with `Closed`.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `TooLarge`, `Corrupted`.
    pub fn push(
        &mut self,
        msg: &[u8],
        deadline: impl Into<Until>,
        policy: &WaitPolicy,
        peer_gone: &mut dyn FnMut() -> bool,
    ) -> Result<(), PushError> {
        let ring = self.writer.ring;
        let waiter = self.waiter.clone();
        block_on(
            &ring.shared().not_full,
            &waiter,
            deadline,
            policy,
            |slow| match self.try_push(msg) {
                Err(PushError::Full) if slow && peer_gone() => Some(Err(PushError::Closed)),
                Err(PushError::Full) => None,
                other => Some(other),
            },
        )
        .unwrap_or(Err(PushError::Timeout))
    }

    /// Reserves room for a record of up to `len` bytes and hands out the
    /// space itself: write in place, then [`WriteGrant::commit`]. Dropping the
    /// grant without committing publishes nothing.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[cfg(not(loom))]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_, W>, PushError> {
        self.check_open()?;
        match self.writer.claim(len) {
            Ok(word) => Ok(WriteGrant {
                producer: self,
                word,
                len,
            }),
            Err(e) => {
                self.publish_and_wake(1);
                Err(e)
            }
        }
    }

    /// Bytes free as far as the producer knows (re-reads the head).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the head is inconsistent.
    pub fn free_bytes(&mut self) -> Result<u64, Corrupted> {
        self.writer.free_now()
    }

    /// Closes the producer side: the consumer drains, then sees `Closed`.
    pub fn close(&self) {
        close_ring(self.writer.ring.shared(), PRODUCER_CLOSED, &self.waiter);
    }
}

/// Space reserved in the ring, written in place. See [`Producer::reserve`].
#[cfg(not(loom))]
#[derive(Debug)]
pub struct WriteGrant<'a, W: Waiter + Clone> {
    producer: &'a mut Producer<W>,
    word: usize,
    len: usize,
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> WriteGrant<'_, W> {
    /// Publishes the first `len` bytes as one record (and wakes the consumer
    /// if it sleeps).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit(self, len: usize) {
        assert!(
            len <= self.len,
            "commit of {len} bytes exceeds the {} reserved",
            self.len
        );
        self.producer.writer.commit(self.word, len);
        self.producer.publish_and_wake(1);
    }
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> Deref for WriteGrant<'_, W> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `claim` made bytes [word*8+8, word*8+8+len) lie inside the
        // data area and belong to the producer alone until it publishes; the
        // grant borrows the producer mutably, so nothing publishes meanwhile.
        unsafe {
            core::slice::from_raw_parts(
                self.producer.writer.ring.byte_ptr(self.word * 8 + 8),
                self.len,
            )
        }
    }
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> DerefMut for WriteGrant<'_, W> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the mutable borrow of the grant makes this
        // the only reference to those bytes in this process, and no other
        // party reads unpublished space.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.producer.writer.ring.byte_ptr(self.word * 8 + 8),
                self.len,
            )
        }
    }
}

/// The reading end of an SPSC ring.
#[derive(Debug)]
pub struct Consumer<W> {
    reader: Reader,
    waiter: W,
    _keep: KeepAlive,
}

impl<W: Waiter + Clone> Consumer<W> {
    #[inline]
    fn release_and_wake(&mut self) {
        if self.reader.release() {
            self.reader
                .ring
                .shared()
                .not_full
                .wake_if_waiting(&self.waiter, 1);
        }
    }

    /// The next record, or why there is none.
    #[inline]
    fn next(&mut self) -> Result<crate::ring::Found, PopError> {
        if let Some(found) = self.reader.peek()? {
            return Ok(found);
        }
        // Padding skipped on the way is room the producer may be waiting for.
        self.release_and_wake();
        // The flag first, then one more look: a record published before the
        // close is then visible (the flag's Acquire pairs with its Release).
        if self.reader.ring.shared().flags() & PRODUCER_CLOSED != 0 {
            return match self.reader.peek()? {
                Some(found) => Ok(found),
                None => Err(PopError::Closed),
            };
        }
        Err(PopError::Empty)
    }

    /// Reads the next record in place; dropping the grant releases it.
    #[cfg(not(loom))]
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline]
    pub fn read(&mut self) -> Result<ReadGrant<'_, W>, PopError> {
        let found = self.next()?;
        Ok(ReadGrant {
            consumer: self,
            found,
        })
    }

    /// Copies the next record into `buf` (replacing its contents) and returns
    /// its length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut alloc::vec::Vec<u8>) -> Result<usize, PopError> {
        let found = self.next()?;
        buf.clear();
        buf.resize(found.len, 0);
        crate::bytes::load(self.reader.ring.data(), found.payload_word, buf, true);
        failpoint!("spsc.read", buf);
        self.reader.advance(&found);
        self.release_and_wake();
        failpoint!("spsc.released");
        Ok(found.len)
    }

    /// Hands up to `max` records to `f`, in order, then releases them all at
    /// once (one store, one wake). Returns how many (0 only when `max` is 0).
    ///
    /// # Errors
    ///
    /// Only when none was there: `Empty`, `Closed`, or `Corrupted`. A
    /// corruption met after the first record ends the batch early and is
    /// reported by the next call.
    #[cfg(not(loom))]
    pub fn try_pop_many(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, PopError> {
        let mut n = 0;
        while n < max {
            let found = if n == 0 {
                self.next()?
            } else {
                match self.reader.peek() {
                    Ok(Some(found)) => found,
                    _ => break,
                }
            };
            f(self.payload(&found));
            self.reader.advance(&found);
            n += 1;
        }
        self.release_and_wake();
        Ok(n)
    }

    #[cfg(not(loom))]
    #[inline]
    fn payload(&self, found: &crate::ring::Found) -> &[u8] {
        {
            // SAFETY: `record_at` checked that the payload lies inside the data
            // area before the tail; published (Acquire of the tail) and not yet
            // released, so the producer does not write it while we read.
            unsafe {
                core::slice::from_raw_parts(
                    self.reader.ring.byte_ptr(found.payload_word * 8),
                    found.len,
                )
            }
        }
    }

    /// Pops the next record into `buf`, waiting until `deadline` (`None`: no
    /// deadline). `peer_gone` runs on the slow path; when it says the
    /// producer is gone the pop drains what is left, then fails with `Closed`.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `Corrupted`.
    pub fn pop(
        &mut self,
        buf: &mut alloc::vec::Vec<u8>,
        deadline: impl Into<Until>,
        policy: &WaitPolicy,
        peer_gone: &mut dyn FnMut() -> bool,
    ) -> Result<usize, PopError> {
        let ring = self.reader.ring;
        let waiter = self.waiter.clone();
        block_on(
            &ring.shared().not_empty,
            &waiter,
            deadline,
            policy,
            |slow| match self.try_pop(buf) {
                Err(PopError::Empty) if slow && peer_gone() => Some(match self.try_pop(buf) {
                    Err(PopError::Empty) => Err(PopError::Closed),
                    other => other,
                }),
                Err(PopError::Empty) => None,
                other => Some(other),
            },
        )
        .unwrap_or(Err(PopError::Timeout))
    }

    /// Closes the consumer side: the producer gets `Closed` from now on.
    pub fn close(&self) {
        close_ring(self.reader.ring.shared(), CONSUMER_CLOSED, &self.waiter);
    }

    /// Waits until the next record can be read, or until nothing ever will
    /// be, without consuming anything (what a pipe's `poll` needs).
    ///
    /// Returns `Ok(true)` when a record is there (or the ring looks
    /// corrupted: the next read reports it), `Ok(false)` when the ring is
    /// drained and its producer side closed, or `peer_gone` said the producer
    /// is gone. `peer_gone` runs on the slow path only (after each sleep
    /// slice, and once more at the deadline).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when `deadline` passes first.
    pub fn wait_readable(
        &mut self,
        deadline: impl Into<Until>,
        policy: &WaitPolicy,
        peer_gone: &mut dyn FnMut() -> bool,
    ) -> Result<bool, TimedOut> {
        let ring = self.reader.ring;
        let waiter = self.waiter.clone();
        block_on(
            &ring.shared().not_empty,
            &waiter,
            deadline,
            policy,
            |slow| match self.next() {
                Ok(_) | Err(PopError::Corrupted(_)) => Some(true),
                Err(PopError::Closed) => Some(false),
                // Gone: one more look, for what it published before dying.
                Err(_) if slow && peer_gone() => Some(!matches!(
                    self.next(),
                    Err(PopError::Empty | PopError::Closed)
                )),
                Err(_) => None,
            },
        )
    }
}

/// A record read in place. See [`Consumer::read`]; dropping releases it.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct ReadGrant<'a, W: Waiter + Clone> {
    consumer: &'a mut Consumer<W>,
    found: crate::ring::Found,
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> Deref for ReadGrant<'_, W> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.payload(&self.found)
    }
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> Drop for ReadGrant<'_, W> {
    fn drop(&mut self) {
        self.consumer.reader.advance(&self.found);
        self.consumer.release_and_wake();
    }
}
