//! The two processes: describing a job, re-executing this binary as the
//! peer, handing it descriptors, pinning, and dispatching to a mechanism.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use crate::drive::{self, Link};
use crate::{dict, os, raw, shm, MeasureError, Mechanism, Mode, Params, Tuning};

/// The environment variable that makes a process a peer; its value is the
/// job (see [`Job::encode`]).
const PEER_VAR: &str = "SHMRING_MEASURE_PEER";

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
    pub mechanism: Mechanism,
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
}

/// What the parent's side measured.
pub(crate) struct Outcome {
    pub samples: Vec<u64>,
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
        Ok(Job {
            kind,
            mechanism: m,
            mode: p.mode,
            payload: p.payload,
            count,
            warmup,
            batch: t.batch,
            spin_ns: t.spin_ns,
            pin: p.pin,
            fds: Vec::new(),
            cpu: None,
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

    /// Ring bytes per direction: 1 MiB, or room for two messages.
    pub(crate) fn ring_bytes(&self) -> u64 {
        let need = 2 * (self.payload as u64 + 64);
        need.next_power_of_two().max(1 << 20)
    }

    /// Largest record the shmring rings must take: 64 KiB or the payload.
    pub(crate) fn max_record(&self) -> u64 {
        (self.payload as u64).max(64 << 10)
    }

    /// `key=value` words, space-separated.
    fn encode(&self) -> String {
        let kind = match self.kind {
            Kind::RoundTrip => "rt",
            Kind::Stream => "stream",
            Kind::Dict => "dict",
        };
        let fds: Vec<String> = self.fds.iter().map(|f| f.to_string()).collect();
        format!(
            "kind={kind} mech={} mode={} payload={} count={} warmup={} batch={} spin={} pin={} cpu={} fds={}",
            self.mechanism,
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

    fn decode(s: &str) -> Result<Job, MeasureError> {
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
fn allowed_cpus() -> Vec<usize> {
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
struct Unpin(Option<Vec<usize>>);

impl Drop for Unpin {
    fn drop(&mut self) {
        if let Some(cpus) = &self.0 {
            pin_to(cpus);
        }
    }
}

/// Runs `job` from the parent's side: sets the mechanism up, spawns the
/// peer, measures, and checks that the peer succeeded.
pub(crate) fn run_parent(mut job: Job) -> Result<Outcome, MeasureError> {
    let exe = std::env::current_exe().map_err(MeasureError::io("current_exe"))?;
    let mut cmd = Command::new(exe);
    cmd.stdin(std::process::Stdio::null());
    let cpus = allowed_cpus();
    let pinned = job.pin && cpus.len() >= 2;
    if pinned {
        job.cpu = Some(cpus[1]);
    }
    use Mechanism as M;
    match (job.kind, job.mechanism) {
        (Kind::Dict, _) => {
            let d = dict::Bench::parent(&mut cmd)?;
            with_peer(&job, cmd, pinned.then(|| cpus[0]), |job| d.run(job))
        }
        (_, M::ShmringSpsc) => {
            let mut link = shm::Spsc::parent(&job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::ShmringQueue) => {
            let mut link = shm::Mpmc::parent(&job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::ShmringPipe) => {
            let mut link = shm::PipeLink::parent(&job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::Pipe) => {
            let mut link = os::FdLink::parent_pipe(&mut job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::UnixSocket) => {
            let mut link = os::FdLink::parent_socket(&mut job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::FutexPingPong) => {
            let mut link = raw::FutexLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
        (_, M::SpinRing) => {
            let mut link = raw::SpinLink::parent(&mut job, &mut cmd)?;
            with_link(&job, cmd, pinned.then(|| cpus[0]), &mut link)
        }
    }
}

fn with_link<L: Link>(
    job: &Job,
    cmd: Command,
    cpu: Option<usize>,
    link: &mut L,
) -> Result<Outcome, MeasureError> {
    with_peer(job, cmd, cpu, |job| drive::parent(job, link))
}

/// Spawns the peer, runs `f` pinned to `cpu`, and reaps the peer.
fn with_peer(
    job: &Job,
    mut cmd: Command,
    cpu: Option<usize>,
    f: impl FnOnce(&Job) -> Result<Outcome, MeasureError>,
) -> Result<Outcome, MeasureError> {
    cmd.env(PEER_VAR, job.encode());
    let mut child = cmd.spawn().map_err(MeasureError::io("spawn the peer"))?;
    // Closes this process's copies of the peer's descriptors.
    drop(cmd);
    drive::set_other(child.id() as i32, false);
    let _unpin = cpu.map(|c| {
        let previous = allowed_cpus();
        pin_to(&[c]);
        Unpin(Some(previous))
    });
    let result = f(job);
    drive::set_other(0, false);
    finish(child_result(&mut child, result.is_err()), result)
}

fn child_result(child: &mut Child, failed: bool) -> Result<(), MeasureError> {
    if failed {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(MeasureError::io("wait for the peer"))?;
    if status.success() || failed {
        Ok(())
    } else {
        Err(MeasureError::Peer(format!("peer process failed: {status}")))
    }
}

fn finish(
    peer: Result<(), MeasureError>,
    result: Result<Outcome, MeasureError>,
) -> Result<Outcome, MeasureError> {
    let outcome = result?;
    peer?;
    Ok(outcome)
}

/// The peer's entry point: does nothing unless [`PEER_VAR`] is set.
pub(crate) fn run_child_if_peer() {
    let Some(spec) = std::env::var_os(PEER_VAR) else {
        return;
    };
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    drive::set_other(parent, true);
    let result = spec
        .to_str()
        .ok_or_else(|| MeasureError::InvalidParams("peer job is not UTF-8".into()))
        .and_then(Job::decode)
        .and_then(|job| run_child(&job));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shmring-measure peer: {e}");
            std::process::exit(1);
        }
    }
}

fn run_child(job: &Job) -> Result<(), MeasureError> {
    if let Some(cpu) = job.cpu {
        pin_to(&[cpu]);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_through_its_encoding() {
        let p = Params {
            payload: 1024,
            messages: 77,
            round_trips: 55,
            mode: Mode::Blocking,
            pin: false,
        };
        let t = Tuning {
            spin_ns: Some(0),
            batch: 16,
        };
        let mut job = Job::stream(Mechanism::UnixSocket, &p, &t).unwrap();
        job.fds = vec![5, 9];
        job.cpu = Some(3);
        let back = Job::decode(&job.encode()).unwrap();
        assert_eq!(back.encode(), job.encode());
        assert_eq!(
            (back.kind, back.count, back.warmup, back.batch),
            (Kind::Stream, 77, 10, 16)
        );
        assert_eq!(
            (back.fds, back.cpu, back.spin_ns),
            (vec![5, 9], Some(3), Some(0))
        );
    }
}
