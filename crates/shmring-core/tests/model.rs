//! proptest: random operation sequences against a `VecDeque` model, on
//! rings that may start just before their position words wrap, with hostile
//! position words stored between operations (after which any answer but a
//! panic, or a payload longer than the largest record, is fine).
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::QueueConfig;
use shmring_core::ring::{COUNT_BITS, POSITION_BITS, POSITION_MASK};
use shmring_core::{PopError, PushError, RingConfig};

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    PushMany(Vec<usize>),
    Pop,
    PopMany(usize),
    Reserve(usize, usize),
    /// Fresh producer and consumer handles (a new process taking over).
    Reattach,
    /// A hostile peer stores into the tail (`true`) or head word.
    Scribble(bool, Hostile),
}

/// What a hostile peer stores into a position word.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Any value.
    Any(u64),
    /// `u64::MAX` less a little: where unchecked `+` overflowed.
    NearMax(u16),
    /// The same count, a position a little before the 2^38 wrap.
    NearWrap(u16),
    /// The word as it is, with its count moved.
    Count(i16),
    /// The word as it is, with its position moved (in words).
    Position(i16),
}

impl Hostile {
    fn apply(self, word: &AtomicU64) {
        // ORDERING: Relaxed — a scribble between two operations of this
        // same thread.
        let current = word.load(Ordering::Relaxed);
        let value = match self {
            Hostile::Any(v) => v,
            Hostile::NearMax(d) => u64::MAX - u64::from(d),
            Hostile::NearWrap(d) => (current & !POSITION_MASK) | (POSITION_MASK - u64::from(d)),
            Hostile::Count(d) => current.wrapping_add((i64::from(d) as u64) << POSITION_BITS),
            Hostile::Position(d) => current.wrapping_add(i64::from(d) as u64),
        };
        // ORDERING: Relaxed — as above.
        word.store(value, Ordering::Relaxed);
    }
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        any::<u64>().prop_map(Hostile::Any),
        any::<u16>().prop_map(Hostile::NearMax),
        any::<u16>().prop_map(Hostile::NearWrap),
        any::<i16>().prop_map(Hostile::Count),
        any::<i16>().prop_map(Hostile::Position),
    ]
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0..=max).prop_map(Op::Push),
        10 => prop::collection::vec(0..=max, 0..6).prop_map(Op::PushMany),
        40 => Just(Op::Pop),
        10 => (0usize..6).prop_map(Op::PopMany),
        10 => (0..=max, 0..=max).prop_map(|(a, b)| Op::Reserve(a.max(b), a.min(b))),
        2 => Just(Op::Reattach),
        1 => (any::<bool>(), hostile()).prop_map(|(t, h)| Op::Scribble(t, h)),
    ]
}

/// Where a ring's head and tail words start: at 0, or a little before the
/// position wrap, the count wrap, or both.
fn start_word() -> impl Strategy<Value = u64> {
    let near = |bits: u32, before: u64| (1u64 << bits) - before;
    (0u8..4, 1u64..600).prop_map(move |(kind, before)| match kind {
        0 => 0,
        1 => near(POSITION_BITS, before) | (7 << POSITION_BITS),
        2 => (near(COUNT_BITS, before) << POSITION_BITS) | 5,
        _ => (near(COUNT_BITS, before) << POSITION_BITS) | near(POSITION_BITS, before),
    })
}

fn payload(tag: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 31 + i) as u8).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn spsc_matches_vecdeque(
        cap_shift in 6u32..10,
        start in start_word(),
        ops in prop::collection::vec(op(72), 1..300),
    ) {
        let capacity = 1u64 << cap_shift;
        let max_record = 72.min(capacity - 8);
        let ring = heap::ring(&RingConfig { capacity, max_record }).unwrap();
        let (tail_word, head_word) = ring.position_words();
        tail_word.store(start, Ordering::Relaxed);
        head_word.store(start, Ordering::Relaxed);
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w.clone()).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut tag = 0u32;
        let mut buf = Vec::new();
        let mut trusted = true;
        for op in ops {
            if let Op::Reattach = op {
                // Refused only when the words are inconsistent.
                match (ring.producer(w.clone()), ring.consumer(w.clone())) {
                    (Ok(fresh_p), Ok(fresh_c)) => (p, c) = (fresh_p, fresh_c),
                    (fresh_p, fresh_c) => {
                        prop_assert!(!trusted, "{:?} {:?}", fresh_p.err(), fresh_c.err());
                    }
                }
                continue;
            }
            if !trusted {
                // After a scribble: answers of any kind, never a panic, and
                // never a payload longer than the largest record.
                untrusted_spsc_op(op, &mut p, &mut c, &mut buf, max_record as usize);
                let _ = (ring.len(), ring.is_empty(), ring.is_full(), ring.free_bytes());
                continue;
            }
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
                Op::Scribble(tail, hostile) => {
                    hostile.apply(if tail { tail_word } else { head_word });
                    trusted = false;
                    continue;
                }
                Op::Reattach => unreachable!("handled above"),
            }
            prop_assert_eq!(ring.len(), model.len() as u64);
            prop_assert_eq!(ring.is_empty(), model.is_empty());
        }
        if !trusted {
            return Ok(());
        }
        // Drain: everything the model holds comes out, in order.
        while let Some(m) = model.pop_front() {
            prop_assert_eq!(c.try_pop(&mut buf), Ok(m.len()));
            prop_assert_eq!(&buf, &m);
        }
        prop_assert_eq!(c.try_pop(&mut buf), Err(PopError::Empty));
    }

    #[test]
    fn mpmc_matches_per_producer_vecdeques(
        start in start_word(),
        ops in prop::collection::vec((0usize..3, any::<bool>(), 0usize..40), 1..300),
        scribble in prop::option::of((0usize..300, 0usize..3, any::<bool>(), hostile())),
    ) {
        let q = heap::queue(&QueueConfig { rings: 3, ring: RingConfig { capacity: 256, max_record: 40 }, max_len: 0 }).unwrap();
        for i in 0..3 {
            let (tail, head) = q.position_words(i);
            tail.store(start, Ordering::Relaxed);
            head.store(start, Ordering::Relaxed);
        }
        let mut trusted = true;
        let w = ThreadWaiter::default();
        let mut producers: Vec<_> = (1..=3).map(|t| q.claim_producer(t, w.clone(), &mut |_| false).unwrap()).collect();
        let mut consumers = [q.consumer(w.clone()), q.consumer(w)];
        let mut models: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); 3];
        let mut tag = 0u32;
        let mut buf = Vec::new();
        for (step, (who, push, len)) in ops.into_iter().enumerate() {
            if let Some((at, ring, tail, hostile)) = scribble {
                if at == step {
                    let (t, h) = q.position_words(ring);
                    hostile.apply(if tail { t } else { h });
                    trusted = false;
                }
            }
            if !trusted {
                // After a scribble: any answer but a panic or an overlong
                // payload.
                if push {
                    let _ = producers[who].try_push(&payload(0, len));
                } else if consumers[who % 2].try_pop(&mut buf).is_ok() {
                    prop_assert!(buf.len() <= 40);
                }
                let _ = (q.len(), q.checked_len(), q.is_empty());
                continue;
            }
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

/// One operation on a scribbled ring: whatever it answers is fine, short of
/// a panic or a payload longer than `max`.
fn untrusted_spsc_op(
    op: Op,
    p: &mut shmring_core::spsc::Producer<ThreadWaiter>,
    c: &mut shmring_core::spsc::Consumer<ThreadWaiter>,
    buf: &mut Vec<u8>,
    max: usize,
) {
    match op {
        Op::Push(len) => {
            let _ = p.try_push(&payload(1, len));
        }
        Op::PushMany(lens) => {
            let msgs: Vec<Vec<u8>> = lens.iter().map(|&l| payload(2, l)).collect();
            let _ = p.try_push_many(msgs.iter().map(Vec::as_slice));
        }
        Op::Pop => {
            if c.try_pop(buf).is_ok() {
                assert!(buf.len() <= max);
            }
        }
        Op::PopMany(n) => {
            let _ = c.try_pop_many(n, |m| assert!(m.len() <= max));
        }
        Op::Reserve(want, keep) => {
            let _ = p.reserve(want).map(|g| g.commit(keep));
        }
        Op::Reattach | Op::Scribble(..) => {}
    }
}
