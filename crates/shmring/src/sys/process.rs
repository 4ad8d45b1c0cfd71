//! Signals and the parent-death signal, for `crate::process`; and the
//! thread's involuntary context switches, for the wait's spin.

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

thread_local! {
    /// This thread's involuntary context switches at the last call of
    /// [`preempted_since_last_call`].
    static LAST_INVOLUNTARY: std::cell::Cell<libc::c_long> = const { std::cell::Cell::new(0) };
}

/// Whether the calling thread was switched out for another runnable thread
/// (an involuntary context switch, `getrusage(RUSAGE_THREAD)`'s
/// `ru_nivcsw`) since its previous call; `true` on a thread's first call
/// that finds any. A VM's host preempting the whole guest counts no
/// switch: only threads of this system competing for the CPU do. `false`
/// when the call fails.
pub(crate) fn preempted_since_last_call() -> bool {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return false;
    }
    LAST_INVOLUNTARY.with(|last| last.replace(usage.ru_nivcsw) != usage.ru_nivcsw)
}

/// Whether this host's CPUs are oversubscribed: the running count of
/// `/proc/loadavg` (which counts the caller) above twice the online CPUs
/// (on one CPU: above one). Measured on the 2-CPU VM: with six runnable
/// processes a waiter that sleeps at once has the better round trip, with
/// a spinning pair and a two-thread build beside it (four) a short spin
/// still wins, so the line is drawn between. Both counts are the host's:
/// a process pinned to one CPU whose peer runs on another is not crowded
/// (comparing with its own affinity made every pinned pair "crowded"); two
/// processes pinned to one CPU are caught by the spin's own check (a
/// thread switched out mid-spin, see `preempted_since_last_call`).
/// `false` when either cannot be read. About 10 µs; no allocation.
pub(crate) fn cpus_crowded() -> bool {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(mut file) = std::fs::File::open("/proc/loadavg") else {
        return false;
    };
    let Ok(len) = file.read(&mut buf) else {
        return false;
    };
    // "0.52 0.58 0.59 3/467 12345": the fourth field's numerator.
    let running = buf[..len]
        .split(|&b| b == b' ')
        .nth(3)
        .and_then(|field| field.split(|&b| b == b'/').next())
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok());
    match (running, online_cpus()) {
        (Some(running), Some(1)) => running > 1,
        (Some(running), Some(cpus)) => running > 2 * cpus,
        _ => false,
    }
}

/// CPUs online on this host.
fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf only reads system configuration.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    /// Twice as many busy threads as CPUs: a thread that spins among them
    /// is switched out within a few scheduler slices.
    #[test]
    fn a_thread_among_busy_threads_is_found_preempted() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..2 * cpus)
            .map(|_| {
                let stop = stop.clone();
                // ORDERING: Relaxed — a stop flag with nothing behind it.
                std::thread::spawn(move || while !stop.load(Ordering::Relaxed) {})
            })
            .collect();
        preempted_since_last_call(); // the baseline
        let start = Instant::now();
        let mut found = false;
        while !found && start.elapsed() < Duration::from_secs(20) {
            std::hint::spin_loop();
            found = preempted_since_last_call();
        }
        // ORDERING: as above.
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            t.join().unwrap();
        }
        assert!(found, "never preempted among {} busy threads", 2 * cpus);
    }

    /// With three times as many busy threads as allowed CPUs, the CPUs are
    /// crowded (the running count is a snapshot: a few looks).
    #[test]
    fn busy_threads_beyond_the_cpus_are_a_crowd() {
        let cpus = online_cpus().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..3 * cpus)
            .map(|_| {
                let stop = stop.clone();
                // ORDERING: Relaxed — a stop flag with nothing behind it.
                std::thread::spawn(move || while !stop.load(Ordering::Relaxed) {})
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let crowded = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            cpus_crowded()
        });
        // ORDERING: as above.
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            t.join().unwrap();
        }
        assert!(crowded, "{} busy threads on {cpus} CPUs", 3 * cpus);
    }
}
