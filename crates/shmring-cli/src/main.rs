//! The `shmring` command: list, inspect, remove and garbage-collect
//! shared-memory segments, and benchmark this host. See [`HELP`].

mod args;
mod bench;
mod bridges;
mod commands;
mod escape;
mod gc;
mod json;
mod rm;
mod scan;
mod show;

use std::process::ExitCode;

use args::Args;
use shmring::SegmentError;

/// Success.
const EXIT_OK: u8 = 0;
/// Any other error.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Bad command line (also an invalid segment name).
const EXIT_USAGE: u8 = 2;
/// No such segment.
pub(crate) const EXIT_NOT_FOUND: u8 = 3;
/// The file is not a shmring segment.
const EXIT_NOT_SHMRING: u8 = 4;
/// Permission denied (also a segment of another user).
const EXIT_PERMISSION: u8 = 5;
/// `rm` refused a segment in use (a live peer, or being created).
const EXIT_IN_USE: u8 = 6;

const HELP: &str = "\
shmring — inspect and manage shmring shared-memory segments

Usage: shmring <COMMAND> [OPTIONS]

Commands:
  ls      list every shmring segment in /dev/shm
  stat    show one segment: header, peers, counters, object state
  rm      remove segment names
  gc      remove segments whose peers all died
  bench   measure shmring beside pipes, unix sockets and the raw floors
  bridge  bridge a queue to other hosts through NATS JetStream (out or in;
          `shmring bridge --help`; needs the default `bridge` feature)
  help    show this, or `shmring help <COMMAND>`

Run `shmring <COMMAND> --help` for a command's options. Segment names may be
given as NAME, /NAME or /dev/shm/NAME.

Exit codes:
  0  success
  1  error (a system call failed, a corrupted segment, ...)
  2  usage error (bad option or argument, invalid segment name)
  3  segment not found
  4  not a shmring segment
  5  permission denied (or a segment owned by another user)
  6  segment in use: rm refused it (a live peer, or being created)
Errors go to stderr, one line each, starting with \"shmring: \". Every name
is printed escaped (control characters as \\n, \\x1b, ..., a backslash as
\\\\): any user can create files in /dev/shm, under any name.
";

const HELP_LS: &str = "\
Usage: shmring ls [--json] [--verbose]

Lists every shmring segment in /dev/shm (files without the shmring magic are
skipped): name, kind, file size, capacity, depth (approximate messages
waiting), peers alive/dead, owner uid, creator pid and state:
  ready         published, in use or not
  abandoned     no live peer and at least one dead one (`shmring gc` removes it)
  creating      a leftover of a create still at work (a file under a
                private .shmring-creating.* name; only where the kernel
                lacks O_TMPFILE)
  creator-died  such a leftover whose creator died (`gc` removes it)
Nothing is attached and no lock is taken. Files with the shmring magic whose
header is invalid are reported on stderr (the first 10 without --verbose) and
under \"errors\" in JSON. Files this user may not read, and files whose name
is not UTF-8, are counted in one line per kind on stderr (--verbose lists
them) and listed under \"skipped\" in JSON.

Options:
  --json          one JSON object: {\"segments\": [...], \"errors\": [...],
                  \"skipped\": [{name, why}]}
  -v, --verbose   list every skipped file and every error on stderr
  -h, --help
";

const HELP_STAT: &str = "\
Usage: shmring stat NAME [--json] [--watch [SECS]] [--count N]

Shows one segment without attaching to it: the validated header, the object's
state (capacity, depth, closed, lock owner, ...), the counters summed over
all peer rows, and every peer row (pid, alive/dead/left, its counters).
A queue bridged to other hosts (`shmring bridge`) also shows each bridge
attached to it: its direction, pid, whether it is alive (a bridge killed
shows as DEAD) and its counters (out: published, acked, deduplicated,
taken-elsewhere, retries; in: received, put, acked, redelivered, retries),
read from the stats record it keeps in /dev/shm/.shmring-bridge.*. A record
that fails validation is reported as invalid, never trusted.

Options:
  --json           one JSON object (one per line with --watch); a queue's
                   bridges under \"bridges\" ([{record, direction, pid,
                   state, alive, started_unix_ms, owner_uid, counters}]) and
                   invalid records under \"bridge_errors\"
  --watch [SECS]   refresh every SECS seconds (default 1, from 0.01 to
                   86400) until Ctrl-C
  --count N        stop after N reports, N >= 1 (implies --watch)
  -h, --help
";

const HELP_RM: &str = "\
Usage: shmring rm [--force] NAME...

Removes segment names from /dev/shm. Attached processes keep working on their
mapping, but a later create under the name makes a new, empty object that
they never see; so a segment with a live peer (or one being created) is
refused (exit code 6), naming the live peers' pids, unless --force. That
is decided again at the removal, under the segment's name lock and peer
row locks: a peer that attaches while rm runs keeps the name too. A file
that is not a shmring segment is refused (exit code 4) unless --force, and so
is one with the magic whose header fails validation (nothing tells whether it
is in use). Every name is tried; the exit code is that of the first failure
(3 missing, 4 not shmring, 5 permission, 6 in use).

A removed queue's dead bridges' stats records (see stat) go with it, also
when the queue itself was gone already (the exit code still says 3).

Options:
  -f, --force   remove segments in use, and files that are not (or cannot be
                read as) segments, too
  -h, --help
";

const HELP_GC: &str = "\
Usage: shmring gc [--dry-run] [--json] [--include-data] [--all-users]
                  [--verbose] [NAME...]

Looks for abandoned segments (among the NAMEs given, or all of /dev/shm):
those where no peer is alive (no peer row's liveness lock is held, nor the
name lock) and at least one peer died without detaching or the unlink policy
wanted the name gone with the last peer; and leftovers of creates whose
creator died. An UnlinkPolicy::Never segment whose peers all detached
cleanly is not abandoned (that was asked for). Each abandoned segment is
listed with its kind,
its depth (messages waiting, or dict entries) and why it counts as
abandoned, then removed, except:
  - one that holds data (or whose depth cannot be read), unless
    --include-data: a restarted service that opens it gets its messages;
  - one owned by another user, unless --all-users (root only; root's gc
    too); it is then removed as its owner, by the same checks.
Before removing one, gc takes the name lock and every peer row's lock,
re-checks the header (full validation), the peers and (without
--include-data) the data, and unlinks while holding them, so a segment
being opened right now, or that got a message since it was listed, is
never removed. Files
that are not proven shmring segments (a file that merely starts with the
magic is an error, listed on stderr) are never removed.

Without gc, the library reclaims on its own, never data: a create of a taken
name removes an abandoned segment under that name if it holds nothing, and
once a minute per user on the host a background sweep (started by some
process's create, off the create path; at most 256 files each time) removes
this user's abandoned segments that hold nothing and that sweeps have seen
without a live peer for a minute, except those created with
UnlinkPolicy::Never. gc is for everything at once, now, and for what the
library keeps.

gc also removes this user's stats records of bridges that died (see stat;
of the NAMEs' queues when given), each decided again under the record's
lock (a live bridge holds it), and records a bridge died building (10 s
old, unlocked). A file under a record's name that is not a valid record is
reported and kept.

Options:
  -n, --dry-run    only list what would be removed (and what is kept)
  --include-data   remove abandoned segments that hold data too
  --all-users      remove other users' abandoned segments too
  --json           one JSON object: {\"dry_run\": .., \"segments\": [{name, kind,
                   depth, holds_data, owner_uid, reason, outcome,
                   kept_because}], \"errors\": [...], \"skipped\": [...]}
                   (outcome: removed, would-remove or kept), and
                   \"bridge_records\": [{record, queue, direction, pid,
                   outcome, kept_because}]
  -v, --verbose    list every skipped file and every error on stderr
  -h, --help
";

const HELP_BENCH: &str = "\
Usage: shmring bench [--quick] [--json] [--no-pin] [--busy N]

Measures, between two processes of this host, round-trip latency (polling and
blocking, 8-byte messages) and one-way stream throughput (8 B and 64 KiB) of
shmring's SPSC ring, MPMC queue, Pipe and typed Queue<Vec<u8>> (its get, and
in the 8 B stream also its get_into a reused buffer: shmring-queue-vec-into)
beside an OS pipe, a unix socket and the raw floors: a spinning ring on a
shared page when polling; when blocking, a futex ping-pong that always sleeps
(futex: the cost of waking a sleeper) and one that spins 5 µs before it sleeps
and wakes only a sleeper (futex-spin: the floor of a spin-then-sleep wait,
shmring's default).

Round trips show p50, p99, p99.9 and max (from a histogram, within 0.4%; max
exact) and the slow run: the most consecutive round trips over 10 µs (and how
many in all), i.e. how long a stall lasted. Each table shows ratios: the row's
headline figure (p50 for latency, lower is better; msgs/s for throughput,
higher is better) divided by the pipe's, the socket's and the floor's, and for
round trips p99.9 divided by the tail floor's (futex-spin when blocking).
Every mechanism of a table runs with the same counts, payload, pinning and
busy loops. A first pass with small counts calibrates; the full run then
repeats each table with up to 10x the counts, as far as a 30-second budget
allows (each table states its counts). Progress goes to stderr, results to
stdout. Build with --release for meaningful figures.

Options:
  --quick     the first pass only (a few seconds, noisier)
  --json      one JSON object with every figure and ratio (round trips also
              carry min, slow_run, slow_count and the percentile curve)
  --no-pin    do not pin the two processes to distinct CPUs
  --busy N    run N busy-loop processes (0 to 64) during each measurement:
              pinned to the peer's CPU when the processes are pinned (a busy
              loop on the receiver's core: --busy 1), unpinned with --no-pin
              (6 processes on a 2-CPU host: --busy 4 --no-pin); they are
              killed when the measurement ends, fails or panics, and by the
              kernel if shmring itself dies
  -h, --help
";

/// A command's failure: an exit code and a one-line message.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: String) -> Failure {
        Failure { code, message }
    }

    /// Prints the message on stderr (escaped: it may quote a name).
    fn print(&self) {
        eprintln!("shmring: {}", escape::text(&self.message));
    }

    fn usage(message: String) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message,
        }
    }

    /// A failure whose message was already printed.
    fn reported(code: u8) -> Failure {
        Failure {
            code,
            message: String::new(),
        }
    }
}

impl From<SegmentError> for Failure {
    fn from(e: SegmentError) -> Failure {
        let code = match &e {
            SegmentError::NotFound { .. } => EXIT_NOT_FOUND,
            SegmentError::NotShmring { .. } => EXIT_NOT_SHMRING,
            SegmentError::PermissionDenied { .. } | SegmentError::ForeignOwner { .. } => {
                EXIT_PERMISSION
            }
            SegmentError::InvalidName { .. } => EXIT_USAGE,
            SegmentError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                EXIT_PERMISSION
            }
            _ => EXIT_ERROR,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn help_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "ls" => HELP_LS,
        "stat" => HELP_STAT,
        "rm" => HELP_RM,
        "gc" => HELP_GC,
        "bench" => HELP_BENCH,
        #[cfg(feature = "bridge")]
        "bridge" => shmring_bridge::cli::HELP,
        "help" => HELP,
        _ => return None,
    })
}

fn run(mut argv: Vec<String>) -> Result<(), Failure> {
    if argv.is_empty() {
        eprint!("{HELP}");
        return Err(Failure::usage("no command given".into()));
    }
    let command = argv.remove(0);
    let (name, help): (&'static str, &'static str) = match command.as_str() {
        "-h" | "--help" => {
            print!("{HELP}");
            return Ok(());
        }
        "help" => {
            let text = match argv.first() {
                None => HELP,
                Some(c) => {
                    help_of(c).ok_or_else(|| Failure::usage(format!("unknown command {c:?}")))?
                }
            };
            print!("{text}");
            return Ok(());
        }
        "ls" => ("ls", HELP_LS),
        "stat" => ("stat", HELP_STAT),
        "rm" => ("rm", HELP_RM),
        "gc" => ("gc", HELP_GC),
        "bench" => ("bench", HELP_BENCH),
        other => {
            return Err(Failure::usage(format!(
                "unknown command {other:?} (see 'shmring --help')"
            )))
        }
    };
    let args = Args::new(name, argv);
    if args.wants_help() {
        print!("{help}");
        return Ok(());
    }
    match name {
        "ls" => commands::ls(args),
        "stat" => commands::stat(args),
        "rm" => rm::rm(args),
        "gc" => gc::gc(args),
        _ => bench::bench(args),
    }
}

fn main() -> ExitCode {
    // A measurement peer (re-executed by `shmring bench`) does its job and
    // exits here.
    shmring_measure::run_peer_if_child();
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|c| c == "bridge") {
        return bridge(raw.collect());
    }
    match utf8_args().and_then(run) {
        Ok(()) => ExitCode::from(EXIT_OK),
        // rm and gc report each failure themselves and return the first.
        Err(f) if f.message.is_empty() => ExitCode::from(f.code),
        Err(f) => {
            f.print();
            ExitCode::from(f.code)
        }
    }
}

/// `shmring bridge ...`: the bridge crate's command line (its own options,
/// help and exit codes).
#[cfg(feature = "bridge")]
fn bridge(argv: Vec<std::ffi::OsString>) -> ExitCode {
    shmring_bridge::cli::main(argv)
}

/// `shmring bridge ...` in a build without the `bridge` feature.
#[cfg(not(feature = "bridge"))]
fn bridge(_: Vec<std::ffi::OsString>) -> ExitCode {
    eprintln!("shmring: this build has no bridge (built without the `bridge` feature)");
    ExitCode::from(EXIT_USAGE)
}

/// The arguments, refused when one is not UTF-8: no segment name can be,
/// and a lossy conversion would act on another name.
fn utf8_args() -> Result<Vec<String>, Failure> {
    std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().map_err(|a| {
                Failure::usage(format!(
                    "argument \"{}\" is not UTF-8 (no segment name can be; \
                     remove such a file with rm(1))",
                    escape::os_name(&a)
                ))
            })
        })
        .collect()
}
