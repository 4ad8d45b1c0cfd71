//! Small payloads moved a whole word at a time.
//!
//! For an 8-byte message a `memcpy` call (plus, on the way out, the
//! `memset` of `Vec::resize`) cost more instructions than the rest of the
//! push or pop together. Up to [`SMALL`] bytes a payload therefore moves as
//! 8-byte words through the data area's atomics: a Relaxed load or store is
//! a plain `mov` on x86-64 and AArch64, it is right for exclusive and racy
//! (MPMC) accesses alike, and loom can follow it. Larger payloads keep the
//! general copies of [`crate::bytes`] (a `memcpy` when exclusive).
//!
//! Bytes are laid out in memory exactly as `memcpy` would put them: a word
//! holds `u64::from_ne_bytes` of its 8 payload bytes. The bytes past the
//! payload in the last word are written as zeros (a `memcpy` left whatever
//! an earlier lap had there; no reader looks at them either way).

use alloc::vec::Vec;

use crate::sync::{AtomicU64, Ordering};

/// Largest payload moved word by word (8 words).
pub(crate) const SMALL: usize = 64;

/// The little-endian value of 1 to 7 bytes, without a loop or a call: two
/// overlapping reads of the widest fitting size (they agree where they
/// overlap, so OR-ing them is exact).
#[inline(always)]
fn partial_value(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    if let (Some(lo), Some(hi)) = (rest.first_chunk::<4>(), rest.last_chunk::<4>()) {
        let lo = u64::from(u32::from_le_bytes(*lo));
        let hi = u64::from(u32::from_le_bytes(*hi));
        return lo | hi << (8 * (n - 4));
    }
    if let (Some(lo), Some(hi)) = (rest.first_chunk::<2>(), rest.last_chunk::<2>()) {
        let lo = u64::from(u16::from_le_bytes(*lo));
        let hi = u64::from(u16::from_le_bytes(*hi));
        return lo | hi << (8 * (n - 2));
    }
    rest.first().map_or(0, |&b| u64::from(b))
}

/// Stores `src` into `words` (exactly `src.len().div_ceil(8)` of them),
/// zero-filling the last word past the payload.
///
/// # Panics
///
/// If `words` is shorter than that (the caller checked the record's extent,
/// so this is a bug, and a panic is the memory-safe way to report it).
#[inline(always)]
pub(crate) fn store(words: &[AtomicU64], src: &[u8]) {
    debug_assert!(src.len() <= SMALL);
    debug_assert_eq!(words.len(), src.len().div_ceil(8));
    if src.len() <= 8 {
        // At most one word, without the loop's set-up: the common case of
        // a scalar message.
        let value = match src.first_chunk::<8>() {
            Some(all) => u64::from_le_bytes(*all),
            None if src.is_empty() => return,
            None => partial_value(src),
        };
        // ORDERING: Relaxed — as in the loop below.
        words[0].store(u64::from_ne_bytes(value.to_le_bytes()), Ordering::Relaxed);
        return;
    }
    let (chunks, rest) = src.as_chunks::<8>();
    for (w, c) in words.iter().zip(chunks) {
        // ORDERING: Relaxed — published by the Release store of the header
        // and of the tail that follow; pairs with the consumer's Acquire
        // loads of them.
        w.store(u64::from_ne_bytes(*c), Ordering::Relaxed);
    }
    if rest.is_empty() {
        return;
    }
    // The trailing bytes as a little-endian value: from the last 8 bytes of
    // the payload when there are 8, else from the bytes themselves.
    let value = match src.last_chunk::<8>() {
        Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - rest.len())),
        None => partial_value(rest),
    };
    // ORDERING: Relaxed — as above.
    words[chunks.len()].store(u64::from_ne_bytes(value.to_le_bytes()), Ordering::Relaxed);
}

/// Replaces the contents of `buf` with the first `len` bytes of `words`
/// (exactly `len.div_ceil(8)` words). No zero-fill first: `buf` grows by
/// whole words, then is cut to `len`.
///
/// # Panics
///
/// Never for correct callers; `words` too short only copies less.
#[inline(always)]
pub(crate) fn load(words: &[AtomicU64], len: usize, buf: &mut Vec<u8>) {
    debug_assert!(len <= SMALL);
    debug_assert_eq!(words.len(), len.div_ceil(8));
    buf.clear();
    buf.reserve(words.len() * 8);
    for w in words {
        // ORDERING: Relaxed — the caller's Acquire load of the tail (or of
        // the header) made the producer's stores visible; a racy MPMC
        // reader validates the copy with its CAS afterwards.
        buf.extend_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    buf.truncate(len);
}

/// Copies the first `dst.len()` bytes of `words` (exactly
/// `dst.len().div_ceil(8)` of them) into `dst`: relaxed atomic word loads
/// into a local buffer, then fixed-size 8-byte copies (the last one
/// overlapping) rather than a `memcpy` call of variable length.
///
/// # Panics
///
/// Never for correct callers; `words` too short only copies less.
#[inline(always)]
pub(crate) fn load_into(words: &[AtomicU64], dst: &mut [u8]) {
    debug_assert!(dst.len() <= SMALL);
    debug_assert_eq!(words.len(), dst.len().div_ceil(8));
    let mut local = [0u8; SMALL];
    for (w, chunk) in words.iter().zip(local.chunks_exact_mut(8)) {
        // ORDERING: Relaxed — as in `load`.
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    let n = dst.len().min(SMALL);
    if n < 8 {
        for (d, s) in dst.iter_mut().zip(local) {
            *d = s;
        }
        return;
    }
    let (chunks, _) = dst.as_chunks_mut::<8>();
    for (d, s) in chunks.iter_mut().zip(local.as_chunks::<8>().0) {
        *d = *s;
    }
    if let (Some(d), Some(s)) = (dst.last_chunk_mut::<8>(), local[..n].last_chunk::<8>()) {
        *d = *s;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_small_length_round_trips() {
        for len in 0..=SMALL {
            let src: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37) ^ 0x5A).collect();
            let words: Vec<AtomicU64> = (0..len.div_ceil(8))
                .map(|_| AtomicU64::new(u64::MAX))
                .collect();
            store(&words, &src);
            let mut raw = Vec::new();
            for w in &words {
                raw.extend_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
            }
            assert_eq!(&raw[..len], &src[..], "stored bytes, len {len}");
            assert!(raw[len..].iter().all(|&b| b == 0), "zero tail, len {len}");
            let mut out = vec![1, 2, 3];
            load(&words, len, &mut out);
            assert_eq!(out, src, "loaded bytes, len {len}");
            let mut into = vec![0xEE; len];
            load_into(&words, &mut into);
            assert_eq!(into, src, "copied bytes, len {len}");
        }
    }
}
