//! Long tagged messages: a sequence number, the writer's incarnation, the
//! length and a checksum of the three, then filler bytes derived from the
//! checksum and their position. Any flipped, missing, extra or spliced byte
//! is caught by [`decode_long`].

/// Bytes before the filler: seq (u64), incarnation (u64), length (u32),
/// pad (u32), checksum (u64).
pub const LONG_HEAD: usize = 32;

fn checksum(seq: u64, inc: u64, len: u32) -> u64 {
    let a = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ inc.rotate_left(29);
    (a ^ u64::from(len).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)).wrapping_mul(0xD6E8_FEB8_6659_FD93)
        ^ 0x104C_AB1E
}

fn filler(sum: u64, i: usize) -> u8 {
    (sum >> (i % 8 * 8)) as u8 ^ (i as u8).wrapping_mul(31) ^ (i >> 8) as u8
}

/// Writes message `seq` of writer incarnation `inc`, `len` bytes long (at
/// least [`LONG_HEAD`]), into `out`.
pub fn long_message(seq: u64, inc: u64, len: usize, out: &mut Vec<u8>) {
    let len = len.max(LONG_HEAD);
    let len32 = u32::try_from(len).expect("a message under 4 GiB");
    let sum = checksum(seq, inc, len32);
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&inc.to_le_bytes());
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend((LONG_HEAD..len).map(|i| filler(sum, i)));
}

/// `(seq, incarnation)` of an intact message; `None` for a torn one.
pub fn decode_long(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() < LONG_HEAD {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
    let (seq, inc) = (u64_at(0), u64_at(8));
    let len = u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes"));
    if len as usize != buf.len() || buf[20..24] != [0; 4] {
        return None;
    }
    let sum = checksum(seq, inc, len);
    if u64_at(24) != sum {
        return None;
    }
    buf[LONG_HEAD..]
        .iter()
        .enumerate()
        .all(|(k, &b)| b == filler(sum, LONG_HEAD + k))
        .then_some((seq, inc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_round_trip_and_tears_are_seen() {
        let mut buf = Vec::new();
        long_message(12_345, 77, 700, &mut buf);
        assert_eq!(buf.len(), 700);
        assert_eq!(decode_long(&buf), Some((12_345, 77)));
        for i in 0..buf.len() {
            let mut torn = buf.clone();
            torn[i] ^= 0x04;
            assert_eq!(decode_long(&torn), None, "flip at byte {i} unnoticed");
        }
        assert_eq!(decode_long(&buf[..699]), None);
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(decode_long(&longer), None);
        // Two halves of different messages spliced together.
        let mut other = Vec::new();
        long_message(12_346, 77, 700, &mut other);
        let mut spliced = buf[..350].to_vec();
        spliced.extend_from_slice(&other[350..]);
        assert_eq!(decode_long(&spliced), None);
        long_message(1, 2, 0, &mut buf);
        assert_eq!(decode_long(&buf), Some((1, 2)));
    }
}
