//! Zero-copy access: space reserved and written in place
//! ([`Producer::reserve`] → [`WriteGrant::commit`]), records read in place
//! ([`Consumer::read`] → drop the [`ReadGrant`]).
//!
//! A grant is a claim on bytes of the shared data area. Its safe methods
//! copy (out of a read grant with relaxed atomic word loads or, from 256
//! bytes on x86-64, one opaque `rep movsb`, into a write
//! grant with a plain copy of process-local bytes), so nothing a peer
//! process does to those bytes meanwhile can reach safe code as a racing
//! reference. Its `unsafe` slice views are for callers who can promise a
//! well-behaved peer. See "Untrusted peers" in the [`spsc`](super) docs.

use alloc::vec::Vec;

use super::{Consumer, Producer};
use crate::error::{PopError, PushError};
use crate::record::Mark;
use crate::ring::{small, Found};
use crate::wait::Waiter;

impl<W: Waiter + Clone> Producer<W> {
    /// Reserves room for a record of up to `len` bytes and hands out the
    /// space itself: fill it with [`WriteGrant::write_at`] (or through the
    /// `unsafe` [`WriteGrant::as_mut_slice`]), then [`WriteGrant::commit`].
    /// Dropping the grant without committing publishes nothing.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
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
}

/// Space reserved in the ring, written in place. See [`Producer::reserve`].
///
/// Bytes never written keep whatever an earlier lap left there; a commit
/// publishes them as they are.
#[derive(Debug)]
pub struct WriteGrant<'a, W: Waiter + Clone> {
    producer: &'a mut Producer<W>,
    word: usize,
    len: usize,
}

impl<W: Waiter + Clone> WriteGrant<'_, W> {
    /// The reserved length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reservation is for an empty record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the reserved space at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `offset + src.len()` exceeds the reserved length.
    #[inline]
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        let end = offset.checked_add(src.len());
        assert!(
            end.is_some_and(|end| end <= self.len),
            "write of {} bytes at {offset} exceeds the {} reserved",
            src.len(),
            self.len
        );
        let dst = self
            .producer
            .writer
            .ring
            .byte_ptr(self.word * 8 + 8 + offset);
        // The bytes belong to this producer until it publishes (the grant
        // borrows it mutably); `src` is not in the data area (we hold the
        // only reference into this part of it). A peer that touches
        // unpublished space only garbles what it sees: we never read these
        // bytes back (see `bytes`).
        // SAFETY: `claim` put [word*8+8, +len) inside the data area and
        // offset + src.len() <= len (checked above); no overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
    }

    /// The reserved space as a slice, to write in place (serialise into it,
    /// say) with no copy at all.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other process reads or writes the
    /// reserved space. Every correct consumer of this ring (this crate's)
    /// leaves unpublished space alone; a misbehaving one could otherwise
    /// change bytes under a `&mut [u8]`, which is undefined behaviour. With
    /// a peer that may misbehave, use [`write_at`](WriteGrant::write_at).
    #[inline]
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: in bounds and ours, as in `write_at`; the mutable borrow of
        // the grant makes this the only reference in this process, and the
        // caller promises that no other process touches the bytes.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.producer.writer.ring.byte_ptr(self.word * 8 + 8),
                self.len,
            )
        }
    }

    /// Publishes the first `len` bytes as one record (and wakes the consumer
    /// if it sleeps).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit(self, len: usize) {
        self.commit_marked(len, Mark::WHOLE);
    }

    /// [`commit`](WriteGrant::commit) with the framing marks of
    /// [`Producer::try_push_marked`].
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit_marked(self, len: usize, mark: Mark) {
        assert!(
            len <= self.len,
            "commit of {len} bytes exceeds the {} reserved",
            self.len
        );
        self.producer.writer.commit(self.word, len, mark);
        self.producer.publish_and_wake(1);
    }
}

impl<W: Waiter + Clone> Consumer<W> {
    /// The next record, in place; dropping the grant releases it. The grant
    /// copies the payload out ([`ReadGrant::copy_to_slice`],
    /// [`ReadGrant::append_to`], [`ReadGrant::to_vec`]) straight from the
    /// ring, with no copy of the consumer's own in between, or views it in
    /// place through the `unsafe` [`ReadGrant::as_slice`].
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline(always)]
    pub fn read(&mut self) -> Result<ReadGrant<'_, W>, PopError> {
        let found = self.next()?;
        failpoint!("spsc.read", self.copy_of(&found));
        Ok(ReadGrant {
            consumer: self,
            found,
        })
    }
}

/// A record read in place. See [`Consumer::read`]; dropping releases it.
#[derive(Debug)]
pub struct ReadGrant<'a, W: Waiter + Clone> {
    consumer: &'a mut Consumer<W>,
    found: Found,
}

impl<W: Waiter + Clone> ReadGrant<'_, W> {
    /// The payload's length in bytes (checked against the ring's maximum
    /// record when the record was found).
    #[inline]
    pub fn len(&self) -> usize {
        self.found.len
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.found.len == 0
    }

    /// The record's framing marks, as [`Producer::try_push_marked`] and
    /// friends wrote them ([`Mark::WHOLE`] for every unmarked push).
    #[inline]
    pub fn mark(&self) -> Mark {
        self.found.mark
    }

    /// Whether the record is marked as continuing the message begun by the
    /// data record before it, rather than beginning one
    /// ([`Mark::continues`]).
    #[inline]
    pub fn continues(&self) -> bool {
        self.found.mark.continues
    }

    /// Whether the record is marked as having more records of its message
    /// after it, rather than ending it ([`Mark::more`]).
    #[inline]
    pub fn more(&self) -> bool {
        self.found.mark.more
    }

    /// Copies the payload into `dst`, a word at a time with relaxed atomic
    /// loads (from 256 bytes on x86-64, one `rep movsb` in an assembly
    /// block): whatever the producer's process does meanwhile, a racing
    /// write makes the bytes wrong, never undefined behaviour.
    ///
    /// # Panics
    ///
    /// If `dst` is not exactly [`len`](ReadGrant::len) bytes long.
    #[inline]
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.found.len, "destination length");
        let ring = &self.consumer.reader.ring;
        if dst.len() <= small::SMALL {
            small::load_into(ring.payload_words(&self.found), dst);
        } else {
            crate::bytes::load(ring.data(), self.found.payload_word, dst, false);
        }
    }

    /// Appends the payload to `out` (race-free, as
    /// [`copy_to_slice`](ReadGrant::copy_to_slice); no zero-fill first).
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let words = self.consumer.reader.ring.payload_words(&self.found);
        crate::bytes::append(words, self.found.len, out);
    }

    /// The payload, copied (race-free, as
    /// [`copy_to_slice`](ReadGrant::copy_to_slice)).
    #[inline]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.append_to(&mut out);
        out
    }

    /// The payload in place, with no copy at all.
    ///
    /// # Safety
    ///
    /// While the slice lives, the producer's process does not write the
    /// record. Every correct producer of this ring (this crate's) leaves a
    /// published record alone until the consumer releases it; a misbehaving
    /// one could otherwise change bytes under a `&[u8]`, which is undefined
    /// behaviour. With a peer that may misbehave, copy the payload out.
    #[inline]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: forwarded: the caller promises a well-behaved producer.
        unsafe { self.consumer.payload_in_place(&self.found) }
    }

    /// Leaves the record in the ring, unconsumed: the next
    /// [`read`](Consumer::read) (or pop) returns it again. Dropping the
    /// grant is what consumes a record; this does not drop it.
    #[inline]
    pub fn keep(self) {
        // Nothing to release: the grant only borrows the consumer and holds
        // the record's (copied) bounds, and the reader's position moves in
        // `drop` alone.
        core::mem::forget(self);
    }
}

impl<W: Waiter + Clone> Drop for ReadGrant<'_, W> {
    fn drop(&mut self) {
        self.consumer.reader.advance(&self.found);
        self.consumer.release_and_wake();
        failpoint!("spsc.released");
    }
}
