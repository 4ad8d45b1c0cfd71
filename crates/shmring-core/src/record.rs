//! Records: the 8-byte header in front of every message in a byte ring.
//!
//! ```text
//! bits  0..32  payload length in bytes
//! bits 32..40  tag: DATA (0xD7), CONT (0xCE) or PADDING (0xAD); anything
//!              else is corruption
//! bits 40..64  stamp: the low 24 bits of the record's word position (its
//!              byte position's bits 3..27)
//! ```
//!
//! The payload follows the header and the record is padded to 8 bytes, so
//! every record starts 8-byte aligned. The stamp ties a header to the lap it
//! was written in: a header left over from an earlier lap, or read by a
//! consumer that raced with the producer reusing the space, has the wrong
//! stamp. Zeroed memory has tag 0 and is never mistaken for a record.
//!
//! # Continuation records
//!
//! CONT is a data record that *continues* the message begun by the data
//! record before it; DATA begins one. A layer that splits a long message
//! into several records (the pipe) marks the first one DATA and the others
//! CONT, so the boundaries of its messages live in shared memory, not in
//! one process's head: a reader that starts in the middle of a message (a
//! new reader after a crash or a handover) sees CONT records it has no
//! beginning for, and a message a dead writer left unfinished is followed
//! by a DATA record that begins the next. The ring itself gives the mark no
//! meaning: it only carries it (`spsc::Producer::try_push_marked`,
//! `spsc::ReadGrant::continues`). MPMC consumers deliver a CONT record like
//! a DATA one (their producers never write one; a hostile peer that does
//! gains nothing over writing DATA).

use crate::error::Corrupted;
use crate::layout::align_up;

/// Bytes of the record header.
pub const HEADER: u64 = 8;
const TAG_DATA: u64 = 0xD7;
const TAG_CONT: u64 = 0xCE;
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

/// Words (8 bytes each) a record with a `len`-byte payload takes: the
/// header and the payload rounded up. `len` below 2^32 (a header's length
/// field), so never an overflow.
#[inline(always)]
pub(crate) const fn record_words(len: u64) -> u64 {
    1 + len.div_ceil(8)
}

/// The stamp of a record at word position `position`.
#[inline(always)]
const fn stamp(position: u64) -> u64 {
    position & STAMP_MASK
}

/// The header of a data record: DATA, or CONT when `continues`.
#[inline(always)]
pub(crate) const fn encode_data(len: u32, continues: bool, position: u64) -> u64 {
    let tag = if continues { TAG_CONT } else { TAG_DATA };
    len as u64 | (tag << 32) | (stamp(position) << 40)
}

#[inline]
pub(crate) const fn encode_pad(len: u32, position: u64) -> u64 {
    len as u64 | (TAG_PAD << 32) | (stamp(position) << 40)
}

/// A header as decoded, not yet checked against the ring's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A data record; `continues`: tagged CONT.
    Data {
        len: u32,
        continues: bool,
    },
    Pad {
        len: u32,
    },
}

/// Decodes the header word found at word position `position`.
///
/// One comparison of the top 32 bits (tag and stamp together) per kind in
/// the common case, DATA first; working out which part was wrong is left to
/// the cold error path.
#[inline(always)]
pub(crate) fn decode(word: u64, position: u64) -> Result<Header, Corrupted> {
    let len = word as u32;
    let expected = stamp(position) << 8;
    match word >> 32 {
        high if high == expected | TAG_DATA => Ok(Header::Data {
            len,
            continues: false,
        }),
        high if high == expected | TAG_CONT => Ok(Header::Data {
            len,
            continues: true,
        }),
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
        let p = 0x1234_5678u64;
        let data = |len, continues| Ok(Header::Data { len, continues });
        assert_eq!(decode(encode_data(17, false, p), p), data(17, false));
        assert_eq!(decode(encode_data(17, true, p), p), data(17, true));
        assert_eq!(decode(encode_pad(40, p), p), Ok(Header::Pad { len: 40 }));
        assert!(decode(encode_data(17, false, p), p + 1).is_err());
        assert!(decode(encode_data(17, true, p), p + 1).is_err());
        // The stamp is the position's low 24 bits: a position 2^24 words
        // on (a later lap of a ring of 128 MiB or more) has the same one.
        assert!(decode(encode_data(17, false, p), p + (1 << 24)).is_ok());
        assert!(decode(0, 0).is_err(), "zeroed memory is not a record");
        // Every tag but the three is corruption, with the right stamp.
        for tag in 0..=0xFFu64 {
            let word = (encode_data(17, false, p) & !(0xFF << 32)) | (tag << 32);
            match tag {
                TAG_DATA | TAG_CONT | TAG_PAD => assert!(decode(word, p).is_ok()),
                _ => assert_eq!(decode(word, p).unwrap_err().what, "record tag"),
            }
        }
        assert_eq!(
            decode(encode_pad(8, p), p + 1).unwrap_err().what,
            "record stamp"
        );
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
        for len in [0, 1, 8, 9, 4096, u64::from(u32::MAX)] {
            assert_eq!(record_words(len) * 8, record_size(len));
        }
    }
}
