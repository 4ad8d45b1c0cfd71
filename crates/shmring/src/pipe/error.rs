//! The errors of a [`Connection`](super::Connection), one family per
//! operation (see the [module docs](super#coming-from-python) for Python's
//! exceptions, one variant each):
//!
//! | operation | blocking | `try_` | `_timeout` / `_deadline` |
//! |---|---|---|---|
//! | `send`, `send_bytes` | [`SendError`] | [`TrySendError`] | [`SendTimeoutError`] |
//! | `recv`, `recv_bytes`, `recv_bytes_into` | [`RecvError`] | [`TryRecvError`] | [`RecvTimeoutError`] |
//! | `poll` | [`RecvError`] | [`RecvError`] | [`RecvError`] |
//!
//! A send borrows its message (`&T`, `&[u8]`), so no error carries it back:
//! the send errors have no type parameter and no `into_inner`.

use std::fmt;

use shmring_core::error::{Corrupted, PopError, PushError};

use crate::codec::CodecError;

/// Why a send failed, in a way that waiting longer would not change.
///
/// The blocking [`send`](super::Connection::send) and
/// [`send_bytes`](super::Connection::send_bytes) return it; the `try_` and
/// timed forms wrap it ([`TrySendError::Send`],
/// [`SendTimeoutError::Send`]). `Display` is lowercase and quotes Python's
/// message where Python has one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Python's `BrokenPipeError`: the other end closed, or its process died,
    /// so nothing sent would ever be read. A message interrupted by it is
    /// never delivered.
    BrokenPipe,
    /// Python's `OSError("handle is closed")`: this connection was closed, or
    /// handed to a child process.
    HandleClosed,
    /// Python's `OSError("connection is read-only")`: sending on the reading
    /// end of a simplex pipe.
    ReadOnly,
    /// Python's `ValueError("buffer length < offset")` from `send_bytes`.
    OffsetBeyondBuffer,
    /// Python's `ValueError("buffer length < offset + size")` from
    /// `send_bytes`.
    SizeBeyondBuffer,
    /// The message needs more room than the ring can ever offer at once, so
    /// a send of all of it or nothing (`try_send*`, `send*_timeout`,
    /// `send*_deadline`) can never send it. Nothing was written. Never
    /// returned by the blocking [`send`](super::Connection::send) and
    /// [`send_bytes`](super::Connection::send_bytes), which stream a message
    /// fragment by fragment and have no such limit. No Python counterpart.
    TooLarge {
        /// The length of the message.
        len: usize,
        /// The longest message that fits the ring at once
        /// ([`Connection::max_whole_message`](super::Connection::max_whole_message)).
        max: usize,
    },
    /// The value could not be encoded (Python's pickling errors).
    Encode(CodecError),
    /// The pipe's shared memory is inconsistent (a buggy or hostile peer).
    Corrupted(Corrupted),
}

/// Why a `try_send`/`try_send_bytes` sent nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// No room for the whole message right now: nothing was written; try
    /// again once the reader has caught up. No Python counterpart (Python's
    /// send blocks).
    Full,
    /// The send failed for good: see [`SendError`].
    Send(SendError),
}

/// Why a `send_timeout`/`send_deadline` (or their `send_bytes` forms)
/// sent nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendTimeoutError {
    /// The time ran out before there was room for the whole message:
    /// nothing was written.
    Timeout,
    /// The send failed for good: see [`SendError`].
    Send(SendError),
}

/// Why a receive (or a poll) failed, in a way that waiting longer would not
/// change.
///
/// The blocking [`recv`](super::Connection::recv),
/// [`recv_bytes`](super::Connection::recv_bytes) and
/// [`recv_bytes_into`](super::Connection::recv_bytes_into) return it, and
/// every form of `poll`; the `try_` and timed receives wrap it
/// ([`TryRecvError::Recv`], [`RecvTimeoutError::Recv`]). `Display` is
/// lowercase and quotes Python's message where Python has one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// Python's `EOFError`: nothing is left to read and the other end closed,
    /// or its process died. Only reported once every message the other end
    /// sent before that has been read.
    Eof,
    /// Python's `OSError("got end of file during message")`: the other end
    /// closed or died in the middle of sending a message larger than one
    /// fragment; the part received is discarded. Also when the writer died
    /// in the middle of one and another process took its end over before
    /// anyone noticed: then the next receive returns the new writer's first
    /// message (see the [framing](super#framing)).
    TruncatedMessage,
    /// Python's `OSError("handle is closed")`: this connection was closed, or
    /// handed to a child process.
    HandleClosed,
    /// Python's `OSError("connection is write-only")`: receiving on the
    /// writing end of a simplex pipe, or on a duplex end after a
    /// [`BadMessageLength`](RecvError::BadMessageLength).
    WriteOnly,
    /// Python's `OSError("bad message length")`: a message longer than the
    /// `maxlength` given to `recv_bytes`. The connection is no longer
    /// readable: a duplex end becomes write-only, a read-only end is closed.
    BadMessageLength {
        /// The limit the message exceeded.
        maxlength: usize,
    },
    /// Python's `multiprocessing.BufferTooShort`: the message did not fit in
    /// the buffer given to `recv_bytes_into`. It carries the whole message,
    /// which has been consumed.
    BufferTooShort(Vec<u8>),
    /// Python's `ValueError("offset too large")` from `recv_bytes_into`
    /// (nothing was read).
    OffsetTooLarge,
    /// The bytes received could not be decoded as the type asked for
    /// (Python's unpickling errors). The message is consumed.
    Decode(CodecError),
    /// The pipe's shared memory is inconsistent (a buggy or hostile peer).
    Corrupted(Corrupted),
}

/// Why a `try_recv` (or `try_recv_bytes`, `try_recv_bytes_into`) returned
/// no message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message has arrived whole yet. Not an end of file, which is
    /// [`RecvError::Eof`]. A part of a long message already taken off the
    /// ring stays in the connection for the next receive. No Python
    /// counterpart (Python polls first).
    Empty,
    /// The receive failed for good: see [`RecvError`].
    Recv(RecvError),
}

/// Why a `recv_timeout`/`recv_deadline` (or their bytes forms) returned no
/// message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The time ran out before a whole message arrived. The part of a
    /// message received so far stays in the connection for the next
    /// receive.
    Timeout,
    /// The receive failed for good: see [`RecvError`].
    Recv(RecvError),
}

impl SendError {
    /// Whether this is [`SendError::BrokenPipe`] (the other end is gone).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, SendError::BrokenPipe)
    }
}

impl RecvError {
    /// Whether this is [`RecvError::Eof`] (everything was read and the other
    /// end is gone).
    pub fn is_eof(&self) -> bool {
        matches!(self, RecvError::Eof)
    }
}

impl TrySendError {
    /// Whether this is [`TrySendError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full)
    }
}

impl SendTimeoutError {
    /// Whether this is [`SendTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout)
    }
}

impl TryRecvError {
    /// Whether this is [`TryRecvError::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }
}

impl RecvTimeoutError {
    /// Whether this is [`RecvTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::BrokenPipe => f.write_str("broken pipe"),
            SendError::HandleClosed => f.write_str("handle is closed"),
            SendError::ReadOnly => f.write_str("connection is read-only"),
            SendError::OffsetBeyondBuffer => f.write_str("buffer length < offset"),
            SendError::SizeBeyondBuffer => f.write_str("buffer length < offset + size"),
            SendError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes never fits the ring at once (at most {max}); only a blocking send can stream it"
            ),
            SendError::Encode(e) => e.fmt(f),
            SendError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Eof => f.write_str("end of file: the other end closed or its process died"),
            RecvError::TruncatedMessage => f.write_str("got end of file during message"),
            RecvError::HandleClosed => f.write_str("handle is closed"),
            RecvError::WriteOnly => f.write_str("connection is write-only"),
            RecvError::BadMessageLength { .. } => f.write_str("bad message length"),
            RecvError::BufferTooShort(msg) => {
                write!(f, "buffer too short for a message of {} bytes", msg.len())
            }
            RecvError::OffsetTooLarge => f.write_str("offset too large"),
            RecvError::Decode(e) => e.fmt(f),
            RecvError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full => f.write_str("no room for the message right now"),
            TrySendError::Send(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout => f.write_str("timed out"),
            SendTimeoutError::Send(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no message to receive right now"),
            TryRecvError::Recv(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out"),
            RecvTimeoutError::Recv(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Encode(e) => Some(e),
            SendError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvError::Decode(e) => Some(e),
            RecvError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl std::error::Error for TrySendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrySendError::Full => None,
            TrySendError::Send(e) => Some(e),
        }
    }
}

impl std::error::Error for SendTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendTimeoutError::Timeout => None,
            SendTimeoutError::Send(e) => Some(e),
        }
    }
}

impl std::error::Error for TryRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryRecvError::Empty => None,
            TryRecvError::Recv(e) => Some(e),
        }
    }
}

impl std::error::Error for RecvTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecvTimeoutError::Timeout => None,
            RecvTimeoutError::Recv(e) => Some(e),
        }
    }
}

impl From<SendError> for TrySendError {
    fn from(e: SendError) -> Self {
        TrySendError::Send(e)
    }
}

impl From<SendError> for SendTimeoutError {
    fn from(e: SendError) -> Self {
        SendTimeoutError::Send(e)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        TryRecvError::Recv(e)
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        RecvTimeoutError::Recv(e)
    }
}

// The internal operations (`send_until`, `recv_until`, ...) return the
// try-shaped error, whose would-block variant means "gave up at its
// `Until`": `Full`/`Empty` for a try, `Timeout` for a timed call, and
// nothing for `Until::Never`, which never gives up. The public forms map it
// with these.

impl TrySendError {
    /// A timed send's view: it gave up because its time ran out.
    pub(super) fn timed(self) -> SendTimeoutError {
        match self {
            TrySendError::Full => SendTimeoutError::Timeout,
            TrySendError::Send(e) => SendTimeoutError::Send(e),
        }
    }
}

impl TryRecvError {
    /// A timed receive's view: it gave up because its time ran out.
    pub(super) fn timed(self) -> RecvTimeoutError {
        match self {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Recv(e) => RecvTimeoutError::Recv(e),
        }
    }
}

/// Runs `op`, an internal send with `Until::Never`, to completion: the
/// blocking forms. `Full` ("gave up") cannot come from a call that never
/// gives up; should it, the send is simply tried again (nothing was
/// written: a send that gives up writes nothing).
pub(super) fn send_forever(
    mut op: impl FnMut() -> Result<(), TrySendError>,
) -> Result<(), SendError> {
    loop {
        match op() {
            Ok(()) => return Ok(()),
            Err(TrySendError::Send(e)) => return Err(e),
            Err(TrySendError::Full) => {}
        }
    }
}

/// Runs `op`, an internal receive with `Until::Never`, to completion: the
/// blocking forms. `Empty` ("gave up") cannot come from a call that never
/// gives up; should it, the receive goes on where it stopped (the part
/// received is kept).
pub(super) fn recv_forever<R>(
    mut op: impl FnMut() -> Result<R, TryRecvError>,
) -> Result<R, RecvError> {
    loop {
        match op() {
            Ok(r) => return Ok(r),
            Err(TryRecvError::Recv(e)) => return Err(e),
            Err(TryRecvError::Empty) => {}
        }
    }
}

/// A failed push of one record that was to go in as it waited (`Full` and
/// `Timeout` are the give-ups of a bounded wait and handled by the caller
/// before this). `TooLarge` cannot happen: fragments are at most the ring's
/// maximum record.
pub(super) fn from_push(e: PushError) -> SendError {
    match e {
        PushError::Closed => SendError::BrokenPipe,
        PushError::Corrupted(c) => SendError::Corrupted(c),
        PushError::Full | PushError::Timeout | PushError::TooLarge { .. } => {
            SendError::Corrupted(Corrupted {
                what: "pipe ring refused a fragment",
                value: 0,
            })
        }
    }
}

/// A failed read of one record, `mid_message` when earlier fragments of the
/// same message were already read. `Empty`/`Timeout` are handled by callers.
pub(super) fn from_pop(e: PopError, mid_message: bool) -> RecvError {
    match e {
        PopError::Closed | PopError::Empty | PopError::Timeout => eof(mid_message),
        PopError::Corrupted(c) => RecvError::Corrupted(c),
    }
}

/// End of file, before or in the middle of a message.
pub(super) fn eof(mid_message: bool) -> RecvError {
    if mid_message {
        RecvError::TruncatedMessage
    } else {
        RecvError::Eof
    }
}

/// Why [`Connection::open`](super::Connection::open) or
/// [`Connection::open_inherited`](super::Connection::open_inherited) failed:
/// the pipe could not be opened, or the end could not be claimed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// Opening the pipe failed (not found, another kind, a corrupted
    /// header, a missing or malformed variable, …).
    Open(crate::OpenError),
    /// The end is held by a live process, or its ring is inconsistent.
    Role(crate::RoleError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Open(e) => write!(f, "cannot open the pipe: {e}"),
            ConnectError::Role(e) => write!(f, "cannot claim the pipe end: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Open(e) => Some(e),
            ConnectError::Role(e) => Some(e),
        }
    }
}

impl From<crate::OpenError> for ConnectError {
    fn from(e: crate::OpenError) -> Self {
        ConnectError::Open(e)
    }
}

impl From<crate::RoleError> for ConnectError {
    fn from(e: crate::RoleError) -> Self {
        ConnectError::Role(e)
    }
}
