//! Segment names: where they live, the *name lock*, and the one function
//! through which shmring ever removes a name.
//!
//! # Why removing a name needs a lock
//!
//! A name is removed by path (`unlink`), but what a remover decided about
//! was a *file* (its peers, its data). Between "the name still refers to
//! file X" and the `unlink`, somebody else could remove X's name and a
//! create could give the name to a new segment Y, whose name the unlink
//! would then remove while Y is in use. So:
//!
//! - Byte [`NAME_LOCK_BYTE`] of every segment file is its name lock (an OFD
//!   write lock, like the peer rows' locks).
//! - Every shmring path that removes a name ([`Segment`]'s drop, `reclaim`,
//!   [`Segment::unlink`], a failed or finished fallback create) goes through
//!   [`remove_name`]: it takes X's name lock through a descriptor of X it
//!   already holds, decides, checks with a path `lstat` that the name still
//!   refers to X (device and inode), unlinks, and lets the lock go.
//! - A create gives a name only to a *new* file, and only if the name is
//!   free (`linkat`, `EEXIST` otherwise).
//!
//! While a remover holds X's name lock, no other shmring process can remove
//! X's name (it would need the same lock), so the name cannot move to
//! another file between the check and the unlink: it refers to X until the
//! unlink, and only after that can a create give it to a new file.
//!
//! An opener confirms the name the same way ([`Segment::open`] attaches,
//! then takes the name lock and checks that the name still refers to the
//! file it attached to), and a dropping peer decides "nobody else is
//! attached" under the name lock. Either the opener's peer row is held when
//! the dropper looks (the dropper keeps the name), or the dropper removed
//! the name before the opener looks (the opener retries): an open never
//! returns a segment whose name a last drop is about to remove.
//!
//! The lock is taken with a bounded wait ([`NAME_LOCK_WAIT`] for removers,
//! the open timeout for openers): a holder that is stopped (`SIGSTOP`, a
//! debugger) cannot hang anybody for longer. A drop that gives up leaves the
//! name in place, for `reclaim` (a create of the same name, the sweep, or
//! `shmring gc`) to remove later.
//!
//! # Private names
//!
//! Where `O_TMPFILE` is not available, a create builds the segment under a
//! private name starting with [`PRIVATE_PREFIX`] (which
//! [`validate_name`](super::options::validate_name) refuses for segments),
//! holding that file's name lock from right after it made the file until
//! just before it names the segment (never after: a creator stopped while
//! holding the lock of a named segment would lock every open out), and its
//! peer row's lock from before that until it dies or drops the segment
//! ([`creator_alive`]). A creator killed meanwhile leaves such a file
//! behind: it never blocks a segment name, and `reclaim` removes it once no
//! lock is held on it and it is older than [`LEFTOVER_GRACE`].
//!
//! [`Segment`]: super::Segment
//! [`Segment::open`]: super::Segment::open
//! [`Segment::unlink`]: super::Segment::unlink

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use super::peers::{INIT_LOCK_BYTE, LOCK_BYTES_END};
use crate::sys::{lock, shm};

/// The name lock: byte 0 of every segment file. (It was the creator's
/// "still initialising" lock before creation became atomic; a create no
/// longer needs one, since nobody can open a segment before it is named.)
pub(crate) const NAME_LOCK_BYTE: u64 = INIT_LOCK_BYTE;

/// How long a remover (a drop, `reclaim`, [`Segment::unlink`](super::Segment::unlink))
/// waits for a name lock that someone else holds.
pub(crate) const NAME_LOCK_WAIT: Duration = Duration::from_secs(2);

/// Private names of the fallback create path start with this (after the
/// `/`).
pub(crate) const PRIVATE_PREFIX: &str = ".shmring-creating.";

/// The prefix of the sweep's stamp files (`/dev/shm/.shmring-sweep-<uid>`,
/// see the `inspect::sweep` module): reserved, like [`PRIVATE_PREFIX`], so
/// that no segment ever takes a stamp's name.
pub(crate) const STAMP_PREFIX: &str = ".shmring-sweep-";

/// Why `name` (with or without its leading `/`) is not a segment name, if
/// it is one that shmring keeps for its own files: a private name of the
/// fallback create path, or a sweep stamp's.
pub(crate) fn reserved(name: &str) -> Option<&'static str> {
    let body = name.strip_prefix('/').unwrap_or(name);
    if body.starts_with(PRIVATE_PREFIX) {
        Some("names starting with \".shmring-creating.\" are reserved")
    } else if body.starts_with(STAMP_PREFIX) {
        Some("names starting with \".shmring-sweep-\" are reserved")
    } else {
        None
    }
}

/// How old a file under a private name must be (by its modification time)
/// before `reclaim` takes a free name lock as proof that its creator is gone:
/// the creator makes the file and takes the lock in two system calls, and
/// between them the lock says nothing.
pub(crate) const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// The file of the name `name` (in `/name` form).
pub(crate) fn path_of(name: &str) -> PathBuf {
    PathBuf::from(format!("{}{name}", shm::SHM_DIR))
}

/// Whether `name` (in `/name` form) is a private name of the fallback
/// create path.
pub(crate) fn is_private(name: &str) -> bool {
    name.strip_prefix('/')
        .is_some_and(|body| body.starts_with(PRIVATE_PREFIX))
}

/// A fresh private name for a fallback create: process id, a counter and
/// the clock, so that two creators practically never meet (and `O_EXCL`
/// catches it when they do).
pub(crate) fn private_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness within this process matters.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = crate::sys::now().0;
    format!("/{PRIVATE_PREFIX}{}.{n}.{nanos:x}", shm::getpid())
}

/// Whether the creator of the file under a private name (`file`, any
/// descriptor of it) is alive: another description holds a lock on it. The
/// creator holds the name lock from right after it made the file until just
/// before it names the segment, and its peer row's lock from before that
/// (`segment.create.attached`) on, so one or the other is held for as long
/// as it lives, but for the two system calls that make the file and take
/// the name lock (which [`LEFTOVER_GRACE`] covers). One `F_OFD_GETLK`
/// over every lock byte a segment can have (name lock, liveness and claim
/// bytes: an attach in progress, or a reclaim deciding, counts as alive).
pub(crate) fn creator_alive(file: &File) -> io::Result<bool> {
    lock::is_range_locked(file.as_fd(), 0, LOCK_BYTES_END)
}

/// A held name lock; dropping it lets the lock go.
pub(crate) struct NameLock<'a> {
    file: &'a File,
}

impl<'a> NameLock<'a> {
    /// Takes the name lock of `file`'s file through `file`'s open file
    /// description, waiting up to `wait` for another holder. `None`: still
    /// held by someone else after `wait`. Taking it again through a
    /// description that holds it already succeeds at once.
    pub(crate) fn acquire(file: &'a File, wait: Duration) -> io::Result<Option<NameLock<'a>>> {
        let got = lock::lock_byte_within(file.as_fd(), NAME_LOCK_BYTE, wait)?;
        Ok(got.then_some(NameLock { file }))
    }

    /// Whether `name` refers to the file `(dev, ino)` right now. Path-based:
    /// opens nothing, so it works with a full descriptor table.
    pub(crate) fn refers_to(&self, name: &str, (dev, ino): (u64, u64)) -> io::Result<bool> {
        match shm::stat_path(&path_of(name)) {
            Ok(st) => Ok((st.dev, st.ino) == (dev, ino)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for NameLock<'_> {
    fn drop(&mut self) {
        // Failure leaves the lock until the description closes; nothing
        // better to do in a drop.
        let _ = lock::unlock_byte(self.file.as_fd(), NAME_LOCK_BYTE);
    }
}

/// What [`remove_name`] did.
#[derive(Debug)]
pub(crate) enum Removal<K> {
    /// The name referred to the file and was removed.
    Removed,
    /// `decide` said no, with its reason.
    Kept(K),
    /// The name was already gone, or refers to another file.
    Elsewhere,
    /// Someone else held the name lock for all of `wait`.
    Busy,
}

/// The one function through which shmring removes a segment's name.
///
/// `file` is a writable descriptor of the file the caller means; `name` (in
/// `/name` form) is removed only if it still refers to that file. Under the
/// file's name lock (waiting up to `wait` for it), `decide` runs first (a
/// last check that must not race with removers, such as "no other peer is
/// attached"; `Err` keeps the name), then the name is checked with a path
/// `lstat` and unlinked.
///
/// What `decide` returns on `Ok` (a guard of more locks, say) is dropped
/// after the unlink (or the finding that the name is elsewhere) and
/// *before* the name lock goes; what it holds on `Err` it must let go
/// before it returns. So whoever waits for the name lock (an open that
/// found every peer row claimed, see `Segment::open`) finds everything
/// else free once it has it: a remover stopped after this returns holds
/// nothing of the segment's.
///
/// Opens no descriptor: works with a full descriptor table (`EMFILE`).
pub(crate) fn remove_name<G, K>(
    file: &File,
    name: &str,
    wait: Duration,
    decide: impl FnOnce() -> Result<G, K>,
) -> io::Result<Removal<K>> {
    let st = shm::stat(file)?;
    let Some(guard) = NameLock::acquire(file, wait)? else {
        return Ok(Removal::Busy);
    };
    let held = match decide() {
        Ok(held) => held,
        Err(reason) => return Ok(Removal::Kept(reason)),
    };
    let removed = match guard.refers_to(name, (st.dev, st.ino)) {
        Ok(false) => Ok(Removal::Elsewhere),
        Err(e) => Err(e),
        Ok(true) => match shm::unlink(&path_of(name)) {
            Ok(()) => Ok(Removal::Removed),
            // Removed by hand (`rm`) meanwhile: not by a shmring path, which
            // would have needed the lock we hold.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Removal::Elsewhere),
            Err(e) => Err(e),
        },
    };
    // Only after the unlink, and in this order: `decide`'s locks, then the
    // name lock.
    drop(held);
    drop(guard);
    removed
}
