//! Open-file-description (OFD) byte locks, the liveness mechanism.
//!
//! An OFD lock (`F_OFD_SETLK`) belongs to an *open file description*, not to a
//! process: it is released when the last file descriptor referring to that
//! description is closed, which the kernel does when the process dies, before
//! it becomes a zombie. It survives PID reuse and PID namespaces, unlike
//! `kill(pid, 0)`. Two consequences the callers rely on:
//!
//! - every attachment must have its *own* open file description (its own
//!   `shm_open`/`open`), or its locks are shared with another attachment;
//! - `F_OFD_GETLK` never reports a lock held through the caller's own
//!   description (no conflict with oneself), so asking about one's own byte
//!   answers "unlocked".
//!
//! All locks here are write locks on single bytes, addressed from the start
//! of the file; bytes past the end of the file may be locked.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

fn flock_for(byte: u64, kind: libc::c_short) -> io::Result<libc::flock> {
    flock_range(byte, 1, kind)
}

fn flock_range(first: u64, len: u64, kind: libc::c_short) -> io::Result<libc::flock> {
    let out_of_range = || io::Error::new(io::ErrorKind::InvalidInput, "lock byte out of range");
    let start = libc::off_t::try_from(first).map_err(|_| out_of_range())?;
    let len = libc::off_t::try_from(len).map_err(|_| out_of_range())?;
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero
    // bytes are a valid value (and `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    Ok(fl)
}

fn fcntl_lock(fd: BorrowedFd<'_>, cmd: libc::c_int, fl: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: `fd` is an open descriptor for the lifetime of the borrow;
        // `fl` points to a valid, writable flock for the duration of the call.
        let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, fl as *mut libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Takes a write lock on `byte` without blocking. `Ok(false)`: another open
/// file description holds a lock on it.
pub(crate) fn try_lock_byte(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock_for(byte, libc::F_WRLCK as libc::c_short)?;
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes a write lock on the `len` bytes from `first` without blocking,
/// all or nothing. `Ok(false)`: another open file description holds a lock
/// on one of them. Released with the descriptor (or byte by byte).
pub(crate) fn try_lock_range(fd: BorrowedFd<'_>, first: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock_range(first, len, libc::F_WRLCK as libc::c_short)?;
    match fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes a write lock on `byte`, waiting up to `wait` for another open file
/// description to let it go (short sleeps, from 50 µs up to 5 ms, so a lock
/// held for a few system calls costs little and a stopped holder costs
/// `wait`). `Ok(false)`: still held by another description after `wait`.
/// A zero `wait` tries once.
pub(crate) fn lock_byte_within(fd: BorrowedFd<'_>, byte: u64, wait: Duration) -> io::Result<bool> {
    let start = super::clock::now();
    let limit = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
    let mut pause = Duration::from_micros(50);
    loop {
        if try_lock_byte(fd, byte)? {
            return Ok(true);
        }
        let elapsed = super::clock::nanos_between(start, super::clock::now());
        if elapsed >= limit {
            return Ok(false);
        }
        std::thread::sleep(pause.min(Duration::from_nanos(limit - elapsed)));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Releases this description's lock on `byte` (no error if it held none).
pub(crate) fn unlock_byte(fd: BorrowedFd<'_>, byte: u64) -> io::Result<()> {
    let mut fl = flock_for(byte, libc::F_UNLCK as libc::c_short)?;
    fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl)
}

/// Releases this description's locks on the `len` bytes from `first` (no
/// error for bytes it did not hold).
pub(crate) fn unlock_range(fd: BorrowedFd<'_>, first: u64, len: u64) -> io::Result<()> {
    let mut fl = flock_range(first, len, libc::F_UNLCK as libc::c_short)?;
    fcntl_lock(fd, libc::F_OFD_SETLK, &mut fl)
}

/// Whether *another* open file description holds a lock on `byte`.
pub(crate) fn is_byte_locked(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    let mut fl = flock_for(byte, libc::F_WRLCK as libc::c_short)?;
    fcntl_lock(fd, libc::F_OFD_GETLK, &mut fl)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Whether *another* open file description holds a lock on any of the `len`
/// bytes from `first`: one `F_OFD_GETLK` for the whole range.
pub(crate) fn is_range_locked(fd: BorrowedFd<'_>, first: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock_range(first, len, libc::F_WRLCK as libc::c_short)?;
    fcntl_lock(fd, libc::F_OFD_GETLK, &mut fl)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}
