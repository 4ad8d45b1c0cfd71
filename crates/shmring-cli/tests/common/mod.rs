//! Helpers shared by the CLI's test files: running the `shmring` binary
//! (as this user or as uid 65534), checking its output is safe to print,
//! and removing the files a test planted in `/dev/shm`.

#![allow(dead_code)] // each test file uses some of these

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use shmring::process::{Args, Entry, IntoArgs, Process};
use shmring_testkit::{executable_by_anyone, harness_args};

/// The unprivileged uid and gid ("nobody") of the tests that need a second
/// user; they run only as root.
pub const NOBODY: u32 = 65534;

/// One run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The raw bytes, to look for control bytes.
    pub raw: Vec<u8>,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Runs `f` on `cmd` again while exec fails with `ETXTBSY`: a copy made by
/// `executable_by_anyone` is briefly open for writing, and a child that
/// another test thread forks meanwhile holds that descriptor until it execs.
pub fn retry_busy<T>(
    cmd: &mut Command,
    mut f: impl FnMut(&mut Command) -> std::io::Result<T>,
) -> T {
    for _ in 0..200 {
        match f(cmd) {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.expect("start the command"),
        }
    }
    panic!("the executable stayed busy (ETXTBSY)");
}

pub fn output(mut cmd: Command) -> Run {
    let out = retry_busy(&mut cmd, Command::output);
    let mut raw = out.stdout.clone();
    raw.extend_from_slice(&out.stderr);
    Run {
        code: out
            .status
            .code()
            .expect("exit code (not killed by a signal)"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        raw,
    }
}

pub fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shmring"));
    cmd.args(args);
    cmd
}

pub fn shmring<S: AsRef<OsStr>>(args: &[S]) -> Run {
    output(command(args))
}

/// Makes `cmd` drop to uid/gid 65534 before it execs.
pub fn drop_to_nobody(cmd: &mut Command) {
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
}

/// The binary (a copy any uid can execute), run as uid 65534.
pub fn shmring_as_nobody<S: AsRef<OsStr>>(args: &[S]) -> Run {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let exe = EXE
        .get_or_init(|| executable_by_anyone(std::path::Path::new(env!("CARGO_BIN_EXE_shmring"))));
    let mut cmd = Command::new(exe);
    cmd.args(args);
    drop_to_nobody(&mut cmd);
    output(cmd)
}

/// This test binary again (a copy any uid can execute), running `entry`
/// with `args` (run by its `child_entry` test) as uid 65534.
pub fn entry_as_nobody<A: Args>(entry: &Entry<A>, args: impl IntoArgs<A>) -> Command {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let exe = EXE.get_or_init(|| executable_by_anyone(&std::env::current_exe().unwrap()));
    let mut cmd = Command::new(exe);
    cmd.args(harness_args("child_entry"));
    drop_to_nobody(&mut cmd);
    Process::with_command(cmd, entry, args)
        .into_command()
        .expect("hand the child its arguments")
}

/// Panics if the run's output holds a byte a terminal would act on: any
/// control byte but the newline that ends a line, or an escape in UTF-8
/// (C1 controls, bidirectional overrides).
pub fn assert_terminal_safe(run: &Run, what: &str) {
    for &b in &run.raw {
        assert!(
            b == b'\n' || !(b < 0x20 || b == 0x7f),
            "{what}: raw control byte {b:#04x} in output\n{}",
            run.both()
        );
    }
    let text = format!("{}{}", run.stdout, run.stderr);
    for c in text.chars() {
        assert!(
            !(('\u{80}'..='\u{9f}').contains(&c)
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)),
            "{what}: unsafe character {c:?} in output\n{}",
            run.both()
        );
    }
}

/// Parses each non-empty line of stdout as one JSON value.
pub fn json_lines(run: &Run, what: &str) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {l:?}\n{}", run.both()))
        })
        .collect()
}

/// The one JSON object on stdout.
pub fn json(run: &Run, what: &str) -> serde_json::Value {
    let mut values = json_lines(run, what);
    assert_eq!(values.len(), 1, "{what}: one JSON line\n{}", run.both());
    values.remove(0)
}

/// A file (or directory, FIFO, link) under `/dev/shm`, by its raw name
/// (without the leading `/`), removed when dropped.
pub struct Planted {
    pub path: PathBuf,
}

impl Planted {
    pub fn path_of(body: &[u8]) -> PathBuf {
        PathBuf::from("/dev/shm").join(OsStr::from_bytes(body))
    }

    /// Takes charge of removing `body` (already made, or about to be).
    pub fn new(body: &[u8]) -> Planted {
        Planted {
            path: Planted::path_of(body),
        }
    }

    /// A regular file with `bytes` and `mode`.
    pub fn file(body: &[u8], bytes: &[u8], mode: u32) -> Planted {
        use std::os::unix::fs::PermissionsExt;
        let p = Planted::new(body);
        std::fs::write(&p.path, bytes).expect("plant a file");
        std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    pub fn exists(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }

    /// The name a CLI argument or the library uses (`/` + body), when UTF-8.
    pub fn name(&self) -> String {
        let body = self.path.file_name().unwrap().to_str().expect("UTF-8 name");
        format!("/{body}")
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&self.path);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.path);
            }
            Err(_) => {}
        }
    }
}

/// A small queue: 2 producer rings of 4 KiB, messages up to 256 bytes.
pub fn queue_builder() -> shmring::Builder<shmring::mpmc::ByteQueue> {
    shmring::mpmc::ByteQueue::builder()
        .producers(2)
        .ring_bytes(4096)
        .max_message(256)
}
