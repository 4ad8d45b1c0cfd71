//! Batches: many records, one publish (or one release), at most one wake.
//!
//! A single push or pop pays one `SeqCst` fence for its wake check (see
//! [`crate::wait`]); a batch pays it once for all its records, which is
//! what brings an 8-byte stream to the speed of a raw ring.

#[cfg(not(loom))]
use super::Consumer;
use super::Producer;
#[cfg(not(loom))]
use crate::error::PopError;
use crate::error::PushError;
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
        self.try_push_many_marked(msgs.into_iter().map(|msg| (msg, false)))
    }

    /// [`try_push_many`](Producer::try_push_many) of records each with its
    /// continuation mark (see [`try_push_marked`](Producer::try_push_marked)):
    /// a message split into records goes in as `(first, false)`,
    /// `(second, true)`, …, all published at once.
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first one did not.
    pub fn try_push_many_marked<'m, I>(&mut self, msgs: I) -> Result<usize, PushError>
    where
        I: IntoIterator<Item = (&'m [u8], bool)>,
    {
        self.check_open()?;
        let (n, first_err) = self.writer.write_many(msgs);
        self.publish_and_wake(n.clamp(1, WAKE_ALL as usize) as u32);
        match (n, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(n),
        }
    }
}

#[cfg(not(loom))]
impl<W: Waiter + Clone> Consumer<W> {
    /// Hands up to `max` records to `f`, in order, then releases them all at
    /// once (one store, one wake). Returns how many (0 only when `max` is 0).
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
        let found = self.next()?;
        f(self.payload(&found));
        self.reader.advance(&found);
        let mut n = 1;
        while n < max {
            match self.reader.peek() {
                Ok(Some(found)) => {
                    f(self.payload(&found));
                    self.reader.advance(&found);
                    n += 1;
                }
                _ => break,
            }
        }
        self.release_and_wake();
        Ok(n)
    }
}
