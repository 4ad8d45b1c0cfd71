//! Pipe and Connection: each behaviour of Python's `multiprocessing.Pipe`
//! (python-semantics.md §4), in one process and between real processes
//! (this test binary re-executes itself, see `shmring_testkit`).

use std::time::{Duration, Instant};

use shmring::pipe::{
    ConnectError, Connection, End, Pipe, RecvError, RecvTimeoutError, SendError, TryRecvError,
};
use shmring::process::{Entry, EntryResult};
use shmring::{Builder, RoleError};
use shmring_testkit::{run_child, spawn_child, unique_name, wait_child, Watchdog};

#[path = "pipe/handover.rs"]
mod handover;
#[path = "pipe/large.rs"]
mod large;
#[path = "pipe/try_calls.rs"]
mod try_calls;

const _: () = {
    const fn send<T: Send>() {}
    send::<Connection>();
    send::<Pipe>();
};

fn dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(60), what)
}

/// A small ring with small fragments, so that fragmenting is exercised.
fn small() -> Builder<Pipe> {
    Pipe::builder().ring_bytes(4096).fragment_bytes(256)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect()
}

#[test]
fn duplex_sends_both_ways_typed_and_raw() {
    let _dog = dog("duplex");
    let (mut a, mut b) = Pipe::new(true).unwrap();
    assert!(a.readable() && a.writable() && b.readable() && b.writable());
    assert_eq!((a.end(), b.end()), (End::First, End::Second));
    a.send(&42u64).unwrap();
    a.send(&"text".to_string()).unwrap();
    assert_eq!(b.recv::<u64>().unwrap(), 42);
    assert_eq!(b.recv::<String>().unwrap(), "text");
    b.send_bytes(b"", 0, None).unwrap();
    b.send_bytes(b"hello", 1, Some(3)).unwrap();
    assert_eq!(a.recv_bytes(None).unwrap(), b"");
    assert_eq!(a.recv_bytes(None).unwrap(), b"ell");
    assert!(!a.poll().unwrap());
}

#[test]
fn simplex_first_reads_second_writes() {
    let _dog = dog("simplex");
    let (mut reader, mut writer) = Pipe::new(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(!writer.readable() && writer.writable());
    assert_eq!(reader.send(&1u8), Err(SendError::ReadOnly));
    assert_eq!(reader.send_bytes(b"x", 0, None), Err(SendError::ReadOnly));
    assert_eq!(writer.recv::<u8>(), Err(RecvError::WriteOnly));
    assert_eq!(writer.recv_bytes(None), Err(RecvError::WriteOnly));
    assert_eq!(
        writer.recv_bytes_into(&mut [0; 4], 0),
        Err(RecvError::WriteOnly)
    );
    assert_eq!(writer.wait_readable(), Err(RecvError::WriteOnly));
    writer.send_bytes(b"one way", 0, None).unwrap();
    assert_eq!(reader.recv_bytes(None).unwrap(), b"one way");
    assert_eq!(SendError::ReadOnly.to_string(), "connection is read-only");
    assert_eq!(RecvError::WriteOnly.to_string(), "connection is write-only");
}

#[test]
fn closed_handle_refuses_everything() {
    let _dog = dog("closed handle");
    let (mut a, _b) = Pipe::new(true).unwrap();
    assert!(!a.closed());
    a.close();
    a.close(); // twice is harmless
    assert!(a.closed());
    assert_eq!(a.send(&1u8), Err(SendError::HandleClosed));
    assert_eq!(a.send_bytes(b"x", 5, None), Err(SendError::HandleClosed));
    assert_eq!(a.recv::<u8>(), Err(RecvError::HandleClosed));
    assert_eq!(a.recv_bytes(None), Err(RecvError::HandleClosed));
    assert_eq!(
        a.recv_bytes_into(&mut [0; 4], 9),
        Err(RecvError::HandleClosed)
    );
    assert_eq!(a.wait_readable(), Err(RecvError::HandleClosed));
    assert_eq!(RecvError::HandleClosed.to_string(), "handle is closed");
}

#[test]
fn eof_only_after_buffered_messages_and_poll_is_true_at_eof() {
    let _dog = dog("eof");
    let (mut reader, mut writer) = Pipe::new(false).unwrap();
    for i in 0..3u32 {
        writer.send(&i).unwrap();
    }
    drop(writer);
    for i in 0..3u32 {
        assert!(reader.poll().unwrap());
        assert_eq!(reader.recv::<u32>().unwrap(), i);
    }
    assert!(reader.poll().unwrap(), "EOF is readable");
    assert_eq!(reader.wait_readable(), Ok(()));
    assert_eq!(reader.recv::<u32>(), Err(RecvError::Eof));
    assert_eq!(reader.recv_bytes(None), Err(RecvError::Eof));
    assert_eq!(reader.recv_bytes_into(&mut [0; 8], 0), Err(RecvError::Eof));
}

#[test]
fn eof_wakes_a_blocked_reader() {
    let _dog = dog("eof wakes");
    let (mut a, b) = Pipe::new(true).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(b);
    });
    assert_eq!(a.recv_bytes(None), Err(RecvError::Eof));
    closer.join().unwrap();
}

#[test]
fn sending_to_a_closed_end_is_a_broken_pipe() {
    let _dog = dog("broken pipe");
    let (a, mut b) = Pipe::new(true).unwrap();
    drop(a);
    assert_eq!(b.send(&1u8), Err(SendError::BrokenPipe));
    assert_eq!(
        b.send_bytes(&[0; 100_000], 0, None),
        Err(SendError::BrokenPipe)
    );
    assert_eq!(b.recv_bytes(None), Err(RecvError::Eof));
    let (reader, mut writer) = Pipe::new(false).unwrap();
    drop(reader);
    assert_eq!(writer.send(&1u8), Err(SendError::BrokenPipe));
}

#[test]
fn closing_wakes_a_writer_blocked_on_a_full_ring() {
    let _dog = dog("close wakes writer");
    let (reader, mut writer) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .pair()
        .unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(reader);
    });
    assert_eq!(
        writer.send_bytes(&[7; 1 << 20], 0, None),
        Err(SendError::BrokenPipe)
    );
    closer.join().unwrap();
}

#[test]
fn poll_waits_at_least_its_timeout_and_wakes_on_data() {
    let _dog = dog("poll");
    let (mut a, mut b) = Pipe::new(true).unwrap();
    assert!(!a.poll().unwrap());
    let start = Instant::now();
    assert!(!a.poll_timeout(Duration::from_millis(50)).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(50));
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        b.send(&7u16).unwrap();
        b
    });
    assert_eq!(a.wait_readable(), Ok(()));
    assert!(a.poll().unwrap(), "poll consumes nothing");
    assert_eq!(a.recv::<u16>().unwrap(), 7);
    drop(sender.join().unwrap());
}

#[test]
fn send_bytes_checks_offset_and_size() {
    let _dog = dog("send_bytes args");
    let (mut a, mut b) = Pipe::new(true).unwrap();
    let buf = b"0123456789";
    assert_eq!(
        a.send_bytes(buf, 11, None),
        Err(SendError::OffsetBeyondBuffer)
    );
    assert_eq!(
        a.send_bytes(buf, 3, Some(8)),
        Err(SendError::SizeBeyondBuffer)
    );
    assert_eq!(
        a.send_bytes(buf, 1, Some(usize::MAX)),
        Err(SendError::SizeBeyondBuffer)
    );
    assert_eq!(
        SendError::OffsetBeyondBuffer.to_string(),
        "buffer length < offset"
    );
    assert_eq!(
        SendError::SizeBeyondBuffer.to_string(),
        "buffer length < offset + size"
    );
    a.send_bytes(buf, 10, None).unwrap(); // offset == len: an empty message
    a.send_bytes(buf, 3, Some(7)).unwrap();
    a.send_bytes(buf, 2, None).unwrap();
    assert_eq!(b.recv_bytes(None).unwrap(), b"");
    assert_eq!(b.recv_bytes(None).unwrap(), b"3456789");
    assert_eq!(b.recv_bytes(None).unwrap(), b"23456789");
    assert!(!b.poll().unwrap(), "errors sent nothing");
}

#[test]
fn bad_message_length_makes_a_duplex_end_write_only() {
    let _dog = dog("maxlength duplex");
    let (mut a, mut b) = Pipe::new(true).unwrap();
    b.send_bytes(b"12345", 0, None).unwrap();
    b.send_bytes(b"123456", 0, None).unwrap();
    assert_eq!(a.recv_bytes(Some(5)).unwrap(), b"12345");
    let err = a.recv_bytes(Some(5)).unwrap_err();
    assert_eq!(err, RecvError::BadMessageLength { maxlength: 5 });
    assert_eq!(err.to_string(), "bad message length");
    assert!(!a.readable() && a.writable() && !a.closed());
    assert_eq!(a.recv_bytes(None), Err(RecvError::WriteOnly));
    assert_eq!(a.wait_readable(), Err(RecvError::WriteOnly));
    a.send(&1u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert_eq!(b.send(&2u8), Err(SendError::BrokenPipe));
}

#[test]
fn bad_message_length_closes_a_read_only_end() {
    let _dog = dog("maxlength simplex");
    let (mut reader, mut writer) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .pair()
        .unwrap();
    writer.send_bytes(&pattern(1000, 1), 0, None).unwrap(); // fragmented
    assert!(matches!(
        reader.recv_bytes(Some(999)),
        Err(RecvError::BadMessageLength { maxlength: 999 })
    ));
    assert!(reader.closed());
    assert_eq!(reader.recv_bytes(None), Err(RecvError::HandleClosed));
    assert_eq!(writer.send(&1u8), Err(SendError::BrokenPipe));
}

#[test]
fn recv_bytes_into_offset_and_buffer_too_short() {
    let _dog = dog("recv_bytes_into");
    let (mut a, mut b) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .pair()
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        a.recv_bytes_into(&mut buf, 9),
        Err(RecvError::OffsetTooLarge)
    );
    assert_eq!(RecvError::OffsetTooLarge.to_string(), "offset too large");
    b.send_bytes(b"abc", 0, None).unwrap();
    b.send_bytes(b"too long!", 0, None).unwrap();
    b.send_bytes(b"next", 0, None).unwrap();
    assert_eq!(a.recv_bytes_into(&mut buf, 5).unwrap(), 3);
    assert_eq!(&buf, b"\0\0\0\0\0abc");
    // Too short: the whole message comes back in the error, and is consumed.
    assert_eq!(
        a.recv_bytes_into(&mut buf, 0),
        Err(RecvError::BufferTooShort(b"too long!".to_vec()))
    );
    assert_eq!(
        a.recv_bytes_into(&mut buf, 9),
        Err(RecvError::OffsetTooLarge)
    );
    assert_eq!(a.recv_bytes_into(&mut buf, 4).unwrap(), 4);
    assert_eq!(&buf[4..], b"next");
    // Fragmented messages, fitting and not.
    let big = pattern(1000, 3);
    b.send_bytes(&big, 0, None).unwrap();
    b.send_bytes(&big, 0, None).unwrap();
    let mut large = vec![0u8; 1010];
    assert_eq!(a.recv_bytes_into(&mut large, 10).unwrap(), 1000);
    assert_eq!(&large[10..], &big[..]);
    assert_eq!(
        a.recv_bytes_into(&mut large, 11),
        Err(RecvError::BufferTooShort(big))
    );
}

#[test]
fn every_length_around_the_fragment_size_round_trips() {
    let _dog = dog("fragment edges");
    let (mut a, mut b) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .pair()
        .unwrap();
    for len in [0, 1, 255, 256, 257, 511, 512, 513, 768, 3000] {
        let msg = pattern(len, len as u8);
        a.send_bytes(&msg, 0, None).unwrap();
        assert_eq!(b.recv_bytes(None).unwrap(), msg, "length {len}");
        assert!(!b.poll().unwrap(), "length {len}: leftovers");
    }
}

/// `recv_bytes_with` tells the length before copying: a message of one
/// record goes from the ring into the closure's buffer, a longer one is
/// assembled first; the closure runs once per message and never for a
/// receive that finds nothing.
#[test]
fn recv_bytes_with_learns_the_length_first() {
    let _dog = dog("recv_bytes_with");
    let (mut a, mut b) = small().pair().unwrap();
    let mut calls = 0;
    assert_eq!(
        b.try_recv_bytes_with(|_| calls += 1),
        Err(TryRecvError::Empty)
    );
    assert_eq!(
        b.recv_bytes_with_timeout(|_| calls += 1, Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    );
    assert_eq!(calls, 0);
    for len in [0, 1, 255, 256, 257, 513, 3000] {
        let msg = pattern(len, 3);
        a.send_bytes(&msg, 0, None).unwrap();
        let got = b
            .recv_bytes_with(|m| {
                calls += 1;
                assert_eq!(m.is_empty(), len == 0);
                // More than a fragment (256 bytes here): assembled first.
                assert_eq!(m.assembled().is_some(), len > 256, "length {len}");
                let mut buf = vec![0xAA; m.len()];
                m.copy_to_slice(&mut buf);
                buf
            })
            .unwrap();
        assert_eq!(got, msg, "length {len}");
        assert!(!b.poll().unwrap(), "length {len}: leftovers");
    }
    assert_eq!(calls, 7);
    drop(a);
    assert_eq!(b.recv_bytes_with(|m| m.len()), Err(RecvError::Eof));
}

/// A message longer than the ring, streamed by a writer thread, is taken
/// by tries that each take what has arrived and keep it: the closure sees
/// it once, whole, and the next message follows.
#[test]
fn tries_of_recv_bytes_with_finish_a_streamed_message() {
    let _dog = dog("recv_bytes_with streamed");
    let (mut reader, mut writer) = small().duplex(false).pair().unwrap();
    let msg = pattern(20_000, 5);
    let expected = msg.clone();
    let sender = std::thread::spawn(move || {
        writer.send_bytes(&msg, 0, None).unwrap();
        writer.send_bytes(b"next", 0, None).unwrap();
    });
    let mut calls = 0;
    let mut seen_half = false;
    let got = loop {
        match reader.try_recv_bytes_with(|m| {
            calls += 1;
            let mut buf = vec![0; m.len()];
            m.copy_to_slice(&mut buf);
            buf
        }) {
            Ok(got) => break got,
            Err(TryRecvError::Empty) => {
                seen_half |= reader.mid_message();
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(calls, 1);
    // Longer than the ring: some try took part of it and kept it.
    assert!(seen_half);
    assert!(!reader.mid_message());
    assert!(got == expected);
    // A half-taken message is finished by the other receives too.
    assert_eq!(reader.recv_bytes(None).unwrap(), b"next");
    sender.join().unwrap();
}

#[test]
#[should_panic(expected = "destination length")]
fn recv_bytes_with_refuses_a_buffer_of_another_length() {
    let (mut a, mut b) = small().pair().unwrap();
    a.send_bytes(b"four", 0, None).unwrap();
    let _ = b.recv_bytes_with(|m| m.copy_to_slice(&mut [0; 3]));
}

#[test]
fn a_32_mib_message_goes_through_a_1_mib_ring() {
    let _dog = dog("32 MiB");
    let (mut reader, mut writer) = Pipe::builder()
        .ring_bytes(1 << 20)
        .duplex(false)
        .pair()
        .unwrap();
    let msg = pattern(32 << 20, 9);
    let expected = msg.clone();
    let sender = std::thread::spawn(move || {
        writer.send_bytes(&msg, 0, None).unwrap();
        writer.send(&1u8).unwrap();
    });
    assert!(reader.recv_bytes(None).unwrap() == expected);
    assert_eq!(reader.recv::<u8>().unwrap(), 1);
    sender.join().unwrap();
    assert_eq!(reader.recv::<u8>(), Err(RecvError::Eof));
}

/// Bursts of small messages, wrapping the ring many times; FIFO and intact.
/// `strace -f -c` on this test shows the hot path makes no system call
/// (the count does not grow with `SHMRING_TEST_MESSAGES`).
#[test]
fn many_small_messages_keep_order() {
    let _dog = dog("many small");
    let n: u64 = std::env::var("SHMRING_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (mut a, mut b) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .pair()
        .unwrap();
    let mut buf = [0u8; 64];
    let mut next = 0u64;
    for i in 0..n {
        a.send(&i).unwrap();
        if i % 50 == 49 {
            while next <= i {
                assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 8);
                assert_eq!(u64::from_ne_bytes(buf[..8].try_into().unwrap()), next);
                next += 1;
            }
        }
    }
}

#[test]
fn decoding_errors_are_codec_errors() {
    let _dog = dog("codec");
    let (mut a, mut b) = Pipe::new(true).unwrap();
    a.send_bytes(b"abc", 0, None).unwrap();
    assert!(matches!(b.recv::<u64>(), Err(RecvError::Decode(_))));
}

/// A named duplex pipe with the default configuration, and its name.
fn named_duplex(prefix: &str) -> (String, Pipe) {
    let name = unique_name(prefix);
    let pipe = Pipe::builder().create(&name).unwrap();
    (name, pipe)
}

#[test]
fn named_pipe_ends_are_claimed_once() {
    let _dog = dog("named");
    let (name, pipe) = named_duplex("pipe-named");
    assert!(pipe.duplex());
    let mut first = pipe.connection(End::First).unwrap();
    assert!(matches!(
        pipe.connection(End::First),
        Err(RoleError::RoleTaken { .. })
    ));
    assert!(matches!(
        Connection::open(&name, End::First),
        Err(ConnectError::Role(RoleError::RoleTaken { .. }))
    ));
    let mut second = Connection::open(&name, End::Second).unwrap();
    first.send(&5u32).unwrap();
    assert_eq!(second.recv::<u32>().unwrap(), 5);
    second.send(&6u32).unwrap();
    assert_eq!(first.recv::<u32>().unwrap(), 6);
}

#[test]
fn a_transferred_end_signals_nothing_when_dropped() {
    let _dog = dog("transfer");
    let (mut a, b) = Pipe::new(true).unwrap();
    let mut cmd = std::process::Command::new("true");
    b.share_with_child(&mut cmd, "SHMRING_TEST_PIPE").unwrap();
    assert!(b.closed());
    assert!(b.share_with_child(&mut cmd, "SHMRING_TEST_PIPE").is_err());
    drop(b); // like Python's `child_conn.close()` after `start()`
    assert!(
        !a.poll_timeout(Duration::from_millis(20)).unwrap(),
        "no EOF"
    );
    a.send(&1u8).unwrap(); // no broken pipe either: the child will read it
}

// ---------------------------------------------------------------------------
// Between processes.

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's entry point that takes one pipe end.
type ConnEntry = Entry<(Connection,)>;

/// Answers each number with the next one until end of file.
fn echo_plus_one((mut conn,): (Connection,)) -> EntryResult {
    loop {
        match conn.recv::<u64>() {
            Ok(n) => conn.send(&(n + 1))?,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(format!("echo: {e}").into()),
        }
    }
}
static ECHO_PLUS_ONE: ConnEntry = shmring::entry!(echo_plus_one);

fn send_three_and_exit((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..3u32 {
        conn.send(&i)?;
    }
    Ok(())
}
static SEND_THREE_AND_EXIT: ConnEntry = shmring::entry!(send_three_and_exit);

fn send_three_and_exit_without_closing((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..3u32 {
        conn.send(&i)?;
    }
    std::mem::forget(conn);
    std::process::exit(0);
}
static SEND_THREE_AND_EXIT_WITHOUT_CLOSING: ConnEntry =
    shmring::entry!(send_three_and_exit_without_closing);

pub(crate) fn send_three_then_hang((mut conn,): (Connection,)) -> EntryResult {
    for i in 0..3u32 {
        conn.send(&i)?;
    }
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}
pub(crate) static SEND_THREE_THEN_HANG: ConnEntry = shmring::entry!(send_three_then_hang);

fn send_huge_then_hang((mut conn,): (Connection,)) -> EntryResult {
    conn.send_bytes(&vec![1; 4 << 20], 0, None)?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}
static SEND_HUGE_THEN_HANG: ConnEntry = shmring::entry!(send_huge_then_hang);

fn read_one_reply_then_hang((mut conn,): (Connection,)) -> EntryResult {
    let n = conn.recv::<u32>()?;
    conn.send(&(n + 1))?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}
pub(crate) static READ_ONE_REPLY_THEN_HANG: ConnEntry = shmring::entry!(read_one_reply_then_hang);

#[test]
fn child_entry() {
    run_child(&[
        &ECHO_PLUS_ONE,
        &SEND_THREE_AND_EXIT,
        &SEND_THREE_AND_EXIT_WITHOUT_CLOSING,
        &SEND_THREE_THEN_HANG,
        &SEND_HUGE_THEN_HANG,
        &READ_ONE_REPLY_THEN_HANG,
        &try_calls::TRY_SEND_SIZES,
        &try_calls::SEND_PATTERN_THEN_HANG,
    ]);
}

/// Starts `entry` in a child with `conn` (transferred to it).
fn spawn_with(conn: &Connection, entry: &ConnEntry) -> std::process::Child {
    spawn_child(CHILD_TEST, entry, (conn,))
}

#[test]
fn duplex_ping_pong_with_a_child() {
    let _dog = dog("ping-pong");
    let (mut parent, child_end) = Pipe::new(true).unwrap();
    let child = spawn_with(&child_end, &ECHO_PLUS_ONE);
    drop(child_end);
    let mut n = 0u64;
    for _ in 0..1000 {
        parent.send(&n).unwrap();
        n = parent.recv::<u64>().unwrap() + 1;
    }
    assert_eq!(n, 2000);
    parent.close();
    assert!(wait_child(child, Duration::from_secs(30)).success());
}

#[test]
fn both_processes_count_their_messages_and_bytes() {
    let _dog = dog("pipe counters");
    let (_name, pipe) = named_duplex("pipe-counted");
    let mut parent = pipe.connection(End::First).unwrap();
    let child_end = pipe.connection(End::Second).unwrap();
    let child = spawn_with(&child_end, &ECHO_PLUS_ONE);
    drop(child_end);
    // 100 round trips (not a multiple of the batch of 64), half received
    // with `recv`, half with `recv_bytes_into`.
    let mut word = [0u8; 8];
    for i in 0..100u64 {
        parent.send(&i).unwrap();
        let back = if i % 2 == 0 {
            parent.recv::<u64>().unwrap()
        } else {
            assert_eq!(parent.recv_bytes_into(&mut word, 0).unwrap(), 8);
            u64::from_le_bytes(word)
        };
        assert_eq!(back, i + 1);
    }
    parent.close(); // flushes this end's counts; the child sees EOF, exits
    assert!(wait_child(child, Duration::from_secs(30)).success());
    use shmring::segment::PeerCounter::{BytesIn, BytesOut, Gets, Puts};
    let seg = pipe.segment();
    let sums = [Puts, Gets, BytesIn, BytesOut].map(|c| seg.counter_sum(c));
    assert_eq!(sums, [200, 200, 1600, 1600], "both ends, both ways");
}

#[test]
fn parent_sees_eof_when_the_child_exits() {
    let _dog = dog("child exits");
    for (role, entry) in [
        ("send-three-and-exit", &SEND_THREE_AND_EXIT),
        (
            "send-three-and-exit-without-closing",
            &SEND_THREE_AND_EXIT_WITHOUT_CLOSING,
        ),
    ] {
        let (mut reader, writer) = Pipe::new(false).unwrap();
        let child = spawn_with(&writer, entry);
        drop(writer);
        for i in 0..3u32 {
            assert_eq!(reader.recv::<u32>().unwrap(), i, "{role}");
        }
        assert_eq!(reader.recv::<u32>(), Err(RecvError::Eof), "{role}");
        assert!(wait_child(child, Duration::from_secs(30)).success());
    }
}

#[test]
fn eof_within_a_second_when_the_writer_is_killed() {
    let _dog = dog("writer killed");
    let (mut reader, writer) = Pipe::new(false).unwrap();
    let mut child = spawn_with(&writer, &SEND_THREE_THEN_HANG);
    drop(writer);
    for i in 0..3u32 {
        assert_eq!(reader.recv::<u32>().unwrap(), i);
    }
    // SIGKILL without reaping: a zombie, which `kill(pid, 0)` calls alive.
    child.kill().unwrap();
    let start = Instant::now();
    assert_eq!(reader.recv::<u32>(), Err(RecvError::Eof));
    let took = start.elapsed();
    assert!(reader.poll().unwrap());
    child.wait().unwrap();
    assert!(took < Duration::from_secs(1), "EOF took {took:?}");
}

#[test]
fn truncated_message_when_the_writer_dies_mid_message() {
    let _dog = dog("truncated");
    let (mut reader, writer) = Pipe::builder()
        .ring_bytes(4096)
        .fragment_bytes(256)
        .duplex(false)
        .pair()
        .unwrap();
    let mut child = spawn_with(&writer, &SEND_HUGE_THEN_HANG);
    drop(writer);
    assert!(reader.poll_timeout(Duration::from_secs(20)).unwrap());
    std::thread::sleep(Duration::from_millis(50)); // let it fill the ring
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(reader.recv_bytes(None), Err(RecvError::TruncatedMessage));
    assert_eq!(
        RecvError::TruncatedMessage.to_string(),
        "got end of file during message"
    );
    assert_eq!(reader.recv_bytes(None), Err(RecvError::Eof));
}

#[test]
fn broken_pipe_when_the_reader_process_dies() {
    let _dog = dog("reader killed");
    let (mut parent, child_end) = Pipe::new(true).unwrap();
    let mut child = spawn_with(&child_end, &READ_ONE_REPLY_THEN_HANG);
    drop(child_end);
    parent.send(&1u32).unwrap();
    assert_eq!(parent.recv::<u32>().unwrap(), 2, "the child has its end");
    child.kill().unwrap();
    let start = Instant::now();
    let chunk = vec![0u8; 1000];
    let err = loop {
        if let Err(e) = parent.send_bytes(&chunk, 0, None) {
            break e;
        }
    };
    let took = start.elapsed();
    assert_eq!(err, SendError::BrokenPipe);
    assert_eq!(parent.send(&1u8), Err(SendError::BrokenPipe), "latched");
    assert_eq!(parent.recv::<u32>(), Err(RecvError::Eof));
    child.wait().unwrap();
    assert!(took < Duration::from_secs(2), "BrokenPipe took {took:?}");
}
