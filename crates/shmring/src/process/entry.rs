//! Entry points: what a child process runs, declared from the function
//! itself, and the child side that finds and runs one.

use std::error::Error;
use std::fmt;

use super::args::{sealed, ArgFailure, Args};

/// The variable naming the entry point a child runs (its [`Entry::id`]).
pub(crate) const ENTRY_VAR: &str = "SHMRING_PROCESS_ENTRY";
/// The variable naming the argument types the parent handed over
/// (`std::any::type_name` of the entry's tuple), checked by the child.
pub(crate) const ARGS_VAR: &str = "SHMRING_PROCESS_ARGS";

/// The exit code of a child whose entry point returned an error.
pub const EXIT_FAILED: i32 = 1;
/// The exit code of a child started for an entry point that its `main`
/// does not list in [`run_child`] (sysexits' `EX_CONFIG`).
pub const EXIT_UNREGISTERED: i32 = 78;
/// The exit code of a child that could not receive its arguments (an
/// object it could not open, say; sysexits' `EX_NOINPUT`).
pub const EXIT_BAD_ARGUMENTS: i32 = 66;

/// What an entry point returns; an error ends the child with
/// [`EXIT_FAILED`], its message on stderr.
pub type EntryResult = Result<(), Box<dyn Error>>;

/// An entry point: a function of this executable that a child process
/// runs, with the arguments `A` (`()` or a tuple, see [`Args`]).
///
/// Declare one with [`entry!`](crate::entry) from the function itself, so
/// its name cannot be mistyped; start a child with
/// [`Process::spawn`](super::Process::spawn); list it in `main`'s
/// [`run_child`] so the child finds it:
///
/// ```no_run
/// use shmring::process::{run_child, Entry, EntryResult};
/// use shmring::queue::Queue;
///
/// fn worker((jobs, scale): (Queue<u64>, u64)) -> EntryResult {
///     while let Ok(job) = jobs.get() {
///         println!("{}", job * scale);
///     }
///     Ok(())
/// }
/// static WORKER: Entry<(Queue<u64>, u64)> = shmring::entry!(worker);
///
/// fn main() {
///     run_child(&[&WORKER]);
///     // ... the parent's work
/// }
/// ```
pub struct Entry<A> {
    id: &'static str,
    run: fn(A) -> EntryResult,
}

impl<A: Args> Entry<A> {
    /// Used by [`entry!`](crate::entry), which derives `id` from the
    /// function's path; call that instead.
    #[doc(hidden)]
    pub const fn __from_fn(id: &'static str, run: fn(A) -> EntryResult) -> Entry<A> {
        Entry { id, run }
    }

    /// Its identity across processes: the module path and name of its
    /// function, and the line and column of its [`entry!`](crate::entry)
    /// (`my_crate::workers::resize@12:34`), so that entries made from
    /// local functions of one name in one module differ.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Whether this process was started (by [`Process`](super::Process))
    /// to run this entry point.
    pub fn is_current(&self) -> bool {
        std::env::var(ENTRY_VAR).is_ok_and(|id| id == self.id)
    }

    /// The child side without the dispatch: when this process was started
    /// to run this entry point, receives its arguments (opens the objects,
    /// decodes the values) and returns them; `None` otherwise. For a test
    /// harness that must return from a test function instead of exiting;
    /// [`run_child`] is the usual way.
    ///
    /// # Errors
    ///
    /// An argument could not be received (see [`ReceiveError`]).
    pub fn receive(&self) -> Option<Result<A, ReceiveError>> {
        if !self.is_current() {
            return None;
        }
        let expected = std::any::type_name::<A>();
        let found = std::env::var(ARGS_VAR).unwrap_or_default();
        if found != expected {
            return Some(Err(ReceiveError::Mismatch { expected, found }));
        }
        Some(<A as sealed::Args>::receive_all().map_err(ReceiveError::Argument))
    }
}

impl<A> fmt::Debug for Entry<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).finish()
    }
}

/// Declares an [`Entry`] from a function `fn(A) -> EntryResult`; its id
/// is the function's module path and name and where the macro is invoked
/// (line and column: two local functions `fn worker` in two functions of
/// one module are two entry points), so the parent and the child (the
/// same executable) cannot disagree on it:
///
/// ```
/// use shmring::process::{Entry, EntryResult};
///
/// fn resize((width, height): (u32, u32)) -> EntryResult {
///     println!("{width}x{height}");
///     Ok(())
/// }
/// static RESIZE: Entry<(u32, u32)> = shmring::entry!(resize);
/// assert!(RESIZE.id().contains("::resize@"));
/// ```
#[macro_export]
macro_rules! entry {
    ($function:path) => {
        $crate::process::Entry::__from_fn(
            ::core::concat!(
                ::core::module_path!(),
                "::",
                ::core::stringify!($function),
                "@",
                ::core::line!(),
                ":",
                ::core::column!()
            ),
            $function,
        )
    };
}

/// A child's side of an [`Entry`], whatever its arguments: what
/// [`run_child`] takes a list of. Implemented by every `Entry`.
pub trait ChildEntry: sealed_entry::Sealed {
    /// The entry's [`Entry::id`].
    fn id(&self) -> &'static str;
}

mod sealed_entry {
    pub trait Sealed {
        /// Receives the arguments and runs the function; the exit code and
        /// message when it did not succeed.
        fn run_here(&self) -> Result<(), (i32, String)>;
    }
}

impl<A: Args> ChildEntry for Entry<A> {
    fn id(&self) -> &'static str {
        self.id
    }
}

impl<A: Args> sealed_entry::Sealed for Entry<A> {
    fn run_here(&self) -> Result<(), (i32, String)> {
        let args = match self.receive() {
            Some(Ok(args)) => args,
            Some(Err(e)) => return Err((EXIT_BAD_ARGUMENTS, e.to_string())),
            None => {
                return Err((
                    EXIT_UNREGISTERED,
                    "this process was not started for this entry point".into(),
                ))
            }
        };
        (self.run)(args).map_err(|e| (EXIT_FAILED, e.to_string()))
    }
}

/// The child side, first thing in `main`: when this process was started
/// by [`Process`](super::Process), runs its entry point and exits; returns
/// at once otherwise.
///
/// The child exits with 0 when the entry point succeeds, and otherwise
/// with a message on stderr and
/// - [`EXIT_FAILED`] when it returned an error,
/// - [`EXIT_BAD_ARGUMENTS`] when its arguments could not be received (an
///   object it could not open, a value that does not decode),
/// - [`EXIT_UNREGISTERED`] when the entry point is not in `entries` (the
///   message names it: add it to the list).
///
/// A variable left in the environment by a parent's own start (a child
/// that starts a plain [`std::process::Command`] of the same program
/// passes its environment on) would make that program run the entry point
/// too: start children through [`Process`](super::Process), which sets or
/// clears the variable.
pub fn run_child(entries: &[&dyn ChildEntry]) {
    let Ok(id) = std::env::var(ENTRY_VAR) else {
        return;
    };
    if id.is_empty() {
        return;
    }
    let Some(entry) = entries.iter().find(|e| e.id() == id) else {
        let listed: Vec<&str> = entries.iter().map(|e| e.id()).collect();
        eprintln!(
            "shmring child: entry point {id} is not registered in this executable's \
             run_child list (listed: {listed:?}); add its static to the list"
        );
        std::process::exit(EXIT_UNREGISTERED);
    };
    match entry.run_here() {
        Ok(()) => std::process::exit(0),
        Err((code, message)) => {
            eprintln!("shmring child {id}: {message}");
            std::process::exit(code);
        }
    }
}

/// A child could not receive the arguments of its entry point.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The parent handed over other argument types than the entry takes:
    /// the environment was not made by [`Process`](super::Process) of this
    /// build of the executable.
    Mismatch {
        /// The entry's argument types.
        expected: &'static str,
        /// What the parent said it handed over (empty if nothing).
        found: String,
    },
    /// One argument could not be received: an object could not be opened,
    /// a value did not decode.
    Argument(ArgFailure),
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Mismatch { expected, found } => write!(
                f,
                "the parent handed over arguments {found:?}, the entry point takes {expected}"
            ),
            ReceiveError::Argument(failure) => write!(f, "cannot receive {failure}"),
        }
    }
}

impl Error for ReceiveError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ReceiveError::Mismatch { .. } => None,
            ReceiveError::Argument(failure) => Some(failure),
        }
    }
}
