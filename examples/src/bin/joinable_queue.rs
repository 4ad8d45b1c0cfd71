//! Seed 001's JoinableQueue example: producers put buns and `join` the
//! queue, which returns only when the consumers have called `task_done` for
//! every bun; the consumers are daemons and die with the main process.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin joinable_queue
//! ```

use std::time::Duration;

use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::JoinableQueue;

const PRODUCERS: u64 = 3;
const BUNS_EACH: u64 = 200;

fn producer((q, me): (JoinableQueue<u64>, u64)) -> EntryResult {
    for i in 0..BUNS_EACH {
        q.put(me * 1000 + i)?;
    }
    // Like the seed: wait until the consumers have processed everything.
    q.join_timeout(Duration::from_secs(30))?;
    println!("producer {me}: all buns were eaten, leaving");
    Ok(())
}

static PRODUCER: Entry<(JoinableQueue<u64>, u64)> = shmring::entry!(producer);

fn consumer((q,): (JoinableQueue<u64>,)) -> EntryResult {
    loop {
        let _bun = q.get()?;
        q.task_done()?;
    }
}
static CONSUMER: Entry<(JoinableQueue<u64>,)> = shmring::entry!(consumer);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&PRODUCER, &CONSUMER]);
    let q = JoinableQueue::<u64>::new(0)?;
    let mut consumers = Vec::new();
    for _ in 0..2 {
        // Daemons: they loop forever and die with this process.
        consumers.push(Process::new(&CONSUMER, (&q,)).daemon(true).start()?);
    }
    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        producers.push(Process::spawn(&PRODUCER, (&q, id))?);
    }
    let mut ok = true;
    for p in &mut producers {
        ok &= p.join_timeout(Duration::from_secs(60))?.success();
    }
    let unfinished = q.unfinished_tasks();
    let alive = consumers
        .iter_mut()
        .filter_map(|c| c.is_alive().then_some(()))
        .count();
    println!("main: producers done, {unfinished} tasks unfinished, {alive} daemon consumers still running");
    if !ok || unfinished != 0 || q.task_done().is_ok() {
        eprintln!("FAILED");
        std::process::exit(1);
    }
    println!("main: task_done() once more is refused, as in Python: \"task_done() called too many times\"");
    println!("OK");
    Ok(())
}
