//! Python's `multiprocessing.Lock` and `RLock`, robust against the death of
//! their holder.
//!
//! A lock is a segment holding one word that names the holder by its *peer
//! token* (see [`Segment::peer_token`]) and a wait word
//! (the protocol is [`shmring_core::lock`]). An uncontended acquire or
//! release is one CAS on that word (a [`Lock`] also bumps a counter of its
//! handle, see [`LockGuard`]) and no system call; a contended acquire spins
//! a few microseconds, then sleeps on a futex.
//!
//! Every acquire comes in the four forms of every shmring facade, each
//! returning a guard that releases on drop: [`acquire`](Lock::acquire)
//! (waits as long as it takes), [`try_acquire`](Lock::try_acquire) (one
//! try), [`acquire_timeout`](Lock::acquire_timeout) and
//! [`acquire_deadline`](Lock::acquire_deadline).
//!
//! ```
//! use shmring::lock::{Lock, ReleaseError, TryAcquireError};
//!
//! let lock = Lock::new()?;
//! {
//!     let guard = lock.acquire()?;          // `with lock:`
//!     assert!(!guard.owner_died());
//!     assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock))); // False
//! }
//! // Python's unguarded `lock.acquire()` ... `lock.release()`:
//! let acquired = lock.acquire()?.leak();
//! assert!(!acquired.owner_died());
//! assert!(lock.is_locked());
//! lock.release()?;
//! assert_eq!(lock.release(), Err(ReleaseError::NotHeld)); // ValueError in Python
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Coming from Python
//!
//! | Python | shmring |
//! |---|---|
//! | `with lock:` | `let _guard = lock.acquire()?;` |
//! | `lock.acquire()` → `True` | `lock.acquire()?.leak()` (held until `release`) |
//! | `lock.acquire(False)` → `False` | [`try_acquire`](Lock::try_acquire) → `Err(TryAcquireError::WouldBlock)` |
//! | `lock.acquire(timeout=t)` → `False` | [`acquire_timeout`](Lock::acquire_timeout) → `Err(AcquireTimeoutError::Timeout)` |
//! | `release()` unheld → `ValueError` | `Err(ReleaseError::NotHeld)` |
//! | `RLock.release()` by non-owner → `AssertionError` | `Err(ReleaseError::NotOwner)` |
//!
//! Python's `acquire(block, timeout)` is `try_acquire` when `block` is
//! false (the timeout is ignored, as in Python), `acquire` without a
//! timeout, `acquire_timeout` with one; a binding that wants the lock to
//! stay held after the call [`leak`](LockGuard::leak)s the guard.
//! "Not acquired" is an `Err` rather than `Ok(false)`, so `?` cannot
//! silently carry on without the lock. A negative timeout cannot be written
//! in Rust; a zero one means "try once", as in Python.
//!
//! # Crash behaviour
//!
//! A holder that dies (or drops its last handle, detaching from the
//! segment) leaves the lock *held by a dead token*. A `try` acquire notices
//! at once; a blocked acquirer notices within one liveness slice (100 ms by
//! default); the taker still gets its guard, and the guard says so
//! ([`LockGuard::owner_died`], [`Acquired::OwnerDied`] from
//! [`LockGuard::leak`]): what the lock protected may be half-updated. This
//! is reported on the guard, not as an error, because the lock *was*
//! acquired (as `pthread_mutex_lock`'s `EOWNERDEAD`): an `Err` would make `?`
//! drop a lock that is held. Exactly one taker wins. A waiter killed while
//! asleep leaves the wait word's sleeper count one too high, which costs
//! later releases one futex wake each, never a lost wake-up.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64 as LocalU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring_core::lock::{ReleaseError as CoreReleaseError, FLAVOR_LOCK, FLAVOR_RLOCK};
use shmring_core::wait::{SharedHistory, TimedOut, Until, WaitPolicy};
use shmring_core::Corrupted;

pub use shmring_core::lock::{Acquired, LockShared};

use crate::descriptor::{Descriptor, Region};
use crate::object::{impl_segment_constructors, CreateError, OpenError, SegmentObject};
use crate::segment::{PeerCounter, Segment};
use crate::sys::until_instant;
use descriptor::LockDescriptor;

#[cfg(feature = "tokio")]
mod aio;
pub(crate) mod descriptor;

#[cfg(feature = "tokio")]
pub use aio::AsyncLock;

/// Why a blocking [`acquire`](Lock::acquire) failed: nothing can, today.
///
/// A lock word accepts any value (a garbage holder is taken over like a
/// dead one), so no state of the segment ends a wait with an error, and a
/// blocking acquire only returns with the lock. The type has no values;
/// it exists so that the four forms have the shape of every other
/// facade's, and leaves room (it is `non_exhaustive`) for an error a later
/// version may add, such as a closed lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AcquireError {}

impl fmt::Display for AcquireError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for AcquireError {}

/// Why a [`try_acquire`](Lock::try_acquire) did not get the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TryAcquireError {
    /// A live holder has the lock (Python's `acquire(False)` returns
    /// `False`).
    WouldBlock,
    /// What ends a blocking acquire too.
    Acquire(AcquireError),
}

impl TryAcquireError {
    /// Whether the lock was held by a live holder.
    pub fn is_would_block(&self) -> bool {
        matches!(self, TryAcquireError::WouldBlock)
    }
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("lock is held by another holder"),
            TryAcquireError::Acquire(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for TryAcquireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryAcquireError::WouldBlock => None,
            TryAcquireError::Acquire(e) => Some(e),
        }
    }
}

impl From<AcquireError> for TryAcquireError {
    fn from(e: AcquireError) -> Self {
        TryAcquireError::Acquire(e)
    }
}

/// Why an [`acquire_timeout`](Lock::acquire_timeout) or
/// [`acquire_deadline`](Lock::acquire_deadline) did not get the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AcquireTimeoutError {
    /// The time ran out with the lock held by a live holder (Python's
    /// `acquire(timeout=t)` returns `False`).
    Timeout,
    /// What ends a blocking acquire too.
    Acquire(AcquireError),
}

impl AcquireTimeoutError {
    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, AcquireTimeoutError::Timeout)
    }
}

impl fmt::Display for AcquireTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireTimeoutError::Timeout => f.write_str("timed out waiting for the lock"),
            AcquireTimeoutError::Acquire(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AcquireTimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireTimeoutError::Timeout => None,
            AcquireTimeoutError::Acquire(e) => Some(e),
        }
    }
}

impl From<AcquireError> for AcquireTimeoutError {
    fn from(e: AcquireError) -> Self {
        AcquireTimeoutError::Acquire(e)
    }
}

/// Why a [`release`](Lock::release) did nothing (Python's exceptions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleaseError {
    /// Released while not held (Python's `ValueError`).
    NotHeld,
    /// An `RLock` released by a thread that does not hold it (Python's
    /// `AssertionError`).
    NotOwner,
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseError::NotHeld => "semaphore or lock released too many times",
            ReleaseError::NotOwner => "attempt to release recursive lock not owned by thread",
        })
    }
}

impl std::error::Error for ReleaseError {}

/// The blocking form from the private `acquire_until(Until::Never)`: a
/// would-block answer (which `Until::Never` never gives) just tries again,
/// so there is no impossible arm to panic on.
fn until_acquired<G>(
    mut acquire_until: impl FnMut() -> Result<G, TryAcquireError>,
) -> Result<G, AcquireError> {
    loop {
        match acquire_until() {
            Ok(guard) => return Ok(guard),
            Err(TryAcquireError::WouldBlock) => continue,
            Err(TryAcquireError::Acquire(e)) => return Err(e),
        }
    }
}

/// The timed forms' error from `acquire_until`'s: not acquired in time.
fn timed<G>(got: Result<G, TryAcquireError>) -> Result<G, AcquireTimeoutError> {
    got.map_err(|e| match e {
        TryAcquireError::WouldBlock => AcquireTimeoutError::Timeout,
        TryAcquireError::Acquire(e) => AcquireTimeoutError::Acquire(e),
    })
}

/// Checks that `segment` holds a lock of `flavor`: its descriptor says so,
/// and the lock's own state agrees (and fits the region).
fn check(segment: &Arc<Segment>, flavor: u64) -> Result<(), OpenError> {
    let descriptor = LockDescriptor::decode(&segment.params())?;
    if descriptor.flavor != flavor {
        return Err(Corrupted {
            what: "lock flavor (Lock vs RLock)",
            value: descriptor.flavor,
        }
        .into());
    }
    descriptor.shared(&Region::of_segment(segment))?;
    Ok(())
}

fn shared(segment: &Segment) -> &LockShared {
    // The object region is page-aligned and lives as long as `segment`;
    // LockShared is all atomics (valid for any bytes and concurrent writers).
    // SAFETY: aligned, and at least size_of::<LockShared>() long (checked by
    // `check` before any handle exists), for the lifetime of `segment`.
    unsafe { segment.object_ptr().cast::<LockShared>().as_ref() }
}

/// The methods [`Lock`] and [`RLock`] share.
macro_rules! common_methods {
    ($ty:ident) => {
        impl $ty {
            /// How many times a dead holder's lock was taken over (all peers).
            pub fn recoveries(&self) -> u64 {
                shared(&self.segment).recoveries()
            }

            /// Sets the spin budget and liveness period of blocking acquires.
            pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
                self.policy = policy;
            }

            /// Whether anyone holds it (a snapshot; a dead holder still
            /// counts).
            pub fn is_locked(&self) -> bool {
                shared(&self.segment).owner() != 0
            }

            /// The segment underneath (name, peers).
            pub fn segment(&self) -> &Segment {
                &self.segment
            }
        }
    };
}

/// Acquires for this attachment, waiting as long as `until` allows. With
/// `stamps`, each success takes the next stamp of that counter right after
/// the CAS that won the lock, and returns it (see [`LockGuard`]); without,
/// the stamp is 0. A take-over of a dead holder's lock and a timeout are
/// counted in this peer's row.
fn acquire(
    segment: &Segment,
    policy: &WaitPolicy,
    history: &SharedHistory,
    until: Until,
    stamps: Option<&LocalU64>,
) -> Result<(Acquired, u64), TimedOut> {
    let token = segment.peer_token();
    let mut alive = |t| segment.is_peer_alive(t);
    let mut stamp = 0;
    let mut attempt = |lock: &LockShared, probe: bool| {
        if !probe && lock.owner() != 0 {
            return None; // held: no need to try the CAS to learn that
        }
        let got = lock.try_acquire_with(token, probe, &mut alive)?;
        if let Some(stamps) = stamps {
            stamp = next_stamp(stamps);
        }
        Some(got)
    };
    let result = history.with(|history| {
        shared(segment).acquire_by(&segment.waiter(), until, policy, history, &mut attempt)
    });
    match result {
        Ok(Acquired::OwnerDied) => segment.add_to_counter(PeerCounter::Recovered, 1),
        // A try that finds the lock held is an answer, not a timeout.
        Err(TimedOut) if !until.is_now() => segment.add_to_counter(PeerCounter::Timeouts, 1),
        _ => {}
    }
    result.map(|got| (got, stamp))
}

/// Moves a handle's stamp counter on and returns the new stamp. A plain
/// load and store, no locked instruction: used correctly, only the holder
/// of the lock writes it (right after winning the lock, or right before
/// releasing it), so the lock itself serialises the writers, and the
/// release and acquire of the lock word order each write before the next
/// holder's (hence Relaxed on both sides). Only a `release` racing another
/// thread's acquire or guard drop, a race of the caller's making (see
/// [`LockGuard`]), can overlap two writers.
fn next_stamp(stamps: &LocalU64) -> u64 {
    // ORDERING: Relaxed — ordered by the lock word's Release/Acquire (see
    // above); partner: this same load/store in the next holder.
    let stamp = stamps.load(Relaxed).wrapping_add(1);
    // ORDERING: Relaxed — as above.
    stamps.store(stamp, Relaxed);
    stamp
}

fn release_owned(segment: &Segment) -> Result<(), ReleaseError> {
    match shared(segment).release_owned(segment.peer_token(), &segment.waiter()) {
        Ok(()) => Ok(()),
        Err(CoreReleaseError::NotHeld) => Err(ReleaseError::NotHeld),
        Err(CoreReleaseError::NotOwner { .. }) => Err(ReleaseError::NotOwner),
    }
}

/// A non-recursive lock shared between processes (Python's
/// `multiprocessing.Lock`). Clones share one attachment.
///
/// # Crash behaviour
///
/// See the [module docs](self): a dead holder's lock is taken over by the
/// next acquirer, whose guard says so ([`LockGuard::owner_died`]).
///
/// # Examples
///
/// ```
/// use shmring::lock::{Lock, TryAcquireError};
///
/// let lock = Lock::new()?;
/// {
///     let guard = lock.acquire()?; // Python's `with lock:`
///     assert!(!guard.owner_died());
///     assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
/// }
/// lock.acquire()?.leak(); // Python's `lock.acquire()` ...
/// lock.release()?; // ... and `lock.release()`
/// assert!(lock.release().is_err(), "releasing an unlocked lock");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    segment: Arc<Segment>,
    policy: WaitPolicy,
    /// What this attachment's waits learned (clones share it).
    history: Arc<SharedHistory>,
    /// The stamp of this attachment's latest acquisition, or of a release
    /// made through it; shared by clones (see [`LockGuard`]).
    stamps: Arc<LocalU64>,
}

impl SegmentObject for Lock {
    type Descriptor = LockDescriptor;
    type Config = ();

    fn descriptor(_: &()) -> Result<LockDescriptor, CreateError> {
        Ok(LockDescriptor {
            flavor: FLAVOR_LOCK,
        })
    }

    fn attach(segment: Arc<Segment>) -> Result<Lock, OpenError> {
        check(&segment, FLAVOR_LOCK)?;
        Ok(Lock {
            segment,
            policy: WaitPolicy::default(),
            history: Arc::default(),
            stamps: Arc::default(),
        })
    }
}

impl_segment_constructors!(Lock, "lock");

impl Lock {
    /// Python's `Lock()`: a new anonymous lock, to hand to children.
    ///
    /// # Errors
    ///
    /// The segment could not be created.
    pub fn new() -> Result<Lock, CreateError> {
        Lock::builder().anonymous()
    }

    /// Takes the lock, waiting as long as it takes, and returns a guard
    /// that releases it on drop (Python's `with lock:`; `acquire()` when the
    /// guard is [`leak`](LockGuard::leak)ed). A held lock is never
    /// re-entered, not even by its own holder: that waits forever, as in
    /// Python.
    ///
    /// # Blocking
    ///
    /// Spins (5 µs at first; up to 200 µs when this handle's recent waits
    /// showed that a spin that long would have caught the release: see
    /// [`WaitPolicy`]), then sleeps on a futex until the lock is released
    /// or its holder is found dead (checked every 100 ms). A
    /// live holder that never releases (or is stopped) makes it wait
    /// forever: bound it with [`acquire_timeout`](Lock::acquire_timeout).
    ///
    /// # Errors
    ///
    /// None can happen today ([`AcquireError`] has no values).
    ///
    /// # Crash behaviour
    ///
    /// [`LockGuard::owner_died`] when the previous holder died holding it.
    pub fn acquire(&self) -> Result<LockGuard<'_>, AcquireError> {
        until_acquired(|| self.acquire_until(Until::Never))
    }

    /// Python's `acquire(block=False)`: one try, never sleeps. A lock held
    /// by a dead holder is taken over at once.
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when a live holder has it (Python's
    /// `False`).
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, TryAcquireError> {
        self.acquire_until(Until::Now)
    }

    /// Python's `acquire(timeout=t)`: as [`acquire`](Lock::acquire), giving
    /// up after `timeout` (zero: one try).
    ///
    /// # Blocking
    ///
    /// As [`acquire`](Lock::acquire), at most `timeout`; the holder's
    /// liveness is probed once more at the deadline.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`] (Python's `False`).
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, AcquireTimeoutError> {
        timed(self.acquire_until(Until::after(timeout)))
    }

    /// As [`acquire_timeout`](Lock::acquire_timeout), giving up at
    /// `deadline` (already past: one try).
    ///
    /// # Blocking
    ///
    /// As [`acquire_timeout`](Lock::acquire_timeout).
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`].
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](Lock::acquire).
    pub fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> Result<LockGuard<'_>, AcquireTimeoutError> {
        timed(self.acquire_until(until_instant(deadline)))
    }

    /// The one acquire every form calls: waits as `until` allows.
    fn acquire_until(&self, until: Until) -> Result<LockGuard<'_>, TryAcquireError> {
        let (acquired, stamp) = acquire(
            &self.segment,
            &self.policy,
            &self.history,
            until,
            Some(&self.stamps),
        )
        .map_err(|TimedOut| TryAcquireError::WouldBlock)?;
        Ok(LockGuard {
            lock: self,
            acquired,
            stamp,
        })
    }

    /// Python's `release()`: releases the lock, whoever holds it (any process
    /// or thread may release a `multiprocessing.Lock`), typically one
    /// acquired through a [`leak`](LockGuard::leak)ed guard. A
    /// [`LockGuard`] of the acquisition this ends no longer releases
    /// anything.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotHeld`] when it is not held (Python's `ValueError`).
    pub fn release(&self) -> Result<(), ReleaseError> {
        // The new stamp retires every guard of this attachment: a guard
        // dropped after this cannot release an acquisition made after it.
        next_stamp(&self.stamps);
        shared(&self.segment)
            .release_any(&self.segment.waiter())
            .map_err(|_| ReleaseError::NotHeld)
    }
}

common_methods!(Lock);

/// Holds a [`Lock`] until dropped (or [`leak`](LockGuard::leak)ed).
///
/// Dropping releases the lock only if the acquisition this guard made is
/// still this handle's latest: after an explicit [`Lock::release`] through
/// the handle (or a clone) it releases nothing, even when another thread
/// has taken the lock through it since; after a release by another process
/// the lock word is free or names someone else, and the drop releases
/// nothing either. Each acquisition through a handle takes a new *stamp*
/// of a counter of the handle right after its winning CAS, a release
/// through the handle takes one too, and the guard's drop compares. (An
/// explicit `release` by one thread *while* another thread's guard is
/// being dropped, or while it is still acquiring, is a race of the caller's
/// making, as with Python's `Lock`: one of them may release the other's
/// next acquisition.)
///
/// `Send`: as in Python, a `Lock` may be released by any thread, so the
/// guard may be dropped on another one.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    acquired: Acquired,
    /// The stamp of the acquisition this guard holds.
    stamp: u64,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock (`EOWNERDEAD`):
    /// the state it protects may be half-updated.
    pub fn owner_died(&self) -> bool {
        self.acquired.owner_died()
    }

    /// Keeps the lock held after the guard is gone (Python's unguarded
    /// `acquire()`); [`Lock::release`] releases it later. Returns how it
    /// was acquired.
    ///
    /// # Crash behaviour
    ///
    /// A process that dies holding a leaked lock leaves it to be taken over
    /// like any dead holder's.
    pub fn leak(self) -> Acquired {
        let acquired = self.acquired;
        std::mem::forget(self);
        acquired
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // ORDERING: Relaxed — see `next_stamp`.
        if self.lock.stamps.load(Relaxed) == self.stamp {
            // Still our acquisition unless another process released it, in
            // which case the word is free or someone else's and this fails.
            let _ = release_owned(&self.lock.segment);
        }
    }
}

/// Process-local ids for threads: never 0, never reused in a process.
fn thread_id() -> u64 {
    static NEXT: LocalU64 = LocalU64::new(1);
    thread_local! {
        // ORDERING: Relaxed — only uniqueness matters, which the RMW gives.
        static ID: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// Who holds an `RLock` inside this process, and how deeply. Written only
/// by the holding thread while it holds the shared lock.
#[derive(Debug, Default)]
struct Recursion {
    /// [`thread_id`] of the holder, 0 when no thread of this attachment
    /// holds it. A thread reads its own id here only if it wrote it.
    thread: LocalU64,
    /// Acquisitions not yet released by the holder.
    count: LocalU64,
}

/// A recursive lock shared between processes (Python's
/// `multiprocessing.RLock`): the holding thread may acquire it again, and
/// must release it as many times. Clones share one attachment (and one
/// recursion state).
///
/// As in Python, the owner is a *thread*: another thread, of this handle or
/// a clone, waits for the lock like any other process, cannot release it
/// ([`ReleaseError::NotOwner`]), and its guards ([`RLockGuard`]) cannot
/// leave it.
///
/// The shared word names the holding *attachment*; which thread of it holds
/// the lock, and how deeply, is kept in the attachment's memory: a thread
/// of another process can never be mistaken for the owner. Two handles
/// opened separately in one process are two attachments: a thread holding
/// the lock through one waits for it through the other (forever, as with
/// two `multiprocessing.RLock` objects of one semaphore).
///
/// # Crash behaviour
///
/// As [`Lock`]: a dead holder's lock (at any depth) is taken over at depth
/// 1, and the taker's guard says so ([`RLockGuard::owner_died`]).
///
/// # Examples
///
/// ```
/// use shmring::lock::RLock;
///
/// let lock = RLock::new()?;
/// let outer = lock.acquire()?;
/// let inner = lock.acquire()?; // the same thread again: depth 2
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_owned());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RLock {
    segment: Arc<Segment>,
    policy: WaitPolicy,
    /// What this attachment's waits learned (clones share it).
    history: Arc<SharedHistory>,
    local: Arc<Recursion>,
}

impl SegmentObject for RLock {
    type Descriptor = LockDescriptor;
    type Config = ();

    fn descriptor(_: &()) -> Result<LockDescriptor, CreateError> {
        Ok(LockDescriptor {
            flavor: FLAVOR_RLOCK,
        })
    }

    fn attach(segment: Arc<Segment>) -> Result<RLock, OpenError> {
        check(&segment, FLAVOR_RLOCK)?;
        Ok(RLock {
            segment,
            policy: WaitPolicy::default(),
            history: Arc::default(),
            local: Arc::default(),
        })
    }
}

impl_segment_constructors!(RLock, "recursive lock");

impl RLock {
    /// Python's `RLock()`: a new anonymous recursive lock.
    ///
    /// # Errors
    ///
    /// The segment could not be created.
    pub fn new() -> Result<RLock, CreateError> {
        RLock::builder().anonymous()
    }

    fn owned_by_me(&self) -> bool {
        // ORDERING: Relaxed — only this thread ever stores its own id.
        self.local.thread.load(Relaxed) == thread_id()
    }

    /// Takes the lock, waiting as long as it takes, and returns a guard
    /// releasing one level on drop; the holding thread gets it again at
    /// once (one level deeper).
    ///
    /// # Blocking
    ///
    /// As [`Lock::acquire`] unless this thread holds it.
    ///
    /// # Errors
    ///
    /// None can happen today ([`AcquireError`] has no values).
    ///
    /// # Crash behaviour
    ///
    /// [`RLockGuard::owner_died`] when the previous holder died holding it.
    pub fn acquire(&self) -> Result<RLockGuard<'_>, AcquireError> {
        until_acquired(|| self.acquire_until(Until::Never))
    }

    /// One try, never sleeps (the holding thread always succeeds).
    ///
    /// # Errors
    ///
    /// [`TryAcquireError::WouldBlock`] when another holder has it.
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, TryAcquireError> {
        self.acquire_until(Until::Now)
    }

    /// As [`acquire`](RLock::acquire), giving up after `timeout` (zero: one
    /// try).
    ///
    /// # Blocking
    ///
    /// As [`Lock::acquire_timeout`] unless this thread holds it.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`].
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, AcquireTimeoutError> {
        timed(self.acquire_until(Until::after(timeout)))
    }

    /// As [`acquire_timeout`](RLock::acquire_timeout), giving up at
    /// `deadline` (already past: one try).
    ///
    /// # Blocking
    ///
    /// As [`Lock::acquire_timeout`] unless this thread holds it.
    ///
    /// # Errors
    ///
    /// [`AcquireTimeoutError::Timeout`].
    ///
    /// # Crash behaviour
    ///
    /// As [`acquire`](RLock::acquire).
    pub fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> Result<RLockGuard<'_>, AcquireTimeoutError> {
        timed(self.acquire_until(until_instant(deadline)))
    }

    /// The one acquire every form calls: one level deeper for the holding
    /// thread, otherwise waits for the shared lock as `until` allows.
    fn acquire_until(&self, until: Until) -> Result<RLockGuard<'_>, TryAcquireError> {
        let acquired = if self.owned_by_me() {
            // ORDERING: Relaxed — only the holding thread touches `count`.
            self.local.count.fetch_add(1, Relaxed);
            Acquired::Yes
        } else {
            let (got, _) = acquire(&self.segment, &self.policy, &self.history, until, None)
                .map_err(|TimedOut| TryAcquireError::WouldBlock)?;
            // ORDERING: Relaxed — we hold the shared lock, so no other
            // thread of this attachment writes these until we release it.
            self.local.count.store(1, Relaxed);
            // ORDERING: Relaxed — as above.
            self.local.thread.store(thread_id(), Relaxed);
            got
        };
        Ok(RLockGuard {
            lock: self,
            acquired,
            _not_send: PhantomData,
        })
    }

    /// Python's `release()`: one level; the last one frees the lock.
    /// Releases a level taken through a [`leak`](RLockGuard::leak)ed guard.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::NotOwner`] when this thread does not hold it
    /// (Python's `AssertionError`).
    pub fn release(&self) -> Result<(), ReleaseError> {
        if !self.owned_by_me() {
            return Err(ReleaseError::NotOwner);
        }
        // ORDERING: Relaxed — only the holding thread touches `count`.
        if self.local.count.fetch_sub(1, Relaxed) > 1 {
            return Ok(());
        }
        // ORDERING: Relaxed — cleared before the Release CAS that frees the
        // shared lock, which orders it before the next holder's writes.
        self.local.thread.store(0, Relaxed);
        // A failure means a peer rewrote the word: report it as not ours.
        release_owned(&self.segment).map_err(|_| ReleaseError::NotOwner)
    }

    /// Whether this thread holds it.
    pub fn is_owned(&self) -> bool {
        self.owned_by_me()
    }
}

common_methods!(RLock);

/// Holds one level of an [`RLock`] until dropped (or
/// [`leak`](RLockGuard::leak)ed).
///
/// Not `Send`: an `RLock` is held by a thread, and only that thread can
/// release it (dropped on another thread, the guard would find the lock not
/// its own and leave it held for good). Moving it to another thread does not
/// compile:
///
/// ```compile_fail
/// let lock = shmring::lock::RLock::new()?;
/// let guard = lock.acquire()?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard));
/// });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Dropped on the thread that took it, it releases one level:
///
/// ```
/// let lock = shmring::lock::RLock::new()?;
/// let guard = lock.acquire()?;
/// std::thread::scope(|s| {
///     s.spawn(|| assert!(!lock.is_owned()));
/// });
/// drop(guard);
/// assert!(!lock.is_owned());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    acquired: Acquired,
    /// Keeps the guard on the thread that holds the lock.
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Whether the previous holder died holding the lock.
    pub fn owner_died(&self) -> bool {
        self.acquired.owner_died()
    }

    /// Keeps this level held after the guard is gone (Python's unguarded
    /// `acquire()`); [`RLock::release`] on this thread releases it later.
    /// Returns how it was acquired.
    pub fn leak(self) -> Acquired {
        let acquired = self.acquired;
        std::mem::forget(self);
        acquired
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Lock>();
    send_sync::<RLock>();
    send_sync::<LockGuard<'static>>();
    send_sync::<AcquireError>();
    send_sync::<TryAcquireError>();
    send_sync::<AcquireTimeoutError>();
    send_sync::<ReleaseError>();
};
