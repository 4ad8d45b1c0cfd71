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
//! Every copy *out* of a ring is racy, SPSC included: the protocol says the
//! producer leaves a published record alone until it is released, but a
//! misbehaving producer process may not, and a plain `memcpy` racing with
//! its writes would be a data race in this process (Miri's race detector
//! flags it: `tests/spsc.rs`, `copies_out_race_with_a_hostile_producer_…`).
//! Copies *in* may be exclusive: they write space the protocol gives the
//! writer alone, and this process never reads those bytes back, so a peer
//! that touches them only garbles what that peer itself sees. (The memory
//! model would still call such a peer's access concurrent with our `memcpy`
//! a data race, and Miri would flag it; no value this process computes can
//! depend on it, and a `memcpy` in is several times faster than word stores
//! for large records. Making SPSC writers `racy` like MPMC ones would close
//! even that formal gap.)
//!
//! Under loom every copy is racy: loom's atomics are not plain memory.

use alloc::vec::Vec;

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
#[cfg_attr(loom, allow(dead_code))] // its callers (grants, dict) are not under loom
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

/// Appends the first `len` bytes of `words` (exactly `len.div_ceil(8)` of
/// them) to `out` with relaxed atomic word loads: race-free whatever another
/// process does to the words meanwhile (a racing write gives wrong bytes,
/// never undefined behaviour). No zero-fill first: the words go straight
/// into `out`'s spare capacity.
///
/// # Panics
///
/// If `words` is shorter than `len` needs (a bug in the caller's bounds
/// check).
#[inline]
pub(crate) fn append(words: &[AtomicU64], len: usize, out: &mut Vec<u8>) {
    assert!(words.len() * 8 >= len, "payload words cover the payload");
    let start = out.len();
    out.reserve(words.len() * 8);
    let spare = out.spare_capacity_mut();
    for (w, dst) in words.iter().zip(spare.chunks_exact_mut(8)) {
        // ORDERING: Relaxed — the caller's Acquire load of the tail (or of
        // the header) made the producer's stores visible; a racy MPMC
        // reader validates the copy with its CAS afterwards.
        let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
        for (d, b) in dst.iter_mut().zip(bytes) {
            d.write(b);
        }
    }
    // SAFETY: `reserve` left at least `words.len() * 8` bytes of spare
    // capacity, so the loop initialised `words.len() * 8 >= len` of them.
    unsafe { out.set_len(start + len) }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn append_copies_exactly_len_bytes_after_what_is_there() {
        for len in [0usize, 1, 7, 8, 9, 64, 65, 1000] {
            let src: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let words: Vec<AtomicU64> = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
            store(&words, 0, &src, false);
            let mut out = b"head".to_vec();
            append(&words, len, &mut out);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &src[..], "len {len}");
        }
    }
}
