//! The receives of a [`Connection`]: Python's blocking `recv`,
//! `recv_bytes` and `recv_bytes_into`, and the `try_`, `_timeout` and
//! `_deadline` forms, which keep a half-received message for the next call.
//!
//! Each public form only says how long it may wait (an [`Until`]) and calls
//! one of [`recv_until`](Connection::recv_until),
//! [`recv_bytes_until`](Connection::recv_bytes_until) and
//! [`recv_bytes_into_until`](Connection::recv_bytes_into_until); all three
//! read records with [`Incoming::next_record`](super::super::ends::Incoming).

use std::time::{Duration, Instant};

use shmring_core::wait::Until;

use super::super::ends::{pinned, Arrived, Incoming};
use super::Connection;
use crate::codec::Message;
use crate::pipe::error::{recv_forever, RecvError, RecvTimeoutError, TryRecvError};
use crate::sys::clock::until_instant;

/// Empties a receive buffer for the next message, dropping its memory if a
/// huge message made it huge.
fn recycle(msg: &mut Vec<u8>) {
    msg.clear();
    if msg.capacity() > 1 << 20 {
        *msg = Vec::new();
    }
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
    /// As [`recv_bytes`](Connection::recv_bytes), or [`RecvError::Decode`]
    /// (the message is consumed).
    pub fn recv<T: Message>(&mut self) -> Result<T, RecvError> {
        recv_forever(|| self.recv_until(Until::Never))
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
    /// [`TryRecvError::Empty`] when no message is complete yet (distinct
    /// from [`RecvError::Eof`]); otherwise as [`recv`](Connection::recv).
    #[doc(alias = "recv_nowait")]
    pub fn try_recv<T: Message>(&mut self) -> Result<T, TryRecvError> {
        self.recv_until(Until::Now)
    }

    /// Receives and decodes a message, waiting at most `timeout` for all of
    /// it. Not in Python, where `poll(timeout)` then `recv()` comes close
    /// (but waits only for the first fragment). A zero timeout is
    /// [`try_recv`](Connection::try_recv).
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
    /// [`RecvTimeoutError::Timeout`]; otherwise as
    /// [`recv`](Connection::recv).
    pub fn recv_timeout<T: Message>(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Until::after(timeout))
            .map_err(TryRecvError::timed)
    }

    /// [`recv_timeout`](Connection::recv_timeout) until `deadline` instead
    /// of for a duration; a deadline already past is
    /// [`try_recv`](Connection::try_recv).
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    pub fn recv_deadline<T: Message>(&mut self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(until_instant(deadline))
            .map_err(TryRecvError::timed)
    }

    /// Python's `recv_bytes(maxlength)`: receives one whole message.
    ///
    /// # Blocking
    ///
    /// Until a message arrives or the other end closes or dies: spins for a
    /// few microseconds, then sleeps, re-checking the other end's liveness
    /// every 100 ms. No timeout, like Python's: [`poll`](Connection::poll)
    /// first, or use [`recv_bytes_timeout`](Connection::recv_bytes_timeout).
    ///
    /// # Errors
    ///
    /// [`RecvError::Eof`] once the other end closed or died and everything
    /// it sent was read ([`RecvError::TruncatedMessage`] if it went in the
    /// middle of a message, or died there and a new writer took the end
    /// over: the next receive goes on); [`RecvError::BadMessageLength`] for
    /// a message longer than `maxlength`, after which this end is no longer
    /// readable (see there); [`RecvError::HandleClosed`];
    /// [`RecvError::WriteOnly`].
    pub fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, RecvError> {
        recv_forever(|| self.recv_bytes_until(maxlength, Until::Never))
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
    /// [`TryRecvError::Empty`]; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes) (`maxlength` applies to the
    /// whole message, and is checked as its fragments arrive).
    #[doc(alias = "recv_bytes_nowait")]
    pub fn try_recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, TryRecvError> {
        self.recv_bytes_until(maxlength, Until::Now)
    }

    /// [`recv_bytes`](Connection::recv_bytes), waiting at most `timeout`
    /// for the whole message.
    ///
    /// # Blocking
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`]; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_timeout(
        &mut self,
        maxlength: Option<usize>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RecvTimeoutError> {
        self.recv_bytes_until(maxlength, Until::after(timeout))
            .map_err(TryRecvError::timed)
    }

    /// [`recv_bytes_timeout`](Connection::recv_bytes_timeout) until
    /// `deadline` instead of for a duration.
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_timeout`](Connection::recv_bytes_timeout).
    pub fn recv_bytes_deadline(
        &mut self,
        maxlength: Option<usize>,
        deadline: Instant,
    ) -> Result<Vec<u8>, RecvTimeoutError> {
        self.recv_bytes_until(maxlength, until_instant(deadline))
            .map_err(TryRecvError::timed)
    }

    /// Python's `recv_bytes_into(buf, offset)`: receives one message into
    /// `buf[offset..]` and returns its length. Each record of the message
    /// goes straight from the ring into `buf`: a message is copied once on
    /// its way out.
    ///
    /// When the call fails (or, for its `try_`, `_timeout` and `_deadline`
    /// forms, gives up), `buf[offset..]` may hold part of the message: the
    /// bytes there are unspecified. `buf[..offset]` is never written.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// [`RecvError::OffsetTooLarge`] when `offset > buf.len()` (nothing is
    /// read); [`RecvError::BufferTooShort`] with the whole message, which is
    /// consumed, when it does not fit; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize, RecvError> {
        recv_forever(|| self.recv_bytes_into_until(buf, offset, Until::Never))
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
    /// [`TryRecvError::Empty`]; otherwise as
    /// [`recv_bytes_into`](Connection::recv_bytes_into).
    #[doc(alias = "recv_bytes_into_nowait")]
    #[inline]
    pub fn try_recv_bytes_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
    ) -> Result<usize, TryRecvError> {
        self.recv_bytes_into_until(buf, offset, Until::Now)
    }

    /// [`recv_bytes_into`](Connection::recv_bytes_into), waiting at most
    /// `timeout` for the whole message.
    ///
    /// # Blocking
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`]; otherwise as
    /// [`recv_bytes_into`](Connection::recv_bytes_into).
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_bytes_into_until(buf, offset, Until::after(timeout))
            .map_err(TryRecvError::timed)
    }

    /// [`recv_bytes_into_timeout`](Connection::recv_bytes_into_timeout)
    /// until `deadline` instead of for a duration.
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_into_timeout`](Connection::recv_bytes_into_timeout).
    pub fn recv_bytes_into_deadline(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        deadline: Instant,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_bytes_into_until(buf, offset, until_instant(deadline))
            .map_err(TryRecvError::timed)
    }

    /// Receives one message into a buffer that `f` makes once the
    /// message's length is known: `f` gets the [`Arrived`] message, makes
    /// a buffer of [`len`](Arrived::len) bytes and has it filled with
    /// [`copy_to_slice`](Arrived::copy_to_slice). A message of at most one
    /// fragment (a quarter of the ring by default) goes straight from the
    /// ring into that buffer; a longer one is assembled first. What `f`
    /// returns is returned. Not in Python: its `recv_bytes` makes a `bytes`
    /// of the right length this way (the binding's own `recv_bytes`).
    ///
    /// The message is consumed once `f` is called, whatever `f` does.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes) without a `maxlength`.
    pub fn recv_bytes_with<R>(
        &mut self,
        f: impl FnOnce(&Arrived<'_>) -> R,
    ) -> Result<R, RecvError> {
        let mut f = Some(f);
        recv_forever(|| self.recv_bytes_with_until(&mut f, Until::Never))
    }

    /// [`recv_bytes_with`](Connection::recv_bytes_with) only if a whole
    /// message has arrived; never waits (`f` is not called then). A
    /// half-arrived message is kept for the next receive, as for
    /// [`try_recv`](Connection::try_recv).
    ///
    /// # Blocking
    ///
    /// Never: as [`try_recv`](Connection::try_recv).
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`]; otherwise as
    /// [`recv_bytes_with`](Connection::recv_bytes_with).
    pub fn try_recv_bytes_with<R>(
        &mut self,
        f: impl FnOnce(&Arrived<'_>) -> R,
    ) -> Result<R, TryRecvError> {
        self.recv_bytes_with_until(&mut Some(f), Until::Now)
    }

    /// [`recv_bytes_with`](Connection::recv_bytes_with), waiting at most
    /// `timeout` for the whole message (`f` is not called if it gives up).
    ///
    /// # Blocking
    ///
    /// As [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`]; otherwise as
    /// [`recv_bytes_with`](Connection::recv_bytes_with).
    pub fn recv_bytes_with_timeout<R>(
        &mut self,
        f: impl FnOnce(&Arrived<'_>) -> R,
        timeout: Duration,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_bytes_with_until(&mut Some(f), Until::after(timeout))
            .map_err(TryRecvError::timed)
    }

    /// [`recv_bytes_with_timeout`](Connection::recv_bytes_with_timeout)
    /// until `deadline` instead of for a duration.
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`recv_timeout`](Connection::recv_timeout).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_with_timeout`](Connection::recv_bytes_with_timeout).
    pub fn recv_bytes_with_deadline<R>(
        &mut self,
        f: impl FnOnce(&Arrived<'_>) -> R,
        deadline: Instant,
    ) -> Result<R, RecvTimeoutError> {
        self.recv_bytes_with_until(&mut Some(f), until_instant(deadline))
            .map_err(TryRecvError::timed)
    }

    /// The reading half, for a receive: `HandleClosed` on a closed end,
    /// `WriteOnly` on one that does not read.
    #[inline]
    fn reading(&mut self) -> Result<&mut Incoming, RecvError> {
        if self.closed() {
            return Err(RecvError::HandleClosed);
        }
        self.incoming.get_mut().as_mut().ok_or(RecvError::WriteOnly)
    }

    /// Every `recv_bytes_with`: one whole message handed to the closure in
    /// `f` (see [`Incoming::read_with`](super::super::ends::Incoming));
    /// `Empty` means it gave up, the closure still in `f`.
    fn recv_bytes_with_until<R, F: FnOnce(&Arrived<'_>) -> R>(
        &mut self,
        f: &mut Option<F>,
        until: Until,
    ) -> Result<R, TryRecvError> {
        let inc = self.reading()?;
        inc.begin();
        let (r, len) = inc.read_with(pinned(until), f)?;
        self.received.one(len);
        Ok(r)
    }

    /// Every `recv`: one whole message, decoded; `Empty` means it gave up.
    /// The message is assembled straight from the ring in the connection's
    /// buffer, which a type that keeps its bytes as they are (`Vec<u8>`,
    /// `String`) takes over ([`Message::decode_from`]): one copy out of the
    /// ring, none after.
    fn recv_until<T: Message>(&mut self, until: Until) -> Result<T, TryRecvError> {
        let msg = self.receive(None, until)?;
        let value = T::decode_from(msg).map_err(|e| RecvError::Decode(e).into());
        recycle(msg);
        value
    }

    /// Every `recv_bytes`: one whole message of at most `maxlength` bytes;
    /// `Empty` means it gave up. The message is assembled straight from the
    /// ring in the `Vec` returned.
    fn recv_bytes_until(
        &mut self,
        maxlength: Option<usize>,
        until: Until,
    ) -> Result<Vec<u8>, TryRecvError> {
        Ok(std::mem::take(self.receive(maxlength, until)?))
    }

    /// Every `recv_bytes_into`: one whole message into `buf[offset..]`;
    /// `Empty` means it gave up. Each record goes straight from the ring to
    /// `buf` (see [`Incoming::read_into`](super::super::ends::Incoming)).
    #[inline]
    fn recv_bytes_into_until(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        until: Until,
    ) -> Result<usize, TryRecvError> {
        let inc = self.reading()?;
        if offset > buf.len() {
            return Err(RecvError::OffsetTooLarge.into());
        }
        inc.begin();
        match inc.read_into(pinned(until), &mut buf[offset..])? {
            Ok(len) => {
                self.received.one(len);
                Ok(len)
            }
            Err(msg) => {
                self.received.one(msg.len());
                Err(RecvError::BufferTooShort(msg).into())
            }
        }
    }

    /// The receives of a whole message into a `Vec` end here: reads the rest
    /// of the current message (after what an earlier call that gave up
    /// took) and returns it, whole, in
    /// [`Incoming::partial`](super::super::ends::Incoming), which the caller
    /// empties.
    fn receive(
        &mut self,
        maxlength: Option<usize>,
        until: Until,
    ) -> Result<&mut Vec<u8>, TryRecvError> {
        let limit = maxlength.unwrap_or(usize::MAX);
        let inc = self.reading()?;
        inc.begin();
        if !inc.read_rest(pinned(until), limit)? {
            self.stop_reading();
            return Err(RecvError::BadMessageLength { maxlength: limit }.into());
        }
        let inc = self
            .incoming
            .get_mut()
            .as_mut()
            .ok_or(RecvError::WriteOnly)?;
        self.received.one(inc.partial.len());
        Ok(&mut inc.partial)
    }
}
