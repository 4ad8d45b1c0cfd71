//! The sends of a [`Connection`]: Python's blocking `send`/`send_bytes`,
//! and the `try_`, `_timeout` and `_deadline` forms, which send a message
//! whole or not at all.
//!
//! Each public form only says how long it may wait (an [`Until`]) and calls
//! [`send_until`](Connection::send_until) or
//! [`send_bytes_until`](Connection::send_bytes_until); both end in
//! [`Outgoing::send`](super::super::ends::Outgoing), which decides between
//! streaming (`Until::Never`) and all or nothing (any other).

use std::time::{Duration, Instant};

use shmring_core::wait::Until;

use super::Connection;
use crate::codec::Message;
use crate::pipe::error::{send_forever, SendError, SendTimeoutError, TrySendError};
use crate::sys::clock::until_instant;

impl Connection {
    /// Python's `send(obj)`: sends `value` encoded as one message.
    ///
    /// # Blocking
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes) (never its argument
    /// errors), or [`SendError::Encode`].
    pub fn send<T: Message>(&mut self, value: &T) -> Result<(), SendError> {
        send_forever(|| self.send_until(value, Until::Never))
    }

    /// Sends `value` only if the whole encoded message fits in the ring now;
    /// writes nothing otherwise. Not in Python, whose `send` always blocks.
    ///
    /// # Blocking
    ///
    /// Never. It makes no system call, except a wake-up when the reader
    /// sleeps, and a liveness probe of the reader at most once per liveness
    /// slice (100 ms) while the ring stays full (a dead reader is
    /// [`SendError::BrokenPipe`] within a slice and 16 calls).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when there is no room for all of it right now
    /// (nothing was written: try again later, or
    /// [`poll`](Connection::poll) the other way);
    /// [`SendError::TooLarge`] when it never fits at once (use
    /// [`send`](Connection::send)); otherwise as
    /// [`send`](Connection::send). `value` is borrowed, so nothing is lost.
    #[doc(alias = "send_nowait")]
    pub fn try_send<T: Message>(&mut self, value: &T) -> Result<(), TrySendError> {
        self.send_until(value, Until::Now)
    }

    /// Sends `value`, waiting at most `timeout` for room for the whole
    /// message; writes nothing if the time runs out. Not in Python. A zero
    /// timeout is [`try_send`](Connection::try_send).
    ///
    /// # Blocking
    ///
    /// Up to `timeout` (a lower bound: it may return a little later),
    /// sleeping on the ring's futex until the reader makes room: room for
    /// one record, or for a message longer than one fragment room for all
    /// its fragments at once (the reader's every release wakes it to look).
    /// The reader's death is noticed within the liveness period.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (nothing was written);
    /// [`SendError::TooLarge`] when the message never fits the ring at
    /// once; otherwise as [`send`](Connection::send).
    pub fn send_timeout<T: Message>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_until(value, Until::after(timeout))
            .map_err(TrySendError::timed)
    }

    /// [`send_timeout`](Connection::send_timeout) until `deadline` instead
    /// of for a duration; a deadline already past is
    /// [`try_send`](Connection::try_send).
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`send_timeout`](Connection::send_timeout).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Connection::send_timeout).
    pub fn send_deadline<T: Message>(
        &mut self,
        value: &T,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError> {
        self.send_until(value, until_instant(deadline))
            .map_err(TrySendError::timed)
    }

    /// Python's `send_bytes(buf, offset, size)`: sends `buf[offset..][..size]`
    /// (`size` `None`: the rest of `buf`) as one message, of any length.
    ///
    /// # Blocking
    ///
    /// Only while the ring is full: spins briefly, then sleeps until the
    /// reader makes room; a message longer than the ring goes out fragment
    /// by fragment as the reader consumes. No timeout, like Python's.
    ///
    /// # Errors
    ///
    /// [`SendError::OffsetBeyondBuffer`], [`SendError::SizeBeyondBuffer`]
    /// (nothing is sent), [`SendError::HandleClosed`],
    /// [`SendError::ReadOnly`]; [`SendError::BrokenPipe`] when the other
    /// end closed, or died (noticed while waiting for room). A message
    /// interrupted by a broken pipe is never delivered.
    pub fn send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), SendError> {
        send_forever(|| self.send_bytes_until(buf, offset, size, Until::Never))
    }

    /// [`send_bytes`](Connection::send_bytes), only if the whole message
    /// fits in the ring now; writes nothing otherwise.
    ///
    /// # Blocking
    ///
    /// Never: as [`try_send`](Connection::try_send).
    ///
    /// # Errors
    ///
    /// As [`try_send`](Connection::try_send), and the argument errors of
    /// [`send_bytes`](Connection::send_bytes).
    #[doc(alias = "send_bytes_nowait")]
    #[inline]
    pub fn try_send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), TrySendError> {
        self.send_bytes_until(buf, offset, size, Until::Now)
    }

    /// [`send_bytes`](Connection::send_bytes), waiting at most `timeout`
    /// for room for the whole message; writes nothing if the time runs out.
    ///
    /// # Blocking
    ///
    /// As [`send_timeout`](Connection::send_timeout).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Connection::send_timeout), and the argument
    /// errors of [`send_bytes`](Connection::send_bytes).
    pub fn send_bytes_timeout(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_until(buf, offset, size, Until::after(timeout))
            .map_err(TrySendError::timed)
    }

    /// [`send_bytes_timeout`](Connection::send_bytes_timeout) until
    /// `deadline` instead of for a duration.
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`send_timeout`](Connection::send_timeout).
    ///
    /// # Errors
    ///
    /// As [`send_bytes_timeout`](Connection::send_bytes_timeout).
    pub fn send_bytes_deadline(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        deadline: Instant,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_until(buf, offset, size, until_instant(deadline))
            .map_err(TrySendError::timed)
    }

    /// The longest message that the all-or-nothing sends (`try_send*`,
    /// `send*_timeout`, `send*_deadline`) can send: what an empty ring takes
    /// at once, whatever the position of its records (about three quarters
    /// of the ring with the default fragment size: `3 * ring_bytes / 4 -
    /// 24`). Any message up to this long goes into an empty ring; a longer
    /// one is [`SendError::TooLarge`] for them. `None` when this end does
    /// not send. [`send`](Connection::send) has no limit. (Whether a
    /// message fits *now* is decided exactly, from where the ring stands:
    /// with the default shape, three messages of a quarter of the ring fit
    /// at once.)
    ///
    /// A record never straddles the end of the ring (the rest of the ring
    /// is padding then), so with `fragment_bytes` of about half the ring or
    /// more this is *shorter* than one fragment: at most `ring_bytes / 2 -
    /// 8` bytes.
    pub fn max_whole_message(&self) -> Option<usize> {
        self.outgoing.as_ref().map(|out| out.max_whole())
    }

    /// Every send of a value: encodes it (or takes its bytes as they are)
    /// and sends them, waiting up to `until`; `Full` means it gave up.
    fn send_until<T: Message>(&mut self, value: &T, until: Until) -> Result<(), TrySendError> {
        self.check_writable()?;
        if let Some(bytes) = value.as_bytes() {
            return self.send_message(bytes, until);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let sent = match value.encode(&mut scratch) {
            Ok(()) => self.send_message(&scratch, until),
            Err(e) => Err(SendError::Encode(e).into()),
        };
        // Keep the buffer for the next call, unless a huge message made it
        // huge.
        if scratch.capacity() <= 1 << 20 {
            self.scratch = scratch;
        }
        sent
    }

    /// Every `send_bytes`: checks Python's arguments and sends the slice,
    /// waiting up to `until`; `Full` means it gave up.
    #[inline]
    fn send_bytes_until(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        until: Until,
    ) -> Result<(), TrySendError> {
        self.check_writable()?;
        if offset > buf.len() {
            return Err(SendError::OffsetBeyondBuffer.into());
        }
        let size = size.unwrap_or(buf.len() - offset);
        let end = offset
            .checked_add(size)
            .filter(|&end| end <= buf.len())
            .ok_or(SendError::SizeBeyondBuffer)?;
        self.send_message(&buf[offset..end], until)
    }

    /// Sends one message (see [`Outgoing::send`](super::super::ends::Outgoing))
    /// and counts it.
    #[inline]
    fn send_message(&mut self, msg: &[u8], until: Until) -> Result<(), TrySendError> {
        let out = self.outgoing.as_mut().ok_or(SendError::ReadOnly)?;
        out.send(msg, until)?;
        self.sent.one(msg.len());
        Ok(())
    }
}
