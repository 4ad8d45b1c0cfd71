//! Anonymous segments reach child processes by descriptor inheritance.

use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::Mutex;

use super::options::validate_name;
use super::{io_error, ObjectKind, OpenOptions, Segment, ANONYMOUS};
use crate::segment::SegmentError;
use crate::sys::shm;

/// Inherited descriptors already reopened by this process: `(fd, dev, ino,
/// cookie)`.
static CONSUMED_INHERITED: Mutex<Vec<(RawFd, u64, u64, u64)>> = Mutex::new(Vec::new());

/// A fresh cookie for [`Segment::share_with_child`]: a file position that
/// no descriptor reaches by itself (bit 61 set, below `i64::MAX`), unique
/// in practice (process id, a counter and the clock, mixed).
fn fresh_cookie() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness within this process matters.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x = (u64::from(shm::getpid()) << 32) ^ n ^ crate::sys::now().0.rotate_left(17);
    // splitmix64's finaliser: every input bit moves every output bit.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x & ((1 << 61) - 1)) | (1 << 61)
}

impl Segment {
    /// Lets the child that `cmd` spawns open this segment with
    /// [`open_inherited`](Segment::open_inherited)`(env_var, ..)`.
    ///
    /// A close-on-exec descriptor of the segment's file is stored in `cmd`;
    /// a `pre_exec` hook clears close-on-exec in the child only, and
    /// `env_var` is set to `"<fd>:<dev>:<ino>:<cookie>"` (plus `":<name>"`
    /// for a named segment) so the child can check it found the right
    /// descriptor: the number, the file (device and inode), and a cookie
    /// written into that descriptor's file position (which belongs to the
    /// open file description made here, and which nothing in shmring
    /// reads or moves otherwise). Keep `self` alive until the child has
    /// opened the segment.
    ///
    /// That descriptor is a *fresh* open file description (the file reopened
    /// through `/proc/self/fd`), never a duplicate of this attachment's: it
    /// holds none of this attachment's locks, so a child that inherits it
    /// (and never opens the segment, or outlives this process) does not
    /// keep this attachment, or a lock it owns, looking alive.
    ///
    /// The variable is inherited further (by the child's own children) like
    /// the rest of the environment, the descriptor is not (once the child
    /// took it, or if it runs a program that closes it): see
    /// [`open_inherited`](Segment::open_inherited) for why a variable that
    /// outlived its descriptor is harmless.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`](SegmentError::InvalidConfig) for an empty `env_var`
    /// or one containing `=` or NUL; [`Io`](SegmentError::Io) if the file
    /// cannot be reopened (`/proc` must be mounted).
    pub fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), SegmentError> {
        if env_var.is_empty() || env_var.contains(['=', '\0']) {
            return Err(SegmentError::InvalidConfig {
                reason: format!("invalid environment variable name {env_var:?}"),
            });
        }
        let fresh = shm::reopen_proc_fd(self.file.as_raw_fd())
            .map_err(io_error("open /proc/self/fd", self.label()))?;
        let cookie = fresh_cookie();
        shm::seek_to(&fresh, cookie).map_err(io_error("lseek", self.label()))?;
        let fd = shm::inherit_on_exec(cmd, fresh.into())
            .map_err(io_error("inherit descriptor", self.label()))?;
        let mut value = format!("{fd}:{}:{}:{cookie}", self.dev, self.ino);
        if let Some(name) = &self.name {
            value.push(':');
            value.push_str(name);
        }
        cmd.env(env_var, value);
        Ok(())
    }

    /// Child side of [`share_with_child`](Segment::share_with_child): opens
    /// the segment named by `env_var` and attaches as a new peer.
    ///
    /// The inherited descriptor is reopened through `/proc/self/fd` (a new
    /// open file description, so this peer's liveness lock is its own) and
    /// then **closed**: every process spawned with the same command shares
    /// its description, and locks must never be shared. This call takes
    /// ownership of that descriptor; do not use it otherwise (in particular,
    /// do not read, write or seek it: its file position is the cookie).
    ///
    /// # Which descriptor it takes
    ///
    /// The variable outlives the descriptor: a child's own children inherit
    /// the variable with the environment, but not the descriptor (the child
    /// closed it here, or never passed it on), and the number may be a
    /// descriptor of theirs by then, even one of the same file (a process
    /// that opened the segment itself). So the descriptor is used, and
    /// closed, only if it is *the* open file description that
    /// `share_with_child` made for this variable: open, of the recorded
    /// file (device and inode), and at the recorded cookie as its file
    /// position. Any other descriptor under that number is left alone and
    /// the call fails with [`Inherit`](SegmentError::Inherit). (One case
    /// passes the checks in a grandchild: the child never took the
    /// descriptor and let it be inherited, as a descriptor that is not
    /// close-on-exec is; then it is the shared segment's, owned by nobody
    /// there, and the grandchild may use it as well.)
    ///
    /// The name (for a named segment) is not looked up or confirmed: the
    /// descriptor says which segment it is, and the segment works whether
    /// or not its name still exists. Never waits.
    ///
    /// # Errors
    ///
    /// [`Inherit`](SegmentError::Inherit) when the variable is missing or
    /// malformed, its descriptor is not open, is another file or another
    /// description of it (see above), or was already consumed by this
    /// process; otherwise as [`open`](Segment::open) (without
    /// [`NameLockTimeout`](SegmentError::NameLockTimeout)).
    pub fn open_inherited(
        env_var: &str,
        kind: ObjectKind,
        opts: &OpenOptions,
    ) -> Result<Segment, SegmentError> {
        let inherit_error = |reason| SegmentError::Inherit {
            env_var: env_var.to_owned(),
            reason,
        };
        let value = std::env::var(env_var).map_err(|_| inherit_error("not set, or not unicode"))?;
        let mut parts = value.splitn(5, ':');
        let mut number = || parts.next().and_then(|p| p.parse::<u64>().ok());
        let (fd, dev, ino, cookie) = match (number(), number(), number(), number()) {
            (Some(fd), Some(dev), Some(ino), Some(cookie)) => (fd, dev, ino, cookie),
            _ => return Err(inherit_error("malformed value")),
        };
        let fd = RawFd::try_from(fd).map_err(|_| inherit_error("malformed value"))?;
        let name = match parts.next() {
            Some(n) => Some(validate_name(n)?.0),
            None => None,
        };
        let file = {
            let mut consumed = CONSUMED_INHERITED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if consumed.contains(&(fd, dev, ino, cookie)) {
                return Err(inherit_error("already opened by this process"));
            }
            let st = shm::stat_raw(fd).map_err(|_| inherit_error("descriptor is not open"))?;
            if (st.dev, st.ino) != (dev, ino) {
                return Err(inherit_error("descriptor refers to another file"));
            }
            if shm::position_raw(fd).ok() != Some(cookie) {
                return Err(inherit_error(
                    "descriptor is not the one shared (the variable outlived it: \
                     inherited from a parent's parent?)",
                ));
            }
            let reopened = shm::reopen_proc_fd(fd);
            // `fd` is the open file description share_with_child made for
            // this variable (same file, and the cookie as its position,
            // which nothing else sets), and it came through exec; the docs
            // make the caller promise not to adopt it.
            // SAFETY: not consumed before (CONSUMED_INHERITED): no owner holds it.
            let _ = unsafe { shm::close_inherited(fd) };
            consumed.push((fd, dev, ino, cookie));
            reopened.map_err(io_error(
                "open /proc/self/fd",
                name.as_deref().unwrap_or(ANONYMOUS),
            ))?
        };
        Self::open_file(file, name, kind, opts)
    }
}
