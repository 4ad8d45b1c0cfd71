//! The stats record a running bridge publishes for `shmring stat`.
//!
//! `shmring stat NAME` runs in another process than the bridges of queue
//! `NAME`, so each bridge publishes its [`Counters`](crate::Counters) in a
//! small file of its own in `/dev/shm`:
//!
//! ```text
//! /dev/shm/.shmring-bridge.<out|in>.<pid>-<n>.<queue name without its slash>
//! ```
//!
//! (`n` counts the records this process made, so that two bridges of one
//! queue in one process keep theirs apart; the queue part is cut to fit the
//! 255-byte limit of a file name: the record holds the whole name). The counters *are* the record's words: each
//! change is one atomic add on the mapping, so a reader sees it at once.
//!
//! # Layout (version 1, native byte order, 448 bytes)
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic `SHMRBRDG` |
//! | 8 | `u32` version (1) |
//! | 12 | `u32` record length (448) |
//! | 16 | `u32` the bridge's pid |
//! | 20 | `u32` direction: 1 out, 2 in |
//! | 24 | `u32` counters used (9) |
//! | 28 | `u32` queue name length (1 to 255) |
//! | 32 | `u64` start time, ms since the Unix epoch |
//! | 40 | `u64` state: 1 running, 2 stopped (a clean exit) |
//! | 64 | 16 × `u64` counters, in [`CounterSnapshot`]'s order |
//! | 192 | 256 bytes: the queue name (UTF-8) |
//!
//! # Liveness
//!
//! The bridge holds an OFD write lock on the record's first byte for its
//! whole life; the kernel drops it when the process dies, however it dies,
//! and unlike a pid it cannot be reused. Only a *write* lock counts: any
//! reader can take a read lock, and must not make a dead bridge look alive;
//! a write lock needs the file open for writing, which its mode (0644, and
//! 0600 until the lock is taken) leaves to its owner. A record whose lock is free and
//! whose state says running belongs to a bridge that died (`shmring gc`
//! removes it); a clean exit marks the state stopped and removes the file.
//!
//! # Crash behaviour
//!
//! The record is written in full under a private name
//! (`.shmring-bridge-tmp.*`) and then linked under its name (never over an
//! existing file), so no reader ever sees half a header. A bridge killed while it builds one leaves that private file,
//! unlocked: `shmring gc` removes it once it is 10 s old. A counter is one
//! atomic add: a bridge killed mid-update made it or not.
//!
//! # Reading untrusted records
//!
//! Anyone may create files in `/dev/shm`. A reader opens without following
//! links and without blocking (a FIFO under a record's name must not hang
//! `stat`), accepts regular files only, reads at most one record's bytes
//! with `pread` (a mapping of a file truncated meanwhile would kill the
//! reader with `SIGBUS`), and checks the magic, version, length,
//! direction, counter count and name length before it uses any of them.
//! Each counter read is a copy of a word another process may be adding to:
//! exact on its own, not a snapshot across counters.

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{CounterSnapshot, COUNTERS};

/// Where records live.
pub const DIR: &str = "/dev/shm";
/// The file name prefix of a record.
pub const PREFIX: &str = ".shmring-bridge.";
/// The file name prefix of a record being built.
pub const TMP_PREFIX: &str = ".shmring-bridge-tmp.";
/// The record's magic.
pub const MAGIC: [u8; 8] = *b"SHMRBRDG";
/// The layout version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The record's length in bytes.
pub const RECORD_LEN: usize = 448;

const OFF_VERSION: usize = 8;
const OFF_LEN: usize = 12;
const OFF_PID: usize = 16;
const OFF_DIRECTION: usize = 20;
const OFF_COUNTER_COUNT: usize = 24;
const OFF_QUEUE_LEN: usize = 28;
const OFF_STARTED: usize = 32;
const OFF_STATE: usize = 40;
const OFF_COUNTERS: usize = 64;
/// Counter slots in the layout (the first [`COUNTERS`] are used).
const COUNTER_SLOTS: usize = 16;
const OFF_QUEUE: usize = 192;
/// Longest queue name (a file name's limit).
const QUEUE_MAX: usize = 255;
const NAME_MAX: usize = 255;

const STATE_RUNNING: u64 = 1;
const STATE_STOPPED: u64 = 2;

/// A private file older than this whose lock is free is a leftover.
const TMP_STALE: Duration = Duration::from_secs(10);

const _: () = assert!(OFF_COUNTERS + 8 * COUNTER_SLOTS == OFF_QUEUE);
const _: () = assert!(OFF_QUEUE + QUEUE_MAX + 1 == RECORD_LEN);
const _: () = assert!(COUNTERS <= COUNTER_SLOTS);

/// Which way a bridge carries messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Local queue → JetStream.
    Out,
    /// JetStream → local queue.
    In,
}

impl Direction {
    /// `out` or `in`.
    pub fn word(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }

    fn code(self) -> u32 {
        match self {
            Direction::Out => 1,
            Direction::In => 2,
        }
    }
}

/// Whether the bridge behind a record runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its liveness lock is held: it runs.
    Alive,
    /// It stopped cleanly and is removing its record right now.
    Exited,
    /// It died without stopping (killed): `shmring gc` removes the record.
    Dead,
}

impl Liveness {
    /// `alive`, `exited` or `dead`.
    pub fn word(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Exited => "exited",
            Liveness::Dead => "dead",
        }
    }
}

/// One bridge's published record, as read.
#[derive(Clone, Debug)]
pub struct Record {
    /// The record's path.
    pub path: PathBuf,
    /// The queue it bridges (as the bridge's segment names it: `/NAME`).
    pub queue: String,
    /// Its direction.
    pub direction: Direction,
    /// The bridge's pid, as it recorded it.
    pub pid: u32,
    /// When it started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Whether it runs.
    pub liveness: Liveness,
    /// Its counters.
    pub counters: CounterSnapshot,
    /// The record file's owner.
    pub owner_uid: u32,
}

/// A file under a record's name that is not a valid record (or could not
/// be read): its path and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRecord {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for InvalidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bridge stats record {}: {}",
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for InvalidRecord {}

/// The fields of a record's bytes, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The queue's name.
    pub queue: String,
    /// The direction.
    pub direction: Direction,
    /// The pid.
    pub pid: u32,
    /// Start time, ms since the epoch.
    pub started_unix_ms: u64,
    /// Whether the state word says stopped.
    pub stopped: bool,
    /// The counters.
    pub counters: CounterSnapshot,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

/// Validates a record's bytes: every field is checked before use, and
/// nothing read from them is used as a length or an index unchecked.
///
/// # Errors
///
/// A line saying what is wrong (too short, bad magic, another version, ...).
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    if bytes.len() < RECORD_LEN {
        return Err(format!(
            "truncated: {} bytes, a record has {RECORD_LEN}",
            bytes.len()
        ));
    }
    let b = &bytes[..RECORD_LEN];
    if b[..8] != MAGIC {
        return Err("not a bridge stats record (bad magic)".into());
    }
    let version = u32_at(b, OFF_VERSION);
    if version != VERSION {
        return Err(format!(
            "layout version {version}, this shmring reads {VERSION}"
        ));
    }
    let len = u32_at(b, OFF_LEN);
    if len as usize != RECORD_LEN {
        return Err(format!("record length {len}, expected {RECORD_LEN}"));
    }
    let direction = match u32_at(b, OFF_DIRECTION) {
        1 => Direction::Out,
        2 => Direction::In,
        d => return Err(format!("unknown direction {d}")),
    };
    let count = u32_at(b, OFF_COUNTER_COUNT);
    if count as usize != COUNTERS {
        return Err(format!("{count} counters, expected {COUNTERS}"));
    }
    let queue_len = u32_at(b, OFF_QUEUE_LEN) as usize;
    if queue_len == 0 || queue_len > QUEUE_MAX {
        return Err(format!(
            "queue name length {queue_len}, not within 1 to {QUEUE_MAX}"
        ));
    }
    let queue = std::str::from_utf8(&b[OFF_QUEUE..OFF_QUEUE + queue_len])
        .map_err(|_| "the queue name is not UTF-8".to_owned())?
        .to_owned();
    let stopped = match u64_at(b, OFF_STATE) {
        STATE_RUNNING => false,
        STATE_STOPPED => true,
        s => return Err(format!("unknown state {s}")),
    };
    let mut values = [0u64; COUNTERS];
    for (i, v) in values.iter_mut().enumerate() {
        *v = u64_at(b, OFF_COUNTERS + 8 * i);
    }
    Ok(Parsed {
        queue,
        direction,
        pid: u32_at(b, OFF_PID),
        started_unix_ms: u64_at(b, OFF_STARTED),
        stopped,
        counters: CounterSnapshot::from_array(values),
    })
}

/// A record's bytes for the bridge `pid` of `queue`, running, counters 0.
fn encode(queue: &str, direction: Direction, pid: u32, started_unix_ms: u64) -> Vec<u8> {
    let mut b = vec![0u8; RECORD_LEN];
    b[..8].copy_from_slice(&MAGIC);
    let put32 =
        |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    put32(&mut b, OFF_VERSION, VERSION);
    put32(&mut b, OFF_LEN, RECORD_LEN as u32);
    put32(&mut b, OFF_PID, pid);
    put32(&mut b, OFF_DIRECTION, direction.code());
    put32(&mut b, OFF_COUNTER_COUNT, COUNTERS as u32);
    put32(&mut b, OFF_QUEUE_LEN, queue.len() as u32);
    b[OFF_STARTED..OFF_STARTED + 8].copy_from_slice(&started_unix_ms.to_ne_bytes());
    b[OFF_STATE..OFF_STATE + 8].copy_from_slice(&STATE_RUNNING.to_ne_bytes());
    b[OFF_QUEUE..OFF_QUEUE + queue.len()].copy_from_slice(queue.as_bytes());
    b
}

/// The file name of the `serial`-th record process `pid` made, for its
/// bridge of `queue`, cut to a file name's limit (at a character boundary).
pub fn file_name(queue: &str, direction: Direction, pid: u32, serial: u64) -> String {
    let mut name = format!("{PREFIX}{}.{pid}-{serial}.", direction.word());
    let body = queue.strip_prefix('/').unwrap_or(queue);
    let mut cut = body.len().min(NAME_MAX - name.len());
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    name.push_str(&body[..cut]);
    name
}

/// Whether the file `name` (in [`DIR`]) may be a record of `queue`: its
/// queue part is the queue's name, or a prefix of it in a name cut to the
/// limit.
pub fn may_be_record_of(name: &str, queue: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((_direction, rest)) = rest.split_once('.') else {
        return false;
    };
    let Some((_pid, body)) = rest.split_once('.') else {
        return false;
    };
    let queue_body = queue.strip_prefix('/').unwrap_or(queue);
    // The queue's name was cut when it did not fit whole after this
    // name's prefix; the cut may end up to 3 bytes short of the limit (a
    // character is not split).
    let cut = name.len() - body.len() + queue_body.len() > NAME_MAX;
    body == queue_body || (cut && queue_body.starts_with(body))
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock_request(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a C struct of integers: all-zero bytes are a valid
    // value, and OFD locks need `l_pid` 0.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    fl
}

fn fcntl_lock(file: &File, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: `file` is open for the call; `fl` is a valid, writable
        // flock for its duration.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, fl as *mut libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Takes a lock on the first byte without blocking; `false`: another open
/// file description holds a conflicting one.
fn try_lock(file: &File, kind: libc::c_int) -> io::Result<bool> {
    let mut fl = lock_request(kind);
    match fcntl_lock(file, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether another open file description holds a *write* lock on the first
/// byte: the liveness lock. A read lock is not one: anyone who can read the
/// file can take a read lock, and would otherwise make a dead bridge look
/// alive for as long as they liked; a write lock needs the file open for
/// writing, which only its owner can do (mode 0644).
fn is_write_locked(file: &File) -> io::Result<bool> {
    let mut fl = lock_request(libc::F_WRLCK);
    fcntl_lock(file, libc::F_OFD_GETLK, &mut fl)?;
    Ok(fl.l_type == libc::F_WRLCK as libc::c_short)
}

/// Records made by this process so far (the `n` of a record's name).
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A record this process publishes: the mapping its counters live in, the
/// open file whose lock says it runs. Dropping it marks the record stopped
/// and removes it.
pub(crate) struct Published {
    /// Start of the `RECORD_LEN`-byte shared, writable mapping; page
    /// aligned, unmapped in `drop`.
    map: NonNull<u8>,
    path: PathBuf,
    /// Holds the liveness lock while open.
    _file: File,
}

// SAFETY: the mapping is shared memory accessed only through atomics; the
// pointer is owned by this value and valid until its drop.
unsafe impl Send for Published {}
// SAFETY: as above: `&Published` only hands out `&AtomicU64`.
unsafe impl Sync for Published {}

impl Published {
    /// Creates the record of this process's `direction` bridge of `queue`
    /// (under the first free name: an existing file is never replaced).
    ///
    /// # Errors
    ///
    /// A name over 255 bytes, or a file system error.
    pub(crate) fn create(queue: &str, direction: Direction) -> io::Result<Published> {
        Self::create_in(Path::new(DIR), queue, direction)
    }

    fn create_in(dir: &Path, queue: &str, direction: Direction) -> io::Result<Published> {
        if queue.is_empty() || queue.len() > QUEUE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a queue name has 1 to 255 bytes",
            ));
        }
        let pid = std::process::id();
        // ORDERING: Relaxed — only uniqueness matters, which the RMW gives.
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(file_name(queue, direction, pid, serial));
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{pid}-{serial}.{:x}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        // Owner-only until locked: nobody else can open it and take a read
        // lock first (which would block the liveness lock).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let built = (|| {
            if !try_lock(&file, libc::F_WRLCK)? {
                return Err(io::Error::other("a new file is locked by someone else"));
            }
            file.write_all_at(&encode(queue, direction, pid, now_unix_ms()), 0)?;
            // Readable by everyone (`shmring stat` of another user), writable
            // by this user only.
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            Self::map(&file)
        })();
        let map = match built {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Atomic: a reader sees this whole record or none, never a
        // half-built file. A link, not a rename, so that a file already
        // under the name (a dead bridge's of a pid reused, or a live one's
        // of the same pid in another pid namespace sharing /dev/shm) is
        // never replaced: the next count is tried instead.
        let mut path = path;
        let mut tries = 0;
        let linked = loop {
            match std::fs::hard_link(&tmp, &path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 1000 => {
                    tries += 1;
                    // ORDERING: Relaxed — as above.
                    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
                    path = dir.join(file_name(queue, direction, pid, serial));
                }
                done => break done,
            }
        };
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = linked {
            // SAFETY: `map` came from a successful mmap of RECORD_LEN bytes
            // and nothing else refers to it.
            unsafe { libc::munmap(map.as_ptr().cast(), RECORD_LEN) };
            return Err(e);
        }
        Ok(Published {
            map,
            path,
            _file: file,
        })
    }

    fn map(file: &File) -> io::Result<NonNull<u8>> {
        // SAFETY: a fresh shared mapping of an open file of RECORD_LEN
        // bytes (written in full just before); the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                RECORD_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
    }

    /// The record's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Counter `i` (< [`COUNTERS`]) in the mapping.
    pub(crate) fn counter(&self, i: usize) -> &AtomicU64 {
        assert!(i < COUNTERS, "counter {i} out of range");
        self.word(OFF_COUNTERS + 8 * i)
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= RECORD_LEN);
        // The word is only accessed atomically by this process (the file is
        // this user's, mode 0644: no other user can write it).
        // SAFETY: `off` is 8-aligned and inside the page-aligned
        // RECORD_LEN-byte mapping, which lives as long as `self`.
        unsafe { &*self.map.as_ptr().add(off).cast::<AtomicU64>() }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        // ORDERING: Release — a reader checks the liveness lock first and
        // then reads the state with pread: the lock is released (at the
        // close below) after this store, so a reader that finds the lock
        // free reads "stopped" (the fcntl and pread system calls order it).
        self.word(OFF_STATE).store(STATE_STOPPED, Ordering::Release);
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: the mapping of RECORD_LEN bytes made in `create`; no
        // reference into it outlives `self`.
        unsafe { libc::munmap(self.map.as_ptr().cast(), RECORD_LEN) };
        // `_file` closes after this: the liveness lock goes last.
    }
}

/// Opens a file under a record's name as untrusted: no link followed, no
/// blocking on a FIFO, regular files only.
/// `Err(None)`: there is no such file (any more).
fn open_untrusted(path: &Path) -> Result<(File, std::fs::Metadata), Option<String>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => None,
            _ => Some(format!("cannot open: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Some(format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(Some("not a regular file".into()));
    }
    Ok((file, meta))
}

/// At most one record's bytes of `file`.
fn read_bytes(file: &File) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; RECORD_LEN];
    let mut got = 0;
    while got < RECORD_LEN {
        match file.read_at(&mut bytes[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(got);
    Ok(bytes)
}

/// Reads the record at `path`.
///
/// # Errors
///
/// `Ok(None)`: the file is gone (its bridge exited meanwhile). `Err`: it is
/// not a valid record, or cannot be read.
pub fn read(path: &Path) -> Result<Option<Record>, InvalidRecord> {
    let invalid = |why: String| InvalidRecord {
        path: path.to_owned(),
        why,
    };
    let (file, meta) = match open_untrusted(path) {
        Ok(f) => f,
        Err(None) => return Ok(None),
        Err(Some(why)) => return Err(invalid(why)),
    };
    // The lock first, then the bytes: a bridge marks its record stopped
    // before it lets the lock go, so a free lock with "running" means dead.
    let locked =
        is_write_locked(&file).map_err(|e| invalid(format!("cannot test its lock: {e}")))?;
    let bytes = read_bytes(&file).map_err(|e| invalid(format!("cannot read: {e}")))?;
    let p = parse(&bytes).map_err(invalid)?;
    let liveness = match (locked, p.stopped) {
        (true, _) => Liveness::Alive,
        (false, true) => Liveness::Exited,
        (false, false) => Liveness::Dead,
    };
    Ok(Some(Record {
        path: path.to_owned(),
        queue: p.queue,
        direction: p.direction,
        pid: p.pid,
        started_unix_ms: p.started_unix_ms,
        liveness,
        counters: p.counters,
        owner_uid: meta.uid(),
    }))
}

/// Every record of the bridges of `queue` (`/NAME`), by path, and the files
/// under a record's name for it that are not valid records.
pub fn records_of(queue: &str) -> (Vec<Record>, Vec<InvalidRecord>) {
    records_of_in(Path::new(DIR), queue)
}

fn records_of_in(dir: &Path, queue: &str) -> (Vec<Record>, Vec<InvalidRecord>) {
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, errors);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| may_be_record_of(n, queue))
        .collect();
    names.sort();
    for name in names {
        match read(&dir.join(&name)) {
            Ok(None) => {}
            Ok(Some(r)) if r.queue == queue => found.push(r),
            // A cut name shared by another queue's record.
            Ok(Some(r)) if may_be_record_of(&name, &r.queue) => {}
            Ok(Some(r)) => errors.push(InvalidRecord {
                path: r.path,
                why: format!(
                    "its name says queue {queue:?}, its contents say {:?}",
                    r.queue
                ),
            }),
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

/// What [`remove_if_dead`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Removed (or, on a dry run, would be).
    Removed,
    /// Kept, and why.
    Kept(String),
}

/// A file in [`DIR`] that `gc` may remove: a record, or a private leftover.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// The record read from it (`None`: a private leftover of a create).
    pub record: Option<Record>,
}

/// Records and leftovers in [`DIR`] owned by `uid` whose bridge is not alive
/// (among the records of `queues` when given), and the invalid files found.
pub fn dead(uid: u32, queues: Option<&[String]>) -> (Vec<Candidate>, Vec<InvalidRecord>) {
    dead_in(Path::new(DIR), uid, queues)
}

fn dead_in(
    dir: &Path,
    uid: u32,
    queues: Option<&[String]>,
) -> (Vec<Candidate>, Vec<InvalidRecord>) {
    let (mut found, mut errors) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (found, errors);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(PREFIX) || n.starts_with(TMP_PREFIX))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if name.starts_with(TMP_PREFIX) {
            if queues.is_none() && leftover_is_stale(&path, uid) {
                found.push(Candidate { path, record: None });
            }
            continue;
        }
        if let Some(qs) = queues {
            if !qs.iter().any(|q| may_be_record_of(&name, q)) {
                continue;
            }
        }
        match read(&path) {
            Ok(Some(r)) if r.owner_uid == uid && r.liveness != Liveness::Alive => {
                if queues.is_none_or(|qs| qs.contains(&r.queue)) {
                    found.push(Candidate {
                        path,
                        record: Some(r),
                    });
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

fn leftover_is_stale(path: &Path, uid: u32) -> bool {
    let Ok((file, meta)) = open_untrusted(path) else {
        return false;
    };
    let old = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age >= TMP_STALE);
    meta.uid() == uid && old && matches!(is_write_locked(&file), Ok(false))
}

/// Removes `candidate` if its bridge is still not alive, deciding again
/// under a lock of its own: the file's lock is taken (a live bridge holds
/// it, so that fails), the name is checked to still be that file, and the
/// name is removed while the lock is held.
///
/// # Errors
///
/// A file system error other than the file being gone.
pub fn remove_if_dead(candidate: &Candidate) -> io::Result<Removal> {
    let path = &candidate.path;
    let (file, meta) = match open_untrusted(path) {
        Ok(f) => f,
        Err(None) => return Ok(Removal::Kept("already gone".into())),
        Err(Some(why)) => return Ok(Removal::Kept(why)),
    };
    if !try_lock(&file, libc::F_RDLCK)? {
        return Ok(Removal::Kept("its bridge is alive".into()));
    }
    // Holding the lock, this is a dead bridge's file: still a valid record
    // (read through this description: a reader of its own would see the
    // lock just taken)?
    if candidate.record.is_some() {
        if let Err(why) = read_bytes(&file)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|b| parse(&b))
        {
            return Ok(Removal::Kept(why));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
        Ok(_) => return Ok(Removal::Kept("replaced meanwhile".into())),
        Err(_) => return Ok(Removal::Kept("already gone".into())),
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the call.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(Removal::Kept("already gone".into()));
        }
        return Err(e);
    }
    drop(file);
    Ok(Removal::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "shmring-bridge-stats-{tag}-{}-{}",
            std::process::id(),
            now_unix_ms()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_record_round_trips_and_counts_in_place() {
        let dir = temp_dir("round");
        let p = Published::create_in(&dir, "/jobs", Direction::Out).unwrap();
        // ORDERING: Relaxed — a statistic; the read below is a pread.
        p.counter(0).fetch_add(7, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        p.counter(COUNTERS - 1).fetch_add(2, Ordering::Relaxed);
        let (found, errors) = records_of_in(&dir, "/jobs");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 1);
        let r = &found[0];
        assert_eq!(r.queue, "/jobs");
        assert_eq!(r.direction, Direction::Out);
        assert_eq!(r.pid, std::process::id());
        // The reader opens a description of its own: it sees the lock.
        assert_eq!(r.liveness, Liveness::Alive);
        assert_eq!(r.counters.published, 7);
        assert_eq!(r.counters.retries, 2);
        let path = p.path().to_owned();
        drop(p);
        assert!(!path.exists(), "a clean exit removes the record");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_field_is_validated() {
        let good = encode("/q", Direction::In, 42, 1);
        assert_eq!(parse(&good).unwrap().queue, "/q");
        let bad = |f: &dyn Fn(&mut Vec<u8>), what: &str| {
            let mut b = good.clone();
            f(&mut b);
            let e = parse(&b).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        };
        bad(&|b| b.truncate(100), "truncated");
        bad(&|b| b.clear(), "truncated");
        bad(&|b| b[0] = b'X', "magic");
        bad(
            &|b| b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&9u32.to_ne_bytes()),
            "version 9",
        );
        bad(
            &|b| b[OFF_LEN..OFF_LEN + 4].copy_from_slice(&u32::MAX.to_ne_bytes()),
            "length",
        );
        bad(&|b| b[OFF_DIRECTION] = 7, "direction");
        bad(
            &|b| {
                b[OFF_COUNTER_COUNT..OFF_COUNTER_COUNT + 4].copy_from_slice(&u32::MAX.to_ne_bytes())
            },
            "counters",
        );
        bad(
            &|b| b[OFF_QUEUE_LEN..OFF_QUEUE_LEN + 4].copy_from_slice(&u32::MAX.to_ne_bytes()),
            "name length",
        );
        bad(
            &|b| b[OFF_QUEUE_LEN..OFF_QUEUE_LEN + 4].copy_from_slice(&0u32.to_ne_bytes()),
            "name length",
        );
        bad(&|b| b[OFF_QUEUE] = 0xff, "UTF-8");
        bad(&|b| b[OFF_STATE] = 9, "state");
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift: every length up to past a record, noisy bytes,
        // with the magic and version right half of the time.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let len = (next() % (RECORD_LEN as u64 + 16)) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && len >= 16 {
                b[..8].copy_from_slice(&MAGIC);
                b[8..12].copy_from_slice(&VERSION.to_ne_bytes());
                b[12..16].copy_from_slice(&(RECORD_LEN as u32).to_ne_bytes());
            }
            let _ = parse(&b);
        }
    }

    #[test]
    fn names_are_cut_to_the_limit_and_still_matched() {
        let long = format!("/{}", "é".repeat(127)); // 255 bytes
        let n = file_name(&long, Direction::In, 4_194_304, 0);
        assert!(n.len() <= NAME_MAX, "{}", n.len());
        assert!(may_be_record_of(&n, &long));
        assert!(may_be_record_of(
            &file_name("/a.b", Direction::Out, 1, 0),
            "/a.b"
        ));
        assert!(!may_be_record_of(
            &file_name("/a.b", Direction::Out, 1, 0),
            "/a"
        ));
        assert!(!may_be_record_of(".shmring-bridge.out", "/a"));
    }

    /// A name cut at a character boundary short of the limit (a
    /// multi-byte character across it) is still its queue's record.
    #[test]
    fn a_name_cut_short_of_the_limit_is_still_matched() {
        let long = format!("/{}", "é".repeat(127)); // 255 bytes
        let n = file_name(&long, Direction::Out, 4_194_304, 0);
        assert!(n.len() < NAME_MAX, "cut inside an é: {}", n.len());
        assert!(may_be_record_of(&n, &long));
        let dir = temp_dir("cut");
        let p = Published::create_in(&dir, &long, Direction::Out).unwrap();
        let (found, errors) = records_of_in(&dir, &long);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 1, "{:?} is found", p.path());
        drop(p);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Another live bridge's record under the name a create picks (the
    /// same pid and count in another pid namespace sharing /dev/shm) is
    /// never replaced: the create takes the next count.
    #[test]
    fn a_create_never_replaces_another_bridges_record() {
        let (dir, other_dir) = (temp_dir("taken"), temp_dir("taken-other"));
        let other = Published::create_in(&other_dir, "/taken", Direction::In).unwrap();
        // ORDERING: Relaxed — where the count stands; creates racing in
        // other tests take at most a few of the 64 names made below.
        let next = SERIAL.load(Ordering::Relaxed);
        let pid = std::process::id();
        let taken: Vec<PathBuf> = (next..next + 64)
            .map(|n| dir.join(file_name("/taken", Direction::In, pid, n)))
            .collect();
        for path in &taken {
            std::fs::hard_link(other.path(), path).unwrap(); // its file, its lock
        }
        let mine = Published::create_in(&dir, "/taken", Direction::In).unwrap();
        assert!(!taken.contains(&mine.path().to_path_buf()));
        let (found, errors) = records_of_in(&dir, "/taken");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(found.len(), 65, "the other's 64 names and mine");
        assert!(found.iter().all(|r| r.liveness == Liveness::Alive));
        drop((mine, other));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&other_dir);
    }

    #[test]
    fn a_reader_racing_exits_never_sees_a_dead_bridge() {
        // A bridge's clean exit marks its record stopped before its lock
        // goes: a reader that checks the lock first then reads the state
        // sees alive, exited or nothing, never dead.
        let dir = temp_dir("race");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                // ORDERING: Relaxed — a test's stop flag; nothing hangs on it.
                while !stop.load(Ordering::Relaxed) {
                    drop(Published::create_in(&dir, "/race", Direction::In).unwrap());
                    n += 1;
                }
                n
            })
        };
        let mut seen = 0;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            let (found, errors) = records_of_in(&dir, "/race");
            assert!(errors.is_empty(), "{errors:?}");
            for r in found {
                assert_ne!(r.liveness, Liveness::Dead, "{r:?}");
                seen += 1;
            }
        }
        // ORDERING: Relaxed — as above.
        stop.store(true, Ordering::Relaxed);
        let made = writer.join().unwrap();
        assert!(made > 10 && seen > 0, "made {made}, seen {seen}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hostile_files_under_a_record_name_are_reported_not_trusted() {
        let dir = temp_dir("hostile");
        let name = |pid: u32| dir.join(file_name("/h", Direction::Out, pid, 0));
        // Garbage, a truncated record, a FIFO (must not hang the reader), a
        // symbolic link, a record of another queue under this one's name.
        std::fs::write(name(1), [b'g'; RECORD_LEN]).unwrap();
        std::fs::write(
            name(2),
            &encode("/h", Direction::Out, 2, 0)[..RECORD_LEN - 1],
        )
        .unwrap();
        let fifo = CString::new(name(3).as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(name(1), name(4)).unwrap();
        std::fs::write(name(5), encode("/other", Direction::Out, 5, 0)).unwrap();
        let (found, errors) = records_of_in(&dir, "/h");
        assert!(found.is_empty(), "{found:?}");
        let whys: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 5, "{whys:?}");
        assert!(whys[0].contains("bad magic"), "{whys:?}");
        assert!(whys[1].contains("truncated"), "{whys:?}");
        assert!(whys[2].contains("not a regular file"), "{whys:?}");
        assert!(whys[3].contains("cannot open"), "{whys:?}");
        assert!(whys[4].contains("\"/other\""), "{whys:?}");
        // gc removes none of the four invalid ones (not proven records);
        // the misnamed one is a valid record of a dead bridge of "/other".
        let (dead, errors) = dead_in(&dir, me_uid(), None);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].record.as_ref().unwrap().queue, "/other");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn me_uid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn gc_removes_dead_records_and_stale_leftovers_only() {
        let dir = temp_dir("gc");
        let uid = me_uid();
        // A live record, a dead one (a valid record nobody locks, state
        // running), a leftover of a create 1 minute old and unlocked, a
        // fresh leftover, and an old leftover still locked (being built).
        let live = Published::create_in(&dir, "/g", Direction::Out).unwrap();
        let dead = dir.join(file_name("/g", Direction::In, 999_999, 0));
        std::fs::write(&dead, encode("/g", Direction::In, 999_999, 0)).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        let stale = dir.join(format!("{TMP_PREFIX}1.a"));
        std::fs::File::create(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = dir.join(format!("{TMP_PREFIX}2.b"));
        std::fs::write(&fresh, b"").unwrap();
        let building = dir.join(format!("{TMP_PREFIX}3.c"));
        let held = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&building)
            .unwrap();
        held.set_modified(old).unwrap();
        assert!(try_lock(&held, libc::F_WRLCK).unwrap());

        let (found, errors) = dead_in(&dir, uid, None);
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<&Path> = found.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(paths, [stale.as_path(), dead.as_path()], "sorted by name");
        assert_eq!(found[1].record.as_ref().unwrap().liveness, Liveness::Dead);
        for c in &found {
            assert_eq!(remove_if_dead(c).unwrap(), Removal::Removed, "{c:?}");
        }
        assert!(!dead.exists() && !stale.exists());
        assert!(fresh.exists() && building.exists() && live.path().exists());

        // Only the queues asked for; and a live record asked about by a
        // stale candidate is kept under the lock.
        let other = dir.join(file_name("/z", Direction::In, 999_998, 0));
        std::fs::write(&other, encode("/z", Direction::In, 999_998, 0)).unwrap();
        assert!(dead_in(&dir, uid, Some(&["/g".into()])).0.is_empty());
        assert_eq!(dead_in(&dir, uid, Some(&["/z".into()])).0.len(), 1);
        let forged = Candidate {
            path: live.path().to_owned(),
            record: None,
        };
        assert_eq!(
            remove_if_dead(&forged).unwrap(),
            Removal::Kept("its bridge is alive".into())
        );
        assert!(live.path().exists());
        drop(live);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_bridges_of_one_queue_in_one_process_keep_their_own_records() {
        let dir = temp_dir("two");
        let a = Published::create_in(&dir, "/two", Direction::Out).unwrap();
        let b = Published::create_in(&dir, "/two", Direction::Out).unwrap();
        assert_ne!(a.path(), b.path());
        // ORDERING: Relaxed — a statistic; read back with pread.
        a.counter(0).fetch_add(1, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        b.counter(0).fetch_add(2, Ordering::Relaxed);
        let (found, errors) = records_of_in(&dir, "/two");
        assert!(errors.is_empty(), "{errors:?}");
        let mut published: Vec<u64> = found.iter().map(|r| r.counters.published).collect();
        published.sort_unstable();
        assert_eq!(published, [1, 2]);
        drop(a);
        let (found, _) = records_of_in(&dir, "/two");
        assert_eq!(
            found.len(),
            1,
            "the first's exit leaves the second's record"
        );
        assert_eq!(found[0].counters.published, 2);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_read_lock_taken_by_a_reader_does_not_fake_a_live_bridge() {
        // Anyone who can read a record can take an OFD read lock on it; a
        // dead bridge's record must still read as dead, and a live one's as
        // alive, and gc must still remove the dead one.
        let dir = temp_dir("rdlock");
        let dead = dir.join(file_name("/r", Direction::Out, 999_997, 0));
        std::fs::write(&dead, encode("/r", Direction::Out, 999_997, 0)).unwrap();
        let reader = File::open(&dead).unwrap();
        assert!(try_lock(&reader, libc::F_RDLCK).unwrap());
        let live = Published::create_in(&dir, "/r", Direction::In).unwrap();
        let (found, errors) = records_of_in(&dir, "/r");
        assert!(errors.is_empty(), "{errors:?}");
        let state = |d: Direction| found.iter().find(|r| r.direction == d).unwrap().liveness;
        assert_eq!(state(Direction::Out), Liveness::Dead);
        assert_eq!(state(Direction::In), Liveness::Alive);
        let (candidates, _) = dead_in(&dir, me_uid(), None);
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        assert_eq!(remove_if_dead(&candidates[0]).unwrap(), Removal::Removed);
        drop((reader, live));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
