//! Creating segments: named ones are built where no opener can see them and
//! then named atomically; anonymous ones (`memfd_create`) are never named.
//!
//! # Failpoints (testing)
//!
//! With the cargo feature `failpoints`, a create calls the failpoint hook
//! ([`shmring::core::failpoint`](crate::core::failpoint)) between its steps:
//!
//! | name | where |
//! |---|---|
//! | `segment.create.staged` | the file exists (unnamed, or under a private name), nothing written |
//! | `segment.create.sized` | `ftruncate` and `posix_fallocate` done |
//! | `segment.create.header-written` | header written, version 0 |
//! | `segment.create.attached` | the creator's peer row taken; `init` not yet run |
//! | `segment.create.initialised` | `init` returned; version not yet published |
//! | `segment.create.published` | version published; the segment has no name yet |
//! | `segment.create.named` | named; a private name (fallback path) not yet removed |
//!
//! With the same feature, the environment variable
//! `SHMRING_TEST_CREATE_FALLBACK=1` makes named creates take the fallback
//! path (a private name, then `link`) as if `O_TMPFILE` were unavailable.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::ptr::NonNull;

use super::header::{Identity, Layout};
use super::names;
use super::options::{check_mode, validate_any_name, validate_name};
use super::{attach_row, header_of, inspect, io_error, open_error, peers, ANONYMOUS};
use super::{CreateOptions, ObjectKind, Segment, UnlinkPolicy};
use crate::segment::SegmentError;
use crate::sys::{lock, shm};

/// Calls the failpoint hook with the feature `failpoints`; nothing otherwise.
macro_rules! create_failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        shmring_core::failpoint::hit($name, &[]);
    };
}

/// Where a segment is built before it is complete.
enum Staging {
    /// An anonymous memfd: never named.
    Anonymous,
    /// An unnamed `O_TMPFILE` file in `/dev/shm`: nothing to clean up.
    Unnamed,
    /// A file under a private name (see the `names` module), whose name
    /// lock the creator holds until just before it names the segment:
    /// removed on failure and once the segment is named.
    Private(String),
}

/// Removes a private name when the create fails (or `init` panics), unless
/// disarmed.
struct PrivateNameGuard<'a> {
    file: &'a File,
    name: Option<String>,
}

impl PrivateNameGuard<'_> {
    /// Removes the private name now (success or failure alike). Before the
    /// segment is named we hold its name lock already, and this takes it
    /// again at once; after, it waits for it like any remover.
    fn remove(&mut self) {
        if let Some(name) = self.name.take() {
            let _ =
                names::remove_name(self.file, &name, names::NAME_LOCK_WAIT, || Ok::<(), ()>(()));
        }
    }

    /// Lets the name lock go, which the fallback path held since `stage`,
    /// before the segment is named: once named, the name lock is the
    /// segment's, and a creator stopped while holding it would make every
    /// open wait for it and fail (review finding 2). From here until the
    /// process dies, the creator's peer row lock (taken at
    /// `segment.create.attached`) is what says that it is alive (see
    /// `names::creator_alive`).
    fn release_name_lock(&self) {
        if self.name.is_some() {
            // Failure leaves the lock until the private name is removed;
            // nothing better to do.
            let _ = lock::unlock_byte(self.file.as_fd(), names::NAME_LOCK_BYTE);
        }
    }
}

impl Drop for PrivateNameGuard<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Why a create may not take a taken name.
fn taken(name: &str, undelivered: bool) -> SegmentError {
    SegmentError::AlreadyExists {
        name: name.to_owned(),
        undelivered,
    }
}

/// Reclaims the segment that holds `name` if it is abandoned, its policy
/// lets a create replace it, and it holds no undelivered data (see
/// [`CreateOptions::reclaim_abandoned`]). `Ok` when the name was removed
/// (or was already free), [`AlreadyExists`](SegmentError::AlreadyExists)
/// otherwise.
fn reclaim_taken_name(name: &str) -> Result<(), SegmentError> {
    let info = match inspect::inspect_with(name, false) {
        Ok(info) => info,
        Err(SegmentError::NotFound { .. }) => return Ok(()),
        // Not a segment, another user's, unreadable, ...: never removed.
        Err(_) => return Err(taken(name, false)),
    };
    let never = info
        .header
        .is_some_and(|h| h.unlink_policy == UnlinkPolicy::Never);
    if !info.is_abandoned() || never {
        return Err(taken(name, false));
    }
    match inspect::reclaim_unless_data(name) {
        Ok(inspect::Reclaimed::Removed) | Err(SegmentError::NotFound { .. }) => Ok(()),
        Ok(inspect::Reclaimed::Kept(inspect::HOLDS_DATA)) => Err(taken(name, true)),
        _ => Err(taken(name, false)),
    }
}

/// The error of a failed `link`/`linkat` (`EEXIST` is handled apart).
fn link_error(name: &str, e: std::io::Error) -> SegmentError {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => SegmentError::PermissionDenied {
            name: name.to_owned(),
        },
        Some(libc::EEXIST) => taken(name, false),
        // Not "not found": the name is what we were making.
        _ => SegmentError::Io {
            op: "linkat",
            name: name.to_owned(),
            source: e,
        },
    }
}

fn no_space(op: &'static str, label: &str, bytes: u64, e: std::io::Error) -> SegmentError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::ENOMEM) => SegmentError::NoSpace {
            name: label.to_owned(),
            bytes,
        },
        _ => SegmentError::Io {
            op,
            name: label.to_owned(),
            source: e,
        },
    }
}

/// Whether tests asked for the fallback create path.
fn fallback_forced() -> bool {
    #[cfg(feature = "failpoints")]
    {
        std::env::var_os("SHMRING_TEST_CREATE_FALLBACK").is_some_and(|v| v == "1")
    }
    #[cfg(not(feature = "failpoints"))]
    {
        false
    }
}

/// Makes the file a named segment is built in: unnamed (`O_TMPFILE`) where
/// the kernel and `/dev/shm` allow it, else under a fresh private name,
/// whose name lock is taken at once.
fn stage(name: &str, mode: u32) -> Result<(File, Staging), SegmentError> {
    // An unnamed file is named through /proc/self/fd; without /proc only
    // the fallback can name what it builds.
    if !fallback_forced() && Path::new("/proc/self/fd").is_dir() {
        match shm::create_unnamed(Path::new(shm::SHM_DIR), mode) {
            Ok(file) => return Ok((file, Staging::Unnamed)),
            // No O_TMPFILE here (or not allowed): the fallback reports any
            // real problem with /dev/shm itself.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::EPERM)
                ) => {}
            Err(e) => return Err(open_error("open O_TMPFILE", name, e)),
        }
    }
    let mut attempts = 0;
    loop {
        let private = names::private_name();
        let (_, cprivate) = validate_any_name(&private)?;
        match shm::shm_create(&cprivate, mode) {
            Ok(file) => {
                let locked = lock::try_lock_byte(file.as_fd(), names::NAME_LOCK_BYTE);
                if !matches!(locked, Ok(true)) {
                    // Nobody else knows this name yet; a lock we cannot take
                    // means something is badly wrong. Remove it and report.
                    let _ = shm::unlink(&names::path_of(&private));
                    let source = locked
                        .err()
                        .unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EAGAIN));
                    return Err(SegmentError::Io {
                        op: "lock private name",
                        name: name.to_owned(),
                        source,
                    });
                }
                return Ok((file, Staging::Private(private)));
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && attempts < 16 => attempts += 1,
            Err(e) => return Err(open_error("shm_open", name, e)),
        }
    }
}

impl Segment {
    /// Creates a named segment holding an object of `object_len` bytes.
    ///
    /// `init` receives the object region (zeroed, 4096-aligned, `object_len`
    /// bytes) before any opener can see the segment; its writes are published
    /// with the header. The segment is built without a name (or under a
    /// private one, see the module docs) and gets `name` only once it is
    /// complete, and only if the name is still free: an opener never meets
    /// a half-made segment, and a creator that dies or stalls at any step
    /// blocks no name.
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName),
    /// [`InvalidConfig`](SegmentError::InvalidConfig) (mode, peer rows,
    /// `object_len` 0 or too large), [`AlreadyExists`](SegmentError::AlreadyExists)
    /// (with `undelivered: true` when an abandoned segment that holds data
    /// keeps the name, see [`CreateOptions::reclaim_abandoned`]),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`NoSpace`](SegmentError::NoSpace) when `/dev/shm` cannot hold it,
    /// [`Io`](SegmentError::Io), or whatever `init` returns. On any error
    /// nothing is left under the name (nor under a private one).
    ///
    /// # Crash behaviour
    ///
    /// A creator killed before the name is given leaves nothing under it:
    /// the unnamed file goes with its last descriptor; on the fallback path
    /// a file under a private name stays until [`reclaim`](super::reclaim)
    /// or `shmring gc` removes it. One killed after is a complete segment
    /// with a dead peer, reclaimed like any other.
    pub fn create(
        name: &str,
        kind: ObjectKind,
        params: [u64; 8],
        object_len: usize,
        opts: &CreateOptions,
        init: impl FnOnce(NonNull<u8>, usize) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let (name, _) = validate_name(name)?;
        let layout = Layout::compute(opts.peer_rows, object_len)?;
        check_mode(opts.mode)?;
        let target = names::path_of(&name);
        // A taken name is settled before building anything (the link below
        // stays exclusive whatever happens meanwhile).
        let mut reclaimed = false;
        if shm::stat_path(&target).is_ok() {
            if !opts.reclaim_abandoned {
                return Err(taken(&name, false));
            }
            reclaim_taken_name(&name)?;
            reclaimed = true;
        }
        let (file, staging) = stage(&name, opts.mode)?;
        // An unnamed file is linked through /proc/self/fd; a private name
        // by path (it still names our file: `reclaim` and the sweep leave
        // it alone while we hold a lock on it; if removed by hand, the link
        // fails with ENOENT).
        let link = |file: &File, private: Option<&str>| match private {
            None => shm::link_fd(file, &target),
            Some(private) => shm::link_path(&names::path_of(private), &target),
        };
        let give_name = |file: &File, private: Option<&str>| match link(file, private) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Taken since we looked: a racing create, or a segment
                // abandoned meanwhile. One more reclaim, then give up.
                if !opts.reclaim_abandoned || reclaimed {
                    return Err(taken(&name, false));
                }
                reclaim_taken_name(&name)?;
                link(file, private).map_err(|e| link_error(&name, e))
            }
            other => other.map_err(|e| link_error(&name, e)),
        };
        let segment = Self::create_in(
            file,
            Some(name.clone()),
            staging,
            kind,
            params,
            layout,
            opts.unlink,
            init,
            give_name,
        )?;
        if opts.reclaim_abandoned {
            inspect::sweep_now_and_then();
        }
        Ok(segment)
    }

    /// Creates an anonymous (memfd) segment, sealed against shrinking and
    /// growing. Other processes reach it through
    /// [`share_with_child`](Segment::share_with_child).
    ///
    /// # Errors
    ///
    /// As [`create`](Segment::create), without the name errors;
    /// [`NoSpace`](SegmentError::NoSpace) when the size exceeds memory plus
    /// swap or cannot be allocated.
    pub fn create_anonymous(
        kind: ObjectKind,
        params: [u64; 8],
        object_len: usize,
        opts: &CreateOptions,
        init: impl FnOnce(NonNull<u8>, usize) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let layout = Layout::compute(opts.peer_rows, object_len)?;
        check_mode(opts.mode)?;
        if shm::memory_limit().is_some_and(|limit| layout.total_len as u64 > limit) {
            return Err(SegmentError::NoSpace {
                name: ANONYMOUS.into(),
                bytes: layout.total_len as u64,
            });
        }
        let file = shm::memfd_create(c"shmring").map_err(io_error("memfd_create", ANONYMOUS))?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(opts.mode))
            .map_err(io_error("fchmod", ANONYMOUS))?;
        Self::create_in(
            file,
            None,
            Staging::Anonymous,
            kind,
            params,
            layout,
            UnlinkPolicy::Never,
            init,
            |_, _| Ok(()),
        )
    }

    /// Builds a segment in `file` (which nobody else can reach yet), then
    /// calls `give_name` (with the private name, if it was staged under one)
    /// to make it reachable.
    #[allow(clippy::too_many_arguments)]
    fn create_in(
        file: File,
        name: Option<String>,
        staging: Staging,
        kind: ObjectKind,
        params: [u64; 8],
        layout: Layout,
        unlink_policy: UnlinkPolicy,
        init: impl FnOnce(NonNull<u8>, usize) -> Result<(), SegmentError>,
        give_name: impl FnOnce(&File, Option<&str>) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let label = name.as_deref().unwrap_or(ANONYMOUS);
        let total = layout.total_len as u64;
        let mut guard = PrivateNameGuard {
            file: &file,
            name: match staging {
                Staging::Private(private) => Some(private),
                Staging::Anonymous | Staging::Unnamed => None,
            },
        };
        create_failpoint!("segment.create.staged");
        file.set_len(total)
            .map_err(|e| no_space("ftruncate", label, total, e))?;
        shm::allocate(&file, total).map_err(|e| no_space("posix_fallocate", label, total, e))?;
        if name.is_none() {
            shm::seal_size(&file).map_err(io_error("F_ADD_SEALS", label))?;
        }
        create_failpoint!("segment.create.sized");
        let st = shm::stat(&file).map_err(io_error("fstat", label))?;
        // Allocated above (`posix_fallocate`): populating allocates nothing.
        let map =
            shm::map_shared(&file, layout.total_len, true).map_err(io_error("mmap", label))?;
        let header = header_of(&map);
        header.write(
            &layout,
            &Identity {
                kind,
                unlink_policy,
                params,
                uid: shm::geteuid(),
                pid: shm::getpid(),
            },
        );
        create_failpoint!("segment.create.header-written");
        let (row, generation) = attach_row(&file, &map, &layout, label)?;
        create_failpoint!("segment.create.attached");
        // SAFETY: object_offset < total_len == map.len() (Layout::compute),
        // so the pointer is inside the mapping and not null.
        let object = unsafe { NonNull::new_unchecked(map.as_mut_ptr().add(layout.object_offset)) };
        init(object, layout.object_len)?;
        create_failpoint!("segment.create.initialised");
        header.publish();
        create_failpoint!("segment.create.published");
        guard.release_name_lock();
        give_name(&file, guard.name.as_deref())?;
        create_failpoint!("segment.create.named");
        // Named: a private name has done its work.
        guard.remove();
        drop(guard);
        Ok(Segment {
            map,
            file,
            name,
            dev: st.dev,
            ino: st.ino,
            kind,
            params,
            layout,
            unlink_policy,
            is_creator: true,
            row,
            generation,
            token: peers::token(row, generation),
        })
    }
}
