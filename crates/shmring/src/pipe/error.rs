//! [`PipeError`]: Python's exceptions of `Connection`, one variant each.

use std::fmt;

use shmring_core::error::{Corrupted, PopError, PushError};

use crate::codec::CodecError;

/// Why a [`Connection`](super::Connection) operation failed.
///
/// `Display` is lowercase and, where Python has one, quotes Python's message
/// exactly (`"handle is closed"`, `"bad message length"`, …), so code ported
/// from `multiprocessing` reads the same.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipeError {
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
    /// Python's `BrokenPipeError`: the other end closed, or its process died,
    /// so nothing sent would ever be read.
    BrokenPipe,
    /// Python's `OSError("handle is closed")`: this connection was closed, or
    /// handed to a child process.
    HandleClosed,
    /// Python's `OSError("connection is read-only")`: sending on the reading
    /// end of a simplex pipe.
    ReadOnly,
    /// Python's `OSError("connection is write-only")`: receiving on the
    /// writing end of a simplex pipe, or on a duplex end after a
    /// [`BadMessageLength`](PipeError::BadMessageLength).
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
    /// Python's `ValueError("offset too large")` from `recv_bytes_into`.
    OffsetTooLarge,
    /// Python's `ValueError("buffer length < offset")` from `send_bytes`.
    OffsetBeyondBuffer,
    /// Python's `ValueError("buffer length < offset + size")` from
    /// `send_bytes`.
    SizeBeyondBuffer,
    /// The value could not be encoded, or the bytes received could not be
    /// decoded as the type asked for (Python's unpickling errors).
    Codec(CodecError),
    /// The pipe's shared memory is inconsistent (a buggy or hostile peer).
    Corrupted(Corrupted),
    /// Nothing to receive right now (`try_recv`, `try_recv_bytes`): no
    /// message has arrived whole yet. Not an end of file, which is
    /// [`Eof`](PipeError::Eof). No Python counterpart (Python polls first).
    Empty,
    /// No room for the whole message right now (`try_send`,
    /// `try_send_bytes`): nothing was written; try again once the reader
    /// has caught up. No Python counterpart (Python's send blocks).
    Full,
    /// The timeout of `recv_timeout` or `send_timeout` passed. A receive
    /// keeps the part of a message it got for the next call; a send wrote
    /// nothing.
    Timeout,
    /// The message needs more room than the ring can ever offer at once, so
    /// a call that sends all of it or nothing (`try_send`, `try_send_bytes`,
    /// `send_timeout`) can never send it. Nothing was written; the blocking
    /// [`send`](super::Connection::send), which streams it fragment by
    /// fragment, has no such limit.
    TooLarge {
        /// The length of the message.
        len: usize,
        /// The longest message that fits the ring at once
        /// ([`Connection::max_whole_message`](super::Connection::max_whole_message)).
        max: usize,
    },
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeError::Eof => f.write_str("end of file: the other end closed or its process died"),
            PipeError::TruncatedMessage => f.write_str("got end of file during message"),
            PipeError::BrokenPipe => f.write_str("broken pipe"),
            PipeError::HandleClosed => f.write_str("handle is closed"),
            PipeError::ReadOnly => f.write_str("connection is read-only"),
            PipeError::WriteOnly => f.write_str("connection is write-only"),
            PipeError::BadMessageLength { .. } => f.write_str("bad message length"),
            PipeError::BufferTooShort(msg) => {
                write!(f, "buffer too short for a message of {} bytes", msg.len())
            }
            PipeError::OffsetTooLarge => f.write_str("offset too large"),
            PipeError::OffsetBeyondBuffer => f.write_str("buffer length < offset"),
            PipeError::SizeBeyondBuffer => f.write_str("buffer length < offset + size"),
            PipeError::Codec(e) => e.fmt(f),
            PipeError::Corrupted(e) => e.fmt(f),
            PipeError::Empty => f.write_str("no message to receive right now"),
            PipeError::Full => f.write_str("no room for the message right now"),
            PipeError::Timeout => f.write_str("timed out"),
            PipeError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes never fits the ring at once (at most {max}); only a blocking send can stream it"
            ),
        }
    }
}

impl std::error::Error for PipeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipeError::Codec(e) => Some(e),
            PipeError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for PipeError {
    fn from(e: CodecError) -> Self {
        PipeError::Codec(e)
    }
}

/// A failed push of one record. `Full` and `Timeout` are handled by callers
/// (`Full` from a push that was to succeed means the ring lied); `TooLarge`
/// cannot happen (fragments are at most the ring's maximum record).
pub(super) fn from_push(e: PushError) -> PipeError {
    match e {
        PushError::Closed => PipeError::BrokenPipe,
        PushError::Corrupted(c) => PipeError::Corrupted(c),
        PushError::Timeout => PipeError::Timeout,
        PushError::Full | PushError::TooLarge { .. } => PipeError::Corrupted(Corrupted {
            what: "pipe ring refused a fragment",
            value: 0,
        }),
    }
}

/// A failed read of one record, `mid_message` when earlier fragments of the
/// same message were already read. `Empty`/`Timeout` are handled by callers.
pub(super) fn from_pop(e: PopError, mid_message: bool) -> PipeError {
    match e {
        PopError::Closed | PopError::Empty | PopError::Timeout => eof(mid_message),
        PopError::Corrupted(c) => PipeError::Corrupted(c),
    }
}

/// End of file, before or in the middle of a message.
pub(super) fn eof(mid_message: bool) -> PipeError {
    if mid_message {
        PipeError::TruncatedMessage
    } else {
        PipeError::Eof
    }
}
