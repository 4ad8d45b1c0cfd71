//! Typed object descriptors: what each kind of object records about itself
//! in its segment's header, and where its parts lie in the object region.
//!
//! A segment header has [`PARAM_WORDS`] parameter words (see the
//! `segment::header` module); their meaning belongs to the kind of object
//! the segment holds. Each kind has one descriptor type, beside its
//! algorithm, that encodes them, decodes them and knows the layout they
//! imply:
//!
//! | kind            | descriptor                       | words                                   |
//! |-----------------|----------------------------------|-----------------------------------------|
//! | `SpscRing`      | `spsc::descriptor::RingDescriptor`   | capacity, max_record                |
//! | `MpmcQueue`     | `mpmc::descriptor::QueueDescriptor`  | rings, capacity, max_record, max_len |
//! | `JoinableQueue` | `queue::descriptor::JoinableDescriptor` | as `MpmcQueue` (the task table comes first in the region) |
//! | `Pipe`          | `pipe::descriptor::PipeDescriptor`   | duplex, capacity, max_record, stride |
//! | `Dict`          | `dict::descriptor::DictDescriptor`   | capacity, max_key, max_value        |
//! | `Lock`          | `lock::descriptor::LockDescriptor`   | flavor                              |
//!
//! Words past a kind's own are written zero and never read.
//!
//! A creator turns its configuration into a descriptor, writes
//! [`Descriptor::encode`] into the header and initialises the region with
//! [`Descriptor::init`]. An opener decodes the header's words
//! ([`Descriptor::decode`]) and attaches through the descriptor, which
//! checks the object's own control blocks against it. Inspection
//! ([`crate::segment::inspect`]) decodes the same words with [`decode`] and
//! asks the descriptor for its figures ([`Describe`]): nothing outside a
//! kind's own module knows its layout.
//!
//! # Untrusted memory
//!
//! The header's words may have been written by a hostile peer. Decoding
//! range-checks every field and reports the first bad one as
//! [`Corrupted`] (its `what` names the field); a descriptor that decoded is
//! one whose layout can be computed without overflow. The object itself is
//! checked only when attached to (through the core's `attach_in_place`
//! and a comparison with the descriptor).

use std::ptr::NonNull;
use std::sync::Arc;

use shmring_core::error::{ConfigError, Corrupted};
use shmring_core::layout::{InPlace, HOT_ALIGN};
use shmring_core::spsc::KeepAlive;
use shmring_core::{mpmc, spsc};

use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus, Segment};

/// Number of parameter words in a segment header.
pub(crate) const PARAM_WORDS: usize = 8;

/// A segment header's parameter words.
pub(crate) type Words = [u64; PARAM_WORDS];

/// What inspection asks of a decoded descriptor (object safe, so that
/// [`decode`] can hand back any kind's).
pub trait Describe {
    /// The figures the parameters alone give: capacity and its unit, and
    /// the decoded parameters as details.
    fn describe(&self, state: &mut ObjectState);

    /// The figures only the object can tell (depth, whether it holds data,
    /// a lock's owner), read from `region` after checking the object
    /// against this descriptor. `header` is the segment's validated header,
    /// `peers` its peer rows (to name a lock's owner).
    ///
    /// # Errors
    ///
    /// The object fails the core's validation or disagrees with this
    /// descriptor.
    fn examine(
        &self,
        region: &Region,
        header: &HeaderInfo,
        peers: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted>;
}

/// One kind's parameters, typed: encoded into the header words once, by
/// the creator, and decoded (validated) by every opener and inspector.
pub trait Descriptor: Describe + Copy + Sized + 'static {
    /// The kind whose header carries this descriptor.
    const KIND: ObjectKind;

    /// The header words: this kind's fields first, the rest zero.
    fn encode(&self) -> Words;

    /// Reads this kind's fields out of header words, checking each.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] naming the first field out of range (or the one that
    /// makes the layout impossible).
    fn decode(words: &Words) -> Result<Self, Corrupted>;

    /// Bytes of object region this layout takes.
    fn object_len(&self) -> usize;

    /// Initialises the object in zeroed memory.
    ///
    /// # Safety
    ///
    /// `base` is valid for writes of `len` bytes, page-aligned, zeroed, and
    /// not yet visible to any other process.
    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String>;
}

/// Decodes the parameter words of a segment holding `kind`.
///
/// # Errors
///
/// As [`Descriptor::decode`].
pub(crate) fn decode(kind: ObjectKind, words: &Words) -> Result<Box<dyn Describe>, Corrupted> {
    fn boxed<D: Descriptor>(words: &Words) -> Result<Box<dyn Describe>, Corrupted> {
        Ok(Box::new(D::decode(words)?))
    }
    match kind {
        ObjectKind::SpscRing => boxed::<crate::spsc::descriptor::RingDescriptor>(words),
        ObjectKind::MpmcQueue => boxed::<crate::mpmc::descriptor::QueueDescriptor>(words),
        ObjectKind::JoinableQueue => boxed::<crate::queue::descriptor::JoinableDescriptor>(words),
        ObjectKind::Pipe => boxed::<crate::pipe::descriptor::PipeDescriptor>(words),
        ObjectKind::Dict => boxed::<crate::dict::descriptor::DictDescriptor>(words),
        ObjectKind::Lock => boxed::<crate::lock::descriptor::LockDescriptor>(words),
    }
}

/// Whether objects of `kind` never hold undelivered data, whatever their
/// parameters or bytes say (locks): removing a corrupted one loses nothing,
/// so inspection says so even when it cannot decode it.
pub(crate) fn holds_no_data(kind: ObjectKind) -> bool {
    kind == ObjectKind::Lock
}

/// The field a ring-shape error is about, named for `what` kind.
pub(crate) fn ring_field(
    e: ConfigError,
    capacity: (&'static str, u64),
    max_record: (&'static str, u64),
) -> Corrupted {
    let (what, value) = match e {
        ConfigError::MaxRecord { .. } => max_record,
        _ => capacity,
    };
    Corrupted { what, value }
}

/// Words `[a, b, c, d, 0, 0, 0, 0]`.
pub(crate) fn words(fields: &[u64]) -> Words {
    let mut out = [0; PARAM_WORDS];
    out[..fields.len()].copy_from_slice(fields);
    out
}

/// An object region, mapped for as long as this value (or anything attached
/// through it) lives: a segment's object region, or a mapping inspection
/// made for the occasion. Parts of it are handed out only after a bounds
/// check.
#[derive(Clone)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    keep: KeepAlive,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.len).finish()
    }
}

impl Region {
    /// The object region of `segment`.
    pub(crate) fn of_segment(segment: &Arc<Segment>) -> Region {
        Region {
            base: segment.object_ptr(),
            len: segment.object_len(),
            keep: segment.clone(),
        }
    }

    /// A region of `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base` is page aligned and valid for reads and writes of `len` bytes
    /// for as long as `keep` lives; other processes access it only through
    /// atomics.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize, keep: KeepAlive) -> Region {
        Region { base, len, keep }
    }

    /// Bytes in the region.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Start of `at..at + len`, which must lie inside the region.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] (`what`, `at`) when it does not.
    pub(crate) fn part(
        &self,
        what: &'static str,
        at: usize,
        len: usize,
    ) -> Result<NonNull<u8>, Corrupted> {
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Corrupted {
                what,
                value: at as u64,
            });
        }
        // SAFETY: at <= self.len (checked above): inside the region or one
        // past its end, which `new`'s contract makes a valid pointer.
        Ok(unsafe { self.base.add(at) })
    }

    /// The core object (ring, queue, dict table) at `at..at + len`: the
    /// one place that argues why handing part of a mapping to a core
    /// object's `attach_in_place` is sound.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] (`what`, `at`) when the part is out of bounds or not
    /// [`HOT_ALIGN`]-aligned, or the object refuses what it finds there
    /// (its own checks of length and parameters).
    pub(crate) fn attach<T: InPlace>(
        &self,
        what: &'static str,
        at: usize,
        len: usize,
    ) -> Result<T, Corrupted> {
        let base = self.part(what, at, len)?;
        if !at.is_multiple_of(HOT_ALIGN) {
            return Err(Corrupted {
                what,
                value: at as u64,
            });
        }
        // The region stays mapped read-write while `keep` lives (`new`'s
        // contract, or the segment's for `of_segment`), and the object and
        // its handles hold a clone of `keep`. Other processes touch it only
        // through atomics and the object's protocol: a hostile one makes it
        // read garbage, which its attach and operations check.
        // SAFETY: in bounds (`part`), page-aligned region, `at` a multiple
        // of HOT_ALIGN (checked above), kept mapped by `keep`.
        unsafe { T::attach_in_place(base, len, self.keep.clone()) }
    }

    /// The SPSC ring at `at..at + len`.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub(crate) fn ring(&self, at: usize, len: usize) -> Result<spsc::Ring, Corrupted> {
        self.attach("ring offset", at, len)
    }

    /// The MPMC queue at `at..at + len`.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub(crate) fn queue(&self, at: usize, len: usize) -> Result<mpmc::Queue, Corrupted> {
        self.attach("queue offset", at, len)
    }

    /// The dict table filling the region.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub(crate) fn table(&self) -> Result<shmring_core::dict::Table, Corrupted> {
        self.attach("dict table", 0, self.len)
    }
}
