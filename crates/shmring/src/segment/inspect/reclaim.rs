//! Removing an abandoned segment, deciding under locks.

use std::fs::File;
use std::os::fd::AsFd;

use super::object::{self, Source};
use super::{io, leftover_state, open_shm_file, read_header, read_peers, HeaderInfo};
use super::{PeerStatus, SegmentState};
use crate::segment::header::validate;
use crate::segment::names::{self, Removal};
use crate::segment::peers::{CLAIM_LOCK_BASE, PEER_LOCK_BASE};
use crate::segment::SegmentError;
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

/// Every peer row's claim byte, held through a description of the segment
/// file; let go on drop (if that fails, with the description).
struct Claims<'a> {
    file: &'a File,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let rows = u64::from(MAX_PEER_ROWS);
        let _ = lock::unlock_range(self.file.as_fd(), CLAIM_LOCK_BASE, rows);
    }
}

/// Makes sure, under the name lock, that nobody is attached to the segment
/// in `file` or attaching, and that nobody can attach: takes every row's
/// claim byte that any layout can have, all or nothing and without
/// waiting, then asks every row's liveness byte (one `F_OFD_GETLK`). On
/// `Ok`, the claims are held until the guard drops (see the `peers` module
/// docs for why that excludes every attach); on `Err`, nothing is held.
/// Hand the guard back to [`names::remove_name`], which lets the claims go
/// after the unlink and before the name lock.
fn keep_peers_out<'a>(file: &'a File, name: &str) -> Result<Claims<'a>, Keep> {
    let fd = file.as_fd();
    let rows = u64::from(MAX_PEER_ROWS);
    let claimed = lock::try_lock_range(fd, CLAIM_LOCK_BASE, rows)
        .map_err(|e| Keep::Error(io("F_OFD_SETLK", name)(e)))?;
    if !claimed {
        return Err(Keep::Reason("a peer is attaching"));
    }
    let claims = Claims { file };
    let alive = lock::is_range_locked(fd, PEER_LOCK_BASE, rows)
        .map_err(|e| Keep::Error(io("F_OFD_GETLK", name)(e)))?;
    if alive {
        return Err(Keep::Reason("a peer is alive"));
    }
    Ok(claims)
}

/// Removes the named segment if it is abandoned (see
/// [`SegmentInfo::is_abandoned`](super::SegmentInfo::is_abandoned)), deciding under locks so that it races
/// with nobody: it takes the segment's name lock (waiting up to 2 s) and
/// the claim byte of *every* peer row (so that nobody can attach), asks
/// every row's liveness byte, re-reads the header and the rows, unlinks
/// the name if it still refers to the same file, and then lets the claims
/// go and, last, the name lock (an open that waited for the name lock
/// finds the rows free). A liveness byte held by anyone (a peer is alive),
/// or a claim byte (a peer is attaching), keeps the segment.
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
/// Data is removed with the segment: `reclaim` is what `shmring gc
/// --include-data` runs. [`reclaim_unless_data`] keeps a segment that holds
/// undelivered data, deciding that under the same locks.
///
/// While it holds the claims (a few system calls, and a look at the
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
    reclaim_with(name, false, None)
}

/// [`reclaim`], except that a segment whose object holds undelivered data
/// (a message in any ring, an entry in a dict), or cannot be examined, is
/// kept ([`Reclaimed::Kept`] with the reason "it holds undelivered data").
///
/// Data is judged under the locks, at the removal itself: whatever an
/// earlier [`inspect`](super::inspect) said, a peer that attached, put a
/// message and died since (a restarted service that crashed again) keeps
/// the segment. A create's implicit reclaim, the sweep, and `shmring gc`
/// (unless told `--include-data`) remove through this.
///
/// # Errors
///
/// As [`reclaim`].
pub fn reclaim_unless_data(name: &str) -> Result<Reclaimed, SegmentError> {
    reclaim_with(name, true, None)
}

/// What the file `judged` is kept with when `name` no longer refers to it.
pub(crate) const NOT_JUDGED: &str = "the name refers to another file than the one judged";

/// [`reclaim_unless_data`] (`keep_data`) or [`reclaim`], of the file
/// `judged` (device and inode) only: if `name` refers to another file by
/// the time it is opened, that file is kept ([`NOT_JUDGED`]); the removal
/// itself checks, under the name lock, that the name still refers to the
/// file opened. For the sweep, which judged a file's idleness by its inode.
pub(crate) fn reclaim_judged(
    name: &str,
    keep_data: bool,
    judged: (u64, u64),
) -> Result<Reclaimed, SegmentError> {
    reclaim_with(name, keep_data, Some(judged))
}

fn reclaim_with(
    name: &str,
    keep_data: bool,
    judged: Option<(u64, u64)>,
) -> Result<Reclaimed, SegmentError> {
    let (name, file) = open_shm_file(name, true)?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    if judged.is_some_and(|id| id != (st.dev, st.ino)) {
        return Ok(Reclaimed::Kept(NOT_JUDGED));
    }
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

    let decide = || -> Result<Claims<'_>, Keep> {
        let failed = Keep::Error;
        // Held: no peer is attached, none can attach, and nobody writes a
        // row (only a row's claim or liveness holder does). On every `Err`
        // below, the claims go as this returns: under the name lock.
        let claims = keep_peers_out(&file, &name)?;
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
        Ok(claims)
    };
    // The claims go after the unlink, before the name lock: a reclaimer
    // stopped after this returns holds no lock of the segment's.
    let outcome = names::remove_name(&file, &name, names::NAME_LOCK_WAIT, decide)
        .map_err(io("unlink", &name))?;
    #[cfg(feature = "failpoints")]
    shmring_core::failpoint::hit("segment.reclaim.decided", name.as_bytes());
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

/// Removes the name `name` unless the segment is in use, deciding under its
/// locks: what `shmring rm` does without `--force`.
///
/// In use means a peer is attached (a peer row's liveness byte is held) or
/// attaching (a row's claim byte is held), or, for a private name of the
/// fallback create path, that its creator is still at work (a lock held on
/// it, or younger than 10 s). Like [`reclaim`], it takes the segment's name
/// lock (waiting up to 2 s) and the claim byte of every peer row, asks the
/// liveness bytes, then unlinks the name if it still refers to the same
/// file, then lets the locks go: a peer that attaches at any moment before
/// keeps the name ([`Reclaimed::Kept`], "a peer is alive", or "a peer is
/// attaching" while it is at it), and one that attaches after finds the
/// name gone. (A look first, then
/// [`Segment::unlink`](crate::segment::Segment::unlink), which removes a
/// name whatever its peers do, would remove the name of a peer that
/// attached in between.)
///
/// Unlike [`reclaim`], the segment need not be abandoned (one whose peers
/// all detached is removed too), data does not keep it, and the file may
/// belong to another user (if this process may remove it). It must be
/// proven a segment: its header must pass the full validation an open
/// does, or it is a private name's file that looks like one.
///
/// # Errors
///
/// As [`inspect`](super::inspect), plus [`Io`](SegmentError::Io) when a
/// lock or the unlink fails ([`PermissionDenied`](SegmentError::PermissionDenied)
/// when the file cannot be opened for writing or its name removed).
pub fn unlink_unless_in_use(name: &str) -> Result<Reclaimed, SegmentError> {
    let (name, file) = open_shm_file(name, true)?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    let private = names::is_private(&name);
    if private {
        // Looks like a leftover (or NotShmring).
        leftover_state(&file, &name, &st, false)?;
    } else {
        let copy = read_header(&file, &name, st.size)?;
        let kind = ObjectKind::from_u32(copy.snapshot.kind).unwrap_or(ObjectKind::SpscRing);
        validate(&copy.snapshot, &name, kind, st.size)?;
    }
    let decide = || -> Result<Option<Claims<'_>>, Keep> {
        let failed = |e| Keep::Error(io("F_OFD_GETLK", &name)(e));
        if private {
            // Under the name lock our description holds: the probe sees the
            // creator's locks only.
            let alive = names::creator_alive(&file).map_err(failed)?;
            let state = leftover_state(&file, &name, &st, alive).map_err(Keep::Error)?;
            if state == SegmentState::Initialising {
                return Err(Keep::Reason("it is being created"));
            }
            return Ok(None);
        }
        // Held until the unlink: no peer can attach meanwhile.
        keep_peers_out(&file, &name).map(Some)
    };
    // The claims go after the unlink, before the name lock.
    let outcome = names::remove_name(&file, &name, names::NAME_LOCK_WAIT, decide)
        .map_err(io("unlink", &name))?;
    drop(file);
    match outcome {
        Removal::Removed => Ok(Reclaimed::Removed),
        Removal::Kept(Keep::Reason(reason)) => Ok(Reclaimed::Kept(reason)),
        Removal::Kept(Keep::Error(e)) => Err(e),
        Removal::Elsewhere => Ok(Reclaimed::Kept(
            "the name was removed or given to another segment meanwhile",
        )),
        Removal::Busy => Ok(Reclaimed::Kept(
            "another process held its name lock for 2 s",
        )),
    }
}

/// Removes a fallback create's leftover under its private name: no lock
/// held on it (its name lock taken without waiting, then no peer row's
/// lock: its creator holds one or the other while alive, see
/// [`names::creator_alive`]) and the file at least
/// [`names::LEFTOVER_GRACE`] old.
fn reclaim_leftover(
    file: &File,
    name: &str,
    st: &shm::FileStat,
) -> Result<Reclaimed, SegmentError> {
    // Looks like one (or NotShmring), whatever the locks say.
    let state = leftover_state(file, name, st, false)?;
    // CreatorDied: at least LEFTOVER_GRACE old (the locks are asked below).
    if state != SegmentState::CreatorDied {
        return Ok(Reclaimed::Kept("its creator may still be creating it"));
    }
    // Under the name lock, which our description holds (so the probe sees
    // only others' locks).
    let decide = || match names::creator_alive(file) {
        Ok(false) => Ok(()),
        _ => Err(()),
    };
    let outcome = names::remove_name(file, name, std::time::Duration::ZERO, decide)
        .map_err(io("unlink", name))?;
    Ok(match outcome {
        Removal::Removed => Reclaimed::Removed,
        Removal::Busy | Removal::Kept(()) => Reclaimed::Kept("its creator is still creating it"),
        Removal::Elsewhere => Reclaimed::Kept("already gone"),
    })
}
