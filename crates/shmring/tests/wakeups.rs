//! No lost wake-up between processes, with the wait protocol's fences as
//! the engine runs them: light wakers (a compiler barrier after each
//! publish) paired with sleepers' `membarrier`, and a light process paired
//! with one that uses full fences (`SHMRING_FULL_FENCES`).
//!
//! Every wait here sleeps at once (no spin) and its slice is an hour, so a
//! wake-up that a waker skipped is not rescued by the slice: it hangs the
//! round trip, and the watchdog fails the test. (With the default 100 ms
//! slice, a lost wake-up only shows as a slow round trip.)
//!
//! What these tests can and cannot show: they catch a waker that skips a
//! wake it owes (a wrong condition, a missing call), within a few hundred
//! thousand hand-offs. The store-buffer race the fences close is a window of
//! tens of nanoseconds on x86 (the sleeper's `waiters += 1` is a locked
//! instruction, a full barrier by itself); with the heavy fence removed on
//! purpose, 200,000 jittered hand-offs did not hit it. The fence argument is
//! in `shmring_core::wait` ("Why the fences") and the loom models check the
//! symmetric form.

use std::time::Duration;

use shmring::pipe::{Connection, Pipe, RecvError};
use shmring::process::{Entry, EntryResult};
use shmring::WaitPolicy;
use shmring_testkit::{child, run_child, wait_child, Watchdog};

const CHILD_TEST: &str = "child_entry";
const ROUND_TRIPS: u64 = 20_000;

/// Sleep at once, and never wake by the slice within a test's life.
fn sleeper() -> WaitPolicy {
    WaitPolicy::fixed(0).with_slice(3_600_000_000_000)
}

/// Answers each number with the next one until end of file.
fn echo((mut conn,): (Connection,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(300), "echo child");
    conn.set_wait_policy(sleeper());
    loop {
        match conn.recv::<u64>() {
            Ok(n) => conn.send(&(n + 1))?,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(format!("echo: {e}").into()),
        }
    }
}
static ECHO: Entry<(Connection,)> = shmring::entry!(echo);

/// Receives `count` numbers in order, sleeping whenever the ring is empty,
/// then answers with their count.
fn drain((mut conn, count): (Connection, u64)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(300), "drain child");
    conn.set_wait_policy(sleeper());
    for expected in 0..count {
        let n = conn.recv::<u64>()?;
        if n != expected {
            return Err(format!("got {n}, expected {expected}").into());
        }
    }
    conn.send(&count)?;
    Ok(())
}
static DRAIN: Entry<(Connection, u64)> = shmring::entry!(drain);

#[test]
fn child_entry() {
    run_child(&[&ECHO, &DRAIN]);
}

fn ping_pong(full_fences_in_child: bool) {
    let _dog = Watchdog::new(
        Duration::from_secs(240),
        "a round trip hung: a wake-up was lost",
    );
    let (mut ours, theirs) = Pipe::new(true).unwrap();
    ours.set_wait_policy(sleeper());
    let mut builder = child(CHILD_TEST, &ECHO, (&theirs,));
    if full_fences_in_child {
        builder = builder.env("SHMRING_FULL_FENCES", "1");
    }
    let kid = builder.into_command().unwrap().spawn().unwrap();
    drop(theirs);
    for n in 0..ROUND_TRIPS {
        ours.send(&n).unwrap();
        assert_eq!(ours.recv::<u64>().unwrap(), n + 1);
    }
    drop(ours);
    assert!(wait_child(kid, Duration::from_secs(60)).success());
}

#[test]
fn sleepers_on_both_sides_miss_no_wake_up_with_light_wakers() {
    ping_pong(false);
}

#[test]
fn a_full_fence_process_and_a_light_one_miss_no_wake_up() {
    ping_pong(true);
}

/// A stream whose sender pauses a varying few hundred nanoseconds between
/// messages, so its publishes keep landing while the receiver is between
/// finding the ring empty and going to sleep: the window a missing fence
/// would lose a wake-up in.
#[test]
fn a_jittered_stream_to_a_sleeper_misses_no_wake_up() {
    let _dog = Watchdog::new(
        Duration::from_secs(240),
        "the stream hung: a wake-up was lost",
    );
    const COUNT: u64 = 100_000;
    let (mut ours, theirs) = Pipe::new(true).unwrap();
    ours.set_wait_policy(sleeper());
    let kid = child(CHILD_TEST, &DRAIN, (&theirs, COUNT))
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    drop(theirs);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..COUNT {
        ours.send(&n).unwrap();
        // xorshift: 0 to 1023 pause hints.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for _ in 0..(x & 1023) {
            std::hint::spin_loop();
        }
    }
    assert_eq!(ours.recv::<u64>().unwrap(), COUNT);
    drop(ours);
    assert!(wait_child(kid, Duration::from_secs(60)).success());
}
