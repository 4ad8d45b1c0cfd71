//! The lock scenario: three workers take a `Lock` and an `RLock` (at
//! random, the `RLock` sometimes twice) and, inside, move a pair of board
//! words from equal to equal through unequal. Workers are killed (at
//! random, at `lock.acquire-cas`, `lock.releasing`, inside the critical
//! section), stopped (at random, inside the critical section) and now and
//! then hand the lock they hold to a bystander and kill themselves.
//!
//! Every `Acquired::OwnerDied` is a report of a death: the worker's
//! failpoint observer reads the lock's owner word at `lock.acquire-cas`,
//! the step before the CAS that replaced it, so the report names the
//! replaced holder's peer token exactly. The parent maps it to the
//! incarnation (each worker writes its tokens into the board) and checks
//! the report against the deaths it caused: a live (say, stopped) holder is
//! a *false death*; a takeover later than the liveness bound after the
//! death (a bystander keeping it alive) is an *unseen death*.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmring::lock::{AcquireTimeoutError, Acquired, Lock, LockShared, RLock, ReleaseError};
use shmring::process::{Entry, EntryResult, Process};
use shmring_chaos::faults::board::{now_ns, IncWord, Report, Word};
use shmring_chaos::faults::hook::{point, set_observer, Action, Setup};
use shmring_testkit::unique_name;

use crate::child::{begin, should_stop, spawn_bystander};
use crate::fleet::{Fate, Fleet, Gone, Proc, Rng};
use crate::tally::{Knobs, Tally};
use crate::verdict;

/// Board slot of the lock scenario: words 0/1 are lock 0's pair, 2/3 lock 1's.
const LOCK_SLOT: usize = 8;
const WORKERS: usize = 3;

/// The two locks' shared words in this worker (addresses), for the observer.
static LOCKS: OnceLock<[usize; 2]> = OnceLock::new();
/// Which lock this worker is acquiring.
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// The owner word as the last `lock.acquire-cas` of this acquire saw it.
static SEEN_OWNER: AtomicU64 = AtomicU64::new(0);

/// The owner word of lock `k` now (0 before the locks are recorded).
fn owner_of(k: usize) -> u64 {
    let Some(locks) = LOCKS.get() else { return 0 };
    // LockShared is all atomics, valid for any bytes and for concurrent
    // access; the address is the object region of a lock this process keeps
    // open for its whole life (see `worker`).
    // SAFETY: `locks[k]` came from `Segment::object_ptr` of a live lock
    // segment whose object region holds a LockShared (the facades check
    // its length when they attach).
    let shared = unsafe { &*(locks[k] as *const LockShared) };
    shared.owner()
}

fn observe(name: &'static str, _context: &[u8]) {
    if name != "lock.acquire-cas" {
        return;
    }
    // ORDERING: Relaxed (both) — this process's own bookkeeping.
    let k = CURRENT.load(Ordering::Relaxed);
    SEEN_OWNER.store(owner_of(k), Ordering::Relaxed);
}

/// Either lock, by index.
enum Either {
    Plain(Lock),
    Recursive(RLock),
}

impl Either {
    /// Python's unguarded `acquire(timeout=t)`: the lock stays held (the
    /// guard is leaked) until `release`.
    fn acquire(&self, timeout: Duration) -> Result<Acquired, AcquireTimeoutError> {
        match self {
            Either::Plain(l) => l.acquire_timeout(timeout).map(|g| g.leak()),
            Either::Recursive(l) => l.acquire_timeout(timeout).map(|g| g.leak()),
        }
    }

    fn release(&self) -> Result<(), ReleaseError> {
        match self {
            Either::Plain(l) => l.release(),
            Either::Recursive(l) => l.release(),
        }
    }

    fn segment(&self) -> &shmring::Segment {
        match self {
            Either::Plain(l) => l.segment(),
            Either::Recursive(l) => l.segment(),
        }
    }
}

/// A lock worker: the names of the `Lock` and the `RLock`, and after how
/// many critical sections it hands the lock it holds to a bystander and
/// kills itself (0: never).
pub static WORKER: Entry<(Setup, String, String, u64)> = shmring::entry!(worker);

/// A lock worker (see the module docs).
fn worker((setup, lock, rlock, bystander_at): (Setup, String, String, u64)) -> EntryResult {
    let (_dog, me) = begin(&setup, "lock-worker");
    let me = &me;
    let locks = [
        Either::Plain(Lock::open(&lock).expect("open lock")),
        Either::Recursive(RLock::open(&rlock).expect("open rlock")),
    ];
    for (k, w) in [(0, IncWord::Token0), (1, IncWord::Token1)] {
        // ORDERING: Release — read by the parent after the run.
        me.board
            .inc(me.inc, w)
            .store(locks[k].segment().peer_token(), Ordering::Release);
    }
    let _ = LOCKS.set([0, 1].map(|k| locks[k].segment().object_ptr().as_ptr() as usize));
    set_observer(observe);
    let mut rng = Rng(me.inc.wrapping_mul(0x9E37_79B9) | 1);
    let mut rounds = 0u64;
    while !should_stop(me) {
        let k = rng.below(2) as usize;
        // ORDERING: Relaxed (both) — this process's own bookkeeping.
        CURRENT.store(k, Ordering::Relaxed);
        SEEN_OWNER.store(0, Ordering::Relaxed);
        let started = now_ns();
        let got = match locks[k].acquire(Duration::from_secs(10)) {
            Ok(got) => got,
            Err(e) => {
                let holder = owner_of(k);
                eprintln!(
                    "faults: WEDGE: lock {k} not acquired in 10 s by {}: {e} (held by token \
                     {holder:#x})",
                    me.inc
                );
                me.board.add(Word::LockWedges, 1);
                me.board
                    .report(Report::LockTimeout, me.inc, holder, started, k as u64);
                continue;
            }
        };
        if got.owner_died() {
            // ORDERING: Relaxed — written by this thread's observer.
            let blamed = SEEN_OWNER.load(Ordering::Relaxed);
            me.board
                .report(Report::OwnerDied, me.inc, blamed, started, k as u64);
        }
        let again = k == 1 && rng.chance(2);
        if again {
            assert_eq!(locks[1].acquire(Duration::ZERO), Ok(Acquired::Yes));
        }
        let (a, b) = (
            me.board.slot(LOCK_SLOT, 2 * k),
            me.board.slot(LOCK_SLOT, 2 * k + 1),
        );
        // ORDERING: Relaxed on the pair — the lock orders these accesses.
        let (va, vb) = (a.load(Ordering::Relaxed), b.load(Ordering::Relaxed));
        if got == Acquired::Yes && va != vb {
            eprintln!("faults: lock {k} taken with Yes while half updated ({va} vs {vb})");
            me.board.add(Word::LockViolations, 1);
        }
        // ORDERING: Relaxed — as above.
        a.store(va.max(vb) + 1, Ordering::Relaxed);
        point("faults.lock-held");
        rounds += 1;
        if rounds == bystander_at {
            match &locks[k] {
                Either::Plain(l) => spawn_bystander(me, l),
                Either::Recursive(l) => spawn_bystander(me, l),
            }
            me.die();
        }
        if rng.chance(4) {
            std::thread::sleep(Duration::from_micros(rng.below(300)));
        }
        // ORDERING: Relaxed — as above.
        b.store(va.max(vb) + 1, Ordering::Relaxed);
        if again {
            locks[1].release().expect("release the inner level");
        }
        locks[k].release().expect("release a lock we hold");
        me.board.add(Word::LockRounds, 1);
    }
    Ok(())
}

fn fate(rng: &mut Rng) -> Fate {
    let n = 1 + rng.below(6);
    match rng.below(8) {
        0 => Fate::Kill(rng.millis(5, 40)),
        1 | 2 => Fate::At("faults.lock-held", n, Action::Kill),
        3 => Fate::At(
            rng.pick(&["lock.acquire-cas", "lock.releasing"]),
            n,
            Action::Kill,
        ),
        4 => Fate::Stop(rng.millis(5, 40)),
        _ => Fate::At("faults.lock-held", n, Action::Stop),
    }
}

fn after_stop(rng: &mut Rng) -> Fate {
    if rng.chance(2) {
        Fate::Kill(rng.millis(5, 40))
    } else {
        Fate::Stop(rng.millis(10, 80))
    }
}

/// Runs the lock scenario for `budget`.
pub fn run(fleet: &mut Fleet, tally: &mut Tally, knobs: &Knobs, budget: Duration) {
    let before = tally.snapshot(fleet);
    let names = [unique_name("faults-lock"), unique_name("faults-rlock")];
    let _lock = Lock::builder().create(&names[0]).expect("create lock");
    let _rlock = RLock::builder().create(&names[1]).expect("create rlock");
    for w in 0..4 {
        fleet.board.slot(LOCK_SLOT, w).store(0, Ordering::Release);
    }
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    let (_, first_report) = fleet.board.reports(usize::MAX);
    let first_inc = fleet.peek_inc();
    let spawn = |fleet: &mut Fleet, w: usize| {
        let bystander = if fleet.rng.chance(5) {
            1 + fleet.rng.below(20)
        } else {
            0
        };
        let f = fate(&mut fleet.rng);
        let (lock, rlock) = (names[0].clone(), names[1].clone());
        fleet.spawn("lock-worker", w, f, |setup| {
            Process::new(&WORKER, (setup, lock, rlock, bystander))
        })
    };
    let mut workers: Vec<_> = (0..WORKERS).map(|w| spawn(fleet, w)).collect();
    let started = Instant::now();
    let rounds_before = fleet.board.get(Word::LockRounds);
    while started.elapsed() < budget {
        for w in workers.iter_mut() {
            match fleet.poll(w, &mut after_stop) {
                None => continue,
                Some(Gone::Killed(_)) => {}
                Some(gone) => fleet.unexpected(w, &gone),
            }
            *w = spawn(fleet, w.slot);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fleet.board.word(Word::Stop).store(1, Ordering::Release);
    let mut all: Vec<&mut Proc> = workers.iter_mut().collect();
    let gones = fleet.end_all(&mut all, Duration::from_secs(30));
    for (w, gone) in workers.iter().zip(gones) {
        match gone {
            Some(Gone::Exited(s)) if s.success() => {}
            Some(Gone::Killed(_)) | None => {}
            Some(gone) => fleet.unexpected(w, &gone),
        }
    }
    // Map every worker's lock tokens to its incarnation (tokens are per
    // segment: the two locks' may coincide).
    let mut owner_of = HashMap::new();
    for inc in first_inc..fleet.peek_inc() {
        for (k, w) in [(0u64, IncWord::Token0), (1, IncWord::Token1)] {
            if let Some(token) = fleet.board.inc_value(inc, w).filter(|&t| t != 0) {
                owner_of.insert((k, token), inc);
            }
        }
    }
    let (reports, _) = fleet.board.reports(first_report);
    for r in reports.iter().filter(|r| r.kind == Report::LockTimeout) {
        let holder = owner_of.get(&(r.detail, r.blamed)).copied();
        let state = holder.map(|inc| {
            (
                fleet.board.inc_value(inc, IncWord::Pid),
                fleet.died_at(inc),
                fleet.stops_of(inc),
            )
        });
        eprintln!(
            "faults: lock {} wait of {} from {} to {} timed out; holder token {:#x} = \
             incarnation {holder:?} (pid, killed at, stops: {state:?})",
            r.detail, r.reporter, r.since, r.at, r.blamed
        );
    }
    let mut takeovers = 0;
    for r in reports.iter().filter(|r| r.kind == Report::OwnerDied) {
        takeovers += 1;
        let what = format!("OwnerDied of lock {}", r.detail);
        let blamed = owner_of.get(&(r.detail, r.blamed)).copied();
        verdict::judge(fleet, tally, knobs, &what, blamed, r);
    }
    let lock_rounds = fleet.board.get(Word::LockRounds) - rounds_before;
    let wedges = fleet.board.get(Word::LockWedges);
    if wedges != 0 {
        tally.wedges += wedges;
        tally
            .notes
            .push(format!("{wedges} lock waits of 10 s or more"));
        fleet
            .board
            .word(Word::LockWedges)
            .store(0, Ordering::Release);
    }
    tally.phase_line(
        fleet,
        "locks",
        &before,
        format!("{lock_rounds} critical sections, {takeovers} OwnerDied takeovers"),
    );
}
