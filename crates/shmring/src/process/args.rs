//! How an entry point's arguments travel to the child: in order, one
//! environment variable each, named by position.
//!
//! A shmring object (a queue, a lock, a dict, a pipe end, a ring) is handed
//! over by inheritance ([`Segment::share_with_child`](crate::Segment::share_with_child)
//! in the parent, `builder().open_inherited` in the child); any other value is a
//! [`Message`], encoded in the parent and decoded in the child. The
//! variables are `SHMRING_PROCESS_ARG_<index>`; nobody names them but this
//! module.

use std::error::Error;
use std::fmt;
use std::process::Command;

use crate::codec::Message;
use crate::SegmentError;

/// The error of handing one argument over or receiving it.
pub(crate) type ArgError = Box<dyn Error + Send + Sync>;

/// The variable that carries argument `index`.
pub(crate) fn arg_var(index: usize) -> String {
    format!("SHMRING_PROCESS_ARG_{index}")
}

/// The most bytes a plain value may encode to: its variable holds them as
/// hex, and Linux refuses an environment string over 128 KiB
/// (`MAX_ARG_STRLEN`) at exec.
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

/// Something a child can receive as an argument of an [`Entry`](super::Entry):
/// every shmring object that lives in a segment (received by inheritance)
/// and every [`Message`] (received as its encoding).
///
/// This trait is sealed: its impls are in shmring.
pub trait Arg: Sized + sealed::Arg {}

/// What the parent passes for an argument of type `A`: a reference to the
/// object for a shmring object (`&Queue<T>` for a `Queue<T>`; a pipe
/// [`Connection`](crate::pipe::Connection) is *transferred*, see
/// [`Connection::share_with_child`](crate::pipe::Connection::share_with_child)),
/// the value itself for a [`Message`].
///
/// This trait is sealed: its impls are in shmring.
pub trait IntoArg<A: Arg>: sealed::IntoArg<A> {}

/// The arguments of an entry point: `()` or a tuple of up to eight
/// [`Arg`]s, as Python's `args=(q, 5)`.
///
/// This trait is sealed: its impls are in shmring.
pub trait Args: Sized + sealed::Args {}

/// What the parent passes for the arguments `A` of an entry point: a tuple
/// of the same length whose items are [`IntoArg`] for `A`'s.
///
/// This trait is sealed: its impls are in shmring.
pub trait IntoArgs<A: Args>: sealed::IntoArgs<A> {}

pub(crate) mod sealed {
    use super::ArgError;
    use std::process::Command;

    pub trait Arg: Sized {
        /// Child side: receives the argument carried by `var`.
        fn receive(var: &str) -> Result<Self, ArgError>;
    }

    pub trait IntoArg<A> {
        /// Parent side: hands the argument over to the child `cmd` will
        /// spawn, through `var`.
        fn hand_over(self, cmd: &mut Command, var: &str) -> Result<(), ArgError>;
    }

    pub trait Args: Sized {
        /// How many arguments.
        const COUNT: usize;
        /// Receives them all, or says which one failed.
        fn receive_all() -> Result<Self, super::ArgFailure>;
    }

    pub trait IntoArgs<A> {
        /// Hands them all over, or says which one failed.
        fn hand_over_all(self, cmd: &mut Command) -> Result<(), super::ArgFailure>;
    }
}

/// Which argument failed to travel, and why.
#[derive(Debug)]
pub struct ArgFailure {
    /// Its position in the tuple (from 0).
    pub index: usize,
    /// Its type, as the child receives it.
    pub type_name: &'static str,
    /// What went wrong.
    pub source: ArgError,
}

impl fmt::Display for ArgFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {} ({}): {}",
            self.index, self.type_name, self.source
        )
    }
}

impl Error for ArgFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

// ---- plain values -------------------------------------------------------

impl<M: Message> sealed::Arg for M {
    fn receive(var: &str) -> Result<Self, ArgError> {
        let hex = std::env::var(var).map_err(|_| format!("{var} is not set, or not unicode"))?;
        let bytes = from_hex(&hex).ok_or_else(|| format!("{var} is not an encoded value"))?;
        Ok(M::decode(&bytes)?)
    }
}
impl<M: Message> Arg for M {}

impl<M: Message> sealed::IntoArg<M> for M {
    fn hand_over(self, cmd: &mut Command, var: &str) -> Result<(), ArgError> {
        let mut bytes = Vec::new();
        self.encode(&mut bytes)?;
        if bytes.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "the value encodes to {} bytes, more than a process argument may carry \
                 ({MAX_VALUE_BYTES}); hand over a queue and put it there",
                bytes.len()
            )
            .into());
        }
        cmd.env(var, to_hex(&bytes));
        Ok(())
    }
}
impl<M: Message> IntoArg<M> for M {}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

// ---- shmring objects ----------------------------------------------------

/// A shmring object's two sides, from its `share_with_child` and
/// `open_inherited`.
macro_rules! object_arg {
    ([$($generics:tt)*] $ty:ty) => {
        object_arg!([$($generics)*] $ty, |var| <$ty>::builder().open_inherited(var));
    };
    ([$($generics:tt)*] $ty:ty, $open:expr) => {
        impl<$($generics)*> sealed::Arg for $ty {
            fn receive(var: &str) -> Result<Self, ArgError> {
                Ok(($open)(var)?)
            }
        }
        impl<$($generics)*> Arg for $ty {}

        impl<$($generics)*> sealed::IntoArg<$ty> for &$ty {
            fn hand_over(self, cmd: &mut Command, var: &str) -> Result<(), ArgError> {
                let shared: Result<(), SegmentError> = self.share_with_child(cmd, var);
                Ok(shared?)
            }
        }
        impl<$($generics)*> IntoArg<$ty> for &$ty {}
    };
}

object_arg!([T: Message] crate::queue::Queue<T>);
object_arg!([T: Message] crate::queue::JoinableQueue<T>);
object_arg!([T: Message] crate::queue::SimpleQueue<T>);
object_arg!([K: Message, V: Message] crate::dict::Dict<K, V>);
object_arg!([] crate::lock::Lock);
object_arg!([] crate::lock::RLock);
object_arg!([] crate::pipe::Connection, crate::pipe::Connection::open_inherited);
object_arg!([] crate::spsc::Ring);
object_arg!([] crate::mpmc::ByteQueue);

// ---- tuples -------------------------------------------------------------

impl sealed::Args for () {
    const COUNT: usize = 0;
    fn receive_all() -> Result<(), ArgFailure> {
        Ok(())
    }
}
impl Args for () {}
impl sealed::IntoArgs<()> for () {
    fn hand_over_all(self, _: &mut Command) -> Result<(), ArgFailure> {
        Ok(())
    }
}
impl IntoArgs<()> for () {}

macro_rules! tuple_args {
    ($count:literal; $($a:ident $p:ident $i:tt),+) => {
        impl<$($a: Arg),+> sealed::Args for ($($a,)+) {
            const COUNT: usize = $count;
            fn receive_all() -> Result<Self, ArgFailure> {
                Ok(($(
                    <$a as sealed::Arg>::receive(&arg_var($i)).map_err(|source| ArgFailure {
                        index: $i,
                        type_name: std::any::type_name::<$a>(),
                        source,
                    })?,
                )+))
            }
        }
        impl<$($a: Arg),+> Args for ($($a,)+) {}

        impl<$($a: Arg, $p: IntoArg<$a>),+> sealed::IntoArgs<($($a,)+)> for ($($p,)+) {
            fn hand_over_all(self, cmd: &mut Command) -> Result<(), ArgFailure> {
                $(
                    sealed::IntoArg::<$a>::hand_over(self.$i, cmd, &arg_var($i)).map_err(
                        |source| ArgFailure {
                            index: $i,
                            type_name: std::any::type_name::<$a>(),
                            source,
                        },
                    )?;
                )+
                Ok(())
            }
        }
        impl<$($a: Arg, $p: IntoArg<$a>),+> IntoArgs<($($a,)+)> for ($($p,)+) {}
    };
}

tuple_args!(1; A0 P0 0);
tuple_args!(2; A0 P0 0, A1 P1 1);
tuple_args!(3; A0 P0 0, A1 P1 1, A2 P2 2);
tuple_args!(4; A0 P0 0, A1 P1 1, A2 P2 2, A3 P3 3);
tuple_args!(5; A0 P0 0, A1 P1 1, A2 P2 2, A3 P3 3, A4 P4 4);
tuple_args!(6; A0 P0 0, A1 P1 1, A2 P2 2, A3 P3 3, A4 P4 4, A5 P5 5);
tuple_args!(7; A0 P0 0, A1 P1 1, A2 P2 2, A3 P3 3, A4 P4 4, A5 P5 5, A6 P6 6);
tuple_args!(8; A0 P0 0, A1 P1 1, A2 P2 2, A3 P3 3, A4 P4 4, A5 P5 5, A6 P6 6, A7 P7 7);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_hostile_text() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex(""), Some(Vec::new()));
        for bad in ["0", "zz", "0g", "é0", "+1", " 1"] {
            assert_eq!(from_hex(bad), None, "{bad:?}");
        }
    }
}
