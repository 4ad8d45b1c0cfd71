//! Dict: Python's dict behaviours on a real segment, four writer processes,
//! and writers SIGKILLed at random times and at every failpoint.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use shmring::codec::{CodecError, Message};
use shmring::dict::{Dict, DictError};
use shmring::process::{Entry, EntryResult};
use shmring::Builder;
use shmring_testkit::{
    child, run_child, spawn_child, unique_name, wait_child, wait_until, Watchdog,
};

const WRITERS: u64 = 4;
const ROUNDS: u64 = 200;
const KEYS: u64 = 8;

type D = Dict<String, u64>;

fn s(v: &str) -> String {
    v.to_string()
}

fn config() -> Builder<D> {
    D::builder().capacity(64).max_key(32).max_value(8)
}

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's own watchdog.
fn child_dog() -> Watchdog {
    Watchdog::new(Duration::from_secs(60), "dict child")
}

/// Writer `id`: its own keys, and "shared" bumped each round.
fn writer((d, id): (D, u64)) -> EntryResult {
    let _dog = child_dog();
    for round in 0..ROUNDS {
        let key = format!("w{id}-{}", round % KEYS);
        d.insert(&key, &round)?;
        d.update_with(&s("shared"), |n| Some(n.unwrap_or(0) + 1))?;
    }
    // Leave a trace of completion; keys of others untouched.
    d.insert(&format!("w{id}-done"), &1)?;
    Ok(())
}
static WRITER: Entry<(D, u64)> = shmring::entry!(writer);

/// Round r writes r to k0..k7 in order, bumps "count", and every fifth
/// round clears the dict: at any instant the keys read r,...,r,
/// r-1,...,r-1 (or r,...,r, absent,...). Runs until killed.
fn crash_writer((d,): (D,)) -> EntryResult {
    let _dog = child_dog();
    for round in 1.. {
        for k in 0..KEYS {
            d.insert(&format!("k{k}"), &round)?;
        }
        d.update_with(&s("count"), |n| Some(n.unwrap_or(0) + 1))?;
        if round % 5 == 0 {
            d.clear()?;
        }
    }
    Ok(())
}
static CRASH_WRITER: Entry<(D,)> = shmring::entry!(crash_writer);

/// Holds the table's lock (inside update_with) until killed.
fn hold_lock((d,): (D,)) -> EntryResult {
    let _dog = child_dog();
    let _ = d.update_with(&s("held"), |_| {
        d.segment(); // no dict call: that would be Reentrant
        std::thread::sleep(Duration::from_secs(600));
        Some(1)
    });
    Ok(())
}
static HOLD_LOCK: Entry<(D,)> = shmring::entry!(hold_lock);

#[test]
fn child_entry() {
    run_child(&[&WRITER, &CRASH_WRITER, &HOLD_LOCK]);
}

#[test]
fn python_dict_behaviours() {
    let d: D = config().anonymous().unwrap();
    assert!(d.is_empty());
    assert_eq!(d.get(&s("a")).unwrap(), None);
    assert_eq!(d.get_item(&s("a")), Err(DictError::KeyNotFound));
    assert_eq!(d.insert(&s("a"), &1).unwrap(), None);
    assert_eq!(d.insert(&s("a"), &2).unwrap(), Some(1));
    assert!(d.contains_key(&s("a")).unwrap());
    assert_eq!(d.get_item(&s("a")).unwrap(), 2);
    assert_eq!(d.len(), 1);
    assert_eq!(d.remove(&s("a")).unwrap(), Some(2));
    assert_eq!(d.remove(&s("a")).unwrap(), None);
    // pop / popitem: KeyError cases.
    assert_eq!(d.pop(&s("missing")), Err(DictError::KeyNotFound));
    let empty = d.popitem().unwrap_err();
    assert_eq!(empty, DictError::Empty);
    assert_eq!(empty.to_string(), "popitem(): dictionary is empty");
    d.insert(&s("p"), &7).unwrap();
    assert_eq!(d.pop(&s("p")).unwrap(), 7);
    d.insert(&s("q"), &8).unwrap();
    assert_eq!(d.popitem().unwrap(), (s("q"), 8));
    // setdefault inserts once, then returns what is there.
    assert_eq!(d.setdefault(&s("s"), &5).unwrap(), 5);
    assert_eq!(d.setdefault(&s("s"), &6).unwrap(), 5);
    // update, then the list views.
    d.update([(s("x"), 10), (s("y"), 20), (s("s"), 50)])
        .unwrap();
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, [s("s"), s("x"), s("y")]);
    let mut values = d.values().unwrap();
    values.sort();
    assert_eq!(values, [10, 20, 50]);
    let items: HashMap<_, _> = d.items().unwrap().into_iter().collect();
    assert_eq!(items, d.to_hash_map().unwrap());
    assert_eq!(items[&s("s")], 50);
    // update_with: insert, modify, delete.
    assert_eq!(d.update_with(&s("n"), |v| v.or(Some(1))).unwrap(), Some(1));
    assert_eq!(
        d.update_with(&s("n"), |v| v.map(|v| v + 1)).unwrap(),
        Some(2)
    );
    assert_eq!(d.update_with(&s("n"), |_| None).unwrap(), None);
    assert!(!d.contains_key(&s("n")).unwrap());
    d.clear().unwrap();
    assert!(d.is_empty());
    assert_eq!(d.items().unwrap(), []);
}

#[test]
fn full_table_and_oversize_items_are_errors() {
    let d: D = config().anonymous().unwrap();
    for i in 0..64u64 {
        d.insert(&format!("{i}"), &i).unwrap();
    }
    assert_eq!(
        d.insert(&s("one-more"), &0),
        Err(DictError::Full { capacity: 64 })
    );
    // Existing keys can still be replaced when full, by either form.
    assert_eq!(d.insert(&s("3"), &33).unwrap(), Some(3));
    d.set(&s("4"), &44).unwrap();
    assert_eq!(d.get(&s("4")).unwrap(), Some(44));
    assert_eq!(
        d.set(&s("one-more"), &0),
        Err(DictError::Full { capacity: 64 })
    );
    assert_eq!(d.get(&s("one-more")).unwrap(), None);
    assert_eq!(d.len(), 64);
    let long = "k".repeat(33);
    assert_eq!(
        d.insert(&long, &0),
        Err(DictError::KeyTooLarge { len: 33, max: 32 })
    );
    assert_eq!(
        d.set(&long, &0),
        Err(DictError::KeyTooLarge { len: 33, max: 32 })
    );
    let big: Dict<String, Vec<u8>> = Dict::builder()
        .capacity(64)
        .max_key(32)
        .max_value(8)
        .anonymous()
        .unwrap();
    assert_eq!(
        big.insert(&s("v"), &vec![0; 9]),
        Err(DictError::ValueTooLarge { len: 9, max: 8 })
    );
    assert!(config().capacity(0).anonymous().is_err());
}

#[test]
fn a_second_attachment_sees_every_change() {
    let name = unique_name("dict-two");
    let a: D = config().create(&name).unwrap();
    let b: D = Dict::open(&name).unwrap();
    a.insert(&s("k"), &1).unwrap();
    assert_eq!(b.get(&s("k")).unwrap(), Some(1));
    b.clear().unwrap();
    assert_eq!(a.len(), 0);
    assert!(Dict::<String, u64>::open(&unique_name("nope")).is_err());
}

#[test]
fn four_writer_processes_reach_an_exact_final_state() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict writers");
    let name = unique_name("dict-writers");
    let d: D = config().create(&name).unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| spawn_child(CHILD_TEST, &WRITER, (&d, id)))
        .collect();
    for child in children {
        assert!(wait_child(child, Duration::from_secs(100)).success());
    }
    let mut expect = HashMap::new();
    for id in 0..WRITERS {
        for k in 0..KEYS {
            // The last round that wrote key k.
            let last = (0..ROUNDS).rev().find(|r| r % KEYS == k).unwrap();
            expect.insert(format!("w{id}-{k}"), last);
        }
        expect.insert(format!("w{id}-done"), 1);
    }
    expect.insert(s("shared"), WRITERS * ROUNDS);
    assert_eq!(d.to_hash_map().unwrap(), expect);
    assert_eq!(d.len(), expect.len());
    assert_eq!(d.recoveries(), 0);
}

/// Checks the invariant of [`crash_writer`] and that the table is whole:
/// no key twice, `len` agrees, and every free slot is usable.
fn check_after_crash(d: &D) {
    let items = d.items().unwrap();
    let map: HashMap<_, _> = items.iter().cloned().collect();
    assert_eq!(map.len(), items.len(), "a key appears twice: {items:?}");
    assert_eq!(d.len(), items.len());
    let vals: Vec<Option<u64>> = (0..KEYS)
        .map(|k| map.get(&format!("k{k}")).copied())
        .collect();
    let split = vals
        .iter()
        .position(|v| *v != vals[0])
        .unwrap_or(vals.len());
    let (head, tail) = vals.split_at(split);
    assert!(
        tail.iter().all(|v| *v == tail[0]),
        "keys torn across more than two rounds: {vals:?}"
    );
    if let (Some(Some(h)), Some(t)) = (head.first(), tail.first()) {
        assert!(
            *t == Some(h - 1) || t.is_none(),
            "key holds neither its old nor its new value: {vals:?}"
        );
    }
    assert!(head.first().is_some_and(|h| h.is_some()) || tail.is_empty());
    // No slot leaked: fill to capacity exactly.
    let probe: D = d.clone();
    let live = d.len();
    for i in live..64 {
        probe.insert(&format!("fill{i}"), &0).unwrap();
    }
    assert_eq!(
        probe.insert(&s("over"), &0),
        Err(DictError::Full { capacity: 64 })
    );
    probe.clear().unwrap();
}

/// Starts a [`crash_writer`] on `d`, with the dict failpoint `failpoint`
/// armed in it.
fn crasher(d: &D, failpoint: Option<&str>) -> std::process::Child {
    let mut builder = child(CHILD_TEST, &CRASH_WRITER, (d,));
    if let Some(fp) = failpoint {
        builder = builder.env("SHMRING_DICT_FAILPOINT", fp);
    }
    builder.into_command().unwrap().spawn().unwrap()
}

#[test]
fn writer_killed_at_every_failpoint_leaves_old_or_new_values() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict failpoints");
    let points = [
        "dict:slot-allocated:37",
        "dict:slot-written:41",
        "dict:published:43",
        "dict:slot-freeing:29",
        "dict:index-written:3",
        "dict:flipped:2",
    ];
    for point in points {
        let name = unique_name("dict-failpoint");
        let d: D = config().create(&name).unwrap();
        let child = crasher(&d, Some(point));
        let status = wait_child(child, Duration::from_secs(60));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {status}");
        check_after_crash(&d);
        assert_eq!(d.recoveries(), 1, "{point}: the next taker recovers once");
    }
}

#[test]
fn writer_sigkilled_at_random_times_leaves_old_or_new_values() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict random kills");
    let name = unique_name("dict-kill");
    let d: D = config().create(&name).unwrap();
    for i in 0..6u64 {
        let mut child = crasher(&d, None);
        let started = d.get(&s("count")).unwrap().unwrap_or(0);
        assert!(wait_until(Duration::from_secs(20), || {
            d.get(&s("count")).unwrap().unwrap_or(0) > started
        }));
        std::thread::sleep(Duration::from_millis(20 + 13 * i));
        child.kill().unwrap();
        child.wait().unwrap();
        check_after_crash(&d);
    }
}

/// A named table seen through two value types: a `String` stored through
/// `text` does not decode as the `u64` of `numbers` (5 bytes, not 8).
fn two_typed_handles() -> (Dict<String, String>, D) {
    let name = unique_name("dict-types");
    let text = Dict::builder()
        .capacity(64)
        .max_key(32)
        .max_value(8)
        .create(&name)
        .unwrap();
    let numbers = Dict::open(&name).unwrap();
    (text, numbers)
}

fn is_codec<T: std::fmt::Debug>(r: Result<T, DictError>) -> bool {
    matches!(r, Err(DictError::Codec(_)))
}

#[test]
fn a_value_that_does_not_decode_fails_every_write_before_it_writes() {
    let (text, numbers) = two_typed_handles();
    type Attempt<'a> = (&'a str, Box<dyn Fn() -> bool + 'a>);
    let attempts: [Attempt; 7] = [
        ("insert", Box::new(|| is_codec(numbers.insert(&s("k"), &1)))),
        ("remove", Box::new(|| is_codec(numbers.remove(&s("k"))))),
        ("pop", Box::new(|| is_codec(numbers.pop(&s("k"))))),
        ("popitem", Box::new(|| is_codec(numbers.popitem()))),
        (
            "setdefault",
            Box::new(|| is_codec(numbers.setdefault(&s("k"), &1))),
        ),
        (
            "update_with",
            Box::new(|| is_codec(numbers.update_with(&s("k"), |_| Some(1)))),
        ),
        (
            "update_with (remove)",
            Box::new(|| is_codec(numbers.update_with(&s("k"), |_| None))),
        ),
    ];
    let mut wrote = Vec::new();
    for (what, attempt) in &attempts {
        text.insert(&s("k"), &s("hello")).unwrap();
        assert!(attempt(), "{what}: not a codec error");
        if text.get(&s("k")).unwrap() != Some(s("hello")) || text.len() != 1 {
            wrote.push(*what);
        }
    }
    assert_eq!(wrote, [""; 0], "these failed after they wrote");
    // A key that does not decode fails popitem the same way.
    let (text, numbers) = two_typed_handles();
    let raw: Dict<Vec<u8>, u64> = Dict::open(text.segment().name().unwrap()).unwrap();
    raw.insert(&vec![0xff, 0xfe], &7).unwrap();
    assert!(is_codec(numbers.popitem()));
    assert_eq!(
        raw.get(&vec![0xff, 0xfe]).unwrap(),
        Some(7),
        "popitem wrote"
    );
    // Values that do decode still come back, and the writes happen.
    numbers.clear().unwrap();
    assert_eq!(numbers.insert(&s("n"), &1).unwrap(), None);
    assert_eq!(numbers.insert(&s("n"), &2).unwrap(), Some(1));
    assert_eq!(numbers.popitem().unwrap(), (s("n"), 2));
    assert!(numbers.is_empty());
}

/// Review finding: `update` overwrote a value that does not decode,
/// although its docs say "Errors: as insert" and `insert` refuses such a
/// value with `Codec`, leaving it. The failing pair must leave the table as
/// it was; the pairs before it stay inserted (as in Python, and as
/// documented), the ones after it are not written.
#[test]
fn update_refuses_to_overwrite_a_value_that_does_not_decode() {
    let (text, numbers) = two_typed_handles();
    text.insert(&s("k"), &s("hello")).unwrap();
    let r = numbers.update([(s("a"), 1), (s("k"), 2), (s("b"), 3)]);
    assert!(
        is_codec(r),
        "update of an undecodable value: not a codec error"
    );
    assert_eq!(
        text.get(&s("k")).unwrap(),
        Some(s("hello")),
        "update overwrote a value that does not decode"
    );
    assert_eq!(numbers.get(&s("a")).unwrap(), Some(1), "the pair before");
    assert_eq!(numbers.get(&s("b")).unwrap(), None, "the pair after");
    assert_eq!(numbers.len(), 2);
}

/// Encodes as one byte more than `decode` accepts.
#[derive(Debug)]
struct Lopsided;

impl Message for Lopsided {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&[1, 2]);
        Ok(())
    }
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        match bytes {
            [1] => Ok(Lopsided),
            _ => Err(CodecError {
                reason: "lopsided".to_string(),
            }),
        }
    }
}

#[test]
fn setdefault_of_a_default_that_does_not_decode_writes_nothing() {
    let d: Dict<String, Lopsided> = Dict::builder()
        .capacity(64)
        .max_key(32)
        .max_value(8)
        .anonymous()
        .unwrap();
    assert!(is_codec(d.setdefault(&s("k"), &Lopsided)));
    assert!(d.is_empty(), "setdefault wrote, then failed");
}

/// Runs `f` on a thread and waits for it at most 20 s: a hang fails the
/// test instead of stopping it (the stuck thread is left behind).
fn within_20s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || done.send(f()).unwrap());
    result
        .recv_timeout(Duration::from_secs(20))
        .expect("hung (a deadlock on the dict's own lock)")
}

#[test]
fn touching_the_same_dict_inside_update_with_is_an_error_not_a_hang() {
    let _dog = Watchdog::new(Duration::from_secs(120), "update_with re-entry");
    let name = unique_name("dict-reenter");
    let d: D = config().create(&name).unwrap();
    d.insert(&s("other"), &5).unwrap();
    let clone = d.clone();
    let second: D = Dict::open(&name).unwrap();
    let (d, clone, second) = within_20s(move || {
        let mut inner = Vec::new();
        let mut inner_len = None;
        let out = d.update_with(&s("k"), |v| {
            inner.push(d.get(&s("other")));
            inner.push(clone.insert(&s("other"), &6).map(|_| None));
            inner.push(second.get(&s("other")));
            inner.push(second.contains_key(&s("other")).map(|_| None));
            // `len` takes no lock: it answers (the table as it is: "k" is
            // not written yet) instead of failing or waiting for this
            // thread's own lock.
            inner_len = Some(second.len());
            Some(v.unwrap_or(0) + 1)
        });
        assert_eq!(out, Ok(Some(1)), "the outer update_with goes on");
        for r in inner {
            assert_eq!(r, Err(DictError::Reentrant));
        }
        assert_eq!(inner_len, Some(1));
        (d, clone, second)
    });
    assert_eq!(
        DictError::Reentrant.to_string(),
        "dict used inside its own update_with on this thread"
    );
    // Afterwards every handle works again, also after a closure panicked.
    assert_eq!(second.get(&s("other")).unwrap(), Some(5));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.update_with(&s("k"), |_| panic!("in the closure"))
    }));
    assert!(panicked.is_err());
    assert_eq!(clone.get(&s("k")).unwrap(), Some(1));
    assert_eq!(
        second.update_with(&s("k"), |v| v.map(|v| v + 1)).unwrap(),
        Some(2)
    );
}

#[test]
fn another_thread_waits_for_an_update_with_and_is_not_refused() {
    let _dog = Watchdog::new(Duration::from_secs(120), "update_with and threads");
    let name = unique_name("dict-wait");
    let d: D = config().create(&name).unwrap();
    let second: D = Dict::open(&name).unwrap();
    let inside = Barrier::new(3);
    std::thread::scope(|s| {
        for other in [&d, &second] {
            let inside = &inside;
            s.spawn(move || {
                inside.wait();
                // Waits for the closure below, then sees its write.
                assert_eq!(other.get(&"k".to_string()), Ok(Some(1)));
            });
        }
        d.update_with(&"k".to_string(), |_| {
            inside.wait();
            std::thread::sleep(Duration::from_millis(100));
            Some(1)
        })
        .unwrap();
    });
}

#[test]
fn update_with_from_threads_of_one_handle_and_of_two_loses_nothing() {
    let _dog = Watchdog::new(Duration::from_secs(120), "update_with threads");
    const ROUNDS: u64 = 2_000;
    let name = unique_name("dict-threads");
    let d: D = config().create(&name).unwrap();
    let second: D = Dict::open(&name).unwrap();
    let clone = d.clone();
    let handles = [&d, &d, &clone, &second, &second];
    std::thread::scope(|s| {
        for h in handles {
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    h.update_with(&"n".to_string(), |n| Some(n.unwrap_or(0) + 1))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(d.get(&s("n")).unwrap(), Some(handles.len() as u64 * ROUNDS));
    assert_eq!(d.recoveries(), 0);
}

/// Threads of one attachment, some waiting for its process-local lock
/// with a deadline of 1 ms (retrying when it passes) and some without
/// one, many times over: every increment lands, and a waiter that gave up
/// leaves none asleep for ever (the test would hang).
#[test]
fn timed_and_untimed_waiters_of_one_handle_lose_nothing() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict local lock waiters");
    const ROUNDS: u64 = 3_000;
    let name = unique_name("dict-local-waiters");
    let d: D = config().create(&name).unwrap();
    let mut timed = d.clone();
    timed.set_lock_timeout(Duration::from_millis(1));
    std::thread::scope(|s| {
        for h in [&d, &timed, &d, &timed] {
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    loop {
                        match h.update_with(&"n".to_string(), |n| Some(n.unwrap_or(0) + 1)) {
                            Ok(_) => break,
                            Err(DictError::Timeout) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    assert_eq!(d.get(&s("n")).unwrap(), Some(4 * ROUNDS));
}

#[test]
fn a_lock_timeout_bounds_the_wait_for_a_holder_in_this_process() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict lock timeout, threads");
    let name = unique_name("dict-lock-timeout");
    let d: D = config().create(&name).unwrap();
    d.insert(&s("k"), &1).unwrap();
    // Another attachment (waits on the shared lock) and a clone of the
    // holder's attachment (waits on the process-local lock first).
    let mut other: D = Dict::open(&name).unwrap();
    let mut clone = d.clone();
    let (inside, release) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            d.update_with(&s("k"), |v| {
                inside.wait();
                release.wait();
                v.map(|v| v + 1)
            })
            .unwrap();
        });
        inside.wait();
        for handle in [&mut other, &mut clone] {
            handle.set_lock_timeout(Duration::from_millis(100));
            let start = Instant::now();
            assert_eq!(handle.get(&s("k")), Err(DictError::Timeout));
            assert!(start.elapsed() >= Duration::from_millis(100));
            assert_eq!(handle.insert(&s("new"), &1), Err(DictError::Timeout));
            // Zero: one try.
            handle.set_lock_timeout(Duration::ZERO);
            assert_eq!(handle.remove(&s("k")), Err(DictError::Timeout));
            // `len` never waits.
            assert_eq!(handle.len(), 1);
        }
        release.wait();
    });
    // Nothing the timed-out calls tried was done; the holder's was.
    assert_eq!(other.get(&s("k")).unwrap(), Some(2));
    assert_eq!(clone.get(&s("new")).unwrap(), None);
    assert_eq!(
        DictError::Timeout.to_string(),
        "timed out waiting for the dict's lock"
    );
    // `Duration::MAX` waits as long as it takes again.
    other.set_lock_timeout(Duration::MAX);
    assert_eq!(other.insert(&s("k"), &5).unwrap(), Some(2));
}

#[test]
fn a_lock_timeout_bounds_the_wait_for_a_live_holder_process_and_a_dead_one_is_taken_over() {
    let _dog = Watchdog::new(Duration::from_secs(120), "dict lock timeout, process");
    let name = unique_name("dict-lock-timeout-proc");
    let mut d: D = config().create(&name).unwrap();
    d.insert(&s("k"), &1).unwrap();
    let mut child = spawn_child(CHILD_TEST, &HOLD_LOCK, (&d,));
    d.set_lock_timeout(Duration::ZERO);
    assert!(
        wait_until(Duration::from_secs(30), || d.get(&s("k"))
            == Err(DictError::Timeout)),
        "the child never took the lock"
    );
    // A live holder: a bounded wait times out and changes nothing.
    d.set_lock_timeout(Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(d.insert(&s("k"), &2), Err(DictError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // A dead holder needs no timeout: taken over within a liveness slice,
    // even by a handle that tries once.
    d.set_lock_timeout(Duration::ZERO);
    assert_eq!(d.get(&s("k")).unwrap(), Some(1));
    assert_eq!(d.get(&s("held")).unwrap(), None);
    assert_eq!(d.recoveries(), 1);
}
