//! Attaching the core's objects to a segment's object region: the one
//! place that argues why handing a piece of the mapping to a core object's
//! `attach_in_place` is sound.

use std::sync::Arc;

use shmring_core::layout::{InPlace, HOT_ALIGN};
use shmring_core::Corrupted;

use super::Segment;

impl Segment {
    /// Attaches a core object (a ring, a queue, a dict table) to the `len`
    /// bytes at `offset` of the object region. The object and every handle
    /// made from it keep this segment, and so its mapping, alive.
    ///
    /// # Errors
    ///
    /// [`Corrupted`] when `offset..offset + len` does not lie in the object
    /// region or `offset` is not 128-byte aligned, or when the object
    /// refuses what it finds there (its own checks of length and
    /// parameters).
    pub fn attach_object<T: InPlace>(
        self: &Arc<Self>,
        offset: usize,
        len: usize,
    ) -> Result<T, Corrupted> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.object_len())
        {
            return Err(Corrupted {
                what: "object region bounds",
                value: offset as u64,
            });
        }
        if !offset.is_multiple_of(HOT_ALIGN) {
            return Err(Corrupted {
                what: "object region alignment",
                value: offset as u64,
            });
        }
        let keep: shmring_core::spsc::KeepAlive = self.clone();
        // SAFETY: `object_ptr` is the page-aligned start of the object
        // region, which the segment maps (shared, read-write) for as long
        // as it lives; `offset..offset + len` lies inside it (checked
        // above), so the pointer stays in the mapping and the `len` bytes
        // after it are valid for reads and writes. `keep` is this segment:
        // it holds the mapping alive for the object and every handle made
        // from it (each carries a clone). Other processes touch the region
        // only through atomics and the object's own protocol; a hostile one
        // can make the object read garbage, which its attach and its
        // operations check, never break memory safety here.
        unsafe { T::attach_in_place(self.object_ptr().add(offset), len, keep) }
    }
}
