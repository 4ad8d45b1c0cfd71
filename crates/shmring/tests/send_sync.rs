//! Which public types of `shmring` may cross threads, checked when this
//! file compiles: a type that loses (or gains) `Send` or `Sync` breaks the
//! build of this test, with the line that says why it was expected.
//!
//! Positive claims use a `const fn` with the bounds; negative claims (a
//! type deliberately *not* `Sync` or `Send`) use two blanket impls of one
//! trait that become ambiguous exactly when the type has the auto trait
//! (see [`not_sync!`]): a type that gained the trait fails there with
//! E0283, "type annotations needed". There are no `#[test]` functions:
//! compiling is the test (every claim was checked to fail when flipped).

#![allow(dead_code)]

use shmring::codec::CodecError;
use shmring::core::wait::Until;
use shmring::dict::{Dict, DictError};
use shmring::lock::{
    AcquireError, AcquireTimeoutError, Acquired, Lock, LockGuard, RLock, RLockGuard, ReleaseError,
    TryAcquireError,
};
use shmring::pipe::{
    ConnectError, Connection, End, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use shmring::process::{
    ArgFailure, Entry, Pool, Process, ProcessBuilder, ReceiveError, StartError,
};
use shmring::queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, Receiver, Sender,
    SimpleQueue, TryGetError, TryPutError,
};
use shmring::segment::{PeerInfo, SegmentInfo};
use shmring::{
    mpmc, spsc, Builder, CreateError, CreateOptions, FutexWaiter, OpenError, OpenOptions,
    RoleError, Segment, SegmentError,
};

const fn send_sync<T: ?Sized + Send + Sync>() {}
const fn send<T: ?Sized + Send>() {}

/// `Send + Sync`, each with its reason.
macro_rules! send_sync {
    ($($t:ty => $why:literal;)*) => {
        $( const _: (&str, ()) = ($why, send_sync::<$t>()); )*
    };
}

/// `Send` only, each with its reason (pair with [`not_sync!`]).
macro_rules! send_only {
    ($($t:ty => $why:literal;)*) => {
        $( const _: (&str, ()) = ($why, send::<$t>()); )*
    };
}

/// Ambiguous for a type with the auto trait: `AmbiguousIf*<()>` holds for
/// every type, `AmbiguousIf*<Has*>` only for one that is `Sync` (`Send`),
/// so naming the impl with an inferred parameter compiles only when one
/// impl applies, i.e. when the type lacks the trait.
trait AmbiguousIfSync<A> {
    const WITNESS: () = ();
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
struct HasSync;
impl<T: ?Sized + Sync> AmbiguousIfSync<HasSync> for T {}

trait AmbiguousIfSend<A> {
    const WITNESS: () = ();
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
struct HasSend;
impl<T: ?Sized + Send> AmbiguousIfSend<HasSend> for T {}

/// Not `Sync`, each with its reason.
macro_rules! not_sync {
    ($($t:ty => $why:literal;)*) => {
        $( const _: (&str, ()) = ($why, <$t as AmbiguousIfSync<_>>::WITNESS); )*
    };
}

/// Not `Send`, each with its reason.
macro_rules! not_send {
    ($($t:ty => $why:literal;)*) => {
        $( const _: (&str, ()) = ($why, <$t as AmbiguousIfSend<_>>::WITNESS); )*
    };
}

// ---- the queue family ---------------------------------------------------

send_sync! {
    Queue<u64> => "Python's Queue is shared by threads; concurrent puts serialise on the handle's producer ring";
    JoinableQueue<u64> => "a Queue plus a task counter in shared memory, updated atomically";
    SimpleQueue<u64> => "a Queue underneath, shared the same way";
    Sender<u64> => "sent to the thread that puts; a shared borrow cannot put (put takes &mut self)";
    Receiver<u64> => "sent to the thread that gets; a shared borrow cannot get (get takes &mut self)";
    Builder<Queue<u64>> => "plain settings";
    PutError<u64> => "holds the item back (Send + Sync for a Send + Sync item) and plain data";
    TryPutError<u64> => "as PutError";
    PutTimeoutError<u64> => "as PutError";
    GetError => "plain data: errors travel to whichever thread reports them";
    TryGetError => "as GetError";
    GetTimeoutError => "as GetError";
    shmring::queue::JoinError => "plain data";
    shmring::queue::TryJoinError => "plain data";
    shmring::queue::JoinTimeoutError => "plain data";
}

// ---- locks --------------------------------------------------------------

send_sync! {
    Lock => "a lock exists to be shared: its state is one futex word in shared memory";
    RLock => "shared by the threads that take it; its owner and count live in shared memory";
    LockGuard<'static> => "Python's Lock may be released by any thread, so the guard may move";
    Acquired => "plain data";
    AcquireError => "plain data";
    TryAcquireError => "plain data";
    AcquireTimeoutError => "plain data";
    ReleaseError => "plain data";
}

not_send! {
    RLockGuard<'static> => "an RLock level belongs to the thread that took it: only that thread may release it";
}
not_sync! {
    RLockGuard<'static> => "follows from !Send: a shared borrow elsewhere could only observe a level it cannot release";
}

// ---- pipes --------------------------------------------------------------

send_sync! {
    Pipe => "only a namespace for the constructors";
    Builder<Pipe> => "plain settings";
    ConnectError => "plain data";
    End => "plain data";
    SendError => "plain data";
    TrySendError => "as SendError";
    SendTimeoutError => "as SendError";
    RecvError => "plain data (a too-short buffer's message travels as bytes)";
    TryRecvError => "as RecvError";
    RecvTimeoutError => "as RecvError";
}

send_only! {
    Connection => "an end may move to the thread that uses it (an SPSC ring end has one user at a time)";
}
not_sync! {
    Connection => "polls take &self and keep half-received fragments in a RefCell: one thread per end";
}

// ---- dict, segments, rings ----------------------------------------------

send_sync! {
    Dict<u64, u64> => "its table lives in shared memory, changed under the dict's cross-process lock";
    Builder<Dict<u64, u64>> => "plain settings";
    DictError => "plain data";
    Segment => "a mapping and a descriptor: immutable after attach, the memory is shared by design";
    SegmentInfo => "a snapshot: plain data";
    PeerInfo => "a snapshot: plain data";
    CreateOptions => "plain data";
    OpenOptions => "plain data";
    SegmentError => "plain data";
    CreateError => "plain data";
    OpenError => "plain data";
    RoleError => "plain data";
    CodecError => "plain data";
    FutexWaiter => "a futex wait and wake are system calls on a shared word, from any thread";
    spsc::Ring => "a ring's segment: ends are claimed through it with atomics in shared memory";
    spsc::Producer => "sent to the producing thread; a shared borrow cannot push (push takes &mut self)";
    spsc::Consumer => "sent to the consuming thread; a shared borrow cannot pop (pop takes &mut self)";
    mpmc::ByteQueue => "a queue's segment: producer rings are claimed with atomics in shared memory";
    mpmc::Producer => "owns one producer ring; push takes &mut self";
    mpmc::Consumer => "sent to the consuming thread (clone it for another); pop takes &mut self";
    Until => "a deadline: plain data";
}

// ---- processes ----------------------------------------------------------

send_sync! {
    Process => "a child's pid and pipes: any thread may join or signal it (join takes &mut self)";
    ProcessBuilder => "a std Command being prepared: plain data until start";
    Pool => "its workers, as Process";
    Entry<()> => "a static: an id and a function pointer";
    StartError => "plain data and an io::Error";
    ReceiveError => "plain data";
    ArgFailure => "its source is Box<dyn Error + Send + Sync>";
    shmring::process::JoinError => "an io::Error";
    shmring::process::TryJoinError => "as JoinError";
    shmring::process::JoinTimeoutError => "as JoinError";
}
