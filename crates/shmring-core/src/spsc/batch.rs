//! Batches: many records, one publish (or one release), at most one wake.
//!
//! A single push or pop pays one `SeqCst` fence for its wake check (see
//! [`crate::wait`]); a batch pays it once for all its records, which is
//! what brings an 8-byte stream to the speed of a raw ring.

use alloc::vec::Vec;

use super::{Consumer, Producer};
use crate::error::{PopError, PushError};
use crate::record::Mark;
use crate::ring::{small, Found};
use crate::wait::{Waiter, WAKE_ALL};

impl<W: Waiter + Clone> Producer<W> {
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
        self.try_push_many_marked(msgs.into_iter().map(|msg| (msg, Mark::WHOLE)))
    }

    /// [`try_push_many`](Producer::try_push_many) of records each with its
    /// framing marks (see [`try_push_marked`](Producer::try_push_marked)):
    /// a message split into `n` records goes in as `(first, Mark::nth(0,
    /// n))`, `(second, Mark::nth(1, n))`, …, all published at once. Whether
    /// all of them fit is known beforehand:
    /// [`space_needed`](Producer::space_needed).
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first one did not.
    pub fn try_push_many_marked<'m, I>(&mut self, msgs: I) -> Result<usize, PushError>
    where
        I: IntoIterator<Item = (&'m [u8], Mark)>,
    {
        self.check_open()?;
        let (n, first_err) = self.writer.write_many_marked(msgs);
        self.publish_and_wake(n.clamp(1, WAKE_ALL as usize) as u32);
        match (n, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(n),
        }
    }
}

impl<W: Waiter + Clone> Consumer<W> {
    /// Hands up to `max` records to `f`, in order, then releases them all at
    /// once (one store, one wake). Returns how many (0 only when `max` is 0).
    ///
    /// Each record is copied out of the ring first (a small one onto the
    /// stack, a larger one into a buffer this call allocates once), so `f`
    /// sees process-local bytes whatever the producer does (see the module
    /// docs); [`read`](Consumer::read) copies straight into a buffer of
    /// the caller's.
    ///
    /// # Errors
    ///
    /// Only when none was there: `Empty`, `Closed`, or `Corrupted`. A
    /// corruption met after the first record ends the batch early and is
    /// reported by the next call.
    pub fn try_pop_many(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize, PopError> {
        if max == 0 {
            return Ok(0);
        }
        let mut large = Vec::new();
        let found = self.next()?;
        self.hand_over(&found, &mut large, &mut f);
        self.reader.advance(&found);
        let mut n = 1;
        while n < max {
            match self.reader.peek() {
                Ok(Some(found)) => {
                    self.hand_over(&found, &mut large, &mut f);
                    self.reader.advance(&found);
                    n += 1;
                }
                _ => break,
            }
        }
        self.release_and_wake();
        Ok(n)
    }

    /// Copies the payload of `found` out (onto the stack when small, into
    /// `large` otherwise) and hands the copy to `f`.
    #[inline(always)]
    fn hand_over(&self, found: &Found, large: &mut Vec<u8>, f: &mut impl FnMut(&[u8])) {
        let words = self.reader.ring.payload_words(found);
        if found.len <= small::SMALL {
            let mut local = [0u8; small::SMALL];
            let copy = &mut local[..found.len];
            small::load_into(words, copy);
            f(copy);
        } else {
            large.clear();
            crate::bytes::append(words, found.len, large);
            f(large);
        }
    }
}
