//! Names and liveness under adversarial timing, with real processes (the
//! test binary re-executes itself as a typed entry point; see `shmring_testkit`):
//!
//! - creators and openers churning one name never see a live segment lose
//!   its name;
//! - a last drop sees a peer that took the row it just let go;
//! - a drop with a full descriptor table (`EMFILE`) still removes the name.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmring::process::{Entry, EntryResult};
use shmring::segment::{CreateOptions, ObjectKind, OpenOptions, Segment};
use shmring::SegmentError;
use shmring_testkit::{
    child, run_child, shm_exists, shm_path, unique_name, wait_child, wait_until, Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";
/// How long each churning process runs.
const CHURN: Duration = Duration::from_secs(3);
/// Peer rows of the churned segments: the object starts at 4096.
const PEER_ROWS: u32 = 8;
const OBJECT_AT: u64 = 4096;

/// Word `i` of the object region.
fn word(seg: &Segment, i: usize) -> &AtomicU64 {
    assert!((i + 1) * 8 <= seg.object_len());
    // SAFETY: in bounds (asserted), 8-aligned (the object is 4096-aligned),
    // borrowed no longer than `seg`'s mapping, and only accessed atomically.
    unsafe { &*seg.object_ptr().as_ptr().cast::<AtomicU64>().add(i) }
}

/// Whether `/dev/shm/<name>` is the segment whose creator wrote `token`
/// into the object's first word (each create writes a unique one).
fn named_by(name: &str, token: u64) -> bool {
    let Ok(file) = std::fs::File::open(shm_path(name)) else {
        return false;
    };
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf, OBJECT_AT).is_ok() && u64::from_ne_bytes(buf) == token
}

/// What one churning process saw.
#[derive(Default, Debug)]
struct Tally {
    tries: u64,
    held: u64,
    violations: u64,
    other_errors: u64,
}

impl Tally {
    /// Holds `seg` (created with `token`) for a moment, checking its name
    /// before, during and after.
    fn hold(&mut self, name: &str, seg: &Segment, token: u64, round: u64) {
        self.held += 1;
        for _ in 0..3 {
            if !named_by(name, token) || word(seg, 0).load(Ordering::SeqCst) != token {
                self.violations += 1;
                let now = std::fs::File::open(shm_path(name)).ok().map(|f| {
                    let mut buf = [0u8; 8];
                    let _ = f.read_exact_at(&mut buf, OBJECT_AT);
                    (
                        f.metadata()
                            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                            .ok(),
                        u64::from_ne_bytes(buf),
                    )
                });
                eprintln!(
                    "violation: {name} no longer names segment {token:#x} (own word {:#x}); it names {now:x?}",
                    word(seg, 0).load(Ordering::SeqCst)
                );
                return;
            }
            if round.is_multiple_of(3) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50 * (round % 5)));
            }
        }
    }

    fn error(&mut self, e: &SegmentError) {
        if !matches!(
            e,
            SegmentError::AlreadyExists { .. } | SegmentError::NotFound { .. }
        ) {
            self.other_errors += 1;
            eprintln!("unexpected error: {e}");
        }
    }

    fn report(&self) {
        println!(
            "TALLY tries={} held={} violations={} other_errors={}",
            self.tries, self.held, self.violations, self.other_errors
        );
    }
}

fn churn_create(name: &str) {
    let mut tally = Tally::default();
    let opts = CreateOptions {
        peer_rows: PEER_ROWS,
        ..CreateOptions::default()
    };
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < CHURN {
        round += 1;
        tally.tries += 1;
        let token = (u64::from(std::process::id()) << 32) | round;
        let created = Segment::create(name, ObjectKind::SpscRing, [0; 8], 64, &opts, |p, _| {
            // SAFETY: the object region is 4096-aligned, >= 8 bytes, and
            // nobody else can see it yet.
            unsafe { p.as_ptr().cast::<u64>().write(token) };
            Ok(())
        });
        match created {
            Ok(seg) => tally.hold(name, &seg, token, round),
            Err(e) => tally.error(&e),
        }
    }
    tally.report();
}

fn churn_open(name: &str) {
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < CHURN {
        round += 1;
        tally.tries += 1;
        match Segment::open(name, ObjectKind::SpscRing, &OpenOptions::default()) {
            Ok(seg) => {
                let token = word(&seg, 0).load(Ordering::SeqCst);
                tally.hold(name, &seg, token, round);
            }
            Err(e) => tally.error(&e),
        }
    }
    tally.report();
}

// Entry points of the children, each given the segment's name (the name
// is what these tests are about).

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), &format!("child {what}"))
}

fn churn_creator((name,): (String,)) -> EntryResult {
    let _dog = child_dog("churn_create");
    churn_create(&name);
    Ok(())
}
static CHURN_CREATE: Entry<(String,)> = shmring::entry!(churn_creator);

fn churn_opener((name,): (String,)) -> EntryResult {
    let _dog = child_dog("churn_open");
    churn_open(&name);
    Ok(())
}
static CHURN_OPEN: Entry<(String,)> = shmring::entry!(churn_opener);

fn dropper_with_a_full_fd_table((name,): (String,)) -> EntryResult {
    let _dog = child_dog("drop_with_a_full_fd_table");
    drop_with_a_full_fd_table(&name);
    Ok(())
}
static DROP_WITH_A_FULL_FD_TABLE: Entry<(String,)> = shmring::entry!(dropper_with_a_full_fd_table);

/// Creates the segment `name`, waits for the parent's go (its 2), then
/// drops it, stopping right after the row is released.
fn create_then_stop_in_drop((name,): (String,)) -> EntryResult {
    let _dog = child_dog("create_then_stop_in_drop");
    let seg = Segment::create(
        &name,
        ObjectKind::SpscRing,
        [0; 8],
        64,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )?;
    word(&seg, 0).store(1, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(60), || word(&seg, 0)
        .load(Ordering::SeqCst)
        == 2));
    shmring::core::failpoint::set_hook(Some(stop_in_drop));
    drop(seg);
    println!("DROPPED");
    Ok(())
}
static CREATE_THEN_STOP_IN_DROP: Entry<(String,)> = shmring::entry!(create_then_stop_in_drop);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[
        &CHURN_CREATE,
        &CHURN_OPEN,
        &DROP_WITH_A_FULL_FD_TABLE,
        &CREATE_THEN_STOP_IN_DROP,
    ]);
}

/// The command of a child running `entry` on the segment `name`.
fn command(entry: &Entry<(String,)>, name: &str) -> Command {
    child(CHILD_TEST, entry, (name.to_owned(),))
        .into_command()
        .expect("hand the child its arguments")
}

/// Failpoint hook: stops this process when a drop has let its row go.
fn stop_in_drop(name: &'static str, _context: &[u8]) {
    if name == "segment.drop.row-released" {
        // SAFETY: raise has no memory-safety preconditions; the test sends
        // SIGCONT.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
}

/// Runs `cmd`, returning its stdout once it exits successfully.
fn run_for_output(mut cmd: Command) -> String {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = wait_child(child, Duration::from_secs(60));
    assert!(status.success(), "child failed: {out}");
    out
}

fn parse_tally(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find_map(|l| l.split_once("TALLY ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no tally in {out}"));
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("held"), field("violations"), field("other_errors"))
}

/// Two creators and an opener churn one name for [`CHURN`]; every holder
/// checks its segment still owns the name while it holds it. The creators
/// take the fallback create path (a private name, then `link`) when
/// `fallback` is set.
fn churn(fallback: bool) {
    let name = unique_name("churn");
    let roles = [
        ("churn_create", &CHURN_CREATE),
        ("churn_create", &CHURN_CREATE),
        ("churn_open", &CHURN_OPEN),
    ];
    let runners: Vec<_> = roles
        .iter()
        .map(|(_, entry)| {
            let mut cmd = command(entry, &name);
            if fallback {
                cmd.env("SHMRING_TEST_CREATE_FALLBACK", "1");
            }
            std::thread::spawn(move || run_for_output(cmd))
        })
        .collect();
    let mut totals = (0, 0, 0);
    let mut opened = 0;
    for ((role, _), runner) in roles.iter().zip(runners) {
        let out = runner.join().unwrap();
        let (held, violations, other) = parse_tally(&out);
        eprintln!(
            "{role}: {}",
            out.lines().find(|l| l.contains("TALLY")).unwrap_or("")
        );
        eprintln!("{role}: held {held}, violations {violations}, other errors {other}");
        totals.0 += held;
        totals.1 += violations;
        totals.2 += other;
        if *role == "churn_open" {
            opened = held;
        }
    }
    assert_eq!(totals.1, 0, "a live segment lost its name");
    assert_eq!(totals.2, 0, "errors other than AlreadyExists/NotFound");
    // Loose: the machine may be loaded; a few hundred is usual.
    assert!(
        totals.0 > 20,
        "too little churn to mean anything: {totals:?}"
    );
    assert!(opened > 0, "the opener never got in");
    assert!(!shm_exists(&name), "the last drop removed the name");
}

#[test]
fn churning_creates_drops_and_opens_never_remove_a_live_segment_s_name() {
    let _dog = Watchdog::new(Duration::from_secs(180), "name churn");
    churn(false);
}

#[test]
fn the_same_churn_on_the_fallback_create_path() {
    let _dog = Watchdog::new(Duration::from_secs(180), "name churn, fallback");
    churn(true);
}

/// Child side of the EMFILE test: creates, fills its descriptor table,
/// drops, and reports whether the name survived.
fn drop_with_a_full_fd_table(name: &str) {
    let seg = Segment::create(
        name,
        ObjectKind::SpscRing,
        [0; 8],
        64,
        &CreateOptions::default(),
        |_, _| Ok(()),
    )
    .unwrap();
    // A low limit, so that filling the table is quick.
    let limit = libc::rlimit {
        rlim_cur: 256,
        rlim_max: 256,
    };
    // SAFETY: setrlimit reads a valid rlimit; lowering a limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut fillers = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "the table is full"
    );
    drop(seg);
    drop(fillers);
    println!("NAME_LEFT={}", shm_exists(name));
}

#[test]
fn a_drop_with_a_full_descriptor_table_still_removes_the_name() {
    let _dog = Watchdog::new(Duration::from_secs(60), "drop at EMFILE");
    let name = unique_name("emfile");
    let cmd = command(&DROP_WITH_A_FULL_FD_TABLE, &name);
    let out = run_for_output(cmd);
    assert!(out.contains("NAME_LEFT=false"), "{out}");
    assert!(!shm_exists(&name));
    // And the name is free for a create at once.
    drop(
        Segment::create(
            &name,
            ObjectKind::SpscRing,
            [0; 8],
            64,
            &CreateOptions::default(),
            |_, _| Ok(()),
        )
        .unwrap(),
    );
}

const _: () = assert!(
    shmring::core::failpoint::ENABLED,
    "tests/name_safety.rs needs the `failpoints` feature (see Cargo.toml)"
);

#[test]
fn a_last_drop_sees_a_peer_that_took_its_freed_row() {
    let _dog = Watchdog::new(Duration::from_secs(90), "drop vs reused row");
    let name = unique_name("reused-row");
    let child = command(&CREATE_THEN_STOP_IN_DROP, &name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peek = None;
    assert!(wait_until(Duration::from_secs(30), || {
        peek = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default())
            .ok()
            .filter(|s| word(s, 0).load(Ordering::SeqCst) == 1);
        peek.is_some()
    }));
    let peek = peek.unwrap();
    let creator_token = peek.peers().iter().find(|p| p.pid == pid).unwrap().token;
    word(&peek, 0).store(2, Ordering::SeqCst);
    drop(peek); // not the last peer: the name stays
    let stopped = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    });
    assert!(stopped, "the creator never stopped in its drop");
    // The creator let its row go and has not decided yet: this open takes
    // that very row.
    let seg = Segment::open(&name, ObjectKind::SpscRing, &OpenOptions::default()).unwrap();
    assert_eq!(
        seg.peer_token() as u32,
        creator_token as u32,
        "the open took the creator's freed row"
    );
    // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    let mut out = String::new();
    let mut child = child;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(wait_child(child, Duration::from_secs(30)).success());
    assert!(out.contains("DROPPED"), "{out}");
    assert!(
        shm_exists(&name),
        "the creator's drop removed a live peer's name"
    );
    drop(seg);
    assert!(!shm_exists(&name));
}
