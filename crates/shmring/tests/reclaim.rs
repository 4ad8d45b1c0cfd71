//! Reclaiming abandoned segments without `shmring gc`: a create of a taken
//! name, the explicit sweep, and the clean-exit path, with real
//! processes that are SIGKILLed (the test binary re-executes itself to run
//! an entry point; see `shmring_testkit`).

use std::process::Child;
use std::time::Duration;

use shmring::dict::Dict;
use shmring::process::{Entry, EntryResult};
use shmring::queue::Queue;
use shmring::segment;
use shmring::{spsc, CreateError, OpenError, SegmentError, UnlinkPolicy};
use shmring_testkit::{
    run_child, shm_exists, shm_path, sleep_forever, spawn_child, unique_name, wait_child,
    wait_until, Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(60), &format!("child {what}"))
}

/// The unlink policy a child's `policy` argument names ("never", or
/// anything else for the default).
fn unlink_policy(policy: &str) -> UnlinkPolicy {
    match policy {
        "never" => UnlinkPolicy::Never,
        _ => UnlinkPolicy::OnLastPeerDrop,
    }
}

/// A child that works on the segment `name` (with the unlink policy
/// `policy`, where it creates it) and waits for its SIGKILL.
type NamedEntry = Entry<(String, String)>;

fn create_and_hang((name, policy): (String, String)) -> EntryResult {
    let _dog = child_dog("create_and_hang");
    let _ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .unlink(unlink_policy(&policy))
        .create(&name)?;
    sleep_forever();
}
static CREATE_AND_HANG: NamedEntry = shmring::entry!(create_and_hang);

fn open_and_hang((name, _): (String, String)) -> EntryResult {
    let _dog = child_dog("open_and_hang");
    let _ring = spsc::Ring::open(&name)?;
    sleep_forever();
}
static OPEN_AND_HANG: NamedEntry = shmring::entry!(open_and_hang);

fn fill_queue_and_hang((name, policy): (String, String)) -> EntryResult {
    let _dog = child_dog("fill_queue_and_hang");
    let q = Queue::<u64>::builder()
        .ring_bytes(8192)
        .max_message(64)
        .producers(2)
        .unlink(unlink_policy(&policy))
        .create(&name)?;
    for i in 0..100 {
        q.put(i)?;
    }
    sleep_forever();
}
static FILL_QUEUE_AND_HANG: NamedEntry = shmring::entry!(fill_queue_and_hang);

fn open_queue_and_hang((name, _): (String, String)) -> EntryResult {
    let _dog = child_dog("open_queue_and_hang");
    let _q = Queue::<u64>::open(&name)?;
    sleep_forever();
}
static OPEN_QUEUE_AND_HANG: NamedEntry = shmring::entry!(open_queue_and_hang);

fn fill_dict_and_hang((name, policy): (String, String)) -> EntryResult {
    let _dog = child_dog("fill_dict_and_hang");
    let d = Dict::<u64, u64>::builder()
        .unlink(unlink_policy(&policy))
        .create(&name)?;
    for i in 0..3 {
        d.insert(&i, &(i * 10))?;
    }
    sleep_forever();
}
static FILL_DICT_AND_HANG: NamedEntry = shmring::entry!(fill_dict_and_hang);

/// Opens the queue `name` (by name: its name's lifecycle is under test),
/// puts its pid, and stays attached until the parent has let go of its own
/// handle.
fn queue_user((name,): (String,)) -> EntryResult {
    let _dog = child_dog("queue_user");
    let q = Queue::<u64>::open(&name)?;
    q.put(std::process::id().into())?;
    let parent = std::os::unix::process::parent_id();
    let gone = wait_until(Duration::from_secs(30), || {
        segment::inspect(&name).is_ok_and(|i| !i.peers.iter().any(|p| p.alive && p.pid == parent))
    });
    assert!(gone, "the parent never detached");
    Ok(())
}
static QUEUE_USER: Entry<(String,)> = shmring::entry!(queue_user);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[
        &CREATE_AND_HANG,
        &OPEN_AND_HANG,
        &FILL_QUEUE_AND_HANG,
        &OPEN_QUEUE_AND_HANG,
        &FILL_DICT_AND_HANG,
        &QUEUE_USER,
    ]);
}

/// Spawns `entry` on `name` and waits until `ready` holds for the segment.
fn spawn_ready(
    entry: &NamedEntry,
    name: &str,
    policy: &str,
    ready: impl Fn(&segment::SegmentInfo) -> bool,
) -> Child {
    let child = spawn_child(CHILD_TEST, entry, (name.to_owned(), policy.to_owned()));
    let seen = wait_until(Duration::from_secs(20), || {
        segment::inspect(name).is_ok_and(|i| ready(&i))
    });
    assert!(seen, "child {} never got segment {name} ready", entry.id());
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(20));
}

/// A segment whose peers (creator and one opener) were both SIGKILLed.
fn abandoned(name: &str, policy: &str) {
    let creator = spawn_ready(&CREATE_AND_HANG, name, policy, |i| i.alive_peers() == 1);
    let opener = spawn_ready(&OPEN_AND_HANG, name, policy, |i| i.alive_peers() == 2);
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

    let err = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .reclaim_abandoned(false)
        .create(&name)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );

    let ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&name)
        .unwrap();
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
    let child = spawn_ready(&CREATE_AND_HANG, &live, "default", |i| i.alive_peers() == 1);
    let err = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&live)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists { .. })
        ),
        "{err}"
    );
    kill(child);

    let kept = unique_name("reclaim-never");
    abandoned(&kept, "never");
    let err = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&kept)
        .unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists { .. })
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
    let elsewhere = unique_name("sweep-other");
    abandoned(&dead, "default");
    abandoned(&never, "never");
    abandoned(&elsewhere, "default");
    let ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&live)
        .unwrap();

    assert_eq!(
        segment::sweep(&base, Duration::from_secs(3600)).unwrap(),
        Vec::<String>::new(),
        "nothing has been idle an hour"
    );
    let removed = segment::sweep(&base, Duration::ZERO).unwrap();
    assert_eq!(removed, vec![dead.clone()]);
    assert!(!shm_exists(&dead));
    assert!(shm_exists(&never), "UnlinkPolicy::Never is gc's to remove");
    assert!(shm_exists(&live) && shm_exists(&elsewhere));

    drop(ring);
    for name in [&never, &elsewhere] {
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
    let q = Queue::<u64>::builder()
        .ring_bytes(4096)
        .max_message(64)
        .producers(4)
        .create(&name)
        .unwrap();
    let children: Vec<Child> = (0..3)
        .map(|_| spawn_child(CHILD_TEST, &QUEUE_USER, (name.clone(),)))
        .collect();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(q.get_timeout(Duration::from_secs(20)).unwrap());
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
            std::thread::spawn(move || spsc::Ring::open(&name))
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
            Err(OpenError::Segment(SegmentError::NotFound { .. })) => {
                assert_eq!(reclaimed.unwrap(), segment::Reclaimed::Removed);
            }
            Err(e) => panic!("round {round}: {e}"),
        }
        assert!(!shm_exists(&name) || segment::reclaim(&name).is_ok());
    }
}

#[test]
fn a_create_never_deletes_undelivered_messages_and_an_open_recovers_them() {
    let _dog = Watchdog::new(Duration::from_secs(90), "create over data");
    let name = unique_name("reclaim-data");
    let child = spawn_ready(&FILL_QUEUE_AND_HANG, &name, "default", |i| {
        i.alive_peers() == 1 && i.object.as_ref().is_some_and(|o| o.depth == Some(100))
    });
    kill(child);
    let info = segment::inspect(&name).unwrap();
    assert!(info.is_abandoned() && info.holds_data());

    let err = Queue::<u64>::builder()
        .ring_bytes(8192)
        .max_message(64)
        .producers(2)
        .create(&name)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists {
                undelivered: true,
                ..
            })
        ),
        "{text}"
    );
    assert!(
        text.contains("undelivered data") && text.contains("open"),
        "the message says why and what to do: {text}"
    );
    assert!(shm_exists(&name));

    let q = Queue::<u64>::open(&name).unwrap();
    let got: Vec<u64> = (0..100)
        .map(|_| q.get_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    drop(q);
    assert!(!shm_exists(&name), "the recovering peer's drop removed it");
}

#[test]
fn a_create_never_deletes_dict_entries() {
    let _dog = Watchdog::new(Duration::from_secs(90), "create over dict");
    let name = unique_name("reclaim-dict");
    let child = spawn_ready(&FILL_DICT_AND_HANG, &name, "default", |i| {
        i.alive_peers() == 1 && i.object.as_ref().is_some_and(|o| o.depth == Some(3))
    });
    kill(child);
    let err = Dict::<u64, u64>::builder().create(&name).unwrap_err();
    assert!(
        matches!(
            err,
            CreateError::Segment(SegmentError::AlreadyExists {
                undelivered: true,
                ..
            })
        ),
        "{err}"
    );
    let d = Dict::<u64, u64>::open(&name).unwrap();
    for i in 0..3 {
        assert_eq!(d.get(&i).unwrap(), Some(i * 10));
    }
    d.clear().unwrap();
    let info = segment::inspect(&name).unwrap();
    assert!(
        !info.holds_data(),
        "a cleared dict holds nothing: {:?}",
        info.object
    );
    drop(d);
    assert!(!shm_exists(&name));
}

#[test]
fn an_abandoned_queue_that_holds_nothing_is_replaced_by_a_create() {
    let _dog = Watchdog::new(Duration::from_secs(90), "create over an empty queue");
    let name = unique_name("reclaim-emptied");
    let q = Queue::<u64>::builder()
        .ring_bytes(8192)
        .max_message(64)
        .producers(2)
        .create(&name)
        .unwrap();
    q.put(7).unwrap();
    let child = spawn_ready(&OPEN_QUEUE_AND_HANG, &name, "default", |i| {
        i.alive_peers() == 2
    });
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 7);
    let info = segment::inspect(&name).unwrap();
    assert!(!info.holds_data(), "{:?}", info.object);
    // The creator leaves cleanly, the other peer is killed: abandoned, empty.
    drop(q);
    kill(child);
    let info = segment::inspect(&name).unwrap();
    assert!(info.is_abandoned() && !info.holds_data(), "{info:?}");
    let q = Queue::<u64>::builder()
        .ring_bytes(8192)
        .max_message(64)
        .producers(2)
        .create(&name)
        .unwrap();
    assert_eq!(
        segment::inspect(&name).unwrap().header.unwrap().creator_pid,
        std::process::id()
    );
    drop(q);
    assert!(!shm_exists(&name));
}

#[test]
fn only_this_user_s_proven_segments_are_reclaimed() {
    let base = unique_name("reclaim-foreign");
    // The magic, then zeros (version 0): an old build's half-made segment,
    // or anybody's file. Not proven a segment: never removed.
    let magic_only = format!("{base}-magic");
    let mut bytes = vec![0u8; 8192];
    bytes[..8].copy_from_slice(b"SHMRING\0");
    std::fs::write(shm_path(&magic_only), &bytes).unwrap();
    // The magic and this build's version, the rest garbage.
    let garbage = format!("{base}-garbage");
    bytes[8..12].copy_from_slice(&segment::LAYOUT_VERSION.to_ne_bytes());
    bytes[12..256].fill(0xa5);
    std::fs::write(shm_path(&garbage), &bytes).unwrap();
    // Short, with the magic.
    let short = format!("{base}-short");
    std::fs::write(shm_path(&short), b"SHMRING\0").unwrap();
    for name in [&magic_only, &garbage, &short] {
        let reclaimed = segment::reclaim(name);
        assert!(reclaimed.is_err(), "{name}: {reclaimed:?}");
        assert!(shm_exists(name), "{name} was removed");
    }
    assert!(segment::sweep(&base, Duration::ZERO).unwrap().is_empty());
    // A private name of the fallback create path with foreign content.
    let private = format!("/.shmring-creating.{}.foreign", std::process::id());
    std::fs::write(shm_path(&private), b"definitely not a segment").unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&private))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    assert!(matches!(
        segment::reclaim(&private),
        Err(SegmentError::NotShmring { .. })
    ));
    assert!(shm_exists(&private));
    for name in [&magic_only, &garbage, &short, &private] {
        std::fs::remove_file(shm_path(name)).unwrap();
    }
}
