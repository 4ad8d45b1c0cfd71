//! Child processes the way `multiprocessing.Process` starts them, kept thin.
//!
//! Rust cannot send a closure to another process, so a child runs a *named
//! entry point* of the current executable. `main` starts with
//! [`run_child_entry`], which runs the entry point and exits when this
//! process was started as a child, and returns at once otherwise. Shared
//! objects travel by inheritance (`share`), the analogue of passing
//! `args=(q,)` to a Python `Process`.
//!
//! ```no_run
//! use shmring::process::{run_child_entry, Process};
//! use shmring::queue::Queue;
//! use shmring::OpenOptions;
//!
//! fn worker() -> Result<(), Box<dyn std::error::Error>> {
//!     let q = Queue::<u64>::open_inherited("JOBS", &OpenOptions::default())?;
//!     while let Ok(job) = q.get(None) {
//!         println!("got {job}");
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     run_child_entry(&[("worker", worker)]);
//!     let q = Queue::<u64>::create_anonymous(Default::default(), &Default::default())?;
//!     let mut p = Process::new("worker").share(&q, "JOBS")?.start()?;
//!     q.put(7, None)?;
//!     q.close();
//!     p.join(None)?;
//!     Ok(())
//! }
//! ```

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::attach::AttachError;

/// The environment variable naming the entry point a child runs.
pub const ENTRY_VAR: &str = "SHMRING_PROCESS_ENTRY";

/// An entry point: what a child process runs.
pub type Entry = fn() -> Result<(), Box<dyn std::error::Error>>;

/// Runs the entry point this process was started for, then exits (0 on
/// success, 1 with the error on stderr on failure, 2 for an unknown name).
/// Returns at once in a process that was not started as a child.
pub fn run_child_entry(entries: &[(&str, Entry)]) {
    let Ok(name) = std::env::var(ENTRY_VAR) else {
        return;
    };
    let Some((_, entry)) = entries.iter().find(|(n, _)| *n == name) else {
        eprintln!("shmring child: unknown entry point {name:?}");
        std::process::exit(2);
    };
    match entry() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shmring child {name}: {e}");
            std::process::exit(1);
        }
    }
}

/// Something a child can inherit: every shmring object in a segment.
pub trait Share {
    /// Arranges for the child spawned by `cmd` to inherit `self`; the child
    /// opens it with `open_inherited(env_var, ..)`.
    ///
    /// # Errors
    ///
    /// The descriptor could not be prepared.
    fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), AttachError>;
}

/// How a child will be started. See [`Process::new`].
#[derive(Debug)]
pub struct ProcessBuilder {
    cmd: Command,
    entry: String,
    daemon: bool,
}

impl ProcessBuilder {
    /// Adds a command-line argument (the child reads it with
    /// `std::env::args`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Hands `object` to the child, which opens it with
    /// `open_inherited(env_var, ..)`.
    ///
    /// # Errors
    ///
    /// The descriptor could not be prepared.
    pub fn share(mut self, object: &impl Share, env_var: &str) -> Result<Self, AttachError> {
        object.share_with_child(&mut self.cmd, env_var)?;
        Ok(self)
    }

    /// Python's `daemon=True`: the child is killed (SIGKILL) when the thread
    /// that started it exits, normally with the parent process.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// The executable could not be started.
    pub fn start(mut self) -> io::Result<Process> {
        if self.daemon {
            // SAFETY: prctl is async-signal-safe; the closure touches no
            // memory of the parent and allocates nothing.
            unsafe {
                self.cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = self.cmd.spawn()?;
        Ok(Process {
            child,
            entry: self.entry,
            status: None,
        })
    }
}

/// A child process running an entry point of this executable.
#[derive(Debug)]
pub struct Process {
    child: Child,
    entry: String,
    status: Option<ExitStatus>,
}

impl Process {
    /// A child that will run the entry point `entry` (see
    /// [`run_child_entry`]).
    ///
    /// # Panics
    ///
    /// If the path of the current executable cannot be found.
    // Named after Python's `Process(target=..)`; it returns the builder the
    // way `thread::Builder` is reached, so the lint's rule does not fit.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(entry: &str) -> ProcessBuilder {
        let exe = std::env::current_exe().expect("the path of the current executable");
        let mut cmd = Command::new(exe);
        cmd.env(ENTRY_VAR, entry);
        ProcessBuilder {
            cmd,
            entry: entry.to_string(),
            daemon: false,
        }
    }

    /// The entry point it runs.
    pub fn name(&self) -> &str {
        &self.entry
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether it is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.poll(), Ok(None))
    }

    /// Waits for it to end, at most `timeout` (`None`: forever). Returns its
    /// status, or `None` if it is still running (Python's `join` returns
    /// nothing either way; check [`Process::exitcode`]).
    ///
    /// # Errors
    ///
    /// Waiting failed.
    pub fn join(&mut self, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        let Some(timeout) = timeout else {
            let status = self.child.wait()?;
            self.status = Some(status);
            return Ok(Some(status));
        };
        let end = Instant::now() + timeout;
        let mut nap = Duration::from_micros(100);
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= end {
                return Ok(None);
            }
            std::thread::sleep(nap.min(end - now));
            nap = (nap * 2).min(Duration::from_millis(20));
        }
    }

    /// Python's `exitcode`: `None` while running, the exit code when it
    /// exited, minus the signal number when a signal killed it.
    pub fn exitcode(&mut self) -> Option<i32> {
        let status = self.poll().ok()??;
        status.code().or_else(|| status.signal().map(|s| -s))
    }

    /// Python's `terminate`: sends SIGTERM.
    ///
    /// # Errors
    ///
    /// The signal could not be sent.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Python's `kill`: sends SIGKILL.
    ///
    /// # Errors
    ///
    /// The signal could not be sent.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.poll()?.is_some() {
            return Ok(()); // already reaped: the pid may belong to another process now
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill has no memory effects; the pid is our unreaped child,
        // so it cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A pool of worker processes all running one entry point, usually a loop
/// over a shared task queue (Python's `Pool`, minus the pickled functions).
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Process>,
}

impl Pool {
    /// Starts `n` workers running `entry`; `configure` prepares each (shares
    /// queues, passes arguments; it gets the worker's index).
    ///
    /// # Errors
    ///
    /// A worker could not be prepared or started; those already started are
    /// killed.
    pub fn start(
        n: usize,
        entry: &str,
        mut configure: impl FnMut(usize, ProcessBuilder) -> Result<ProcessBuilder, AttachError>,
    ) -> Result<Pool, Box<dyn std::error::Error + Send + Sync>> {
        let mut pool = Pool {
            workers: Vec::with_capacity(n),
        };
        for i in 0..n {
            let started = configure(i, Process::new(entry).daemon(true))
                .map_err(Box::from)
                .and_then(|b| b.start().map_err(Box::from));
            match started {
                Ok(p) => pool.workers.push(p),
                Err(e) => {
                    pool.kill();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// The workers.
    pub fn workers(&mut self) -> &mut [Process] {
        &mut self.workers
    }

    /// Waits for every worker, at most `timeout` in all. Returns whether all
    /// ended with success.
    ///
    /// # Errors
    ///
    /// Waiting failed.
    pub fn join(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let end = timeout.map(|t| Instant::now() + t);
        let mut ok = true;
        for w in &mut self.workers {
            let left = end.map(|e| e.saturating_duration_since(Instant::now()));
            ok &= matches!(w.join(left)?, Some(s) if s.success());
        }
        Ok(ok)
    }

    /// Kills every worker still running.
    pub fn kill(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
        }
    }
}
