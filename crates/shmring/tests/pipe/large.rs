//! Large messages and the framing of their records.

use std::sync::Arc;

use shmring::pipe::{Connection, End, Pipe};
use shmring::segment;
use shmring::FutexWaiter;
use shmring_core::record::Mark;
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::RingConfig;
use shmring_testkit::unique_name;

use super::dog;

/// Records in the rings of the named pipe `name` (its depth).
fn records(name: &str) -> u64 {
    let object = segment::inspect(name).unwrap().object.unwrap();
    object.depth.unwrap()
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
