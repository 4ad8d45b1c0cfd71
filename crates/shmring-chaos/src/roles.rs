//! What each child process does. Every role loops until the ledger's stop
//! flag is set (or it is killed), recording in the ledger what a successor
//! or the parent needs to account for its work.

use shmring::core::wait::Until;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shmring::core::PopError;
use shmring::dict::Dict;
use shmring::lock::{Acquired, Lock};
use shmring::mpmc::ByteQueue;
use shmring::pipe::{Connection, End, RecvError, SendError};

use crate::ledger::{now_ns, Counter, Ledger, PipeWord, MAX_SEQ};
use crate::order::OrderCheck;
use crate::{decode, hook, message, Tag};

/// Messages a producer or pipe writer sends between two 1 ms pauses: keeps
/// the sequence numbers of a long run inside the ledger's bitmaps.
const BURST: u64 = 32;

/// Sleeps 1 ms after every [`BURST`] messages.
pub fn throttle(sent: u64) {
    if sent.is_multiple_of(BURST) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// ByteQueue producer `p`: resumes after its predecessor (whose last push is in
/// doubt if it died inside it) and pushes its sequence numbers in order,
/// each tagged with this process's incarnation and ring.
pub fn producer(ledger: &Ledger, queue_name: &str, p: usize) {
    let queue = ByteQueue::open(queue_name).expect("open queue");
    let (next, pushing) = ledger.producer(p);
    // ORDERING: Acquire on both — pairs with the predecessor's Release
    // stores (it is dead; the kernel made its stores visible).
    let mut seq = next.load(Ordering::Acquire);
    if pushing.load(Ordering::Acquire) == seq + 1 {
        ledger.set_in_doubt(p, seq);
        seq += 1;
        // ORDERING: Release — the doubt bit is set before we move past it.
        next.store(seq, Ordering::Release);
    }
    let mut tx = queue.producer().expect("claim a producer ring");
    // Taken after the claim: see `crate::order` for why that matters.
    let incarnation = ledger.next_incarnation();
    let ring = u32::try_from(tx.ring_index()).expect("few rings");
    let mut buf = Vec::new();
    while !ledger.stopping() {
        if seq >= MAX_SEQ {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let tag = Tag {
            producer: p as u32,
            incarnation,
            ring,
            seq: seq as u32,
        };
        message(tag, &mut buf);
        // ORDERING: Release — read by the successor's Acquire above.
        pushing.store(seq + 1, Ordering::Release);
        match tx.push(&buf, Until::after(Duration::from_millis(200))) {
            Ok(()) => {
                seq += 1;
                // ORDERING: Release — as above.
                next.store(seq, Ordering::Release);
                throttle(seq);
            }
            Err(shmring::core::PushError::Timeout) => {} // retry the same seq
            Err(e) => panic!("producer {p}: {e}"),
        }
    }
}

/// Records one delivered message, checking the order this consumer sees.
fn deliver(ledger: &Ledger, buf: &[u8], order: &mut OrderCheck) {
    let Some(tag) = decode(buf) else {
        ledger.add(Counter::Torn, 1);
        return;
    };
    let (p, seq) = (tag.producer as usize, u64::from(tag.seq));
    if p >= crate::ledger::PRODUCERS || seq >= MAX_SEQ {
        ledger.add(Counter::Torn, 1);
        return;
    }
    if !ledger.deliver(p, seq) {
        ledger.add(Counter::Duplicated, 1);
    }
    let verdict = order.see(tag);
    if verdict.fifo_broken {
        eprintln!("chaos: out of order: {tag:?} after a later one of its incarnation");
        ledger.add(Counter::OutOfOrder, 1);
    }
    if verdict.ring_order_broken {
        eprintln!("chaos: ring order: {tag:?} after a later owner's record on its ring");
        ledger.add(Counter::RingOrder, 1);
    }
}

/// ByteQueue consumer `c`: takes messages and marks them delivered; its hook
/// keeps its in-flight word naming the record it is taking.
pub fn consumer(ledger: &Ledger, queue_name: &str, c: usize) {
    let queue = ByteQueue::open(queue_name).expect("open queue");
    let mut rx = queue.consumer();
    let mut buf = Vec::new();
    let mut order = OrderCheck::new();
    while !ledger.stopping() {
        match rx.pop(&mut buf, Until::after(Duration::from_millis(50))) {
            Ok(_) => {
                hook("chaos.consumer-got", &[]);
                deliver(ledger, &buf, &mut order);
                // ORDERING: Release — cleared only after the delivery bit.
                ledger.in_flight(c).store(0, Ordering::Release);
            }
            Err(PopError::Timeout) => {}
            Err(e) => panic!("consumer {c}: {e}"),
        }
    }
}

/// Drains whatever is left in the queue (the parent, after the run).
pub fn drain(ledger: &Ledger, queue: &ByteQueue) -> u64 {
    let mut rx = queue.consumer();
    let mut buf = Vec::new();
    let mut order = OrderCheck::new();
    let mut n = 0;
    loop {
        match rx.try_pop(&mut buf) {
            Ok(_) => {
                deliver(ledger, &buf, &mut order);
                n += 1;
            }
            Err(PopError::Empty | PopError::Closed) => return n,
            Err(e) => panic!("drain: {e}"),
        }
    }
}

/// Lock worker: takes the lock and, inside, moves the pair `(a, b)` from
/// equal to equal through `a = b + 1` (a death there leaves it unequal,
/// which only an `OwnerDied` taker may see).
pub fn lock_worker(ledger: &Ledger, lock_name: &str) {
    let lock = Lock::open(lock_name).expect("open lock");
    let (a, b) = ledger.lock_pair();
    while !ledger.stopping() {
        let started = now_ns();
        // Leaked: released explicitly below, as Python's acquire/release.
        let got = match lock.acquire_timeout(Duration::from_secs(5)) {
            Ok(guard) => guard.leak(),
            Err(e) => panic!("lock worker blocked for 5 s: {e}"),
        };
        let waited = now_ns() - started;
        ledger.max(Counter::MaxLockWaitAnyNs, waited);
        if got.owner_died() {
            ledger.max(Counter::MaxLockWaitNs, waited);
        }
        // ORDERING: Relaxed on the pair — the lock orders these accesses.
        let (va, vb) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        match got {
            Acquired::Yes if va != vb => ledger.add(Counter::LockViolations, 1),
            Acquired::OwnerDied => ledger.add(Counter::OwnerDied, 1),
            Acquired::Yes => {}
        }
        // ORDERING: Relaxed — as above: the lock orders them.
        a.store(va.max(vb) + 1, Ordering::Relaxed);
        hook("chaos.lock-half", &[]);
        // ORDERING: Relaxed — as above.
        b.store(va.max(vb) + 1, Ordering::Relaxed);
        hook("chaos.lock-done", &[]);
        lock.release().expect("release a lock we hold");
        ledger.add(Counter::LockRounds, 1);
    }
}

/// Dict worker `d`: increments its own key with `update_with`; its key must
/// always hold the confirmed value or the one being written.
pub fn dict_worker(ledger: &Ledger, dict_name: &str, d: usize) {
    let dict: Dict<u64, u64> = Dict::open(dict_name).expect("open dict");
    let (done, intent) = ledger.dict_worker(d);
    let key = d as u64;
    let found = dict.get(&key).expect("dict get").unwrap_or(0);
    // ORDERING: Acquire on both — pairs with the predecessor's Release.
    let (confirmed, writing) = (done.load(Ordering::Acquire), intent.load(Ordering::Acquire));
    if found != confirmed && found != writing {
        ledger.add(Counter::DictViolations, 1);
    }
    let mut value = found;
    // ORDERING: Release — the successor reads it.
    done.store(value, Ordering::Release);
    while !ledger.stopping() {
        // ORDERING: Release — before the write it announces.
        intent.store(value + 1, Ordering::Release);
        let started = now_ns();
        let new = dict
            .update_with(&key, |old| {
                if old.unwrap_or(0) != value {
                    ledger.add(Counter::DictViolations, 1);
                }
                Some(value + 1)
            })
            .expect("update_with");
        ledger.max(Counter::MaxDictWaitNs, now_ns() - started);
        value = new.expect("a value");
        // ORDERING: Release — as above.
        done.store(value, Ordering::Release);
        ledger.add(Counter::DictUpdates, 1);
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Pipe writer: sends sequence numbers 0, 1, ... as producer 0.
pub fn pipe_writer(ledger: &Ledger, pipe_name: &str) {
    let mut conn = Connection::open(pipe_name, End::Second).expect("open pipe writer end");
    let mut buf = Vec::new();
    let mut seq = 0u64;
    while !ledger.stopping() && seq < MAX_SEQ {
        let tag = Tag {
            producer: 0,
            incarnation: 0,
            ring: 0,
            seq: seq as u32,
        };
        message(tag, &mut buf);
        // ORDERING: Release — read by the parent after the episode.
        ledger
            .pipe(PipeWord::Sending)
            .store(seq + 1, Ordering::Release);
        match conn.send_bytes(&buf, 0, None) {
            Ok(()) => {
                seq += 1;
                // ORDERING: Release — as above.
                ledger.pipe(PipeWord::Sent).store(seq, Ordering::Release);
                throttle(seq);
            }
            Err(SendError::BrokenPipe) => return,
            Err(e) => panic!("pipe writer: {e}"),
        }
    }
}

/// Pipe reader: receives until EOF, checking that it got exactly 0, 1, ...
/// and measuring how long after the writer's death the EOF came.
pub fn pipe_reader(ledger: &Ledger, pipe_name: &str) {
    let mut conn = Connection::open(pipe_name, End::First).expect("open pipe reader end");
    let mut expect = 0u64;
    let mut violations = 0;
    loop {
        match conn.recv_bytes(None) {
            Ok(buf) => {
                match decode(&buf) {
                    Some(t) if t.producer == 0 && u64::from(t.seq) == expect => expect += 1,
                    _ => violations += 1,
                }
                // ORDERING: Release — read by the parent after `Done`.
                ledger
                    .pipe(PipeWord::Received)
                    .store(expect, Ordering::Release);
            }
            Err(RecvError::Eof) => break,
            Err(_) => {
                violations += 1;
                break;
            }
        }
    }
    let eof_at = now_ns();
    // ORDERING: Acquire — pairs with the Release store of the killer.
    let died_at = ledger.pipe(PipeWord::DiedAt).load(Ordering::Acquire);
    if died_at != 0 {
        ledger.max(Counter::MaxEofNs, eof_at.saturating_sub(died_at));
    }
    // ORDERING: Release — read by the parent after `Done`.
    ledger
        .pipe(PipeWord::Violations)
        .store(violations, Ordering::Release);
    ledger.add(Counter::PipeMessages, expect);
    // ORDERING: Release — publishes the figures above to the parent.
    ledger.pipe(PipeWord::Done).store(1, Ordering::Release);
}
