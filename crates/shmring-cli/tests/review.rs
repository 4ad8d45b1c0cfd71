//! An adversarial review of `shmring rm` and `gc`: one test per finding.
//! Each race is made deterministic by stopping the `shmring` process
//! (`SIGSTOP`) at a point it is seen to reach through inotify, doing what a
//! concurrent process would do, then letting it go on (`SIGCONT`).
//! Children are this test binary re-executed with a role (see
//! `shmring_testkit`).

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{command, queue_config, retry_busy, shmring};
use shmring::dict::{Dict, DictConfig};
use shmring::{mpmc, CreateOptions, OpenOptions, UnlinkPolicy};
use shmring_testkit::{
    role, shm_exists, shm_path, sleep_forever, spawn_role, unique_name, wait_child, wait_until,
    Watchdog,
};

const NAME_VAR: &str = "SHMRING_TEST_SEGMENT";

/// Entry point of every child role (returns at once in a normal run).
#[test]
fn child_entry() {
    let Some(role) = role() else { return };
    let _dog = Watchdog::new(Duration::from_secs(60), &format!("child role {role}"));
    let name = std::env::var(NAME_VAR).unwrap();
    match role.as_str() {
        // Creates an empty queue and waits for its SIGKILL.
        "empty_queue" => {
            let _q = mpmc::Queue::create(&name, queue_config(), &CreateOptions::default()).unwrap();
            println!("READY");
            sleep_forever();
        }
        // Opens the queue, puts one message, and waits for its SIGKILL.
        "put_one" => {
            let q = mpmc::Queue::open(&name, &OpenOptions::default()).unwrap();
            q.producer().unwrap().try_push(b"precious").unwrap();
            println!("READY");
            sleep_forever();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Reads the child's stdout up to a line holding `READY`.
fn wait_ready(child: &mut Child) {
    use std::io::BufRead;
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the child ended before it was ready"
        );
        if line.contains("READY") {
            return;
        }
    }
}

fn spawn_child(role: &str, name: &str) -> Child {
    let mut child = spawn_role("child_entry", role, &[(NAME_VAR, name.to_owned())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut child);
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the pid is our
    // child's, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// The state letter of `/proc/<pid>/stat`.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn stop(child: &Child) {
    signal(child, libc::SIGSTOP);
    let stopped = wait_until(Duration::from_secs(30), || {
        matches!(proc_state(child.id()), Some('T' | 't'))
    });
    assert!(stopped, "the shmring process never stopped");
}

/// An inotify watch of one file's opens.
struct Opens {
    fd: OwnedFd,
}

impl Opens {
    fn watch(path: &str) -> Opens {
        // SAFETY: plain system call; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        Opens { fd }
    }

    /// Waits (up to `timeout`) until `n` more opens of the file happened.
    fn wait(&self, n: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut seen = 0;
        while seen < n {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as libc::c_int) };
            if rc <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is valid and writable for its length.
            let got =
                unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            assert!(got > 0, "read inotify: {}", std::io::Error::last_os_error());
            // Each event: wd (4), mask (4), cookie (4), len (4), name (len).
            let mut at = 0usize;
            while at + 16 <= got as usize {
                let mask = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                if mask & libc::IN_OPEN != 0 {
                    seen += 1;
                }
                at += 16 + len;
            }
        }
        true
    }
}

/// A dict big enough that counting its entries (which `inspect` does,
/// after it asked every lock) takes a while: the window the tests stop
/// `shmring` in.
fn big_dict(name: &str, policy: UnlinkPolicy) -> Dict<String, u64> {
    let config = DictConfig {
        capacity: 1 << 20,
        max_key: 8,
        max_value: 8,
    };
    let opts = CreateOptions {
        unlink: policy,
        ..CreateOptions::default()
    };
    Dict::create(name, config, &opts).unwrap()
}

/// Review finding 1: `shmring gc` (without `--include-data`) decided
/// "holds no data" from its first look at a segment, then removed it with
/// `segment::reclaim`, which re-checks liveness under the locks but not
/// data. A peer that attached, put a message and died in between (a
/// restarted service that crashed again) lost that message to a `gc` that
/// promises to remove data only when told to.
#[test]
fn gc_never_removes_data_put_after_it_looked() {
    let _dog = Watchdog::new(Duration::from_secs(240), "gc data race");
    for attempt in 0..5 {
        let name = unique_name("cli-rev-gc-race");
        kill(spawn_child("empty_queue", &name));
        // Inspected after `name` (the arguments' order), and slowly.
        let slow = unique_name("cli-rev-gc-slow");
        let slow_dict = big_dict(&slow, UnlinkPolicy::OnLastPeerDrop);
        let opens = Opens::watch(&shm_path(&slow));
        let mut gc = command(&["gc", &name, &slow]);
        gc.stdout(Stdio::piped()).stderr(Stdio::piped());
        let gc = retry_busy(&mut gc, std::process::Command::spawn);
        // The second open of the slow dict is the mapping of its object:
        // `gc` has looked at `name` and is counting the dict's entries.
        assert!(opens.wait(2, Duration::from_secs(60)), "gc never looked");
        stop(&gc);
        if !shm_exists(&name) {
            // Stopped too late (a loaded machine): try again.
            signal(&gc, libc::SIGCONT);
            let _ = gc.wait_with_output();
            eprintln!("attempt {attempt}: gc was stopped too late");
            continue;
        }
        // A restarted service puts a message and crashes again.
        kill(spawn_child("put_one", &name));
        signal(&gc, libc::SIGCONT);
        let out = gc.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        drop(slow_dict);
        assert!(
            shm_exists(&name),
            "gc without --include-data removed a queue holding a message:\n{text}"
        );
        let q = mpmc::Queue::open(&name, &OpenOptions::default()).unwrap();
        let mut buf = Vec::new();
        q.consumer().try_pop(&mut buf).unwrap();
        assert_eq!(buf, b"precious");
        return;
    }
    panic!("gc was never stopped in time");
}

/// Review finding 4: `shmring rm` (without `--force`) looked for live peers,
/// then removed the name with `Segment::unlink`, which removes it whatever
/// the peers do. A peer that attached in between (a service starting up)
/// lost its name: the next create made a second object it never sees,
/// which is what `rm` refuses live segments to prevent.
#[test]
fn rm_never_removes_the_name_of_a_peer_that_attached_after_it_looked() {
    let _dog = Watchdog::new(Duration::from_secs(240), "rm race");
    for attempt in 0..5 {
        let name = unique_name("cli-rev-rm-race");
        // No live peer: `rm` goes ahead.
        drop(big_dict(&name, UnlinkPolicy::Never));
        let opens = Opens::watch(&shm_path(&name));
        let mut rm = command(&["rm", &name]);
        rm.stdout(Stdio::piped()).stderr(Stdio::piped());
        let rm = retry_busy(&mut rm, std::process::Command::spawn);
        // The second open is the mapping of the object, after the locks
        // were asked: `rm` is counting the entries.
        assert!(opens.wait(2, Duration::from_secs(60)), "rm never looked");
        stop(&rm);
        if !shm_exists(&name) {
            signal(&rm, libc::SIGCONT);
            let _ = rm.wait_with_output();
            eprintln!("attempt {attempt}: rm was stopped too late");
            continue;
        }
        // A service opens it now.
        let live: Dict<String, u64> = Dict::open(&name, &OpenOptions::default()).unwrap();
        signal(&rm, libc::SIGCONT);
        let out = rm.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kept = shm_exists(&name);
        drop(live);
        let _ = shmring::Segment::unlink(&name);
        assert!(kept, "rm removed the name of a live segment:\n{text}");
        assert_eq!(out.status.code(), Some(6), "rm: in use\n{text}");
        return;
    }
    panic!("rm was never stopped in time");
}

/// Review finding 5: `/dev/shmNAME` (a slash missing after `/dev/shm`) was
/// read as the segment `/NAME`: a typo removed another segment.
#[test]
fn a_path_that_only_starts_like_dev_shm_is_not_a_segment_name() {
    let name = unique_name("cli-rev-prefix");
    let q = mpmc::Queue::create(
        &name,
        queue_config(),
        &CreateOptions {
            unlink: UnlinkPolicy::Never,
            ..CreateOptions::default()
        },
    )
    .unwrap();
    drop(q);
    let typo = format!("/dev/shm{}", name.trim_start_matches('/'));
    let rm = shmring(&["rm", &typo]);
    let kept = shm_exists(&name);
    let _ = shmring::Segment::unlink(&name);
    assert!(kept, "`rm {typo}` removed {name}: {}", rm.both());
    assert_eq!(rm.code, 2, "an invalid name: {}", rm.both());
    // The documented forms still work.
    for form in [
        name.clone(),
        name.trim_start_matches('/').to_owned(),
        format!("/dev/shm{name}"),
    ] {
        drop(
            mpmc::Queue::create(
                &name,
                queue_config(),
                &CreateOptions {
                    unlink: UnlinkPolicy::Never,
                    ..CreateOptions::default()
                },
            )
            .unwrap(),
        );
        let rm = shmring(&["rm", &form]);
        assert_eq!(rm.code, 0, "{form}: {}", rm.both());
        assert!(!shm_exists(&name), "{form}");
    }
}

/// Review finding 6: a unix socket in `/dev/shm` (any user can bind one
/// there) could not be opened (`ENXIO`), and that error was reported as a
/// shmring file that failed inspection: a warning on every `ls` and `gc`,
/// and `rm --force` could not remove it. It is a file that is not a
/// segment, like a FIFO: skipped silently, refused by `rm`, removed by
/// `rm --force`.
#[test]
fn a_unix_socket_in_dev_shm_is_not_a_segment() {
    let name = unique_name("cli-rev-socket");
    let _socket = std::os::unix::net::UnixListener::bind(shm_path(&name)).unwrap();
    for args in [vec!["ls"], vec!["gc", "--dry-run"]] {
        let run = shmring(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.both());
        assert!(
            !run.stderr.contains(&name),
            "{args:?} warned about a socket: {}",
            run.both()
        );
    }
    let rm = shmring(&["rm", &name]);
    assert_eq!(rm.code, 4, "not a shmring segment: {}", rm.both());
    assert!(shm_exists(&name));
    let rm = shmring(&["rm", "--force", &name]);
    let gone = !std::path::Path::new(&shm_path(&name)).exists();
    let _ = std::fs::remove_file(shm_path(&name));
    assert_eq!(rm.code, 0, "{}", rm.both());
    assert!(gone, "rm --force left the socket");
}
