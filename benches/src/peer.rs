//! A second process for the measurements that `shmring_measure` cannot
//! host: iceoryx2 (feature `iceoryx2`, see [`crate::iox`]) and shmring's
//! zero-copy reserve/commit path ([`crate::zero_copy`]).
//!
//! It follows `shmring_measure`'s protocol, so that these figures stand
//! beside its own: the bench binary re-executes itself as the peer (with
//! the job in [`PEER_VAR`]); the parent runs on the first allowed CPU and
//! the peer on the second (when [`Job::pin`] and two CPUs are allowed); the
//! warm-up is a tenth of the count (10 to 10,000 round trips, 10 to 100,000
//! streamed messages) and is not recorded; every message carries its
//! sequence number in its first 8 bytes and the receiver checks it and the
//! length; a round trip takes one clock read per sample (the end of one
//! sample is the start of the next); a stream is timed from its first send
//! to the peer's acknowledgement of its last message.
//!
//! Every binary that uses it calls [`run_peer_if_child`] first in `main()`
//! (after `shmring_measure::run_peer_if_child`).
//!
//! `shmring_measure` keeps its `Link` trait and driver private; with a
//! public hook there (a `Link` trait and `run_parent(job, link)`), this
//! module would shrink to the two transports' setup.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use shmring_measure::Mode;

/// The environment variable that makes a process a peer; its value is the
/// job (see [`Job::encode`]).
pub const PEER_VAR: &str = "SHMRING_BENCHES_PEER";

/// Longest a spin loop or a wait may last, in seconds.
const WATCHDOG_SECS: u64 = 600;

/// Which measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Send, wait for the echo, repeat.
    RoundTrip,
    /// Send one way; the peer acknowledges the last message.
    Stream,
}

/// Which channel carries the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// shmring's SPSC ring through `reserve`/`commit` and `read`/release.
    ZeroCopy,
    /// iceoryx2 publish-subscribe (two services), with its event service
    /// for the blocking mode.
    Iceoryx2,
}

/// How much of a message the zero-copy path writes and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    /// Only the sequence word: the transport's own cost.
    Header,
    /// Every byte written by the sender and read by the receiver.
    All,
}

/// Everything both processes must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Round trip or stream.
    pub kind: Kind,
    /// The channel.
    pub transport: Transport,
    /// Polling or blocking.
    pub mode: Mode,
    /// Bytes per message (at least 8).
    pub payload: usize,
    /// Recorded round trips or streamed messages.
    pub count: u64,
    /// Unrecorded round trips or messages before `count`.
    pub warmup: u64,
    /// Zero-copy only: what the two sides touch.
    pub touch: Touch,
    /// Pin the two processes to two distinct CPUs.
    pub pin: bool,
    /// The CPU the peer pins itself to (set by [`run_parent`]).
    pub cpu: Option<usize>,
    /// A name unique to this run (iceoryx2's services are named after it).
    pub name: String,
}

impl Job {
    /// A job with `shmring_measure`'s warm-up rule.
    pub fn new(
        kind: Kind,
        transport: Transport,
        mode: Mode,
        payload: usize,
        count: u64,
        pin: bool,
    ) -> Job {
        let warmup = match kind {
            Kind::RoundTrip => (count / 10).clamp(10, 10_000),
            Kind::Stream => (count / 10).clamp(10, 100_000),
        };
        Job {
            kind,
            transport,
            mode,
            payload,
            count,
            warmup,
            touch: Touch::Header,
            pin,
            cpu: None,
            name: String::new(),
        }
    }

    /// `key=value` words, space-separated.
    pub fn encode(&self) -> String {
        format!(
            "kind={} transport={} mode={} payload={} count={} warmup={} touch={} pin={} cpu={} name={}",
            match self.kind {
                Kind::RoundTrip => "rt",
                Kind::Stream => "stream",
            },
            match self.transport {
                Transport::ZeroCopy => "zero-copy",
                Transport::Iceoryx2 => "iceoryx2",
            },
            self.mode,
            self.payload,
            self.count,
            self.warmup,
            match self.touch {
                Touch::Header => "header",
                Touch::All => "all",
            },
            u8::from(self.pin),
            self.cpu.map_or("-".into(), |c| c.to_string()),
            if self.name.is_empty() { "-" } else { &self.name },
        )
    }

    /// The inverse of [`encode`](Self::encode).
    ///
    /// # Errors
    ///
    /// A word that is not `key=value` with a known key and a valid value.
    pub fn decode(s: &str) -> Result<Job, String> {
        let bad = |what: &str| format!("peer job: bad {what} in {s:?}");
        let mut job = Job::new(
            Kind::RoundTrip,
            Transport::ZeroCopy,
            Mode::Polling,
            8,
            1,
            false,
        );
        for word in s.split_whitespace() {
            let (key, value) = word.split_once('=').ok_or_else(|| bad("word"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(key));
            match (key, value) {
                ("kind", "rt") => job.kind = Kind::RoundTrip,
                ("kind", "stream") => job.kind = Kind::Stream,
                ("transport", "zero-copy") => job.transport = Transport::ZeroCopy,
                ("transport", "iceoryx2") => job.transport = Transport::Iceoryx2,
                ("mode", v) => job.mode = v.parse().map_err(|_| bad(key))?,
                ("payload", v) => job.payload = num(v)? as usize,
                ("count", v) => job.count = num(v)?,
                ("warmup", v) => job.warmup = num(v)?,
                ("touch", "header") => job.touch = Touch::Header,
                ("touch", "all") => job.touch = Touch::All,
                ("pin", v) => job.pin = num(v)? != 0,
                ("cpu", "-") => job.cpu = None,
                ("cpu", v) => job.cpu = Some(num(v)? as usize),
                ("name", "-") => job.name.clear(),
                ("name", v) => job.name = v.to_string(),
                _ => return Err(bad(key)),
            }
        }
        Ok(job)
    }
}

/// One process's end of a bidirectional channel of `payload`-byte
/// messages. Each side numbers its own outgoing messages from 0.
pub trait Channel {
    /// Called once in each process after the peer has started and before
    /// the first message (outside the timed part): a handshake, if the
    /// transport needs one.
    ///
    /// # Errors
    ///
    /// The other side never became ready.
    fn connect(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Sends message number `seq` (stamped into its first 8 bytes).
    ///
    /// # Errors
    ///
    /// The transport failed, or the other process is gone.
    fn send(&mut self, seq: u64) -> Result<(), String>;

    /// Receives the next message and checks that it is number `seq` and
    /// `payload` bytes long.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), or the check failed.
    fn recv(&mut self, seq: u64) -> Result<(), String>;
}

/// Writes `seq` into the first 8 bytes of `msg`.
#[inline]
pub fn stamp(msg: &mut [u8], seq: u64) {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Checks a received message's length and sequence number.
///
/// # Errors
///
/// A message of another length or number.
#[inline]
pub fn check(msg: &[u8], payload: usize, seq: u64) -> Result<(), String> {
    if msg.len() != payload {
        return Err(format!(
            "message {seq}: {} bytes, expected {payload}",
            msg.len()
        ));
    }
    if msg[..8] != seq.to_le_bytes() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&msg[..8]);
        return Err(format!(
            "message {seq}: sequence {}",
            u64::from_le_bytes(word)
        ));
    }
    Ok(())
}

/// The other process: the peer's pid in the parent, the parent's in the
/// peer (0: none).
static OTHER_PID: AtomicI32 = AtomicI32::new(0);
/// Whether [`OTHER_PID`] is our parent (we are the peer).
static OTHER_IS_PARENT: AtomicI32 = AtomicI32::new(0);

fn set_other(pid: i32, is_parent: bool) {
    // ORDERING: Relaxed — process-local flags, written before the loops
    // start by the thread that runs them.
    OTHER_IS_PARENT.store(i32::from(is_parent), Ordering::Relaxed);
    // ORDERING: Relaxed — as above.
    OTHER_PID.store(pid, Ordering::Relaxed);
}

/// Whether the other process has gone (exited, or our parent changed).
pub fn other_gone() -> bool {
    // ORDERING: Relaxed — process-local, written before the loops start.
    let pid = OTHER_PID.load(Ordering::Relaxed);
    if pid <= 0 {
        return false;
    }
    // ORDERING: Relaxed — as above.
    if OTHER_IS_PARENT.load(Ordering::Relaxed) != 0 {
        // SAFETY: getppid has no preconditions.
        return unsafe { libc::getppid() } != pid;
    }
    // SAFETY: siginfo_t is plain data (zeroed is valid); waitid with
    // WNOWAIT only inspects the child and leaves it to be reaped later.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

/// A spin-wait step with a cheap watchdog: every 2^16 steps it checks the
/// clock and whether the other process is still there.
pub struct Spin {
    steps: u32,
    started: Option<Instant>,
}

impl Default for Spin {
    fn default() -> Self {
        Spin::new()
    }
}

impl Spin {
    /// A fresh spin.
    #[inline]
    pub fn new() -> Spin {
        Spin {
            steps: 0,
            started: None,
        }
    }

    /// One pause.
    ///
    /// # Errors
    ///
    /// The other process is gone, or the watchdog expired.
    #[inline]
    pub fn spin(&mut self) -> Result<(), String> {
        std::hint::spin_loop();
        self.steps = self.steps.wrapping_add(1);
        if self.steps & 0xFFFF == 0 {
            return self.slow();
        }
        Ok(())
    }

    /// The watchdog's checks, also for waits that return on a timeout.
    ///
    /// # Errors
    ///
    /// As [`spin`](Self::spin).
    #[cold]
    pub fn slow(&mut self) -> Result<(), String> {
        if other_gone() {
            return Err("the other process exited".into());
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed().as_secs() > WATCHDOG_SECS {
            return Err(format!("watchdog: no progress for {WATCHDOG_SECS} s"));
        }
        Ok(())
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
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

/// Pins this process's calling thread to `cpus` (best effort).
pub fn pin_to(cpus: &[usize]) {
    // SAFETY: as in allowed_cpus; CPU_SET writes only inside `set`, for
    // indices below CPU_SETSIZE (allowed_cpus never returns more).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// What the parent measured: round-trip samples (ns) or stream seconds.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// One per recorded round trip.
    pub samples: Vec<u64>,
    /// The stream's duration.
    pub seconds: f64,
}

/// Runs `job` from the parent's side: `setup` creates this side's channel
/// and adds what the peer needs to `cmd` (inherited segments, names); then
/// the peer is spawned, this thread pinned, the measurement run, and the
/// peer reaped. The channel is dropped after the peer has exited.
///
/// # Errors
///
/// The setup, the transport or the peer failed.
pub fn run_parent<C: Channel>(
    mut job: Job,
    setup: impl FnOnce(&Job, &mut Command) -> Result<C, String>,
) -> Result<Outcome, String> {
    let cpus = allowed_cpus();
    let pinned = job.pin && cpus.len() >= 2;
    if pinned {
        job.cpu = Some(cpus[1]);
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.stdin(std::process::Stdio::null());
    let mut channel = setup(&job, &mut cmd)?;
    cmd.env(PEER_VAR, job.encode());
    let mut child = cmd.spawn().map_err(|e| format!("spawn the peer: {e}"))?;
    // Closes this process's copies of the peer's descriptors.
    drop(cmd);
    set_other(child.id() as i32, false);
    let connected = channel.connect();
    let previous = pinned.then(|| {
        let previous = allowed_cpus();
        pin_to(&cpus[..1]);
        previous
    });
    let result = connected.and_then(|()| match job.kind {
        Kind::RoundTrip => parent_round_trip(&job, &mut channel),
        Kind::Stream => parent_stream(&job, &mut channel),
    });
    if let Some(previous) = previous {
        pin_to(&previous);
    }
    set_other(0, false);
    let peer = reap(&mut child, result.is_err());
    drop(channel);
    let outcome = result?;
    peer?;
    Ok(outcome)
}

fn reap(child: &mut Child, failed: bool) -> Result<(), String> {
    if failed {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for the peer: {e}"))?;
    if status.success() || failed {
        Ok(())
    } else {
        Err(format!("peer process failed: {status}"))
    }
}

fn parent_round_trip<C: Channel>(job: &Job, channel: &mut C) -> Result<Outcome, String> {
    let mut samples = Vec::with_capacity(job.count as usize);
    let mut t0 = Instant::now();
    for i in 0..job.warmup + job.count {
        channel.send(i)?;
        channel.recv(i)?;
        let t1 = Instant::now();
        if i >= job.warmup {
            samples.push(t1.duration_since(t0).as_nanos() as u64);
        }
        t0 = t1;
    }
    Ok(Outcome {
        samples,
        seconds: 0.0,
    })
}

fn parent_stream<C: Channel>(job: &Job, channel: &mut C) -> Result<Outcome, String> {
    for i in 0..job.warmup {
        channel.send(i)?;
    }
    channel.recv(0)?;
    let t0 = Instant::now();
    for i in job.warmup..job.warmup + job.count {
        channel.send(i)?;
    }
    channel.recv(1)?;
    Ok(Outcome {
        samples: Vec::new(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn child_loop<C: Channel>(job: &Job, channel: &mut C) -> Result<(), String> {
    channel.connect()?;
    match job.kind {
        Kind::RoundTrip => {
            for i in 0..job.warmup + job.count {
                channel.recv(i)?;
                channel.send(i)?;
            }
        }
        Kind::Stream => {
            for i in 0..job.warmup {
                channel.recv(i)?;
            }
            channel.send(0)?;
            for i in job.warmup..job.warmup + job.count {
                channel.recv(i)?;
            }
            channel.send(1)?;
        }
    }
    Ok(())
}

/// Runs the peer's side and exits when this process was started as a peer
/// of this module; returns at once otherwise. Call it first in `main()`.
///
/// The channel is dropped before the process exits (iceoryx2 removes its
/// resources on drop). Exit status 0 after the job, 1 with a message on
/// stderr when it failed.
pub fn run_peer_if_child() {
    let Some(spec) = std::env::var_os(PEER_VAR) else {
        return;
    };
    // SAFETY: getppid has no preconditions.
    set_other(unsafe { libc::getppid() }, true);
    let result = spec
        .to_str()
        .ok_or_else(|| "peer job is not UTF-8".to_string())
        .and_then(Job::decode)
        .and_then(|job| {
            if let Some(cpu) = job.cpu {
                pin_to(&[cpu]);
            }
            run_child(&job)
        });
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shmring-benches peer: {e}");
            std::process::exit(1);
        }
    }
}

fn run_child(job: &Job) -> Result<(), String> {
    match job.transport {
        Transport::ZeroCopy => child_loop(job, &mut crate::zero_copy::ZeroCopy::child(job)?),
        #[cfg(feature = "iceoryx2")]
        Transport::Iceoryx2 => child_loop(job, &mut crate::iox::Iox::child(job)?),
        #[cfg(not(feature = "iceoryx2"))]
        Transport::Iceoryx2 => Err("built without the `iceoryx2` feature".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_through_its_encoding() {
        let mut job = Job::new(
            Kind::Stream,
            Transport::Iceoryx2,
            Mode::Blocking,
            1024,
            777,
            true,
        );
        job.touch = Touch::All;
        job.cpu = Some(3);
        job.name = "xbench-12-3".into();
        let back = Job::decode(&job.encode()).unwrap();
        assert_eq!(back, job);
        assert_eq!(back.warmup, 77);
    }

    #[test]
    fn checks_length_and_sequence() {
        let mut msg = vec![0u8; 16];
        stamp(&mut msg, 5);
        assert!(check(&msg, 16, 5).is_ok());
        assert!(check(&msg, 16, 6).is_err());
        assert!(check(&msg, 17, 5).is_err());
    }
}
