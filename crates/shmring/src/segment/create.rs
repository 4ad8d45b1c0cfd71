//! Creating segments: named (`shm_open`) and anonymous (`memfd_create`).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use super::header::{Identity, Layout};
use super::options::{check_mode, validate_name};
use super::peers::{self, INIT_LOCK_BYTE};
use super::{attach_row, header_of, inspect, io_error, open_error, ANONYMOUS};
use super::{CreateOptions, ObjectKind, Segment, UnlinkPolicy};
use crate::error::SegmentError;
use crate::sys::{lock, shm};

/// Removes the name of a segment that failed to be created (or whose `init`
/// panicked), unless disarmed.
struct UnlinkOnFailure(Option<CString>);

impl Drop for UnlinkOnFailure {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let _ = shm::shm_unlink(&name);
        }
    }
}

/// Reclaims the segment that holds `name` if it is abandoned and its policy
/// lets a create replace it (see [`CreateOptions::reclaim_abandoned`]).
/// Returns whether the name was removed.
fn reclaim_taken_name(name: &str) -> bool {
    let Ok(info) = inspect::inspect_with(name, false) else {
        return false; // not a segment, another user's, gone, ...
    };
    let never = info
        .header
        .is_some_and(|h| h.unlink_policy == UnlinkPolicy::Never);
    info.is_abandoned()
        && !never
        && matches!(inspect::reclaim(name), Ok(inspect::Reclaimed::Removed))
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

impl Segment {
    /// Creates a named segment holding an object of `object_len` bytes.
    ///
    /// `init` receives the object region (zeroed, 4096-aligned, `object_len`
    /// bytes) before any opener can see the segment; its writes are published
    /// with the header.
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName),
    /// [`InvalidConfig`](SegmentError::InvalidConfig) (mode, peer rows,
    /// `object_len` 0 or too large), [`AlreadyExists`](SegmentError::AlreadyExists),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`NoSpace`](SegmentError::NoSpace) when `/dev/shm` cannot hold it,
    /// [`Io`](SegmentError::Io), or whatever `init` returns. On any error the
    /// name is removed again.
    pub fn create(
        name: &str,
        kind: ObjectKind,
        params: [u64; 8],
        object_len: usize,
        opts: &CreateOptions,
        init: impl FnOnce(NonNull<u8>, usize) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let (name, cname) = validate_name(name)?;
        let layout = Layout::compute(opts.peer_rows, object_len)?;
        check_mode(opts.mode)?;
        let file = match shm::shm_create(&cname, opts.mode) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && opts.reclaim_abandoned => {
                if !reclaim_taken_name(&name) {
                    return Err(SegmentError::AlreadyExists { name });
                }
                // Removed under locks: create afresh, with O_EXCL again (a
                // racing creator may have taken the name in between).
                shm::shm_create(&cname, opts.mode)
            }
            other => other,
        }
        .map_err(|e| open_error("shm_open", &name, e))?;
        let guard = UnlinkOnFailure(Some(cname));
        let segment = Self::create_in(
            file,
            Some(name),
            guard,
            kind,
            params,
            layout,
            opts.unlink,
            init,
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
        let guard = UnlinkOnFailure(None);
        Self::create_in(
            file,
            None,
            guard,
            kind,
            params,
            layout,
            UnlinkPolicy::Never,
            init,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        file: File,
        name: Option<String>,
        mut guard: UnlinkOnFailure,
        kind: ObjectKind,
        params: [u64; 8],
        layout: Layout,
        unlink_policy: UnlinkPolicy,
        init: impl FnOnce(NonNull<u8>, usize) -> Result<(), SegmentError>,
    ) -> Result<Segment, SegmentError> {
        let label = name.as_deref().unwrap_or(ANONYMOUS);
        let total = layout.total_len as u64;
        // The init lock comes first: openers take "empty file, no init lock"
        // as a possibly dead creator.
        let locked = lock::try_lock_byte(file.as_fd(), INIT_LOCK_BYTE)
            .map_err(io_error("lock init byte", label))?;
        if !locked {
            return Err(SegmentError::Io {
                op: "lock init byte",
                name: label.to_owned(),
                source: std::io::Error::from_raw_os_error(libc::EAGAIN),
            });
        }
        file.set_len(total)
            .map_err(|e| no_space("ftruncate", label, total, e))?;
        shm::allocate(&file, total).map_err(|e| no_space("posix_fallocate", label, total, e))?;
        if name.is_none() {
            shm::seal_size(&file).map_err(io_error("F_ADD_SEALS", label))?;
        }
        let st = shm::stat(&file).map_err(io_error("fstat", label))?;
        let map = shm::map_shared(&file, layout.total_len).map_err(io_error("mmap", label))?;
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
        let (row, generation) = attach_row(&file, &map, &layout, label)?;
        // SAFETY: object_offset < total_len == map.len() (Layout::compute),
        // so the pointer is inside the mapping and not null.
        let object = unsafe { NonNull::new_unchecked(map.as_mut_ptr().add(layout.object_offset)) };
        init(object, layout.object_len)?;
        header.publish();
        // Openers that see the published version no longer look at the init
        // lock; a failure to drop it early is harmless (it goes with the fd).
        let _ = lock::unlock_byte(file.as_fd(), INIT_LOCK_BYTE);
        guard.0 = None;
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
        }
        .count_futex_calls())
    }
}
