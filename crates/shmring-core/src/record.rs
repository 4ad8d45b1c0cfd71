//! Records: the 8-byte header in front of every message in a byte ring.
//!
//! ```text
//! bits  0..32  payload length in bytes
//! bits 32..40  tag: DATA (0xD7) or PADDING (0xAD); anything else is corruption
//! bits 40..64  stamp: bits 3..27 of the record's position
//! ```
//!
//! The payload follows the header and the record is padded to 8 bytes, so
//! every record starts 8-byte aligned. The stamp ties a header to the lap it
//! was written in: a header left over from an earlier lap, or read by a
//! consumer that raced with the producer reusing the space, has the wrong
//! stamp. Zeroed memory has tag 0 and is never mistaken for a record.

use crate::error::Corrupted;
use crate::layout::align_up;

/// Bytes of the record header.
pub const HEADER: u64 = 8;
const TAG_DATA: u64 = 0xD7;
const TAG_PAD: u64 = 0xAD;
const STAMP_MASK: u64 = 0xFF_FFFF;

/// Bytes a record with a `len`-byte payload takes in the ring.
#[inline]
pub const fn record_size(len: u64) -> u64 {
    match align_up(len, 8) {
        Some(n) => HEADER + n,
        None => u64::MAX,
    }
}

#[inline]
const fn stamp(position: u64) -> u64 {
    (position >> 3) & STAMP_MASK
}

#[inline]
pub(crate) const fn encode_data(len: u32, position: u64) -> u64 {
    len as u64 | (TAG_DATA << 32) | (stamp(position) << 40)
}

#[inline]
pub(crate) const fn encode_pad(len: u32, position: u64) -> u64 {
    len as u64 | (TAG_PAD << 32) | (stamp(position) << 40)
}

/// A header as decoded, not yet checked against the ring's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    Data { len: u32 },
    Pad { len: u32 },
}

/// Decodes the header word found at `position`.
///
/// One comparison of the top 32 bits (tag and stamp together) per kind in
/// the common case; working out which part was wrong is left to the cold
/// error path.
#[inline(always)]
pub(crate) fn decode(word: u64, position: u64) -> Result<Header, Corrupted> {
    let len = word as u32;
    let expected = stamp(position) << 8;
    match word >> 32 {
        high if high == expected | TAG_DATA => Ok(Header::Data { len }),
        high if high == expected | TAG_PAD => Ok(Header::Pad { len }),
        _ => Err(decode_error(word, position)),
    }
}

#[cold]
fn decode_error(word: u64, position: u64) -> Corrupted {
    if word >> 40 != stamp(position) {
        Corrupted::new("record stamp", word)
    } else {
        Corrupted::new("record tag", word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let p = 0x1234_5678u64 & !7;
        assert_eq!(decode(encode_data(17, p), p), Ok(Header::Data { len: 17 }));
        assert_eq!(decode(encode_pad(40, p), p), Ok(Header::Pad { len: 40 }));
        assert!(decode(encode_data(17, p), p + 8).is_err());
        assert!(decode(0, 0).is_err(), "zeroed memory is not a record");
        let bad_tag = (encode_data(17, p) & !(0xFF << 32)) | (0x11 << 32);
        assert_eq!(decode(bad_tag, p).unwrap_err().what, "record tag");
        assert_eq!(
            decode(encode_pad(8, p), p + 8).unwrap_err().what,
            "record stamp"
        );
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
    }
}
