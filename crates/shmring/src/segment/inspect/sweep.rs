//! Sweeping `/dev/shm`: removing this user's abandoned segments that hold
//! nothing, now and then, off the create path.
//!
//! A named segment whose peers were all killed has nobody left to unlink
//! it. Left alone, a host where processes crash and restart fills
//! `/dev/shm`. But a crashed service's queue is exactly what its restart
//! must find, messages included: crash recovery is the product. So the
//! sweep removes a segment only when all of this holds:
//!
//! - it belongs to this user (the file's owner is our effective uid) and is
//!   proven a segment: a regular file whose header passes full validation;
//! - no peer is alive: no lock is held anywhere on its lock bytes (the name
//!   lock and every peer row's liveness lock), and at least one peer died
//!   attached;
//! - its policy is not [`UnlinkPolicy::Never`] (that asks for the name to
//!   outlive its peers: only `shmring gc` or [`reclaim`] remove it);
//! - it has been seen in that state, by sweeps, for at least the idle
//!   period ([`AUTO_SWEEP_IDLE`] for the automatic sweep): idleness counts
//!   from when a sweep first found it without a live peer (see "Notes"),
//!   which is never earlier than the death of its last peer;
//! - it holds no data: no message in any ring, no dict entry; decided again
//!   under the segment's locks, at the removal itself.
//!
//! # When it runs
//!
//! [`Segment::create`](crate::segment::Segment::create) calls
//! [`sweep_now_and_then`], which costs one clock read and one atomic load
//! almost every time: each process remembers until when the host needs no
//! sweep from it. When that time has passed, it looks at the user's *stamp*,
//! a small file `/dev/shm/.shmring-sweep-<uid>` whose first bytes record
//! when the last sweep started (a few system calls, once a period per
//! process). If a period ([`AUTO_SWEEP_PERIOD`]) has passed, it takes the
//! stamp's lock without waiting (an OFD lock: the kernel drops it if the
//! holder dies), reads the time again under the lock, writes the new time,
//! and hands the sweep, lock and all, to a background thread; the create
//! returns at once. So on the whole host at most one sweep per user runs
//! per period, and no create ever waits for one.
//!
//! # Bounded work
//!
//! One sweep reads the directory (names and inode numbers only), sorts the
//! names, and examines at most [`MAX_EXAMINED`] files, starting after the
//! name where the previous sweep stopped (the *cursor*, kept in the stamp):
//! a host with many segments is covered over several periods. Examining a
//! file costs an `open`, an `fstat` and one `F_OFD_GETLK` over the whole
//! range of lock bytes (one range probe for every peer, instead of one per
//! row); a segment found alive costs nothing more. Only a segment with no
//! live peer has its header and peer table read (two `pread`s), and only
//! one due for removal is locked and mapped.
//!
//! # Notes
//!
//! The stamp also keeps the sweeper's notes: for each segment it found
//! without a live peer, its inode, the newest attach time in its peer table
//! (so that a new attach, or a new segment reusing the inode, starts over),
//! when it was first found so, and whether a removal found it holding data
//! (then later sweeps leave it alone until its peer table changes). A note
//! is dropped when its segment is seen alive or is gone; a sweep keeps at
//! most [`MAX_NOTES`]. The notes are checksummed: a torn or damaged stamp
//! is read as empty, which only delays removals.
//!
//! # What can go wrong
//!
//! - A process that sweeps and is killed (or exits) meanwhile leaves the
//!   rest of that period's work to the next period: the cursor and the
//!   notes are saved every [`SAVE_EVERY`] files. Every removal happens
//!   whole, under the segment's locks, or not at all.
//! - Another user can create this user's stamp name first (`/dev/shm` is
//!   shared). A stamp that is not a regular file owned by us, or whose
//!   contents are not a stamp, is never touched: automatic sweeping stops
//!   for this user (and `shmring gc` still works). Nothing is ever removed
//!   on account of a stamp's contents: at worst a forged note makes an
//!   empty abandoned segment go sooner.
//! - The explicit [`sweep`] waits up to a few seconds for the stamp's lock
//!   (a running sweep is bounded); without it, it works without the notes,
//!   so only a zero `min_idle` removes anything.
//!
//! [`UnlinkPolicy::Never`]: crate::segment::UnlinkPolicy::Never

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirEntryExt, FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{read_header, reclaim, Reclaimed, SHM_DIR};
use crate::error::SegmentError;
use crate::segment::header::{validate, HEADER_LEN};
use crate::segment::options::validate_name;
use crate::segment::peers::{PeerRow, PEER_LOCK_BASE, PEER_ROW_LEN, STATE_DETACHED};
use crate::segment::{ObjectKind, UnlinkPolicy, MAX_PEER_ROWS};
use crate::sys::{self, lock, shm};

/// How often, at most, the automatic sweep runs for one user on the host.
pub(crate) const AUTO_SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// How long the automatic sweep must have seen a segment without a live
/// peer before it removes it.
pub(crate) const AUTO_SWEEP_IDLE: Duration = Duration::from_secs(60);

/// The most files one automatic sweep examines.
pub(crate) const MAX_EXAMINED: usize = 256;

/// The most notes a stamp keeps.
pub(crate) const MAX_NOTES: usize = 4096;

/// How long the explicit [`sweep`] waits for the stamp's lock.
const EXPLICIT_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The stamp's file name, before the uid.
const STAMP_PREFIX: &str = ".shmring-sweep-";

/// The end of the lock bytes a live segment can have locked: the name lock
/// (byte 0) and every peer row's lock.
const LOCK_RANGE_END: u64 = PEER_LOCK_BASE + MAX_PEER_ROWS as u64;

// ---------------------------------------------------------------------------
// Settings (fixed in production; tests and benchmarks change them).

/// The automatic sweep's settings. Production code never changes them; a
/// test or benchmark does, through [`configure_auto_sweep`], to shorten
/// the periods and to confine the sweep to its own names and stamp.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct AutoSweepConfig {
    /// At most one automatic sweep per this period (per user and scope).
    pub period: Duration,
    /// How long a segment must have been seen without a live peer.
    pub min_idle: Duration,
    /// The most files one automatic sweep examines.
    pub max_examined: usize,
    /// Only names starting with this (no leading `/`) are examined.
    pub prefix: String,
    /// A separate stamp (and so a separate period and notes) per scope:
    /// `/dev/shm/.shmring-sweep-<uid>.<scope>` instead of
    /// `/dev/shm/.shmring-sweep-<uid>`. ASCII letters, digits, `-`, `_` and
    /// `.` only. Whoever sets one removes its stamp when done.
    pub scope: String,
}

impl AutoSweepConfig {
    const DEFAULT: AutoSweepConfig = AutoSweepConfig {
        period: AUTO_SWEEP_PERIOD,
        min_idle: AUTO_SWEEP_IDLE,
        max_examined: MAX_EXAMINED,
        prefix: String::new(),
        scope: String::new(),
    };
}

impl Default for AutoSweepConfig {
    fn default() -> Self {
        AutoSweepConfig::DEFAULT
    }
}

static SETTINGS: Mutex<AutoSweepConfig> = Mutex::new(AutoSweepConfig::DEFAULT);

/// Replaces this process's automatic sweep settings (tests and benchmarks
/// only), and makes its next named create look at the stamp again.
///
/// # Panics
///
/// When `scope` holds a character other than ASCII letters, digits, `-`,
/// `_` and `.`.
#[doc(hidden)]
pub fn configure_auto_sweep(config: AutoSweepConfig) {
    assert!(
        config
            .scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "invalid sweep scope {:?}",
        config.scope
    );
    *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = config;
    // ORDERING: Relaxed — see NEXT_CHECK.
    NEXT_CHECK.store(0, Ordering::Relaxed);
}

fn settings() -> AutoSweepConfig {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Automatic sweeps this process started (tests only).
#[doc(hidden)]
pub fn auto_sweeps_started() -> u64 {
    // ORDERING: Relaxed — a statistic.
    STARTED.load(Ordering::Relaxed)
}

/// Waits for this process's running automatic sweep, if any, to finish
/// (tests and benchmarks only).
#[doc(hidden)]
pub fn wait_for_auto_sweep() {
    let handle = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

// ---------------------------------------------------------------------------
// The create path.

/// `CLOCK_MONOTONIC` nanoseconds before which this process does not look at
/// the stamp (0: look at the next create).
static NEXT_CHECK: AtomicU64 = AtomicU64::new(0);
/// Automatic sweeps this process started.
static STARTED: AtomicU64 = AtomicU64::new(0);
/// The background thread of this process's latest automatic sweep.
static RUNNING: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Called by every named create: starts an automatic sweep on a background
/// thread if one is due on this host for this user (see the module docs).
/// Never blocks on anything, never fails: errors only mean no sweep.
pub(crate) fn sweep_now_and_then() {
    let now = sys::now().0;
    // ORDERING: Relaxed on both sides: the word only spaces out this
    // process's looks at the stamp and elects the thread that looks; it
    // publishes no other data (partner: the compare_exchange below, and
    // the stores in other threads).
    let next = NEXT_CHECK.load(Ordering::Relaxed);
    if now < next {
        return;
    }
    let config = settings();
    let period = nanos(config.period);
    // ORDERING: Relaxed, as above.
    if NEXT_CHECK
        .compare_exchange(
            next,
            now.saturating_add(period),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return; // another thread of this process is looking
    }
    match Stamp::claim(&config.scope, period) {
        Claim::Due(stamp) => start(stamp, config),
        // Look again when the host's next sweep is due.
        Claim::NotDue { due_in } => {
            // ORDERING: Relaxed, as above.
            NEXT_CHECK.store(now.saturating_add(due_in.max(1)), Ordering::Relaxed);
        }
        // Somebody is sweeping, or the stamp is unusable: a period.
        Claim::Busy | Claim::Unusable => {}
    }
}

/// Runs one automatic sweep on a background thread, holding the stamp.
fn start(mut stamp: Stamp, config: AutoSweepConfig) {
    let spawned = std::thread::Builder::new()
        .name("shmring-sweep".into())
        .spawn(move || {
            let mut state = stamp.read_state().unwrap_or_default();
            let pass = Pass {
                prefix: &config.prefix,
                min_idle: config.min_idle,
                limit: Some(config.max_examined),
            };
            // Progress is saved as it goes: the process may exit (and
            // this thread with it) before the pass ends.
            if run_pass(&mut state, &pass, |s| stamp.write_state(s)).is_ok() {
                stamp.write_state(&state);
            }
            // The stamp's lock goes with the descriptor.
        });
    if let Ok(handle) = spawned {
        // ORDERING: Relaxed — a statistic.
        STARTED.fetch_add(1, Ordering::Relaxed);
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
}

// ---------------------------------------------------------------------------
// The explicit sweep.

/// Removes, now, every segment in `/dev/shm` whose name starts with
/// `prefix` (`""` or `"/"` for all; the leading `/` is optional) that this
/// user owns, that passes full header validation, that no peer is attached
/// to and at least one peer died attached to, whose policy is not
/// [`UnlinkPolicy::Never`], that holds no data (no message in any ring, no
/// dict entry; decided under the segment's locks), and that sweeps have
/// seen in that state for at least `min_idle` (this one included: with a
/// zero `min_idle` it goes now; otherwise a later sweep, automatic or
/// explicit, removes it). Returns the names removed.
///
/// Segments of other users, files that are not segments, and segments that
/// fail validation are left alone. Unlike the automatic sweep, this one
/// examines every matching file, on the caller's thread.
///
/// # Errors
///
/// [`Io`](SegmentError::Io) when `/dev/shm` cannot be read. A segment that
/// cannot be inspected or reclaimed is skipped, not an error.
///
/// # Blocking
///
/// Waits up to 5 s for a running automatic sweep to let the user's stamp
/// go; without it, works without the notes (see the module docs).
pub fn sweep(prefix: &str, min_idle: Duration) -> Result<Vec<String>, SegmentError> {
    let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
    let scope = settings().scope;
    let mut stamp =
        Stamp::open(&scope).and_then(|mut s| s.lock_within(EXPLICIT_LOCK_WAIT).then_some(s));
    let mut state = stamp
        .as_mut()
        .and_then(|s| s.read_state())
        .unwrap_or_default();
    let pass = Pass {
        prefix,
        min_idle,
        limit: None,
    };
    let removed = run_pass(&mut state, &pass, |_| {})?;
    if let Some(stamp) = &mut stamp {
        stamp.write_state(&state);
    }
    Ok(removed)
}

// ---------------------------------------------------------------------------
// The stamp.

/// A user's stamp file, open (and, once claimed, locked) by this process.
struct Stamp {
    file: File,
    /// The head as read under the lock (all zero for a new stamp).
    head: Head,
}

/// What [`Stamp::claim`] found.
enum Claim {
    /// A sweep is due, and this process holds the stamp and has claimed
    /// the period.
    Due(Stamp),
    /// The last sweep is recent; the next is due in this many nanoseconds.
    NotDue { due_in: u64 },
    /// Another process holds the stamp (sweeping right now).
    Busy,
    /// No usable stamp (see the module docs).
    Unusable,
}

/// The stamp's fixed head: magic, format, when the last automatic sweep
/// started, how many there were, and the checksum and length of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Head {
    last_sweep: u64,
    sweeps: u64,
    body_sum: u64,
    body_len: u64,
}

const STAMP_MAGIC: [u8; 8] = *b"SHMSWEEP";
const STAMP_FORMAT: u64 = 1;
const HEAD_LEN: usize = 48;
/// Cursor length (8) + cursor (up to 255) + note count (8) + notes.
const MAX_BODY: usize = 8 + 255 + 8 + MAX_NOTES * NOTE_LEN;

impl Head {
    fn encode(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[..8].copy_from_slice(&STAMP_MAGIC);
        let fields = [
            STAMP_FORMAT,
            self.last_sweep,
            self.sweeps,
            self.body_sum,
            self.body_len,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// `None`: not a stamp (another format, or somebody else's file).
    fn decode(b: &[u8; HEAD_LEN]) -> Option<Head> {
        let field = |i: usize| {
            let at = 8 + 8 * i;
            u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        (b[..8] == STAMP_MAGIC && field(0) == STAMP_FORMAT).then(|| Head {
            last_sweep: field(1),
            sweeps: field(2),
            body_sum: field(3),
            body_len: field(4),
        })
    }
}

impl Stamp {
    /// Opens (creating it if need be) this user's stamp, and reads its
    /// head. `None` when it cannot be opened, is not a regular file owned
    /// by us, or holds something else than a stamp.
    fn open(scope: &str) -> Option<Stamp> {
        let uid = shm::geteuid();
        let path = match scope {
            "" => format!("{SHM_DIR}/{STAMP_PREFIX}{uid}"),
            scope => format!("{SHM_DIR}/{STAMP_PREFIX}{uid}.{scope}"),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        let st = shm::stat(&file).ok()?;
        if st.mode & libc::S_IFMT != libc::S_IFREG || st.uid != uid {
            return None;
        }
        let head = read_head(&file)?;
        Some(Stamp { file, head })
    }

    /// Claims the period if a sweep is due (see [`Claim`]).
    fn claim(scope: &str, period: u64) -> Claim {
        let Some(mut stamp) = Stamp::open(scope) else {
            return Claim::Unusable;
        };
        let now = sys::now().0;
        if let Some(due_in) = stamp.due_in(now, period) {
            return Claim::NotDue { due_in };
        }
        match lock::try_lock_byte(stamp.file.as_fd(), 0) {
            Ok(true) => {}
            Ok(false) => return Claim::Busy,
            Err(_) => return Claim::Unusable,
        }
        // Under the lock: a sweep that just ended may have claimed it.
        let Some(head) = read_head(&stamp.file) else {
            return Claim::Unusable;
        };
        stamp.head = head;
        if let Some(due_in) = stamp.due_in(now, period) {
            return Claim::NotDue { due_in };
        }
        stamp.head.last_sweep = now;
        stamp.head.sweeps = stamp.head.sweeps.wrapping_add(1);
        if stamp.file.write_all_at(&stamp.head.encode(), 0).is_err() {
            return Claim::Unusable;
        }
        Claim::Due(stamp)
    }

    /// `None` when a sweep is due at `now`, else in how many nanoseconds.
    /// A last sweep in the future (a clock of another time namespace) makes
    /// one due, so that a confused stamp cannot stop sweeping.
    fn due_in(&self, now: u64, period: u64) -> Option<u64> {
        let last = self.head.last_sweep;
        if last == 0 || last > now {
            return None;
        }
        let due = last.saturating_add(period);
        (due > now).then(|| due - now)
    }

    /// Takes the stamp's lock, waiting up to `wait`.
    fn lock_within(&mut self, wait: Duration) -> bool {
        let start = sys::now().0;
        loop {
            match lock::try_lock_byte(self.file.as_fd(), 0) {
                Ok(true) => break,
                Ok(false) if sys::now().0.saturating_sub(start) < nanos(wait) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => return false,
            }
        }
        match read_head(&self.file) {
            Some(head) => {
                self.head = head;
                true
            }
            None => false,
        }
    }

    /// The notes and the cursor (call with the lock held). `None`: none
    /// yet, or a torn or damaged body.
    fn read_state(&mut self) -> Option<State> {
        let len = usize::try_from(self.head.body_len).ok()?;
        if len == 0 || len > MAX_BODY {
            return None;
        }
        let mut body = vec![0u8; len];
        self.file.read_exact_at(&mut body, HEAD_LEN as u64).ok()?;
        if checksum(&body) != self.head.body_sum {
            return None;
        }
        State::decode(&body)
    }

    /// Writes the notes and the cursor (call with the lock held). Errors
    /// are ignored: the notes are an optimisation of caution only.
    fn write_state(&mut self, state: &State) {
        let body = state.encode();
        self.head.body_sum = checksum(&body);
        self.head.body_len = body.len() as u64;
        // Body first: a process killed in between leaves a head whose
        // checksum does not match, read as "no notes".
        if self.file.write_all_at(&body, HEAD_LEN as u64).is_ok() {
            let _ = self.file.write_all_at(&self.head.encode(), 0);
            let _ = self.file.set_len((HEAD_LEN + body.len()) as u64);
        }
    }
}

/// The head of a stamp; all zero for an empty file; `None` for a file that
/// is not a stamp (it is never written then).
fn read_head(file: &File) -> Option<Head> {
    let mut b = [0u8; HEAD_LEN];
    let mut got = 0;
    while got < HEAD_LEN {
        match file.read_at(&mut b[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    match got {
        0 => Some(Head::default()),
        HEAD_LEN => Head::decode(&b),
        _ => None,
    }
}

/// FNV-1a, 64 bits: detects a torn write, not an adversary.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// The notes.

/// What a sweep remembers of a segment it found without a live peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Note {
    /// The file's inode number.
    ino: u64,
    /// The newest attach time in its peer table when noted: another value
    /// means another attach (or another segment), and the note starts over.
    last_attach: u64,
    /// `CLOCK_MONOTONIC` nanoseconds when a sweep first found it so.
    first_seen: u64,
    /// A removal found it holding data.
    holds_data: bool,
}

const NOTE_LEN: usize = 32;

/// The notes and the cursor of a stamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    /// The last name the previous automatic sweep examined (no `/`).
    cursor: Vec<u8>,
    notes: HashMap<u64, Note>,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let cursor = &self.cursor[..self.cursor.len().min(255)];
        let mut out = Vec::with_capacity(16 + cursor.len() + self.notes.len() * NOTE_LEN);
        out.extend_from_slice(&(cursor.len() as u64).to_ne_bytes());
        out.extend_from_slice(cursor);
        let notes = self.notes.values().take(MAX_NOTES);
        out.extend_from_slice(&(notes.len() as u64).to_ne_bytes());
        for n in notes {
            for v in [n.ino, n.last_attach, n.first_seen, u64::from(n.holds_data)] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }

    /// `None` for a body that does not decode (lengths out of range).
    fn decode(body: &[u8]) -> Option<State> {
        let mut reader = Reader { body, at: 0 };
        let cursor_len = usize::try_from(reader.u64()?).ok().filter(|&l| l <= 255)?;
        let cursor = reader.bytes(cursor_len)?.to_vec();
        let count = usize::try_from(reader.u64()?)
            .ok()
            .filter(|&c| c <= MAX_NOTES)?;
        let mut notes = HashMap::with_capacity(count);
        for _ in 0..count {
            let note = Note {
                ino: reader.u64()?,
                last_attach: reader.u64()?,
                first_seen: reader.u64()?,
                holds_data: reader.u64()? != 0,
            };
            notes.insert(note.ino, note);
        }
        Some(State { cursor, notes })
    }

    /// The note of a segment found without a live peer now: the one kept,
    /// or a new one if there was none or its peer table changed. `None`
    /// when the notes are full (the segment waits for room).
    fn note(&mut self, ino: u64, last_attach: u64, now: u64) -> Option<&mut Note> {
        let stale = self
            .notes
            .get(&ino)
            .is_some_and(|n| n.last_attach != last_attach);
        if stale {
            self.notes.remove(&ino);
        }
        if !self.notes.contains_key(&ino) && self.notes.len() >= MAX_NOTES {
            return None;
        }
        let note = self.notes.entry(ino).or_insert(Note {
            ino,
            last_attach,
            first_seen: now,
            holds_data: false,
        });
        // A time in the future (another time namespace) counts from now.
        note.first_seen = note.first_seen.min(now);
        Some(note)
    }
}

/// Reads a stamp's body front to back; `None` past its end.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let b = self.body.get(self.at..end)?;
        self.at = end;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

// ---------------------------------------------------------------------------
// One pass over /dev/shm.

/// What one pass looks at.
struct Pass<'a> {
    /// Names starting with this (no leading `/`).
    prefix: &'a str,
    min_idle: Duration,
    /// At most this many files, from the cursor on (automatic sweep);
    /// `None`: every matching file, cursor untouched (explicit sweep).
    limit: Option<usize>,
}

/// The regular files (or of unknown type) of `/dev/shm` whose names could
/// be segment names starting with `prefix`, sorted by name, with their
/// inode numbers; and the inode numbers of every entry.
type Listing = (Vec<(String, u64)>, HashSet<u64>);

fn listing(prefix: &str) -> Result<Listing, SegmentError> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|source| SegmentError::Io {
        op: "read_dir",
        name: SHM_DIR.into(),
        source,
    })?;
    let mut names = Vec::new();
    let mut all = HashSet::new();
    for entry in dir.flatten() {
        all.insert(entry.ino());
        // d_type: no system call. Unknown types are examined (and their
        // fstat decides).
        if entry.file_type().is_ok_and(|t| !t.is_file()) {
            continue;
        }
        let Some(body) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if body.starts_with(STAMP_PREFIX) || !body.starts_with(prefix) {
            continue;
        }
        if validate_name(&body).is_ok() {
            names.push((body, entry.ino()));
        }
    }
    names.sort_unstable();
    Ok((names, all))
}

/// How many files a pass examines between two calls of its `save`.
const SAVE_EVERY: usize = 32;

/// Runs one pass: examines the files `pass` selects, notes those without a
/// live peer, and removes those noted long enough that hold no data.
/// Calls `save` with the state so far every [`SAVE_EVERY`] files (with
/// the cursor at the last file examined). Returns the names removed
/// (`/name` form).
fn run_pass(
    state: &mut State,
    pass: &Pass<'_>,
    mut save: impl FnMut(&State),
) -> Result<Vec<String>, SegmentError> {
    let uid = shm::geteuid();
    let (names, present) = listing(pass.prefix)?;
    // Notes of files that are gone go (whatever the prefix: every entry of
    // the directory was listed).
    state.notes.retain(|ino, _| present.contains(ino));
    let selected: Vec<&(String, u64)> = match pass.limit {
        Some(limit) => {
            let start = names.partition_point(|(n, _)| n.as_bytes() <= state.cursor.as_slice());
            let (before, after) = names.split_at(start);
            after.iter().chain(before).take(limit).collect()
        }
        None => names.iter().collect(),
    };
    let min_idle = nanos(pass.min_idle);
    let mut removed = Vec::new();
    for (i, (body, listed_ino)) in selected.iter().enumerate() {
        if i > 0 && i % SAVE_EVERY == 0 {
            if pass.limit.is_some() {
                state.cursor = selected[i - 1].0.as_bytes().to_vec();
            }
            save(state);
        }
        let name = format!("/{body}");
        let Probe::Abandoned { ino, last_attach } = examine(&name, uid) else {
            state.notes.remove(listed_ino);
            continue;
        };
        let now = sys::now().0;
        let Some(note) = state.note(ino, last_attach, now) else {
            continue;
        };
        if note.holds_data || now.saturating_sub(note.first_seen) < min_idle {
            continue;
        }
        match remove(&name) {
            Removal::Removed => {
                state.notes.remove(&ino);
                removed.push(name);
            }
            Removal::HoldsData => note.holds_data = true,
            Removal::Kept => {}
        }
    }
    if pass.limit.is_some() {
        if let Some((last, _)) = selected.last() {
            state.cursor = last.as_bytes().to_vec();
        }
    }
    Ok(removed)
}

/// What [`examine`] found.
enum Probe {
    /// Not a candidate: alive, another user's, not proven a segment, kept
    /// by its policy, or gone.
    Skip,
    /// This user's segment, no lock held on it, at least one peer died
    /// attached, policy not `Never`.
    Abandoned { ino: u64, last_attach: u64 },
}

/// Looks at one file as cheaply as possible: `open`, `fstat`, one
/// `F_OFD_GETLK` over every lock byte; for a segment without a live peer,
/// its header and peer table (two `pread`s).
fn examine(name: &str, uid: u32) -> Probe {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("{SHM_DIR}{name}"))
    else {
        return Probe::Skip;
    };
    let Ok(st) = shm::stat(&file) else {
        return Probe::Skip;
    };
    if st.mode & libc::S_IFMT != libc::S_IFREG || st.uid != uid || st.size < HEADER_LEN as u64 {
        return Probe::Skip;
    }
    // One probe for every peer: any lock held means somebody is there.
    if !matches!(any_lock_held(file.as_fd(), 0, LOCK_RANGE_END), Ok(false)) {
        return Probe::Skip;
    }
    let Ok(copy) = read_header(&file, name, st.size) else {
        return Probe::Skip;
    };
    let Some(kind) = ObjectKind::from_u32(copy.snapshot.kind) else {
        return Probe::Skip;
    };
    let Ok(valid) = validate(&copy.snapshot, name, kind, st.size) else {
        return Probe::Skip;
    };
    if valid.unlink_policy == UnlinkPolicy::Never {
        return Probe::Skip;
    }
    let layout = valid.layout;
    let mut table = vec![0u8; layout.peer_rows as usize * PEER_ROW_LEN];
    if file
        .read_exact_at(&mut table, layout.peer_table_offset as u64)
        .is_err()
    {
        return Probe::Skip;
    }
    let field = |row: &[u8], at: usize, len: usize| {
        row.get(at..at + len).map_or(0, |b| {
            let mut v = [0u8; 8];
            v[..len].copy_from_slice(b);
            u64::from_ne_bytes(v)
        })
    };
    let mut died = false;
    let mut last_attach = 0;
    for row in table.chunks_exact(PEER_ROW_LEN) {
        let generation = field(row, std::mem::offset_of!(PeerRow, generation), 4);
        if generation == 0 {
            continue;
        }
        let state = field(row, std::mem::offset_of!(PeerRow, state), 4);
        // No row lock is held (the probe above): a row not released
        // cleanly is a peer that died attached.
        died |= state != u64::from(STATE_DETACHED);
        last_attach = last_attach.max(field(row, std::mem::offset_of!(PeerRow, attached_at), 8));
    }
    if !died {
        return Probe::Skip;
    }
    Probe::Abandoned {
        ino: st.ino,
        last_attach,
    }
}

/// Whether another open file description holds a lock on any byte of
/// `first..end`: one `F_OFD_GETLK` for the whole range.
fn any_lock_held(fd: BorrowedFd<'_>, first: u64, end: u64) -> std::io::Result<bool> {
    let range = |v: u64| {
        libc::off_t::try_from(v)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "lock range"))
    };
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero
    // bytes are a valid value (and `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = range(first)?;
    fl.l_len = range(end.saturating_sub(first))?;
    loop {
        // SAFETY: `fd` is open for the duration of the borrow; `fl` is a
        // valid, writable flock for the duration of the call.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if rc == 0 {
            return Ok(fl.l_type != libc::F_UNLCK as libc::c_short);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// What [`remove`] did.
enum Removal {
    Removed,
    HoldsData,
    Kept,
}

/// Removes an abandoned segment that holds no data, deciding under its
/// locks ([`reclaim`] re-checks every peer and the name).
fn remove(name: &str) -> Removal {
    // The object's figures tell whether it holds data.
    let Ok(info) = super::inspect(name) else {
        return Removal::Kept;
    };
    let empty = match info.header.map(|h| h.kind) {
        Some(ObjectKind::Lock) => true,
        Some(_) => info.object.as_ref().and_then(|o| o.depth) == Some(0),
        None => false,
    };
    if !empty {
        return Removal::HoldsData;
    }
    match reclaim(name) {
        Ok(Reclaimed::Removed) => Removal::Removed,
        _ => Removal::Kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_damage_reads_as_none() {
        let mut state = State {
            cursor: b"shmring-x".to_vec(),
            notes: HashMap::new(),
        };
        for ino in 1..5 {
            state.note(ino, ino * 10, 1_000);
        }
        state.notes.get_mut(&2).unwrap().holds_data = true;
        let body = state.encode();
        assert_eq!(State::decode(&body), Some(state.clone()));
        assert_eq!(State::decode(&body[..body.len() - 1]), None);
        let mut huge = body.clone();
        huge[..8].copy_from_slice(&1000u64.to_ne_bytes());
        assert_eq!(State::decode(&huge), None);
        assert_eq!(State::decode(&[]), None);
    }

    #[test]
    fn a_changed_peer_table_starts_a_note_over() {
        let mut state = State::default();
        assert_eq!(state.note(7, 100, 1_000).unwrap().first_seen, 1_000);
        assert_eq!(state.note(7, 100, 5_000).unwrap().first_seen, 1_000);
        assert_eq!(state.note(7, 200, 6_000).unwrap().first_seen, 6_000);
        // A first sighting "in the future" counts from now.
        state.notes.get_mut(&7).unwrap().first_seen = u64::MAX;
        assert_eq!(state.note(7, 200, 7_000).unwrap().first_seen, 7_000);
    }

    #[test]
    fn heads_round_trip_and_foreign_files_are_not_stamps() {
        let head = Head {
            last_sweep: 5,
            sweeps: 6,
            body_sum: 7,
            body_len: 8,
        };
        assert_eq!(Head::decode(&head.encode()), Some(head));
        let mut foreign = head.encode();
        foreign[0] = b'X';
        assert_eq!(Head::decode(&foreign), None);
    }

    #[test]
    fn due_in_counts_from_the_last_sweep() {
        let stamp = |last_sweep| Stamp {
            file: tempfile(),
            head: Head {
                last_sweep,
                ..Head::default()
            },
        };
        assert_eq!(stamp(0).due_in(1_000, 100), None, "never swept");
        assert_eq!(stamp(950).due_in(1_000, 100), Some(50));
        assert_eq!(stamp(900).due_in(1_000, 100), None);
        assert_eq!(stamp(2_000).due_in(1_000, 100), None, "a future time");
    }

    fn tempfile() -> File {
        File::open("/dev/null").unwrap()
    }
}
