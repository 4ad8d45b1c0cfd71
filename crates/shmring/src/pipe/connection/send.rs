//! The sends of a [`Connection`]: Python's blocking `send`/`send_bytes`,
//! and our non-blocking and timed variants, which send a message whole or
//! not at all.

use std::time::Duration;

use super::super::ends::Patience;
use super::Connection;
use crate::codec::Message;
use crate::pipe::PipeError;

impl Connection {
    /// Python's `send(obj)`: sends `value` encoded as one message.
    ///
    /// # Blocking
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes), or [`PipeError::Codec`].
    pub fn send<T: Message>(&mut self, value: &T) -> Result<(), PipeError> {
        self.send_value(value, Patience::Forever)
    }

    /// Sends `value` only if the whole encoded message fits in the ring now;
    /// writes nothing otherwise. Not in Python, whose `send` always blocks.
    ///
    /// # Blocking
    ///
    /// Never. It makes no system call, except a wake-up when the reader
    /// sleeps, and a liveness probe of the reader at most once per liveness
    /// slice (100 ms) while the ring stays full (a dead reader is
    /// [`PipeError::BrokenPipe`] within a slice and 16 calls).
    ///
    /// # Errors
    ///
    /// [`PipeError::Full`] when there is no room for all of it right now
    /// (nothing was written: try again later, or [`poll`](Connection::poll)
    /// the other way); [`PipeError::TooLarge`] when it never fits at once
    /// (use [`send`](Connection::send)); otherwise as
    /// [`send`](Connection::send). `value` is borrowed, so nothing is lost.
    #[doc(alias = "send_nowait")]
    pub fn try_send<T: Message>(&mut self, value: &T) -> Result<(), PipeError> {
        self.send_value(value, Patience::Never)
    }

    /// Sends `value`, waiting at most `timeout` for room for the whole
    /// message; writes nothing if the time runs out. Not in Python (see
    /// [`recv_timeout`](Connection::recv_timeout)).
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
    /// [`PipeError::Timeout`] (nothing was written), [`PipeError::TooLarge`]
    /// when the message never fits the ring at once; otherwise as
    /// [`send`](Connection::send).
    pub fn send_timeout<T: Message>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), PipeError> {
        let patience =
            crate::sys::deadline_after(Some(timeout)).map_or(Patience::Forever, Patience::Until);
        self.send_value(value, patience)
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
    /// [`PipeError::OffsetBeyondBuffer`], [`PipeError::SizeBeyondBuffer`],
    /// [`PipeError::HandleClosed`], [`PipeError::ReadOnly`];
    /// [`PipeError::BrokenPipe`] when the other end closed, or died (noticed
    /// while waiting for room). A message interrupted by a broken pipe is
    /// never delivered.
    pub fn send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), PipeError> {
        self.send_slice(buf, offset, size, Patience::Forever)
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
    ) -> Result<(), PipeError> {
        self.send_slice(buf, offset, size, Patience::Never)
    }

    /// The longest message that [`try_send`](Connection::try_send) and
    /// [`send_timeout`](Connection::send_timeout) can send: what an empty
    /// ring takes at once, whatever the position of its records (about three
    /// quarters of the ring with the default fragment size). Any message up
    /// to this long goes into an empty ring; a longer one is
    /// [`PipeError::TooLarge`] for them. `None` when this end does not send.
    /// [`send`](Connection::send) has no limit.
    ///
    /// A record never straddles the end of the ring (the rest of the ring
    /// is padding then), so with `fragment_bytes` of about half the ring or
    /// more this is *shorter* than one fragment: at most `ring_bytes / 2 -
    /// 8` bytes.
    pub fn max_whole_message(&self) -> Option<usize> {
        self.outgoing.as_ref().map(|out| out.max_whole())
    }

    fn send_value<T: Message>(&mut self, value: &T, patience: Patience) -> Result<(), PipeError> {
        self.check_writable()?;
        if let Some(bytes) = value.as_bytes() {
            return self.send_message(bytes, patience);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let sent = value
            .encode(&mut scratch)
            .map_err(PipeError::from)
            .and_then(|()| self.send_message(&scratch, patience));
        // Keep the buffer for the next call, unless a huge message made it
        // huge.
        if scratch.capacity() <= 1 << 20 {
            self.scratch = scratch;
        }
        sent
    }

    #[inline]
    fn send_slice(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
        patience: Patience,
    ) -> Result<(), PipeError> {
        self.check_writable()?;
        if offset > buf.len() {
            return Err(PipeError::OffsetBeyondBuffer);
        }
        let size = size.unwrap_or(buf.len() - offset);
        let end = offset
            .checked_add(size)
            .filter(|&end| end <= buf.len())
            .ok_or(PipeError::SizeBeyondBuffer)?;
        self.send_message(&buf[offset..end], patience)
    }

    /// Every send ends here. Blocking, it streams: the reader reassembles
    /// while later fragments are still being written, so any length goes
    /// through any ring. Otherwise it is all or nothing, so that giving up
    /// never leaves half a message in the ring.
    #[inline]
    fn send_message(&mut self, msg: &[u8], patience: Patience) -> Result<(), PipeError> {
        let sent = self.send_uncounted(msg, patience);
        if sent.is_ok() {
            self.sent.one(msg.len());
        }
        sent
    }

    #[inline]
    fn send_uncounted(&mut self, msg: &[u8], patience: Patience) -> Result<(), PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        let out = self.outgoing.as_mut().ok_or(PipeError::ReadOnly)?;
        match patience {
            Patience::Never => match out.try_whole(msg)? {
                true => Ok(()),
                false => Err(out.full_or_broken(segment, policy)),
            },
            Patience::Until(deadline) => out.send_by(msg, deadline, segment, policy),
            Patience::Forever if msg.len() < out.fragment => out.push(msg, false, segment, policy),
            Patience::Forever => {
                // Full-size fragments: more follows; a shorter one ends the
                // message. All but the first are marked as continuing it.
                for (i, fragment) in msg.chunks(out.fragment).enumerate() {
                    out.push(fragment, i > 0, segment, policy)?;
                }
                if msg.len().is_multiple_of(out.fragment) {
                    out.push(&[], true, segment, policy)?;
                }
                Ok(())
            }
        }
    }
}
