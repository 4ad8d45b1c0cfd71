//! Opening segments: validating, attaching, confirming the name; and
//! removing a name by hand.

use std::fs::File;
use std::time::Duration;

use memmap2::MmapRaw;

use super::header::{validate, HEADER_LEN};
use super::names::{self, Removal};
use super::options::{validate_any_name, validate_name};
use super::{attach_row, header_of, inspect, io_error, open_error, peers, ANONYMOUS};
use super::{ObjectKind, OpenOptions, Segment};
use crate::segment::SegmentError;
use crate::sys::{self, shm};

/// The shortest wait for the name lock an open makes, whatever its timeout:
/// holders keep it for a few system calls, which a loaded machine can
/// stretch to milliseconds.
const MIN_NAME_LOCK_WAIT: Duration = Duration::from_millis(100);

/// How often [`Segment::open`] looks the name up again when what it found
/// was being reclaimed or lost its name meanwhile (1 ms apart).
const LOOKUP_RETRIES: u32 = 20;

impl Segment {
    /// Opens and attaches to the named segment, which must hold a `kind`.
    ///
    /// Validates the header, takes a peer row, then confirms under the
    /// segment's name lock that the name still refers to the file it
    /// attached to (a segment whose name was removed or given to another
    /// file meanwhile is dropped, and the name looked up again): the
    /// returned segment's name is not removed by a drop or a reclaim for as
    /// long as it stays attached.
    ///
    /// # Blocking
    ///
    /// Up to `opts.timeout` (at least 100 ms) for the name lock, which
    /// other processes hold for a few system calls; never for a creator (a
    /// segment is named only once complete).
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound)
    /// (also when the name moved to other files on every one of 20 tries),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`ForeignOwner`](SegmentError::ForeignOwner),
    /// [`NotShmring`](SegmentError::NotShmring) (an empty or short file, or
    /// no magic), [`VersionMismatch`](SegmentError::VersionMismatch) (`found:
    /// 0` for a file under a segment name that was never published: foreign
    /// or corrupted, never a creator still at work),
    /// [`AbiMismatch`](SegmentError::AbiMismatch),
    /// [`KindMismatch`](SegmentError::KindMismatch),
    /// [`SizeMismatch`](SegmentError::SizeMismatch), [`Corrupted`](SegmentError::Corrupted),
    /// [`PeerTableFull`](SegmentError::PeerTableFull),
    /// [`NameLockTimeout`](SegmentError::NameLockTimeout), [`Io`](SegmentError::Io).
    pub fn open(name: &str, kind: ObjectKind, opts: &OpenOptions) -> Result<Segment, SegmentError> {
        let (name, cname) = validate_name(name)?;
        let start = sys::now();
        let timeout = u64::try_from(opts.timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut attempt = 0;
        loop {
            let file = shm::shm_open_rw(&cname).map_err(|e| open_error("shm_open", &name, e))?;
            let segment = match Self::open_file(file, Some(name.clone()), kind, opts) {
                Err(SegmentError::PeerTableFull { .. }) if attempt < LOOKUP_RETRIES => {
                    // A reclaim holds every row's claim byte while it
                    // decides, under the name lock, and lets the claims go
                    // before the name lock (see `inspect::reclaim` and
                    // `names::remove_name`): wait for that, then look again.
                    let left = timeout.saturating_sub(sys::clock::nanos_between(start, sys::now()));
                    if let Ok(file) = shm::shm_open_rw(&cname) {
                        let wait = Duration::from_nanos(left);
                        drop(names::NameLock::acquire(&file, wait));
                    }
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                other => other?,
            };
            if segment.confirm_name(opts.timeout.max(MIN_NAME_LOCK_WAIT))? {
                return Ok(segment);
            }
            // Reclaimed, removed or replaced between our shm_open and our
            // confirmation: an attachment nobody else can reach is of no
            // use. Its drop finds the name elsewhere and leaves it alone.
            drop(segment);
            if attempt >= LOOKUP_RETRIES {
                return Err(SegmentError::NotFound { name });
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Validates the segment in `file` and takes a peer row. Never waits.
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
        if st.size < HEADER_LEN as u64 {
            // Empty included: a create never names a file before it is
            // complete, so this is no segment (nor one being made).
            return Err(SegmentError::NotShmring {
                name: label.to_owned(),
            });
        }
        if st.size > isize::MAX as u64 {
            return Err(SegmentError::SizeMismatch {
                name: label.to_owned(),
                header: 0,
                file: st.size,
            });
        }
        // Populated only when the file has no holes (as a create leaves
        // it): populating a sparse file would allocate all of it, before
        // the header is even read (see `shm::map_shared`).
        let populate = st.fully_allocated();
        let map =
            shm::map_shared(&file, st.size as usize, populate).map_err(io_error("mmap", label))?;
        Self::attach(file, map, st.size, name, kind)
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
        let header = header_of(&map);
        // The Acquire load of the version comes first: it makes the header
        // and the initialised object visible (a version 0 is refused by
        // `validate` as a VersionMismatch).
        let _ = header.version();
        let snapshot = header.snapshot();
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
        })
    }

    /// Removes a name from `/dev/shm`, whatever its segment's peers are
    /// doing (attached peers keep working; later opens by name fail with
    /// [`NotFound`](SegmentError::NotFound)). Also accepts the private names
    /// of the fallback create path, to remove a creator's leftovers. To
    /// remove a name only while no peer is attached, use
    /// [`unlink_unless_in_use`](super::unlink_unless_in_use), which decides
    /// that under the segment's locks.
    ///
    /// A regular file is removed under its name lock, and only while the
    /// name still refers to the file that was opened (see the module docs):
    /// never a segment created under the name meanwhile. A file that cannot
    /// be a segment anyone attaches to (a symbolic link, a FIFO, ...) or
    /// that cannot be opened for writing is removed by name alone.
    ///
    /// # Blocking
    ///
    /// Up to 2 s for the name lock.
    ///
    /// # Errors
    ///
    /// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
    /// [`PermissionDenied`](SegmentError::PermissionDenied),
    /// [`NameLockTimeout`](SegmentError::NameLockTimeout), [`Io`](SegmentError::Io).
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        let (name, _) = validate_any_name(name)?;
        for _ in 0..=LOOKUP_RETRIES {
            let file = match inspect::open_shm_file(&name, true) {
                Ok((_, file)) => file,
                Err(SegmentError::NotShmring { .. })
                | Err(SegmentError::PermissionDenied { .. }) => {
                    return shm::unlink(&names::path_of(&name))
                        .map_err(|e| open_error("unlink", &name, e));
                }
                Err(e) => return Err(e),
            };
            match names::remove_name(&file, &name, names::NAME_LOCK_WAIT, || Ok::<(), ()>(()))
                .map_err(io_error("unlink", &name))?
            {
                Removal::Removed => return Ok(()),
                // The name moved to another file since we opened it: that
                // one is the file the caller names now.
                Removal::Elsewhere | Removal::Kept(()) => {}
                Removal::Busy => {
                    return Err(SegmentError::NameLockTimeout {
                        name,
                        waited: names::NAME_LOCK_WAIT,
                    })
                }
            }
        }
        Err(SegmentError::NotFound { name })
    }
}
