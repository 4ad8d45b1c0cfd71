//! The SPSC ring's descriptor: its shape in the header, the ring filling
//! the object region.

use std::ptr::NonNull;

use shmring_core::error::Corrupted;
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::RingConfig;

use crate::descriptor::{ring_field, words, Describe, Descriptor, Region, Words};
use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus};

/// Header words: `[capacity, max_record]`. The region is one ring
/// ([`SpscLayout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingDescriptor {
    /// The ring's shape.
    pub(crate) ring: RingConfig,
    /// Bytes of the region (from the shape).
    len: usize,
}

impl RingDescriptor {
    /// The descriptor of a ring of shape `ring`.
    ///
    /// # Errors
    ///
    /// The shape is invalid.
    pub(crate) fn new(ring: RingConfig) -> Result<Self, shmring_core::error::ConfigError> {
        let len = SpscLayout::new(&ring)?.total;
        Ok(RingDescriptor { ring, len })
    }

    /// Attaches to the ring in `region`, checking it against this
    /// descriptor.
    ///
    /// # Errors
    ///
    /// The ring fails validation or has another shape.
    pub(crate) fn attach(&self, region: &Region) -> Result<spsc::Ring, Corrupted> {
        let ring = region.ring(0, region.len())?;
        if ring.config() != self.ring {
            return Err(Corrupted {
                what: "ring config vs segment params",
                value: ring.config().capacity,
            });
        }
        Ok(ring)
    }
}

/// Whether a ring or queue holds a message, by either measure: its counters
/// (`len`, which a killed producer may leave one short) or its positions
/// (`is_empty`, published records only). Either one saying "something" is
/// enough: removing it could lose data.
pub(crate) fn has_data(len: u64, empty: bool) -> bool {
    len != 0 || !empty
}

impl Describe for RingDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        state.capacity = Some(self.ring.capacity);
        state.capacity_unit = "bytes";
        state.details = vec![("max_record", self.ring.max_record)];
    }

    fn examine(
        &self,
        region: &Region,
        _: &HeaderInfo,
        _: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        let ring = self.attach(region)?;
        state.depth = Some(ring.len());
        state.holds_data = Some(has_data(ring.len(), ring.is_empty()));
        Ok(())
    }
}

impl Descriptor for RingDescriptor {
    const KIND: ObjectKind = ObjectKind::SpscRing;

    fn encode(&self) -> Words {
        words(&[self.ring.capacity, self.ring.max_record])
    }

    fn decode(w: &Words) -> Result<Self, Corrupted> {
        let ring = RingConfig {
            capacity: w[0],
            max_record: w[1],
        };
        RingDescriptor::new(ring)
            .map_err(|e| ring_field(e, ("ring capacity", w[0]), ("ring max_record", w[1])))
    }

    fn object_len(&self) -> usize {
        self.len
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        // SAFETY: forwarded from the caller (zeroed, aligned, private).
        unsafe { spsc::Ring::init_in_place(base, len, &self.ring) }.map_err(|e| e.to_string())
    }
}
