//! Shared-memory files: `shm_open`, unnamed files in `/dev/shm`
//! (`O_TMPFILE`), `memfd_create`, giving a file a name (`linkat`), removing
//! one, sizing, sealing, mapping and handing a descriptor to a child process.
//!
//! Descriptors are returned as [`File`]s so that `ftruncate` (`set_len`) and
//! `fstat` (`metadata`) come from std without more FFI. Every descriptor is
//! opened close-on-exec; [`inherit_on_exec`] is the one deliberate exception,
//! and it only affects the child.
//!
//! Names are handled as paths below [`SHM_DIR`], which is where glibc's
//! `shm_open` puts them: `shm_open("/x")` and `open("/dev/shm/x")` are the
//! same file.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use memmap2::{MmapOptions, MmapRaw};

/// The directory of named segments.
pub(crate) const SHM_DIR: &str = "/dev/shm";

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn shm_open(name: &CStr, oflag: libc::c_int, mode: u32) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string for the call. glibc's
    // shm_open always adds O_CLOEXEC (O_CLOEXEC is passed too, for clarity).
    let fd = cvt(unsafe { libc::shm_open(name.as_ptr(), oflag | libc::O_CLOEXEC, mode) })?;
    // SAFETY: `fd` was just returned by shm_open, is open, and is owned by
    // nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Creates a new shared-memory object: `O_RDWR | O_CREAT | O_EXCL`, then sets
/// exactly `mode` (the `shm_open` mode is filtered by the umask; `fchmod` is
/// not).
pub(crate) fn shm_create(name: &CStr, mode: u32) -> io::Result<File> {
    let file = shm_open(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(file)
}

/// Opens an existing shared-memory object for reading and writing.
pub(crate) fn shm_open_rw(name: &CStr) -> io::Result<File> {
    shm_open(name, libc::O_RDWR, 0)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Creates an unnamed file in `dir` (`O_TMPFILE`), read-write, with exactly
/// `mode`: nobody can open it by name until [`link_fd`] gives it one, and it
/// vanishes with its last descriptor if that never happens. Fails with
/// `EOPNOTSUPP` (or `EISDIR`, `EINVAL` on old kernels) where the file
/// system or kernel lacks `O_TMPFILE`.
pub(crate) fn create_unnamed(dir: &Path, mode: u32) -> io::Result<File> {
    let dir = c_path(dir)?;
    // SAFETY: `dir` is a valid NUL-terminated string for the call; the mode
    // argument is passed as the variadic third argument O_TMPFILE requires.
    let fd = cvt(unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(file)
}

/// Gives the open `file` the name `target`, failing with `EEXIST` if the
/// name is taken: `linkat` of `/proc/self/fd/<fd>` with `AT_SYMLINK_FOLLOW`,
/// which needs no privilege and works for an `O_TMPFILE` file as for a
/// named one (not for a named file whose last name was removed: `ENOENT`).
pub(crate) fn link_fd(file: &File, target: &Path) -> io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let to = c_path(target)?;
    // SAFETY: both strings are valid and NUL-terminated for the call.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

/// Gives the file named `from` the further name `to` (`link`), failing
/// with `EEXIST` if `to` is taken. Follows no symbolic link.
pub(crate) fn link_path(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both strings are valid and NUL-terminated for the call.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// Removes the name `path`. Open descriptors and mappings stay valid.
pub(crate) fn unlink(path: &Path) -> io::Result<()> {
    let path = c_path(path)?;
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    cvt(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
}

/// `lstat` of a path: what the name refers to right now (a link is not
/// followed). Needs no descriptor, so it works with a full descriptor table.
pub(crate) fn stat_path(path: &Path) -> io::Result<FileStat> {
    std::fs::symlink_metadata(path).map(|m| FileStat::from(&m))
}

/// An anonymous shared-memory file that accepts seals.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Reserves the backing pages of `0..len` now, so that a full `/dev/shm`
/// fails here with `ENOSPC` instead of a later `SIGBUS` on first touch.
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain syscall on an open descriptor; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match rc {
            0 => return Ok(()),
            libc::EINTR => continue,
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Seals a memfd's size: no peer can shrink it (which would turn accesses
/// into `SIGBUS`) or grow it, and the seals themselves are final.
pub(crate) fn seal_size(file: &File) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on an open descriptor with an integer argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// What the segment needs to know about its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) size: u64,
    pub(crate) uid: u32,
    pub(crate) mode: u32,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Last modification, seconds since the epoch.
    pub(crate) mtime: i64,
    /// Bytes of backing store allocated to the file (`st_blocks` × 512);
    /// below `size` when the file has holes.
    pub(crate) allocated: u64,
}

impl FileStat {
    /// Whether every byte of the file has its backing store (as
    /// `posix_fallocate` leaves a segment at creation): populating a
    /// mapping of it then allocates nothing.
    pub(crate) fn fully_allocated(&self) -> bool {
        self.allocated >= self.size
    }
}

impl From<&std::fs::Metadata> for FileStat {
    fn from(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            size: m.size(),
            uid: m.uid(),
            mode: m.mode(),
            dev: m.dev(),
            ino: m.ino(),
            mtime: m.mtime(),
            allocated: m.blocks().saturating_mul(512),
        }
    }
}

/// `fstat` of an open file.
pub(crate) fn stat(file: &File) -> io::Result<FileStat> {
    file.metadata().map(|m| FileStat::from(&m))
}

/// `fstat` of a raw descriptor number that this process may or may not have
/// open (an inherited one); `EBADF` if it is closed.
pub(crate) fn stat_raw(fd: RawFd) -> io::Result<FileStat> {
    // SAFETY: `stat` is a plain C struct of integers; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes to `st`, which is valid and writable; on a
    // closed or bad descriptor it fails with EBADF and touches nothing.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(FileStat {
        size: u64::try_from(st.st_size).unwrap_or(0),
        uid: st.st_uid,
        mode: st.st_mode,
        dev: st.st_dev,
        ino: st.st_ino,
        mtime: st.st_mtime,
        allocated: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
    })
}

/// Sets the file position of `file`'s open file description (shared by
/// every descriptor of that description, in every process).
pub(crate) fn seek_to(file: &File, position: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(position)).map(drop)
}

/// The file position of the open file description behind a raw descriptor
/// number that this process may or may not have open (an inherited one);
/// moves nothing. `EBADF` if it is closed, `ESPIPE` for a pipe or socket.
pub(crate) fn position_raw(fd: RawFd) -> io::Result<u64> {
    // SAFETY: lseek by 0 from the current position changes nothing; on a
    // closed or bad descriptor it fails with EBADF.
    let at = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    if at < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(at as u64)
}

/// The effective uid of this process.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Physical memory plus swap, in bytes: an upper bound on what a memfd can
/// ever hold (memfds are not limited by the size of a tmpfs mount, so
/// `posix_fallocate` of an absurd size would run the host out of memory
/// instead of failing with `ENOSPC`).
pub(crate) fn memory_limit() -> Option<u64> {
    // SAFETY: `sysinfo` is a plain C struct of integers; all-zero is valid.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: sysinfo only writes to `info`, which is valid and writable.
    cvt(unsafe { libc::sysinfo(&mut info) }).ok()?;
    let unit = u64::from(info.mem_unit.max(1));
    // `c_ulong` is at most 64 bits wide on every Linux target.
    let pages = (info.totalram as u64).saturating_add(info.totalswap as u64);
    Some(pages.saturating_mul(unit))
}

/// Maps `len` bytes of `file` shared, readable and writable; with
/// `populate`, every page is mapped now (`MAP_POPULATE`).
///
/// memmap2's [`MmapRaw`] is used rather than a raw `mmap`: it hands out a raw
/// pointer (never a `&[u8]`, which would be unsound on memory other processes
/// write) and unmaps on drop.
///
/// Populating moves the page faults of the first lap of every ring into
/// the attach: without it, each process takes one minor fault per page of
/// each ring the first time its traffic reaches that page (measured on the
/// 2-core VM: about 200 round trips over 10 µs in the first 50,000 of a
/// Pipe with 256 KiB rings, against 25 for a futex ping-pong with no ring).
/// On a file whose pages are allocated already (`posix_fallocate` at
/// creation) this only fills this process's page tables: a few
/// milliseconds per hundred MiB. On a file with holes it would *allocate*
/// them (a populating fault on a tmpfs hole allocates a page, as any
/// fault does), so callers populate only a [fully
/// allocated](FileStat::fully_allocated) file: an open of a sparse foreign
/// or hostile file under a segment's name must not fill `/dev/shm`.
pub(crate) fn map_shared(file: &File, len: usize, populate: bool) -> io::Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.len(len);
    if populate {
        options.populate();
    }
    options.map_raw(file)
}

/// Opens `/proc/self/fd/<fd>` read-write: a *new* open file description of
/// the same file (unlike `dup`, which shares the description and therefore
/// its OFD locks).
pub(crate) fn reopen_proc_fd(fd: RawFd) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
}

/// Closes a descriptor this process received by inheritance and that no
/// Rust owner holds.
///
/// # Safety
///
/// `fd` must not be owned by any `OwnedFd`/`File` or other code of this
/// process (it was inherited through `exec` and nobody adopted it).
pub(crate) unsafe fn close_inherited(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller guarantees nobody else owns `fd`, so closing it
    // cannot invalidate another owner's descriptor.
    cvt(unsafe { libc::close(fd) }).map(drop)
}

/// Arranges for `fd` (a close-on-exec descriptor made for the purpose) to be
/// inherited by the child that `cmd` spawns, under the same number. Returns
/// that number.
///
/// The parent's own descriptors all stay close-on-exec: `fd` lives inside
/// `cmd` (dropped with it) and the flag is cleared only in the forked child,
/// in a `pre_exec` hook. `fd` must not be 0, 1 or 2 (the child's stdio setup
/// overwrites those): any descriptor opened while stdio is open is not.
pub(crate) fn inherit_on_exec(cmd: &mut Command, fd: OwnedFd) -> io::Result<RawFd> {
    let dup = fd;
    let raw = dup.as_raw_fd();
    if raw <= 2 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let hook = move || {
        // Keeps the duplicate open for as long as `cmd` exists.
        let fd = dup.as_raw_fd();
        // SAFETY: runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: fcntl is one. It clears
        // FD_CLOEXEC, a per-descriptor flag, in the child's table only.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }).map(drop)
    };
    // SAFETY: the hook only calls fcntl (async-signal-safe), allocates
    // nothing, takes no locks and touches no shared state of the parent.
    unsafe {
        cmd.pre_exec(hook);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limit_is_plausible() {
        assert!(memory_limit().unwrap() > 1 << 20);
    }

    #[test]
    fn a_position_set_is_read_back_through_another_descriptor_number() {
        let file = memfd_create(c"position").unwrap();
        seek_to(&file, 1 << 61).unwrap();
        // SAFETY: dup of an open descriptor; the copy is owned below.
        let copy = unsafe { libc::dup(file.as_raw_fd()) };
        assert!(copy >= 0);
        // SAFETY: `copy` is a fresh descriptor nobody else owns.
        let copy = unsafe { OwnedFd::from_raw_fd(copy) };
        assert_eq!(position_raw(copy.as_raw_fd()).unwrap(), 1 << 61);
        assert_eq!(
            position_raw(1_000_000).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn stat_raw_of_closed_fd_is_ebadf() {
        let err = stat_raw(1_000_000).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}
