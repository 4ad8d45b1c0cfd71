//! Facade overhead (issue 4, target 5): `Queue<u64>` put + get against the
//! raw MPMC ring's push + pop of the same 8 bytes, in one thread, on queues
//! of the same shape (the facade's defaults). Shared with the criterion
//! bench `facades`, which measures the same pair.

use std::time::Instant;

use shmring::core::RingConfig;
use shmring::mpmc::{self, QueueConfig};
use shmring::queue::{Queue, QueueOptions, Receiver, Sender};
use shmring::CreateOptions;

/// The raw ring's configuration equal to `QueueOptions::default()`.
pub fn raw_config() -> QueueConfig {
    let o = QueueOptions::default();
    QueueConfig {
        rings: o.producers,
        ring: RingConfig {
            capacity: o.ring_bytes,
            max_record: o.max_message,
        },
        max_len: o.maxsize,
    }
}

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
    _handles_queue: Queue<u64>,
    _raw: mpmc::Queue,
}

impl Pair {
    /// Creates both (anonymous segments).
    ///
    /// # Panics
    ///
    /// When a segment cannot be created.
    pub fn new() -> Pair {
        let opts = CreateOptions::default();
        let facade = Queue::<u64>::create_anonymous(QueueOptions::default(), &opts).expect("queue");
        let raw = mpmc::Queue::create_anonymous(raw_config(), &opts).expect("raw queue");
        let handles_queue =
            Queue::<u64>::create_anonymous(QueueOptions::default(), &opts).expect("queue");
        Pair {
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
/// `Sender`/`Receiver` handles and through the raw ring, `n` of each (after
/// `n / 10` warm-up), interleaved in blocks of 10,000 so that a slow phase
/// of the machine hits all alike.
pub fn overhead(n: u64) -> Overhead {
    let mut pair = Pair::new();
    let mut sum = 0u64;
    for i in 0..n / 10 {
        sum = sum
            .wrapping_add(pair.facade_once(i))
            .wrapping_add(pair.handles_once(i))
            .wrapping_add(pair.raw_once(i));
    }
    let mut secs = [0f64; 3];
    let block = 10_000.min(n.max(1));
    let mut done = 0;
    while done < n {
        for (which, total) in secs.iter_mut().enumerate() {
            let t = Instant::now();
            for i in 0..block {
                sum = sum.wrapping_add(match which {
                    0 => pair.facade_once(i),
                    1 => pair.handles_once(i),
                    _ => pair.raw_once(i),
                });
            }
            *total += t.elapsed().as_secs_f64();
        }
        done += block;
    }
    std::hint::black_box(sum);
    let ns = |s: f64| s * 1e9 / done as f64;
    Overhead {
        facade: ns(secs[0]),
        handles: ns(secs[1]),
        raw: ns(secs[2]),
    }
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
}
