//! Many queues (issue 4, target 8): create time and open time per queue,
//! and memory per queue, for `n` named `Queue<Vec<u8>>`s of one shape.
//!
//! * **Create**: `Queue::create` of each name in turn, one clock read on
//!   each side of each call (the default `CreateOptions`).
//! * **Open**: another process (this binary, re-executed as the entry point
//!   [`OPENER`]) opens every name in turn, timed the same way, while the
//!   creator keeps them all open; it reports its samples on stdout.
//! * **Drop**: the creator drops them all (after the opener exited), timed
//!   as a whole; the default unlink policy removes each name.
//! * **Memory**: the file size of one segment in `/dev/shm` and the bytes
//!   allocated to it (`st_blocks`, what `posix_fallocate` reserved), the
//!   growth of `RssShmem` (`/proc/self/status`: shared pages this process
//!   has touched) in the creator and in the opener, and the growth of the
//!   machine's `Shmem` (`/proc/meminfo`, noisy: other processes count too),
//!   each divided by `n`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shmring::process::{Entry, EntryResult, Process};
use shmring::queue::Queue;
use shmring_measure::percentile;

/// The opener process: opens the queues `NAME_PREFIX-0` to
/// `NAME_PREFIX-(COUNT - 1)`. A binary that calls [`measure`] lists it in
/// its [`run_child`](shmring::process::run_child), first in `main()`.
pub static OPENER: Entry<(String, u64)> = shmring::entry!(opener);

/// Figures for `queues` queues of one shape.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueFigures {
    /// The shape, in words.
    pub shape: String,
    /// The builder's `ring_bytes` (per producer ring).
    pub ring_bytes: u64,
    /// The builder's `producers`.
    pub producers: u64,
    /// The builder's `max_message`.
    pub max_message: u64,
    /// How many were created and opened.
    pub queues: usize,
    /// Mean create time.
    pub create_mean_ns: f64,
    /// Median create time.
    pub create_p50_ns: u64,
    /// 99th percentile create time.
    pub create_p99_ns: u64,
    /// Mean open time (in the other process).
    pub open_mean_ns: f64,
    /// Median open time.
    pub open_p50_ns: u64,
    /// 99th percentile open time.
    pub open_p99_ns: u64,
    /// Mean drop time in the creator (the unlink included).
    pub drop_mean_ns: f64,
    /// Size of one segment's file.
    pub file_bytes: u64,
    /// Bytes allocated to one segment's file.
    pub allocated_bytes: u64,
    /// Creator's `RssShmem` growth per queue.
    pub creator_rss_bytes: f64,
    /// Opener's `RssShmem` growth per queue.
    pub opener_rss_bytes: f64,
    /// The machine's `Shmem` growth per queue (noisy).
    pub system_shmem_bytes: f64,
}

/// A queue's shape: what the queue builder's setters of the same names
/// take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueShape {
    /// Producer rings.
    pub producers: u64,
    /// Bytes per ring.
    pub ring_bytes: u64,
    /// Largest message.
    pub max_message: u64,
}

impl QueueShape {
    /// The facade's defaults (`Queue::builder()` unchanged).
    pub const DEFAULT: QueueShape = QueueShape {
        producers: 16,
        ring_bytes: 256 << 10,
        max_message: 64 << 10,
    };
}

/// The facade's default shape.
pub fn default_shape() -> (String, QueueShape) {
    let o = QueueShape::DEFAULT;
    let shape = format!(
        "default: {} rings × {} KiB, messages ≤ {} KiB",
        o.producers,
        o.ring_bytes >> 10,
        o.max_message >> 10
    );
    (shape, o)
}

/// A small shape: the default producers, 4 KiB rings, 1 KiB messages.
pub fn small_shape() -> (String, QueueShape) {
    let o = QueueShape {
        ring_bytes: 4 << 10,
        max_message: 1 << 10,
        ..QueueShape::DEFAULT
    };
    (
        format!("small: {} rings × 4 KiB, messages ≤ 1 KiB", o.producers),
        o,
    )
}

/// A `kB` field of a `/proc` file, in bytes (0 when missing).
fn proc_kb(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn rss_shmem() -> u64 {
    proc_kb("/proc/self/status", "RssShmem")
}

fn system_shmem() -> u64 {
    proc_kb("/proc/meminfo", "Shmem")
}

/// Bytes still available to `/dev/shm` and to the machine, the smaller.
pub fn shm_room() -> u64 {
    let mem = proc_kb("/proc/meminfo", "MemAvailable");
    // SAFETY: statvfs writes only into `st`, a plain-data struct (zeroed is
    // valid); the path is a NUL-terminated literal.
    let disk = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c"/dev/shm".as_ptr(), &mut st) == 0 {
            st.f_bavail as u64 * st.f_frsize as u64
        } else {
            0
        }
    };
    mem.min(disk)
}

fn name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

/// Creates `n` queues of shape `options`, has another process open them
/// all, and drops them.
///
/// # Errors
///
/// A create failed, or the opener did.
pub fn measure(shape: &str, options: &QueueShape, n: usize) -> Result<QueueFigures, String> {
    let prefix = format!(
        "shmring-growth-{}-{}",
        std::process::id(),
        options.ring_bytes
    );
    let builder = Queue::<Vec<u8>>::builder()
        .producers(options.producers)
        .ring_bytes(options.ring_bytes)
        .max_message(options.max_message);
    let (rss0, sys0) = (rss_shmem(), system_shmem());
    let mut queues = Vec::with_capacity(n);
    let mut create_ns = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let q = builder.create(&name(&prefix, i));
        create_ns.push(t0.elapsed().as_nanos() as u64);
        queues.push(q.map_err(|e| format!("create queue {i} of {n}: {e}"))?);
    }
    let (rss1, sys1) = (rss_shmem(), system_shmem());
    let meta = std::fs::metadata(format!("/dev/shm/{}", name(&prefix, 0)))
        .map_err(|e| format!("stat /dev/shm/{}: {e}", name(&prefix, 0)))?;
    let (open_ns, opener_rss) = run_opener(&prefix, n)?;
    let t0 = Instant::now();
    drop(queues);
    let drop_ns = t0.elapsed().as_nanos() as f64;
    create_ns.sort_unstable();
    let mut open_sorted = open_ns.clone();
    open_sorted.sort_unstable();
    let per = |bytes: u64| bytes as f64 / n.max(1) as f64;
    Ok(QueueFigures {
        shape: shape.to_string(),
        ring_bytes: options.ring_bytes,
        producers: options.producers,
        max_message: options.max_message,
        queues: n,
        create_mean_ns: mean(&create_ns),
        create_p50_ns: percentile(&create_ns, 0.5),
        create_p99_ns: percentile(&create_ns, 0.99),
        open_mean_ns: mean(&open_ns),
        open_p50_ns: percentile(&open_sorted, 0.5),
        open_p99_ns: percentile(&open_sorted, 0.99),
        drop_mean_ns: drop_ns / n.max(1) as f64,
        file_bytes: meta.size(),
        allocated_bytes: meta.blocks() * 512,
        creator_rss_bytes: per(rss1.saturating_sub(rss0)),
        opener_rss_bytes: per(opener_rss),
        system_shmem_bytes: per(sys1.saturating_sub(sys0)),
    })
}

/// Runs the opener process: its open times and its `RssShmem` growth.
fn run_opener(prefix: &str, n: usize) -> Result<(Vec<u64>, u64), String> {
    let out = Process::new(&OPENER, (prefix.to_string(), n as u64))
        .into_command()
        .map_err(|e| format!("prepare the opener: {e}"))?
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("spawn the opener: {e}"))?;
    if !out.status.success() {
        return Err(format!("opener failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>());
    let rss = words
        .next()
        .and_then(Result::ok)
        .ok_or("opener: no output")?;
    let samples: Vec<u64> = words
        .collect::<Result<_, _>>()
        .map_err(|e| format!("opener output: {e}"))?;
    if samples.len() != n {
        return Err(format!("opener: {} samples, expected {n}", samples.len()));
    }
    Ok((samples, rss))
}

/// In the opener process ([`OPENER`]): opens every queue, prints its
/// `RssShmem` growth and the open times (ns) on stdout.
fn opener((prefix, n): (String, u64)) -> EntryResult {
    let n = usize::try_from(n)?;
    let rss0 = rss_shmem();
    let mut queues = Vec::with_capacity(n);
    let mut open_ns = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let q = Queue::<Vec<u8>>::open(&name(&prefix, i));
        open_ns.push(t0.elapsed().as_nanos() as u64);
        queues.push(q.map_err(|e| format!("opener: open queue {i} of {n}: {e}"))?);
    }
    let rss = rss_shmem().saturating_sub(rss0);
    drop(queues);
    let mut out = std::io::stdout().lock();
    let mut line = rss.to_string();
    for ns in open_ns {
        line.push(' ');
        line.push_str(&ns.to_string());
    }
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
