//! The handover contract (DESIGN.md "Contracts"): whoever dies, stalls,
//! closes, re-opens or hands an end to a child, a reader returns only whole
//! messages, each written by one writer.
//!
//! Every message here says who wrote it and checks itself ([`framed`],
//! [`whole`]): writer id, sequence number, length, checksum of the filler.
//! The writers are real processes (entry points run by [`handover_child`]),
//! killed with `SIGKILL` or stopped with `SIGSTOP` mid-message: a 10 000-byte
//! message through a 4 KiB ring (256-byte fragments) is always mid-message
//! while the ring is full.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use shmring::pipe::{
    ConnectError, Connection, End, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use shmring::process::{Entry, EntryResult, ProcessBuilder};
use shmring::RoleError;
use shmring_testkit::{child, run_child, unique_name, wait_child, wait_until};

use super::{dog, small};

/// Bytes in front of a framed message's filler.
const HEAD: usize = 24;

/// What each [`write_messages`] writer sends (the first length is its
/// argument): the first never fits the ring whole, so a
/// writer with no reader is stuck in its middle.
const SCHEDULE: [usize; 6] = [10_000, 10_000, 300, 5_000, HEAD, 10_000];

/// A message of `len >= HEAD` bytes that names its writer and sequence
/// number: `writer: u32, seq: u32, len: u64, checksum: u64`, then filler
/// derived from all three.
fn framed(writer: u32, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= HEAD);
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&writer.to_le_bytes());
    msg.extend_from_slice(&seq.to_le_bytes());
    msg.extend_from_slice(&(len as u64).to_le_bytes());
    let seed = mix(u64::from(writer) << 32 | u64::from(seq)) ^ len as u64;
    let filler: Vec<u8> = (0..(len - HEAD).div_ceil(8) as u64)
        .flat_map(|i| mix(seed.wrapping_add(i)).to_le_bytes())
        .take(len - HEAD)
        .collect();
    // FNV-1a over the head so far and the filler.
    let sum = msg
        .iter()
        .chain(&filler)
        .fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
    msg.extend_from_slice(&sum.to_le_bytes());
    msg.extend_from_slice(&filler);
    msg
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `(writer, seq)` of a whole message: its length, checksum and filler are
/// what its head says. `None` for a torn or spliced one.
fn whole(msg: &[u8]) -> Option<(u32, u32)> {
    if msg.len() < HEAD {
        return None;
    }
    let writer = u32::from_le_bytes(msg[0..4].try_into().unwrap());
    let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    let len = u64::from_le_bytes(msg[8..16].try_into().unwrap());
    (len == msg.len() as u64 && framed(writer, seq, msg.len()) == msg).then_some((writer, seq))
}

/// What a reader got, one entry per receive, up to end of file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Whole(u32, u32),
    /// A message that is not one writer's whole message (the breach).
    Torn(usize),
    Truncated,
    /// No end of file within the watchdog's patience, or another error.
    Stuck(String),
}

/// Receives until end of file (at most 20 s per message).
fn read_to_end(conn: &mut Connection) -> Vec<Got> {
    let mut got = Vec::new();
    loop {
        match conn.recv_timeout::<Vec<u8>>(Duration::from_secs(20)) {
            Ok(msg) => got.push(match whole(&msg) {
                Some((w, s)) => Got::Whole(w, s),
                None => Got::Torn(msg.len()),
            }),
            Err(RecvTimeoutError::Recv(RecvError::Eof)) => return got,
            Err(RecvTimeoutError::Recv(RecvError::TruncatedMessage)) => got.push(Got::Truncated),
            Err(e) => {
                got.push(Got::Stuck(e.to_string()));
                return got;
            }
        }
    }
}

fn wholes(writer: u32, seqs: std::ops::RangeInclusive<u32>) -> Vec<Got> {
    seqs.map(|s| Got::Whole(writer, s)).collect()
}

// Entry points of children (run by [`handover_child`]).

/// Sends `SCHEDULE` (its first message `first` bytes long) as writer
/// `id` on the named pipe `name`, then closes. A broken pipe (the reader
/// end was closed) ends it quietly.
fn write_messages((name, id, first): (String, u32, u64)) -> EntryResult {
    let mut conn = Connection::open(&name, End::Second)?;
    let mut schedule = SCHEDULE;
    schedule[0] = usize::try_from(first)?;
    for (seq, len) in schedule.into_iter().enumerate() {
        match conn.send_bytes(&framed(id, seq as u32, len), 0, None) {
            Ok(()) => {}
            Err(SendError::BrokenPipe) => return Ok(()),
            Err(e) => return Err(format!("write-messages: {e}").into()),
        }
    }
    Ok(())
}
static WRITE_MESSAGES: Entry<(String, u32, u64)> = shmring::entry!(write_messages);

/// Takes everything there is on the named pipe `name` (the start of a
/// message), says so, and waits to be killed.
fn drain_then_hang((name,): (String,)) -> EntryResult {
    let mut conn = Connection::open(&name, End::First)?;
    assert_eq!(conn.try_recv_bytes(None), Err(TryRecvError::Empty));
    println!("handover: drained");
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}
static DRAIN_THEN_HANG: Entry<(String,)> = shmring::entry!(drain_then_hang);

/// Reads the end it was given to end of file and prints what it got.
fn read_to_end_child((mut conn,): (Connection,)) -> EntryResult {
    let got = read_to_end(&mut conn);
    println!("handover: {got:?}");
    Ok(())
}
static READ_TO_END: Entry<(Connection,)> = shmring::entry!(read_to_end_child);

/// Runs the children of these tests.
#[test]
fn handover_child() {
    run_child(&[&WRITE_MESSAGES, &DRAIN_THEN_HANG, &READ_TO_END]);
}

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "handover::handover_child";

/// Starts `builder`'s child with its stdout piped (for [`report`]).
fn spawn_piped(builder: ProcessBuilder) -> Child {
    builder
        .stdout(Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap()
}

/// A named simplex pipe with 4 KiB rings and 256-byte fragments.
fn named_small(prefix: &str) -> (String, Pipe) {
    let name = unique_name(prefix);
    let pipe = small().duplex(false).create(&name).unwrap();
    (name, pipe)
}

/// Starts a `write_messages` child on the named pipe `name`, as writer
/// `writer` whose first message is `first` bytes long.
fn spawn_writer(name: &str, writer: u32, first: usize) -> Child {
    let args = (name.to_string(), writer, first as u64);
    spawn_piped(child(CHILD_TEST, &WRITE_MESSAGES, args))
}

/// What follows `handover: ` in `child`'s output (libtest may have begun
/// the line). The rest of its output is read (and dropped) by a thread, so
/// that the child never writes into a closed pipe.
fn report(child: &mut Child) -> String {
    const MARK: &str = "handover: ";
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let found = lines.by_ref().map_while(Result::ok).find_map(|line| {
        line.find(MARK)
            .map(|at| line[at + MARK.len()..].to_string())
    });
    std::thread::spawn(move || lines.for_each(drop));
    found.expect("the child said nothing")
}

fn signal(child: &Child, sig: libc::c_int) {
    shmring_testkit::signal(child.id(), sig);
}

fn stop(child: &Child) {
    shmring_testkit::stop_child(child.id());
}

/// Lets a writer that waits on a full ring fill it again: it is then in the
/// middle of its message (a 10 000-byte one never fits a 4 KiB ring).
fn let_it_fill(writer: &Child) {
    signal(writer, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(150));
    stop(writer);
}

// ---------------------------------------------------------------------------
// 1. A writer killed mid-message and replaced.

/// The dead writer's fragments, in the reader's hands or still in the ring,
/// must never be returned with the new writer's message: the reader reports
/// the cut-off message (`TruncatedMessage`, once) and then returns the new
/// writer's messages, whole.
#[test]
fn a_writer_killed_mid_message_and_replaced_splices_nothing() {
    let _dog = dog("writer replaced");
    for reader_took_some in [false, true] {
        let (name, pipe) = named_small("pipe-writer-replaced");
        let mut reader = pipe.connection(End::First).unwrap();
        let mut dead = spawn_writer(&name, 1, 10_000);
        assert!(reader.poll_timeout(Duration::from_secs(20)).unwrap());
        std::thread::sleep(Duration::from_millis(150)); // it fills the ring
        if reader_took_some {
            // The start of its first message, taken into the reader while
            // the writer is stopped (a running writer can keep up with the
            // try, which then returns the whole message).
            stop(&dead);
            assert_eq!(reader.try_recv_bytes(None), Err(TryRecvError::Empty));
            let_it_fill(&dead); // it refills the ring, and is stopped again
        }
        dead.kill().unwrap();
        dead.wait().unwrap();
        // The reader has not looked since, so nobody noticed the death:
        // the end is taken over. Then the reader reads, in a thread (the
        // ring is full of the dead writer's fragments).
        let mut new = Connection::open(&name, End::Second).unwrap();
        let reading = std::thread::spawn(move || read_to_end(&mut reader));
        for (seq, len) in [30, 1_000, 10_000, HEAD].into_iter().enumerate() {
            new.send_bytes(&framed(2, seq as u32, len), 0, None)
                .unwrap();
        }
        drop(new);
        let got = reading.join().unwrap();
        let mut expected = vec![Got::Truncated];
        expected.extend(wholes(2, 0..=3));
        assert_eq!(got, expected, "reader took some: {reader_took_some}");
    }
}

// ---------------------------------------------------------------------------
// 2. A reader replaced mid-message.

/// A writer stopped with the ring full, and a reader that took the start of
/// its first message (`try_recv`: `Empty`, fragments kept). The ring then
/// holds more of that message (`first` = 10 000 bytes), or its end and the
/// start of the next (`first` = 5 000).
fn writer_mid_message(prefix: &str, first: usize) -> (String, Pipe, Child, Connection) {
    let (name, pipe) = named_small(prefix);
    let mut reader = pipe.connection(End::First).unwrap();
    let writer = spawn_writer(&name, 1, first);
    assert!(reader.poll_timeout(Duration::from_secs(20)).unwrap());
    std::thread::sleep(Duration::from_millis(150));
    stop(&writer);
    assert_eq!(reader.try_recv_bytes(None), Err(TryRecvError::Empty));
    // More of the same message, in the ring this time.
    let_it_fill(&writer);
    (name, pipe, writer, reader)
}

/// The new reader skips the rest of the message the old one was in, then
/// returns every later message whole.
#[test]
fn a_reader_killed_mid_message_is_replaced_without_a_torn_message() {
    let _dog = dog("reader killed");
    for first in [10_000, 5_000] {
        let (name, pipe) = named_small("pipe-reader-killed");
        let writer = spawn_writer(&name, 1, first);
        std::thread::sleep(Duration::from_millis(150)); // it fills the ring
        stop(&writer);
        let mut dead = spawn_piped(child(CHILD_TEST, &DRAIN_THEN_HANG, (name.clone(),)));
        assert_eq!(report(&mut dead), "drained");
        let_it_fill(&writer);
        dead.kill().unwrap();
        dead.wait().unwrap();
        // The writer is stopped: nobody noticed the death; the end is
        // taken over.
        let mut reader = pipe.connection(End::First).unwrap();
        // The ring holds only the rest of the message the dead reader was
        // in (10 000): poll skips it and says there is nothing. (With 5 000
        // it may hold the start of the next one too, if the writer got
        // that far.)
        if first == 10_000 {
            assert_eq!(reader.poll(), Ok(false));
        }
        assert_eq!(reader.try_recv_bytes(None), Err(TryRecvError::Empty));
        signal(&writer, libc::SIGCONT);
        assert_eq!(read_to_end(&mut reader), wholes(1, 1..=5), "first {first}");
        assert!(wait_child(writer, Duration::from_secs(30)).success());
    }
}

/// A reader end handed to a child after a partial `try_recv`: the child
/// starts at the next message.
#[test]
fn a_reader_end_handed_over_mid_message_starts_at_the_next_message() {
    let _dog = dog("reader handed over");
    for first in [10_000, 5_000] {
        let (_name, _pipe, writer, reader) = writer_mid_message("pipe-reader-shared", first);
        let mut child = spawn_piped(child(CHILD_TEST, &READ_TO_END, (&reader,)));
        drop(reader);
        signal(&writer, libc::SIGCONT);
        let expected = format!("{:?}", wholes(1, 1..=5));
        assert_eq!(report(&mut child), expected, "first {first}");
        assert!(wait_child(child, Duration::from_secs(30)).success());
        assert!(wait_child(writer, Duration::from_secs(30)).success());
    }
}

/// A reader end closed mid-message and opened again: the writer gets
/// `BrokenPipe`, the new reader skips the rest of the message (never
/// returning its tail as a message) and sees end of file; if the writer
/// had begun its next message (with a 5 000-byte first one it nearly
/// always has), that one ends cut off (Python's "got end of file during
/// message").
#[test]
fn a_reader_end_closed_mid_message_and_reopened_returns_no_tail() {
    let _dog = dog("reader reopened");
    for (first, expected) in [(10_000, &[][..]), (5_000, &[Got::Truncated][..])] {
        for by_name in [false, true] {
            let (name, pipe, writer, mut reader) =
                writer_mid_message("pipe-reader-reopened", first);
            reader.close();
            let mut again = if by_name {
                Connection::open(&name, End::First).unwrap()
            } else {
                pipe.connection(End::First).unwrap()
            };
            signal(&writer, libc::SIGCONT);
            let got = read_to_end(&mut again);
            // A slow writer may not have reached its second message.
            assert!(
                got == expected || got.is_empty(),
                "first {first}, by name: {by_name}: {got:?}"
            );
            assert!(wait_child(writer, Duration::from_secs(30)).success());
        }
    }
}

/// A message longer than `maxlength` closes a read-only end after its first
/// fragments (Python's "bad message length"); whoever claims the end again
/// starts at the next message, not at the rest of that one.
#[test]
fn an_end_claimed_after_a_bad_message_length_starts_at_the_next_message() {
    let _dog = dog("bad length then reclaim");
    let (name, pipe) = named_small("pipe-bad-length-reclaim");
    let mut reader = pipe.connection(End::First).unwrap();
    let mut writer = Connection::open(&name, End::Second).unwrap();
    writer.send_bytes(&framed(1, 0, 1_000), 0, None).unwrap();
    writer.send_bytes(&framed(1, 1, 40), 0, None).unwrap();
    assert!(matches!(
        reader.recv_bytes(Some(300)),
        Err(RecvError::BadMessageLength { maxlength: 300 })
    ));
    assert!(reader.closed());
    drop(writer);
    let mut again = pipe.connection(End::First).unwrap();
    assert_eq!(read_to_end(&mut again), wholes(1, 1..=1));
}

// ---------------------------------------------------------------------------
// 3. A closed end opened again.

/// The reopened reader of a closed end returns the whole messages left in
/// the ring, then end of file, at once (it used to wait forever while the
/// live writer got `BrokenPipe`); the same handle may claim the end again.
#[test]
fn a_reader_end_reopened_after_close_sees_the_end() {
    let _dog = dog("reader reopened after close");
    let (name, pipe) = named_small("pipe-reopen-reader");
    let mut reader = pipe.connection(End::First).unwrap();
    let mut writer = Connection::open(&name, End::Second).unwrap();
    writer.send_bytes(&framed(1, 0, 40), 0, None).unwrap();
    writer.send_bytes(&framed(1, 1, 1_000), 0, None).unwrap();
    reader.close();
    assert_eq!(writer.send(&1u8), Err(SendError::BrokenPipe));
    // Another process's way first (by name): it used to wait forever.
    let mut again = Connection::open(&name, End::First).unwrap();
    assert!(again.poll_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(read_to_end(&mut again), wholes(1, 0..=1));
    assert!(again.poll().unwrap(), "end of file");
    assert_eq!(
        again.try_recv_bytes(None),
        Err(TryRecvError::Recv(RecvError::Eof))
    );
    drop(again);
    // The handle that closed it may claim it again (it used to say the end
    // was held by this very process).
    let mut third = pipe
        .connection(End::First)
        .expect("an end this handle closed can be claimed again");
    assert_eq!(
        third.recv_timeout::<Vec<u8>>(Duration::from_secs(20)),
        Err(RecvTimeoutError::Recv(RecvError::Eof))
    );
    assert_eq!(writer.send(&1u8), Err(SendError::BrokenPipe));
}

/// The symmetric case: a writer end reopened after close stays broken, and
/// the reader drains, then sees end of file.
#[test]
fn a_writer_end_reopened_after_close_stays_broken() {
    let _dog = dog("writer reopened after close");
    let (name, pipe) = named_small("pipe-reopen-writer");
    let mut reader = pipe.connection(End::First).unwrap();
    let mut writer = pipe.connection(End::Second).unwrap();
    writer.send_bytes(&framed(1, 0, 40), 0, None).unwrap();
    writer.close();
    for by_name in [false, true] {
        let mut again = if by_name {
            Connection::open(&name, End::Second).unwrap()
        } else {
            pipe.connection(End::Second)
                .expect("an end this handle closed can be claimed again")
        };
        assert_eq!(again.send(&1u8), Err(SendError::BrokenPipe));
        assert_eq!(
            again.try_send(&1u8),
            Err(TrySendError::Send(SendError::BrokenPipe))
        );
        assert_eq!(
            again.send_timeout(&vec![0u8; 1_000], Duration::from_secs(1)),
            Err(SendTimeoutError::Send(SendError::BrokenPipe))
        );
    }
    assert_eq!(read_to_end(&mut reader), wholes(1, 0..=0));
}

/// Both rings of a duplex end, closed and claimed again.
#[test]
fn a_duplex_end_reopened_after_close_sees_the_end_both_ways() {
    let _dog = dog("duplex reopened");
    let name = unique_name("pipe-reopen-duplex");
    let pipe = small().create(&name).unwrap();
    let mut a = pipe.connection(End::First).unwrap();
    let mut b = pipe.connection(End::Second).unwrap();
    b.send_bytes(&framed(2, 0, 700), 0, None).unwrap();
    a.close();
    assert_eq!(b.send(&1u8), Err(SendError::BrokenPipe));
    assert_eq!(b.recv_bytes(None), Err(RecvError::Eof));
    let mut again = pipe.connection(End::First).unwrap();
    assert_eq!(read_to_end(&mut again), wholes(2, 0..=0));
    assert_eq!(again.send(&1u8), Err(SendError::BrokenPipe));
}

/// Claiming an end this process still holds says so, instead of naming our
/// own pid as "a live process".
#[test]
fn claiming_an_end_held_by_this_process_says_so() {
    let _dog = dog("held here");
    let (name, pipe) = named_small("pipe-held-here");
    let _reader = pipe.connection(End::First).unwrap();
    let same = pipe.connection(End::First).unwrap_err();
    let other = match Connection::open(&name, End::First).unwrap_err() {
        ConnectError::Role(e) => e,
        e => panic!("an open error: {e}"),
    };
    for err in [same, other] {
        assert!(matches!(err, RoleError::RoleTaken { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("held by this process"), "{text}");
        assert!(!text.contains("live process"), "{text}");
    }
}

// ---------------------------------------------------------------------------
// Stalls: a stopped process is alive.

/// A writer stopped for 500 ms in the middle of a message, with a reader
/// waiting for the rest: nothing lost, nothing torn, no false end of file.
#[test]
fn a_writer_stopped_mid_message_loses_and_tears_nothing() {
    let _dog = dog("writer stopped");
    let (name, pipe) = named_small("pipe-writer-stopped");
    let mut reader = pipe.connection(End::First).unwrap();
    let writer = spawn_writer(&name, 1, 10_000);
    assert!(reader.poll_timeout(Duration::from_secs(20)).unwrap());
    std::thread::sleep(Duration::from_millis(150)); // mid-message, ring full
    stop(&writer);
    let reading = std::thread::spawn(move || read_to_end(&mut reader));
    std::thread::sleep(Duration::from_millis(500));
    signal(&writer, libc::SIGCONT);
    let got = reading.join().unwrap();
    assert_eq!(got, wholes(1, 0..=5));
    assert!(wait_child(writer, Duration::from_secs(30)).success());
}

/// A reader stopped for 500 ms while the writer streams long messages (so
/// mid-message, nearly always: 10 000-byte messages through a 4 KiB ring):
/// no `BrokenPipe` for the writer waiting on the full ring, and the reader
/// gets every message whole.
#[test]
fn a_reader_stopped_mid_message_loses_and_tears_nothing() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let _dog = dog("reader stopped");
    let (reader, mut writer) = small().duplex(false).pair().unwrap();
    let mut child = spawn_piped(child(CHILD_TEST, &READ_TO_END, (&reader,)));
    drop(reader);
    let (sent, done) = (
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let sending = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            // ORDERING: Relaxed — test-local flags; `join` orders the rest.
            while !done.load(Ordering::Relaxed) {
                let len = if seq % 4 == 3 { 300 } else { 10_000 };
                writer.send_bytes(&framed(7, seq, len), 0, None).unwrap();
                seq += 1;
                sent.store(seq, Ordering::Relaxed);
            }
            seq
        })
    };
    // ORDERING: Relaxed — as above.
    assert!(wait_until(Duration::from_secs(20), || sent
        .load(Ordering::Relaxed)
        > 5));
    stop(&child);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(20));
    done.store(true, Ordering::Relaxed);
    let messages = sending.join().unwrap();
    assert_eq!(
        report(&mut child),
        format!("{:?}", wholes(7, 0..=messages - 1))
    );
    assert!(wait_child(child, Duration::from_secs(30)).success());
}

/// Python's connection is used by one thread at a time, and so is ours:
/// `Connection` is `Send` but not `Sync`, so two threads cannot send (or
/// receive) on one connection at once and interleave two messages'
/// fragments; the compiler refuses it. (Behind a `Mutex`, each whole
/// `send` or `recv` holds the lock.)
const _: () = {
    trait NotSync<Marker> {
        fn check() {}
    }
    impl<T: ?Sized> NotSync<()> for T {}
    struct IfSync;
    impl<T: ?Sized + Sync> NotSync<IfSync> for T {}
    // Ambiguous, and so a compile error, if `Connection: Sync`.
    let _ = <Connection as NotSync<_>>::check;
};

/// Two threads sending long messages through one connection behind a
/// mutex, and two receiving from one: every message whole.
#[test]
fn threads_sharing_a_connection_behind_a_mutex_never_interleave() {
    use std::sync::{Arc, Mutex};
    let _dog = dog("threads share");
    let (a, b) = small().pair().unwrap();
    let (a, b) = (Arc::new(Mutex::new(a)), Arc::new(Mutex::new(b)));
    let per_thread = 50u32;
    let senders: Vec<_> = (0..2u32)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for seq in 0..per_thread {
                    let msg = framed(t, seq, 600 + 97 * seq as usize);
                    // Blocking while holding the lock: the other sender
                    // waits, the receivers use the other connection.
                    a.lock().unwrap().send_bytes(&msg, 0, None).unwrap();
                }
            })
        })
        .collect();
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let msg = b.lock().unwrap().try_recv_bytes(None);
                    match msg {
                        Ok(m) => got.push(whole(&m).ok_or(m.len())),
                        Err(TryRecvError::Empty) => std::thread::yield_now(),
                        Err(TryRecvError::Recv(RecvError::Eof)) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    drop(a); // the last reference: closes, the receivers see end of file
    let mut all: Vec<_> = receivers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect::<Result<Vec<_>, _>>()
        .expect("a torn message");
    all.sort_unstable();
    let expected: Vec<_> = (0..2)
        .flat_map(|t| (0..per_thread).map(move |s| (t, s)))
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn framed_messages_check_themselves() {
    let msg = framed(3, 9, 100);
    assert_eq!(whole(&msg), Some((3, 9)));
    let mut spliced = msg[..60].to_vec();
    spliced.extend_from_slice(&framed(4, 0, HEAD));
    assert_eq!(whole(&spliced), None);
    assert_eq!(whole(&msg[24..]), None);
    for i in 0..msg.len() {
        let mut torn = msg.clone();
        torn[i] ^= 1;
        assert_eq!(whole(&torn), None, "byte {i}");
    }
}
