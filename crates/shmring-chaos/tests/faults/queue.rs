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
//!   deaths made on purpose whose answer is certain (see [`probes`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmring::queue::{JoinError, JoinableQueue, Queue, QueueOptions};
use shmring::CreateOptions;
use shmring_chaos::faults::board::{now_ns, IncWord, Word};
use shmring_chaos::faults::hook::{Action, CONSUMER_VAR};
use shmring_chaos::ledger::{Counter, Ledger, CONSUMERS, MAX_SEQ, PRODUCERS};
use shmring_chaos::order::OrderCheck;
use shmring_chaos::split_tag;
use shmring_testkit::unique_name;

use crate::fleet::{Fate, Fleet, Gone, Proc, Rng};
use crate::queue_roles::{self, AnyQueue, FINISHING, GETTING, HOLDING, STATE_MASK};
use crate::tally::{Knobs, Tally};

const PRODUCER_POINTS: [&str; 4] = [
    "ring.claimed",
    "ring.payload-written",
    "ring.header-written",
    "ring.published",
];
const CONSUMER_KILL_POINTS: [&str; 3] = ["mpmc.copied", "mpmc.cas-done", "faults.consumer-got"];
const CONSUMER_STOP_POINTS: [&str; 2] = ["mpmc.copied", "mpmc.cas-done"];
const TASK_POINTS: [&str; 2] = ["tasks.announced", "faults.task-held"];

/// Board slot of the joinable probes.
const PROBE_SLOT: usize = 10;

/// A round that does not end within this long is a wedge.
const ROUND_LIMIT: Duration = Duration::from_secs(40);
/// How long `join` may take, at most (a timeout is a wedge).
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// One `join` of the parent's joiner thread.
struct JoinRun {
    start: u64,
    result: Result<(), JoinError>,
    end: u64,
}

/// The parent joins the queue again and again during the whole round, so
/// that every stop and kill happens while some `join` is waiting.
struct Joiner {
    rx: mpsc::Receiver<JoinRun>,
    over: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Joiner {
    fn start(queue: Arc<AnyQueue>) -> Joiner {
        let (tx, rx) = mpsc::channel();
        let over = Arc::new(AtomicBool::new(false));
        let flag = over.clone();
        let thread = std::thread::spawn(move || {
            let AnyQueue::Joinable(q) = &*queue else {
                unreachable!("a joiner for a plain queue")
            };
            // ORDERING: Relaxed — a flag of this process; the channel orders
            // the results.
            while !flag.load(Ordering::Relaxed) {
                let start = now_ns();
                let result = q.join_timeout(JOIN_LIMIT);
                let end = now_ns();
                let timed_out = matches!(result, Err(JoinError::Timeout));
                if tx.send(JoinRun { start, result, end }).is_err() || timed_out {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Joiner { rx, over, thread }
    }

    /// Ends the loop (after the join under way) and returns what came.
    fn stop(self) -> Vec<JoinRun> {
        // ORDERING: Relaxed — see `start`.
        self.over.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.rx.try_iter().collect()
    }
}

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
        probes(fleet, tally);
    }
    while rounds < 2 || started.elapsed() < budget {
        let maxsize = if joinable {
            [8, 8, 1, 1, 0, 0][rounds as usize % 6]
        } else {
            [1, 8][rounds as usize % 2]
        };
        let stop_only = joinable && rounds % 2 == 1;
        fleet.kill_stopped = !stop_only;
        let round = Round::start(fleet, tally, knobs, joinable, stop_only, maxsize);
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
        _maxsize: u64,
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

    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FQ_NAME", self.name.clone()),
            ("FQ_JOINABLE", u64::from(self.joinable).to_string()),
            ("FQ_WEDGE_MS", self.knobs.wedge_ms.to_string()),
        ]
    }

    fn spawn_producer(&mut self, p: usize, pred: u64) -> Proc {
        let mut envs = self.envs();
        envs.push(("FQ_TARGET", self.target[p].to_string()));
        envs.push(("FQ_PRED", pred.to_string()));
        let rng = &mut self.fleet.rng;
        let mode = if rng.chance(2) { "sender" } else { "put" };
        envs.push(("FQ_MODE", mode.to_string()));
        let bystander = if !self.stop_only && rng.chance(6) {
            1 + rng.below(30)
        } else {
            0
        };
        envs.push(("FQ_BYSTANDER", bystander.to_string()));
        let fate = if bystander != 0 {
            Fate::Never
        } else {
            producer_fate(rng, self.stop_only)
        };
        let proc = self.fleet.spawn("q-producer", p, &envs, fate);
        self.producer_incs.push(proc.inc);
        proc
    }

    fn spawn_consumer(&mut self, c: usize) -> Proc {
        let mut envs = self.envs();
        // The hook keeps its in-flight word naming the record it takes.
        envs.push((CONSUMER_VAR, c.to_string()));
        let fate = consumer_fate(&mut self.fleet.rng, self.stop_only, self.joinable);
        self.fleet.spawn("q-consumer", c, &envs, fate)
    }

    fn producer_done(&self, p: usize) -> bool {
        // ORDERING: Acquire — pairs with the producers' Release stores.
        self.ledger.producer(p).0.load(Ordering::Acquire) >= self.target[p]
    }

    fn run(mut self, maxsize: u64) {
        let options = QueueOptions {
            maxsize,
            max_message: 64,
            ring_bytes: 4096,
            producers: PRODUCERS as u64,
        };
        let opts = CreateOptions::default();
        let queue = if self.joinable {
            AnyQueue::Joinable(
                JoinableQueue::create(&self.name, options, &opts).expect("create joinable queue"),
            )
        } else {
            AnyQueue::Plain(Queue::create(&self.name, options, &opts).expect("create queue"))
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
            let envs = self.envs();
            self.spare = Some(self.fleet.spawn("q-spare", 0, &envs, Fate::Never));
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
                    .any(|r| matches!(r.result, Err(JoinError::Timeout)))
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
        let (stop_only, joinable) = (self.stop_only, self.joinable);
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
        let _ = joinable;
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
                    // Killed right after announcing a take, before trying
                    // it: the record is still queued, nothing is lost.
                    _ if how == "q-consumer at tasks.announced" => Held::Nothing,
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
        while let Ok(buf) = queue.get(Some(Duration::ZERO)) {
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
        q.put(probe.clone(), Some(Duration::from_secs(2)))
            .map_err(|e| format!("put: {e}"))?;
        match q.get(Some(Duration::from_secs(2))) {
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

    /// Each `join` answer against the deaths of the round: `PeerDied` only
    /// with a death that could have taken a task before it returned (never
    /// in a round without kills), and no more tasks lost than such deaths;
    /// `Ok` never while a consumer killed holding a task (before the join
    /// began) is unaccounted for; never a timeout.
    fn judge_joins(&mut self, joins: &[JoinRun], wedged: &mut Vec<String>) {
        let mut used = vec![false; self.deaths.len()];
        let mut forgiven = vec![false; self.deaths.len()];
        for run in joins {
            self.tally.joins += 1;
            match run.result {
                Ok(()) => {
                    let unaccounted = self
                        .deaths
                        .iter()
                        .zip(&forgiven)
                        .filter(|(d, f)| d.held == Held::Surely && d.at < run.start && !**f)
                        .count();
                    if unaccounted != 0 {
                        eprintln!(
                            "faults: UNSEEN DEATH: join returned Ok although {unaccounted} \
                             consumer(s) had died holding a task before it began"
                        );
                        self.tally.unseen_deaths += 1;
                    }
                }
                Err(JoinError::PeerDied { lost }) => {
                    self.tally.peer_died += 1;
                    let mut candidates = 0u64;
                    for (i, d) in self.deaths.iter().enumerate() {
                        if d.at < run.end {
                            if d.held == Held::Surely {
                                forgiven[i] = true;
                            }
                            if d.held != Held::Nothing && !used[i] && candidates < lost.max(1) {
                                used[i] = true;
                                candidates += 1;
                            }
                        }
                    }
                    if candidates == 0 || candidates < lost {
                        eprintln!(
                            "faults: FALSE DEATH: join returned PeerDied {{ lost: {lost} }} with \
                             {candidates} death(s) that could have taken a task (a round \
                             without kills: {}; kills in the round: {})",
                            self.stop_only,
                            self.deaths.len()
                        );
                        self.tally.false_deaths += 1;
                    }
                }
                Err(e) => wedged.push(format!("join: {e}")),
            }
        }
    }

    /// Every sequence number of this round: delivered once, or in doubt
    /// (its producer was killed putting it), or in flight with a killed
    /// consumer; nothing delivered that was never put.
    fn account(&mut self) {
        let l = &self.ledger;
        for p in 0..PRODUCERS {
            let (next, pushing) = l.producer(p);
            // ORDERING: Acquire — every producer is gone.
            let (mut next_v, pushing_v) = (
                next.load(Ordering::Acquire),
                pushing.load(Ordering::Acquire),
            );
            let end = if pushing_v == next_v + 1 {
                l.set_in_doubt(p, next_v);
                next_v += 1;
                // ORDERING: Release — the next round starts past it.
                next.store(next_v, Ordering::Release);
                next_v
            } else {
                next_v
            };
            for seq in self.start[p]..end {
                self.tally.messages += 1;
                if l.delivered(p, seq) {
                    continue;
                }
                if l.in_doubt(p, seq) {
                    self.tally.in_doubt += 1;
                } else if self.dead_in_flight.contains(&(p as u32, seq as u32)) {
                    self.tally.in_flight_lost += 1;
                } else {
                    if self.tally.lost < 10 {
                        eprintln!("faults: LOST producer {p} seq {seq} ({})", self.name);
                    }
                    self.tally.lost += 1;
                }
            }
            for seq in end..(end + 64).min(MAX_SEQ) {
                if l.delivered(p, seq) {
                    eprintln!("faults: producer {p} seq {seq} delivered but never put");
                    l.add(Counter::Torn, 1);
                }
            }
        }
    }

    /// The spare may hold a ring only when fewer than all rings were held
    /// by producers alive at that moment; a successor's claim must come
    /// within the liveness bound of its predecessor's death.
    fn judge_claims(&mut self) {
        let (reports, _) = self.fleet.board.reports(self.first_report);
        let board = &self.fleet.board;
        let value = |inc: u64, w: IncWord| board.inc_value(inc, w).unwrap_or(0);
        for r in reports {
            match r.kind {
                shmring_chaos::faults::board::Report::SpareClaim => {
                    self.tally.spare_claims += 1;
                    let holders = self
                        .producer_incs
                        .iter()
                        .filter(|&&inc| {
                            let claimed = value(inc, IncWord::ClaimedAt);
                            let died = value(inc, IncWord::DiedAt);
                            let releasing = value(inc, IncWord::ReleasingAt);
                            claimed != 0
                                && claimed < r.at
                                && (died == 0 || died > r.at)
                                && (releasing == 0 || releasing > r.at)
                        })
                        .count();
                    if holders >= PRODUCERS {
                        let stopped: Vec<u64> = self
                            .producer_incs
                            .iter()
                            .copied()
                            .filter(|&inc| {
                                self.fleet
                                    .stops_of(inc)
                                    .iter()
                                    .any(|&(a, b)| a <= r.at && r.at <= b)
                            })
                            .collect();
                        eprintln!(
                            "faults: FALSE DEATH: the spare got a producer ring at {} while all \
                             {holders} holders lived (stopped then: {stopped:?})",
                            r.at
                        );
                        self.tally.false_deaths += 1;
                    }
                }
                shmring_chaos::faults::board::Report::SuccessorClaim => {
                    self.tally.successor_claims += 1;
                    let Some(died) = self.fleet.died_at(r.blamed) else {
                        eprintln!(
                            "faults: FALSE DEATH: producer {} took over the ring of {}, which \
                             was never killed",
                            r.reporter, r.blamed
                        );
                        self.tally.false_deaths += 1;
                        continue;
                    };
                    let from = died.max(r.since);
                    let waited =
                        r.at.saturating_sub(from)
                            .saturating_sub(self.fleet.stopped_during(r.reporter, from, r.at));
                    self.tally.notice(waited);
                    if waited > self.knobs.bound_ns() {
                        eprintln!(
                            "faults: UNSEEN DEATH: producer {}'s ring was claimed {} ms after \
                             its death (bound {} ms)",
                            r.blamed,
                            waited / 1_000_000,
                            self.knobs.bound_ns() / 1_000_000
                        );
                        self.tally.unseen_deaths += 1;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Two deaths whose `join` answer is certain, made on purpose once per
/// scenario (the random rounds meet them only now and then):
///
/// * a consumer killed right after announcing a take (`tasks.announced`),
///   before it took anything: the item stays queued, another consumer
///   takes it and marks it done, and `join` must return `Ok` (nobody died
///   holding a task);
/// * a consumer killed holding a task, after which a new process attaches
///   (and may take over the dead one's peer row) before anyone joins:
///   `join` must return `PeerDied { lost: 1 }` (the task was lost, and
///   nobody has been told yet).
fn probes(fleet: &mut Fleet, tally: &mut Tally) {
    let opts = CreateOptions::default();
    // ORDERING: Release — before the probe children start.
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    for probe in ["announce", "hold"] {
        let name = unique_name("faults-jq-probe");
        let q = JoinableQueue::<Vec<u8>>::create(&name, QueueOptions::default(), &opts)
            .expect("create joinable queue");
        q.put(b"task".to_vec(), None).expect("put a task");
        let envs = [("FQ_NAME", name.clone()), ("FJ_PROBE", probe.to_string())];
        let fate = match probe {
            "announce" => Fate::At("tasks.announced", 1, Action::Kill),
            _ => Fate::Never,
        };
        let mut p = fleet.spawn("jq-probe", PROBE_SLOT, &envs, fate);
        let deadline = Instant::now() + Duration::from_secs(20);
        let gone = loop {
            // ORDERING: Acquire — pairs with the probe's Release.
            if probe == "hold" && fleet.board.slot(PROBE_SLOT, 0).swap(0, Ordering::AcqRel) == 1 {
                fleet.kill(&mut p);
            }
            if let Some(gone) = fleet.poll(&mut p, &mut |_| Fate::Never) {
                break Some(gone);
            }
            if Instant::now() > deadline {
                fleet
                    .failures
                    .push(format!("joinable probe {probe} did not end"));
                fleet.kill(&mut p);
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match gone {
            Some(Gone::Killed(_)) => {}
            Some(Gone::Exited(s)) if s.success() && probe == "announce" => {
                println!("faults: no `tasks.announced` failpoint here: that probe is skipped");
                continue;
            }
            Some(other) => {
                fleet.unexpected(&p, &other);
                continue;
            }
            None => continue,
        }
        let answer = match probe {
            "announce" => {
                let got = q.get(Some(Duration::from_secs(5)));
                if got.is_err() || q.task_done().is_err() {
                    fleet.failures.push(format!(
                        "the task a consumer killed before taking it was not there: {got:?}"
                    ));
                    continue;
                }
                q.join_timeout(Duration::from_secs(10))
            }
            _ => {
                // A newcomer attaches (taking the first free peer row) and leaves.
                let newcomer = fleet.spawn(
                    "jq-probe",
                    PROBE_SLOT,
                    &[
                        ("FQ_NAME", name.clone()),
                        ("FJ_PROBE", "attach".to_string()),
                    ],
                    Fate::Never,
                );
                let mut newcomer = newcomer;
                match fleet
                    .end_all(&mut [&mut newcomer], Duration::from_secs(20))
                    .pop()
                    .flatten()
                {
                    Some(Gone::Exited(s)) if s.success() => {}
                    Some(other) => fleet.unexpected(&newcomer, &other),
                    None => {}
                }
                q.join_timeout(Duration::from_secs(10))
            }
        };
        tally.joins += 1;
        match (probe, answer) {
            ("announce", Ok(())) | ("hold", Err(JoinError::PeerDied { lost: 1 })) => {}
            ("announce", other) => {
                eprintln!(
                    "faults: FALSE DEATH: join returned {other:?} after a consumer was killed \
                     announcing a take, before it took anything (the task was then done)"
                );
                tally.false_deaths += 1;
            }
            (_, other) => {
                eprintln!(
                    "faults: UNSEEN DEATH: join returned {other:?} after a consumer was killed \
                     holding a task and a newcomer attached (expected PeerDied {{ lost: 1 }})"
                );
                tally.unseen_deaths += 1;
            }
        }
    }
}
