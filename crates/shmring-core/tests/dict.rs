//! The shared hash table on the heap: behaviour against a `HashMap` model,
//! limits, tombstone churn, and consistency after an operation interrupted
//! at every failpoint or abandoned by a "dead" holder.
#![cfg(not(loom))]

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;
use shmring_core::dict::{self, DictConfig, Locked, Table, TableError};
use shmring_core::heap::ThreadWaiter;
use shmring_core::wait::{Until, WaitHistory, WaitPolicy};

type Model = HashMap<Vec<u8>, Vec<u8>>;

fn lock<'a>(t: &'a Table, token: u64, w: &'a ThreadWaiter) -> Locked<'a, ThreadWaiter> {
    t.lock(
        token,
        w,
        Until::Never,
        &WaitPolicy::default(),
        &mut WaitHistory::default(),
        &mut |_| true,
    )
    .unwrap()
}

/// Everything in the table, checking that no key appears twice and that
/// `len` agrees.
fn contents(t: &Table, w: &ThreadWaiter) -> Model {
    let g = lock(t, 1, w);
    let mut m = HashMap::new();
    g.for_each(|k, v| assert!(m.insert(k.to_vec(), v.to_vec()).is_none()))
        .unwrap();
    assert_eq!(g.len(), m.len());
    m
}

fn small() -> DictConfig {
    DictConfig {
        capacity: 8,
        max_key: 8,
        max_value: 16,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, Vec<u8>),
    Remove(u8),
    Get(u8),
    PopFirst,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, proptest::collection::vec(any::<u8>(), 0..=16))
            .prop_map(|(k, v)| Op::Insert(k, v)),
        3 => (0u8..12).prop_map(Op::Remove),
        2 => (0u8..12).prop_map(Op::Get),
        1 => Just(Op::PopFirst),
        1 => Just(Op::Clear),
    ]
}

/// Keys of several lengths (1 to 8 bytes), so slot layouts vary.
fn key(k: u8) -> Vec<u8> {
    vec![k; 1 + (k as usize % 8)]
}

proptest! {
    #[test]
    fn behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 1..200)) {
        let w = ThreadWaiter::default();
        let t = dict::heap(&small()).unwrap();
        let mut model: Model = HashMap::new();
        let mut buf = Vec::new();
        for op in ops {
            let mut g = lock(&t, 1, &w);
            match op {
                Op::Insert(k, v) => {
                    let k = key(k);
                    let full = model.len() == 8 && !model.contains_key(&k);
                    match g.insert(&k, &v, Some(&mut buf)) {
                        Err(TableError::Full { capacity: 8 }) => prop_assert!(full),
                        Ok(had) => {
                            prop_assert!(!full);
                            let old = model.insert(k, v);
                            prop_assert_eq!(had, old.is_some());
                            if let Some(old) = old { prop_assert_eq!(&buf, &old); }
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Remove(k) => {
                    let k = key(k);
                    let had = g.remove(&k, Some(&mut buf)).unwrap();
                    let old = model.remove(&k);
                    prop_assert_eq!(had, old.is_some());
                    if let Some(old) = old { prop_assert_eq!(&buf, &old); }
                }
                Op::Get(k) => {
                    let k = key(k);
                    let had = g.get(&k, &mut buf).unwrap();
                    prop_assert_eq!(had, model.contains_key(&k));
                    if had { prop_assert_eq!(&buf, &model[&k]); }
                }
                Op::PopFirst => {
                    let mut v = Vec::new();
                    let had = g.pop_first(&mut buf, &mut v).unwrap();
                    prop_assert_eq!(had, !model.is_empty());
                    if had { prop_assert_eq!(model.remove(&buf), Some(v)); }
                }
                Op::Clear => {
                    g.clear().unwrap();
                    model.clear();
                }
            }
            prop_assert_eq!(g.len(), model.len());
            drop(g);
        }
        prop_assert_eq!(contents(&t, &w), model);
    }
}

#[test]
fn limits_are_errors_and_change_nothing() {
    let w = ThreadWaiter::default();
    let t = dict::heap(&small()).unwrap();
    let mut g = lock(&t, 1, &w);
    assert_eq!(
        g.insert(&[0; 9], b"", None),
        Err(TableError::KeyTooLarge { len: 9, max: 8 })
    );
    assert_eq!(
        g.insert(b"k", &[0; 17], None),
        Err(TableError::ValueTooLarge { len: 17, max: 16 })
    );
    for i in 0..8u8 {
        assert_eq!(g.insert(&[i], &[i; 16], None), Ok(false));
    }
    assert_eq!(
        g.insert(b"new", b"", None),
        Err(TableError::Full { capacity: 8 })
    );
    // Replacing in a full table works: the spare slot takes the new value.
    for round in 0..3u8 {
        for i in 0..8u8 {
            assert_eq!(g.insert(&[i], &[round; 3], None), Ok(true));
        }
    }
    assert_eq!(g.len(), 8);
    drop(g);
    let m = contents(&t, &w);
    assert!((0..8u8).all(|i| m[&vec![i]] == vec![2; 3]));
    assert!(dict::heap(&DictConfig {
        capacity: 0,
        ..small()
    })
    .is_err());
    assert!(dict::heap(&DictConfig {
        max_key: 0,
        ..small()
    })
    .is_err());
}

#[test]
fn tombstone_churn_stays_correct() {
    // Many distinct keys through a small table: tombstones pile up and
    // compaction must keep every probe path intact.
    let w = ThreadWaiter::default();
    let t = dict::heap(&DictConfig {
        capacity: 16,
        max_key: 8,
        max_value: 8,
    })
    .unwrap();
    let mut model = HashMap::new();
    for i in 0u64..5_000 {
        let mut g = lock(&t, 1, &w);
        let k = (i * 7919 % 1_000).to_le_bytes().to_vec();
        if model.len() < 12 {
            g.insert(&k, &i.to_le_bytes(), None).unwrap();
            model.insert(k, i.to_le_bytes().to_vec());
        } else {
            let victim = model.keys().next().unwrap().clone();
            assert!(g.remove(&victim, None).unwrap());
            model.remove(&victim);
        }
    }
    assert_eq!(contents(&t, &w), model);
}

thread_local! {
    /// Which failpoint hit (counting from 1) panics; 0: none.
    static FAIL_AT: Cell<u32> = const { Cell::new(0) };
    static HITS: Cell<u32> = const { Cell::new(0) };
}

fn panicking_failpoint(point: &'static str) {
    let n = HITS.get() + 1;
    HITS.set(n);
    if n == FAIL_AT.get() {
        panic!("failpoint {point}");
    }
}

/// One op of every kind, so every failpoint of every write is reached.
fn workload(g: &mut Locked<'_, ThreadWaiter>, round: u8) {
    g.insert(b"a", &[round; 4], None).unwrap(); // replace
    g.insert(&[b'n', round], b"new", None).unwrap(); // fresh key
    g.remove(b"b", None).unwrap();
    g.insert(b"b", &[round], None).unwrap();
    let (mut k, mut v) = (Vec::new(), Vec::new());
    g.pop_first(&mut k, &mut v).unwrap();
    if round % 3 == 2 {
        g.clear().unwrap();
    }
}

#[test]
fn interrupted_writes_leave_every_key_old_or_new() {
    let w = ThreadWaiter::default();
    let config = DictConfig {
        capacity: 6,
        max_key: 4,
        max_value: 8,
    };
    let mut interrupted = 0;
    for fail_at in 1..=60u32 {
        let mut t = dict::heap(&config).unwrap();
        t.set_failpoint(Some(panicking_failpoint));
        HITS.set(0);
        FAIL_AT.set(fail_at);
        let mut before = contents(&t, &w);
        let mut round = 0u8;
        let outcome = catch_unwind(AssertUnwindSafe(|| loop {
            let mut g = lock(&t, 1, &w);
            workload(&mut g, round);
            drop(g);
            before = contents(&t, &w);
            round += 1;
            if round == 4 {
                break;
            }
        }));
        FAIL_AT.set(0);
        let after = contents(&t, &w);
        if outcome.is_ok() {
            continue;
        }
        interrupted += 1;
        // Each key present before or after has its old value, its new one,
        // or (for keys the round added or removed) is present or absent.
        for (k, v) in &after {
            let old = before.get(k);
            assert!(
                old == Some(v) || old.is_none() || k == b"a" || k == b"b",
                "failpoint {fail_at}: {k:?} has {v:?}, before {old:?}"
            );
        }
        // The free stack was rebuilt: the table still takes a full load.
        let mut g = lock(&t, 1, &w);
        g.clear().unwrap();
        for i in 0..6u8 {
            g.insert(&[i], &[i], None).unwrap();
        }
        assert_eq!(
            g.insert(b"x", b"", None),
            Err(TableError::Full { capacity: 6 })
        );
    }
    assert!(interrupted >= 40, "only {interrupted} runs hit a failpoint");
}

#[test]
fn dead_holder_triggers_recovery() {
    let w = ThreadWaiter::default();
    let t = dict::heap(&small()).unwrap();
    let mut g = lock(&t, 7, &w);
    g.insert(b"k", b"v", None).unwrap();
    assert!(!g.recovered());
    std::mem::forget(g); // token 7 "dies" holding the lock
    let g = t
        .lock(
            8,
            &w,
            Until::Never,
            &WaitPolicy::default(),
            &mut WaitHistory::default(),
            &mut |tok| tok != 7,
        )
        .unwrap();
    assert!(g.recovered());
    let mut v = Vec::new();
    assert!(g.get(b"k", &mut v).unwrap());
    assert_eq!(v, b"v");
    assert_eq!(t.lock_state().recoveries(), 1);
}
