//! Removing an abandoned segment, deciding under locks.

use std::fs::File;
use std::os::fd::AsFd;

use super::object::{self, Source};
use super::{io, leftover_state, open_shm_file, read_header, read_peers, HeaderInfo};
use super::{PeerStatus, SegmentState};
use crate::error::SegmentError;
use crate::segment::header::validate;
use crate::segment::names::{self, Removal};
use crate::segment::peers::PEER_LOCK_BASE;
use crate::segment::{ObjectKind, UnlinkPolicy, MAX_PEER_ROWS};
use crate::sys::{lock, shm};

/// What [`reclaim`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaimed {
    /// The name was removed.
    Removed,
    /// The segment was left alone, for the reason given.
    Kept(&'static str),
}

/// The reason a create's implicit reclaim keeps a segment that holds data.
pub(crate) const HOLDS_DATA: &str = "it holds undelivered data";

/// Why [`reclaim_with`]'s decision under the name lock kept the segment.
enum Keep {
    Reason(&'static str),
    Error(SegmentError),
}

/// Removes the named segment if it is abandoned (see
/// [`SegmentInfo::is_abandoned`](super::SegmentInfo::is_abandoned)), deciding under locks so that it races
/// with nobody: it takes the segment's name lock (waiting up to 2 s) and
/// the lock of *every* peer row, re-reads the header and the rows, unlinks
/// the name if it still refers to the same file, and then lets all the
/// locks go. A peer row lock held by anyone keeps the segment.
///
/// Only files proven to be this user's shmring segments are removed: the
/// file must be owned by the caller's effective uid (another user's is
/// kept, even for root) and its header must pass the full validation an
/// open does (a file that merely starts with the magic is
/// [`NotShmring`](SegmentError::NotShmring) or another validation error,
/// and stays). The one exception is a leftover of the fallback create path
/// (a private name, see the `segment` module docs): empty or starting with
/// the magic or zeros, its name lock free, and at least 10 s old.
///
/// Data is removed with the segment: `reclaim` is what `shmring gc` runs
/// when asked to. (A create's implicit reclaim keeps a segment that holds
/// undelivered data.)
///
/// While it holds the row locks (a few system calls, and a look at the
/// object), a concurrent [`Segment::open`](crate::segment::Segment::open)
/// of this segment waits for the name lock and then looks again; an open
/// that attached before gets a working segment and keeps it.
///
/// # Errors
///
/// As [`inspect`](super::inspect), plus [`Io`](SegmentError::Io) when a
/// lock or the unlink fails ([`PermissionDenied`](SegmentError::PermissionDenied)
/// when the file cannot be opened for writing).
pub fn reclaim(name: &str) -> Result<Reclaimed, SegmentError> {
    reclaim_with(name, false)
}

/// [`reclaim`], keeping (with the reason [`HOLDS_DATA`]) a segment whose
/// object holds undelivered data or cannot be examined: a create's
/// implicit reclaim.
pub(crate) fn reclaim_unless_data(name: &str) -> Result<Reclaimed, SegmentError> {
    reclaim_with(name, true)
}

fn reclaim_with(name: &str, keep_data: bool) -> Result<Reclaimed, SegmentError> {
    let (name, file) = open_shm_file(name, true)?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    if st.uid != shm::geteuid() {
        return Ok(Reclaimed::Kept("it belongs to another user"));
    }
    if names::is_private(&name) {
        return reclaim_leftover(&file, &name, &st);
    }
    // Proven a segment before any lock is taken.
    let copy = read_header(&file, &name, st.size)?;
    let kind = ObjectKind::from_u32(copy.snapshot.kind).unwrap_or(ObjectKind::SpscRing);
    validate(&copy.snapshot, &name, kind, st.size)?;

    let decide = || -> Result<(), Keep> {
        let failed = Keep::Error;
        // Every row's lock byte that any layout can have, in one
        // all-or-nothing lock: held, no peer is attached, none can attach,
        // and nobody writes a row (only a row's lock holder does).
        let all_rows = lock::try_lock_range(file.as_fd(), PEER_LOCK_BASE, u64::from(MAX_PEER_ROWS))
            .map_err(|e| failed(io("F_OFD_SETLK", &name)(e)))?;
        if !all_rows {
            return Err(Keep::Reason("a peer is alive"));
        }
        // Read again under the locks: this is what is decided about.
        let copy = read_header(&file, &name, st.size).map_err(failed)?;
        let valid = validate(&copy.snapshot, &name, kind, st.size).map_err(failed)?;
        let layout = valid.layout;
        let offset = layout.peer_table_offset as u64;
        let rows = read_peers(&file, &name, offset, layout.peer_rows).map_err(failed)?;
        let died = rows.iter().any(PeerStatus::is_dead);
        if !died && valid.unlink_policy == UnlinkPolicy::Never {
            return Err(Keep::Reason("every peer detached cleanly"));
        }
        if keep_data {
            let header = HeaderInfo {
                version: copy.snapshot.version,
                abi: copy.snapshot.abi,
                kind: valid.kind,
                unlink_policy: valid.unlink_policy,
                total_len: copy.snapshot.total_len,
                creator_uid: copy.creator_uid,
                creator_pid: copy.creator_pid,
                peer_table_offset: offset,
                peer_rows: layout.peer_rows,
                object_offset: layout.object_offset as u64,
                object_len: layout.object_len as u64,
                params: valid.params,
            };
            let figures = object::object_state(Source::File(&file), &header, &rows);
            if figures.holds_data != Some(false) {
                return Err(Keep::Reason(HOLDS_DATA));
            }
        }
        Ok(())
    };
    let outcome = names::remove_name(&file, &name, names::NAME_LOCK_WAIT, decide)
        .map_err(io("unlink", &name))?;
    // The row locks go with the descriptor, after the unlink.
    drop(file);
    match outcome {
        Removal::Removed => Ok(Reclaimed::Removed),
        Removal::Kept(Keep::Reason(reason)) => Ok(Reclaimed::Kept(reason)),
        Removal::Kept(Keep::Error(e)) => Err(e),
        Removal::Elsewhere => Ok(Reclaimed::Kept(
            "the name was given to another segment meanwhile",
        )),
        Removal::Busy => Ok(Reclaimed::Kept(
            "another process held its name lock for 2 s",
        )),
    }
}

/// Removes a fallback create's leftover under its private name: its name
/// lock free (taken without waiting: its creator holds it while alive) and
/// the file at least [`names::LEFTOVER_GRACE`] old.
fn reclaim_leftover(
    file: &File,
    name: &str,
    st: &shm::FileStat,
) -> Result<Reclaimed, SegmentError> {
    // Looks like one (or NotShmring), whatever the lock says.
    let state = leftover_state(file, name, st, false)?;
    // CreatorDied: at least LEFTOVER_GRACE old (the lock is asked below).
    if state != SegmentState::CreatorDied {
        return Ok(Reclaimed::Kept("its creator may still be creating it"));
    }
    let outcome = names::remove_name(file, name, std::time::Duration::ZERO, || Ok::<(), ()>(()))
        .map_err(io("unlink", name))?;
    Ok(match outcome {
        Removal::Removed => Reclaimed::Removed,
        Removal::Busy => Reclaimed::Kept("its creator is still creating it"),
        Removal::Elsewhere | Removal::Kept(()) => Reclaimed::Kept("already gone"),
    })
}
