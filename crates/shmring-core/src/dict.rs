//! A hash table in shared memory for many writers in many processes, whose
//! every operation survives the death of its process at any instruction.
//!
//! # Layout
//!
//! ```text
//! DictShared (384 B) | index 0: buckets × u32 | index 1: buckets × u32 |
//! free stack: slots × u32 | slots × slot_words × u64
//! ```
//!
//! (each part 128-aligned). `slots = capacity + 1`: one spare, so replacing a
//! value in a full table still has a slot to write the new value into.
//!
//! * A **slot** holds one entry: word 0 the key's hash, word 1 `key_len`
//!   (low 32 bits) and `value_len` (high 32), then the key bytes, then the
//!   value bytes starting on the next word.
//! * A **bucket** of the active index is `0` (empty), [`TOMBSTONE`], or
//!   `slot + 1`. Linear probing from `hash & (buckets - 1)`.
//! * The **free stack** lists the slots no bucket refers to.
//!
//! # Writers, and why a crash leaves every key old or new
//!
//! Every operation runs under the robust lock in the header ([`LockShared`]),
//! readers included: one CAS to take it, one to give it back. A write never
//! changes an entry in place. It fills a free slot completely, then
//! *publishes* it with one atomic store into its bucket, then frees the slot
//! the bucket referred to before. Compaction (dropping tombstones) and
//! `clear` build the other index from scratch and publish it with one store
//! of `active`. So at every instant the active index says, for each key,
//! either its old value or its new one; everything else (the free stack,
//! `len`, `tombstones`) is derived state.
//!
//! A taker that finds the holder dead ([`Acquired::OwnerDied`]) runs
//! [`recover`](Table::lock): it rebuilds the derived state from the active
//! index — the free stack becomes exactly the slots no bucket refers to
//! (reclaiming a slot that was allocated but never published, or replaced
//! but not yet freed), `len` and `tombstones` are recounted. Recovery writes
//! only derived state, so a recovery killed half-way is simply run again by
//! the next taker. A panic inside an operation (a bug, or a test's
//! failpoint) runs the same recovery before the lock is given back.
//!
//! # Untrusted memory
//!
//! Every bucket, slot number, length and stack position read from the
//! segment is checked before use; a bad one is [`Corrupted`], never a panic
//! or an out-of-bounds access. Probes are bounded by the bucket count.

use core::ptr::NonNull;

use crate::error::Corrupted;
use crate::layout::{Padded, HOT_ALIGN};
use crate::lock::{Acquired, LockShared, FLAVOR_LOCK};
use crate::spsc::KeepAlive;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{TimedOut, Until, WaitHistory, WaitPolicy, Waiter};

/// Bucket value of a removed entry (probes continue past it).
pub const TOMBSTONE: u32 = u32::MAX;
/// Most entries a table may be configured for.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// Largest `max_key` or `max_value`, in bytes.
pub const MAX_ITEM: u32 = 1 << 24;

/// The shape of a table: fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictConfig {
    /// Most entries (1 to [`MAX_CAPACITY`]); one more insert is
    /// [`TableError::Full`].
    pub capacity: u32,
    /// Largest encoded key in bytes (1 to [`MAX_ITEM`]).
    pub max_key: u32,
    /// Largest encoded value in bytes (0 to [`MAX_ITEM`]).
    pub max_value: u32,
}

impl Default for DictConfig {
    fn default() -> Self {
        DictConfig {
            capacity: 1024,
            max_key: 64,
            max_value: 256,
        }
    }
}

/// Where the parts of a table lie in its region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DictLayout {
    /// Buckets per index (a power of two, at least `2 * capacity`).
    pub buckets: usize,
    /// Slots (`capacity + 1`).
    pub slots: usize,
    /// Words per slot.
    pub slot_words: usize,
    /// Offsets of index 0 and index 1.
    pub index_offset: [usize; 2],
    /// Offset of the free stack.
    pub free_offset: usize,
    /// Offset of the slots.
    pub slots_offset: usize,
    /// Bytes the region needs.
    pub total: usize,
}

impl DictLayout {
    /// The layout for `config`.
    ///
    /// # Errors
    ///
    /// A description of the invalid parameter.
    pub fn new(config: &DictConfig) -> Result<Self, &'static str> {
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            return Err("dict capacity must be between 1 and 2^24 entries");
        }
        if config.max_key == 0 || config.max_key > MAX_ITEM || config.max_value > MAX_ITEM {
            return Err("dict max_key must be 1 to 2^24 bytes and max_value at most 2^24");
        }
        let capacity = config.capacity as usize;
        let buckets = (capacity * 2).next_power_of_two().max(8);
        let slots = capacity + 1;
        let slot_words =
            2 + (config.max_key as usize).div_ceil(8) + (config.max_value as usize).div_ceil(8);
        let up = |n: usize| n.next_multiple_of(HOT_ALIGN);
        let index0 = up(core::mem::size_of::<DictShared>());
        let index1 = index0 + up(buckets * 4);
        let free_offset = index1 + up(buckets * 4);
        let slots_offset = free_offset + up(slots * 4);
        let total = slots
            .checked_mul(slot_words * 8)
            .and_then(|s| s.checked_add(slots_offset))
            .filter(|&t| t <= isize::MAX as usize)
            .ok_or("dict too large for the address space")?;
        Ok(DictLayout {
            buckets,
            slots,
            slot_words,
            index_offset: [index0, index1],
            free_offset,
            slots_offset,
            total,
        })
    }
}

/// The parameters, written once by the creator.
#[repr(C)]
#[derive(Debug, Default)]
struct Params {
    capacity: AtomicU64,
    max_key: AtomicU64,
    max_value: AtomicU64,
}

/// Derived and mutable state; written only under the lock.
#[repr(C)]
#[derive(Debug, Default)]
struct State {
    /// Which index is live: 0 or 1. Flipped by one Release store.
    active: AtomicU64,
    /// Live entries (derived: recounted by recovery).
    len: AtomicU64,
    /// Tombstones in the active index (derived).
    tombstones: AtomicU64,
    /// Entries on the free stack, `0..=slots` (derived).
    free_top: AtomicU64,
}

/// The header of a table in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct DictShared {
    lock: Padded<LockShared>,
    params: Padded<Params>,
    state: Padded<State>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<DictShared>() == 384);
    assert!(offset_of!(DictShared, params) == 128);
    assert!(offset_of!(DictShared, state) == 256);
};

/// Why a table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The key is new and the table already holds `capacity` entries.
    Full {
        /// The configured capacity.
        capacity: u32,
    },
    /// The encoded key is longer than `max_key`.
    KeyTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The encoded value is longer than `max_value`.
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The shared state is inconsistent.
    Corrupted(Corrupted),
}

impl From<Corrupted> for TableError {
    fn from(c: Corrupted) -> Self {
        TableError::Corrupted(c)
    }
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Full { capacity } => write!(f, "dict is full ({capacity} entries)"),
            TableError::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the maximum of {max} bytes")
            }
            TableError::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds the maximum of {max} bytes")
            }
            TableError::Corrupted(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for TableError {}

/// Why [`Table::lock`] did not return a guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockTableError {
    /// The deadline passed.
    Timeout,
    /// Recovery after a dead holder found the table inconsistent.
    Corrupted(Corrupted),
}

/// A hook called between the steps of a write, by name (tests use it to
/// kill the process or panic there).
pub type Failpoint = fn(&'static str);

/// A validated reference to a table and the keep-alive of its memory.
#[derive(Clone)]
pub struct Table {
    base: NonNull<u8>,
    layout: DictLayout,
    config: DictConfig,
    failpoint: Option<Failpoint>,
    _keep: KeepAlive,
}

// SAFETY: only shared references to atomics are handed out; the memory is
// shared between processes anyway.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

impl core::fmt::Debug for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// FNV-1a with a splitmix64 finaliser: the same in every process and every
/// build (std's hashers promise neither).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Allocates a zeroed, 128-aligned heap region of at least `len` bytes.
fn heap_region(len: usize) -> alloc::boxed::Box<[Padded<[AtomicU64; 16]>]> {
    (0..len.div_ceil(HOT_ALIGN))
        .map(|_| Padded(Default::default()))
        .collect()
}

/// A new table on the heap (tests, Miri, single-process use).
///
/// # Errors
///
/// The configuration is invalid.
pub fn heap(config: &DictConfig) -> Result<Table, &'static str> {
    let layout = DictLayout::new(config)?;
    let region = alloc::sync::Arc::new(heap_region(layout.total));
    let base = NonNull::from(&region[..]).cast::<u8>();
    // SAFETY: `region` is zeroed, 128-aligned, `layout.total` bytes or more,
    // and nobody else sees it yet; its atomics make writes through a shared
    // pointer legal.
    unsafe { Table::init_in_place(base, layout.total, config) }?;
    // SAFETY: `region` outlives every handle (it is the keep-alive).
    let table = unsafe { Table::attach_in_place(base, layout.total, region) };
    Ok(table.expect("a fresh heap table is consistent"))
}

#[cfg(not(loom))]
impl crate::layout::InPlace for Table {
    unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Self, Corrupted> {
        // SAFETY: forwarded from our caller (the same contract).
        unsafe { Table::attach_in_place(base, len, keep) }
    }
}

impl Table {
    /// Initialises a table in zeroed memory.
    ///
    /// # Safety
    ///
    /// `base` is valid for writes of `len` bytes, 128-aligned, zeroed, and not
    /// yet visible to anyone else.
    ///
    /// # Errors
    ///
    /// The configuration is invalid or does not fit in `len`.
    pub unsafe fn init_in_place(
        base: NonNull<u8>,
        len: usize,
        config: &DictConfig,
    ) -> Result<(), &'static str> {
        let layout = DictLayout::new(config)?;
        if layout.total > len {
            return Err("dict region too small for its configuration");
        }
        // SAFETY: zeroed, aligned, in bounds (caller + check above); all-zero
        // is a valid DictShared (atomics only).
        let shared = unsafe { base.cast::<DictShared>().as_ref() };
        shared.lock.init(FLAVOR_LOCK);
        // ORDERING: Relaxed — published by the segment's Release store of its
        // version (or by handing the heap table to other threads).
        shared
            .params
            .capacity
            .store(config.capacity.into(), Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        shared
            .params
            .max_key
            .store(config.max_key.into(), Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        shared
            .params
            .max_value
            .store(config.max_value.into(), Ordering::Relaxed);
        let table = Table {
            base,
            layout,
            config: *config,
            failpoint: None,
            _keep: alloc::sync::Arc::new(()),
        };
        table.rebuild().map_err(|_| "dict initialisation failed")
    }

    /// Attaches to a table another process initialised, checking its
    /// parameters against `len`.
    ///
    /// # Safety
    ///
    /// `base` is valid for reads and writes of `len` bytes, 128-aligned, for
    /// as long as `keep` lives, and others access it only atomically.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when a parameter is out of range or does not match.
    pub unsafe fn attach_in_place(
        base: NonNull<u8>,
        len: usize,
        keep: KeepAlive,
    ) -> Result<Table, Corrupted> {
        if len < core::mem::size_of::<DictShared>()
            || !(base.as_ptr() as usize).is_multiple_of(HOT_ALIGN)
        {
            return Err(Corrupted::new("dict region length", len as u64));
        }
        // SAFETY: in bounds and aligned (checked above); valid per the caller.
        let shared = unsafe { base.cast::<DictShared>().as_ref() };
        let param = |a: &AtomicU64, what| {
            // ORDERING: Relaxed — constants published with the segment.
            let v = a.load(Ordering::Relaxed);
            u32::try_from(v).map_err(|_| Corrupted::new(what, v))
        };
        let config = DictConfig {
            capacity: param(&shared.params.capacity, "dict capacity")?,
            max_key: param(&shared.params.max_key, "dict max_key")?,
            max_value: param(&shared.params.max_value, "dict max_value")?,
        };
        let layout = DictLayout::new(&config)
            .map_err(|_| Corrupted::new("dict config", config.capacity.into()))?;
        if layout.total != len {
            return Err(Corrupted::new("dict region length", len as u64));
        }
        Ok(Table {
            base,
            layout,
            config,
            failpoint: None,
            _keep: keep,
        })
    }

    /// The table's configuration.
    pub fn config(&self) -> DictConfig {
        self.config
    }

    /// Counts the entries the active index publishes, without taking the
    /// lock (for tools that must not take it, such as `shmring gc` deciding
    /// whether a table holds data). A snapshot, stale while others write;
    /// exact while nobody does, including after a writer died at any step
    /// (the active index always says each key's old or new value, while
    /// `len` is derived state a dead writer may have left stale).
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when the active-index word is out of range.
    pub fn count_entries(&self) -> Result<u64, Corrupted> {
        let index = self.index(self.active()?);
        let live = index
            .iter()
            // ORDERING: Acquire — pairs with the Release stores that publish
            // or retire a bucket (`dict/locked.rs`); only counted, never followed.
            .map(|bucket| bucket.load(Ordering::Acquire))
            .filter(|&v| v != 0 && v != TOMBSTONE)
            .count();
        Ok(live as u64)
    }

    /// Live entries, read without taking the lock: one load, O(1). A
    /// snapshot, as a queue's length is; exact while no write is between
    /// its steps. The count is derived state, so after a writer died in the
    /// middle of a write it may be stale until the next holder of the lock
    /// recovers the table; a hostile value is clamped to the capacity.
    /// ([`count_entries`](Table::count_entries) is exact after a crash too,
    /// at O(buckets).)
    pub fn len_unlocked(&self) -> usize {
        // ORDERING: Relaxed — a snapshot; nothing is read through it. The
        // holder's Release of the lock orders it for the next holder only.
        let len = self.shared().state.len.load(Ordering::Relaxed);
        len.min(u64::from(self.config.capacity)) as usize
    }

    /// The lock that serialises every operation.
    pub fn lock_state(&self) -> &LockShared {
        &self.shared().lock
    }

    /// Sets a hook called between the steps of every write (for crash tests).
    #[doc(hidden)]
    pub fn set_failpoint(&mut self, failpoint: Option<Failpoint>) {
        self.failpoint = failpoint;
    }

    /// Takes the table's lock as `token`, waiting as long as `until`
    /// allows, recovering first if the previous holder died. `history` is
    /// the caller's handle's (see [`LockShared::acquire_with`]).
    ///
    /// # Blocking
    ///
    /// As [`LockShared::acquire`]: [`Until::Now`] tries once (with one
    /// liveness probe of the holder) and never sleeps.
    ///
    /// # Errors
    ///
    /// [`LockTableError::Timeout`]; [`LockTableError::Corrupted`] when
    /// recovery finds garbage (the lock is released again).
    pub fn lock<'a, W: Waiter + ?Sized>(
        &'a self,
        token: u64,
        waiter: &'a W,
        until: Until,
        policy: &WaitPolicy,
        history: &mut WaitHistory,
        is_alive: &mut dyn FnMut(u64) -> bool,
    ) -> Result<Locked<'a, W>, LockTableError> {
        let lock = &self.shared().lock;
        // The caller serialises the users of one token (the engine's Dict
        // holds a process-local mutex around every call), so our own token
        // in the owner word can only be stale or forged by a hostile peer:
        // waiting for ourselves would hang forever. Treat it as a dead
        // holder's lock. (Found by reviewing what the segment_bytes fuzzer
        // had to steer around.)
        let got = if lock.owner() == token {
            Acquired::OwnerDied
        } else {
            lock.acquire_with(token, waiter, until, policy, history, is_alive)
                .map_err(|TimedOut| LockTableError::Timeout)?
        };
        let mut guard = Locked {
            table: self,
            token,
            waiter,
            dirty: false,
            recovered: false,
        };
        if got == Acquired::OwnerDied {
            guard.recovered = true;
            self.rebuild().map_err(LockTableError::Corrupted)?;
        }
        Ok(guard)
    }

    fn shared(&self) -> &DictShared {
        // SAFETY: `base` was checked to hold a DictShared at attach (or init)
        // and stays valid while `_keep` lives.
        unsafe { self.base.cast::<DictShared>().as_ref() }
    }

    fn index(&self, which: usize) -> &[AtomicU32] {
        let at = self.layout.index_offset[which & 1];
        // SAFETY: the layout was computed for (and checked against) the
        // region: `buckets` u32s at a 128-aligned offset inside it, all
        // accessed atomically.
        unsafe {
            core::slice::from_raw_parts(self.base.add(at).cast().as_ptr(), self.layout.buckets)
        }
    }

    fn free(&self) -> &[AtomicU32] {
        let at = self.layout.free_offset;
        // SAFETY: as `index`: `slots` u32s inside the region.
        unsafe { core::slice::from_raw_parts(self.base.add(at).cast().as_ptr(), self.layout.slots) }
    }

    fn slot(&self, slot: usize) -> Result<&[AtomicU64], Corrupted> {
        if slot >= self.layout.slots {
            return Err(Corrupted::new("dict slot number", slot as u64));
        }
        let at = self.layout.slots_offset + slot * self.layout.slot_words * 8;
        // SAFETY: slot < slots (checked), so the words lie inside the region
        // (total = slots_offset + slots * slot_words * 8); 8-aligned.
        Ok(unsafe {
            core::slice::from_raw_parts(self.base.add(at).cast().as_ptr(), self.layout.slot_words)
        })
    }

    fn active(&self) -> Result<usize, Corrupted> {
        // ORDERING: Acquire — pairs with the Release flip in `flip`; under
        // the lock the lock already orders it, this is belt and braces.
        match self.shared().state.active.load(Ordering::Acquire) {
            v @ (0 | 1) => Ok(v as usize),
            v => Err(Corrupted::new("dict active index", v)),
        }
    }

    fn fail(&self, point: &'static str) {
        if let Some(f) = self.failpoint {
            f(point);
        }
    }

    /// Recomputes the derived state (free stack, `len`, `tombstones`) from
    /// the active index. Idempotent; writes nothing the index depends on.
    fn rebuild(&self) -> Result<(), Corrupted> {
        let index = self.index(self.active()?);
        let mut used = alloc::vec![false; self.layout.slots];
        let (mut live, mut tombs) = (0u64, 0u64);
        for bucket in index {
            // ORDERING: Relaxed — we hold the lock (Acquire on taking it).
            match bucket.load(Ordering::Relaxed) {
                0 => {}
                TOMBSTONE => tombs += 1,
                v => {
                    let slot = (v - 1) as usize;
                    if slot >= used.len() || core::mem::replace(&mut used[slot], true) {
                        return Err(Corrupted::new("dict bucket", v.into()));
                    }
                    live += 1;
                }
            }
        }
        if live > u64::from(self.config.capacity) {
            return Err(Corrupted::new("dict live entries", live));
        }
        let free = self.free();
        let mut top = 0usize;
        for (slot, _) in used.iter().enumerate().filter(|(_, u)| !**u) {
            // ORDERING: Relaxed — under the lock; published by its release.
            free[top].store(slot as u32, Ordering::Relaxed);
            top += 1;
        }
        let state = &self.shared().state;
        // ORDERING: Relaxed — derived state under the lock.
        state.free_top.store(top as u64, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        state.len.store(live, Ordering::Relaxed);
        // ORDERING: Relaxed — as above.
        state.tombstones.store(tombs, Ordering::Relaxed);
        Ok(())
    }
}

mod locked;
pub use locked::Locked;
