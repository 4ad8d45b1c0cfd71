//! Two processes, two SPSC rings in one anonymous segment each: a one-way
//! stream and a ping-pong. Prints messages/s and round-trip percentiles.
//!
//! ```text
//! cargo run --release -p shmring-examples --bin pingpong            # defaults
//! cargo run --release -p shmring-examples --bin pingpong -- --stream-only --count 1000000
//! ```
//!
//! The child is this same executable, re-executed as the entry point
//! `CHILD` and handed both rings (through fd inheritance) and the counts. Each side pins itself to its own CPU when
//! the machine has two or more. `--stream-only` runs only the polling stream
//! (no blocking calls), which is what `strace -f -c` is pointed at to show the
//! hot path makes no system calls.

use shmring::core::wait::Until;
use std::time::{Duration, Instant};

use shmring::core::{PopError, PushError, RingConfig};
use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring::spsc::{Consumer, Producer, Ring};

struct Args {
    count: u64,
    round_trips: u64,
    size: usize,
    stream_only: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        count: 10_000_000,
        round_trips: 200_000,
        size: 8,
        stream_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--count" => args.count = value("--count")?,
            "--round-trips" => args.round_trips = value("--round-trips")?,
            "--size" => args.size = value("--size")? as usize,
            "--stream-only" => args.stream_only = true,
            "-h" | "--help" => {
                println!(
                    "usage: pingpong [--count N] [--round-trips N] [--size BYTES] [--stream-only]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if args.size < 8 || args.size > 4096 {
        return Err(format!("--size {} must be between 8 and 4096", args.size));
    }
    Ok(args)
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set; the calls
    // only read the set we pass.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cpus = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        if cpus < 2 {
            return;
        }
        libc::CPU_SET(cpu % cpus, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn spin_push(tx: &mut Producer, msg: &[u8]) {
    loop {
        match tx.try_push(msg) {
            Ok(()) => return,
            Err(PushError::Full) => std::hint::spin_loop(),
            Err(e) => panic!("push: {e}"),
        }
    }
}

fn spin_pop(rx: &mut Consumer, buf: &mut Vec<u8>) {
    loop {
        match rx.try_pop(buf) {
            Ok(_) => return,
            Err(PopError::Empty) => std::hint::spin_loop(),
            Err(e) => panic!("pop: {e}"),
        }
    }
}

/// The child's arguments: the ring from the parent, the ring back, the
/// stream's message count, the round trips (0 for `--stream-only`) and the
/// message size.
type ChildArgs = (Ring, Ring, u64, u64, usize);

fn child((to_child, to_parent, count, round_trips, size): ChildArgs) -> EntryResult {
    pin_to_cpu(1);
    let mut rx = to_child.consumer()?;
    let mut tx = to_parent.producer()?;
    let mut buf = Vec::with_capacity(size);
    // Stream: receive everything, check the sequence, acknowledge.
    for i in 0..count {
        spin_pop(&mut rx, &mut buf);
        let seq = u64::from_le_bytes(buf[..8].try_into()?);
        if seq != i {
            return Err(format!("stream: got {seq}, expected {i}").into());
        }
    }
    spin_push(&mut tx, b"done");
    // Polling ping-pong, then blocking ping-pong: echo each message.
    for _ in 0..round_trips {
        spin_pop(&mut rx, &mut buf);
        spin_push(&mut tx, &buf);
    }
    for _ in 0..round_trips / 4 {
        rx.pop(&mut buf, Until::after(Duration::from_secs(10)))?;
        tx.push(&buf, Until::after(Duration::from_secs(10)))?;
    }
    Ok(())
}
static CHILD: Entry<ChildArgs> = shmring::entry!(child);

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    println!(
        "{name:<28} p50 {:>7} ns   p99 {:>7} ns   p99.9 {:>8} ns   max {:>9} ns   ({} samples)",
        percentile(&ns, 0.5),
        percentile(&ns, 0.99),
        percentile(&ns, 0.999),
        ns[ns.len() - 1],
        ns.len()
    );
}

fn parent(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = RingConfig {
        capacity: 1 << 20,
        max_record: 4096,
    };
    let to_child = Ring::builder()
        .ring_bytes(config.capacity)
        .max_message(config.max_record)
        .anonymous()?;
    let to_parent = Ring::builder()
        .ring_bytes(config.capacity)
        .max_message(config.max_record)
        .anonymous()?;
    // The child echoes no round trips after a stream-only run.
    let round_trips = if args.stream_only {
        0
    } else {
        args.round_trips
    };
    let mut child_process = Process::spawn(
        &CHILD,
        (&to_child, &to_parent, args.count, round_trips, args.size),
    )?;
    pin_to_cpu(0);
    let mut tx = to_child.producer()?;
    let mut rx = to_parent.consumer()?;
    let mut msg = vec![0u8; args.size];
    let mut buf = Vec::with_capacity(args.size);

    println!(
        "shmring pingpong: 2 processes, SPSC rings of {} KiB, {}-byte messages",
        config.capacity / 1024,
        args.size
    );
    let start = Instant::now();
    for i in 0..args.count {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        spin_push(&mut tx, &msg);
    }
    spin_pop(&mut rx, &mut buf);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<28} {:.1} M msgs/s, {:.2} GB/s ({} messages in {:.3} s)",
        "one-way stream (polling)",
        args.count as f64 / secs / 1e6,
        (args.count as f64 * args.size as f64) / secs / 1e9,
        args.count,
        secs
    );
    if !args.stream_only {
        let mut samples = Vec::with_capacity(args.round_trips as usize);
        for i in 0..args.round_trips {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            let t = Instant::now();
            spin_push(&mut tx, &msg);
            spin_pop(&mut rx, &mut buf);
            samples.push(t.elapsed().as_nanos() as u64);
        }
        report("round trip (polling)", samples);
        let mut samples = Vec::with_capacity(args.round_trips as usize / 4);
        for i in 0..args.round_trips / 4 {
            msg[..8].copy_from_slice(&i.to_le_bytes());
            let t = Instant::now();
            tx.push(&msg, Until::after(Duration::from_secs(10)))?;
            rx.pop(&mut buf, Until::after(Duration::from_secs(10)))?;
            samples.push(t.elapsed().as_nanos() as u64);
        }
        report("round trip (blocking calls)", samples);
    }
    let status = child_process.join()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    Ok(())
}

fn main() {
    run_child(&[&CHILD]);
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pingpong: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = parent(&args) {
        eprintln!("pingpong: {e}");
        std::process::exit(1);
    }
}
