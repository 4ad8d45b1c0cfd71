//! Header corruption: every bad field gives its typed error, and no byte
//! pattern makes open panic or hang.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};
use shmring::SegmentError;
use shmring_testkit::{unique_name, Watchdog};

use super::common::*;

// Header offsets (pinned by compile-time asserts in segment/header.rs).
const MAGIC: u64 = 0;
const VERSION: u64 = 8;
const ABI: u64 = 12;
const KIND: u64 = 16;
const UNLINK: u64 = 20;
const TOTAL_LEN: u64 = 24;
const PEER_OFFSET: u64 = 40;
const PEER_LEN: u64 = 48;
const PEER_ROWS: u64 = 56;
const HEADER_LEN: u64 = 60;
const OBJECT_OFFSET: u64 = 64;
const OBJECT_LEN_AT: u64 = 72;

/// A live segment whose file the test scribbles on, restoring it after.
struct Victim {
    name: String,
    _creator: Segment,
    file: File,
    header: Vec<u8>,
    len: u64,
}

impl Victim {
    fn new() -> Victim {
        let name = unique_name("corrupt");
        let opts = CreateOptions {
            unlink: UnlinkPolicy::OnCreatorDrop,
            ..CreateOptions::default()
        };
        let creator = Segment::create(
            &name,
            ObjectKind::SpscRing,
            PARAMS,
            OBJECT_LEN,
            &opts,
            |_, _| Ok(()),
        )
        .unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path_of(&name))
            .unwrap();
        let mut header = vec![0u8; 256];
        file.read_exact_at(&mut header, 0).unwrap();
        let len = file.metadata().unwrap().len();
        Victim {
            name,
            _creator: creator,
            file,
            header,
            len,
        }
    }

    fn put(&self, offset: u64, bytes: &[u8]) {
        self.file.write_all_at(bytes, offset).unwrap();
    }

    fn put_u32(&self, offset: u64, v: u32) {
        self.put(offset, &v.to_ne_bytes());
    }

    fn put_u64(&self, offset: u64, v: u64) {
        self.put(offset, &v.to_ne_bytes());
    }

    fn restore(&self) {
        self.file.set_len(self.len).unwrap();
        self.put(0, &self.header);
    }

    fn open(&self) -> Result<Segment, SegmentError> {
        let opts = OpenOptions {
            timeout: Duration::from_secs(2),
            ..OpenOptions::default()
        };
        Segment::open(&self.name, ObjectKind::SpscRing, &opts)
    }

    fn open_err(&self) -> SegmentError {
        let err = self.open().expect_err("a corrupted header was accepted");
        self.restore();
        self.open().expect("the restored header is accepted again");
        err
    }
}

fn corrupted_field(err: &SegmentError) -> &'static str {
    match err {
        SegmentError::Corrupted { field, .. } => field,
        other => panic!("expected Corrupted, got {other}"),
    }
}

#[test]
fn each_bad_field_has_its_error() {
    let v = Victim::new();
    v.put(MAGIC, b"NOTSHMRG");
    assert!(matches!(v.open_err(), SegmentError::NotShmring { .. }));

    let current = shmring::segment::LAYOUT_VERSION;
    assert_eq!(current, 3);
    for other in (1..current).chain([current + 1]) {
        v.put_u32(VERSION, other);
        let err = v.open_err();
        assert!(
            matches!(
                err,
                SegmentError::VersionMismatch { expected, found, .. }
                    if (expected, found) == (current, other)
            ),
            "{err}"
        );
    }

    // Version 0: never published, so not a segment being created (those
    // have no name yet) but a foreign or corrupted file. Refused at once.
    v.put_u32(VERSION, 0);
    let err = v.open_err();
    assert!(
        matches!(err, SegmentError::VersionMismatch { found: 0, .. }),
        "{err}"
    );

    v.put_u32(
        ABI,
        u32::from_ne_bytes(v.header[12..16].try_into().unwrap()).swap_bytes(),
    );
    assert!(matches!(v.open_err(), SegmentError::AbiMismatch { .. }));

    v.put_u32(KIND, 99);
    assert_eq!(corrupted_field(&v.open_err()), "kind");
    v.put_u32(UNLINK, 7);
    assert_eq!(corrupted_field(&v.open_err()), "unlink_policy");
    v.put_u32(HEADER_LEN, 128);
    assert_eq!(corrupted_field(&v.open_err()), "header_len");

    v.put_u64(TOTAL_LEN, v.len + 4096);
    let err = v.open_err();
    let expected = (v.len + 4096, v.len);
    assert!(
        matches!(err, SegmentError::SizeMismatch { header, file, .. } if (header, file) == expected),
        "{err}"
    );

    for rows in [0, 4097, u32::MAX] {
        v.put_u32(PEER_ROWS, rows);
        assert_eq!(corrupted_field(&v.open_err()), "peer_rows");
    }
    v.put_u32(PEER_ROWS, 65); // disagrees with the table length
    assert_eq!(corrupted_field(&v.open_err()), "peer_table_len");
    for offset in [0, 100, 255, 257, u64::MAX - 127] {
        v.put_u64(PEER_OFFSET, offset);
        assert_eq!(
            corrupted_field(&v.open_err()),
            "peer_table_offset",
            "offset {offset}"
        );
    }
    v.put_u64(PEER_OFFSET, v.len); // past the end
    assert_eq!(corrupted_field(&v.open_err()), "peer_table_offset");
    v.put_u64(PEER_LEN, 128);
    assert_eq!(corrupted_field(&v.open_err()), "peer_table_len");
    // Overlapping the peer table, misaligned, at or past the end.
    for offset in [0, 4096, 4095, 8192 + 1, v.len, !4095u64] {
        v.put_u64(OBJECT_OFFSET, offset);
        assert_eq!(
            corrupted_field(&v.open_err()),
            "object_offset",
            "offset {offset}"
        );
    }
    for len in [0, v.len, u64::MAX, OBJECT_LEN as u64 + 1] {
        v.put_u64(OBJECT_LEN_AT, len);
        assert_eq!(corrupted_field(&v.open_err()), "object_len", "len {len}");
    }
}

#[test]
fn bad_file_sizes() {
    let v = Victim::new();
    v.file.set_len(v.len + 4096).unwrap();
    assert!(matches!(v.open_err(), SegmentError::SizeMismatch { .. }));
    v.file.set_len(100).unwrap();
    assert!(matches!(v.open_err(), SegmentError::NotShmring { .. }));
    // An empty file: no segment (a create names only complete ones).
    v.file.set_len(0).unwrap();
    assert!(matches!(v.open_err(), SegmentError::NotShmring { .. }));
    // Not a segment at all.
    v.file.set_len(v.len).unwrap();
    v.put(0, &[0xa5; 256]);
    assert!(matches!(v.open_err(), SegmentError::NotShmring { .. }));
}

/// A file under a segment's name that is no segment and mostly holes (a
/// foreign or hostile one): the open refuses it without allocating the
/// holes. An attach that populated its mapping before reading the magic
/// would fill `/dev/shm` with the file's whole size, which stays allocated
/// in the file after the refusal.
#[test]
fn a_sparse_foreign_file_is_refused_without_allocating_it() {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    const SIZE: u64 = 256 << 20;
    let name = unique_name("sparse");
    let path = path_of(&name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    file.set_len(SIZE).unwrap();
    let opts = OpenOptions {
        timeout: Duration::from_secs(2),
        ..OpenOptions::default()
    };
    let opened = Segment::open(&name, ObjectKind::SpscRing, &opts);
    let allocated = file.metadata().unwrap().blocks() * 512;
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(opened, Err(SegmentError::NotShmring { .. })),
        "{:?}",
        opened.map(|_| ())
    );
    assert!(
        allocated < SIZE / 16,
        "opening a {SIZE}-byte sparse file allocated {allocated} bytes of it"
    );
}

/// xorshift64*: deterministic, good enough for garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_header_bytes_never_panic_or_hang() {
    let _dog = Watchdog::new(Duration::from_secs(120), "random header bytes");
    let v = Victim::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0u32, 0u32);
    for round in 0..3000 {
        let mut bytes = v.header.clone();
        match round % 4 {
            // Entirely random.
            0 => bytes.iter_mut().for_each(|b| *b = rng.next() as u8),
            // A few random bytes anywhere.
            1 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(256) as usize;
                    bytes[i] = rng.next() as u8;
                }
            }
            // Valid magic, version and abi; random layout fields.
            2 => {
                for b in &mut bytes[16..144] {
                    *b = rng.next() as u8;
                }
            }
            // One field set to an interesting value.
            _ => {
                let at = [16, 20, 24, 40, 48, 56, 60, 64, 72][rng.below(9) as usize];
                let value: u64 =
                    [0, 1, 4095, 4096, v.len, u64::MAX, 1 << 63, rng.next()][rng.below(8) as usize];
                let width = if matches!(at, 16 | 20 | 56 | 60) {
                    4
                } else {
                    8
                };
                bytes[at..at + width].copy_from_slice(&value.to_ne_bytes()[..width]);
            }
        }
        v.put(0, &bytes);
        match v.open() {
            Ok(seg) => {
                accepted += 1;
                assert!(seg.object_len() >= 1);
            }
            Err(_) => refused += 1,
        }
        v.restore();
    }
    assert!(refused > 1500, "accepted {accepted}, refused {refused}");
    v.open().unwrap();
}
