//! Typed entry points between real processes: this test binary is the
//! executable the children run (`run_child` in `child_entry`).

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use shmring::lock::Lock;
use shmring::pipe::{Connection, Pipe};
use shmring::process::{
    Entry, EntryResult, Process, StartError, EXIT_BAD_ARGUMENTS, EXIT_FAILED, EXIT_UNREGISTERED,
};
use shmring::queue::Queue;
use shmring_testkit::{child, run_child, Watchdog};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// Receives one object of each kind and a plain value, in order, and
/// shows it has them: puts `scale * i` for i in 1..=3 on the queue while
/// holding the lock, then sends the label over the pipe.
fn many_kinds(
    (queue, lock, mut conn, scale, label): (Queue<u64>, Lock, Connection, u64, String),
) -> EntryResult {
    let guard = lock.acquire()?;
    for i in 1..=3 {
        queue.put(scale * i)?;
    }
    drop(guard);
    conn.send(&label)?;
    Ok(())
}
static MANY_KINDS: Entry<(Queue<u64>, Lock, Connection, u64, String)> = shmring::entry!(many_kinds);

fn fails((why,): (String,)) -> EntryResult {
    Err(why.into())
}
static FAILS: Entry<(String,)> = shmring::entry!(fails);

fn takes_a_queue((queue,): (Queue<u64>,)) -> EntryResult {
    queue.put(1)?;
    Ok(())
}
static TAKES_A_QUEUE: Entry<(Queue<u64>,)> = shmring::entry!(takes_a_queue);

/// The variable a prepared command sets for [`from_prepared_command`].
const PREPARED_VAR: &str = "SHMRING_TEST_PREPARED_VALUE";

/// Puts the number its command's own environment carries: shows that
/// `Process::with_command` keeps what the caller prepared.
fn from_prepared_command((queue,): (Queue<u64>,)) -> EntryResult {
    let value: u64 = std::env::var(PREPARED_VAR)?.parse()?;
    queue.put(value)?;
    Ok(())
}
static FROM_PREPARED_COMMAND: Entry<(Queue<u64>,)> = shmring::entry!(from_prepared_command);

/// Declared, and started below, but deliberately left out of
/// `child_entry`'s list.
fn not_listed(_: ()) -> EntryResult {
    Ok(())
}
static NOT_LISTED: Entry<()> = shmring::entry!(not_listed);

#[test]
fn child_entry() {
    run_child(&[
        &MANY_KINDS,
        &FAILS,
        &TAKES_A_QUEUE,
        &FROM_PREPARED_COMMAND,
        first_local_worker(),
        second_local_worker(),
    ]);
}

/// An entry point declared inside a function, from a local function named
/// `worker`; it fails, saying which one ran.
fn first_local_worker() -> &'static Entry<(u64,)> {
    fn worker((_,): (u64,)) -> EntryResult {
        Err("the first local worker ran".into())
    }
    static WORKER: Entry<(u64,)> = shmring::entry!(worker);
    &WORKER
}

/// Another one from another local function named `worker`, in the same
/// module; it succeeds.
fn second_local_worker() -> &'static Entry<(u64,)> {
    fn worker((_,): (u64,)) -> EntryResult {
        Ok(())
    }
    static WORKER: Entry<(u64,)> = shmring::entry!(worker);
    &WORKER
}

/// Review finding 2 (issue 11 review): an entry's id was only its
/// module path and function name, so two entry points made from local
/// functions of the same name in one module (each test declaring its own
/// `fn worker` and static, say) had the same id, and the child of the
/// second ran the first one listed: the wrong function, silently when the
/// argument types agree (here it fails, saying so).
#[test]
fn entries_of_local_functions_with_one_name_are_told_apart() {
    let _dog = Watchdog::new(Duration::from_secs(90), "local entries");
    assert_ne!(first_local_worker().id(), second_local_worker().id());
    let (code, err) = run_capturing(child(CHILD_TEST, second_local_worker(), (5,)));
    assert_eq!(code, Some(0), "stderr: {err}");
}

/// Starts `p` with its stderr piped, waits, and returns the exit code and
/// what it wrote there.
fn run_capturing(builder: shmring::process::ProcessBuilder) -> (Option<i32>, String) {
    let mut p = builder.stderr(Stdio::piped()).start().unwrap();
    let mut err = String::new();
    p.stderr().unwrap().read_to_string(&mut err).unwrap();
    let status = p.join_timeout(Duration::from_secs(60)).unwrap();
    (status.code(), err)
}

#[test]
fn objects_and_values_arrive_in_order() {
    let _dog = Watchdog::new(Duration::from_secs(90), "many kinds");
    let queue = new_queue();
    let lock = Lock::new().unwrap();
    let (mut mine, theirs) = Pipe::new(true).unwrap();
    let mut p = child(
        CHILD_TEST,
        &MANY_KINDS,
        (&queue, &lock, &theirs, 7, "seven".to_string()),
    )
    .start()
    .unwrap();
    drop(theirs); // transferred
    assert_eq!(mine.recv::<String>().unwrap(), "seven");
    let got: Vec<u64> = (0..3)
        .map(|_| queue.get_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    assert_eq!(got, [7, 14, 21]);
    assert!(p.join().unwrap().success());
    assert_eq!(p.exitcode(), Some(0));
    assert!(!lock.is_locked(), "the child's guard was released");
}

#[test]
fn an_entry_missing_from_run_child_is_a_clear_error_with_its_own_exit_code() {
    let _dog = Watchdog::new(Duration::from_secs(90), "unregistered");
    let (code, err) = run_capturing(child(CHILD_TEST, &NOT_LISTED, ()));
    assert_eq!(code, Some(EXIT_UNREGISTERED), "stderr: {err}");
    assert!(
        err.contains(NOT_LISTED.id()) && err.contains("not registered"),
        "stderr: {err}"
    );
    assert!(NOT_LISTED.id().contains("process_entries::not_listed@"));
}

#[test]
fn an_entry_that_fails_exits_with_its_message() {
    let _dog = Watchdog::new(Duration::from_secs(90), "failing entry");
    let (code, err) = run_capturing(child(CHILD_TEST, &FAILS, ("no coffee".to_string(),)));
    assert_eq!(code, Some(EXIT_FAILED));
    assert!(
        err.contains("no coffee") && err.contains(FAILS.id()),
        "stderr: {err}"
    );
}

#[test]
fn a_child_that_cannot_open_its_object_says_which_and_why() {
    let _dog = Watchdog::new(Duration::from_secs(90), "bad argument");
    let queue = new_queue();
    // The inheritance is prepared, then the variable that names the
    // descriptor is overwritten (as a confused or hostile environment would).
    let builder =
        child(CHILD_TEST, &TAKES_A_QUEUE, (&queue,)).env("SHMRING_PROCESS_ARG_0", "9:1:2:3");
    let (code, err) = run_capturing(builder);
    assert_eq!(code, Some(EXIT_BAD_ARGUMENTS), "stderr: {err}");
    assert!(
        err.contains("argument 0")
            && err.contains("Queue<u64>")
            && err.contains(TAKES_A_QUEUE.id()),
        "stderr: {err}"
    );
    assert_eq!(queue.len(), 0, "the child never reached its function");
}

#[test]
fn hand_over_errors_wait_for_start() {
    let (_mine, theirs) = Pipe::new(true).unwrap();
    let lock = Lock::new().unwrap();
    // The end is transferred to the first child's command (never started).
    let first = Process::new(
        &MANY_KINDS,
        (&new_queue(), &lock, &theirs, 1, String::new()),
    );
    drop(first);
    // The second hand-over of the same end fails; the builder still chains,
    // and start says which argument it was.
    let err = child(
        CHILD_TEST,
        &MANY_KINDS,
        (&new_queue(), &lock, &theirs, 1, String::new()),
    )
    .daemon(true)
    .start()
    .unwrap_err();
    match &err {
        StartError::Argument(failure) => {
            assert_eq!(failure.index, 2);
            assert!(failure.type_name.ends_with("Connection"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("argument 2"), "{err}");
    // A value too large for the environment is refused the same way.
    let err =
        Process::spawn(&FAILS, ("x".repeat(shmring::process::MAX_VALUE_BYTES + 1),)).unwrap_err();
    assert!(
        matches!(&err, StartError::Argument(f) if f.index == 0),
        "{err}"
    );
}

#[test]
fn a_prepared_command_keeps_its_settings_and_runs_the_entry() {
    let _dog = Watchdog::new(Duration::from_secs(90), "prepared command");
    let queue = new_queue();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(shmring_testkit::harness_args(CHILD_TEST))
        .env(PREPARED_VAR, "41");
    let mut p = Process::with_command(cmd, &FROM_PREPARED_COMMAND, (&queue,))
        .start()
        .unwrap();
    assert_eq!(queue.get_timeout(Duration::from_secs(60)).unwrap(), 41);
    assert!(p.join_timeout(Duration::from_secs(60)).unwrap().success());
    // An argument that cannot be handed over is reported by start, as
    // with `Process::new`.
    let cmd = std::process::Command::new(std::env::current_exe().unwrap());
    let too_large = "x".repeat(shmring::process::MAX_VALUE_BYTES + 1);
    let err = Process::with_command(cmd, &FAILS, (too_large,))
        .start()
        .unwrap_err();
    assert!(
        matches!(&err, StartError::Argument(f) if f.index == 0),
        "{err}"
    );
}

fn new_queue() -> Queue<u64> {
    Queue::builder().anonymous().unwrap()
}
