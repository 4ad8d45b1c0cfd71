//! JoinableQueue crash recovery: `join` never hangs because a process died
//! holding (or putting) a task; it reports the loss as
//! `JoinError::PeerDied`.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use shmring::queue::{JoinError, JoinableQueue, QueueOptions};
use shmring::{CreateOptions, OpenOptions};
use shmring_testkit::{role, spawn_role, unique_name, wait_child, Watchdog};

fn die_at(name: &'static str, _context: &[u8]) {
    if std::env::var("DIE_AT").is_ok_and(|v| v == name) {
        shmring_chaos::die();
    }
}

#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    shmring::core::failpoint::set_hook(Some(die_at));
    let q = JoinableQueue::<u64>::open(&std::env::var("QUEUE").unwrap(), &OpenOptions::default())
        .unwrap();
    match role.as_str() {
        // Gets one task and dies holding it.
        "get-and-die" => {
            q.get(Some(Duration::from_secs(10))).unwrap();
            shmring_chaos::die();
        }
        // Dies inside `get`, at the failpoint named by DIE_AT.
        "die-in-get" => {
            let _ = q.get(Some(Duration::from_secs(10)));
            panic!("the failpoint did not fire");
        }
        // Dies inside `put`, at the failpoint named by DIE_AT.
        "die-in-put" => {
            let _ = q.put(99, None);
            panic!("the failpoint did not fire");
        }
        other => panic!("unknown role {other}"),
    }
}

fn queue() -> (String, JoinableQueue<u64>) {
    let name = unique_name("crash-joinable");
    let q =
        JoinableQueue::create(&name, QueueOptions::default(), &CreateOptions::default()).unwrap();
    (name, q)
}

/// Runs `role` against the queue and waits until it killed itself.
fn run_and_kill(name: &str, role: &str, die_at: &str) {
    let child = spawn_role(
        "child_entry",
        role,
        &[("QUEUE", name.to_string()), ("DIE_AT", die_at.to_string())],
    )
    .spawn()
    .unwrap();
    let status = wait_child(child, Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{role}: {status}");
}

/// Joins and checks the result and that it came within `within`.
fn join_expect(q: &JoinableQueue<u64>, expect: Result<(), JoinError>, within: Duration) {
    let started = Instant::now();
    assert_eq!(q.join_timeout(Duration::from_secs(10)), expect);
    assert!(
        started.elapsed() < within,
        "join took {:?}",
        started.elapsed()
    );
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn join_reports_a_consumer_killed_holding_a_task() {
    let _dog = Watchdog::new(Duration::from_secs(60), "consumer killed holding");
    let (name, q) = queue();
    for i in 0..3 {
        q.put(i, None).unwrap();
    }
    run_and_kill(&name, "get-and-die", "");
    for _ in 0..2 {
        q.get(Some(Duration::from_secs(1))).unwrap();
        q.task_done().unwrap();
    }
    // Its slot names it dead: forgiven at the first slow check (one slice).
    join_expect(
        &q,
        Err(JoinError::PeerDied { lost: 1 }),
        Duration::from_secs(1),
    );
    // And the queue works on.
    q.put(5, None).unwrap();
    q.get(None).unwrap();
    q.task_done().unwrap();
    join_expect(&q, Ok(()), Duration::from_millis(100));
}

#[test]
fn join_recovers_a_task_lost_between_take_and_hold() {
    let _dog = Watchdog::new(Duration::from_secs(60), "consumer killed in get");
    // (`mpmc.counted`, a second point in this window, went with the
    // separate count: the CAS now takes the record and counts it at once.)
    let (name, q) = queue();
    q.put(1, None).unwrap();
    run_and_kill(&name, "die-in-get", "mpmc.cas-done");
    // Untracked by any slot: found stalled by two slow checks in a row.
    join_expect(
        &q,
        Err(JoinError::PeerDied { lost: 1 }),
        Duration::from_secs(2),
    );
}

#[test]
fn join_recovers_a_put_killed_before_publishing() {
    let _dog = Watchdog::new(Duration::from_secs(60), "producer killed in put");
    for point in ["tasks.added", "ring.header-written"] {
        let (name, q) = queue();
        run_and_kill(&name, "die-in-put", point);
        assert_eq!(q.unfinished_tasks(), 1);
        assert!(q.is_empty());
        join_expect(
            &q,
            Err(JoinError::PeerDied { lost: 1 }),
            Duration::from_secs(2),
        );
    }
}

#[test]
fn a_live_slow_consumer_is_never_forgiven() {
    let _dog = Watchdog::new(Duration::from_secs(60), "slow consumer");
    let (name, q) = queue();
    q.put(1, None).unwrap();
    let worker = std::thread::spawn(move || {
        let q = JoinableQueue::<u64>::open(&name, &OpenOptions::default()).unwrap();
        q.get(None).unwrap();
        std::thread::sleep(Duration::from_millis(600)); // several slices
        q.task_done().unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(q.join_timeout(Duration::from_secs(10)), Ok(()));
    assert!(started.elapsed() >= Duration::from_millis(400));
    worker.join().unwrap();
}
