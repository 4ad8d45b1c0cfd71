//! The automatic sweep, with real processes (the test binary re-executes
//! itself to run an entry point; see `shmring_testkit`): it never removes a crashed
//! service's queue that holds messages, it removes an empty abandoned
//! segment only once sweeps have seen it without a live peer for the idle
//! period (not counted from its last attach), at most one sweep runs per
//! period for a whole fleet of creating processes, and it never touches
//! another user's segment or a file that merely starts with the magic.
//!
//! Every trigger process confines its automatic sweep to the test's own
//! names and its own stamp (`configure_auto_sweep`), so that tests running
//! beside these ones on the same host are not swept by them.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmring::dict::Dict;
use shmring::mpmc;
use shmring::pipe::{End, Pipe};
use shmring::process::{Entry, EntryResult, Process, ProcessBuilder};
use shmring::segment::{self, AutoSweepConfig};
use shmring_testkit::{
    child, executable_by_anyone, harness_args, run_child, shm_exists, shm_path, sleep_forever,
    spawn_child, unique_name, wait_child, wait_until, Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// A child's own watchdog.
fn child_dog(what: &str) -> Watchdog {
    Watchdog::new(Duration::from_secs(120), &format!("child {what}"))
}

/// A service: creates its queue `name`, queues `count` messages, and waits
/// for its SIGKILL.
fn service((name, count): (String, u32)) -> EntryResult {
    let _dog = child_dog("service");
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(8192)
        .max_message(256)
        .maxsize(0)
        .create(&name)?;
    let mut p = q.producer()?;
    for i in 0..count {
        p.try_push(format!("message {i}").as_bytes())?;
    }
    sleep_forever();
}
static SERVICE: Entry<(String, u32)> = shmring::entry!(service);

/// A dict service: three entries, then waits for its SIGKILL.
fn dict_service((name,): (String,)) -> EntryResult {
    let _dog = child_dog("dict_service");
    let d = Dict::<u64, u64>::builder().create(&name)?;
    for i in 0..3 {
        d.insert(&i, &(i * 10))?;
    }
    sleep_forever();
}
static DICT_SERVICE: Entry<(String,)> = shmring::entry!(dict_service);

/// A pipe service: one message sent and not yet received.
fn pipe_service((name,): (String,)) -> EntryResult {
    let _dog = child_dog("pipe_service");
    let pipe = Pipe::builder().create(&name)?;
    let mut end = pipe.connection(End::First)?;
    end.send_bytes(b"undelivered", 0, None)?;
    sleep_forever();
}
static PIPE_SERVICE: Entry<(String,)> = shmring::entry!(pipe_service);

/// The restarted service: opens the queue and expects every message.
fn restart((name, count): (String, u32)) -> EntryResult {
    let _dog = child_dog("restart");
    let q = mpmc::ByteQueue::open(&name)?;
    let mut c = q.consumer();
    let mut buf = Vec::new();
    for i in 0..count {
        c.try_pop(&mut buf)?;
        assert_eq!(buf, format!("message {i}").as_bytes());
    }
    assert!(c.try_pop(&mut buf).is_err(), "nothing more");
    println!("restart: got all {count}");
    Ok(())
}
static RESTART: Entry<(String, u32)> = shmring::entry!(restart);

/// A trigger's arguments: the segment it creates; its sweep's scope,
/// prefix, period and idleness (ms); the file whose existence tells it to
/// go (empty: at once); its sweep's examination limit (0: the default);
/// and `from:to` for [`swap_when_judged`] (empty: no swap).
type TriggerArgs = (String, String, String, u64, u64, String, u64, String);

/// `from:to` of [`swap_when_judged`] in a trigger.
static SWAP: OnceLock<String> = OnceLock::new();

/// An unrelated process: its automatic sweep confined to the test, it
/// creates one segment (when `go` exists, if given), waits for the sweep
/// its create may have started, and reports.
fn trigger((name, scope, prefix, period_ms, idle_ms, go, limit, swap): TriggerArgs) -> EntryResult {
    let _dog = child_dog("trigger");
    let mut config = AutoSweepConfig {
        period: Duration::from_millis(period_ms),
        min_idle: Duration::from_millis(idle_ms),
        prefix,
        scope,
        ..AutoSweepConfig::default()
    };
    if limit != 0 {
        config.max_examined = usize::try_from(limit)?;
    }
    if !swap.is_empty() {
        SWAP.set(swap).unwrap();
        shmring::core::failpoint::set_hook(Some(swap_when_judged));
    }
    segment::configure_auto_sweep(config);
    if !go.is_empty() {
        let started = wait_until(Duration::from_secs(60), || {
            std::path::Path::new(&go).exists()
        });
        assert!(started, "never told to go");
    }
    let start = Instant::now();
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(8192)
        .max_message(256)
        .maxsize(0)
        .create(&name)?;
    let took = start.elapsed();
    segment::wait_for_auto_sweep();
    println!(
        "trigger: started={} create_us={}",
        segment::auto_sweeps_started(),
        took.as_micros()
    );
    drop(q);
    Ok(())
}
static TRIGGER: Entry<TriggerArgs> = shmring::entry!(trigger);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&SERVICE, &DICT_SERVICE, &PIPE_SERVICE, &RESTART, &TRIGGER]);
}

/// Spawns the child `builder` describes.
fn spawn(builder: ProcessBuilder) -> Child {
    builder.into_command().unwrap().spawn().unwrap()
}

/// The failpoint hook of a trigger given a swap (`from:to`): when the
/// sweep has judged `to` and is about to remove it, renames `from` over it,
/// once.
fn swap_when_judged(failpoint: &'static str, context: &[u8]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    let swap = SWAP.get().expect("a swap was given");
    let (from, to) = swap.split_once(':').unwrap();
    if failpoint == "segment.sweep.judged"
        && context == to.as_bytes()
        && !DONE.swap(true, Ordering::SeqCst)
    {
        std::fs::rename(shm_path(from), shm_path(to)).unwrap();
    }
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

/// A service that queued `count` messages on `name` and was SIGKILLed.
fn killed_service(name: &str, count: u32) {
    let child = spawn_child(CHILD_TEST, &SERVICE, (name.to_owned(), count));
    let ready = wait_until(Duration::from_secs(30), || {
        segment::inspect(name).is_ok_and(|i| {
            i.alive_peers() == 1 && i.object.and_then(|o| o.depth) == Some(count.into())
        })
    });
    assert!(ready, "the service never queued its messages");
    kill(child);
    let info = segment::inspect(name).unwrap();
    assert!(info.is_abandoned(), "{info:?}");
}

/// The automatic-sweep settings of a trigger process.
struct Sweeper {
    scope: String,
    prefix: String,
    period: Duration,
    idle: Duration,
    limit: Option<usize>,
}

impl Sweeper {
    fn new(prefix: &str, period: Duration, idle: Duration) -> Sweeper {
        Sweeper {
            // Unique per test and run: its own stamp, its own periods.
            scope: unique_name("scope")[1..].replace('/', "-"),
            prefix: prefix.trim_start_matches('/').to_owned(),
            period,
            idle,
            limit: None,
        }
    }

    /// A trigger process creating `name` (once `go` exists, if given),
    /// renaming as `swap` says (see [`swap_when_judged`]).
    fn command(&self, name: &str, go: Option<&str>, swap: Option<String>) -> Command {
        let limit = self.limit.map_or(0, |l| {
            assert_ne!(l, 0, "a limit of 0 would read as the default");
            l as u64
        });
        let args: TriggerArgs = (
            name.to_owned(),
            self.scope.clone(),
            self.prefix.clone(),
            self.period.as_millis() as u64,
            self.idle.as_millis() as u64,
            go.unwrap_or_default().to_owned(),
            limit,
            swap.unwrap_or_default(),
        );
        child(CHILD_TEST, &TRIGGER, args)
            .stdout(Stdio::piped())
            .into_command()
            .unwrap()
    }

    /// Runs one trigger process to its end; the sweeps it started.
    fn trigger(&self, name: &str) -> u64 {
        started(self.command(name, None, None).spawn().unwrap())
    }

    /// [`trigger`](Sweeper::trigger), renaming `from` over `to` right
    /// after its sweep judged `to` removable (see [`swap_when_judged`]).
    fn trigger_swapping(&self, name: &str, from: &str, to: &str) -> u64 {
        let mut cmd = self.command(name, None, Some(format!("{from}:{to}")));
        started(cmd.spawn().unwrap())
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let stamp = format!("/dev/shm/.shmring-sweep-{uid}.{}", self.scope);
        let _ = std::fs::remove_file(stamp);
    }
}

/// Removes the named files (in `/name` form) when dropped.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::fs::remove_file(shm_path(name));
        }
    }
}

/// Waits for a trigger process and reads how many sweeps it started.
fn started(child: Child) -> u64 {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "trigger failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // The harness prints "test child_entry ... " before the child's line.
    let line = text
        .split("trigger: started=")
        .nth(1)
        .unwrap_or_else(|| panic!("no report in {text:?}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// Moves every peer row's attach time of `name` back by `by`, as if its
/// peers had attached that long ago (located by value, not by layout).
fn age(name: &str, by: Duration) {
    let info = segment::inspect(name).unwrap();
    let table = info.header.unwrap().peer_table_offset;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(name))
        .unwrap();
    for peer in &info.peers {
        let at = table + u64::from(peer.row) * 128;
        let mut row = [0u8; 128];
        file.read_exact_at(&mut row, at).unwrap();
        let stamp = peer.attached_at_ns.to_ne_bytes();
        let offset = (0..row.len() - 7)
            .step_by(8)
            .find(|&i| row[i..i + 8] == stamp)
            .expect("the attach time is in the row");
        let older = peer.attached_at_ns.saturating_sub(by.as_nanos() as u64);
        file.write_all_at(&older.to_ne_bytes(), at + offset as u64)
            .unwrap();
    }
}

/// The review's scenario: a service with 100 undelivered messages is
/// SIGKILLed; unrelated processes then create segments (and sweep, with
/// no idle time at all); the queue survives and the restarted service gets
/// all 100. An empty queue abandoned beside it is swept.
#[test]
fn a_killed_services_queue_with_messages_survives_every_sweep() {
    let _dog = Watchdog::new(Duration::from_secs(180), "killed service");
    let prefix = unique_name("sweep-service");
    let queue = format!("{prefix}-queue");
    let empty = format!("{prefix}-empty");
    let _cleanup = Cleanup(vec![queue.clone(), empty.clone()]);
    killed_service(&queue, 100);
    killed_service(&empty, 0);
    // Up two minutes before it was killed.
    age(&queue, Duration::from_secs(120));
    age(&empty, Duration::from_secs(120));

    // Every trigger sweeps (a zero period), removing at first sight.
    let sweeper = Sweeper::new(&prefix, Duration::ZERO, Duration::ZERO);
    for i in 0..4 {
        let started = sweeper.trigger(&format!("{prefix}-trigger-{i}"));
        assert_eq!(started, 1, "trigger {i} swept");
        assert!(shm_exists(&queue), "sweep {i} removed a queue holding data");
    }
    assert!(!shm_exists(&empty), "the empty abandoned queue was swept");
    let info = segment::inspect(&queue).unwrap();
    assert_eq!(info.object.and_then(|o| o.depth), Some(100));

    // The explicit sweep leaves it too.
    assert_eq!(
        segment::sweep(&prefix, Duration::ZERO).unwrap(),
        Vec::<String>::new()
    );

    let restart = spawn(child(CHILD_TEST, &RESTART, (queue.clone(), 100)).stdout(Stdio::piped()));
    let out = restart.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("restart: got all 100"));
    // Its clean exit, as the last peer, removed the name.
    assert!(!shm_exists(&queue));
}

/// A killed dict with entries and a killed pipe with an undelivered
/// message hold data too: no sweep removes them.
#[test]
fn a_killed_dict_with_entries_and_pipe_with_a_message_survive_every_sweep() {
    let _dog = Watchdog::new(Duration::from_secs(180), "dict and pipe");
    let prefix = unique_name("sweep-data");
    let dict = format!("{prefix}-dict");
    let pipe = format!("{prefix}-pipe");
    let _cleanup = Cleanup(vec![dict.clone(), pipe.clone()]);
    for (name, role, entry) in [
        (&dict, "dict_service", &DICT_SERVICE),
        (&pipe, "pipe_service", &PIPE_SERVICE),
    ] {
        let child = spawn_child(CHILD_TEST, entry, (name.clone(),));
        let ready = wait_until(Duration::from_secs(30), || {
            segment::inspect(name).is_ok_and(|i| {
                i.alive_peers() == 1 && i.object.and_then(|o| o.holds_data) == Some(true)
            })
        });
        assert!(ready, "{role} never came up holding data");
        kill(child);
        assert!(segment::inspect(name).unwrap().is_abandoned());
    }
    let sweeper = Sweeper::new(&prefix, Duration::ZERO, Duration::ZERO);
    for i in 0..3 {
        assert_eq!(sweeper.trigger(&format!("{prefix}-trigger-{i}")), 1);
    }
    assert_eq!(
        segment::sweep(&prefix, Duration::ZERO).unwrap(),
        Vec::<String>::new()
    );
    assert!(shm_exists(&dict), "a dict with entries was swept");
    assert!(shm_exists(&pipe), "a pipe with a message was swept");
}

/// A leftover of the fallback create path (a file under a private name
/// whose creator died) is swept once it is old enough for reclaim; a fresh
/// one (its creator may be at work) is not.
#[test]
fn a_dead_creators_leftover_is_swept_a_fresh_one_is_not() {
    let _dog = Watchdog::new(Duration::from_secs(120), "leftovers");
    let prefix = format!(".shmring-creating.{}", &unique_name("sweep-leftover")[1..]);
    let old = format!("/{prefix}-old");
    let fresh = format!("/{prefix}-fresh");
    let _cleanup = Cleanup(vec![old.clone(), fresh.clone()]);
    for (name, age) in [(&old, Duration::from_secs(30)), (&fresh, Duration::ZERO)] {
        let file = std::fs::File::create(shm_path(name)).unwrap();
        file.set_modified(std::time::SystemTime::now() - age)
            .unwrap();
    }
    let sweeper = Sweeper::new(&prefix, Duration::ZERO, Duration::ZERO);
    let trigger = unique_name("sweep-leftover-trigger");
    assert_eq!(sweeper.trigger(&trigger), 1);
    assert!(!shm_exists(&old), "a dead creator's leftover stayed");
    assert!(shm_exists(&fresh), "a fresh leftover was swept");
}

/// Idleness counts from when a sweep first found the segment without a
/// live peer, not from its last attach: a segment whose peers attached two
/// minutes ago and died just now is kept by the first sweep, and removed
/// by a sweep once the idle period has passed since.
#[test]
fn an_empty_abandoned_segment_goes_once_seen_idle_long_enough() {
    let _dog = Watchdog::new(Duration::from_secs(180), "idle sweep");
    let prefix = unique_name("sweep-idle");
    let dead = format!("{prefix}-dead");
    let _cleanup = Cleanup(vec![dead.clone()]);
    killed_service(&dead, 0);
    age(&dead, Duration::from_secs(120));

    let idle = Duration::from_secs(2);
    let sweeper = Sweeper::new(&prefix, Duration::ZERO, idle);
    let first_seen = Instant::now();
    assert_eq!(sweeper.trigger(&format!("{prefix}-t0")), 1);
    assert!(shm_exists(&dead), "removed at first sight");
    if first_seen.elapsed() < idle {
        assert_eq!(sweeper.trigger(&format!("{prefix}-t1")), 1);
        assert!(
            shm_exists(&dead) || first_seen.elapsed() >= idle,
            "removed before it was seen idle for {idle:?}"
        );
    }
    // Well past the idle period: the next sweep removes it.
    std::thread::sleep(idle + Duration::from_millis(200));
    assert_eq!(sweeper.trigger(&format!("{prefix}-t2")), 1);
    assert!(!shm_exists(&dead), "an empty abandoned segment stayed");
}

/// Review finding: the sweep judged a file (by its inode: no live peer,
/// seen idle long enough) and then removed by *name*. A file that replaced
/// the judged one in between (renamed over it here, at the failpoint right
/// before the removal) was removed without ever having been seen idle: its
/// own idle time never started. The removal must be of the judged inode.
#[test]
fn a_file_that_replaced_the_judged_one_is_not_removed_in_its_place() {
    let _dog = Watchdog::new(Duration::from_secs(180), "replaced before removal");
    let prefix = unique_name("sweep-swap");
    let judged = format!("{prefix}-dead");
    // Outside the prefix: no sweep here ever looks at it by its own name.
    let spare = format!("{}-spare", unique_name("sweep-swap-other"));
    let _cleanup = Cleanup(vec![judged.clone(), spare.clone()]);
    killed_service(&judged, 0);
    killed_service(&spare, 0);
    let spare_ino = std::fs::metadata(shm_path(&spare)).unwrap().ino();

    let idle = Duration::from_secs(1);
    let sweeper = Sweeper::new(&prefix, Duration::ZERO, idle);
    assert_eq!(sweeper.trigger(&format!("{prefix}-t0")), 1);
    assert!(shm_exists(&judged), "removed at first sight");
    std::thread::sleep(idle + Duration::from_millis(200));
    // The judged segment qualifies now; the spare is put in its place.
    assert_eq!(
        sweeper.trigger_swapping(&format!("{prefix}-t1"), &spare, &judged),
        1
    );
    assert!(!shm_exists(&spare), "the swap did not happen");
    let now = std::fs::metadata(shm_path(&judged)).map(|m| m.ino());
    assert_eq!(
        now.ok(),
        Some(spare_ino),
        "the file that replaced the judged one was removed without its own idle time"
    );
}

/// One sweep examines at most its limit of files, and the next one goes on
/// from where it stopped: six empty abandoned segments, a limit of two
/// files per sweep, three sweeps.
#[test]
fn each_sweep_examines_a_bounded_number_of_files_from_the_last_cursor() {
    let _dog = Watchdog::new(Duration::from_secs(180), "bounded sweep");
    let prefix = unique_name("sweep-bounded");
    let dead: Vec<String> = (0..6).map(|i| format!("{prefix}-dead-{i}")).collect();
    let _cleanup = Cleanup(dead.clone());
    for name in &dead {
        killed_service(name, 0);
    }
    // The sweep's prefix leaves the triggers' own segments out.
    let mut sweeper = Sweeper::new(&format!("{prefix}-dead"), Duration::ZERO, Duration::ZERO);
    sweeper.limit = Some(2);
    let left = |dead: &[String]| dead.iter().filter(|n| shm_exists(n)).count();
    for (round, expected) in [4, 2, 0].into_iter().enumerate() {
        assert_eq!(sweeper.trigger(&format!("{prefix}-trigger-{round}")), 1);
        assert_eq!(left(&dead), expected, "after sweep {round}");
    }
    // In name order: the cursor moves on.
    assert!(!shm_exists(&dead[0]) && !shm_exists(&dead[1]));
}

/// A fleet of processes creating a segment each at the same moment: every
/// create succeeds, and exactly one of them started a sweep (the period's);
/// a second wave within the period starts none.
#[test]
fn a_fleet_of_creates_runs_one_sweep_per_period() {
    let _dog = Watchdog::new(Duration::from_secs(300), "fleet");
    const FLEET: usize = 60;
    let prefix = unique_name("sweep-fleet");
    // A long period; a prefix that no file has (the sweep finds nothing).
    let sweeper = Sweeper::new(
        &format!("{prefix}-nothing"),
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    for wave in 0..2 {
        let go = format!("/tmp/{}-go-{wave}", &prefix[1..]);
        let children: Vec<Child> = (0..FLEET)
            .map(|i| {
                sweeper
                    .command(&format!("{prefix}-{wave}-{i}"), Some(&go), None)
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::fs::write(&go, b"go").unwrap();
        let total: u64 = children.into_iter().map(started).sum();
        let _ = std::fs::remove_file(&go);
        let expected = if wave == 0 { 1 } else { 0 };
        assert_eq!(
            total, expected,
            "wave {wave}: sweeps started by {FLEET} creates"
        );
    }
}

/// The unprivileged uid ("nobody") of the test that needs a second user.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A file that merely starts with the magic, and (as root) another user's
/// abandoned empty segment: no sweep removes either.
#[test]
fn sweeps_never_remove_foreign_files_or_other_users_segments() {
    let _dog = Watchdog::new(Duration::from_secs(180), "foreign");
    let prefix = unique_name("sweep-foreign");
    // The magic: the first 8 bytes of a real segment.
    let real = format!("{prefix}-real");
    let q = mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(8192)
        .max_message(256)
        .maxsize(0)
        .create(&real)
        .unwrap();
    let bytes = std::fs::read(shm_path(&real)).unwrap();
    drop(q);
    let mut zeros = bytes[..8].to_vec();
    zeros.resize(bytes.len(), 0);
    let mut garbage = bytes[..8].to_vec();
    garbage.resize(bytes.len(), 0x5a);
    let planted = [
        (format!("{prefix}-zeros"), zeros),
        (format!("{prefix}-garbage"), garbage),
    ];
    let nobody = format!("{prefix}-nobody");
    let mut names: Vec<String> = planted.iter().map(|(n, _)| n.clone()).collect();
    names.push(nobody.clone());
    let _cleanup = Cleanup(names);
    for (name, content) in &planted {
        std::fs::write(shm_path(name), content).unwrap();
    }

    if is_root() {
        let exe = executable_by_anyone(&std::env::current_exe().unwrap());
        let mut cmd = Command::new(exe);
        cmd.args(harness_args(CHILD_TEST)).current_dir("/");
        // SAFETY: runs in the forked child before exec; setgroups, setgid
        // and setuid are async-signal-safe and touch no parent state.
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
        let mut cmd = Process::with_command(cmd, &SERVICE, (nobody.clone(), 0))
            .into_command()
            .unwrap();
        let child = spawn_busy(&mut cmd);
        let ready = wait_until(Duration::from_secs(30), || {
            segment::inspect(&nobody).is_ok_and(|i| i.alive_peers() == 1)
        });
        assert!(ready, "nobody's service never came up");
        kill(child);
        assert!(segment::inspect(&nobody).unwrap().is_abandoned());
    } else {
        eprintln!("not root: the other-user case is skipped");
    }

    let sweeper = Sweeper::new(&prefix, Duration::ZERO, Duration::ZERO);
    assert_eq!(sweeper.trigger(&format!("{prefix}-trigger")), 1);
    assert_eq!(
        segment::sweep(&prefix, Duration::ZERO).unwrap(),
        Vec::<String>::new()
    );
    for (name, _) in &planted {
        assert!(shm_exists(name), "{name} was swept");
    }
    if is_root() {
        assert!(shm_exists(&nobody), "another user's segment was swept");
    }
}

/// Spawns `cmd`, again while exec fails with `ETXTBSY` (a copy made by
/// `executable_by_anyone` can be open for writing in a child that another
/// test thread is forking).
fn spawn_busy(cmd: &mut Command) -> Child {
    for _ in 0..200 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
    panic!("the executable stayed busy");
}
