//! Errors of the core operations.
//!
//! Per operation, not one big enum: a push can be `Full`, a pop `Empty`. A
//! value read from shared memory that breaks an invariant is [`Corrupted`],
//! never a panic: the memory may have been written by a buggy or hostile peer.

use core::fmt;

/// A value read from shared memory broke an invariant of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupted {
    /// Which field or check failed.
    pub what: &'static str,
    /// The offending value as found.
    pub value: u64,
}

impl Corrupted {
    pub(crate) const fn new(what: &'static str, value: u64) -> Self {
        Corrupted { what, value }
    }
}

impl fmt::Display for Corrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared memory corrupted: {} (found {:#x})",
            self.what, self.value
        )
    }
}

impl std::error::Error for Corrupted {}

/// Why a push did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// No room right now (only from non-blocking calls).
    Full,
    /// No room before the deadline.
    Timeout,
    /// The ring was closed, or its consumer is gone.
    Closed,
    /// The message is larger than the ring's maximum record.
    TooLarge {
        /// Length of the message.
        len: usize,
        /// The largest payload the ring accepts.
        max: usize,
    },
    /// The shared state is inconsistent.
    Corrupted(Corrupted),
}

/// Why a pop returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Nothing there right now (only from non-blocking calls).
    Empty,
    /// Nothing arrived before the deadline.
    Timeout,
    /// Closed (or its producer gone) and drained: nothing will ever arrive.
    Closed,
    /// The shared state is inconsistent.
    Corrupted(Corrupted),
}

impl From<Corrupted> for PushError {
    fn from(c: Corrupted) -> Self {
        PushError::Corrupted(c)
    }
}

impl From<Corrupted> for PopError {
    fn from(c: Corrupted) -> Self {
        PopError::Corrupted(c)
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full => f.write_str("ring is full"),
            PushError::Timeout => f.write_str("timed out waiting for room in the ring"),
            PushError::Closed => f.write_str("ring is closed"),
            PushError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the maximum of {max} bytes"
                )
            }
            PushError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopError::Empty => f.write_str("ring is empty"),
            PopError::Timeout => f.write_str("timed out waiting for a message"),
            PopError::Closed => f.write_str("ring is closed and drained"),
            PopError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for PushError {}
impl std::error::Error for PopError {}

/// An invalid ring or queue configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The data area must be a power of two between the bounds.
    Capacity {
        /// The capacity asked for, in bytes.
        capacity: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The largest record must fit in the ring.
    MaxRecord {
        /// The maximum payload asked for.
        max_record: u64,
        /// The largest payload this capacity can hold.
        limit: u64,
    },
    /// A queue needs between 1 and the maximum number of producer rings.
    RingCount {
        /// The count asked for.
        count: u64,
        /// Largest allowed.
        max: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Capacity { capacity, min, max } => write!(
                f,
                "ring capacity {capacity} must be a power of two between {min} and {max} bytes"
            ),
            ConfigError::MaxRecord { max_record, limit } => write!(
                f,
                "maximum record of {max_record} bytes does not fit: this capacity holds at most {limit}"
            ),
            ConfigError::RingCount { count, max } => {
                write!(f, "producer ring count {count} must be between 1 and {max}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The check of a blocking push, from one try: `None` (wait on) while the
/// ring is full, unless the slow check finds the consumer gone, which ends
/// the push with `Closed`; any other outcome ends it.
pub(crate) fn push_check(
    tried: Result<(), PushError>,
    slow: bool,
    peer_gone: impl FnOnce() -> bool,
) -> Option<Result<(), PushError>> {
    match tried {
        Err(PushError::Full) if slow && peer_gone() => Some(Err(PushError::Closed)),
        Err(PushError::Full) => None,
        other => Some(other),
    }
}
