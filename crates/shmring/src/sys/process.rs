//! Signals and the parent-death signal, for `crate::process`.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `SIGTERM`, for [`signal`].
pub(crate) const SIGTERM: libc::c_int = libc::SIGTERM;
/// `SIGKILL`, for [`signal`].
pub(crate) const SIGKILL: libc::c_int = libc::SIGKILL;

/// Sends `sig` to process `pid`.
///
/// The caller guarantees the pid still names the process it means (an
/// unreaped child of this process, say): a reaped pid may have been reused.
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill has no memory effects; which process it reaches is the
    // caller's promise above.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Has the child spawned by `cmd` ask the kernel for `SIGKILL` when the
/// thread that forked it exits (`PR_SET_PDEATHSIG`), and kill itself if its
/// parent (`parent`, this process) died before it asked. When `delay_ms` is
/// nonzero the child first sleeps that long (a test failpoint: it widens
/// the window between the fork and the `prctl`).
pub(crate) fn arm_parent_death_signal(cmd: &mut Command, parent: u32, delay_ms: u64) {
    // The closure runs in the child between fork and exec: it allocates
    // nothing and touches only the two copied integers.
    // SAFETY: it makes only async-signal-safe calls (nanosleep, prctl,
    // getppid, getpid, kill, _exit), as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            if delay_ms > 0 {
                let pause = libc::timespec {
                    tv_sec: libc::time_t::try_from(delay_ms / 1000).unwrap_or(libc::time_t::MAX),
                    // Below 1e9: fits every c_long.
                    tv_nsec: ((delay_ms % 1000) * 1_000_000) as libc::c_long,
                };
                libc::nanosleep(&pause, std::ptr::null_mut());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent died before the prctl: the signal will never come
            // (we were handed to init or a subreaper). Do what it would have
            // done.
            if u32::try_from(libc::getppid()) != Ok(parent) {
                libc::kill(libc::getpid(), libc::SIGKILL);
                libc::_exit(137);
            }
            Ok(())
        });
    }
}
