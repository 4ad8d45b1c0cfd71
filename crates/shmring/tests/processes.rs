//! Rings and queues between real processes: this test binary re-executes
//! itself as producers and consumers (see `shmring_testkit`).

use shmring::core::wait::Until;
use std::time::Duration;

use shmring::core::PopError;
use shmring::mpmc::ByteQueue;
use shmring::process::{Entry, EntryResult};
use shmring::spsc::Ring;
use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, Watchdog};

const QUEUE_PRODUCERS: u32 = 4;
const CONSUMERS: u32 = 2;

/// Messages per producer; 1M by default, `SHMRING_TEST_MESSAGES` overrides
/// (read by the test, which hands the count to its children).
fn per_producer() -> u32 {
    std::env::var("SHMRING_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A message: producer id, sequence number, a checksum of both, then
/// `seq % 8` filler bytes so lengths vary (16..=23 bytes).
fn message(producer: u32, seq: u32, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&checksum(producer, seq).to_le_bytes());
    out.resize(16 + (seq % 8) as usize, 0xA5);
}

fn checksum(producer: u32, seq: u32) -> u64 {
    ((producer as u64) << 32 | seq as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF
}

/// Decodes and checks a message; panics on a torn or foreign one.
fn decode(buf: &[u8]) -> (u32, u32) {
    assert!(buf.len() >= 16, "short message {buf:?}");
    let producer = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let seq = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    let sum = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    assert_eq!(sum, checksum(producer, seq), "torn message");
    assert_eq!(buf.len(), 16 + (seq % 8) as usize, "wrong length");
    assert!(buf[16..].iter().all(|&b| b == 0xA5), "torn filler");
    (producer, seq)
}

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// Pops `n` messages of producer 0 in order, then sees the ring closed.
fn spsc_consumer((ring, n): (Ring, u32)) -> EntryResult {
    let mut rx = ring.consumer()?;
    let mut buf = Vec::new();
    for expect in 0..n {
        rx.pop(&mut buf, Until::after(Duration::from_secs(20)))?;
        assert_eq!(decode(&buf), (0, expect));
    }
    assert_eq!(
        rx.pop(&mut buf, Until::after(Duration::from_secs(20))),
        Err(PopError::Closed)
    );
    Ok(())
}
static SPSC_CONSUMER: Entry<(Ring, u32)> = shmring::entry!(spsc_consumer);

/// Pushes `n` messages as producer `id`.
fn queue_producer((queue, id, n): (ByteQueue, u32, u32)) -> EntryResult {
    let mut tx = queue.producer()?;
    let mut buf = Vec::new();
    for seq in 0..n {
        message(id, seq, &mut buf);
        tx.push(&buf, Until::after(Duration::from_secs(20)))?;
    }
    Ok(())
}
static QUEUE_PRODUCER: Entry<(ByteQueue, u32, u32)> = shmring::entry!(queue_producer);

/// Pops until the queue is closed, checking each producer's order, and
/// writes a bitmap of what it got (bit `producer * n + seq`) to `out`.
fn queue_consumer((queue, n, out): (ByteQueue, u32, String)) -> EntryResult {
    let mut rx = queue.consumer();
    let mut seen = vec![0u8; (QUEUE_PRODUCERS * n).div_ceil(8) as usize];
    let mut last = vec![None::<u32>; QUEUE_PRODUCERS as usize];
    let mut buf = Vec::new();
    loop {
        match rx.pop(&mut buf, Until::after(Duration::from_secs(30))) {
            Ok(_) => {
                let (p, seq) = decode(&buf);
                let prev = last[p as usize].replace(seq);
                assert!(
                    prev.is_none_or(|prev| seq > prev),
                    "producer {p}: {seq} after {prev:?}"
                );
                let bit = (p * n + seq) as usize;
                seen[bit / 8] |= 1 << (bit % 8);
            }
            Err(PopError::Closed) => break,
            Err(e) => return Err(format!("consumer: {e}").into()),
        }
    }
    std::fs::write(out, seen)?;
    Ok(())
}
static QUEUE_CONSUMER: Entry<(ByteQueue, u32, String)> = shmring::entry!(queue_consumer);

/// Pushes 100 messages, then sleeps until killed.
fn spsc_producer_then_hang((ring,): (Ring,)) -> EntryResult {
    let mut tx = ring.producer()?;
    let mut buf = Vec::new();
    for seq in 0..100 {
        message(0, seq, &mut buf);
        tx.push(&buf, Until::after(Duration::from_secs(20)))?;
    }
    std::thread::sleep(Duration::from_secs(600)); // until killed
    Ok(())
}
static SPSC_PRODUCER_THEN_HANG: Entry<(Ring,)> = shmring::entry!(spsc_producer_then_hang);

/// Pushes as producer 7, spinning while the queue is full, until killed.
fn queue_producer_forever((queue,): (ByteQueue,)) -> EntryResult {
    let mut tx = queue.producer()?;
    let mut buf = Vec::new();
    for seq in 0.. {
        message(7, seq, &mut buf);
        while tx.try_push(&buf).is_err() {
            std::hint::spin_loop();
        }
    }
    Ok(())
}
static QUEUE_PRODUCER_FOREVER: Entry<(ByteQueue,)> = shmring::entry!(queue_producer_forever);

#[test]
fn child_entry() {
    run_child(&[
        &SPSC_CONSUMER,
        &QUEUE_PRODUCER,
        &QUEUE_CONSUMER,
        &SPSC_PRODUCER_THEN_HANG,
        &QUEUE_PRODUCER_FOREVER,
    ]);
}

#[test]
fn spsc_ring_between_two_processes_keeps_order() {
    let _dog = Watchdog::new(Duration::from_secs(120), "spsc between processes");
    let name = unique_name("spsc-procs");
    let ring = Ring::builder()
        .ring_bytes(1 << 16)
        .max_message(64)
        .create(&name)
        .unwrap();
    let child = spawn_child(CHILD_TEST, &SPSC_CONSUMER, (&ring, per_producer()));
    let mut tx = ring.producer().unwrap();
    let mut buf = Vec::new();
    for seq in 0..per_producer() {
        message(0, seq, &mut buf);
        tx.push(&buf, Until::after(Duration::from_secs(20)))
            .unwrap();
    }
    tx.close();
    assert!(wait_child(child, Duration::from_secs(100)).success());
}

#[test]
fn mpmc_four_producer_processes_two_consumer_processes_exactly_once() {
    let _dog = Watchdog::new(Duration::from_secs(240), "mpmc between processes");
    let name = unique_name("mpmc-procs");
    let queue = ByteQueue::builder()
        .producers(8)
        .ring_bytes(1 << 16)
        .max_message(64)
        .maxsize(0)
        .create(&name)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("shmring-mpmc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let outs: Vec<_> = (0..CONSUMERS)
        .map(|i| dir.join(format!("consumer-{i}")))
        .collect();
    let consumers: Vec<_> = outs
        .iter()
        .map(|out| {
            let args = (&queue, per_producer(), out.display().to_string());
            spawn_child(CHILD_TEST, &QUEUE_CONSUMER, args)
        })
        .collect();
    let producers: Vec<_> = (0..QUEUE_PRODUCERS)
        .map(|id| spawn_child(CHILD_TEST, &QUEUE_PRODUCER, (&queue, id, per_producer())))
        .collect();
    for p in producers {
        assert!(
            wait_child(p, Duration::from_secs(200)).success(),
            "a producer failed"
        );
    }
    queue.close();
    for c in consumers {
        assert!(
            wait_child(c, Duration::from_secs(60)).success(),
            "a consumer failed"
        );
    }
    let n = per_producer();
    let maps: Vec<Vec<u8>> = outs.iter().map(|o| std::fs::read(o).unwrap()).collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let total_bits = (QUEUE_PRODUCERS * n) as usize;
    let mut delivered = 0usize;
    assert_eq!(maps[0].len(), maps[1].len());
    for (byte, (a, b)) in maps[0].iter().zip(&maps[1]).enumerate() {
        assert_eq!(a & b, 0, "a message was delivered twice (byte {byte})");
        delivered += (a | b).count_ones() as usize;
    }
    assert_eq!(delivered, total_bits, "every message exactly once");
    assert!(queue.is_empty());
}

#[test]
fn spsc_consumer_sees_closed_when_producer_process_dies() {
    let _dog = Watchdog::new(Duration::from_secs(60), "spsc producer death");
    let name = unique_name("spsc-death");
    let ring = Ring::builder()
        .ring_bytes(1 << 14)
        .max_message(64)
        .create(&name)
        .unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut child = spawn_child(CHILD_TEST, &SPSC_PRODUCER_THEN_HANG, (&ring,));
    let mut buf = Vec::new();
    for expect in 0..100 {
        rx.pop(&mut buf, Until::after(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(decode(&buf), (0, expect));
    }
    // SIGKILL, and do not reap yet: the producer is a zombie while we wait,
    // which `kill(pid, 0)` would still call alive.
    child.kill().unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        rx.pop(&mut buf, Until::after(Duration::from_secs(20))),
        Err(PopError::Closed)
    );
    // The liveness check runs once per 100 ms sleep slice: Closed comes
    // after at least part of one slice, not after the 20 s timeout.
    assert!(started.elapsed() < Duration::from_secs(20));
    child.wait().unwrap();
}

#[test]
fn mpmc_producer_killed_mid_stream_leaves_nothing_stuck() {
    let _dog = Watchdog::new(Duration::from_secs(60), "mpmc producer death");
    let name = unique_name("mpmc-death");
    // One producer ring only: the next producer must take over the dead one's.
    let queue = ByteQueue::builder()
        .producers(1)
        .ring_bytes(1 << 12)
        .max_message(64)
        .maxsize(0)
        .create(&name)
        .unwrap();
    let mut rx = queue.consumer();
    let mut child = spawn_child(CHILD_TEST, &QUEUE_PRODUCER_FOREVER, (&queue,));
    let mut buf = Vec::new();
    let mut next = 0u32;
    while next < 20_000 {
        rx.pop(&mut buf, Until::after(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(decode(&buf), (7, next));
        next += 1;
    }
    child.kill().unwrap(); // at whatever instruction it was
    child.wait().unwrap();
    // Whatever it published is delivered, in order, each once, untorn.
    loop {
        match rx.try_pop(&mut buf) {
            Ok(_) => {
                assert_eq!(decode(&buf), (7, next));
                next += 1;
            }
            Err(PopError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // The ring is taken over, and works.
    let mut tx = queue
        .producer()
        .expect("the dead producer's ring is reclaimed");
    message(8, 0, &mut buf);
    tx.push(&buf, Until::after(Duration::from_secs(5))).unwrap();
    rx.pop(&mut buf, Until::after(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(decode(&buf), (8, 0));
}
