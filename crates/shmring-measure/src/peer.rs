//! The two processes: describing a job, re-executing this binary as the
//! peer, handing it descriptors, pinning, and dispatching to a mechanism
//! (this crate's, or a caller's through [`crate::custom`]).
//!
//! The peer is a typed entry point of shmring's process module
//! ([`PEER`], whose one argument is the [`Job`]). The job is final only
//! once the link has prepared the peer's side: a mechanism adds inherited
//! descriptors and shared objects to the [`Command`] and records the
//! descriptors' numbers in the job. So the parent prepares the command
//! first (the link's `parent` function, or a caller's `open` for a custom
//! link), then hands command and job to
//! [`Process::with_command`](shmring::process::Process::with_command),
//! which adds the entry point and the encoded job to it. The peer receives
//! the job with [`Entry::receive`] rather than through
//! [`run_child`](shmring::process::run_child), because it also serves a
//! caller's links, which it reaches through a closure.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use shmring::codec::{CodecError, Message};
use shmring::process::{Entry, EntryResult, Process};

use crate::custom::{LinkSpec, Peer};
use crate::drive::{self, Link};
use crate::{
    busy, dict, os, raw, shm, Latency, MeasureError, Mechanism, Mode, Params, Tuning, MAX_BUSY,
};

/// The peer's entry point: this executable re-executed with its [`Job`].
/// Started by [`Running::spawn`] and received by [`run_child_if_peer`],
/// which also serves custom links; listed in no `run_child`.
static PEER: Entry<(Job,)> = shmring::entry!(peer);

/// The peer of this crate's own mechanisms (what [`PEER`] names; a custom
/// job fails here: only [`run_child_if_peer`] knows the caller's links).
fn peer((job,): (Job,)) -> EntryResult {
    Ok(run_child(&job, crate::custom::none)?)
}

/// Which measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    RoundTrip,
    Stream,
    Dict,
}

/// Everything both processes must agree on.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub kind: Kind,
    /// Ignored when `custom` names the link.
    pub mechanism: Mechanism,
    /// A caller's link (see [`crate::custom`]): its name, one word.
    pub custom: Option<String>,
    pub mode: Mode,
    pub payload: usize,
    /// Recorded round trips, streamed messages, or dict updates per process.
    pub count: u64,
    /// Unrecorded round trips or messages before `count`.
    pub warmup: u64,
    /// Messages per batch call (0 or 1: none).
    pub batch: usize,
    /// shmring's spin budget in blocking mode (`None`: the default).
    pub spin_ns: Option<u64>,
    pub pin: bool,
    /// Descriptors the peer inherits (same numbers in both processes).
    pub fds: Vec<i32>,
    /// The CPU the peer pins itself to.
    pub cpu: Option<usize>,
    /// Busy-loop processes the parent runs beside the measurement (the
    /// peer is not told: not part of the encoding).
    pub busy: u32,
}

/// What the parent's side measured: a round trip's summary, or a
/// stream's (or dict run's) seconds.
pub(crate) struct Outcome {
    pub latency: Latency,
    pub seconds: f64,
}

/// Largest payload accepted (a 16 MiB message needs 32 MiB rings).
const MAX_PAYLOAD: usize = 16 << 20;

impl Job {
    fn new(kind: Kind, m: Mechanism, p: &Params, t: &Tuning) -> Result<Job, MeasureError> {
        if p.payload == 0 || p.payload > MAX_PAYLOAD {
            return Err(MeasureError::InvalidParams(format!(
                "payload {} must be 1 to {MAX_PAYLOAD} bytes",
                p.payload
            )));
        }
        let (count, warmup) = match kind {
            Kind::RoundTrip => (p.round_trips, (p.round_trips / 10).clamp(10, 10_000)),
            Kind::Stream => (p.messages, (p.messages / 10).clamp(10, 100_000)),
            Kind::Dict => (p.messages, 0),
        };
        if count == 0 {
            return Err(MeasureError::InvalidParams("a count of zero".into()));
        }
        if p.busy > MAX_BUSY {
            return Err(MeasureError::InvalidParams(format!(
                "{} busy loops: at most {MAX_BUSY}",
                p.busy
            )));
        }
        Ok(Job {
            kind,
            mechanism: m,
            custom: None,
            mode: p.mode,
            payload: p.payload,
            count,
            warmup,
            batch: t.batch,
            spin_ns: t.spin_ns,
            pin: p.pin,
            fds: Vec::new(),
            cpu: None,
            busy: p.busy,
        })
    }

    pub(crate) fn round_trip(m: Mechanism, p: &Params, t: &Tuning) -> Result<Job, MeasureError> {
        Job::new(Kind::RoundTrip, m, p, t)
    }

    pub(crate) fn stream(m: Mechanism, p: &Params, t: &Tuning) -> Result<Job, MeasureError> {
        Job::new(Kind::Stream, m, p, t)
    }

    pub(crate) fn dict(p: &Params) -> Result<Job, MeasureError> {
        Job::new(Kind::Dict, Mechanism::ShmringSpsc, p, &Tuning::default())
    }

    /// A round trip or stream over the caller's link named `name`.
    pub(crate) fn custom(kind: Kind, name: &str, p: &Params) -> Result<Job, MeasureError> {
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(MeasureError::InvalidParams(format!(
                "custom link name {name:?}: one word expected"
            )));
        }
        let mut job = Job::new(kind, Mechanism::ShmringSpsc, p, &Tuning::default())?;
        job.custom = Some(name.to_string());
        Ok(job)
    }

    /// What a custom link is told about this job.
    pub(crate) fn spec(&self) -> LinkSpec {
        LinkSpec {
            name: self.custom.clone().unwrap_or_default(),
            payload: self.payload,
            mode: self.mode,
        }
    }

    /// Ring bytes per direction: 1 MiB, or room for two messages.
    pub(crate) fn ring_bytes(&self) -> u64 {
        let need = 2 * (self.payload as u64 + 64);
        need.next_power_of_two().max(1 << 20)
    }

    /// Largest record the shmring rings must take: 64 KiB or the payload.
    pub(crate) fn max_record(&self) -> u64 {
        (self.payload as u64).max(64 << 10)
    }

    /// `key=value` words, space-separated: the job's encoding as the
    /// peer's argument.
    fn to_words(&self) -> String {
        let kind = match self.kind {
            Kind::RoundTrip => "rt",
            Kind::Stream => "stream",
            Kind::Dict => "dict",
        };
        let fds: Vec<String> = self.fds.iter().map(|f| f.to_string()).collect();
        format!(
            "kind={kind} mech={} custom={} mode={} payload={} count={} warmup={} batch={} spin={} pin={} cpu={} fds={}",
            self.mechanism,
            self.custom.as_deref().unwrap_or("-"),
            self.mode,
            self.payload,
            self.count,
            self.warmup,
            self.batch,
            self.spin_ns.map_or("-".into(), |s| s.to_string()),
            u8::from(self.pin),
            self.cpu.map_or("-".into(), |c| c.to_string()),
            if fds.is_empty() { "-".into() } else { fds.join(",") },
        )
    }

    fn from_words(s: &str) -> Result<Job, MeasureError> {
        let bad =
            |what: &str| MeasureError::InvalidParams(format!("peer job: bad {what} in {s:?}"));
        let mut job = Job::new(
            Kind::RoundTrip,
            Mechanism::SpinRing,
            &Params::default(),
            &Tuning::default(),
        )?;
        for word in s.split_whitespace() {
            let (key, value) = word.split_once('=').ok_or_else(|| bad("word"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(key));
            let opt = |v: &str| if v == "-" { Ok(None) } else { num(v).map(Some) };
            match key {
                "kind" => {
                    job.kind = match value {
                        "rt" => Kind::RoundTrip,
                        "stream" => Kind::Stream,
                        "dict" => Kind::Dict,
                        _ => return Err(bad(key)),
                    }
                }
                "mech" => job.mechanism = value.parse()?,
                "custom" if value == "-" => job.custom = None,
                "custom" => job.custom = Some(value.to_string()),
                "mode" => job.mode = value.parse()?,
                "payload" => job.payload = num(value)? as usize,
                "count" => job.count = num(value)?,
                "warmup" => job.warmup = num(value)?,
                "batch" => job.batch = num(value)? as usize,
                "spin" => job.spin_ns = opt(value)?,
                "pin" => job.pin = num(value)? != 0,
                "cpu" => job.cpu = opt(value)?.map(|c| c as usize),
                "fds" if value == "-" => job.fds.clear(),
                "fds" => {
                    job.fds = value
                        .split(',')
                        .map(|f| f.parse().map_err(|_| bad(key)))
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(bad(key)),
            }
        }
        Ok(job)
    }
}

/// The job travels to the peer as its `key=value` words.
impl Message for Job {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(self.to_words().as_bytes());
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Job, CodecError> {
        let words = std::str::from_utf8(bytes).map_err(|e| CodecError {
            reason: format!("peer job is not UTF-8: {e}"),
        })?;
        Job::from_words(words).map_err(|e| CodecError {
            reason: e.to_string(),
        })
    }
}

/// Hands `fd` to the child `cmd` will spawn, under the same number: the
/// descriptor stays close-on-exec here and is cleared only in the child.
/// `cmd` owns it from now on (dropping `cmd` closes it).
pub(crate) fn inherit_fd(cmd: &mut Command, job: &mut Job, fd: OwnedFd) {
    job.fds.push(fd.as_raw_fd());
    let hook = move || {
        // Runs in the forked child before exec: async-signal-safe calls only.
        // SAFETY: fcntl is async-signal-safe; it clears FD_CLOEXEC in the
        // child's table only; `fd` (captured, open while `cmd` lives) is valid.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl (async-signal-safe), allocates
    // nothing and touches no lock.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Takes the `i`-th inherited descriptor (peer side).
pub(crate) fn inherited_fd(job: &Job, i: usize) -> Result<OwnedFd, MeasureError> {
    use std::os::fd::FromRawFd;
    let fd = *job
        .fds
        .get(i)
        .ok_or_else(|| MeasureError::InvalidParams(format!("peer job: no descriptor #{i}")))?;
    // SAFETY: fcntl(F_GETFD) only asks whether `fd` is open.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(MeasureError::InvalidParams(format!(
            "peer job: descriptor {fd} not open"
        )));
    }
    // SAFETY: the parent handed this open descriptor to us (inherit_fd) and
    // nothing else in this process owns it; the job names each fd once and
    // each index is taken once by the mechanism's open function.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The CPUs this process may run on.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (zeroed is the empty set);
    // sched_getaffinity writes at most `size_of` bytes into it; CPU_ISSET
    // only reads it, for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins this process to `cpus` (best effort: a failure leaves it unpinned).
fn pin_to(cpus: &[usize]) {
    // SAFETY: as in allowed_cpus; CPU_SET writes only inside `set` for
    // indices below CPU_SETSIZE, which allowed_cpus guarantees.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Restores the parent's CPU set when a measurement ends.
struct Unpin(Vec<usize>);

impl Drop for Unpin {
    fn drop(&mut self) {
        pin_to(&self.0);
    }
}

/// The command that re-executes this binary as the peer, and the CPU
/// this process pins itself to (setting the peer's in `job`).
fn prepare(job: &mut Job) -> Result<(Command, Option<usize>), MeasureError> {
    let exe = std::env::current_exe().map_err(MeasureError::io("current_exe"))?;
    let mut cmd = Command::new(exe);
    cmd.stdin(std::process::Stdio::null());
    let cpus = allowed_cpus();
    let pinned = job.pin && cpus.len() >= 2;
    if pinned {
        job.cpu = Some(cpus[1]);
    }
    Ok((cmd, pinned.then(|| cpus[0])))
}

/// Runs `job` from the parent's side: sets the mechanism up, spawns the
/// peer, measures, and checks that the peer succeeded.
pub(crate) fn run_parent(mut job: Job) -> Result<Outcome, MeasureError> {
    let (mut cmd, cpu) = prepare(&mut job)?;
    // Dropped last (after the peer was reaped), on every return and unwind.
    let _busy = busy::BusyLoops::start(job.busy, job.cpu)?;
    use Mechanism as M;
    match (job.kind, job.mechanism) {
        (Kind::Dict, _) => {
            let d = dict::Bench::parent(&mut cmd)?;
            let mut peer = Running::spawn(&job, cmd)?;
            peer.pin(cpu);
            let result = d.run(&job);
            peer.finish(result)
        }
        (_, M::ShmringSpsc) => {
            let mut link = shm::Spsc::parent(&job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::ShmringQueue) => {
            let mut link = shm::Mpmc::parent(&job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::ShmringPipe) => {
            let mut link = shm::PipeLink::parent(&job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::Pipe) => {
            let mut link = os::FdLink::parent_pipe(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::UnixSocket) => {
            let mut link = os::FdLink::parent_socket(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::FutexPingPong) => {
            let mut link = raw::FutexLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::SpinRing) => {
            let mut link = raw::SpinLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::SpinRingSeq) => {
            let mut link = raw::SpinSeqLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::ShmringQueueVec | M::ShmringQueueVecInto) => {
            let mut link = shm::QueueVec::parent(&job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
        (_, M::FutexSpin) => {
            let mut link = raw::FutexSpinLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, cpu, &mut link)
        }
    }
}

/// [`run_parent`] for a job over the caller's link, which `open` makes
/// (adding what the peer needs to the command). The link is dropped after
/// the peer has exited.
pub(crate) fn run_parent_custom<L: Link>(
    mut job: Job,
    open: impl FnOnce(&LinkSpec, &mut Command) -> Result<L, MeasureError>,
) -> Result<Outcome, MeasureError> {
    let (mut cmd, cpu) = prepare(&mut job)?;
    let _busy = busy::BusyLoops::start(job.busy, job.cpu)?;
    let mut link = open(&job.spec(), &mut cmd)?;
    with_link(&job, cmd, cpu, &mut link)
}

/// Spawns the peer, lets `link` connect, pins this process to `cpu`,
/// measures, and reaps the peer.
fn with_link<L: Link>(
    job: &Job,
    cmd: Command,
    cpu: Option<usize>,
    link: &mut L,
) -> Result<Outcome, MeasureError> {
    let mut peer = Running::spawn(job, cmd)?;
    let result = link.connect().and_then(|()| {
        peer.pin(cpu);
        drive::parent(job, link)
    });
    peer.finish(result)
}

/// The peer while it runs; this process's CPU set is restored when it is
/// dropped (after the peer was reaped).
struct Running {
    child: Process,
    _unpin: Option<Unpin>,
}

impl Running {
    /// Starts [`PEER`] from `cmd` (the link has prepared it) with `job`;
    /// `cmd`, and with it this process's copies of the peer's
    /// descriptors, is dropped once the peer is started.
    fn spawn(job: &Job, cmd: Command) -> Result<Running, MeasureError> {
        let child = Process::with_command(cmd, &PEER, (job.clone(),))
            .start()
            .map_err(|e| match e {
                shmring::process::StartError::Spawn(e) => MeasureError::io("spawn the peer")(e),
                e => MeasureError::transport("hand the job to the peer", e),
            })?;
        drive::set_other(child.pid() as i32, false);
        Ok(Running {
            child,
            _unpin: None,
        })
    }

    /// Pins this process to `cpu`, when there is one.
    fn pin(&mut self, cpu: Option<usize>) {
        if let Some(c) = cpu {
            let previous = allowed_cpus();
            pin_to(&[c]);
            self._unpin = Some(Unpin(previous));
        }
    }

    /// Reaps the peer (killing it first when `result` is an error).
    fn finish(mut self, result: Result<Outcome, MeasureError>) -> Result<Outcome, MeasureError> {
        drive::set_other(0, false);
        let peer = child_result(&mut self.child, result.is_err());
        let outcome = result?;
        peer?;
        Ok(outcome)
    }
}

fn child_result(child: &mut Process, failed: bool) -> Result<(), MeasureError> {
    if failed {
        let _ = child.kill();
    }
    let status = child
        .join()
        .map_err(|e| MeasureError::io("wait for the peer")(e.into_inner()))?;
    if status.success() || failed {
        Ok(())
    } else {
        Err(MeasureError::Peer(format!("peer process failed: {status}")))
    }
}

/// The peer's side: does nothing unless this process was started as
/// [`PEER`]; `custom` serves the jobs over a caller's link.
pub(crate) fn run_child_if_peer(custom: impl FnOnce(&Peer<'_>) -> Result<(), MeasureError>) {
    busy::run_if_busy_loop();
    let Some(received) = PEER.receive() else {
        return;
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    drive::set_other(parent, true);
    let result = received
        .map_err(|e| MeasureError::InvalidParams(format!("peer job: {e}")))
        .and_then(|(job,)| run_child(&job, custom));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shmring-measure peer: {e}");
            std::process::exit(1);
        }
    }
}

fn run_child(
    job: &Job,
    custom: impl FnOnce(&Peer<'_>) -> Result<(), MeasureError>,
) -> Result<(), MeasureError> {
    if let Some(cpu) = job.cpu {
        pin_to(&[cpu]);
    }
    if job.custom.is_some() {
        return custom(&Peer::new(job));
    }
    use Mechanism as M;
    match (job.kind, job.mechanism) {
        (Kind::Dict, _) => dict::Bench::child(job),
        (_, M::ShmringSpsc) => drive::child(job, &mut shm::Spsc::child(job)?),
        (_, M::ShmringQueue) => drive::child(job, &mut shm::Mpmc::child(job)?),
        (_, M::ShmringPipe) => drive::child(job, &mut shm::PipeLink::child(job)?),
        (_, M::Pipe) => drive::child(job, &mut os::FdLink::child_pipe(job)?),
        (_, M::UnixSocket) => drive::child(job, &mut os::FdLink::child_socket(job)?),
        (_, M::FutexPingPong) => drive::child(job, &mut raw::FutexLink::child(job)?),
        (_, M::SpinRing) => drive::child(job, &mut raw::SpinLink::child(job)?),
        (_, M::SpinRingSeq) => drive::child(job, &mut raw::SpinSeqLink::child(job)?),
        (_, M::ShmringQueueVec | M::ShmringQueueVecInto) => {
            drive::child(job, &mut shm::QueueVec::child(job)?)
        }
        (_, M::FutexSpin) => drive::child(job, &mut raw::FutexSpinLink::child(job)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(job: &Job) -> Vec<u8> {
        let mut out = Vec::new();
        job.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn job_round_trips_through_its_encoding() {
        let p = Params {
            payload: 1024,
            messages: 77,
            round_trips: 55,
            mode: Mode::Blocking,
            pin: false,
            busy: 3,
        };
        let t = Tuning {
            spin_ns: Some(0),
            batch: 16,
        };
        let mut job = Job::stream(Mechanism::UnixSocket, &p, &t).unwrap();
        job.fds = vec![5, 9];
        job.cpu = Some(3);
        let back = Job::decode(&encoded(&job)).unwrap();
        assert_eq!(encoded(&back), encoded(&job));
        assert_eq!(back.custom, None);
        assert_eq!(
            (back.kind, back.count, back.warmup, back.batch),
            (Kind::Stream, 77, 10, 16)
        );
        assert_eq!(
            (back.fds, back.cpu, back.spin_ns),
            (vec![5, 9], Some(3), Some(0))
        );
        // The busy loops are the parent's business: the peer is not told.
        assert_eq!((job.busy, back.busy), (3, 0));
    }

    #[test]
    fn custom_job_carries_its_name() {
        let p = Params {
            payload: 64,
            round_trips: 200,
            ..Params::default()
        };
        let job = Job::custom(Kind::RoundTrip, "zero-copy:all", &p).unwrap();
        let back = Job::decode(&encoded(&job)).unwrap();
        assert_eq!(back.custom.as_deref(), Some("zero-copy:all"));
        assert_eq!(
            (back.kind, back.count, back.warmup),
            (Kind::RoundTrip, 200, 20)
        );
        assert_eq!(back.spec().name, "zero-copy:all");
        assert!(Job::custom(Kind::Stream, "two words", &p).is_err());
        assert!(Job::custom(Kind::Stream, "", &p).is_err());
    }
}
