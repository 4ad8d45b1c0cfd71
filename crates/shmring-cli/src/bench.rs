//! `shmring bench`: the quick comparison a user runs on their own host.
//!
//! Every figure comes from `shmring-measure`, between two processes (this
//! executable re-executed as the peer), with the same payloads, counts and
//! pinning for every mechanism of a section. Each section is shown with
//! ratios against the OS pipe, the unix socket and the raw floor of its
//! mode (a spinning ring when polling, a futex ping-pong when blocking);
//! round trips also show their tails (p99, p99.9, max, the longest run of
//! round trips over 10 µs) and p99.9 against the tail floor (the futex
//! ping-pong that spins 5 µs before it sleeps, when blocking).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use shmring_measure::{
    round_trip, stream, Latency, Mechanism, Mode, Params, Throughput, CURVE_LEVELS, MAX_BUSY,
};

use crate::args::{self, Args};
use crate::json::{self, Object};
use crate::Failure;

/// What one section measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Test {
    RoundTrip,
    Stream,
}

struct Section {
    test: Test,
    mode: Mode,
    payload: usize,
    mechanisms: &'static [Mechanism],
    /// The floor the headline ratios (p50, msgs/s) are taken against.
    floor: Mechanism,
    /// Round trips: the floor p99.9 is divided by.
    tail_floor: Mechanism,
}

const SECTIONS: [Section; 4] = [
    Section {
        test: Test::RoundTrip,
        mode: Mode::Polling,
        payload: 8,
        mechanisms: &[
            Mechanism::ShmringSpsc,
            Mechanism::ShmringQueue,
            Mechanism::ShmringPipe,
            Mechanism::ShmringQueueVec,
            Mechanism::Pipe,
            Mechanism::UnixSocket,
            Mechanism::SpinRing,
        ],
        floor: Mechanism::SpinRing,
        tail_floor: Mechanism::SpinRing,
    },
    Section {
        test: Test::RoundTrip,
        mode: Mode::Blocking,
        payload: 8,
        mechanisms: &[
            Mechanism::ShmringSpsc,
            Mechanism::ShmringQueue,
            Mechanism::ShmringPipe,
            Mechanism::ShmringQueueVec,
            Mechanism::Pipe,
            Mechanism::UnixSocket,
            Mechanism::FutexPingPong,
            Mechanism::FutexSpin,
        ],
        // p50: the hand-off to a sleeper; p99.9: what a 5 µs spin before
        // the sleep (shmring's default policy) can reach.
        floor: Mechanism::FutexPingPong,
        tail_floor: Mechanism::FutexSpin,
    },
    Section {
        test: Test::Stream,
        mode: Mode::Polling,
        payload: 8,
        mechanisms: &[
            Mechanism::ShmringSpsc,
            Mechanism::ShmringQueue,
            Mechanism::ShmringQueueVec,
            Mechanism::ShmringQueueVecInto,
            Mechanism::Pipe,
            Mechanism::UnixSocket,
            Mechanism::SpinRing,
        ],
        floor: Mechanism::SpinRing,
        tail_floor: Mechanism::SpinRing,
    },
    Section {
        test: Test::Stream,
        mode: Mode::Polling,
        payload: 64 * 1024,
        mechanisms: &[
            Mechanism::ShmringSpsc,
            Mechanism::ShmringPipe,
            Mechanism::Pipe,
            Mechanism::UnixSocket,
            Mechanism::SpinRing,
        ],
        floor: Mechanism::SpinRing,
        tail_floor: Mechanism::SpinRing,
    },
];

/// The counts of one calibration pass (`--quick` shows its figures); the
/// full run repeats each section with the counts scaled up to [`MAX_SCALE`]
/// times, as far as the time budget allows.
const ROUND_TRIPS: u64 = 5_000;
const SMALL_MESSAGES: u64 = 100_000;
const LARGE_MESSAGES: u64 = 2_000;
const MAX_SCALE: u64 = 10;

/// No scaled-up section starts unless its estimate ends before this.
const BUDGET: Duration = Duration::from_secs(26);

enum Figure {
    Latency(Latency),
    Throughput(Throughput),
}

struct Row {
    mechanism: Mechanism,
    outcome: Result<Figure, String>,
}

/// One section's figures, all taken with the same counts.
struct Measured<'a> {
    section: &'a Section,
    params: Params,
    rows: Vec<Row>,
    took: Duration,
}

/// The headline number of a figure: p50 (ns) or msgs/s.
fn headline(f: &Figure) -> f64 {
    match f {
        Figure::Latency(l) => l.p50_ns as f64,
        Figure::Throughput(t) => t.msgs_per_s,
    }
}

fn title(s: &Section) -> String {
    let what = match s.test {
        Test::RoundTrip => "round trip",
        Test::Stream => "one-way stream",
    };
    let size = crate::show::human_bytes(s.payload as u64);
    format!("{what}, {size} messages, {}", s.mode)
}

fn counts(m: &Measured<'_>) -> String {
    match m.section.test {
        Test::RoundTrip => format!("{} round trips each", m.params.round_trips),
        Test::Stream => format!("{} messages each", m.params.messages),
    }
}

/// How the two processes run: pinned or not, and beside how many busy
/// loops.
#[derive(Clone, Copy)]
struct Setting {
    pin: bool,
    busy: u32,
}

/// `shmring bench [--json] [--quick] [--no-pin] [--busy N]`.
pub fn bench(mut args: Args) -> Result<(), Failure> {
    let json_out = args.flag("--json");
    let quick = args.flag("--quick");
    let no_pin = args.flag("--no-pin");
    let busy = match args.value("--busy")? {
        Some(n) => args::count("--busy", &n, 0, u64::from(MAX_BUSY))? as u32,
        None => 0,
    };
    args.finish()?;
    let setting = Setting { pin: !no_pin, busy };
    let start = Instant::now();
    let per_pass: usize = SECTIONS.iter().map(|s| s.mechanisms.len()).sum();
    let progress = Progress::new(if quick { per_pass } else { 2 * per_pass });
    let mut results: Vec<Measured<'_>> = SECTIONS
        .iter()
        .map(|s| run_section(s, 1, setting, &progress))
        .collect();
    if !quick {
        for i in 0..results.len() {
            // Scale what is left to the time left, judged by the first pass.
            let left = BUDGET.saturating_sub(start.elapsed()).as_secs_f64();
            let first_pass: f64 = results[i..].iter().map(|m| m.took.as_secs_f64()).sum();
            let scale = (left / first_pass.max(1e-3)).floor().min(MAX_SCALE as f64) as u64;
            if scale >= 2 {
                results[i] = run_section(results[i].section, scale, setting, &progress);
            } else {
                progress.skip(results[i].section.mechanisms.len());
            }
        }
    }
    progress.done(start.elapsed());
    let out = if json_out {
        to_json(&results, quick, setting, start.elapsed()) + "\n"
    } else {
        to_text(&results, setting, start.elapsed())
    };
    print!("{out}");
    Ok(())
}

fn run_section<'a>(
    s: &'a Section,
    scale: u64,
    setting: Setting,
    progress: &Progress,
) -> Measured<'a> {
    let messages = if s.payload > 1024 {
        LARGE_MESSAGES
    } else {
        SMALL_MESSAGES
    };
    let params = Params {
        payload: s.payload,
        messages: messages * scale,
        round_trips: ROUND_TRIPS * scale,
        mode: s.mode,
        pin: setting.pin,
        busy: setting.busy,
    };
    let start = Instant::now();
    let rows = s
        .mechanisms
        .iter()
        .map(|&m| {
            progress.show(&format!("{}: {m}", title(s)));
            let figure = match s.test {
                Test::RoundTrip => round_trip(m, &params).map(Figure::Latency),
                Test::Stream => stream(m, &params).map(Figure::Throughput),
            };
            Row {
                mechanism: m,
                outcome: figure.map_err(|e| e.to_string()),
            }
        })
        .collect();
    Measured {
        section: s,
        params,
        rows,
        took: start.elapsed(),
    }
}

/// `row ÷ baseline` of the headline figures, when both exist.
fn ratio(rows: &[Row], row: &Row, baseline: Mechanism) -> Option<f64> {
    ratio_by(rows, row, baseline, headline)
}

/// `row ÷ baseline` of the p99.9 round trips, when both exist.
fn tail_ratio(rows: &[Row], row: &Row, baseline: Mechanism) -> Option<f64> {
    ratio_by(rows, row, baseline, |f| match f {
        Figure::Latency(l) => l.p999_ns as f64,
        Figure::Throughput(_) => 0.0,
    })
}

fn ratio_by(
    rows: &[Row],
    row: &Row,
    baseline: Mechanism,
    figure: impl Fn(&Figure) -> f64,
) -> Option<f64> {
    let base = rows.iter().find(|r| r.mechanism == baseline)?;
    let (Ok(a), Ok(b)) = (&row.outcome, &base.outcome) else {
        return None;
    };
    let (a, b) = (figure(a), figure(b));
    (b > 0.0).then(|| a / b)
}

/// The longest run of slow round trips, and how many there were: `3 (41)`.
fn slow_text(l: &Latency) -> String {
    format!("{} ({})", l.slow_run, l.slow_count)
}

fn nanos(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

fn rate(per_s: f64, unit: &str) -> String {
    match per_s {
        x if x >= 1e9 => format!("{:.2} G{unit}/s", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M{unit}/s", x / 1e6),
        x if x >= 1e3 => format!("{:.1} k{unit}/s", x / 1e3),
        x => format!("{x:.0} {unit}/s"),
    }
}

fn ratio_text(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r < 0.1 => format!("{r:.3}×"),
        Some(r) => format!("{r:.2}×"),
    }
}

fn host_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
    format!("{model}, {cpus} CPUs allowed, Linux {kernel}")
}

fn setting_text(setting: Setting) -> String {
    let pinned = if setting.pin {
        "pinned to two CPUs when allowed"
    } else {
        "not pinned"
    };
    match setting.busy {
        0 => format!("two processes, {pinned}"),
        n => format!(
            "two processes, {pinned}, beside {n} busy loop{} {}",
            if n == 1 { "" } else { "s" },
            if setting.pin {
                "on the peer's CPU (when pinned)"
            } else {
                "(unpinned)"
            }
        ),
    }
}

/// Pads each column to its widest cell (two spaces between columns, two
/// before the first); a row of one cell is written as it is.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .filter(|r| r.len() > 1)
            .filter_map(|r| r.get(c))
            .map(|cell| cell.chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    for row in rows {
        let mut line = String::from(" ");
        for (c, cell) in row.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if row.len() > 1 && c + 1 < row.len() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad + 1));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn to_text(results: &[Measured<'_>], setting: Setting, took: Duration) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "shmring bench — {}\n({}; took {:.1} s)\n",
        host_line(),
        setting_text(setting),
        took.as_secs_f64()
    );
    for m in results {
        let (s, rows) = (m.section, &m.rows);
        let _ = writeln!(out, "\n{} ({})", title(s), counts(m));
        let mut cells: Vec<Vec<String>> = Vec::new();
        let ratio_heads = ["÷pipe".to_string(), "÷unix".into(), format!("÷{}", s.floor)];
        let mut head = vec!["mechanism".to_string()];
        match s.test {
            Test::RoundTrip => {
                head.extend(["p50", "p99", "p99.9", "max", "slow run"].map(String::from));
                head.extend(ratio_heads);
                head.push(format!("p99.9 ÷{}", s.tail_floor));
            }
            Test::Stream => {
                head.extend(["msgs/s", "bytes/s"].map(String::from));
                head.extend(ratio_heads);
            }
        }
        cells.push(head);
        for row in rows {
            let mut line = vec![row.mechanism.to_string()];
            match &row.outcome {
                Ok(Figure::Latency(l)) => line.extend([
                    nanos(l.p50_ns),
                    nanos(l.p99_ns),
                    nanos(l.p999_ns),
                    nanos(l.max_ns),
                    slow_text(l),
                ]),
                Ok(Figure::Throughput(t)) => {
                    line.extend([rate(t.msgs_per_s, "msg"), rate(t.bytes_per_s, "B")])
                }
                Err(e) => {
                    cells.push(vec![format!("{:<17} failed: {e}", row.mechanism)]);
                    continue;
                }
            }
            line.extend([
                ratio_text(ratio(rows, row, Mechanism::Pipe)),
                ratio_text(ratio(rows, row, Mechanism::UnixSocket)),
                ratio_text(ratio(rows, row, s.floor)),
            ]);
            if s.test == Test::RoundTrip {
                line.push(ratio_text(tail_ratio(rows, row, s.tail_floor)));
            }
            cells.push(line);
        }
        table(&mut out, &cells);
    }
    out.push_str(
        "\nRatios divide each row's headline figure by the column's mechanism's, same run:\n\
         p50 for round trips (lower is better), msgs/s for streams (higher is better);\n\
         \"p99.9 ÷\" divides p99.9 by the section's tail floor's. Slow run: the most\n\
         consecutive round trips over 10 µs (in parentheses: how many in all).\n",
    );
    out
}

fn to_json(results: &[Measured<'_>], quick: bool, setting: Setting, took: Duration) -> String {
    let mut items = Vec::new();
    for m in results {
        let (s, rows) = (m.section, &m.rows);
        for row in rows {
            let mut obj = Object::new()
                .str(
                    "test",
                    match s.test {
                        Test::RoundTrip => "round_trip",
                        Test::Stream => "stream",
                    },
                )
                .str("mode", s.mode.name())
                .num("payload", s.payload as u64)
                .str("mechanism", row.mechanism.name())
                .num(
                    "count",
                    match s.test {
                        Test::RoundTrip => m.params.round_trips,
                        Test::Stream => m.params.messages,
                    },
                )
                .bool("pinned", m.params.pin)
                .num("busy", m.params.busy);
            obj = match &row.outcome {
                Ok(Figure::Latency(l)) => obj
                    .num("min_ns", l.min_ns)
                    .num("p50_ns", l.p50_ns)
                    .num("p99_ns", l.p99_ns)
                    .num("p999_ns", l.p999_ns)
                    .num("max_ns", l.max_ns)
                    .num("samples", l.samples)
                    .num("slow_run", l.slow_run)
                    .num("slow_count", l.slow_count)
                    .raw("curve", curve_json(l)),
                Ok(Figure::Throughput(t)) => obj
                    .raw("msgs_per_s", json::float(t.msgs_per_s))
                    .raw("bytes_per_s", json::float(t.bytes_per_s)),
                Err(e) => obj.str("error", e),
            };
            let ratio_of = |m| ratio(rows, row, m).map_or("null".into(), json::float);
            let mut ratios = Object::new()
                .raw("pipe", ratio_of(Mechanism::Pipe))
                .raw("unix-socket", ratio_of(Mechanism::UnixSocket))
                .raw("floor", ratio_of(s.floor))
                .str("floor_mechanism", s.floor.name());
            if s.test == Test::RoundTrip {
                let tail = tail_ratio(rows, row, s.tail_floor).map_or("null".into(), json::float);
                ratios = ratios
                    .raw("p999_tail_floor", tail)
                    .str("tail_floor_mechanism", s.tail_floor.name());
            }
            let ratios = ratios.finish();
            items.push(obj.raw("ratios", ratios).finish());
        }
    }
    Object::new()
        .str("host", &host_line())
        .bool("quick", quick)
        .bool("pinned", setting.pin)
        .num("busy", setting.busy)
        .num("slow_ns", shmring_measure::SLOW_NS)
        .raw("seconds", json::float(took.as_secs_f64()))
        .raw("results", json::array(items))
        .finish()
}

/// The percentile curve: `[[0.5, ns], [0.75, ns], ...]`.
fn curve_json(l: &Latency) -> String {
    json::array(
        CURVE_LEVELS
            .iter()
            .zip(l.curve)
            .map(|(p, ns)| format!("[{},{ns}]", json::float(*p))),
    )
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per step otherwise.
struct Progress {
    total: usize,
    step: std::cell::Cell<usize>,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            step: std::cell::Cell::new(0),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, what: &str) {
        let step = self.step.get() + 1;
        self.step.set(step);
        let mut err = std::io::stderr().lock();
        let line = format!("[{step:>2}/{}] {what}", self.total);
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Counts `n` steps that will not run.
    fn skip(&self, n: usize) {
        self.step.set(self.step.get() + n);
    }

    fn done(&self, took: Duration) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "done in {:.1} s", took.as_secs_f64());
    }
}
