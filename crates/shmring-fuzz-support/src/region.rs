//! A ring, queue or dict region built by real operations, then scribbled
//! on by a hostile peer, then read through every path: errors, never
//! panics or out-of-bounds accesses (AddressSanitizer watches the latter).

use std::ptr::NonNull;
use std::sync::Arc;

use crate::input::{length, message, Input};
use shmring_core::dict::{DictConfig, DictLayout, Table};
use shmring_core::heap::ThreadWaiter;
use shmring_core::layout::Padded;
use shmring_core::mpmc::{Queue, QueueConfig, QueueLayout};
use shmring_core::ring::RingConfig;
use shmring_core::spsc::{KeepAlive, Ring, SpscLayout};
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::wait::{Deadline, Until, WaitHistory, WaitPolicy};

type Block = Padded<[AtomicU64; 16]>;

/// How much longer than the real object an attacher may claim its region is.
const CLAIM_SLACK: usize = 128;

/// A zeroed, 128-aligned heap region standing in for a segment's object.
struct Region {
    blocks: Arc<Box<[Block]>>,
    len: usize,
}

impl Region {
    /// `len` bytes, plus [`CLAIM_SLACK`] more so that an attacher claiming a
    /// longer region (see [`claimed_len`](Self::claimed_len)) still points
    /// at memory it may read: attach's contract is that the claimed length
    /// is mapped, and a mapping is never shorter than the file.
    fn new(len: usize) -> Region {
        let blocks = (0..(len + CLAIM_SLACK).div_ceil(128)).map(|_| Padded(Default::default()));
        Region {
            blocks: Arc::new(blocks.collect()),
            len,
        }
    }

    fn base(&self) -> NonNull<u8> {
        NonNull::from(&self.blocks[..]).cast()
    }

    fn keep(&self) -> KeepAlive {
        self.blocks.clone()
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        let w = offset / 8;
        &self.blocks[w / 16].0[w % 16]
    }

    /// The hostile peer: patches of whole words, or the rest of the input
    /// poured over everything past the first `keep` bytes.
    fn scribble(&self, input: &mut Input<'_>, keep: usize) {
        if input.byte().is_multiple_of(4) {
            let bytes = input.take(self.len);
            let mut at = keep.next_multiple_of(8);
            for chunk in bytes.chunks(8).skip(at / 8) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                // ORDERING: Relaxed — single-threaded scribbling.
                self.word(at)
                    .store(u64::from_le_bytes(w), Ordering::Relaxed);
                at += 8;
            }
            return;
        }
        for _ in 0..input.byte() % 8 {
            let at = (usize::from(input.u16()) % self.len) & !7;
            let value = match input.byte() % 4 {
                0 => u64::from(input.byte()),
                // ORDERING: Relaxed — single-threaded scribbling.
                1 => self.word(at).load(Ordering::Relaxed) ^ (1 << (input.byte() % 64)),
                _ => input.u64(),
            };
            // ORDERING: Relaxed — as above.
            self.word(at).store(value, Ordering::Relaxed);
        }
    }

    /// The length a fresh attacher claims: usually right, sometimes not.
    fn claimed_len(&self, input: &mut Input<'_>) -> usize {
        match input.byte() % 16 {
            0 => self.len - 8,
            1 => self.len + CLAIM_SLACK,
            _ => self.len,
        }
    }
}

/// Builds a ring, queue or dict region from `data`, lets a hostile peer
/// scribble on it, then runs every read path (and a few writes) on handles
/// attached before and after.
///
/// # Panics
///
/// Never, unless the core mishandles hostile memory (a finding).
pub fn region_ops(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => ring_region(&mut input),
        1 => queue_region(&mut input),
        _ => dict_region(&mut input),
    }
}

fn ring_config(input: &mut Input<'_>) -> RingConfig {
    let capacity = 64u64 << (input.byte() % 5);
    let max_record = u64::from(input.u16()) % (capacity - 7);
    RingConfig {
        capacity,
        max_record,
    }
}

fn ring_region(input: &mut Input<'_>) {
    let config = ring_config(input);
    let layout = SpscLayout::new(&config).expect("valid config");
    let region = Region::new(layout.total);
    // SAFETY: zeroed, 128-aligned, `total` bytes, not shared yet.
    unsafe { Ring::init_in_place(region.base(), region.len, &config) }.expect("fits");
    // SAFETY: valid while `keep` (the region) lives; this thread is the only
    // other party, and it writes only atomically.
    let ring = unsafe { Ring::attach_in_place(region.base(), region.len, region.keep()) }
        .expect("fresh ring");
    let waiter = ThreadWaiter::default();
    let mut producer = ring.producer(waiter.clone()).expect("fresh");
    let mut consumer = ring.consumer(waiter.clone()).expect("fresh");
    let mut seq = 0;
    let mut buf = Vec::new();
    for _ in 0..input.byte() % 16 {
        if input.byte().is_multiple_of(3) {
            let _ = consumer.try_pop(&mut buf);
        } else {
            let _ = producer.try_push(&message(&mut seq, length(input, config.max_record)));
        }
    }
    region.scribble(input, 0);
    let len = region.claimed_len(input);
    let rounds = config.capacity as usize / 8 + 4;
    read_ring(&ring, &mut producer, &mut consumer, rounds);
    // SAFETY: as above; `len` bytes are allocated (slack included). A `len`
    // the header does not describe must be refused; one it does describe
    // (the hostile peer rewrote the config to match) is a consistent ring.
    if let Ok(fresh) = unsafe { Ring::attach_in_place(region.base(), len, region.keep()) } {
        let described = SpscLayout::new(&fresh.config()).map(|l| l.total);
        assert_eq!(
            described,
            Ok(len),
            "attach accepted a length its header does not describe"
        );
        if let (Ok(mut p), Ok(mut c)) = (fresh.producer(waiter.clone()), fresh.consumer(waiter)) {
            read_ring(&fresh, &mut p, &mut c, rounds);
        }
    }
}

fn read_ring(
    ring: &Ring,
    producer: &mut shmring_core::spsc::Producer<ThreadWaiter>,
    consumer: &mut shmring_core::spsc::Consumer<ThreadWaiter>,
    rounds: usize,
) {
    let _ = (
        ring.len(),
        ring.is_empty(),
        ring.is_full(),
        ring.free_bytes(),
    );
    let mut buf = Vec::new();
    for _ in 0..rounds {
        if consumer.try_pop(&mut buf).is_err() {
            break;
        }
    }
    if let Ok(grant) = consumer.read() {
        let mut copy = vec![0; grant.len()];
        grant.copy_to_slice(&mut copy);
        assert_eq!(copy.len(), grant.to_vec().len());
        let _ = (grant.mark(), grant.continues(), grant.more());
    }
    let _ = consumer.try_pop_many(rounds, |p| drop(p.to_vec()));
    // Asked whether the producer is gone: yes.
    consumer.set_role(|| true);
    let _ = consumer.pop(&mut buf, Until::At(Deadline(0)));
    let _ = consumer.wait_readable(Until::At(Deadline(0)));
    let _ = (producer.free_bytes(), producer.space_needed([0, 8, 20]));
    for len in [0, 8, 20] {
        let _ = producer.try_push(&vec![7; len]);
    }
    if let Ok(mut grant) = producer.reserve(8) {
        let n = grant.len().min(8);
        grant.write_at(0, &[1; 8][..n]);
        grant.commit(n);
    }
    let _ = producer.try_push_many([&[1u8][..], &[2; 9][..]]);
    producer.set_role(|| true);
    let _ = producer.push(&[3; 4], Until::At(Deadline(0)));
    for _ in 0..rounds {
        if consumer.try_pop(&mut buf).is_err() {
            break;
        }
    }
    let _ = (
        ring.len(),
        ring.is_empty(),
        ring.is_full(),
        ring.free_bytes(),
    );
}

fn queue_region(input: &mut Input<'_>) {
    let config = QueueConfig {
        rings: 1 + u64::from(input.byte() % 3),
        ring: ring_config(input),
        max_len: u64::from(input.byte() % 8),
    };
    let layout = QueueLayout::new(&config).expect("valid config");
    let region = Region::new(layout.total);
    // SAFETY: zeroed, 128-aligned, `total` bytes, not shared yet.
    unsafe { Queue::init_in_place(region.base(), region.len, &config) }.expect("fits");
    // SAFETY: valid while the region lives; only atomic accesses besides.
    let queue = unsafe { Queue::attach_in_place(region.base(), region.len, region.keep()) }
        .expect("fresh queue");
    let waiter = ThreadWaiter::default();
    let mut producers = Vec::new();
    let mut consumer = queue.consumer(waiter.clone());
    let (mut seq, mut buf) = (0, Vec::new());
    for token in 1..=config.rings {
        if let Ok(p) = queue.claim_producer(token, waiter.clone(), &mut |_| true) {
            producers.push(p);
        }
    }
    for _ in 0..input.byte() % 16 {
        let i = usize::from(input.byte()) % producers.len();
        if input.byte().is_multiple_of(3) {
            let _ = consumer.try_pop(&mut buf);
        } else {
            let msg = message(&mut seq, length(input, config.ring.max_record));
            let _ = producers[i].try_push(&msg);
        }
    }
    region.scribble(input, 0);
    let len = region.claimed_len(input);
    let rounds = (config.ring.capacity as usize / 8 + 4) * config.rings as usize;
    read_queue(&queue, &mut producers, rounds, 100);
    // SAFETY: as above (see `ring_region` for what "wrong" means).
    if let Ok(fresh) = unsafe { Queue::attach_in_place(region.base(), len, region.keep()) } {
        let described = QueueConfig {
            rings: fresh.ring_count() as u64,
            ring: fresh.ring_config(),
            max_len: fresh.max_len(),
        };
        let described = QueueLayout::new(&described).map(|l| l.total);
        assert_eq!(
            described,
            Ok(len),
            "attach accepted a length its header does not describe"
        );
        let mut fresh_producers = Vec::new();
        if let Ok(p) = fresh.claim_producer(1000, waiter, &mut |_| true) {
            fresh_producers.push(p);
        }
        read_queue(&fresh, &mut fresh_producers, rounds, 200);
    }
}

fn read_queue(
    queue: &Queue,
    producers: &mut [shmring_core::mpmc::Producer<ThreadWaiter>],
    rounds: usize,
    token: u64,
) {
    let waiter = ThreadWaiter::default();
    let _ = (
        queue.len(),
        queue.checked_len(),
        queue.is_empty(),
        queue.is_closed(),
        queue.ring_owners(),
    );
    let mut consumer = queue.consumer(waiter.clone());
    let mut buf = Vec::new();
    for _ in 0..rounds {
        if consumer.try_pop(&mut buf).is_err() {
            break;
        }
    }
    let _ = consumer.pop(&mut buf, Until::At(Deadline(0)));
    for p in producers.iter_mut() {
        let _ = p.is_full();
        let _ = p.try_push(&[5; 12]);
        let _ = p.try_push_many([&[1u8][..], &[]]);
    }
    if let Ok(mut p) = queue.claim_producer(token, waiter, &mut |_| true) {
        let _ = p.try_push(&[6; 3]);
    }
    for _ in 0..rounds {
        if consumer.try_pop(&mut buf).is_err() {
            break;
        }
    }
    let _ = (queue.len(), queue.is_empty());
}

fn dict_region(input: &mut Input<'_>) {
    let config = DictConfig {
        capacity: 1 + u32::from(input.byte() % 16),
        max_key: 1 + u32::from(input.byte() % 12),
        max_value: u32::from(input.byte() % 20),
    };
    let layout = DictLayout::new(&config).expect("valid config");
    let region = Region::new(layout.total);
    // SAFETY: zeroed, 128-aligned, `total` bytes, not shared yet.
    unsafe { Table::init_in_place(region.base(), region.len, &config) }.expect("fits");
    // SAFETY: valid while the region lives; only atomic accesses besides.
    let table = unsafe { Table::attach_in_place(region.base(), region.len, region.keep()) }
        .expect("fresh table");
    for i in 0..input.byte() % 24 {
        let k = [input.byte() % 32; 3];
        let v = vec![i; usize::from(input.byte()) % (config.max_value as usize + 1)];
        if let Ok(mut g) = lock(&table, 1) {
            let _ = g.insert(&k[..config.max_key.min(3) as usize], &v, None);
            if input.byte().is_multiple_of(4) {
                let _ = g.remove(&[input.byte() % 32], None);
            }
        }
    }
    region.scribble(input, 0);
    let len = region.claimed_len(input);
    read_table(&table, input, 2);
    // SAFETY: as above (see `ring_region` for what "wrong" means).
    if let Ok(fresh) = unsafe { Table::attach_in_place(region.base(), len, region.keep()) } {
        let described = DictLayout::new(&fresh.config()).map(|l| l.total);
        assert_eq!(
            described,
            Ok(len),
            "attach accepted a length its header does not describe"
        );
        read_table(&fresh, input, 3);
    }
}

fn lock(table: &Table, token: u64) -> Result<shmring_core::dict::Locked<'_, ThreadWaiter>, ()> {
    static WAITER: std::sync::OnceLock<ThreadWaiter> = std::sync::OnceLock::new();
    let waiter = WAITER.get_or_init(ThreadWaiter::default);
    let policy = WaitPolicy::default();
    let mut alive = |t| t == token;
    table
        .lock(
            token,
            waiter,
            Until::At(Deadline(0)),
            &policy,
            &mut WaitHistory::default(),
            &mut alive,
        )
        .map_err(drop)
}

fn read_table(table: &Table, input: &mut Input<'_>, token: u64) {
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for round in 0..6u8 {
        if crate::known::DICT_TOMBSTONES_OVERFLOW {
            // `tombstones` (word 2 of the derived state at offset 256) is
            // wrong once scribbled, and a removal can wrap it: clamp it
            // before every operation.
            let base = core::ptr::from_ref(table.lock_state()).cast::<u8>();
            // SAFETY: the lock starts the table header; offset 272 is an
            // atomic word of it, alive while `table` is.
            let w = unsafe { &*base.add(256 + 16).cast::<AtomicU64>() };
            // ORDERING: Relaxed — single-threaded scribbling.
            w.fetch_and(u64::from(u32::MAX), Ordering::Relaxed);
        }
        let Ok(mut g) = lock(table, token + u64::from(round) * 10) else {
            continue;
        };
        let key = [input.byte() % 32; 3];
        let _ = (g.len(), g.is_empty(), g.recovered());
        let _ = match round {
            0 => g.get(&key[..1], &mut v).is_ok(),
            1 => g
                .for_each(|a, b| assert!(a.len() + b.len() < 1 << 25))
                .is_ok(),
            2 => g.insert(&key[..1], &[round; 4], Some(&mut v)).is_ok(),
            3 => g.remove(&key[..1], Some(&mut v)).is_ok(),
            4 => g.pop_first(&mut k, &mut v).is_ok(),
            _ => g.clear().is_ok(),
        };
        if input.byte().is_multiple_of(2) {
            // Die holding the lock: the next round recovers.
            core::mem::forget(g);
        }
    }
}
