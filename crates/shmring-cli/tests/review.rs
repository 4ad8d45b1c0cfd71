//! An adversarial review of `shmring rm` and `gc`: one test per finding.
//! Each race is made deterministic by holding the `shmring` process inside
//! one of its `open`s (a fanotify permission event: root only), doing what
//! a concurrent process would do meanwhile, then letting it go on.
//! Children are this test binary re-executed to run an entry point (see
//! `shmring_testkit`).

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{command, queue_builder, retry_busy, shmring};
use shmring::process::{Entry, EntryResult};
use shmring::{mpmc, UnlinkPolicy};
use shmring_testkit::{
    child, run_child, shm_exists, shm_path, sleep_forever, unique_name, wait_child, Watchdog,
};

/// The test that runs the children's entry points.
const CHILD_TEST: &str = "child_entry";

/// Creates the empty queue `name` and waits for its SIGKILL.
fn empty_queue((name,): (String,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(60), "child empty_queue");
    let _q = queue_builder().create(&name)?;
    println!("READY");
    sleep_forever();
}
static EMPTY_QUEUE: Entry<(String,)> = shmring::entry!(empty_queue);

/// Opens the queue `name`, puts one message, and waits for its SIGKILL.
fn put_one((name,): (String,)) -> EntryResult {
    let _dog = Watchdog::new(Duration::from_secs(60), "child put_one");
    let q = mpmc::ByteQueue::open(&name)?;
    q.producer()?.try_push(b"precious")?;
    println!("READY");
    sleep_forever();
}
static PUT_ONE: Entry<(String,)> = shmring::entry!(put_one);

/// Runs the children (returns at once in a normal run).
#[test]
fn child_entry() {
    run_child(&[&EMPTY_QUEUE, &PUT_ONE]);
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

/// Starts `entry` on the segment `name` and waits until it is ready.
fn spawn_ready(entry: &Entry<(String,)>, name: &str) -> Child {
    let mut child = child(CHILD_TEST, entry, (name.to_owned(),))
        .stdout(Stdio::piped())
        .into_command()
        .unwrap()
        .spawn()
        .unwrap();
    wait_ready(&mut child);
    child
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    wait_child(child, Duration::from_secs(30));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Holds one open of one file by a `shmring` process in the kernel
/// (fanotify permission events, root only) until released: the process is
/// then exactly between two of its steps, and the test acts as a concurrent
/// process would. Every other open of the file, by anyone, is allowed at
/// once; dropping the gate (or closing its descriptor) allows everything.
struct OpenGate {
    held: std::sync::mpsc::Receiver<()>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Writes a fanotify answer for `fd` (allow) and closes it.
fn allow(fan: &OwnedFd, fd: libc::c_int) {
    let mut answer = [0u8; 8];
    answer[..4].copy_from_slice(&fd.to_ne_bytes());
    answer[4..].copy_from_slice(&libc::FAN_ALLOW.to_ne_bytes());
    // SAFETY: `answer` is valid for its 8 bytes (a struct fanotify_response).
    let rc = unsafe { libc::write(fan.as_raw_fd(), answer.as_ptr().cast(), answer.len()) };
    assert_eq!(
        rc,
        8,
        "fanotify answer: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` came with the event and is ours to close.
    unsafe { libc::close(fd) };
}

impl OpenGate {
    /// Holds the `nth` open (from 1) of `path` by a `shmring` process whose
    /// command line holds `needle`. `None` when fanotify permission events
    /// are not available (not root).
    fn hold(path: &str, needle: &str, nth: usize) -> Option<OpenGate> {
        use std::sync::atomic::Ordering;
        // SAFETY: plain system call; the descriptor is owned below.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
                libc::O_RDONLY as libc::c_uint,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fan = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(path).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        let rc = unsafe {
            libc::fanotify_mark(
                fan.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        assert_eq!(rc, 0, "fanotify_mark: {}", std::io::Error::last_os_error());
        let (tell, held) = std::sync::mpsc::channel();
        let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let released = release.clone();
        let needle = needle.to_owned();
        let is_target = move |pid: i32| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let mut args = cmdline.split(|&b| b == 0);
            let exe = args.next().unwrap_or_default();
            exe.ends_with(b"shmring") && args.any(|a| a == needle.as_bytes())
        };
        let thread = std::thread::spawn(move || {
            let mut seen = 0;
            let mut holding: Option<libc::c_int> = None;
            loop {
                // ORDERING: SeqCst — a flag between two test threads.
                if released.load(Ordering::SeqCst) {
                    if let Some(fd) = holding.take() {
                        allow(&fan, fd);
                    }
                    // Closing `fan` allows whatever comes next.
                    return;
                }
                let mut pfd = libc::pollfd {
                    fd: fan.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                if unsafe { libc::poll(&mut pfd, 1, 5) } <= 0 {
                    continue;
                }
                let mut buf = [0u8; 4096];
                // SAFETY: `buf` is valid and writable for its length.
                let got =
                    unsafe { libc::read(fan.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                assert!(
                    got > 0,
                    "read fanotify: {}",
                    std::io::Error::last_os_error()
                );
                // Each event: event_len (4), vers, reserved, metadata_len
                // (2), mask (8), fd (4), pid (4).
                let mut at = 0usize;
                while at + 24 <= got as usize {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    let fd = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    let pid = i32::from_ne_bytes(buf[at + 20..at + 24].try_into().unwrap());
                    at += len.max(24);
                    if holding.is_none() && is_target(pid) {
                        seen += 1;
                        if seen == nth {
                            holding = Some(fd);
                            let _ = tell.send(());
                            continue;
                        }
                    }
                    allow(&fan, fd);
                }
            }
        });
        Some(OpenGate {
            held,
            release,
            thread: Some(thread),
        })
    }

    /// Waits until the open is being held.
    fn wait_held(&self) {
        self.held
            .recv_timeout(Duration::from_secs(60))
            .expect("the shmring process never made that open");
    }
}

impl Drop for OpenGate {
    fn drop(&mut self) {
        // ORDERING: SeqCst — a flag between two test threads.
        self.release
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn output_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Review finding 1: `shmring gc` (without `--include-data`) decided
/// "holds no data" from its first look at a segment, then removed it with
/// `segment::reclaim`, which re-checks liveness under the locks but not
/// data. A peer that attached, put a message and died in between (a
/// restarted service that crashed again) lost that message to a `gc` that
/// promises to remove data only when told to.
#[test]
fn gc_never_removes_data_put_after_it_looked() {
    if !is_root() {
        println!("skipped: holding a process in open(2) (fanotify) needs root");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(120), "gc data race");
    let name = unique_name("cli-rev-gc-race");
    kill(spawn_ready(&EMPTY_QUEUE, &name));
    // gc's opens of the file: its look (the header, then the object), then
    // the removal. Hold the third.
    let gate = OpenGate::hold(&shm_path(&name), &name, 3).expect("fanotify");
    let mut gc = command(&["gc", &name]);
    gc.stdout(Stdio::piped()).stderr(Stdio::piped());
    let gc = retry_busy(&mut gc, std::process::Command::spawn);
    gate.wait_held();
    // A restarted service puts a message and crashes again.
    kill(spawn_ready(&PUT_ONE, &name));
    drop(gate);
    let text = output_of(gc);
    assert!(
        shm_exists(&name),
        "gc without --include-data removed a queue holding a message:\n{text}"
    );
    let q = mpmc::ByteQueue::open(&name).unwrap();
    let mut buf = Vec::new();
    q.consumer().try_pop(&mut buf).unwrap();
    assert_eq!(buf, b"precious");
    assert!(text.contains("kept"), "{text}");
}

/// Review finding 4: `shmring rm` (without `--force`) looked for live peers,
/// then removed the name with `Segment::unlink`, which removes it whatever
/// the peers do. A peer that attached in between (a service starting up)
/// lost its name: the next create made a second object it never sees,
/// which is what `rm` refuses live segments to prevent.
#[test]
fn rm_never_removes_the_name_of_a_peer_that_attached_after_it_looked() {
    if !is_root() {
        println!("skipped: holding a process in open(2) (fanotify) needs root");
        return;
    }
    let _dog = Watchdog::new(Duration::from_secs(120), "rm race");
    let name = unique_name("cli-rev-rm-race");
    // No live peer: `rm` goes ahead.
    drop(
        queue_builder()
            .unlink(UnlinkPolicy::Never)
            .create(&name)
            .unwrap(),
    );
    // rm's opens of the file: its look (the header, then the object), then
    // the removal. Hold the third.
    let gate = OpenGate::hold(&shm_path(&name), &name, 3).expect("fanotify");
    let mut rm = command(&["rm", &name]);
    rm.stdout(Stdio::piped()).stderr(Stdio::piped());
    let rm = retry_busy(&mut rm, std::process::Command::spawn);
    gate.wait_held();
    // A service opens it now.
    let live = mpmc::ByteQueue::open(&name).unwrap();
    drop(gate);
    let text = output_of(rm);
    let kept = shm_exists(&name);
    drop(live);
    let _ = shmring::Segment::unlink(&name);
    assert!(kept, "rm removed the name of a live segment:\n{text}");
    assert!(text.starts_with("exit Some(6)"), "rm: in use\n{text}");
}

/// Review finding 5: `/dev/shmNAME` (a slash missing after `/dev/shm`) was
/// read as the segment `/NAME`: a typo removed another segment.
#[test]
fn a_path_that_only_starts_like_dev_shm_is_not_a_segment_name() {
    let name = unique_name("cli-rev-prefix");
    let q = queue_builder()
        .unlink(UnlinkPolicy::Never)
        .create(&name)
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
            queue_builder()
                .unlink(UnlinkPolicy::Never)
                .create(&name)
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
