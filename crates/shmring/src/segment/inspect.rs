//! Looking at named segments from outside: what `shmring ls`, `stat` and
//! `gc` show and do.
//!
//! Nothing here attaches. [`inspect`] and [`list`] take no peer row and hold
//! no lock: the header and the peer table are *copied* out of the file with
//! `pread` and decoded from the copy, the header is checked by the same
//! validation an open uses, and liveness is asked with `F_OFD_GETLK`, which
//! works on a read-only descriptor. Only the kind-specific figures (depth,
//! lock owner) look at the object itself, through a mapping made for the
//! occasion and dropped at once; they are left out when that mapping cannot
//! be made (a segment of another user, say). [`reclaim`](reclaim()) is the one call
//! that locks, and only to remove a segment nobody uses.
//!
//! Files under the private names of the fallback create path (see the
//! `names` module) are shown too, as [`SegmentState::Initialising`] or
//! [`SegmentState::CreatorDied`], so that `gc` can remove a killed
//! creator's leftovers.
//!
//! # Untrusted memory
//!
//! Every byte read here may have been written by a buggy or hostile peer.
//! The header must pass validation before the peer table is read; peer rows
//! are decoded from a copy (any bytes give *some* row, never a panic); the
//! object is examined only through the core's own `attach_in_place`, which
//! checks its parameters against the region's length. As for every peer, a
//! process that *truncates* the file while it is mapped can make the
//! mapping's reader die of `SIGBUS`; only the depth figures are exposed to
//! that, for the few microseconds the mapping exists.
//!
//! # Snapshots
//!
//! Everything returned is a snapshot, stale when it returns: peers come and
//! go, depths change. [`reclaim`](reclaim()) re-checks under locks before it removes.

mod object;
mod reclaim;
mod sweep;

use std::fs::File;
use std::mem::offset_of;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use super::header::{validate, Header, Snapshot, HEADER_LEN, MAGIC};
use super::names::{self, LEFTOVER_GRACE, NAME_LOCK_BYTE};
use super::options::validate_any_name;
use super::peers::{
    self, PeerRow, CLAIM_LOCK_BASE, COUNTER_SLOTS, PEER_ROW_LEN, STATE_ATTACHED, STATE_DETACHED,
};
use super::{ObjectKind, PeerCounter, UnlinkPolicy};
use crate::segment::SegmentError;
use crate::sys::{lock, shm};

pub(crate) use reclaim::HOLDS_DATA;
pub use reclaim::{reclaim, reclaim_unless_data, unlink_unless_in_use, Reclaimed};
pub use sweep::sweep;
pub(crate) use sweep::sweep_now_and_then;
#[doc(hidden)]
pub use sweep::{auto_sweeps_started, configure_auto_sweep, wait_for_auto_sweep, AutoSweepConfig};

/// Where named segments live (glibc's `shm_open` directory).
pub const SHM_DIR: &str = shm::SHM_DIR;

/// Every [`PeerCounter`] with the name tools show for it, in slot order.
pub const COUNTERS: [(PeerCounter, &str); 8] = [
    (PeerCounter::Puts, "puts"),
    (PeerCounter::Gets, "gets"),
    (PeerCounter::BytesIn, "bytes_in"),
    (PeerCounter::BytesOut, "bytes_out"),
    (PeerCounter::BlockedWaits, "blocked_waits"),
    (PeerCounter::Wakes, "wakes"),
    (PeerCounter::Timeouts, "timeouts"),
    (PeerCounter::Recovered, "recovered"),
];

/// The counters of one peer row, or their sum over rows (wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters([u64; 8]);

impl Counters {
    /// One counter's value.
    pub fn get(&self, counter: PeerCounter) -> u64 {
        self.0[counter as usize]
    }

    /// `(name, value)` for every counter, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTERS.iter().map(|&(c, name)| (name, self.get(c)))
    }

    fn add(&mut self, other: &Counters) {
        for (sum, v) in self.0.iter_mut().zip(other.0) {
            *sum = sum.wrapping_add(v);
        }
    }
}

/// Where a segment is in its lifecycle.
///
/// A segment is named only once it is complete, so a file under a segment
/// name is either [`Ready`](SegmentState::Ready) or an error (not a
/// segment, corrupted, another version). The other two states are those of
/// files under the *private* names of the fallback create path (used where
/// `O_TMPFILE` is not available), which no open ever reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Published: the header passed validation.
    Ready,
    /// A private-name file on which its creator holds a lock (its name lock,
    /// or its peer row's), or that is younger than 10 s (its creator may not
    /// have taken the lock yet): still being created.
    Initialising,
    /// A private-name file on which no lock is held and that is at least
    /// 10 s old: its creator died (or gave up) before it was named, or
    /// after, before it removed the private name (then the segment lives on
    /// under its own name, and only the private one goes). Nobody can open
    /// it; `gc` removes it.
    CreatorDied,
}

/// The validated header of a [`SegmentState::Ready`] segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Layout version (this build's [`super::LAYOUT_VERSION`]).
    pub version: u32,
    /// ABI tag: pointer width and byte order.
    pub abi: u32,
    /// What the segment holds.
    pub kind: ObjectKind,
    /// When the name goes away.
    pub unlink_policy: UnlinkPolicy,
    /// Total length (= the file's size).
    pub total_len: u64,
    /// The creator's effective uid.
    pub creator_uid: u32,
    /// The creator's pid, in its own pid namespace.
    pub creator_pid: u32,
    /// Offset of the peer table.
    pub peer_table_offset: u64,
    /// Rows in the peer table.
    pub peer_rows: u32,
    /// Offset of the object.
    pub object_offset: u64,
    /// Length of the object.
    pub object_len: u64,
    /// The object's parameters, raw (decoded by the kind's descriptor into
    /// [`ObjectState`]; words that fail to decode leave a note there).
    pub params: [u64; 8],
}

/// What a peer row says about its last holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Attached when last written: alive if its lock is held, dead if not.
    Attached,
    /// Detached cleanly.
    Detached,
    /// A value no build writes (a corrupted row).
    Unknown(u32),
}

/// One used (or locked) row of the peer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Index of the row.
    pub row: u32,
    /// The pid its last holder wrote (in that holder's pid namespace).
    pub pid: u32,
    /// The row's generation (0: never claimed).
    pub generation: u32,
    /// What the row says.
    pub state: PeerState,
    /// `CLOCK_MONOTONIC` nanoseconds of the last attach.
    pub attached_at_ns: u64,
    /// Whether the row's liveness lock is held right now.
    pub alive: bool,
    /// The row's counters (rows keep their counts across holders).
    pub counters: Counters,
}

impl PeerStatus {
    /// Whether its holder died attached: lock free, row not cleanly released.
    pub fn is_dead(&self) -> bool {
        !self.alive && self.state != PeerState::Detached
    }
}

/// Kind-specific figures of the object in a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectState {
    /// How much the object holds, in [`capacity_unit`](Self::capacity_unit)s:
    /// data bytes of all rings for rings, queues and pipes; entries for a dict.
    pub capacity: Option<u64>,
    /// `"bytes"` or `"entries"` (empty when there is no capacity).
    pub capacity_unit: &'static str,
    /// Approximate number of messages waiting (all rings, both directions);
    /// for a dict, its entries (counted exactly, without its lock).
    pub depth: Option<u64>,
    /// Other decoded figures, by name (`max_record`, `rings`, `owner_row`, ...).
    pub details: Vec<(&'static str, u64)>,
    /// Whether the object holds undelivered data: a published message in
    /// any ring (queues, pipes, rings; judged from the ring positions and
    /// the counters, so a message counts even when a killed producer did not
    /// count it), or an entry in a dict (counted in its active index). A
    /// lock holds none. `None` when the object could not be examined.
    pub holds_data: Option<bool>,
    /// Why some figures are missing (the object could not be mapped or did
    /// not pass the core's validation).
    pub note: Option<String>,
}

/// Everything [`inspect`] found out about one named segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The name, in `/name` form.
    pub name: String,
    /// The file's size in bytes.
    pub file_len: u64,
    /// The file's owner.
    pub owner_uid: u32,
    /// The file's permission bits.
    pub mode: u32,
    /// Lifecycle state.
    pub state: SegmentState,
    /// Whether someone holds the file's *name lock* (byte 0): a process
    /// checking or removing the segment's name for a few system calls, or,
    /// for a private-name file, its creator.
    pub init_locked: bool,
    /// Whether someone holds a peer row's *claim byte* (`Ready` only): a
    /// peer taking a row, for a few system calls (a stopped one, for as long
    /// as it is stopped), or a reclaim deciding about the segment (every
    /// row's). See the `peers` module docs.
    pub attaching: bool,
    /// The validated header (`Ready` only).
    pub header: Option<HeaderInfo>,
    /// Rows ever used, or locked now (`Ready` only).
    pub peers: Vec<PeerStatus>,
    /// Kind-specific figures (`Ready` only).
    pub object: Option<ObjectState>,
}

impl SegmentInfo {
    /// Peers whose lock is held.
    pub fn alive_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.alive).count()
    }

    /// Peers that died attached.
    pub fn dead_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.is_dead()).count()
    }

    /// Every row's counters summed, departed peers included.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for p in &self.peers {
            sum.add(&p.counters);
        }
        sum
    }

    /// Whether [`reclaim`](reclaim()) would remove it (judged from this snapshot): a
    /// private-name file whose creator died, or a segment with no live peer,
    /// none attaching and nobody holding the name lock, of which at least one peer died
    /// attached or whose policy wanted the name gone (not
    /// [`UnlinkPolicy::Never`]: its last drop found the name lock held too
    /// long and left the name). A [`UnlinkPolicy::Never`] segment whose
    /// peers all detached *cleanly* is kept: that was asked for.
    ///
    /// Says nothing about data: see [`holds_data`](Self::holds_data).
    pub fn is_abandoned(&self) -> bool {
        match self.state {
            SegmentState::Initialising => false,
            SegmentState::CreatorDied => !self.init_locked,
            SegmentState::Ready => {
                let policy_done = self
                    .header
                    .is_some_and(|h| h.unlink_policy != UnlinkPolicy::Never);
                !self.init_locked
                    && !self.attaching
                    && self.alive_peers() == 0
                    && (self.dead_peers() > 0 || policy_done)
            }
        }
    }

    /// Whether removing it could lose undelivered data: `true` unless the
    /// object figures prove it empty ([`ObjectState::holds_data`]), so also
    /// when they were not read ([`inspect`] reads them, the sweep's listing
    /// does not) or could not be. `false` for private-name files (never
    /// named: nobody can have sent anything through them).
    pub fn holds_data(&self) -> bool {
        match self.state {
            SegmentState::Ready => self
                .object
                .as_ref()
                .and_then(|o| o.holds_data)
                .unwrap_or(true),
            SegmentState::Initialising | SegmentState::CreatorDied => false,
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_ne_bytes)
}

/// The header fields of a copied header, as `Header::snapshot` reads them
/// from a mapping.
fn decode_header(b: &[u8]) -> Snapshot {
    Snapshot {
        magic: u64_at(b, offset_of!(Header, magic)),
        version: u32_at(b, offset_of!(Header, version)),
        abi: u32_at(b, offset_of!(Header, abi)),
        kind: u32_at(b, offset_of!(Header, kind)),
        unlink_policy: u32_at(b, offset_of!(Header, unlink_policy)),
        total_len: u64_at(b, offset_of!(Header, total_len)),
        peer_table_offset: u64_at(b, offset_of!(Header, peer_table_offset)),
        peer_table_len: u64_at(b, offset_of!(Header, peer_table_len)),
        peer_rows: u32_at(b, offset_of!(Header, peer_rows)),
        header_len: u32_at(b, offset_of!(Header, header_len)),
        object_offset: u64_at(b, offset_of!(Header, object_offset)),
        object_len: u64_at(b, offset_of!(Header, object_len)),
        params: std::array::from_fn(|i| u64_at(b, offset_of!(Header, params) + 8 * i)),
    }
}

fn io<'a>(op: &'static str, name: &'a str) -> impl FnOnce(std::io::Error) -> SegmentError + 'a {
    move |e| super::open_error(op, name, e)
}

/// Opens `/dev/shm/<name>` without following a link and without blocking
/// (a FIFO planted there must not hang us), and checks it is a regular file
/// (a symbolic link or a socket, which cannot be opened, is
/// [`SegmentError::NotShmring`] too). Private names of the fallback create
/// path are accepted.
pub(super) fn open_shm_file(name: &str, write: bool) -> Result<(String, File), SegmentError> {
    let (name, _) = validate_any_name(name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("{SHM_DIR}{name}"))
        .map_err(|e| match e.raw_os_error() {
            // O_NOFOLLOW on a symbolic link; a unix socket (which cannot be
            // opened at all: any user can bind one here).
            Some(libc::ELOOP) | Some(libc::ENXIO) => {
                SegmentError::NotShmring { name: name.clone() }
            }
            _ => super::open_error("open", &name, e),
        })?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    if st.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(SegmentError::NotShmring { name });
    }
    Ok((name, file))
}

/// A copied header: the fields validation checks, and the creator's ids.
struct Copied {
    snapshot: Snapshot,
    creator_uid: u32,
    creator_pid: u32,
}

/// Reads the header (a copy) and checks the magic.
fn read_header(file: &File, name: &str, size: u64) -> Result<Copied, SegmentError> {
    if size < HEADER_LEN as u64 {
        return Err(SegmentError::NotShmring { name: name.into() });
    }
    let mut bytes = [0u8; HEADER_LEN];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io("pread", name))?;
    let snapshot = decode_header(&bytes);
    if snapshot.magic != u64::from_ne_bytes(MAGIC) {
        return Err(SegmentError::NotShmring { name: name.into() });
    }
    Ok(Copied {
        snapshot,
        creator_uid: u32_at(&bytes, offset_of!(Header, creator_uid)),
        creator_pid: u32_at(&bytes, offset_of!(Header, creator_pid)),
    })
}

fn locked(file: &File, byte: u64, name: &str) -> Result<bool, SegmentError> {
    lock::is_byte_locked(file.as_fd(), byte).map_err(io("F_OFD_GETLK", name))
}

/// Whether a file starts with the shmring magic. Reads 8 bytes, nothing else.
///
/// # Errors
///
/// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
/// [`PermissionDenied`](SegmentError::PermissionDenied), [`Io`](SegmentError::Io).
pub fn has_magic(name: &str) -> Result<bool, SegmentError> {
    let (name, file) = match open_shm_file(name, false) {
        Err(SegmentError::NotShmring { .. }) => return Ok(false),
        other => other?,
    };
    let mut magic = [0u8; 8];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) => Ok(magic == MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io("pread", &name)(e)),
    }
}

/// Inspects the named segment without attaching to it.
///
/// # Errors
///
/// [`InvalidName`](SegmentError::InvalidName), [`NotFound`](SegmentError::NotFound),
/// [`PermissionDenied`](SegmentError::PermissionDenied),
/// [`NotShmring`](SegmentError::NotShmring) (no magic, too short, not a
/// regular file), and for a published header that fails validation
/// [`VersionMismatch`](SegmentError::VersionMismatch),
/// [`AbiMismatch`](SegmentError::AbiMismatch),
/// [`SizeMismatch`](SegmentError::SizeMismatch) or
/// [`Corrupted`](SegmentError::Corrupted); [`Io`](SegmentError::Io).
pub fn inspect(name: &str) -> Result<SegmentInfo, SegmentError> {
    inspect_with(name, true)
}

/// [`inspect`], leaving [`SegmentInfo::object`] out when `object` is false
/// (no mapping is made then).
pub(crate) fn inspect_with(name: &str, object: bool) -> Result<SegmentInfo, SegmentError> {
    let (name, file) = open_shm_file(name, false)?;
    let st = shm::stat(&file).map_err(io("fstat", &name))?;
    let private = names::is_private(&name);
    let copy = if private {
        None
    } else {
        Some(read_header(&file, &name, st.size)?)
    };
    let init_locked = locked(&file, NAME_LOCK_BYTE, &name)?;
    let mut info = SegmentInfo {
        name,
        file_len: st.size,
        owner_uid: st.uid,
        mode: st.mode & 0o7777,
        state: SegmentState::Initialising,
        init_locked,
        attaching: false,
        header: None,
        peers: Vec::new(),
        object: None,
    };
    let Some(copy) = copy else {
        // Its creator holds the name lock or, later, its peer row's lock.
        let alive = names::creator_alive(&file).map_err(io("F_OFD_GETLK", &info.name))?;
        info.state = leftover_state(&file, &info.name, &st, alive)?;
        return Ok(info);
    };
    let snapshot = &copy.snapshot;
    // An unknown kind is reported by `validate` before it compares kinds.
    let kind = ObjectKind::from_u32(snapshot.kind).unwrap_or(ObjectKind::SpscRing);
    let valid = validate(snapshot, &info.name, kind, st.size)?;
    let layout = valid.layout;
    info.state = SegmentState::Ready;
    let header = HeaderInfo {
        version: snapshot.version,
        abi: snapshot.abi,
        kind: valid.kind,
        unlink_policy: valid.unlink_policy,
        total_len: snapshot.total_len,
        creator_uid: copy.creator_uid,
        creator_pid: copy.creator_pid,
        peer_table_offset: snapshot.peer_table_offset,
        peer_rows: layout.peer_rows,
        object_offset: snapshot.object_offset,
        object_len: snapshot.object_len,
        params: valid.params,
    };
    info.peers = read_peers(
        &file,
        &info.name,
        header.peer_table_offset,
        header.peer_rows,
    )?;
    info.attaching =
        lock::is_range_locked(file.as_fd(), CLAIM_LOCK_BASE, u64::from(header.peer_rows))
            .map_err(io("F_OFD_GETLK", &info.name))?;
    if object {
        info.object = Some(object::object_state(
            object::Source::Name(&info.name, (st.dev, st.ino)),
            &header,
            &info.peers,
        ));
    }
    info.header = Some(header);
    Ok(info)
}

/// The state of a file under a private name of the fallback create path,
/// after checking that it looks like one: empty, or starting with zeros or
/// the magic (anything else is [`SegmentError::NotShmring`]).
/// `creator_alive`: what [`names::creator_alive`] said.
fn leftover_state(
    file: &File,
    name: &str,
    st: &shm::FileStat,
    creator_alive: bool,
) -> Result<SegmentState, SegmentError> {
    let mut start = [0u8; 8];
    let len = usize::try_from(st.size)
        .unwrap_or(usize::MAX)
        .min(start.len());
    file.read_exact_at(&mut start[..len], 0)
        .map_err(io("pread", name))?;
    if start[..len].iter().any(|&b| b != 0) && start[..len] != MAGIC[..len] {
        return Err(SegmentError::NotShmring { name: name.into() });
    }
    if creator_alive || !older_than(st, LEFTOVER_GRACE) {
        return Ok(SegmentState::Initialising);
    }
    Ok(SegmentState::CreatorDied)
}

/// Whether the file was last modified at least `age` ago (by the wall
/// clock; a time in the future is young).
fn older_than(st: &shm::FileStat, age: std::time::Duration) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let age = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
    now.saturating_sub(st.mtime) >= age
}

const _: () = assert!(COUNTERS.len() <= COUNTER_SLOTS);

/// Copies and decodes the peer table (`rows` rows at `offset`, validated
/// against the file), asking each row's lock. Rows never claimed and not
/// locked are left out.
fn read_peers(
    file: &File,
    name: &str,
    offset: u64,
    rows: u32,
) -> Result<Vec<PeerStatus>, SegmentError> {
    let mut table = vec![0u8; rows as usize * PEER_ROW_LEN];
    file.read_exact_at(&mut table, offset)
        .map_err(io("pread", name))?;
    let mut out = Vec::new();
    for (row, bytes) in (0..rows).zip(table.chunks_exact(PEER_ROW_LEN)) {
        let generation = u32_at(bytes, offset_of!(PeerRow, generation));
        let alive = locked(file, peers::liveness_byte(row), name)?;
        if generation == 0 && !alive {
            continue;
        }
        let state = match u32_at(bytes, offset_of!(PeerRow, state)) {
            STATE_ATTACHED => PeerState::Attached,
            STATE_DETACHED => PeerState::Detached,
            other => PeerState::Unknown(other),
        };
        let counters_at = offset_of!(PeerRow, counters);
        out.push(PeerStatus {
            row,
            pid: u32_at(bytes, offset_of!(PeerRow, pid)),
            generation,
            state,
            attached_at_ns: u64_at(bytes, offset_of!(PeerRow, attached_at)),
            alive,
            counters: Counters(std::array::from_fn(|i| u64_at(bytes, counters_at + 8 * i))),
        });
    }
    Ok(out)
}

/// Inspects every shmring segment in `/dev/shm`, sorted by name.
///
/// Files that are not shmring segments (no magic, not regular files,
/// symbolic links, names no segment can have) are skipped silently; one
/// that cannot be read (another user's, say) or whose header fails
/// validation is reported as an `Err` in its place.
///
/// # Errors
///
/// [`Io`](SegmentError::Io) when `/dev/shm` itself cannot be read.
pub fn list() -> Result<Vec<Result<SegmentInfo, SegmentError>>, SegmentError> {
    list_with(true, "")
}

/// [`list`], with or without the objects' figures (see [`inspect_with`]),
/// of the files whose name starts with `prefix` (no leading `/`).
fn list_with(
    object: bool,
    prefix: &str,
) -> Result<Vec<Result<SegmentInfo, SegmentError>>, SegmentError> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|source| SegmentError::Io {
        op: "read_dir",
        name: SHM_DIR.into(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let Some(body) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // not UTF-8: no segment name
        };
        if !is_file || !body.starts_with(prefix) {
            continue;
        }
        match inspect_with(&body, object) {
            Err(SegmentError::NotShmring { .. })
            | Err(SegmentError::NotFound { .. })
            | Err(SegmentError::InvalidName { .. }) => {}
            other => out.push(other),
        }
    }
    let key = |r: &Result<SegmentInfo, SegmentError>| match r {
        Ok(info) => info.name.clone(),
        Err(e) => e.to_string(),
    };
    out.sort_by_key(key);
    Ok(out)
}
