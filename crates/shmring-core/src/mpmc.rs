//! The multi-producer multi-consumer queue: one SPSC byte ring per producer.
//!
//! # Why per-producer rings
//!
//! In a single shared ring with stamped slots (Vyukov's design, crossbeam's
//! `ArrayQueue`), a producer killed between claiming a slot and publishing it
//! leaves a hole every consumer waits on forever. Here each producer process
//! owns one byte ring in the queue's segment; it is the only writer of that
//! ring's tail, so its death can leave only *published* records (delivered as
//! usual) and unpublished bytes past the tail (invisible, and overwritten by
//! whoever takes the ring over). Consumers take a record by copying it out
//! optimistically and then CAS-ing that ring's head past it; a lost CAS means
//! another consumer took it first, and the copy is discarded. A consumer
//! killed before its CAS took nothing; killed after it, it loses only the one
//! record it was taking. Nothing on the data path waits for anyone, so no
//! recovery protocol is needed. Producers never contend with each other,
//! which is also why this design scales: DESIGN.md's probe measured 45 → 135
//! M msgs/s from 1p1c to 4p4c where one shared ring fell from 27 to 8.
//!
//! Costs: FIFO holds per producer only (all Python promises); consumers scan
//! the rings (starting at a rotating index, for fairness); there is one
//! shared "not empty" wait word; `len` sums per-ring counts.
//!
//! # Racy copies
//!
//! A consumer may copy a record at the same moment another consumer takes it
//! and the producer reuses the space. The copy therefore goes through relaxed
//! atomic word loads (from 256 bytes on x86-64, one opaque `rep movsb`; see
//! `crate::bytes`): a torn value, never undefined behaviour. The header's stamp and a re-read of the head tell such a race
//! from real corruption; the CAS tells it from success.
//!
//! # Continuation records
//!
//! The producers here write only DATA records. A CONT record (see
//! [`crate::record`]), which only a hostile or foreign peer could put in a
//! queue's ring, is delivered like a DATA record: the mark means nothing to
//! a queue, and refusing it would gain nothing over a peer writing DATA.

use alloc::vec::Vec;
use core::ptr::NonNull;

use crate::error::{ConfigError, Corrupted};
use crate::layout::{Padded, HOT_ALIGN};
use crate::ring::{ring_count, ring_is_empty, RingConfig, RingRef, RingShared, Writer};
use crate::spsc::KeepAlive;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{WaitWord, Waiter, WAKE_ALL};

mod consumer;
mod producer;

pub use consumer::{Commit, Consumer, PeekToken, TakeHook};
pub use producer::Producer;

/// Most producer rings one queue can have.
pub const MAX_RINGS: u64 = 1024;

/// Flag in the queue's config block: closed.
const QUEUE_CLOSED: u32 = 1;

/// The shape of a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Producer rings: at most this many producers attached at once.
    pub rings: u64,
    /// Each producer ring's shape.
    pub ring: RingConfig,
    /// Most records queued at once, over all rings (Python's `maxsize`); 0
    /// means no limit beyond the rings' bytes. Exact with one producer; with
    /// several, concurrent pushes can overshoot by up to one per producer.
    pub max_len: u64,
}

impl QueueConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a bad ring count or ring shape.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rings == 0 || self.rings > MAX_RINGS {
            return Err(ConfigError::RingCount {
                count: self.rings,
                max: MAX_RINGS,
            });
        }
        self.ring.validate()
    }
}

/// Constants of the queue, written once by the creator.
#[repr(C)]
#[derive(Debug)]
pub struct QueueConfigBlock {
    rings: AtomicU64,
    ring_capacity: AtomicU64,
    max_record: AtomicU64,
    /// Most records queued at once; 0 = no limit.
    max_len: AtomicU64,
    /// `QUEUE_CLOSED`; bits only ever get set.
    flags: AtomicU32,
    /// Producer rings handed back so far (wrapping): each hand-back takes
    /// the next value and stamps its ring with it, so consumers can drain
    /// handed-back rings oldest first (see `mpmc::consumer`, "Order across
    /// rings"). Zero in a fresh queue.
    pub(crate) handbacks: AtomicU32,
    /// Hand-backs completed (wrapping): raised after each ring's owner word
    /// is cleared, so a consumer that finds it unchanged since it last saw
    /// every handed-back ring empty need not look at them again.
    pub(crate) handbacks_done: AtomicU32,
}

/// The queue's own control block, in front of the rings' control blocks.
#[repr(C)]
#[derive(Debug)]
pub struct QueueShared {
    config: Padded<QueueConfigBlock>,
    /// One past the highest ring index ever claimed (consumers scan below it).
    rings_in_use: Padded<AtomicU32>,
    /// Consumers sleep here when every ring is empty.
    pub(crate) not_empty: Padded<WaitWord>,
    /// Producers sleep here when their ring is full or the queue holds
    /// `max_len` records; every head move wakes it (if anyone sleeps),
    /// since a take from any ring can end a `max_len` wait, and taking a
    /// padding record frees the room its ring's producer waits for.
    pub(crate) space: Padded<WaitWord>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<QueueShared>() == 512);
    assert!(offset_of!(QueueShared, rings_in_use) == 128);
    assert!(offset_of!(QueueShared, not_empty) == 256);
    assert!(offset_of!(QueueShared, space) == 384);
    assert!(offset_of!(QueueConfigBlock, flags) == 32);
};

impl QueueShared {
    /// A fresh control block for `config` (heap queues, tests, loom).
    pub fn new(config: &QueueConfig) -> Self {
        QueueShared {
            config: Padded(QueueConfigBlock {
                rings: AtomicU64::new(config.rings),
                ring_capacity: AtomicU64::new(config.ring.capacity),
                max_record: AtomicU64::new(config.ring.max_record),
                max_len: AtomicU64::new(config.max_len),
                flags: AtomicU32::new(0),
                handbacks: AtomicU32::new(0),
                handbacks_done: AtomicU32::new(0),
            }),
            rings_in_use: Padded(AtomicU32::new(0)),
            not_empty: Padded(WaitWord::default()),
            space: Padded(WaitWord::default()),
        }
    }

    fn read_config(&self) -> Result<QueueConfig, Corrupted> {
        // ORDERING: Relaxed — constants published with the segment.
        let config = QueueConfig {
            rings: self.config.rings.load(Ordering::Relaxed),
            ring: RingConfig {
                capacity: self.config.ring_capacity.load(Ordering::Relaxed),
                max_record: self.config.max_record.load(Ordering::Relaxed),
            },
            max_len: self.config.max_len.load(Ordering::Relaxed),
        };
        config
            .validate()
            .map_err(|_| Corrupted::new("queue config", config.rings))?;
        Ok(config)
    }

    #[inline]
    pub(crate) fn closed(&self) -> bool {
        // ORDERING: Acquire — pairs with the Release `fetch_or` in `close`.
        self.config.flags.load(Ordering::Acquire) & QUEUE_CLOSED != 0
    }
}

/// Where the parts of a queue lie in a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Offset of the first ring control block.
    pub rings_offset: usize,
    /// Offset of the first ring's data area (ring `i` at `+ i * capacity`).
    pub data_offset: usize,
    /// Bytes the region needs.
    pub total: usize,
}

impl QueueLayout {
    /// The layout for `config`.
    ///
    /// # Errors
    ///
    /// The configuration is invalid.
    pub fn new(config: &QueueConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let rings_offset = core::mem::size_of::<QueueShared>().next_multiple_of(HOT_ALIGN);
        let data_offset = (rings_offset
            + config.rings as usize * core::mem::size_of::<RingShared>())
        .next_multiple_of(HOT_ALIGN);
        let total = (config.ring.capacity as usize)
            .checked_mul(config.rings as usize)
            .and_then(|d| d.checked_add(data_offset))
            .ok_or(ConfigError::RingCount {
                count: config.rings,
                max: MAX_RINGS,
            })?;
        Ok(QueueLayout {
            rings_offset,
            data_offset,
            total,
        })
    }
}

/// A validated reference to an MPMC queue and the keep-alive of its memory.
#[derive(Clone)]
pub struct Queue {
    shared: NonNull<QueueShared>,
    /// Checked copy of the constant `max_len`.
    max_len: u64,
    pub(crate) rings: alloc::sync::Arc<[RingRef]>,
    _keep: KeepAlive,
}

// SAFETY: only shared references to atomics are handed out; the memory is
// shared between processes anyway.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

impl core::fmt::Debug for Queue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Queue")
            .field("rings", &self.rings.len())
            .finish()
    }
}

impl Queue {
    /// Initialises a queue in zeroed memory.
    ///
    /// # Safety
    ///
    /// `base` is valid for writes of `len` bytes, aligned to 128, zeroed, and
    /// not yet visible to anyone else.
    ///
    /// # Errors
    ///
    /// The configuration is invalid or does not fit in `len`.
    #[cfg(not(loom))]
    pub unsafe fn init_in_place(
        base: NonNull<u8>,
        len: usize,
        config: &QueueConfig,
    ) -> Result<(), ConfigError> {
        let layout = QueueLayout::new(config)?;
        if layout.total > len {
            return Err(ConfigError::RingCount {
                count: config.rings,
                max: MAX_RINGS,
            });
        }
        // SAFETY: zeroed, aligned, in bounds (caller + check above); zero is a
        // valid bit pattern for these atomics-only structs.
        let shared = unsafe { base.cast::<QueueShared>().as_ref() };
        // ORDERING: Relaxed — published with the segment's version.
        shared.config.rings.store(config.rings, Ordering::Relaxed);
        shared
            .config
            .ring_capacity
            .store(config.ring.capacity, Ordering::Relaxed);
        shared
            .config
            .max_record
            .store(config.ring.max_record, Ordering::Relaxed);
        shared
            .config
            .max_len
            .store(config.max_len, Ordering::Relaxed);
        for i in 0..config.rings as usize {
            let at = layout.rings_offset + i * core::mem::size_of::<RingShared>();
            // SAFETY: inside the region (layout.total <= len), 128-aligned.
            let ring = unsafe { base.add(at).cast::<RingShared>().as_ref() };
            ring.init(&config.ring);
        }
        Ok(())
    }

    /// Attaches to a queue another process initialised, checking every
    /// parameter against `len`.
    ///
    /// # Safety
    ///
    /// As [`crate::spsc::Ring::attach_in_place`].
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when a parameter is out of range or does not match.
    #[cfg(not(loom))]
    pub unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Queue, Corrupted> {
        if len < core::mem::size_of::<QueueShared>()
            || !(base.as_ptr() as usize).is_multiple_of(HOT_ALIGN)
        {
            return Err(Corrupted::new("queue region length", len as u64));
        }
        // SAFETY: in bounds and aligned (checked above).
        let shared = unsafe { base.cast::<QueueShared>().as_ref() };
        let config = shared.read_config()?;
        let layout =
            QueueLayout::new(&config).map_err(|_| Corrupted::new("queue config", config.rings))?;
        if layout.total != len {
            return Err(Corrupted::new("queue region length", len as u64));
        }
        let words = (config.ring.capacity / 8) as usize;
        let mut rings = Vec::with_capacity(config.rings as usize);
        for i in 0..config.rings as usize {
            let at = layout.rings_offset + i * core::mem::size_of::<RingShared>();
            let data_at = layout.data_offset + i * config.ring.capacity as usize;
            // SAFETY: both offsets lie inside the region (layout.total == len).
            let (ring, data) = unsafe { (base.add(at).cast(), base.add(data_at).cast()) };
            // SAFETY: valid while `keep` lives, which every handle carries.
            let r = unsafe { RingRef::new(ring, data, words) }?;
            if r.max_record != config.ring.max_record {
                return Err(Corrupted::new("ring max_record vs queue", r.max_record));
            }
            rings.push(r);
        }
        Ok(Queue {
            shared: base.cast(),
            max_len: config.max_len,
            rings: rings.into(),
            _keep: keep,
        })
    }

    /// Attaches to control blocks and data that live apart (heap queues).
    ///
    /// # Safety
    ///
    /// `shared`, the `config.rings` ring blocks at `rings`, and the data
    /// (`rings * capacity / 8` words, ring after ring) stay valid while `keep`
    /// lives and are accessed by others only atomically or by this protocol.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when parameters are out of range or do not match.
    pub unsafe fn from_parts(
        shared: NonNull<QueueShared>,
        rings: NonNull<RingShared>,
        data: NonNull<AtomicU64>,
        keep: KeepAlive,
    ) -> Result<Queue, Corrupted> {
        // SAFETY: valid per the caller.
        let config = unsafe { shared.as_ref() }.read_config()?;
        let words = (config.ring.capacity / 8) as usize;
        let mut refs = Vec::with_capacity(config.rings as usize);
        for i in 0..config.rings as usize {
            // SAFETY: the caller provides `rings` blocks and data for each.
            let r = unsafe { RingRef::new(rings.add(i), data.add(i * words), words) }?;
            refs.push(r);
        }
        Ok(Queue {
            shared,
            max_len: config.max_len,
            rings: refs.into(),
            _keep: keep,
        })
    }

    #[inline(always)]
    pub(crate) fn shared(&self) -> &QueueShared {
        // SAFETY: valid while `keep` lives, and we hold it.
        unsafe { self.shared.as_ref() }
    }

    /// Rings consumers must scan: checked against the ring count.
    #[inline]
    pub(crate) fn rings_in_use(&self) -> usize {
        // ORDERING: Acquire — pairs with the Release `fetch_max` in
        // `claim_producer`, so a newly claimed ring's state is visible.
        let n = self.shared().rings_in_use.load(Ordering::Acquire) as usize;
        n.min(self.rings.len())
    }

    /// Python's `maxsize`: most records queued at once (0 = no limit).
    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    /// Number of producer rings.
    pub fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// The ring shape.
    pub fn ring_config(&self) -> RingConfig {
        RingConfig {
            capacity: self.rings[0].capacity,
            max_record: self.rings[0].max_record,
        }
    }

    /// Claims a producer ring for the attachment `token` (nonzero): a free
    /// one, or else one whose owner `is_dead` says has died (its published
    /// records stay and are delivered first).
    ///
    /// # Errors
    ///
    /// [`ClaimError::NoFreeRing`] when every ring has a live owner.
    pub fn claim_producer<W: Waiter + Clone>(
        &self,
        token: u64,
        waiter: W,
        is_dead: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Producer<W>, ClaimError> {
        if token == 0 {
            return Err(ClaimError::InvalidToken);
        }
        let owner = |i: usize| &self.rings[i].shared().config.producer_owner;
        let mut slot = None;
        for i in 0..self.rings.len() {
            // ORDERING: AcqRel — Acquire pairs with the Release store of 0 by
            // the previous owner's drop (its tail is then visible); Release
            // is not needed by anyone but is harmless.
            if owner(i)
                .compare_exchange(0, token, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                slot = Some(i);
                break;
            }
        }
        if slot.is_none() {
            for i in 0..self.rings.len() {
                // ORDERING: Acquire — see above.
                let current = owner(i).load(Ordering::Acquire);
                if current != 0
                    && current != token
                    && is_dead(current)
                    // ORDERING: AcqRel — as for the free claim.
                    && owner(i)
                        .compare_exchange(current, token, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    slot = Some(i);
                    break;
                }
            }
        }
        let Some(i) = slot else {
            return Err(ClaimError::NoFreeRing {
                rings: self.rings.len(),
            });
        };
        // ORDERING: Release — pairs with the Acquire in `rings_in_use`.
        self.shared()
            .rings_in_use
            .fetch_max(i as u32 + 1, Ordering::Release);
        match Writer::attach(self.rings[i], true) {
            Ok(writer) => Ok(Producer {
                writer,
                slot: i,
                token,
                queue: self.clone(),
                waiter,
                policy: crate::wait::WaitPolicy::default(),
                history: crate::wait::WaitHistory::default(),
            }),
            Err(c) => {
                // ORDERING: Release — hands the ring back.
                let _ = owner(i).compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed);
                Err(ClaimError::Corrupted(c))
            }
        }
    }

    /// A consumer handle. Any number may exist, in any processes.
    pub fn consumer<W: Waiter + Clone>(&self, waiter: W) -> Consumer<W> {
        Consumer::new(self.clone(), waiter)
    }

    /// Number of records queued: the sum over the rings in use of each
    /// ring's count, exact for a quiescent queue whatever deaths happened.
    ///
    /// Each ring's count comes from two loads, its head word first, then
    /// its tail word: the records published by the second load and not yet
    /// taken at the first. It is exactly the ring's count at the instant
    /// its head word was read when no record was published on that ring in
    /// between, and never less than the count at either load. A position
    /// and its count move in one atomic operation (see [`crate::ring`]), so
    /// a producer or consumer killed at any instruction leaves them
    /// consistent: no death skews this, once or cumulatively. The rings are
    /// read one after the other, so on a busy queue the sum is a snapshot
    /// of no single instant. A ring whose words are inconsistent (a hostile
    /// peer) counts 0; [`checked_len`](Queue::checked_len) reports it.
    ///
    /// Cost: two loads per ring in use, no write.
    #[inline]
    pub fn len(&self) -> u64 {
        // Saturating: hostile counts must not overflow (ring_ops fuzz
        // finding; each is below 2^26 now, and there are at most 1024).
        self.rings[..self.rings_in_use()]
            .iter()
            .fold(0u64, |n, r| n.saturating_add(ring_count(r).unwrap_or(0)))
    }

    /// [`len`](Queue::len), or the first ring whose words are inconsistent.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when a ring's counts say more records than its
    /// positions have room for.
    pub fn checked_len(&self) -> Result<u64, Corrupted> {
        self.rings[..self.rings_in_use()]
            .iter()
            .try_fold(0u64, |n, r| Ok(n.saturating_add(ring_count(r)?)))
    }

    /// Whether every ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.rings[..self.rings_in_use()].iter().all(ring_is_empty)
    }

    /// The wait word consumers sleep on while every ring is empty; every
    /// publish wakes it (if anyone sleeps), and so does [`close`](Queue::close).
    ///
    /// Read-only access for layers that run their own [`block_on`] loop
    /// around this queue (sleeping without holding a lock of theirs), with
    /// [`WaitWord::wake_if_waiting`] for their own wakes.
    ///
    /// [`block_on`]: crate::wait::block_on
    pub fn not_empty_word(&self) -> &WaitWord {
        &self.shared().not_empty
    }

    /// The wait word producers sleep on while their ring is full or the
    /// queue holds `max_len` records; every head move (a record or a
    /// padding record taken) wakes it (if anyone sleeps), and so does
    /// [`close`](Queue::close). See [`not_empty_word`](Queue::not_empty_word).
    pub fn space_word(&self) -> &WaitWord {
        &self.shared().space
    }

    /// A take's *intent*: ring `ring` and the head word `head` its CAS
    /// expects (what a [`TakeHook`] is told), in one word for a slot in
    /// shared memory. [`intent_taken`](Self::intent_taken) later tells
    /// whether that head moved on.
    ///
    /// ```text
    /// bits 54..64  ring index (< MAX_RINGS)
    /// bits 38..54  the low 16 bits of the head word's record count
    /// bits  0..38  the head word's position
    /// ```
    pub fn take_intent(ring: usize, head: u64) -> u64 {
        const _: () = assert!(MAX_RINGS <= 1 << 10);
        ((ring as u64) << 54) | (head & ((1 << 54) - 1))
    }

    /// Whether the head word of the ring an intent names has moved on from
    /// the head it names (the record there was taken, by someone), or the
    /// intent is not one this queue can have made (a hostile slot): `true`
    /// means "cannot say it was not taken". `false` only when the head is
    /// still exactly there: the take never happened.
    ///
    /// A head that came back to the same position and count (low 16 bits)
    /// after 2^38 words of traffic would read as unmoved; see the ABA note
    /// in [`crate::ring`].
    pub fn intent_taken(&self, intent: u64) -> bool {
        let Some(ring) = self.rings.get((intent >> 54) as usize) else {
            return true;
        };
        // ORDERING: Acquire — pairs with the consumers' AcqRel CAS of the
        // head word; a later head is seen if the caller's earlier Acquire
        // reads (of the slot that holds the intent) saw anything after it.
        let head = ring.shared().consumer.head.load(Ordering::Acquire);
        head & ((1 << 54) - 1) != intent & ((1 << 54) - 1)
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.shared().closed()
    }

    /// Closes the queue: producers get `Closed`, consumers drain what is
    /// left and then get `Closed`. Every sleeper wakes.
    pub fn close<W: Waiter + ?Sized>(&self, waiter: &W) {
        // ORDERING: Release — pairs with the Acquire in `closed`.
        self.shared()
            .config
            .flags
            .fetch_or(QUEUE_CLOSED, Ordering::Release);
        self.shared().not_empty.wake_now(waiter, WAKE_ALL);
        self.shared().space.wake_now(waiter, WAKE_ALL);
    }

    /// The tail and head words of ring `ring` (see [`crate::ring`] for
    /// their packing), for tests and fuzzers that start a queue elsewhere
    /// than at 0 or play a hostile peer.
    ///
    /// Public for the reason given at
    /// [`spsc::Ring::position_words`](crate::spsc::Ring::position_words):
    /// any process mapping the queue can store into them, and the handles
    /// read them as untrusted.
    ///
    /// # Panics
    ///
    /// If `ring` is not below [`ring_count`](Queue::ring_count).
    pub fn position_words(&self, ring: usize) -> (&AtomicU64, &AtomicU64) {
        let shared = self.rings[ring].shared();
        (&shared.producer.tail, &shared.consumer.head)
    }

    /// The owner token of each producer ring (0 = free), for inspection.
    pub fn ring_owners(&self) -> Vec<u64> {
        self.rings
            .iter()
            // ORDERING: Relaxed — a snapshot for display.
            .map(|r| r.shared().config.producer_owner.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(not(loom))]
impl crate::layout::InPlace for Queue {
    unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Self, Corrupted> {
        // SAFETY: forwarded from our caller (the same contract).
        unsafe { Queue::attach_in_place(base, len, keep) }
    }
}

/// Why no producer ring could be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// Every ring has a live owner.
    NoFreeRing {
        /// How many rings the queue has.
        rings: usize,
    },
    /// Token 0 means "free" and cannot own a ring.
    InvalidToken,
    /// The claimed ring's state is inconsistent.
    Corrupted(Corrupted),
}

impl core::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClaimError::NoFreeRing { rings } => {
                write!(f, "all {rings} producer rings are owned by live producers")
            }
            ClaimError::InvalidToken => f.write_str("peer token 0 cannot own a ring"),
            ClaimError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for ClaimError {}
