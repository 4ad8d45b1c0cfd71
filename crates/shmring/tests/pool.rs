//! `Process` and `Pool` with real processes: this test binary is the
//! executable their children run (`run_child` in `child_entry`), the
//! parents that must die among them.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use shmring::process::{Entry, EntryResult, Pool, Process};
use shmring_testkit::{
    child, run_child, spawn_child, unique_name, wait_child, wait_until, Watchdog,
};

/// The test-only hook of `shmring::process`: a daemon child sleeps this many
/// milliseconds after the fork, before it arms its death signal.
const DELAY_VAR: &str = "SHMRING_PROCESS_PDEATHSIG_DELAY_MS";

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

fn sleep_forever(_: ()) -> EntryResult {
    shmring_testkit::sleep_forever()
}
static SLEEP_FOREVER: Entry<()> = shmring::entry!(sleep_forever);

fn exit_zero(_: ()) -> EntryResult {
    Ok(())
}
static EXIT_ZERO: Entry<()> = shmring::entry!(exit_zero);

/// Whether `pid` is gone: no such process, or a zombie nobody reaped (an
/// orphan's new parent may not reap).
fn gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim().chars().next());
    matches!(state, Some('Z' | 'X') | None)
}

/// Whether `pid` has no `/proc` entry at all (it was reaped).
fn reaped(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for dir in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = dir.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(dir.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

fn sigkill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Starts a pool of `n` sleeping workers on a thread that exits at once.
fn pool_from_a_short_lived_thread(n: usize) -> Pool {
    std::thread::spawn(move || {
        Pool::start_with(n, |_| child(CHILD_TEST, &SLEEP_FOREVER, ())).unwrap()
    })
    .join()
    .unwrap()
}

fn pids(pool: &mut Pool) -> Vec<u32> {
    pool.workers().iter().map(Process::pid).collect()
}

/// A parent that must die's own watchdog.
fn parent_dog() -> Watchdog {
    Watchdog::new(Duration::from_secs(90), "pool child")
}

/// Starts a pool of two sleeping workers from a short-lived thread, writes
/// their pids to `out` (atomically: a rename), and sleeps until killed.
fn pool_parent((out,): (String,)) -> EntryResult {
    let _dog = parent_dog();
    let mut pool = pool_from_a_short_lived_thread(2);
    let list: Vec<String> = pids(&mut pool).iter().map(u32::to_string).collect();
    let out = PathBuf::from(out);
    std::fs::write(out.with_extension("part"), list.join(" "))?;
    std::fs::rename(out.with_extension("part"), &out)?;
    shmring_testkit::sleep_forever();
}
static POOL_PARENT: Entry<(String,)> = shmring::entry!(pool_parent);

/// Forks a daemon child that (by the delay hook) is still before its
/// prctl when the test kills us.
fn daemon_parent(_: ()) -> EntryResult {
    let _dog = parent_dog();
    let mut p = child(CHILD_TEST, &EXIT_ZERO, ()).daemon(true).start();
    std::thread::sleep(Duration::from_secs(60));
    let _ = p.as_mut().map(|p| p.kill());
    Ok(())
}
static DAEMON_PARENT: Entry<()> = shmring::entry!(daemon_parent);

/// Becomes a subreaper, starts a [`daemon_parent`] (its daemon child
/// delayed before its prctl), kills it once it has forked, and checks that
/// the orphan it inherits dies of SIGKILL instead of running its entry
/// point.
fn subreaper(_: ()) -> EntryResult {
    let _dog = parent_dog();
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) has no memory effects.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let mut parent = child(CHILD_TEST, &DAEMON_PARENT, ())
        .env(DELAY_VAR, "3000")
        .start()?;
    let ppid = parent.pid();
    assert!(
        wait_until(Duration::from_secs(30), || !children_of(ppid).is_empty()),
        "the daemon parent never forked"
    );
    parent.kill()?;
    parent.join()?;
    // The orphan is ours now (we are its subreaper): reap it.
    let mut status = 0;
    let mut reaped = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            // SAFETY: waitpid writes only `status`.
            reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            reaped != 0
        }),
        "the orphan never exited"
    );
    assert!(reaped > 0, "no orphan to reap");
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the orphan ran its entry point instead of dying (status {status:#x})"
    );
    Ok(())
}
static SUBREAPER: Entry<()> = shmring::entry!(subreaper);

#[test]
fn child_entry() {
    run_child(&[
        &SLEEP_FOREVER,
        &EXIT_ZERO,
        &POOL_PARENT,
        &DAEMON_PARENT,
        &SUBREAPER,
    ]);
}

#[test]
fn pool_workers_survive_the_exit_of_the_thread_that_started_them() {
    let _dog = Watchdog::new(Duration::from_secs(60), "pool from a thread");
    let mut pool = pool_from_a_short_lived_thread(2);
    // PR_SET_PDEATHSIG armed in the forking thread fires when that thread
    // exits, which it has: the workers would be SIGKILLed by now.
    std::thread::sleep(Duration::from_millis(1500));
    for w in pool.workers() {
        assert!(w.is_alive(), "worker {} died with its thread", w.pid());
    }
}

#[test]
fn daemon_process_survives_the_exit_of_the_thread_that_started_it() {
    let _dog = Watchdog::new(Duration::from_secs(60), "daemon from a thread");
    let mut p = std::thread::spawn(|| {
        child(CHILD_TEST, &SLEEP_FOREVER, ())
            .daemon(true)
            .start()
            .unwrap()
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(p.is_alive(), "the daemon child died with its thread");
    p.kill().unwrap();
    p.join().unwrap();
}

#[test]
fn pool_workers_die_with_their_parent_process() {
    let _dog = Watchdog::new(Duration::from_secs(90), "pool parent death");
    let out = std::env::temp_dir().join(unique_name("pool-pids").trim_start_matches('/'));
    let mut parent = spawn_child(CHILD_TEST, &POOL_PARENT, (out.display().to_string(),));
    assert!(wait_until(Duration::from_secs(30), || out.exists()));
    let workers: Vec<u32> = std::fs::read_to_string(&out)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    std::fs::remove_file(&out).unwrap();
    assert_eq!(workers.len(), 2);
    // Started from a thread of the parent that has exited: still running.
    std::thread::sleep(Duration::from_millis(1000));
    let alive_before: Vec<bool> = workers.iter().map(|&w| !gone(w)).collect();
    parent.kill().unwrap();
    parent.wait().unwrap();
    let died = wait_until(Duration::from_secs(30), || workers.iter().all(|&w| gone(w)));
    for &w in &workers {
        if !gone(w) {
            sigkill(w); // do not leave it behind
        }
    }
    assert_eq!(alive_before, [true, true], "workers died with their thread");
    assert!(died, "workers outlived their parent process");
}

#[test]
fn dropping_a_pool_terminates_and_reaps_its_workers() {
    let _dog = Watchdog::new(Duration::from_secs(60), "pool drop");
    let mut pool = Pool::start_with(3, |_| child(CHILD_TEST, &SLEEP_FOREVER, ())).unwrap();
    let workers = pids(&mut pool);
    for &w in &workers {
        assert!(!gone(w));
    }
    drop(pool);
    let left: Vec<u32> = workers.iter().copied().filter(|&w| !reaped(w)).collect();
    for &w in &left {
        sigkill(w);
    }
    assert!(
        left.is_empty(),
        "workers {left:?} not terminated and reaped"
    );
}

#[test]
fn a_daemon_child_whose_parent_dies_before_its_prctl_exits() {
    let _dog = Watchdog::new(Duration::from_secs(120), "pdeathsig race");
    let child = spawn_child(CHILD_TEST, &SUBREAPER, ());
    assert!(wait_child(child, Duration::from_secs(100)).success());
}

#[test]
fn join_with_the_longest_timeout_waits_instead_of_panicking() {
    let _dog = Watchdog::new(Duration::from_secs(60), "join Duration::MAX");
    let mut p = child(CHILD_TEST, &EXIT_ZERO, ()).start().unwrap();
    let status = p.join_timeout(Duration::MAX).unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(p.exitcode(), Some(0));
    let mut pool = Pool::start_with(2, |_| child(CHILD_TEST, &EXIT_ZERO, ())).unwrap();
    assert!(pool.join_timeout(Duration::MAX).unwrap());
    // A process that a signal ended reports it, as Python's negative code.
    let mut p = child(CHILD_TEST, &SLEEP_FOREVER, ()).start().unwrap();
    p.kill().unwrap();
    let status = p.join_timeout(Duration::MAX).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
}
