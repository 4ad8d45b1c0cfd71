//! Pipes: Python's `multiprocessing.Pipe(duplex)` over shared memory.
//!
//! [`Pipe::new`] returns two [`Connection`]s. A duplex pipe is two SPSC byte
//! rings in one segment, one per direction; a simplex pipe
//! (`duplex = false`) is one ring, and, in Python's order, the **first**
//! connection only reads and the **second** only writes. Each end holds the
//! producer role of its outgoing ring and the consumer role of its incoming
//! one, so a send or recv that neither blocks nor wakes a sleeper is one
//! ring operation and makes no system call.
//!
//! ```
//! use shmring::pipe::{Pipe, RecvError};
//!
//! let (mut a, mut b) = Pipe::new(true)?;
//! a.send(&"ping".to_string())?;
//! assert_eq!(b.recv::<String>()?, "ping");
//! b.send_bytes(b"pong!", 0, Some(4))?;
//! assert_eq!(a.recv_bytes(None)?, b"pong");
//! drop(b);
//! a.wait_readable()?; // EOF is readable
//! assert!(a.poll()?);
//! assert_eq!(a.recv_bytes(None), Err(RecvError::Eof));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Coming from Python
//!
//! | Python | shmring |
//! |---|---|
//! | `Pipe(duplex=True)` | [`Pipe::new(true)`](Pipe::new) |
//! | `Process(target=f, args=(conn,))` | [`Process::spawn(&F, (&conn,))`](crate::process::Process::spawn), child: `fn f((conn,): (Connection,))` |
//! | `conn.send(obj)` / `conn.recv()` | [`send`](Connection::send) / [`recv`](Connection::recv) with any [`Message`](crate::codec::Message) |
//! | `send_bytes(buf, offset, size)` | [`send_bytes(buf, offset, Some(size))`](Connection::send_bytes) |
//! | `recv_bytes(maxlength)` | [`recv_bytes(Some(maxlength))`](Connection::recv_bytes) |
//! | `recv_bytes_into(buf, offset)` | [`recv_bytes_into(buf, offset)`](Connection::recv_bytes_into) |
//! | `poll()` / `poll(t)` / `poll(None)` | [`poll()`](Connection::poll) / [`poll_timeout(t)`](Connection::poll_timeout) (or [`poll_deadline(instant)`](Connection::poll_deadline)) / [`wait_readable()`](Connection::wait_readable) |
//! | `if conn.poll(): conn.recv()` | [`try_recv`](Connection::try_recv) / [`try_recv_bytes(maxlength)`](Connection::try_recv_bytes) / [`try_recv_bytes_into`](Connection::try_recv_bytes_into): [`TryRecvError::Empty`] until a whole message is there (no Python counterpart) |
//! | `if conn.poll(t): conn.recv()` | [`recv_timeout(t)`](Connection::recv_timeout), [`recv_deadline(instant)`](Connection::recv_deadline), and the same for `recv_bytes*`: [`RecvTimeoutError::Timeout`] (no Python counterpart) |
//! | (no non-blocking send) | [`try_send`](Connection::try_send) / [`try_send_bytes`](Connection::try_send_bytes): [`TrySendError::Full`], nothing written; [`send_timeout(obj, t)`](Connection::send_timeout), [`send_deadline`](Connection::send_deadline), `send_bytes_timeout`, `send_bytes_deadline`: [`SendTimeoutError::Timeout`] |
//! | `close()`, `closed`, `readable`, `writable` | [`close`](Connection::close), [`closed`](Connection::closed), [`readable`](Connection::readable), [`writable`](Connection::writable); `Drop` closes |
//! | `EOFError` | [`RecvError::Eof`] |
//! | `OSError("got end of file during message")` | [`RecvError::TruncatedMessage`] |
//! | `BrokenPipeError` | [`SendError::BrokenPipe`] |
//! | `OSError("handle is closed")` | [`SendError::HandleClosed`], [`RecvError::HandleClosed`] (also after the end was handed to a child) |
//! | `OSError("connection is read-only")` / `("connection is write-only")` | [`SendError::ReadOnly`] / [`RecvError::WriteOnly`] |
//! | `OSError("bad message length")` (`recv_bytes(maxlength)`) | [`RecvError::BadMessageLength`] |
//! | `BufferTooShort(message)` (`recv_bytes_into`) | [`RecvError::BufferTooShort`], carrying the whole message |
//! | `ValueError("offset too large")` (`recv_bytes_into`) | [`RecvError::OffsetTooLarge`] |
//! | `ValueError("buffer length < offset")` / `("buffer length < offset + size")` (`send_bytes`) | [`SendError::OffsetBeyondBuffer`] / [`SendError::SizeBeyondBuffer`] |
//! | pickling / unpickling errors | [`SendError::Encode`] / [`RecvError::Decode`] |
//! | (no counterpart: Python's send streams) | [`SendError::TooLarge`]: a message the all-or-nothing sends can never send (see below) |
//!
//! Negative offsets, sizes and lengths cannot be expressed (`usize`), so
//! Python's `"offset is negative"`, `"size is negative"`, `"negative
//! maxlength"` and `"negative offset"` have no counterpart.
//!
//! # Handing an end to a child: the ownership rule
//!
//! In Python the parent passes `child_conn` to a `Process` and then closes
//! its own copy; the pipe stays open because the child holds another
//! descriptor. Here closing sets flags in shared memory that the other end
//! sees as EOF, so the rule is:
//!
//! * **Sharing transfers the end.** [`Connection::share_with_child`] (and
//!   handing it to [`Process::new`](crate::process::Process::new) as an
//!   argument, which calls it) gives up this process's roles on the
//!   end and marks the handle *transferred*: from then on every operation on
//!   it fails with [`SendError::HandleClosed`], and dropping or closing it
//!   signals nothing. The child claims the end with
//!   [`Connection::open_inherited`]. Drop the parent's copy whenever you like
//!   (Python's `child_conn.close()` after `start()`).
//! * **Closing or dropping an end that was not handed over signals EOF**: the
//!   other end reads what was already sent, then gets [`RecvError::Eof`];
//!   its sends fail with [`SendError::BrokenPipe`].
//! * An end is used by one process at a time (each ring is single-producer
//!   single-consumer). Python's "several processes read one end behind a
//!   lock" pattern is a [`Queue`](crate::queue) here; claiming an end whose
//!   holder is alive fails with [`RoleError::RoleTaken`].
//!
//! # Crash behaviour
//!
//! Each end's roles are stored with its peer token, so when the process
//! holding an end dies (SIGKILL included, also while it is a zombie), the
//! other end notices within the liveness period (100 ms per sleep slice): a
//! blocked or later `recv` drains what was sent, then reports
//! [`RecvError::Eof`] ([`RecvError::TruncatedMessage`] when it died in the
//! middle of a fragmented message); `poll` returns `true`; a `send` that has
//! to wait for room reports [`SendError::BrokenPipe`]. Once noticed, the
//! pipe stays broken: an end claimed again sees the end (see
//! [`Pipe::connection`]). Before anyone noticed, another process may take
//! the dead end over ([`Connection::open`]) and go on: its reader starts at
//! the next whole message, and a reader that was in the middle of the dead
//! writer's message gets [`RecvError::TruncatedMessage`], then the new
//! writer's messages (see [Framing](#framing)). A takeover and the other
//! end's notice of the death, at the same moment, are decided by one
//! compare-and-swap on the end's role word: either the new holder goes on
//! with both ends open, or it finds the pipe closed from its first call;
//! never closed under it after it started. A `send` that finds
//! room does not check liveness (that would cost a system call per message),
//! so a writer whose reader died learns it when the ring fills up. An end
//! transferred to a child whose process dies *before* it opened the end
//! leaves the role unclaimed, which is "not yet attached", not "gone": the
//! other end then waits forever, so use `poll` with a timeout (or
//! [`Process::is_alive`](crate::process::Process::is_alive)) if the child may
//! fail that early.
//!
//! # Errors
//!
//! One family per operation, in crossbeam's shape. The blocking forms
//! return [`SendError`] / [`RecvError`], which hold only what waiting
//! longer would not change (the other end gone, this handle closed, a bad
//! argument, an undecodable message, corrupted memory): they cannot return
//! `Full`, `Empty` or `Timeout`. The `try_` forms return [`TrySendError`]
//! (`Full`, or `Send(SendError)`) / [`TryRecvError`] (`Empty`, or
//! `Recv(RecvError)`); the `_timeout` and `_deadline` forms return
//! [`SendTimeoutError`] / [`RecvTimeoutError`] (`Timeout`, or the same
//! wrapped error). Every poll returns [`RecvError`] (`false` is its
//! "nothing yet"). A send borrows its message, so no send error carries it
//! back (no type parameter).
//!
//! # Non-blocking and timed calls
//!
//! Python's connection only blocks (`poll` bounds the wait for the first
//! byte). The `try_*`, `*_timeout` and `*_deadline` calls are ours, built so
//! that giving up never corrupts the stream:
//!
//! * **Sends are all or nothing.** [`try_send`](Connection::try_send),
//!   [`send_timeout`](Connection::send_timeout) and
//!   [`send_deadline`](Connection::send_deadline) (and their `send_bytes`
//!   forms) write a message only when every one of its fragments fits in
//!   the ring's free space, all at once (exactly the room its records
//!   take from where the ring's tail stands, the padding of a wrap on the
//!   way included); otherwise they write nothing and report
//!   [`TrySendError::Full`] or [`SendTimeoutError::Timeout`]. A message
//!   whose records, plus the padding a wrap may cost, may exceed the whole
//!   ring (longer than
//!   [`max_whole_message`](Connection::max_whole_message): about three
//!   quarters of `ring_bytes` with the default fragment, at most
//!   `ring_bytes / 2 - 8` with fragments of half the ring or more) can
//!   never be sent that way: [`SendError::TooLarge`], at once; only the
//!   blocking [`send`](Connection::send), which streams, takes it. Any
//!   message up to that length goes into an empty ring, wherever the
//!   ring's positions stand; with the default shape, three messages of a
//!   quarter of the ring (one record each) are in flight at once.
//! * **Receives keep what they took.** A long message is taken off the ring
//!   fragment by fragment (the writer needs the room), each copied straight
//!   into where the message goes (the `Vec` returned, the caller's buffer
//!   of `recv_bytes_into`); when [`try_recv`](Connection::try_recv) or
//!   [`recv_timeout`](Connection::recv_timeout) gives up in the middle of
//!   one, what it took stays in the connection and the next receive of any
//!   kind continues the message. [`TryRecvError::Empty`] means "no whole
//!   message yet", never end of file.
//! * **A timed receive ends at its deadline**, even while the rest of a
//!   long message (or the rest of one cut off, which a new reader skips)
//!   keeps arriving: once a `recv_timeout` or `poll_timeout` has taken a
//!   ring's worth of records, it looks at the clock before each further
//!   one. Whatever is in the ring when the call begins is still taken,
//!   even with a zero timeout.
//! * **No system call** unless a sleeper must be woken, except one liveness
//!   probe of the other end per liveness slice (100 ms) while a try finds
//!   the ring empty or full: that is how a try notices that the other
//!   process died ([`RecvError::Eof`], [`SendError::BrokenPipe`]), within
//!   a slice and 16 tries (one try in 16 that finds nothing reads the
//!   clock). [`poll`](Connection::poll) checks the writer's liveness each
//!   time it finds nothing.
//!
//! ```
//! use shmring::pipe::{Pipe, RecvError, TryRecvError};
//!
//! let (mut a, mut b) = Pipe::new(true)?;
//! assert_eq!(b.try_recv::<u32>(), Err(TryRecvError::Empty));
//! a.try_send(&7u32)?;
//! assert_eq!(b.try_recv::<u32>()?, 7);
//! drop(a);
//! assert_eq!(b.try_recv::<u32>(), Err(TryRecvError::Recv(RecvError::Eof)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Framing
//!
//! A message of at most the ring's maximum record (`fragment_bytes`) is
//! one record, unchanged: no header of ours, so the payload keeps the
//! ring's alignment and the hot path is one copy in and one copy out. A
//! longer message is split into records of `fragment_bytes` bytes, the
//! last one shorter or not (a message of exactly `k` fragments is `k`
//! records), and the single reader reassembles while the writer is still
//! writing: any message size works with any ring size.
//!
//! Where a message begins and ends is in shared memory, in each record's
//! tag (the ring's framing marks, see [`shmring_core::record`]; they cost
//! nothing on the hot path, where a message is one unmarked record): the
//! first record of a message is not marked as continuing one and every
//! later one is (CONT), and every record but the last is marked "more
//! follows" (MORE). The length of a record says nothing: a full-length
//! record may end a message and a short one may not. So a reader never
//! depends on what another process remembered:
//!
//! * a record marked as continuing while this reader has no message in
//!   progress is the rest of a message whose beginning it never saw (the
//!   previous reader of this end was killed, or handed the end over, or
//!   closed it, in the middle of that message): it is skipped, so a new
//!   reader starts at the next message;
//! * a record not marked as continuing while a message is in progress
//!   begins another message: the writer of the first one died in its
//!   middle and a new writer took the end over. The part received is
//!   dropped and the receive reports [`RecvError::TruncatedMessage`] (as at
//!   end of file: Python's "got end of file during message"); the next
//!   receive returns the new writer's message.
//!
//! Either way a receive returns only whole messages, each written by one
//! writer (DESIGN.md, "Handover"). The message cut off is lost: the one a
//! reader was in the middle of when it went, or the one a writer was in the
//! middle of when it died.
//!
//! (Segments of [layout version](crate::segment::LAYOUT_VERSION) 2 and
//! before said "more follows" with a record of the maximum length, and
//! ended a message of a multiple of `fragment_bytes` with an empty record;
//! a build of this framing refuses to open them.)

mod connection;
pub(crate) mod descriptor;
use descriptor::PipeDescriptor;
mod ends;
mod error;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shmring_core::spsc;
use shmring_core::Corrupted;

use crate::descriptor::{Descriptor, Region};
use crate::object::{
    named, Builder, CreateError, OpenError, PipeSettings, RoleError, SegmentObject,
};
use crate::segment::Segment;

pub use connection::Connection;
#[cfg(feature = "tokio")]
pub use connection::{AsyncConnection, ConnectionSink, ConnectionStream};
pub use ends::Arrived;
pub use error::{
    ConnectError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};

/// Which connection of a pipe: Python's `conn1` or `conn2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// `conn1`: reads only, in a simplex pipe.
    First,
    /// `conn2`: writes only, in a simplex pipe.
    Second,
}

impl End {
    fn index(self) -> usize {
        match self {
            End::First => 0,
            End::Second => 1,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            End::First => "first",
            End::Second => "second",
        }
    }

    fn parse(s: &str) -> Option<End> {
        match s {
            "first" => Some(End::First),
            "second" => Some(End::Second),
            _ => None,
        }
    }

    /// `(incoming ring, outgoing ring)` of this end. Ring 0 carries data to
    /// the first end; ring 1 (duplex only) carries data to the second.
    fn rings(self, duplex: bool) -> (Option<usize>, Option<usize>) {
        match (duplex, self) {
            (true, End::First) => (Some(0), Some(1)),
            (true, End::Second) => (Some(1), Some(0)),
            (false, End::First) => (Some(0), None),
            (false, End::Second) => (None, Some(0)),
        }
    }
}

/// The state every end of one pipe in this process shares.
#[derive(Debug)]
struct Shared {
    segment: Arc<Segment>,
    duplex: bool,
    /// Ring 0, and ring 1 for a duplex pipe.
    rings: Vec<spsc::Ring>,
    /// Ends handed out by this handle (process-local): the role words hold
    /// the segment's token, which every end made from this handle shares, so
    /// they cannot tell two claims from this handle apart.
    claimed: [AtomicBool; 2],
}

/// A named or anonymous segment holding a pipe; hands out its two ends.
///
/// Most programs never see one: [`Pipe::new`] returns the two connections of
/// an anonymous pipe at once. Named pipes let unrelated processes meet:
/// `Pipe::builder().create(name)` in one, [`Connection::open`] in another.
///
/// # Examples
///
/// ```
/// use shmring::pipe::{Connection, End, Pipe};
///
/// let name = format!("/doc-pipe-{}", std::process::id());
/// let pipe = Pipe::builder().duplex(false).create(&name)?;
/// let mut reader = pipe.connection(End::First)?; // a simplex pipe's first end reads
/// let mut writer = Connection::open(&name, End::Second)?; // as another process would
/// writer.send(&42u32)?;
/// assert_eq!(reader.recv::<u32>()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pipe {
    shared: Arc<Shared>,
}

impl SegmentObject for Pipe {
    type Descriptor = PipeDescriptor;
    type Config = PipeSettings;

    fn descriptor(settings: &PipeSettings) -> Result<PipeDescriptor, CreateError> {
        PipeDescriptor::new(settings.duplex, settings.ring()?)
            .map_err(|e| named(e, "fragment_bytes"))
    }

    fn attach(segment: Arc<Segment>) -> Result<Pipe, OpenError> {
        let descriptor = PipeDescriptor::decode(&segment.params())?;
        let rings = descriptor.rings(&Region::of_segment(&segment))?;
        Ok(Pipe {
            shared: Arc::new(Shared {
                segment,
                duplex: descriptor.duplex,
                rings,
                claimed: [AtomicBool::new(false), AtomicBool::new(false)],
            }),
        })
    }
}

impl Pipe {
    /// Python's `Pipe(duplex)`: an anonymous pipe of the default size, as
    /// `(conn1, conn2)`. With `duplex = false`, `conn1` only reads and
    /// `conn2` only writes. [`Pipe::builder`] sets the ring sizes
    /// ([`pair`](Builder::pair)) or a name.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor limit).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(duplex: bool) -> Result<(Connection, Connection), CreateError> {
        Pipe::builder().duplex(duplex).pair()
    }

    /// A [`Builder`] for a pipe: its direction and ring sizes, the
    /// segment's options, then `pair()` (an anonymous pipe's two ends),
    /// `create(name)`, `anonymous()`, `open(name)`. Take the ends of a named
    /// pipe with [`Pipe::connection`] here, or with [`Connection::open`] in
    /// other processes; keep this handle (or an end) alive until they have
    /// opened it, or the name may be gone (see
    /// [`UnlinkPolicy`](crate::UnlinkPolicy)).
    pub fn builder() -> Builder<Pipe> {
        Builder::default()
    }

    /// Opens a named pipe another process created, with the default open
    /// options (`builder().open(name)` sets them).
    ///
    /// # Errors
    ///
    /// [`OpenError::Segment`] (not found, another kind, another owner, …)
    /// or [`OpenError::Corrupted`].
    pub fn open(name: &str) -> Result<Pipe, OpenError> {
        Pipe::builder().open(name)
    }

    /// Claims one end of the pipe for this process.
    ///
    /// An end that was closed (here or elsewhere), or whose process died
    /// after the other end noticed, stays closed: the connection then
    /// receives the whole messages left in the ring, then
    /// [`RecvError::Eof`], and its sends fail with
    /// [`SendError::BrokenPipe`]. That includes an end a connection of this
    /// handle closed.
    ///
    /// # Errors
    ///
    /// [`RoleError::RoleTaken`] when a connection this handle gave out
    /// for that end is still open, or a live peer holds it;
    /// [`RoleError::Corrupted`] when its ring is inconsistent.
    pub fn connection(&self, end: End) -> Result<Connection, RoleError> {
        Connection::claim(self.shared.clone(), end)
    }

    /// Whether both ends can send and receive.
    pub fn duplex(&self) -> bool {
        self.shared.duplex
    }

    /// The segment underneath (name, peers, counters).
    pub fn segment(&self) -> &Segment {
        &self.shared.segment
    }
}

impl Builder<Pipe> {
    /// Whether both ends send and receive (Python's `duplex`, default
    /// `true`). With `false`, the [first](End::First) end only reads and the
    /// [second](End::Second) only writes.
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.config.duplex = duplex;
        self
    }

    /// Bytes of each direction's ring: a power of two, at least 64 (default
    /// 256 KiB, about what a Linux socket pair buffers).
    pub fn ring_bytes(mut self, bytes: u64) -> Self {
        self.config.ring_bytes = bytes;
        self
    }

    /// Largest record; longer messages are split into fragments of this
    /// size (a message of exactly this size is one record). At least 8, and
    /// its record must fit in the ring; by default a quarter of
    /// `ring_bytes`, so the writer fills one fragment while the reader
    /// copies out another. Above about half the ring, the all-or-nothing
    /// sends take less than one fragment (see
    /// [`Connection::max_whole_message`]).
    pub fn fragment_bytes(mut self, bytes: u64) -> Self {
        self.config.fragment_bytes = Some(bytes);
        self
    }

    /// Creates an anonymous pipe and returns its two ends, as
    /// [`Pipe::new`] does.
    ///
    /// # Errors
    ///
    /// An invalid setting ([`CreateError::InvalidOption`]), or the segment
    /// could not be created.
    pub fn pair(&self) -> Result<(Connection, Connection), CreateError> {
        let pipe = self.anonymous()?;
        // Nobody else can reach a pipe made just now: a claim can fail only
        // on memory that is not what we wrote.
        let fresh = |e: RoleError| match e {
            RoleError::Corrupted(c) => CreateError::Corrupted(c),
            _ => CreateError::Corrupted(Corrupted {
                what: "end of a new pipe already claimed",
                value: 0,
            }),
        };
        let first = pipe.connection(End::First).map_err(fresh)?;
        Ok((first, pipe.connection(End::Second).map_err(fresh)?))
    }
}

/// The environment variable that tells a child which end it inherited.
fn end_var(env_var: &str) -> String {
    format!("{env_var}_PIPE_END")
}
