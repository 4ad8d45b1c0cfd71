//! The MPMC queue's descriptor: its shape in the header, the queue at a
//! given offset of the object region (0 for a plain queue, after the task
//! table for a JoinableQueue).

use std::ptr::NonNull;

use shmring_core::error::Corrupted;
use shmring_core::mpmc::{self, QueueConfig, QueueLayout, MAX_RINGS};
use shmring_core::RingConfig;

use crate::descriptor::{ring_field, words, Describe, Descriptor, Region, Words};
use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus};
use crate::spsc::descriptor::has_data;

/// Header words: `[rings, capacity, max_record, max_len]`. The region is
/// one queue ([`QueueLayout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDescriptor {
    /// The queue's shape.
    pub(crate) config: QueueConfig,
    /// Bytes the queue takes (from the shape).
    len: usize,
}

impl QueueDescriptor {
    /// The descriptor of a queue of shape `config`.
    ///
    /// # Errors
    ///
    /// The shape is invalid.
    pub(crate) fn new(config: QueueConfig) -> Result<Self, shmring_core::error::ConfigError> {
        let len = QueueLayout::new(&config)?.total;
        Ok(QueueDescriptor { config, len })
    }

    /// Attaches to the queue that fills `region` from `at` on, checking it
    /// against this descriptor.
    ///
    /// # Errors
    ///
    /// The queue lies outside the region, fails validation or has another
    /// shape.
    pub(crate) fn attach_at(&self, region: &Region, at: usize) -> Result<mpmc::Queue, Corrupted> {
        let len = region.len().checked_sub(at).ok_or(Corrupted {
            what: "queue region",
            value: at as u64,
        })?;
        let queue = region.queue(at, len)?;
        let c = &self.config;
        if queue.ring_count() as u64 != c.rings
            || queue.ring_config() != c.ring
            || queue.max_len() != c.max_len
        {
            return Err(Corrupted {
                what: "queue config vs segment params",
                value: c.rings,
            });
        }
        Ok(queue)
    }

    /// Depth, data and the closed flag of the queue at `at` (see
    /// [`Describe::examine`]); the queue's length, for the task count of a
    /// JoinableQueue.
    pub(crate) fn examine_at(
        &self,
        region: &Region,
        at: usize,
        state: &mut ObjectState,
    ) -> Result<u64, Corrupted> {
        let queue = self.attach_at(region, at)?;
        let depth = queue.len();
        state.depth = Some(depth);
        state.holds_data = Some(has_data(depth, queue.is_empty()));
        state.details.push(("closed", u64::from(queue.is_closed())));
        Ok(depth)
    }
}

impl Describe for QueueDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        let c = &self.config;
        state.capacity = c.rings.checked_mul(c.ring.capacity);
        state.capacity_unit = "bytes";
        state.details = vec![
            ("rings", c.rings),
            ("ring_capacity", c.ring.capacity),
            ("max_record", c.ring.max_record),
            ("max_len", c.max_len),
        ];
    }

    fn examine(
        &self,
        region: &Region,
        _: &HeaderInfo,
        _: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        self.examine_at(region, 0, state).map(drop)
    }
}

impl Descriptor for QueueDescriptor {
    const KIND: ObjectKind = ObjectKind::MpmcQueue;

    fn encode(&self) -> Words {
        let c = &self.config;
        words(&[c.rings, c.ring.capacity, c.ring.max_record, c.max_len])
    }

    /// Every `max_len` is valid (0: no limit); the object's own copy is
    /// compared on attach.
    fn decode(w: &Words) -> Result<Self, Corrupted> {
        let [rings, capacity, max_record, max_len, ..] = *w;
        if rings == 0 || rings > MAX_RINGS {
            return Err(Corrupted {
                what: "queue rings",
                value: rings,
            });
        }
        let ring = RingConfig {
            capacity,
            max_record,
        };
        ring.validate().map_err(|e| {
            ring_field(
                e,
                ("queue ring capacity", capacity),
                ("queue max_record", max_record),
            )
        })?;
        let config = QueueConfig {
            rings,
            ring,
            max_len,
        };
        QueueDescriptor::new(config).map_err(|_| Corrupted {
            what: "queue rings",
            value: rings,
        })
    }

    fn object_len(&self) -> usize {
        self.len
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        // SAFETY: forwarded from the caller (zeroed, aligned, private).
        unsafe { mpmc::Queue::init_in_place(base, len, &self.config) }.map_err(|e| e.to_string())
    }
}
