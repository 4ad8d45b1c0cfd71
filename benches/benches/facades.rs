//! Facade overhead and Dict operations, in one thread on real segments:
//! `Queue<u64>` put+get against the raw MPMC ring's push+pop of the same
//! 8 bytes on a queue of the same shape (issue 4, target 5), and
//! `Dict<u64, u64>` get / insert / update_with.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use shmring::dict::Dict;
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

criterion_group!(benches, facade, dict);
criterion_main!(benches);
