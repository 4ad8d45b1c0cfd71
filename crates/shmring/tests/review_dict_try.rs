//! Adversarial review of commit c2ff56a (the Python dict first tries the
//! table's lock with a zero lock timeout, with the GIL held): a try that
//! finds the lock held is an answer, not a timeout, as for `Lock`
//! (`tests/lock.rs`, `only_a_wait_that_runs_out_counts_as_a_timeout`).
//! Every contended Python dict operation now makes such a try first.

use std::sync::Barrier;
use std::time::Duration;

use shmring::dict::{Dict, DictError};
use shmring::segment::{self, PeerCounter};
use shmring_testkit::{unique_name, Watchdog};

#[test]
fn a_zero_timeout_try_of_a_held_dict_is_not_counted_as_a_timeout() {
    let _dog = Watchdog::new(Duration::from_secs(20), "dict try counter");
    let name = unique_name("review-dict-try");
    let d: Dict<String, u64> = Dict::builder().capacity(16).create(&name).unwrap();
    let mut now = d.clone();
    now.set_lock_timeout(Duration::ZERO);
    let timeouts = || {
        segment::inspect(&name)
            .unwrap()
            .counters()
            .get(PeerCounter::Timeouts)
    };
    let (held, done) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        s.spawn(|| {
            d.update_with(&"k".to_string(), |v| {
                held.wait();
                done.wait();
                Some(v.unwrap_or(0) + 1)
            })
            .unwrap();
        });
        held.wait();
        for _ in 0..3 {
            assert_eq!(now.get(&"k".to_string()), Err(DictError::Timeout));
        }
        done.wait();
    });
    assert_eq!(now.get(&"k".to_string()), Ok(Some(1)));
    assert_eq!(
        timeouts(),
        0,
        "three tries that found the lock held were counted as timeouts"
    );
}
