//! Removing an abandoned segment, deciding under locks.

use std::os::fd::AsFd;

use super::{io, open_shm_file, read_header, read_peers, PeerStatus, HEADER_LEN};
use crate::error::SegmentError;
use crate::segment::header::validate;
use crate::segment::options::validate_name;
use crate::segment::peers::{INIT_LOCK_BYTE, PEER_LOCK_BASE};
use crate::segment::{ObjectKind, MAX_PEER_ROWS};
use crate::sys::{lock, shm};

/// What [`reclaim`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reclaimed {
    /// The name was removed.
    Removed,
    /// The segment was left alone, for the reason given.
    Kept(&'static str),
}

/// Removes the named segment if it is abandoned (see
/// [`SegmentInfo::is_abandoned`](super::SegmentInfo::is_abandoned)), deciding under locks so that it races
/// with nobody: it takes the creator's init lock and the lock of *every*
/// peer row, re-reads the header and the rows, unlinks the name if it still
/// refers to the same file, and then lets all the locks go. A peer row
/// lock held by anyone (even under a header that claims the creator never
/// finished) keeps the segment.
///
/// While it holds the row locks (a few system calls), a concurrent
/// [`Segment::open`](crate::segment::Segment::open) of this segment fails with
/// [`PeerTableFull`](SegmentError::PeerTableFull); an open that got its
/// descriptor before the unlink and attaches after it gets a working
/// segment that no name reaches any more.
///
/// # Errors
///
/// As [`inspect`](super::inspect), plus [`Io`](SegmentError::Io) when a lock or the unlink
/// fails ([`PermissionDenied`](SegmentError::PermissionDenied) when the
/// file cannot be opened for writing).
pub fn reclaim(name: &str) -> Result<Reclaimed, SegmentError> {
    let (name, file) = open_shm_file(name, true)?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    if st.size < HEADER_LEN as u64 {
        // Before its creator's ftruncate, or not a segment. Either way, no
        // lock is taken: the creator takes the init lock right after
        // `shm_open`, and our holding it then would make its create fail.
        return Err(SegmentError::NotShmring { name });
    }
    let take = |byte| lock::try_lock_byte(file.as_fd(), byte).map_err(io("F_OFD_SETLK", &name));
    if !take(INIT_LOCK_BYTE)? {
        return Ok(Reclaimed::Kept("its creator is still creating it"));
    }
    // Every row's lock byte that any layout can have, in one all-or-nothing
    // lock: held, no peer is attached, none can attach, and nobody writes a
    // row (only a row's lock holder does). Taken whatever the version says,
    // so that a header rewritten to version 0 under live peers is no reason
    // to remove their segment.
    let all_rows = lock::try_lock_range(file.as_fd(), PEER_LOCK_BASE, u64::from(MAX_PEER_ROWS))
        .map_err(io("F_OFD_SETLK", &name))?;
    if !all_rows {
        return Ok(Reclaimed::Kept("a peer is alive"));
    }
    // Read after taking the init lock: a version 0 now means a dead creator
    // (the creator publishes before it lets the init lock go).
    let copy = read_header(&file, &name, st.size)?;
    if copy.snapshot.version != 0 {
        let kind = ObjectKind::from_u32(copy.snapshot.kind).unwrap_or(ObjectKind::SpscRing);
        let layout = validate(&copy.snapshot, &name, kind, st.size)?.layout;
        let offset = layout.peer_table_offset as u64;
        let rows = read_peers(&file, &name, offset, layout.peer_rows)?;
        if !rows.iter().any(PeerStatus::is_dead) {
            return Ok(Reclaimed::Kept("every peer detached cleanly"));
        }
    }
    let (_, current) = open_shm_file(&name, false)?;
    let now = shm::stat(&current).map_err(io("fstat", &name))?;
    if (now.dev, now.ino) != (st.dev, st.ino) {
        return Ok(Reclaimed::Kept(
            "the name was given to another segment meanwhile",
        ));
    }
    let (_, cname) = validate_name(&name)?;
    shm::shm_unlink(&cname).map_err(io("shm_unlink", &name))?;
    // Only now do the locks go (with the descriptor).
    drop(file);
    Ok(Reclaimed::Removed)
}
