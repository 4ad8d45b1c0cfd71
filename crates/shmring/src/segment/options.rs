//! The kinds, policies and options of segments, and name validation.

use std::ffi::CString;
use std::fmt;
use std::time::Duration;

use crate::segment::SegmentError;

/// Longest name, not counting the leading `/`.
pub const MAX_NAME_LEN: usize = 200;

/// What a segment holds. Stored in the header as a `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum ObjectKind {
    /// A single-producer single-consumer byte ring (Pipe ends).
    SpscRing = 1,
    /// A multi-producer multi-consumer queue (Queue, SimpleQueue).
    MpmcQueue = 2,
    /// Two SPSC rings, one per direction (Pipe).
    Pipe = 3,
    /// A shared hash table (Dict).
    Dict = 4,
    /// A robust lock (Lock, RLock).
    Lock = 5,
    /// An MPMC queue with task counters (JoinableQueue).
    JoinableQueue = 6,
}

impl ObjectKind {
    /// Decodes a header value; `None` for values no kind has.
    pub fn from_u32(value: u32) -> Option<ObjectKind> {
        match value {
            1 => Some(ObjectKind::SpscRing),
            2 => Some(ObjectKind::MpmcQueue),
            3 => Some(ObjectKind::Pipe),
            4 => Some(ObjectKind::Dict),
            5 => Some(ObjectKind::Lock),
            6 => Some(ObjectKind::JoinableQueue),
            _ => None,
        }
    }

    /// The value stored in the header.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::SpscRing => "spsc ring",
            ObjectKind::MpmcQueue => "mpmc queue",
            ObjectKind::Pipe => "pipe",
            ObjectKind::Dict => "dict",
            ObjectKind::Lock => "lock",
            ObjectKind::JoinableQueue => "joinable queue",
        })
    }
}

/// When a named segment's name is removed from `/dev/shm`. Stored in the
/// header, so every peer applies the creator's choice.
///
/// Removing the name never disturbs attached peers: their mappings stay
/// valid; only later opens by name fail with [`SegmentError::NotFound`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum UnlinkPolicy {
    /// Never; the name stays until [`Segment::unlink`](super::Segment::unlink).
    Never = 0,
    /// When the creator's `Segment` is dropped, whoever else is attached.
    OnCreatorDrop = 1,
    /// When the last attached peer drops its `Segment` (the default): each
    /// dropping peer releases its row, then, under the segment's name lock,
    /// unlinks if no other row is held (see the `segment` module docs).
    /// Peers that *die* do not unlink; a segment whose peers all died stays
    /// in `/dev/shm` until it is reclaimed: by a create of the same name (if
    /// it holds no undelivered data), by the automatic sweep of a later
    /// create (see [`CreateOptions::reclaim_abandoned`]), or by `shmring
    /// gc`. So does a segment whose last drop found the name lock held for
    /// longer than its bounded wait (a stopped process holding it). Keep the
    /// creator attached until the other peers have opened, or the name may
    /// already be gone.
    #[default]
    OnLastPeerDrop = 2,
}

impl UnlinkPolicy {
    pub(crate) fn from_u32(value: u32) -> Option<UnlinkPolicy> {
        match value {
            0 => Some(UnlinkPolicy::Never),
            1 => Some(UnlinkPolicy::OnCreatorDrop),
            2 => Some(UnlinkPolicy::OnLastPeerDrop),
            _ => None,
        }
    }
}

/// Options for [`Segment::create`](super::Segment::create) and
/// [`Segment::create_anonymous`](super::Segment::create_anonymous).
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Permission bits of the file (default `0o600`); must include `0o600`
    /// and nothing beyond `0o777`, and give the group and others each
    /// either read and write (to share the segment with them: `0o660`,
    /// `0o666`) or neither. Read alone (`0o644`, `0o640`) is refused: an
    /// open needs write access, and a user who can only read the file
    /// could still lock the bytes that liveness and the name lock are made
    /// of. Set exactly, whatever the umask.
    pub mode: u32,
    /// Rows in the peer table: the most simultaneously attached peers
    /// (default 64, at most [`MAX_PEER_ROWS`](super::MAX_PEER_ROWS)).
    pub peer_rows: u32,
    /// When the name is removed (named segments only).
    pub unlink: UnlinkPolicy,
    /// Reclaim abandoned segments (named segments only; default `true`):
    ///
    /// - when the name is taken by an abandoned segment (see
    ///   [`SegmentInfo::is_abandoned`](super::SegmentInfo::is_abandoned): no
    ///   peer alive, and one died attached or the policy wanted the name
    ///   gone) whose policy is not [`UnlinkPolicy::Never`] and that holds no
    ///   undelivered data (no message in any ring, no entry in a dict; when
    ///   that cannot be read, it counts as holding data), that segment is
    ///   removed and the create goes ahead (giving the name to the new file
    ///   only if it is still free: a name is never reused in place). One
    ///   that holds data is kept, and the create fails with
    ///   [`AlreadyExists`](SegmentError::AlreadyExists) (`undelivered:
    ///   true`): open it to recover the data;
    /// - a create may start the automatic sweep: on a background thread,
    ///   at most once a minute per user on the whole host, never making the
    ///   create wait; it removes this user's abandoned segments that hold
    ///   no data and that sweeps have seen without a live peer for a
    ///   minute (see [`sweep`](super::sweep)).
    ///
    /// With `false`, a taken name is always
    /// [`AlreadyExists`](SegmentError::AlreadyExists) and nothing is swept.
    pub reclaim_abandoned: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            mode: 0o600,
            peer_rows: 64,
            unlink: UnlinkPolicy::default(),
            reclaim_abandoned: true,
        }
    }
}

/// Options for [`Segment::open`](super::Segment::open) and
/// [`Segment::open_inherited`](super::Segment::open_inherited).
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// How long an open waits for the segment's name lock (default 5 s; at
    /// least 100 ms whatever is set), which other processes hold for a few
    /// system calls while they check or remove the name; only a stopped
    /// holder makes an open wait long, and then it fails with
    /// [`NameLockTimeout`](SegmentError::NameLockTimeout). An open never
    /// waits for a creator: a segment gets its name only once it is
    /// complete.
    pub timeout: Duration,
    /// Accept a segment owned by another uid (default `false`).
    pub allow_foreign_owner: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            timeout: Duration::from_secs(5),
            allow_foreign_owner: false,
        }
    }
}

/// Checks a segment name and returns it in `/name` form: 1 to
/// [`MAX_NAME_LEN`] bytes after an optional leading `/`, no other `/`, no
/// control character (C0, DEL or C1: names reach terminals through `ls`
/// and error messages), not `.` or `..`, and not a name shmring keeps for
/// itself: a private name of the fallback create path (`.shmring-creating.`
/// and more) or a sweep stamp's (`.shmring-sweep-` and more).
pub(crate) fn validate_name(name: &str) -> Result<(String, CString), SegmentError> {
    let (full, c) = validate_any_name(name)?;
    if let Some(reason) = super::names::reserved(&full) {
        return Err(SegmentError::InvalidName {
            name: name.to_owned(),
            reason,
        });
    }
    Ok((full, c))
}

/// [`validate_name`], accepting the private names of the fallback create
/// path too: for the calls that inspect and remove files, which must reach
/// a creator's leftovers.
pub(crate) fn validate_any_name(name: &str) -> Result<(String, CString), SegmentError> {
    let invalid = |reason| SegmentError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let body = name.strip_prefix('/').unwrap_or(name);
    if body.is_empty() {
        return Err(invalid("empty"));
    }
    if body.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 200 bytes"));
    }
    if body.contains('/') {
        return Err(invalid("'/' is allowed only as the first character"));
    }
    if body.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if body.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    if body == "." || body == ".." {
        return Err(invalid("is \".\" or \"..\""));
    }
    let full = format!("/{body}");
    let c = CString::new(full.clone()).map_err(|_| invalid("contains a NUL byte"))?;
    Ok((full, c))
}

/// Checks a create's mode: owner read and write, nothing beyond `0o777`,
/// and for the group and for others either read *and* write or neither.
///
/// Why not read alone: whoever can open the file, even read-only, can take
/// OFD *read* locks on its lock bytes, and liveness and the name lock are
/// locks. A read lock on the name lock byte would make every open and
/// every removal of the name wait and fail; one on a peer row's byte would
/// make that row's dead holder look alive for as long as the reader likes
/// (review finding 3). Opening a segment needs write access anyway, so a
/// reader could never be a peer: such modes only ever served an attacker.
/// (Write alone is refused as useless for the same reason: no open.)
pub(crate) fn check_mode(mode: u32) -> Result<(), SegmentError> {
    if mode & !0o777 != 0 || mode & 0o600 != 0o600 {
        return Err(SegmentError::InvalidConfig {
            reason: format!("mode {mode:#o} must include 0o600 and stay within 0o777"),
        });
    }
    for (who, shift) in [("group", 3), ("others", 0)] {
        let rw = (mode >> shift) & 0o6;
        if rw != 0 && rw != 0o6 {
            return Err(SegmentError::InvalidConfig {
                reason: format!(
                    "mode {mode:#o} gives {who} read or write without the other: \
                     a segment is shared read-write or not at all (a read-only \
                     opener could lock its liveness bytes)"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("abc").unwrap().0, "/abc");
        assert_eq!(validate_name("/abc").unwrap().0, "/abc");
        for bad in [
            "",
            "/",
            "//a",
            "/a/b",
            "a/b",
            "/.",
            "/..",
            "a\0b",
            "a\x1bb",
            "\n",
            "a\x7f",
            "a\u{9b}b",
            "/.shmring-creating.1",
            ".shmring-creating.",
            "/.shmring-sweep-0",
            ".shmring-sweep-1000.scope",
            "/.shmring-sweep-",
        ] {
            assert!(
                matches!(validate_name(bad), Err(SegmentError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_name(&"x".repeat(200)).is_ok());
        assert!(validate_name("/.shmring-creatin").is_ok());
        assert!(validate_name("/.shmring-sweep").is_ok());
        assert!(validate_name("/a.shmring-sweep-0").is_ok());
        assert!(validate_any_name("/.shmring-sweep-0").is_ok());
        assert!(validate_any_name("/.shmring-creating.1").is_ok());
        assert!(
            validate_name("caf\u{e9}").is_ok(),
            "printable non-ASCII is fine"
        );
        assert!(validate_name(&"x".repeat(201)).is_err());
    }
}
