//! Integration tests of segments: create/open/validate, peers and liveness,
//! inheritance, cleanup, across real processes (the test binary re-executes
//! itself to run an entry point; see `shmring_testkit`).

#[path = "segment/common.rs"]
mod common;
#[path = "segment/corrupt.rs"]
mod corrupt;
#[path = "segment/procs.rs"]
mod procs;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use shmring::segment::{
    CreateOptions, ObjectKind, OpenOptions, PeerCounter, Segment, UnlinkPolicy,
};
use shmring::SegmentError;
use shmring_testkit::{unique_name, Watchdog};

use common::*;

/// Runs the children's entry points (returns at once in a normal run).
#[test]
fn child_entry() {
    procs::run_entries();
}

#[test]
fn create_and_open_in_one_process() {
    let name = unique_name("basic");
    let creator = create(&name, ObjectKind::SpscRing);
    assert_eq!(creator.name(), Some(name.as_str()));
    assert_eq!(creator.kind(), ObjectKind::SpscRing);
    assert_eq!(creator.params(), PARAMS);
    assert_eq!(creator.object_len(), OBJECT_LEN);
    assert_eq!(creator.object_ptr().as_ptr() as usize % 4096, 0);
    word(&creator, 0).store(0xfeed, SEQ);

    let peer = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert_eq!(peer.params(), PARAMS);
    assert_eq!(peer.object_len(), OBJECT_LEN);
    assert_eq!(word(&peer, 0).load(SEQ), 0xfeed);
    word(&peer, 1).store(0xbeef, SEQ);
    assert_eq!(word(&creator, 1).load(SEQ), 0xbeef);

    let (a, b) = (creator.peer_token(), peer.peer_token());
    assert!(a != 0 && b != 0 && a != b);
    assert!(creator.is_peer_alive(b) && peer.is_peer_alive(a));
    assert!(creator.is_peer_alive(a), "own token is alive");
    let peers = creator.peers();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.alive && p.pid == std::process::id()));

    drop(peer);
    assert!(!creator.is_peer_alive(b), "a dropped peer is dead at once");
    assert!(path_of(&name).exists(), "creator still attached");
    drop(creator);
    assert!(!path_of(&name).exists(), "OnLastPeerDrop removed the name");
}

#[test]
fn create_twice_is_already_exists() {
    let name = unique_name("excl");
    let _first = create(&name, ObjectKind::SpscRing);
    let err = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        64,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err}");
}

#[test]
fn mode_is_0600_by_default_and_exact_otherwise() {
    let name = unique_name("mode");
    let seg = create(&name, ObjectKind::SpscRing);
    assert_eq!(
        std::fs::metadata(path_of(&name)).unwrap().mode() & 0o7777,
        0o600
    );
    drop(seg);
    let name = unique_name("mode");
    let opts = CreateOptions {
        mode: 0o660,
        ..CreateOptions::default()
    };
    let _seg = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        64,
        &opts,
        |_, _| Ok(()),
    )
    .unwrap();
    // Exactly 0o660 whatever the umask (which usually clears 0o020).
    assert_eq!(
        std::fs::metadata(path_of(&name)).unwrap().mode() & 0o7777,
        0o660
    );
    for bad in [0o400, 0o1600, 0o200] {
        let opts = CreateOptions {
            mode: bad,
            ..CreateOptions::default()
        };
        let err = Segment::create(
            &unique_name("mode"),
            ObjectKind::SpscRing,
            PARAMS,
            64,
            &opts,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, SegmentError::InvalidConfig { .. }), "{err}");
    }
}

#[test]
fn open_missing_is_not_found() {
    let name = unique_name("missing");
    let err = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::NotFound { .. }), "{err}");
    let err = Segment::unlink(&name).unwrap_err();
    assert!(matches!(err, SegmentError::NotFound { .. }), "{err}");
}

#[test]
fn invalid_names_are_refused() {
    let long = format!("/{}", "n".repeat(201));
    for bad in [
        "",
        "/",
        "/a/b",
        "a/b",
        "//a",
        "/.",
        "..",
        "/a\0b",
        "/a\x1bb",
        "/a\u{7f}",
        long.as_str(),
    ] {
        let err = Segment::open(bad, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(err, SegmentError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        let err = Segment::create(
            bad,
            ObjectKind::SpscRing,
            PARAMS,
            64,
            &CreateOptions::default(),
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(err, SegmentError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(matches!(
            Segment::unlink(bad),
            Err(SegmentError::InvalidName { .. })
        ));
    }
    // Without the leading slash the name is the same segment.
    let name = unique_name("slash");
    let _seg = create(&name, ObjectKind::SpscRing);
    let peer = Segment::open(&name[1..], ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert_eq!(peer.name(), Some(name.as_str()));
}

#[test]
fn kind_mismatch_names_both_kinds() {
    let name = unique_name("kind");
    let _seg = create(&name, ObjectKind::SpscRing);
    let err = Segment::open(&name, ObjectKind::MpmcQueue, &OpenOptions::default()).unwrap_err();
    match err {
        SegmentError::KindMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, ObjectKind::MpmcQueue);
            assert_eq!(found, ObjectKind::SpscRing);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_open_during_init_finds_nothing_then_the_published_segment() {
    let _dog = Watchdog::new(Duration::from_secs(30), "open during init");
    let name = unique_name("init");
    let (in_init, in_init_rx) = std::sync::mpsc::channel();
    let (go_on, go_on_rx) = std::sync::mpsc::channel::<()>();
    let creator = {
        let name = name.clone();
        std::thread::spawn(move || {
            Segment::create(
                &name,
                ObjectKind::MpmcQueue,
                PARAMS,
                OBJECT_LEN,
                &CreateOptions::default(),
                |p, len| {
                    assert_eq!(len, OBJECT_LEN);
                    in_init.send(()).unwrap();
                    go_on_rx.recv().unwrap();
                    // SAFETY: `p` is the 4096-aligned object region of `len` >= 8
                    // bytes, not yet visible to anyone else.
                    unsafe { p.as_ptr().cast::<u64>().write(0x1234_5678) };
                    Ok(())
                },
            )
            .unwrap()
        })
    };
    in_init_rx.recv().unwrap();
    // Nothing is named before the create completes: no waiting, no
    // half-made segment, whatever the timeout.
    assert!(!path_of(&name).exists());
    let start = Instant::now();
    let err = Segment::open(&name, ObjectKind::MpmcQueue, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::NotFound { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no wait for the creator"
    );
    go_on.send(()).unwrap();
    let creator = creator.join().unwrap();
    let peer = Segment::open(&name, ObjectKind::MpmcQueue, &OpenOptions::default()).unwrap();
    assert_eq!(
        word(&peer, 0).load(SEQ),
        0x1234_5678,
        "init's writes are published"
    );
    assert!(peer.is_peer_alive(creator.peer_token()));
}

#[test]
fn a_held_name_lock_bounds_opens_and_drops() {
    use std::os::fd::AsRawFd;
    let _dog = Watchdog::new(Duration::from_secs(60), "held name lock");
    let name = unique_name("namelock");
    let creator = create(&name, ObjectKind::SpscRing);
    // Stand in for a stopped process that holds the name lock (byte 0).
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path_of(&name))
        .unwrap();
    // SAFETY: flock is a plain C struct of integers; all-zero is valid (and
    // l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    // SAFETY: fcntl on an open descriptor with a valid flock.
    let rc = unsafe { libc::fcntl(holder.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    assert_eq!(rc, 0);

    let opts = OpenOptions {
        timeout: Duration::from_millis(300),
        ..OpenOptions::default()
    };
    let start = Instant::now();
    let err = Segment::open(&name, ObjectKind::SpscRing, &opts).unwrap_err();
    assert!(matches!(err, SegmentError::NameLockTimeout { .. }), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    let err = Segment::unlink(&name).unwrap_err();
    assert!(matches!(err, SegmentError::NameLockTimeout { .. }), "{err}");
    // The last drop gives up after its bounded wait and leaves the name,
    // for a reclaim to remove later (no peer alive, policy wants it gone).
    let start = Instant::now();
    drop(creator);
    assert!(start.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(path_of(&name).exists(), "kept: the lock was never free");
    let info = shmring::segment::inspect(&name).unwrap();
    assert!(info.init_locked && !info.is_abandoned(), "not while locked");
    drop(holder);
    let info = shmring::segment::inspect(&name).unwrap();
    assert!(info.is_abandoned(), "{info:?}");
    assert_eq!(
        shmring::segment::reclaim(&name).unwrap(),
        shmring::segment::Reclaimed::Removed
    );
}

#[test]
fn failing_init_unlinks_and_passes_the_error_through() {
    let name = unique_name("initerr");
    let err = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        64,
        &CreateOptions::default(),
        |_, _| {
            Err(SegmentError::InvalidConfig {
                reason: "from init".into(),
            })
        },
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::InvalidConfig { ref reason } if reason == "from init"));
    assert!(!path_of(&name).exists());
}

#[test]
fn unlink_policies() {
    // OnLastPeerDrop (the default): gone after the last drop, whoever it is.
    let name = unique_name("last");
    let creator = create(&name, ObjectKind::SpscRing);
    let peer = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    drop(creator);
    assert!(path_of(&name).exists());
    drop(peer);
    assert!(!path_of(&name).exists());

    // OnCreatorDrop: gone when the creator drops, peers still attached.
    let name = unique_name("creator");
    let opts = CreateOptions {
        unlink: UnlinkPolicy::OnCreatorDrop,
        ..CreateOptions::default()
    };
    let creator = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        64,
        &opts,
        |_, _| Ok(()),
    )
    .unwrap();
    let peer = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    drop(peer);
    assert!(path_of(&name).exists());
    let peer = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    drop(creator);
    assert!(!path_of(&name).exists());
    word(&peer, 0).store(1, SEQ); // the mapping is still fine

    // Never: stays until unlinked by hand.
    let name = unique_name("never");
    let opts = CreateOptions {
        unlink: UnlinkPolicy::Never,
        ..CreateOptions::default()
    };
    drop(
        Segment::create(
            &name,
            ObjectKind::SpscRing,
            PARAMS,
            64,
            &opts,
            |_, _| Ok(()),
        )
        .unwrap(),
    );
    assert!(path_of(&name).exists());
    Segment::unlink(&name).unwrap();
    assert!(!path_of(&name).exists());
}

#[test]
fn a_recreated_name_is_not_unlinked_by_the_old_segment() {
    let name = unique_name("recreate");
    let old = create(&name, ObjectKind::SpscRing);
    Segment::unlink(&name).unwrap();
    let new = create(&name, ObjectKind::SpscRing);
    drop(old);
    assert!(
        path_of(&name).exists(),
        "the old segment removed the new one's name"
    );
    drop(new);
    assert!(!path_of(&name).exists());
}

#[test]
fn no_space_fails_up_front() {
    let name = unique_name("nospace");
    let tib = 1usize << 40;
    let err = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        tib,
        &CreateOptions::default(),
        |_, _| panic!("init must not run"),
    )
    .unwrap_err();
    assert!(
        matches!(err, SegmentError::NoSpace { bytes, .. } if bytes > tib as u64),
        "{err}"
    );
    assert!(!path_of(&name).exists(), "a failed create leaves nothing");
    let err = Segment::create_anonymous(
        ObjectKind::SpscRing,
        PARAMS,
        tib,
        &CreateOptions::default(),
        |_, _| panic!("init must not run"),
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::NoSpace { .. }), "{err}");
}

#[test]
fn peer_table_full_and_rows_reused() {
    let name = unique_name("full");
    let opts = CreateOptions {
        peer_rows: 2,
        ..CreateOptions::default()
    };
    let creator = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        64,
        &opts,
        |_, _| Ok(()),
    )
    .unwrap();
    let second = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    let err = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(err, SegmentError::PeerTableFull { rows: 2, .. }),
        "{err}"
    );
    let old = second.peer_token();
    drop(second);
    let third = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert_eq!(third.peer_token() as u32, old as u32, "same row");
    assert_ne!(third.peer_token(), old, "new generation");
    assert!(!creator.is_peer_alive(old));
    assert!(creator.is_peer_alive(third.peer_token()));
    for bad in [0, 1, 1 << 32, u64::MAX, old ^ (1 << 40), (5u64 << 32) | 3] {
        assert!(!creator.is_peer_alive(bad), "{bad:#x}");
    }
    for rows in [0, 4097] {
        let opts = CreateOptions {
            peer_rows: rows,
            ..CreateOptions::default()
        };
        let err = Segment::create(
            &unique_name("rows"),
            ObjectKind::SpscRing,
            PARAMS,
            64,
            &opts,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, SegmentError::InvalidConfig { .. }), "{err}");
    }
}

#[test]
fn counters_are_per_peer_and_summed() {
    let name = unique_name("counters");
    let a = create(&name, ObjectKind::MpmcQueue);
    let b = Segment::open(&name, ObjectKind::MpmcQueue, &OpenOptions::default()).unwrap();
    a.add_to_counter(PeerCounter::Puts, 3);
    b.add_to_counter(PeerCounter::Puts, 4);
    b.add_to_counter(PeerCounter::Gets, 1);
    assert_eq!(a.counter_sum(PeerCounter::Puts), 7);
    assert_eq!(b.counter_sum(PeerCounter::Gets), 1);
    drop(b);
    assert_eq!(
        a.counter_sum(PeerCounter::Puts),
        7,
        "departed peers still count"
    );
}

#[test]
fn anonymous_segments_work_in_process() {
    let seg = Segment::create_anonymous(
        ObjectKind::SpscRing,
        PARAMS,
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(seg.name(), None);
    assert_eq!(seg.params(), PARAMS);
    word(&seg, 0).store(5, SEQ);
    assert_eq!(word(&seg, 0).load(SEQ), 5);
}

#[test]
fn errors_display_lowercase_with_context() {
    let name = unique_name("display");
    let err = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(char::is_lowercase), "{text}");
    assert!(text.contains(&name), "{text}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn foreign_owner_is_refused_unless_allowed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to chown a segment to another uid");
        return;
    }
    let name = unique_name("foreign");
    let _seg = create(&name, ObjectKind::SpscRing);
    std::os::unix::fs::chown(path_of(&name), Some(4242), None).unwrap();
    let err = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::ForeignOwner {
                owner_uid: 4242,
                our_uid: 0,
                ..
            }
        ),
        "{err}"
    );
    let opts = OpenOptions {
        allow_foreign_owner: true,
        ..OpenOptions::default()
    };
    Segment::open(&name, ObjectKind::SpscRing, &opts).unwrap();
}

#[test]
fn path_helper_matches_dev_shm() {
    assert_eq!(path_of("/abc"), Path::new("/dev/shm/abc"));
}
