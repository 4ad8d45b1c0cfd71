//! The receives of a [`Connection`]: Python's blocking `recv`,
//! `recv_bytes` and `recv_bytes_into`, and our non-blocking and timed
//! variants, which keep a half-received message for the next call.

use std::time::Duration;

use super::super::ends::Patience;
use super::Connection;
use crate::codec::Message;
use crate::pipe::PipeError;

/// Empties a receive buffer for the next message, dropping its memory if a
/// huge message made it huge.
fn recycle(msg: &mut Vec<u8>) {
    msg.clear();
    if msg.capacity() > 1 << 20 {
        *msg = Vec::new();
    }
}

/// `dst.copy_from_slice(src)` without a `memcpy` call for up to 16 bytes
/// (two overlapping word copies), the common size of a polled message.
#[inline(always)]
fn copy_into(dst: &mut [u8], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    let n = src.len();
    if (8..=16).contains(&n) && dst.len() == n {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
        return;
    }
    dst.copy_from_slice(src);
}

impl Connection {
    /// Python's `recv()`: receives one message and decodes it as a `T`.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), or [`PipeError::Codec`]
    /// (the message is consumed).
    pub fn recv<T: Message>(&mut self) -> Result<T, PipeError> {
        self.recv_value(Patience::Forever)
    }

    /// Receives and decodes a message only if all of it has arrived; never
    /// waits. Not in Python, where `poll()` then `recv()` does this (and can
    /// still block on the rest of a long message).
    ///
    /// A message longer than one fragment may be half there: its fragments
    /// are taken off the ring (so the writer can go on) and kept in this
    /// connection, and the next receive of any kind continues it. Nothing is
    /// lost or reordered by giving up. (If this end is then closed or handed
    /// to a child, that message is lost: whoever claims the end next starts
    /// at the following message, never in its middle.)
    ///
    /// # Blocking
    ///
    /// Never. It makes no system call, except a wake-up when the writer
    /// sleeps on a full ring, and a liveness probe of the writer at most once
    /// per liveness slice (100 ms) while nothing arrives, so that a writer
    /// that died reads as end of file (within a slice and 16 calls: only
    /// one call in 16 that finds nothing looks at the clock).
    ///
    /// # Errors
    ///
    /// [`PipeError::Empty`] when no message is complete yet (distinct from
    /// [`PipeError::Eof`]); otherwise as [`recv`](Connection::recv).
    #[doc(alias = "recv_nowait")]
    pub fn try_recv<T: Message>(&mut self) -> Result<T, PipeError> {
        self.recv_value(Patience::Never)
    }

    /// Receives and decodes a message, waiting at most `timeout` for all of
    /// it. Not in Python, where `poll(timeout)` then `recv()` comes close
    /// (but waits only for the first fragment).
    ///
    /// # Blocking
    ///
    /// Up to `timeout` for the whole message (a lower bound: it may return a
    /// little later), sleeping on the ring's futex; the writer's death is
    /// noticed within the liveness period. Fragments that arrived before the
    /// timeout are kept for the next receive, as for
    /// [`try_recv`](Connection::try_recv). A message that keeps arriving
    /// does not hold it past its timeout: once it has taken a ring's worth
    /// of records it looks at the clock before each further one.
    ///
    /// # Errors
    ///
    /// [`PipeError::Timeout`]; otherwise as [`recv`](Connection::recv).
    pub fn recv_timeout<T: Message>(&mut self, timeout: Duration) -> Result<T, PipeError> {
        let patience =
            crate::sys::deadline_after(Some(timeout)).map_or(Patience::Forever, Patience::Until);
        self.recv_value(patience)
    }

    /// Python's `recv_bytes(maxlength)`: receives one whole message.
    ///
    /// # Blocking
    ///
    /// Until a message arrives or the other end closes or dies: spins for a
    /// few microseconds, then sleeps, re-checking the other end's liveness
    /// every 100 ms. No timeout, like Python's: [`poll`](Connection::poll)
    /// first to bound the wait, or use
    /// [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// [`PipeError::Eof`] once the other end closed or died and everything
    /// it sent was read ([`PipeError::TruncatedMessage`] if it went in the
    /// middle of a message, or died there and a new writer took the end
    /// over: the next receive goes on); [`PipeError::BadMessageLength`] for a message
    /// longer than `maxlength`, after which this end is no longer readable
    /// (see there); [`PipeError::HandleClosed`]; [`PipeError::WriteOnly`].
    pub fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, PipeError> {
        Ok(std::mem::take(self.receive(maxlength, Patience::Forever)?))
    }

    /// [`recv_bytes`](Connection::recv_bytes) only if a whole message has
    /// arrived; never waits. A half-arrived message is kept for the next
    /// receive, as for [`try_recv`](Connection::try_recv).
    ///
    /// # Blocking
    ///
    /// Never: as [`try_recv`](Connection::try_recv).
    ///
    /// # Errors
    ///
    /// [`PipeError::Empty`]; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes) (`maxlength` applies to the
    /// whole message, and is checked as its fragments arrive).
    #[doc(alias = "recv_bytes_nowait")]
    pub fn try_recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, PipeError> {
        Ok(std::mem::take(self.receive(maxlength, Patience::Never)?))
    }

    /// Python's `recv_bytes_into(buf, offset)`: receives one message into
    /// `buf[offset..]` and returns its length.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// [`PipeError::OffsetTooLarge`] when `offset > buf.len()` (nothing is
    /// read); [`PipeError::BufferTooShort`] with the whole message, which is
    /// consumed, when it does not fit; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize, PipeError> {
        self.receive_into(buf, offset, Patience::Forever)
    }

    /// [`recv_bytes_into`](Connection::recv_bytes_into) only if a whole
    /// message has arrived; never waits and, for a message that fits `buf`,
    /// allocates nothing (the receive for hot polling loops). A half-arrived
    /// message is kept for the next receive, as for
    /// [`try_recv`](Connection::try_recv).
    ///
    /// # Blocking
    ///
    /// Never: as [`try_recv`](Connection::try_recv).
    ///
    /// # Errors
    ///
    /// [`PipeError::Empty`]; otherwise as
    /// [`recv_bytes_into`](Connection::recv_bytes_into).
    #[doc(alias = "recv_bytes_into_nowait")]
    #[inline]
    pub fn try_recv_bytes_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
    ) -> Result<usize, PipeError> {
        self.receive_into(buf, offset, Patience::Never)
    }

    #[inline]
    fn receive_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        patience: Patience,
    ) -> Result<usize, PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        if offset > buf.len() {
            return Err(PipeError::OffsetTooLarge);
        }
        inc.begin();
        let room = &mut buf[offset..];
        if inc.partial.is_empty() {
            // A whole message that fits goes straight from the ring to `buf`.
            let fragment = inc.fragment;
            let first = inc.next_record(segment, policy, patience, |p, msg| {
                if p.len() == fragment {
                    msg.extend_from_slice(p); // the first of several
                    None
                } else if p.len() <= room.len() {
                    copy_into(&mut room[..p.len()], p);
                    Some(Ok(p.len()))
                } else {
                    Some(Err(p.to_vec()))
                }
            })?;
            match first {
                Some(Ok(len)) => {
                    self.received.one(len);
                    return Ok(len);
                }
                Some(Err(msg)) => {
                    self.received.one(msg.len());
                    return Err(PipeError::BufferTooShort(msg));
                }
                None => {}
            }
        }
        let msg = self.receive_rest(None, patience)?;
        if msg.len() > room.len() {
            return Err(PipeError::BufferTooShort(std::mem::take(msg)));
        }
        let len = msg.len();
        room[..len].copy_from_slice(msg);
        recycle(msg);
        Ok(len)
    }

    fn recv_value<T: Message>(&mut self, patience: Patience) -> Result<T, PipeError> {
        let msg = self.receive(None, patience)?;
        let value = T::decode(msg).map_err(PipeError::from);
        recycle(msg);
        value
    }

    /// Every receive ends here: reads the rest of the current message
    /// (after the fragments an earlier call that gave up left) and returns
    /// it, whole, in [`Incoming::partial`](super::Incoming), which the
    /// caller empties.
    fn receive(
        &mut self,
        maxlength: Option<usize>,
        patience: Patience,
    ) -> Result<&mut Vec<u8>, PipeError> {
        if let Some(inc) = self.incoming.as_mut() {
            inc.begin();
        }
        self.receive_rest(maxlength, patience)
    }

    /// [`receive`](Connection::receive) within a receive that began
    /// already ([`Incoming::begin`](super::Incoming)).
    fn receive_rest(
        &mut self,
        maxlength: Option<usize>,
        patience: Patience,
    ) -> Result<&mut Vec<u8>, PipeError> {
        let limit = maxlength.unwrap_or(usize::MAX);
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        if !inc.read_rest(segment, policy, patience, limit)? {
            self.stop_reading();
            return Err(PipeError::BadMessageLength { maxlength: limit });
        }
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        self.received.one(inc.partial.len());
        Ok(&mut inc.partial)
    }
}
