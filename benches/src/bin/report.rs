//! Turns `xbench`'s JSON into `REPORT.md`, `latency.svg`, `tails.svg`
//! (the percentile curves of the 8 B round trips beside their floors) and
//! `throughput.svg` beside it (or in `--out DIR`); with the `growth` bin's
//! JSON (`growth.json` beside the first file, or `--growth FILE`), also
//! target 8's section and `growth.svg`.
//!
//! ```text
//! cargo run --release -p shmring-benches --bin report -- benches/results/results.json [MORE.json ...] [--growth FILE] [--out DIR]
//! ```
//!
//! Further JSON files (e.g. the Python script's output run by hand) are
//! merged in. Ratios compare repetitions pairwise (repetition i of one
//! mechanism with repetition i of the other: xbench interleaves them, so
//! both saw the same phase of the machine) and show the min–max.

use std::fmt::Write;
use std::path::PathBuf;

use shmring_benches::analysis::{
    best, fmt_ratio, name, ns, range, ratio, si, Data, Field, ICEORYX2, ICEORYX2_ABSENT,
};
use shmring_benches::growth_report;
use shmring_benches::svg::{bar_chart, curve_chart, Bar, Curve, CurvePanel, Panel};
use shmring_benches::{Record, Rep, Results};

/// One target check: returns the markdown row.
fn target(
    no: &str,
    what: &str,
    measured: Option<(f64, f64, f64)>,
    at_most: bool,
    bound: f64,
) -> String {
    let verdict = match measured {
        None => "not measured".to_string(),
        Some((c, _, _)) if (at_most && c <= bound) || (!at_most && c >= bound) => "**pass**".into(),
        Some((c, _, _)) if at_most => format!("**miss** by {:.0}%", (c / bound - 1.0) * 100.0),
        Some((c, _, _)) => format!("**miss** by {:.0}%", (1.0 - c / bound) * 100.0),
    };
    let measured = measured.map_or("—".into(), fmt_ratio);
    let bound = format!("{} {bound}×", if at_most { "≤" } else { "≥" });
    format!("| {no} | {what} | {measured} | {bound} | {verdict} |\n")
}

/// A row that informs a target's verdict without a goal of its own.
fn context(no: &str, what: &str, measured: Option<(f64, f64, f64)>) -> String {
    let measured = measured.map_or("—".into(), fmt_ratio);
    format!("| {no} | {what} | {measured} | — | context |\n")
}

fn targets(d: &Data) -> String {
    let rt = |m: &str, mode: &str, v: &str| d.find("round_trip", m, mode, v, 8);
    let st = |m: &str, mode: &str, v: &str, p: usize| d.find("stream", m, mode, v, p);
    let r = |a: Option<&Record>, b: Option<&Record>, f: Field| ratio(a?, b?, f);
    let spin_rt = rt("spin-ring", "polling", "");
    let mut s = String::from("| # | target (8 B unless said) | measured (best; per-repetition range) | goal | verdict |\n|---|---|---|---|---|\n");
    s += &target(
        "1",
        "polling round trip p50: shmring-spsc ÷ spin ring",
        r(rt("shmring-spsc", "polling", ""), spin_rt, Field::P50),
        true,
        1.25,
    );
    s += &target(
        "1",
        "polling round trip p50: shmring-pipe ÷ spin ring",
        r(rt("shmring-pipe", "polling", ""), spin_rt, Field::P50),
        true,
        1.25,
    );
    s += &target(
        "1",
        "polling round trip p50: shmring-queue ÷ spin ring",
        r(rt("shmring-queue", "polling", ""), spin_rt, Field::P50),
        true,
        1.5,
    );
    let iox = rt(ICEORYX2, "polling", "");
    for m in ["shmring-spsc", "shmring-pipe"] {
        let what = format!("polling round trip p50: {m} ÷ iceoryx2");
        s += &if d.has_iceoryx2() {
            target(
                "1",
                &what,
                r(rt(m, "polling", ""), iox, Field::P50),
                true,
                0.5,
            )
        } else {
            format!("| 1 | {what} | — | ≤ 0.5× | {ICEORYX2_ABSENT} |\n")
        };
    }
    let spin_st = st("spin-ring", "polling", "", 8);
    s += &target(
        "2",
        "stream msgs/s: shmring-spsc ÷ spin ring",
        r(st("shmring-spsc", "polling", "", 8), spin_st, Field::Msgs),
        false,
        0.7,
    );
    s += &target(
        "2",
        "stream msgs/s: shmring-spsc batch 32 ÷ spin ring",
        r(
            st("shmring-spsc", "polling", "batch 32", 8),
            spin_st,
            Field::Msgs,
        ),
        false,
        1.0,
    );
    s += &target(
        "2",
        "stream msgs/s: shmring-queue ÷ spin ring",
        r(st("shmring-queue", "polling", "", 8), spin_st, Field::Msgs),
        false,
        0.4,
    );
    let big = 64 << 10;
    s += &target(
        "2",
        "64 KiB stream GB/s: shmring-spsc ÷ spin ring",
        r(
            st("shmring-spsc", "polling", "", big),
            st("spin-ring", "polling", "", big),
            Field::Bytes,
        ),
        false,
        0.8,
    );
    let best_pipe = |p: usize| {
        let (a, b) = (st("pipe", "polling", "", p), st("pipe", "blocking", "", p));
        match (a, b) {
            (Some(a), Some(b)) => Some(if best(a, Field::Msgs) >= best(b, Field::Msgs) {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        }
    };
    s += &target(
        "2",
        "64 KiB stream GB/s: shmring-spsc ÷ OS pipe (its better mode)",
        r(
            st("shmring-spsc", "polling", "", big),
            best_pipe(big),
            Field::Bytes,
        ),
        false,
        10.0,
    );
    s += &context(
        "2",
        "64 KiB stream GB/s: spin ring (two copies, nothing else) ÷ OS pipe: what a copying ring can reach against the pipe here",
        r(st("spin-ring", "polling", "", big), best_pipe(big), Field::Bytes),
    );
    let futex = rt("futex", "blocking", "");
    s += &target(
        "3",
        "blocking round trip, receiver sleeps (spin 0): shmring-spsc ÷ raw futex",
        r(rt("shmring-spsc", "blocking", "spin 0"), futex, Field::P50),
        true,
        1.1,
    );
    s += &target(
        "3",
        "blocking round trip (spin 0): shmring-spsc ÷ OS pipe (blocking)",
        r(
            rt("shmring-spsc", "blocking", "spin 0"),
            rt("pipe", "blocking", ""),
            Field::P50,
        ),
        true,
        1.0,
    );
    s += &target(
        "3",
        "blocking round trip, default spin-then-sleep ÷ polling (shmring-spsc)",
        r(
            rt("shmring-spsc", "blocking", ""),
            rt("shmring-spsc", "polling", ""),
            Field::P50,
        ),
        true,
        1.5,
    );
    s += &target(
        "3",
        "blocking stream msgs/s: shmring-spsc ÷ OS pipe (its better mode)",
        r(
            st("shmring-spsc", "blocking", "", 8),
            best_pipe(8),
            Field::Msgs,
        ),
        false,
        7.0,
    );
    let facade = d.find(
        "facade",
        "shmring Queue<u64> put+get",
        "polling",
        "1 thread",
        8,
    );
    let raw = d.find(
        "facade",
        "shmring mpmc push+pop (raw)",
        "polling",
        "1 thread",
        8,
    );
    s += &target(
        "5",
        "facade: `Queue<u64>` put+get ÷ raw mpmc push+pop (ns/msg)",
        r(facade, raw, Field::NsPerOp),
        true,
        1.15,
    );
    let handles = d.find(
        "facade",
        "shmring Queue<u64> Sender/Receiver",
        "polling",
        "1 thread",
        8,
    );
    s += &target(
        "5",
        "facade: `Queue<u64>` `Sender`/`Receiver` put+get ÷ raw mpmc push+pop (ns/msg)",
        r(handles, raw, Field::NsPerOp),
        true,
        1.15,
    );
    let dict = d.find(
        "dict",
        "shmring Dict::update_with",
        "blocking",
        "2 processes",
        8,
    );
    let py = d.find(
        "dict",
        "python Manager().dict() + Lock",
        "blocking",
        "2 processes",
        8,
    );
    s += &target(
        "6",
        "Dict: `update_with` ops/s from 2 processes ÷ Python Manager dict + Lock",
        r(dict, py, Field::Msgs),
        false,
        100.0,
    );
    s += &growth_report::target_rows(d.growth.as_ref());
    s += "\nTarget 4 (no system call per message when nobody sleeps), `strace -f -c`:\n\n";
    let calls: Vec<&String> = d
        .results
        .notes
        .iter()
        .filter(|n| n.starts_with("syscalls:"))
        .collect();
    if calls.is_empty() {
        s += "- not measured (strace missing or `--no-strace`)\n";
    }
    for n in calls {
        let _ = writeln!(s, "- {}", n.trim_start_matches("syscalls: "));
    }
    let mut missing = vec!["target 7 (MPMC scaling needs a 16-core machine)".to_string()];
    if !d.has_iceoryx2() {
        missing.insert(
            0,
            "the iceoryx2 comparisons (build with --features iceoryx2)".into(),
        );
    }
    let _ = writeln!(s, "\nNot measured in this run: {}.", missing.join("; "));
    s
}

/// A whole number, as it is.
fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// Issue 17's table: shmring's public API against the floors, 8 B unless
/// said; the ratios as the targets' (best; paired range).
fn floors(d: &Data) -> String {
    let rt = |m: &str, mode: &str| d.find("round_trip", m, mode, "", 8);
    let st = |m: &str, p: usize| d.find("stream", m, "polling", "", p);
    let r = |a: Option<&Record>, b: Option<&Record>, f: Field| {
        a.zip(b)
            .and_then(|(a, b)| ratio(a, b, f))
            .map_or("—".into(), fmt_ratio)
    };
    let mut s = String::from("| row | shmring ÷ floor (best; per-repetition range) |\n|---|---|\n");
    let futex_spin = rt("futex-spin", "blocking");
    let spin = rt("spin-ring", "polling");
    for m in ["shmring-pipe", "shmring-queue-vec", "shmring-spsc"] {
        let _ = writeln!(
            s,
            "| blocking round trip p99.9, default policy: {m} ÷ futex-spin (futex + 5 µs spin) | {} |",
            r(rt(m, "blocking"), futex_spin, Field::P999)
        );
    }
    let runs =
        |m: &str| rt(m, "blocking").map_or("—".into(), |rec| range(rec, Field::SlowRun, count));
    let _ = writeln!(
        s,
        "| blocking, slow (> 10 µs) round trips in a row: shmring-pipe / futex-spin (figures, not a ratio) | {} / {} |",
        runs("shmring-pipe"),
        runs("futex-spin")
    );
    for m in ["shmring-pipe", "shmring-queue", "shmring-queue-vec"] {
        let _ = writeln!(
            s,
            "| polling round trip p50: {m} ÷ spin ring | {} |",
            r(rt(m, "polling"), spin, Field::P50)
        );
    }
    let big = 64 << 10;
    let _ = writeln!(
        s,
        "| 64 KiB stream bytes/s: shmring-pipe ÷ spin ring | {} |",
        r(st("shmring-pipe", big), st("spin-ring", big), Field::Bytes)
    );
    let _ = writeln!(
        s,
        "| stream msgs/s: shmring-queue-vec (`Queue<Vec<u8>>`) ÷ spin ring | {} |",
        r(st("shmring-queue-vec", 8), st("spin-ring", 8), Field::Msgs)
    );
    s
}

/// The repetition whose p99.9 is the median of the record's: the curve
/// drawn for it.
fn median_rep(r: &Record) -> Option<&Rep> {
    let mut reps: Vec<&Rep> = r
        .reps
        .iter()
        .filter(|rep| rep.p999_ns.is_some() && !rep.curve.is_empty())
        .collect();
    reps.sort_by_key(|rep| rep.p999_ns);
    reps.get(reps.len() / 2).copied()
}

/// The percentile curves of the 8 B round trips (default variant), one
/// panel per mode, the floors dashed.
fn tails_chart(d: &Data) -> String {
    const FLOORS: [&str; 4] = ["spin-ring", "spin-ring-seq", "futex", "futex-spin"];
    let panels: Vec<CurvePanel> = ["polling", "blocking"]
        .into_iter()
        .map(|mode| CurvePanel {
            title: format!("8 B round trip, {mode}: latency at each percentile (log–log)"),
            unit: "ns".into(),
            curves: d
                .results
                .records
                .iter()
                .filter(|r| {
                    r.kind == "round_trip"
                        && r.payload == 8
                        && r.mode == mode
                        && r.variant.is_empty()
                })
                .filter_map(|r| {
                    let rep = median_rep(r)?;
                    let mut points: Vec<(f64, f64)> =
                        rep.curve.iter().map(|&(p, v)| (p, v as f64)).collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Some(Curve {
                        label: r.mechanism.clone(),
                        points,
                        dashed: FLOORS.contains(&r.mechanism.as_str()),
                    })
                })
                .collect(),
        })
        .collect();
    curve_chart(
        "Round-trip tails between two processes (8 B)",
        "each line: the repetition with the median p99.9; dashed: the floors (spin ring, spin ring polling its slots, futex, futex + 5 µs spin)",
        &panels,
    )
}

/// The alternatives each shmring figure is divided by.
const ALTERNATIVES: [&str; 12] = [
    "spin-ring",
    "spin-ring-seq",
    "futex",
    "futex-spin",
    ICEORYX2,
    "pipe",
    "unix-socket",
    "rtrb (threads)",
    "crossbeam ArrayQueue (threads)",
    "python mp.Queue",
    "python mp.Pipe",
    "python faster-fifo",
];

fn ratio_tables(d: &Data) -> String {
    let mut s = String::new();
    for (kind, f, what) in [
        (
            "round_trip",
            Field::P50,
            "Round trip p50: shmring ÷ alternative (below 1: shmring faster)",
        ),
        (
            "stream",
            Field::Msgs,
            "Stream msgs/s: shmring ÷ alternative (above 1: shmring faster)",
        ),
    ] {
        let _ = writeln!(s, "### {what}\n");
        s += "Each alternative in the same mode only: threads (rtrb, crossbeam) beside polling rows, Python (blocking calls) beside blocking rows. \
              Best repetition of each; the range pairs repetition i with repetition i.\n\n";
        let present: Vec<&str> = ALTERNATIVES
            .into_iter()
            .filter(|a| {
                d.results
                    .records
                    .iter()
                    .any(|r| r.kind == kind && r.mechanism == *a)
            })
            .collect();
        let _ = writeln!(s, "| payload | shmring | {} |", present.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(present.len()));
        for r in d
            .results
            .records
            .iter()
            .filter(|r| r.kind == kind && r.mechanism.starts_with("shmring-"))
        {
            let mut row = format!("| {} B | {} |", r.payload, name(r));
            for alt in &present {
                // Baselines in the same mode; threads only beside polling,
                // Python (blocking calls) only beside blocking.
                let mode = if alt.contains("threads") {
                    "polling"
                } else if alt.starts_with("python") {
                    "blocking"
                } else {
                    r.mode.as_str()
                };
                let other = (mode == r.mode)
                    .then(|| d.find(kind, alt, mode, "", r.payload))
                    .flatten();
                let cell = other
                    .and_then(|o| ratio(r, o, f))
                    .map_or("—".into(), fmt_ratio);
                let _ = write!(row, " {cell} |");
            }
            s += &row;
            s += "\n";
        }
        s += "\n";
    }
    s
}

fn figures(d: &Data) -> String {
    let mut s = String::from("### Round trips (min–max over repetitions)\n\nSlow run: the most consecutive round trips over 10 µs.\n\n| payload | mechanism (mode) | p50 | p99 | p99.9 | max | slow run |\n|---|---|---|---|---|---|---|\n");
    for r in d.results.records.iter().filter(|r| r.kind == "round_trip") {
        let _ = writeln!(
            s,
            "| {} B | {} | {} | {} | {} | {} | {} |",
            r.payload,
            name(r),
            range(r, Field::P50, ns),
            range(r, Field::P99, ns),
            range(r, Field::P999, ns),
            range(r, Field::Max, ns),
            range(r, Field::SlowRun, count)
        );
    }
    s += "\n### One-way streams (min–max over repetitions)\n\n| payload | mechanism (mode) | msgs/s | bytes/s |\n|---|---|---|---|\n";
    for r in d.results.records.iter().filter(|r| r.kind == "stream") {
        let _ = writeln!(
            s,
            "| {} B | {} | {} | {}B/s |",
            r.payload,
            name(r),
            range(r, Field::Msgs, si),
            range(r, Field::Bytes, si)
        );
    }
    s += "\n### Dict and facade (min–max over repetitions)\n\n| what | figure |\n|---|---|\n";
    for r in d.results.records.iter().filter(|r| r.kind == "dict") {
        let _ = writeln!(s, "| {} | {} ops/s |", name(r), range(r, Field::Msgs, si));
    }
    for r in d.results.records.iter().filter(|r| r.kind == "facade") {
        let _ = writeln!(
            s,
            "| {} | {} ns/op |",
            name(r),
            range(r, Field::NsPerOp, |v| format!("{v:.1}"))
        );
    }
    s
}

fn charts(d: &Data) -> (String, String) {
    let mut panels = Vec::new();
    for mode in ["polling", "blocking"] {
        let mut bars = Vec::new();
        for r in d
            .results
            .records
            .iter()
            .filter(|r| r.kind == "round_trip" && r.payload == 8 && r.mode == mode)
        {
            for (series, f) in [Field::P50, Field::P99, Field::P999]
                .into_iter()
                .enumerate()
            {
                if let Some((lo, hi)) = r.range(|rep| f.get(rep)) {
                    bars.push(Bar {
                        label: name(r),
                        series,
                        best: lo,
                        worst: hi,
                    });
                }
            }
        }
        panels.push(Panel {
            title: format!("8 B round trip, {mode} (log scale)"),
            unit: "ns".into(),
            bars,
        });
    }
    let latency = bar_chart(
        "Round-trip latency between two processes (8 B)",
        &["p50", "p99", "p99.9"],
        &panels,
    );
    let mut panels = Vec::new();
    for payload in [8usize, 1024, 64 << 10] {
        let bars = d
            .results
            .records
            .iter()
            .filter(|r| r.kind == "stream" && r.payload == payload)
            .filter_map(|r| {
                let (lo, hi) = r.range(|rep| Field::Msgs.get(rep))?;
                Some(Bar {
                    label: name(r),
                    series: 0,
                    best: hi,
                    worst: lo,
                })
            })
            .collect();
        panels.push(Panel {
            title: format!("{payload} B one-way stream (log scale)"),
            unit: "msgs/s".into(),
            bars,
        });
    }
    let throughput = bar_chart("One-way stream between two processes", &["msgs/s"], &panels);
    (latency, throughput)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut growth_file: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--growth" => growth_file = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: report RESULTS.json [MORE.json ...] [--growth FILE] [--out DIR]");
                return;
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    let Some(first) = files.first() else {
        eprintln!(
            "report: no results file (usage: report RESULTS.json [MORE.json ...] [--out DIR])"
        );
        std::process::exit(2);
    };
    let out = out.unwrap_or_else(|| first.parent().map(PathBuf::from).unwrap_or_default());
    let mut results: Option<Results> = None;
    for f in &files {
        let parsed: Results = match std::fs::read(f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("report: {}: {e}", f.display());
                std::process::exit(1);
            }
        };
        match &mut results {
            None => results = Some(parsed),
            Some(all) => {
                all.records.extend(parsed.records);
                all.notes.extend(parsed.notes);
                all.errors.extend(parsed.errors);
            }
        }
    }
    let d = Data {
        results: results.unwrap_or_default(),
        growth: growth_report::load(growth_file, first).unwrap_or_else(|e| {
            eprintln!("report: {e}");
            std::process::exit(1);
        }),
    };
    let md = markdown(&d);
    let (latency, throughput) = charts(&d);
    let tails = tails_chart(&d);
    let growth_svg = d.growth.as_ref().map(growth_report::chart);
    for (file, text) in [
        ("REPORT.md", md),
        ("latency.svg", latency),
        ("tails.svg", tails),
        ("throughput.svg", throughput),
    ]
    .into_iter()
    .chain(growth_svg.map(|svg| ("growth.svg", svg)))
    {
        let path = out.join(file);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("report: writing {}: {e}", path.display());
            std::process::exit(1);
        }
        eprintln!("report: wrote {}", path.display());
    }
}

fn markdown(d: &Data) -> String {
    let r = &d.results;
    let m = &r.machine;
    let counts = |v: &[(usize, u64)]| {
        v.iter()
            .map(|(p, n)| format!("{n} at {p} B"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "# shmring benchmark report\n\n\
         Generated by `report` from `xbench` output; every figure below comes from this one run.\n\n\
         - **Machine**: {} CPUs, {}, Linux {}, clock source {}\n\
         - **Date (UTC)**: {}\n\
         - **Command**: `{}`, {} repetitions, interleaved\n\
         - **Round trips recorded**: {}; **messages streamed**: {} (after warm-up, same for every mechanism)\n\
         - **Regenerate**: `cargo run --release -p shmring-benches --features iceoryx2 --bin xbench -- --json benches/results/results.json && \
         cargo run --release -p shmring-benches --bin growth -- --json benches/results/growth.json && \
         cargo run --release -p shmring-benches --bin report -- benches/results/results.json` \
         (without `--features iceoryx2`, which needs clang and libclang-dev, iceoryx2 is not measured)\n\n\
         Two processes (the bench binary re-executed as the peer), pinned to two distinct CPUs, 1 MiB of buffer per \
         direction for every mechanism. A round trip sends the payload and waits for the peer's echo; a stream sends one \
         way, the peer checks length and sequence of each message and acknowledges the last. Polling = non-blocking \
         tries in a spin loop (for the OS pipe and socket: `O_NONBLOCK`, one system call per try); blocking = the \
         blocking calls (shmring spins 5 µs before sleeping unless `[spin 0]`). Figures on these VMs are bimodal and \
         other work shares the machine: each figure is the min–max over repetitions, and ratios use the best \
         repetition of each side, with the range over paired repetitions in parentheses.\n\n\
         ![latency](latency.svg)\n![tails](tails.svg)\n![throughput](throughput.svg)\n\n## Targets of issue 4\n\n",
        m.nproc,
        m.cpu,
        m.kernel,
        m.clocksource,
        m.date,
        r.command,
        r.repetitions,
        counts(&r.round_trips),
        counts(&r.messages)
    );
    s += &targets(d);
    s += "\n## Against the floors (issue 17)\n\n\
          futex-spin is the raw futex ping-pong with a 5 µs spin before it sleeps (the floor of a \
          spin-then-sleep wait, shmring's default policy); futex, the one that always sleeps, is the \
          floor of a hand-off to a sleeper. Run xbench with `--busy 1` (a busy loop on the peer's core) \
          or `--busy 4 --no-pin` (6 processes on 2 cores) for the oversubscribed rows.\n\n";
    s += &floors(d);
    s += "\n## Ratios\n\n";
    s += &ratio_tables(d);
    match &d.growth {
        Some(g) => s += &growth_report::markdown(g),
        None => s += "## Target 8: how cost grows, and many queues\n\nNot measured: run the `growth` bin \
                      (`cargo run --release -p shmring-benches --bin growth -- --json benches/results/growth.json`).\n",
    }
    s += "\n## All figures\n\n";
    s += &figures(d);
    s += "\n## Notes\n\n";
    for n in r.notes.iter().filter(|n| !n.starts_with("syscalls:")) {
        let _ = writeln!(s, "- {n}");
    }
    let said = r.notes.iter().any(|n| n == ICEORYX2_ABSENT);
    if !d.has_iceoryx2() && !said {
        let _ = writeln!(s, "- {ICEORYX2_ABSENT}");
    }
    if !r.errors.is_empty() {
        s += "\n## Errors\n\n";
        for e in &r.errors {
            let _ = writeln!(s, "- {e}");
        }
    }
    s
}
