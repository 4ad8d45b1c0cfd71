//! SPSC ring checklist. Each test written as a function generic over the
//! memory runs twice: on the heap with the thread waiter (`heap::`, what
//! Miri checks) and in a memfd segment made by the engine with the futex
//! waiter (`memfd::`), the memory and waiter the engine's handles use. The
//! tests on hand-made regions (hostile pokes at known offsets) run once.
#![cfg(not(loom))]

use shmring_core::heap::ThreadWaiter;
use shmring_core::record::Mark;
use shmring_core::spsc::{Consumer, Producer};
use shmring_core::wait::{Until, WaitPolicy, Waiter};
use shmring_core::{ConfigError, PopError, PushError, RingConfig};
use shmring_fuzz_support::memory::Memory;

shmring_fuzz_support::on_every_memory!(
    config_is_checked,
    fill_then_drain_in_order,
    variable_lengths_wrap_many_times,
    record_as_large_as_the_ring_fits_after_padding,
    empty_records_and_too_large,
    zero_copy_reserve_commit_and_read_release,
    #[should_panic(expected = "exceeds the 8 reserved")]
    a_write_past_the_reservation_panics,
    read_grant_copies_every_length_exactly,
    continuation_marks_round_trip,
    space_needed_is_what_a_batch_takes,
    batches_publish_once,
    len_and_empty_full,
    streams_across_the_position_and_count_wrap,
    close_drains_then_reports_closed,
    consumer_close_fails_producer,
    blocking_pop_times_out_after_deadline,
    blocking_pop_sees_peer_gone_after_draining,
    blocking_hand_off_between_threads,
    wait_writable_waits_for_the_room_asked_for,
    a_kept_grant_leaves_its_record_for_the_next_read,
);

/// Loop counts shrink under Miri, which runs ~1000x slower.
const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        n / 50
    } else {
        n
    }
}

fn pair<M: Memory>(capacity: u64, max_record: u64) -> (Producer<M::Waiter>, Consumer<M::Waiter>) {
    let ring = M::ring(&RingConfig {
        capacity,
        max_record,
    })
    .unwrap();
    let w = M::waiter();
    (ring.producer(w.clone()).unwrap(), ring.consumer(w).unwrap())
}

fn config_is_checked<M: Memory>() {
    let bad = |capacity, max_record| {
        M::ring(&RingConfig {
            capacity,
            max_record,
        })
        .unwrap_err()
    };
    assert!(matches!(bad(0, 0), ConfigError::Capacity { .. }));
    assert!(matches!(bad(100, 8), ConfigError::Capacity { .. }));
    assert!(matches!(bad(32, 8), ConfigError::Capacity { .. }));
    assert!(matches!(
        bad(64, 57),
        ConfigError::MaxRecord { limit: 56, .. }
    ));
    assert!(M::ring(&RingConfig {
        capacity: 64,
        max_record: 56
    })
    .is_ok());
}

fn fill_then_drain_in_order<M: Memory>() {
    let (mut p, mut c) = pair::<M>(1024, 64);
    let mut n = 0u32;
    while p.try_push(&n.to_le_bytes()).is_ok() {
        n += 1;
    }
    assert_eq!(n, 1024 / 16, "each 4-byte record takes 16 bytes");
    assert_eq!(p.try_push(b"x"), Err(PushError::Full));
    let mut buf = Vec::new();
    for i in 0..n {
        assert_eq!(c.try_pop(&mut buf), Ok(4));
        assert_eq!(buf, i.to_le_bytes());
    }
    assert_eq!(c.try_pop(&mut buf), Err(PopError::Empty));
}

fn variable_lengths_wrap_many_times<M: Memory>() {
    let (mut p, mut c) = pair::<M>(256, 200);
    let mut buf = Vec::new();
    let mut next_out = 0usize;
    let mut next_in = 0usize;
    let msg = |i: usize| vec![(i % 251) as u8; (i * 7) % 201];
    while next_out < scaled(5000) {
        while next_in < scaled(5000) && p.try_push(&msg(next_in)).is_ok() {
            next_in += 1;
        }
        match c.try_pop(&mut buf) {
            Ok(_) => {
                assert_eq!(buf, msg(next_out), "record {next_out}");
                next_out += 1;
            }
            Err(PopError::Empty) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn record_as_large_as_the_ring_fits_after_padding<M: Memory>() {
    let (mut p, mut c) = pair::<M>(64, 56);
    let mut buf = Vec::new();
    p.try_push(&[1; 8]).unwrap();
    c.try_pop(&mut buf).unwrap();
    // The tail is at 16: a 56-byte payload needs 64 contiguous bytes, so
    // the producer pads to the end and waits for the consumer to pass it.
    assert_eq!(p.try_push(&[2; 56]), Err(PushError::Full));
    assert_eq!(c.try_pop(&mut buf), Err(PopError::Empty));
    p.try_push(&[2; 56]).unwrap();
    assert_eq!(c.try_pop(&mut buf), Ok(56));
    assert_eq!(buf, [2; 56]);
}

fn empty_records_and_too_large<M: Memory>() {
    let (mut p, mut c) = pair::<M>(128, 16);
    p.try_push(&[]).unwrap();
    assert_eq!(
        p.try_push(&[0; 17]),
        Err(PushError::TooLarge { len: 17, max: 16 })
    );
    let mut buf = vec![9];
    assert_eq!(c.try_pop(&mut buf), Ok(0));
    assert!(buf.is_empty());
}

fn zero_copy_reserve_commit_and_read_release<M: Memory>() {
    let (mut p, mut c) = pair::<M>(256, 100);
    {
        let mut g = p.reserve(100).unwrap();
        assert_eq!(g.len(), 100);
        g.write_at(0, b"he");
        g.write_at(2, b"llo");
        g.commit(5);
    }
    {
        let _abandoned = p.reserve(50).unwrap(); // never committed: nothing published
    }
    {
        let mut g = p.reserve(70).unwrap();
        // SAFETY: this test's consumer is a correct one: it does not touch
        // unpublished space.
        unsafe { g.as_mut_slice() }.fill(0xAB);
        g.commit(70);
    }
    {
        let r = c.read().unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r.to_vec(), b"hello");
        let mut out = b">".to_vec();
        r.append_to(&mut out);
        assert_eq!(out, b">hello");
        let mut exact = [0; 5];
        r.copy_to_slice(&mut exact);
        assert_eq!(&exact, b"hello");
        // SAFETY: this test's producer is a correct one: it leaves a
        // published record alone until it is released.
        assert_eq!(unsafe { r.as_slice() }, b"hello");
    }
    {
        let r = c.read().unwrap();
        let mut exact = [0; 70];
        r.copy_to_slice(&mut exact);
        assert_eq!(exact, [0xAB; 70], "larger than a small record");
        assert_eq!(r.to_vec(), [0xAB; 70]);
    }
    assert!(matches!(c.read(), Err(PopError::Empty)));
}

fn a_write_past_the_reservation_panics<M: Memory>() {
    let (mut p, _c) = pair::<M>(256, 100);
    p.reserve(8).unwrap().write_at(5, b"four");
}

fn read_grant_copies_every_length_exactly<M: Memory>() {
    let (mut p, mut c) = pair::<M>(1024, 200);
    for len in 0..=200usize {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        p.try_push(&msg).unwrap();
        let r = c.read().unwrap();
        let mut exact = vec![0xEE; len];
        r.copy_to_slice(&mut exact);
        assert_eq!(exact, msg, "copy_to_slice, len {len}");
        assert_eq!(r.to_vec(), msg, "to_vec, len {len}");
    }
}

/// A producer process that writes a published record while the consumer
/// copies it out (a hostile peer; here a thread storing into the record's
/// payload atomically): every way out (`try_pop`, `try_pop_many`, the read
/// grant's copies) copies it race-free, so the copies may come out wrong
/// but never as a data race in this process. Under Miri (`cargo +nightly
/// miri test`) its race detector checks exactly that (it flagged the
/// `memcpy` out of the ring this replaced); natively the test checks that
/// nothing panics. The hostile thread stores only while a published record
/// waits to be read, never while this side writes (see `bytes` for why the
/// writes may stay plain copies).
#[test]
fn copies_out_race_with_a_hostile_producer_without_a_data_race() {
    hostile_producer_races_copies_out(256, 120, [3, 64, 65, 120]);
}

/// The same with records of 256 bytes and more, which natively take the
/// opaque `rep movsb` copy out (see `bytes`): wrong bytes at worst, no
/// panic, every length right.
#[test]
fn large_copies_out_race_with_a_hostile_producer_without_a_data_race() {
    hostile_producer_races_copies_out(4096, 1024, [256, 300, 1000, 1024]);
}

/// A ring of `capacity` bytes and records up to `max`, records of the
/// `lens` in turn, each stored into by a hostile thread while it is copied
/// out every way there is.
fn hostile_producer_races_copies_out(capacity: u64, max: u64, lens: [usize; 4]) {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let (_mem, ring, base) = region(capacity, max);
    let words = capacity as usize / 8;
    let w = ThreadWaiter::default();
    let (mut p, mut c) = (ring.producer(w.clone()).unwrap(), ring.consumer(w).unwrap());
    // The hostile thread stores into the payload words [from, to) of the
    // data area while `go` is set, a round at a time under `turn`, and
    // counts its rounds. Taking `turn` after clearing `go` waits out a
    // round in flight: no store of it can race the producer's next write.
    let turn = std::sync::Mutex::new(());
    let (go, quit) = (AtomicBool::new(false), AtomicBool::new(false));
    let (from, to, rounds) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let data = base.wrapping_add(DATA_WORD).cast::<AtomicU64>() as usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut x = 0u64;
            while !quit.load(Ordering::Acquire) {
                let _turn = turn.lock().unwrap();
                if go.load(Ordering::Acquire) {
                    for i in from.load(Ordering::Relaxed)..to.load(Ordering::Relaxed) {
                        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        // SAFETY: `i` < `words`, a data word of the region
                        // the test made, alive for the scope; while `go` is
                        // set every access to these words is atomic.
                        let slot = unsafe { &*(data as *const AtomicU64).add(i) };
                        slot.store(x, Ordering::Relaxed);
                    }
                    rounds.fetch_add(1, Ordering::Release);
                }
                drop(_turn);
                std::thread::yield_now();
            }
        });
        let mut buf = Vec::new();
        let mut at = 0usize; // the next record's word index
        for round in 0..scaled(200) {
            let len = lens[round % 4];
            let size = 1 + len.div_ceil(8);
            if at + size > words {
                at = 0; // the producer pads to the end
            }
            p.try_push(&vec![1; len]).unwrap();
            // Hostile stores into the published payload, racing the copy.
            from.store(at + 1, Ordering::Relaxed);
            to.store(at + size, Ordering::Relaxed);
            let before = rounds.load(Ordering::Acquire);
            go.store(true, Ordering::Release);
            while rounds.load(Ordering::Acquire) == before {
                std::thread::yield_now();
            }
            // After the copy, one more round of stores (not ordered after
            // the copy: it races with it), then stop them all.
            let stop = || {
                let copied = rounds.load(Ordering::Acquire);
                while rounds.load(Ordering::Acquire) == copied {
                    std::thread::yield_now();
                }
                go.store(false, Ordering::Release);
                drop(turn.lock().unwrap());
            };
            match round % 3 {
                0 => {
                    let r = c.read().unwrap();
                    let mut exact = vec![0; r.len()];
                    r.copy_to_slice(&mut exact);
                    let mut appended = Vec::new();
                    r.append_to(&mut appended);
                    assert_eq!(r.to_vec().len(), len);
                    stop();
                }
                1 => {
                    assert_eq!(c.try_pop_many(1, |m| assert_eq!(m.len(), len)), Ok(1));
                    stop();
                }
                _ => {
                    assert_eq!(c.try_pop(&mut buf), Ok(len));
                    stop();
                }
            }
            at += size;
        }
        quit.store(true, Ordering::Release);
    });
}

/// Reads every record with its framing marks until the ring is empty.
fn drain_marked<W: Waiter + Clone>(c: &mut Consumer<W>) -> Vec<(Vec<u8>, Mark)> {
    let mut got = Vec::new();
    while let Ok(grant) = c.read() {
        let mark = grant.mark();
        assert_eq!(
            (grant.continues(), grant.more()),
            (mark.continues, mark.more)
        );
        got.push((grant.to_vec(), mark));
    }
    got
}

fn continuation_marks_round_trip<M: Memory>() {
    // 40-byte records (48 B) in a 256-byte ring: the fifth pads at the wrap.
    let (mut p, mut c) = pair::<M>(256, 40);
    // Every combination of the two marks, as given.
    let marks = [
        Mark::nth(0, 3),
        Mark::nth(1, 3),
        Mark::nth(2, 3),
        Mark {
            continues: false,
            more: false,
        },
    ];
    let records: Vec<(Vec<u8>, Mark)> = (0..4u8)
        .map(|i| (vec![i; 40 - i as usize], marks[i as usize]))
        .collect();
    // All at once: one publish, marks as given.
    let n = p
        .try_push_many_marked(records.iter().map(|(m, mark)| (m.as_slice(), *mark)))
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(drain_marked(&mut c), records);
    // One record at a time, across the wrap, and through the blocking push
    // and a zero-copy grant.
    let (first, cont, last) = (Mark::nth(0, 2), Mark::nth(1, 3), Mark::nth(1, 2));
    p.try_push_marked(b"first", first).unwrap();
    p.push_marked(&[9; 40], cont, Until::Never).unwrap();
    p.try_push(b"plain").unwrap();
    let mut g = p.reserve(3).unwrap();
    g.write_at(0, b"abc");
    g.commit_marked(3, last);
    let mut g = p.reserve(3).unwrap();
    g.write_at(0, b"xyz");
    g.commit(3);
    assert_eq!(
        drain_marked(&mut c),
        [
            (b"first".to_vec(), first),
            (vec![9; 40], cont),
            (b"plain".to_vec(), Mark::WHOLE),
            (b"abc".to_vec(), last),
            (b"xyz".to_vec(), Mark::WHOLE),
        ]
    );
    // The copying pops carry the payloads (`try_pop_marked` the marks
    // too); the others ignore the marks.
    p.try_push_marked(b"c", last).unwrap();
    p.try_push_many_marked([(&b"d"[..], cont), (b"e", Mark::WHOLE), (b"f", first)])
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.try_pop(&mut buf), Ok(1));
    assert_eq!(buf, b"c");
    assert_eq!(c.try_pop_marked(&mut buf), Ok((1, cont)));
    assert_eq!(buf, b"d");
    let mut rest = Vec::new();
    assert_eq!(c.try_pop_many(8, |m| rest.push(m.to_vec())), Ok(2));
    assert_eq!(rest, [b"e".to_vec(), b"f".to_vec()]);
}

/// Fills a fresh ring's first `bytes` (a multiple of 8, below the
/// capacity) with records of at most 48 bytes (40-byte payloads), none of
/// them padded; `read` takes them back out at once (an empty ring at
/// `bytes`).
fn move_to<W: Waiter + Clone>(p: &mut Producer<W>, c: &mut Consumer<W>, bytes: u64, read: bool) {
    let mut left = bytes;
    while left > 0 {
        let size = left.min(48);
        p.try_push(&[0x5A; 40][..size as usize - 8]).unwrap();
        if read {
            assert!(c.read().is_ok());
        }
        left -= size;
    }
}

/// `space_needed` is exactly what a batch takes from where the producer
/// stands: records and the padding of a wrap. Checked against the room the
/// batch really took, from every position of a small ring; and the longest
/// batch it says fits goes in whole, one more record does not.
fn space_needed_is_what_a_batch_takes<M: Memory>() {
    const RING: u64 = 256;
    let batches: [&[usize]; 7] = [
        &[],
        &[0],
        &[40],
        &[40, 40, 40],
        &[1, 40, 17, 8],
        &[40, 0, 40, 0, 40],
        &[24, 24, 24, 24, 24, 24],
    ];
    let payload = [7u8; 40];
    for start in (0..RING).step_by(8) {
        for lens in batches {
            let (mut p, mut c) = pair::<M>(RING, 40);
            move_to(&mut p, &mut c, start, true);
            let what = format!("start {start}, {lens:?}");
            let need = p.space_needed(lens.iter().copied());
            let free = p.free_bytes().unwrap();
            assert_eq!(free, RING, "{what}");
            let records = lens.iter().map(|&n| (&payload[..n], Mark::WHOLE));
            match p.try_push_many_marked(records) {
                Ok(n) => assert_eq!(n, lens.len(), "{what}: all in"),
                Err(e) => assert!(lens.is_empty(), "{what}: {e}"),
            }
            assert_eq!(free - p.free_bytes().unwrap(), need, "{what}: room taken");
        }
        // A ring `start` bytes full: 24-byte records while `space_needed`
        // says they fit; those go in whole, one more does not.
        let (mut p, mut c) = pair::<M>(RING, 40);
        move_to(&mut p, &mut c, start, false);
        let mut lens = vec![17];
        while p.space_needed(lens.iter().copied()) <= p.free_bytes().unwrap() {
            lens.push(17);
        }
        let fit = lens.len() - 1;
        let records = lens.iter().map(|&n| (&payload[..n], Mark::WHOLE));
        let expected = if fit == 0 {
            Err(PushError::Full)
        } else {
            Ok(fit)
        };
        assert_eq!(p.try_push_many_marked(records), expected, "start {start}");
    }
    let (p, _c) = pair::<M>(RING, 40);
    assert_eq!(
        p.space_needed([RING as usize]),
        u64::MAX,
        "longer than the ring"
    );
}

fn batches_publish_once<M: Memory>() {
    let (mut p, mut c) = pair::<M>(1024, 64);
    let msgs: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; i as usize % 9]).collect();
    let n = p.try_push_many(msgs.iter().map(|m| m.as_slice())).unwrap();
    assert!(n > 10 && n < 100, "{n}");
    let mut got = Vec::new();
    let k = c.try_pop_many(1000, |m| got.push(m.to_vec())).unwrap();
    assert_eq!(k, n);
    assert_eq!(got, msgs[..n]);
    assert_eq!(c.try_pop_many(10, |_| ()), Err(PopError::Empty));
}

fn len_and_empty_full<M: Memory>() {
    let ring = M::ring(&RingConfig {
        capacity: 64,
        max_record: 8,
    })
    .unwrap();
    let w = M::waiter();
    let mut p = ring.producer(w.clone()).unwrap();
    let mut c = ring.consumer(w).unwrap();
    assert!(ring.is_empty() && !ring.is_full());
    assert_eq!(ring.len(), 0);
    for _ in 0..4 {
        p.try_push(&[0; 8]).unwrap();
    }
    assert!(ring.is_full() && ring.len() == 4);
    c.try_pop(&mut Vec::new()).unwrap();
    assert_eq!(ring.len(), 3);
}

/// A ring whose head and tail words start a few records before both the
/// position (2^38 words) and the count (2^26) wrap, streamed through by two
/// threads: every record arrives intact and in order, `len` stays exact at
/// every pause, and both parts of the words wrapped on the way.
fn streams_across_the_position_and_count_wrap<M: Memory>() {
    use shmring_core::ring::{POSITION_BITS, POSITION_MASK};
    use std::sync::atomic::Ordering;
    let ring = M::ring(&RingConfig {
        capacity: 256,
        max_record: 200,
    })
    .unwrap();
    let start = (((1u64 << 26) - 3) << POSITION_BITS) | (POSITION_MASK - 20);
    let (tail, head) = ring.position_words();
    tail.store(start, Ordering::Relaxed);
    head.store(start, Ordering::Relaxed);
    let w = M::waiter();
    let (mut p, mut c) = (ring.producer(w.clone()).unwrap(), ring.consumer(w).unwrap());
    let policy = WaitPolicy {
        spin_ns: if cfg!(miri) { 0 } else { 2_000 },
        ..WaitPolicy::default()
    };
    p.set_wait_policy(policy);
    c.set_wait_policy(policy);
    let msg = |i: usize| vec![(i % 251) as u8; (i * 7) % 201];
    // A few records by hand first: `len` exact across both wraps.
    for i in 0..6 {
        p.try_push(&msg(i)).unwrap();
        assert_eq!(ring.len(), i as u64 + 1);
    }
    let mut buf = Vec::new();
    for i in 0..6 {
        c.try_pop(&mut buf).unwrap();
        assert_eq!(buf, msg(i));
        assert_eq!(ring.len(), 5 - i as u64);
    }
    let n = scaled(5000);
    let producer = std::thread::spawn(move || {
        for i in 6..n {
            p.push(&msg(i), Until::Never).unwrap();
        }
        p
    });
    for i in 6..n {
        c.pop(&mut buf, Until::Never).unwrap();
        assert_eq!(buf, msg(i), "record {i}");
    }
    let _p = producer.join().unwrap();
    assert_eq!(ring.len(), 0);
    assert!(ring.is_empty());
    let end = tail.load(Ordering::Relaxed);
    assert_eq!(head.load(Ordering::Relaxed), end);
    assert!(end & POSITION_MASK < 1 << 20, "the position wrapped");
    assert_eq!(end >> POSITION_BITS, (n as u64 - 3), "the count wrapped");
}

fn close_drains_then_reports_closed<M: Memory>() {
    let (mut p, mut c) = pair::<M>(256, 8);
    p.try_push(b"a").unwrap();
    p.close();
    assert_eq!(p.try_push(b"b"), Err(PushError::Closed));
    let mut buf = Vec::new();
    assert_eq!(c.try_pop(&mut buf), Ok(1));
    assert_eq!(c.try_pop(&mut buf), Err(PopError::Closed));
}

fn consumer_close_fails_producer<M: Memory>() {
    let (mut p, c) = pair::<M>(256, 8);
    c.close();
    assert_eq!(p.try_push(b"a"), Err(PushError::Closed));
}

fn blocking_pop_times_out_after_deadline<M: Memory>() {
    let (_p, mut c) = pair::<M>(256, 8);
    let w = M::waiter();
    let start = std::time::Instant::now();
    let deadline = w.now().after(30_000_000);
    let r = c.pop(&mut Vec::new(), Until::At(deadline));
    assert_eq!(r, Err(PopError::Timeout));
    assert!(start.elapsed() >= std::time::Duration::from_millis(25));
}

fn blocking_pop_sees_peer_gone_after_draining<M: Memory>() {
    let (mut p, mut c) = pair::<M>(256, 8);
    p.try_push(b"x").unwrap();
    let policy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 1_000_000,
    };
    c.set_wait_policy(policy);
    // Asked whether the producer is gone: yes.
    c.set_role(|| true);
    let mut buf = Vec::new();
    assert_eq!(c.pop(&mut buf, Until::Never), Ok(1));
    assert_eq!(c.pop(&mut buf, Until::Never), Err(PopError::Closed));
}

fn blocking_hand_off_between_threads<M: Memory>() {
    let (mut p, mut c) = pair::<M>(128, 64);
    let policy = WaitPolicy {
        spin_ns: if cfg!(miri) { 0 } else { 5_000 },
        ..WaitPolicy::default()
    };
    p.set_wait_policy(policy);
    c.set_wait_policy(policy);
    let t = std::thread::spawn(move || {
        for i in 0..scaled(20_000) as u32 {
            let m = i.to_le_bytes();
            p.push(&m[..(i % 5) as usize], Until::Never).unwrap();
        }
        p.close();
    });
    let mut buf = Vec::new();
    let mut i = 0u32;
    loop {
        match c.pop(&mut buf, Until::Never) {
            Ok(n) => {
                assert_eq!(buf, &i.to_le_bytes()[..n]);
                i += 1;
            }
            Err(PopError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(i, scaled(20_000) as u32);
    t.join().unwrap();
}

fn wait_writable_waits_for_the_room_asked_for<M: Memory>() {
    // 256 bytes: 16 records of 8 bytes (16 bytes each) fill it.
    let (mut p, mut c) = pair::<M>(256, 8);
    let policy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 1_000_000,
    };
    p.set_wait_policy(policy);
    let w = M::waiter();
    assert_eq!(p.wait_writable(256, Until::Never), Ok(true));
    while p.try_push(&[7; 8]).is_ok() {}
    // Full: the deadline passes, at least as late as asked.
    let start = std::time::Instant::now();
    let deadline = w.now().after(30_000_000);
    assert_eq!(
        p.wait_writable(16, Until::At(deadline)),
        Err(shmring_core::wait::TimedOut)
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(25));
    // A consumer freeing one record at a time: the wait for 48 bytes
    // returns only once three are gone (each release wakes it to look).
    let drainer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            c.try_pop(&mut buf).unwrap();
        }
        c
    });
    assert_eq!(p.wait_writable(48, Until::Never), Ok(true));
    assert!(p.free_bytes().unwrap() >= 48);
    let c = drainer.join().unwrap();
    // A closed ring, or a consumer reported gone, ends the wait with false.
    // Asked whether the consumer is gone: yes, then no.
    p.set_role(|| true);
    assert_eq!(p.wait_writable(1024, Until::Never), Ok(false), "peer gone");
    p.set_role(|| false);
    c.close();
    assert_eq!(p.wait_writable(1024, Until::Never), Ok(false));
}

/// Memory laid out as in a segment: control block, then data.
#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Block([u64; 16]);

fn region(
    capacity: u64,
    max_record: u64,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<Block>>>,
    shmring_core::spsc::Ring,
    *mut u64,
) {
    use shmring_core::spsc::{Ring, SpscLayout};
    let config = RingConfig {
        capacity,
        max_record,
    };
    let layout = SpscLayout::new(&config).unwrap();
    let blocks = vec![Block([0; 16]); layout.total / 128];
    let mem = std::sync::Arc::new(std::sync::Mutex::new(blocks));
    let base = mem.lock().unwrap().as_mut_ptr().cast::<u8>();
    let base = std::ptr::NonNull::new(base).unwrap();
    // SAFETY: zeroed, 128-aligned, `layout.total` bytes, kept alive by `mem`.
    unsafe { Ring::init_in_place(base, layout.total, &config) }.unwrap();
    // SAFETY: as above; the Vec is never resized, so the pointer stays valid.
    let ring = unsafe { Ring::attach_in_place(base, layout.total, mem.clone()) }.unwrap();
    (mem, ring, base.as_ptr().cast::<u64>())
}

const TAIL_WORD: usize = 128 / 8;
const HEAD_WORD: usize = 256 / 8;
const DATA_WORD: usize = 640 / 8;

fn poke(base: *mut u64, word: usize, value: u64) {
    // SAFETY: `word` lies inside the region the caller made; a volatile write
    // stands for a hostile peer in another process.
    unsafe { base.add(word).write_volatile(value) }
}

#[test]
fn in_place_ring_round_trip() {
    let (_mem, ring, _) = region(256, 32);
    let w = ThreadWaiter::default();
    let mut p = ring.producer(w.clone()).unwrap();
    let mut c = ring.consumer(w).unwrap();
    for i in 0..100u8 {
        p.try_push(&[i; 20]).unwrap();
        let mut buf = Vec::new();
        c.try_pop(&mut buf).unwrap();
        assert_eq!(buf, [i; 20]);
    }
}

#[test]
fn wild_tail_is_corruption() {
    let (_mem, ring, base) = region(256, 32);
    let w = ThreadWaiter::default();
    let mut c = ring.consumer(w.clone()).unwrap();
    poke(base, TAIL_WORD, 4096);
    assert!(matches!(
        c.try_pop(&mut Vec::new()),
        Err(PopError::Corrupted(_))
    ));
    poke(base, TAIL_WORD, 13);
    assert!(matches!(
        c.try_pop(&mut Vec::new()),
        Err(PopError::Corrupted(_))
    ));
}

#[test]
fn wild_head_is_corruption() {
    // Head words (count << 38 | position in words) a full ring of six
    // 40-byte records (positions 0..30, count 6) cannot have: a position
    // past the tail, before the one last seen, or more records taken than
    // published.
    for head in [1 << 20, 31, (1 << 38) - 1, 7 << 38, (7 << 38) | 25] {
        let (_mem, ring, base) = region(256, 32);
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w).unwrap();
        while p.try_push(&[1; 32]).is_ok() {}
        poke(base, HEAD_WORD, head);
        let r = p.try_push(&[1; 32]);
        assert!(
            matches!(r, Err(PushError::Corrupted(_))),
            "{head:#x}: {r:?}"
        );
    }
}

#[test]
fn bad_record_headers_are_corruption() {
    for header in [
        0u64,
        0xFFFF_FFFF_FFFF_FFFF,
        0x00D7_0000_0000 | 999,
        0x00AD_0000_0000 | 8,
    ] {
        let (_mem, ring, base) = region(256, 32);
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w).unwrap();
        p.try_push(&[7; 8]).unwrap();
        poke(base, DATA_WORD, header);
        let r = c.try_pop(&mut Vec::new());
        assert!(
            matches!(r, Err(PopError::Corrupted(_))),
            "{header:#x}: {r:?}"
        );
    }
}

/// Position words a hostile peer may write: near 2^64 (where unchecked
/// `+` overflowed: a panic in debug builds, a wrap in release ones), near
/// the 2^38-word wrap of the packed positions, with counts that disagree
/// with the positions, and misaligned or wild ones.
fn hostile_position_words() -> Vec<u64> {
    let mut words = vec![0, 8, 16, 1 << 40, u64::MAX, u64::MAX - 7, u64::MAX - 15];
    for base in [!7u64, (1 << 38) - 8, (1 << 38) - 1, 1 << 38, 1 << 63] {
        for delta in [0u64, 8, 16, 24, 32, 256, 264] {
            words.push(base.wrapping_sub(delta));
            words.push(base.wrapping_add(delta));
        }
    }
    // Counts (above bit 38) that disagree with the positions.
    words.extend([(5 << 38) | 2, (1 << 38) | 31, (u64::MAX << 38) | 4]);
    words
}

/// Every operation on an SPSC ring whose head and tail words hold hostile
/// values: each answers (possibly `Corrupted`), none panics or overflows.
/// Run in debug and release builds (`cargo test --release`).
#[test]
fn hostile_positions_are_corruption_not_panics() {
    let words = hostile_position_words();
    // Every pair natively; a sample under Miri, which runs ~1000x slower.
    let step = if cfg!(miri) { 17 } else { 1 };
    let mut buf = Vec::new();
    for &tail in words.iter().step_by(step) {
        for &head in words.iter().skip(step / 2).step_by(step) {
            let (_mem, ring, base) = region(256, 64);
            let w = ThreadWaiter::default();
            let (mut p, mut c) = (ring.producer(w.clone()).unwrap(), ring.consumer(w).unwrap());
            p.try_push(&[1; 20]).unwrap();
            poke(base, TAIL_WORD, tail);
            poke(base, HEAD_WORD, head);
            let _ = (
                ring.len(),
                ring.is_empty(),
                ring.is_full(),
                ring.free_bytes(),
            );
            // Handles made before the scribble, then fresh ones.
            let fresh = ring.producer(ThreadWaiter::default());
            for _ in 0..40 {
                let _ = p.try_push(&[2; 64]);
                let _ = p.try_push(&[3; 3]);
                let _ = c.try_pop(&mut buf);
                assert!(buf.len() <= 64);
            }
            let _ = p.free_bytes();
            let _ = c.try_pop_many(8, |m| assert!(m.len() <= 64));
            if let Ok(mut p) = fresh {
                for _ in 0..40 {
                    let _ = p.try_push(&[4; 40]);
                }
                let _ = p.free_bytes();
            }
            if let Ok(mut c) = ring.consumer(ThreadWaiter::default()) {
                for _ in 0..40 {
                    let _ = c.try_pop(&mut buf);
                }
            }
            let _ = (
                ring.len(),
                ring.is_empty(),
                ring.is_full(),
                ring.free_bytes(),
            );
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    // A small xorshift so the test needs no extra crate and is repeatable.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..scaled(300) {
        let (_mem, ring, base) = region(256, 64);
        let w = ThreadWaiter::default();
        let mut p = ring.producer(w.clone()).unwrap();
        let mut c = ring.consumer(w).unwrap();
        for _ in 0..(round % 7) {
            let _ = p.try_push(&[3; 12]);
        }
        // Scribble on positions and data (not the constants, which attach
        // checks and the handles have already copied).
        for _ in 0..8 {
            let word = match next() % 3 {
                0 => TAIL_WORD,
                1 => HEAD_WORD,
                _ => DATA_WORD + (next() % 32) as usize,
            };
            let v = match next() % 4 {
                0 => next(),
                1 => next() % 512,
                2 => (next() % 64) * 8,
                _ => 0x00D7_0000_0000 | (next() % 80),
            };
            poke(base, word, v);
        }
        let mut buf = Vec::new();
        for _ in 0..20 {
            let _ = c.try_pop(&mut buf);
            let _ = p.try_push(&[5; 20]);
            assert!(buf.len() <= 64);
        }
        // Fresh handles over scribbled memory: errors, not panics.
        let _ = ring
            .producer(ThreadWaiter::default())
            .map(|mut p| p.try_push(b"x"));
        let _ = ring
            .consumer(ThreadWaiter::default())
            .map(|mut c| c.try_pop(&mut buf));
    }
}

fn a_kept_grant_leaves_its_record_for_the_next_read<M: Memory>() {
    let (mut p, mut c) = pair::<M>(256, 64);
    p.try_push(b"first").unwrap();
    p.try_push(b"second").unwrap();
    c.read().unwrap().keep();
    c.read().unwrap().keep();
    assert_eq!(
        c.read().unwrap().to_vec(),
        b"first",
        "kept twice, still first"
    );
    assert_eq!(c.read().unwrap().to_vec(), b"second");
    assert!(matches!(c.read(), Err(PopError::Empty)));
}
