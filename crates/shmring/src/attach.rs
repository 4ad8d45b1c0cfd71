//! What the ring and queue handles share: their error type, turning
//! timeouts into deadlines, and claiming a role (producer, consumer) that a
//! dead peer may still hold.

use std::fmt;
use std::time::Duration;

use shmring_core::error::{ConfigError, Corrupted};
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::wait::{Deadline, Until};

use crate::error::SegmentError;
use crate::segment::Segment;

/// Why a ring or queue could not be created, opened, or a handle attached.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// Creating, opening or mapping the segment failed.
    Segment(SegmentError),
    /// The ring or queue configuration is invalid.
    Config(ConfigError),
    /// The object inside the segment is inconsistent.
    Corrupted(Corrupted),
    /// The role is held by a live peer (an SPSC ring has one producer and one
    /// consumer), possibly another open handle of this very process (then
    /// `pid` is this process's and the message says so).
    RoleTaken {
        /// "producer" or "consumer".
        role: &'static str,
        /// Process id of the peer holding it, if known.
        pid: Option<u32>,
    },
    /// Every producer ring of the queue is owned by a live producer.
    NoFreeRing {
        /// How many producer rings the queue has.
        rings: usize,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Segment(e) => e.fmt(f),
            AttachError::Config(e) => e.fmt(f),
            AttachError::Corrupted(e) => e.fmt(f),
            AttachError::RoleTaken { role, pid: Some(pid) } if *pid == std::process::id() => {
                write!(
                    f,
                    "the {role} role is held by this process (pid {pid}), through another handle that is still open"
                )
            }
            AttachError::RoleTaken { role, pid: Some(pid) } => {
                write!(f, "the {role} role is held by live process {pid}")
            }
            AttachError::RoleTaken { role, pid: None } => {
                write!(f, "the {role} role is held by a live peer")
            }
            AttachError::NoFreeRing { rings } => write!(
                f,
                "all {rings} producer rings are owned by live producers (raise `producers` when creating the queue)"
            ),
        }
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AttachError::Segment(e) => Some(e),
            AttachError::Config(e) => Some(e),
            AttachError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SegmentError> for AttachError {
    fn from(e: SegmentError) -> Self {
        AttachError::Segment(e)
    }
}

impl From<ConfigError> for AttachError {
    fn from(e: ConfigError) -> Self {
        AttachError::Config(e)
    }
}

impl From<Corrupted> for AttachError {
    fn from(e: Corrupted) -> Self {
        AttachError::Corrupted(e)
    }
}

/// `None` waits forever; a zero timeout means "try once" (Python's rule).
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Deadline> {
    crate::sys::deadline_after(timeout)
}

/// Like [`deadline`], but measured from when the call starts waiting, so a
/// call that does not wait never reads the clock.
pub(crate) fn until(timeout: Option<Duration>) -> Until {
    match timeout {
        None => Until::Never,
        Some(t) => Until::After(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
    }
}

/// Claims `word` for this attachment: free, or held by a dead peer.
pub(crate) fn claim_role(
    word: &AtomicU64,
    segment: &Segment,
    role: &'static str,
) -> Result<(), AttachError> {
    let token = segment.peer_token();
    loop {
        // ORDERING: Acquire — pairs with the Release store of 0 by the
        // previous holder's drop: its last publish is visible to us.
        let current = word.load(Ordering::Acquire);
        if current != 0 && current != token && segment.is_peer_alive(current) {
            let pid = segment
                .peers()
                .into_iter()
                .find(|p| p.token == current)
                .map(|p| p.pid);
            return Err(AttachError::RoleTaken { role, pid });
        }
        // ORDERING: AcqRel — Acquire as above; Release is not needed by
        // anyone but keeps the claim ordered before our first use of the role.
        if word
            .compare_exchange(current, token, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
    }
}

/// Gives a role back (on drop).
pub(crate) fn release_role(word: &AtomicU64, segment: &Segment) {
    // ORDERING: Release — our last publish happens before the next holder's
    // Acquire of this word.
    let _ = word.compare_exchange(
        segment.peer_token(),
        0,
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// Whether the peer holding `word` is gone: the role is held (nonzero) by a
/// peer that is no longer alive. An unheld role is not "gone": a peer may
/// still attach.
pub(crate) fn holder_gone(word: &AtomicU64, segment: &Segment) -> bool {
    // ORDERING: Relaxed — a liveness probe on the slow path; acting on a
    // stale value only delays the answer by one slice.
    let current = word.load(Ordering::Relaxed);
    current != 0 && !segment.is_peer_alive(current)
}
