//! A create is atomic: a creator stopped or killed at any step of a create
//! leaves nothing under the name, blocks no later create, and is never
//! reported dead to an opener. Real processes: the test binary re-executes
//! itself as a creator that stops itself (`SIGSTOP`) at a chosen step (a
//! failpoint of `Segment::create`, compiled in by this crate's dev
//! dependency on itself with `failpoints`, or inside `init`), and the test
//! then kills it or lets it go on.

use std::os::unix::fs::FileExt;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use shmring::process::{Entry, EntryResult};
use shmring::segment::{
    self, CreateOptions, ObjectKind, OpenOptions, Reclaimed, Segment, SegmentState,
};
use shmring::SegmentError;
use shmring_testkit::{
    child, run_child, shm_exists, sleep_forever, unique_name, wait_child, wait_until, Watchdog,
};

/// The library's test switch that makes named creates take the fallback
/// path (no `O_TMPFILE`).
const FALLBACK_VAR: &str = "SHMRING_TEST_CREATE_FALLBACK";
/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";
const OBJECT_LEN: usize = 4096;
const MARK: u64 = 0x0bad_cafe_f00d_0001;

/// Every step a create can be stopped at: its failpoints, and `init`.
const STEPS: [&str; 8] = [
    "segment.create.staged",
    "segment.create.sized",
    "segment.create.header-written",
    "segment.create.attached",
    "init",
    "segment.create.initialised",
    "segment.create.published",
    "segment.create.named",
];

/// Word `i` of the object region.
fn word(seg: &Segment, i: usize) -> &AtomicU64 {
    assert!((i + 1) * 8 <= seg.object_len());
    // SAFETY: in bounds (asserted), 8-aligned (the object is 4096-aligned),
    // borrowed no longer than `seg`'s mapping, and only accessed atomically.
    unsafe { &*seg.object_ptr().as_ptr().cast::<AtomicU64>().add(i) }
}

use shmring_testkit::stop_self;

/// The step the creator stops at.
static STOP_AT: OnceLock<String> = OnceLock::new();

/// The failpoint hook of the creator: stops at the step it was given.
fn stop_at_chosen_step(name: &'static str, _context: &[u8]) {
    if STOP_AT.get().is_some_and(|step| step == name) {
        stop_self();
    }
}

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), &format!("child {what}"))
}

/// Creates the segment `name`, stopping itself at `step`; once let go,
/// proves the segment works (answers the parent's 42 with 43) and waits
/// for its SIGKILL.
fn create_and_stop((name, step): (String, String)) -> EntryResult {
    let _dog = child_dog("create_and_stop");
    STOP_AT.set(step.clone()).unwrap();
    shmring::core::failpoint::set_hook(Some(stop_at_chosen_step));
    let seg = Segment::create(
        &name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &CreateOptions::default(),
        |p, _| {
            if step == "init" {
                stop_self();
            }
            // SAFETY: the object region is 4096-aligned, >= 8 bytes,
            // and nobody else can see it yet.
            unsafe { p.as_ptr().cast::<u64>().write(MARK) };
            Ok(())
        },
    )
    .unwrap();
    shmring::core::failpoint::set_hook(None);
    // Proves the segment works: answer the parent's 42 with 43.
    assert!(wait_until(Duration::from_secs(60), || word(&seg, 1)
        .load(Ordering::SeqCst)
        == 42));
    word(&seg, 2).store(43, Ordering::SeqCst);
    sleep_forever();
}
static CREATE_AND_STOP: Entry<(String, String)> = shmring::entry!(create_and_stop);

/// Run with the fallback forced: a failing or panicking init leaves
/// neither the name `name` nor the private file behind.
fn failing_inits((name,): (String,)) -> EntryResult {
    let _dog = child_dog("failing_inits");
    let err = Segment::create(
        &name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| {
            Err(SegmentError::InvalidConfig {
                reason: "from init".into(),
            })
        },
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::InvalidConfig { .. }), "{err}");
    assert!(private_files_of(std::process::id()).is_empty());
    let panicked = std::panic::catch_unwind(|| {
        Segment::create(
            &name,
            ObjectKind::Lock,
            [0; 8],
            OBJECT_LEN,
            &CreateOptions::default(),
            |_, _| panic!("init panics"),
        )
    });
    assert!(panicked.is_err());
    assert!(private_files_of(std::process::id()).is_empty());
    assert!(!shm_exists(&name));
    // And the fallback path works end to end.
    let seg = create(&name).unwrap();
    assert!(private_files_of(std::process::id()).is_empty());
    drop(seg);
    assert!(!shm_exists(&name));
    println!("FAILING_INITS_OK");
    Ok(())
}
static FAILING_INITS: Entry<(String,)> = shmring::entry!(failing_inits);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&CREATE_AND_STOP, &FAILING_INITS]);
}

/// The state letter of `/proc/<pid>/stat`.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn spawn_creator(name: &str, step: &str, fallback: bool) -> Child {
    let mut builder = child(
        CHILD_TEST,
        &CREATE_AND_STOP,
        (name.to_owned(), step.to_owned()),
    );
    if fallback {
        builder = builder.env(FALLBACK_VAR, "1");
    }
    let child = builder.into_command().unwrap().spawn().unwrap();
    let pid = child.id();
    let stopped = wait_until(Duration::from_secs(60), || {
        matches!(proc_state(pid), Some('T' | 't'))
    });
    assert!(stopped, "the creator never stopped at {step}");
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

fn open(name: &str) -> Result<Segment, SegmentError> {
    let opts = OpenOptions {
        timeout: Duration::from_millis(200),
        ..OpenOptions::default()
    };
    Segment::open(name, ObjectKind::Lock, &opts)
}

fn create(name: &str) -> Result<Segment, SegmentError> {
    Segment::create(
        name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
}

/// The files in /dev/shm under a private name of the fallback create path
/// made by process `pid`.
fn private_files_of(pid: u32) -> Vec<String> {
    let prefix = format!(".shmring-creating.{pid}.");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(&prefix))
        .map(|n| format!("/{n}"))
        .collect()
}

// The dev dependency on this crate enables the failpoints these tests stop
// creators at.
const _: () = assert!(
    shmring::core::failpoint::ENABLED,
    "tests/atomic_create.rs needs the `failpoints` feature (see Cargo.toml)"
);

fn killed_at_every_step(fallback: bool) {
    for step in STEPS {
        let name = unique_name("atomic-kill");
        let child = spawn_creator(&name, step, fallback);
        let pid = child.id();
        if step != "segment.create.named" {
            // Stopped mid-create: the segment is nowhere to be found.
            assert!(!shm_exists(&name), "{step}: a half-made segment is named");
            let err = open(&name).unwrap_err();
            assert!(
                matches!(err, SegmentError::NotFound { .. }),
                "{step}: {err}"
            );
        }
        kill(child);
        if step == "segment.create.named" {
            // Complete and named, its creator dead: a create reclaims it
            // at once (a lock holds no data; see tests/reclaim.rs for
            // segments that do).
            let seg = create(&name).unwrap_or_else(|e| panic!("{step}: {e}"));
            assert_eq!(word(&seg, 0).load(Ordering::SeqCst), 0, "a fresh segment");
            drop(seg);
        } else {
            assert!(!shm_exists(&name), "{step}: the killed creator left a name");
            let err = open(&name).unwrap_err();
            assert!(
                matches!(err, SegmentError::NotFound { .. }),
                "{step}: {err}"
            );
            // No lockout: a create of the same name works at once.
            drop(create(&name).unwrap_or_else(|e| panic!("{step}: {e}")));
        }
        assert!(!shm_exists(&name), "{step}: the new segment's drop unlinks");

        let leftovers = private_files_of(pid);
        if !fallback {
            assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
            continue;
        }
        // The fallback path leaves its private file, which blocks nothing
        // and which reclaim removes once it is old enough.
        assert_eq!(leftovers.len(), 1, "{step}: {leftovers:?}");
        let leftover = &leftovers[0];
        let info = segment::inspect(leftover).unwrap();
        assert_eq!(info.state, SegmentState::Initialising, "{step}: young");
        assert!(!info.is_abandoned() && !info.holds_data());
        assert!(
            matches!(segment::reclaim(leftover), Ok(Reclaimed::Kept(_))),
            "{step}: a young leftover is kept"
        );
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm{leftover}"))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let info = segment::inspect(leftover).unwrap();
        assert_eq!(info.state, SegmentState::CreatorDied, "{step}");
        assert!(info.is_abandoned());
        assert_eq!(segment::reclaim(leftover).unwrap(), Reclaimed::Removed);
        assert!(private_files_of(pid).is_empty());
    }
}

#[test]
fn a_creator_killed_at_any_step_leaves_no_name_and_no_file() {
    let _dog = Watchdog::new(Duration::from_secs(300), "killed creators");
    killed_at_every_step(false);
}

#[test]
fn a_fallback_creator_killed_at_any_step_blocks_no_name() {
    let _dog = Watchdog::new(Duration::from_secs(300), "killed fallback creators");
    killed_at_every_step(true);
}

fn stopped_for_a_second(step: &str, fallback: bool) {
    let name = unique_name("atomic-stop");
    let child = spawn_creator(&name, step, fallback);
    let pid = child.id();
    // For a second, every open finds nothing: not "creator died", not a
    // timeout, not a half-made segment.
    let start = Instant::now();
    let mut opens = 0;
    while start.elapsed() < Duration::from_secs(1) {
        match open(&name) {
            Err(SegmentError::NotFound { .. }) => opens += 1,
            Err(e) => panic!("{step}: an open during a stopped create said {e}"),
            Ok(_) => panic!("{step}: an open attached to a stopped create"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(opens > 0);
    // SAFETY: kill has no memory-safety preconditions; `pid` is our child,
    // not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    let mut seg = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            seg = open(&name).ok();
            seg.is_some()
        }),
        "{step}: the resumed create never finished"
    );
    let seg = seg.unwrap();
    assert_eq!(word(&seg, 0).load(Ordering::SeqCst), MARK, "init's writes");
    word(&seg, 1).store(42, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(60), || word(&seg, 2)
        .load(Ordering::SeqCst)
        == 43));
    kill(child);
    drop(seg);
    assert!(
        private_files_of(pid).is_empty(),
        "{step}: a finished create leaves no private file"
    );
}

#[test]
fn a_stopped_creator_is_never_reported_dead_and_finishes_after_sigcont() {
    let _dog = Watchdog::new(Duration::from_secs(300), "stopped creators");
    stopped_for_a_second("init", false);
    for fallback in [false, true] {
        for step in ["segment.create.staged", "segment.create.published"] {
            stopped_for_a_second(step, fallback);
        }
    }
}

#[test]
fn a_file_under_a_segment_name_with_version_0_is_refused_at_once() {
    // What a half-made segment looked like before creation was atomic: now
    // it can only be a foreign or corrupted file. No wait, no CreatorDied.
    let name = unique_name("atomic-v0");
    let mut bytes = vec![0u8; 8192];
    bytes[..8].copy_from_slice(b"SHMRING\0");
    std::fs::write(format!("/dev/shm{name}"), &bytes).unwrap();
    let start = Instant::now();
    let opts = OpenOptions {
        timeout: Duration::from_secs(30),
        ..OpenOptions::default()
    };
    let err = Segment::open(&name, ObjectKind::Lock, &opts).unwrap_err();
    assert!(
        matches!(err, SegmentError::VersionMismatch { found: 0, .. }),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(30), "no wait");
    let empty = unique_name("atomic-empty");
    std::fs::write(format!("/dev/shm{empty}"), b"").unwrap();
    let err = Segment::open(&empty, ObjectKind::Lock, &opts).unwrap_err();
    assert!(matches!(err, SegmentError::NotShmring { .. }), "{err}");
    // Neither is removed by a create: the name stays taken.
    for n in [&name, &empty] {
        let err = create(n).unwrap_err();
        assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err}");
        assert!(shm_exists(n));
        let file = std::fs::File::open(format!("/dev/shm{n}")).unwrap();
        let mut first = [0u8; 8];
        if n == &name {
            file.read_exact_at(&mut first, 0).unwrap();
            assert_eq!(&first, b"SHMRING\0");
        }
        std::fs::remove_file(format!("/dev/shm{n}")).unwrap();
    }
}

#[test]
fn failing_inits_on_the_fallback_path_leave_nothing() {
    let _dog = Watchdog::new(Duration::from_secs(60), "failing inits");
    let name = unique_name("atomic-initfail");
    let out = child(CHILD_TEST, &FAILING_INITS, (name.clone(),))
        .env(FALLBACK_VAR, "1")
        .into_command()
        .unwrap()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("FAILING_INITS_OK"), "{text}");
    assert!(!shm_exists(&name));
}
