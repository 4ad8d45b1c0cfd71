//! Multi-process tests: real child processes made by re-executing this test
//! binary to run an entry point (`child_entry` in segment.rs runs
//! [`run_entries`]). Where inheritance itself is under test, a segment is
//! handed over with `share_with_child` under [`FD_VAR`] and taken with
//! `open_inherited`.

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shmring::process::{Args, Entry, EntryResult, IntoArgs};
use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};
use shmring::SegmentError;
use shmring_testkit::{
    child, run_child, sleep_forever, unique_name, wait_child, wait_until, Watchdog,
};

use super::common::*;

/// The variable a shared segment's descriptor travels in (the inheritance
/// API under test).
const FD_VAR: &str = "SHMRING_TEST_FD";
const MARK: u64 = 0x5eed_5eed_5eed_5eed;

/// The command of a child running `entry` with `args`.
fn command<A: Args>(entry: &Entry<A>, args: impl IntoArgs<A>) -> Command {
    child("child_entry", entry, args)
        .into_command()
        .expect("hand the child its arguments")
}

/// The state letter of `/proc/<pid>/stat` ('Z' for a zombie).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The inherited descriptor number recorded in `value` ("fd:dev:ino:cookie[:name]").
fn fd_of(value: &str) -> i32 {
    value.split(':').next().unwrap().parse().unwrap()
}

// Entry points of the children.

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(60), &format!("child {what}"))
}

/// Opens the segment `name`, checks what the parent wrote, and leaves its
/// token.
fn open_and_check((name,): (String,)) -> EntryResult {
    let _dog = child_dog("open_and_check");
    let seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())?;
    assert_eq!(seg.params(), PARAMS);
    assert_eq!(word(&seg, 0).load(SEQ), 0xfeed);
    word(&seg, 1).store(seg.peer_token(), SEQ);
    Ok(())
}
static OPEN_AND_CHECK: Entry<(String,)> = shmring::entry!(open_and_check);

/// Attaches to the segment `name`, leaves its token, and sleeps.
fn attach_and_sleep((name,): (String,)) -> EntryResult {
    let _dog = child_dog("attach_and_sleep");
    let seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())?;
    word(&seg, 0).store(seg.peer_token(), SEQ);
    sleep_forever();
}
static ATTACH_AND_SLEEP: Entry<(String,)> = shmring::entry!(attach_and_sleep);

/// Creates the segment `name` and hangs in its init, saying so.
fn create_and_hang((name,): (String,)) -> EntryResult {
    let _dog = child_dog("create_and_hang");
    let opts = CreateOptions {
        peer_rows: 8,
        ..CreateOptions::default()
    };
    let _ = Segment::create(
        &name,
        ObjectKind::SpscRing,
        PARAMS,
        OBJECT_LEN,
        &opts,
        |p, _| {
            // SAFETY: the object region is 4096-aligned and >= 8 bytes.
            unsafe { p.as_ptr().cast::<u64>().write_volatile(MARK) };
            println!("IN_INIT");
            sleep_forever()
        },
    );
    Ok(())
}
static CREATE_AND_HANG: Entry<(String,)> = shmring::entry!(create_and_hang);

/// Takes the segment shared under [`FD_VAR`], writes into it, and sleeps.
fn inherited_writer(_: ()) -> EntryResult {
    let _dog = child_dog("inherited_writer");
    let fd = fd_of(&std::env::var(FD_VAR)?);
    let seg = Segment::open_inherited(FD_VAR, ObjectKind::SpscRing, &OpenOptions::default())?;
    // The inherited descriptor (the parent's open file description)
    // is closed: only the reopened one, with our own locks, remains.
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    assert!(target.map_or(true, |t| !t.to_string_lossy().contains("memfd:shmring")));
    let again = Segment::open_inherited(FD_VAR, ObjectKind::SpscRing, &OpenOptions::default());
    assert!(matches!(again, Err(SegmentError::Inherit { .. })));
    let parent = word(&seg, 0).load(SEQ);
    assert!(seg.is_peer_alive(parent), "the parent is alive");
    word(&seg, 1).store(seg.peer_token(), SEQ);
    word(&seg, 2).store(0xc0ffee, SEQ);
    sleep_forever();
}
static INHERITED_WRITER: Entry<()> = shmring::entry!(inherited_writer);

/// Takes the segment shared under [`FD_VAR`]: sees the parent alive and
/// the writer `dead` dead, then the parent's detach.
fn inherited_observer((dead,): (u64,)) -> EntryResult {
    let _dog = child_dog("inherited_observer");
    let seg = Segment::open_inherited(FD_VAR, ObjectKind::SpscRing, &OpenOptions::default())?;
    let parent = word(&seg, 0).load(SEQ);
    assert!(
        seg.is_peer_alive(parent),
        "the parent outlived the killed writer"
    );
    assert!(!seg.is_peer_alive(dead), "the killed writer is dead");
    word(&seg, 4).store(seg.peer_token(), SEQ);
    word(&seg, 3).store(1, SEQ);
    assert!(
        wait_until(Duration::from_secs(20), || !seg.is_peer_alive(parent)),
        "the parent's detach is seen"
    );
    Ok(())
}
static INHERITED_OBSERVER: Entry<(u64,)> = shmring::entry!(inherited_observer);

/// Creates the segment `name`, shares it with a child that never opens
/// it, and sleeps.
fn share_then_hang((name,): (String,)) -> EntryResult {
    let _dog = child_dog("share_then_hang");
    let seg = create(&name, ObjectKind::SpscRing);
    let mut cmd = command(&INHERIT_AND_NEVER_OPEN, ());
    cmd.stdout(std::process::Stdio::null());
    seg.share_with_child(&mut cmd, FD_VAR)?;
    // Never waited for: this process sleeps until the test kills
    // it, and the test kills the child by pid afterwards (init
    // reaps it).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn()?;
    drop(cmd);
    word(&seg, 1).store(child.id().into(), SEQ);
    word(&seg, 0).store(seg.peer_token(), SEQ);
    sleep_forever();
}
static SHARE_THEN_HANG: Entry<(String,)> = shmring::entry!(share_then_hang);

/// Holds the descriptor shared under [`FD_VAR`] without opening it.
fn inherit_and_never_open(_: ()) -> EntryResult {
    let _dog = child_dog("inherit_and_never_open");
    assert!(
        std::env::var(FD_VAR).is_ok(),
        "the descriptor was handed over"
    );
    sleep_forever();
}
static INHERIT_AND_NEVER_OPEN: Entry<()> = shmring::entry!(inherit_and_never_open);

/// Takes the segment `name` the parent shared, then starts a grandchild,
/// which inherits FD_VAR through the environment (descriptors are not
/// inherited: shmring's are all close-on-exec).
fn inherit_then_spawn_grandchild((name,): (String,)) -> EntryResult {
    let _dog = child_dog("inherit_then_spawn_grandchild");
    let seg = Segment::open_inherited(FD_VAR, ObjectKind::SpscRing, &OpenOptions::default())?;
    let grandchild = command(&GRANDCHILD_OWNS_THAT_FD, (name,)).spawn()?;
    assert!(wait_child(grandchild, Duration::from_secs(30)).success());
    drop(seg);
    Ok(())
}
static INHERIT_THEN_SPAWN_GRANDCHILD: Entry<(String,)> =
    shmring::entry!(inherit_then_spawn_grandchild);

/// A process whose environment names a descriptor it was never given: it
/// has a descriptor of its own, of the very same file (the segment
/// `name`), under that number (as a process that opened the segment itself
/// may have by chance), and calls open_inherited, which must neither take
/// nor close it.
fn grandchild_owns_that_fd((name,): (String,)) -> EntryResult {
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    let _dog = child_dog("grandchild_owns_that_fd");
    let n = fd_of(&std::env::var(FD_VAR).unwrap());
    // SAFETY: fcntl F_GETFD only asks whether `n` is open.
    let in_use = unsafe { libc::fcntl(n, libc::F_GETFD) } >= 0;
    assert!(
        !in_use,
        "descriptor {n} is in use in the grandchild: {:?}",
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let own = std::fs::File::open(format!("/dev/shm{name}"))?;
    let ino = own.metadata().unwrap().ino();
    // SAFETY: `n` is free (checked above, and this process opens
    // nothing meanwhile on this thread); dup3 makes it a second
    // descriptor of `own`'s description, close-on-exec like every
    // descriptor a Rust program opens.
    let dup = unsafe { libc::dup3(own.as_raw_fd(), n, libc::O_CLOEXEC) };
    assert_eq!(dup, n, "dup3: {}", std::io::Error::last_os_error());
    // SAFETY: `n` is open (dup3 above) and owned by nobody else.
    let mine = unsafe { OwnedFd::from_raw_fd(n) };
    let got = Segment::open_inherited(FD_VAR, ObjectKind::SpscRing, &OpenOptions::default());
    // SAFETY: F_GETFD only asks.
    let still_open = unsafe { libc::fcntl(n, libc::F_GETFD) } >= 0;
    // SAFETY: a plain C struct of integers; all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only into `st`, valid and writable.
    let same = still_open && unsafe { libc::fstat(n, &mut st) } == 0 && st.st_ino == ino;
    if !still_open {
        // Closed under us: the OwnedFd must not close it again.
        let _ = mine.into_raw_fd();
    }
    assert!(
        same,
        "open_inherited closed (or replaced) descriptor {n}, which this process owns"
    );
    assert!(
        matches!(got, Err(SegmentError::Inherit { .. })),
        "open_inherited took a descriptor this process owns: {got:?}"
    );
    Ok(())
}
static GRANDCHILD_OWNS_THAT_FD: Entry<(String,)> = shmring::entry!(grandchild_owns_that_fd);

/// Child side: runs the entry point this process was started for, if any
/// (returns at once in a normal run).
pub fn run_entries() {
    run_child(&[
        &OPEN_AND_CHECK,
        &ATTACH_AND_SLEEP,
        &CREATE_AND_HANG,
        &INHERITED_WRITER,
        &INHERITED_OBSERVER,
        &SHARE_THEN_HANG,
        &INHERIT_AND_NEVER_OPEN,
        &INHERIT_THEN_SPAWN_GRANDCHILD,
        &GRANDCHILD_OWNS_THAT_FD,
    ]);
}

#[test]
fn create_here_open_in_a_child() {
    let _dog = Watchdog::new(Duration::from_secs(60), "open in a child");
    let name = unique_name("child");
    let seg = create(&name, ObjectKind::SpscRing);
    word(&seg, 0).store(0xfeed, SEQ);
    let child = command(&OPEN_AND_CHECK, (name.clone(),)).spawn().unwrap();
    assert!(wait_child(child, Duration::from_secs(30)).success());
    let token = word(&seg, 1).load(SEQ);
    assert_ne!(token, 0);
    assert!(!seg.is_peer_alive(token), "the child exited");
}

#[test]
fn a_killed_peer_is_dead_even_as_a_zombie_and_its_row_is_reused() {
    let _dog = Watchdog::new(Duration::from_secs(60), "peer liveness");
    let name = unique_name("live");
    let seg = create(&name, ObjectKind::SpscRing);
    let mut child = command(&ATTACH_AND_SLEEP, (name.clone(),)).spawn().unwrap();
    let pid = child.id();
    assert!(wait_until(Duration::from_secs(30), || word(&seg, 0)
        .load(SEQ)
        != 0));
    let token = word(&seg, 0).load(SEQ);
    assert!(seg.is_peer_alive(token));
    assert!(seg
        .peers()
        .iter()
        .any(|p| p.token == token && p.alive && p.pid == pid));

    child.kill().unwrap(); // SIGKILL; not reaped yet
    assert!(
        wait_until(Duration::from_secs(20), || proc_state(pid) == Some('Z')),
        "the child became a zombie"
    );
    // The leader shows 'Z' as soon as it exits; the other threads of the
    // test harness may still be tearing down the shared file table for a
    // moment, so the lock drops shortly after, while it is still a zombie.
    assert!(
        wait_until(Duration::from_secs(5), || !seg.is_peer_alive(token)),
        "a zombie's peer is dead"
    );
    assert_eq!(proc_state(pid), Some('Z'), "still a zombie: not reaped yet");
    assert!(seg.peers().iter().any(|p| p.pid == pid && !p.alive));
    child.wait().unwrap();
    assert!(!seg.is_peer_alive(token), "a reaped peer is dead");

    let again = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert_eq!(
        again.peer_token() as u32,
        token as u32,
        "the dead row is reused"
    );
    assert_ne!(again.peer_token(), token, "under a new generation");
    assert!(!seg.is_peer_alive(token));
    assert!(seg.is_peer_alive(again.peer_token()));
}

#[test]
fn a_creator_killed_during_init_leaves_nothing_behind() {
    let _dog = Watchdog::new(Duration::from_secs(120), "creator died");
    let name = unique_name("died");
    let mut child = command(&CREATE_AND_HANG, (name.clone(),))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child says when it is in init (the segment has no name to look
    // at yet).
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("IN_INIT") {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "the child exited");
    }
    let opener = {
        let name = name.clone();
        std::thread::spawn(move || {
            let opts = OpenOptions {
                timeout: Duration::from_secs(60),
                ..OpenOptions::default()
            };
            Segment::open(&name, ObjectKind::SpscRing, &opts)
        })
    };
    let err = opener.join().unwrap().unwrap_err();
    assert!(matches!(err, SegmentError::NotFound { .. }), "{err}");
    let killed = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed.elapsed() < Duration::from_secs(30));
    assert!(!path_of(&name).exists(), "nothing under the name");
    let err = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SegmentError::NotFound { .. }), "{err}");
    let again = Segment::create(
        &name,
        ObjectKind::SpscRing,
        [0; 8],
        4096,
        &CreateOptions::default(),
        |_, _| Ok(()),
    );
    assert!(again.is_ok(), "{:?}", again.err());
}

#[test]
fn memfd_inheritance_with_independent_peers() {
    let _dog = Watchdog::new(Duration::from_secs(90), "memfd inheritance");
    let seg = Segment::create_anonymous(
        ObjectKind::SpscRing,
        PARAMS,
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    let parent = seg.peer_token();
    word(&seg, 0).store(parent, SEQ);

    // A child writes into the object; the parent reads it; the child dies
    // and the parent stays alive.
    let mut cmd = command(&INHERITED_WRITER, ());
    seg.share_with_child(&mut cmd, FD_VAR).unwrap();
    let mut writer = cmd.spawn().unwrap();
    drop(cmd);
    assert!(wait_until(Duration::from_secs(30), || word(&seg, 2)
        .load(SEQ)
        == 0xc0ffee));
    let writer_token = word(&seg, 1).load(SEQ);
    assert!(seg.is_peer_alive(writer_token));
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(!seg.is_peer_alive(writer_token));

    // Another child sees the parent alive and the writer dead, then sees the
    // parent's detach.
    let mut cmd = command(&INHERITED_OBSERVER, (writer_token,));
    seg.share_with_child(&mut cmd, FD_VAR).unwrap();
    let observer = cmd.spawn().unwrap();
    drop(cmd);
    assert!(wait_until(Duration::from_secs(30), || word(&seg, 3)
        .load(SEQ)
        == 1));
    assert!(seg.is_peer_alive(word(&seg, 4).load(SEQ)));
    drop(seg);
    assert!(wait_child(observer, Duration::from_secs(30)).success());
}

/// Review finding: `open_inherited` trusted the variable's descriptor
/// number once the file matched (device and inode). The variable outlives
/// the descriptor: a grandchild inherits the environment but not the
/// descriptor (the child consumed it, and it would have been close-on-exec
/// anyway), and in the grandchild that number may be a descriptor of its
/// own, of the same file even (it opened the segment itself). Calling
/// `open_inherited` there closed a descriptor it did not own.
#[test]
fn a_variable_that_outlived_its_descriptor_closes_nothing() {
    let _dog = Watchdog::new(Duration::from_secs(90), "stale inherited variable");
    let name = unique_name("stale-inherit");
    let seg = create(&name, ObjectKind::SpscRing);
    let mut cmd = command(&INHERIT_THEN_SPAWN_GRANDCHILD, (name.clone(),));
    seg.share_with_child(&mut cmd, FD_VAR).unwrap();
    let child = cmd.spawn().unwrap();
    drop(cmd);
    assert!(wait_child(child, Duration::from_secs(60)).success());
}

#[test]
fn memfd_is_sealed_against_resizing() {
    let seg = Segment::create_anonymous(
        ObjectKind::SpscRing,
        PARAMS,
        OBJECT_LEN,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    let mut cmd = Command::new("true");
    seg.share_with_child(&mut cmd, FD_VAR).unwrap();
    let value = cmd
        .get_envs()
        .find(|(k, _)| *k == FD_VAR)
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // The descriptor the child would get (alive in `cmd`), reopened writable.
    let path = format!("/proc/self/fd/{}", fd_of(&value));
    assert!(Path::new(&path).exists());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let len = file.metadata().unwrap().len();
    for new_len in [0, len - 4096, len + 4096] {
        let err = file.set_len(new_len).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "set_len({new_len})");
    }
    assert_eq!(file.metadata().unwrap().len(), len);
    word(&seg, 0).store(1, SEQ);
}

/// Whether `pid` exists and is not a zombie.
fn proc_alive(pid: u32) -> bool {
    !matches!(proc_state(pid), None | Some('Z' | 'X'))
}

#[test]
fn a_parent_killed_while_its_child_holds_an_unopened_descriptor_is_dead() {
    let _dog = Watchdog::new(Duration::from_secs(90), "inherited descriptor");
    let name = unique_name("inherit-dead-parent");
    let mut parent = command(&SHARE_THEN_HANG, (name.clone(),))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // This process is the third party: it looks through its own attachment.
    let mut seg = None;
    assert!(wait_until(Duration::from_secs(30), || {
        seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())
            .ok()
            .filter(|s| word(s, 0).load(SEQ) != 0);
        seg.is_some()
    }));
    let seg = seg.unwrap();
    let token = word(&seg, 0).load(SEQ);
    let child = word(&seg, 1).load(SEQ) as u32;
    assert!(seg.is_peer_alive(token), "the parent is alive");
    assert!(proc_alive(child));

    parent.kill().unwrap();
    parent.wait().unwrap();
    let dead = wait_until(Duration::from_secs(10), || !seg.is_peer_alive(token));
    let child_still_there = proc_alive(child);
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(child as i32, libc::SIGKILL);
    }
    assert!(
        child_still_there,
        "the child must outlive the parent for the test to mean anything"
    );
    assert!(
        dead,
        "the parent's row stayed locked through the child's inherited descriptor"
    );
    assert!(seg.peers().iter().any(|p| p.token == token && !p.alive));
}
