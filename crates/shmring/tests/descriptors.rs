//! Typed object descriptors, seen from outside: inspection reports the same
//! figures for every kind as it always did (pinned here), and a hostile
//! parameter word in a segment's header, field by field, is reported as
//! corruption by an open and by inspection, never a panic.

use std::os::unix::fs::FileExt;

use shmring::dict::Dict;
use shmring::lock::{Lock, RLock};
use shmring::pipe::{End, Pipe};
use shmring::queue::{JoinableQueue, Queue, SimpleQueue};
use shmring::segment::{self, ObjectState};
use shmring::{mpmc, spsc, Builder, OpenError, Segment, UnlinkPolicy};
use shmring_testkit::{shm_path, unique_name};

/// Offset of the first parameter word in the segment header.
const PARAMS_AT: u64 = 80;

/// Builders of every kind, with the shapes the figures below expect;
/// `keep` ones leave the name in place after the last handle goes.
fn ring(keep: bool) -> Builder<spsc::Ring> {
    segment(
        spsc::Ring::builder().ring_bytes(4096).max_message(256),
        keep,
    )
}

fn mpmc_queue(keep: bool) -> Builder<mpmc::ByteQueue> {
    segment(
        mpmc::ByteQueue::builder()
            .producers(2)
            .ring_bytes(4096)
            .max_message(256)
            .maxsize(5),
        keep,
    )
}

/// A queue facade's settings (any of the three kinds).
macro_rules! small_queue {
    ($ty:ty, $keep:expr) => {
        segment(
            <$ty>::builder()
                .maxsize(9)
                .max_message(512)
                .ring_bytes(8192)
                .producers(3),
            $keep,
        )
    };
}

fn small_simple(keep: bool) -> Builder<SimpleQueue<u32>> {
    segment(
        SimpleQueue::<u32>::builder()
            .max_message(512)
            .ring_bytes(8192)
            .producers(3),
        keep,
    )
}

fn pipe(duplex: bool, keep: bool) -> Builder<Pipe> {
    segment(
        Pipe::builder()
            .duplex(duplex)
            .ring_bytes(4096)
            .fragment_bytes(1024),
        keep,
    )
}

fn dict(keep: bool) -> Builder<Dict<u32, u32>> {
    segment(
        Dict::<u32, u32>::builder()
            .capacity(16)
            .max_key(32)
            .max_value(48),
        keep,
    )
}

/// The segment options of the tests: with `keep`, the name stays after the
/// last handle goes, and four peer rows.
fn segment<O: shmring::SegmentObject>(b: Builder<O>, keep: bool) -> Builder<O> {
    if keep {
        b.unlink(UnlinkPolicy::Never).peer_rows(4)
    } else {
        b
    }
}

fn object(name: &str) -> ObjectState {
    segment::inspect(name).unwrap().object.unwrap()
}

fn state(
    capacity: Option<u64>,
    unit: &'static str,
    depth: Option<u64>,
    details: &[(&'static str, u64)],
    holds_data: Option<bool>,
) -> ObjectState {
    ObjectState {
        capacity,
        capacity_unit: unit,
        depth,
        details: details.to_vec(),
        holds_data,
        note: None,
    }
}

#[test]
fn inspection_reports_every_kind_s_figures_as_it_always_did() {
    let name = unique_name("desc-ring");
    let ring = ring(false).create(&name).unwrap();
    let mut tx = ring.producer().unwrap();
    tx.try_push(b"one").unwrap();
    tx.try_push(b"two").unwrap();
    let expected = state(
        Some(4096),
        "bytes",
        Some(2),
        &[("max_record", 256)],
        Some(true),
    );
    assert_eq!(object(&name), expected);
    drop((tx, ring));

    let name = unique_name("desc-mpmc");
    let queue = mpmc_queue(false).create(&name).unwrap();
    let empty = state(
        Some(8192),
        "bytes",
        Some(0),
        &[
            ("rings", 2),
            ("ring_capacity", 4096),
            ("max_record", 256),
            ("max_len", 5),
            ("closed", 0),
        ],
        Some(false),
    );
    assert_eq!(object(&name), empty);
    let mut tx = queue.producer().unwrap();
    tx.try_push(b"x").unwrap();
    let mut one = empty.clone();
    one.depth = Some(1);
    one.holds_data = Some(true);
    assert_eq!(object(&name), one);
    drop((tx, queue));

    let name = unique_name("desc-queue");
    let q = small_queue!(Queue<u32>, false).create(&name).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let expected = state(
        Some(3 * 8192),
        "bytes",
        Some(2),
        &[
            ("rings", 3),
            ("ring_capacity", 8192),
            ("max_record", 512),
            ("max_len", 9),
            ("closed", 0),
        ],
        Some(true),
    );
    assert_eq!(object(&name), expected);
    drop(q);

    let name = unique_name("desc-simple");
    let q = small_simple(false).create(&name).unwrap();
    q.put(1).unwrap();
    let expected = state(
        Some(3 * 8192),
        "bytes",
        Some(1),
        &[
            ("rings", 3),
            ("ring_capacity", 8192),
            ("max_record", 512),
            ("max_len", 0),
            ("closed", 0),
        ],
        Some(true),
    );
    assert_eq!(object(&name), expected);
    drop(q);

    let name = unique_name("desc-joinable");
    let q = small_queue!(JoinableQueue<u32>, false)
        .create(&name)
        .unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    let _got = q.get().unwrap();
    let expected = state(
        Some(3 * 8192),
        "bytes",
        Some(2),
        &[
            ("rings", 3),
            ("ring_capacity", 8192),
            ("max_record", 512),
            ("max_len", 9),
            ("closed", 0),
            ("unfinished_tasks", 3),
        ],
        Some(true),
    );
    assert_eq!(object(&name), expected);
    drop(q);

    for duplex in [false, true] {
        let name = unique_name("desc-pipe");
        let pipe = pipe(duplex, false).create(&name).unwrap();
        let empty = state(
            Some(4096 * (1 + u64::from(duplex))),
            "bytes",
            Some(0),
            &[("duplex", duplex.into()), ("max_record", 1024)],
            Some(false),
        );
        assert_eq!(object(&name), empty, "duplex {duplex}");
        let mut end = pipe.connection(End::Second).unwrap();
        end.send(&b"hello".to_vec()).unwrap();
        if duplex {
            let mut other = pipe.connection(End::First).unwrap();
            other.send(&b"back".to_vec()).unwrap();
            other.send(&b"again".to_vec()).unwrap();
        }
        let mut full = empty.clone();
        full.depth = Some(if duplex { 3 } else { 1 });
        full.holds_data = Some(true);
        assert_eq!(object(&name), full, "duplex {duplex}");
    }

    let name = unique_name("desc-dict");
    let dict = dict(false).create(&name).unwrap();
    assert_eq!(
        object(&name),
        state(
            Some(16),
            "entries",
            Some(0),
            &[("max_key", 32), ("max_value", 48), ("entries", 0)],
            Some(false)
        )
    );
    dict.insert(&1, &10).unwrap();
    dict.insert(&2, &20).unwrap();
    assert_eq!(
        object(&name),
        state(
            Some(16),
            "entries",
            Some(2),
            &[("max_key", 32), ("max_value", 48), ("entries", 2)],
            Some(true)
        )
    );
    drop(dict);

    let name = unique_name("desc-lock");
    let lock = Lock::builder().create(&name).unwrap();
    let free = state(
        None,
        "",
        None,
        &[("flavor", 1), ("recoveries", 0)],
        Some(false),
    );
    assert_eq!(object(&name), free);
    let held = lock.acquire().unwrap();
    let row = segment::inspect(&name).unwrap().peers[0].row;
    assert_eq!(
        object(&name),
        state(
            None,
            "",
            None,
            &[
                ("flavor", 1),
                ("recoveries", 0),
                ("owner_row", row.into()),
                ("owner_pid", std::process::id().into()),
                ("owner_alive", 1),
            ],
            Some(false)
        )
    );
    drop(held);
    drop(lock);

    let name = unique_name("desc-rlock");
    let lock = RLock::builder().create(&name).unwrap();
    assert_eq!(
        object(&name),
        state(
            None,
            "",
            None,
            &[("flavor", 2), ("recoveries", 0)],
            Some(false)
        )
    );
    drop(lock);
}

/// A facade of one kind: how to create its segment, how to open it.
struct Kind {
    what: &'static str,
    /// Parameter words the kind uses.
    fields: usize,
    create: fn(&str),
    open: fn(&str) -> Result<(), OpenError>,
    /// Whether inspection says "no data" even when it cannot decode it.
    never_holds_data: bool,
}

fn kinds() -> Vec<Kind> {
    fn opened<T>(r: Result<T, OpenError>) -> Result<(), OpenError> {
        r.map(drop)
    }
    vec![
        Kind {
            what: "ring",
            fields: 2,
            create: |n| drop(ring(true).create(n).unwrap()),
            open: |n| opened(spsc::Ring::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "mpmc queue",
            fields: 4,
            create: |n| drop(mpmc_queue(true).create(n).unwrap()),
            open: |n| opened(mpmc::ByteQueue::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "queue",
            fields: 4,
            create: |n| drop(small_queue!(Queue<u32>, true).create(n).unwrap()),
            open: |n| opened(Queue::<u32>::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "joinable queue",
            fields: 4,
            create: |n| drop(small_queue!(JoinableQueue<u32>, true).create(n).unwrap()),
            open: |n| opened(JoinableQueue::<u32>::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "pipe",
            fields: 4,
            create: |n| drop(pipe(true, true).create(n).unwrap()),
            open: |n| opened(Pipe::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "simplex pipe",
            fields: 4,
            create: |n| drop(pipe(false, true).create(n).unwrap()),
            open: |n| opened(Pipe::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "dict",
            fields: 3,
            create: |n| drop(dict(true).create(n).unwrap()),
            open: |n| opened(Dict::<u32, u32>::open(n)),
            never_holds_data: false,
        },
        Kind {
            what: "lock",
            fields: 1,
            create: |n| drop(segment(Lock::builder(), true).create(n).unwrap()),
            open: |n| opened(Lock::open(n)),
            never_holds_data: true,
        },
        Kind {
            what: "rlock",
            fields: 1,
            create: |n| drop(segment(RLock::builder(), true).create(n).unwrap()),
            open: |n| opened(RLock::open(n)),
            never_holds_data: true,
        },
    ]
}

/// Every parameter word of every kind, overwritten with values out of
/// range, at the edges, or merely different from what the object itself
/// records: an open reports `Corrupted` (never a panic, never a handle),
/// and inspection reports the segment with a note that the object fails
/// validation and (but for a lock, which never holds data) no claim that
/// it holds no data.
#[test]
fn a_hostile_parameter_word_is_corrupted_on_open_and_in_inspection() {
    for kind in kinds() {
        // The untouched segment opens and inspects cleanly.
        let name = unique_name("desc-hostile");
        (kind.create)(&name);
        (kind.open)(&name).unwrap_or_else(|e| panic!("{}: {e}", kind.what));
        assert_eq!(object(&name).note, None, "{}", kind.what);
        Segment::unlink(&name).unwrap();

        for field in 0..kind.fields {
            let at = PARAMS_AT + 8 * field as u64;
            let name = unique_name("desc-hostile");
            (kind.create)(&name);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(shm_path(&name))
                .unwrap();
            let mut word = [0u8; 8];
            file.read_exact_at(&mut word, at).unwrap();
            let original = u64::from_ne_bytes(word);
            let hostile = [
                0,
                1,
                2,
                3,
                7,
                u64::MAX,
                u64::MAX / 2 + 1,
                original.wrapping_add(1),
                original.wrapping_mul(2),
                original.wrapping_sub(4096),
            ];
            for value in hostile.into_iter().filter(|&v| v != original) {
                let case = format!("{} word {field}: {original:#x} -> {value:#x}", kind.what);
                file.write_all_at(&value.to_ne_bytes(), at).unwrap();
                match (kind.open)(&name) {
                    Err(OpenError::Corrupted(_)) => {}
                    other => panic!("{case}: open gave {other:?}"),
                }
                let o = object(&name);
                let note = o.note.as_deref().unwrap_or_else(|| panic!("{case}: {o:?}"));
                assert!(
                    note.contains("fails validation") && note.contains("corrupted"),
                    "{case}: {note}"
                );
                let no_data = kind.never_holds_data.then_some(false);
                assert_eq!(o.holds_data, no_data, "{case}: {o:?}");
            }
            drop(file);
            Segment::unlink(&name).unwrap();
        }
    }
}
