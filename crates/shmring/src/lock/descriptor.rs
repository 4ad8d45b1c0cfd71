//! The lock's descriptor: its flavor in the header, one [`LockShared`] at
//! the start of the object region.

use std::mem::size_of;
use std::ptr::NonNull;

use shmring_core::error::Corrupted;
use shmring_core::lock::{LockShared, FLAVOR_LOCK, FLAVOR_RLOCK};

use crate::descriptor::{words, Describe, Descriptor, Region, Words};
use crate::segment::{split_token, HeaderInfo, ObjectKind, ObjectState, PeerStatus};

/// Header words: `[flavor]` ([`FLAVOR_LOCK`] or [`FLAVOR_RLOCK`]). The
/// region starts with one [`LockShared`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockDescriptor {
    /// [`FLAVOR_LOCK`] or [`FLAVOR_RLOCK`].
    pub(crate) flavor: u64,
}

impl LockDescriptor {
    /// The lock's shared state in `region`, checked against this
    /// descriptor. Borrowed from `region`: valid while it lives.
    ///
    /// # Errors
    ///
    /// The region is too short, or the lock has another flavor.
    pub(crate) fn shared<'r>(&self, region: &'r Region) -> Result<&'r LockShared, Corrupted> {
        let base = region.part("lock region length", 0, size_of::<LockShared>())?;
        // Page aligned (the region's start) and in bounds (checked by
        // `part`); LockShared is all atomics, valid for any bytes and
        // concurrent writers.
        // SAFETY: valid while `region` (whose keep-alive holds the mapping)
        // lives, which the returned borrow cannot outlive.
        let shared = unsafe { base.cast::<LockShared>().as_ref() };
        if shared.flavor() != self.flavor {
            return Err(Corrupted {
                what: "lock flavor (Lock vs RLock)",
                value: shared.flavor(),
            });
        }
        Ok(shared)
    }
}

impl Describe for LockDescriptor {
    fn describe(&self, state: &mut ObjectState) {
        state.details = vec![("flavor", self.flavor)];
    }

    fn examine(
        &self,
        region: &Region,
        _: &HeaderInfo,
        peers: &[PeerStatus],
        state: &mut ObjectState,
    ) -> Result<(), Corrupted> {
        let shared = self.shared(region)?;
        state.details.push(("recoveries", shared.recoveries()));
        if let Some((row, generation)) = split_token(shared.owner()) {
            let holder = peers
                .iter()
                .find(|p| p.row == row && p.generation == generation);
            state.details.push(("owner_row", row.into()));
            state
                .details
                .push(("owner_pid", holder.map_or(0, |p| p.pid.into())));
            state
                .details
                .push(("owner_alive", u64::from(holder.is_some_and(|p| p.alive))));
        }
        Ok(())
    }
}

impl Descriptor for LockDescriptor {
    const KIND: ObjectKind = ObjectKind::Lock;

    fn encode(&self) -> Words {
        words(&[self.flavor])
    }

    fn decode(w: &Words) -> Result<Self, Corrupted> {
        match w[0] {
            flavor @ (FLAVOR_LOCK | FLAVOR_RLOCK) => Ok(LockDescriptor { flavor }),
            value => Err(Corrupted {
                what: "lock flavor",
                value,
            }),
        }
    }

    fn object_len(&self) -> usize {
        size_of::<LockShared>()
    }

    unsafe fn init(&self, base: NonNull<u8>, len: usize) -> Result<(), String> {
        if len < size_of::<LockShared>() {
            return Err("lock region too short".into());
        }
        // SAFETY: the caller gives us zeroed, page-aligned memory of `len`
        // bytes, at least size_of::<LockShared>() (checked above); zero is a
        // valid LockShared (atomics only).
        unsafe { base.cast::<LockShared>().as_ref() }.init(self.flavor);
        Ok(())
    }
}
