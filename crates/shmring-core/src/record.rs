//! Records: the 8-byte header in front of every message in a byte ring.
//!
//! ```text
//! bits  0..32  payload length in bytes
//! bits 32..40  tag: DATA (0xD7), DATA_MORE (0xD6), CONT (0xCE),
//!              CONT_MORE (0xCF) or PADDING (0xAD); anything else is
//!              corruption
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
//! # Framing marks
//!
//! A data record carries two marks (a [`Mark`]), in its tag:
//!
//! * **continues** (CONT, CONT_MORE): the record continues the message
//!   begun by the data record before it; without it (DATA, DATA_MORE) the
//!   record begins one.
//! * **more** (DATA_MORE, CONT_MORE, the tag of the same kind with its low
//!   bit flipped): more records of this message follow; without it the
//!   record ends its message.
//!
//! A layer that splits a long message into several records (the pipe)
//! writes DATA_MORE, then CONT_MORE, …, then CONT; a message of one record
//! is DATA, which is also what every unmarked push writes. So the
//! boundaries of its messages live in shared memory, not in one process's
//! head, and not in the records' lengths (a record of any length, the
//! maximum included, may end a message): a reader that starts in the
//! middle of a message (a new reader after a crash or a handover) sees CONT
//! records it has no beginning for, and a message a dead writer left
//! unfinished is followed by a record that begins the next. The ring
//! itself gives the marks no meaning: it only carries them
//! (`spsc::Producer::try_push_marked`, `spsc::ReadGrant::mark`). MPMC
//! consumers deliver a marked record like a DATA one (their producers
//! never write one; a hostile peer that does gains nothing over writing
//! DATA).

use crate::error::Corrupted;
use crate::layout::align_up;

/// Bytes of the record header.
pub const HEADER: u64 = 8;
const TAG_DATA: u64 = 0xD7;
const TAG_CONT: u64 = 0xCE;
const TAG_PAD: u64 = 0xAD;
/// Flipped into a data tag when more records of the message follow:
/// DATA_MORE is 0xD6, CONT_MORE 0xCF.
const TAG_MORE: u64 = 0x01;
const TAG_DATA_MORE: u64 = TAG_DATA ^ TAG_MORE;
const TAG_CONT_MORE: u64 = TAG_CONT ^ TAG_MORE;
const STAMP_MASK: u64 = 0xFF_FFFF;

/// The framing marks of a data record (see [Framing
/// marks](crate::record#framing-marks)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mark {
    /// The record continues the message begun by the data record before
    /// it; `false`: it begins a message.
    pub continues: bool,
    /// More records of the record's message follow; `false`: it ends the
    /// message.
    pub more: bool,
}

impl Mark {
    /// A message of one record: it begins and ends the message. What every
    /// unmarked push writes.
    pub const WHOLE: Mark = Mark {
        continues: false,
        more: false,
    };

    /// The mark of record `index` of a message of `count` records (`index
    /// < count`): the first begins it, every later one continues it, and
    /// every one but the last says more follow.
    #[inline]
    pub const fn nth(index: usize, count: usize) -> Mark {
        Mark {
            continues: index > 0,
            more: index + 1 < count,
        }
    }
}

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

/// The header of a data record with the tag of `mark`.
#[inline(always)]
pub(crate) const fn encode_data(len: u32, mark: Mark, position: u64) -> u64 {
    let kind = if mark.continues { TAG_CONT } else { TAG_DATA };
    let tag = kind ^ (mark.more as u64 * TAG_MORE);
    len as u64 | (tag << 32) | (stamp(position) << 40)
}

#[inline]
pub(crate) const fn encode_pad(len: u32, position: u64) -> u64 {
    len as u64 | (TAG_PAD << 32) | (stamp(position) << 40)
}

/// A header as decoded, not yet checked against the ring's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A data record and its marks.
    Data {
        len: u32,
        mark: Mark,
    },
    Pad {
        len: u32,
    },
}

/// Decodes the header word found at word position `position`.
///
/// The top 32 bits less the expected stamp leave the tag alone when the
/// stamp is right: one comparison per kind in the common case, DATA first;
/// working out which part was wrong is left to the cold error path.
#[inline(always)]
pub(crate) fn decode(word: u64, position: u64) -> Result<Header, Corrupted> {
    let len = word as u32;
    let data = |continues, more| {
        Ok(Header::Data {
            len,
            mark: Mark { continues, more },
        })
    };
    match (word >> 32) ^ (stamp(position) << 8) {
        TAG_DATA => data(false, false),
        TAG_CONT => data(true, false),
        TAG_CONT_MORE => data(true, true),
        TAG_DATA_MORE => data(false, true),
        TAG_PAD => Ok(Header::Pad { len }),
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
        let marks =
            [false, true].map(|continues| [false, true].map(|more| Mark { continues, more }));
        for mark in marks.into_iter().flatten() {
            let word = encode_data(17, mark, p);
            assert_eq!(decode(word, p), Ok(Header::Data { len: 17, mark }));
            assert!(decode(word, p + 1).is_err());
        }
        // Each kind keeps its tag of before: what an unmarked push writes
        // is DATA, a continuation that ends its message CONT.
        assert_eq!(encode_data(0, Mark::WHOLE, 0) >> 32, TAG_DATA);
        assert_eq!(encode_data(0, Mark::nth(1, 2), 0) >> 32, TAG_CONT);
        assert_eq!(encode_data(0, Mark::nth(0, 2), 0) >> 32, TAG_DATA_MORE);
        assert_eq!(encode_data(0, Mark::nth(1, 3), 0) >> 32, TAG_CONT_MORE);
        assert_eq!(decode(encode_pad(40, p), p), Ok(Header::Pad { len: 40 }));
        // The stamp is the position's low 24 bits: a position 2^24 words
        // on (a later lap of a ring of 128 MiB or more) has the same one.
        assert!(decode(encode_data(17, Mark::WHOLE, p), p + (1 << 24)).is_ok());
        assert!(decode(0, 0).is_err(), "zeroed memory is not a record");
        // Every tag but the five is corruption, with the right stamp.
        for tag in 0..=0xFFu64 {
            let word = (encode_data(17, Mark::WHOLE, p) & !(0xFF << 32)) | (tag << 32);
            match tag {
                TAG_DATA | TAG_DATA_MORE | TAG_CONT | TAG_CONT_MORE | TAG_PAD => {
                    assert!(decode(word, p).is_ok())
                }
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
