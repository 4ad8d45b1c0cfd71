//! The errors of an object's life (create, open) and of claiming a role in
//! it, kept apart: a create or open never fails because a role is taken,
//! and a role claim never fails because of a name or a file.

use std::fmt;

use shmring_core::error::Corrupted;

use crate::error::SegmentError;

/// Why an object could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// Creating or mapping the segment failed: the name is taken or
    /// invalid, `/dev/shm` has no room, the mode is refused, …
    Segment(SegmentError),
    /// A builder option is out of range; `option` is the setter's name
    /// (`ring_bytes`, `max_message`, `producers`, …).
    InvalidOption {
        /// The builder setter whose value is refused.
        option: &'static str,
        /// Why, with the values involved.
        reason: String,
    },
    /// The object just made is inconsistent (another process with write
    /// access to the file changed it before the first attach).
    Corrupted(Corrupted),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Segment(e) => e.fmt(f),
            CreateError::InvalidOption { option, reason } => {
                write!(f, "invalid `{option}`: {reason}")
            }
            CreateError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreateError::Segment(e) => Some(e),
            CreateError::InvalidOption { .. } => None,
            CreateError::Corrupted(e) => Some(e),
        }
    }
}

impl From<SegmentError> for CreateError {
    fn from(e: SegmentError) -> Self {
        CreateError::Segment(e)
    }
}

impl From<Corrupted> for CreateError {
    fn from(e: Corrupted) -> Self {
        CreateError::Corrupted(e)
    }
}

/// The first attach after a create fails as an open would.
impl From<OpenError> for CreateError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Segment(e) => CreateError::Segment(e),
            OpenError::Corrupted(e) => CreateError::Corrupted(e),
        }
    }
}

/// Why an object could not be opened (by name or by inheritance).
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Opening or mapping the segment failed: not found, another kind,
    /// another owner, a header of another version (`found: 0` for a file
    /// that was never a published segment), …
    Segment(SegmentError),
    /// The object inside the segment is inconsistent with its header.
    Corrupted(Corrupted),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Segment(e) => e.fmt(f),
            OpenError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Segment(e) => Some(e),
            OpenError::Corrupted(e) => Some(e),
        }
    }
}

impl From<SegmentError> for OpenError {
    fn from(e: SegmentError) -> Self {
        OpenError::Segment(e)
    }
}

impl From<Corrupted> for OpenError {
    fn from(e: Corrupted) -> Self {
        OpenError::Corrupted(e)
    }
}

/// Why a role (an SPSC ring's producer or consumer, a queue's producer
/// ring, a pipe end) could not be claimed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RoleError {
    /// The role is held by a live peer (an SPSC ring has one producer and one
    /// consumer), possibly another open handle of this very process (then
    /// `pid` is this process's and the message says so).
    RoleTaken {
        /// "producer", "consumer", or a pipe end ("first end", "second end").
        role: &'static str,
        /// Process id of the peer holding it, if known.
        pid: Option<u32>,
    },
    /// Every producer ring of the queue is owned by a live producer.
    NoFreeRing {
        /// How many producer rings the queue has.
        rings: usize,
    },
    /// The state the claim reads is inconsistent.
    Corrupted(Corrupted),
}

impl fmt::Display for RoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleError::RoleTaken { role, pid: Some(pid) } if *pid == std::process::id() => {
                write!(
                    f,
                    "the {role} role is held by this process (pid {pid}), through another handle that is still open"
                )
            }
            RoleError::RoleTaken { role, pid: Some(pid) } => {
                write!(f, "the {role} role is held by live process {pid}")
            }
            RoleError::RoleTaken { role, pid: None } => {
                write!(f, "the {role} role is held by a live peer")
            }
            RoleError::NoFreeRing { rings } => write!(
                f,
                "all {rings} producer rings are owned by live producers (raise `producers` when creating the queue)"
            ),
            RoleError::Corrupted(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RoleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RoleError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Corrupted> for RoleError {
    fn from(e: Corrupted) -> Self {
        RoleError::Corrupted(e)
    }
}
