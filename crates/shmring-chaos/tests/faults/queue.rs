//! The bounded queue scenario (`Queue` with `maxsize` 1 or 8) and the
//! `JoinableQueue` scenario, in rounds.
//!
//! A round creates a queue with as many producer rings as producers (so a
//! restarted producer must take its killed predecessor's ring over), and
//! runs three producers, two consumers and (plain queues) a spare producer
//! that keeps trying to claim a ring. Producers put their share of
//! sequence numbers, then exit; they and the consumers are killed (at
//! random, at the ring, MPMC and task failpoints) and stopped (at random,
//! at `mpmc.copied`, `mpmc.cas-done`, `tasks.announced`, between `get`
//! and `task_done`) and restarted; a producer now and then hands the queue
//! to a bystander and kills itself. Every other JoinableQueue round only
//! stops, never kills.
//!
//! Checked per round:
//! * every sequence number delivered exactly once, except the one a
//!   killed producer was putting (in doubt) and the one a killed consumer
//!   was taking (in flight); nothing torn, FIFO per producer incarnation;
//! * no *wedge*: a producer refused while the queue is seen empty for
//!   longer than the wedge bound; the round not finishing; after everyone
//!   stopped and the parent drained the queue, `len()` not 0, or a `put`
//!   and `get` round trip of a fresh handle failing;
//! * a restarted producer claims its ring within the liveness bound of its
//!   predecessor's death (a bystander must not keep the dead alive);
//! * the spare never gets a ring while all holders live (stopped or not);
//! * JoinableQueue: `join` (by the parent, once all is put) returns `Ok`
//!   when no process died holding a task, `PeerDied` only when one did
//!   (never in a round without kills), never times out; every task was
//!   done when it returned. Each JoinableQueue scenario begins with two
//!   deaths made on purpose whose answer is certain (`joinable.rs`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::process::Process;
use shmring::queue::{JoinTimeoutError, JoinableQueue, Queue};
use shmring_chaos::faults::board::{now_ns, Word};
use shmring_chaos::faults::hook::Action;
use shmring_chaos::ledger::{Ledger, CONSUMERS, MAX_SEQ, PRODUCERS};
use shmring_chaos::order::OrderCheck;
use shmring_chaos::split_tag;
use shmring_testkit::unique_name;

use crate::fleet::{Fate, Fleet, Gone, Proc, Rng};
use crate::joinable::{self, JoinRun, Joiner};
use crate::queue_roles::{
    self, AnyQueue, ProducerArgs, QueueArgs, FINISHING, GETTING, HOLDING, STATE_MASK,
};
use crate::tally::{Knobs, Tally};

mod check;

const PRODUCER_POINTS: [&str; 4] = [
    "ring.claimed",
    "ring.payload-written",
    "ring.header-written",
    "ring.published",
];
const CONSUMER_KILL_POINTS: [&str; 3] = ["mpmc.copied", "mpmc.cas-done", "faults.consumer-got"];
const CONSUMER_STOP_POINTS: [&str; 2] = ["mpmc.copied", "mpmc.cas-done"];
const TASK_POINTS: [&str; 2] = ["tasks.announced", "faults.task-held"];

/// A round that does not end within this long is a wedge.
const ROUND_LIMIT: Duration = Duration::from_secs(40);

/// What a killed process may have taken with it (JoinableQueue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// Surely one task: killed between `get` and `task_done`.
    Surely,
    /// Perhaps one: killed inside `get`, `put` or `task_done`.
    Perhaps,
    Nothing,
}

struct Death {
    at: u64,
    held: Held,
}

struct Round<'a> {
    fleet: &'a mut Fleet,
    tally: &'a mut Tally,
    ledger: Ledger,
    knobs: &'a Knobs,
    joinable: bool,
    /// A round that only stops, never kills.
    stop_only: bool,
    name: String,
    start: [u64; PRODUCERS],
    target: [u64; PRODUCERS],
    producers: Vec<Option<Proc>>,
    consumers: Vec<Option<Proc>>,
    spare: Option<Proc>,
    deaths: Vec<Death>,
    dead_in_flight: HashSet<(u32, u32)>,
    /// Incarnations of this round's producers.
    producer_incs: Vec<u64>,
    first_report: usize,
}

fn producer_fate(rng: &mut Rng, stop_only: bool) -> Fate {
    match rng.below(5) {
        0 | 1 if !stop_only => Fate::Kill(rng.millis(5, 20)),
        2 if !stop_only => Fate::At(rng.pick(&PRODUCER_POINTS), 1 + rng.below(60), Action::Kill),
        0 | 2 => Fate::Stop(rng.millis(5, 60)),
        _ => Fate::At(rng.pick(&PRODUCER_POINTS), 1 + rng.below(60), Action::Stop),
    }
}

fn consumer_fate(rng: &mut Rng, stop_only: bool, joinable: bool) -> Fate {
    let n = 1 + rng.below(40);
    match rng.below(6) {
        0 | 1 if !stop_only => Fate::Kill(rng.millis(5, 20)),
        2 if !stop_only => {
            let point = if joinable && rng.chance(2) {
                rng.pick(&TASK_POINTS)
            } else {
                rng.pick(&CONSUMER_KILL_POINTS)
            };
            Fate::At(point, n, Action::Kill)
        }
        0 | 2 => Fate::Stop(rng.millis(5, 60)),
        _ => {
            let point = if joinable && rng.chance(2) {
                rng.pick(&TASK_POINTS)
            } else {
                rng.pick(&CONSUMER_STOP_POINTS)
            };
            Fate::At(point, n, Action::Stop)
        }
    }
}

fn after_stop(rng: &mut Rng, stop_only: bool) -> Fate {
    match rng.below(5) {
        0 | 1 if !stop_only => Fate::Kill(rng.millis(5, 40)),
        4 => Fate::Never,
        _ => Fate::Stop(rng.millis(20, 100)),
    }
}

/// Runs rounds for `budget` (at least two: `maxsize` 1 and 8 for plain
/// queues; with and without kills for joinable ones).
pub fn run(fleet: &mut Fleet, tally: &mut Tally, knobs: &Knobs, joinable: bool, budget: Duration) {
    let started = Instant::now();
    let mut rounds = 0u64;
    let what = if joinable { "joinable" } else { "queue" };
    let before = tally.snapshot(fleet);
    if joinable {
        joinable::probes(fleet, tally);
    }
    while rounds < 2 || started.elapsed() < budget {
        let maxsize = if joinable {
            [8, 8, 1, 1, 0, 0][rounds as usize % 6]
        } else {
            [1, 8][rounds as usize % 2]
        };
        let stop_only = joinable && rounds % 2 == 1;
        fleet.kill_stopped = !stop_only;
        let round = Round::start(fleet, tally, knobs, joinable, stop_only);
        round.run(maxsize);
        fleet.kill_stopped = true;
        rounds += 1;
    }
    tally.phase_line(fleet, what, &before, format!("{rounds} rounds"));
}

impl<'a> Round<'a> {
    fn start(
        fleet: &'a mut Fleet,
        tally: &'a mut Tally,
        knobs: &'a Knobs,
        joinable: bool,
        stop_only: bool,
    ) -> Round<'a> {
        let ledger = Ledger::open(&fleet.ledger_path).expect("open ledger");
        let mut start = [0; PRODUCERS];
        let mut target = [0; PRODUCERS];
        for p in 0..PRODUCERS {
            // ORDERING: Acquire — the previous round's producers are gone.
            start[p] = ledger.producer(p).0.load(Ordering::Acquire);
            target[p] = (start[p] + knobs.quota).min(MAX_SEQ - 1);
        }
        let (_, first_report) = fleet.board.reports(usize::MAX);
        Round {
            fleet,
            tally,
            ledger,
            knobs,
            joinable,
            stop_only,
            name: unique_name(if joinable { "faults-jq" } else { "faults-q" }),
            start,
            target,
            producers: Vec::new(),
            consumers: Vec::new(),
            spare: None,
            deaths: Vec::new(),
            dead_in_flight: HashSet::new(),
            producer_incs: Vec::new(),
            first_report,
        }
    }

    /// The round's queue, as its children are told it.
    fn queue_args(&self) -> QueueArgs {
        QueueArgs {
            name: self.name.clone(),
            joinable: self.joinable,
            wedge_ms: self.knobs.wedge_ms,
        }
    }

    fn spawn_producer(&mut self, p: usize, pred: u64) -> Proc {
        let queue = self.queue_args();
        let target = self.target[p];
        let rng = &mut self.fleet.rng;
        let sender = rng.chance(2);
        let bystander = if !self.stop_only && rng.chance(6) {
            1 + rng.below(30)
        } else {
            0
        };
        let fate = if bystander != 0 {
            Fate::Never
        } else {
            producer_fate(rng, self.stop_only)
        };
        let args = ProducerArgs {
            target,
            pred,
            sender,
            bystander,
        };
        let proc = self.fleet.spawn("q-producer", p, fate, |setup| {
            Process::new(&queue_roles::PRODUCER, (setup, queue, args))
        });
        self.producer_incs.push(proc.inc);
        proc
    }

    fn spawn_consumer(&mut self, c: usize) -> Proc {
        let queue = self.queue_args();
        let fate = consumer_fate(&mut self.fleet.rng, self.stop_only, self.joinable);
        self.fleet.spawn("q-consumer", c, fate, |mut setup| {
            // The hook keeps its in-flight word naming the record it takes.
            setup.consumer = Some(c);
            Process::new(&queue_roles::CONSUMER, (setup, queue))
        })
    }

    fn producer_done(&self, p: usize) -> bool {
        // ORDERING: Acquire — pairs with the producers' Release stores.
        self.ledger.producer(p).0.load(Ordering::Acquire) >= self.target[p]
    }

    fn run(mut self, maxsize: u64) {
        let queue = if self.joinable {
            AnyQueue::Joinable(
                JoinableQueue::builder()
                    .maxsize(maxsize)
                    .max_message(64)
                    .ring_bytes(4096)
                    .producers(PRODUCERS as u64)
                    .create(&self.name)
                    .expect("create joinable queue"),
            )
        } else {
            AnyQueue::Plain(
                Queue::builder()
                    .maxsize(maxsize)
                    .max_message(64)
                    .ring_bytes(4096)
                    .producers(PRODUCERS as u64)
                    .create(&self.name)
                    .expect("create queue"),
            )
        };
        let queue = Arc::new(queue);
        // ORDERING: Release — before any child of this round starts.
        self.fleet
            .board
            .word(Word::Stop)
            .store(0, Ordering::Release);
        for c in 0..CONSUMERS {
            self.fleet.board.slot(c, 0).store(0, Ordering::Release);
        }
        for p in 0..PRODUCERS {
            let proc = self.spawn_producer(p, 0);
            self.producers.push(Some(proc));
        }
        for c in 0..CONSUMERS {
            let proc = self.spawn_consumer(c);
            self.consumers.push(Some(proc));
        }
        if !self.joinable {
            let queue = self.queue_args();
            self.spare = Some(self.fleet.spawn("q-spare", 0, Fate::Never, |setup| {
                Process::new(&queue_roles::SPARE, (setup, queue))
            }));
        }
        let started = Instant::now();
        let mut all_put: Option<(Instant, u64)> = None;
        let joiner = match &*queue {
            AnyQueue::Joinable(_) => Some(Joiner::start(queue.clone())),
            AnyQueue::Plain(_) => None,
        };
        let mut joins = Vec::new();
        let mut wedged = Vec::new();
        let refused_before = self.fleet.board.get(Word::ProducerWedges);
        let failures_before = self.fleet.failures.len();
        loop {
            self.step();
            if self.fleet.failures.len() >= failures_before + 3 {
                // Children keep failing (recorded): restarting them is futile.
                break;
            }
            let refused = self.fleet.board.get(Word::ProducerWedges) - refused_before;
            if refused != 0 {
                // Printed by the producer; no need to wait for more.
                wedged.push(format!("{refused} producer(s) refused on an empty queue"));
                break;
            }
            let done = (0..PRODUCERS).all(|p| self.producer_done(p) && self.producers[p].is_none());
            if done && all_put.is_none() {
                all_put = Some((Instant::now(), now_ns()));
            }
            if let Some(j) = &joiner {
                joins.extend(j.rx.try_iter());
                // The round ends with a join that began after the last put.
                if let Some((_, put_ns)) = all_put {
                    if joins.iter().any(|r: &JoinRun| r.start > put_ns) {
                        break;
                    }
                }
                if joins
                    .iter()
                    .any(|r| matches!(r.result, Err(JoinTimeoutError::Timeout)))
                {
                    break;
                }
            } else if let Some((at, _)) = all_put {
                if queue.is_empty() {
                    break;
                }
                if at.elapsed() > Duration::from_secs(10) {
                    wedged.push(format!(
                        "consumers left {} messages in the queue for 10 s",
                        queue.len()
                    ));
                    break;
                }
            }
            if started.elapsed() > ROUND_LIMIT {
                let todo: Vec<_> = (0..PRODUCERS)
                    .map(|p| {
                        // ORDERING: Acquire — a snapshot for the message.
                        let next = self.ledger.producer(p).0.load(Ordering::Acquire);
                        self.target[p] - next.min(self.target[p])
                    })
                    .collect();
                wedged.push(format!(
                    "round did not finish in {ROUND_LIMIT:?} (messages still to put: {todo:?}, \
                     queue len {}, empty {})",
                    queue.len(),
                    queue.is_empty()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.finish(
            &queue,
            joiner,
            joins,
            all_put.map(|(_, ns)| ns),
            wedged,
            maxsize,
        );
    }

    /// One pass over the children: reap, fault, restart.
    fn step(&mut self) {
        let stop_only = self.stop_only;
        for p in 0..PRODUCERS {
            let Some(mut proc) = self.producers[p].take() else {
                continue;
            };
            match self
                .fleet
                .poll(&mut proc, &mut |rng| after_stop(rng, stop_only))
            {
                None => self.producers[p] = Some(proc),
                Some(gone) => self.producer_gone(p, proc, gone, true),
            }
        }
        for c in 0..CONSUMERS {
            let Some(mut proc) = self.consumers[c].take() else {
                continue;
            };
            match self
                .fleet
                .poll(&mut proc, &mut |rng| after_stop(rng, stop_only))
            {
                None => self.consumers[c] = Some(proc),
                Some(gone) => {
                    self.consumer_gone(c, &proc, gone);
                    let next = self.spawn_consumer(c);
                    self.consumers[c] = Some(next);
                }
            }
        }
        if let Some(mut spare) = self.spare.take() {
            match self.fleet.poll(&mut spare, &mut |_| Fate::Never) {
                None => self.spare = Some(spare),
                Some(gone) => self.fleet.unexpected(&spare, &gone),
            }
        }
    }

    fn producer_gone(&mut self, p: usize, proc: Proc, gone: Gone, restart: bool) {
        let (next, pushing) = self.ledger.producer(p);
        // ORDERING: Acquire — the producer is reaped.
        let (next, pushing) = (
            next.load(Ordering::Acquire),
            pushing.load(Ordering::Acquire),
        );
        match gone {
            Gone::Killed(_) => {
                let held = if pushing == next + 1 {
                    Held::Perhaps
                } else {
                    Held::Nothing
                };
                let at = self.fleet.died_at(proc.inc).unwrap_or_else(now_ns);
                self.deaths.push(Death { at, held });
                if restart && (next < self.target[p] || pushing == next + 1) {
                    let next_proc = self.spawn_producer(p, proc.inc);
                    self.producers[p] = Some(next_proc);
                }
            }
            Gone::Exited(s) if s.success() => {
                if next < self.target[p] && !self.fleet.board.stopping() {
                    self.fleet.failures.push(format!(
                        "producer {p} exited at {next} before its target {}",
                        self.target[p]
                    ));
                }
            }
            other => self.fleet.unexpected(&proc, &other),
        }
    }

    fn consumer_gone(&mut self, c: usize, proc: &Proc, gone: Gone) {
        // ORDERING: SeqCst — the consumer is reaped; we reset its words for
        // its successor.
        if let Some(t) = split_tag(self.ledger.in_flight(c).swap(0, Ordering::SeqCst)) {
            if matches!(gone, Gone::Killed(_)) {
                self.dead_in_flight.insert(t);
            }
        }
        let state = self.fleet.board.slot(c, 0).swap(0, Ordering::SeqCst);
        match gone {
            Gone::Killed(how) => {
                let held = match state & STATE_MASK {
                    // Killed right after announcing a take, before its
                    // CAS: the record is still queued and nothing is lost,
                    // but a joiner that finds the dead slot only after
                    // someone took that record counts it lost (shared state
                    // cannot tell who took it; documented).
                    _ if how == "q-consumer at tasks.announced" => Held::Perhaps,
                    HOLDING => Held::Surely,
                    GETTING | FINISHING => Held::Perhaps,
                    _ => Held::Nothing,
                };
                let at = self.fleet.died_at(proc.inc).unwrap_or_else(now_ns);
                self.deaths.push(Death { at, held });
            }
            Gone::Exited(s) if s.success() && self.fleet.board.stopping() => {}
            other => self.fleet.unexpected(proc, &other),
        }
    }

    fn finish(
        mut self,
        queue: &AnyQueue,
        joiner: Option<Joiner>,
        mut joins: Vec<JoinRun>,
        all_put_ns: Option<u64>,
        mut wedged: Vec<String>,
        maxsize: u64,
    ) {
        // ORDERING: Release — the children's Acquire loads end their loops.
        self.fleet
            .board
            .word(Word::Stop)
            .store(1, Ordering::Release);
        // Every child at once: a stopped one may hold what another waits for.
        let mut procs: Vec<(char, usize, Proc)> = Vec::new();
        for p in 0..PRODUCERS {
            procs.extend(self.producers[p].take().map(|proc| ('p', p, proc)));
        }
        for c in 0..CONSUMERS {
            procs.extend(self.consumers[c].take().map(|proc| ('c', c, proc)));
        }
        procs.extend(self.spare.take().map(|proc| ('s', 0, proc)));
        let mut all: Vec<&mut Proc> = procs.iter_mut().map(|(_, _, p)| p).collect();
        let gones = self.fleet.end_all(&mut all, Duration::from_secs(30));
        for ((what, i, proc), gone) in procs.into_iter().zip(gones) {
            let Some(gone) = gone else { continue };
            match what {
                'p' => self.producer_gone(i, proc, gone, false),
                'c' => self.consumer_gone(i, &proc, gone),
                _ => {
                    if !matches!(&gone, Gone::Exited(s) if s.success()) {
                        self.fleet.unexpected(&proc, &gone);
                    }
                }
            }
        }
        // Drain what is left with the parent's handle (which also lets a
        // join under way end, when the round was cut short).
        let mut order = OrderCheck::new();
        let mut drained = 0u64;
        while let Ok(buf) = queue.try_get() {
            queue_roles::deliver(&self.ledger, &buf, &mut order);
            queue.task_done();
            drained += 1;
        }
        if let Some(j) = joiner {
            joins.extend(j.stop());
        }
        let final_join = all_put_ns.and_then(|t| joins.iter().find(|r| r.start > t));
        if let Some(r) = final_join {
            if drained != 0 {
                self.fleet.failures.push(format!(
                    "{drained} tasks were still queued when join returned {:?}",
                    r.result
                ));
            }
        }
        let len = queue.len();
        if len != 0 {
            wedged.push(format!(
                "len() is {len} on a drained queue (maxsize {maxsize})"
            ));
        }
        if let Err(e) = self.round_trip() {
            wedged.push(format!(
                "a put/get round trip failed on a drained queue: {e}"
            ));
        }
        self.judge_joins(&joins, &mut wedged);
        if !wedged.is_empty() {
            eprintln!(
                "faults: WEDGE in a {} round (maxsize {maxsize}): {wedged:#?}",
                if self.joinable { "joinable" } else { "queue" }
            );
            self.tally.wedges += 1;
            self.tally.notes.extend(wedged);
        }
        self.account();
        self.judge_claims();
        drop(self.ledger);
    }

    /// A fresh handle puts and gets one message (and, joinable, marks it
    /// done and joins) on the drained queue.
    fn round_trip(&self) -> Result<(), String> {
        let q = AnyQueue::open(&self.name, self.joinable);
        let probe = b"probe".to_vec();
        q.put_timeout(probe.clone(), Duration::from_secs(2))
            .map_err(|e| format!("put: {e}"))?;
        match q.get_timeout(Duration::from_secs(2)) {
            Ok(got) if got == probe => {}
            Ok(other) => return Err(format!("got {other:?} instead of the probe")),
            Err(e) => return Err(format!("get: {e}")),
        }
        if let AnyQueue::Joinable(j) = &q {
            j.task_done().map_err(|e| format!("task_done: {e}"))?;
            j.join_timeout(Duration::from_secs(2))
                .map_err(|e| format!("join: {e}"))?;
        }
        // `len` counts, `is_empty` looks at the rings: both must agree.
        let len = q.len();
        if len != 0 || !q.is_empty() {
            return Err(format!("len() {len} after the round trip"));
        }
        Ok(())
    }
}
