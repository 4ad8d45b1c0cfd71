//! Child processes the way `multiprocessing.Process` starts them, kept thin.
//!
//! Rust cannot send a closure to another process, so a child runs an
//! *entry point* of the current executable: a function declared as an
//! [`Entry`] with [`entry!`](crate::entry), whose arguments (a tuple) travel
//! in order — shmring objects by inheritance, other values encoded as
//! [`Message`](crate::codec::Message)s. `main` starts with [`run_child`],
//! which runs the entry point and exits when this process was started as a
//! child, and returns at once otherwise.
//!
//! ```no_run
//! use shmring::lock::Lock;
//! use shmring::process::{run_child, Entry, EntryResult, Process};
//! use shmring::queue::Queue;
//!
//! fn worker((jobs, lock, scale): (Queue<u64>, Lock, u64)) -> EntryResult {
//!     while let Ok(job) = jobs.get() {
//!         let _printing = lock.acquire()?;
//!         println!("got {}", job * scale);
//!     }
//!     Ok(())
//! }
//! static WORKER: Entry<(Queue<u64>, Lock, u64)> = shmring::entry!(worker);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     run_child(&[&WORKER]);
//!     let q = Queue::<u64>::new(0)?;
//!     let lock = Lock::new()?;
//!     let mut p = Process::spawn(&WORKER, (&q, &lock, 10))?;
//!     q.put(7)?;
//!     q.shutdown(); // the worker drains the queue, then its get fails
//!     p.join()?;
//!     Ok(())
//! }
//! ```
//!
//! A mistyped entry cannot exist (the static is named in both places, and
//! its id is the function's path); an entry missing from `run_child`'s list
//! ends the child with [`EXIT_UNREGISTERED`] and a message naming it.
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

mod args;
mod entry;
mod join;

pub use args::{Arg, ArgFailure, Args, IntoArg, IntoArgs, MAX_VALUE_BYTES};
pub use entry::{
    run_child, ChildEntry, Entry, EntryResult, ReceiveError, EXIT_BAD_ARGUMENTS, EXIT_FAILED,
    EXIT_UNREGISTERED,
};
pub use join::{JoinError, JoinTimeoutError, TryJoinError};

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use shmring_core::wait::Until;

use crate::error::SegmentError;
use crate::sys;

/// Something a child can inherit by `share_with_child`: every shmring
/// object in a segment. (Objects reach an entry point as its
/// [`Arg`]s; this is the lower-level form.)
pub trait Share {
    /// Arranges for the child spawned by `cmd` to inherit `self`; the child
    /// opens it with `builder().open_inherited(env_var)`.
    ///
    /// # Errors
    ///
    /// The descriptor could not be prepared.
    fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), SegmentError>;
}

/// Why a child could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// An argument could not be handed over (an object that cannot be
    /// shared, such as a pipe end already transferred; a value that does
    /// not encode or is too large).
    Argument(ArgFailure),
    /// The executable could not be found or started.
    Spawn(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Argument(failure) => write!(f, "cannot hand over {failure}"),
            StartError::Spawn(e) => write!(f, "cannot start the child process: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Argument(failure) => Some(failure),
            StartError::Spawn(e) => Some(e),
        }
    }
}

/// How a child will be started: [`Process::new`], then the settings, then
/// [`start`](ProcessBuilder::start).
#[derive(Debug)]
pub struct ProcessBuilder {
    cmd: Command,
    entry: &'static str,
    daemon: bool,
    /// The first failure of preparing the child, reported by `start`.
    failed: Option<StartError>,
}

impl ProcessBuilder {
    /// Adds command-line arguments for the executable, before its entry
    /// point runs. Entry points take their arguments as a typed tuple (see
    /// [`Process::new`]); these are for what runs before `main` reaches
    /// [`run_child`]: a test harness's filter that makes a test binary run
    /// the one test that calls `run_child`, say.
    pub fn command_args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// The child's standard output (inherited unless set).
    pub fn stdout(mut self, cfg: impl Into<Stdio>) -> Self {
        self.cmd.stdout(cfg);
        self
    }

    /// The child's standard error (inherited unless set): where it writes
    /// why its entry point failed.
    pub fn stderr(mut self, cfg: impl Into<Stdio>) -> Self {
        self.cmd.stderr(cfg);
        self
    }

    /// Python's `daemon=True`: the child is killed (`SIGKILL`) when this
    /// process exits or dies, whichever thread started it (see the [module
    /// docs](self)). Python terminates its daemons at a clean exit only.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// The command as prepared, for a caller that spawns and waits for it
    /// itself (a test harness that keeps a [`Child`]). The child runs the
    /// entry point as it would under [`start`](ProcessBuilder::start);
    /// [`daemon`](ProcessBuilder::daemon) is not honoured (it needs the
    /// spawner thread).
    ///
    /// # Errors
    ///
    /// As [`start`](ProcessBuilder::start), except for spawning.
    pub fn into_command(self) -> Result<Command, StartError> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.cmd),
        }
    }

    /// Starts the child.
    ///
    /// # Errors
    ///
    /// An argument could not be handed over (the first one that failed;
    /// nothing is started then), or the executable could not be started.
    pub fn start(mut self) -> Result<Process, StartError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let child = if self.daemon {
            let delay_ms: u64 = std::env::var("SHMRING_PROCESS_PDEATHSIG_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            sys::process::arm_parent_death_signal(&mut self.cmd, std::process::id(), delay_ms);
            spawn_daemon(self.cmd)
        } else {
            self.cmd.spawn()
        }
        .map_err(StartError::Spawn)?;
        Ok(Process {
            child,
            entry: self.entry,
            status: None,
        })
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
///
/// # Examples
///
/// (`no_run`: a doctest is no place to start children; the examples crate
/// runs the same with real processes.)
///
/// ```no_run
/// use std::time::Duration;
/// use shmring::process::{run_child, Entry, EntryResult, Process};
///
/// fn greet((who,): (String,)) -> EntryResult {
///     println!("hello, {who}");
///     Ok(())
/// }
/// static GREET: Entry<(String,)> = shmring::entry!(greet);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     run_child(&[&GREET]);
///     let mut p = Process::spawn(&GREET, ("world".to_string(),))?;
///     let status = p.join_timeout(Duration::from_secs(10))?;
///     assert!(status.success());
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Process {
    child: Child,
    entry: &'static str,
    status: Option<ExitStatus>,
}

impl Process {
    /// A child that will run `entry` with `args` (Python's
    /// `Process(target=entry, args=args)`): a tuple in the order of the
    /// entry's arguments, `&object` for a shmring object, the value itself
    /// for a [`Message`](crate::codec::Message). The objects are shared
    /// (a pipe [`Connection`](crate::pipe::Connection) is transferred) and
    /// the values encoded now; a failure is reported by
    /// [`start`](ProcessBuilder::start).
    // Named after Python's `Process(target=..)`; it returns the builder the
    // way `thread::Builder` is reached, so the lint's rule does not fit.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<A: Args>(entry: &Entry<A>, args: impl IntoArgs<A>) -> ProcessBuilder {
        match std::env::current_exe() {
            Ok(exe) => Process::with_command(Command::new(exe), entry, args),
            Err(e) => {
                let mut builder =
                    Process::with_command(Command::new("/proc/self/exe"), entry, args);
                builder.failed = Some(StartError::Spawn(e));
                builder
            }
        }
    }

    /// [`Process::new`] from a command the caller has already prepared:
    /// descriptors it made inheritable (a `pre_exec` hook), its own
    /// environment variables, its standard streams, or a wrapper program
    /// in front of this executable (`strace -f -c <this executable>`).
    /// The entry point and its arguments are added to `cmd`'s environment
    /// as `new` adds them; the builder's settings apply on top.
    ///
    /// For a parent that must prepare the child's side of a channel before
    /// it knows every argument (a benchmark whose job records which
    /// descriptors the child inherits, say). `cmd` must end up running
    /// this executable (or another whose `main` lists `entry` in
    /// [`run_child`]), with the environment it is given: otherwise the
    /// child never runs the entry point.
    pub fn with_command<A: Args>(
        mut cmd: Command,
        entry: &Entry<A>,
        args: impl IntoArgs<A>,
    ) -> ProcessBuilder {
        cmd.env(entry::ENTRY_VAR, entry.id())
            .env(entry::ARGS_VAR, std::any::type_name::<A>());
        let failed = args::sealed::IntoArgs::hand_over_all(args, &mut cmd)
            .err()
            .map(StartError::Argument);
        ProcessBuilder {
            cmd,
            entry: entry.id(),
            daemon: false,
            failed,
        }
    }

    /// Starts a child running `entry` with `args`: `Process::new(entry,
    /// args).start()`.
    ///
    /// # Errors
    ///
    /// As [`ProcessBuilder::start`].
    pub fn spawn<A: Args>(entry: &Entry<A>, args: impl IntoArgs<A>) -> Result<Process, StartError> {
        Process::new(entry, args).start()
    }

    /// The entry point it runs (its [`Entry::id`]).
    pub fn name(&self) -> &str {
        self.entry
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its standard output, when the builder set
    /// [`stdout`](ProcessBuilder::stdout) to [`Stdio::piped`].
    pub fn stdout(&mut self) -> Option<&mut ChildStdout> {
        self.child.stdout.as_mut()
    }

    /// Its standard error, when the builder set
    /// [`stderr`](ProcessBuilder::stderr) to [`Stdio::piped`].
    pub fn stderr(&mut self) -> Option<&mut ChildStderr> {
        self.child.stderr.as_mut()
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

    /// Waits for it to end and returns its status (Python's `join()`;
    /// check [`Process::exitcode`] as there, or the status).
    ///
    /// # Blocking
    ///
    /// Until the child ends.
    ///
    /// # Errors
    ///
    /// Waiting failed (the child was reaped by someone else).
    pub fn join(&mut self) -> Result<ExitStatus, JoinError> {
        loop {
            match self.join_until(Until::Never) {
                Ok(status) => return Ok(status),
                Err(TryJoinError::Running) => continue,
                Err(TryJoinError::Join(e)) => return Err(e),
            }
        }
    }

    /// Its status if it has ended; never waits.
    ///
    /// # Errors
    ///
    /// [`TryJoinError::Running`] while it runs; waiting failed.
    pub fn try_join(&mut self) -> Result<ExitStatus, TryJoinError> {
        self.join_until(Until::Now)
    }

    /// Waits at most `timeout` for it to end (Python's `join(timeout)`).
    ///
    /// # Blocking
    ///
    /// At most `timeout` (a timeout too long for the clock is forever).
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] if it still runs; waiting failed.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, JoinTimeoutError> {
        self.join_until(Until::after(timeout)).map_err(Into::into)
    }

    /// Waits until `deadline` at the latest for it to end.
    ///
    /// # Blocking
    ///
    /// Until `deadline`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] if it still runs; waiting failed.
    pub fn join_deadline(&mut self, deadline: Instant) -> Result<ExitStatus, JoinTimeoutError> {
        self.join_until(sys::until_instant(deadline))
            .map_err(Into::into)
    }

    /// The one wait of the join family: `Running` once `until` has passed.
    fn join_until(&mut self, until: Until) -> Result<ExitStatus, TryJoinError> {
        if let Some(status) = self.poll().map_err(JoinError)? {
            return Ok(status);
        }
        let Some(end) = until.deadline(sys::now) else {
            let status = self.child.wait().map_err(JoinError)?;
            self.status = Some(status);
            return Ok(status);
        };
        // No wait on a child takes a timeout (short of a pidfd and poll):
        // poll its status with naps that grow to 20 ms.
        let mut nap = Duration::from_micros(100);
        loop {
            let now = sys::now();
            if now >= end {
                return Err(TryJoinError::Running);
            }
            let left = Duration::from_nanos(sys::clock::nanos_between(now, end));
            std::thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(20));
            if let Some(status) = self.poll().map_err(JoinError)? {
                return Ok(status);
            }
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
        self.signal(sys::process::SIGTERM)
    }

    /// Python's `kill`: sends SIGKILL.
    ///
    /// # Errors
    ///
    /// The signal could not be sent.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(sys::process::SIGKILL)
    }

    fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.poll()?.is_some() {
            return Ok(()); // already reaped: the pid may belong to another process now
        }
        // Our unreaped child: its pid cannot have been reused.
        sys::process::signal(self.child.id(), signal)
    }
}

/// How long [`Pool`]'s drop waits for its workers to end after `SIGTERM`
/// before it sends `SIGKILL`.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// A pool of worker processes, usually all running one entry point, a loop
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
///
/// # Examples
///
/// (`no_run`, as for [`Process`]; `examples/src/bin/pool.rs` runs it.)
///
/// ```no_run
/// use shmring::process::{run_child, Entry, EntryResult, Pool};
/// use shmring::queue::Queue;
///
/// fn square((tasks, results): (Queue<u64>, Queue<u64>)) -> EntryResult {
///     while let Ok(n) = tasks.get() {
///         results.put(n * n)?;
///     }
///     Ok(()) // the task queue was shut down and drained
/// }
/// static SQUARE: Entry<(Queue<u64>, Queue<u64>)> = shmring::entry!(square);
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     run_child(&[&SQUARE]);
///     let (tasks, results) = (Queue::<u64>::new(0)?, Queue::<u64>::new(0)?);
///     let mut pool = Pool::start(4, &SQUARE, |_| (&tasks, &results))?;
///     for n in 1..=100 {
///         tasks.put(n)?;
///     }
///     let sum = (0..100).map(|_| results.get()).sum::<Result<u64, _>>()?;
///     assert_eq!(sum, 338_350);
///     tasks.shutdown();
///     pool.join()?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Process>,
}

impl Pool {
    /// Starts `n` workers running `entry`; worker `i` gets the arguments
    /// `args(i)` (see [`Process::new`]).
    ///
    /// # Errors
    ///
    /// A worker could not be started; those already started are killed
    /// and reaped.
    pub fn start<A: Args, P: IntoArgs<A>>(
        n: usize,
        entry: &Entry<A>,
        mut args: impl FnMut(usize) -> P,
    ) -> Result<Pool, StartError> {
        Pool::start_with(n, |i| Process::new(entry, args(i)))
    }

    /// Starts `n` workers, worker `i` as `worker(i)` prepares it (any entry
    /// point, arguments, and settings such as
    /// [`command_args`](ProcessBuilder::command_args)); every worker is a
    /// daemon whatever the builder says.
    ///
    /// # Errors
    ///
    /// As [`Pool::start`].
    pub fn start_with(
        n: usize,
        mut worker: impl FnMut(usize) -> ProcessBuilder,
    ) -> Result<Pool, StartError> {
        let mut pool = Pool {
            workers: Vec::with_capacity(n),
        };
        for i in 0..n {
            match worker(i).daemon(true).start() {
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

    /// Waits for every worker to end; returns whether all ended with
    /// success.
    ///
    /// # Blocking
    ///
    /// Until every worker has ended.
    ///
    /// # Errors
    ///
    /// Waiting failed.
    pub fn join(&mut self) -> Result<bool, JoinError> {
        loop {
            match self.join_until(Until::Never) {
                Ok(ok) => return Ok(ok),
                Err(TryJoinError::Running) => continue,
                Err(TryJoinError::Join(e)) => return Err(e),
            }
        }
    }

    /// Whether every worker has ended with success, if all have ended;
    /// never waits.
    ///
    /// # Errors
    ///
    /// [`TryJoinError::Running`] while one runs; waiting failed.
    pub fn try_join(&mut self) -> Result<bool, TryJoinError> {
        self.join_until(Until::Now)
    }

    /// Waits at most `timeout` in all for every worker to end.
    ///
    /// # Blocking
    ///
    /// At most `timeout`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] if one still runs; waiting failed.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<bool, JoinTimeoutError> {
        self.join_until(Until::after(timeout)).map_err(Into::into)
    }

    /// Waits until `deadline` at the latest for every worker to end.
    ///
    /// # Blocking
    ///
    /// Until `deadline`.
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] if one still runs; waiting failed.
    pub fn join_deadline(&mut self, deadline: Instant) -> Result<bool, JoinTimeoutError> {
        self.join_until(sys::until_instant(deadline))
            .map_err(Into::into)
    }

    /// One deadline for all the workers (a relative `until` is fixed once).
    fn join_until(&mut self, until: Until) -> Result<bool, TryJoinError> {
        let until = match until {
            Until::After(_) => until.deadline(sys::now).map_or(Until::Never, Until::At),
            other => other,
        };
        let mut ok = true;
        for w in &mut self.workers {
            ok &= w.join_until(until)?.success();
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
        let _ = self.join_timeout(TERMINATE_GRACE);
        self.kill(); // those that ignored SIGTERM
        for w in &mut self.workers {
            // Blocks until the kernel has killed it; an error (ECHILD: reaped
            // by someone else) leaves nothing to do.
            let _ = w.join();
        }
    }
}
