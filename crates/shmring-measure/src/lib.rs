//! Cross-process latency and throughput of shmring beside its baselines.
//!
//! Every measurement runs between **two processes**: this one and a peer
//! that is this same executable, re-executed as a typed entry point of
//! [`shmring::process`] whose argument is its job (the channels travel by
//! descriptor inheritance, as in the `pingpong` example). Hence the one rule for users of this crate:
//!
//! * call [`run_peer_if_child`] **first** in `main()` of every binary that
//!   measures: when the process was started as a peer, it does the peer's
//!   work and exits, and otherwise returns at once. (A binary that also
//!   measures mechanisms of its own through [`custom`] calls
//!   [`custom::run_peer_if_child`] instead.)
//!
//! ```no_run
//! use shmring_measure::{round_trip, stream, Mechanism, Mode, Params};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     shmring_measure::run_peer_if_child();
//!     let params = Params { payload: 1024, ..Params::default() };
//!     for m in Mechanism::ALL {
//!         if !m.supports(Mode::Polling) {
//!             continue;
//!         }
//!         let lat = round_trip(m, &params)?;
//!         let thr = stream(m, &params)?;
//!         println!("{m:<14} p50 {} ns  {:.1} M msgs/s", lat.p50_ns, thr.msgs_per_s / 1e6);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # What is measured, and how
//!
//! * **Same conditions for every mechanism**: the same payload bytes, counts,
//!   warm-up, pinning (parent on the first allowed CPU, peer on the second,
//!   when [`Params::pin`] and at least two CPUs are allowed) and the same
//!   buffer budget: 1 MiB per direction (shmring rings, the raw spin ring's
//!   data area, `F_SETPIPE_SZ` for the OS pipe, `SO_SNDBUF`/`SO_RCVBUF` for
//!   the socket, both best effort), more when one message needs it.
//! * **Round trip** ([`round_trip`]): the parent sends `payload` bytes, the
//!   peer receives them and sends them back; one clock read per sample (the
//!   end of one sample is the start of the next). A warm-up of a tenth of
//!   the count (10 to 10,000 round trips) is not recorded.
//! * **Tails, not only means** ([`Latency`]): each recorded round trip goes
//!   into a [`Histogram`] (log-linear, fixed memory touched before the
//!   first sample, a few instructions per record): p50, p99 and p99.9
//!   within [`RELATIVE_PRECISION`] (1/256, about 0.4%) of the exact
//!   nearest-rank value, min and max exact, and the percentile curve at
//!   [`CURVE_LEVELS`]. In the order they came, the round trips slower than
//!   [`SLOW_NS`] (10 µs) are counted ([`Latency::slow_count`]) and so is
//!   their longest run in a row ([`Latency::slow_run`]): how long a stall
//!   lasted, which no percentile shows.
//! * **Stream** ([`stream`]): the parent sends `messages` messages one way;
//!   the peer checks each one's length and sequence number (its first 8
//!   bytes) and acknowledges the last with one message back. The time runs
//!   from the first send to that acknowledgement, after a warm-up stream of a
//!   tenth of the count (10 to 100,000) that was acknowledged the same way.
//! * **Polling** ([`Mode::Polling`]): non-blocking tries in a spin loop (for
//!   the OS pipe and socket: `O_NONBLOCK` reads and writes, one system call
//!   per try; for the shmring Pipe `try_send_bytes` and
//!   `try_recv_bytes_into`, except that a message longer than the ring
//!   takes whole goes out with the streaming `send_bytes` under a 10 s spin
//!   budget, so it never sleeps).
//! * **Blocking** ([`Mode::Blocking`]): the blocking calls. shmring's spin
//!   for 5 µs before they sleep (the default [`WaitPolicy`]); [`Tuning`]
//!   changes that, e.g. `spin_ns: Some(0)` so the receiver always sleeps.
//!   Two floors: the raw futex ping-pong ([`Mechanism::FutexPingPong`])
//!   never spins and always wakes, the floor for a hand-off to a sleeping
//!   process; [`Mechanism::FutexSpin`] spins 5 µs before it sleeps and
//!   wakes only a sleeper, the floor for a spin-then-sleep wait such as
//!   shmring's default, its tails included.
//! * **Busy loops** ([`Params::busy`]): that many processes spinning
//!   without a system call run during each measurement (started before
//!   the peer, killed after it was reaped): pinned to the peer's CPU when
//!   the measurement is pinned (a busy loop on the receiver's core), left
//!   to the scheduler otherwise (`busy: 4, pin: false` on a 2-CPU host:
//!   six processes on two cores). They are killed on every way out of the
//!   measurement, an error or a panic's unwind included, and by the kernel
//!   (`PR_SET_PDEATHSIG`) if the measuring process dies. They are this
//!   executable re-executed, which [`run_peer_if_child`] serves too.
//!
//! * **Other mechanisms** plug into the same driver, hence the same
//!   protocol, through [`custom`]: a [`custom::Link`] and a name.
//!
//! [`WaitPolicy`]: shmring::core::wait::WaitPolicy

mod busy;
pub mod custom;
mod dict;
mod drive;
mod error;
mod histogram;
mod os;
mod peer;
mod raw;
mod shm;
mod stats;

use std::fmt;
use std::str::FromStr;

pub use error::MeasureError;
pub use histogram::{Histogram, Recorder, SlowRuns, RELATIVE_PRECISION, SLOW_NS};
pub use stats::{latency_from_samples, percentile};

/// A way to move bytes between two processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `shmring::spsc`: one SPSC byte ring per direction.
    ShmringSpsc,
    /// `shmring::mpmc`: one MPMC queue (16 producer rings, the facade's
    /// default) per direction, through its byte API (no codec).
    ShmringQueue,
    /// `shmring::pipe`: a duplex `Pipe`'s two `Connection`s.
    ShmringPipe,
    /// Two OS pipes (`pipe2`), one per direction.
    Pipe,
    /// One unix stream socket pair.
    UnixSocket,
    /// A raw futex ping-pong on a shared page: a sequence word and a payload
    /// area per direction; the receiver always sleeps in `FUTEX_WAIT`, the
    /// sender always calls `FUTEX_WAKE`. Blocking round trips only: the
    /// floor for a hand-off to a sleeping process.
    FutexPingPong,
    /// A raw spinning SPSC ring on a shared page: cache-line-padded head
    /// and tail, fixed slots of the payload size, plain `memcpy`, no checks.
    /// Polling only.
    SpinRing,
    /// The spin ring with a sequence word in front of each slot, which the
    /// consumer polls instead of the producer's tail: one cache line per
    /// message instead of two. Polling only; the floor of a consumer that
    /// polls the record's own line.
    SpinRingSeq,
    /// `shmring::queue::Queue<Vec<u8>>`, one per direction, through its
    /// `Sender` and `Receiver` handles: the typed public API, codec and
    /// allocation included (each send hands over a fresh `Vec`, each
    /// receive gets one). Polling: `try_put`/`try_get` in a spin loop;
    /// blocking: `put`/`get` with the default wait policy
    /// ([`Tuning::spin_ns`] does not apply).
    ShmringQueueVec,
    /// [`ShmringQueueVec`](Self::ShmringQueueVec) with the receiver
    /// reusing one buffer (`Receiver::try_get_into`/`get_into_timeout`,
    /// no allocation per message); the sender still hands over a fresh
    /// `Vec` per message, as a put of `Vec<u8>` must.
    ShmringQueueVecInto,
    /// The raw futex ping-pong of [`FutexPingPong`](Self::FutexPingPong)
    /// with what a spin-then-sleep channel does: the receiver spins on the
    /// sequence word for 5 µs (a pause hint per check, the clock read on
    /// every fourth; [`Tuning::spin_ns`] changes the budget) before
    /// `FUTEX_WAIT`, and announces its sleep in the word's low bit, so the
    /// sender calls `FUTEX_WAKE` only when someone sleeps (one atomic swap
    /// per message tells it). Blocking round trips only: the floor for
    /// shmring's blocking calls under their default policy, tails included.
    FutexSpin,
}

impl Mechanism {
    /// Every mechanism, shmring's first.
    pub const ALL: [Mechanism; 11] = [
        Mechanism::ShmringSpsc,
        Mechanism::ShmringQueue,
        Mechanism::ShmringPipe,
        Mechanism::ShmringQueueVec,
        Mechanism::ShmringQueueVecInto,
        Mechanism::Pipe,
        Mechanism::UnixSocket,
        Mechanism::FutexPingPong,
        Mechanism::FutexSpin,
        Mechanism::SpinRing,
        Mechanism::SpinRingSeq,
    ];

    /// The lowercase name used by `Display` and `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ShmringSpsc => "shmring-spsc",
            Mechanism::ShmringQueue => "shmring-queue",
            Mechanism::ShmringPipe => "shmring-pipe",
            Mechanism::Pipe => "pipe",
            Mechanism::UnixSocket => "unix-socket",
            Mechanism::FutexPingPong => "futex",
            Mechanism::SpinRing => "spin-ring",
            Mechanism::SpinRingSeq => "spin-ring-seq",
            Mechanism::ShmringQueueVec => "shmring-queue-vec",
            Mechanism::ShmringQueueVecInto => "shmring-queue-vec-into",
            Mechanism::FutexSpin => "futex-spin",
        }
    }

    /// Whether this is one of shmring's own mechanisms (not a baseline).
    pub fn is_shmring(self) -> bool {
        matches!(
            self,
            Mechanism::ShmringSpsc
                | Mechanism::ShmringQueue
                | Mechanism::ShmringPipe
                | Mechanism::ShmringQueueVec
                | Mechanism::ShmringQueueVecInto
        )
    }

    /// Whether [`round_trip`] works in `mode` (the spin ring does not
    /// block; the futex ping-pongs do not poll).
    pub fn supports(self, mode: Mode) -> bool {
        !matches!(
            (self, mode),
            (Mechanism::SpinRing | Mechanism::SpinRingSeq, Mode::Blocking)
                | (
                    Mechanism::FutexPingPong | Mechanism::FutexSpin,
                    Mode::Polling
                )
        )
    }

    /// Whether [`stream`] works in `mode`: as [`supports`](Self::supports),
    /// and never for the futex ping-pongs (a one-slot mailbox has no
    /// stream).
    pub fn supports_stream(self, mode: Mode) -> bool {
        self.supports(mode) && !matches!(self, Mechanism::FutexPingPong | Mechanism::FutexSpin)
    }

    /// Whether [`Tuning::spin_ns`] applies (blocking mode): shmring's SPSC
    /// ring, MPMC queue and Pipe, and the spinning futex floor.
    pub fn takes_spin(self) -> bool {
        matches!(
            self,
            Mechanism::ShmringSpsc
                | Mechanism::ShmringQueue
                | Mechanism::ShmringPipe
                | Mechanism::FutexSpin
        )
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = MeasureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| MeasureError::InvalidParams(format!("unknown mechanism {s:?}")))
    }
}

/// How the two processes wait for each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Non-blocking tries in a spin loop.
    Polling,
    /// The blocking calls.
    Blocking,
}

impl Mode {
    /// Both modes.
    pub const ALL: [Mode; 2] = [Mode::Polling, Mode::Blocking];

    /// The lowercase name used by `Display` and `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Polling => "polling",
            Mode::Blocking => "blocking",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Mode {
    type Err = MeasureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| MeasureError::InvalidParams(format!("unknown mode {s:?}")))
    }
}

/// What to measure; the same for every mechanism of one comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Bytes per message (at least 1; 8 or more carries a sequence number
    /// the peer checks).
    pub payload: usize,
    /// Messages of a [`stream`], after the warm-up.
    pub messages: u64,
    /// Recorded round trips of a [`round_trip`], after the warm-up.
    pub round_trips: u64,
    /// Polling or blocking.
    pub mode: Mode,
    /// Pin the two processes to two distinct CPUs (when two are allowed).
    pub pin: bool,
    /// Busy-loop processes competing for the CPU while each measurement
    /// runs (0: none): pinned to the peer's CPU when the two processes are
    /// pinned, unpinned otherwise. See the [crate docs](crate).
    pub busy: u32,
}

impl Default for Params {
    /// 8-byte messages, 1,000,000 streamed, 100,000 round trips, polling,
    /// pinned, no busy loops.
    fn default() -> Self {
        Params {
            payload: 8,
            messages: 1_000_000,
            round_trips: 100_000,
            mode: Mode::Polling,
            pin: true,
            busy: 0,
        }
    }
}

/// Most busy-loop processes [`Params::busy`] may ask for.
pub const MAX_BUSY: u32 = 64;

/// Knobs beyond [`Params`], for the figures of one mechanism at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Blocking mode, the mechanisms that [take a spin](Mechanism::takes_spin)
    /// only: the spin budget before sleeping, in ns (`None`: the default
    /// [`WaitPolicy`](shmring::core::wait::WaitPolicy), 5 µs, and the
    /// futex-spin floor's 5 µs; `Some(0)`: sleep at once, like the raw
    /// futex ping-pong).
    pub spin_ns: Option<u64>,
    /// [`stream`] through `shmring-spsc` only: push with `try_push_many` and
    /// pop with `try_pop_many`, up to this many messages per call (0 or 1:
    /// one at a time). Polling mode.
    pub batch: usize,
}

/// The levels of [`Latency::curve`]: from the median to the 99.999th
/// percentile (with fewer than 100,000 samples the last ones are the
/// slowest sample).
pub const CURVE_LEVELS: [f64; 11] = [
    0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99995, 0.99999,
];

/// Round-trip percentiles and tails, in nanoseconds.
///
/// Percentiles come from a [`Histogram`]: within [`RELATIVE_PRECISION`]
/// (0.4%) of the exact nearest-rank value; `min_ns` and `max_ns` are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Slowest sample.
    pub max_ns: u64,
    /// Recorded samples.
    pub samples: u64,
    /// Fastest sample.
    pub min_ns: u64,
    /// The longest run of consecutive round trips slower than [`SLOW_NS`]
    /// (10 µs): how long a stall lasted, in round trips.
    pub slow_run: u64,
    /// Round trips slower than [`SLOW_NS`].
    pub slow_count: u64,
    /// The percentile curve: the quantile at each of [`CURVE_LEVELS`].
    pub curve: [u64; CURVE_LEVELS.len()],
}

/// One-way rate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
    /// Seconds the measured part took.
    pub seconds: f64,
}

/// Round trips between two processes: see the [crate docs](crate).
///
/// # Errors
///
/// [`MeasureError::NotApplicable`] when `m` does not work in `p.mode`
/// ([`Mechanism::supports`]); invalid parameters (a payload of 0 or over
/// 16 MiB, a count of 0, more than [`MAX_BUSY`] busy loops); the busy
/// loops not starting; the mechanism or the peer failing (creation, a
/// corrupted message, the peer dying, a 10-minute watchdog).
pub fn round_trip(m: Mechanism, p: &Params) -> Result<Latency, MeasureError> {
    round_trip_with(m, p, &Tuning::default())
}

/// [`round_trip`] with [`Tuning`].
///
/// # Errors
///
/// As [`round_trip`]; a `spin_ns` for a mechanism that does not
/// [take one](Mechanism::takes_spin) is [`MeasureError::NotApplicable`].
pub fn round_trip_with(m: Mechanism, p: &Params, t: &Tuning) -> Result<Latency, MeasureError> {
    if !m.supports(p.mode) {
        return Err(MeasureError::not_applicable(m, p.mode, "round trip"));
    }
    if t.spin_ns.is_some() && !m.takes_spin() {
        return Err(MeasureError::not_applicable(m, p.mode, "spin budget"));
    }
    let outcome = peer::run_parent(peer::Job::round_trip(m, p, t)?)?;
    Ok(outcome.latency)
}

/// A one-way stream between two processes: see the [crate docs](crate).
///
/// # Errors
///
/// As [`round_trip`] ([`Mechanism::supports_stream`]).
pub fn stream(m: Mechanism, p: &Params) -> Result<Throughput, MeasureError> {
    stream_with(m, p, &Tuning::default())
}

/// [`stream`] with [`Tuning`].
///
/// # Errors
///
/// As [`round_trip`]; a `batch` above 1 for anything but `shmring-spsc` in
/// polling mode, or a `spin_ns` for a mechanism that does not
/// [take one](Mechanism::takes_spin), is [`MeasureError::NotApplicable`].
pub fn stream_with(m: Mechanism, p: &Params, t: &Tuning) -> Result<Throughput, MeasureError> {
    if !m.supports_stream(p.mode) {
        return Err(MeasureError::not_applicable(m, p.mode, "stream"));
    }
    if t.batch > 1 && (m != Mechanism::ShmringSpsc || p.mode != Mode::Polling) {
        return Err(MeasureError::not_applicable(m, p.mode, "batched stream"));
    }
    if t.spin_ns.is_some() && !m.takes_spin() {
        return Err(MeasureError::not_applicable(m, p.mode, "spin budget"));
    }
    let outcome = peer::run_parent(peer::Job::stream(m, p, t)?)?;
    Ok(rate(p.messages, p.payload, outcome.seconds))
}

/// `Dict::update_with` incrementing one `u64` key from two processes,
/// `p.messages` times each (pinned as `p.pin` says; `payload` and `mode`
/// are ignored). Returns the combined operations per second in
/// [`Throughput::msgs_per_s`] (`bytes_per_s` counts 8 bytes per operation).
///
/// # Errors
///
/// As [`round_trip`]; a final count other than `2 * p.messages` is
/// [`MeasureError::Peer`].
pub fn dict_update(p: &Params) -> Result<Throughput, MeasureError> {
    let outcome = peer::run_parent(peer::Job::dict(p)?)?;
    Ok(rate(2 * p.messages, 8, outcome.seconds))
}

fn rate(messages: u64, payload: usize, seconds: f64) -> Throughput {
    let seconds = seconds.max(1e-9);
    Throughput {
        msgs_per_s: messages as f64 / seconds,
        bytes_per_s: messages as f64 * payload as f64 / seconds,
        seconds,
    }
}

/// Runs the peer side and exits when this process was started as a
/// measurement peer (or spins until killed when it was started as one of
/// the [busy loops](Params::busy)); returns at once otherwise. Call it
/// first in `main()`.
///
/// The peer exits with status 0 after its job, 1 (with a message on
/// stderr) when the job failed.
pub fn run_peer_if_child() {
    peer::run_child_if_peer(custom::none);
}
