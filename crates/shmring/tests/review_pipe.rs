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
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use shmring::pipe::{
    Connection, End, Pipe, RecvError, RecvTimeoutError, SendError, TryRecvError, TrySendError,
};
use shmring::process::{Entry, EntryResult};
use shmring_testkit::{child, run_child, unique_name, wait_until, Watchdog};

fn dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), what)
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
    /// Stops at the named failpoint until told to go on.
    Window(&'static str, &'static Window),
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

/// A rendezvous at a failpoint, for [`Gate::Window`].
struct Window {
    entered: AtomicBool,
    go_on: AtomicBool,
}

impl Window {
    const fn new() -> Window {
        Window {
            entered: AtomicBool::new(false),
            go_on: AtomicBool::new(false),
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
    match (name, GATE.get()) {
        ("spsc.released", Gate::Slow(pause, slow)) => {
            // ORDERING: Relaxed — test counters.
            let seen = slow.publishes.load(Ordering::Relaxed);
            std::thread::sleep(pause);
            wait_until(Duration::from_secs(2), || {
                slow.publishes.load(Ordering::Relaxed) > seen || slow.done.load(Ordering::Relaxed)
            });
        }
        (_, Gate::Window(at, window)) if at == name => {
            // ORDERING: Relaxed — test flags, polled.
            window.entered.store(true, Ordering::Relaxed);
            assert!(
                wait_until(Duration::from_secs(60), || window
                    .go_on
                    .load(Ordering::Relaxed)),
                "the test never let the stopped thread go on"
            );
        }
        _ => {}
    }
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| shmring::core::failpoint::set_hook(Some(hook)));
}

/// Claims the writing end of the named pipe `name` (by name, as a
/// restarted process would), says so, and waits to be killed.
fn claim_writer_and_hang((name,): (String,)) -> EntryResult {
    let _conn = Connection::open(&name, End::Second)?;
    println!("review: claimed");
    shmring_testkit::sleep_forever();
}
static CLAIM_WRITER_AND_HANG: Entry<(String,)> = shmring::entry!(claim_writer_and_hang);

/// Runs the children of this binary.
#[test]
fn review_child() {
    run_child(&[&CLAIM_WRITER_AND_HANG]);
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
    let (mut reader, mut writer) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .pair()
        .unwrap();
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
    assert!(reader.poll_timeout(Duration::from_secs(20)).unwrap());
    assert!(wait_until(Duration::from_secs(20), || {
        // ORDERING: Relaxed — a test counter.
        SLOW.publishes.load(Ordering::Relaxed) >= 15
    }));
    GATE.set(Gate::Slow(Duration::from_millis(5), &SLOW));
    let got = reader.recv_timeout::<Vec<u8>>(Duration::from_millis(50));
    GATE.set(Gate::Off);
    assert_eq!(
        got.map(|m| m.len()),
        Err(RecvTimeoutError::Timeout),
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
    let pipe = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .create(&name)
        .unwrap();
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
    assert_eq!(first.try_recv_bytes(None), Err(TryRecvError::Empty));
    let mut cmd = std::process::Command::new("/bin/true");
    first
        .share_with_child(&mut cmd, "SHMRING_REVIEW_UNUSED")
        .unwrap();
    drop((first, cmd));
    let mut reader = pipe.connection(End::First).unwrap();
    // ORDERING: Relaxed — a test flag.
    SLOW.hold.store(false, Ordering::Relaxed);
    GATE.set(Gate::Slow(Duration::from_millis(5), &SLOW));
    let ready = reader.poll_timeout(Duration::from_millis(50));
    GATE.set(Gate::Off);
    assert_eq!(ready, Ok(false), "no whole message can be there yet");
    // The orphans are skipped, the next message arrives whole.
    assert_eq!(reader.recv_bytes(None).unwrap(), b"next");
    drop(writing.join().unwrap());
}

/// What the fix of finding 1 keeps: a timed receive still takes whatever
/// was in the ring when it began, a whole multi-fragment message included,
/// even with a zero timeout (the deadline is only looked at after a ring's
/// worth of records).
#[test]
fn a_zero_timeout_still_takes_a_whole_message_already_in_the_ring() {
    let _dog = dog("zero timeout, message present");
    let (mut reader, mut writer) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .pair()
        .unwrap();
    let max = writer.max_whole_message().unwrap();
    for len in [300, 3000, max] {
        let msg = pattern(len, 5);
        writer.try_send_bytes(&msg, 0, None).unwrap();
        assert_eq!(reader.recv_timeout::<Vec<u8>>(Duration::ZERO), Ok(msg));
    }
}

// ---------------------------------------------------------------------------
// Finding 2: an end noticed dead while a new process takes it over: the
// noticer closed the pipe under the new holder.

/// The reader finds the writer's process dead and is stopped right there,
/// before it acts (the failpoint `role.holder-found-dead`); meanwhile another
/// process (here: another attachment) takes the writing end over, as the
/// docs allow ("before anyone noticed, another process may take the dead
/// end over and go on"), and sends. The reader must then go on with the
/// new writer: neither end is closed or gone. It used to close the pipe on
/// the dead writer's behalf anyway, so the new writer's next send was a
/// `BrokenPipe` (and the reader's next receive an end of file) with both
/// ends alive and open.
#[test]
fn a_takeover_that_wins_the_race_with_the_notice_of_death_keeps_the_pipe_open() {
    static WINDOW: Window = Window::new();
    install_hook();
    let _dog = dog("takeover races the notice of death");
    let name = unique_name("review-takeover");
    let pipe = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .create(&name)
        .unwrap();
    let reader = pipe.connection(End::First).unwrap();
    let mut child = child("review_child", &CLAIM_WRITER_AND_HANG, (name.clone(),))
        .stdout(Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("review: claimed")),
        "the child never claimed the writing end"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let reading = std::thread::spawn(move || {
        let mut reader = reader;
        GATE.set(Gate::Window("role.holder-found-dead", &WINDOW));
        let got = reader.recv_timeout::<Vec<u8>>(Duration::from_secs(30));
        GATE.set(Gate::Off);
        (reader, got)
    });
    assert!(
        wait_until(Duration::from_secs(30), || {
            // ORDERING: Relaxed — a test flag.
            WINDOW.entered.load(Ordering::Relaxed)
        }),
        "the reader never found the dead writer"
    );
    let mut writer = Connection::open(&name, End::Second).unwrap();
    writer.try_send_bytes(b"one", 0, None).unwrap();
    // ORDERING: Relaxed — a test flag.
    WINDOW.go_on.store(true, Ordering::Relaxed);
    let (mut reader, got) = reading.join().unwrap();
    assert_eq!(got.as_deref(), Ok(&b"one"[..]));
    assert_eq!(
        writer.send_bytes(b"two", 0, None),
        Ok(()),
        "the reader is alive and open"
    );
    assert_eq!(
        reader
            .recv_timeout::<Vec<u8>>(Duration::from_secs(30))
            .as_deref(),
        Ok(&b"two"[..]),
        "the writer is alive and open"
    );
}

/// The other order: the reader decided the writer is gone and is stopped
/// before it closes the ring (`pipe.closing-for-gone-peer`) when another
/// process takes the writing end over. The notice came first, so the pipe
/// is broken for the new writer ("once noticed, the pipe stays broken"),
/// from its very first send: a send that succeeded and was then closed
/// under would be a message delivered to a reader that reports end of file
/// next, with both ends alive.
#[test]
fn a_takeover_that_loses_the_race_with_the_notice_of_death_finds_the_pipe_closed() {
    static WINDOW: Window = Window::new();
    install_hook();
    let _dog = dog("takeover after the notice of death");
    let name = unique_name("review-takeover-late");
    let pipe = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .create(&name)
        .unwrap();
    let reader = pipe.connection(End::First).unwrap();
    let mut child = child("review_child", &CLAIM_WRITER_AND_HANG, (name.clone(),))
        .stdout(Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("review: claimed")),
        "the child never claimed the writing end"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let reading = std::thread::spawn(move || {
        let mut reader = reader;
        GATE.set(Gate::Window("pipe.closing-for-gone-peer", &WINDOW));
        let got = reader.recv_timeout::<Vec<u8>>(Duration::from_secs(30));
        GATE.set(Gate::Off);
        got
    });
    assert!(
        wait_until(Duration::from_secs(30), || {
            // ORDERING: Relaxed — a test flag.
            WINDOW.entered.load(Ordering::Relaxed)
        }),
        "the reader never found the dead writer"
    );
    let mut writer = Connection::open(&name, End::Second).unwrap();
    let sent = writer.try_send_bytes(b"one", 0, None);
    // ORDERING: Relaxed — a test flag.
    WINDOW.go_on.store(true, Ordering::Relaxed);
    let got = reading.join().unwrap();
    assert_eq!(
        sent,
        Err(TrySendError::Send(SendError::BrokenPipe)),
        "the end was noticed dead"
    );
    assert_eq!(got, Err(RecvTimeoutError::Recv(RecvError::Eof)));
}
