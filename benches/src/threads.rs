//! In-process references: the same round trip and stream as
//! `shmring_measure`, between two pinned threads, through rtrb (a byte ring:
//! any payload) and crossbeam's `ArrayQueue` (`u64` slots: 8-byte payloads
//! only). Same buffer budget: 1 MiB per direction.

use std::hint::spin_loop;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use shmring_measure::{Latency, Recorder, Throughput};

/// Bytes of buffer per direction, as in the cross-process measurements.
const RING_BYTES: usize = 1 << 20;

/// One thread's end of a bidirectional channel of fixed-size messages.
pub trait End: Send {
    /// Sends one message (spins while full).
    fn send(&mut self, msg: &[u8]);
    /// Receives one message of `buf.len()` bytes (spins while empty).
    fn recv(&mut self, buf: &mut [u8]);
}

/// An rtrb `RingBuffer<u8>` per direction.
pub struct Rtrb {
    tx: rtrb::Producer<u8>,
    rx: rtrb::Consumer<u8>,
}

impl Rtrb {
    /// Two connected ends.
    pub fn pair(payload: usize) -> (Rtrb, Rtrb) {
        let bytes = RING_BYTES.max(2 * payload);
        let (a_tx, b_rx) = rtrb::RingBuffer::new(bytes);
        let (b_tx, a_rx) = rtrb::RingBuffer::new(bytes);
        (Rtrb { tx: a_tx, rx: a_rx }, Rtrb { tx: b_tx, rx: b_rx })
    }
}

impl End for Rtrb {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        loop {
            if let Ok(mut chunk) = self.tx.write_chunk_uninit(msg.len()) {
                let (first, second) = chunk.as_mut_slices();
                let (head, tail) = msg.split_at(first.len());
                // `first` + `second` hold exactly msg.len() slots.
                // SAFETY: writable slots, `u8` and `MaybeUninit<u8>` share a
                // layout, and `msg` is a separate buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        head.as_ptr(),
                        first.as_mut_ptr().cast(),
                        head.len(),
                    );
                    std::ptr::copy_nonoverlapping(
                        tail.as_ptr(),
                        second.as_mut_ptr().cast(),
                        tail.len(),
                    );
                }
                // SAFETY: every slot of the chunk was initialised just above.
                unsafe { chunk.commit_all() };
                return;
            }
            spin_loop();
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) {
        loop {
            if let Ok(chunk) = self.rx.read_chunk(buf.len()) {
                let (first, second) = chunk.as_slices();
                buf[..first.len()].copy_from_slice(first);
                buf[first.len()..].copy_from_slice(second);
                chunk.commit_all();
                return;
            }
            spin_loop();
        }
    }
}

/// A crossbeam `ArrayQueue<u64>` per direction (8-byte messages).
pub struct Crossbeam {
    tx: std::sync::Arc<ArrayQueue<u64>>,
    rx: std::sync::Arc<ArrayQueue<u64>>,
}

impl Crossbeam {
    /// Two connected ends.
    pub fn pair() -> (Crossbeam, Crossbeam) {
        let a = std::sync::Arc::new(ArrayQueue::new(RING_BYTES / 8));
        let b = std::sync::Arc::new(ArrayQueue::new(RING_BYTES / 8));
        (
            Crossbeam {
                tx: a.clone(),
                rx: b.clone(),
            },
            Crossbeam { tx: b, rx: a },
        )
    }
}

impl End for Crossbeam {
    #[inline]
    fn send(&mut self, msg: &[u8]) {
        let mut word = [0u8; 8];
        word[..msg.len().min(8)].copy_from_slice(&msg[..msg.len().min(8)]);
        let mut value = u64::from_le_bytes(word);
        while let Err(v) = self.tx.push(value) {
            value = v;
            spin_loop();
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) {
        loop {
            if let Some(v) = self.rx.pop() {
                let n = buf.len().min(8);
                buf[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                return;
            }
            spin_loop();
        }
    }
}

/// Pins the calling thread to the `index`-th allowed CPU (when there are
/// two or more).
fn pin_thread(index: usize) {
    // SAFETY: cpu_set_t is plain data (zeroed is the empty set); the calls
    // read and write only `set`, with indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        if cpus.len() < 2 {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[index % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

fn stamp(msg: &mut [u8], i: u64) {
    if let Some(head) = msg.get_mut(..8) {
        head.copy_from_slice(&i.to_le_bytes());
    }
}

fn check(msg: &[u8], i: u64) {
    if let Some(head) = msg.get(..8) {
        assert_eq!(head, i.to_le_bytes(), "message {i} out of sequence");
    }
}

/// Round trips between two threads (the peer echoes), with the warm-up
/// rule of `shmring_measure` (a tenth, 10 to 10,000).
pub fn round_trip<E: End>(pair: (E, E), payload: usize, count: u64, pin: bool) -> Latency {
    let (mut a, mut b) = pair;
    let warmup = (count / 10).clamp(10, 10_000);
    let total = warmup + count;
    std::thread::scope(|s| {
        s.spawn(move || {
            if pin {
                pin_thread(1);
            }
            let mut buf = vec![0u8; payload];
            for i in 0..total {
                b.recv(&mut buf);
                check(&buf, i);
                b.send(&buf);
            }
        });
        let peer = s.spawn(move || {
            if pin {
                pin_thread(0);
            }
            let mut msg = vec![0u8; payload];
            let mut buf = vec![0u8; payload];
            let mut recorder = Recorder::new();
            let mut t0 = Instant::now();
            for i in 0..total {
                stamp(&mut msg, i);
                a.send(&msg);
                a.recv(&mut buf);
                let t1 = Instant::now();
                if i >= warmup {
                    recorder.record(t1.duration_since(t0).as_nanos() as u64);
                }
                t0 = t1;
                check(&buf, i);
            }
            recorder.latency()
        });
        peer.join().expect("round-trip thread panicked")
    })
}

/// A one-way stream between two threads, acknowledged at the end, with the
/// warm-up rule of `shmring_measure` (a tenth, 10 to 100,000).
pub fn stream<E: End>(pair: (E, E), payload: usize, count: u64, pin: bool) -> Throughput {
    let (mut a, mut b) = pair;
    let warmup = (count / 10).clamp(10, 100_000);
    std::thread::scope(|s| {
        s.spawn(move || {
            if pin {
                pin_thread(1);
            }
            let mut buf = vec![0u8; payload];
            for i in 0..warmup + count {
                b.recv(&mut buf);
                check(&buf, i);
                if i + 1 == warmup || i + 1 == warmup + count {
                    b.send(&buf);
                }
            }
        });
        let sender = s.spawn(move || {
            if pin {
                pin_thread(0);
            }
            let mut msg = vec![0u8; payload];
            let mut ack = vec![0u8; payload];
            for i in 0..warmup {
                stamp(&mut msg, i);
                a.send(&msg);
            }
            a.recv(&mut ack);
            let t0 = Instant::now();
            for i in warmup..warmup + count {
                stamp(&mut msg, i);
                a.send(&msg);
            }
            a.recv(&mut ack);
            t0.elapsed().as_secs_f64()
        });
        let seconds = sender.join().expect("stream thread panicked").max(1e-9);
        Throughput {
            msgs_per_s: count as f64 / seconds,
            bytes_per_s: count as f64 * payload as f64 / seconds,
            seconds,
        }
    })
}
