//! Adversarial review of the Pipe facade's handover framing and timed
//! calls: each test here failed on the code it was written against (see
//! the review report), and pins the behaviour the fix gives.
//!
//! The failpoint hook (`shmring::core::failpoint`, compiled in by this
//! crate's dev dependency on itself with `failpoints`) is process-wide, and
//! the tests of this binary run in parallel threads: every action of the
//! hook is therefore gated by a thread-local flag that only the thread a
//! test means to slow down or stop sets.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use shmring::pipe::{End, Pipe, PipeConfig, PipeError};
use shmring::CreateOptions;
use shmring_testkit::{unique_name, wait_until, Watchdog};

fn dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), what)
}

/// A 4 KiB ring with 256-byte fragments (264-byte records: 15 fit).
fn small() -> PipeConfig {
    PipeConfig {
        ring_bytes: 4096,
        fragment_bytes: Some(256),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8)
        .collect()
}

/// What the hook does on the thread that set it (see the module docs).
#[derive(Clone, Copy)]
enum Gate {
    /// Nothing.
    Off,
    /// A slow reader: after each record it releases (`spsc.released`),
    /// sleeps this long, then waits (up to 2 s) for the writer of `Slow` to
    /// publish once more or finish, so the ring never runs empty.
    Slow(Duration, &'static Slow),
}

/// A writer's progress, for [`Gate::Slow`].
struct Slow {
    publishes: AtomicU64,
    done: AtomicBool,
    /// While set, the writer waits after each publish.
    hold: AtomicBool,
}

impl Slow {
    const fn new() -> Slow {
        Slow {
            publishes: AtomicU64::new(0),
            done: AtomicBool::new(false),
            hold: AtomicBool::new(false),
        }
    }
}

thread_local! {
    static GATE: Cell<Gate> = const { Cell::new(Gate::Off) };
    /// Set on a writer thread: its publishes are counted in this `Slow`.
    static COUNTS_FOR: Cell<Option<&'static Slow>> = const { Cell::new(None) };
}

fn hook(name: &'static str, _context: &[u8]) {
    if name == "ring.published" {
        if let Some(slow) = COUNTS_FOR.get() {
            // ORDERING: Relaxed — a test counter polled by the reader.
            slow.publishes.fetch_add(1, Ordering::Relaxed);
            // ORDERING: Relaxed — a test flag, polled.
            wait_until(Duration::from_secs(60), || {
                !slow.hold.load(Ordering::Relaxed)
            });
        }
        return;
    }
    if let ("spsc.released", Gate::Slow(pause, slow)) = (name, GATE.get()) {
        // ORDERING: Relaxed — test counters.
        let seen = slow.publishes.load(Ordering::Relaxed);
        std::thread::sleep(pause);
        wait_until(Duration::from_secs(2), || {
            slow.publishes.load(Ordering::Relaxed) > seen || slow.done.load(Ordering::Relaxed)
        });
    }
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| shmring::core::failpoint::set_hook(Some(hook)));
}

// ---------------------------------------------------------------------------
// Finding 1: a timed receive (or poll) does not give up at its deadline
// while the writer keeps the ring from running empty.

/// A 65-fragment message, streamed by a blocking send while a slow reader
/// (5 ms per record) receives it with a 50 ms timeout: the whole message
/// cannot be there before 65 records × 5 ms, so the receive must report
/// `Timeout`, keeping what it took; the next receive completes it. The
/// receive used to look at its deadline only when the ring was empty,
/// which a writer that keeps up never lets happen: it returned the whole
/// message, far past its timeout.
#[test]
fn a_timed_receive_gives_up_at_its_deadline_while_fragments_keep_coming() {
    static SLOW: Slow = Slow::new();
    install_hook();
    let _dog = dog("timed receive, streaming writer");
    let (mut reader, mut writer) = Pipe::with_config(false, small()).unwrap();
    let msg = pattern(64 * 256 + 10, 3);
    let sent = msg.clone();
    let writing = std::thread::spawn(move || {
        COUNTS_FOR.set(Some(&SLOW));
        writer.send_bytes(&sent, 0, None).unwrap();
        // ORDERING: Relaxed — a test flag.
        SLOW.done.store(true, Ordering::Relaxed);
        writer
    });
    // Let the writer fill the ring first.
    assert!(reader.poll(Some(Duration::from_secs(20))).unwrap());
    assert!(wait_until(Duration::from_secs(20), || {
        // ORDERING: Relaxed — a test counter.
        SLOW.publishes.load(Ordering::Relaxed) >= 15
    }));
    GATE.set(Gate::Slow(Duration::from_millis(5), &SLOW));
    let got = reader.recv_timeout::<Vec<u8>>(Duration::from_millis(50));
    GATE.set(Gate::Off);
    assert_eq!(
        got.map(|m| m.len()),
        Err(PipeError::Timeout),
        "a whole message that cannot have arrived by the deadline"
    );
    // Nothing was lost by giving up.
    assert_eq!(reader.recv_bytes(None).unwrap(), msg);
    drop(writing.join().unwrap());
}

/// The same for `poll(timeout)` on an end taken over in the middle of a
/// long message: the rest of that message is skipped, and the next message
/// only begins after it. No whole message can be there by the 50 ms
/// deadline (the orphan records take 5 ms each to pass), so `poll` must say
/// `false`; it used to skip orphans until the ring ran empty, however long
/// that took, and then say `true`.
#[test]
fn a_timed_poll_gives_up_at_its_deadline_while_orphans_keep_coming() {
    static SLOW: Slow = Slow::new();
    install_hook();
    let _dog = dog("timed poll, streaming orphans");
    let name = unique_name("review-poll");
    let pipe = Pipe::create(&name, false, small(), &CreateOptions::default()).unwrap();
    let mut first = pipe.connection(End::First).unwrap();
    let mut writer = pipe.connection(End::Second).unwrap();
    let msg = pattern(64 * 256 + 10, 4);
    let writing = std::thread::spawn(move || {
        COUNTS_FOR.set(Some(&SLOW));
        writer.send_bytes(&msg, 0, None).unwrap();
        writer.send_bytes(b"next", 0, None).unwrap();
        // ORDERING: Relaxed — a test flag.
        SLOW.done.store(true, Ordering::Relaxed);
        writer
    });
    assert!(wait_until(Duration::from_secs(20), || {
        // ORDERING: Relaxed — a test counter.
        SLOW.publishes.load(Ordering::Relaxed) >= 15
    }));
    // The first reader takes the start of the message while the writer is
    // held (it may publish one more record, then waits), then hands the end
    // to a child that is never spawned: the end is free again, and a new
    // reader claims it in the middle of the message.
    // ORDERING: Relaxed — a test flag.
    SLOW.hold.store(true, Ordering::Relaxed);
    assert_eq!(first.try_recv_bytes(None), Err(PipeError::Empty));
    let mut cmd = std::process::Command::new("/bin/true");
    first
        .share_with_child(&mut cmd, "SHMRING_REVIEW_UNUSED")
        .unwrap();
    drop((first, cmd));
    let mut reader = pipe.connection(End::First).unwrap();
    // ORDERING: Relaxed — a test flag.
    SLOW.hold.store(false, Ordering::Relaxed);
    GATE.set(Gate::Slow(Duration::from_millis(5), &SLOW));
    let ready = reader.poll(Some(Duration::from_millis(50)));
    GATE.set(Gate::Off);
    assert_eq!(ready, Ok(false), "no whole message can be there yet");
    // The orphans are skipped, the next message arrives whole.
    assert_eq!(reader.recv_bytes(None).unwrap(), b"next");
    drop(writing.join().unwrap());
}
