//! An adversarial review of the segment lifecycle: one test per finding,
//! with real processes (the test binary re-executes itself to run an entry
//! point; see `shmring_testkit`) stopped at the library's failpoints or driven as
//! another user.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use shmring::process::{Args, Entry, EntryResult, IntoArgs, Process, ProcessBuilder};
use shmring::segment::{
    self, CreateOptions, ObjectKind, OpenOptions, Reclaimed, Segment, SegmentState,
};
use shmring::SegmentError;
use shmring_testkit::{
    child, executable_by_anyone, harness_args, run_child, shm_exists, shm_path, sleep_forever,
    unique_name, wait_child, wait_until, Watchdog,
};

/// The library's test switch that makes named creates take the fallback
/// path (no `O_TMPFILE`).
const FALLBACK_VAR: &str = "SHMRING_TEST_CREATE_FALLBACK";
/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";
const OBJECT_LEN: usize = 4096;
/// The unprivileged uid and gid of the tests that need a second user.
const NOBODY: u32 = 65534;

// The dev dependency on this crate enables the failpoints these tests stop
// processes at.
const _: () = assert!(
    shmring::core::failpoint::ENABLED,
    "tests/review_segment.rs needs the `failpoints` feature (see Cargo.toml)"
);

/// Word `i` of the object region.
fn word(seg: &Segment, i: usize) -> &AtomicU64 {
    assert!((i + 1) * 8 <= seg.object_len());
    // SAFETY: in bounds (asserted), 8-aligned (the object is 4096-aligned),
    // borrowed no longer than `seg`'s mapping, and only accessed atomically.
    unsafe { &*seg.object_ptr().as_ptr().cast::<AtomicU64>().add(i) }
}

use shmring_testkit::stop_self;

/// The failpoint a child stops at (see [`stop_at`]).
static STOP_AT: OnceLock<String> = OnceLock::new();

/// The failpoint hook of a child: stops at the step [`stop_at`] chose.
fn stop_at_chosen_step(name: &'static str, _context: &[u8]) {
    if STOP_AT.get().is_some_and(|step| step == name) {
        stop_self();
    }
}

/// Makes this child stop (SIGSTOP) at the failpoint `step`.
fn stop_at(step: String) {
    STOP_AT.set(step).unwrap();
    shmring::core::failpoint::set_hook(Some(stop_at_chosen_step));
}

/// Takes an OFD lock of `kind` on `byte` of `file`; whether it was granted.
fn ofd_lock(file: &std::fs::File, byte: u64, kind: libc::c_int) -> bool {
    // SAFETY: flock is a plain C struct of integers; all-zero is valid (and
    // l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // SAFETY: fcntl on an open descriptor with a valid, writable flock.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) == 0 }
}

// Entry points of the children.

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), &format!("child {what}"))
}

/// Creates the lock segment `name`, stopping at `step`, then waits for its
/// SIGKILL.
fn create_and_stop((name, step): (String, String)) -> EntryResult {
    let _dog = child_dog("create_and_stop");
    stop_at(step);
    let seg = Segment::create(
        &name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )?;
    shmring::core::failpoint::set_hook(None);
    word(&seg, 1).store(1, Ordering::SeqCst);
    sleep_forever();
}
static CREATE_AND_STOP: Entry<(String, String)> = shmring::entry!(create_and_stop);

/// Attaches to the segment `name`, prints its token, and waits for its
/// SIGKILL.
fn attach((name,): (String,)) -> EntryResult {
    let _dog = child_dog("attach");
    let seg = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default())?;
    println!("TOKEN {}", seg.peer_token());
    sleep_forever();
}
static ATTACH: Entry<(String,)> = shmring::entry!(attach);

/// Opens the segment `name`, stopping at the failpoint `step` (one of an
/// attach's: `segment.attach.row-claimed`, `segment.attach.generation-bumped`),
/// then waits for its SIGKILL.
fn attach_and_stop((name, step): (String, String)) -> EntryResult {
    let _dog = child_dog("attach_and_stop");
    stop_at(step);
    let _seg = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default())?;
    sleep_forever();
}
static ATTACH_AND_STOP: Entry<(String, String)> = shmring::entry!(attach_and_stop);

/// Reclaims the segment `name`, stopping at `step`; reports the outcome if
/// it gets past it.
fn reclaim_and_stop((name, step): (String, String)) -> EntryResult {
    let _dog = child_dog("reclaim_and_stop");
    stop_at(step);
    println!("RECLAIMED {:?}", segment::reclaim(&name));
    Ok(())
}
static RECLAIM_AND_STOP: Entry<(String, String)> = shmring::entry!(reclaim_and_stop);

/// Run as another user: plants `plant` ("file", "symlink" to the segment
/// `name`, or "fifo") at the path `stamp`.
fn plant_stamp((name, stamp, plant): (String, String, String)) -> EntryResult {
    let _dog = child_dog("plant_stamp");
    match plant.as_str() {
        "file" => std::fs::write(&stamp, b"")?,
        "symlink" => std::os::unix::fs::symlink(shm_path(&name), &stamp)?,
        "fifo" => {
            let c = std::ffi::CString::new(stamp)?;
            // SAFETY: `c` is a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        }
        other => panic!("unknown plant {other}"),
    }
    Ok(())
}
static PLANT_STAMP: Entry<(String, String, String)> = shmring::entry!(plant_stamp);

/// Sets the automatic sweep to `scope` (its stamp), names starting with
/// `prefix`, no period, no idleness; creates a segment (which may start a
/// sweep), waits for the sweep, and reports.
fn trigger_sweep((prefix, scope): (String, String)) -> EntryResult {
    let _dog = child_dog("trigger_sweep");
    segment::configure_auto_sweep(segment::AutoSweepConfig {
        period: Duration::ZERO,
        min_idle: Duration::ZERO,
        scope,
        prefix: prefix.trim_start_matches('/').to_owned(),
        ..segment::AutoSweepConfig::default()
    });
    let trigger = format!("{prefix}-trigger");
    let seg = Segment::create(
        &trigger,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )?;
    segment::wait_for_auto_sweep();
    drop(seg);
    println!("STARTED {}", segment::auto_sweeps_started());
    Ok(())
}
static TRIGGER_SWEEP: Entry<(String, String)> = shmring::entry!(trigger_sweep);

/// Run as another user who may only read the file of the segment `name`:
/// takes read locks on the bytes listed in `bytes` (comma-separated), says
/// so, and waits for its SIGKILL.
fn read_locker((name, bytes): (String, String)) -> EntryResult {
    let _dog = child_dog("read_locker");
    let file = std::fs::File::open(shm_path(&name))?;
    for byte in bytes.split(',') {
        let byte: u64 = byte.parse()?;
        assert!(ofd_lock(&file, byte, libc::F_RDLCK), "read lock {byte}");
    }
    println!("LOCKED");
    sleep_forever();
}
static READ_LOCKER: Entry<(String, String)> = shmring::entry!(read_locker);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[
        &CREATE_AND_STOP,
        &ATTACH,
        &ATTACH_AND_STOP,
        &RECLAIM_AND_STOP,
        &PLANT_STAMP,
        &TRIGGER_SWEEP,
        &READ_LOCKER,
    ]);
}

/// Spawns the child `builder` describes.
fn spawn(builder: ProcessBuilder) -> Child {
    builder.into_command().unwrap().spawn().unwrap()
}

/// A child that attaches to the segment `name` and prints its token
/// (see [`read_after`]).
fn attacher(name: &str) -> Child {
    let builder = child(CHILD_TEST, &ATTACH, (name.to_owned(),));
    spawn(builder.stdout(std::process::Stdio::piped()))
}

/// The state letter of `/proc/<pid>/stat`.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn wait_stopped(child: &Child, what: &str) {
    let pid = child.id();
    let stopped = wait_until(Duration::from_secs(60), || {
        matches!(proc_state(pid), Some('T' | 't'))
    });
    assert!(stopped, "{what} never stopped");
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Review finding 2: on the fallback create path (no `O_TMPFILE`), the
/// creator held the segment's name lock from staging until it had removed
/// its private name, i.e. also for a while *after* the segment got its
/// name. A creator stopped there (`segment.create.named`, or any instant
/// between the `link` and the private name's removal) made every open of
/// the complete, named segment fail with `NameLockTimeout`, every
/// `Segment::unlink` too, and `shmring rm` call it busy: a stalled creator
/// locked its name out.
#[test]
fn a_fallback_creator_stopped_after_naming_locks_no_open_out() {
    let _dog = Watchdog::new(Duration::from_secs(120), "stopped fallback creator");
    let name = unique_name("rev-fallback-named");
    let child = spawn(
        child(
            CHILD_TEST,
            &CREATE_AND_STOP,
            (name.clone(), "segment.create.named".to_owned()),
        )
        .env(FALLBACK_VAR, "1"),
    );
    wait_stopped(&child, "the fallback creator");
    let pid = child.id();
    let opts = OpenOptions {
        timeout: Duration::from_millis(300),
        ..OpenOptions::default()
    };
    let opened = Segment::open(&name, ObjectKind::Lock, &opts);
    let info = segment::inspect(&name);
    // Its private name (a second name of the same file) stays while the
    // creator lives, however old: the creator's peer row lock says it is
    // alive once the name lock is no longer held.
    let private = private_files_of(pid);
    assert_eq!(private.len(), 1, "{private:?}");
    let private = &private[0];
    age(private);
    let leftover = segment::inspect(private);
    let reclaimed = segment::reclaim(private);
    let seg = match opened {
        Ok(seg) => seg,
        Err(e) => {
            kill(child);
            panic!("an open of a complete, named segment whose (fallback) creator is stopped: {e}")
        }
    };
    assert!(
        !info.unwrap().init_locked,
        "the stopped creator holds the name lock of its named segment"
    );
    assert_eq!(leftover.unwrap().state, SegmentState::Initialising);
    assert!(
        matches!(reclaimed, Ok(Reclaimed::Kept(_))),
        "the private name of a live creator: {reclaimed:?}"
    );
    // Let it finish: it removes its private name itself.
    // SAFETY: kill has no memory-safety preconditions; `pid` is our child,
    // not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    assert!(wait_until(Duration::from_secs(60), || word(&seg, 1)
        .load(Ordering::SeqCst)
        == 1));
    assert!(private_files_of(pid).is_empty());
    kill(child);
    drop(seg);
    let _ = Segment::unlink(&name);
}

/// A killed fallback creator that had named its segment leaves its private
/// name: once old, and no lock held on it, a reclaim removes that name
/// only, and the segment lives on under its own.
#[test]
fn a_fallback_creator_killed_after_naming_leaves_a_private_name_that_goes_alone() {
    let _dog = Watchdog::new(Duration::from_secs(120), "killed fallback creator");
    let name = unique_name("rev-fallback-killed");
    let child = spawn(
        child(
            CHILD_TEST,
            &CREATE_AND_STOP,
            (name.clone(), "segment.create.named".to_owned()),
        )
        .env(FALLBACK_VAR, "1"),
    );
    wait_stopped(&child, "the fallback creator");
    let pid = child.id();
    let seg = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap();
    kill(child);
    let private = private_files_of(pid);
    assert_eq!(private.len(), 1, "{private:?}");
    let private = &private[0];
    // Our attachment holds a row of the same file: a lock is held on it.
    age(private);
    assert!(matches!(segment::reclaim(private), Ok(Reclaimed::Kept(_))));
    let probe = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap();
    drop(probe);
    word(&seg, 2).store(7, Ordering::SeqCst);
    // Detached without removing the name (a Lock with the default policy
    // would remove it on the last drop: keep one attachment in a child).
    let mut keeper = attacher(&name);
    read_after(&mut keeper, "TOKEN ");
    drop(seg);
    kill(keeper);
    // No lock held now: the private name goes, the segment's stays. (The
    // writes above made it young again.)
    age(private);
    assert_eq!(
        segment::inspect(private).unwrap().state,
        SegmentState::CreatorDied
    );
    assert_eq!(segment::reclaim(private).unwrap(), Reclaimed::Removed);
    assert!(private_files_of(pid).is_empty());
    let seg = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap();
    assert_eq!(word(&seg, 2).load(Ordering::SeqCst), 7, "the same segment");
    drop(seg);
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

/// Makes a file look a minute old (by its modification time).
fn age(name: &str) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

/// A command that runs `entry` with `args` as uid/gid 65534, from a copy
/// of this test binary that any user may execute.
fn as_nobody<A: Args>(entry: &Entry<A>, args: impl IntoArgs<A>) -> Command {
    static EXE: OnceLock<std::path::PathBuf> = OnceLock::new();
    let exe = EXE.get_or_init(|| executable_by_anyone(&std::env::current_exe().unwrap()));
    let mut cmd = Command::new(exe);
    cmd.args(harness_args(CHILD_TEST)).current_dir("/");
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
    Process::with_command(cmd, entry, args)
        .stdout(std::process::Stdio::piped())
        .into_command()
        .unwrap()
}

/// Reads the child's stdout up to a line holding `prefix` (the harness may
/// have written "test child_entry ... " before it); returns what follows
/// the prefix on that line.
fn read_after(child: &mut Child, prefix: &str) -> String {
    use std::io::BufRead;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the child ended before it printed {prefix:?}");
        if let Some((_, rest)) = line.split_once(prefix) {
            return rest.trim_end().to_owned();
        }
    }
}

/// Review finding 3: a segment created with a mode that lets another user
/// *read* it (0o644, 0o640, ...) lets that user take OFD *read* locks on
/// its lock bytes (a read lock needs only a read-only descriptor). A read
/// lock on the name lock byte made every open fail (`NameLockTimeout`) and
/// every drop keep the name; one on a dead peer's row byte made that peer
/// look alive for as long as the reader liked (so a lock it held was never
/// recovered). Such modes serve nothing (an open needs write access), so a
/// create now refuses them.
#[test]
fn a_user_who_may_only_read_a_segment_cannot_block_it_or_fake_liveness() {
    if !is_root() {
        println!("skipped: needs root to run a child as uid {NOBODY}");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(120), "read locks of another user");
    let name = unique_name("rev-read-locks");
    let opts = CreateOptions {
        mode: 0o644,
        ..CreateOptions::default()
    };
    let creator = match Segment::create(
        &name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &opts,
        |_, _| Ok(()),
    ) {
        // The fix: nobody but peers may lock its bytes.
        Err(SegmentError::InvalidConfig { .. }) => {
            for mode in [0o640, 0o604, 0o644, 0o744, 0o654, 0o620, 0o602] {
                let opts = CreateOptions {
                    mode,
                    ..CreateOptions::default()
                };
                let err = Segment::create(
                    &name,
                    ObjectKind::Lock,
                    [0; 8],
                    OBJECT_LEN,
                    &opts,
                    |_, _| Ok(()),
                )
                .unwrap_err();
                assert!(
                    matches!(err, SegmentError::InvalidConfig { .. }),
                    "{mode:o}: {err}"
                );
            }
            for mode in [0o600, 0o660, 0o666, 0o700, 0o670, 0o606] {
                let opts = CreateOptions {
                    mode,
                    ..CreateOptions::default()
                };
                let seg = Segment::create(
                    &name,
                    ObjectKind::Lock,
                    [0; 8],
                    OBJECT_LEN,
                    &opts,
                    |_, _| Ok(()),
                )
                .unwrap_or_else(|e| panic!("{mode:o}: {e}"));
                drop(seg);
            }
            return;
        }
        other => other.unwrap(),
    };
    // A peer that dies attached.
    let mut peer = attacher(&name);
    let dead: u64 = read_after(&mut peer, "TOKEN ").parse().unwrap();
    assert!(creator.is_peer_alive(dead));
    kill(peer);
    assert!(!creator.is_peer_alive(dead));
    // Rows are taken first free first: the creator has row 0, the dead
    // peer had row 1 (lock byte 1024 + 1). Byte 0 is the name lock.
    let row = (dead as u32) - 1;
    let bytes = format!("0,{}", 1024 + u64::from(row));
    let mut reader = as_nobody(&READ_LOCKER, (name.clone(), bytes))
        .spawn()
        .unwrap();
    read_after(&mut reader, "LOCKED");
    let faked_alive = creator.is_peer_alive(dead);
    let open = Segment::open(
        &name,
        ObjectKind::Lock,
        &OpenOptions {
            timeout: Duration::from_millis(200),
            ..OpenOptions::default()
        },
    );
    kill(reader);
    drop(creator);
    let _ = Segment::unlink(&name);
    assert!(
        !faked_alive,
        "uid {NOBODY}, who may only read the segment, made a dead peer look alive"
    );
    if let Err(e) = open {
        panic!("uid {NOBODY}, who may only read the segment, locked opens out: {e}");
    }
}

/// Where an attach can be stopped while it takes a row (see the `peers`
/// module docs): holding the row's claim byte, before and after the
/// generation bump.
const ATTACH_STEPS: [&str; 2] = [
    "segment.attach.row-claimed",
    "segment.attach.generation-bumped",
];

/// Creates a lock segment (with `opts`) and has a child attach and die
/// attached: returns the creator and the dead child's token.
fn segment_with_a_dead_peer(name: &str, opts: &CreateOptions) -> (Segment, u64) {
    let creator = Segment::create(name, ObjectKind::Lock, [0; 8], OBJECT_LEN, opts, |_, _| {
        Ok(())
    })
    .unwrap();
    let mut peer = attacher(name);
    let dead: u64 = read_after(&mut peer, "TOKEN ").parse().unwrap();
    assert!(creator.is_peer_alive(dead));
    kill(peer);
    assert!(!creator.is_peer_alive(dead));
    (creator, dead)
}

/// Spawns a child that opens `name` and stops at `step`; returns it once
/// it is stopped.
fn stopped_attacher(name: &str, step: &str) -> Child {
    let attacher = spawn(child(
        CHILD_TEST,
        &ATTACH_AND_STOP,
        (name.to_owned(), step.to_owned()),
    ));
    wait_stopped(&attacher, step);
    attacher
}

/// Review finding 7: a dead peer's token was reported alive for as long as
/// the *next* attacher of its row was stopped between taking the row's
/// lock and bumping the row's generation. Liveness is "the row's liveness
/// byte is held and its generation is the token's"; in that window the
/// byte was the newcomer's and the generation still the dead peer's. The
/// peers docs called this a window of "two system calls"; a `SIGSTOP` (or a
/// preemption) there stretched it without bound, and a `Lock` whose holder
/// died was not recovered meanwhile.
///
/// The fix: a second lock byte per row, the *claim* byte. An attacher takes
/// the claim byte, checks that the liveness byte is free, bumps the
/// generation, and only then takes the liveness byte and lets the claim
/// byte go. A stopped attacher holds only the claim byte, which no liveness
/// check asks. Checked at both places an attacher can stop at.
#[test]
fn a_dead_peer_is_not_alive_while_the_next_attacher_of_its_row_is_stopped() {
    let _dog = Watchdog::new(Duration::from_secs(180), "stopped attacher");
    for step in ATTACH_STEPS {
        let name = unique_name("rev-attach-stop");
        let (creator, dead) = segment_with_a_dead_peer(&name, &CreateOptions::default());
        // The next attacher takes the same (first free) row, and stops.
        let attacher = stopped_attacher(&name, step);
        std::thread::sleep(Duration::from_millis(500));
        let alive = creator.is_peer_alive(dead);
        let listed = creator.peers().into_iter().find(|p| p.token == dead);
        kill(attacher);
        drop(creator);
        assert!(
            !alive,
            "{step}: a peer killed before is reported alive while another process is stopped in its attach"
        );
        assert!(
            listed.is_none_or(|p| !p.alive),
            "{step}: peers() lists the dead peer as alive"
        );
    }
}

/// The claim bytes keep a reclaim (and `inspect`'s judgement) away from a
/// segment while a peer is stopped in its attach: it is alive, and about to
/// be attached. Killed there, the attacher leaves nothing held: the row it
/// was taking goes to the next attacher, nobody reads alive, and the
/// segment is abandoned again.
#[test]
fn an_attacher_stopped_or_killed_in_its_attach_is_judged_rightly_by_reclaim() {
    let _dog = Watchdog::new(Duration::from_secs(180), "stopped attacher vs reclaim");
    let opts = CreateOptions {
        unlink: segment::UnlinkPolicy::Never,
        ..CreateOptions::default()
    };
    for step in ATTACH_STEPS {
        let name = unique_name("rev-attach-reclaim");
        // Row 0: the creator, detached cleanly; row 1: a dead peer.
        let (creator, dead) = segment_with_a_dead_peer(&name, &opts);
        drop(creator);
        assert!(segment::inspect(&name).unwrap().is_abandoned());
        // Takes row 0, and stops.
        let attacher = stopped_attacher(&name, step);
        let info = segment::inspect(&name).unwrap();
        let outcome = segment::reclaim(&name);
        let still_there = shm_exists(&name);
        kill(attacher);
        assert!(info.attaching, "{step}: inspect does not see the attach");
        assert!(!info.is_abandoned(), "{step}: inspect calls it abandoned");
        assert_eq!(
            outcome.unwrap(),
            Reclaimed::Kept("a peer is attaching"),
            "{step}"
        );
        assert!(still_there, "{step}: reclaimed under a stopped attacher");
        // Killed there: nothing held, nobody alive, and row 0 is free.
        let info = segment::inspect(&name).unwrap();
        assert!(
            !info.attaching && info.alive_peers() == 0,
            "{step}: {info:?}"
        );
        assert!(info.is_abandoned(), "{step}: {info:?}");
        let next = Segment::open(&name, ObjectKind::Lock, &OpenOptions::default()).unwrap();
        assert_eq!(next.peer_token() as u32, 1, "{step}: not row 0");
        assert!(!next.is_peer_alive(dead));
        assert_eq!(next.peers().iter().filter(|p| p.alive).count(), 1);
        drop(next);
        assert_eq!(segment::reclaim(&name).unwrap(), Reclaimed::Removed);
    }
}

/// Review finding: `reclaim` let the segment's name lock go before the
/// row locks it had taken to decide (they went with its descriptor, after
/// `remove_name` returned). A reclaimer stopped in that gap, having *kept*
/// the segment, left every row taken and the name lock free: every open
/// found the peer table full, waited for the free name lock, retried, and
/// failed with `PeerTableFull`. The claims must go before the name lock.
#[test]
fn a_reclaimer_stopped_after_deciding_locks_no_open_out() {
    let _dog = Watchdog::new(Duration::from_secs(120), "stopped reclaimer");
    let name = unique_name("rev-reclaim-stop");
    // Never, and every peer detached cleanly: reclaim keeps it, after
    // taking every row's claim.
    let opts = CreateOptions {
        unlink: segment::UnlinkPolicy::Never,
        ..CreateOptions::default()
    };
    let creator = Segment::create(
        &name,
        ObjectKind::Lock,
        [0; 8],
        OBJECT_LEN,
        &opts,
        |_, _| Ok(()),
    )
    .unwrap();
    drop(creator);
    let args = (name.clone(), "segment.reclaim.decided".to_owned());
    let mut reclaimer =
        spawn(child(CHILD_TEST, &RECLAIM_AND_STOP, args).stdout(std::process::Stdio::piped()));
    wait_stopped(&reclaimer, "the reclaimer");
    let open = Segment::open(
        &name,
        ObjectKind::Lock,
        &OpenOptions {
            timeout: Duration::from_secs(1),
            ..OpenOptions::default()
        },
    );
    let opened = open
        .as_ref()
        .map(Segment::peer_token)
        .map_err(ToString::to_string);
    drop(open);
    // Let it finish: it kept the segment.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(reclaimer.id() as libc::pid_t, libc::SIGCONT) };
    let outcome = read_after(&mut reclaimer, "RECLAIMED ");
    wait_child(reclaimer, Duration::from_secs(30));
    let _ = Segment::unlink(&name);
    assert_eq!(outcome, "Ok(Kept(\"every peer detached cleanly\"))");
    assert!(
        opened.is_ok(),
        "an open failed while a reclaimer that had decided was stopped: {opened:?}"
    );
}

/// Review finding: names starting with `.shmring-sweep-` (the prefix of
/// the sweep's per-user stamp file, `/dev/shm/.shmring-sweep-<uid>`) were
/// accepted as segment names: a create could take the stamp's name (and
/// stop the automatic sweep for the user, who finds a segment where the
/// stamp should be) and an open could attach to whatever is there. They are
/// reserved like the fallback create path's private names.
#[test]
fn the_sweep_stamps_names_are_no_segment_names() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let names = [
        format!("/.shmring-sweep-{uid}.rev-{}", std::process::id()),
        format!(".shmring-sweep-{}", u32::MAX - std::process::id()),
        "/.shmring-sweep-".to_owned(),
    ];
    for name in &names {
        let created = Segment::create(
            name,
            ObjectKind::Lock,
            [0; 8],
            OBJECT_LEN,
            &CreateOptions::default(),
            |_, _| Ok(()),
        );
        let refused = matches!(created, Err(SegmentError::InvalidName { .. }));
        drop(created);
        let _ = std::fs::remove_file(shm_path(&format!("/{}", name.trim_start_matches('/'))));
        assert!(refused, "create accepted {name:?}");
        let opened = Segment::open(name, ObjectKind::Lock, &OpenOptions::default());
        assert!(
            matches!(opened, Err(SegmentError::InvalidName { .. })),
            "open of {name:?}: {opened:?}"
        );
    }
    // Near misses are segment names.
    for prefix in ["/.shmring-sweep", "/x.shmring-sweep-"] {
        let name = format!("{prefix}{}", &unique_name("rev")[1..]);
        let seg = Segment::create(
            &name,
            ObjectKind::Lock,
            [0; 8],
            OBJECT_LEN,
            &CreateOptions::default(),
            |_, _| Ok(()),
        )
        .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        drop(seg);
        assert!(!shm_exists(&name));
    }
}

/// Coverage: another user who plants this user's sweep stamp (a regular
/// file, a symbolic link to one of this user's files, a FIFO) stops the
/// automatic sweep for this user (documented), and nothing more: the
/// planted file is not written, the link's target neither, no create
/// hangs, and nothing is removed on its account.
#[test]
fn a_stamp_planted_by_another_user_stops_the_sweep_and_nothing_else() {
    if !is_root() {
        println!("skipped: needs root to run a child as uid {NOBODY}");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(120), "planted stamps");
    for plant in ["file", "symlink", "fifo"] {
        let prefix = unique_name("rev-stamp");
        let scope = format!("rev{}", &prefix[prefix.len() - 9..]);
        let stamp = format!("/dev/shm/.shmring-sweep-0.{scope}");
        // An abandoned, empty segment under the prefix: what a sweep with
        // its own stamp would remove at once.
        let victim = format!("{prefix}-victim");
        let seg = Segment::create(
            &victim,
            ObjectKind::Lock,
            [0; 8],
            OBJECT_LEN,
            &CreateOptions::default(),
            |_, _| Ok(()),
        )
        .unwrap();
        let mut peer = attacher(&victim);
        read_after(&mut peer, "TOKEN ");
        // Leaves without removing the name: the peer keeps it, then dies.
        drop(seg);
        kill(peer);
        assert!(segment::inspect(&victim).unwrap().is_abandoned());
        let before = std::fs::read(shm_path(&victim)).unwrap();

        let planted = as_nobody(
            &PLANT_STAMP,
            (victim.clone(), stamp.clone(), plant.to_owned()),
        )
        .output()
        .unwrap();
        assert!(planted.status.success(), "{plant}: {planted:?}");
        let args = (prefix.clone(), scope.clone());
        let mut trigger =
            spawn(child(CHILD_TEST, &TRIGGER_SWEEP, args).stdout(std::process::Stdio::piped()));
        let started = read_after(&mut trigger, "STARTED ");
        assert!(wait_child(trigger, Duration::from_secs(60)).success());
        let victim_kept = std::path::Path::new(&shm_path(&victim)).exists();
        let stamp_meta = std::fs::symlink_metadata(&stamp).unwrap();
        let stamp_len = if plant == "file" { stamp_meta.len() } else { 0 };
        let after = std::fs::read(shm_path(&victim)).ok();
        let _ = std::fs::remove_file(&stamp);
        let _ = std::fs::remove_file(shm_path(&victim));
        assert_eq!(started, "0", "{plant}: a sweep ran on another user's stamp");
        assert!(victim_kept, "{plant}: removed on a planted stamp's account");
        assert_eq!(stamp_len, 0, "{plant}: the planted stamp was written");
        assert!(
            after.as_deref() == Some(&before[..]),
            "{plant}: the link's target was written"
        );
    }
}
