//! Single-producer single-consumer rings in shared memory.
//!
//! A [`Ring`] is a segment holding one byte ring. One process (or thread)
//! takes the [`Producer`] role, one the [`Consumer`] role; a role held by a
//! process that died is taken over by the next claimant. The ring is the
//! fastest path shmring has: while it is neither empty nor full, a push or
//! pop touches one shared cache line and never enters the kernel.
//!
//! ```
//! use std::time::Duration;
//! use shmring::spsc::Ring;
//! use shmring::core::wait::Until;
//!
//! let ring = Ring::builder().ring_bytes(4096).max_message(256).anonymous()?;
//! let mut tx = ring.producer()?;
//! let mut rx = ring.consumer()?;
//! tx.push(b"hello", Until::Never)?;
//! let mut buf = Vec::new();
//! rx.pop(&mut buf, Until::after(Duration::from_secs(1)))?;
//! assert_eq!(buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crash behaviour
//!
//! - **A dead consumer** does not close the ring. A producer that has to
//!   wait (the ring is full) checks the consumer's liveness and gets
//!   [`PushError::Closed`] once it found the role's holder dead; that
//!   `Closed` is *not* final: once a new process claims the consumer role,
//!   pushes succeed again and the new consumer goes on from the dead one's
//!   position. The finding is one compare-and-swap on the role word (from
//!   the dead holder's token to a "gone" mark), which a process claiming
//!   the role at the same moment races with the same expected value: if
//!   the claim wins, the producer goes on waiting (for the new consumer)
//!   instead of reporting `Closed`. It loses only a record the dead consumer had copied out but
//!   not yet released (a record read in place and not released is
//!   delivered again). While the ring has room, a producer learns nothing
//!   of the consumer's death.
//! - **A dead producer**: a waiting consumer gets [`PopError::Closed`]
//!   once it has drained what was published (decided by the same
//!   compare-and-swap, so not while a new producer is taking the role
//!   over); a new producer may claim the role and go on. A record being written when the producer died is never
//!   seen (only published records are).
//!
//! (The [`pipe`](crate::pipe) closes its rings for good instead: a pipe end
//! whose peer died reads end of file or gets a broken pipe.)

use std::ptr::NonNull;
use std::sync::Arc;

use shmring_core::error::{PopError, PushError};
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::wait::{Until, WaitPolicy};
use shmring_core::RingConfig;

use crate::attach::{claim_role, mark_gone, release_role};
use crate::object::{
    impl_segment_constructors, named, Builder, CreateError, OpenError, RingSettings, RoleError,
    SegmentObject,
};
use crate::segment::{ObjectKind, Segment};
use crate::sys::FutexWaiter;

/// A named or anonymous segment holding one SPSC byte ring.
#[derive(Clone, Debug)]
pub struct Ring {
    ring: spsc::Ring,
    segment: Arc<Segment>,
}

impl SegmentObject for Ring {
    const KIND: ObjectKind = ObjectKind::SpscRing;
    type Config = RingSettings;

    fn layout(settings: &RingSettings) -> Result<(usize, [u64; 8]), CreateError> {
        let config = settings.core()?;
        let layout = SpscLayout::new(&config).map_err(|e| named(e, "max_message"))?;
        Ok((
            layout.total,
            [config.capacity, config.max_record, 0, 0, 0, 0, 0, 0],
        ))
    }

    unsafe fn init(base: NonNull<u8>, len: usize, settings: &RingSettings) -> Result<(), String> {
        let config = settings.core().map_err(|e| e.to_string())?;
        // SAFETY: forwarded from the caller (zeroed, aligned, private).
        unsafe { spsc::Ring::init_in_place(base, len, &config) }.map_err(|e| e.to_string())
    }

    fn attach(segment: Arc<Segment>) -> Result<Ring, OpenError> {
        let [capacity, max_record, ..] = segment.params();
        let keep: spsc::KeepAlive = segment.clone();
        // SAFETY: the segment maps `object_len` bytes at `object_ptr` (page
        // aligned) for as long as it lives, and `keep` holds it alive for
        // every handle; other peers use it only through the ring protocol.
        let ring = unsafe {
            spsc::Ring::attach_in_place(segment.object_ptr(), segment.object_len(), keep)
        }?;
        if ring.config()
            != (RingConfig {
                capacity,
                max_record,
            })
        {
            return Err(OpenError::Corrupted(shmring_core::Corrupted {
                what: "ring config vs segment params",
                value: capacity,
            }));
        }
        Ok(Ring { ring, segment })
    }
}

impl_segment_constructors!(Ring, "ring");

impl Builder<Ring> {
    /// Bytes of the ring: a power of two (default 256 KiB).
    pub fn ring_bytes(mut self, bytes: u64) -> Self {
        self.config.ring_bytes = bytes;
        self
    }

    /// Largest message in bytes (default 64 KiB); it must fit in
    /// `ring_bytes` with its record header.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.config.max_message = bytes;
        self
    }
}

impl Ring {
    /// A new anonymous ring of the default size (256 KiB, messages up to
    /// 64 KiB); [`Ring::builder`] sets the sizes or a name.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<Ring, CreateError> {
        Ring::builder().anonymous()
    }

    /// Takes the producer role.
    ///
    /// # Errors
    ///
    /// [`RoleError::RoleTaken`] when a live peer holds it.
    pub fn producer(&self) -> Result<Producer, RoleError> {
        let (word, _) = self.ring.owner_words();
        claim_role(word, &self.segment, "producer")?;
        // The handle keeps the segment (`ring`) alive.
        match self.ring.producer(self.segment.waiter()) {
            Ok(inner) => Ok(Producer {
                inner,
                ring: self.clone(),
                policy: WaitPolicy::default(),
            }),
            Err(c) => {
                release_role(word, &self.segment);
                Err(c.into())
            }
        }
    }

    /// Takes the consumer role.
    ///
    /// # Errors
    ///
    /// [`RoleError::RoleTaken`] when a live peer holds it.
    pub fn consumer(&self) -> Result<Consumer, RoleError> {
        let (_, word) = self.ring.owner_words();
        claim_role(word, &self.segment, "consumer")?;
        // The handle keeps the segment (`ring`) alive.
        match self.ring.consumer(self.segment.waiter()) {
            Ok(inner) => Ok(Consumer {
                inner,
                ring: self.clone(),
                policy: WaitPolicy::default(),
            }),
            Err(c) => {
                release_role(word, &self.segment);
                Err(c.into())
            }
        }
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        self.ring.config()
    }

    /// Approximate number of messages in the ring (Python's `qsize`): a
    /// snapshot, stale when it returns.
    pub fn len(&self) -> u64 {
        self.ring.len()
    }

    /// Whether the ring holds no message (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether not even an empty message fits (a snapshot).
    pub fn is_full(&self) -> bool {
        self.ring.is_full()
    }

    /// Closes the ring for everyone: pushes fail with `Closed`, pops drain
    /// what is left and then fail with `Closed`; sleepers wake at once.
    pub fn close(&self) {
        self.ring.close(&self.segment.waiter());
    }

    /// The segment underneath (name, peers, counters).
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}

/// The producer of a [`Ring`]. Dropping it gives the role back.
#[derive(Debug)]
pub struct Producer {
    inner: spsc::Producer<FutexWaiter>,
    ring: Ring,
    policy: WaitPolicy,
}

impl Producer {
    /// Copies `msg` in if there is room now; never blocks, never enters the
    /// kernel unless the consumer sleeps.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.inner.try_push(msg)
    }

    /// Copies `msg` in, waiting for room until `until` ([`Until::Now`]: one
    /// try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins for a few microseconds, then sleeps on a futex until
    /// room appears, `until` passes, the ring is closed, or the consumer's
    /// process dies (checked every 100 ms).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed` (also when the consumer died), `TooLarge`,
    /// `Corrupted`.
    pub fn push(&mut self, msg: &[u8], until: Until) -> Result<(), PushError> {
        let ring = &self.ring;
        let (_, consumer) = ring.ring.owner_words();
        // Decided by a CAS on the role word (`mark_gone`): a consumer that
        // takes the role over at the same moment wins or loses it whole,
        // and then this waits on instead of reporting `Closed`.
        self.inner.push(msg, until, &self.policy, &mut || {
            mark_gone(consumer, &ring.segment)
        })
    }

    /// Copies in as many of `msgs` as fit now, with one publish and at most
    /// one wake. Returns how many went in.
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first did not.
    pub fn try_push_many<'m, I: IntoIterator<Item = &'m [u8]>>(
        &mut self,
        msgs: I,
    ) -> Result<usize, PushError> {
        self.inner.try_push_many(msgs)
    }

    /// Reserves room for up to `len` bytes to write in place: with
    /// [`spsc::WriteGrant::write_at`], or with no copy through the `unsafe`
    /// [`spsc::WriteGrant::as_mut_slice`] (for a consumer known to be
    /// well-behaved); see [`spsc::WriteGrant::commit`].
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    pub fn reserve(&mut self, len: usize) -> Result<spsc::WriteGrant<'_, FutexWaiter>, PushError> {
        self.inner.reserve(len)
    }

    /// Sets the spin budget and liveness period used by blocking calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// Closes the producer side: the consumer drains, then sees `Closed`.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        release_role(self.ring.ring.owner_words().0, &self.ring.segment);
    }
}

/// The consumer of a [`Ring`]. Dropping it gives the role back.
#[derive(Debug)]
pub struct Consumer {
    inner: spsc::Consumer<FutexWaiter>,
    ring: Ring,
    policy: WaitPolicy,
}

impl Consumer {
    /// Copies the next message into `buf` (replacing its contents) if there
    /// is one; never blocks.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        self.inner.try_pop(buf)
    }

    /// Copies the next message into `buf`, waiting until `until`
    /// ([`Until::Now`]: one try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins briefly, then sleeps until a message arrives, `until`
    /// passes, the ring is closed, or the
    /// producer's process dies (checked every 100 ms; what it published is
    /// still delivered first).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed` (closed or producer dead, and drained),
    /// `Corrupted`.
    pub fn pop(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        let ring = &self.ring;
        let (producer, _) = ring.ring.owner_words();
        // As in `Producer::push`: one CAS decides against a takeover.
        self.inner.pop(buf, until, &self.policy, &mut || {
            mark_gone(producer, &ring.segment)
        })
    }

    /// Reads the next message in place; dropping the grant releases it.
    /// The grant copies the payload straight out of the ring, race-free
    /// whatever the producer's process does, or views it in place with no
    /// copy through the `unsafe` [`spsc::ReadGrant::as_slice`] (for a
    /// producer known to be well-behaved).
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed`, `Corrupted`.
    pub fn read(&mut self) -> Result<spsc::ReadGrant<'_, FutexWaiter>, PopError> {
        self.inner.read()
    }

    /// Hands up to `max` messages to `f` in order, releasing them at once.
    ///
    /// # Errors
    ///
    /// Only when none was there: `Empty`, `Closed`, `Corrupted`.
    pub fn try_pop_many(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize, PopError> {
        self.inner.try_pop_many(max, f)
    }

    /// Sets the spin budget and liveness period used by blocking calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// Closes the consumer side: the producer gets `Closed` from now on.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        release_role(self.ring.ring.owner_words().1, &self.ring.segment);
    }
}
