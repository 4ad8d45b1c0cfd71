//! Attaching the core's objects to a segment's object region, for code
//! outside the crate (the fuzz and checklist memories); the safety is
//! argued once, in [`crate::descriptor::Region::attach`].

use std::sync::Arc;

use shmring_core::layout::InPlace;
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
        crate::descriptor::Region::of_segment(self).attach("object region", offset, len)
    }
}
