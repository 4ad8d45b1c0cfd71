//! Table operations against a `HashMap`, with dead lock holders and
//! scribbled derived state on the way.

use std::collections::HashMap;

use crate::input::Input;
use shmring_core::dict::{self, DictConfig, LockTableError, Table, TableError};
use shmring_core::heap::ThreadWaiter;
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::wait::{Deadline, Until, WaitHistory, WaitPolicy};

/// Offset of the table's derived state (`len`, `tombstones`, `free_top`
/// follow `active`) in its header; pinned by the asserts in `dict`.
const STATE: usize = 256;

/// Overwrites derived word `word` (1 = len, 2 = tombstones, 3 = free_top)
/// of `table`, as a buggy peer or a crash half-way through a write would.
fn scribble_state(table: &Table, word: usize, mut value: u64) {
    if crate::known::DICT_TOMBSTONES_OVERFLOW && word == 2 {
        value &= u64::from(u32::MAX);
    }
    let base = core::ptr::from_ref(table.lock_state()).cast::<u8>();
    // The lock is the first field of the table header (offset 0), so
    // `base` is the header; the heap table lives as long as `table`.
    // SAFETY: STATE + 8 * word (word <= 3) lies inside the header's 384
    // bytes, 8-aligned, and those words are atomics.
    let slot = unsafe { &*base.add(STATE + 8 * word).cast::<AtomicU64>() };
    // ORDERING: Relaxed — a single-threaded scribble; the next lock orders it.
    slot.store(value, Ordering::Relaxed);
}

/// The table's `tombstones` word as it is.
fn tombstones(table: &Table) -> u64 {
    let base = core::ptr::from_ref(table.lock_state()).cast::<u8>();
    // SAFETY: as in `scribble_state`.
    let slot = unsafe { &*base.add(STATE + 16).cast::<AtomicU64>() };
    // ORDERING: Relaxed — single-threaded.
    slot.load(Ordering::Relaxed)
}

fn key(input: &mut Input<'_>, max: u32) -> Vec<u8> {
    let id = input.byte();
    let len = usize::from(id) % (max as usize + 2);
    (0..len).map(|i| id ^ (i as u8)).collect()
}

/// Runs table operations decoded from `data` on a heap table and checks
/// them against a `HashMap`. Dead holders are recovered (the model must
/// still hold); scribbled derived state without recovery ends the
/// comparison, and from then on only errors (never panics) are allowed.
///
/// # Panics
///
/// When the table and the model disagree while the model is trusted.
pub fn dict_ops(data: &[u8]) {
    let mut input = Input::new(data);
    let config = DictConfig {
        capacity: 1 + u32::from(input.byte() % 24),
        max_key: 1 + u32::from(input.byte() % 12),
        max_value: u32::from(input.byte() % 24),
    };
    let table = dict::heap(&config).expect("valid config");
    let waiter = ThreadWaiter::default();
    let policy = WaitPolicy::default();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut trusted = true;
    let mut token = 1u64;
    let mut died = false;
    let mut seq = 0u8;
    while let Some(op) = input.op() {
        if crate::known::DICT_TOMBSTONES_OVERFLOW && !trusted {
            // A wrong count can also wrap below zero by itself (a removal
            // decrements it): keep it below 2^32 before every operation.
            scribble_state(&table, 2, tombstones(&table));
        }
        // Every token but the current one is dead.
        let current = token;
        let mut alive = |t| t == current;
        let got = table.lock(
            token,
            &waiter,
            Until::At(Deadline(0)),
            &policy,
            &mut WaitHistory::default(),
            &mut alive,
        );
        let expect_recovery = core::mem::take(&mut died);
        let mut guard = match got {
            Ok(g) => g,
            Err(LockTableError::Corrupted(_)) if !trusted => continue,
            Err(e) => panic!("lock: {e:?}"),
        };
        assert_eq!(guard.recovered(), expect_recovery, "owner died");
        let k = key(&mut input, config.max_key);
        let ok = match op % 10 {
            0..=2 => {
                let vlen = usize::from(input.byte()) % (config.max_value as usize + 2);
                seq = seq.wrapping_add(1);
                let value = vec![seq; vlen];
                let mut old = Vec::new();
                let got = guard.insert(&k, &value, Some(&mut old));
                check_insert(&config, &mut model, &k, value, got, &old, trusted)
            }
            3 | 4 => {
                let mut v = Vec::new();
                let got = guard.get(&k, &mut v);
                !trusted
                    || got == Ok(model.contains_key(&k)) && model.get(&k).is_none_or(|m| *m == v)
            }
            5 => {
                let mut v = Vec::new();
                let got = guard.remove(&k, Some(&mut v));
                let m = if trusted { model.remove(&k) } else { None };
                !trusted || got == Ok(m.is_some()) && m.is_none_or(|m| m == v)
            }
            6 => {
                let (mut pk, mut pv) = (Vec::new(), Vec::new());
                match guard.pop_first(&mut pk, &mut pv) {
                    Ok(true) => !trusted || model.remove(&pk) == Some(pv),
                    Ok(false) => !trusted || model.is_empty(),
                    Err(_) => !trusted,
                }
            }
            7 => {
                let mut seen = HashMap::new();
                let got = guard.for_each(|k, v| {
                    seen.insert(k.to_vec(), v.to_vec());
                });
                !trusted || got.is_ok() && seen == model && guard.len() == model.len()
            }
            8 => {
                let got = guard.clear();
                model.clear();
                !trusted || got.is_ok()
            }
            _ => {
                let what = input.byte();
                let value = input.u64();
                if what.is_multiple_of(2) {
                    // The holder dies: the next taker recovers the table.
                    core::mem::forget(guard);
                    token += 1;
                    died = true;
                    if what.is_multiple_of(4) {
                        scribble_state(&table, 1 + usize::from(what / 4) % 3, value);
                    }
                    continue;
                }
                scribble_state(&table, 1 + usize::from(what / 2) % 3, value);
                trusted = false;
                true
            }
        };
        assert!(ok, "dict op {} disagrees with the model", op % 10);
        assert!(!trusted || guard.len() == model.len(), "dict len");
    }
}

fn check_insert(
    config: &DictConfig,
    model: &mut HashMap<Vec<u8>, Vec<u8>>,
    k: &[u8],
    value: Vec<u8>,
    got: Result<bool, TableError>,
    old: &[u8],
    trusted: bool,
) -> bool {
    if !trusted {
        return true;
    }
    let expected = if k.len() > config.max_key as usize {
        Err(TableError::KeyTooLarge {
            len: k.len(),
            max: config.max_key,
        })
    } else if value.len() > config.max_value as usize {
        Err(TableError::ValueTooLarge {
            len: value.len(),
            max: config.max_value,
        })
    } else if let Some(prev) = model.get(k) {
        if prev != old {
            return false;
        }
        model.insert(k.to_vec(), value);
        Ok(true)
    } else if model.len() >= config.capacity as usize {
        Err(TableError::Full {
            capacity: config.capacity,
        })
    } else {
        model.insert(k.to_vec(), value);
        Ok(false)
    };
    got == expected
}
