//! Cross-process comparison: shmring beside a pipe, a unix socket, the raw
//! futex and spin-ring floors, rtrb and crossbeam between threads,
//! Python's multiprocessing (when python3 is there) and, with the
//! `iceoryx2` feature, iceoryx2 (see `shmring_benches::iox`), in one run.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin xbench -- --json benches/results/results.json
//! cargo run --release -p shmring-benches --bin report -- benches/results/results.json
//! ```
//!
//! With iceoryx2 (its build needs Debian's `clang` and `libclang-dev`):
//!
//! ```text
//! cargo run --release -p shmring-benches --features iceoryx2 --bin xbench -- --json benches/results/results.json
//! ```
//!
//! Options: `--quick` (counts / 20, one repetition), `--reps N` (default
//! 3), `--json FILE`, `--no-python`, `--no-strace`, `--no-pin`, `--only
//! WORDS` (only the measurements whose mechanism contains one of the
//! comma-separated WORDS, e.g. `--only iceoryx2,shmring-spsc`; the Python
//! script is skipped), `--busy N` (N busy-loop processes during each
//! measurement through `shmring_measure`, on the peer's CPU when pinned:
//! see [`shmring_measure::Params::busy`]; the threads, Python and iceoryx2
//! figures run without them).
//! Round trips are reported with p50, p99, p99.9, max, the longest run of
//! round trips over 10 µs and the percentile curve.
//! Every measurement is repeated and the repetitions are interleaved (all
//! mechanisms once, then all again), so a slow phase of the machine hits
//! every mechanism alike; the report shows the min–max over repetitions.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

use shmring::process::{run_child, Entry, EntryResult, Process};
use shmring_benches::machine::Machine;
use shmring_benches::threads::{self, Crossbeam, Rtrb};
use shmring_benches::{Record, Rep, Results};
use shmring_measure::{Mechanism, Mode, Params, Tuning};

const PAYLOADS: [usize; 3] = [8, 1024, 64 << 10];

struct Args {
    quick: bool,
    reps: u32,
    json: Option<String>,
    python: bool,
    strace: bool,
    pin: bool,
    only: Option<String>,
    busy: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        reps: 3,
        json: None,
        python: true,
        strace: true,
        pin: true,
        only: None,
        busy: 0,
    };
    let mut reps = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--reps" => {
                let v = it.next().ok_or("--reps needs a value")?;
                reps = Some(
                    v.parse()
                        .map_err(|_| format!("--reps: not a number: {v}"))?,
                );
            }
            "--json" => args.json = Some(it.next().ok_or("--json needs a file")?),
            "--no-python" => args.python = false,
            "--no-strace" => args.strace = false,
            "--no-pin" => args.pin = false,
            "--busy" => {
                let v = it.next().ok_or("--busy needs a value")?;
                args.busy = v
                    .parse()
                    .ok()
                    .filter(|n| *n <= shmring_measure::MAX_BUSY)
                    .ok_or(format!(
                        "--busy: not a number from 0 to {}: {v}",
                        shmring_measure::MAX_BUSY
                    ))?;
            }
            "--only" => {
                args.only = Some(it.next().ok_or("--only needs words")?);
                args.python = false;
            }
            "-h" | "--help" => {
                println!("usage: xbench [--quick] [--reps N] [--json FILE] [--no-python] [--no-strace] [--no-pin] [--only WORDS] [--busy N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    args.reps = reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    Ok(args)
}

/// Recorded round trips for a payload.
fn round_trips(payload: usize, quick: bool) -> u64 {
    let n = if payload >= 64 << 10 { 20_000 } else { 100_000 };
    if quick {
        n / 20
    } else {
        n
    }
}

/// Streamed messages for a payload.
fn messages(payload: usize, quick: bool) -> u64 {
    let n = match payload {
        0..=64 => 2_000_000,
        65..=4096 => 1_000_000,
        _ => 50_000,
    };
    if quick {
        n / 20
    } else {
        n
    }
}

/// Dict increments per process.
fn dict_ops(quick: bool) -> u64 {
    if quick {
        5_000
    } else {
        50_000
    }
}

/// One measurement to repeat.
#[derive(Clone)]
enum Job {
    RoundTrip(Mechanism, Mode, Tuning, &'static str),
    Stream(Mechanism, Mode, Tuning, &'static str),
    Iceoryx2RoundTrip(Mode),
    Iceoryx2Stream(Mode),
    ThreadsRoundTrip(&'static str),
    ThreadsStream(&'static str),
    Dict,
    Facade,
}

fn jobs(payload: usize) -> Vec<Job> {
    let sleep = Tuning {
        spin_ns: Some(0),
        ..Tuning::default()
    };
    let batch = Tuning {
        batch: 32,
        ..Tuning::default()
    };
    let mut jobs = Vec::new();
    for mode in Mode::ALL {
        for m in Mechanism::ALL.into_iter().filter(|m| m.supports(mode)) {
            jobs.push(Job::RoundTrip(m, mode, Tuning::default(), ""));
        }
        if cfg!(feature = "iceoryx2") {
            jobs.push(Job::Iceoryx2RoundTrip(mode));
        }
    }
    for m in Mechanism::ALL
        .into_iter()
        .filter(|m| m.is_shmring() && m.takes_spin())
    {
        jobs.push(Job::RoundTrip(m, Mode::Blocking, sleep.clone(), "spin 0"));
    }
    for mode in Mode::ALL {
        for m in Mechanism::ALL
            .into_iter()
            .filter(|m| m.supports_stream(mode))
        {
            jobs.push(Job::Stream(m, mode, Tuning::default(), ""));
        }
        if cfg!(feature = "iceoryx2") {
            jobs.push(Job::Iceoryx2Stream(mode));
        }
    }
    jobs.push(Job::Stream(
        Mechanism::ShmringSpsc,
        Mode::Polling,
        batch,
        "batch 32",
    ));
    jobs.push(Job::ThreadsRoundTrip("rtrb (threads)"));
    jobs.push(Job::ThreadsStream("rtrb (threads)"));
    if payload == 8 {
        jobs.push(Job::ThreadsRoundTrip("crossbeam ArrayQueue (threads)"));
        jobs.push(Job::ThreadsStream("crossbeam ArrayQueue (threads)"));
        jobs.push(Job::Dict);
        jobs.push(Job::Facade);
    }
    jobs
}

/// Runs one job once: its record keys and figures.
fn run(job: &Job, payload: usize, a: &Args) -> Result<Vec<(Record, Rep)>, String> {
    let p = Params {
        payload,
        messages: messages(payload, a.quick),
        round_trips: round_trips(payload, a.quick),
        mode: Mode::Polling,
        pin: a.pin,
        busy: a.busy,
    };
    let key = |kind: &str, mechanism: String, mode: Mode, variant: &str| Record {
        kind: kind.into(),
        mechanism,
        mode: mode.to_string(),
        variant: variant.into(),
        payload,
        reps: Vec::new(),
    };
    let fail = |e: shmring_measure::MeasureError| e.to_string();
    Ok(vec![match job {
        Job::RoundTrip(m, mode, t, v) => {
            let p = Params { mode: *mode, ..p };
            let l = shmring_measure::round_trip_with(*m, &p, t).map_err(fail)?;
            (key("round_trip", m.to_string(), *mode, v), Rep::latency(&l))
        }
        Job::Stream(m, mode, t, v) => {
            let p = Params { mode: *mode, ..p };
            let r = shmring_measure::stream_with(*m, &p, t).map_err(fail)?;
            (key("stream", m.to_string(), *mode, v), Rep::rate(&r))
        }
        Job::Iceoryx2RoundTrip(mode) => {
            let l = iceoryx2::round_trip(*mode, payload, p.round_trips, a.pin)
                .map_err(|e| format!("iceoryx2 {mode} round trip: {e}"))?;
            (
                key("round_trip", iceoryx2::NAME.into(), *mode, ""),
                Rep::latency(&l),
            )
        }
        Job::Iceoryx2Stream(mode) => {
            let r = iceoryx2::stream(*mode, payload, p.messages, a.pin)
                .map_err(|e| format!("iceoryx2 {mode} stream: {e}"))?;
            (
                key("stream", iceoryx2::NAME.into(), *mode, ""),
                Rep::rate(&r),
            )
        }
        Job::ThreadsRoundTrip(name) => {
            let l = if name.starts_with("rtrb") {
                threads::round_trip(Rtrb::pair(payload), payload, p.round_trips, a.pin)
            } else {
                threads::round_trip(Crossbeam::pair(), payload, p.round_trips, a.pin)
            };
            (
                key("round_trip", name.to_string(), Mode::Polling, ""),
                Rep::latency(&l),
            )
        }
        Job::ThreadsStream(name) => {
            let r = if name.starts_with("rtrb") {
                threads::stream(Rtrb::pair(payload), payload, p.messages, a.pin)
            } else {
                threads::stream(Crossbeam::pair(), payload, p.messages, a.pin)
            };
            (
                key("stream", name.to_string(), Mode::Polling, ""),
                Rep::rate(&r),
            )
        }
        Job::Dict => {
            let p = Params {
                messages: dict_ops(a.quick),
                ..p
            };
            let r = shmring_measure::dict_update(&p).map_err(fail)?;
            let rep = Rep {
                msgs_per_s: Some(r.msgs_per_s),
                ..Rep::default()
            };
            (
                key(
                    "dict",
                    "shmring Dict::update_with".into(),
                    Mode::Blocking,
                    "2 processes",
                ),
                rep,
            )
        }
        Job::Facade => {
            let o = shmring_benches::facade::overhead(p.messages / 2);
            let (facade, raw) = (o.facade, o.raw);
            let rep = |ns| Rep {
                ns_per_op: Some(ns),
                ..Rep::default()
            };
            let facade = (
                key(
                    "facade",
                    "shmring Queue<u64> put+get".into(),
                    Mode::Polling,
                    "1 thread",
                ),
                rep(facade),
            );
            return Ok(vec![
                facade,
                (
                    key(
                        "facade",
                        "shmring Queue<u64> Sender/Receiver".into(),
                        Mode::Polling,
                        "1 thread",
                    ),
                    rep(o.handles),
                ),
                (
                    key(
                        "facade",
                        "shmring mpmc push+pop (raw)".into(),
                        Mode::Polling,
                        "1 thread",
                    ),
                    rep(raw),
                ),
                (
                    key(
                        "facade",
                        "shmring Pipe send+recv".into(),
                        Mode::Polling,
                        "1 thread",
                    ),
                    rep(o.pipe),
                ),
                (
                    key(
                        "facade",
                        "shmring spsc push+pop (raw)".into(),
                        Mode::Polling,
                        "1 thread",
                    ),
                    rep(o.spsc),
                ),
            ]);
        }
    }])
}

/// iceoryx2 when the feature is on; an error (never reached: no such job
/// is made) when it is off.
mod iceoryx2 {
    #[cfg(not(feature = "iceoryx2"))]
    use shmring_measure::{Latency, Mode, Throughput};

    /// The mechanism's name in the results.
    pub const NAME: &str = "iceoryx2";

    #[cfg(feature = "iceoryx2")]
    pub use shmring_benches::iox::{round_trip, stream};

    #[cfg(not(feature = "iceoryx2"))]
    pub fn round_trip(_: Mode, _: usize, _: u64, _: bool) -> Result<Latency, String> {
        Err("built without the `iceoryx2` feature".into())
    }

    #[cfg(not(feature = "iceoryx2"))]
    pub fn stream(_: Mode, _: usize, _: u64, _: bool) -> Result<Throughput, String> {
        Err("built without the `iceoryx2` feature".into())
    }

    /// What the report says about iceoryx2's set-up, or its absence.
    pub fn note() -> String {
        #[cfg(feature = "iceoryx2")]
        return format!(
            "iceoryx2 {}: publish-subscribe of [u8] slices, one service per direction, subscriber buffer max(2, 1 MiB / payload) samples, \
             no safe overflow (RetryUntilDelivered: no message lost), the message copied into a loaned sample and out of the received one \
             (the same copies as the others); polling = `receive` in a spin loop; blocking = `notify` on an event service after every send, \
             the receiver waits on its listener when `receive` finds nothing",
            shmring_benches::iox::VERSION
        );
        #[cfg(not(feature = "iceoryx2"))]
        return "iceoryx2: not measured (build with --features iceoryx2)".into();
    }
}

/// Whether `--only` keeps this job.
fn wanted(job: &Job, a: &Args) -> bool {
    let Some(word) = &a.only else {
        return true;
    };
    let name = match job {
        Job::RoundTrip(m, ..) | Job::Stream(m, ..) => m.name(),
        Job::Iceoryx2RoundTrip(_) | Job::Iceoryx2Stream(_) => iceoryx2::NAME,
        Job::ThreadsRoundTrip(name) | Job::ThreadsStream(name) => name,
        Job::Dict => "shmring Dict",
        Job::Facade => "shmring Queue facade",
    };
    word.split(',').any(|w| name.contains(w))
}

fn label(r: &Record) -> String {
    format!(
        "{} {} {} {}{} B",
        r.kind,
        r.mechanism,
        r.mode,
        if r.variant.is_empty() {
            String::new()
        } else {
            format!("[{}] ", r.variant)
        },
        r.payload
    )
}

fn summary(rep: &Rep) -> String {
    if let Some(ns) = rep.ns_per_op {
        return format!("{ns:.1} ns/op");
    }
    match (rep.p50_ns, rep.msgs_per_s, rep.bytes_per_s) {
        (Some(p50), _, _) => format!(
            "p50 {p50} ns, p99 {} ns, p99.9 {} ns, max {} ns, slow run {} ({} over 10 µs)",
            rep.p99_ns.unwrap_or(0),
            rep.p999_ns.unwrap_or(0),
            rep.max_ns.unwrap_or(0),
            rep.slow_run.unwrap_or(0),
            rep.slow_count.unwrap_or(0)
        ),
        (_, Some(m), Some(b)) => format!("{:.2} M msgs/s, {:.2} GB/s", m / 1e6, b / 1e9),
        (_, Some(m), None) => format!("{:.0} ops/s", m),
        _ => String::new(),
    }
}

/// Runs the Python script (same payloads, repetitions and dict operations;
/// the message counts of `--quick`, a twentieth: multiprocessing moves
/// 10^4 to 10^5 messages a second, so the full counts would take many
/// minutes) and merges its records.
fn run_python(a: &Args, results: &mut Results) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_bench.py");
    let join = |f: &dyn Fn(usize) -> u64| {
        PAYLOADS
            .iter()
            .map(|&p| f(p).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let payloads = PAYLOADS
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let rts = join(&|p| round_trips(p, true));
    let msgs = join(&|p| messages(p, true));
    eprintln!("xbench: python3 {script} (round trips {rts}, messages {msgs}) ...");
    results.notes.push(format!(
        "python: same payloads, pinning and dict operations; round trips {rts} and messages {msgs} per payload (the --quick counts)"
    ));
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--payloads", &payloads])
        .args(["--round-trips", &rts])
        .args(["--messages", &msgs])
        .args(["--dict-ops", &dict_ops(a.quick).to_string()])
        .args(["--reps", &a.reps.to_string()]);
    if !a.pin {
        cmd.arg("--no-pin");
    }
    match cmd.stderr(std::process::Stdio::inherit()).output() {
        Ok(out) if out.status.success() => match serde_json::from_slice::<Results>(&out.stdout) {
            Ok(py) => {
                results.records.extend(py.records);
                results.notes.extend(py.notes);
                results.errors.extend(py.errors);
            }
            Err(e) => results.errors.push(format!("python output: {e}")),
        },
        Ok(out) => results
            .errors
            .push(format!("python3 mp_bench.py failed: {}", out.status)),
        Err(e) => results.notes.push(format!("python3 not run: {e}")),
    }
}

/// `strace -f -c` over a 1,000,000-message stream: system calls of both
/// processes, setup included.
fn count_syscalls(results: &mut Results) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    for (m, mode) in [
        (Mechanism::ShmringSpsc, Mode::Polling),
        (Mechanism::ShmringQueue, Mode::Polling),
        (Mechanism::ShmringSpsc, Mode::Blocking),
    ] {
        let out = std::env::temp_dir().join(format!("xbench-strace-{}.txt", std::process::id()));
        let mut strace = Command::new("strace");
        strace.args(["-f", "-c", "-o"]).arg(&out).arg(&exe);
        let args = (m.name().to_string(), mode.name().to_string());
        let status = Process::with_command(strace, &PROBE, args)
            .into_command()
            .map_err(std::io::Error::other)
            .and_then(|mut cmd| cmd.status());
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        let calls = |name: &str| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|t| t.last() == Some(&name) && t.len() >= 5)
                .and_then(|t| t[3].parse::<u64>().ok())
                .unwrap_or(0)
        };
        match status {
            Ok(s) if s.success() => results.notes.push(format!(
                "syscalls: strace -f -c over a 1,000,000-message 8 B stream, {m} {mode}: {} system calls in both processes, setup and warm-up included ({} futex)",
                calls("total"),
                calls("futex")
            )),
            Ok(s) => results.notes.push(format!("syscalls: strace run for {m} {mode} failed: {s}")),
            Err(e) => {
                results.notes.push(format!("syscalls: strace not run: {e}"));
                return;
            }
        }
    }
}

/// The stream that `count_syscalls` traces (under strace, this binary
/// re-executed as this entry point with a mechanism's and a mode's name).
fn probe((m, mode): (String, String)) -> EntryResult {
    let p = Params {
        messages: 1_000_000,
        mode: mode.parse()?,
        ..Params::default()
    };
    shmring_measure::stream(m.parse()?, &p)?;
    Ok(())
}
static PROBE: Entry<(String, String)> = shmring::entry!(probe);

fn main() {
    // A measurement peer (this binary re-executed) does its job and exits.
    shmring_benches::peer::run_peer_if_child();
    run_child(&[&PROBE]);
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xbench: {e}");
            std::process::exit(2);
        }
    };
    let mut results = Results {
        machine: Machine::this(),
        command: std::iter::once("xbench".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        repetitions: a.reps,
        round_trips: PAYLOADS
            .iter()
            .map(|&p| (p, round_trips(p, a.quick)))
            .collect(),
        messages: PAYLOADS
            .iter()
            .map(|&p| (p, messages(p, a.quick)))
            .collect(),
        ..Results::default()
    };
    results.notes.push(iceoryx2::note());
    if a.busy > 0 {
        results.notes.push(format!(
            "busy: {} busy-loop process{} during each two-process measurement, {}",
            a.busy,
            if a.busy == 1 { "" } else { "es" },
            if a.pin {
                "pinned to the peer's CPU"
            } else {
                "unpinned"
            }
        ));
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for rep in 0..a.reps {
        for payload in PAYLOADS {
            for job in jobs(payload).into_iter().filter(|j| wanted(j, &a)) {
                match run(&job, payload, &a) {
                    Ok(figures) => {
                        for (key, figures) in figures {
                            let name = label(&key);
                            eprintln!("[{}/{}] {name}: {}", rep + 1, a.reps, summary(&figures));
                            let i = *index.entry(name).or_insert_with(|| {
                                results.records.push(key);
                                results.records.len() - 1
                            });
                            results.records[i].reps.push(figures);
                        }
                    }
                    Err(e) => {
                        eprintln!("[{}/{}] {payload} B: error: {e}", rep + 1, a.reps);
                        results.errors.push(format!("{payload} B: {e}"));
                    }
                }
            }
        }
    }
    if a.python {
        run_python(&a, &mut results);
    }
    if a.strace {
        count_syscalls(&mut results);
    }
    let json = serde_json::to_string_pretty(&results).expect("results serialise");
    match &a.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, json + "\n") {
                eprintln!("xbench: writing {path}: {e}");
                std::process::exit(1);
            }
            eprintln!("xbench: wrote {path}");
        }
        None => {
            let _ = writeln!(std::io::stdout(), "{json}");
        }
    }
}
