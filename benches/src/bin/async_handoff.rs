//! Hand-off round trips with the waiter asleep: async shmring beside sync
//! shmring and a tokio `UnixStream` pair, in the same run (issue 14's
//! "within 1.5x the sync blocking hand-off").
//!
//! ```text
//! cargo run --release -p shmring-benches --bin async_handoff
//! ```
//!
//! Two threads play ping-pong over two queues of one slot each (a
//! one-byte message on the socket): the pinger sends, the ponger answers,
//! and neither spins, so every hand-off wakes a sleeper. The variants:
//!
//! * `sync-sync`: two threads blocking in `Queue::get` (no spin);
//! * `sync-async`: a blocking thread against a task on a current-thread
//!   runtime (`AsyncQueue`), the async side asleep in an io_uring wait;
//! * `async-async`: a task on each of two current-thread runtimes;
//! * `tokio-unix`: a `UnixStream` pair, a task on each of two runtimes.
//!
//! Threads of one process, not two processes: the wake path (futex,
//! io_uring completion, eventfd, epoll) is the same, and this needs no
//! child plumbing; the cross-process figures belong to xbench. Prints the
//! median and 99th percentile round trip of each, best median of three
//! runs. Not run by CI.

use std::time::{Duration, Instant};

use shmring::aio::AsyncQueue;
use shmring::queue::Queue;
use shmring::WaitPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error>;

const ROUNDS: usize = 20_000;
const NO_SPIN: WaitPolicy = WaitPolicy::fixed(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn queue_pair() -> Result<(Queue<u64>, Queue<u64>), BoxError> {
    let ping = Queue::<u64>::new(1)?;
    let pong = Queue::<u64>::new(1)?;
    ping.set_wait_policy(NO_SPIN);
    pong.set_wait_policy(NO_SPIN);
    Ok((ping, pong))
}

/// Round trips of `rounds`, timed one by one.
fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!("{name:12} median {:>8.2?}  p99 {:>8.2?}", at(0.5), at(0.99));
}

fn sync_sync() -> Result<Vec<Duration>, BoxError> {
    let (ping, pong) = queue_pair()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..ROUNDS {
                let x = ping.get().unwrap();
                pong.put(x).unwrap();
            }
        });
        let mut times = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS as u64 {
            let start = Instant::now();
            ping.put(i).unwrap();
            assert_eq!(pong.get().unwrap(), i);
            times.push(start.elapsed());
        }
        Ok(times)
    })
}

fn sync_async() -> Result<Vec<Duration>, BoxError> {
    let (ping, pong) = queue_pair()?;
    let (ping, pong) = (AsyncQueue::new(ping), AsyncQueue::new(pong));
    std::thread::scope(|s| {
        s.spawn(|| {
            runtime().block_on(async {
                for _ in 0..ROUNDS {
                    let x = ping.get().await.unwrap();
                    pong.put(x).await.unwrap();
                }
            })
        });
        let mut times = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS as u64 {
            let start = Instant::now();
            ping.sync().put(i).unwrap();
            assert_eq!(pong.sync().get().unwrap(), i);
            times.push(start.elapsed());
        }
        Ok(times)
    })
}

fn async_async() -> Result<Vec<Duration>, BoxError> {
    let (ping, pong) = queue_pair()?;
    let (ping, pong) = (AsyncQueue::new(ping), AsyncQueue::new(pong));
    std::thread::scope(|s| {
        s.spawn(|| {
            runtime().block_on(async {
                for _ in 0..ROUNDS {
                    let x = ping.get().await.unwrap();
                    pong.put(x).await.unwrap();
                }
            })
        });
        runtime().block_on(async {
            let mut times = Vec::with_capacity(ROUNDS);
            for i in 0..ROUNDS as u64 {
                let start = Instant::now();
                ping.put(i).await.unwrap();
                assert_eq!(pong.get().await.unwrap(), i);
                times.push(start.elapsed());
            }
            Ok(times)
        })
    })
}

fn tokio_unix() -> Result<Vec<Duration>, BoxError> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            runtime().block_on(async move {
                let mut b = tokio::net::UnixStream::from_std(b).unwrap();
                let mut byte = [0u8];
                for _ in 0..ROUNDS {
                    b.read_exact(&mut byte).await.unwrap();
                    b.write_all(&byte).await.unwrap();
                }
            })
        });
        runtime().block_on(async move {
            let mut a = tokio::net::UnixStream::from_std(a)?;
            let mut times = Vec::with_capacity(ROUNDS);
            let mut byte = [0u8];
            for i in 0..ROUNDS {
                let start = Instant::now();
                a.write_all(&[i as u8]).await?;
                a.read_exact(&mut byte).await?;
                times.push(start.elapsed());
            }
            Ok(times)
        })
    })
}

fn best_of_three(f: fn() -> Result<Vec<Duration>, BoxError>) -> Result<Vec<Duration>, BoxError> {
    let mut best: Option<Vec<Duration>> = None;
    for _ in 0..3 {
        let mut times = f()?;
        times.sort_unstable();
        if best
            .as_ref()
            .is_none_or(|b| times[times.len() / 2] < b[b.len() / 2])
        {
            best = Some(times);
        }
    }
    Ok(best.expect("three runs"))
}

fn main() -> Result<(), BoxError> {
    println!(
        "io_uring futex waits: {}",
        if shmring::aio::sleeps_without_polling() {
            "yes"
        } else {
            "no (async waits poll every ms)"
        }
    );
    summary("sync-sync", best_of_three(sync_sync)?);
    summary("sync-async", best_of_three(sync_async)?);
    summary("async-async", best_of_three(async_async)?);
    summary("tokio-unix", best_of_three(tokio_unix)?);
    Ok(())
}
