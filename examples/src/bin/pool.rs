//! A pool of worker processes fed from one queue, results back on another
//! (seed 002's `Pool` with a shared queue, and seed 003's process pool).
//!
//! ```text
//! cargo run --release -p shmring-examples --bin pool
//! ```

use std::time::Duration;

use shmring::process::{run_child, Entry, EntryResult, Pool};
use shmring::queue::{GetError, GetTimeoutError, Queue};

const WORKERS: usize = 4;
const TASKS: u64 = 10_000;

/// `(task, result)` travels as two u64s.
fn worker((tasks, results): (Queue<u64>, Queue<[u64; 2]>)) -> EntryResult {
    let mut done = 0u64;
    loop {
        match tasks.get() {
            Ok(n) => {
                results.put([n, n * n])?;
                done += 1;
            }
            Err(GetError::ShutDown) => break, // shut down and drained
            Err(e) => return Err(e.into()),
        }
    }
    println!("worker {}: {done} tasks", std::process::id());
    Ok(())
}

static WORKER: Entry<(Queue<u64>, Queue<[u64; 2]>)> = shmring::entry!(worker);

/// Takes one result if there is one within `wait`; checks and counts it.
fn collect(
    results: &Queue<[u64; 2]>,
    wait: Duration,
    sum: &mut u64,
    received: &mut u64,
) -> Result<bool, GetError> {
    match results.get_timeout(wait) {
        Ok([n, sq]) => {
            if sq != n * n {
                eprintln!("FAILED: wrong result {sq} for {n}");
                std::process::exit(1);
            }
            *sum += n;
            *received += 1;
            Ok(true)
        }
        Err(GetTimeoutError::Timeout) => Ok(false),
        Err(GetTimeoutError::Get(e)) => Err(e),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&WORKER]);
    let tasks = Queue::<u64>::new(256)?;
    let results = Queue::<[u64; 2]>::new(0)?;
    let mut pool = Pool::start(WORKERS, &WORKER, |_| (&tasks, &results))?;

    let (mut sum, mut received) = (0u64, 0u64);
    for n in 1..=TASKS {
        tasks.put(n)?;
        while collect(&results, Duration::ZERO, &mut sum, &mut received)? {}
    }
    while received < TASKS {
        collect(&results, Duration::from_secs(30), &mut sum, &mut received)?;
    }
    tasks.shutdown(); // workers drain and exit
    let clean = pool.join_timeout(Duration::from_secs(30))?;
    println!("main: {received} results from {WORKERS} workers, sum of tasks {sum}");
    if !clean || sum != TASKS * (TASKS + 1) / 2 {
        eprintln!("FAILED");
        std::process::exit(1);
    }
    println!("OK");
    Ok(())
}
