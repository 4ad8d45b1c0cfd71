//! Layout helpers shared by every structure that lives in a segment.
//!
//! Rules (DESIGN.md "Shared-memory layout rules"): everything is `#[repr(C)]`,
//! built from fixed-width integers and atomics, with no pointers, and every
//! size and offset is pinned by a compile-time assertion so two binaries built
//! by different compilers agree on where each field is.

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
