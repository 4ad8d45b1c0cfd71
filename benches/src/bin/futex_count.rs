//! What counting a futex call in its peer row costs, with few and with
//! 10,000 segment attachments in the process: the figure behind "futex
//! calls are counted in O(1)" in README.md.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin futex_count
//! ```
//!
//! Every futex sleep and wake-up is counted in the peer row of the
//! attachment that made it. The waiter carries a pointer to its row's
//! counters; an earlier version looked the row up in a process-wide list
//! of mapped segments, whose cost grew with the number of attachments.
//! This times `mpmc::ByteQueue::close` (a flag and two `FUTEX_WAKE` calls with
//! nobody asleep, each counted) on a queue created alone, and on one
//! created after 10,000 other attachments (40 locks opened 250 times each),
//! which are alive while it is timed.

use std::time::Instant;

use shmring::lock::Lock;
use shmring::mpmc::ByteQueue;
use shmring::segment::PeerCounter;

type BoxError = Box<dyn std::error::Error>;

const CLOSES: u32 = 200_000;
const LOCKS: usize = 40;
const OPENS_PER_LOCK: usize = 250;

/// Nanoseconds per `close` (two counted wake calls), best of five rounds.
fn per_close(queue: &ByteQueue) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..CLOSES {
                queue.close();
            }
            started.elapsed().as_nanos() as f64 / f64::from(CLOSES)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), BoxError> {
    println!("shmring futex_count: ByteQueue::close (two counted FUTEX_WAKE calls)");
    let alone = per_close(
        &ByteQueue::builder()
            .producers(1)
            .ring_bytes(4096)
            .max_message(64)
            .maxsize(0)
            .anonymous()?,
    );
    println!("  {:>6} other attachments: {alone:8.1} ns", 0);
    let prefix = format!("/shmring-futex-count-{}", std::process::id());
    let mut held = Vec::with_capacity(LOCKS * (OPENS_PER_LOCK + 1));
    for i in 0..LOCKS {
        let name = format!("{prefix}-{i}");
        held.push(
            Lock::builder()
                .peer_rows(OPENS_PER_LOCK as u32 + 1)
                .create(&name)?,
        );
        for _ in 0..OPENS_PER_LOCK {
            held.push(Lock::open(&name)?);
        }
    }
    let queue = ByteQueue::builder()
        .producers(1)
        .ring_bytes(4096)
        .max_message(64)
        .maxsize(0)
        .anonymous()?;
    let crowded = per_close(&queue);
    println!(
        "  {:>6} other attachments: {crowded:8.1} ns ({:.2}x)",
        LOCKS * OPENS_PER_LOCK,
        crowded / alone
    );
    let wakes = queue.segment().counter_sum(PeerCounter::Wakes);
    println!("  wake calls counted in the queue's rows: {wakes}");
    drop(held);
    Ok(())
}
