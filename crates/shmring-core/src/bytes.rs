//! Copying payloads into and out of a ring's data area.
//!
//! The data area is an array of `AtomicU64` words. Two ways in and out:
//!
//! * **exclusive**: nobody else can touch these bytes right now (an SPSC
//!   producer writing space it reserved, an SPSC consumer reading a record it
//!   has not released). Plain `memcpy`.
//! * **racy**: another process may overwrite the bytes while we read them (an
//!   MPMC consumer copying optimistically before its CAS), or read them while
//!   we write. Word-by-word relaxed atomic loads and stores, so a race is a
//!   wrong value we then discard, never undefined behaviour.
//!
//! Under loom every copy is racy: loom's atomics are not plain memory.

use crate::sync::{AtomicU64, Ordering};

/// Words needed for `len` bytes.
#[inline]
pub(crate) const fn words_for(len: usize) -> usize {
    len.div_ceil(8)
}

/// Copies `src` into `data` starting at word `word`.
///
/// # Panics
///
/// If the words do not lie inside `data`; callers check bounds first, so this
/// is a bug, and a panic is the memory-safe way to report it.
#[inline]
pub(crate) fn store(data: &[AtomicU64], word: usize, src: &[u8], exclusive: bool) {
    let words = &data[word..word + words_for(src.len())];
    #[cfg(not(loom))]
    if exclusive {
        // `AtomicU64` is an `UnsafeCell`, so writing through a pointer derived
        // from a shared reference is allowed; `src` is not in the data area.
        // SAFETY: `words` (sliced above, so in bounds) spans `src.len()` bytes,
        // and `exclusive` means the protocol gives us sole access to them.
        unsafe {
            core::ptr::copy_nonoverlapping(
                src.as_ptr(),
                words.as_ptr().cast::<u8>().cast_mut(),
                src.len(),
            );
        }
        return;
    }
    #[cfg(loom)]
    let _ = exclusive;
    let (chunks, rest) = src.as_chunks::<8>();
    for (w, c) in words.iter().zip(chunks) {
        // ORDERING: Relaxed — published by the Release store of the tail that
        // follows; pairs with the consumer's Acquire load of the tail.
        w.store(u64::from_ne_bytes(*c), Ordering::Relaxed);
    }
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // ORDERING: Relaxed — as above.
        words[chunks.len()].store(u64::from_ne_bytes(last), Ordering::Relaxed);
    }
}

/// Copies `dst.len()` bytes out of `data` starting at word `word`.
///
/// # Panics
///
/// If the words do not lie inside `data` (a bug in the caller's bounds check).
#[inline]
pub(crate) fn load(data: &[AtomicU64], word: usize, dst: &mut [u8], exclusive: bool) {
    let words = &data[word..word + words_for(dst.len())];
    #[cfg(not(loom))]
    if exclusive {
        // The record is published (Acquire of the tail happened before) and
        // not yet released; `dst` is process-local, so no overlap.
        // SAFETY: `words` (sliced above) spans `dst.len()` bytes, and
        // `exclusive` means no one writes them while we read.
        unsafe {
            core::ptr::copy_nonoverlapping(
                words.as_ptr().cast::<u8>(),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        return;
    }
    #[cfg(loom)]
    let _ = exclusive;
    let (chunks, rest) = dst.as_chunks_mut::<8>();
    let full = chunks.len();
    for (w, c) in words.iter().zip(chunks) {
        // ORDERING: Relaxed — the caller's Acquire load of the tail made the
        // producer's stores visible; a racy reader validates with a CAS after.
        *c = w.load(Ordering::Relaxed).to_ne_bytes();
    }
    if !rest.is_empty() {
        // ORDERING: Relaxed — as above.
        let last = words[full].load(Ordering::Relaxed).to_ne_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}
