//! Reclaiming abandoned segments without `shmring gc`: a create of a taken
//! name, the explicit sweep, and the clean-exit path, with real
//! processes that are SIGKILLed (the test binary re-executes itself with a
//! role; see `shmring_testkit`).

use std::process::Child;
use std::time::Duration;

use shmring::core::RingConfig;
use shmring::queue::{Queue, QueueOptions};
use shmring::segment::{self, ObjectKind, SegmentState};
use shmring::{spsc, AttachError, CreateOptions, OpenOptions, Segment, SegmentError, UnlinkPolicy};
use shmring_testkit::{
    role, shm_exists, sleep_forever, spawn_role, unique_name, wait_child, wait_until, Watchdog,
};

const NAME_VAR: &str = "SHMRING_TEST_SEGMENT";
const POLICY_VAR: &str = "SHMRING_TEST_POLICY";

fn ring_config() -> RingConfig {
    RingConfig {
        capacity: 4096,
        max_record: 256,
    }
}

/// Entry point of every child role (returns at once in a normal run).
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let _dog = Watchdog::new(Duration::from_secs(60), &format!("child role {role}"));
    let name = std::env::var(NAME_VAR).unwrap();
    let unlink = match std::env::var(POLICY_VAR).as_deref() {
        Ok("never") => UnlinkPolicy::Never,
        _ => UnlinkPolicy::OnLastPeerDrop,
    };
    let opts = CreateOptions {
        unlink,
        ..CreateOptions::default()
    };
    match role.as_str() {
        "create_and_hang" => {
            let _ring = spsc::Ring::create(&name, ring_config(), &opts).unwrap();
            sleep_forever();
        }
        "open_and_hang" => {
            let _ring = spsc::Ring::open(&name, &OpenOptions::default()).unwrap();
            sleep_forever();
        }
        "hang_in_init" => {
            let _ = Segment::create(&name, ObjectKind::SpscRing, [0; 8], 4096, &opts, |_, _| {
                sleep_forever()
            });
        }
        "queue_user" => {
            let q = Queue::<u64>::open(&name, &OpenOptions::default()).unwrap();
            q.put(std::process::id().into(), None).unwrap();
            // Stay attached until the parent has let go of its own handle.
            let parent = std::os::unix::process::parent_id();
            let gone = wait_until(Duration::from_secs(30), || {
                segment::inspect(&name)
                    .is_ok_and(|i| !i.peers.iter().any(|p| p.alive && p.pid == parent))
            });
            assert!(gone, "the parent never detached");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Spawns `role` on `name` and waits until `ready` holds for the segment.
fn spawn_child(
    role: &str,
    name: &str,
    policy: &str,
    ready: impl Fn(&segment::SegmentInfo) -> bool,
) -> Child {
    let envs = [(NAME_VAR, name.to_owned()), (POLICY_VAR, policy.to_owned())];
    let child = spawn_role("child_entry", role, &envs).spawn().unwrap();
    let seen = wait_until(Duration::from_secs(20), || {
        segment::inspect(name).is_ok_and(|i| ready(&i))
    });
    assert!(seen, "child {role} never got segment {name} ready");
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(20));
}

/// A segment whose peers (creator and one opener) were both SIGKILLed.
fn abandoned(name: &str, policy: &str) {
    let creator = spawn_child("create_and_hang", name, policy, |i| i.alive_peers() == 1);
    let opener = spawn_child("open_and_hang", name, policy, |i| i.alive_peers() == 2);
    kill(creator);
    kill(opener);
    let info = segment::inspect(name).unwrap();
    assert_eq!((info.alive_peers(), info.dead_peers()), (0, 2));
    assert!(info.is_abandoned());
}

#[test]
fn a_create_reclaims_a_name_whose_peers_were_all_killed() {
    let _dog = Watchdog::new(Duration::from_secs(90), "create over abandoned");
    let name = unique_name("reclaim-create");
    abandoned(&name, "default");

    let keep = CreateOptions {
        reclaim_abandoned: false,
        ..CreateOptions::default()
    };
    let err = spsc::Ring::create(&name, ring_config(), &keep).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );

    let ring = spsc::Ring::create(&name, ring_config(), &CreateOptions::default()).unwrap();
    let info = segment::inspect(&name).unwrap();
    assert_eq!(
        (info.alive_peers(), info.dead_peers()),
        (1, 0),
        "a fresh one"
    );
    assert_eq!(info.header.unwrap().creator_pid, std::process::id());
    drop(ring);
    assert!(!shm_exists(&name), "the last clean drop unlinks");
}

#[test]
fn a_create_never_replaces_a_live_or_a_kept_segment() {
    let _dog = Watchdog::new(Duration::from_secs(90), "create over live");
    let live = unique_name("reclaim-live");
    let child = spawn_child("create_and_hang", &live, "default", |i| {
        i.alive_peers() == 1
    });
    let err = spsc::Ring::create(&live, ring_config(), &CreateOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );
    kill(child);

    let kept = unique_name("reclaim-never");
    abandoned(&kept, "never");
    let err = spsc::Ring::create(&kept, ring_config(), &CreateOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            AttachError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );
    assert!(shm_exists(&kept));

    for name in [&live, &kept] {
        assert_eq!(segment::reclaim(name).unwrap(), segment::Reclaimed::Removed);
    }
}

#[test]
fn sweep_removes_only_this_prefix_s_abandoned_idle_segments() {
    let _dog = Watchdog::new(Duration::from_secs(120), "sweep");
    let base = unique_name("sweep");
    let dead = format!("{base}-dead");
    let never = format!("{base}-never");
    let live = format!("{base}-live");
    let died_creating = format!("{base}-init");
    let elsewhere = unique_name("sweep-other");
    abandoned(&dead, "default");
    abandoned(&never, "never");
    abandoned(&elsewhere, "default");
    let ring = spsc::Ring::create(&live, ring_config(), &CreateOptions::default()).unwrap();
    let child = spawn_child("hang_in_init", &died_creating, "default", |i| {
        i.state == SegmentState::Initialising
    });
    kill(child);

    assert_eq!(
        segment::sweep(&base, Duration::from_secs(3600)).unwrap(),
        Vec::<String>::new(),
        "nothing has been idle an hour"
    );
    // A file whose header was never published is not proven a segment:
    // the sweep leaves it (gc lists it; rm or reclaim removes it).
    let removed = segment::sweep(&base, Duration::ZERO).unwrap();
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!shm_exists(&dead));
    assert!(shm_exists(&never), "UnlinkPolicy::Never is gc's to remove");
    assert!(shm_exists(&live) && shm_exists(&elsewhere));

    drop(ring);
    for name in [&never, &elsewhere, &died_creating] {
        segment::reclaim(name).unwrap();
    }
}

// The automatic sweep (off the create path, one per user and period,
// never removing data, idleness counted from when a sweep first saw no
// live peer) is tested in tests/sweep.rs.

#[test]
fn nothing_is_left_once_every_peer_has_exited() {
    let _dog = Watchdog::new(Duration::from_secs(90), "clean exits");
    let name = unique_name("reclaim-exit");
    let opts = QueueOptions {
        ring_bytes: 4096,
        max_message: 64,
        producers: 4,
        ..QueueOptions::default()
    };
    let q = Queue::<u64>::create(&name, opts, &CreateOptions::default()).unwrap();
    let children: Vec<Child> = (0..3)
        .map(|_| {
            spawn_role("child_entry", "queue_user", &[(NAME_VAR, name.clone())])
                .spawn()
                .unwrap()
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(q.get(Some(Duration::from_secs(20))).unwrap());
    }
    let mut pids: Vec<u64> = children.iter().map(|c| c.id().into()).collect();
    got.sort();
    pids.sort();
    assert_eq!(got, pids);
    // The creator goes first; the name must outlive it while children are
    // attached, and go with the last of them.
    drop(q);
    assert!(shm_exists(&name), "children are still attached");
    for child in children {
        assert!(wait_child(child, Duration::from_secs(30)).success());
    }
    assert!(!shm_exists(&name), "the last peer's exit removed the name");
}

#[test]
fn an_open_racing_a_reclaim_never_attaches_to_an_unreachable_segment() {
    let _dog = Watchdog::new(Duration::from_secs(120), "open vs reclaim");
    for round in 0..20 {
        let name = unique_name(&format!("reclaim-race-{round}"));
        abandoned(&name, "default");
        let opener = {
            let name = name.clone();
            std::thread::spawn(move || spsc::Ring::open(&name, &OpenOptions::default()))
        };
        let reclaimed = segment::reclaim(&name);
        match opener.join().unwrap() {
            // Attached first: the reclaim must have kept it, and the name
            // still reaches this very segment.
            Ok(ring) => {
                assert!(
                    matches!(reclaimed, Ok(segment::Reclaimed::Kept(_))),
                    "{reclaimed:?}"
                );
                assert!(shm_exists(&name));
                drop(ring);
            }
            Err(AttachError::Segment(SegmentError::NotFound { .. })) => {
                assert_eq!(reclaimed.unwrap(), segment::Reclaimed::Removed);
            }
            Err(e) => panic!("round {round}: {e}"),
        }
        assert!(!shm_exists(&name) || segment::reclaim(&name).is_ok());
    }
}
