//! Errors of the segment lifecycle: create, open, inherit, attach.

use std::fmt;
use std::io;
use std::time::Duration;

use super::ObjectKind;

/// Why a segment could not be created, opened or attached to.
///
/// Every variant carries the segment's name (`"(anonymous)"` for a memfd
/// segment) and, where there is one, the value that was expected and the one
/// that was found. Variants may be added in minor releases.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// The name is not a valid segment name.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A create found the name taken: by a live segment, by a file that is
    /// not a segment, or by an abandoned segment that still holds undelivered
    /// data (which a create never removes: open it to recover the data).
    AlreadyExists {
        /// The segment's name.
        name: String,
        /// The name belongs to a segment whose peers all died and that still
        /// holds undelivered data (messages in a queue, pipe or ring, entries
        /// in a dict): [`Segment::open`](crate::segment::Segment::open) recovers
        /// it; `shmring gc` or [`reclaim`](crate::segment::reclaim) removes it.
        undelivered: bool,
    },
    /// No segment has this name.
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// The file's permissions do not allow this process to open it.
    PermissionDenied {
        /// The segment's name.
        name: String,
    },
    /// `/dev/shm` (or memory, for an anonymous segment) cannot hold the
    /// segment; reported at create time, never as a later `SIGBUS`.
    NoSpace {
        /// The segment's name.
        name: String,
        /// The size that was asked for, header and peer table included.
        bytes: u64,
    },
    /// The file is not a shmring segment (wrong magic, or too small to hold
    /// a header).
    NotShmring {
        /// The segment's name.
        name: String,
    },
    /// The segment was written with another layout version.
    VersionMismatch {
        /// The segment's name.
        name: String,
        /// The layout version this build understands.
        expected: u32,
        /// The version in the header.
        found: u32,
    },
    /// The segment was written by a build with another pointer width or
    /// byte order.
    AbiMismatch {
        /// The segment's name.
        name: String,
        /// This build's ABI tag.
        expected: u32,
        /// The tag in the header.
        found: u32,
    },
    /// The segment holds another kind of object.
    KindMismatch {
        /// The segment's name.
        name: String,
        /// The kind the caller asked for.
        expected: ObjectKind,
        /// The kind in the header.
        found: ObjectKind,
    },
    /// A header field is out of range or inconsistent with the others.
    Corrupted {
        /// The segment's name.
        name: String,
        /// The field that failed validation.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The header's total length differs from the file's size.
    SizeMismatch {
        /// The segment's name.
        name: String,
        /// The length the header states.
        header: u64,
        /// The file's size.
        file: u64,
    },
    /// The file belongs to another user and the caller did not allow that.
    ForeignOwner {
        /// The segment's name.
        name: String,
        /// The file's owner.
        owner_uid: u32,
        /// This process's effective uid.
        our_uid: u32,
    },
    /// Another process held the segment's *name lock* for longer than the
    /// caller waits. Processes hold it for a few system calls while they
    /// check or remove the segment's name (see the `segment` module docs),
    /// so this means one of them is stopped (`SIGSTOP`, a debugger) or
    /// starved.
    NameLockTimeout {
        /// The segment's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// Every peer row is held by a live peer.
    PeerTableFull {
        /// The segment's name.
        name: String,
        /// The number of rows in the table.
        rows: u32,
    },
    /// The options or sizes given to a create are not usable.
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// An inherited segment could not be found from its environment variable.
    Inherit {
        /// The environment variable that was read.
        env_var: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A system call failed in a way the other variants do not describe.
    Io {
        /// The operation, e.g. `"shm_open"`, `"mmap"`.
        op: &'static str,
        /// The segment's name.
        name: String,
        /// The error from the system.
        source: io::Error,
    },
}

impl SegmentError {
    /// The `errno` behind this error, if a system call produced it.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SegmentError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SegmentError::*;
        match self {
            InvalidName { name, reason } => write!(f, "invalid segment name {name:?}: {reason}"),
            AlreadyExists {
                name,
                undelivered: false,
            } => write!(f, "segment {name:?} already exists"),
            AlreadyExists {
                name,
                undelivered: true,
            } => write!(
                f,
                "segment {name:?} already exists: its peers all died but it holds undelivered \
                 data, so it is kept; open it to recover the data (`shmring gc` removes it)"
            ),
            NotFound { name } => write!(f, "segment {name:?} not found"),
            PermissionDenied { name } => write!(f, "permission denied opening segment {name:?}"),
            NoSpace { name, bytes } => write!(
                f,
                "no space for segment {name:?} ({bytes} bytes); /dev/shm or memory is too small"
            ),
            NotShmring { name } => write!(f, "{name:?} is not a shmring segment"),
            VersionMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} has layout version {found}, this build expects {expected}"
            ),
            AbiMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name:?} has abi tag {found:#010x}, this build expects {expected:#010x}"
            ),
            KindMismatch {
                name,
                expected,
                found,
            } => write!(f, "segment {name:?} holds a {found}, expected a {expected}"),
            Corrupted { name, field, value } => write!(
                f,
                "segment {name:?} is corrupted: header field {field} has invalid value {value:#x}"
            ),
            SizeMismatch { name, header, file } => write!(
                f,
                "segment {name:?} states a length of {header} bytes but its file has {file}"
            ),
            ForeignOwner {
                name,
                owner_uid,
                our_uid,
            } => write!(
                f,
                "segment {name:?} is owned by uid {owner_uid}, not by this process's uid {our_uid}"
            ),
            NameLockTimeout { name, waited } => write!(
                f,
                "timed out after {waited:?} waiting for the name lock of segment {name:?} \
                 (a process checking or removing its name is stopped?)"
            ),
            PeerTableFull { name, rows } => {
                write!(
                    f,
                    "segment {name:?} has no free peer row (all {rows} in use)"
                )
            }
            InvalidConfig { reason } => write!(f, "invalid segment configuration: {reason}"),
            Inherit { env_var, reason } => {
                write!(
                    f,
                    "cannot open the inherited segment named by ${env_var}: {reason}"
                )
            }
            Io { op, name, source } => write!(f, "{op} failed for segment {name:?}: {source}"),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SegmentError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<SegmentError> for io::Error {
    fn from(e: SegmentError) -> io::Error {
        let kind = match &e {
            SegmentError::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            SegmentError::NotFound { .. } => io::ErrorKind::NotFound,
            SegmentError::PermissionDenied { .. } | SegmentError::ForeignOwner { .. } => {
                io::ErrorKind::PermissionDenied
            }
            SegmentError::NameLockTimeout { .. } => io::ErrorKind::TimedOut,
            SegmentError::InvalidName { .. } | SegmentError::InvalidConfig { .. } => {
                io::ErrorKind::InvalidInput
            }
            SegmentError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
