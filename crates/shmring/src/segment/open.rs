//! Opening segments: waiting for the creator, validating, attaching.

use std::fs::File;
use std::os::fd::AsFd;
use std::time::Duration;

use memmap2::MmapRaw;

use super::header::{validate, HEADER_LEN, MAGIC};
use super::options::validate_name;
use super::peers::{self, INIT_LOCK_BYTE};
use super::{attach_row, header_of, inspect, io_error, open_error, ANONYMOUS};
use super::{ObjectKind, OpenOptions, Segment};
use crate::error::SegmentError;
use crate::sys::{self, lock, shm};

/// How long an opener tolerates an *empty* file whose creator holds no init
/// lock: the creator takes the lock right after `shm_open`, so this only
/// covers that one system call (and a creator that died right there).
const EMPTY_FILE_GRACE: Duration = Duration::from_millis(500);

/// How often [`Segment::open`] looks again when it raced a reclaim (1 ms
/// apart).
const RECLAIM_RETRIES: u32 = 20;

impl Segment {
    /// Opens and attaches to the named segment, which must hold a `kind`.
    ///
    /// # Blocking
    ///
    /// Waits up to `opts.timeout`, in short sleeps, while the creator is
    /// still initialising the segment.
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`ForeignOwner`](SegmentError::ForeignOwner),
    /// [`InitTimeout`](SegmentError::InitTimeout), [`CreatorDied`](SegmentError::CreatorDied),
    /// [`NotShmring`](SegmentError::NotShmring),
    /// [`VersionMismatch`](SegmentError::VersionMismatch),
    /// [`AbiMismatch`](SegmentError::AbiMismatch),
    /// [`KindMismatch`](SegmentError::KindMismatch),
    /// [`SizeMismatch`](SegmentError::SizeMismatch), [`Corrupted`](SegmentError::Corrupted),
    /// [`PeerTableFull`](SegmentError::PeerTableFull), [`Io`](SegmentError::Io).
    pub fn open(name: &str, kind: ObjectKind, opts: &OpenOptions) -> Result<Segment, SegmentError> {
        let (name, cname) = validate_name(name)?;
        let mut attempt = 0;
        loop {
            let file = shm::shm_open_rw(&cname).map_err(|e| open_error("shm_open", &name, e))?;
            match Self::open_file(file, Some(name.clone()), kind, opts) {
                // A reclaim holds every row lock for a few system calls
                // while it decides (see `inspect::reclaim`): look again.
                Err(SegmentError::PeerTableFull { .. }) if attempt < RECLAIM_RETRIES => {}
                Err(SegmentError::CreatorDied { name }) => {
                    // Nobody can ever use it: remove it so that the name can
                    // be created again (`reclaim` re-checks under locks).
                    let _ = inspect::reclaim(&name);
                    return Err(SegmentError::CreatorDied { name });
                }
                Ok(segment) if !segment.name_is_ours() && attempt < RECLAIM_RETRIES => {
                    // Reclaimed (or replaced) between our shm_open and our
                    // attach: an attachment nobody else can reach is of no
                    // use. Drop it and look up the name again.
                    drop(segment);
                }
                other => return other,
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(super) fn open_file(
        file: File,
        name: Option<String>,
        kind: ObjectKind,
        opts: &OpenOptions,
    ) -> Result<Segment, SegmentError> {
        let label = name.as_deref().unwrap_or(ANONYMOUS);
        let st = shm::stat(&file).map_err(io_error("fstat", label))?;
        let our_uid = shm::geteuid();
        if st.uid != our_uid && !opts.allow_foreign_owner {
            return Err(SegmentError::ForeignOwner {
                name: label.to_owned(),
                owner_uid: st.uid,
                our_uid,
            });
        }
        let start = sys::now();
        let timeout_ns = u64::try_from(opts.timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut pause = Duration::from_micros(500);
        let init_locked = |file: &File| {
            lock::is_byte_locked(file.as_fd(), INIT_LOCK_BYTE)
                .map_err(io_error("F_OFD_GETLK", label))
        };
        loop {
            let size = shm::stat(&file).map_err(io_error("fstat", label))?.size;
            let elapsed = sys::clock::nanos_between(start, sys::now());
            if size == 0 {
                // Between the creator's shm_open and its ftruncate.
                if !init_locked(&file)? && elapsed >= EMPTY_FILE_GRACE.as_nanos() as u64 {
                    return Err(SegmentError::CreatorDied {
                        name: label.to_owned(),
                    });
                }
            } else if size < HEADER_LEN as u64 {
                return Err(SegmentError::NotShmring {
                    name: label.to_owned(),
                });
            } else if size > isize::MAX as u64 {
                return Err(SegmentError::SizeMismatch {
                    name: label.to_owned(),
                    header: 0,
                    file: size,
                });
            } else {
                let map = shm::map_shared(&file, size as usize).map_err(io_error("mmap", label))?;
                let header = header_of(&map);
                if header.version() != 0 {
                    return Self::attach(file, map, size, name, kind);
                }
                let magic = header.magic();
                if magic != 0 && magic != u64::from_ne_bytes(MAGIC) {
                    return Err(SegmentError::NotShmring {
                        name: label.to_owned(),
                    });
                }
                // The creator publishes the version before it drops the init
                // lock, so re-read the version after seeing the lock free.
                if !init_locked(&file)? && header.version() == 0 {
                    return Err(SegmentError::CreatorDied {
                        name: label.to_owned(),
                    });
                }
            }
            if elapsed >= timeout_ns {
                return Err(SegmentError::InitTimeout {
                    name: label.to_owned(),
                    waited: Duration::from_nanos(elapsed),
                });
            }
            let left = Duration::from_nanos(timeout_ns - elapsed);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Validates the published header of `map` (`file_len` bytes) and takes
    /// a peer row.
    fn attach(
        file: File,
        map: MmapRaw,
        file_len: u64,
        name: Option<String>,
        kind: ObjectKind,
    ) -> Result<Segment, SegmentError> {
        let label = name.as_deref().unwrap_or(ANONYMOUS);
        let snapshot = header_of(&map).snapshot();
        let valid = validate(&snapshot, label, kind, file_len)?;
        // The mapping was made at `file_len`; a file resized since would
        // leave part of it unbacked.
        let st = shm::stat(&file).map_err(io_error("fstat", label))?;
        if st.size != file_len {
            return Err(SegmentError::SizeMismatch {
                name: label.to_owned(),
                header: file_len,
                file: st.size,
            });
        }
        let (row, generation) = attach_row(&file, &map, &valid.layout, label)?;
        Ok(Segment {
            map,
            file,
            name,
            dev: st.dev,
            ino: st.ino,
            kind: valid.kind,
            params: valid.params,
            layout: valid.layout,
            unlink_policy: valid.unlink_policy,
            is_creator: false,
            row,
            generation,
            token: peers::token(row, generation),
        }
        .count_futex_calls())
    }

    /// Removes a segment's name from `/dev/shm`. Attached peers keep working.
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied), [`Io`](SegmentError::Io).
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        let (name, cname) = validate_name(name)?;
        shm::shm_unlink(&cname).map_err(|e| open_error("shm_unlink", &name, e))
    }
}
