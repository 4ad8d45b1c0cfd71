//! The engine's fuzz hooks as ordinary tests: every crash input the
//! fuzzer found (inline, with what it found), and a quick sweep of
//! pseudo-random inputs so the hooks themselves cannot rot.
//!
//! Replay a fuzzer artifact with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run segment_bytes fuzz/artifacts/segment_bytes/crash-…`
//! (from `fuzz/`), then paste its bytes here.

use std::time::Duration;

use shmring::dict::Dict;
use shmring::lock::LockShared;
use shmring::segment::UnlinkPolicy;
use shmring_fuzz_support::{pipe_frames, segment_bytes, segment_templates};
use shmring_testkit::pseudo_random_inputs;

#[test]
fn templates_are_valid_segments() {
    let templates = segment_templates();
    assert_eq!(templates.len(), 7);
    // `SHMRING_FUZZ_SEED_DIR=fuzz/corpus/segment_bytes cargo test ...`
    // writes the templates as seeds: raw (first byte 0) and patched (1, k).
    if let Some(dir) = std::env::var_os("SHMRING_FUZZ_SEED_DIR") {
        for (k, t) in templates.iter().enumerate() {
            let dir = std::path::Path::new(&dir);
            std::fs::write(dir.join(format!("template-{k}")), [1, k as u8]).unwrap();
            let raw: Vec<u8> = [0].iter().chain(t).copied().collect();
            std::fs::write(dir.join(format!("raw-{k}")), raw).unwrap();
        }
    }
    for t in templates {
        assert!(t.len() >= 8192 && t.len() % 4096 == 0, "{}", t.len());
        assert_eq!(&t[..8], b"SHMRING\0");
        // Unpatched, every template opens as its kind and reads cleanly.
        let mut input = vec![1, templates.iter().position(|x| x == t).unwrap() as u8];
        segment_bytes(&input);
        input[0] = 0;
        input.extend_from_slice(t);
        segment_bytes(&input);
    }
}

#[test]
fn segment_bytes_sweep() {
    // Odd first byte: patches over a template, the useful mode.
    for mut input in pseudo_random_inputs(5, 150, 120) {
        if let Some(b) = input.first_mut() {
            *b |= 1;
        }
        segment_bytes(&input);
    }
    for input in pseudo_random_inputs(6, 50, 64) {
        segment_bytes(&input);
    }
}

#[test]
fn pipe_frames_sweep() {
    for input in pseudo_random_inputs(7, 200, 300) {
        pipe_frames(&input);
    }
    // Longer runs, where tries take messages half and other receives
    // finish them (a receive into a buffer that gives up without handing
    // on what it took fails here, at input 272; the short runs above miss
    // it).
    for input in pseudo_random_inputs(11, 400, 600) {
        pipe_frames(&input);
    }
}

/// The crash artifacts as found (`tests/fuzz_inputs/`), which pass since
/// their bugs were fixed (the core crate's `fuzz_regressions.rs` has the
/// bugs' own tests):
///
/// * `segment_bytes-dict-tombstones`: `Dict::insert` on a patched dict
///   segment, "attempt to multiply with overflow" in `dict/ops.rs` insert.
#[test]
fn crash_artifacts() {
    segment_bytes(include_bytes!("fuzz_inputs/segment_bytes-dict-tombstones"));
}

#[test]
fn empty_and_tiny_pseudo_random_inputs() {
    for input in [&[][..], &[0], &[1], &[1, 2], &[0xff; 4]] {
        segment_bytes(input);
        pipe_frames(input);
    }
}

/// Finding 2 (segment_bytes, by review of what the hook must steer
/// around): a peer that writes the *next opener's* token into a Dict's lock
/// (predictable: row and generation are in the peer table) makes every call
/// of that opener wait forever. `LockShared::acquire` never takes over a
/// lock whose owner equals the caller's token, and `Dict::locked` passes no
/// deadline. A hostile live peer can always hold the lock, but here nobody
/// holds it: the call must fail (Corrupted) or take the lock over.
#[test]
fn dict_lock_owned_by_own_token_does_not_hang() {
    let name = shmring_testkit::unique_name("fuzz-dict-token");
    let creator = Dict::<Vec<u8>, Vec<u8>>::builder()
        .capacity(4)
        .max_key(8)
        .max_value(8)
        .peer_rows(2)
        .unlink(UnlinkPolicy::OnCreatorDrop)
        .create(&name)
        .unwrap();
    // The creator holds row 0; the next opener gets row 1, generation 1.
    let victim_token = (1u64 << 32) | 2;
    // SAFETY: the table header starts with its lock, page-aligned, atomics.
    let lock = unsafe { creator.segment().object_ptr().cast::<LockShared>().as_ref() };
    assert!(lock.try_acquire(victim_token, &mut |_| true).is_some());
    let victim = Dict::<Vec<u8>, Vec<u8>>::open(&name).unwrap();
    assert_eq!(victim.segment().peer_token(), victim_token);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = victim.len();
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(2)).is_ok(),
        "Dict::len waited for a lock 'held' by its own token"
    );
    drop(creator);
}
