//! Seed 001's `Process` basics: start and join several children, name and
//! pid, a daemon child that outlives the thread that started it but dies
//! with its parent process, `terminate`, `is_alive` and `exitcode`.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin process_basics
//! ```

use std::time::{Duration, Instant};

use shmring::process::{run_child_entry, Process};
use shmring::queue::Queue;
use shmring::OpenOptions;

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("FAILED: {what}");
        std::process::exit(1);
    }
}

/// The seed's `task(name, n)`: sleep n tenths of a second.
fn task() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args().nth(2).ok_or("n")?.parse()?;
    println!("{name} (pid {}) is running", std::process::id());
    std::thread::sleep(Duration::from_millis(100 * n));
    println!("{name} is done");
    Ok(())
}

fn forever() -> Result<(), Box<dyn std::error::Error>> {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fails() -> Result<(), Box<dyn std::error::Error>> {
    Err("this child fails on purpose".into())
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn is_gone(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
}

/// Starts a daemon child from a thread that exits at once, checks that the
/// child outlives the thread, sends its pid home, and exits.
fn starter() -> Result<(), Box<dyn std::error::Error>> {
    let pids = Queue::<u32>::open_inherited("PIDS", &OpenOptions::default())?;
    let daemon = std::thread::spawn(|| Process::new("forever").daemon(true).start())
        .join()
        .map_err(|_| "thread panicked")??;
    std::thread::sleep(Duration::from_millis(300));
    if is_gone(daemon.pid()) {
        return Err("the daemon child died with the thread that started it".into());
    }
    pids.put(daemon.pid())?;
    Ok(()) // this process exits: the daemon goes with it
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child_entry(&[
        ("task", task),
        ("forever", forever),
        ("fails", fails),
        ("starter", starter),
    ]);

    // Start four, join all: the whole takes as long as the longest one.
    let start = Instant::now();
    let mut children = Vec::new();
    for (i, n) in [5, 3, 2, 1].into_iter().enumerate() {
        let p = Process::new("task")
            .arg(format!("child {}", i + 1))
            .arg(n.to_string());
        children.push(p.start()?);
    }
    for c in &mut children {
        println!("started {} with pid {}", c.name(), c.pid());
    }
    for c in &mut children {
        c.join(None)?;
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
    let mut p = Process::new("forever").start()?;
    check(p.is_alive() && p.exitcode().is_none(), "running");
    p.terminate()?;
    p.join(Some(Duration::from_secs(5)))?;
    println!(
        "terminated: is_alive {} exitcode {:?}",
        p.is_alive(),
        p.exitcode()
    );
    check(
        !p.is_alive() && p.exitcode() == Some(-libc::SIGTERM),
        "terminated",
    );

    let mut f = Process::new("fails").start()?;
    f.join(None)?;
    println!("a failing child: exitcode {:?}", f.exitcode());
    check(f.exitcode() == Some(1), "failed child exits 1");

    // A daemon child outlives the thread that started it, and dies with the
    // process that started it.
    let pids = Queue::<u32>::create_anonymous(Default::default(), &Default::default())?;
    let mut s = Process::new("starter").share(&pids, "PIDS")?.start()?;
    let daemon_pid = pids.get_timeout(Duration::from_secs(30))?;
    s.join(None)?;
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
