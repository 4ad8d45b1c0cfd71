//! Large messages: a message takes as many records as it needs, and its end
//! is said by the framing marks, not by the records' lengths (a message of
//! exactly `fragment_bytes` is one record); an all-or-nothing send asks for
//! exactly the room its records take from where the ring stands; a receive
//! copies records straight into the caller's buffer, and one that gives up
//! in the middle of a message hands what it took to the next receive, of
//! any kind.

use std::sync::Arc;

use shmring::pipe::{Connection, End, Pipe, RecvError, TryRecvError, TrySendError};
use shmring::segment;
use shmring::FutexWaiter;
use shmring_core::record::Mark;
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::RingConfig;
use shmring_testkit::unique_name;

use super::{dog, pattern};

/// The default ring, and its default fragment (a quarter of it).
const RING: usize = 256 << 10;
const FRAGMENT: usize = RING / 4;

/// Records in the rings of the named pipe `name` (its depth).
fn records(name: &str) -> u64 {
    let object = segment::inspect(name).unwrap().object.unwrap();
    object.depth.unwrap()
}

/// A named simplex pipe of the default shape, and its two ends.
fn named_default(prefix: &str) -> (String, Pipe, Connection, Connection) {
    let name = unique_name(prefix);
    let pipe = Pipe::builder().duplex(false).create(&name).unwrap();
    let reader = pipe.connection(End::First).unwrap();
    let writer = pipe.connection(End::Second).unwrap();
    (name, pipe, reader, writer)
}

#[test]
fn a_message_of_exactly_the_fragment_size_is_one_record() {
    let _dog = dog("one fragment, one record");
    let (name, _pipe, mut reader, mut writer) = named_default("pipe-one-record");
    assert_eq!(writer.max_whole_message(), Some(3 * FRAGMENT - 24));
    for (len, count) in [
        (0, 1),
        (FRAGMENT - 1, 1),
        (FRAGMENT, 1),
        (FRAGMENT + 1, 2),
        (2 * FRAGMENT, 2),
        (3 * FRAGMENT - 24, 3),
    ] {
        let msg = pattern(len, len as u8);
        // The blocking send (which streams) and the all-or-nothing one
        // frame a message alike; the receives of every kind take it whole,
        // and nothing is left after it (no empty end record).
        for how in 0..4 {
            match how {
                0 => writer.send_bytes(&msg, 0, None).unwrap(),
                _ => writer.try_send_bytes(&msg, 0, None).unwrap(),
            }
            assert_eq!(records(&name), count, "{len} bytes, send {how}");
            match how {
                0 | 1 => assert!(reader.recv_bytes(None).unwrap() == msg, "{len}"),
                2 => assert!(reader.try_recv::<Vec<u8>>().unwrap() == msg, "{len}"),
                _ => {
                    let mut buf = vec![0; len + 3];
                    assert_eq!(reader.recv_bytes_into(&mut buf, 3), Ok(len));
                    assert!(buf[3..] == msg, "{len}");
                }
            }
            assert_eq!(records(&name), 0, "{len} bytes: all taken");
            assert!(!reader.poll().unwrap(), "{len} bytes: nothing after it");
        }
    }
}

#[test]
fn three_messages_of_a_quarter_ring_are_in_flight_at_once() {
    let _dog = dog("three in flight");
    // One record each (65,544 bytes): three fit the 256 KiB ring, a
    // fourth does not.
    let (mut reader, mut writer) = Pipe::new(false).unwrap();
    let msg = pattern(FRAGMENT, 1);
    for i in 0..3 {
        writer
            .try_send_bytes(&msg, 0, None)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    assert_eq!(
        writer.try_send_bytes(&msg, 0, None),
        Err(TrySendError::Full)
    );
    for _ in 0..3 {
        assert!(reader.try_recv_bytes(None).unwrap() == msg);
    }
    // Two records each (a fragment and 1000 bytes: 66,560 bytes, no wrap
    // on the way): the third needs 66,560 of the 129,024 bytes left, which
    // a room check reserving a fragment's worth of padding on top
    // (132,096) refused.
    let (mut reader, mut writer) = Pipe::new(false).unwrap();
    let msg = pattern(FRAGMENT + 1000, 2);
    for i in 0..3 {
        writer
            .try_send_bytes(&msg, 0, None)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    assert_eq!(
        writer.try_send_bytes(&msg, 0, None),
        Err(TrySendError::Full)
    );
    for _ in 0..3 {
        assert!(reader.try_recv_bytes(None).unwrap() == msg);
    }
    assert_eq!(reader.try_recv_bytes(None), Err(TryRecvError::Empty));
}

/// A small named simplex pipe (4 KiB ring, 256-byte fragments) read by its
/// first end, written by a raw producer on its ring: records with any
/// marks, at the test's pace, where a writing connection would stream.
struct Raw {
    name: String,
    reader: Connection,
    writer: spsc::Producer<FutexWaiter>,
    _pipe: Pipe,
}

fn raw(prefix: &str) -> Raw {
    let config = RingConfig {
        capacity: 4096,
        max_record: 256,
    };
    let name = unique_name(prefix);
    let pipe = Pipe::builder()
        .duplex(false)
        .ring_bytes(config.capacity)
        .fragment_bytes(config.max_record)
        .create(&name)
        .unwrap();
    let reader = pipe.connection(End::First).unwrap();
    let len = SpscLayout::new(&config).unwrap().total;
    let keep: spsc::KeepAlive = Arc::new(pipe.clone());
    // SAFETY: ring 0 (the first end's incoming ring) lies at the start of
    // the object region, `len` bytes, page aligned; `keep` holds the
    // mapping; this producer is the ring's only writer (the second end is
    // never claimed) and uses it only through the ring protocol.
    let ring = unsafe { spsc::Ring::attach_in_place(pipe.segment().object_ptr(), len, keep) };
    let writer = ring.unwrap().producer(FutexWaiter::new()).unwrap();
    Raw {
        name,
        reader,
        writer,
        _pipe: pipe,
    }
}

/// A receive of each kind: into a caller's buffer (of the given length, at
/// offset 5), into a `Vec`, or decoded.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Into(usize),
    Bytes,
    Decode,
}

impl Kind {
    fn recv(self, reader: &mut Connection, wait: bool) -> Result<Vec<u8>, TryRecvError> {
        match (self, wait) {
            (Kind::Into(len), _) => {
                let mut buf = vec![0xEE; 5 + len];
                let got = match wait {
                    true => reader.recv_bytes_into(&mut buf, 5).map_err(Into::into),
                    false => reader.try_recv_bytes_into(&mut buf, 5),
                };
                assert!(buf[..5].iter().all(|&b| b == 0xEE), "before the offset");
                got.map(|n| buf[5..5 + n].to_vec())
            }
            (Kind::Bytes, true) => reader.recv_bytes(None).map_err(Into::into),
            (Kind::Bytes, false) => reader.try_recv_bytes(None),
            (Kind::Decode, true) => reader.recv::<Vec<u8>>().map_err(Into::into),
            (Kind::Decode, false) => reader.try_recv::<Vec<u8>>(),
        }
    }
}

#[test]
fn a_message_half_taken_by_one_receive_is_finished_by_any_other() {
    let _dog = dog("half taken, finished");
    // 700 bytes: records of 256, 256 and 188. The first receive (a try)
    // takes the first two and gives up; the last arrives; the second
    // receive, of another kind or the same, returns all of it.
    let msg = pattern(700, 9);
    let kinds = [
        Kind::Into(1000),
        Kind::Into(700),
        // Shorter than the message: the first two records (512 bytes) fit,
        // or only the first does.
        Kind::Into(600),
        Kind::Into(300),
        Kind::Bytes,
        Kind::Decode,
    ];
    for first in kinds {
        for then in kinds {
            let what = format!("{first:?} then {then:?}");
            let mut r = raw("pipe-half-taken");
            let pieces = [&msg[..256], &msg[256..512], &msg[512..]];
            for (i, piece) in pieces.iter().take(2).enumerate() {
                r.writer.try_push_marked(piece, Mark::nth(i, 3)).unwrap();
            }
            assert_eq!(
                first.recv(&mut r.reader, false),
                Err(TryRecvError::Empty),
                "{what}"
            );
            assert_eq!(records(&r.name), 0, "{what}: taken off the ring");
            r.writer
                .try_push_marked(pieces[2], Mark::nth(2, 3))
                .unwrap();
            let expected = match then {
                Kind::Into(len) if len < msg.len() => {
                    Err(RecvError::BufferTooShort(msg.clone()).into())
                }
                _ => Ok(msg.clone()),
            };
            assert_eq!(then.recv(&mut r.reader, true), expected, "{what}");
            // Nothing left of it: the next message comes whole, at once.
            r.writer.try_push(b"next").unwrap();
            assert_eq!(
                r.reader.try_recv_bytes(None),
                Ok(b"next".to_vec()),
                "{what}"
            );
        }
    }
}

#[test]
fn a_record_of_any_length_ends_a_message_when_its_mark_says_so() {
    let _dog = dog("marks, not lengths");
    let mut r = raw("pipe-marks");
    let full = pattern(256, 1);
    // A full-length record without "more": a whole message.
    r.writer.try_push(&full).unwrap();
    assert_eq!(r.reader.try_recv_bytes(None), Ok(full.clone()));
    // Short records with "more", then an empty one that ends the message.
    r.writer.try_push_marked(b"ab", Mark::nth(0, 3)).unwrap();
    r.writer.try_push_marked(b"cd", Mark::nth(1, 3)).unwrap();
    assert_eq!(r.reader.try_recv_bytes(None), Err(TryRecvError::Empty));
    r.writer.try_push_marked(b"", Mark::nth(2, 3)).unwrap();
    assert_eq!(r.reader.try_recv_bytes(None), Ok(b"abcd".to_vec()));
    // A message cut off by one that begins: the part taken is dropped
    // (`TruncatedMessage`), the next message comes whole.
    r.writer.try_push_marked(&full, Mark::nth(0, 2)).unwrap();
    r.writer.try_push(b"new").unwrap();
    let mut buf = [0; 300];
    assert_eq!(
        r.reader.try_recv_bytes_into(&mut buf, 0),
        Err(RecvError::TruncatedMessage.into())
    );
    assert_eq!(r.reader.try_recv_bytes_into(&mut buf, 0), Ok(3));
    assert_eq!(&buf[..3], b"new");
}

/// Found by the pipe fuzz harness once it read with tries: a try that
/// skipped the rest of a message this reader never saw begin (left by the
/// end's previous reader) gave up right after, with a whole message behind
/// it in the ring: `Empty`, which means "no whole message yet".
#[test]
fn a_try_skips_a_cut_off_message_and_takes_the_whole_one_behind_it() {
    let _dog = dog("skip then take");
    let mut r = raw("pipe-skip-then-take");
    // The end of a message whose beginning another reader took.
    r.writer.try_push_marked(&[1; 40], Mark::nth(1, 3)).unwrap();
    r.writer.try_push_marked(&[2; 40], Mark::nth(2, 3)).unwrap();
    r.writer.try_push(b"whole").unwrap();
    let mut buf = [0; 16];
    assert_eq!(r.reader.try_recv_bytes_into(&mut buf, 0), Ok(5));
    assert_eq!(&buf[..5], b"whole");
    r.writer.try_push_marked(&[3; 40], Mark::nth(1, 2)).unwrap();
    r.writer.try_push(b"again").unwrap();
    assert_eq!(r.reader.try_recv::<Vec<u8>>(), Ok(b"again".to_vec()));
    assert_eq!(records(&r.name), 0);
}
