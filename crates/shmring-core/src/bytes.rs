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
//! A racy copy *out* of 256 bytes or more is one `rep movsb` in an
//! assembly block on x86-64 (not under Miri or loom), at memcpy's speed
//! (the word loads cost a sixth of the 64 KiB Pipe stream: 27.6–29.0 GB/s
//! against 33.7–34.7 GB/s in the fast passes of interleaved `streamprobe
//! 20000 1 sr,s,p 65536` runs on the 2-core VM; in its slow phase every
//! mechanism, the spin ring included, ran at about 9 GB/s either way).
//! Why a racing writer can still only make those bytes wrong: the block
//! is opaque to the compiler (an unknown operation that may read and write
//! any memory it can reach), so the compiler can neither assume the bytes
//! stable nor draw a conclusion from a race, and the hardware gives a
//! stale or torn value, never a fault. That is an argument about the
//! compiler and the hardware, weaker on paper than the word loads': the
//! Rust memory model has no racy byte copy to describe the block by (its
//! nearest equivalent, byte-sized atomic loads racing with the MPMC
//! producers' word-sized atomic stores, is a mixed-size race it leaves
//! undefined). Neither Miri nor ThreadSanitizer would see the block's
//! reads: Miri runs the word loads instead, and CI's ThreadSanitizer step
//! builds with `--cfg shmring_word_copies`, which turns the block off, so
//! it checks every copy out.
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

/// Whether the `bytes.len()` bytes stored from word `word` of `data` (as
/// [`store`] wrote them) are `bytes`, compared word by word in place (no
/// copy). `false` when those words do not lie inside `data`.
#[cfg_attr(loom, allow(dead_code))] // its caller (the dict) is not under loom
#[inline]
pub(crate) fn equals(data: &[AtomicU64], word: usize, bytes: &[u8]) -> bool {
    let Some(words) = data.get(word..word.saturating_add(words_for(bytes.len()))) else {
        return false;
    };
    let (chunks, rest) = bytes.as_chunks::<8>();
    let whole = words.iter().zip(chunks).all(|(w, c)| {
        // ORDERING: Relaxed — read under the caller's lock, as `load`'s
        // exclusive reads are (partner: the lock's Acquire).
        w.load(Ordering::Relaxed).to_ne_bytes() == *c
    });
    whole
        && (rest.is_empty() || {
            // ORDERING: Relaxed — as above.
            let last = words[chunks.len()].load(Ordering::Relaxed).to_ne_bytes();
            last[..rest.len()] == *rest
        })
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
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri), not(shmring_word_copies)))]
    if dst.len() >= OPAQUE_COPY_MIN {
        // SAFETY: `words` (sliced above) spans at least `dst.len()` bytes
        // of the mapping; `dst` is process-local, so no overlap.
        unsafe { opaque_copy(words.as_ptr().cast::<u8>(), dst.as_mut_ptr(), dst.len()) };
        return;
    }
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
/// them) to `out` with relaxed atomic word loads (from 256 bytes on
/// x86-64, one `opaque_copy`): whatever another process does to the
/// words meanwhile, a racing write gives wrong bytes (see the module docs).
/// No zero-fill first: the bytes go straight into `out`'s spare capacity.
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
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri), not(shmring_word_copies)))]
    if len >= OPAQUE_COPY_MIN {
        let dst = out.spare_capacity_mut();
        // SAFETY: `reserve` left at least `words.len() * 8 >= len` bytes of
        // spare capacity; `words` spans at least `len` bytes; the two do not
        // overlap (one is this process's heap, the other the mapping).
        unsafe {
            opaque_copy(
                words.as_ptr().cast::<u8>(),
                dst.as_mut_ptr().cast::<u8>(),
                len,
            )
        };
        // SAFETY: the copy initialised the first `len` spare bytes.
        unsafe { out.set_len(start + len) };
        return;
    }
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

/// Payloads from this many bytes up are copied out by [`opaque_copy`].
#[cfg(all(target_arch = "x86_64", not(loom), not(miri), not(shmring_word_copies)))]
const OPAQUE_COPY_MIN: usize = 256;

/// Copies `len` bytes from shared memory at `src` to `dst` with one `rep
/// movsb` in an assembly block: memcpy's speed, and, being opaque to the
/// compiler, a process writing the words meanwhile gives wrong bytes,
/// never a data race the compiler may exploit (the module docs give the
/// argument and its limits; the word loads took about a fifth more time
/// on 64 KiB records).
///
/// # Safety
///
/// `src` readable and `dst` writable for `len` bytes, not overlapping.
#[cfg(all(target_arch = "x86_64", not(loom), not(miri), not(shmring_word_copies)))]
#[inline]
unsafe fn opaque_copy(src: *const u8, dst: *mut u8, len: usize) {
    // `rep movsb` reads `len` bytes at `rsi` and writes them at `rdi`,
    // moving forward (Rust's inline assembly rules guarantee the direction
    // flag clear on entry); it changes no flag and no memory but them.
    // SAFETY: the caller's contract covers exactly those bytes.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn equals_compares_stored_bytes_in_place() {
        let data: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(u64::MAX)).collect();
        for len in 0..=20usize {
            let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            store(&data, 1, &src, true);
            assert!(equals(&data, 1, &src), "{len} bytes");
            for at in 0..len {
                let mut other = src.clone();
                other[at] ^= 1;
                assert!(!equals(&data, 1, &other), "{len} bytes, byte {at} differs");
            }
            // Only the key's own bytes count, not what follows in its word.
            if len > 0 {
                assert!(equals(&data, 1, &src[..len - 1]));
            }
        }
        // Words past the end of the data: not equal, no panic.
        assert!(!equals(&data, 7, &[0; 9]));
        assert!(!equals(&data, usize::MAX, &[0]));
    }

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

    /// Racy loads, word by word below [`OPAQUE_COPY_MIN`] and one opaque
    /// copy from it up, copy exactly the bytes asked for, from any word.
    #[test]
    fn racy_load_copies_exactly_the_bytes_asked_for() {
        for len in [0usize, 1, 7, 8, 9, 255, 256, 257, 1000, 4099] {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let words: Vec<AtomicU64> = (0..2 + len.div_ceil(8))
                .map(|_| AtomicU64::new(u64::MAX))
                .collect();
            store(&words, 1, &src, false);
            let mut dst = vec![0xEEu8; len + 3];
            load(&words, 1, &mut dst[..len], false);
            assert_eq!(&dst[..len], &src[..], "len {len}");
            assert_eq!(&dst[len..], &[0xEE; 3], "len {len}: nothing past it");
        }
    }
}
