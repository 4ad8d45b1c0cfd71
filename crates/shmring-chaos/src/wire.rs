//! Typed arguments for the harnesses' children: every child is an entry
//! point of its test binary (`shmring::entry!`), and what it is told (its
//! ledger, the failpoint it dies at, its incarnation, the objects' names,
//! counts and seeds) travels as entry arguments, which must be
//! [`Message`]s.
//!
//! [`Field`] is a small, strict encoding for the values those arguments are
//! made of; [`wire_struct!`](crate::wire_struct) declares a struct of
//! fields that is a `Message`, and [`wire_message!`](crate::wire_message)
//! makes a `Message` of a type that is a `Field` already (an enum, say).
//! A decode refuses anything but exactly one well-formed value.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

pub use shmring::codec::{CodecError, Message};

/// One value of a child's arguments: appended to a buffer, taken from the
/// front of one.
pub trait Field: Sized {
    /// Appends the encoding of `self` to `out`.
    fn put(&self, out: &mut Vec<u8>);

    /// Takes one value from the front of `input`, advancing it.
    ///
    /// # Errors
    ///
    /// The bytes at the front of `input` are not an encoding of one value.
    fn take(input: &mut &[u8]) -> Result<Self, CodecError>;
}

/// A decode error saying `what` was wrong.
pub fn bad(what: impl Into<String>) -> CodecError {
    CodecError {
        reason: what.into(),
    }
}

/// Takes `n` bytes from the front of `input`.
fn bytes<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    if input.len() < n {
        return Err(bad(format!(
            "argument ends early: {n} bytes wanted, {} left",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// Decodes exactly one `T` from `bytes` (the body of a `Message::decode`).
///
/// # Errors
///
/// As [`Field::take`], or bytes left over after the value.
pub fn decode_all<T: Field>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut input = bytes;
    let value = T::take(&mut input)?;
    if !input.is_empty() {
        return Err(bad(format!(
            "{} bytes left after the argument",
            input.len()
        )));
    }
    Ok(value)
}

impl Field for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }

    fn take(input: &mut &[u8]) -> Result<u64, CodecError> {
        let b = bytes(input, 8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

impl Field for u32 {
    fn put(&self, out: &mut Vec<u8>) {
        u64::from(*self).put(out);
    }

    fn take(input: &mut &[u8]) -> Result<u32, CodecError> {
        let v = u64::take(input)?;
        u32::try_from(v).map_err(|_| bad(format!("{v} is out of range for a u32")))
    }
}

impl Field for usize {
    fn put(&self, out: &mut Vec<u8>) {
        (*self as u64).put(out);
    }

    fn take(input: &mut &[u8]) -> Result<usize, CodecError> {
        let v = u64::take(input)?;
        usize::try_from(v).map_err(|_| bad(format!("{v} is out of range for a usize")))
    }
}

impl Field for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }

    fn take(input: &mut &[u8]) -> Result<bool, CodecError> {
        match bytes(input, 1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(bad(format!("{b} is not a bool"))),
        }
    }
}

impl Field for Vec<u8> {
    fn put(&self, out: &mut Vec<u8>) {
        self.len().put(out);
        out.extend_from_slice(self);
    }

    fn take(input: &mut &[u8]) -> Result<Vec<u8>, CodecError> {
        let n = usize::take(input)?;
        Ok(bytes(input, n)?.to_vec())
    }
}

impl Field for String {
    fn put(&self, out: &mut Vec<u8>) {
        self.len().put(out);
        out.extend_from_slice(self.as_bytes());
    }

    fn take(input: &mut &[u8]) -> Result<String, CodecError> {
        String::from_utf8(Vec::take(input)?).map_err(|e| bad(format!("a string: {e}")))
    }
}

impl Field for PathBuf {
    fn put(&self, out: &mut Vec<u8>) {
        self.as_os_str().as_bytes().to_vec().put(out);
    }

    fn take(input: &mut &[u8]) -> Result<PathBuf, CodecError> {
        Ok(OsString::from_vec(Vec::take(input)?).into())
    }
}

impl<T: Field> Field for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        self.is_some().put(out);
        if let Some(v) = self {
            v.put(out);
        }
    }

    fn take(input: &mut &[u8]) -> Result<Option<T>, CodecError> {
        Ok(if bool::take(input)? {
            Some(T::take(input)?)
        } else {
            None
        })
    }
}

impl<A: Field, B: Field> Field for (A, B) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }

    fn take(input: &mut &[u8]) -> Result<(A, B), CodecError> {
        Ok((A::take(input)?, B::take(input)?))
    }
}

impl<A: Field, B: Field, C: Field> Field for (A, B, C) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
        self.2.put(out);
    }

    fn take(input: &mut &[u8]) -> Result<(A, B, C), CodecError> {
        Ok((A::take(input)?, B::take(input)?, C::take(input)?))
    }
}

/// Makes a [`Message`] of a type that is a [`Field`]: its encoding is the
/// field's, and a decode must use every byte.
#[macro_export]
macro_rules! wire_message {
    ($ty:ty) => {
        impl $crate::wire::Message for $ty {
            fn encode(&self, out: &mut Vec<u8>) -> Result<(), $crate::wire::CodecError> {
                $crate::wire::Field::put(self, out);
                Ok(())
            }

            fn decode(bytes: &[u8]) -> Result<Self, $crate::wire::CodecError> {
                $crate::wire::decode_all(bytes)
            }
        }
    };
}

/// Declares a struct whose fields are [`Field`]s, and makes it a
/// [`Field`] (its fields in order) and a [`Message`]: a child's typed
/// argument.
///
/// ```
/// shmring_chaos::wire_struct! {
///     /// What a worker is told.
///     #[derive(Clone, Debug, PartialEq)]
///     pub struct Job {
///         /// The queue's name.
///         pub queue: String,
///         /// How many to put.
///         pub count: u64,
///     }
/// }
/// use shmring::codec::Message;
/// let job = Job { queue: "/q".into(), count: 3 };
/// let mut bytes = Vec::new();
/// job.encode(&mut bytes).unwrap();
/// assert_eq!(Job::decode(&bytes).unwrap(), job);
/// ```
#[macro_export]
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }

        impl $crate::wire::Field for $name {
            fn put(&self, out: &mut Vec<u8>) {
                $($crate::wire::Field::put(&self.$field, out);)*
            }

            fn take(input: &mut &[u8]) -> Result<Self, $crate::wire::CodecError> {
                Ok($name {
                    $($field: <$ty as $crate::wire::Field>::take(input)?,)*
                })
            }
        }

        $crate::wire_message!($name);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::wire_struct! {
        /// Every kind of field.
        #[derive(Clone, Debug, PartialEq)]
        struct All {
            a: u64,
            b: u32,
            c: usize,
            d: bool,
            e: String,
            f: PathBuf,
            g: Option<(String, u64)>,
            h: Option<u64>,
            i: (bool, u32, String),
        }
    }

    fn sample() -> All {
        All {
            a: u64::MAX,
            b: 7,
            c: 3,
            d: true,
            e: "ring.claimed".into(),
            f: PathBuf::from("/dev/shm/ledger"),
            g: Some(("dict:flipped".into(), 12)),
            h: None,
            i: (false, u32::MAX, String::new()),
        }
    }

    #[test]
    fn structs_round_trip() {
        let mut bytes = Vec::new();
        sample().encode(&mut bytes).unwrap();
        assert_eq!(All::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_any_excess_is_refused() {
        let mut bytes = Vec::new();
        sample().encode(&mut bytes).unwrap();
        for n in 0..bytes.len() {
            assert!(All::decode(&bytes[..n]).is_err(), "{n} bytes decoded");
        }
        bytes.push(0);
        assert!(All::decode(&bytes).is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut bytes = Vec::new();
        (u64::from(u32::MAX) + 1).put(&mut bytes);
        assert!(decode_all::<u32>(&bytes).is_err());
        assert!(decode_all::<bool>(&[2]).is_err());
        // A length beyond the bytes there are.
        let mut bytes = Vec::new();
        u64::MAX.put(&mut bytes);
        assert!(decode_all::<String>(&bytes).is_err());
        let mut bytes = Vec::new();
        vec![0xff_u8, 0xfe].put(&mut bytes);
        assert!(decode_all::<String>(&bytes).is_err());
    }
}
