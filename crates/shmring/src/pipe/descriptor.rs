//! The pipe's descriptor: direction and ring shape in the header, and where
//! its one or two rings lie in the object region.

use std::ptr::NonNull;

use shmring_core::error::{ConfigError, Corrupted};
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::RingConfig;

use crate::descriptor::{ring_field, words, Describe, Descriptor, Region, Words};
use crate::segment::{HeaderInfo, ObjectKind, ObjectState, PeerStatus};
use crate::spsc::descriptor::has_data;

/// Smallest fragment (`max_record`): a half-read message is never empty,
/// and a zero fragment would make every record a continuation.
pub(crate) const MIN_FRAGMENT: u64 = 8;

/// Header words: `[duplex (0 or 1), capacity, max_record, stride]`. The
/// region holds ring 0 at 0 and, for a duplex pipe, ring 1 at `stride`
/// (each ring [`SpscLayout`]; `stride` is a ring's length rounded up to a
/// page, so each ring starts on its own page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeDescriptor {
    /// Whether there are two rings (one per direction).
    pub(crate) duplex: bool,
    /// Each ring's shape.
    pub(crate) ring: RingConfig,
    /// Bytes of one ring.
    ring_len: usize,
    /// Offset of ring 1.
    stride: usize,
}

impl PipeDescriptor {
    /// The descriptor of a pipe with `1 + duplex` rings of shape `ring`.
    ///
    /// # Errors
    ///
    /// The ring shape is invalid. (The pipe's configuration refuses
    /// fragments under [`MIN_FRAGMENT`] before; decoding checks it.)
    pub(crate) fn new(duplex: bool, ring: RingConfig) -> Result<Self, ConfigError> {
        let ring_len = SpscLayout::new(&ring)?.total;
        Ok(PipeDescriptor {
            duplex,
            ring,
            ring_len,
            stride: ring_len.next_multiple_of(4096),
        })
    }

    /// Number of rings: 1, or 2 for a duplex pipe.
    pub(crate) fn ring_count(&self) -> usize {
        1 + usize::from(self.duplex)
    }

    /// Offset of ring `i` (`i < ring_count()`).
    fn ring_offset(&self, i: usize) -> usize {
        i * self.stride
    }

    /// Attaches to every ring of the pipe in `region`, checking each against
    /// this descriptor.
    ///
    /// # Errors
    ///
    /// The region has another length, or a ring fails validation or has
    /// another shape.
    pub(crate) fn rings(&self, region: &Region) -> Result<Vec<spsc::Ring>, Corrupted> {
        if region.len() != self.object_len() {
            return Err(Corrupted {
                what: "pipe layout vs segment",
                value: region.len() as u64,
            });
        }
        (0..self.ring_count())
            .map(|i| {
                let ring = region.ring(self.ring_offset(i), self.ring_len)?;
                if ring.config() != self.ring {
                    return Err(Corrupted {
                        what: "pipe ring config vs segment params",
                        value: ring.config().capacity,
                    });
                }
                Ok(ring)
            })
            .collect()
    }
}

impl Describe for PipeDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        let rings = self.ring_count() as u64;
        state.capacity = self.ring.capacity.checked_mul(rings);
        state.capacity_unit = "bytes";
        state.details = vec![
            ("duplex", u64::from(self.duplex)),
            ("max_record", self.ring.max_record),
        ];
    }

    fn examine(
        &self,
        region: &Region,
        _: &HeaderInfo,
        _: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        let mut depth = 0u64;
        let mut holds = false;
        for ring in self.rings(region)? {
            depth = depth.saturating_add(ring.len());
            holds |= has_data(ring.len(), ring.is_empty());
        }
        state.depth = Some(depth);
        state.holds_data = Some(holds);
        Ok(())
    }
}

impl Descriptor for PipeDescriptor {
    const KIND: ObjectKind = ObjectKind::Pipe;

    fn encode(&self) -> Words {
        let r = &self.ring;
        words(&[
            u64::from(self.duplex),
            r.capacity,
            r.max_record,
            self.stride as u64,
        ])
    }

    fn decode(w: &Words) -> Result<Self, Corrupted> {
        let [duplex, capacity, max_record, stride, ..] = *w;
        if duplex > 1 {
            return Err(Corrupted {
                what: "pipe duplex flag",
                value: duplex,
            });
        }
        if max_record < MIN_FRAGMENT {
            return Err(Corrupted {
                what: "pipe fragment_bytes",
                value: max_record,
            });
        }
        let ring = RingConfig {
            capacity,
            max_record,
        };
        let descriptor = PipeDescriptor::new(duplex == 1, ring).map_err(|e| {
            ring_field(
                e,
                ("pipe ring capacity", capacity),
                ("pipe fragment_bytes", max_record),
            )
        })?;
        if stride != descriptor.stride as u64 {
            return Err(Corrupted {
                what: "pipe stride",
                value: stride,
            });
        }
        Ok(descriptor)
    }

    fn object_len(&self) -> usize {
        self.ring_offset(self.ring_count() - 1) + self.ring_len
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        for i in 0..self.ring_count() {
            let offset = self.ring_offset(i);
            if offset + self.ring_len > len {
                return Err("pipe rings do not fit the object region".into());
            }
            // SAFETY: offset + ring_len <= len (checked above), so in bounds.
            let ring_base = unsafe { base.add(offset) };
            // SAFETY: forwarded from the caller (zeroed, page-aligned,
            // private); `offset` is a multiple of 4096, so still aligned.
            unsafe { spsc::Ring::init_in_place(ring_base, self.ring_len, &self.ring) }
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
