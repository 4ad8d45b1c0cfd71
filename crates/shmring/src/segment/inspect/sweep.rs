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
//!   lock, every peer row's liveness byte, and every row's claim byte, which
//!   an attacher holds while it takes a row: see the `peers` module), so its
//!   peers died attached, or its last drop could not remove the name;
//! - its policy is not [`UnlinkPolicy::Never`] (that asks for the name to
//!   outlive its peers: only `shmring gc` or [`reclaim`] remove it);
//! - it has been seen in that state, by sweeps, for at least the idle
//!   period ([`AUTO_SWEEP_IDLE`] for the automatic sweep): idleness counts
//!   from when a sweep first found it without a live peer (see "Notes"),
//!   which is never earlier than the death of its last peer;
//! - it holds no data: no message in any ring, no dict entry; decided again
//!   under the segment's locks, at the removal itself
//!   ([`reclaim_unless_data`]).
//!
//! The leftovers of the fallback create path (files under private names,
//! see the `names` module) are swept the same way, by [`reclaim`]'s own
//! rules for them (their name lock free, at least 10 s old); they never
//! hold data.
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
//! - The name of a judged file can be given to another file between the
//!   judgement and the removal (removed and created again, renamed over).
//!   The removal is of the judged file only (its device and inode are
//!   checked when the name is opened, and the name is checked against that
//!   file under its name lock): another file is left for later sweeps to
//!   judge on its own idle time.
//!
//! # Failpoints (testing)
//!
//! With the cargo feature `failpoints`, a pass calls the failpoint hook
//! `segment.sweep.judged`, with the name (`/name` form) as its context,
//! after it judged a file removable and before it removes it.
//!
//! [`UnlinkPolicy::Never`]: crate::segment::UnlinkPolicy::Never
//! [`reclaim`]: crate::segment::reclaim()
//! [`reclaim_unless_data`]: crate::segment::reclaim_unless_data()

mod stamp;

use std::collections::HashSet;
use std::mem::offset_of;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirEntryExt, FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::reclaim::reclaim_judged;
use super::{read_header, Reclaimed, HOLDS_DATA, SHM_DIR};
use crate::segment::header::{validate, HEADER_LEN};
use crate::segment::names;
use crate::segment::options::validate_name;
use crate::segment::peers::{PeerRow, LOCK_BYTES_END, PEER_ROW_LEN};
use crate::segment::SegmentError;
use crate::segment::{ObjectKind, UnlinkPolicy};
use crate::sys::{self, lock, shm};
use stamp::{Claim, Stamp, State};

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

// The stamp's file name, before the uid: a reserved prefix (no segment has
// such a name).
use names::STAMP_PREFIX;

/// The end of the lock bytes a live segment can have locked: the name lock
/// (byte 0), every peer row's liveness byte and every row's claim byte (an
/// attach in progress).
const LOCK_RANGE_END: u64 = LOCK_BYTES_END;

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
/// to (no lock held on it), whose policy is not [`UnlinkPolicy::Never`],
/// that holds no data (no message in any ring, no dict entry; decided under
/// the segment's locks), and that sweeps have seen in that state for at
/// least `min_idle` (this one included: with a zero `min_idle` it goes now;
/// otherwise a later sweep, automatic or explicit, removes it); and the
/// leftovers of the fallback create path under such names, by [`reclaim`](crate::segment::reclaim())'s
/// rules for them. Returns the names removed.
///
/// Segments of other users, files that are not segments, and segments that
/// fail validation are left alone. Unlike the automatic sweep, this one
/// examines every matching file, on the caller's thread.
///
/// # The automatic sweep
///
/// A named create (with [`CreateOptions::reclaim_abandoned`], the default)
/// may start the same sweep of all this user's segments, with a `min_idle`
/// of a minute: at most once a minute per user on the whole host (a small
/// stamp file, `/dev/shm/.shmring-sweep-<uid>`, holds when the last one
/// started, and its lock elects one process), on a background thread, so
/// the create never waits, and at most 256 files each time, going on where
/// the previous one stopped. The stamp also keeps when each abandoned
/// segment was first seen so: idleness counts from then, not from its last
/// attach.
///
/// [`CreateOptions::reclaim_abandoned`]: crate::segment::CreateOptions::reclaim_abandoned
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
        if validate_name(&body).is_ok() || names::is_private(&format!("/{body}")) {
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
        let Probe::Abandoned {
            dev,
            ino,
            last_attach,
            leftover,
        } = examine(&name, uid)
        else {
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
        #[cfg(feature = "failpoints")]
        shmring_core::failpoint::hit("segment.sweep.judged", name.as_bytes());
        match remove(&name, leftover, (dev, ino)) {
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
    /// This user's segment, no lock held on it, policy not `Never`; or
    /// (`leftover`) this user's file under a private name of the fallback
    /// create path, its lock free.
    Abandoned {
        dev: u64,
        ino: u64,
        last_attach: u64,
        leftover: bool,
    },
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
    if st.mode & libc::S_IFMT != libc::S_IFREG || st.uid != uid {
        return Probe::Skip;
    }
    let leftover = names::is_private(name);
    if !leftover && st.size < HEADER_LEN as u64 {
        return Probe::Skip;
    }
    // One probe for every peer: any lock held means somebody is there.
    if !matches!(
        lock::is_range_locked(file.as_fd(), 0, LOCK_RANGE_END),
        Ok(false)
    ) {
        return Probe::Skip;
    }
    if leftover {
        // `reclaim` checks the rest (its contents, its age).
        return Probe::Abandoned {
            dev: st.dev,
            ino: st.ino,
            last_attach: 0,
            leftover,
        };
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
    // No lock is held (the probe above), and the policy wants the name
    // gone with the last peer: abandoned, whether its peers died attached
    // or the last drop could not remove the name. The newest attach names
    // this state of the peer table in the notes.
    let last_attach = table
        .chunks_exact(PEER_ROW_LEN)
        .filter(|row| field(row, offset_of!(PeerRow, generation), 4) != 0)
        .map(|row| field(row, offset_of!(PeerRow, attached_at), 8))
        .max()
        .unwrap_or(0);
    Probe::Abandoned {
        dev: st.dev,
        ino: st.ino,
        last_attach,
        leftover,
    }
}

/// What [`remove`] did.
enum Removal {
    Removed,
    HoldsData,
    Kept,
}

/// Removes an abandoned segment that holds no data, deciding everything
/// again under its locks ([`reclaim_unless_data`](crate::segment::reclaim_unless_data()): its name lock, every
/// peer row's claim byte, the liveness bytes, the header, the rows, the
/// object's figures); or a leftover of the fallback create path
/// ([`reclaim`](crate::segment::reclaim())'s rules for those). Only the file `judged` (device and
/// inode) that the sweep examined and found idle long enough: a file put
/// under the name since is kept, and judged by later sweeps on its own.
fn remove(name: &str, leftover: bool, judged: (u64, u64)) -> Removal {
    let outcome = reclaim_judged(name, !leftover, judged);
    match outcome {
        Ok(Reclaimed::Removed) => Removal::Removed,
        Ok(Reclaimed::Kept(HOLDS_DATA)) => Removal::HoldsData,
        Ok(Reclaimed::Kept(_)) | Err(_) => Removal::Kept,
    }
}
