//! Messages: how values become bytes in shared memory and back.
//!
//! Three ways, from fastest to most general:
//!
//! * raw bytes: `Vec<u8>` and `String` are messages as they are;
//! * plain old data: any type you mark [`Pod`] (integers, floats, arrays of
//!   them, your own `#[repr(C)]` structs without padding) is copied as its
//!   bytes, nothing else;
//! * any `serde` type, wrapped in `Serde` (`codec::Serde`), with the `serde` feature: encoded
//!   with [postcard](https://docs.rs/postcard), a compact, maintained,
//!   `no_std`-friendly format (varint integers, no field names, no schema in
//!   the bytes), so a small struct costs few bytes to copy through the ring.
//!
//! Decoding always works on bytes already copied out of shared memory, so a
//! peer scribbling on the segment can make a decode fail, never make it read
//! memory that changes under it.

use std::fmt;

/// A value that can travel through shmring.
pub trait Message: Sized {
    /// Appends the encoding of `self` to `out`.
    ///
    /// # Errors
    ///
    /// The value cannot be encoded (a serde serializer refused it).
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a value from exactly `bytes`.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid encoding (wrong length, invalid UTF-8, …).
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;

    /// Decodes a value from exactly the bytes in `bytes`, taking them if
    /// that saves a copy: a get pops each message into a buffer and hands
    /// it here, so a `Vec<u8>` or `String` item *is* that buffer (one
    /// allocation of the message's length and one copy out of shared
    /// memory, where [`decode`](Message::decode) would copy the bytes a
    /// second time into a new allocation). What is left in `bytes` is
    /// unspecified (the caller clears it before reusing it). The default
    /// calls [`decode`](Message::decode) and leaves `bytes` alone, which is
    /// right for any type that does not hold its bytes as a `Vec<u8>`.
    ///
    /// # Errors
    ///
    /// As [`decode`](Message::decode).
    #[inline]
    fn decode_from(bytes: &mut Vec<u8>) -> Result<Self, CodecError> {
        Self::decode(bytes)
    }

    /// The encoding of `self` when it is bytes `self` already holds (plain
    /// old data, `Vec<u8>`, `String`): a put then copies them straight into
    /// the ring, with no scratch buffer in between. Must be exactly what
    /// [`encode`](Message::encode) would append. The default, `None`, means
    /// "call `encode`".
    #[inline]
    fn as_bytes(&self) -> Option<&[u8]> {
        None
    }
}

/// The encoding of `item`: its own bytes when [`Message::as_bytes`] has
/// them, else encoded into `scratch` (cleared first).
#[inline]
pub(crate) fn encoded<'a, T: Message>(
    item: &'a T,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], CodecError> {
    if let Some(bytes) = item.as_bytes() {
        return Ok(bytes);
    }
    scratch.clear();
    item.encode(scratch)?;
    Ok(scratch)
}

/// A message could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    /// What went wrong.
    pub reason: String,
}

impl CodecError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        CodecError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message codec: {}", self.reason)
    }
}

impl std::error::Error for CodecError {}

/// Plain old data: a type whose every bit pattern is a valid value and whose
/// bytes are all of it.
///
/// # Safety
///
/// Implement only for types that are `Copy`, have no padding bytes, no
/// pointers or references, no invalid bit patterns (so no `bool`, `char`,
/// enums or `NonZero*`), and the same layout in every process that shares
/// the queue (`#[repr(C)]` or `#[repr(transparent)]` for your own structs).
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: primitive integers and floats: no padding, every bit
        // pattern valid, no pointers.
        unsafe impl Pod for $t {}
    )* };
}
pod!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    ()
);

// SAFETY: an array of Pod has no padding between elements (size is a
// multiple of alignment) and inherits validity from its elements.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

impl<T: Pod> Message for T {
    #[inline]
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(pod_bytes(self));
        Ok(())
    }

    #[inline]
    fn as_bytes(&self) -> Option<&[u8]> {
        Some(pod_bytes(self))
    }

    #[inline]
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() != std::mem::size_of::<T>() {
            return Err(wrong_length(std::mem::size_of::<T>(), bytes.len()));
        }
        // SAFETY: exactly size_of::<T>() readable bytes (checked above); T is
        // Pod, so any bit pattern is a valid T; read_unaligned needs no
        // alignment.
        Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
    }
}

/// The error of a Pod decode from the wrong number of bytes (out of line:
/// the hot path of a decode is the length check and one load).
#[cold]
#[inline(never)]
fn wrong_length(expected: usize, got: usize) -> CodecError {
    CodecError::new(format!("expected {expected} bytes, got {got}"))
}

/// The bytes of a Pod value.
#[inline(always)]
fn pod_bytes<T: Pod>(value: &T) -> &[u8] {
    let len = std::mem::size_of::<T>();
    // SAFETY: T is Pod: all `len` bytes of `value` are initialised (no
    // padding), and the slice lives no longer than the borrow of `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), len) }
}

impl Message for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(self);
        Ok(())
    }

    #[inline]
    fn as_bytes(&self) -> Option<&[u8]> {
        Some(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(bytes.to_vec())
    }

    #[inline]
    fn decode_from(bytes: &mut Vec<u8>) -> Result<Self, CodecError> {
        Ok(std::mem::take(bytes))
    }
}

impl Message for String {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(self.as_bytes());
        Ok(())
    }

    #[inline]
    fn as_bytes(&self) -> Option<&[u8]> {
        Some(str::as_bytes(self))
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::new(e.to_string()))
    }

    /// Takes the buffer when it is valid UTF-8; leaves it as it was when not.
    fn decode_from(bytes: &mut Vec<u8>) -> Result<Self, CodecError> {
        match String::from_utf8(std::mem::take(bytes)) {
            Ok(s) => Ok(s),
            Err(e) => {
                let message = e.utf8_error().to_string();
                *bytes = e.into_bytes();
                Err(CodecError::new(message))
            }
        }
    }
}

/// Any serde type as a message, encoded with postcard.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use shmring::codec::{Message, Serde};
/// let mut bytes = Vec::new();
/// Serde(("ticket".to_string(), 1u32)).encode(&mut bytes).unwrap();
/// let Serde(back) = Serde::<(String, u32)>::decode(&bytes).unwrap();
/// assert_eq!(back, ("ticket".to_string(), 1));
/// # }
/// ```
#[cfg(feature = "serde")]
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Message for Serde<T> {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let taken = std::mem::take(out);
        *out = postcard::to_extend(&self.0, taken).map_err(|e| CodecError::new(e.to_string()))?;
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        postcard::from_bytes(bytes)
            .map(Serde)
            .map_err(|e| CodecError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Message + PartialEq + fmt::Debug>(v: T) {
        let mut buf = Vec::new();
        v.encode(&mut buf).unwrap();
        assert_eq!(T::decode(&buf).unwrap(), v);
        // The shortcut a put takes is the same bytes.
        let mut scratch = vec![9u8; 3];
        assert_eq!(encoded(&v, &mut scratch).unwrap(), &buf[..]);
        if let Some(own) = v.as_bytes() {
            assert_eq!(own, &buf[..]);
        }
    }

    #[test]
    fn pod_bytes_and_strings_round_trip() {
        round_trip(42u64);
        round_trip(-7i32);
        round_trip(1.5f64);
        round_trip([1u16, 2, 3]);
        round_trip(());
        round_trip(b"raw".to_vec());
        round_trip("text".to_string());
        assert!(7u8.as_bytes().is_some() && "t".to_string().as_bytes() == b"t");
    }

    /// A type without its own bytes goes through `encode` into the scratch
    /// buffer, which is cleared first.
    #[test]
    fn types_without_their_own_bytes_are_encoded_into_scratch() {
        struct Twice(u8);
        impl Message for Twice {
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
                out.extend_from_slice(&[self.0, self.0]);
                Ok(())
            }
            fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
                Ok(Twice(bytes[0]))
            }
        }
        assert!(Twice(1).as_bytes().is_none());
        let mut scratch = vec![9u8; 5];
        assert_eq!(encoded(&Twice(4), &mut scratch).unwrap(), &[4, 4]);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(u64::decode(&[1, 2, 3]).is_err());
        assert!(String::decode(&[0xff, 0xfe]).is_err());
        assert!(u64::decode_from(&mut vec![1, 2, 3]).is_err());
        let mut bad = vec![0xff, 0xfe];
        let err = String::decode_from(&mut bad).unwrap_err();
        assert_eq!(err, String::decode(&[0xff, 0xfe]).unwrap_err());
        assert_eq!(bad, [0xff, 0xfe], "bytes that are not UTF-8 stay");
    }

    /// `Vec<u8>` and `String` take the buffer a get popped into (the same
    /// allocation, no second copy); other types decode from it and leave
    /// it be.
    #[test]
    fn decode_from_takes_the_buffer_of_byte_types() {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"payload");
        let at = buf.as_ptr();
        let got = Vec::<u8>::decode_from(&mut buf).unwrap();
        assert_eq!(got, b"payload");
        assert_eq!(got.as_ptr(), at, "the same allocation, not a copy");
        assert!(buf.is_empty() && buf.capacity() == 0);

        let mut buf = b"text".to_vec();
        let at = buf.as_ptr();
        let got = String::decode_from(&mut buf).unwrap();
        assert_eq!(got, "text");
        assert_eq!(got.as_ptr(), at);

        let mut buf = 7u64.to_ne_bytes().to_vec();
        assert_eq!(u64::decode_from(&mut buf).unwrap(), 7);
        assert_eq!(buf, 7u64.to_ne_bytes(), "a Pod decode leaves the buffer");
    }
}
