//! A ring's pages are mapped when a handle attaches, not by its traffic:
//! the first lap through a fresh queue takes no page fault (each fault of
//! the first lap was a round trip of 10 µs or more on a VM).

use shmring::pipe::Pipe;
use shmring::queue::Queue;

/// Minor page faults of the calling thread so far.
fn minor_faults() -> i64 {
    // SAFETY: `rusage` is a plain C struct of integers; all-zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into `usage`, valid and writable.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    usage.ru_minflt
}

const RING_BYTES: u64 = 1 << 20;
/// Pages of one ring: what an unpopulated mapping faults on in one lap.
const RING_PAGES: i64 = (RING_BYTES / 4096) as i64;
/// Faults tolerated in the measured lap (the allocator, the test harness):
/// far below one per page.
const SLACK: i64 = 16;

#[test]
fn a_queue_lap_takes_no_page_fault() {
    let q = Queue::<Vec<u8>>::builder()
        .ring_bytes(RING_BYTES)
        .anonymous()
        .unwrap();
    let mut tx = q.sender().unwrap();
    let mut rx = q.receiver();
    let msg = vec![7u8; 56]; // a 64-byte record
    let mut buf = Vec::with_capacity(64);
    // One message first: claims, allocations and code pages outside the
    // measured part.
    tx.put(msg.clone()).unwrap();
    rx.get_into(&mut buf).unwrap();
    let laps = 2 * RING_BYTES / 64;
    let before = minor_faults();
    for _ in 0..laps {
        tx.put(msg.clone()).unwrap();
        assert_eq!(rx.get_into(&mut buf).unwrap(), 56);
    }
    let faults = minor_faults() - before;
    assert!(
        faults < SLACK,
        "{faults} minor faults in two laps of a {RING_PAGES}-page ring"
    );
}

#[test]
fn a_pipe_lap_takes_no_page_fault() {
    let (mut reader, mut writer) = Pipe::new(false).unwrap();
    let msg = [3u8; 120]; // a 128-byte record
    let mut buf = vec![0u8; 256];
    writer.send_bytes(&msg, 0, None).unwrap();
    reader.recv_bytes_into(&mut buf, 0).unwrap();
    // Four laps of the default ring (256 KiB or less).
    let before = minor_faults();
    for _ in 0..4 * (256 << 10) / 128 {
        writer.send_bytes(&msg, 0, None).unwrap();
        assert_eq!(reader.recv_bytes_into(&mut buf, 0).unwrap(), 120);
    }
    let faults = minor_faults() - before;
    assert!(
        faults < SLACK,
        "{faults} minor faults in four laps of a pipe"
    );
}

/// A segment opened by name (as every other process attaches) is mapped
/// populated too: writing each of its pages takes no fault. (Its file has
/// no holes, which is what decides it; a sparse file is mapped lazily,
/// `segment::corrupt`'s sparse-file test.)
#[test]
fn an_opened_segment_is_populated() {
    use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};
    use std::sync::atomic::{AtomicU64, Ordering};
    const LEN: usize = 1 << 20;
    let name = shmring_testkit::unique_name("populated");
    let opts = CreateOptions {
        unlink: UnlinkPolicy::OnCreatorDrop,
        ..CreateOptions::default()
    };
    let _creator = Segment::create(&name, ObjectKind::SpscRing, [0; 8], LEN, &opts, |_, _| {
        Ok(())
    })
    .unwrap();
    let opened = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert!(opened.object_len() >= LEN);
    let base = opened.object_ptr().as_ptr();
    let before = minor_faults();
    for page in 0..LEN / 4096 {
        // SAFETY: in bounds (page * 4096 < LEN <= object_len), 8-aligned
        // (the object is page-aligned), alive as long as `opened`; the
        // object is this test's and only accessed atomically.
        let word = unsafe { &*base.add(page * 4096).cast::<AtomicU64>() };
        // ORDERING: Relaxed — only the fault matters, nobody reads it.
        word.store(page as u64, Ordering::Relaxed);
    }
    let faults = minor_faults() - before;
    assert!(
        faults < SLACK,
        "{faults} minor faults writing the {} pages of an opened segment",
        LEN / 4096
    );
}
