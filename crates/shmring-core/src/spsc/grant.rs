//! Zero-copy access: space reserved and written in place
//! ([`Producer::reserve`] → [`WriteGrant::commit`]), records read in place
//! ([`Consumer::read`] → drop the [`ReadGrant`]).

use core::ops::{Deref, DerefMut};

use super::{Consumer, Producer};
use crate::error::{PopError, PushError};
use crate::ring::Found;
use crate::wait::Waiter;

impl<W: Waiter + Clone> Producer<W> {
    /// Reserves room for a record of up to `len` bytes and hands out the
    /// space itself: write in place, then [`WriteGrant::commit`]. Dropping the
    /// grant without committing publishes nothing.
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
#[derive(Debug)]
pub struct WriteGrant<'a, W: Waiter + Clone> {
    producer: &'a mut Producer<W>,
    word: usize,
    len: usize,
}

impl<W: Waiter + Clone> WriteGrant<'_, W> {
    /// Publishes the first `len` bytes as one record (and wakes the consumer
    /// if it sleeps).
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit(self, len: usize) {
        self.commit_marked(len, false);
    }

    /// [`commit`](WriteGrant::commit) with the continuation mark of
    /// [`Producer::try_push_marked`].
    ///
    /// # Panics
    ///
    /// If `len` exceeds the reserved length.
    pub fn commit_marked(self, len: usize, continues: bool) {
        assert!(
            len <= self.len,
            "commit of {len} bytes exceeds the {} reserved",
            self.len
        );
        self.producer.writer.commit(self.word, len, continues);
        self.producer.publish_and_wake(1);
    }
}

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

impl<W: Waiter + Clone> Consumer<W> {
    /// Reads the next record in place; dropping the grant releases it.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline(always)]
    pub fn read(&mut self) -> Result<ReadGrant<'_, W>, PopError> {
        let found = self.next()?;
        failpoint!("spsc.read", self.payload(&found));
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
    /// Whether the record is marked as continuing the message begun by the
    /// data record before it (written by
    /// [`Producer::try_push_marked`] and friends with `continues`), rather
    /// than beginning one.
    #[inline]
    pub fn continues(&self) -> bool {
        self.found.continues
    }
}

impl<W: Waiter + Clone> Deref for ReadGrant<'_, W> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.consumer.payload(&self.found)
    }
}

impl<W: Waiter + Clone> Drop for ReadGrant<'_, W> {
    fn drop(&mut self) {
        self.consumer.reader.advance(&self.found);
        self.consumer.release_and_wake();
        failpoint!("spsc.released");
    }
}
