//! Layout helpers shared by every structure that lives in a segment.
//!
//! Rules (DESIGN.md "Shared-memory layout rules"): everything is `#[repr(C)]`,
//! built from fixed-width integers and atomics, with no pointers, and every
//! size and offset is pinned by a compile-time assertion so two binaries built
//! by different compilers agree on where each field is.

use core::ptr::NonNull;

use crate::error::Corrupted;
use crate::spsc::KeepAlive;

/// An object that lives in a region of shared memory and attaches to it in
/// place ([`spsc::Ring`](crate::spsc::Ring), [`mpmc::Queue`](crate::mpmc::Queue),
/// [`dict::Table`](crate::dict::Table)), checking the alignment it needs,
/// the region's length and every parameter it reads there.
///
/// What lets a layer above attach any kind of object through one helper
/// that argues the safety once (the engine's `Segment::attach_object`).
pub trait InPlace: Sized {
    /// Attaches to an object another process initialised in `len` bytes at
    /// `base`.
    ///
    /// # Safety
    ///
    /// `base` is valid for reads and writes of `len` bytes for as long as
    /// `keep` lives, and other parties access it only through atomics or
    /// the object's protocol (a hostile peer can make the object read
    /// garbage, which it detects, but not break memory safety).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the alignment, the length or a parameter read
    /// from the region is wrong.
    unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Self, Corrupted>;
}

/// Alignment of a hot shared field: two 64-byte lines, so the adjacent-line
/// prefetcher on x86 does not couple two independently written fields.
pub const HOT_ALIGN: usize = 128;

/// A value alone on its own 128-byte block.
///
/// Our own type rather than crossbeam's `CachePadded`, whose alignment differs
/// between versions and targets; the layout of a segment must not.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two). `None` on overflow.
#[inline]
pub const fn align_up(n: u64, align: u64) -> Option<u64> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

const _: () = assert!(core::mem::align_of::<Padded<u8>>() == HOT_ALIGN);
const _: () = assert!(core::mem::size_of::<Padded<u64>>() == HOT_ALIGN);
