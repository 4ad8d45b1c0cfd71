//! Python's `Manager().dict()` without a server process: a hash table in a
//! segment that every process with a handle reads and writes directly.
//!
//! Keys and values are any [`Message`]s, stored as their encodings, up to
//! the sizes fixed at creation (the builder's `capacity`, `max_key`, `max_value`). Every operation takes the
//! table's robust lock (one CAS in, one out, no system call when
//! uncontended), so each is atomic, and [`Dict::update_with`] gives an atomic
//! read-modify-write (the ticket counter of the examples). The algorithm and
//! layout are [`shmring_core::dict`].
//!
//! ```
//! use shmring::dict::{Dict, DictError};
//!
//! let d: Dict<String, u64> = Dict::new()?;
//! d.insert(&"tickets".to_string(), &1)?;
//! let left = d.update_with(&"tickets".to_string(), |n| n.map(|n| n.saturating_sub(1)))?;
//! assert_eq!(left, Some(0));
//! assert_eq!(d.pop(&"missing".to_string()), Err(DictError::KeyNotFound));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Coming from Python
//!
//! | Python | shmring |
//! |---|---|
//! | `d[k]` / `d.get(k)` | [`get_item`](Dict::get_item) (`KeyNotFound`) / [`get`](Dict::get) |
//! | `d[k] = v` / `del d[k]` | [`insert`](Dict::insert) / [`remove`](Dict::remove) (both return the old value) |
//! | `k in d`, `len(d)` | [`contains_key`](Dict::contains_key), [`len`](Dict::len) (no lock, infallible) |
//! | `keys()`, `values()`, `items()` (lists) | `Vec`s |
//! | `pop(k)`, `popitem()`, `setdefault`, `update`, `clear`, `copy()` | same names; `copy` is [`to_hash_map`](Dict::to_hash_map) |
//! | `KeyError`, `KeyError('popitem(): dictionary is empty')` | [`DictError::KeyNotFound`], [`DictError::Empty`] |
//!
//! Unlike a manager's dict, a table has a fixed capacity and size limits
//! ([`DictError::Full`], [`DictError::KeyTooLarge`],
//! [`DictError::ValueTooLarge`]), and `popitem` removes *some* entry, not
//! the last inserted.
//!
//! # Crash behaviour
//!
//! A process killed inside any operation leaves every key with its old or
//! its new value, and the table consistent: a write fills a free slot before
//! publishing it with one atomic store, and the next process to take the
//! lock is told the holder died and rebuilds the table's bookkeeping
//! (reclaiming a slot that was written but never published) before its own
//! operation. Nobody waits more than one liveness slice (100 ms) for a dead
//! holder. A multi-key operation (`update`, `clear` aside, which is atomic)
//! killed half-way leaves the keys it reached updated.
//!
//! # Failpoints (testing)
//!
//! When the environment variable `SHMRING_DICT_FAILPOINT` is set to
//! `NAME:N` as a handle attaches, that handle kills its own process with
//! `SIGKILL` at the `N`-th time (counting in this process) a write reaches
//! the failpoint `NAME` (`dict:slot-allocated`, `dict:slot-written`,
//! `dict:published`, `dict:slot-freeing`, `dict:index-written`,
//! `dict:flipped`). The variable is read once; unset, it costs nothing.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shmring_core::dict::{LockTableError, Locked, Table, TableError};
use shmring_core::wait::{SharedHistory, Until, WaitPolicy};
use shmring_core::Corrupted;

use shmring_core::dict::{DictConfig, MAX_CAPACITY, MAX_ITEM};

use crate::codec::{CodecError, Message};
use crate::descriptor::{Descriptor, Region};
use crate::object::{impl_segment_constructors, Builder, CreateError, OpenError, SegmentObject};
use crate::segment::Segment;
use crate::sys::FutexWaiter;
use descriptor::DictDescriptor;

/// Why a dict operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DictError {
    /// The key is not there (Python's `KeyError`).
    KeyNotFound,
    /// `popitem` on an empty dict (Python's
    /// `KeyError('popitem(): dictionary is empty')`).
    Empty,
    /// A new key, and the table already holds `capacity` entries.
    Full {
        /// The configured capacity.
        capacity: u32,
    },
    /// The encoded key is longer than the table's `max_key`.
    KeyTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The encoded value is longer than the table's `max_value`.
    ValueTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A key or value could not be encoded, or stored bytes not decoded.
    Codec(CodecError),
    /// The table in shared memory is inconsistent.
    Corrupted(Corrupted),
    /// Called on a thread that already holds this dict's lock: from inside
    /// the closure of [`Dict::update_with`], through any handle of the same
    /// dict. Waiting would wait for itself forever.
    Reentrant,
    /// The table's lock stayed held past the handle's lock timeout
    /// ([`Dict::set_lock_timeout`]; never without one). Nothing was changed.
    Timeout,
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DictError::KeyNotFound => f.write_str("key not found"),
            DictError::Empty => f.write_str("popitem(): dictionary is empty"),
            DictError::Full { capacity } => write!(f, "dict is full ({capacity} entries)"),
            DictError::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes exceeds the maximum of {max} bytes")
            }
            DictError::ValueTooLarge { len, max } => {
                write!(f, "value of {len} bytes exceeds the maximum of {max} bytes")
            }
            DictError::Codec(e) => e.fmt(f),
            DictError::Corrupted(e) => e.fmt(f),
            DictError::Reentrant => {
                f.write_str("dict used inside its own update_with on this thread")
            }
            DictError::Timeout => f.write_str("timed out waiting for the dict's lock"),
        }
    }
}

impl std::error::Error for DictError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DictError::Codec(e) => Some(e),
            DictError::Corrupted(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TableError> for DictError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Full { capacity } => DictError::Full { capacity },
            TableError::KeyTooLarge { len, max } => DictError::KeyTooLarge { len, max },
            TableError::ValueTooLarge { len, max } => DictError::ValueTooLarge { len, max },
            TableError::Corrupted(c) => DictError::Corrupted(c),
        }
    }
}

impl From<Corrupted> for DictError {
    fn from(e: Corrupted) -> Self {
        DictError::Corrupted(e)
    }
}

impl From<CodecError> for DictError {
    fn from(e: CodecError) -> Self {
        DictError::Codec(e)
    }
}

/// A hash table shared between processes. Clones share one attachment.
///
/// # Blocking
///
/// Every method but [`len`](Dict::len) and [`is_empty`](Dict::is_empty)
/// takes the table's lock, waiting while another process (or another thread
/// of this one) holds it (a few microseconds per operation), or up to one
/// liveness slice when the holder died. A live holder that does not let go
/// (stopped, or in a long [`update_with`](Dict::update_with)) makes it wait
/// as long as it holds on, unless the handle has a lock timeout
/// ([`set_lock_timeout`](Dict::set_lock_timeout): then the call fails with
/// [`DictError::Timeout`] and changes nothing). The wait is one setting of
/// the handle rather than four forms of every method, as a database
/// session's `lock_timeout`: a dict operation never waits for the *data*
/// (there is no "full" or "empty" to wait out), only for the lock. The only
/// user code run with the lock held is `update_with`'s closure and the key
/// and value codecs ([`Message`]); a call on the same dict from there is
/// [`DictError::Reentrant`], never a wait for itself.
///
/// # Errors
///
/// A call that returns an error has changed nothing (`update` aside, which
/// may have inserted the pairs before the failing one, as in Python): in
/// particular, a write that replaces or removes a value decodes it first,
/// and fails with `Codec` before writing when it does not decode.
///
/// # Crash behaviour
///
/// See the [module docs](self).
///
/// # Examples
///
/// ```
/// use shmring::dict::Dict;
///
/// let d = Dict::<String, u64>::new()?;
/// d.insert(&"apples".to_string(), &3)?;
/// d.update_with(&"apples".to_string(), |n| Some(n.unwrap_or(0) + 1))?;
/// assert_eq!(d.get(&"apples".to_string())?, Some(4));
/// assert_eq!(d.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dict<K, V> {
    table: Table,
    segment: Arc<Segment>,
    /// Serialises this attachment's callers (clones share it): see
    /// `held.rs`.
    local: Arc<held::LocalLock>,
    policy: WaitPolicy,
    /// What this attachment's waits for the table's lock learned (clones
    /// share it).
    history: Arc<SharedHistory>,
    /// How long an operation may wait for the lock (`set_lock_timeout`).
    lock_until: Until,
    /// Counts this attachment's futex calls; `segment` keeps it valid.
    waiter: FutexWaiter,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            table: self.table.clone(),
            segment: self.segment.clone(),
            local: self.local.clone(),
            policy: self.policy,
            history: self.history.clone(),
            lock_until: self.lock_until,
            waiter: self.waiter,
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dict")
            .field("config", &self.table.config())
            .field("segment", &self.segment)
            .finish()
    }
}

/// `SHMRING_DICT_FAILPOINT`, parsed once: `(name, n)`.
fn failpoint_setting() -> Option<&'static (String, u64)> {
    static SETTING: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SETTING
        .get_or_init(|| {
            let v = std::env::var("SHMRING_DICT_FAILPOINT").ok()?;
            let (name, n) = v.rsplit_once(':')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .as_ref()
}

/// The failpoint hook: SIGKILL at the configured hit.
fn failpoint(point: &'static str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    let Some((name, n)) = failpoint_setting() else {
        return;
    };
    // ORDERING: Relaxed — a counter only this process uses.
    if name == point && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
        // SAFETY: getpid and kill have no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

impl<K: Message, V: Message> SegmentObject for Dict<K, V> {
    type Descriptor = DictDescriptor;
    type Config = DictConfig;

    fn descriptor(config: &DictConfig) -> Result<DictDescriptor, CreateError> {
        let invalid = |option, reason: String| CreateError::InvalidOption { option, reason };
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            let reason = format!("{} must be between 1 and {MAX_CAPACITY}", config.capacity);
            return Err(invalid("capacity", reason));
        }
        if config.max_key == 0 || config.max_key > MAX_ITEM {
            let reason = format!("{} must be between 1 and {MAX_ITEM} bytes", config.max_key);
            return Err(invalid("max_key", reason));
        }
        if config.max_value > MAX_ITEM {
            let reason = format!("{} must be at most {MAX_ITEM} bytes", config.max_value);
            return Err(invalid("max_value", reason));
        }
        DictDescriptor::new(*config).map_err(|reason| invalid("capacity", reason.to_string()))
    }

    fn attach(segment: Arc<Segment>) -> Result<Self, OpenError> {
        let descriptor = DictDescriptor::decode(&segment.params())?;
        let mut table = descriptor.attach(&Region::of_segment(&segment))?;
        if failpoint_setting().is_some() {
            table.set_failpoint(Some(failpoint));
        }
        Ok(Dict {
            table,
            local: Arc::default(),
            policy: WaitPolicy::default(),
            history: Arc::default(),
            lock_until: Until::Never,
            waiter: segment.waiter(),
            segment,
            _types: PhantomData,
        })
    }
}

impl_segment_constructors!([K: Message, V: Message] Dict<K, V>, "dict");

impl<K: Message, V: Message> Builder<Dict<K, V>> {
    /// Most entries (default 1024, at most 2^24); one more insert is
    /// [`DictError::Full`].
    pub fn capacity(mut self, entries: u32) -> Self {
        self.config.capacity = entries;
        self
    }

    /// Largest encoded key in bytes (default 64, 1 to 2^24).
    pub fn max_key(mut self, bytes: u32) -> Self {
        self.config.max_key = bytes;
        self
    }

    /// Largest encoded value in bytes (default 256, at most 2^24).
    pub fn max_value(mut self, bytes: u32) -> Self {
        self.config.max_value = bytes;
        self
    }
}

impl<K: Message, V: Message> Dict<K, V> {
    /// A new anonymous dict of the default shape (1024 entries, keys up to
    /// 64 bytes, values up to 256), to hand to children (Python's
    /// `Manager().dict()`); [`Dict::builder`] sets the shape, a name, or
    /// opens one.
    ///
    /// # Errors
    ///
    /// The segment could not be created (`/dev/shm` full, descriptor
    /// limit).
    pub fn new() -> Result<Dict<K, V>, CreateError> {
        Dict::builder().anonymous()
    }
}

pub(crate) mod descriptor;
mod held;
mod mapping;
