//! Facade overhead and Dict operations, in one thread on real segments:
//! `Queue<u64>` put+get against the raw MPMC ring's push+pop of the same
//! 8 bytes on a queue of the same shape (issue 4, target 5); what an owned
//! message adds (`Queue<Vec<u8>>` with `get` and with `get_into`, and the
//! allocation alone), the Pipe's 8-byte send and receive (issue 17: the
//! per-message costs behind its cross-process gaps); and `Dict<u64, u64>`
//! get / insert / update_with.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shmring::dict::Dict;
use shmring::pipe::Pipe;
use shmring::queue::Queue;
use shmring_benches::facade::Pair;

fn facade(c: &mut Criterion) {
    let mut pair = Pair::new();
    let mut g = c.benchmark_group("facade");
    let mut i = 0u64;
    g.bench_function("Queue<u64> put+get", |b| {
        b.iter(|| {
            i += 1;
            black_box(pair.facade_once(i))
        })
    });
    g.bench_function("Queue<u64> Sender/Receiver put+get", |b| {
        b.iter(|| {
            i += 1;
            black_box(pair.handles_once(i))
        })
    });
    g.bench_function("raw mpmc push+pop 8 B", |b| {
        b.iter(|| {
            i += 1;
            black_box(pair.raw_once(i))
        })
    });
    g.finish();
}

/// Owned 8-byte messages through a `Queue<Vec<u8>>`'s `Sender`/`Receiver`
/// (a fresh `Vec` in, one out, as a program that owns its messages does),
/// the same with `get_into` a reused buffer, the allocation and free of
/// such a `Vec` alone, and a Pipe's `try_send_bytes` +
/// `try_recv_bytes_into` of 8 bytes.
fn owned(c: &mut Criterion) {
    let msg = [7u8; 8];
    let mut g = c.benchmark_group("owned");
    let q = Queue::<Vec<u8>>::new(0).expect("queue");
    let mut tx = q.sender().expect("sender");
    let mut rx = q.receiver();
    g.bench_function("Queue<Vec<u8>> put(to_vec)+get 8 B", |b| {
        b.iter(|| {
            tx.try_put(black_box(&msg).to_vec()).expect("put");
            black_box(rx.try_get().expect("get"))
        })
    });
    let mut buf = Vec::with_capacity(64);
    g.bench_function("Queue<Vec<u8>> put(to_vec)+get_into 8 B", |b| {
        b.iter(|| {
            tx.try_put(black_box(&msg).to_vec()).expect("put");
            black_box(rx.try_get_into(&mut buf).expect("get"))
        })
    });
    g.bench_function("8 B Vec: to_vec + drop, alone", |b| {
        b.iter(|| drop(black_box(black_box(&msg).to_vec())))
    });
    let (mut a, mut z) = Pipe::new(true).expect("pipe");
    let mut out = [0u8; 64];
    g.bench_function("Pipe try_send_bytes+try_recv_bytes_into 8 B", |b| {
        b.iter(|| {
            a.try_send_bytes(black_box(&msg), 0, None).expect("send");
            black_box(z.try_recv_bytes_into(&mut out, 0).expect("recv"))
        })
    });
    g.finish();
}

fn dict(c: &mut Criterion) {
    let d: Dict<u64, u64> = Dict::new().expect("dict");
    for k in 0..512u64 {
        d.insert(&k, &k).expect("insert");
    }
    let mut g = c.benchmark_group("dict");
    let mut k = 0u64;
    g.bench_function("get (hit)", |b| {
        b.iter(|| {
            k = (k + 1) % 512;
            black_box(d.get(&k).expect("get"))
        })
    });
    g.bench_function("insert (replace)", |b| {
        b.iter(|| {
            k = (k + 1) % 512;
            black_box(d.insert(&k, &k).expect("insert"))
        })
    });
    g.bench_function("update_with (increment)", |b| {
        b.iter(|| {
            black_box(
                d.update_with(&7, |v| Some(v.unwrap_or(0) + 1))
                    .expect("update"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, facade, owned, dict);
criterion_main!(benches);
