//! How often the machine takes a running thread away: one thread per
//! allowed CPU, each pinned, reads the monotonic clock in a tight loop and
//! counts the gaps between two reads over 1 µs, 10 µs and 100 µs. On bare
//! metal an idle CPU shows a few per second (timer ticks); on a VM the
//! host's preemptions show too. Every round trip that meets such a gap is
//! slow, whatever the IPC mechanism.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin gaps -- [SECONDS]
//! ```
use std::time::{Duration, Instant};

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cpus = allowed_cpus();
    let threads: Vec<_> = cpus
        .iter()
        .map(|&cpu| std::thread::spawn(move || (cpu, measure(cpu, secs))))
        .collect();
    for t in threads {
        let (cpu, g) = t.join().expect("measuring thread");
        println!(
            "cpu {cpu}: {:.1} s, gaps over 1 µs {:.0}/s, over 10 µs {:.0}/s ({:.2}% of the time), over 100 µs {}",
            secs,
            g.over_1us as f64 / secs,
            g.over_10us as f64 / secs,
            100.0 * g.lost_10us.as_secs_f64() / secs,
            g.over_100us
        );
    }
}

#[derive(Default)]
struct Gaps {
    over_1us: u64,
    over_10us: u64,
    over_100us: u64,
    /// Time inside the gaps over 10 µs.
    lost_10us: Duration,
}

fn measure(cpu: usize, secs: f64) -> Gaps {
    pin(cpu);
    let mut g = Gaps::default();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut prev = start;
    loop {
        let now = Instant::now();
        let gap = now - prev;
        prev = now;
        if gap > Duration::from_micros(1) {
            g.over_1us += 1;
            if gap > Duration::from_micros(10) {
                g.over_10us += 1;
                g.lost_10us += gap;
                if gap > Duration::from_micros(100) {
                    g.over_100us += 1;
                }
            }
        }
        if now >= end {
            return g;
        }
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit set; all-zero is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into
    // `set`, which is valid and writable.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity");
    // SAFETY: CPU_ISSET only reads the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (it came from `allowed_cpus`); CPU_SET
    // writes only into `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu set of the size given.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(rc, 0, "sched_setaffinity");
}
