//! In-process push/pop on real (anonymous) segments: SPSC and MPMC, one at
//! a time and batched, beside rtrb and crossbeam's `ArrayQueue`. One
//! thread does both sides, so these are the per-operation costs without a
//! cache line crossing cores (the cross-process figures are `xbench`'s).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use shmring::mpmc;
use shmring::spsc::Ring;

/// Bytes of each ring, and the largest message.
const RING_BYTES: u64 = 1 << 20;
const MAX_MESSAGE: u64 = 64 << 10;

fn spsc(c: &mut Criterion) {
    let ring = Ring::builder()
        .ring_bytes(RING_BYTES)
        .max_message(MAX_MESSAGE)
        .anonymous()
        .expect("ring");
    let mut tx = ring.producer().expect("producer");
    let mut rx = ring.consumer().expect("consumer");
    let mut buf = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("spsc");
    for size in [8usize, 1024] {
        let msg = vec![7u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("push+pop {size} B"), |b| {
            b.iter(|| {
                tx.try_push(black_box(&msg)).expect("push");
                rx.try_pop(&mut buf).expect("pop");
            })
        });
    }
    let msgs: Vec<[u8; 8]> = (0..32u64).map(u64::to_le_bytes).collect();
    g.throughput(Throughput::Elements(32));
    g.bench_function("push_many+pop_many 32 x 8 B", |b| {
        b.iter(|| {
            let n = tx
                .try_push_many(msgs.iter().map(|m| &m[..]))
                .expect("push_many");
            let mut sum = 0usize;
            let got = rx.try_pop_many(32, |m| sum += m.len()).expect("pop_many");
            assert_eq!((n, got), (32, 32));
            black_box(sum)
        })
    });
    g.bench_function("32 x (push+pop) 8 B", |b| {
        b.iter(|| {
            for m in &msgs {
                tx.try_push(m).expect("push");
                rx.try_pop(&mut buf).expect("pop");
            }
        })
    });
    g.finish();
}

fn mpmc_queue(c: &mut Criterion) {
    let queue = mpmc::ByteQueue::builder()
        .producers(16)
        .ring_bytes(RING_BYTES)
        .max_message(MAX_MESSAGE)
        .anonymous()
        .expect("queue");
    let mut tx = queue.producer().expect("producer");
    let mut rx = queue.consumer();
    let mut buf = Vec::with_capacity(1024);
    let mut g = c.benchmark_group("mpmc");
    g.throughput(Throughput::Elements(1));
    for size in [8usize, 1024] {
        let msg = vec![7u8; size];
        g.bench_function(format!("push+pop {size} B"), |b| {
            b.iter(|| {
                tx.try_push(black_box(&msg)).expect("push");
                rx.try_pop(&mut buf).expect("pop");
            })
        });
    }
    let msgs: Vec<[u8; 8]> = (0..32u64).map(u64::to_le_bytes).collect();
    g.throughput(Throughput::Elements(32));
    g.bench_function("push_many 32 x 8 B + 32 pops", |b| {
        b.iter(|| {
            let n = tx
                .try_push_many(msgs.iter().map(|m| &m[..]))
                .expect("push_many");
            for _ in 0..n {
                rx.try_pop(&mut buf).expect("pop");
            }
        })
    });
    g.finish();
}

fn references(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference");
    g.throughput(Throughput::Elements(1));
    let q = ArrayQueue::new(1 << 17);
    g.bench_function("crossbeam ArrayQueue<u64> push+pop", |b| {
        b.iter(|| {
            q.push(black_box(7u64)).expect("push");
            black_box(q.pop())
        })
    });
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(1 << 17);
    g.bench_function("rtrb RingBuffer<u64> push+pop", |b| {
        b.iter(|| {
            tx.push(black_box(7u64)).expect("push");
            black_box(rx.pop().expect("pop"))
        })
    });
    let (mut tx, mut rx) = rtrb::RingBuffer::<u8>::new(1 << 20);
    let msg = vec![7u8; 1024];
    let mut out = vec![0u8; 1024];
    g.bench_function("rtrb RingBuffer<u8> 1024 B chunk write+read", |b| {
        b.iter_batched_ref(
            || (),
            |()| {
                let mut w = tx.write_chunk(msg.len()).expect("write");
                let (a, bb) = w.as_mut_slices();
                let (ha, hb) = msg.split_at(a.len());
                a.copy_from_slice(ha);
                bb.copy_from_slice(hb);
                w.commit_all();
                let r = rx.read_chunk(out.len()).expect("read");
                let (a, bb) = r.as_slices();
                out[..a.len()].copy_from_slice(a);
                out[a.len()..].copy_from_slice(bb);
                r.commit_all();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, spsc, mpmc_queue, references);
criterion_main!(benches);
