//! Seed 001's `Process` basics: start and join several children, name and
//! pid, a daemon child that outlives the thread that started it but dies
//! with its parent process, `terminate`, `is_alive` and `exitcode`.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin process_basics
//! ```

use std::time::{Duration, Instant};

use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::Queue;

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("FAILED: {what}");
        std::process::exit(1);
    }
}

/// The seed's `task(name, n)`: sleep n tenths of a second.
fn task((name, n): (String, u64)) -> EntryResult {
    println!("{name} (pid {}) is running", std::process::id());
    std::thread::sleep(Duration::from_millis(100 * n));
    println!("{name} is done");
    Ok(())
}

static TASK: Entry<(String, u64)> = shmring::entry!(task);

fn forever(_: ()) -> EntryResult {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

static FOREVER: Entry<()> = shmring::entry!(forever);

fn fails(_: ()) -> EntryResult {
    Err("this child fails on purpose".into())
}
static FAILS: Entry<()> = shmring::entry!(fails);

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn is_gone(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
}

/// Starts a daemon child from a thread that exits at once, checks that the
/// child outlives the thread, sends its pid home, and exits.
fn starter((pids,): (Queue<u32>,)) -> EntryResult {
    let daemon = std::thread::spawn(|| Process::new(&FOREVER, ()).daemon(true).start())
        .join()
        .map_err(|_| "thread panicked")??;
    std::thread::sleep(Duration::from_millis(300));
    if is_gone(daemon.pid()) {
        return Err("the daemon child died with the thread that started it".into());
    }
    pids.put(daemon.pid())?;
    Ok(()) // this process exits: the daemon goes with it
}

static STARTER: Entry<(Queue<u32>,)> = shmring::entry!(starter);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&TASK, &FOREVER, &FAILS, &STARTER]);

    // Start four, join all: the whole takes as long as the longest one.
    let start = Instant::now();
    let mut children = Vec::new();
    for (i, n) in [5, 3, 2, 1].into_iter().enumerate() {
        children.push(Process::spawn(&TASK, (format!("child {}", i + 1), n))?);
    }
    for c in &mut children {
        println!("started {} with pid {}", c.name(), c.pid());
    }
    for c in &mut children {
        c.join()?;
        check(c.exitcode() == Some(0), "child exited with 0");
    }
    let took = start.elapsed();
    println!(
        "all four joined after {:.2} s (they ran side by side)",
        took.as_secs_f64()
    );
    check(
        took < Duration::from_millis(1100),
        "children ran concurrently",
    );

    // terminate / is_alive / exitcode.
    let mut p = Process::spawn(&FOREVER, ())?;
    check(p.is_alive() && p.exitcode().is_none(), "running");
    p.terminate()?;
    p.join_timeout(Duration::from_secs(5))?;
    println!(
        "terminated: is_alive {} exitcode {:?}",
        p.is_alive(),
        p.exitcode()
    );
    check(
        !p.is_alive() && p.exitcode() == Some(-libc::SIGTERM),
        "terminated",
    );

    let mut f = Process::spawn(&FAILS, ())?;
    f.join()?;
    println!("a failing child: exitcode {:?}", f.exitcode());
    check(f.exitcode() == Some(1), "failed child exits 1");

    // A daemon child outlives the thread that started it, and dies with the
    // process that started it.
    let pids = Queue::<u32>::new(0)?;
    let mut s = Process::spawn(&STARTER, (&pids,))?;
    let daemon_pid = pids.get_timeout(Duration::from_secs(30))?;
    s.join()?;
    check(
        s.exitcode() == Some(0),
        "the daemon outlived its starter thread",
    );
    let gone = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        is_gone(daemon_pid)
    });
    println!("daemon child {daemon_pid} gone after its parent process exited: {gone}");
    check(gone, "daemon child killed with its parent");
    println!("OK");
    Ok(())
}
