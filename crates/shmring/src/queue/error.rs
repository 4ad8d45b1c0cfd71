//! The errors of the queue operations, one type per operation and form
//! (crossbeam's shape): a blocking call cannot report `Full`, `Empty` or
//! `Timeout`, and a try cannot report `Timeout`.
//!
//! | form | put | get | join |
//! |---|---|---|---|
//! | `x()` | [`PutError`] | [`GetError`] | [`JoinError`](super::JoinError) |
//! | `try_x()` | [`TryPutError`] (`Full`) | [`TryGetError`] (`Empty`) | [`TryJoinError`](super::TryJoinError) (`Unfinished`) |
//! | `x_timeout()`, `x_deadline()` | [`PutTimeoutError`] (`Timeout`) | [`GetTimeoutError`] (`Timeout`) | [`JoinTimeoutError`](super::JoinTimeoutError) (`Timeout`) |

use std::fmt;

use shmring_core::error::Corrupted;

use crate::codec::CodecError;

/// Why a put failed for good: waiting longer would not help. The item
/// comes back in every case.
#[derive(Debug)]
pub enum PutError<T> {
    /// This handle was closed: Python's `ValueError("Queue is closed")`
    /// (`OSError("handle is closed")` for a SimpleQueue).
    Closed(T),
    /// The queue was shut down (by any handle, in any process): Python
    /// 3.13's `queue.ShutDown`.
    ShutDown(T),
    /// The encoded message (of this many bytes) exceeds `max_message`.
    TooLarge(T, usize),
    /// The item could not be encoded.
    Encode(T, CodecError),
    /// This handle has no producer ring yet and every one of the queue's
    /// rings (this many) is owned by a live handle: create the queue with
    /// more `producers`, or drop a handle that puts.
    NoFreeRing(T, usize),
    /// The shared state is inconsistent.
    Corrupted(T, Corrupted),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Closed(t)
            | PutError::ShutDown(t)
            | PutError::TooLarge(t, _)
            | PutError::Encode(t, _)
            | PutError::NoFreeRing(t, _)
            | PutError::Corrupted(t, _) => t,
        }
    }

    /// Whether the handle is closed or the queue shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_) | PutError::ShutDown(_))
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Closed(_) => f.write_str("handle is closed"),
            PutError::ShutDown(_) => f.write_str("queue is shut down"),
            PutError::TooLarge(_, len) => write!(f, "message of {len} bytes exceeds max_message"),
            PutError::Encode(_, e) => write!(f, "cannot encode the item: {e}"),
            PutError::NoFreeRing(_, rings) => write!(
                f,
                "all {rings} producer rings are owned by live handles (raise `producers` when creating the queue)"
            ),
            PutError::Corrupted(_, e) => e.fmt(f),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Encode(_, e) => Some(e),
            PutError::Corrupted(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`try_put`](super::Queue::try_put) did not put.
#[derive(Debug)]
pub enum TryPutError<T> {
    /// No room right now: Python's `queue.Full`.
    Full(T),
    /// The put failed for good.
    Put(PutError<T>),
}

/// Why [`put_timeout`](super::Queue::put_timeout) or
/// [`put_deadline`](super::Queue::put_deadline) did not put.
#[derive(Debug)]
pub enum PutTimeoutError<T> {
    /// Still no room when the time was up: Python's `queue.Full`.
    Timeout(T),
    /// The put failed for good.
    Put(PutError<T>),
}

/// Why a get failed for good: waiting longer would not help.
#[derive(Debug)]
pub enum GetError {
    /// This handle was closed.
    Closed,
    /// The queue was shut down and nothing is left in it.
    ShutDown,
    /// A message could not be decoded (it was taken off the queue).
    Decode(CodecError),
    /// The shared state is inconsistent.
    Corrupted(Corrupted),
    /// A JoinableQueue handle holds so many tasks not yet marked done
    /// ([`MAX_HELD`](shmring_core::joinable::MAX_HELD)) that it cannot count
    /// one more: call `task_done`, or use more handles.
    TooManyTasks,
}

impl GetError {
    /// Whether the handle is closed or the queue shut down and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, GetError::Closed | GetError::ShutDown)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => f.write_str("handle is closed"),
            GetError::ShutDown => f.write_str("queue is shut down"),
            GetError::Decode(e) => write!(f, "cannot decode the message: {e}"),
            GetError::Corrupted(e) => e.fmt(f),
            GetError::TooManyTasks => f.write_str("too many tasks held by this handle"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Decode(e) => Some(e),
            GetError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`try_get`](super::Queue::try_get) returned no item.
#[derive(Debug)]
pub enum TryGetError {
    /// Nothing there right now: Python's `queue.Empty`.
    Empty,
    /// The get failed for good.
    Get(GetError),
}

/// Why [`get_timeout`](super::Queue::get_timeout) or
/// [`get_deadline`](super::Queue::get_deadline) returned no item.
#[derive(Debug)]
pub enum GetTimeoutError {
    /// Nothing arrived in time: Python's `queue.Empty`.
    Timeout,
    /// The get failed for good.
    Get(GetError),
}

/// The would-block variant, the wrapping variant, `From`, `Display`,
/// `Error` and the accessors of one try or timeout error type.
macro_rules! wrapper_error {
    ($ty:ident<T> { $wait:ident(T) => $msg:literal, $inner_var:ident($inner:ident<T>) }, $pred:ident) => {
        impl<T> $ty<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $ty::$wait(t) => t,
                    $ty::$inner_var(e) => e.into_inner(),
                }
            }

            #[doc = concat!("Whether this is `", stringify!($wait), "`.")]
            pub fn $pred(&self) -> bool {
                matches!(self, $ty::$wait(_))
            }

            /// Whether the handle or the queue is closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, $ty::$inner_var(e) if e.is_closed())
            }
        }
        impl<T> From<$inner<T>> for $ty<T> {
            fn from(e: $inner<T>) -> Self {
                $ty::$inner_var(e)
            }
        }
        impl<T> fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$wait(_) => f.write_str($msg),
                    $ty::$inner_var(e) => e.fmt(f),
                }
            }
        }
        impl<T: fmt::Debug + 'static> std::error::Error for $ty<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $ty::$wait(_) => None,
                    $ty::$inner_var(e) => Some(e),
                }
            }
        }
    };
    ($ty:ident { $wait:ident => $msg:literal, $inner_var:ident($inner:ident) }, $pred:ident) => {
        impl $ty {
            #[doc = concat!("Whether this is `", stringify!($wait), "`.")]
            pub fn $pred(&self) -> bool {
                matches!(self, $ty::$wait)
            }

            /// Whether the handle is closed or the queue shut down and drained.
            pub fn is_closed(&self) -> bool {
                matches!(self, $ty::$inner_var(e) if e.is_closed())
            }
        }
        impl From<$inner> for $ty {
            fn from(e: $inner) -> Self {
                $ty::$inner_var(e)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::$wait => f.write_str($msg),
                    $ty::$inner_var(e) => e.fmt(f),
                }
            }
        }
        impl std::error::Error for $ty {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $ty::$wait => None,
                    $ty::$inner_var(e) => Some(e),
                }
            }
        }
    };
}
pub(crate) use wrapper_error;

wrapper_error!(TryPutError<T> { Full(T) => "queue is full", Put(PutError<T>) }, is_full);
wrapper_error!(PutTimeoutError<T> { Timeout(T) => "queue is full (timed out)", Put(PutError<T>) }, is_timeout);
wrapper_error!(TryGetError { Empty => "queue is empty", Get(GetError) }, is_empty);
wrapper_error!(GetTimeoutError { Timeout => "queue is empty (timed out)", Get(GetError) }, is_timeout);

impl<T> TryPutError<T> {
    /// The same outcome, reported by a `_timeout` or `_deadline` call.
    pub(super) fn timed_out(self) -> PutTimeoutError<T> {
        match self {
            TryPutError::Full(t) => PutTimeoutError::Timeout(t),
            TryPutError::Put(e) => PutTimeoutError::Put(e),
        }
    }
}

impl TryGetError {
    /// The same outcome, reported by a `_timeout` or `_deadline` call.
    pub(super) fn timed_out(self) -> GetTimeoutError {
        match self {
            TryGetError::Empty => GetTimeoutError::Timeout,
            TryGetError::Get(e) => GetTimeoutError::Get(e),
        }
    }
}

/// A blocking put: `put_until(item, Until::Never)` never comes back
/// `Full`, but if it ever did, the item is simply offered again (no
/// impossible arm, no panic).
pub(super) fn put_forever<T>(
    mut item: T,
    mut put_until: impl FnMut(T) -> Result<(), TryPutError<T>>,
) -> Result<(), PutError<T>> {
    loop {
        match put_until(item) {
            Ok(()) => return Ok(()),
            Err(TryPutError::Put(e)) => return Err(e),
            Err(TryPutError::Full(back)) => item = back,
        }
    }
}

/// A blocking get, as [`put_forever`].
pub(super) fn get_forever<R>(
    mut get_until: impl FnMut() -> Result<R, TryGetError>,
) -> Result<R, GetError> {
    loop {
        match get_until() {
            Ok(r) => return Ok(r),
            Err(TryGetError::Get(e)) => return Err(e),
            Err(TryGetError::Empty) => {}
        }
    }
}
