//! proptest: random operation sequences against a `VecDeque` model.
#![cfg(not(loom))]

use std::collections::VecDeque;

use proptest::prelude::*;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::QueueConfig;
use shmring_core::{PopError, PushError, RingConfig};

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushMany(Vec<usize>),
    Pop,
    PopMany(usize),
    Reserve(usize, usize),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=max).prop_map(Op::Push),
        1 => prop::collection::vec(0..=max, 0..6).prop_map(Op::PushMany),
        4 => Just(Op::Pop),
        1 => (0usize..6).prop_map(Op::PopMany),
        1 => (0..=max, 0..=max).prop_map(|(a, b)| Op::Reserve(a.max(b), a.min(b))),
    ]
}

fn payload(tag: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 31 + i) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn spsc_matches_vecdeque(cap_shift in 6u32..10, ops in prop::collection::vec(op(72), 1..300)) {
        let capacity = 1u64 << cap_shift;
        let max_record = 72.min(capacity - 8);
        let ring = heap::ring(&RingConfig { capacity, max_record }).unwrap();
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut tag = 0u32;
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Op::Push(len) => {
                    tag += 1;
                    let m = payload(tag, len);
                    match p.try_push(&m) {
                        Ok(()) => model.push_back(m),
                        Err(PushError::Full) => {}
                        Err(PushError::TooLarge { .. }) => prop_assert!(len as u64 > max_record),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::PushMany(lens) => {
                    let msgs: Vec<Vec<u8>> = lens.iter().map(|&l| { tag += 1; payload(tag, l) }).collect();
                    match p.try_push_many(msgs.iter().map(|m| m.as_slice())) {
                        Ok(n) => model.extend(msgs.into_iter().take(n)),
                        Err(PushError::Full | PushError::TooLarge { .. }) => {}
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Pop => match c.try_pop(&mut buf) {
                    Ok(n) => {
                        let m = model.pop_front();
                        prop_assert_eq!(Some(&buf), m.as_ref());
                        prop_assert_eq!(n, buf.len());
                    }
                    Err(PopError::Empty) => prop_assert!(model.is_empty(), "empty with {} queued", model.len()),
                    Err(e) => prop_assert!(false, "{e}"),
                },
                Op::PopMany(max) => {
                    let mut got = Vec::new();
                    match c.try_pop_many(max, |m| got.push(m.to_vec())) {
                        Ok(n) => {
                            prop_assert_eq!(n, got.len());
                            for g in got {
                                prop_assert_eq!(Some(g), model.pop_front());
                            }
                        }
                        Err(PopError::Empty) => prop_assert!(model.is_empty() && max > 0),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Op::Reserve(want, keep) => {
                    tag += 1;
                    if let Ok(mut g) = p.reserve(want) {
                        let m = payload(tag, keep);
                        g[..keep].copy_from_slice(&m);
                        g.commit(keep);
                        model.push_back(m);
                    }
                }
            }
            prop_assert_eq!(ring.len(), model.len() as u64);
            prop_assert_eq!(ring.is_empty(), model.is_empty());
        }
        // Drain: everything the model holds comes out, in order.
        while let Some(m) = model.pop_front() {
            prop_assert_eq!(c.try_pop(&mut buf), Ok(m.len()));
            prop_assert_eq!(&buf, &m);
        }
        prop_assert_eq!(c.try_pop(&mut buf), Err(PopError::Empty));
    }

    #[test]
    fn mpmc_matches_per_producer_vecdeques(ops in prop::collection::vec((0usize..3, any::<bool>(), 0usize..40), 1..300)) {
        let q = heap::queue(&QueueConfig { rings: 3, ring: RingConfig { capacity: 256, max_record: 40 }, max_len: 0 }).unwrap();
        let w = ThreadWaiter::default();
        let mut producers: Vec<_> = (1..=3).map(|t| q.claim_producer(t, w.clone(), &mut |_| false).unwrap()).collect();
        let mut consumers = [q.consumer(w.clone()), q.consumer(w)];
        let mut models: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); 3];
        let mut tag = 0u32;
        let mut buf = Vec::new();
        for (who, push, len) in ops {
            if push {
                tag += 1;
                let mut m = payload(tag, len.max(1));
                m[0] = who as u8;
                match producers[who].try_push(&m) {
                    Ok(()) => models[who].push_back(m),
                    Err(PushError::Full) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            } else {
                match consumers[who % 2].try_pop(&mut buf) {
                    Ok(_) => {
                        let from = buf[0] as usize;
                        prop_assert_eq!(Some(&buf), models[from].front(), "FIFO per producer");
                        models[from].pop_front();
                    }
                    Err(PopError::Empty) => prop_assert!(models.iter().all(|m| m.is_empty())),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            prop_assert_eq!(q.len(), models.iter().map(|m| m.len() as u64).sum::<u64>());
        }
    }
}
