//! Seed 001's `Process` basics: start and join several children, name and
//! pid, a daemon child that dies with its parent, `terminate`, `is_alive`
//! and `exitcode`.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin process_basics
//! ```

use std::time::{Duration, Instant};

use shmring::process::{run_child_entry, Process};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child_entry(&[("task", task), ("forever", forever), ("fails", fails)]);

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

    // A daemon child dies with the thread that started it.
    let daemon_pid = std::thread::spawn(|| -> Result<u32, String> {
        let d = Process::new("forever")
            .daemon(true)
            .start()
            .map_err(|e| e.to_string())?;
        Ok(d.pid())
    })
    .join()
    .map_err(|_| "thread panicked")??;
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        !std::path::Path::new(&format!("/proc/{daemon_pid}/cmdline")).exists()
            || std::fs::read(format!("/proc/{daemon_pid}/cmdline")).is_ok_and(|c| c.is_empty())
    });
    println!("daemon child {daemon_pid} gone after its starter exited: {gone}");
    check(gone, "daemon child killed");
    println!("OK");
    Ok(())
}
