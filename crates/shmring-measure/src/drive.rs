//! The measurement loops, written once over a [`Link`] so that every
//! mechanism, this crate's and those plugged in through
//! [`custom`](crate::custom), runs exactly the same code around its send
//! and receive.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use crate::peer::{Job, Kind, Outcome};
use crate::{Latency, MeasureError, Recorder};

/// One process's end of a two-way channel carrying messages of exactly
/// the measurement's payload size: what a mechanism implements to be
/// measured (see [`custom`](crate::custom) for plugging one in).
///
/// The driver writes each message's sequence number into its first 8
/// bytes ([`stamp`]) and checks every received message's length and those
/// 8 bytes, nothing else ([`check`]). A link that writes in place may
/// therefore take only the first 8 bytes of `msg`, and one that reads in
/// place may copy out only the first 8 bytes, as long as `buf`'s length
/// becomes the message's.
///
/// A call that waits spins with [`Spin`] (or calls [`Spin::slow`] between
/// timed waits), so that a peer that died or a measurement that stalled
/// ends in an error rather than a hang.
pub trait Link {
    /// Called once in each process after the peer has started and before
    /// the first message, outside the timed part (the parent calls it
    /// before pinning itself): a handshake, if the mechanism needs one.
    /// The default does nothing.
    ///
    /// # Errors
    ///
    /// The other side never became ready.
    fn connect(&mut self) -> Result<(), MeasureError> {
        Ok(())
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// The mechanism failed, the other process is gone, or the watchdog
    /// fired.
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError>;

    /// Receives one message into `buf` (its length becomes the message's).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError>;

    /// Sends all of `msgs`, as few calls as the mechanism allows (only
    /// batched streams call it; the default sends one at a time).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    fn send_many(&mut self, msgs: &[Vec<u8>]) -> Result<(), MeasureError> {
        msgs.iter().try_for_each(|m| self.send(m))
    }

    /// Receives at least one and at most `max` messages, handing each to
    /// `f`; returns how many (only batched streams call it; the default
    /// receives one).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), or what `f` returned.
    fn recv_many(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<(), MeasureError>,
    ) -> Result<usize, MeasureError> {
        let _ = max;
        self.recv(buf)?;
        f(buf)?;
        Ok(1)
    }
}

/// The other process of this measurement: the peer's pid in the parent,
/// the parent's pid in the peer. Polled by [`Spin`] on its slow path.
static OTHER_PID: AtomicI32 = AtomicI32::new(0);
/// Whether [`OTHER_PID`] is our parent (we are the peer).
static OTHER_IS_PARENT: AtomicI32 = AtomicI32::new(0);

/// Longest a spin loop may wait for the other process.
const WATCHDOG_SECS: u64 = 600;

/// Names the other process, so that spin loops notice its death.
pub(crate) fn set_other(pid: i32, is_parent: bool) {
    // ORDERING: Relaxed — process-local flags, read by this thread only.
    OTHER_IS_PARENT.store(i32::from(is_parent), Ordering::Relaxed);
    // ORDERING: Relaxed — as above.
    OTHER_PID.store(pid, Ordering::Relaxed);
}

/// Whether the other process of the running measurement has gone: in the
/// parent, whether the peer exited; in the peer, whether its parent did.
/// `false` outside a measurement. For waits that [`Spin`] does not cover.
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
    // WNOWAIT only inspects the child, leaving it to be reaped later.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() != 0
    }
}

/// A spin-wait step with a cheap watchdog: every 2^16 steps it checks
/// whether the other process is still there ([`other_gone`]) and whether
/// this spin has lasted over 10 minutes.
#[derive(Debug)]
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
    /// A fresh spin (one per wait).
    #[inline]
    pub fn new() -> Self {
        Spin {
            steps: 0,
            started: None,
        }
    }

    /// One pause.
    ///
    /// # Errors
    ///
    /// [`MeasureError::Peer`] when the other process is gone,
    /// [`MeasureError::Timeout`] when the watchdog expired.
    #[inline]
    pub fn spin(&mut self) -> Result<(), MeasureError> {
        std::hint::spin_loop();
        self.steps = self.steps.wrapping_add(1);
        if self.steps & 0xFFFF == 0 {
            return self.slow();
        }
        Ok(())
    }

    /// The watchdog's checks alone, for waits that return on a timeout
    /// rather than spinning.
    ///
    /// # Errors
    ///
    /// As [`spin`](Self::spin).
    #[cold]
    pub fn slow(&mut self) -> Result<(), MeasureError> {
        if other_gone() {
            return Err(MeasureError::Peer("the other process exited".into()));
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if started.elapsed().as_secs() > WATCHDOG_SECS {
            return Err(MeasureError::Timeout);
        }
        Ok(())
    }
}

/// Writes sequence number `i` into the first 8 bytes of `msg`, little
/// endian (when there are 8).
#[inline]
pub fn stamp(msg: &mut [u8], i: u64) {
    if let Some(head) = msg.get_mut(..8) {
        head.copy_from_slice(&i.to_le_bytes());
    }
}

/// Checks one received message: its length is `payload`, and its first 8
/// bytes (when there are 8) hold sequence number `i`.
///
/// # Errors
///
/// [`MeasureError::Peer`] naming the message and what differed.
#[inline]
pub fn check(msg: &[u8], payload: usize, i: u64) -> Result<(), MeasureError> {
    if msg.len() != payload {
        return Err(MeasureError::Peer(format!(
            "message {i}: {} bytes, expected {payload}",
            msg.len()
        )));
    }
    match msg.get(..8) {
        Some(head) if head != i.to_le_bytes() => Err(MeasureError::Peer(format!(
            "message {i}: sequence {}",
            u64::from_le_bytes(head.try_into().unwrap_or_default())
        ))),
        _ => Ok(()),
    }
}

fn message(payload: usize) -> Vec<u8> {
    (0..payload).map(|i| i as u8).collect()
}

/// A stream's two acknowledgements: number 0 ends the warm-up, number 1
/// the measured part.
fn acks(payload: usize) -> [Vec<u8>; 2] {
    [0, 1].map(|i| {
        let mut ack = message(payload);
        stamp(&mut ack, i);
        ack
    })
}

/// The parent's side of `job` over `link`.
pub(crate) fn parent<L: Link>(job: &Job, link: &mut L) -> Result<Outcome, MeasureError> {
    match job.kind {
        Kind::RoundTrip => parent_round_trip(job, link),
        Kind::Stream => parent_stream(job, link),
        Kind::Dict => Err(MeasureError::InvalidParams("dict job over a link".into())),
    }
}

/// The peer's side of `job` over `link`, after [`Link::connect`].
pub(crate) fn child<L: Link>(job: &Job, link: &mut L) -> Result<(), MeasureError> {
    link.connect()?;
    match job.kind {
        Kind::RoundTrip => {
            let mut buf = Vec::with_capacity(job.payload);
            for i in 0..job.warmup + job.count {
                link.recv(&mut buf)?;
                check(&buf, job.payload, i)?;
                link.send(&buf)?;
            }
            Ok(())
        }
        Kind::Stream => {
            let [warm, last] = acks(job.payload);
            receive_range(job, link, 0..job.warmup)?;
            link.send(&warm)?;
            receive_range(job, link, job.warmup..job.warmup + job.count)?;
            link.send(&last)
        }
        Kind::Dict => Err(MeasureError::InvalidParams("dict job over a link".into())),
    }
}

fn parent_round_trip<L: Link>(job: &Job, link: &mut L) -> Result<Outcome, MeasureError> {
    let mut msg = message(job.payload);
    let mut buf = Vec::with_capacity(job.payload);
    // Fixed memory, touched before the first sample: recording costs the
    // same few instructions at the first round trip and the millionth.
    let mut recorder = Recorder::new();
    let mut t0 = Instant::now();
    for i in 0..job.warmup + job.count {
        stamp(&mut msg, i);
        link.send(&msg)?;
        link.recv(&mut buf)?;
        let t1 = Instant::now();
        if i >= job.warmup {
            recorder.record(t1.duration_since(t0).as_nanos() as u64);
        }
        t0 = t1;
        check(&buf, job.payload, i)?;
    }
    Ok(Outcome {
        latency: recorder.latency(),
        seconds: 0.0,
    })
}

fn parent_stream<L: Link>(job: &Job, link: &mut L) -> Result<Outcome, MeasureError> {
    let batch = job.batch.max(1);
    let mut msgs: Vec<Vec<u8>> = (0..batch).map(|_| message(job.payload)).collect();
    let mut ack = Vec::with_capacity(job.payload);
    send_range(link, &mut msgs, 0..job.warmup)?;
    link.recv(&mut ack)?;
    check_ack(&ack, job.payload, 0)?;
    let t0 = Instant::now();
    send_range(link, &mut msgs, job.warmup..job.warmup + job.count)?;
    link.recv(&mut ack)?;
    let seconds = t0.elapsed().as_secs_f64();
    check_ack(&ack, job.payload, 1)?;
    Ok(Outcome {
        latency: Latency::default(),
        seconds,
    })
}

fn check_ack(ack: &[u8], payload: usize, i: u64) -> Result<(), MeasureError> {
    check(ack, payload, i).map_err(|_| {
        MeasureError::Peer(format!(
            "acknowledgement {i} of {} bytes is wrong",
            ack.len()
        ))
    })
}

fn send_range<L: Link>(
    link: &mut L,
    msgs: &mut [Vec<u8>],
    range: std::ops::Range<u64>,
) -> Result<(), MeasureError> {
    if msgs.len() == 1 {
        let msg = &mut msgs[0];
        for i in range {
            stamp(msg, i);
            link.send(msg)?;
        }
        return Ok(());
    }
    let mut i = range.start;
    while i < range.end {
        let n = (range.end - i).min(msgs.len() as u64) as usize;
        for (k, msg) in msgs[..n].iter_mut().enumerate() {
            stamp(msg, i + k as u64);
        }
        link.send_many(&msgs[..n])?;
        i += n as u64;
    }
    Ok(())
}

fn receive_range<L: Link>(
    job: &Job,
    link: &mut L,
    range: std::ops::Range<u64>,
) -> Result<(), MeasureError> {
    let mut buf = Vec::with_capacity(job.payload);
    let mut i = range.start;
    if job.batch <= 1 {
        while i < range.end {
            link.recv(&mut buf)?;
            check(&buf, job.payload, i)?;
            i += 1;
        }
        return Ok(());
    }
    while i < range.end {
        let max = (range.end - i).min(job.batch as u64) as usize;
        let mut next = i;
        link.recv_many(&mut buf, max, &mut |msg| {
            check(msg, job.payload, next)?;
            next += 1;
            Ok(())
        })?;
        i = next;
    }
    Ok(())
}
