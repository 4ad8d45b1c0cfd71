//! JoinableQueue crash recovery: `join` never hangs because a process died
//! holding (or putting) a task; it reports the loss as
//! `JoinError::PeerDied`.

use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmring::process::{Entry, EntryResult};
use shmring::queue::{JoinError, JoinTimeoutError, JoinableQueue};
use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, Watchdog};

/// The failpoint a child dies at (empty: none).
static DIE_AT: OnceLock<String> = OnceLock::new();
/// The failpoint a child stalls at, once (empty: none).
static STALL_AT: OnceLock<String> = OnceLock::new();

fn die_at(name: &'static str, _context: &[u8]) {
    if DIE_AT.get().is_some_and(|v| v == name) {
        shmring_chaos::die();
    }
    // A live process stalled (as if SIGSTOPped, throttled or swapped out)
    // at this step, once.
    if STALL_AT.get().is_some_and(|v| v == name) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::thread::sleep(Duration::from_millis(700)));
    }
}

/// Arms [`die_at`] in this child: it dies at `die` and stalls at `stall`.
fn arm(die: String, stall: String) {
    DIE_AT.set(die).unwrap();
    STALL_AT.set(stall).unwrap();
    shmring::core::failpoint::set_hook(Some(die_at));
}

/// A child that dies: the queue, and the failpoint it dies at.
type DyingEntry = Entry<(JoinableQueue<u64>, String)>;

/// Gets one task and dies holding it.
fn get_and_die((q, die): (JoinableQueue<u64>, String)) -> EntryResult {
    arm(die, String::new());
    q.get_timeout(Duration::from_secs(10))?;
    shmring_chaos::die();
}
static GET_AND_DIE: DyingEntry = shmring::entry!(get_and_die);

/// Dies inside `get`, at the failpoint `die`.
fn die_in_get((q, die): (JoinableQueue<u64>, String)) -> EntryResult {
    arm(die, String::new());
    let _ = q.get_timeout(Duration::from_secs(10));
    panic!("the failpoint did not fire");
}
static DIE_IN_GET: DyingEntry = shmring::entry!(die_in_get);

/// Dies inside `put`, at the failpoint `die`.
fn die_in_put((q, die): (JoinableQueue<u64>, String)) -> EntryResult {
    arm(die, String::new());
    let _ = q.put(99);
    panic!("the failpoint did not fire");
}
static DIE_IN_PUT: DyingEntry = shmring::entry!(die_in_put);

/// Gets one task, stalling at `stall` on the way, and marks it done.
fn stall_in_get((q, stall): (JoinableQueue<u64>, String)) -> EntryResult {
    arm(String::new(), stall);
    q.get_timeout(Duration::from_secs(10))?;
    q.task_done()?;
    Ok(())
}
static STALL_IN_GET: Entry<(JoinableQueue<u64>, String)> = shmring::entry!(stall_in_get);

#[test]
fn child_entry() {
    run_child(&[&GET_AND_DIE, &DIE_IN_GET, &DIE_IN_PUT, &STALL_IN_GET]);
}

fn queue() -> (String, JoinableQueue<u64>) {
    let name = unique_name("crash-joinable");
    let q = JoinableQueue::builder().create(&name).unwrap();
    (name, q)
}

/// Runs `role` against the queue and waits until it killed itself.
fn run_and_kill(q: &JoinableQueue<u64>, role: &DyingEntry, die_at: &str) {
    let child = spawn_child("child_entry", role, (q, die_at.to_string()));
    let status = wait_child(child, Duration::from_secs(30));
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{}: {status}",
        role.id()
    );
}

/// Joins (giving up after 10 s, far beyond the liveness slice a dead
/// holder is found within) and checks the result.
fn join_expect(q: &JoinableQueue<u64>, expect: Result<(), JoinTimeoutError>) {
    assert_eq!(q.join_timeout(Duration::from_secs(10)), expect);
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn join_reports_a_consumer_killed_holding_a_task() {
    let _dog = Watchdog::new(Duration::from_secs(60), "consumer killed holding");
    let (_, q) = queue();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    run_and_kill(&q, &GET_AND_DIE, "");
    for _ in 0..2 {
        q.get_timeout(Duration::from_secs(1)).unwrap();
        q.task_done().unwrap();
    }
    // Its slot names it dead: forgiven at the first slow check (one slice).
    join_expect(
        &q,
        Err(JoinTimeoutError::Join(JoinError::PeerDied { lost: 1 })),
    );
    // And the queue works on.
    q.put(5).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    join_expect(&q, Ok(()));
}

#[test]
fn join_recovers_a_task_lost_between_take_and_hold() {
    let _dog = Watchdog::new(Duration::from_secs(60), "consumer killed in get");
    // Copied out, announced in its slot, taken by the CAS: in every window
    // the task is in the dying consumer's slot (as a take in flight), or
    // still queued. Killed before the CAS, nothing was lost: a joiner that
    // finds the dead slot while the head its intent names has not moved
    // drops it without reporting a loss (the task is still queued).
    for (point, lost) in [
        ("mpmc.copied", 0),
        ("tasks.announced", 0),
        ("mpmc.cas-done", 1),
    ] {
        let (_, q) = queue();
        q.put(1).unwrap();
        run_and_kill(&q, &DIE_IN_GET, point);
        assert_eq!(q.is_empty(), lost == 1, "{point}");
        if lost == 0 {
            // The joiner's first slow check drops the dead slot; the task
            // is still queued, so it waits.
            assert_eq!(
                q.join_timeout(Duration::from_millis(300)),
                Err(JoinTimeoutError::Timeout),
                "{point}"
            );
            assert_eq!(q.unfinished_tasks(), 1, "{point}: only the queued task");
            q.get_timeout(Duration::from_secs(1)).unwrap();
            q.task_done().unwrap();
            join_expect(&q, Ok(()));
        } else {
            join_expect(
                &q,
                Err(JoinTimeoutError::Join(JoinError::PeerDied { lost })),
            );
        }
    }
}

#[test]
fn a_loss_recovered_before_anyone_joins_is_reported_once() {
    // A consumer killed holding a task, then another process taking over
    // its peer row (which drops the dead slot at attach) before anyone
    // joins: the first join still reports the loss, the next one not.
    let _dog = Watchdog::new(Duration::from_secs(60), "loss before join");
    let (name, q) = queue();
    q.put(1).unwrap();
    run_and_kill(&q, &GET_AND_DIE, "");
    let newcomer = JoinableQueue::<u64>::open(&name).unwrap();
    drop(newcomer);
    join_expect(
        &q,
        Err(JoinTimeoutError::Join(JoinError::PeerDied { lost: 1 })),
    );
    join_expect(&q, Ok(()));
}

#[test]
fn a_put_killed_before_publishing_leaves_no_task() {
    let _dog = Watchdog::new(Duration::from_secs(60), "producer killed in put");
    // Not published: no task exists, nothing is lost, `join` returns at once.
    for point in ["ring.payload-written", "ring.header-written"] {
        let (_, q) = queue();
        run_and_kill(&q, &DIE_IN_PUT, point);
        assert_eq!(q.unfinished_tasks(), 0, "{point}");
        assert!(q.is_empty());
        join_expect(&q, Ok(()));
    }
    // Published, then killed: the task is in the queue like any other.
    let (_, q) = queue();
    run_and_kill(&q, &DIE_IN_PUT, "ring.published");
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(
        q.join_timeout(Duration::from_millis(300)),
        Err(JoinTimeoutError::Timeout)
    );
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 99);
    q.task_done().unwrap();
    join_expect(&q, Ok(()));
}

#[test]
fn a_stalled_live_consumer_is_never_written_off() {
    // The review's finding: a live process stopped for longer than two
    // liveness slices inside get/task_done made `join` report a death, and
    // its later `task_done` then ate a newer task's count. Stalled 700 ms
    // at each step, it must be waited for, and `join` must return `Ok`
    // only once it marked its task done.
    let _dog = Watchdog::new(Duration::from_secs(120), "stalled consumer");
    for point in [
        "tasks.announced",
        "mpmc.copied",
        "mpmc.cas-done",
        "tasks.done",
    ] {
        let (_, q) = queue();
        q.put(1).unwrap();
        let child = spawn_child("child_entry", &STALL_IN_GET, (&q, point.to_string()));
        // A second task put while the consumer is stalled must not be
        // consumed by its late `task_done`.
        std::thread::sleep(Duration::from_millis(100));
        q.put(2).unwrap();
        let started = Instant::now();
        assert_eq!(
            q.join_timeout(Duration::from_millis(1200)),
            Err(JoinTimeoutError::Timeout),
            "{point}: join returned with task 2 queued"
        );
        assert!(started.elapsed() >= Duration::from_millis(1200));
        let status = wait_child(child, Duration::from_secs(30));
        assert!(status.success(), "{point}: {status}");
        assert_eq!(q.unfinished_tasks(), 1, "{point}: task 2 is still queued");
        assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 2);
        q.task_done().unwrap();
        join_expect(&q, Ok(()));
    }
}

#[test]
fn a_live_slow_consumer_is_never_forgiven() {
    let _dog = Watchdog::new(Duration::from_secs(60), "slow consumer");
    let (name, q) = queue();
    q.put(1).unwrap();
    let worker = std::thread::spawn(move || {
        let q = JoinableQueue::<u64>::open(&name).unwrap();
        q.get().unwrap();
        std::thread::sleep(Duration::from_millis(600)); // several slices
        q.task_done().unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(q.join_timeout(Duration::from_secs(10)), Ok(()));
    assert!(started.elapsed() >= Duration::from_millis(400));
    worker.join().unwrap();
}
