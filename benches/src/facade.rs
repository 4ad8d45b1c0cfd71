//! Facade overhead (issue 4, target 5): `Queue<u64>` put + get against the
//! raw MPMC ring's push + pop of the same 8 bytes, in one thread, on queues
//! of the same shape (the facade's defaults); and, the same way, a Pipe's
//! `try_send_bytes` + `try_recv_bytes_into` against the raw SPSC ring it is
//! built on. Shared with the criterion bench `facades`, which measures the
//! same pairs.

use std::time::Instant;

use shmring::mpmc;
use shmring::pipe::{Connection, Pipe};
use shmring::queue::{Queue, Receiver, Sender};
use shmring::spsc;

/// A facade queue and a raw queue of the same shape, attached.
pub struct Pair {
    /// `Queue<u64>` with the default options.
    pub facade: Queue<u64>,
    /// The raw producer.
    pub producer: mpmc::Producer,
    /// The raw consumer.
    pub consumer: mpmc::Consumer,
    /// The raw consumer's buffer.
    pub buf: Vec<u8>,
    /// A `Sender` of a second facade queue of the same shape.
    pub sender: Sender<u64>,
    /// Its `Receiver`.
    pub receiver: Receiver<u64>,
    /// The two ends of a one-way Pipe (default configuration).
    pub pipe: (Connection, Connection),
    /// The raw SPSC producer of a ring of the Pipe's shape.
    pub spsc_producer: spsc::Producer,
    /// Its consumer.
    pub spsc_consumer: spsc::Consumer,
    _handles_queue: Queue<u64>,
    _raw: mpmc::ByteQueue,
    _spsc: spsc::Ring,
}

impl Pair {
    /// Creates both (anonymous segments).
    ///
    /// # Panics
    ///
    /// When a segment cannot be created.
    pub fn new() -> Pair {
        let facade = Queue::<u64>::new(0).expect("queue");
        // The engine's queue has the facade's default shape.
        let raw = mpmc::ByteQueue::new().expect("raw queue");
        let handles_queue = Queue::<u64>::new(0).expect("queue");
        let (reader, writer) = Pipe::new(false).expect("pipe");
        // A pipe's default shape: 256 KiB rings, fragments of a quarter.
        let ring = spsc::Ring::builder()
            .ring_bytes(256 << 10)
            .max_message(64 << 10)
            .anonymous()
            .expect("spsc ring");
        Pair {
            pipe: (writer, reader),
            spsc_producer: ring.producer().expect("spsc producer"),
            spsc_consumer: ring.consumer().expect("spsc consumer"),
            _spsc: ring,
            facade,
            sender: handles_queue.sender().expect("sender"),
            receiver: handles_queue.receiver(),
            _handles_queue: handles_queue,
            producer: raw.producer().expect("producer"),
            consumer: raw.consumer(),
            buf: Vec::with_capacity(64),
            _raw: raw,
        }
    }

    /// One facade put + get.
    #[inline]
    pub fn facade_once(&self, i: u64) -> u64 {
        self.facade.try_put(i).expect("put");
        self.facade.try_get().expect("get")
    }

    /// One put + get through the queue's `Sender`/`Receiver` handles.
    #[inline]
    pub fn handles_once(&mut self, i: u64) -> u64 {
        self.sender.try_put(i).expect("put");
        self.receiver.try_get().expect("get")
    }

    /// One Pipe `try_send_bytes` + `try_recv_bytes_into` of 8 bytes.
    #[inline]
    pub fn pipe_once(&mut self, i: u64) -> u64 {
        let (writer, reader) = &mut self.pipe;
        writer
            .try_send_bytes(&i.to_le_bytes(), 0, None)
            .expect("send");
        let mut word = [0u8; 8];
        let n = reader.try_recv_bytes_into(&mut word, 0).expect("recv");
        assert_eq!(n, 8);
        u64::from_le_bytes(word)
    }

    /// One raw SPSC push + pop of 8 bytes (the Pipe's ring).
    #[inline]
    pub fn spsc_once(&mut self, i: u64) -> u64 {
        self.spsc_producer.try_push(&i.to_le_bytes()).expect("push");
        self.spsc_consumer.try_pop(&mut self.buf).expect("pop");
        u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"))
    }

    /// One raw push + pop of the same 8 bytes.
    #[inline]
    pub fn raw_once(&mut self, i: u64) -> u64 {
        self.producer.try_push(&i.to_le_bytes()).expect("push");
        self.consumer.try_pop(&mut self.buf).expect("pop");
        u64::from_le_bytes(self.buf[..8].try_into().expect("8 bytes"))
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

/// Nanoseconds per put + get through the facade, through its
/// `Sender`/`Receiver` handles and through the raw ring, and per send +
/// receive through a Pipe and its raw SPSC ring, `n` of each (after `n / 10`
/// warm-up), interleaved in blocks of 10,000 so that a slow phase of the
/// machine hits all alike.
pub fn overhead(n: u64) -> Overhead {
    let mut pair = Pair::new();
    let mut sum = 0u64;
    for i in 0..n / 10 {
        sum = sum
            .wrapping_add(pair.facade_once(i))
            .wrapping_add(pair.handles_once(i))
            .wrapping_add(pair.raw_once(i))
            .wrapping_add(pair.pipe_once(i))
            .wrapping_add(pair.spsc_once(i));
    }
    let mut secs = [0f64; 5];
    let block = 10_000.min(n.max(1));
    let mut done = 0;
    while done < n {
        secs[0] += timed(block, &mut sum, |i| pair.facade_once(i));
        secs[1] += timed(block, &mut sum, |i| pair.handles_once(i));
        secs[2] += timed(block, &mut sum, |i| pair.raw_once(i));
        secs[3] += timed(block, &mut sum, |i| pair.pipe_once(i));
        secs[4] += timed(block, &mut sum, |i| pair.spsc_once(i));
        done += block;
    }
    std::hint::black_box(sum);
    let ns = |s: f64| s * 1e9 / done as f64;
    Overhead {
        facade: ns(secs[0]),
        handles: ns(secs[1]),
        raw: ns(secs[2]),
        pipe: ns(secs[3]),
        spsc: ns(secs[4]),
    }
}

/// Seconds for `block` calls of `once`, its results folded into `sum`.
/// Each caller's closure is its own copy of this loop (as each criterion
/// bench is), so no variant's loop is shaped by another's code.
#[inline(never)]
fn timed(block: u64, sum: &mut u64, mut once: impl FnMut(u64) -> u64) -> f64 {
    let t = Instant::now();
    let mut s = *sum;
    for i in 0..block {
        s = s.wrapping_add(once(i));
    }
    *sum = s;
    t.elapsed().as_secs_f64()
}

/// What [`overhead`] measured, in nanoseconds per put + get.
#[derive(Clone, Copy, Debug)]
pub struct Overhead {
    /// `Queue<u64>::try_put` + `try_get` (the `Sync` handle, a mutex per call).
    pub facade: f64,
    /// `Sender<u64>::try_put` + `Receiver<u64>::try_get`.
    pub handles: f64,
    /// The raw ring's `try_push` + `try_pop`.
    pub raw: f64,
    /// A Pipe's `try_send_bytes` + `try_recv_bytes_into`.
    pub pipe: f64,
    /// The raw SPSC ring's `try_push` + `try_pop`, shaped as the Pipe's.
    pub spsc: f64,
}
