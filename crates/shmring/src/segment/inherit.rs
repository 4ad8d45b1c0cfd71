//! Anonymous segments reach child processes by descriptor inheritance.

use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::sync::Mutex;

use super::options::validate_name;
use super::{io_error, ObjectKind, OpenOptions, Segment, ANONYMOUS};
use crate::error::SegmentError;
use crate::sys::shm;

/// Inherited descriptors already reopened by this process: `(fd, dev, ino)`.
static CONSUMED_INHERITED: Mutex<Vec<(RawFd, u64, u64)>> = Mutex::new(Vec::new());

impl Segment {
    /// Lets the child that `cmd` spawns open this segment with
    /// [`open_inherited`](Segment::open_inherited)`(env_var, ..)`.
    ///
    /// A close-on-exec descriptor of the segment's file is stored in `cmd`;
    /// a `pre_exec` hook clears close-on-exec in the child only, and
    /// `env_var` is set to `"<fd>:<dev>:<ino>"` (plus `":<name>"` for a named
    /// segment) so the child can check it found the right file. Keep `self`
    /// alive until the child has opened the segment.
    ///
    /// That descriptor is a *fresh* open file description (the file reopened
    /// through `/proc/self/fd`), never a duplicate of this attachment's: it
    /// holds none of this attachment's locks, so a child that inherits it
    /// (and never opens the segment, or outlives this process) does not
    /// keep this attachment, or a lock it owns, looking alive.
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
        let fd = shm::inherit_on_exec(cmd, fresh.into())
            .map_err(io_error("inherit descriptor", self.label()))?;
        let mut value = format!("{fd}:{}:{}", self.dev, self.ino);
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
    /// ownership of that descriptor; do not use it otherwise.
    ///
    /// The name (for a named segment) is not looked up or confirmed: the
    /// descriptor says which segment it is, and the segment works whether
    /// or not its name still exists. Never waits.
    ///
    /// # Errors
    ///
    /// [`Inherit`](SegmentError::Inherit) when the variable is missing or
    /// malformed, its descriptor is not open or is another file, or it was
    /// already consumed by this process; otherwise as [`open`](Segment::open)
    /// (without [`NameLockTimeout`](SegmentError::NameLockTimeout)).
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
        let mut parts = value.splitn(4, ':');
        let mut number = || parts.next().and_then(|p| p.parse::<u64>().ok());
        let (fd, dev, ino) = match (number(), number(), number()) {
            (Some(fd), Some(dev), Some(ino)) => (fd, dev, ino),
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
            if consumed.contains(&(fd, dev, ino)) {
                return Err(inherit_error("already opened by this process"));
            }
            let st = shm::stat_raw(fd).map_err(|_| inherit_error("descriptor is not open"))?;
            if (st.dev, st.ino) != (dev, ino) {
                return Err(inherit_error("descriptor refers to another file"));
            }
            let reopened = shm::reopen_proc_fd(fd);
            // `fd` came through exec from share_with_child (same device and
            // inode as recorded there); the docs make the caller promise not
            // to adopt it.
            // SAFETY: not consumed before (CONSUMED_INHERITED): no owner holds it.
            let _ = unsafe { shm::close_inherited(fd) };
            consumed.push((fd, dev, ino));
            reopened.map_err(io_error(
                "open /proc/self/fd",
                name.as_deref().unwrap_or(ANONYMOUS),
            ))?
        };
        Self::open_file(file, name, kind, opts)
    }
}
