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
//!     while let Ok(job) = q.get() {
//!         println!("got {job}");
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     run_child_entry(&[("worker", worker)]);
//!     let q = Queue::<u64>::create_anonymous(Default::default(), &Default::default())?;
//!     let mut p = Process::new("worker").share(&q, "JOBS")?.start()?;
//!     q.put(7)?;
//!     q.close();
//!     p.join(None)?;
//!     Ok(())
//! }
//! ```
//!
//! # Daemons die with the parent process, not with a thread
//!
//! A daemon child (every [`Pool`] worker, and a [`Process`] started with
//! [`daemon(true)`](ProcessBuilder::daemon)) is killed with `SIGKILL` when
//! the parent *process* exits or dies, however that happens (a crash, a
//! `SIGKILL`): it asks the kernel for `PR_SET_PDEATHSIG` between the fork
//! and the exec. Linux sends that signal when the *thread* that forked the
//! child exits, though, not the process: a pool started from a worker
//! thread would lose its workers as soon as that thread returned. So daemon
//! children are not forked by the caller's thread but by one *spawner
//! thread* per process, started on the first daemon start and never ended:
//! it exits only with the process, which is when the signal should come.
//! (A pipe whose end the child watches, or a `pidfd` of the parent, would
//! need a watcher thread in every child; the spawner costs one thread in
//! the parent and keeps the kernel's guarantee, which holds whatever the
//! child is doing.)
//!
//! The parent may die between the fork and the `prctl`, and then no signal
//! ever comes; so after the `prctl` the child checks that its parent is
//! still the process that forked it, and kills itself if not.
//!
//! # Failpoints (testing)
//!
//! When `SHMRING_PROCESS_PDEATHSIG_DELAY_MS` is set to `N` as a daemon child
//! is started, the child sleeps `N` milliseconds after the fork, before the
//! `prctl`, so a test can kill the parent inside that window.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::{mpsc, Mutex};
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

    /// Python's `daemon=True`: the child is killed (`SIGKILL`) when this
    /// process exits or dies, whichever thread started it (see the [module
    /// docs](self)). Python terminates its daemons at a clean exit only.
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
        let child = if self.daemon {
            arm_parent_death_signal(&mut self.cmd);
            spawn_daemon(self.cmd)?
        } else {
            self.cmd.spawn()?
        };
        Ok(Process {
            child,
            entry: self.entry,
            status: None,
        })
    }
}

/// Has the child spawned by `cmd` ask for `SIGKILL` when its parent dies,
/// and kill itself if the parent died before it asked.
fn arm_parent_death_signal(cmd: &mut Command) {
    let parent = std::process::id();
    let delay_ms: u64 = std::env::var("SHMRING_PROCESS_PDEATHSIG_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: the closure runs in the child between fork and exec, so it
    // may only make async-signal-safe calls: nanosleep, prctl, getppid,
    // getpid, kill and _exit are; it allocates nothing and touches only the
    // two copied integers.
    unsafe {
        cmd.pre_exec(move || {
            if delay_ms > 0 {
                let pause = libc::timespec {
                    tv_sec: (delay_ms / 1000) as libc::time_t,
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

/// A daemon start handed to the spawner thread, and where its answer goes.
type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// The spawner thread of this process: its pid (a child forked without
/// exec has none) and its job queue.
static SPAWNER: Mutex<Option<(u32, mpsc::Sender<SpawnJob>)>> = Mutex::new(None);

/// Spawns `cmd` from the spawner thread (see the [module docs](self)),
/// starting that thread first if this process has none.
fn spawn_daemon(cmd: Command) -> io::Result<Child> {
    let (reply, answer) = mpsc::channel();
    let mut job = (cmd, reply);
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        for _ in 0..2 {
            let jobs = match &*spawner {
                Some((owner, jobs)) if *owner == pid => jobs,
                _ => &spawner.insert((pid, start_spawner()?)).1,
            };
            match jobs.send(job) {
                Ok(()) => break,
                // The thread is gone (it cannot be, short of a panic in
                // `spawn`): start another and try again.
                Err(mpsc::SendError(back)) => {
                    job = back;
                    *spawner = None;
                }
            }
        }
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?
}

/// Starts the spawner thread; it lives as long as the process (the sender
/// it listens to is kept in [`SPAWNER`]).
fn start_spawner() -> io::Result<mpsc::Sender<SpawnJob>> {
    let (jobs, queue) = mpsc::channel::<SpawnJob>();
    std::thread::Builder::new()
        .name("shmring-spawner".into())
        .spawn(move || {
            for (mut cmd, reply) in queue {
                let _ = reply.send(cmd.spawn());
            }
        })?;
    Ok(jobs)
}

/// A child process running an entry point of this executable.
///
/// Dropping a `Process` neither stops nor reaps the child: [`join`](Process::join)
/// it (a child that ends unjoined stays a zombie until this process exits;
/// a daemon child still dies with this process). A [`Pool`] reaps its
/// workers when dropped.
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

    /// Waits for it to end, at most `timeout` (`None`: forever; a timeout
    /// too long to add to the clock is forever too). Returns its status, or
    /// `None` if it is still running (Python's `join` returns nothing either
    /// way; check [`Process::exitcode`]).
    ///
    /// # Errors
    ///
    /// Waiting failed.
    pub fn join(&mut self, timeout: Option<Duration>) -> io::Result<Option<ExitStatus>> {
        let Some(end) = end_of(timeout) else {
            if let Some(status) = self.status {
                return Ok(Some(status));
            }
            let status = self.child.wait()?;
            self.status = Some(status);
            return Ok(Some(status));
        };
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

/// When a wait of `timeout` ends; `None` for never (no timeout, or one too
/// long for the clock: it saturates, as every timeout of the library does).
fn end_of(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// How long [`Pool`]'s drop waits for its workers to end after `SIGTERM`
/// before it sends `SIGKILL`.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// A pool of worker processes all running one entry point, usually a loop
/// over a shared task queue (Python's `Pool`, minus the pickled functions).
///
/// Its workers are daemons: they die with this process (see the [module
/// docs](self)), whichever thread started the pool.
///
/// Dropping a pool ends it the way leaving Python's `with Pool() as p:`
/// does (`terminate`): every worker still running gets `SIGTERM`, then
/// `SIGKILL` after [`TERMINATE_GRACE`], and every worker is reaped, so none
/// is left behind as a zombie. [`join`](Pool::join) first to let them
/// finish their work.
///
/// # Blocking
///
/// Dropping waits for the workers to end: at most [`TERMINATE_GRACE`] plus
/// the time the kernel takes to kill them.
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
    /// killed and reaped.
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

    /// Waits for every worker, at most `timeout` in all (`None`, or a
    /// timeout too long for the clock: forever). Returns whether all ended
    /// with success.
    ///
    /// # Errors
    ///
    /// Waiting failed.
    pub fn join(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let end = end_of(timeout);
        let mut ok = true;
        for w in &mut self.workers {
            let left = end.map(|e| e.saturating_duration_since(Instant::now()));
            ok &= matches!(w.join(left)?, Some(s) if s.success());
        }
        Ok(ok)
    }

    /// Kills every worker still running (`SIGKILL`); [`join`](Pool::join)
    /// or drop the pool to reap them.
    pub fn kill(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
        }
    }

    /// Python's `terminate()`: sends `SIGTERM` to every worker still
    /// running; [`join`](Pool::join) or drop the pool to reap them.
    pub fn terminate(&mut self) {
        for w in &mut self.workers {
            let _ = w.terminate();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join(Some(TERMINATE_GRACE));
        self.kill(); // those that ignored SIGTERM
        for w in &mut self.workers {
            // Blocks until the kernel has killed it; an error (ECHILD: reaped
            // by someone else) leaves nothing to do.
            let _ = w.join(None);
        }
    }
}
