//! DESIGN.md's security contract, tested: segments are 0600 whatever the
//! umask; `O_EXCL` creation never reuses a name; a segment owned by another
//! uid is refused unless allowed; names are validated; anonymous segments
//! are sealed against resizing; and a second, non-root uid cannot open a
//! 0600 segment at all.
//!
//! The two-uid tests need root (the child drops to uid/gid 65534 before it
//! execs this binary again to run an entry point); they print why and pass
//! otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use shmring::process::{Entry, EntryResult, Process};
use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};
use shmring::SegmentError;
use shmring_testkit::{
    executable_by_anyone, harness_args, run_child, shm_path, unique_name, wait_child,
};

/// The unprivileged uid and gid the two-uid tests use ("nobody").
const NOBODY: u32 = 65534;
/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

fn create(name: &str, opts: &CreateOptions) -> Result<Segment, SegmentError> {
    Segment::create(name, ObjectKind::Lock, [1; 8], 64, opts, |_, _| Ok(()))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn nobody_exe() -> &'static std::path::Path {
    static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| executable_by_anyone(&std::env::current_exe().unwrap()))
}

/// This test binary again (a copy nobody can execute), running `entry` on
/// the segment `name` as uid/gid 65534.
fn as_nobody(entry: &Entry<(String,)>, name: &str) -> Command {
    let mut cmd = Command::new(nobody_exe());
    cmd.args(harness_args(CHILD_TEST));
    cmd.current_dir("/");
    // SAFETY: runs in the forked child before exec; setgroups, setgid and
    // setuid are async-signal-safe system calls and touch no parent state.
    unsafe {
        cmd.pre_exec(|| {
            let check = |rc: libc::c_int| match rc {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            };
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(NOBODY))?;
            check(libc::setuid(NOBODY))
        });
    }
    Process::with_command(cmd, entry, (name.to_owned(),))
        .into_command()
        .expect("hand the child its arguments")
}

// Entry points of the children, which run as nobody.

fn assert_nobody() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(uid, NOBODY, "the child runs as nobody");
}

/// Creates the segment `name`, never to be unlinked, and leaves it.
fn create_as((name,): (String,)) -> EntryResult {
    assert_nobody();
    let opts = CreateOptions {
        unlink: UnlinkPolicy::Never,
        ..CreateOptions::default()
    };
    std::mem::forget(create(&name, &opts).expect("nobody creates"));
    Ok(())
}
static CREATE: Entry<(String,)> = shmring::entry!(create_as);

/// Creates the segment `name` with the default policy and exits attached:
/// an abandoned segment owned by nobody.
fn create_and_die((name,): (String,)) -> EntryResult {
    assert_nobody();
    let opts = CreateOptions::default();
    std::mem::forget(create(&name, &opts).expect("nobody creates"));
    Ok(())
}
static CREATE_AND_DIE: Entry<(String,)> = shmring::entry!(create_and_die);

/// Tries to open the segment `name` (another uid's, 0600): refused.
fn open((name,): (String,)) -> EntryResult {
    assert_nobody();
    let opts = OpenOptions {
        allow_foreign_owner: true,
        ..OpenOptions::default()
    };
    let err = Segment::open(&name, ObjectKind::Lock, &opts).unwrap_err();
    assert!(
        matches!(err, SegmentError::PermissionDenied { .. }),
        "{err:?}"
    );
    Ok(())
}
static OPEN: Entry<(String,)> = shmring::entry!(open);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&CREATE, &CREATE_AND_DIE, &OPEN]);
}

#[test]
fn segments_are_0600_by_default_even_under_umask_0() {
    let name = unique_name("mode");
    // SAFETY: umask only swaps the process's file mode mask; this test
    // binary creates no file expecting a stricter mask meanwhile.
    let old = unsafe { libc::umask(0) };
    let created = create(&name, &CreateOptions::default());
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let segment = created.unwrap();
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    drop(segment);

    // An explicit mode is set exactly; modes without owner rw, with bits
    // beyond 0o777, or with read without write for the group or others
    // (tests/review_segment.rs), are refused.
    let name = unique_name("mode");
    let opts = CreateOptions {
        mode: 0o660,
        ..CreateOptions::default()
    };
    let segment = create(&name, &opts).unwrap();
    let mode = std::fs::metadata(shm_path(&name))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o660);
    drop(segment);
    for mode in [0o400, 0o200, 0o000, 0o1600, 0o4600, 0o2777, 0o640] {
        let opts = CreateOptions {
            mode,
            ..CreateOptions::default()
        };
        let err = create(&unique_name("mode"), &opts).unwrap_err();
        assert!(
            matches!(err, SegmentError::InvalidConfig { .. }),
            "{mode:o}: {err:?}"
        );
    }
}

#[test]
fn create_never_reuses_an_existing_name() {
    let name = unique_name("excl");
    let first = create(&name, &CreateOptions::default()).unwrap();
    let err = create(&name, &CreateOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err:?}");
    // The first segment is untouched: it still opens with its parameters.
    let peer = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap();
    assert_eq!(peer.params(), [1; 8]);
    drop((peer, first));

    // A file that is not a segment: refused, and left exactly as it was.
    let name = unique_name("excl-foreign");
    std::fs::write(shm_path(&name), b"not a segment").unwrap();
    let err = create(&name, &CreateOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(shm_path(&name)).unwrap(), b"not a segment");
    std::fs::remove_file(shm_path(&name)).unwrap();

    // A symlink planted under the name is not followed.
    let name = unique_name("excl-link");
    let target = std::env::temp_dir().join(format!("shmring-target-{}", std::process::id()));
    std::fs::write(&target, b"victim").unwrap();
    std::os::unix::fs::symlink(&target, shm_path(&name)).unwrap();
    let err = create(&name, &CreateOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"victim");
    std::fs::remove_file(shm_path(&name)).unwrap();
    std::fs::remove_file(&target).unwrap();
}

#[test]
fn names_are_validated() {
    let long = "x".repeat(shmring::segment::MAX_NAME_LEN + 1);
    for bad in [
        "",
        "/",
        "a/b",
        "/a/b",
        "//a",
        "/a/",
        ".",
        "/..",
        "a\0b",
        &long,
        // Control characters would reach terminals raw through `ls` and
        // error messages.
        "/a\x1b[2Jb",
        "a\nb",
        "\r",
        "a\tb",
        "a\x7f",
        "a\u{9b}31m",
    ] {
        let err = create(bad, &CreateOptions::default()).unwrap_err();
        assert!(
            matches!(err, SegmentError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        let err = Segment::open(bad, ObjectKind::Lock, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(err, SegmentError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
        assert!(matches!(
            Segment::unlink(bad),
            Err(SegmentError::InvalidName { .. })
        ));
    }
    // Reserved for the private names of the fallback create path: no
    // segment may be created or opened under one (unlink and reclaim accept
    // them, to remove a killed creator's leftovers).
    let reserved = "/.shmring-creating.1.2.3";
    let err = create(reserved, &CreateOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::InvalidName { .. }), "{err:?}");
    let err = Segment::open(reserved, ObjectKind::Lock, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::InvalidName { .. }), "{err:?}");
    assert!(matches!(
        Segment::unlink(reserved),
        Err(SegmentError::NotFound { .. })
    ));
    // The longest allowed name works, and lands directly in /dev/shm.
    let name = format!("/{}", "y".repeat(shmring::segment::MAX_NAME_LEN));
    let segment = create(&name, &CreateOptions::default()).unwrap();
    assert!(std::path::Path::new(&shm_path(&name)).exists());
    drop(segment);
}

#[test]
fn anonymous_segments_are_sealed_against_resizing() {
    let segment = Segment::create_anonymous(
        ObjectKind::Lock,
        [0; 8],
        64,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    // `share_with_child` parks a duplicate of the descriptor in the
    // command; the command is never spawned, we only borrow that fd.
    let mut cmd = Command::new("true");
    segment
        .share_with_child(&mut cmd, "SHMRING_SEALED")
        .unwrap();
    let value = cmd
        .get_envs()
        .find(|(k, _)| *k == "SHMRING_SEALED")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let fd: i32 = value.split(':').next().unwrap().parse().unwrap();
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "memfd mode");
    let len = meta.len() as libc::off_t;
    // SAFETY: `fd` is open (owned by `cmd`, alive here); fcntl and
    // ftruncate take integers only and fail cleanly on a sealed file.
    let (seals, shrink, grow) = unsafe {
        (
            libc::fcntl(fd, libc::F_GET_SEALS),
            libc::ftruncate(fd, len - 4096),
            libc::ftruncate(fd, len + 4096),
        )
    };
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(seals & want, want, "seals {seals:#x}");
    assert_eq!(
        (shrink, grow),
        (-1, -1),
        "ftruncate must fail on a sealed memfd"
    );
    assert_eq!(
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .len(),
        meta.len()
    );
    drop(cmd);
}

#[test]
fn a_segment_of_another_uid_is_refused_unless_allowed() {
    if !is_root() {
        println!("skipped: needs root to run a child as uid {NOBODY}");
        return;
    }
    let name = unique_name("foreign");
    let child = as_nobody(&CREATE, &name).spawn().unwrap();
    assert!(wait_child(child, Duration::from_secs(30)).success());
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (NOBODY, 0o600)
    );
    let err = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap_err();
    match err {
        SegmentError::ForeignOwner {
            owner_uid, our_uid, ..
        } => assert_eq!((owner_uid, our_uid), (NOBODY, 0)),
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    let allowed = OpenOptions {
        allow_foreign_owner: true,
        ..OpenOptions::default()
    };
    let segment = Segment::open(&name, ObjectKind::Lock, &allowed).unwrap();
    assert_eq!(segment.params(), [1; 8]);
    drop(segment);
    Segment::unlink(&name).unwrap();
}

#[test]
fn another_uid_cannot_open_a_0600_segment() {
    if !is_root() {
        println!("skipped: needs root to run a child as uid {NOBODY}");
        return;
    }
    let name = unique_name("private");
    let segment = create(&name, &CreateOptions::default()).unwrap();
    let child = as_nobody(&OPEN, &name).spawn().unwrap();
    assert!(wait_child(child, Duration::from_secs(30)).success());
    drop(segment);
}

#[test]
fn another_user_s_abandoned_segment_is_never_reclaimed() {
    if !is_root() {
        println!("skipped: needs root to run a child as uid {NOBODY}");
        return;
    }
    let name = unique_name("foreign-abandoned");
    let child = as_nobody(&CREATE_AND_DIE, &name).spawn().unwrap();
    assert!(wait_child(child, Duration::from_secs(30)).success());
    let info = shmring::segment::inspect(&name).unwrap();
    assert_eq!(info.owner_uid, NOBODY);
    assert!(info.is_abandoned(), "{info:?}");
    // Even root removes only its own: reclaim, the sweep and a create's
    // implicit reclaim all keep it.
    assert_eq!(
        shmring::segment::reclaim(&name).unwrap(),
        shmring::segment::Reclaimed::Kept("it belongs to another user")
    );
    assert!(shmring::segment::sweep(&name, Duration::ZERO)
        .unwrap()
        .is_empty());
    let err = create(&name, &CreateOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::AlreadyExists { .. }), "{err:?}");
    assert!(std::path::Path::new(&shm_path(&name)).exists());
    // Asked explicitly, by name, it goes.
    Segment::unlink(&name).unwrap();
}
