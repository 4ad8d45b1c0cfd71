//! The constructors: `new(..)` for the common case, one builder per kind
//! whose every setter reaches the segment (checked through a second handle
//! that opens the object by name, as another process would), lifecycle
//! errors apart from role errors, and the version-0 refusal at the object
//! level.

use std::error::Error as _;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shmring::dict::{Dict, DictError};
use shmring::lock::{Lock, RLock};
use shmring::pipe::{ConnectError, Connection, End, Pipe};
use shmring::queue::{JoinableQueue, PutError, Queue, SimpleQueue, TryPutError};
use shmring::segment::Segment;
use shmring::{mpmc, spsc, CreateError, OpenError, RoleError, SegmentError, UnlinkPolicy};
use shmring_testkit::{shm_exists, shm_path, unique_name};

/// Puts small messages through a fresh handle until the ring is full.
fn fill(q: &Queue<u64>) -> u64 {
    let mut n = 0;
    loop {
        match q.try_put(n) {
            Ok(()) => n += 1,
            Err(TryPutError::Full(_)) => return n,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn every_queue_setter_reaches_the_segment() {
    let name = unique_name("builder-queue");
    let creator = Queue::<Vec<u8>>::builder()
        .maxsize(3)
        .producers(2)
        .ring_bytes(4096)
        .max_message(64)
        .mode(0o660)
        .peer_rows(3)
        .unlink(UnlinkPolicy::Never)
        .create(&name)
        .unwrap();
    let other = Queue::<Vec<u8>>::open(&name).unwrap();
    // maxsize
    assert_eq!(other.maxsize(), 3);
    // max_message: a Vec<u8> encodes as its bytes.
    other.put(vec![1; 64]).unwrap();
    assert!(matches!(
        other.put(vec![1; 65]),
        Err(PutError::TooLarge(_, 65))
    ));
    assert_eq!(creator.get().unwrap(), vec![1; 64]);
    // producers: two rings; `other`'s put holds one, a sender the other,
    // and the next claim finds none free.
    let a = other.sender().unwrap();
    let err = other.sender().unwrap_err();
    assert!(matches!(err, RoleError::NoFreeRing { rings: 2 }), "{err}");
    assert!(err.to_string().contains("`producers`"), "{err}");
    drop(a);
    // mode
    let mode = std::fs::metadata(shm_path(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    // peer_rows: the creator and `other` hold two rows of three.
    assert_eq!(other.segment().peer_rows(), 3);
    let third = Queue::<Vec<u8>>::open(&name).unwrap();
    let err = Queue::<Vec<u8>>::open(&name).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Segment(SegmentError::PeerTableFull { rows: 3, .. })
        ),
        "{err}"
    );
    // unlink: Never keeps the name after every handle is gone.
    drop((creator, other, third));
    assert!(shm_exists(&name));
    Segment::unlink(&name).unwrap();
}

#[test]
fn ring_bytes_sets_how_much_a_producer_ring_holds() {
    let small = Queue::<u64>::builder()
        .producers(1)
        .ring_bytes(4096)
        .max_message(64)
        .anonymous()
        .unwrap();
    let big = Queue::<u64>::builder()
        .producers(1)
        .ring_bytes(8192)
        .max_message(64)
        .anonymous()
        .unwrap();
    let (n_small, n_big) = (fill(&small), fill(&big));
    assert!(n_small > 0 && n_small <= 4096 / 8, "{n_small}");
    assert!(n_big >= 2 * n_small - 1, "{n_small} then {n_big}");
}

#[test]
fn the_default_unlink_policy_removes_the_name_with_the_last_handle() {
    let name = unique_name("builder-unlink");
    let q = Queue::<u64>::builder().create(&name).unwrap();
    let other = Queue::<u64>::open(&name).unwrap();
    drop(q);
    assert!(shm_exists(&name), "a peer is still attached");
    drop(other);
    assert!(!shm_exists(&name));
}

#[test]
fn the_other_queue_kinds_and_the_engine_take_the_same_names() {
    let name = unique_name("builder-joinable");
    let _q = JoinableQueue::<u64>::builder()
        .maxsize(5)
        .create(&name)
        .unwrap();
    assert_eq!(JoinableQueue::<u64>::open(&name).unwrap().maxsize(), 5);
    assert_eq!(JoinableQueue::<u64>::new(7).unwrap().maxsize(), 7);
    assert_eq!(Queue::<u64>::new(9).unwrap().maxsize(), 9);

    let name = unique_name("builder-simple");
    let s = SimpleQueue::<Vec<u8>>::builder()
        .max_message(16)
        .create(&name)
        .unwrap();
    let other = SimpleQueue::<Vec<u8>>::open(&name).unwrap();
    assert!(matches!(
        other.put(vec![0; 17]),
        Err(PutError::TooLarge(_, 17))
    ));
    other.put(vec![0; 16]).unwrap();
    assert_eq!(s.get().unwrap().len(), 16);
    assert!(SimpleQueue::<u8>::new().unwrap().is_empty());

    let name = unique_name("builder-mpmc");
    let _q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(64)
        .maxsize(4)
        .create(&name)
        .unwrap();
    let other = mpmc::ByteQueue::open(&name).unwrap();
    let _p = (other.producer().unwrap(), other.producer().unwrap());
    let err = other.producer().unwrap_err();
    assert!(matches!(err, RoleError::NoFreeRing { rings: 2 }), "{err}");
    assert!(mpmc::ByteQueue::new().is_ok());

    let name = unique_name("builder-ring");
    let _r = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(100)
        .create(&name)
        .unwrap();
    let other = spsc::Ring::open(&name).unwrap();
    assert_eq!(
        (other.config().capacity, other.config().max_record),
        (4096, 100)
    );
    let _tx = other.producer().unwrap();
    let err = spsc::Ring::open(&name).unwrap().producer().unwrap_err();
    assert!(matches!(err, RoleError::RoleTaken { .. }), "{err}");
    assert!(spsc::Ring::new().is_ok());
}

#[test]
fn dict_setters_reach_the_segment() {
    let name = unique_name("builder-dict");
    let _d = Dict::<Vec<u8>, Vec<u8>>::builder()
        .capacity(2)
        .max_key(4)
        .max_value(3)
        .create(&name)
        .unwrap();
    let other = Dict::<Vec<u8>, Vec<u8>>::open(&name).unwrap();
    assert_eq!(
        other.insert(&vec![0; 5], &vec![]),
        Err(DictError::KeyTooLarge { len: 5, max: 4 })
    );
    assert_eq!(
        other.insert(&vec![0; 4], &vec![0; 4]),
        Err(DictError::ValueTooLarge { len: 4, max: 3 })
    );
    other.insert(&vec![1], &vec![1]).unwrap();
    other.insert(&vec![2], &vec![2]).unwrap();
    assert_eq!(
        other.insert(&vec![3], &vec![3]),
        Err(DictError::Full { capacity: 2 })
    );
    assert!(Dict::<u8, u8>::new().unwrap().is_empty());
}

#[test]
fn pipe_setters_reach_the_segment() {
    let name = unique_name("builder-pipe");
    let pipe = Pipe::builder()
        .duplex(false)
        .ring_bytes(4096)
        .fragment_bytes(256)
        .create(&name)
        .unwrap();
    let other = Pipe::open(&name).unwrap();
    assert!(!other.duplex());
    let reader = pipe.connection(End::First).unwrap();
    assert!(reader.readable() && !reader.writable());
    let mut writer = Connection::open(&name, End::Second).unwrap();
    // What fits the 4 KiB ring at once: several 256-byte fragments, never
    // the whole ring.
    let max = writer.max_whole_message().unwrap();
    assert!((256..4096).contains(&max), "{max}");
    writer.send_bytes(b"hi", 0, None).unwrap();
    // The end is now held: a role error, not an open error.
    let err = Connection::open(&name, End::Second).unwrap_err();
    assert!(
        matches!(err, ConnectError::Role(RoleError::RoleTaken { .. })),
        "{err}"
    );
    assert!(err.source().is_some());
    let (a, b) = Pipe::builder().ring_bytes(8192).pair().unwrap();
    assert!(a.writable() && b.writable());
    let (c, d) = Pipe::new(false).unwrap();
    assert!(c.readable() && !c.writable() && d.writable());
}

#[test]
fn locks_are_made_and_opened_like_the_rest() {
    let name = unique_name("builder-lock");
    let lock = Lock::builder().create(&name).unwrap();
    let other = Lock::open(&name).unwrap();
    let guard = lock.acquire().unwrap();
    assert!(other.try_acquire().is_err());
    drop(guard);
    // A Lock's segment is not an RLock: the object disagrees, an open error.
    let err = RLock::open(&name).unwrap_err();
    assert!(matches!(err, OpenError::Corrupted(_)), "{err}");
    assert!(Lock::new().is_ok() && RLock::new().is_ok());
}

#[test]
fn lifecycle_errors_are_apart_from_role_errors() {
    let name = unique_name("builder-errors");
    let err = Queue::<u64>::open(&name).unwrap_err();
    assert!(
        matches!(err, OpenError::Segment(SegmentError::NotFound { .. })),
        "{err}"
    );
    assert!(err.source().is_some());
    let err = Connection::open(&name, End::First).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Open(OpenError::Segment(SegmentError::NotFound { .. }))
        ),
        "{err}"
    );
    let _q = Queue::<u64>::builder().create(&name).unwrap();
    let err = Queue::<u64>::builder().create(&name).unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );
    // Another kind under the name: an open error.
    let err = Lock::open(&name).unwrap_err();
    assert!(
        matches!(err, OpenError::Segment(SegmentError::KindMismatch { .. })),
        "{err}"
    );
    // A refused mode is the segment's error, a refused size the option's.
    let err = Lock::builder()
        .mode(0o644)
        .create(&unique_name("builder-mode"))
        .unwrap_err();
    assert!(matches!(err, CreateError::Segment(_)), "{err}");
    let err = Queue::<u64>::builder()
        .ring_bytes(3)
        .anonymous()
        .unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::InvalidOption {
                option: "ring_bytes",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("invalid `ring_bytes`: 3 "),
        "{err}"
    );
}

#[test]
fn an_object_under_a_name_whose_version_reads_0_is_refused_at_once() {
    // What a hostile peer can leave: a file with the magic and a zero
    // version. A create is atomic (O_TMPFILE + linkat), so this is never a
    // segment being made, and the open does not wait for one: it fails
    // with the version, not after the name-lock timeout.
    let name = unique_name("builder-v0");
    let mut bytes = vec![0u8; 8192];
    bytes[..8].copy_from_slice(b"SHMRING\0");
    std::fs::write(shm_path(&name), &bytes).unwrap();
    let err = Lock::builder()
        .open_timeout(Duration::from_secs(30))
        .open(&name)
        .unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::Segment(SegmentError::VersionMismatch { found: 0, .. })
        ),
        "{err}"
    );
    std::fs::remove_file(shm_path(&name)).unwrap();
}

/// `hand_back_producer` and `close` give the ring up while the handle
/// lives on: another handle can take it; the first handle's next put
/// claims one again, and a closed handle claims none.
#[test]
fn a_handle_hands_its_ring_back_when_asked_and_when_closed() {
    let name = unique_name("hand-back");
    let first = Queue::<u32>::builder().producers(1).create(&name).unwrap();
    let second = Queue::<u32>::open(&name).unwrap();
    first.put(1).unwrap();
    assert!(matches!(second.put(2), Err(PutError::NoFreeRing(2, 1))));
    first.hand_back_producer();
    first.hand_back_producer(); // holds none: nothing to do
    second.put(2).unwrap();
    assert!(matches!(first.put(3), Err(PutError::NoFreeRing(3, 1))));
    second.close();
    assert!(matches!(second.put(4), Err(PutError::Closed(4))));
    first.put(3).unwrap();
    assert_eq!(
        [first.get(), first.get(), first.get()].map(Result::unwrap),
        [1, 2, 3]
    );
    std::fs::remove_file(shm_path(&name)).unwrap();
}

/// A queue handle takes its producer ring at its first put, or when asked
/// with `claim_producer`, which tells at once that every ring is owned;
/// a handle that only gets takes none.
#[test]
fn claim_producer_takes_the_ring_early_and_reports_none_free() {
    let name = unique_name("claim-producer");
    let first = Queue::<u32>::builder().producers(1).create(&name).unwrap();
    first.claim_producer().unwrap();
    first.claim_producer().unwrap(); // already holds one: nothing to do
    let second = Queue::<u32>::open(&name).unwrap();
    let err = second.claim_producer().unwrap_err();
    assert!(matches!(err, RoleError::NoFreeRing { rings: 1 }), "{err}");
    // The put path says the same, and hands the item back.
    assert!(matches!(second.put(7), Err(PutError::NoFreeRing(7, 1))));
    // Getting needs no ring.
    first.put(5).unwrap();
    assert_eq!(second.get().unwrap(), 5);
    // The ring is free again once its owner is gone.
    drop(first);
    second.claim_producer().unwrap();
    second.put(6).unwrap();
    assert_eq!(second.get().unwrap(), 6);
}

/// A closed handle's `claim_producer` takes no ring: close handed its ring
/// back, and it can put nothing into one any more, so holding one would
/// only keep it from other handles until the handle is dropped.
#[test]
fn a_closed_handle_claims_no_ring() {
    let name = unique_name("closed-claim");
    let first = Queue::<u32>::builder().producers(1).create(&name).unwrap();
    let second = Queue::<u32>::open(&name).unwrap();
    first.close();
    let _ = first.claim_producer();
    assert!(matches!(first.put(1), Err(PutError::Closed(1))));
    second.put(2).unwrap();
    assert_eq!(second.get().unwrap(), 2);
    std::fs::remove_file(shm_path(&name)).unwrap();
}
