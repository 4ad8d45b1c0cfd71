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
//! Then the same round trips between two processes (`proc-` rows, the
//! first side named is this process): the answering side is a child
//! process started through `shmring::process`, blocking (`sync`) or
//! awaiting on a current-thread runtime (`async`). The thread rows share
//! one process; the wake path (futex, io_uring completion, eventfd, epoll)
//! is the same either way.
//!
//! Last, a one-way stream of [`STREAM`] `u64`s through a queue of 1,024
//! slots (default wait policy: a short spin before sleeping), each way
//! between sync and async (threads), beside 8-byte writes on a tokio
//! `UnixStream`: messages per second, best of three.
//!
//! Prints the median and 99th percentile round trip of each, best median
//! of three runs. Names given on the command line (`sync-sync`,
//! `proc-async-async`, `stream`, ...) run only those rows. Not run by CI.

use std::time::{Duration, Instant};

use shmring::aio::AsyncQueue;
use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::queue::Queue;
use shmring::WaitPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error>;

const ROUNDS: usize = 20_000;
const STREAM: u64 = 1_000_000;
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
    println!("{name:16} median {:>8.2?}  p99 {:>8.2?}", at(0.5), at(0.99));
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

/// Which side of a stream awaits: (producer async, consumer async).
type Sides = (bool, bool);

/// Messages per second of one stream of [`STREAM`] items.
fn stream((async_put, async_get): Sides) -> Result<f64, BoxError> {
    let aq = AsyncQueue::new(Queue::<u64>::new(1024)?);
    let q = aq.sync();
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            if async_put {
                runtime().block_on(async {
                    for i in 0..STREAM {
                        aq.put(i).await.unwrap();
                    }
                });
            } else {
                for i in 0..STREAM {
                    q.put(i).unwrap();
                }
            }
        });
        if async_get {
            runtime().block_on(async {
                for i in 0..STREAM {
                    assert_eq!(aq.get().await.unwrap(), i);
                }
            });
        } else {
            for i in 0..STREAM {
                assert_eq!(q.get().unwrap(), i);
            }
        }
    });
    Ok(STREAM as f64 / start.elapsed().as_secs_f64())
}

/// Messages per second of [`STREAM`] 8-byte writes through a tokio
/// `UnixStream` pair, read in whole messages.
fn stream_unix() -> Result<f64, BoxError> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            runtime().block_on(async move {
                let mut a = tokio::net::UnixStream::from_std(a).unwrap();
                for i in 0..STREAM {
                    a.write_all(&i.to_le_bytes()).await.unwrap();
                }
            })
        });
        runtime().block_on(async move {
            let mut b = tokio::net::UnixStream::from_std(b)?;
            let mut word = [0u8; 8];
            for i in 0..STREAM {
                b.read_exact(&mut word).await?;
                assert_eq!(u64::from_le_bytes(word), i);
            }
            Ok::<_, BoxError>(())
        })
    })?;
    Ok(STREAM as f64 / start.elapsed().as_secs_f64())
}

fn best_rate(f: impl Fn() -> Result<f64, BoxError>) -> Result<f64, BoxError> {
    let mut best = 0f64;
    for _ in 0..3 {
        best = best.max(f()?);
    }
    Ok(best)
}

fn best_of_three(
    f: impl Fn() -> Result<Vec<Duration>, BoxError>,
) -> Result<Vec<Duration>, BoxError> {
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

/// The child's side of a cross-process round trip: answers `ROUNDS`
/// numbers, blocking.
fn echo_sync((ping, pong): (Queue<u64>, Queue<u64>)) -> EntryResult {
    ping.set_wait_policy(NO_SPIN);
    pong.set_wait_policy(NO_SPIN);
    for _ in 0..ROUNDS {
        let x = ping.get()?;
        pong.put(x)?;
    }
    Ok(())
}
static ECHO_SYNC: Entry<(Queue<u64>, Queue<u64>)> = shmring::entry!(echo_sync);

/// The child's side, awaiting on a current-thread runtime.
fn echo_async((ping, pong): (Queue<u64>, Queue<u64>)) -> EntryResult {
    ping.set_wait_policy(NO_SPIN);
    pong.set_wait_policy(NO_SPIN);
    let (ping, pong) = (AsyncQueue::new(ping), AsyncQueue::new(pong));
    runtime().block_on(async {
        for _ in 0..ROUNDS {
            let x = ping.get().await?;
            pong.put(x).await?;
        }
        Ok(())
    })
}
static ECHO_ASYNC: Entry<(Queue<u64>, Queue<u64>)> = shmring::entry!(echo_async);

/// Round trips with the answering side in a child process (`child`), this
/// side blocking or awaiting (`parent_async`).
fn across_processes(
    child: &'static Entry<(Queue<u64>, Queue<u64>)>,
    parent_async: bool,
) -> Result<Vec<Duration>, BoxError> {
    let (ping, pong) = queue_pair()?;
    let mut peer = Process::spawn(child, (&ping, &pong))?;
    let mut times = Vec::with_capacity(ROUNDS);
    if parent_async {
        let (ping, pong) = (AsyncQueue::new(ping), AsyncQueue::new(pong));
        runtime().block_on(async {
            for i in 0..ROUNDS as u64 {
                let start = Instant::now();
                ping.put(i).await?;
                assert_eq!(pong.get().await?, i);
                times.push(start.elapsed());
            }
            Ok::<_, BoxError>(())
        })?;
    } else {
        for i in 0..ROUNDS as u64 {
            let start = Instant::now();
            ping.put(i)?;
            assert_eq!(pong.get()?, i);
            times.push(start.elapsed());
        }
    }
    if !peer.join()?.success() {
        return Err("the answering process failed".into());
    }
    Ok(times)
}

/// Whether the row `name` runs: every row when no names were given on
/// the command line, else the rows named.
fn wanted(name: &str) -> bool {
    let names: Vec<String> = std::env::args().skip(1).collect();
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Prints the round-trip row `name` (best median of three), if wanted.
fn row(name: &str, f: impl Fn() -> Result<Vec<Duration>, BoxError>) -> Result<(), BoxError> {
    if wanted(name) {
        summary(name, best_of_three(f)?);
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    run_child(&[&ECHO_SYNC, &ECHO_ASYNC]);
    println!(
        "io_uring futex waits: {}",
        if shmring::aio::sleeps_without_polling() {
            "yes"
        } else {
            "no (async waits poll every ms)"
        }
    );
    row("sync-sync", sync_sync)?;
    row("sync-async", sync_async)?;
    row("async-async", async_async)?;
    row("tokio-unix", tokio_unix)?;
    row("proc-sync-sync", || across_processes(&ECHO_SYNC, false))?;
    row("proc-sync-async", || across_processes(&ECHO_ASYNC, false))?;
    row("proc-async-sync", || across_processes(&ECHO_SYNC, true))?;
    row("proc-async-async", || across_processes(&ECHO_ASYNC, true))?;
    if !wanted("stream") {
        return Ok(());
    }
    println!("stream of {STREAM} u64 (msgs/s, best of three):");
    for (name, sides) in [
        ("sync->sync", (false, false)),
        ("sync->async", (false, true)),
        ("async->sync", (true, false)),
        ("async->async", (true, true)),
    ] {
        println!("{name:14} {:>12.0}", best_rate(|| stream(sides))?);
    }
    println!("{:14} {:>12.0}", "tokio-unix", best_rate(stream_unix)?);
    Ok(())
}
