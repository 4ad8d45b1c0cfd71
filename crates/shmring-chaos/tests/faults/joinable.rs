//! The JoinableQueue's joins: the parent's joiner thread, which joins again
//! and again during a whole round, and two deaths made on purpose whose
//! `join` answer is certain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmring::process::Process;
use shmring::queue::{JoinError, JoinTimeoutError, JoinableQueue};
use shmring_chaos::faults::board::{now_ns, Word};
use shmring_chaos::faults::hook::Action;
use shmring_testkit::unique_name;

use crate::fleet::{Fate, Fleet, Gone};
use crate::queue_roles::{self, AnyQueue};
use crate::tally::Tally;

/// How long `join` may take, at most (a timeout is a wedge).
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// Board slot of the joinable probes.
const PROBE_SLOT: usize = 10;

/// One `join` of the parent's joiner thread.
pub struct JoinRun {
    pub start: u64,
    pub result: Result<(), JoinTimeoutError>,
    pub end: u64,
}

/// The parent joins the queue again and again during the whole round, so
/// that every stop and kill happens while some `join` is waiting.
pub struct Joiner {
    pub rx: mpsc::Receiver<JoinRun>,
    over: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Joiner {
    pub fn start(queue: Arc<AnyQueue>) -> Joiner {
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
                let timed_out = matches!(result, Err(JoinTimeoutError::Timeout));
                if tx.send(JoinRun { start, result, end }).is_err() || timed_out {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Joiner { rx, over, thread }
    }

    /// Ends the loop (after the join under way) and returns what came.
    pub fn stop(self) -> Vec<JoinRun> {
        // ORDERING: Relaxed — see `start`.
        self.over.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.rx.try_iter().collect()
    }
}

/// Two deaths whose `join` answer is certain, made on purpose once per
/// scenario (the random rounds meet them only now and then):
///
/// * a consumer killed right after announcing a take (`tasks.announced`),
///   before it took anything: the item stays queued; a `join` that finds
///   the dead slot while the record is still there must not count a loss
///   (it times out: the task is queued); then another consumer takes it
///   and marks it done, and `join` must return `Ok`. (Had the record been
///   taken before any joiner looked at the dead slot, the documented
///   answer is a loss: shared state cannot tell who took it.)
/// * a consumer killed holding a task, after which a new process attaches
///   (and may take over the dead one's peer row) before anyone joins:
///   `join` must return `PeerDied { lost: 1 }` (the task was lost, and
///   nobody has been told yet).
pub fn probes(fleet: &mut Fleet, tally: &mut Tally) {
    // ORDERING: Release — before the probe children start.
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    for probe in ["announce", "hold"] {
        let name = unique_name("faults-jq-probe");
        let q = JoinableQueue::<Vec<u8>>::builder()
            .create(&name)
            .expect("create joinable queue");
        q.put(b"task".to_vec()).expect("put a task");
        let (entry, fate) = match probe {
            "announce" => (
                &queue_roles::PROBE_ANNOUNCE,
                Fate::At("tasks.announced", 1, Action::Kill),
            ),
            _ => (&queue_roles::PROBE_HOLD, Fate::Never),
        };
        let queue = name.clone();
        let mut p = fleet.spawn("jq-probe", PROBE_SLOT, fate, |setup| {
            Process::new(entry, (setup, queue))
        });
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
                // A joiner finds the dead slot with the record still there.
                match q.join_timeout(Duration::from_millis(300)) {
                    Err(JoinTimeoutError::Timeout) => {}
                    other => {
                        eprintln!(
                            "faults: FALSE DEATH: join returned {other:?} while the task of a \
                             consumer killed announcing its take was still queued"
                        );
                        tally.false_deaths += 1;
                        continue;
                    }
                }
                let got = q.get_timeout(Duration::from_secs(5));
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
                let queue = name.clone();
                let newcomer = fleet.spawn("jq-probe", PROBE_SLOT, Fate::Never, |setup| {
                    Process::new(&queue_roles::PROBE_ATTACH, (setup, queue))
                });
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
            ("announce", Ok(()))
            | ("hold", Err(JoinTimeoutError::Join(JoinError::PeerDied { lost: 1 }))) => {}
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
