//! Adversarial review of the queue facades: one test per finding, each
//! failing on the code it was written against (see the commit that fixes
//! it).

use std::time::Duration;

use shmring::queue::{JoinError, JoinTimeoutError, JoinableQueue};
use shmring_testkit::{unique_name, Watchdog};

/// Finding 3: `task_done` from a handle that holds nothing marks done "one
/// held by another handle", and took the first slot in row order that held
/// one, dead or alive. When that was a gone holder's, the task this call
/// really finished stayed counted in its live holder's slot, which that
/// holder never empties (the task was handed on): `join` then waited for
/// as long as the live holder lived, although every task was done or lost
/// with a gone peer. A live holder's slot must come first.
///
/// Peers are attachments here (a dropped handle is gone for good, as a
/// dead process is): the parent (row 0) puts two tasks, handle A (row 1)
/// and handle C (row 2) get one each, A is dropped holding its task, and
/// the parent finishes C's (handed over to it).
#[test]
fn task_done_for_a_handed_over_task_prefers_a_live_holder() {
    let _dog = Watchdog::new(Duration::from_secs(60), "task_done prefers live holders");
    let name = unique_name("review-task-done");
    let parent = JoinableQueue::<u64>::builder().create(&name).unwrap();
    parent.put(1).unwrap();
    parent.put(2).unwrap();
    let a = JoinableQueue::<u64>::open(&name).unwrap();
    let c = JoinableQueue::<u64>::open(&name).unwrap();
    assert_eq!(a.get().unwrap(), 1);
    assert_eq!(c.get().unwrap(), 2);
    drop(a); // gone, holding task 1: lost
    assert_eq!(parent.unfinished_tasks(), 2);
    // Task 2, handed over by C, is done.
    parent.task_done().unwrap();
    assert_eq!(
        parent.join_timeout(Duration::from_secs(5)),
        Err(JoinTimeoutError::Join(JoinError::PeerDied { lost: 1 })),
        "every task is done or lost with a gone peer"
    );
    assert_eq!(parent.unfinished_tasks(), 0);
    assert!(c.task_done().is_err(), "C's task was marked done already");
}
