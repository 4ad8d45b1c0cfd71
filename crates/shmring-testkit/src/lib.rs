//! Test helpers for shmring: unique segment names, watchdogs, and child
//! processes made by re-executing the current test binary.
//!
//! # Multi-process tests
//!
//! A test binary re-executes itself to run an entry point in a child
//! process (never `fork()` inside the multi-threaded test harness), through
//! `shmring::process`'s typed entry points. libtest owns the binary's
//! `main`, so one test function plays its part: it calls [`run_child`]
//! with the binary's entries, which returns at once in a normal run, and
//! the child is started with [`child`] (or [`spawn_child`]), which makes
//! the re-executed binary run that one test:
//!
//! ```no_run
//! use std::time::Duration;
//! use shmring::process::{Entry, EntryResult};
//! use shmring_testkit::{child, run_child};
//!
//! fn hello((n,): (u32,)) -> EntryResult {
//!     println!("child says hello {n}");
//!     Ok(())
//! }
//! static HELLO: Entry<(u32,)> = shmring::entry!(hello);
//!
//! #[test]
//! fn child_entry() {
//!     run_child(&[&HELLO]);
//! }
//!
//! #[test]
//! fn parent() {
//!     // The first argument is the path of the test that calls `run_child`
//!     // inside the binary: "child_entry" in an integration test,
//!     // "module::tests::child_entry" in a unit test.
//!     let mut p = child("child_entry", &HELLO, (7,)).start().unwrap();
//!     assert!(p.join_timeout(Duration::from_secs(10)).unwrap().success());
//! }
//! ```
//!
//! A test binary without the libtest harness (`harness = false`) calls
//! `run_child` first thing in its own `main` and starts its children with
//! [`Process`] directly.
//!
//! What a child is told travels as its entry point's typed arguments: the
//! objects themselves, or their names where opening by name is what the
//! test is about, and its numbers. A test of inheriting a raw descriptor
//! (`share_with_child` under a variable of its own) still starts that
//! child through an entry point, on the command [`child`] prepares.
//!
//! A child's panic makes its test fail, so the child exits nonzero and
//! `wait_child` reports it.

use std::process::{Child, ExitStatus};

pub use shmring::process::run_child;
use shmring::process::{Args, Entry, IntoArgs, Process, ProcessBuilder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A segment name no other test, process or run uses:
/// `/shmring-test-<prefix>-<pid>-<counter>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness matters, which the RMW gives.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("/shmring-test-{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Aborts the whole process if it is not dropped within its time limit, so
/// that a hung test fails fast (and a child that lost its parent goes away).
#[derive(Debug)]
pub struct Watchdog {
    // Dropping the sender wakes the watchdog thread, which then exits.
    _cancel: mpsc::Sender<()>,
}

impl Watchdog {
    /// Starts a watchdog for `what`, firing after `limit`.
    pub fn new(limit: Duration, what: &str) -> Watchdog {
        let (cancel, cancelled) = mpsc::channel::<()>();
        let what = what.to_owned();
        std::thread::Builder::new()
            .name(format!("watchdog: {what}"))
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
                    eprintln!(
                        "watchdog: {what} did not finish within {limit:?}; aborting process {}",
                        std::process::id()
                    );
                    std::process::abort();
                }
            })
            .expect("spawn watchdog thread");
        Watchdog { _cancel: cancel }
    }
}

/// libtest's arguments that make the re-executed test binary run the test
/// `test_fn_name` alone, its output not captured.
pub fn harness_args(test_fn_name: &str) -> [&str; 4] {
    [test_fn_name, "--exact", "--nocapture", "--test-threads=1"]
}

/// A child running `entry` with `args` in a re-execution of the current
/// test binary that runs only the test `test_fn_name` (the test that calls
/// [`run_child`] with `entry` in its list).
/// Set anything else on the builder, then
/// [`start`](shmring::process::ProcessBuilder::start) it.
pub fn child<A: Args>(
    test_fn_name: &str,
    entry: &Entry<A>,
    args: impl IntoArgs<A>,
) -> ProcessBuilder {
    Process::new(entry, args).command_args(harness_args(test_fn_name))
}

/// [`child`], spawned as a plain [`Child`] for [`wait_child`] (which kills
/// it if it overstays): the usual way a test starts an entry point.
///
/// # Panics
///
/// If an argument cannot be handed over or the child cannot be spawned.
pub fn spawn_child<A: Args>(test_fn_name: &str, entry: &Entry<A>, args: impl IntoArgs<A>) -> Child {
    child(test_fn_name, entry, args)
        .into_command()
        .expect("hand the child its arguments")
        .spawn()
        .expect("spawn the child")
}

/// Waits for `child` to exit; on timeout kills it (SIGKILL), reaps it and
/// panics.
///
/// # Panics
///
/// When the child has not exited after `timeout`, or waiting fails.
pub fn wait_child(mut child: Child, timeout: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` every millisecond until it holds or `timeout` passes;
/// returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `sig` to process `pid` (a child of the caller's, not yet reaped,
/// so the pid cannot have been reused). Panics if `kill` fails.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) takes no memory; the pid is the caller's own child.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// Whether `/proc` shows process `pid` stopped (state `T` or `t`).
pub fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which ends with the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|c| c == 'T' || c == 't')
}

/// Stops child `pid` with `SIGSTOP` and waits (up to 10 s) until it is
/// stopped; panics if it is not.
pub fn stop_child(pid: u32) {
    signal(pid, libc::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(10), || is_stopped(pid)),
        "child {pid} did not stop"
    );
}

/// Stops the calling process (a child role at a failpoint, say) until it
/// gets `SIGCONT` or `SIGKILL`.
pub fn stop_self() {
    // SAFETY: raise has no memory-safety preconditions; SIGSTOP stops the
    // whole process until someone sends SIGCONT or SIGKILL.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
}

/// A copy of the executable at `path` that any user can run, for tests
/// that start a child as another uid: the build directory may sit below a
/// directory only its owner can enter (a fresh clone in a 0700
/// `mktemp -d`, say), and then the child's exec fails with EACCES.
///
/// The copy lives in `/tmp/shmring-exec-<pid>/`; copies left by processes
/// that no longer exist are removed on the way.
///
/// # Panics
///
/// If the copy cannot be made.
pub fn executable_by_anyone(path: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("shmring-exec-"))
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = std::path::Path::new("/tmp").join(format!("shmring-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the copy's directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let copy = dir.join(path.file_name().expect("an executable file name"));
    if !copy.exists() {
        // Copy then rename, so a concurrent caller never runs a half copy.
        let partial = dir.join(format!(
            ".{}.{}",
            copy.file_name().and_then(|n| n.to_str()).unwrap_or("exe"),
            unique_name("part").trim_start_matches('/')
        ));
        std::fs::copy(path, &partial).expect("copy the executable");
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the copy");
        std::fs::rename(&partial, &copy).expect("rename the copy");
    }
    copy
}

/// The file behind a named segment: `/dev/shm` + `name` (`name` starts
/// with `/`).
pub fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Whether the named segment's file exists.
pub fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&shm_path(name)).exists()
}

/// Sleeps until killed (a child role that holds something and waits for
/// its SIGKILL).
pub fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `count` reproducible pseudo-random byte strings shorter than `max_len`
/// (xorshift64*, seeded with `seed`): inputs for the fuzz hooks in tests.
pub fn pseudo_random_inputs(
    seed: u64,
    count: usize,
    max_len: usize,
) -> impl Iterator<Item = Vec<u8>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..count).map(move |_| {
        let len = (next() % max_len.max(1) as u64) as usize;
        (0..len).map(|_| (next() >> 56) as u8).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmring::process::EntryResult;

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a.starts_with("/shmring-test-x-"));
        assert!(!a[1..].contains('/'));
        assert!(a.len() <= 201);
    }

    #[test]
    fn watchdog_dropped_in_time_does_nothing() {
        let dog = Watchdog::new(Duration::from_millis(50), "quick");
        drop(dog);
        std::thread::sleep(Duration::from_millis(100));
    }

    fn exit3(_: ()) -> EntryResult {
        std::process::exit(3)
    }
    static EXIT3: Entry<()> = shmring::entry!(exit3);

    fn check((name, n): (String, u64)) -> EntryResult {
        if (name.as_str(), n) == ("seven", 7) {
            Ok(())
        } else {
            Err(format!("got {name:?} {n}").into())
        }
    }
    static CHECK: Entry<(String, u64)> = shmring::entry!(check);

    #[test]
    fn child_entry() {
        run_child(&[&EXIT3, &CHECK]);
    }

    #[test]
    fn spawned_children_run_their_entry() {
        let child = spawn_child("tests::child_entry", &EXIT3, ());
        assert_eq!(wait_child(child, Duration::from_secs(30)).code(), Some(3));
        let child = spawn_child("tests::child_entry", &CHECK, ("seven".to_string(), 7));
        assert!(wait_child(child, Duration::from_secs(30)).success());
    }

    #[test]
    fn entries_run_in_a_child_with_their_arguments() {
        let mut p = child("tests::child_entry", &EXIT3, ()).start().unwrap();
        assert_eq!(p.join().unwrap().code(), Some(3));
        let mut p = child("tests::child_entry", &CHECK, ("seven".to_string(), 7))
            .start()
            .unwrap();
        assert!(p.join().unwrap().success());
        let mut p = child("tests::child_entry", &CHECK, ("six".to_string(), 7))
            .start()
            .unwrap();
        assert_eq!(
            p.join().unwrap().code(),
            Some(shmring::process::EXIT_FAILED)
        );
    }
}
