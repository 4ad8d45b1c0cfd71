//! The kind-specific figures of [`super::ObjectState`]: what the header's
//! parameters say, and what only the object itself can tell (depth, lock
//! owner), read through a mapping made for the occasion.

use std::fs::File;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use shmring_core::dict::Table;
use shmring_core::lock::LockShared;
use shmring_core::mpmc::{self, QueueConfig, QueueLayout};
use shmring_core::spsc::{self, KeepAlive, SpscLayout};
use shmring_core::tasks::TaskCounter;
use shmring_core::RingConfig;

use super::{open_shm_file, HeaderInfo, ObjectState, PeerStatus};
use crate::segment::{peers, ObjectKind};
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
/// be mapped.
pub(super) fn object_state(
    source: Source<'_>,
    h: &HeaderInfo,
    peers: &[PeerStatus],
) -> ObjectState {
    let p = h.params;
    let mut state = ObjectState::default();
    let bytes = |state: &mut ObjectState, capacity: Option<u64>| {
        state.capacity = capacity;
        state.capacity_unit = "bytes";
    };
    match h.kind {
        ObjectKind::SpscRing => {
            bytes(&mut state, Some(p[0]));
            state.details = vec![("max_record", p[1])];
        }
        ObjectKind::MpmcQueue | ObjectKind::JoinableQueue => {
            bytes(&mut state, p[0].checked_mul(p[1]));
            state.details = vec![
                ("rings", p[0]),
                ("ring_capacity", p[1]),
                ("max_record", p[2]),
                ("max_len", p[3]),
            ];
        }
        ObjectKind::Pipe => {
            bytes(&mut state, p[1].checked_mul(1 + u64::from(p[0] == 1)));
            state.details = vec![("duplex", p[0]), ("max_record", p[2])];
        }
        ObjectKind::Dict => {
            state.capacity = Some(p[0]);
            state.capacity_unit = "entries";
            state.details = vec![("max_key", p[1]), ("max_value", p[2])];
        }
        ObjectKind::Lock => state.details = vec![("flavor", p[0])],
    }
    let examined = map_object(source, h).and_then(|map| examine(map, h, peers, &mut state));
    if let Err(note) = examined {
        state.note = Some(note);
    }
    state
}

/// Maps the object region of the source's file (read-write, as the core's
/// `attach_in_place` requires; nothing is written through it).
fn map_object(source: Source<'_>, h: &HeaderInfo) -> Result<MmapRaw, String> {
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
    MmapOptions::new()
        .offset(h.object_offset)
        .len(h.object_len as usize)
        .map_raw(file)
        .map_err(|e| not_examined(format!("mmap: {e}")))
}

/// Whether a ring or queue holds a message, by either measure: its counters
/// (`len`, which a killed producer may leave one short) or its positions
/// (`is_empty`, published records only). Either one saying "something" is
/// enough: removing it could lose data.
fn has_data(len: u64, empty: bool) -> bool {
    len != 0 || !empty
}

fn corrupted(c: shmring_core::Corrupted) -> String {
    format!("object fails validation: {c}")
}

/// An SPSC ring at `at..at + ring_len` of the mapped region.
fn ring_at(
    base: NonNull<u8>,
    at: usize,
    ring_len: usize,
    keep: &KeepAlive,
) -> Result<spsc::Ring, String> {
    // The caller checked `at + ring_len <= len` of the mapping `keep` holds
    // (shared, read-write, page aligned; attach_in_place re-checks the
    // alignment it needs).
    // SAFETY: in bounds and valid while `keep` lives; other processes use it
    // only atomically, through the ring protocol; we only read.
    unsafe { spsc::Ring::attach_in_place(base.add(at), ring_len, keep.clone()) }.map_err(corrupted)
}

/// An MPMC queue at `at..len` of the mapped region (`len` bytes).
fn queue_at(
    base: NonNull<u8>,
    at: usize,
    len: usize,
    keep: &KeepAlive,
) -> Result<mpmc::Queue, String> {
    if at > len {
        return Err(corrupted(shmring_core::Corrupted {
            what: "queue offset",
            value: at as u64,
        }));
    }
    // `len` is the length of the mapping `keep` holds (shared, read-write,
    // page aligned; attach_in_place re-checks the alignment it needs).
    // SAFETY: `at <= len` (checked above), so in bounds and valid while
    // `keep` lives; other processes use it only atomically; we only read.
    unsafe { mpmc::Queue::attach_in_place(base.add(at), len - at, keep.clone()) }.map_err(corrupted)
}

/// Reads the object's live figures into `state`.
fn examine(
    map: MmapRaw,
    h: &HeaderInfo,
    peers: &[PeerStatus],
    state: &mut ObjectState,
) -> Result<(), String> {
    let len = map.len();
    let base = NonNull::new(map.as_mut_ptr()).ok_or("object not examined: empty mapping")?;
    let keep: KeepAlive = Arc::new(map);
    let p = h.params;
    match h.kind {
        ObjectKind::SpscRing => {
            let ring = ring_at(base, 0, len, &keep)?;
            state.depth = Some(ring.len());
            state.holds_data = Some(has_data(ring.len(), ring.is_empty()));
        }
        ObjectKind::MpmcQueue => {
            let queue = queue_at(base, 0, len, &keep)?;
            state.depth = Some(queue.len());
            state.holds_data = Some(has_data(queue.len(), queue.is_empty()));
            state.details.push(("closed", u64::from(queue.is_closed())));
        }
        ObjectKind::JoinableQueue => {
            let config = QueueConfig {
                rings: p[0],
                ring: RingConfig {
                    capacity: p[1],
                    max_record: p[2],
                },
                max_len: p[3],
            };
            let queue_len = QueueLayout::new(&config)
                .map_err(|e| {
                    corrupted(shmring_core::Corrupted {
                        what: "queue config",
                        value: p[0],
                    }) + &format!(" ({e})")
                })?
                .total;
            let at = len
                .checked_sub(queue_len)
                .filter(|&at| at >= size_of::<TaskCounter>());
            let at = at.ok_or_else(|| {
                corrupted(shmring_core::Corrupted {
                    what: "joinable queue length",
                    value: len as u64,
                })
            })?;
            let queue = queue_at(base, at, len, &keep)?;
            let depth = queue.len();
            state.depth = Some(depth);
            state.holds_data = Some(has_data(depth, queue.is_empty()));
            state.details.push(("closed", u64::from(queue.is_closed())));
            let unfinished = crate::queue::unfinished_in_region(base, at, h.peer_rows, depth)
                .ok_or_else(|| {
                    corrupted(shmring_core::Corrupted {
                        what: "joinable queue task region",
                        value: at as u64,
                    })
                })?;
            state.details.push(("unfinished_tasks", unfinished));
        }
        ObjectKind::Pipe => {
            let ring = RingConfig {
                capacity: p[1],
                max_record: p[2],
            };
            let bad = |value| {
                corrupted(shmring_core::Corrupted {
                    what: "pipe layout",
                    value,
                })
            };
            let ring_len = SpscLayout::new(&ring).map_err(|_| bad(p[1]))?.total;
            if p[0] > 1 {
                return Err(bad(p[0]));
            }
            let mut depth = 0u64;
            let mut holds = false;
            for i in 0..=p[0] {
                let at = i.checked_mul(p[3]).and_then(|at| usize::try_from(at).ok());
                let at = at.filter(|at| at.checked_add(ring_len).is_some_and(|end| end <= len));
                let at = at.ok_or_else(|| bad(p[3]))?;
                let ring = ring_at(base, at, ring_len, &keep)?;
                depth = depth.saturating_add(ring.len());
                holds |= has_data(ring.len(), ring.is_empty());
            }
            state.depth = Some(depth);
            state.holds_data = Some(holds);
        }
        ObjectKind::Lock => {
            if len < size_of::<LockShared>() {
                return Err(corrupted(shmring_core::Corrupted {
                    what: "lock region length",
                    value: len as u64,
                }));
            }
            // Page aligned, at least size_of::<LockShared>() bytes (checked
            // above) of the mapping `keep` holds past this block.
            // SAFETY: in bounds, aligned, valid while used; LockShared is
            // all atomics: any bytes and concurrent writers are fine.
            let shared = unsafe { base.cast::<LockShared>().as_ref() };
            state.holds_data = Some(false);
            state.details.push(("recoveries", shared.recoveries()));
            if let Some((row, generation)) = peers::split_token(shared.owner()) {
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
        }
        ObjectKind::Dict => {
            // `len` is the mapping `keep` holds (shared, read-write, page
            // aligned; attach_in_place checks alignment and length).
            // SAFETY: valid for `len` bytes while `keep` lives; others use
            // it only atomically, through the table's protocol; we only
            // read (without the lock: counting needs none).
            let table =
                unsafe { Table::attach_in_place(base, len, keep.clone()) }.map_err(corrupted)?;
            let entries = table.count_entries().map_err(corrupted)?;
            state.depth = Some(entries);
            state.holds_data = Some(entries > 0);
            state.details.push(("entries", entries));
        }
    }
    drop(keep);
    Ok(())
}
