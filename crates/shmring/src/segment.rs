//! Segments: one shared mapping holding a header, a peer table and one object.
//!
//! ```text
//! 0            256                       object_offset (4096-aligned)      total_len
//! | header     | peer table: rows × 128  | pad | object (object_len bytes) | pad |
//! ```
//!
//! A segment is either *named* (`shm_open`, a file in `/dev/shm`, opened by
//! name from any process of the same user) or *anonymous* (`memfd_create`,
//! reachable only by inheriting its descriptor, see
//! [`Segment::share_with_child`]).
//!
//! # Lifecycle
//!
//! - **Create**: the segment is built where no opener can see it: an
//!   unnamed file in `/dev/shm` (`O_TMPFILE`), or, where that is not
//!   available, a file under a private name (see the `names` module). Exact
//!   mode (0600 by default), `ftruncate`, `posix_fallocate` (a full
//!   `/dev/shm` is [`SegmentError::NoSpace`] now, never a `SIGBUS` later),
//!   the header, the creator's peer row, the caller's `init` of the zeroed
//!   object, the version published (Release); only then does the file get
//!   its name, atomically and only if the name is free (`linkat`; `EEXIST`
//!   is [`SegmentError::AlreadyExists`]). If anything fails (or `init`
//!   panics), nothing is left under the name.
//! - **Open**: map, validate every header field against the file size
//!   before anything past the header is referenced, take a peer row, then
//!   confirm under the segment's *name lock* that the name still refers to
//!   this file (else look the name up again). An open never waits for a
//!   creator: a file under a segment name is complete, or not a segment.
//! - **Drop**: the peer row is released and the [`UnlinkPolicy`] applied.
//!   Every removal of a name — a drop's, [`reclaim`]'s, [`Segment::unlink`]'s
//!   — is serialised with the others and with opens by the name lock (byte 0
//!   of the file): a live segment's name is never removed by a process that
//!   meant another file, and a last drop never removes the name of a
//!   segment that an open has just returned. See the `names` module docs.
//!
//! # Peers and liveness
//!
//! Each `Segment` value is one attachment with its own open file description
//! and its own row in the peer table, held by an OFD lock (the row's
//! liveness byte) that the kernel drops when the process dies (see the
//! `peers` module docs for the row layout, the lock bytes and the attach
//! protocol). [`Segment::peer_token`] names an attachment for as long as it
//! lives; [`Segment::is_peer_alive`] asks about any token. A descriptor
//! handed to a child ([`Segment::share_with_child`]) is a fresh open file
//! description that holds no lock, so a parent that dies is dead at once,
//! whether or not the child ever opened the segment.
//!
//! # Crash behaviour
//!
//! A creator killed at any step of a create leaves nothing under the name
//! (at most a file under a private name of the fallback path, which blocks
//! nothing and which [`reclaim`] and `shmring gc` remove). A peer killed at
//! any point frees its row for the next attach. Peers that all die leave a
//! named segment in `/dev/shm`, since only drops unlink; it is *reclaimed*
//! (removed under locks, see [`reclaim`]) by the next create of the same
//! name if it holds no undelivered data, by the automatic [`sweep`] (at
//! most once a minute per user, started by a create, on a background
//! thread) once sweeps have seen it without a live peer for a minute and
//! if it holds no data (both unless
//! [`CreateOptions::reclaim_abandoned`] is off; a segment with
//! [`UnlinkPolicy::Never`] is only removed by `shmring gc` or [`reclaim`]),
//! or by `shmring gc`. Anonymous segments never outlive their last
//! descriptor.
//!
//! # Failpoints (testing)
//!
//! With the cargo feature `failpoints`, besides those of a create (see the
//! `create` module), a drop calls the failpoint hook
//! `segment.drop.row-released` right after it let its peer row go, before
//! it decides about the name, and every attach (a create's, an open's)
//! calls `segment.attach.row-claimed` right after it took its peer row's
//! claim byte and found the row free, before it bumped the row's
//! generation, and `segment.attach.generation-bumped` right after, before
//! it took the row's liveness byte (see the `peers` module docs). A
//! [`reclaim`] (of a segment, not of a leftover) calls
//! `segment.reclaim.decided`, with the name as context, once it removed
//! the name or decided to keep it, when it holds none of the segment's
//! locks any more; the sweep calls `segment.sweep.judged` (see [`sweep`]).
//!
//! # Blocking
//!
//! Opens, drops, [`reclaim`] and [`Segment::unlink`] take the name lock with
//! a bounded wait (others hold it for a few system calls): a stopped holder
//! delays them by at most that bound (the open timeout; 2 s for the
//! others). A drop that gives up leaves the name for a later reclaim.
//!
//! # Untrusted memory
//!
//! A named segment can be rewritten by any process of the same user. Header
//! fields are validated once at open; later header writes are never read
//! again. One thing cannot be defended against: a process that *truncates* a
//! named segment's file makes every peer's next access a `SIGBUS`. Anonymous
//! segments are sealed against that (`F_SEAL_SHRINK`).

mod create;
mod error;
mod header;
mod inherit;
mod inspect;
mod names;
mod open;
mod options;
mod peers;
mod region;

use std::fmt;
use std::fs::File;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use memmap2::MmapRaw;

use crate::sys::{self, lock, shm};
pub use error::SegmentError;
use header::{Header, Layout, HEADER_LEN};
use peers::{PeerRow, PEER_ROW_LEN};

pub use header::{LAYOUT_VERSION, MAX_PEER_ROWS};
pub use inspect::*;
pub use options::{CreateOptions, ObjectKind, OpenOptions, UnlinkPolicy, MAX_NAME_LEN};
pub(crate) use peers::split_token;
pub use peers::{PeerCounter, PeerInfo};

/// Label used in errors for anonymous segments.
const ANONYMOUS: &str = "(anonymous)";

/// One attachment to a shared-memory segment.
///
/// Each value has its own open file description and its own peer row; drop
/// it to detach. `Send` and `Sync`: the object region is shared memory and
/// every access to it must be atomic or otherwise synchronised anyway.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};
///
/// let name = format!("/shmring-doc-{}", std::process::id());
/// let creator = Segment::create(&name, ObjectKind::SpscRing, [7; 8], 4096,
///     &CreateOptions::default(), |_object, _len| Ok(()))?;
/// let peer = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())?;
/// assert_eq!(peer.params(), [7; 8]);
/// assert!(peer.is_peer_alive(creator.peer_token()));
///
/// // SAFETY: the object is 4096-aligned, 4096 bytes, accessed only atomically.
/// let word = unsafe { &*creator.object_ptr().as_ptr().cast::<AtomicU64>() };
/// word.store(42, Ordering::Release);
/// // SAFETY: as above, through the other attachment's mapping.
/// let seen = unsafe { &*peer.object_ptr().as_ptr().cast::<AtomicU64>() };
/// assert_eq!(seen.load(Ordering::Acquire), 42);
/// drop((creator, peer)); // the last drop removes the name
/// # Ok::<(), shmring::SegmentError>(())
/// ```
pub struct Segment {
    map: MmapRaw,
    file: File,
    name: Option<String>,
    dev: u64,
    ino: u64,
    kind: ObjectKind,
    params: [u64; 8],
    layout: Layout,
    unlink_policy: UnlinkPolicy,
    is_creator: bool,
    row: u32,
    generation: u32,
    token: u64,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
};

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("object_len", &self.layout.object_len)
            .field("peer_rows", &self.layout.peer_rows)
            .field("row", &self.row)
            .field("token", &format_args!("{:#x}", self.token))
            .finish_non_exhaustive()
    }
}

/// Turns a failed `shm_open` into the error a caller can act on.
fn open_error(op: &'static str, name: &str, e: std::io::Error) -> SegmentError {
    let name = name.to_owned();
    match e.raw_os_error() {
        Some(libc::ENOENT) => SegmentError::NotFound { name },
        Some(libc::EEXIST) => SegmentError::AlreadyExists {
            name,
            undelivered: false,
        },
        Some(libc::EACCES) | Some(libc::EPERM) => SegmentError::PermissionDenied { name },
        _ => SegmentError::Io {
            op,
            name,
            source: e,
        },
    }
}

fn io_error<'a>(
    op: &'static str,
    name: &'a str,
) -> impl FnOnce(std::io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        op,
        name: name.to_owned(),
        source,
    }
}

/// The header of a mapping at least `HEADER_LEN` long.
fn header_of(map: &MmapRaw) -> &Header {
    assert!(map.len() >= HEADER_LEN, "mapping shorter than a header");
    // Header is all atomics: valid for any bytes, and for concurrent writes
    // by other processes; the reference lives no longer than `map`.
    // SAFETY: page-aligned (>= align_of::<Header>()) and at least
    // size_of::<Header>() bytes long (asserted above).
    unsafe { &*map.as_ptr().cast::<Header>() }
}

/// Row `row` of the peer table of a mapping whose `layout` was computed or
/// validated against it.
fn row_of<'a>(map: &'a MmapRaw, layout: &Layout, row: u32) -> &'a PeerRow {
    let offset = layout.peer_table_offset + row as usize * PEER_ROW_LEN;
    assert!(
        row < layout.peer_rows && offset + PEER_ROW_LEN <= map.len(),
        "peer row out of range"
    );
    debug_assert_eq!(offset % PEER_ROW_LEN, 0);
    // PeerRow is all atomics: valid for any bytes and concurrent writes;
    // borrowed no longer than `map`.
    // SAFETY: in bounds (asserted above); 128-aligned: page-aligned mapping,
    // `offset` a multiple of 128 (peer_table_offset % 128 == 0 is validated).
    unsafe { &*map.as_ptr().add(offset).cast::<PeerRow>() }
}

/// Takes the first free (or dead) peer row. Returns `(row, generation)`.
///
/// The protocol (claim byte, check, generation, liveness byte, claim let
/// go) and why a dead holder's token never reads alive meanwhile are in the
/// `peers` module docs.
fn attach_row(
    file: &File,
    map: &MmapRaw,
    layout: &Layout,
    label: &str,
) -> Result<(u32, u32), SegmentError> {
    let fd = file.as_fd();
    let failed = |e| io_error("lock peer row", label)(e);
    for row in 0..layout.peer_rows {
        // A hint: a live peer holds it (asked again under the claim).
        if lock::is_byte_locked(fd, peers::liveness_byte(row)).map_err(failed)? {
            continue;
        }
        if !lock::try_lock_byte(fd, peers::claim_byte(row)).map_err(failed)? {
            continue; // another attacher, or a reclaim deciding
        }
        let taken = take_claimed_row(file, map, layout, row);
        // Failure leaves the claim held until this description closes: the
        // row is ours (or skipped) either way, and a reclaim keeps away
        // from a segment with a claim held, which is only cautious.
        let _ = lock::unlock_byte(fd, peers::claim_byte(row));
        if let Some(generation) = taken.map_err(failed)? {
            return Ok((row, generation));
        }
    }
    Err(SegmentError::PeerTableFull {
        name: label.to_owned(),
        rows: layout.peer_rows,
    })
}

/// Steps 3 to 5 of an attach (see the `peers` module docs), holding row
/// `row`'s claim byte: the new generation, or `None` if the row is taken.
fn take_claimed_row(
    file: &File,
    map: &MmapRaw,
    layout: &Layout,
    row: u32,
) -> std::io::Result<Option<u32>> {
    let fd = file.as_fd();
    if lock::is_byte_locked(fd, peers::liveness_byte(row))? {
        return Ok(None);
    }
    #[cfg(feature = "failpoints")]
    shmring_core::failpoint::hit("segment.attach.row-claimed", &[]);
    let peer = row_of(map, layout, row);
    let generation = peer.claim(shm::getpid(), sys::now().0);
    #[cfg(feature = "failpoints")]
    shmring_core::failpoint::hit("segment.attach.generation-bumped", &[]);
    if !lock::try_lock_byte(fd, peers::liveness_byte(row))? {
        // Locked by a process outside the protocol (nobody takes it
        // without the claim): this row is not ours after all.
        peer.release(generation);
        return Ok(None);
    }
    Ok(Some(generation))
}

impl Segment {
    /// The object's parameters, as validated at open (a copy: later writes to
    /// the header are not seen).
    pub fn params(&self) -> [u64; 8] {
        self.params
    }

    /// Start of the object region: 4096-aligned, [`object_len`](Segment::object_len)
    /// bytes, valid while `self` lives. Other processes write it concurrently:
    /// access it only through atomics or with a protocol that makes plain
    /// accesses race-free, and validate everything read from it.
    pub fn object_ptr(&self) -> NonNull<u8> {
        // SAFETY: object_offset < total_len == map.len() (validated or
        // computed), so the pointer is inside the mapping and not null.
        unsafe { NonNull::new_unchecked(self.map.as_mut_ptr().add(self.layout.object_offset)) }
    }

    /// Length of the object region in bytes.
    pub fn object_len(&self) -> usize {
        self.layout.object_len
    }

    /// What the segment holds.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// The name (`/name` form), or `None` for an anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The device and inode of the segment's file: the same for every
    /// attachment of one segment (in any process of this host), different
    /// for any other segment alive at the same time. (tmpfs numbers inodes
    /// from a counter, so a number comes back only after very many
    /// creates, or after a reboot.)
    pub fn file_id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Number of rows in the peer table.
    pub fn peer_rows(&self) -> u32 {
        self.layout.peer_rows
    }

    /// This attachment's token: nonzero, unique to this attachment for as
    /// long as it lives (row and generation). Store it in the object to name
    /// an owner, and ask [`is_peer_alive`](Segment::is_peer_alive) later.
    pub fn peer_token(&self) -> u64 {
        self.token
    }

    /// Whether the attachment `token` names is still attached: its row's
    /// liveness lock is held and its generation unchanged. `false` for a
    /// peer that detached or died (also while its process is a zombie), and
    /// for 0 or any garbage value. This attachment's own token is alive.
    ///
    /// Costs one `fcntl` for a plausible token.
    pub fn is_peer_alive(&self, token: u64) -> bool {
        if token == self.token {
            // F_OFD_GETLK never reports our own description's lock.
            return true;
        }
        let Some((row, generation)) = peers::split_token(token) else {
            return false;
        };
        if row >= self.layout.peer_rows {
            return false;
        }
        let peer = self.peer_row(row);
        if peer.generation() != generation {
            return false;
        }
        match lock::is_byte_locked(self.file.as_fd(), peers::liveness_byte(row)) {
            // Re-check: the row may have been reclaimed while we asked.
            Ok(true) => peer.generation() == generation,
            _ => false,
        }
    }

    /// Every row that was ever used, with its last holder and whether that
    /// holder is alive now (a snapshot).
    pub fn peers(&self) -> Vec<PeerInfo> {
        (0..self.layout.peer_rows)
            .filter_map(|row| {
                let peer = self.peer_row(row);
                let generation = peer.generation();
                if generation == 0 {
                    return None;
                }
                let token = peers::token(row, generation);
                Some(PeerInfo {
                    row,
                    pid: peer.pid(),
                    token,
                    alive: self.is_peer_alive(token),
                })
            })
            .collect()
    }

    /// Adds `n` (wrapping) to one of this attachment's counters.
    pub fn add_to_counter(&self, counter: PeerCounter, n: u64) {
        self.peer_row(self.row).add(counter, n);
    }

    /// Counts one message of `bytes` bytes in this attachment's counters
    /// (one to `messages`, `bytes` to `volume`), with two atomic adds: other
    /// handles of this attachment count into the same row concurrently.
    #[inline]
    pub(crate) fn count_message(&self, messages: PeerCounter, volume: PeerCounter, bytes: usize) {
        let row = self.peer_row(self.row);
        row.add(messages, 1);
        row.add(volume, bytes as u64);
    }

    /// The sum (wrapping) of a counter over every row, departed peers
    /// included. A snapshot: rows are read one after another.
    pub fn counter_sum(&self, counter: PeerCounter) -> u64 {
        (0..self.layout.peer_rows).fold(0u64, |sum, row| {
            sum.wrapping_add(self.peer_row(row).get(counter))
        })
    }

    /// A futex waiter that counts its sleeps and wake-ups in this
    /// attachment's peer row ([`PeerCounter::BlockedWaits`],
    /// [`PeerCounter::Wakes`]). Store it only in a handle that keeps this
    /// segment alive (an `Arc<Segment>`), and never hand it out.
    pub(crate) fn waiter(&self) -> sys::FutexWaiter {
        const _: () =
            assert!(PeerCounter::Wakes as usize == PeerCounter::BlockedWaits as usize + 1);
        let first = PeerCounter::BlockedWaits as usize;
        let row = self.peer_row(self.row);
        let pair: &[_; 2] = row.counters[first..first + 2]
            .try_into()
            .expect("two slots");
        // SAFETY: the row lies in `self.map`, mapped until this segment
        // drops; by this method's contract the waiter lives only in handles
        // that keep the segment (and so the mapping) alive.
        unsafe { sys::FutexWaiter::counting(pair) }
    }

    fn peer_row(&self, row: u32) -> &PeerRow {
        row_of(&self.map, &self.layout, row)
    }

    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(ANONYMOUS)
    }

    /// Whether any row's lock is held by another attachment. For a drop,
    /// after this attachment let its own row go: that row is asked too,
    /// since a new peer may have taken it already (`F_OFD_GETLK` never
    /// reports a lock of our own description, and we hold none now).
    fn any_peer_attached(&self) -> bool {
        (0..self.layout.peer_rows).any(|row| {
            lock::is_byte_locked(self.file.as_fd(), peers::liveness_byte(row)).unwrap_or(true)
        })
    }

    /// Whether the name still refers to this segment's file, checked under
    /// the name lock (so that no drop removes it while we look, and a drop
    /// that removes it later sees our peer row). Waits up to `wait` for the
    /// lock. `Ok(false)` for anonymous segments.
    fn confirm_name(&self, wait: std::time::Duration) -> Result<bool, SegmentError> {
        let Some(name) = &self.name else {
            return Ok(false);
        };
        let start = sys::now();
        let guard = names::NameLock::acquire(&self.file, wait)
            .map_err(io_error("lock name", name))?
            .ok_or_else(|| SegmentError::NameLockTimeout {
                name: name.clone(),
                waited: std::time::Duration::from_nanos(sys::clock::nanos_between(
                    start,
                    sys::now(),
                )),
            })?;
        guard
            .refers_to(name, (self.dev, self.ino))
            .map_err(io_error("stat", name))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // The token dies before the lock goes, so nobody sees it alive after.
        self.peer_row(self.row).release(self.generation);
        let _ = lock::unlock_byte(self.file.as_fd(), peers::liveness_byte(self.row));
        #[cfg(feature = "failpoints")]
        shmring_core::failpoint::hit("segment.drop.row-released", &[]);
        let Some(name) = &self.name else { return };
        let last_peer_only = match self.unlink_policy {
            UnlinkPolicy::Never => return,
            UnlinkPolicy::OnCreatorDrop if !self.is_creator => return,
            UnlinkPolicy::OnCreatorDrop => false,
            UnlinkPolicy::OnLastPeerDrop => true,
        };
        // Decided under the name lock, so that an open confirming its
        // attach either shows us its row or finds the name gone. Nothing
        // here opens a descriptor: a drop works with a full table. A lock
        // held past the bounded wait leaves the name for a later reclaim.
        let _ = names::remove_name(&self.file, name, names::NAME_LOCK_WAIT, || {
            if last_peer_only && self.any_peer_attached() {
                Err(())
            } else {
                Ok(())
            }
        });
    }
}
