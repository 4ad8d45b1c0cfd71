//! Async queue handles (feature `tokio`, which the crate's dev-dependency
//! on itself turns on, so a plain `cargo test --workspace` runs these):
//! sync and async ends in real processes, many idle receivers, dropped
//! gets, idle CPU.
#![cfg(feature = "tokio")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmring::aio::{sleeps_without_polling, AsyncConnection, AsyncQueue};
use shmring::pipe::{Connection, Pipe, RecvError, SendError};
use shmring::process::{Entry, EntryResult};
use shmring::queue::{GetError, GetTimeoutError, Queue};
use shmring_testkit::{run_child, spawn_child, wait_child, Watchdog};

const CHILD_TEST: &str = "child_entry";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Puts `0..n` with a sync handle, pausing 20 ms after every `burst`
/// items, so that the consumer falls asleep again and again.
fn sync_producer((q, n, burst): (Queue<u64>, u64, u64)) -> EntryResult {
    for i in 0..n {
        q.put_timeout(i, Duration::from_secs(20))?;
        if (i + 1) % burst == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
static SYNC_PRODUCER: Entry<(Queue<u64>, u64, u64)> = shmring::entry!(sync_producer);

/// Gets `0..n` in order with a sync handle, pausing 20 ms after every
/// `burst` items, so that the async producer finds the queue full.
fn sync_consumer((q, n, burst): (Queue<u64>, u64, u64)) -> EntryResult {
    for i in 0..n {
        assert_eq!(q.get_timeout(Duration::from_secs(20))?, i);
        if (i + 1) % burst == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
static SYNC_CONSUMER: Entry<(Queue<u64>, u64, u64)> = shmring::entry!(sync_consumer);

/// Puts 0, 1, 2, ... every millisecond until killed.
fn sync_producer_forever((q,): (Queue<u64>,)) -> EntryResult {
    for i in 0.. {
        q.put_timeout(i, Duration::from_secs(20))?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
static SYNC_PRODUCER_FOREVER: Entry<(Queue<u64>,)> = shmring::entry!(sync_producer_forever);

/// Answers each number with the next one until end of file (sync).
fn echo((mut conn,): (Connection,)) -> EntryResult {
    loop {
        match conn.recv::<u64>() {
            Ok(n) => conn.send(&(n + 1))?,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
static ECHO: Entry<(Connection,)> = shmring::entry!(echo);

/// Sends `0..10`, then waits to be killed.
fn send_ten_then_hang((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..10u64 {
        conn.send(&i)?;
    }
    shmring_testkit::sleep_forever()
}
static SEND_TEN_THEN_HANG: Entry<(Connection,)> = shmring::entry!(send_ten_then_hang);

/// Receives `0..n` in order (sync), pausing 20 ms after every 2,000, so
/// that the async writer finds the ring full.
fn drain_pipe((mut conn, n): (Connection, u64)) -> EntryResult {
    for i in 0..n {
        assert_eq!(conn.recv::<u64>()?, i);
        if (i + 1) % 2_000 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
static DRAIN_PIPE: Entry<(Connection, u64)> = shmring::entry!(drain_pipe);

/// Receives `0..n` in order (sync), pausing 20 ms after every 500, then
/// insists on end of file: nothing lost, nothing twice, nothing more.
fn drain_pipe_to_eof((mut conn, n): (Connection, u64)) -> EntryResult {
    for i in 0..n {
        assert_eq!(conn.recv::<u64>()?, i);
        if (i + 1) % 500 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(matches!(conn.recv::<u64>(), Err(RecvError::Eof)));
    Ok(())
}
static DRAIN_PIPE_TO_EOF: Entry<(Connection, u64)> = shmring::entry!(drain_pipe_to_eof);

/// Sends `0..n` (sync), pausing 20 ms after every 1,000 so that the
/// reader falls asleep, then closes: end of file.
fn send_n_then_close((mut conn, n): (Connection, u64)) -> EntryResult {
    for i in 0..n {
        conn.send(&i)?;
        if (i + 1) % 1_000 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
static SEND_N_THEN_CLOSE: Entry<(Connection, u64)> = shmring::entry!(send_n_then_close);

/// Reads nothing; waits to be killed.
fn read_nothing((_conn,): (Connection,)) -> EntryResult {
    shmring_testkit::sleep_forever()
}
static READ_NOTHING: Entry<(Connection,)> = shmring::entry!(read_nothing);

/// The threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// User plus system CPU time of this process.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// In a process of its own (nothing else adds threads): 1,000 tasks await
/// `get` on one queue on a single-threaded runtime; while they sleep the
/// process has no more threads than before they started, and its CPU
/// time over 2 s stays near zero. Then 1,000 puts from another thread
/// reach each task exactly once.
fn idle_receivers((q,): (Queue<u64>,)) -> EntryResult {
    const TASKS: u64 = 1_000;
    let rt = runtime();
    let before = threads();
    let q = AsyncQueue::new(q);
    let got = rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.get().await })
            })
            .collect();
        // Let every task register and sleep.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let during = threads();
        assert!(
            during <= before,
            "{during} threads with {TASKS} tasks asleep, {before} before"
        );
        let cpu = cpu_time();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let spent = cpu_time() - cpu;
        eprintln!(
            "{TASKS} idle receivers: {spent:?} of CPU in 2 s, {during} threads ({before} before)"
        );
        // Asleep, each task wakes once per 100 ms slice to re-check; a
        // task that polled or spun would burn the whole 2 s.
        assert!(
            spent < Duration::from_millis(500),
            "{spent:?} of CPU in 2 s with {TASKS} idle receivers"
        );
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..TASKS {
                    q.sync().put(i).unwrap();
                }
            })
        };
        let mut got = BTreeSet::new();
        for task in tasks {
            let item = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("every receiver gets one item")
                .unwrap()
                .unwrap();
            assert!(got.insert(item), "{item} received twice");
        }
        producer.join().unwrap();
        got
    });
    assert_eq!(got, (0..TASKS).collect::<BTreeSet<_>>());
    Ok(())
}
static IDLE_RECEIVERS: Entry<(Queue<u64>,)> = shmring::entry!(idle_receivers);

#[test]
fn child_entry() {
    run_child(&[
        &SYNC_PRODUCER,
        &SYNC_CONSUMER,
        &IDLE_RECEIVERS,
        &SYNC_PRODUCER_FOREVER,
        &ECHO,
        &SEND_TEN_THEN_HANG,
        &DRAIN_PIPE,
        &READ_NOTHING,
        &DRAIN_PIPE_TO_EOF,
        &SEND_N_THEN_CLOSE,
    ]);
}

/// This machine's kernel has io_uring's futex wait (Linux 6.7+, io_uring
/// not disabled): the async tests below then measure the real mechanism,
/// not the millisecond-polling fallback.
#[test]
fn this_machine_sleeps_in_io_uring_futex_waits() {
    let _dog = Watchdog::new(Duration::from_secs(20), "io_uring probe");
    let q = AsyncQueue::new(Queue::<u64>::new(0).unwrap());
    runtime().block_on(async {
        // One wait that sleeps and times out: the kernel accepted it.
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)).await,
            Err(GetTimeoutError::Timeout)
        ));
    });
    assert!(
        sleeps_without_polling(),
        "io_uring futex waits are unavailable here: async waits poll"
    );
}

#[test]
fn sync_producer_process_to_tokio_consumer() {
    let _dog = Watchdog::new(Duration::from_secs(60), "sync producer to tokio consumer");
    const N: u64 = 20_000;
    let q = Queue::<u64>::new(0).unwrap();
    let child = spawn_child(CHILD_TEST, &SYNC_PRODUCER, (&q, N, 2_000));
    let q = AsyncQueue::new(q);
    runtime().block_on(async {
        for i in 0..N {
            let item = tokio::time::timeout(Duration::from_secs(20), q.get())
                .await
                .expect("the producer's next item")
                .unwrap();
            assert_eq!(item, i, "one producer: FIFO");
        }
    });
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

#[test]
fn tokio_producer_to_sync_consumer_process() {
    let _dog = Watchdog::new(Duration::from_secs(60), "tokio producer to sync consumer");
    const N: u64 = 20_000;
    // Room for 8: the producer awaits room whenever the consumer pauses.
    let q = Queue::<u64>::new(8).unwrap();
    let child = spawn_child(CHILD_TEST, &SYNC_CONSUMER, (&q, N, 2_000));
    let q = AsyncQueue::new(q);
    runtime().block_on(async {
        for i in 0..N {
            tokio::time::timeout(Duration::from_secs(20), q.put(i))
                .await
                .expect("room for the next item")
                .unwrap();
        }
    });
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

#[test]
fn a_thousand_idle_async_receivers_use_no_threads_and_no_cpu() {
    let _dog = Watchdog::new(Duration::from_secs(60), "idle receivers");
    let q = Queue::<u64>::new(0).unwrap();
    let child = spawn_child(CHILD_TEST, &IDLE_RECEIVERS, (&q,));
    assert!(wait_child(child, Duration::from_secs(50)).success());
}

/// Four tasks get with short timeouts that keep dropping pending gets
/// while a producer process puts: every item arrives exactly once.
#[test]
fn dropped_gets_lose_no_message() {
    let _dog = Watchdog::new(Duration::from_secs(60), "dropped gets");
    const N: u64 = 20_000;
    let q = Queue::<u64>::new(0).unwrap();
    let child = spawn_child(CHILD_TEST, &SYNC_PRODUCER, (&q, N, 500));
    let q = AsyncQueue::new(q);
    let got = Arc::new(Mutex::new(Vec::new()));
    let dropped = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let tasks: Vec<_> = (0..4u64)
                .map(|t| {
                    let (q, got) = (q.clone(), got.clone());
                    tokio::spawn(async move {
                        let mut dropped = 0u64;
                        let mut idle = 0;
                        let mut round = t;
                        // Until 2 s pass with nothing to get.
                        while idle < 2_000 {
                            round += 1;
                            // 50 µs to 1 ms: many gets are dropped while asleep.
                            let limit = Duration::from_micros(50 + (round * 7_919) % 950);
                            match tokio::time::timeout(limit, q.get()).await {
                                Ok(item) => {
                                    got.lock().unwrap().push(item.unwrap());
                                    idle = 0;
                                }
                                Err(_) => {
                                    dropped += 1;
                                    idle += limit.as_micros().max(1000) / 1000;
                                }
                            }
                        }
                        dropped
                    })
                })
                .collect();
            let mut dropped = 0;
            for task in tasks {
                dropped += task.await.unwrap();
            }
            dropped
        });
    assert!(wait_child(child, Duration::from_secs(20)).success());
    let mut got = Arc::try_unwrap(got).unwrap().into_inner().unwrap();
    got.sort_unstable();
    assert_eq!(got.len() as u64, N, "each item once");
    assert!(got.iter().copied().eq(0..N), "each item once");
    assert!(dropped > 100, "only {dropped} gets were dropped");
}

/// Async on both ends, in one process, with room for one item: each side
/// keeps waking the other.
#[test]
fn async_to_async_with_room_for_one() {
    let _dog = Watchdog::new(Duration::from_secs(60), "async to async");
    const N: u64 = 10_000;
    let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
    runtime().block_on(async {
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                for i in 0..N {
                    assert_eq!(q.get().await.unwrap(), i);
                }
            })
        };
        for i in 0..N {
            q.put(i).await.unwrap();
        }
        consumer.await.unwrap();
    });
}

/// Ping-pong pairs whose two ends sleep in different runtimes of one
/// process (a multi-thread runtime, two current-thread ones, a plain
/// thread), every hand-off to a sleeper: a sleeping future is woken by
/// its runtime's driver task or, the latest sleeper of a runtime, by the
/// eventfd directly; no wake may be lost on either path while the latest
/// sleeper changes under it. The slice is a minute, so a lost wake is not
/// rescued by the liveness re-check: a get times out instead.
#[test]
fn sleepers_in_many_runtimes_lose_no_wake() {
    let _dog = Watchdog::new(Duration::from_secs(120), "sleepers in many runtimes");
    const ROUNDS: u64 = 300;
    const PAIRS: usize = 6;
    const LONG: Duration = Duration::from_secs(20);
    let policy = shmring::WaitPolicy::fixed(0).with_slice(60_000_000_000);
    let pairs: Vec<(AsyncQueue<u64>, AsyncQueue<u64>)> = (0..PAIRS)
        .map(|_| {
            let (ping, pong) = (Queue::<u64>::new(1).unwrap(), Queue::<u64>::new(1).unwrap());
            ping.set_wait_policy(policy);
            pong.set_wait_policy(policy);
            (AsyncQueue::new(ping), AsyncQueue::new(pong))
        })
        .collect();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The answering ends: pairs 0..3 on the multi-thread runtime, 3 and 4
    // on a current-thread runtime of their own thread, 5 a blocking thread.
    let answer = |(ping, pong): (AsyncQueue<u64>, AsyncQueue<u64>)| async move {
        for _ in 0..ROUNDS {
            let x = ping.get_timeout(LONG).await.expect("a ping (a lost wake?)");
            pong.put_timeout(x, LONG).await.expect("room for the pong");
        }
    };
    let mut answered = Vec::new();
    for pair in &pairs[..3] {
        answered.push(multi.spawn(answer(pair.clone())));
    }
    std::thread::scope(|s| {
        let side = s.spawn(|| {
            runtime().block_on(async {
                let a = tokio::spawn(answer(pairs[3].clone()));
                answer(pairs[4].clone()).await;
                a.await.unwrap();
            })
        });
        let sync = s.spawn(|| {
            let (ping, pong) = (pairs[5].0.sync(), pairs[5].1.sync());
            for _ in 0..ROUNDS {
                let x = ping.get_timeout(LONG).expect("a ping");
                pong.put_timeout(x, LONG).expect("room for the pong");
            }
        });
        // The asking ends: all on one more current-thread runtime.
        runtime().block_on(async {
            let mut asks = Vec::new();
            for (ping, pong) in pairs.clone() {
                asks.push(tokio::spawn(async move {
                    for i in 0..ROUNDS {
                        ping.put_timeout(i, LONG).await.expect("room for the ping");
                        let back = pong.get_timeout(LONG).await.expect("a pong (a lost wake?)");
                        assert_eq!(back, i);
                    }
                }));
            }
            for ask in asks {
                ask.await.unwrap();
            }
        });
        side.join().unwrap();
        sync.join().unwrap();
    });
    multi.block_on(async {
        for a in answered {
            a.await.unwrap();
        }
    });
}

#[test]
fn timeouts_give_up_on_time_and_give_the_item_back() {
    let _dog = Watchdog::new(Duration::from_secs(20), "timeouts");
    let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
    runtime().block_on(async {
        let start = tokio::time::Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(100)).await,
            Err(GetTimeoutError::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(100));
        q.put(1).await.unwrap();
        let start = tokio::time::Instant::now();
        match q.put_timeout(2, Duration::from_millis(100)).await {
            Err(shmring::queue::PutTimeoutError::Timeout(2)) => {}
            other => panic!("expected the item back on a timeout, got {other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert_eq!(q.get_timeout(Duration::ZERO).await.unwrap(), 1);
    });
}

/// A producer process SIGKILLed while a task awaits: the task gets every
/// item the producer put before it died, in order, none twice, and then
/// its timed get ends with `Timeout` (a queue's get, like Python's, does
/// not end because a producer died; the timeout is what ends it).
#[test]
fn a_producer_killed_while_a_task_awaits() {
    let _dog = Watchdog::new(Duration::from_secs(60), "producer killed");
    let q = Queue::<u64>::new(0).unwrap();
    let mut child = spawn_child(CHILD_TEST, &SYNC_PRODUCER_FOREVER, (&q,));
    let q = AsyncQueue::new(q);
    runtime().block_on(async {
        let mut next = 0;
        loop {
            match q.get_timeout(Duration::from_millis(500)).await {
                Ok(item) => {
                    assert_eq!(item, next, "in order, none lost, none twice");
                    next += 1;
                    if next == 100 {
                        child.kill().unwrap();
                    }
                }
                Err(GetTimeoutError::Timeout) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(next >= 100, "only {next} items before the end");
    });
    let _ = child.kill(); // in case the loop ended before the kill
    assert!(!child.wait().unwrap().success(), "killed");
}

/// A tokio task and a sync echo process over a duplex pipe: the task
/// awaits every send and every answer (asleep in an io_uring wait while the child works).
#[test]
fn tokio_task_and_sync_echo_process_over_a_pipe() {
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe echo");
    let (ours, theirs) = Pipe::new(true).unwrap();
    let child = spawn_child(CHILD_TEST, &ECHO, (&theirs,));
    drop(theirs);
    let mut ours = AsyncConnection::new(ours);
    runtime().block_on(async {
        for n in 0..5_000u64 {
            ours.send(&n).await.unwrap();
            assert_eq!(ours.recv::<u64>().await.unwrap(), n + 1);
        }
    });
    drop(ours); // end of file: the child returns
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

/// The writer process is SIGKILLed while a task awaits the next message:
/// the task gets what was sent, then `Eof` (the dead writer noticed by the
/// wait's liveness check, within a slice), not a wait forever.
#[test]
fn a_writer_killed_while_a_task_awaits_reads_eof() {
    let _dog = Watchdog::new(Duration::from_secs(60), "writer killed");
    let (reader, writer) = Pipe::new(false).unwrap();
    let mut child = spawn_child(CHILD_TEST, &SEND_TEN_THEN_HANG, (&writer,));
    drop(writer);
    let mut reader = AsyncConnection::new(reader);
    runtime().block_on(async {
        for i in 0..10u64 {
            assert_eq!(reader.recv::<u64>().await.unwrap(), i);
        }
        let kill = async {
            // Let the task fall asleep first.
            tokio::time::sleep(Duration::from_millis(300)).await;
            child.kill().unwrap();
        };
        let (got, ()) = tokio::join!(reader.recv::<u64>(), kill);
        assert!(matches!(got, Err(RecvError::Eof)), "{got:?}");
    });
    assert!(!child.wait().unwrap().success(), "killed");
}

/// A receive with a timeout gives up with `Timeout`, and dropped pending
/// receives take nothing.
#[test]
fn pipe_receive_timeouts_and_drops_lose_nothing() {
    let _dog = Watchdog::new(Duration::from_secs(20), "pipe timeouts");
    let (reader, mut writer) = Pipe::new(false).unwrap();
    let mut reader = AsyncConnection::new(reader);
    runtime().block_on(async {
        let start = tokio::time::Instant::now();
        assert!(matches!(
            reader.recv_timeout::<u64>(Duration::from_millis(100)).await,
            Err(shmring::pipe::RecvTimeoutError::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(100));
        for i in 0..100u64 {
            // A pending receive dropped after 0 to 1 ms (nothing was
            // sent yet, so none completes); the message sent after it
            // goes to the next receive.
            let dropped =
                tokio::time::timeout(Duration::from_micros(i * 10), reader.recv::<u64>()).await;
            assert!(dropped.is_err(), "nothing to receive yet");
            writer.send(&i).unwrap();
            assert_eq!(reader.recv::<u64>().await.unwrap(), i);
        }
    });
    assert!(matches!(
        reader.get_mut().try_recv::<u64>(),
        Err(shmring::pipe::TryRecvError::Empty)
    ));
}

/// A shutdown wakes 1,000 sleeping tasks at once: more completions than
/// the ring's completion queue holds (512), all delivered. (On Linux 6.18
/// this passes without the reaper's overflow flush too: the kernel hands
/// the kept completions over by itself; the flush is for kernels that
/// wait for an enter.)
#[test]
fn a_shutdown_wakes_a_thousand_sleeping_tasks() {
    let _dog = Watchdog::new(Duration::from_secs(60), "shutdown wakes all");
    let q = AsyncQueue::new(Queue::<u64>::new(0).unwrap());
    runtime().block_on(async {
        let tasks: Vec<_> = (0..1_000)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.get().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await; // all asleep
        q.sync().shutdown();
        for task in tasks {
            let got = task.await.unwrap();
            assert!(matches!(got, Err(GetError::ShutDown)), "{got:?}");
        }
    });
}

/// The futures can be spawned on a multi-threaded runtime.
#[test]
fn the_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let q = AsyncQueue::new(Queue::<u64>::new(0).unwrap());
    let (reader, _writer) = Pipe::new(false).unwrap();
    let mut reader = AsyncConnection::new(reader);
    send(&q.get());
    send(&q.put(1));
    send(&q.get_timeout(Duration::ZERO));
    send(&q.put_timeout(1, Duration::ZERO));
    send(&reader.recv::<u64>());
    send(&reader.send(&1u64));
}

/// A small ring (1 KiB): an async writer against a sync reader process
/// that pauses, so sends await room again and again.
fn small_pipe() -> (Connection, Connection) {
    Pipe::builder()
        .duplex(false)
        .ring_bytes(1024)
        .pair()
        .unwrap()
}

#[test]
fn tokio_writer_to_sync_reader_process_over_a_pipe() {
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe writer");
    const N: u64 = 20_000;
    let (reader, writer) = small_pipe();
    let child = spawn_child(CHILD_TEST, &DRAIN_PIPE, (&reader, N));
    drop(reader);
    let mut writer = AsyncConnection::new(writer);
    runtime().block_on(async {
        for i in 0..N {
            tokio::time::timeout(Duration::from_secs(20), writer.send(&i))
                .await
                .expect("room for the next message")
                .unwrap();
        }
    });
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

/// The reader process is SIGKILLed while a task awaits room: the send
/// ends with `BrokenPipe` (the dead reader noticed within a slice).
#[test]
fn a_reader_killed_while_a_task_awaits_room_breaks_the_pipe() {
    let _dog = Watchdog::new(Duration::from_secs(60), "reader killed");
    let (reader, writer) = small_pipe();
    let mut child = spawn_child(CHILD_TEST, &READ_NOTHING, (&reader,));
    drop(reader);
    let mut writer = AsyncConnection::new(writer);
    runtime().block_on(async {
        // Fill the ring.
        let mut i = 0u64;
        while writer
            .send_timeout(&i, Duration::from_millis(50))
            .await
            .is_ok()
        {
            i += 1;
        }
        assert!(i > 0, "the ring took nothing");
        let kill = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            child.kill().unwrap();
        };
        let (sent, ()) = tokio::join!(writer.send(&i), kill);
        assert!(matches!(sent, Err(SendError::BrokenPipe)), "{sent:?}");
    });
    assert!(!child.wait().unwrap().success(), "killed");
}

/// The stream yields every item in order, then ends at the shutdown.
#[test]
fn the_stream_yields_every_item_then_ends_at_shutdown() {
    use futures_core::Stream;
    let _dog = Watchdog::new(Duration::from_secs(20), "stream");
    let q = AsyncQueue::new(Queue::<u64>::new(0).unwrap());
    let sync = q.clone();
    let mut stream = q.into_stream();
    runtime().block_on(async {
        let producer = std::thread::spawn(move || {
            for i in 0..1_000u64 {
                sync.sync().put(i).unwrap();
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5)); // the stream sleeps
                }
            }
            sync.sync().shutdown();
        });
        let mut got = Vec::new();
        while let Some(item) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
        {
            got.push(item.unwrap());
        }
        producer.join().unwrap();
        assert_eq!(got, (0..1_000).collect::<Vec<u64>>());
    });
}

/// `send_all` of N items through a queue's sink from a tokio task; a sync
/// consumer process gets each exactly once, in order (one producer), while
/// pausing so that the sink awaits room again and again. The sink is
/// dropped as soon as `send_all` returned (it flushed): nothing is lost.
#[test]
fn a_queue_sink_sends_all_to_a_sync_consumer_process() {
    use futures_util::{stream, SinkExt};
    let _dog = Watchdog::new(Duration::from_secs(60), "queue sink");
    const N: u64 = 20_000;
    let q = Queue::<u64>::new(8).unwrap();
    let child = spawn_child(CHILD_TEST, &SYNC_CONSUMER, (&q, N, 2_000));
    let q = AsyncQueue::new(q);
    let mut sink = q.clone().into_sink();
    runtime().block_on(async {
        let mut items = stream::iter((0..N).map(Ok));
        tokio::time::timeout(Duration::from_secs(40), sink.send_all(&mut items))
            .await
            .expect("room for every item")
            .unwrap();
    });
    assert!(!sink.is_pending());
    drop(sink);
    assert!(wait_child(child, Duration::from_secs(20)).success());
    assert!(q.try_get().is_err(), "nothing more than the N items");
}

/// An item sent while the queue is full is kept by the sink; dropped
/// before a flush, it is dropped with the sink and never put. Flushed, it
/// is put once room comes.
#[test]
fn a_queue_sink_keeps_one_item_while_full_and_drops_it_unflushed() {
    use futures_util::SinkExt;
    let _dog = Watchdog::new(Duration::from_secs(20), "queue sink drop");
    let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
    runtime().block_on(async {
        let mut sink = q.clone().into_sink();
        sink.send(0).await.unwrap(); // in the queue
        sink.feed(1).await.unwrap(); // kept: no room
        assert!(sink.is_pending());
        // Pending while full, and still so after a while.
        let flush = tokio::time::timeout(Duration::from_millis(100), sink.flush()).await;
        assert!(flush.is_err(), "no room: the flush waits");
        drop(sink);
        assert_eq!(q.get().await.unwrap(), 0);
        assert!(
            matches!(
                q.get_timeout(Duration::from_millis(100)).await,
                Err(GetTimeoutError::Timeout)
            ),
            "the kept item was dropped with the sink, not put"
        );

        // Flushed, the kept item arrives once a consumer makes room.
        let mut sink = q.clone().into_sink();
        sink.send(2).await.unwrap();
        sink.feed(3).await.unwrap();
        let consumer = q.clone();
        let got = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (consumer.get().await.unwrap(), consumer.get().await.unwrap())
        });
        sink.flush().await.unwrap();
        assert!(!sink.is_pending());
        assert_eq!(got.await.unwrap(), (2, 3));
    });
}

/// A put that fails for good is reported by the next poll with its item
/// given back: a kept item when the queue is shut down, and an item sent
/// after the shutdown.
#[test]
fn a_queue_sink_reports_a_shutdown_with_the_item() {
    use futures_util::SinkExt;
    use shmring::queue::PutError;
    let _dog = Watchdog::new(Duration::from_secs(20), "queue sink shutdown");
    let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
    runtime().block_on(async {
        let mut sink = q.clone().into_sink();
        sink.send(0).await.unwrap();
        sink.feed(1).await.unwrap(); // kept
        let sync = q.clone();
        let shut = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sync.sync().shutdown();
        });
        // The flush sleeps, and the shutdown wakes it.
        assert!(matches!(sink.flush().await, Err(PutError::ShutDown(1))));
        shut.await.unwrap();
        assert!(!sink.is_pending());
        // `send` is poll_ready, start_send (the put fails: kept), flush.
        assert!(matches!(sink.send(5).await, Err(PutError::ShutDown(5))));
    });
}

/// `send_all` through a pipe's sink to a sync reader process (a 1 KiB
/// ring, so the sink awaits room again and again); the sink dropped after
/// `send_all` returned: the reader gets every message in order, then end
/// of file.
#[test]
fn a_pipe_sink_sends_all_to_a_sync_reader_process_then_eof() {
    use futures_util::{stream, SinkExt};
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe sink");
    const N: u64 = 5_000;
    let (reader, writer) = small_pipe();
    let child = spawn_child(CHILD_TEST, &DRAIN_PIPE_TO_EOF, (&reader, N));
    drop(reader);
    let mut sink = AsyncConnection::new(writer).into_sink::<u64>();
    runtime().block_on(async {
        let mut items = stream::iter((0..N).map(Ok));
        tokio::time::timeout(Duration::from_secs(40), sink.send_all(&mut items))
            .await
            .expect("room for every message")
            .unwrap();
    });
    assert!(!sink.is_pending());
    drop(sink); // end of file
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

/// The reader process is SIGKILLed while the sink awaits room: the flush
/// ends with `BrokenPipe`.
#[test]
fn a_pipe_sink_whose_reader_is_killed_reports_a_broken_pipe() {
    use futures_util::SinkExt;
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe sink reader killed");
    let (reader, writer) = small_pipe();
    let mut child = spawn_child(CHILD_TEST, &READ_NOTHING, (&reader,));
    drop(reader);
    let mut sink = AsyncConnection::new(writer).into_sink::<u64>();
    runtime().block_on(async {
        let send = async {
            for i in 0.. {
                if let Err(e) = sink.send(i).await {
                    return (i, e);
                }
            }
            unreachable!()
        };
        let kill = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            child.kill().unwrap();
        };
        let ((sent, err), ()) = tokio::join!(send, kill);
        assert!(sent > 0, "some messages fit before the ring filled");
        assert!(matches!(err, SendError::BrokenPipe), "{err:?}");
    });
    assert!(!child.wait().unwrap().success(), "killed");
    assert!(sink.into_inner().is_ok(), "no send pending after the error");
}

/// Two tasks on a multi-thread runtime, each with a sink of the same
/// handle (clones share its producer ring), send at once into a queue
/// with room for 4; a sync thread gets everything: each task's items
/// exactly once, and in its own order.
#[test]
fn two_sinks_of_one_handle_keep_each_ones_order() {
    use futures_util::{stream, SinkExt};
    let _dog = Watchdog::new(Duration::from_secs(60), "two sinks");
    const N: u64 = 5_000;
    let q = AsyncQueue::new(Queue::<u64>::new(4).unwrap());
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut next = [0u64; 2];
            for _ in 0..2 * N {
                let item = q.sync().get_timeout(Duration::from_secs(20)).unwrap();
                let (task, i) = ((item >> 32) as usize, item & 0xffff_ffff);
                assert_eq!(i, next[task], "task {task}: in order, none lost or twice");
                next[task] += 1;
            }
            assert!(q.try_get().is_err(), "nothing more");
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks = (0..2u64).map(|task| {
            let mut sink = q.clone().into_sink();
            tokio::spawn(async move {
                let mut items = stream::iter((0..N).map(|i| Ok(task << 32 | i)));
                sink.send_all(&mut items).await.unwrap();
            })
        });
        for t in tasks.collect::<Vec<_>>() {
            t.await.unwrap();
        }
    });
    consumer.join().unwrap();
}

/// A pipe end as a `Stream`: every message a sync writer process sent, in
/// order, then the end of the stream at its close.
#[test]
fn a_pipe_stream_yields_every_message_then_ends_at_eof() {
    use futures_util::StreamExt;
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe stream");
    let (reader, writer) = Pipe::new(false).unwrap();
    let child = spawn_child(CHILD_TEST, &SEND_N_THEN_CLOSE, (&writer, 5_000u64));
    drop(writer);
    let got: Vec<u64> = runtime().block_on(async {
        let stream = AsyncConnection::new(reader).into_stream::<u64>();
        stream.map(|m| m.unwrap()).collect().await
    });
    assert_eq!(got, (0..5_000).collect::<Vec<_>>());
    assert!(wait_child(child, Duration::from_secs(20)).success());
}

/// A writer SIGKILLed mid-stream ends the stream (end of file) after what
/// it sent, and the connection comes back from a stream between items.
#[test]
fn a_pipe_stream_ends_when_its_writer_is_killed() {
    use futures_util::StreamExt;
    let _dog = Watchdog::new(Duration::from_secs(60), "pipe stream kill");
    let (reader, writer) = Pipe::new(false).unwrap();
    let mut child = spawn_child(CHILD_TEST, &SEND_TEN_THEN_HANG, (&writer,));
    drop(writer);
    runtime().block_on(async {
        let mut stream = AsyncConnection::new(reader).into_stream::<u64>();
        for i in 0..5u64 {
            assert_eq!(stream.next().await.unwrap().unwrap(), i);
        }
        // Between items: the connection comes back, and goes in again.
        let conn = stream.into_inner().expect("no receive pending");
        let mut stream = conn.into_stream::<u64>();
        for i in 5..10u64 {
            assert_eq!(stream.next().await.unwrap().unwrap(), i);
        }
        let kill = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            child.kill().unwrap();
        };
        let (end, ()) = tokio::join!(stream.next(), kill);
        assert!(end.is_none(), "{end:?}");
        assert!(stream.next().await.is_none(), "ended for good");
    });
    assert!(!child.wait().unwrap().success(), "killed");
}

/// A receive that can never succeed on this end (a write-only end, a
/// closed handle) is yielded once, then the stream ends: a stream that
/// yields the same error for ever spins a `filter_map(Result::ok)`.
#[test]
fn a_pipe_stream_of_an_end_that_cannot_receive_ends_after_its_error() {
    use futures_util::StreamExt;
    let (_reader, writer) = Pipe::new(false).unwrap();
    runtime().block_on(async {
        let mut stream = AsyncConnection::new(writer).into_stream::<u64>();
        let first = stream.next().await;
        assert!(
            matches!(first, Some(Err(RecvError::WriteOnly))),
            "{first:?}"
        );
        assert!(stream.next().await.is_none(), "ended");
    });
}
