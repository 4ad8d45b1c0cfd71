//! The kind-specific figures of [`super::ObjectState`]: the object region
//! mapped for the occasion, and the kind's descriptor asked for its figures
//! (each kind's layout is known only to its own module, see
//! [`crate::descriptor`]).

use std::fs::File;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::MmapOptions;
use shmring_core::error::Corrupted;

use super::{open_shm_file, HeaderInfo, ObjectState, PeerStatus};
use crate::descriptor::{self, Region};
use crate::sys::shm;

/// Which file the object is read from.
pub(super) enum Source<'a> {
    /// The file `name` names, if it is still the one with this device and
    /// inode (opened read-write for the occasion).
    Name(&'a str, (u64, u64)),
    /// A read-write descriptor the caller holds (`reclaim`, under locks).
    File(&'a File),
}

/// The figures the header's parameters give, then those only the object
/// itself can tell (depth, lock owner, whether it holds data), when it can
/// be mapped. Both come from the kind's descriptor (see
/// [`crate::descriptor`]); parameters that fail to decode leave only a
/// note saying which field is corrupted.
pub(super) fn object_state(
    source: Source<'_>,
    h: &HeaderInfo,
    peers: &[PeerStatus],
) -> ObjectState {
    let mut state = ObjectState {
        holds_data: descriptor::holds_no_data(h.kind).then_some(false),
        ..ObjectState::default()
    };
    let examined = descriptor::decode(h.kind, &h.params)
        .map_err(corrupted)
        .and_then(|d| {
            d.describe(&mut state);
            let region = map_object(source, h)?;
            d.examine(&region, h, peers, &mut state).map_err(corrupted)
        });
    if let Err(note) = examined {
        state.note = Some(note);
    }
    state
}

fn corrupted(c: Corrupted) -> String {
    format!("object fails validation: {c}")
}

/// Maps the object region of the source's file (read-write, as the core's
/// `attach_in_place` requires; nothing is written through it).
fn map_object(source: Source<'_>, h: &HeaderInfo) -> Result<Region, String> {
    let not_examined = |why: String| format!("object not examined: {why}");
    let opened;
    let file = match source {
        Source::Name(name, (dev, ino)) => {
            let (_, file) = open_shm_file(name, true).map_err(|e| not_examined(e.to_string()))?;
            let st = shm::stat(&file).map_err(|e| not_examined(e.to_string()))?;
            if (st.dev, st.ino) != (dev, ino) {
                return Err(not_examined("the name was given to another file".into()));
            }
            opened = file;
            &opened
        }
        Source::File(file) => file,
    };
    let st = shm::stat(file).map_err(|e| not_examined(e.to_string()))?;
    if st.size != h.total_len {
        return Err(not_examined(format!("the file was resized to {}", st.size)));
    }
    // Validated: object_offset + object_len <= total_len <= isize::MAX.
    let map = MmapOptions::new()
        .offset(h.object_offset)
        .len(h.object_len as usize)
        .map_raw(file)
        .map_err(|e| not_examined(format!("mmap: {e}")))?;
    let (base, len) = (map.as_mut_ptr(), map.len());
    let base = NonNull::new(base).ok_or_else(|| not_examined("empty mapping".into()))?;
    // SAFETY: a fresh shared mapping of `len` bytes at `base` (page aligned),
    // which the region's keep-alive owns; other processes use it only
    // atomically.
    Ok(unsafe { Region::new(base, len, Arc::new(map)) })
}
