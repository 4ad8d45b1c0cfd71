//! The single-producer single-consumer byte ring.
//!
//! Variable-length records (0 bytes up to the configured maximum), a padding
//! record at the wrap, and process-local cached copies of the other side's
//! position, so that while the ring is neither empty nor full the producer
//! touches only its own line (and the reader only its own). Three ways in and
//! out: copy ([`Producer::try_push`], [`Consumer::try_pop`]), in place
//! ([`Producer::reserve`] → [`WriteGrant::commit`], [`Consumer::read`] →
//! drop the [`ReadGrant`]), and batches ([`Producer::try_push_many`],
//! [`Consumer::try_pop_many`]: many records, one publish, one wake).
//!
//! The handles here are not tied to an OS: [`Ring`] is built over memory the
//! caller keeps alive (a mapped segment in the `shmring` crate, the heap in
//! [`crate::heap`]), and blocking goes through the [`Waiter`] the handle holds.
//!
//! # Untrusted peers
//!
//! The other end of a ring is another process, and it may be buggy or
//! hostile: it can write any bytes anywhere in the segment at any moment,
//! including a record this side is reading or space this side has reserved.
//! The contract: **safe code on this side cannot be led into undefined
//! behaviour by anything the peer does**; at worst it gets wrong bytes or a
//! [`Corrupted`] error.
//!
//! * Every value that steers this side (positions, counts, record headers)
//!   is loaded atomically and checked before use (see [`crate::ring`]).
//! * Payload bytes are *copied out* before anyone looks at them, with
//!   relaxed atomic word loads (from 256 bytes on x86-64, one `rep movsb`
//!   in an assembly block the compiler cannot see into), never a plain
//!   `memcpy` or a reference into the ring: [`Consumer::try_pop`], [`Consumer::try_pop_many`] (which
//!   hands `f` a process-local copy) and the read grant's
//!   [`copy_to_slice`](ReadGrant::copy_to_slice),
//!   [`append_to`](ReadGrant::append_to) and [`to_vec`](ReadGrant::to_vec).
//!   A racing write makes the copy wrong, never racy.
//! * Payload bytes go *in* with plain copies into space the protocol gives
//!   the producer alone ([`Producer::try_push`],
//!   [`WriteGrant::write_at`]); this process never reads them back, so a
//!   peer that touches them garbles only what that peer sees.
//! * Views *into* the ring, with no copy at all, are `unsafe`:
//!   [`ReadGrant::as_slice`] and [`WriteGrant::as_mut_slice`]. Their
//!   callers promise a well-behaved peer (every handle of this crate is
//!   one), because a peer writing under a live `&[u8]` or `&mut [u8]` is
//!   undefined behaviour in this process.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::ptr::NonNull;

use crate::error::{push_check, ConfigError, Corrupted, PopError, PushError};
use crate::layout::HOT_ALIGN;
use crate::record::Mark;
use crate::ring::{
    ring_count, ring_free_bytes, ring_is_empty, small, Found, Reader, RingConfig, RingRef,
    RingShared, Writer, CONSUMER_CLOSED, PRODUCER_CLOSED,
};
use crate::sync::AtomicU64;
use crate::wait::{block_on_with, TimedOut, Until, WaitHistory, WaitPolicy, Waiter, WAKE_ALL};

mod batch;
#[cfg(not(loom))]
mod grant;

#[cfg(not(loom))]
pub use grant::{ReadGrant, WriteGrant};

/// Something that keeps the ring's memory alive (a mapping, a heap block).
pub type KeepAlive = Arc<dyn Any + Send + Sync>;

/// A handle's hold on its end of the ring, as the layer above the core sees
/// it: whether the process at the *other* end is gone for good, which the
/// core cannot know (it makes no system calls).
///
/// A handle carries at most one ([`Producer::set_role`],
/// [`Consumer::set_role`]) and owns it: dropping the handle drops it, and
/// the engine gives the role back to the segment there. The blocking calls
/// ask [`peer_gone`](Role::peer_gone) on their slow path only: before a
/// first sleep (at most once a millisecond over the handle's calls), after
/// each sleep slice, and once more at the deadline. The fast path (a try,
/// a wait that ends within its spin) never calls it. A handle without one
/// never finds its peer gone (heap rings, models).
///
/// Any `Fn() -> bool + Send + Sync` closure is a role that holds nothing.
pub trait Role: Send + Sync {
    /// Whether the process at the other end of the ring is gone for good.
    /// `true` ends a wait: a push fails with `Closed`, a pop drains what is
    /// left and then fails with `Closed`, a [`Producer::wait_writable`] or
    /// [`Consumer::wait_readable`] returns `Ok(false)`.
    fn peer_gone(&self) -> bool;

    /// Whether this role holds a claim in shared memory that dropping it
    /// gives up (the engine's role of a ring handle, which owns the
    /// producer or consumer role word). Such a role is never replaced by
    /// `set_role`: replacing it would give the role up while the handle
    /// goes on using it. `false` by default.
    fn holds_claim(&self) -> bool {
        false
    }
}

impl<F: Fn() -> bool + Send + Sync> Role for F {
    fn peer_gone(&self) -> bool {
        self()
    }
}

/// A handle's [`Role`], if any (printed as whether there is one).
#[derive(Default)]
struct RoleSlot(Option<Box<dyn Role>>);

impl RoleSlot {
    /// Installs `role` unless the current one holds a claim; whether it
    /// did.
    fn set(&mut self, role: Box<dyn Role>) -> bool {
        if self.0.as_ref().is_some_and(|r| r.holds_claim()) {
            return false;
        }
        self.0 = Some(role);
        true
    }

    /// Whether the role says the peer is gone (never, without one). The
    /// slow path only: a call through a `dyn` pointer.
    #[cold]
    fn peer_gone(&self) -> bool {
        self.0.as_ref().is_some_and(|role| role.peer_gone())
    }
}

impl core::fmt::Debug for RoleSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Role)"
        } else {
            "None"
        })
    }
}

/// Where the parts of an SPSC ring lie in a region, and how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpscLayout {
    /// Offset of the data area from the start of the region.
    pub data_offset: usize,
    /// Bytes the region needs.
    pub total: usize,
}

impl SpscLayout {
    /// The layout for `config`.
    ///
    /// # Errors
    ///
    /// The configuration is invalid.
    pub fn new(config: &RingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let data_offset = core::mem::size_of::<RingShared>().next_multiple_of(HOT_ALIGN);
        Ok(SpscLayout {
            data_offset,
            total: data_offset + config.capacity as usize,
        })
    }
}

/// A validated reference to one SPSC ring, and the keep-alive of its memory.
#[derive(Clone)]
pub struct Ring {
    raw: RingRef,
    keep: KeepAlive,
}

impl core::fmt::Debug for Ring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.raw.capacity)
            .field("max_record", &self.raw.max_record)
            .finish()
    }
}

impl Ring {
    /// Initialises a ring in zeroed memory (the creator, before publishing the
    /// segment).
    ///
    /// # Safety
    ///
    /// `base` is valid for writes of `len` bytes, aligned to 128, zeroed, and
    /// not yet visible to any other process or thread.
    ///
    /// # Errors
    ///
    /// The configuration is invalid or does not fit in `len` bytes.
    #[cfg(not(loom))]
    pub unsafe fn init_in_place(
        base: NonNull<u8>,
        len: usize,
        config: &RingConfig,
    ) -> Result<(), ConfigError> {
        let layout = SpscLayout::new(config)?;
        if layout.total > len {
            return Err(ConfigError::Capacity {
                capacity: config.capacity,
                min: crate::ring::MIN_CAPACITY,
                max: (len.saturating_sub(layout.data_offset)) as u64,
            });
        }
        // SAFETY: the caller gives us `len >= size_of::<RingShared>()` zeroed,
        // aligned bytes; all-zero is a valid `RingShared` (atomics only).
        let shared = unsafe { base.cast::<RingShared>().as_ref() };
        shared.init(config);
        Ok(())
    }

    /// Attaches to a ring another process initialised, checking every
    /// parameter against `len`.
    ///
    /// # Safety
    ///
    /// `base` is valid for reads and writes of `len` bytes, aligned to 128,
    /// for as long as `keep` lives, and other parties access it only through
    /// atomics or this protocol (a hostile peer can make us read garbage, which
    /// we detect, but not break memory safety).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when a parameter is out of range or does not match `len`.
    #[cfg(not(loom))]
    pub unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Ring, Corrupted> {
        if len < core::mem::size_of::<RingShared>()
            || !(base.as_ptr() as usize).is_multiple_of(HOT_ALIGN)
        {
            return Err(Corrupted::new("ring region length", len as u64));
        }
        // SAFETY: in bounds and aligned (checked above); valid per the caller.
        let shared = unsafe { base.cast::<RingShared>().as_ref() };
        let config = shared.read_config()?;
        let layout = SpscLayout::new(&config).map_err(|_| Corrupted::new("ring config", 0))?;
        if layout.total != len {
            return Err(Corrupted::new("ring region length", len as u64));
        }
        // SAFETY: data_offset < total == len, so in bounds; 128-aligned.
        let data = unsafe { base.add(layout.data_offset) }.cast::<AtomicU64>();
        // SAFETY: both pointers lie in the caller's region, valid while `keep`
        // lives; `keep` travels with every handle made from this Ring.
        let raw = unsafe { RingRef::new(base.cast(), data, (config.capacity / 8) as usize) }?;
        Ok(Ring { raw, keep })
    }

    /// Attaches to a control block and data area that live apart (heap rings).
    ///
    /// # Safety
    ///
    /// `shared` and `data` (`data_words` words) stay valid while `keep` lives
    /// and are accessed by others only through atomics or this protocol.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the parameters are out of range or do not match.
    pub unsafe fn from_parts(
        shared: NonNull<RingShared>,
        data: NonNull<AtomicU64>,
        data_words: usize,
        keep: KeepAlive,
    ) -> Result<Ring, Corrupted> {
        // SAFETY: forwarded from our caller.
        let raw = unsafe { RingRef::new(shared, data, data_words) }?;
        Ok(Ring { raw, keep })
    }

    /// The ring's configuration.
    pub fn config(&self) -> RingConfig {
        RingConfig {
            capacity: self.raw.capacity,
            max_record: self.raw.max_record,
        }
    }

    /// A producer handle, with the default [`WaitPolicy`] and no [`Role`].
    /// The caller makes sure there is only one (the engine claims the
    /// producer role first, and hands the claim to [`Producer::set_role`]).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the positions in shared memory are inconsistent.
    pub fn producer<W: Waiter + Clone>(&self, waiter: W) -> Result<Producer<W>, Corrupted> {
        Ok(Producer {
            writer: Writer::attach(self.raw, false)?,
            waiter,
            history: WaitHistory::default(),
            policy: WaitPolicy::default(),
            role: RoleSlot::default(),
            _keep: self.keep.clone(),
        })
    }

    /// A consumer handle, with the default [`WaitPolicy`] and no [`Role`].
    /// The caller makes sure there is only one.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the positions in shared memory are inconsistent.
    pub fn consumer<W: Waiter + Clone>(&self, waiter: W) -> Result<Consumer<W>, Corrupted> {
        Ok(Consumer {
            reader: Reader::attach(self.raw)?,
            waiter,
            history: WaitHistory::default(),
            policy: WaitPolicy::default(),
            role: RoleSlot::default(),
            _keep: self.keep.clone(),
        })
    }

    /// Number of records in the ring: exact when neither side moves, a
    /// snapshot otherwise (see [`crate::mpmc::Queue::len`] for what it
    /// promises while they do). A death at any point leaves it exact: each
    /// position word carries its count (see [`crate::ring`]). 0 when the
    /// position words are inconsistent (a hostile peer).
    pub fn len(&self) -> u64 {
        ring_count(&self.raw).unwrap_or(0)
    }

    /// Whether nothing is published and unconsumed (a snapshot).
    pub fn is_empty(&self) -> bool {
        ring_is_empty(&self.raw)
    }

    /// Whether not even an empty record fits right now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.free_bytes() < crate::record::HEADER
    }

    /// Bytes free right now (a snapshot).
    pub fn free_bytes(&self) -> u64 {
        ring_free_bytes(&self.raw)
    }

    /// Closes both sides: producers get `Closed` at once, consumers drain
    /// what is left and then get `Closed`. Every sleeper wakes.
    pub fn close<W: Waiter + ?Sized>(&self, waiter: &W) {
        close_ring(self.raw.shared(), PRODUCER_CLOSED | CONSUMER_CLOSED, waiter);
    }

    /// The closed flags (`PRODUCER_CLOSED`, `CONSUMER_CLOSED`).
    pub fn closed_flags(&self) -> u32 {
        self.raw.shared().flags()
    }

    /// The tail and head words (see [`crate::ring`] for their packing), for
    /// tests and fuzzers that start a ring elsewhere than at 0 or play a
    /// hostile peer.
    ///
    /// Public because that is what a peer sharing the memory can do anyway:
    /// every process that maps the ring may store any value into these
    /// words, and the handles treat what they read there as untrusted (a
    /// bad value is [`Corrupted`]). Storing into them is
    /// never undefined behaviour, but it breaks the ring for every handle,
    /// as a hostile peer would.
    pub fn position_words(&self) -> (&AtomicU64, &AtomicU64) {
        let shared = self.raw.shared();
        (&shared.producer.tail, &shared.consumer.head)
    }

    /// The wait word a reader sleeps on until a record is published or
    /// the ring closed (for sleepers outside this module: see
    /// [`Consumer::check_readable`] and [`WaitWord::register`]).
    ///
    /// [`WaitWord::register`]: crate::wait::WaitWord::register
    pub fn readable_word(&self) -> &crate::wait::WaitWord {
        &self.raw.shared().not_empty
    }

    /// The wait word a writer sleeps on until the reader releases room or
    /// the ring is closed (as [`Ring::readable_word`], for the writer).
    pub fn writable_word(&self) -> &crate::wait::WaitWord {
        &self.raw.shared().not_full
    }

    /// The role words, for the engine to claim producer and consumer roles.
    pub fn owner_words(&self) -> (&crate::sync::AtomicU64, &crate::sync::AtomicU64) {
        let c = &self.raw.shared().config;
        (&c.producer_owner, &c.consumer_owner)
    }
}

#[cfg(not(loom))]
impl crate::layout::InPlace for Ring {
    unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Self, Corrupted> {
        // SAFETY: forwarded from our caller (the same contract).
        unsafe { Ring::attach_in_place(base, len, keep) }
    }
}

fn close_ring<W: Waiter + ?Sized>(shared: &RingShared, bits: u32, waiter: &W) {
    shared.set_flags(bits);
    shared.not_empty.wake_now(waiter, WAKE_ALL);
    shared.not_full.wake_now(waiter, WAKE_ALL);
}

/// [`block_on_with`] on one of a handle's wait words, with the handle's
/// waiter, policy and wait history copied out first (so that the check may
/// borrow the handle mutably) and the history stored back after.
macro_rules! wait_paced {
    ($handle:ident, $ring:expr, $word:ident, $until:expr, $check:expr) => {{
        let ring = $ring;
        let waiter = $handle.waiter.clone();
        let policy = $handle.policy;
        let mut history = $handle.history;
        let result = block_on_with(
            &ring.shared().$word,
            &waiter,
            $until,
            &policy,
            &mut history,
            $check,
        );
        $handle.history = history;
        result
    }};
}

/// The writing end of an SPSC ring.
///
/// Its blocking calls ([`push`](Producer::push),
/// [`push_marked`](Producer::push_marked),
/// [`wait_writable`](Producer::wait_writable)) try, spin for
/// [`WaitPolicy::spin_ns`], then sleep on the ring's futex word through the
/// handle's [`Waiter`] in slices of [`WaitPolicy::slice_ns`], asking the
/// handle's [`Role`] (if any) on the slow path whether the consumer's
/// process is gone.
#[derive(Debug)]
pub struct Producer<W> {
    writer: Writer,
    waiter: W,
    /// When the next liveness probe before a first sleep is due, and the
    /// learned spin budget.
    history: WaitHistory,
    policy: WaitPolicy,
    role: RoleSlot,
    _keep: KeepAlive,
}

impl<W: Waiter + Clone> Producer<W> {
    #[inline]
    fn check_open(&self) -> Result<(), PushError> {
        if self.writer.ring.shared().flags() != 0 {
            return Err(PushError::Closed);
        }
        Ok(())
    }

    #[inline]
    fn publish_and_wake(&mut self, count: u32) {
        if self.writer.publish() {
            self.writer
                .ring
                .shared()
                .not_empty
                .wake_if_waiting(&self.waiter, count);
        }
    }

    /// Copies `msg` in as one record, if it fits now.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        self.try_push_marked(msg, Mark::WHOLE)
    }

    /// [`try_push`](Producer::try_push) of a record with the framing marks
    /// `mark`: whether it continues the message begun by the data record
    /// before it, and whether more records of its message follow
    /// ([`Mark::WHOLE`], neither, is what `try_push` writes). The consumer
    /// sees them as [`ReadGrant::mark`]; see [`crate::record`].
    ///
    /// # Errors
    ///
    /// As [`try_push`](Producer::try_push).
    #[inline]
    pub fn try_push_marked(&mut self, msg: &[u8], mark: Mark) -> Result<(), PushError> {
        self.check_open()?;
        let result = self.writer.write_marked(msg, mark);
        // On `Full` this also publishes a padding record written on the way:
        // the consumer has to pass it before the room we wait for can appear.
        self.publish_and_wake(1);
        result
    }

    /// Pushes `msg`, waiting for room until `until` ([`Until::Now`]: one
    /// try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins for the policy's spin budget, then sleeps until room
    /// appears, `until` passes, the ring is closed, or the handle's
    /// [`Role`] finds the consumer gone (asked on the slow path only: at
    /// most once a millisecond before a first sleep, after each sleep
    /// slice, 100 ms by default).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed` (also when the role found the consumer gone),
    /// `TooLarge`, `Corrupted`.
    #[inline]
    pub fn push(&mut self, msg: &[u8], until: Until) -> Result<(), PushError> {
        self.push_marked(msg, Mark::WHOLE, until)
    }

    /// [`push`](Producer::push) with the framing marks of
    /// [`try_push_marked`](Producer::try_push_marked): what streams a
    /// message larger than the ring, one record at a time.
    ///
    /// # Errors
    ///
    /// As [`push`](Producer::push).
    pub fn push_marked(&mut self, msg: &[u8], mark: Mark, until: Until) -> Result<(), PushError> {
        // The first try inline: through the waiting loop even a push that
        // finds room paid for the loop's set-up (the MPMC queue measured
        // 23-26 ns there against 8-11 ns for the try alone).
        match self.try_push_marked(msg, mark) {
            Err(PushError::Full) if !until.is_now() => self.push_waiting(msg, mark, until),
            Err(PushError::Full) => Err(PushError::Timeout),
            done => done,
        }
    }

    /// [`push_marked`](Producer::push_marked) once the first try found no
    /// room: the spin and the sleep (whose first check tries once more).
    #[inline(never)]
    fn push_waiting(&mut self, msg: &[u8], mark: Mark, until: Until) -> Result<(), PushError> {
        let result = wait_paced!(self, self.writer.ring, not_full, until, |slow| {
            push_check(self.try_push_marked(msg, mark), slow, || self.peer_gone())
        });
        result.unwrap_or(Err(PushError::Timeout))
    }

    /// Waits until at least `bytes` are free, or until nothing will ever be
    /// written again, without writing anything (what a pipe's all-or-nothing
    /// timed send of a fragmented message needs: room for every fragment).
    ///
    /// Returns `Ok(true)` when the room is there (or the ring looks
    /// corrupted: the next push reports it), `Ok(false)` when the ring is
    /// closed or the handle's [`Role`] said the consumer is gone (asked as
    /// in [`push`](Producer::push)). Sleeps on the ring's not-full word,
    /// which every release of the consumer signals: each wake-up re-checks
    /// the free room. `bytes` above the capacity is never there: the call
    /// then waits for the deadline (or the close).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when `until` passes first.
    pub fn wait_writable(&mut self, bytes: u64, until: Until) -> Result<bool, TimedOut> {
        wait_paced!(self, self.writer.ring, not_full, until, |slow| {
            if self.check_open().is_err() {
                return Some(false);
            }
            match self.writer.free_now() {
                Ok(free) if free >= bytes => Some(true),
                Err(_) => Some(true),
                Ok(_) if slow && self.peer_gone() => Some(false),
                Ok(_) => None,
            }
        })
    }

    /// Bytes free as far as the producer knows (re-reads the head).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the head is inconsistent.
    pub fn free_bytes(&mut self) -> Result<u64, Corrupted> {
        self.writer.free_now()
    }

    /// Bytes that records with payloads of `lens` bytes take when pushed
    /// now, one after another: their records, and the padding of a wrap
    /// wherever one of them would not fit before the end of the data area,
    /// counted from where this producer writes next. Exact: a batch of
    /// such records ([`try_push_many_marked`](Producer::try_push_many_marked))
    /// goes in whole exactly when [`free_bytes`](Producer::free_bytes) is
    /// at least this, and since only this producer fills the ring, that
    /// room stays until it writes. `u64::MAX` when a payload exceeds the
    /// whole ring (it never fits; the push says `TooLarge` for any payload
    /// above the maximum record).
    ///
    /// Process-local: reads no shared memory.
    pub fn space_needed(&self, lens: impl IntoIterator<Item = usize>) -> u64 {
        self.writer.extent(lens)
    }

    /// Closes the producer side: the consumer drains, then sees `Closed`.
    pub fn close(&self) {
        close_ring(self.writer.ring.shared(), PRODUCER_CLOSED, &self.waiter);
    }

    /// Sets the spin budget and sleep slice of the blocking calls (the
    /// slice bounds how late a dead peer is noticed).
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// The spin budget and sleep slice of the blocking calls.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }

    /// Hands the handle its [`Role`] (replacing, and dropping, any earlier
    /// one): what its blocking calls ask on the slow path whether the
    /// process at the other end is gone, dropped with the handle.
    ///
    /// Returns `false`, and drops `role`, when the current role
    /// [holds a claim](Role::holds_claim) (a ring handle the engine made
    /// keeps the role it claimed for as long as it lives).
    pub fn set_role(&mut self, role: impl Role + 'static) -> bool {
        self.role.set(Box::new(role))
    }

    /// Whether the handle's [`Role`] says the other end is gone (never,
    /// without one). What the blocking calls ask on their slow path; a
    /// caller that gives up without sleeping may ask it too.
    pub fn peer_gone(&self) -> bool {
        self.role.peer_gone()
    }
}

/// The reading end of an SPSC ring.
///
/// Its blocking calls ([`pop`](Consumer::pop),
/// [`wait_readable`](Consumer::wait_readable)) wait as the
/// [`Producer`]'s do, asking the handle's [`Role`] on the slow path
/// whether the producer's process is gone.
#[derive(Debug)]
pub struct Consumer<W> {
    reader: Reader,
    waiter: W,
    /// When the next liveness probe before a first sleep is due, and the
    /// learned spin budget.
    history: WaitHistory,
    policy: WaitPolicy,
    role: RoleSlot,
    _keep: KeepAlive,
}

impl<W: Waiter + Clone> Consumer<W> {
    #[inline]
    fn release_and_wake(&mut self) {
        if self.reader.release() {
            self.reader
                .ring
                .shared()
                .not_full
                .wake_if_waiting(&self.waiter, 1);
        }
    }

    /// The next record, or why there is none. Always inlined: returned
    /// through memory, its `Result<Found, _>` cost the Pipe's receive two
    /// store-forwarding stalls per message.
    #[inline(always)]
    fn next(&mut self) -> Result<Found, PopError> {
        if let Some(found) = self.reader.peek()? {
            return Ok(found);
        }
        // Padding skipped on the way is room the producer may be waiting for.
        self.release_and_wake();
        // The flag first, then one more look: a record published before the
        // close is then visible (the flag's Acquire pairs with its Release).
        if self.reader.ring.shared().flags() & PRODUCER_CLOSED != 0 {
            return match self.reader.peek()? {
                Some(found) => Ok(found),
                None => Err(PopError::Closed),
            };
        }
        Err(PopError::Empty)
    }

    /// Copies the next record into `buf` (replacing its contents) and returns
    /// its length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        let found = self.next()?;
        self.copy_out(&found, buf);
        failpoint!("spsc.read", buf);
        self.reader.advance(&found);
        self.release_and_wake();
        failpoint!("spsc.released");
        Ok(found.len)
    }

    /// As [`try_pop`](Consumer::try_pop), and also the record's framing
    /// marks (see [`Producer::try_push_marked`]). The copying counterpart
    /// of [`ReadGrant::mark`].
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Consumer::try_pop).
    #[inline]
    pub fn try_pop_marked(&mut self, buf: &mut Vec<u8>) -> Result<(usize, Mark), PopError> {
        let found = self.next()?;
        self.copy_out(&found, buf);
        failpoint!("spsc.read", buf);
        self.reader.advance(&found);
        self.release_and_wake();
        failpoint!("spsc.released");
        Ok((found.len, found.mark))
    }

    /// Replaces the contents of `buf` with the payload of `found`: small
    /// ones a word at a time, larger ones into `buf`'s spare capacity (no
    /// zero-fill first in either case). Relaxed atomic word loads (or one
    /// opaque copy from 256 bytes, see `crate::bytes`), so a misbehaving
    /// producer writing the record meanwhile makes the copy wrong, never
    /// racy (see the module docs).
    #[inline(always)]
    fn copy_out(&self, found: &Found, buf: &mut Vec<u8>) {
        let words = self.reader.ring.payload_words(found);
        if found.len <= small::SMALL {
            small::load(words, found.len, buf);
            return;
        }
        buf.clear();
        crate::bytes::append(words, found.len, buf);
    }

    /// The payload of `found`, in place.
    ///
    /// # Safety
    ///
    /// The producer's process does not write the record while the slice
    /// lives (see [`ReadGrant::as_slice`]).
    #[cfg(not(loom))]
    #[inline]
    unsafe fn payload_in_place(&self, found: &Found) -> &[u8] {
        // The record is published (Acquire of the tail) and not yet
        // released, so a correct producer does not write it while we read.
        // SAFETY: in bounds (checked by `record_at`); the caller promises a
        // correct producer.
        unsafe {
            core::slice::from_raw_parts(
                self.reader.ring.byte_ptr(found.payload_word * 8),
                found.len,
            )
        }
    }

    /// A copy of the payload of `found`, for a failpoint's context.
    #[cfg(all(feature = "failpoints", not(loom)))]
    fn copy_of(&self, found: &Found) -> Vec<u8> {
        let mut copy = Vec::new();
        self.copy_out(found, &mut copy);
        copy
    }

    /// Pops the next record into `buf`, waiting until `until`
    /// ([`Until::Now`]: one try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins briefly, then sleeps until a record arrives, `until`
    /// passes, the ring is closed, or the handle's [`Role`] finds the
    /// producer gone (asked as in [`Producer::push`]); what it published
    /// is still delivered first.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed` (closed, or the producer gone, and drained),
    /// `Corrupted`.
    pub fn pop(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        // The first try inline, as in `Producer::push_marked`.
        match self.try_pop(buf) {
            Err(PopError::Empty) if !until.is_now() => self.pop_waiting(buf, until),
            Err(PopError::Empty) => Err(PopError::Timeout),
            done => done,
        }
    }

    /// [`pop`](Consumer::pop) once the first try found nothing: the spin
    /// and the sleep (whose first check tries once more).
    #[inline(never)]
    fn pop_waiting(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        let result = wait_paced!(self, self.reader.ring, not_empty, until, |slow| match self
            .try_pop(buf)
        {
            Err(PopError::Empty) if slow && self.peer_gone() => {
                Some(match self.try_pop(buf) {
                    Err(PopError::Empty) => Err(PopError::Closed),
                    other => other,
                })
            }
            Err(PopError::Empty) => None,
            other => Some(other),
        });
        result.unwrap_or(Err(PopError::Timeout))
    }

    /// Closes the consumer side: the producer gets `Closed` from now on.
    pub fn close(&self) {
        close_ring(self.reader.ring.shared(), CONSUMER_CLOSED, &self.waiter);
    }

    /// Waits until the next record can be read, or until nothing ever will
    /// be, without consuming anything (what a pipe's `poll` needs).
    ///
    /// Returns `Ok(true)` when a record is there (or the ring looks
    /// corrupted: the next read reports it), `Ok(false)` when the ring is
    /// drained and its producer side closed, or the handle's [`Role`] said
    /// the producer is gone (asked on the slow path only, as in
    /// [`Producer::push`]).
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when `until` passes first.
    pub fn wait_readable(&mut self, until: Until) -> Result<bool, TimedOut> {
        wait_paced!(self, self.reader.ring, not_empty, until, |slow| self
            .check_readable(slow))
    }

    /// The check [`wait_readable`](Consumer::wait_readable) makes between
    /// its sleeps, for a caller that sleeps by other means (an async task
    /// on the ring's [`Ring::readable_word`]): `Some` as `wait_readable`
    /// answers, `None` to wait on. `slow`: also ask the handle's [`Role`]
    /// whether the producer is gone (a system call in the engine).
    pub fn check_readable(&mut self, slow: bool) -> Option<bool> {
        match self.next() {
            Ok(_) | Err(PopError::Corrupted(_)) => Some(true),
            Err(PopError::Closed) => Some(false),
            // Gone: one more look, for what it published before dying.
            Err(_) if slow && self.peer_gone() => Some(!matches!(
                self.next(),
                Err(PopError::Empty | PopError::Closed)
            )),
            Err(_) => None,
        }
    }

    /// Sets the spin budget and sleep slice of the blocking calls (the
    /// slice bounds how late a dead peer is noticed).
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// The spin budget and sleep slice of the blocking calls.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }

    /// Hands the handle its [`Role`] (replacing, and dropping, any earlier
    /// one): what its blocking calls ask on the slow path whether the
    /// process at the other end is gone, dropped with the handle.
    ///
    /// Returns `false`, and drops `role`, when the current role
    /// [holds a claim](Role::holds_claim) (a ring handle the engine made
    /// keeps the role it claimed for as long as it lives).
    pub fn set_role(&mut self, role: impl Role + 'static) -> bool {
        self.role.set(Box::new(role))
    }

    /// Whether the handle's [`Role`] says the other end is gone (never,
    /// without one). What the blocking calls ask on their slow path; a
    /// caller that gives up without sleeping may ask it too.
    pub fn peer_gone(&self) -> bool {
        self.role.peer_gone()
    }
}
