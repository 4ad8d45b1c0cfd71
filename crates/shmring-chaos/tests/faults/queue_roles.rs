//! Queue children: producers, consumers and the spare producer of the
//! bounded `Queue` and `JoinableQueue` scenario (see `queue.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::process::{Entry, EntryResult};
use shmring::queue::{
    GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, Sender, TryGetError,
};
use shmring::RoleError;
use shmring_chaos::faults::board::{now_ns, IncWord, Report, Word};
use shmring_chaos::faults::hook::{point, Me, Setup};
use shmring_chaos::ledger::{Counter, Ledger, MAX_SEQ, PRODUCERS};
use shmring_chaos::order::OrderCheck;
use shmring_chaos::roles::throttle;
use shmring_chaos::{decode, message, Tag};

use crate::child::{begin, should_stop, spawn_bystander, unexpected};

shmring_chaos::wire_struct! {
    /// The queue of a round, as every queue child is told it.
    #[derive(Clone, Debug)]
    pub struct QueueArgs {
        /// Its name (children open it by name).
        pub name: String,
        /// Whether it is a `JoinableQueue` (else a `Queue`).
        pub joinable: bool,
        /// How long (ms) a producer may be refused while the queue is
        /// empty before it is a wedge.
        pub wedge_ms: u64,
    }
}

shmring_chaos::wire_struct! {
    /// A producer's own arguments.
    #[derive(Clone, Debug)]
    pub struct ProducerArgs {
        /// The sequence number it puts up to (exclusive).
        pub target: u64,
        /// The incarnation of the predecessor it succeeds (0: none).
        pub pred: u64,
        /// Whether it puts through a `Sender` (plain queues) instead of the
        /// queue itself.
        pub sender: bool,
        /// After this many messages it hands the queue to a bystander and
        /// kills itself (0: never).
        pub bystander: u64,
    }
}

/// A queue producer.
pub static PRODUCER: Entry<(Setup, QueueArgs, ProducerArgs)> = shmring::entry!(producer);
/// A queue consumer (its setup names it as the hook's consumer).
pub static CONSUMER: Entry<(Setup, QueueArgs)> = shmring::entry!(consumer);
/// The spare producer of a plain queue.
pub static SPARE: Entry<(Setup, QueueArgs)> = shmring::entry!(spare);
/// Joinable probe `announce`: the queue's name.
pub static PROBE_ANNOUNCE: Entry<(Setup, String)> = shmring::entry!(probe_announce);
/// Joinable probe `hold`: the queue's name.
pub static PROBE_HOLD: Entry<(Setup, String)> = shmring::entry!(probe_hold);
/// Joinable probe `attach`: the queue's name.
pub static PROBE_ATTACH: Entry<(Setup, String)> = shmring::entry!(probe_attach);

/// Consumer state words (slot = consumer id, word 0), JoinableQueue only.
pub const GETTING: u64 = 1 << 62;
pub const HOLDING: u64 = 2 << 62;
pub const FINISHING: u64 = 3 << 62;
pub const STATE_MASK: u64 = 3 << 62;

/// A plain queue or a joinable one, of raw bytes.
pub enum AnyQueue {
    Plain(Queue<Vec<u8>>),
    Joinable(JoinableQueue<Vec<u8>>),
}

impl AnyQueue {
    pub fn open(name: &str, joinable: bool) -> AnyQueue {
        if joinable {
            AnyQueue::Joinable(JoinableQueue::open(name).expect("open joinable queue"))
        } else {
            AnyQueue::Plain(Queue::open(name).expect("open queue"))
        }
    }

    pub fn put_timeout(
        &self,
        item: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<Vec<u8>>> {
        match self {
            AnyQueue::Plain(q) => q.put_timeout(item, timeout),
            AnyQueue::Joinable(q) => q.put_timeout(item, timeout),
        }
    }

    pub fn try_get(&self) -> Result<Vec<u8>, TryGetError> {
        match self {
            AnyQueue::Plain(q) => q.try_get(),
            AnyQueue::Joinable(q) => q.try_get(),
        }
    }

    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, GetTimeoutError> {
        match self {
            AnyQueue::Plain(q) => q.get_timeout(timeout),
            AnyQueue::Joinable(q) => q.get_timeout(timeout),
        }
    }

    pub fn len(&self) -> u64 {
        match self {
            AnyQueue::Plain(q) => q.len(),
            AnyQueue::Joinable(q) => q.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            AnyQueue::Plain(q) => q.is_empty(),
            AnyQueue::Joinable(q) => q.is_empty(),
        }
    }

    pub fn maxsize(&self) -> u64 {
        match self {
            AnyQueue::Plain(q) => q.maxsize(),
            AnyQueue::Joinable(q) => q.maxsize(),
        }
    }

    /// `task_done` of a joinable queue (true for a plain one).
    pub fn task_done(&self) -> bool {
        match self {
            AnyQueue::Plain(_) => true,
            AnyQueue::Joinable(q) => q.task_done().is_ok(),
        }
    }
}

/// Where a producer puts: the queue itself (its ring claimed at the first
/// put) or a `Sender` (claimed up front).
enum Tx<'a> {
    Queue(&'a AnyQueue),
    Sender(Box<Sender<Vec<u8>>>),
}

impl Tx<'_> {
    fn put_timeout(
        &mut self,
        item: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), PutTimeoutError<Vec<u8>>> {
        match self {
            Tx::Queue(q) => q.put_timeout(item, timeout),
            Tx::Sender(s) => s.put_timeout(item, timeout),
        }
    }
}

/// Tracks how long one message has been refused, and whether the queue was
/// seen empty around each refusal.
struct Blocked {
    since: Instant,
    empty_streak: u32,
    reported: bool,
}

/// A producer: resumes after its predecessor (whose message in flight is
/// then in doubt), claims a ring (timing the claim when it succeeds a
/// killed predecessor), and puts its sequence numbers up to the round's
/// target. A put refused for longer than the wedge bound while the queue
/// is seen empty (and its count at `maxsize`) before and after each of the
/// last three refusals is a *wedge*. With `bystander` k it hands the
/// queue to a bystander after its k-th message and kills itself.
fn producer((setup, queue, args): (Setup, QueueArgs, ProducerArgs)) -> EntryResult {
    let (_dog, me) = begin(&setup, "q-producer");
    let me = &me;
    let ledger = me.ledger();
    let p = me.slot;
    let joinable = queue.joinable;
    let q = AnyQueue::open(&queue.name, joinable);
    let ProducerArgs {
        target,
        pred,
        sender,
        bystander: bystander_after,
    } = args;
    let wedge = Duration::from_millis(queue.wedge_ms);
    let maxsize = q.maxsize();
    let (next, pushing) = ledger.producer(p);
    // ORDERING: Acquire on both — the predecessor is dead and reaped.
    let mut seq = next.load(Ordering::Acquire);
    if pushing.load(Ordering::Acquire) == seq + 1 {
        ledger.set_in_doubt(p, seq);
        seq += 1;
        // ORDERING: Release — the doubt bit is set before we move past it.
        next.store(seq, Ordering::Release);
    }
    let claim_started = now_ns();
    let mut tx = if !joinable && sender {
        match claim_sender(me, &q) {
            Some(s) => Tx::Sender(Box::new(s)),
            None => return Ok(()),
        }
    } else {
        Tx::Queue(&q)
    };
    let mut claimed = matches!(tx, Tx::Sender(_));
    if claimed {
        claim_done(me, pred, claim_started);
    }
    let incarnation = ledger.next_incarnation();
    let mut buf = Vec::new();
    let mut sent = 0u64;
    let mut blocked: Option<Blocked> = None;
    while seq < target && seq < MAX_SEQ && !should_stop(me) {
        let tag = Tag {
            producer: p as u32,
            incarnation,
            // The facade does not say which ring: one "ring" per
            // incarnation, so the ring-order check is the FIFO check.
            ring: incarnation,
            seq: seq as u32,
        };
        message(tag, &mut buf);
        let empty_before = q.is_empty();
        // ORDERING: Release — read by the successor's Acquire above.
        pushing.store(seq + 1, Ordering::Release);
        match tx.put_timeout(buf.clone(), Duration::from_millis(100)) {
            Ok(()) => {
                seq += 1;
                sent += 1;
                // ORDERING: Release — as above.
                next.store(seq, Ordering::Release);
                blocked = None;
                if !claimed {
                    claimed = true;
                    claim_done(me, pred, claim_started);
                }
                if sent == bystander_after {
                    match &q {
                        AnyQueue::Plain(q) => spawn_bystander(me, q),
                        AnyQueue::Joinable(q) => spawn_bystander(me, q),
                    }
                    me.die();
                }
                throttle(seq);
            }
            Err(PutTimeoutError::Timeout(_)) => {
                if !claimed {
                    claimed = true;
                    claim_done(me, pred, claim_started);
                }
                let b = blocked.get_or_insert(Blocked {
                    since: Instant::now(),
                    empty_streak: 0,
                    reported: false,
                });
                // Refused although nothing is queued, while the count says
                // the queue is full: a count that no record backs.
                if empty_before && q.is_empty() && (maxsize == 0 || q.len() >= maxsize) {
                    b.empty_streak += 1;
                } else {
                    b.empty_streak = 0;
                }
                if !b.reported && b.empty_streak >= 3 && b.since.elapsed() > wedge {
                    b.reported = true;
                    eprintln!(
                        "faults: WEDGE: producer {p} (incarnation {}) refused for {:?} while \
                         the queue is empty (len {})",
                        me.inc,
                        b.since.elapsed(),
                        q.len()
                    );
                    me.board.add(Word::ProducerWedges, 1);
                }
            }
            Err(PutTimeoutError::Put(PutError::NoFreeRing(..))) if !claimed => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("producer {p}: {e}"),
        }
    }
    // ORDERING: Release — read by the parent after we are gone.
    me.board
        .inc(me.inc, IncWord::ReleasingAt)
        .store(now_ns(), Ordering::Release);
    Ok(())
}

/// Claims a `Sender`, retrying while every ring is held. `None` when told
/// to stop first.
fn claim_sender(me: &Me, q: &AnyQueue) -> Option<Sender<Vec<u8>>> {
    let AnyQueue::Plain(q) = q else {
        unreachable!("senders are for plain queues")
    };
    loop {
        match q.sender() {
            Ok(s) => return Some(s),
            Err(RoleError::NoFreeRing { .. }) => {
                if should_stop(me) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("claim a producer ring: {e}"),
        }
    }
}

/// Records the claim; a successor of a killed producer reports it.
fn claim_done(me: &Me, pred: u64, started: u64) {
    // ORDERING: Release — read by the parent after we are gone.
    me.board
        .inc(me.inc, IncWord::ClaimedAt)
        .store(now_ns(), Ordering::Release);
    if pred != 0 {
        me.board
            .report(Report::SuccessorClaim, me.inc, pred, started, 0);
    }
}

/// Records one delivered message, checking the order this consumer sees.
/// Returns its sequence number.
pub fn deliver(ledger: &Ledger, buf: &[u8], order: &mut OrderCheck) -> Option<u64> {
    let Some(tag) = decode(buf) else {
        eprintln!("faults: torn queue message of {} bytes", buf.len());
        ledger.add(Counter::Torn, 1);
        return None;
    };
    let (p, seq) = (tag.producer as usize, u64::from(tag.seq));
    if p >= PRODUCERS || seq >= MAX_SEQ {
        ledger.add(Counter::Torn, 1);
        return None;
    }
    if !ledger.deliver(p, seq) {
        eprintln!("faults: DUPLICATE: producer {p} seq {seq}");
        ledger.add(Counter::Duplicated, 1);
    }
    let verdict = order.see(tag);
    if verdict.fifo_broken {
        eprintln!("faults: out of order: {tag:?} after a later one of its incarnation");
        ledger.add(Counter::OutOfOrder, 1);
    }
    Some(seq)
}

/// A consumer: gets, records, and (joinable) marks each task done, keeping
/// its state word saying whether it is getting, holding or finishing a task.
fn consumer((setup, queue): (Setup, QueueArgs)) -> EntryResult {
    let (_dog, me) = begin(&setup, "q-consumer");
    let me = &me;
    let ledger = me.ledger();
    let c = me.slot;
    let joinable = queue.joinable;
    let q = AnyQueue::open(&queue.name, joinable);
    let state = me.board.slot(c, 0);
    let mut order = OrderCheck::new();
    while !should_stop(me) {
        // ORDERING: Release (all state stores) — the parent reads it after
        // our death.
        state.store(GETTING, Ordering::Release);
        match q.get_timeout(Duration::from_millis(50)) {
            Ok(buf) => {
                point("faults.consumer-got");
                let seq = deliver(ledger, &buf, &mut order).unwrap_or(0);
                // ORDERING: Release — cleared only after the delivery bit.
                ledger.in_flight(c).store(0, Ordering::Release);
                if joinable {
                    state.store(HOLDING | seq, Ordering::Release);
                    point("faults.task-held");
                    state.store(FINISHING | seq, Ordering::Release);
                    if !q.task_done() {
                        unexpected(me, "task_done() refused a task this consumer got");
                        me.board.add(Word::TaskDoneErrors, 1);
                    }
                }
                state.store(0, Ordering::Release);
            }
            Err(GetTimeoutError::Timeout) => state.store(0, Ordering::Release),
            Err(e) => panic!("consumer {c}: {e}"),
        }
    }
    state.store(0, Ordering::Release);
    Ok(())
}

/// The spare producer (plain queues, as many rings as producers): tries to
/// claim a ring now and then and lets it go at once. Each success is
/// reported; the parent checks that some holder was dead or gone then.
fn spare((setup, queue): (Setup, QueueArgs)) -> EntryResult {
    let (_dog, me) = begin(&setup, "q-spare");
    let me = &me;
    let AnyQueue::Plain(q) = AnyQueue::open(&queue.name, false) else {
        unreachable!()
    };
    let mut n = 0u64;
    while !should_stop(me) {
        match q.sender() {
            Ok(s) => {
                me.board.report(Report::SpareClaim, me.inc, 0, 0, n);
                n += 1;
                drop(s);
            }
            Err(RoleError::NoFreeRing { .. }) => {}
            Err(e) => unexpected(me, &format!("spare claim: {e}")),
        }
        std::thread::sleep(Duration::from_millis(7));
    }
    Ok(())
}

/// Joinable probe `announce` (see `joinable::probes`): gets (and is
/// killed by its failpoint).
fn probe_announce((setup, name): (Setup, String)) -> EntryResult {
    let (_dog, _me) = begin(&setup, "jq-probe");
    let q = AnyQueue::open(&name, true);
    q.get_timeout(Duration::from_secs(5)).expect("get the task");
    // No `tasks.announced` failpoint in this build: nothing held.
    q.task_done();
    Ok(())
}

/// Joinable probe `hold`: gets one task, says so and waits to be killed.
fn probe_hold((setup, name): (Setup, String)) -> EntryResult {
    let (_dog, me) = begin(&setup, "jq-probe");
    let q = AnyQueue::open(&name, true);
    q.get_timeout(Duration::from_secs(5)).expect("get the task");
    // ORDERING: Release — the parent kills us once it sees this.
    me.board.slot(me.slot, 0).store(1, Ordering::Release);
    shmring_testkit::sleep_forever();
}

/// Joinable probe `attach`: opens the queue and leaves.
fn probe_attach((setup, name): (Setup, String)) -> EntryResult {
    let (_dog, _me) = begin(&setup, "jq-probe");
    drop(AnyQueue::open(&name, true));
    Ok(())
}
