//! How the harnesses read the fuzzer's bytes: a cursor that never runs
//! out ([`Input`]), and the shared decoders of messages, ring start words,
//! hostile word values and payload lengths.

/// A cursor over the fuzzer's bytes. Reads past the end yield zeros, so
/// every input decodes to something; [`Input::op`] ends the op loop.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or `None` at the end (the end of the op sequence).
    pub fn op(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        self.op().unwrap_or(0)
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b)
    }

    /// Up to `n` of the remaining bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// A message of `len` bytes whose content depends on `seq` (so a record
/// delivered twice, torn, or out of order shows).
pub(crate) fn message(seq: &mut u32, len: usize) -> Vec<u8> {
    *seq = seq.wrapping_add(1);
    let s = seq.to_le_bytes();
    (0..len)
        .map(|i| s[i % 4] ^ (i as u8).wrapping_mul(31))
        .collect()
}

/// Where a fresh ring's head and tail start: `(position, count)` of both
/// words. Often 0; otherwise a little before the wrap of the position
/// (2^38 words), of the count (2^26 records), or of both, so that the
/// operations that follow cross it.
pub(crate) fn start(input: &mut Input<'_>) -> (u64, u64) {
    use shmring_core::ring::{COUNT_BITS, POSITION_BITS};
    let byte = input.byte();
    let before = u64::from(input.u16() % 1024);
    let near = |bits: u32| (1u64 << bits) - before;
    match byte % 4 {
        0 => (0, 0),
        1 => (near(POSITION_BITS), u64::from(byte)),
        2 => (u64::from(byte) * 8 + 3, near(COUNT_BITS)),
        _ => (near(POSITION_BITS), near(COUNT_BITS)),
    }
}

/// A value a hostile peer writes into a position word, given the word as
/// it is: near 2^64, near the position wrap, the same position with a
/// different count, the same count with a moved position, or any value.
pub(crate) fn hostile_word(input: &mut Input<'_>, current: u64) -> u64 {
    use shmring_core::ring::{POSITION_BITS, POSITION_MASK};
    let delta = u64::from(input.u16());
    match input.byte() % 6 {
        0 => u64::MAX - delta,
        1 => (current & !POSITION_MASK) | (POSITION_MASK - delta % 64),
        2 => current.wrapping_add(delta << POSITION_BITS),
        3 => current.wrapping_add(delta),
        4 => current.wrapping_sub(delta),
        _ => input.u64(),
    }
}

/// A payload length for a ring whose largest record is `max`: often the
/// edge cases (0, `max`, `max + 1`), otherwise anything up to `max`.
pub(crate) fn length(input: &mut Input<'_>, max: u64) -> usize {
    let r = u64::from(input.u16());
    (match r % 8 {
        0 => 0,
        1 => max,
        2 => max + 1,
        _ => (r >> 3) % (max + 1),
    }) as usize
}
