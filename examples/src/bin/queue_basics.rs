//! Seeds 000 and 002: a `Queue(3)` filling up (`full`, `put` with a 2 s
//! timeout, `put_nowait`, `qsize`, `empty`, draining with `get_nowait`), then
//! a writer process and a reader process, the reader terminated at the end.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin queue_basics
//! ```

use std::time::{Duration, Instant};

use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::{PutTimeoutError, Queue, TryPutError};

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("FAILED: {what}");
        std::process::exit(1);
    }
}

fn writer((q,): (Queue<String>,)) -> EntryResult {
    for value in ["a", "b", "c"] {
        println!("writer: put {value}");
        q.put(value.to_string())?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

static WRITER: Entry<(Queue<String>,)> = shmring::entry!(writer);

fn reader((q, seen): (Queue<String>, Queue<String>)) -> EntryResult {
    loop {
        // Like the seed's reader: loops forever, until terminated.
        let value = q.get()?;
        println!("reader: got {value}");
        seen.put(value)?;
    }
}

static READER: Entry<(Queue<String>, Queue<String>)> = shmring::entry!(reader);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    run_child(&[&WRITER, &READER]);

    // Part 1, one process: Queue(3).
    let q = Queue::<String>::new(3)?;
    q.put("message 1".into())?;
    q.put("message 2".into())?;
    println!("full after 2 puts: {}", q.is_full());
    check(!q.is_full(), "not full after 2");
    q.put("message 3".into())?;
    println!("full after 3 puts: {}", q.is_full());
    check(q.is_full(), "full after 3");
    let start = Instant::now();
    match q.put_timeout("message 4".into(), Duration::from_secs(2)) {
        Err(PutTimeoutError::Timeout(m)) => println!(
            "put({m:?}, timeout=2s) gave up after {:.1} s: queue full, qsize = {}",
            start.elapsed().as_secs_f64(),
            q.len()
        ),
        other => check(false, &format!("expected a timeout, got {other:?}")),
    }
    check(
        start.elapsed() >= Duration::from_secs(2),
        "waited the timeout",
    );
    match q.try_put("message 4".into()) {
        Err(TryPutError::Full(_)) => println!("put_nowait: full at once, qsize = {}", q.len()),
        other => check(false, &format!("expected Full, got {other:?}")),
    }
    let mut drained = Vec::new();
    if !q.is_empty() {
        for _ in 0..q.len() {
            drained.push(q.try_get()?);
        }
    }
    println!("drained with get_nowait: {drained:?}");
    check(drained == ["message 1", "message 2", "message 3"], "FIFO");

    // Part 2, two processes: a writer, and a reader terminated at the end.
    let q = Queue::<String>::new(0)?;
    let seen = Queue::<String>::new(0)?;
    let mut w = Process::spawn(&WRITER, (&q,))?;
    let mut r = Process::spawn(&READER, (&q, &seen))?;
    w.join()?;
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(seen.get_timeout(Duration::from_secs(10))?);
    }
    check(r.is_alive(), "reader still looping");
    r.terminate()?;
    r.join_timeout(Duration::from_secs(10))?;
    println!(
        "reader terminated: exitcode {:?} (minus SIGTERM, as in Python)",
        r.exitcode()
    );
    check(
        r.exitcode() == Some(-libc::SIGTERM),
        "terminated by SIGTERM",
    );
    check(got == ["a", "b", "c"], "reader saw a, b, c");
    println!("parent done\nOK");
    Ok(())
}
