//! The `shmring` binary, run as a user would: on segments made with the
//! library, with children that create segments and get killed (this test
//! binary re-executed to run an entry point; see `shmring_testkit`).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

use shmring::process::{Entry, EntryResult};
use shmring::segment::{self, PeerCounter, SegmentInfo, SegmentState};
use shmring::{mpmc, spsc, SegmentError, UnlinkPolicy};
use shmring_testkit::{
    executable_by_anyone, run_child, shm_exists, sleep_forever, spawn_child, unique_name,
    wait_child, wait_until, Watchdog,
};

mod common;

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmring"));
    cmd.args(args);
    cmd
}

fn output(mut cmd: Command) -> Run {
    let out = common::retry_busy(&mut cmd, Command::output);
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn shmring(args: &[&str]) -> Run {
    output(command(args))
}

/// Creates the queue `name` and waits for its SIGKILL.
fn queue_and_hang((name,): (String,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(60), "child queue_and_hang");
    let _q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
        .maxsize(0)
        .create(&name)?;
    sleep_forever();
}
static QUEUE_AND_HANG: Entry<(String,)> = shmring::entry!(queue_and_hang);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&QUEUE_AND_HANG]);
}

/// Starts `entry` on the segment `name` and waits until `ready` holds for
/// it.
fn spawn_ready(
    entry: &Entry<(String,)>,
    name: &str,
    ready: impl Fn(&SegmentInfo) -> bool,
) -> Child {
    let child = spawn_child(CHILD_TEST, entry, (name.to_owned(),));
    let seen = wait_until(Duration::from_secs(20), || {
        segment::inspect(name).is_ok_and(|i| ready(&i))
    });
    assert!(seen, "child {} never got {name} ready", entry.id());
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(20));
}

#[test]
fn help_and_usage_errors() {
    let top = shmring(&["--help"]);
    assert_eq!(top.code, 0);
    assert!(top.stdout.contains("Exit codes"), "{}", top.stdout);
    for sub in ["ls", "stat", "rm", "gc", "bench"] {
        let r = shmring(&[sub, "--help"]);
        assert_eq!(r.code, 0, "{sub}");
        assert!(
            r.stdout.contains(&format!("Usage: shmring {sub}")),
            "{sub}: {}",
            r.stdout
        );
        assert_eq!(shmring(&["help", sub]).stdout, r.stdout);
    }
    assert_eq!(shmring(&[]).code, 2);
    let unknown = shmring(&["frobnicate"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.starts_with("shmring: "),
        "{}",
        unknown.stderr
    );
    assert_eq!(shmring(&["ls", "--bogus"]).code, 2);
    for busy in ["x", "-1", "65", "1.5"] {
        assert_eq!(shmring(&["bench", "--busy", busy]).code, 2, "--busy {busy}");
    }
    assert_eq!(shmring(&["bench", "--busy"]).code, 2);
    assert_eq!(shmring(&["stat"]).code, 2);
    assert_eq!(shmring(&["stat", "a", "b"]).code, 2);
    assert_eq!(shmring(&["stat", "x", "--count", "zero"]).code, 2);
    assert_eq!(shmring(&["rm"]).code, 2);
    assert_eq!(shmring(&["stat", "a/b"]).code, 2);
}

#[test]
fn ls_and_stat_show_a_queue() {
    let name = unique_name("cli-ls");
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
        .maxsize(0)
        .create(&name)
        .unwrap();
    let mut p = q.producer().unwrap();
    p.try_push(b"a").unwrap();
    p.try_push(b"b").unwrap();
    q.segment().add_to_counter(PeerCounter::Puts, 5);

    let ls = shmring(&["ls"]);
    assert_eq!(ls.code, 0, "{}", ls.stderr);
    assert!(ls.stdout.starts_with("NAME"), "{}", ls.stdout);
    let line = ls
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("listed");
    let cells: Vec<&str> = line.split_whitespace().collect();
    let size_kib = std::fs::metadata(format!("/dev/shm{name}")).unwrap().len() / 1024;
    let size = format!("{size_kib}KiB");
    assert_eq!(
        &cells[1..],
        [
            "mpmc-queue",
            &size,
            "8KiB",
            "2",
            "1/0",
            &uid(),
            &pid(),
            "ready"
        ]
    );

    let json = shmring(&["ls", "--json"]);
    assert_eq!(json.code, 0);
    assert!(json.stdout.contains(&format!(
        "\"name\":\"{name}\",\"state\":\"ready\",\"kind\":\"mpmc-queue\""
    )));

    let stat = shmring(&["stat", &name]);
    assert_eq!(stat.code, 0, "{}", stat.stderr);
    for expected in [
        format!("segment {name}"),
        "kind           mpmc-queue".into(),
        "depth          2".into(),
        "rings          2".into(),
        "puts           5".into(),
        "peers (1 alive, 0 dead)".into(),
        format!("creator        uid {}, pid {}", uid(), pid()),
    ] {
        assert!(
            stat.stdout.contains(&expected),
            "{expected:?} in\n{}",
            stat.stdout
        );
    }
    let stat_json = shmring(&["stat", "--json", &format!("/dev/shm{name}")]);
    assert_eq!(stat_json.code, 0);
    for expected in [
        "\"depth\":2",
        "\"peers_alive\":1",
        "\"puts\":5",
        "\"alive\":true",
    ] {
        assert!(
            stat_json.stdout.contains(expected),
            "{expected} in {}",
            stat_json.stdout
        );
    }

    let watch = shmring(&["stat", &name, "--watch", "0.05", "--count", "3"]);
    assert_eq!(watch.code, 0);
    assert_eq!(watch.stdout.matches(&format!("segment {name}")).count(), 3);
    let watch_json = shmring(&["stat", "--json", "--count", "2", &name]);
    assert_eq!(watch_json.stdout.lines().count(), 2);

    drop((p, q)); // the last peer's drop removes the name
    let gone = shmring(&["stat", &name]);
    assert_eq!(gone.code, 3);
    assert_eq!(gone.stderr.lines().count(), 1);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

fn uid() -> String {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }.to_string()
}

fn pid() -> String {
    std::process::id().to_string()
}

#[test]
fn rm_removes_names_and_reports_the_first_failure() {
    let a = unique_name("cli-rm-a");
    let b = unique_name("cli-rm-b");
    let missing = unique_name("cli-rm-missing");
    let ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .unlink(UnlinkPolicy::Never)
        .create(&a)
        .unwrap();
    drop(
        spsc::Ring::builder()
            .ring_bytes(4096)
            .max_message(256)
            .unlink(UnlinkPolicy::Never)
            .create(&b)
            .unwrap(),
    );
    // `a` has a live peer (us): --force (see operator.rs for the refusal).
    let r = shmring(&["rm", "--force", &a, &missing, &b]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!("removed {a}")) && r.stdout.contains(&format!("removed {b}"))
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(!shm_exists(&a) && !shm_exists(&b));
    // The attached handle keeps working on its mapping.
    ring.producer().unwrap().try_push(b"still fine").unwrap();
    assert_eq!(shmring(&["rm", &a]).code, 3);
    assert_eq!(shmring(&["rm", "a/b"]).code, 2);
}

#[test]
fn rm_refuses_a_foreign_file_unless_forced() {
    let name = unique_name("cli-foreign");
    std::fs::write(format!("/dev/shm{name}"), b"somebody else's data").unwrap();
    let refused = shmring(&["rm", &name]);
    assert_eq!(refused.code, 4);
    assert!(
        refused.stderr.contains("not a shmring segment"),
        "{}",
        refused.stderr
    );
    assert!(shm_exists(&name));
    assert_eq!(shmring(&["stat", &name]).code, 4);
    let forced = shmring(&["rm", "--force", &name]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(!shm_exists(&name));
}

#[test]
fn permission_problems_exit_with_5() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the binary as another uid");
        return;
    }
    let name = unique_name("cli-perm");
    let ring = spsc::Ring::builder()
        .ring_bytes(4096)
        .max_message(256)
        .create(&name)
        .unwrap();
    // A copy any uid can execute: the build directory may not be (see
    // `executable_by_anyone`).
    let exe = executable_by_anyone(std::path::Path::new(env!("CARGO_BIN_EXE_shmring")));
    for args in [vec!["stat", name.as_str()], vec!["rm", name.as_str()]] {
        let mut cmd = Command::new(&exe);
        cmd.args(&args).current_dir("/");
        cmd.uid(65534).gid(65534);
        let r = output(cmd);
        assert_eq!(r.code, 5, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    }
    assert!(shm_exists(&name));
    drop(ring);
}

#[test]
fn gc_removes_segments_whose_peers_died_and_nothing_else() {
    let _dog = Watchdog::new(Duration::from_secs(90), "gc");
    let dead = unique_name("cli-gc-dead");
    let live = unique_name("cli-gc-live");
    // A create names a segment only once it is complete; "creating" and
    // "creator-died" are the states of files under the private names of
    // the fallback create path (no O_TMPFILE): planted here, a fresh one
    // and one a minute old.
    let private = |what: &str| {
        let unique = unique_name(what);
        format!("/.shmring-creating.{}", &unique[1..])
    };
    let creating = private("cli-gc-creating");
    let died_creating = private("cli-gc-died-creating");
    let plant = |name: &str, age: Duration| {
        let file = std::fs::File::create(format!("/dev/shm{name}")).unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    };
    // 30 s: past the 10 s after which a free lock means a dead creator,
    // short of the minute after which any process's automatic sweep
    // removes it.
    let old = Duration::from_secs(30);
    plant(&creating, Duration::ZERO);
    plant(&died_creating, old);
    let _live = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
        .maxsize(0)
        .create(&live)
        .unwrap();
    let child = spawn_ready(&QUEUE_AND_HANG, &dead, |i| i.alive_peers() == 1);
    kill(child);
    assert_eq!(
        segment::inspect(&creating).unwrap().state,
        SegmentState::Initialising
    );

    let ls = shmring(&["ls"]);
    let state_of = |name: &str| {
        let line = ls.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().last().unwrap().to_owned()
    };
    assert_eq!(state_of(&dead), "abandoned");
    assert_eq!(state_of(&live), "ready");
    assert_eq!(state_of(&creating), "creating");
    assert_eq!(state_of(&died_creating), "creator-died");

    // A dry run over all of /dev/shm removes nothing.
    let dry = shmring(&["gc", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains(&format!("would remove {dead} ")),
        "{}",
        dry.stdout
    );
    assert!(dry
        .stdout
        .contains(&format!("would remove {died_creating} ")));
    assert!(!dry.stdout.contains(&live) && !dry.stdout.contains(&creating));
    let names = [
        dead.as_str(),
        live.as_str(),
        creating.as_str(),
        died_creating.as_str(),
    ];
    assert!(names.iter().all(|n| shm_exists(n)));

    // The real thing, limited to our names (other tests may share /dev/shm).
    let mut args = vec!["gc"];
    args.extend(names);
    let gc = shmring(&args);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    assert!(
        gc.stdout.contains(&format!("removed {dead} ")),
        "{}",
        gc.stdout
    );
    assert!(
        gc.stdout.contains(&format!("removed {died_creating} ")),
        "{}",
        gc.stdout
    );
    assert!(!shm_exists(&dead) && !shm_exists(&died_creating));
    assert!(shm_exists(&live) && shm_exists(&creating));
    assert_eq!(shmring(&["gc", &live]).stdout, "no abandoned segments\n");

    // While its creator may be at work, rm refuses it.
    let busy = shmring(&["rm", &creating]);
    assert_eq!(busy.code, 6, "{}", busy.stderr);
    assert!(busy.stderr.contains("being created"), "{}", busy.stderr);
    assert!(shm_exists(&creating));

    plant(&creating, old);
    let json = shmring(&["gc", "--json", &creating]);
    assert_eq!(json.code, 0);
    assert!(
        json.stdout.contains("\"outcome\":\"removed\""),
        "{}",
        json.stdout
    );
    assert!(!shm_exists(&creating));
    assert!(matches!(
        segment::inspect(&creating),
        Err(SegmentError::NotFound { .. })
    ));
    assert_eq!(shmring(&["gc", &creating]).code, 3);
}

/// Runs the quick benchmark end to end (a few seconds in a release build,
/// more in a debug one): `cargo test -p shmring-cli -- --ignored`.
#[test]
#[ignore = "slow in a debug build; .ci/run runs `shmring bench --quick` (release) on every run, and `cargo test -p shmring-cli -- --ignored` runs this"]
fn bench_quick_json_has_every_figure() {
    let r = shmring(&["bench", "--quick", "--json", "--no-pin"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("{\"host\":"), "{}", r.stdout);
    assert_eq!(
        r.stdout.matches("\"mechanism\":").count(),
        26,
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("\"error\""), "{}", r.stdout);
    assert!(r.stderr.contains("[26/26]"), "{}", r.stderr);
    // Every round trip carries its tails; the blocking ones their tail
    // floor, the spinning futex ping-pong.
    assert_eq!(r.stdout.matches("\"p999_ns\":").count(), 15, "{}", r.stdout);
    assert_eq!(
        r.stdout.matches("\"slow_run\":").count(),
        15,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("\"curve\":[[0.5,").count(),
        15,
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout
            .matches("\"tail_floor_mechanism\":\"futex-spin\"")
            .count(),
        8,
        "{}",
        r.stdout
    );
}
