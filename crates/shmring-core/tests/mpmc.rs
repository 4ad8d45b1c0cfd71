//! MPMC queue checklist. Each test written as a function generic over the
//! memory runs twice: on the heap with the thread waiter (`heap::`, what
//! Miri checks) and in a memfd segment made by the engine with the futex
//! waiter (`memfd::`), the memory and waiter the engine's handles use. The
//! tests on a hand-made region (hostile pokes at known offsets) run once.
#![cfg(not(loom))]

use std::collections::HashMap;

use shmring_core::heap::ThreadWaiter;
use shmring_core::mpmc::{ClaimError, QueueConfig};
use shmring_core::wait::{Until, WaitPolicy, Waiter};
use shmring_core::{PopError, PushError, RingConfig};
use shmring_fuzz_support::memory::Memory;

shmring_fuzz_support::on_every_memory!(
    claims_rings_until_none_left_then_adopts_dead_owner,
    every_message_once_fifo_per_producer_threads,
    streams_across_the_position_and_count_wrap,
    closed_queue_rejects_and_drains,
    len_counts_across_rings,
    max_len_counts_records_over_all_rings,
    producer_blocked_on_max_len_wakes_when_any_ring_is_taken_from,
    wait_words_are_the_ones_sleepers_use,
    taking_a_padding_record_wakes_its_producer,
    peekers_and_poppers_race_each_message_taken_once_never_torn,
);

fn config(rings: u64) -> QueueConfig {
    QueueConfig {
        rings,
        ring: RingConfig {
            capacity: 1024,
            max_record: 64,
        },
        max_len: 0,
    }
}

fn claims_rings_until_none_left_then_adopts_dead_owner<M: Memory>() {
    let q = M::queue(&config(2)).unwrap();
    let w = M::waiter();
    let mut never = |_| false;
    let mut p1 = q.claim_producer(1, w.clone(), &mut never).unwrap();
    let p2 = q.claim_producer(2, w.clone(), &mut never).unwrap();
    assert!(matches!(
        q.claim_producer(3, w.clone(), &mut never),
        Err(ClaimError::NoFreeRing { rings: 2 })
    ));
    assert!(matches!(
        q.claim_producer(0, w.clone(), &mut never),
        Err(ClaimError::InvalidToken)
    ));
    p1.try_push(b"from 1").unwrap();
    // Token 1 "dies": its handle stays around, as a killed process's memory
    // would, but the liveness check now says it is dead.
    let mut p3 = q.claim_producer(3, w.clone(), &mut |t| t == 1).unwrap();
    p3.try_push(b"from 3").unwrap();
    let mut c = q.consumer(w.clone());
    let mut buf = Vec::new();
    c.try_pop(&mut buf).unwrap();
    assert_eq!(buf, b"from 1", "the dead producer's record comes first");
    c.try_pop(&mut buf).unwrap();
    assert_eq!(buf, b"from 3");
    drop(p2);
    assert_eq!(q.ring_owners(), [3, 0]);
    // The dead owner's handle no longer owns the ring: dropping it changes
    // nothing.
    drop(p1);
    assert_eq!(q.ring_owners(), [3, 0]);
}

fn every_message_once_fifo_per_producer_threads<M: Memory>() {
    const PRODUCERS: u64 = 3;
    const CONSUMERS: usize = 3;
    const N: u32 = if cfg!(miri) { 40 } else { 20_000 };
    let q = M::queue(&config(4)).unwrap();
    let w = M::waiter();
    // No spinning under Miri: each spin round costs thousands of
    // interpreted instructions, and its threads take turns anyway.
    let policy = WaitPolicy {
        spin_ns: if cfg!(miri) { 0 } else { 2_000 },
        max_spin_ns: 0,
        slice_ns: 10_000_000,
    };
    let producers: Vec<_> = (1..=PRODUCERS)
        .map(|token| {
            let mut p = q.claim_producer(token, w.clone(), &mut |_| false).unwrap();
            p.set_wait_policy(policy);
            std::thread::spawn(move || {
                for i in 0..N {
                    let mut m = [0u8; 17];
                    m[..8].copy_from_slice(&token.to_le_bytes());
                    m[8..12].copy_from_slice(&i.to_le_bytes());
                    p.push(&m[..12 + (i % 6) as usize], Until::Never).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let mut c = q.consumer(w.clone());
            c.set_wait_policy(policy);
            std::thread::spawn(move || {
                let mut seen: Vec<(u64, u32)> = Vec::new();
                let mut buf = Vec::new();
                loop {
                    match c.pop(&mut buf, Until::Never) {
                        Ok(_) => {
                            let token = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            let i = u32::from_le_bytes(buf[8..12].try_into().unwrap());
                            assert_eq!(buf.len(), 12 + (i % 6) as usize);
                            seen.push((token, i));
                        }
                        Err(PopError::Closed) => return seen,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close(&w);
    let mut last: HashMap<u64, Vec<u32>> = HashMap::new();
    for c in consumers {
        let seen = c.join().unwrap();
        // Per consumer, each producer's messages arrive in increasing order.
        let mut prev: HashMap<u64, u32> = HashMap::new();
        for (token, i) in seen {
            if let Some(&p) = prev.get(&token) {
                assert!(i > p, "producer {token}: {i} after {p}");
            }
            prev.insert(token, i);
            last.entry(token).or_default().push(i);
        }
    }
    for token in 1..=PRODUCERS {
        let mut got = last.remove(&token).unwrap_or_default();
        got.sort_unstable();
        assert_eq!(
            got,
            (0..N).collect::<Vec<_>>(),
            "producer {token}: each message exactly once"
        );
    }
}

/// A queue whose rings start a few records before both the position and
/// the count wrap, with producers and consumers on threads: each message
/// exactly once and in order per producer, `len` exact once quiescent, and
/// the words wrapped.
fn streams_across_the_position_and_count_wrap<M: Memory>() {
    use shmring_core::ring::{POSITION_BITS, POSITION_MASK};
    use std::sync::atomic::Ordering;
    const N: u32 = if cfg!(miri) { 40 } else { 10_000 };
    let mut config = config(2);
    config.ring.capacity = 256;
    let q = M::queue(&config).unwrap();
    let start = (((1u64 << 26) - 2) << POSITION_BITS) | (POSITION_MASK - 9);
    for i in 0..2 {
        let (tail, head) = q.position_words(i);
        tail.store(start, Ordering::Relaxed);
        head.store(start, Ordering::Relaxed);
    }
    let w = M::waiter();
    let policy = WaitPolicy {
        spin_ns: if cfg!(miri) { 0 } else { 2_000 },
        max_spin_ns: 0,
        slice_ns: 10_000_000,
    };
    let producers: Vec<_> = (0..2u8)
        .map(|who| {
            let mut p = q
                .claim_producer(u64::from(who) + 1, w.clone(), &mut |_| false)
                .unwrap();
            p.set_wait_policy(policy);
            std::thread::spawn(move || {
                for i in 0..N {
                    let mut m = vec![who; 5 + (i % 30) as usize];
                    m[1..5].copy_from_slice(&i.to_le_bytes());
                    p.push(&m, Until::Never).unwrap();
                }
                p
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = q.consumer(w.clone());
            c.set_wait_policy(policy);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = Vec::new();
                loop {
                    match c.pop(&mut buf, Until::Never) {
                        Ok(_) => {
                            let i = u32::from_le_bytes(buf[1..5].try_into().unwrap());
                            assert_eq!(buf.len(), 5 + (i % 30) as usize);
                            assert!(buf
                                .iter()
                                .enumerate()
                                .all(|(k, &b)| k > 0 && k < 5 || b == buf[0]));
                            seen.push((buf[0], i));
                        }
                        Err(PopError::Closed) => return seen,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let _producers: Vec<_> = producers.into_iter().map(|p| p.join().unwrap()).collect();
    q.close(&w);
    let mut all = Vec::new();
    for c in consumers {
        let seen = c.join().unwrap();
        for who in 0..2 {
            let mine: Vec<u32> = seen.iter().filter(|s| s.0 == who).map(|s| s.1).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "FIFO per producer");
        }
        all.extend(seen);
    }
    all.sort_unstable();
    let expected: Vec<(u8, u32)> = (0..2)
        .flat_map(|who| (0..N).map(move |i| (who, i)))
        .collect();
    assert_eq!(all, expected, "each message exactly once");
    assert_eq!(q.len(), 0);
    assert_eq!(q.checked_len(), Ok(0));
    for i in 0..2 {
        let (tail, head) = q.position_words(i);
        let end = tail.load(Ordering::Relaxed);
        assert_eq!(head.load(Ordering::Relaxed), end);
        assert!(end & POSITION_MASK < 1 << 20, "the position wrapped");
        assert_eq!(end >> POSITION_BITS, u64::from(N) - 2, "the count wrapped");
    }
}

/// The payload of message `i` of producer `token`: the two numbers, then
/// filler derived from both (a torn copy mixes two messages' filler or
/// lengths).
fn peek_message(token: u64, i: u32) -> Vec<u8> {
    let mut m = token.to_le_bytes().to_vec();
    m.extend_from_slice(&i.to_le_bytes());
    let fill = (token as u32).wrapping_mul(31).wrapping_add(i) as u8;
    m.resize(12 + (i % 41) as usize, fill);
    m
}

/// Checks a copy against [`peek_message`]; its `(token, i)`.
fn check_peek_message(buf: &[u8]) -> (u64, u32) {
    let token = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let i = u32::from_le_bytes(buf[8..12].try_into().unwrap());
    assert_eq!(buf, peek_message(token, i), "torn copy");
    (token, i)
}

/// Two peekers (batches of up to 16, committed in order after "handing
/// them on") and two poppers race on one queue fed by three producers,
/// across ring wraps: every message is taken exactly once (by a commit or
/// a pop), every copy a peeker made is whole, a record's token names the
/// same message in every peek of it, each peeker's committed messages come
/// in order per producer, and commits in order never say `NotYet`.
fn peekers_and_poppers_race_each_message_taken_once_never_torn<M: Memory>() {
    use shmring_core::mpmc::Commit;
    const PRODUCERS: u64 = 3;
    const N: u32 = if cfg!(miri) { 40 } else { 20_000 };
    let mut config = config(4);
    config.ring.capacity = 512;
    let q = M::queue(&config).unwrap();
    let w = M::waiter();
    let policy = WaitPolicy {
        spin_ns: if cfg!(miri) { 0 } else { 2_000 },
        max_spin_ns: 0,
        slice_ns: 10_000_000,
    };
    let producers: Vec<_> = (1..=PRODUCERS)
        .map(|token| {
            let mut p = q.claim_producer(token, w.clone(), &mut |_| false).unwrap();
            p.set_wait_policy(policy);
            std::thread::spawn(move || {
                for i in 0..N {
                    p.push(&peek_message(token, i), Until::Never).unwrap();
                }
            })
        })
        .collect();
    type Seen = (Vec<(u64, u32)>, Vec<((usize, u64), (u64, u32))>, usize);
    // The poppers start once a peeker has committed a message: otherwise a
    // scheduler (Miri's, or a loaded machine's) may let the poppers win
    // every race, and the peek path would go untested.
    let peeked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peekers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = q.consumer(w.clone());
            c.set_wait_policy(policy);
            let peeked = peeked.clone();
            std::thread::spawn(move || -> Seen {
                let (mut taken, mut copies, mut elsewhere) = (Vec::new(), Vec::new(), 0);
                let mut out = Vec::new();
                loop {
                    out.clear();
                    match c.peek(16, 4096, &mut out, Until::Never) {
                        Ok(n) => assert_eq!(n, out.len()),
                        Err(PopError::Closed) => return (taken, copies, elsewhere),
                        Err(e) => panic!("{e}"),
                    }
                    for (t, m) in &out {
                        let id = check_peek_message(m);
                        copies.push(((t.ring(), t.head_word()), id));
                    }
                    for (t, m) in &out {
                        match c.commit(t) {
                            Commit::Taken => {
                                taken.push(check_peek_message(m));
                                // ORDERING: Relaxed — a start signal for
                                // the poppers (partner: their load); no
                                // data travels with it.
                                peeked.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            Commit::TakenElsewhere => elsewhere += 1,
                            Commit::NotYet => panic!("in-order commit said NotYet"),
                        }
                    }
                }
            })
        })
        .collect();
    let poppers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = q.consumer(w.clone());
            c.set_wait_policy(policy);
            let peeked = peeked.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = Vec::new();
                // ORDERING: Relaxed — see the peekers' store.
                while !peeked.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::yield_now();
                }
                loop {
                    match c.pop(&mut buf, Until::Never) {
                        Ok(_) => seen.push(check_peek_message(&buf)),
                        Err(PopError::Closed) => return seen,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    q.close(&w);
    let mut all = Vec::new();
    let mut names: HashMap<(usize, u64), (u64, u32)> = HashMap::new();
    let mut committed = 0;
    for p in peekers {
        let (taken, copies, _elsewhere) = p.join().unwrap();
        for token in 1..=PRODUCERS {
            let mine: Vec<u32> = taken.iter().filter(|t| t.0 == token).map(|t| t.1).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "order per producer");
        }
        for (name, id) in copies {
            // Between takes, a head word names one record: the same
            // message wherever it was peeked. (The ring wraps, but the
            // position does not repeat within 2^38 words.)
            assert_eq!(*names.entry(name).or_insert(id), id, "token {name:?}");
        }
        committed += taken.len();
        all.extend(taken);
    }
    for p in poppers {
        all.extend(p.join().unwrap());
    }
    assert!(committed > 0, "the peekers took something");
    all.sort_unstable();
    let expected: Vec<(u64, u32)> = (1..=PRODUCERS)
        .flat_map(|token| (0..N).map(move |i| (token, i)))
        .collect();
    assert_eq!(all, expected, "each message taken exactly once");
    assert_eq!(q.checked_len(), Ok(0));
}

fn closed_queue_rejects_and_drains<M: Memory>() {
    let q = M::queue(&config(1)).unwrap();
    let w = M::waiter();
    let mut p = q.claim_producer(9, w.clone(), &mut |_| false).unwrap();
    p.try_push(b"a").unwrap();
    q.close(&w);
    assert_eq!(p.try_push(b"b"), Err(PushError::Closed));
    let mut c = q.consumer(w);
    let mut buf = Vec::new();
    assert_eq!(c.try_pop(&mut buf), Ok(1));
    assert_eq!(c.try_pop(&mut buf), Err(PopError::Closed));
}

fn len_counts_across_rings<M: Memory>() {
    let q = M::queue(&config(3)).unwrap();
    let w = M::waiter();
    let mut a = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    let mut b = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    assert!(q.is_empty());
    a.try_push(b"1").unwrap();
    b.try_push(b"2").unwrap();
    b.try_push(b"3").unwrap();
    assert_eq!(q.len(), 3);
    q.consumer(w.clone()).try_pop(&mut Vec::new()).unwrap();
    assert_eq!(q.len(), 2);
    assert!(!q.is_empty());
    assert!(!a.is_full());
    while a.try_push(&[0; 64]).is_ok() {}
    while a.try_push(&[]).is_ok() {}
    assert!(a.is_full() && !b.is_full());
    q.consumer(w).try_pop(&mut Vec::new()).unwrap();
    assert!(!a.is_full(), "a take from ring a makes room");
}

fn max_len_counts_records_over_all_rings<M: Memory>() {
    let mut config = config(2);
    config.max_len = 2;
    let q = M::queue(&config).unwrap();
    let w = M::waiter();
    let mut a = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    let mut b = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    a.try_push(b"1").unwrap();
    b.try_push(b"2").unwrap();
    assert_eq!(a.try_push(b"3"), Err(PushError::Full), "max_len, not bytes");
    assert_eq!(b.try_push_many([&b"3"[..], b"4"]), Err(PushError::Full));
    q.consumer(w).try_pop(&mut Vec::new()).unwrap();
    assert_eq!(b.try_push_many([&b"3"[..], b"4"]), Ok(1), "room for one");
}

fn producer_blocked_on_max_len_wakes_when_any_ring_is_taken_from<M: Memory>() {
    let mut config = config(2);
    config.max_len = 1;
    let q = M::queue(&config).unwrap();
    let w = M::waiter();
    let mut a = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    let mut b = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
    a.try_push(b"first").unwrap();
    // The sleeper's own slice is a minute: only a real wake-up ends the
    // push within the 10 s we allow (a lost wake-up fails the test).
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        b.set_wait_policy(WaitPolicy {
            spin_ns: 0,
            max_spin_ns: 0,
            slice_ns: 60_000_000_000,
        });
        done.send(b.push(b"second", Until::Never)).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut c = q.consumer(w);
    let mut buf = Vec::new();
    c.try_pop(&mut buf).unwrap(); // from ring a: must wake the producer of ring b
    let pushed = finished.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(pushed, Ok(Ok(())), "the blocked producer was not woken");
    c.try_pop(&mut buf).unwrap();
    assert_eq!(buf, b"second");
}

/// A queue laid out as in a segment, with raw access to its words (a
/// hostile peer's view).
struct QueueRegion {
    words: std::sync::Arc<Vec<shmring_core::layout::Padded<[std::sync::atomic::AtomicU64; 16]>>>,
    layout: shmring_core::mpmc::QueueLayout,
    queue: shmring_core::mpmc::Queue,
}

impl QueueRegion {
    fn new(config: &QueueConfig) -> QueueRegion {
        use shmring_core::layout::Padded;
        use shmring_core::mpmc::{Queue, QueueLayout};
        let layout = QueueLayout::new(config).unwrap();
        let words = std::sync::Arc::new(
            (0..layout.total.div_ceil(128))
                .map(|_| Padded(Default::default()))
                .collect::<Vec<_>>(),
        );
        let base = std::ptr::NonNull::from(&words[..]).cast::<u8>();
        // SAFETY: zeroed, 128-aligned, `total` bytes, private to this test.
        unsafe { Queue::init_in_place(base, layout.total, config) }.unwrap();
        // SAFETY: valid while `words` (the keep-alive) lives; atomics only.
        let queue = unsafe { Queue::attach_in_place(base, layout.total, words.clone()) }.unwrap();
        QueueRegion {
            words,
            layout,
            queue,
        }
    }

    /// Stores `value` at byte `offset` of ring `ring`'s control block
    /// (128: the producer's line, 256: the consumers' line).
    fn poke_ring(&self, ring: usize, offset: usize, value: u64) {
        let at = self.layout.rings_offset + ring * 640 + offset;
        // ORDERING: Relaxed — a hostile peer's store; the test's own calls
        // on this thread come after it.
        self.words[at / 128].0[at % 128 / 8].store(value, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every operation on a queue whose ring's head and tail words hold
/// hostile values (near 2^64, near the 2^38-word wrap, counts that disagree
/// with the positions): each answers (possibly `Corrupted`), none panics or
/// overflows. Run in debug and release builds (`cargo test --release`).
#[test]
fn hostile_positions_are_corruption_not_panics() {
    let mut words = vec![0u64, 8, u64::MAX, 1 << 40, (5 << 38) | 2];
    for base in [!7u64, (1 << 38) - 8, (1 << 38) - 1, 1 << 63] {
        for delta in [0u64, 8, 16, 40, 256, 264] {
            words.push(base.wrapping_sub(delta));
            words.push(base.wrapping_add(delta));
        }
    }
    let mut config = config(2);
    config.ring.capacity = 256;
    config.max_len = 5;
    // Every pair natively; a sample under Miri, which runs ~1000x slower.
    let step = if cfg!(miri) { 11 } else { 1 };
    let mut buf = Vec::new();
    let mut zombies = Vec::new();
    for &tail in words.iter().step_by(step) {
        for &head in words.iter().skip(step / 2).step_by(step) {
            let region = QueueRegion::new(&config);
            let q = &region.queue;
            let w = ThreadWaiter::default();
            let mut p = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
            let mut other = q.claim_producer(2, w.clone(), &mut |_| false).unwrap();
            p.try_push(&[1; 20]).unwrap();
            other.try_push(&[9; 9]).unwrap();
            region.poke_ring(0, 128, tail);
            region.poke_ring(0, 256, head);
            let _ = (q.len(), q.is_empty(), p.is_full());
            // A fresh producer takes the ring over from a dead owner (`p`,
            // which never runs its destructor), and a fresh consumer.
            let mut c = q.consumer(w.clone());
            if let Ok(mut fresh) = q.claim_producer(3, w.clone(), &mut |t| t == 1) {
                assert_eq!(fresh.ring_index(), 0);
                for _ in 0..40 {
                    let _ = fresh.try_push(&[4; 40]);
                    let _ = fresh.try_push_many([&[3u8; 3][..], &[]]);
                    let _ = c.try_pop(&mut buf);
                    assert!(buf.len() <= 64);
                }
                let _ = fresh.is_full();
            }
            // The dead owner's handle (a hostile peer now) and the consumer.
            for _ in 0..40 {
                let _ = p.try_push(&[2; 64]);
                let _ = c.try_pop(&mut buf);
            }
            // Dead: no destructor until the test ends (then it finds the
            // ring owned by another token and changes nothing).
            zombies.push(p);
            let _ = (q.len(), q.is_empty());
        }
    }
}

fn wait_words_are_the_ones_sleepers_use<M: Memory>() {
    let mut config = config(1);
    config.max_len = 1;
    let q = M::queue(&config).unwrap();
    let w = M::waiter();
    let mut p = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    p.try_push(b"fills max_len").unwrap();
    let sleepy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 60_000_000_000,
    };
    p.set_wait_policy(sleepy);
    std::thread::scope(|s| {
        let pusher = s.spawn(|| p.push(b"second", Until::Never));
        wait_for(|| q.space_word().waiters() == 1, "the producer asleep");
        assert_eq!(q.not_empty_word().waiters(), 0);
        q.consumer(w.clone()).try_pop(&mut Vec::new()).unwrap();
        assert_eq!(pusher.join().unwrap(), Ok(()));
        let mut c = q.consumer(w.clone());
        let mut buf = Vec::new();
        c.try_pop(&mut buf).unwrap();
        c.set_wait_policy(sleepy);
        let popper = s.spawn(move || c.pop(&mut buf, Until::Never));
        wait_for(|| q.not_empty_word().waiters() == 1, "the consumer asleep");
        q.close(&w);
        assert_eq!(popper.join().unwrap(), Err(PopError::Closed));
    });
}

/// Polls `done` (every millisecond, for up to 10 s: a loaded machine).
fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A producer whose record does not fit before the end of its ring pads
/// to the end and sleeps until the head passes the padding. Taking the
/// padding is that head move: it must wake the producer. (It did not: the
/// take of a padding record went on without a wake, and the producer slept
/// a whole liveness slice, here a minute, on an empty ring.)
fn taking_a_padding_record_wakes_its_producer<M: Memory>() {
    use std::sync::atomic::Ordering;
    // 64 bytes (8 words); 48-byte payloads take 7.
    let mut config = config(1);
    config.ring = RingConfig {
        capacity: 64,
        max_record: 48,
    };
    let q = M::queue(&config).unwrap();
    let w = M::waiter();
    let mut p = q.claim_producer(1, w.clone(), &mut |_| false).unwrap();
    let mut c = q.consumer(w.clone());
    let mut buf = Vec::new();
    p.try_push(b"8 bytes!").unwrap();
    assert_eq!(c.try_pop(&mut buf), Ok(8));
    let sleepy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 60_000_000_000,
    };
    p.set_wait_policy(sleepy);
    let (done, finished) = std::sync::mpsc::channel();
    // Closing the queue ends the push's sleep, also when an assertion
    // fails before the producer was woken (the scope then joins at once,
    // not a minute later).
    struct CloseOnDrop<'a, W: Waiter>(&'a shmring_core::mpmc::Queue, &'a W);
    impl<W: Waiter> Drop for CloseOnDrop<'_, W> {
        fn drop(&mut self) {
            self.0.close(self.1);
        }
    }
    std::thread::scope(|s| {
        let _close = CloseOnDrop(&q, &w);
        s.spawn(|| {
            // Pads words 2..8 (published), then sleeps for 7 free words.
            done.send(p.push(&[7; 48], Until::Never)).unwrap();
        });
        let tail = q.position_words(0).0;
        wait_for(
            || tail.load(Ordering::Relaxed) & 0xFF == 8 && q.space_word().waiters() == 1,
            "the padding published and the producer asleep",
        );
        // The only record is the padding: the take passes it and must wake
        // the producer on its way. (It finds nothing else, unless the
        // producer, registered but not yet asleep, saw the room at once and
        // pushed while this scan went on.)
        let taken = c.try_pop(&mut buf);
        assert!(matches!(taken, Err(PopError::Empty) | Ok(48)), "{taken:?}");
        let pushed = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(pushed, Ok(Ok(())), "the blocked producer was not woken");
        if taken.is_err() {
            assert_eq!(c.try_pop(&mut buf), Ok(48));
        }
        assert_eq!(buf, [7; 48]);
    });
}
