//! The read-only inspection API (`segment::inspect`, `list`, `has_magic`)
//! and `reclaim`, on real segments and across real processes (the test
//! binary re-executes itself to run an entry point; see `shmring_testkit`).

use std::os::unix::fs::FileExt;
use std::time::Duration;

use proptest::prelude::*;
use shmring::lock::Lock;
use shmring::pipe::{End, Pipe};
use shmring::process::{Entry, EntryResult};
use shmring::queue::JoinableQueue;
use shmring::segment::{
    self, ObjectKind, PeerCounter, PeerState, Reclaimed, SegmentInfo, SegmentState,
};
use shmring::{mpmc, spsc, CreateOptions, Segment, SegmentError, UnlinkPolicy};
use shmring_testkit::{
    child, run_child, shm_path, sleep_forever, spawn_child, unique_name, wait_child, wait_until,
    Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(60), &format!("child {what}"))
}

/// Creates the queue `name`, leaves a message in it, and waits for its
/// SIGKILL.
fn queue_and_hang((name,): (String,)) -> EntryResult {
    let _dog = child_dog("queue_and_hang");
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
        .maxsize(0)
        .create(&name)?;
    q.producer()?.try_push(b"left behind")?;
    sleep_forever();
}
static QUEUE_AND_HANG: Entry<(String,)> = shmring::entry!(queue_and_hang);

/// Creates the segment `name` and hangs in its init, saying so.
fn hang_in_init((name,): (String,)) -> EntryResult {
    let _dog = child_dog("hang_in_init");
    let _ = Segment::create(
        &name,
        ObjectKind::SpscRing,
        [0; 8],
        4096,
        &CreateOptions::default(),
        |_, _| {
            println!("IN_INIT");
            sleep_forever()
        },
    );
    Ok(())
}
static HANG_IN_INIT: Entry<(String,)> = shmring::entry!(hang_in_init);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&QUEUE_AND_HANG, &HANG_IN_INIT]);
}

/// Spawns `entry` on `name` and waits until `ready` holds for its segment.
fn spawn_ready(
    entry: &Entry<(String,)>,
    name: &str,
    ready: impl Fn(&SegmentInfo) -> bool,
) -> std::process::Child {
    let child = spawn_child(CHILD_TEST, entry, (name.to_owned(),));
    let seen = wait_until(Duration::from_secs(20), || {
        segment::inspect(name).is_ok_and(|i| ready(&i))
    });
    assert!(
        seen,
        "child {} never got its segment {name} ready",
        entry.id()
    );
    child
}

fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(20));
}

#[test]
fn a_ring_shows_its_header_peers_counters_and_depth() {
    let name = unique_name("inspect-ring");
    let ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&name)
        .unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(b"one").unwrap();
    tx.try_push(b"two").unwrap();
    ring.segment().add_to_counter(PeerCounter::Puts, 2);
    ring.segment().add_to_counter(PeerCounter::BytesIn, 6);

    let info = segment::inspect(&name).unwrap();
    assert_eq!(info.name, name);
    assert_eq!(info.state, SegmentState::Ready);
    assert_eq!(info.mode, 0o600);
    assert!(!info.init_locked);
    let h = info.header.unwrap();
    assert_eq!(h.kind, ObjectKind::SpscRing);
    assert_eq!(h.version, segment::LAYOUT_VERSION);
    assert_eq!(h.creator_pid, std::process::id());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(h.creator_uid, unsafe { libc::geteuid() });
    assert_eq!(h.total_len, info.file_len);
    assert_eq!(h.peer_rows, CreateOptions::default().peer_rows);
    assert_eq!(h.unlink_policy, UnlinkPolicy::OnLastPeerDrop);
    assert_eq!(&h.params[..2], &[4096, 256]);
    assert_eq!(info.alive_peers(), 1);
    assert_eq!(info.dead_peers(), 0);
    let me = info.peers[0];
    assert_eq!(
        (me.pid, me.alive, me.state),
        (std::process::id(), true, PeerState::Attached)
    );
    assert_eq!(info.counters().get(PeerCounter::Puts), 2);
    assert_eq!(info.counters().get(PeerCounter::BytesIn), 6);
    assert_eq!(
        me.counters.iter().find(|(n, _)| *n == "puts"),
        Some(("puts", 2))
    );
    let o = info.object.as_ref().unwrap();
    assert_eq!(
        (o.capacity, o.capacity_unit, o.depth),
        (Some(4096), "bytes", Some(2))
    );
    assert_eq!(o.note, None);
    assert!(!info.is_abandoned());
    assert!(segment::list()
        .unwrap()
        .iter()
        .any(|r| r.as_ref().is_ok_and(|i| i.name == name)));
    assert!(segment::has_magic(&name).unwrap());
    // Inspection attached nothing: still one row, and the reader can claim.
    let again = segment::inspect(&name).unwrap();
    assert_eq!(again.peers.len(), 1);
}

#[test]
fn queues_pipes_and_locks_show_their_figures() {
    let qname = unique_name("inspect-queue");
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
        .maxsize(0)
        .create(&qname)
        .unwrap();
    let mut p = q.producer().unwrap();
    for _ in 0..3 {
        p.try_push(b"x").unwrap();
    }
    let o = segment::inspect(&qname).unwrap().object.unwrap();
    assert_eq!((o.capacity, o.depth), (Some(2 * 4096), Some(3)));
    assert!(o.details.contains(&("rings", 2)));
    assert!(o.details.contains(&("closed", 0)));

    let jname = unique_name("inspect-joinable");
    let j = JoinableQueue::<u64>::builder().create(&jname).unwrap();
    j.put(1).unwrap();
    j.put(2).unwrap();
    let info = segment::inspect(&jname).unwrap();
    assert_eq!(info.header.unwrap().kind, ObjectKind::JoinableQueue);
    let o = info.object.unwrap();
    assert_eq!(o.depth, Some(2), "{o:?}");
    assert!(o.details.contains(&("unfinished_tasks", 2)), "{o:?}");

    let pname = unique_name("inspect-pipe");
    let pipe = Pipe::builder().create(&pname).unwrap();
    let mut end = pipe.connection(End::First).unwrap();
    end.send(&b"hello".to_vec()).unwrap();
    let o = segment::inspect(&pname).unwrap().object.unwrap();
    assert_eq!(o.depth, Some(1), "{o:?}");
    assert!(o.details.contains(&("duplex", 1)));

    let lname = unique_name("inspect-lock");
    let lock = Lock::builder().create(&lname).unwrap();
    let _held = lock.acquire().unwrap();
    let o = segment::inspect(&lname).unwrap().object.unwrap();
    assert!(o.details.contains(&("owner_alive", 1)), "{o:?}");
    assert!(
        o.details
            .contains(&("owner_pid", std::process::id().into())),
        "{o:?}"
    );
}

#[test]
fn a_killed_creator_leaves_an_abandoned_segment_that_reclaim_removes() {
    let _dog = Watchdog::new(Duration::from_secs(60), "killed creator");
    let name = unique_name("inspect-dead");
    let child = spawn_ready(&QUEUE_AND_HANG, &name, |i| {
        i.alive_peers() == 1 && i.object.as_ref().is_some_and(|o| o.depth == Some(1))
    });
    assert_eq!(
        segment::reclaim(&name).unwrap(),
        Reclaimed::Kept("a peer is alive")
    );
    let pid = child.id();
    kill(child);
    let info = segment::inspect(&name).unwrap();
    assert_eq!((info.alive_peers(), info.dead_peers()), (0, 1));
    assert_eq!(info.peers[0].pid, pid);
    assert_eq!(info.header.unwrap().creator_pid, pid);
    assert!(info.is_abandoned());
    assert_eq!(segment::reclaim(&name).unwrap(), Reclaimed::Removed);
    assert!(matches!(
        segment::inspect(&name),
        Err(SegmentError::NotFound { .. })
    ));
}

#[test]
fn a_segment_being_created_is_invisible_and_never_reclaimed() {
    use std::io::BufRead;
    let _dog = Watchdog::new(Duration::from_secs(60), "creator in init");
    let name = unique_name("inspect-init");
    let mut child = child(CHILD_TEST, &HANG_IN_INIT, (name.clone(),))
        .stdout(std::process::Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("IN_INIT") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child exited");
    }
    // A segment gets its name only once complete: nothing to see, nothing
    // to reclaim, before or after its creator dies.
    let invisible = || {
        assert!(matches!(
            segment::inspect(&name),
            Err(SegmentError::NotFound { .. })
        ));
        assert!(matches!(
            segment::reclaim(&name),
            Err(SegmentError::NotFound { .. })
        ));
        assert!(!segment::list()
            .unwrap()
            .iter()
            .any(|r| r.as_ref().is_ok_and(|i| i.name == name)));
    };
    invisible();
    kill(child);
    invisible();
}

#[test]
fn cleanly_detached_segments_are_kept() {
    let name = unique_name("inspect-left");
    drop(
        spsc::Ring::builder()
            .ring_bytes(4096)
            .max_message(256)
            .unlink(UnlinkPolicy::Never)
            .create(&name)
            .unwrap(),
    );
    let info = segment::inspect(&name).unwrap();
    assert_eq!(info.peers[0].state, PeerState::Detached);
    assert_eq!((info.alive_peers(), info.dead_peers()), (0, 0));
    assert!(!info.is_abandoned());
    assert!(matches!(segment::reclaim(&name), Ok(Reclaimed::Kept(_))));
    Segment::unlink(&name).unwrap();
}

#[test]
fn foreign_short_and_linked_files_are_not_segments() {
    let foreign = unique_name("inspect-foreign");
    std::fs::write(shm_path(&foreign), b"hello, not a segment at all").unwrap();
    assert!(matches!(
        segment::inspect(&foreign),
        Err(SegmentError::NotShmring { .. })
    ));
    assert!(!segment::has_magic(&foreign).unwrap());
    assert!(matches!(
        segment::reclaim(&foreign),
        Err(SegmentError::NotShmring { .. })
    ));

    let short = unique_name("inspect-short");
    std::fs::write(shm_path(&short), b"SHMRING\0").unwrap();
    assert!(segment::has_magic(&short).unwrap());
    assert!(matches!(
        segment::inspect(&short),
        Err(SegmentError::NotShmring { .. })
    ));

    let link = unique_name("inspect-link");
    std::os::unix::fs::symlink(shm_path(&short), shm_path(&link)).unwrap();
    assert!(matches!(
        segment::inspect(&link),
        Err(SegmentError::NotShmring { .. })
    ));

    let listed = segment::list().unwrap();
    for name in [&foreign, &short, &link] {
        assert!(!listed
            .iter()
            .any(|r| r.as_ref().is_ok_and(|i| &i.name == name)));
        std::fs::remove_file(shm_path(name)).unwrap();
    }
    let missing = unique_name("inspect-missing");
    assert!(matches!(
        segment::inspect(&missing),
        Err(SegmentError::NotFound { .. })
    ));
    assert!(matches!(
        segment::has_magic(&missing),
        Err(SegmentError::NotFound { .. })
    ));
    assert!(matches!(
        segment::inspect("a/b"),
        Err(SegmentError::InvalidName { .. })
    ));
}

#[test]
fn a_corrupted_header_is_an_error_in_its_place() {
    let name = unique_name("inspect-corrupt");
    drop(
        spsc::Ring::builder()
            .ring_bytes(4096)
            .max_message(256)
            .unlink(UnlinkPolicy::Never)
            .create(&name)
            .unwrap(),
    );
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();
    file.write_all_at(&0u32.to_ne_bytes(), 56).unwrap(); // peer_rows
    let err = segment::inspect(&name).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Corrupted {
                field: "peer_rows",
                ..
            }
        ),
        "{err}"
    );
    let listed = segment::list().unwrap();
    assert!(listed
        .iter()
        .any(|r| matches!(r, Err(e) if e.to_string().contains(&name))));
    assert!(segment::has_magic(&name).unwrap());
    Segment::unlink(&name).unwrap();
}

/// A header that passes validation around arbitrary parameters, peer rows
/// and object bytes, so the deeper read paths see garbage too.
fn hostile_file(kind: u32, params: [u64; 8], rows: u32, object_pages: u64, fill: &[u8]) -> Vec<u8> {
    let total = (2 + object_pages) * 4096;
    let mut bytes: Vec<u8> = fill.iter().copied().cycle().take(total as usize).collect();
    let mut put = |at: usize, v: &[u8]| bytes[at..at + v.len()].copy_from_slice(v);
    put(0, b"SHMRING\0");
    put(8, &segment::LAYOUT_VERSION.to_ne_bytes());
    let abi = (0x5352u32 << 16) | ((std::mem::size_of::<usize>() as u32) << 8) | 1;
    put(12, &abi.to_ne_bytes());
    put(16, &kind.to_ne_bytes());
    put(20, &0u32.to_ne_bytes());
    put(24, &total.to_ne_bytes());
    put(40, &256u64.to_ne_bytes());
    put(48, &(u64::from(rows) * 128).to_ne_bytes());
    put(56, &rows.to_ne_bytes());
    put(60, &256u32.to_ne_bytes());
    put(64, &8192u64.to_ne_bytes());
    put(72, &(object_pages * 4096).to_ne_bytes());
    for (i, p) in params.iter().enumerate() {
        put(80 + 8 * i, &p.to_ne_bytes());
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_bytes_give_errors_or_figures_never_panics(
        kind in 0u32..8,
        params in proptest::array::uniform8(prop_oneof![0u64..8, Just(4096u64), Just(8192), any::<u64>()]),
        rows in 1u32..=30,
        object_pages in 1u64..4,
        fill in proptest::collection::vec(any::<u8>(), 1..64),
        truncate in proptest::option::of(0usize..12_000),
    ) {
        let name = unique_name("inspect-hostile");
        let mut bytes = hostile_file(kind, params, rows, object_pages, &fill);
        if let Some(len) = truncate {
            bytes.truncate(len);
        }
        std::fs::write(shm_path(&name), &bytes).unwrap();
        let result = segment::inspect(&name);
        if let Ok(info) = &result {
            prop_assert_eq!(info.state, SegmentState::Ready);
            let _ = info.is_abandoned();
        }
        std::fs::remove_file(shm_path(&name)).unwrap();
    }
}

/// The bytes of one freshly made segment of each kind (made, detached,
/// read, removed), for the patching test below.
fn pristine_images() -> Vec<Vec<u8>> {
    let names: Vec<String> = (0..5).map(|_| unique_name("inspect-image")).collect();
    drop(
        spsc::Ring::builder()
            .ring_bytes(4096)
            .max_message(256)
            .unlink(UnlinkPolicy::Never)
            .peer_rows(4)
            .create(&names[0])
            .unwrap(),
    );
    drop(
        mpmc::ByteQueue::builder()
            .producers(2)
            .ring_bytes(4096)
            .max_message(256)
            .maxsize(0)
            .unlink(UnlinkPolicy::Never)
            .peer_rows(4)
            .create(&names[1])
            .unwrap(),
    );
    drop(
        JoinableQueue::<u64>::builder()
            .ring_bytes(4096)
            .max_message(256)
            .producers(2)
            .unlink(UnlinkPolicy::Never)
            .peer_rows(4)
            .create(&names[2])
            .unwrap(),
    );
    drop(
        Pipe::builder()
            .ring_bytes(4096)
            .unlink(UnlinkPolicy::Never)
            .peer_rows(4)
            .create(&names[3])
            .unwrap(),
    );
    drop(
        Lock::builder()
            .unlink(UnlinkPolicy::Never)
            .peer_rows(4)
            .create(&names[4])
            .unwrap(),
    );
    names
        .iter()
        .map(|name| {
            let bytes = std::fs::read(shm_path(name)).unwrap();
            Segment::unlink(name).unwrap();
            bytes
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Real segments with random words overwritten anywhere past the magic
    /// (header, peer rows, ring positions and configs): errors or figures.
    #[test]
    fn patched_real_segments_never_panic(
        image in 0usize..5,
        patches in proptest::collection::vec(
            (
                // Header, peer rows, the object's control blocks (at 4096
                // with 4 peer rows), anywhere.
                prop_oneof![8usize..256, 256usize..768, 4096usize..5120, 8usize..40_000],
                prop_oneof![any::<u64>(), 0u64..16, Just(u64::MAX)],
            ),
            1..6,
        ),
    ) {
        thread_local!(static IMAGES: Vec<Vec<u8>> = pristine_images());
        let mut bytes = IMAGES.with(|images| images[image].clone());
        for (at, value) in patches {
            let at = (at % bytes.len()) & !7;
            if at >= 8 {
                bytes[at..at + 8].copy_from_slice(&value.to_ne_bytes());
            }
        }
        let name = unique_name("inspect-patched");
        std::fs::write(shm_path(&name), &bytes).unwrap();
        if let Ok(info) = segment::inspect(&name) {
            let _ = (info.is_abandoned(), info.counters());
        }
        std::fs::remove_file(shm_path(&name)).unwrap();
    }
}

#[test]
fn facades_count_their_traffic_in_their_peer_rows() {
    let name = unique_name("inspect-counters");
    let q = shmring::queue::Queue::<u64>::builder()
        .create(&name)
        .unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    for _ in 0..3 {
        q.get().unwrap();
    }
    assert!(q.get_timeout(Duration::from_millis(5)).is_err());
    let sum = segment::inspect(&name).unwrap().counters();
    assert_eq!(sum.get(PeerCounter::Puts), 3);
    assert_eq!(sum.get(PeerCounter::Gets), 3);
    assert_eq!(sum.get(PeerCounter::BytesIn), 24, "three u64s");
    assert_eq!(sum.get(PeerCounter::BytesOut), 24);
    assert_eq!(sum.get(PeerCounter::Timeouts), 1);

    let lock_name = unique_name("inspect-lock-counters");
    let holder = Lock::builder().create(&lock_name).unwrap();
    let other = Lock::open(&lock_name).unwrap();
    let _ = holder.acquire().unwrap().leak();
    assert!(other.acquire_timeout(Duration::from_millis(5)).is_err());
    let info = segment::inspect(&lock_name).unwrap();
    assert_eq!(info.counters().get(PeerCounter::Timeouts), 1);
    holder.release().unwrap();
}
