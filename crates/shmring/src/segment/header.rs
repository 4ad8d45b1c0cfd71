//! The segment header: the first 256 bytes of every segment.
//!
//! ```text
//! offset size field               notes
//!      0    8 magic               b"SHMRING\0" (stored as native u64 of those bytes)
//!      8    4 version             0 while the creator builds it, then LAYOUT_VERSION (Release)
//!     12    4 abi                 ABI_TAG: pointer width and byte order
//!     16    4 kind                ObjectKind as u32
//!     20    4 unlink_policy       UnlinkPolicy as u32
//!     24    8 total_len           file size = mapping length, a multiple of 4096
//!     32    4 creator_uid
//!     36    4 creator_pid
//!     40    8 peer_table_offset   >= HEADER_LEN, multiple of 128
//!     48    8 peer_table_len      peer_rows * 128
//!     56    4 peer_rows           1..=MAX_PEER_ROWS
//!     60    4 header_len          HEADER_LEN
//!     64    8 object_offset       multiple of 4096, >= end of the peer table
//!     72    8 object_len          >= 1, object_offset + object_len <= total_len
//!     80   64 params              [u64; 8], the object's parameters: opaque here,
//!                                 typed by each kind's descriptor (crate::descriptor)
//!    144  112 reserved            zero
//! ```
//!
//! A segment gets its name only after the version is published, so a file
//! under a segment name whose version is 0 is not a segment being created:
//! it is foreign or corrupted ([`SegmentError::VersionMismatch`] with
//! `found: 0`).
//!
//! Every field is an atomic: after publication nobody should write the
//! header, but a buggy or hostile peer may, and a racing plain read would be
//! undefined behaviour. Readers take one [`Snapshot`] and validate it.

use crate::segment::peers::PEER_ROW_LEN;
use crate::segment::SegmentError;
use crate::segment::{ObjectKind, UnlinkPolicy};
use shmring_core::layout::align_up;
use shmring_core::sync::{AtomicU32, AtomicU64, Ordering};

/// The magic bytes at offset 0 of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"SHMRING\0";

/// The header layout version this build writes and accepts. Bump it on any
/// change to the header, the peer table, the lock bytes' meaning or the
/// layout of any object.
///
/// 2: creation is atomic (a segment is named only once complete), lock
/// byte 0 is the name lock, and each peer row has a claim byte besides its
/// liveness byte (see the `peers` module); the one bump also covers the
/// ring and task layout changes made alongside.
///
/// 3: records carry a "more follows" mark in their tag (new tags DATA_MORE
/// and CONT_MORE, see `shmring_core::record`), and a pipe ends a message
/// where that mark is absent instead of at its first record shorter than a
/// fragment (a version-2 reader calls the new tags corruption; a version-3
/// reader would take a version-2 writer's full-length fragment for a whole
/// message).
///
/// 4: queues count their producers' hand-backs and stamp each handed-back
/// ring (words that were reserved), and consumers drain handed-back rings
/// first (`shmring_core::mpmc::consumer`, "Order across rings"); a
/// version-3 producer would hand back unstamped and uncounted, breaking
/// that order. Each ring's config block also keeps the tail word of its
/// last hand-back (in what was its padding), so that a ring claimed again
/// before it drained keeps that order for the records below it.
pub const LAYOUT_VERSION: u32 = 4;

/// Size of the header; the peer table may start here.
pub(crate) const HEADER_LEN: usize = 256;

/// Page size the object offset and total length are aligned to.
pub(crate) const PAGE: u64 = 4096;

/// Most rows a peer table may have.
pub const MAX_PEER_ROWS: u32 = 4096;

/// Pointer width in bytes (bits 8..16) and byte order (bits 0..8: 1 little,
/// 2 big) under a fixed tag `0x5352` ("SR") in bits 16..32. Written in native
/// byte order, so a reader of the other byte order sees it byte-swapped.
pub(crate) const ABI_TAG: u32 = {
    let endian = if cfg!(target_endian = "little") { 1 } else { 2 };
    (0x5352 << 16) | ((core::mem::size_of::<usize>() as u32) << 8) | endian
};

/// The header as it lies in shared memory. See the module docs.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) abi: AtomicU32,
    pub(crate) kind: AtomicU32,
    pub(crate) unlink_policy: AtomicU32,
    pub(crate) total_len: AtomicU64,
    pub(crate) creator_uid: AtomicU32,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) peer_table_offset: AtomicU64,
    pub(crate) peer_table_len: AtomicU64,
    pub(crate) peer_rows: AtomicU32,
    pub(crate) header_len: AtomicU32,
    pub(crate) object_offset: AtomicU64,
    pub(crate) object_len: AtomicU64,
    pub(crate) params: [AtomicU64; 8],
    pub(crate) reserved: [AtomicU64; 14],
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Header>() == HEADER_LEN);
    assert!(align_of::<Header>() == 8);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, abi) == 12);
    assert!(offset_of!(Header, kind) == 16);
    assert!(offset_of!(Header, unlink_policy) == 20);
    assert!(offset_of!(Header, total_len) == 24);
    assert!(offset_of!(Header, creator_uid) == 32);
    assert!(offset_of!(Header, creator_pid) == 36);
    assert!(offset_of!(Header, peer_table_offset) == 40);
    assert!(offset_of!(Header, peer_table_len) == 48);
    assert!(offset_of!(Header, peer_rows) == 56);
    assert!(offset_of!(Header, header_len) == 60);
    assert!(offset_of!(Header, object_offset) == 64);
    assert!(offset_of!(Header, object_len) == 72);
    assert!(offset_of!(Header, params) == 80);
    assert!(offset_of!(Header, reserved) == 144);
};

/// Where everything lies in a segment. All values fit `usize` and lie
/// within `total_len` (checked by [`Layout::compute`] and [`validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) total_len: usize,
    pub(crate) peer_table_offset: usize,
    pub(crate) peer_rows: u32,
    pub(crate) object_offset: usize,
    pub(crate) object_len: usize,
}

impl Layout {
    /// The layout a creator writes: header, peer table, then the object at
    /// the next page, the total rounded up to a page.
    pub(crate) fn compute(peer_rows: u32, object_len: usize) -> Result<Layout, SegmentError> {
        if peer_rows == 0 || peer_rows > MAX_PEER_ROWS {
            return Err(SegmentError::InvalidConfig {
                reason: format!("peer_rows is {peer_rows}, must be 1..={MAX_PEER_ROWS}"),
            });
        }
        if object_len == 0 {
            return Err(SegmentError::InvalidConfig {
                reason: "object_len must be at least 1".into(),
            });
        }
        let too_big = || SegmentError::InvalidConfig {
            reason: format!("object_len {object_len} is too large"),
        };
        let peers_end = HEADER_LEN as u64 + u64::from(peer_rows) * PEER_ROW_LEN as u64;
        let object_offset = align_up(peers_end, PAGE).ok_or_else(too_big)?;
        let object_end = object_offset
            .checked_add(object_len as u64)
            .ok_or_else(too_big)?;
        let total = align_up(object_end, PAGE).ok_or_else(too_big)?;
        if total > isize::MAX as u64 {
            return Err(too_big());
        }
        Ok(Layout {
            total_len: total as usize,
            peer_table_offset: HEADER_LEN,
            peer_rows,
            object_offset: object_offset as usize,
            object_len,
        })
    }
}

/// What the creator writes besides the layout.
pub(crate) struct Identity {
    pub(crate) kind: ObjectKind,
    pub(crate) unlink_policy: UnlinkPolicy,
    pub(crate) params: [u64; 8],
    pub(crate) uid: u32,
    pub(crate) pid: u32,
}

impl Header {
    /// Writes every field except `version`, which stays 0 until
    /// [`Header::publish`].
    pub(crate) fn write(&self, layout: &Layout, id: &Identity) {
        // ORDERING: Relaxed for every field — none of them is read before
        // the Release store of `version` in `publish`, which pairs with the
        // Acquire load in `Segment::open` and publishes them all.
        let r = Ordering::Relaxed;
        self.magic.store(u64::from_ne_bytes(MAGIC), r);
        self.abi.store(ABI_TAG, r);
        self.kind.store(id.kind as u32, r);
        self.unlink_policy.store(id.unlink_policy as u32, r);
        self.total_len.store(layout.total_len as u64, r);
        self.creator_uid.store(id.uid, r);
        self.creator_pid.store(id.pid, r);
        self.peer_table_offset
            .store(layout.peer_table_offset as u64, r);
        self.peer_table_len
            .store(u64::from(layout.peer_rows) * PEER_ROW_LEN as u64, r);
        self.peer_rows.store(layout.peer_rows, r);
        self.header_len.store(HEADER_LEN as u32, r);
        self.object_offset.store(layout.object_offset as u64, r);
        self.object_len.store(layout.object_len as u64, r);
        for (slot, value) in self.params.iter().zip(id.params) {
            slot.store(value, r);
        }
    }

    /// Makes the segment visible to openers: everything written before
    /// (header and the object's initialisation) happens-before their reads.
    pub(crate) fn publish(&self) {
        // ORDERING: Release — publishes the header and the initialised
        // object; pairs with the Acquire load of `version` in `version()`.
        self.version.store(LAYOUT_VERSION, Ordering::Release);
    }

    /// The published version, 0 while the creator builds the segment.
    pub(crate) fn version(&self) -> u32 {
        // ORDERING: Acquire — pairs with the Release store in `publish`; a
        // nonzero value makes the header and the object visible.
        self.version.load(Ordering::Acquire)
    }

    /// One copy of every field, for validation. Call after `version()`
    /// returned nonzero.
    pub(crate) fn snapshot(&self) -> Snapshot {
        // ORDERING: Relaxed — ordered after the caller's Acquire load of
        // `version` (see `version()`); later hostile writes are not trusted
        // anyway, which is why this is a copy.
        let r = Ordering::Relaxed;
        Snapshot {
            magic: self.magic.load(r),
            version: self.version.load(r),
            abi: self.abi.load(r),
            kind: self.kind.load(r),
            unlink_policy: self.unlink_policy.load(r),
            total_len: self.total_len.load(r),
            peer_table_offset: self.peer_table_offset.load(r),
            peer_table_len: self.peer_table_len.load(r),
            peer_rows: self.peer_rows.load(r),
            header_len: self.header_len.load(r),
            object_offset: self.object_offset.load(r),
            object_len: self.object_len.load(r),
            params: core::array::from_fn(|i| self.params[i].load(r)),
        }
    }
}

/// A copy of the header taken once at open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) abi: u32,
    pub(crate) kind: u32,
    pub(crate) unlink_policy: u32,
    pub(crate) total_len: u64,
    pub(crate) peer_table_offset: u64,
    pub(crate) peer_table_len: u64,
    pub(crate) peer_rows: u32,
    pub(crate) header_len: u32,
    pub(crate) object_offset: u64,
    pub(crate) object_len: u64,
    pub(crate) params: [u64; 8],
}

/// A header that passed [`validate`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validated {
    pub(crate) kind: ObjectKind,
    pub(crate) unlink_policy: UnlinkPolicy,
    pub(crate) layout: Layout,
    pub(crate) params: [u64; 8],
}

/// Checks every field of `s` against itself, this build, the caller's
/// expectation and `file_len` (the size of the file, which is also the length
/// of the mapping). Nothing in the segment beyond the header may be
/// referenced before this returns `Ok`.
pub(crate) fn validate(
    s: &Snapshot,
    name: &str,
    expected: ObjectKind,
    file_len: u64,
) -> Result<Validated, SegmentError> {
    let name = || name.to_owned();
    let corrupted = |field: &'static str, value: u64| SegmentError::Corrupted {
        name: name(),
        field,
        value,
    };
    if s.magic != u64::from_ne_bytes(MAGIC) {
        return Err(SegmentError::NotShmring { name: name() });
    }
    if s.version != LAYOUT_VERSION {
        return Err(SegmentError::VersionMismatch {
            name: name(),
            expected: LAYOUT_VERSION,
            found: s.version,
        });
    }
    if s.abi != ABI_TAG {
        return Err(SegmentError::AbiMismatch {
            name: name(),
            expected: ABI_TAG,
            found: s.abi,
        });
    }
    if s.header_len as usize != HEADER_LEN {
        return Err(corrupted("header_len", s.header_len.into()));
    }
    let kind = ObjectKind::from_u32(s.kind).ok_or_else(|| corrupted("kind", s.kind.into()))?;
    if kind != expected {
        return Err(SegmentError::KindMismatch {
            name: name(),
            expected,
            found: kind,
        });
    }
    let unlink_policy = UnlinkPolicy::from_u32(s.unlink_policy)
        .ok_or_else(|| corrupted("unlink_policy", s.unlink_policy.into()))?;
    if s.total_len != file_len {
        return Err(SegmentError::SizeMismatch {
            name: name(),
            header: s.total_len,
            file: file_len,
        });
    }
    if s.total_len & (PAGE - 1) != 0 || s.total_len > isize::MAX as u64 {
        return Err(corrupted("total_len", s.total_len));
    }
    if s.peer_rows == 0 || s.peer_rows > MAX_PEER_ROWS {
        return Err(corrupted("peer_rows", s.peer_rows.into()));
    }
    if s.peer_table_offset < HEADER_LEN as u64
        || s.peer_table_offset & (PEER_ROW_LEN as u64 - 1) != 0
    {
        return Err(corrupted("peer_table_offset", s.peer_table_offset));
    }
    if s.peer_table_len != u64::from(s.peer_rows) * PEER_ROW_LEN as u64 {
        return Err(corrupted("peer_table_len", s.peer_table_len));
    }
    let peers_end = s
        .peer_table_offset
        .checked_add(s.peer_table_len)
        .filter(|&end| end <= s.total_len)
        .ok_or_else(|| corrupted("peer_table_offset", s.peer_table_offset))?;
    if s.object_offset & (PAGE - 1) != 0
        || s.object_offset < peers_end
        || s.object_offset >= s.total_len
    {
        return Err(corrupted("object_offset", s.object_offset));
    }
    let object_fits = s
        .object_offset
        .checked_add(s.object_len)
        .is_some_and(|end| end <= s.total_len);
    if s.object_len == 0 || !object_fits {
        return Err(corrupted("object_len", s.object_len));
    }
    // Every value is now <= total_len <= isize::MAX, so the casts are exact.
    Ok(Validated {
        kind,
        unlink_policy,
        layout: Layout {
            total_len: s.total_len as usize,
            peer_table_offset: s.peer_table_offset as usize,
            peer_rows: s.peer_rows,
            object_offset: s.object_offset as usize,
            object_len: s.object_len as usize,
        },
        params: s.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_layouts_validate() {
        for rows in [1, 2, 31, 32, 64, 4096] {
            for len in [1, 4095, 4096, 4097, 1 << 20] {
                let l = Layout::compute(rows, len).unwrap();
                assert_eq!(l.object_offset % 4096, 0);
                assert_eq!(l.total_len % 4096, 0);
                assert!(l.object_offset >= HEADER_LEN + rows as usize * PEER_ROW_LEN);
                let s = Snapshot {
                    magic: u64::from_ne_bytes(MAGIC),
                    version: LAYOUT_VERSION,
                    abi: ABI_TAG,
                    kind: ObjectKind::MpmcQueue as u32,
                    unlink_policy: UnlinkPolicy::Never as u32,
                    total_len: l.total_len as u64,
                    peer_table_offset: l.peer_table_offset as u64,
                    peer_table_len: u64::from(rows) * PEER_ROW_LEN as u64,
                    peer_rows: rows,
                    header_len: HEADER_LEN as u32,
                    object_offset: l.object_offset as u64,
                    object_len: len as u64,
                    params: [3; 8],
                };
                let v = validate(&s, "/x", ObjectKind::MpmcQueue, l.total_len as u64).unwrap();
                assert_eq!(v.layout, l);
            }
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Layout::compute(0, 1).is_err());
        assert!(Layout::compute(MAX_PEER_ROWS + 1, 1).is_err());
        assert!(Layout::compute(1, 0).is_err());
        assert!(Layout::compute(1, usize::MAX).is_err());
        assert!(Layout::compute(1, usize::MAX - 8000).is_err());
    }
}
