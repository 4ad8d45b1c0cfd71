//! Seed 001's last example: 3 producer processes make buns, 2 consumer
//! processes eat them, and the parent sends one sentinel per consumer once
//! every producer has finished.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin producer_consumer
//! ```
//!
//! Checks its own result: every bun eaten exactly once, or exit status 1.

use std::collections::BTreeMap;
use std::time::Duration;

use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::Queue;

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
const BUNS_EACH: u64 = 1000;
/// A bun is `producer * 1_000_000 + number`; the sentinel is Python's `None`.
const SENTINEL: u64 = u64::MAX;

fn producer((q, me): (Queue<u64>, u64)) -> EntryResult {
    for i in 0..BUNS_EACH {
        q.put(me * 1_000_000 + i)?;
    }
    println!("producer {me}: made {BUNS_EACH} buns");
    Ok(())
}

static PRODUCER: Entry<(Queue<u64>, u64)> = shmring::entry!(producer);

fn consumer((q, eaten): (Queue<u64>, Queue<u64>)) -> EntryResult {
    let mut n = 0;
    loop {
        let bun = q.get_timeout(Duration::from_secs(30))?;
        if bun == SENTINEL {
            break;
        }
        eaten.put(bun)?;
        n += 1;
    }
    println!(
        "consumer {}: ate {n} buns, then got the sentinel",
        std::process::id()
    );
    Ok(())
}

static CONSUMER: Entry<(Queue<u64>, Queue<u64>)> = shmring::entry!(consumer);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&PRODUCER, &CONSUMER]);
    let buns = Queue::<u64>::new(0)?;
    // Room for every bun, so consumers never wait on the parent's reading.
    let eaten = Queue::<u64>::builder()
        .ring_bytes(1 << 16)
        .max_message(64)
        .anonymous()?;

    let mut producers = Vec::new();
    for id in 0..PRODUCERS {
        producers.push(Process::spawn(&PRODUCER, (&buns, id))?);
    }
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        consumers.push(Process::spawn(&CONSUMER, (&buns, &eaten))?);
    }
    for p in &mut producers {
        p.join()?;
    }
    // As the seed says: only after every producer is done, one per consumer.
    for _ in 0..CONSUMERS {
        buns.put(SENTINEL)?;
    }
    let mut ok = true;
    for c in consumers.iter_mut().chain(producers.iter_mut()) {
        ok &= c.exitcode() == Some(0) || c.join_timeout(Duration::from_secs(30))?.success();
    }

    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    while let Ok(bun) = eaten.try_get() {
        *seen.entry(bun).or_default() += 1;
    }
    let expected = PRODUCERS * BUNS_EACH;
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    let lost = expected as usize - seen.len().min(expected as usize);
    println!(
        "main: {} buns made, {} eaten, {lost} lost, {duplicated} eaten twice",
        expected,
        seen.len()
    );
    if !ok || lost != 0 || duplicated != 0 || seen.len() as u64 != expected {
        eprintln!("FAILED");
        std::process::exit(1);
    }
    println!("OK");
    Ok(())
}
