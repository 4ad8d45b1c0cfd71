//! Busy-loop processes that compete for the CPU while a measurement runs
//! ([`Params::busy`](crate::Params::busy)): "a busy loop on the receiver's
//! core", or more processes than cores.
//!
//! Each is this executable re-executed as the entry point [`BUSY`], a loop
//! with no system call, started as a *daemon* child of shmring's process
//! module: the kernel kills it (`PR_SET_PDEATHSIG`) when this process
//! dies, however it dies. While this process lives, [`BusyLoops`] kills
//! and reaps them when dropped: at the end of the measurement, on an error
//! and on a panic's unwind alike. When the measurement is pinned they are
//! pinned, between fork and exec, to the peer's CPU; otherwise the
//! scheduler places them.

use std::os::unix::process::CommandExt;
use std::process::Command;

use shmring::process::{Entry, EntryResult, Process, StartError};

use crate::MeasureError;

/// The busy loop's entry point (served by [`run_if_busy_loop`], which
/// [`crate::run_peer_if_child`] and [`crate::custom::run_peer_if_child`]
/// call).
static BUSY: Entry<()> = shmring::entry!(busy_loop);

/// Spins until killed. Every 2^24 rounds it checks that its parent is the
/// one that started it, and exits if not: a second guard beside the
/// kernel's parent-death signal.
fn busy_loop((): ()) -> EntryResult {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
        // SAFETY: as above.
        if x.trailing_zeros() >= 24 && unsafe { libc::getppid() } != parent {
            return Ok(());
        }
    }
}

/// Runs the busy loop and exits when this process was started as one;
/// returns at once otherwise.
pub(crate) fn run_if_busy_loop() {
    if BUSY.receive().is_some() {
        let _ = busy_loop(());
        std::process::exit(0);
    }
}

/// The busy loops of one measurement; dropping it kills and reaps them.
#[derive(Debug, Default)]
pub(crate) struct BusyLoops(Vec<Process>);

impl BusyLoops {
    /// Starts `n` busy loops, each pinned to `cpu` when there is one. On
    /// an error the ones already started are killed before it returns.
    pub(crate) fn start(n: u32, cpu: Option<usize>) -> Result<BusyLoops, MeasureError> {
        let mut loops = BusyLoops(Vec::with_capacity(n as usize));
        if n == 0 {
            return Ok(loops);
        }
        let exe = std::env::current_exe().map_err(MeasureError::io("current_exe"))?;
        for _ in 0..n {
            let mut cmd = Command::new(&exe);
            cmd.stdin(std::process::Stdio::null());
            if let Some(cpu) = cpu {
                pin_child(&mut cmd, cpu);
            }
            let child = Process::with_command(cmd, &BUSY, ())
                .daemon(true)
                .start()
                .map_err(|e| match e {
                    StartError::Spawn(e) => MeasureError::io("start a busy loop")(e),
                    e => MeasureError::transport("start a busy loop", e),
                })?;
            loops.0.push(child);
        }
        loops.wait_until_spinning()?;
        Ok(loops)
    }

    /// Waits until every loop has run on a CPU for [`WARM_NS`] (its
    /// `/proc/PID/schedstat`): a measurement shorter than a process's
    /// start-up otherwise ran before any loop competed with it (20,000
    /// round trips of 300 ns finish in 6 ms).
    fn wait_until_spinning(&self) -> Result<(), MeasureError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for p in &self.0 {
            let path = format!("/proc/{}/schedstat", p.pid());
            loop {
                let on_cpu = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0);
                if on_cpu >= WARM_NS {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(MeasureError::transport(
                        "start a busy loop",
                        format!("pid {} ran {on_cpu} ns in 10 s", p.pid()),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        Ok(())
    }
}

/// CPU time each busy loop has used before a measurement starts (2 ms).
const WARM_NS: u64 = 2_000_000;

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
        }
        for p in &mut self.0 {
            let _ = p.join();
        }
    }
}

/// Pins the child `cmd` will start to `cpu`, between fork and exec (so it
/// never runs elsewhere). Best effort: a CPU that cannot be set leaves the
/// child unpinned.
fn pin_child(cmd: &mut Command, cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: cpu_set_t is plain data (zeroed is the empty set); CPU_SET
    // writes inside it for an index below CPU_SETSIZE, checked above.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    let hook = move || {
        // Runs in the forked child before exec: sched_setaffinity is a
        // plain system call (async-signal-safe), reading the copied set.
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        Ok(())
    };
    // SAFETY: the hook makes one system call, allocates nothing and takes
    // no lock.
    unsafe {
        cmd.pre_exec(hook);
    }
}
