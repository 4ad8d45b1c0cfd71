//! Where the checklist suites (`shmring-core/tests/spsc.rs`, `mpmc.rs`)
//! put the rings and queues they test: on the heap ([`Heap`], with the
//! thread waiter), or in a real memfd segment made by the engine
//! ([`Memfd`], with the futex waiter), so that the handles the engine hands
//! out get the same checklist as the core's heap ones.
//!
//! A suite is written once, generic over [`Memory`], and
//! [`on_every_memory!`](crate::on_every_memory) makes a test of each of its
//! functions for each memory.

use std::ptr::NonNull;
use std::sync::Arc;

use shmring::segment::{CreateOptions, ObjectKind, Segment};
use shmring::{FutexWaiter, SegmentError};
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::{self, QueueConfig, QueueLayout};
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::wait::Waiter;
use shmring_core::{ConfigError, RingConfig};

/// Memory to build rings and queues in, and the waiter their handles sleep
/// through.
pub trait Memory {
    /// The waiter handed to the handles. Clones of one waiter wake each
    /// other's sleepers; take one with [`waiter`](Memory::waiter) per test
    /// and clone it for every handle that may block.
    type Waiter: Waiter + Clone + Send + Sync + 'static;

    /// A fresh, empty ring.
    ///
    /// # Errors
    ///
    /// The configuration is invalid (the same errors for every memory).
    ///
    /// # Panics
    ///
    /// When the memory itself cannot be had (no memfd, out of memory).
    fn ring(config: &RingConfig) -> Result<spsc::Ring, ConfigError>;

    /// A fresh, empty queue.
    ///
    /// # Errors
    ///
    /// The configuration is invalid (the same errors for every memory).
    ///
    /// # Panics
    ///
    /// When the memory itself cannot be had (no memfd, out of memory).
    fn queue(config: &QueueConfig) -> Result<mpmc::Queue, ConfigError>;

    /// A waiter for the handles of one test.
    fn waiter() -> Self::Waiter;
}

/// Heap memory ([`shmring_core::heap`]) and the [`ThreadWaiter`]: what
/// loom and Miri can check.
#[derive(Debug)]
pub enum Heap {}

impl Memory for Heap {
    type Waiter = ThreadWaiter;

    fn ring(config: &RingConfig) -> Result<spsc::Ring, ConfigError> {
        heap::ring(config)
    }

    fn queue(config: &QueueConfig) -> Result<mpmc::Queue, ConfigError> {
        heap::queue(config)
    }

    fn waiter() -> ThreadWaiter {
        ThreadWaiter::default()
    }
}

/// An anonymous memfd segment made by the engine ([`Segment`]), laid out
/// and attached as the engine's own rings and queues are, with the futex
/// [`FutexWaiter`]: real shared memory and real futexes.
///
/// The segment's header parameters are left zero: nothing opens these
/// segments through the engine, the core handles attach to the object
/// region directly.
#[derive(Debug)]
pub enum Memfd {}

/// An anonymous segment of `kind` whose object region (`len` bytes) `init`
/// lays out.
fn segment(
    kind: ObjectKind,
    len: usize,
    init: impl FnOnce(NonNull<u8>, usize) -> Result<(), ConfigError>,
) -> Arc<Segment> {
    let segment =
        Segment::create_anonymous(kind, [0; 8], len, &CreateOptions::default(), |b, l| {
            init(b, l).map_err(|e| SegmentError::InvalidConfig {
                reason: e.to_string(),
            })
        });
    Arc::new(segment.expect("an anonymous segment"))
}

impl Memory for Memfd {
    type Waiter = FutexWaiter;

    fn ring(config: &RingConfig) -> Result<spsc::Ring, ConfigError> {
        let layout = SpscLayout::new(config)?;
        let segment = segment(ObjectKind::SpscRing, layout.total, |base, len| {
            // SAFETY: the engine hands `init` its fresh object region:
            // zeroed, page aligned, `len` bytes, reachable by nobody else.
            unsafe { spsc::Ring::init_in_place(base, len, config) }
        });
        let ring = segment.attach_object::<spsc::Ring>(0, segment.object_len());
        Ok(ring.expect("a ring just laid out attaches"))
    }

    fn queue(config: &QueueConfig) -> Result<mpmc::Queue, ConfigError> {
        let layout = QueueLayout::new(config)?;
        let segment = segment(ObjectKind::MpmcQueue, layout.total, |base, len| {
            // SAFETY: as in `ring`.
            unsafe { mpmc::Queue::init_in_place(base, len, config) }
        });
        let queue = segment.attach_object::<mpmc::Queue>(0, segment.object_len());
        Ok(queue.expect("a queue just laid out attaches"))
    }

    fn waiter() -> FutexWaiter {
        FutexWaiter::new()
    }
}

/// Makes a `#[test]` of each named suite function (generic over
/// [`Memory`]) for each memory: `heap::name` on [`Heap`], `memfd::name` on
/// [`Memfd`] (not under Miri, which has no memfd).
///
/// Attributes written before a name (`#[should_panic(..)]`) go on both of
/// its tests.
///
/// ```ignore
/// shmring_fuzz_support::on_every_memory!(
///     fill_then_drain_in_order,
///     #[should_panic(expected = "exceeds")]
///     a_write_past_the_reservation_panics,
/// );
/// fn fill_then_drain_in_order<M: Memory>() { /* ... */ }
/// ```
#[macro_export]
macro_rules! on_every_memory {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod heap {
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    super::$name::<$crate::memory::Heap>()
                }
            )*
        }
        #[cfg(not(miri))]
        mod memfd {
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    super::$name::<$crate::memory::Memfd>()
                }
            )*
        }
    };
}
