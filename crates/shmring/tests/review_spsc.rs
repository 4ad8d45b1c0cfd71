//! The SPSC facade (`spsc::Ring`) against a role taken over while a waiter
//! decides that the role's holder is gone, with real processes for the
//! dead holders (the test binary re-executes itself to run an entry point;
//! see `shmring_testkit`).

use shmring::core::wait::Until;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use shmring::core::error::{PopError, PushError};
use shmring::process::{Entry, EntryResult};
use shmring::spsc::{Consumer, Producer, Ring};
use shmring_testkit::{child, run_child, sleep_forever, unique_name, wait_child, Watchdog};

// The dev dependency on this crate enables the failpoint this test takes
// the role over at.
const _: () = assert!(
    shmring::core::failpoint::ENABLED,
    "tests/review_spsc.rs needs the `failpoints` feature (see Cargo.toml)"
);

// Entry points of the children: each takes a role, says so, and waits
// for its SIGKILL.

fn hold_consumer((ring,): (Ring,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(120), "child holding the consumer");
    let _c = ring.consumer()?;
    println!("HOLDING");
    sleep_forever();
}
static HOLD_CONSUMER: Entry<(Ring,)> = shmring::entry!(hold_consumer);

fn hold_producer((ring,): (Ring,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(120), "child holding the producer");
    let _p = ring.producer()?;
    println!("HOLDING");
    sleep_forever();
}
static HOLD_PRODUCER: Entry<(Ring,)> = shmring::entry!(hold_producer);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&HOLD_CONSUMER, &HOLD_PRODUCER]);
}

/// Which role the hook takes over: 1 the consumer's, 2 the producer's.
static TAKE_OVER: AtomicU8 = AtomicU8::new(0);
/// The ring's name, for the hook.
static NAME: Mutex<String> = Mutex::new(String::new());
/// What the hook took over, kept alive (and attached) until the test ends.
static TAKEN: Mutex<Vec<(Option<Consumer>, Option<Producer>)>> = Mutex::new(Vec::new());

/// At `role.holder-found-dead` (a waiter found the role's holder dead and
/// is about to act on it), once: another attachment takes the role over,
/// as a restarted process would, and makes the waiter's wait end (pops a
/// record to make room, or pushes one).
fn take_over_when_found_dead(failpoint: &'static str, _context: &[u8]) {
    if failpoint != "role.holder-found-dead" {
        return;
    }
    let which = TAKE_OVER.swap(0, Ordering::SeqCst);
    if which == 0 {
        return;
    }
    let name = NAME.lock().unwrap().clone();
    let ring = Ring::open(&name).unwrap();
    let taken = if which == 1 {
        let mut c = ring.consumer().expect("take the dead consumer's role");
        let mut buf = Vec::new();
        c.try_pop(&mut buf).unwrap();
        (Some(c), None)
    } else {
        let mut p = ring.producer().expect("take the dead producer's role");
        p.try_push(b"from the new producer").unwrap();
        (None, Some(p))
    };
    TAKEN.lock().unwrap().push(taken);
}

/// Spawns a child that takes `role` on `ring` (`holder` takes it), and
/// kills it once it holds it: the role word keeps the dead child's token.
fn dead_holder(ring: &Ring, holder: &Entry<(Ring,)>, role: &str) {
    use std::io::BufRead;
    let mut child = child("child_entry", holder, (ring,))
        .stdout(std::process::Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let holding = std::io::BufReader::new(out)
        .lines()
        .any(|l| l.unwrap().contains("HOLDING"));
    assert!(holding, "the {role} child never took its role");
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

/// Review finding: a waiting producer (consumer) asked whether the
/// consumer's (producer's) holder was gone and, on "yes", reported
/// `Closed`, but the probe and the report were not one step: a process
/// that took the role over in between (as `claim_role` allows for a dead
/// holder) was ignored, and the caller got `Closed` while a live peer held
/// the role and had even made room (sent a record). The decision must be
/// the CAS to `GONE` the pipe uses (`mark_gone`): the takeover's CAS and
/// the waiter's race on the same word, and the waiter that loses goes on
/// waiting.
#[test]
fn a_role_taken_over_while_a_waiter_finds_its_holder_dead_is_not_reported_closed() {
    let _dog = Watchdog::new(Duration::from_secs(120), "spsc takeover");
    shmring::core::failpoint::set_hook(Some(take_over_when_found_dead));

    // A producer waits for room; the consumer died; a new one takes over.
    let name = unique_name("review-spsc-consumer");
    *NAME.lock().unwrap() = name.clone();
    let ring = Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&name)
        .unwrap();
    let mut producer = ring.producer().unwrap();
    let record = [7u8; 200];
    while producer.try_push(&record).is_ok() {}
    dead_holder(&ring, &HOLD_CONSUMER, "consumer");
    TAKE_OVER.store(1, Ordering::SeqCst);
    let pushed = producer.push(&record, Until::after(Duration::from_secs(20)));
    assert_eq!(TAKE_OVER.load(Ordering::SeqCst), 0, "the hook never ran");
    assert!(
        !matches!(pushed, Err(PushError::Closed)),
        "push reported Closed while a live consumer held the role"
    );
    assert!(pushed.is_ok(), "{pushed:?}");
    drop(producer);

    // A consumer waits for a record; the producer died; a new one takes over.
    let name = unique_name("review-spsc-producer");
    *NAME.lock().unwrap() = name.clone();
    let ring2 = Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&name)
        .unwrap();
    let mut consumer = ring2.consumer().unwrap();
    dead_holder(&ring2, &HOLD_PRODUCER, "producer");
    TAKE_OVER.store(2, Ordering::SeqCst);
    let mut buf = Vec::new();
    let popped = consumer.pop(&mut buf, Until::after(Duration::from_secs(20)));
    assert_eq!(TAKE_OVER.load(Ordering::SeqCst), 0, "the hook never ran");
    assert!(
        !matches!(popped, Err(PopError::Closed)),
        "pop reported Closed while a live producer held the role"
    );
    assert!(popped.is_ok(), "{popped:?}");
    assert_eq!(buf, b"from the new producer");
    drop(consumer);

    shmring::core::failpoint::set_hook(None);
    TAKEN.lock().unwrap().clear();
    drop((ring, ring2));
}

/// Review finding 3 (issue 11 review): the engine's `Producer`/`Consumer`
/// are the core handles, whose public `set_role` replaced (and dropped)
/// the role the engine handed them, and with it the claim on the ring's
/// role word. The handle went on producing while the role stood free: a
/// second producer (here in the same process, as easily in another one)
/// claimed it, two writers on a single-producer ring.
#[test]
fn set_role_on_an_engine_handle_does_not_give_the_role_up() {
    let _dog = Watchdog::new(Duration::from_secs(60), "set_role keeps the role");
    let name = unique_name("review-set-role");
    let ring = Ring::builder().create(&name).unwrap();
    // Another attachment, as another process would have.
    let other = Ring::open(&name).unwrap();
    let mut producer = ring.producer().unwrap();
    assert!(other.producer().is_err(), "the role is held");
    assert!(!producer.set_role(|| false), "the engine's role stays");
    assert!(
        other.producer().is_err(),
        "a second producer claimed the role of a live producer handle"
    );
    let mut consumer = ring.consumer().unwrap();
    assert!(!consumer.set_role(|| false), "the engine's role stays");
    assert!(
        other.consumer().is_err(),
        "a second consumer claimed the role of a live consumer handle"
    );
    producer.push(b"x", Until::Now).unwrap();
}

/// A ring handle hands out each role once at a time: a second `producer()`
/// (or `consumer()`) of the same attachment while the first handle lives
/// is refused like a live peer's claim (it used to succeed: two writers on
/// a single-producer ring, and the first drop freed the role under the
/// second).
#[test]
fn one_attachment_cannot_take_a_ring_role_twice() {
    let ring = Ring::new().unwrap();
    let producer = ring.producer().unwrap();
    match ring.producer() {
        Err(shmring::RoleError::RoleTaken { pid, .. }) => {
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("a second producer of one attachment: {other:?}"),
    }
    let consumer = ring.consumer().unwrap();
    assert!(
        ring.consumer().is_err(),
        "a second consumer of one attachment"
    );
    drop(producer);
    let _again = ring
        .producer()
        .expect("free again once the first is dropped");
    drop(consumer);
    let _again = ring
        .consumer()
        .expect("free again once the first is dropped");
}
