//! The report's section on target 8, from the `growth` bin's JSON: the
//! zero-copy round trip across sizes (flat within ±20%?), the copying
//! path's GB/s beside memcpy's, and what 1,000 queues cost.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::analysis::{best, ns, range, Field};
use crate::growth::{self, size_label, Growth, SIZES};
use crate::svg::{bar_chart, Bar, Panel};
use crate::Record;

/// The `growth` bin's results: `file`, or `growth.json` beside `first`
/// when there is one (`None` when there is not).
///
/// # Errors
///
/// A file that cannot be read or parsed (a missing `growth.json` beside
/// `first` is no error).
pub fn load(file: Option<PathBuf>, first: &Path) -> Result<Option<Growth>, String> {
    let (path, named) = match file {
        Some(f) => (f, true),
        None => match first.parent() {
            Some(dir) => (dir.join("growth.json"), false),
            None => return Ok(None),
        },
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(_) if !named => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The flatness bound of target 8: every size within ±20% of 64 B.
pub const FLAT_WITHIN: f64 = 0.20;

fn find<'a>(
    g: &'a Growth,
    kind: &str,
    mech: &str,
    variant: &str,
    size: usize,
) -> Option<&'a Record> {
    g.records
        .iter()
        .find(|r| r.is(kind, mech, "polling", variant, size))
}

fn zero_copy<'a>(g: &'a Growth, variant: &str, size: usize) -> Option<&'a Record> {
    find(
        g,
        growth::ZERO_COPY,
        growth::ZERO_COPY_MECHANISM,
        variant,
        size,
    )
}

/// The best p50 at each size, and each one's deviation from the first
/// (smallest) size's.
fn spread(g: &Growth, variant: &str) -> Vec<(usize, f64, f64)> {
    let p50: Vec<(usize, f64)> = SIZES
        .iter()
        .filter_map(|&s| Some((s, best(zero_copy(g, variant, s)?, Field::P50)?)))
        .collect();
    let Some(&(_, base)) = p50.first() else {
        return Vec::new();
    };
    p50.into_iter()
        .map(|(s, v)| (s, v, v / base - 1.0))
        .collect()
}

/// `+13% at 4 MiB, −5% at 1 KiB` and whether every deviation is within
/// [`FLAT_WITHIN`]; `None` without figures.
fn flatness(g: &Growth, variant: &str) -> Option<(String, bool)> {
    let s = spread(g, variant);
    if s.len() < 2 {
        return None;
    }
    let hi = s.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
    let lo = s.iter().min_by(|a, b| a.2.total_cmp(&b.2))?;
    // A deviation: `+12%`, or `×1800` once it is past doubling.
    let dev = |d: f64| {
        if d.abs() < 1.0 {
            format!("{:+.0}%", d * 100.0).replace('-', "−")
        } else {
            format!("×{:.0}", 1.0 + d)
        }
    };
    let text = format!(
        "largest {} ({}), smallest {} ({}), against {}; max ÷ min {:.2}×",
        dev(hi.2),
        size_label(hi.0),
        dev(lo.2),
        size_label(lo.0),
        size_label(s[0].0),
        hi.1 / lo.1
    );
    let flat = s.iter().all(|x| x.2.abs() <= FLAT_WITHIN);
    Some((text, flat))
}

/// The rows for the report's target table.
pub fn target_rows(g: Option<&Growth>) -> String {
    let Some(g) = g else {
        return "| 8 | zero-copy round trip p50, 64 B → 4 MiB | — | each within ±20% of 64 B | not measured (run the `growth` bin) |\n".into();
    };
    let mut s = String::new();
    for (variant, what) in [
        (
            growth::HEADER_ONLY,
            "zero-copy round trip p50, 64 B → 4 MiB, header word only (the transport)",
        ),
        (
            growth::EVERY_BYTE,
            "zero-copy round trip p50, 64 B → 4 MiB, every byte written and read (for information)",
        ),
    ] {
        let (measured, verdict) = match flatness(g, variant) {
            None => ("—".to_string(), "not measured".to_string()),
            Some((text, _)) if variant == growth::EVERY_BYTE => (text, "information only".into()),
            Some((text, true)) => (text, "**pass**".into()),
            Some((text, false)) => (text, "**miss**".into()),
        };
        let _ = writeln!(
            s,
            "| 8 | {what} | {measured} | each within ±20% of 64 B | {verdict} |"
        );
    }
    s
}

fn gbps(v: f64) -> String {
    format!("{:.2}", v / 1e9)
}

fn cell(r: Option<&Record>, f: Field, show: fn(f64) -> String) -> String {
    r.map_or("—".into(), |r| range(r, f, show))
}

/// The section's markdown (a level-2 heading and its tables).
pub fn markdown(g: &Growth) -> String {
    let counts = |v: &[(usize, u64)]| {
        v.iter()
            .map(|(s, n)| format!("{n} at {}", size_label(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "## Target 8: how cost grows, and many queues\n\n\
         From `growth.json` (`{}`, repetitions: {}, interleaved; {} UTC). Round trips recorded: {}; \
         messages streamed: {}. Two processes pinned to two CPUs, as above.\n\n\
         ![growth](growth.svg)\n\n\
         ### Zero-copy round trip (`reserve`/`commit`, `read`/release), min–max over repetitions\n\n\
         *Header word only*: the sender stamps the 8-byte sequence word into the reserved slot and \
         commits; the receiver reads that word in place and releases: the transport's own cost. \
         *Every byte*: the sender fills the whole slot, the receiver reads (and checks) every byte. \
         *Copying*: `try_push` of a `&[u8]` and `try_pop` into a `Vec` (the `shmring-spsc` round trip above).\n\n\
         | size | header word only p50 | p99 | every byte p50 | p99 | copying p50 | p99 |\n|---|---|---|---|---|---|---|\n",
        g.command,
        g.repetitions,
        g.machine.date,
        counts(&g.round_trips),
        counts(&g.messages),
    );
    for size in SIZES {
        let h = zero_copy(g, growth::HEADER_ONLY, size);
        let e = zero_copy(g, growth::EVERY_BYTE, size);
        let c = find(g, "round_trip", growth::COPYING_MECHANISM, "", size);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            size_label(size),
            cell(h, Field::P50, ns),
            cell(h, Field::P99, ns),
            cell(e, Field::P50, ns),
            cell(e, Field::P99, ns),
            cell(c, Field::P50, ns),
            cell(c, Field::P99, ns),
        );
    }
    for (variant, what) in [
        (growth::HEADER_ONLY, "Header word only"),
        (growth::EVERY_BYTE, "Every byte"),
    ] {
        if let Some((text, flat)) = flatness(g, variant) {
            let verdict = if flat { "within" } else { "**not** within" };
            let _ = writeln!(s, "\n{what}, best p50 per size: {text}: {verdict} ±20%.");
        }
    }
    s += "\n### The copying path beside memcpy (GB/s, min–max over repetitions)\n\n\
          *Stream*: `shmring-spsc` one way between two processes, one copy in (`try_push`) and one out \
          (`try_pop`) per message, on two cores. *memcpy*: one process, one core, `size` bytes at a time between \
          two buffers, hot in cache, or walking a working set as large as the stream's ring.\n\n\
          | size | stream GB/s | memcpy hot GB/s | memcpy ring-sized GB/s | stream ÷ memcpy ring-sized |\n|---|---|---|---|---|\n";
    for size in SIZES {
        let st = find(g, "stream", growth::COPYING_MECHANISM, "", size);
        let hot = find(
            g,
            growth::MEMCPY,
            growth::MEMCPY_MECHANISM,
            growth::HOT,
            size,
        );
        let ring = find(
            g,
            growth::MEMCPY,
            growth::MEMCPY_MECHANISM,
            growth::RING_SIZED,
            size,
        );
        let ratio = st
            .zip(ring)
            .and_then(|(a, b)| Some(best(a, Field::Bytes)? / best(b, Field::Bytes)?))
            .map_or("—".into(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {ratio} |",
            size_label(size),
            cell(st, Field::Bytes, gbps),
            cell(hot, Field::Bytes, gbps),
            cell(ring, Field::Bytes, gbps),
        );
    }
    s += &queues(g);
    for n in &g.notes {
        let _ = writeln!(s, "- {n}");
    }
    for e in &g.errors {
        let _ = writeln!(s, "- error: {e}");
    }
    s
}

fn bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", v / 1024.0 / 1024.0)
    } else if v >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

fn queues(g: &Growth) -> String {
    let mut s = String::from(
        "\n### Many queues: create, open, memory (named `Queue<Vec<u8>>`, default `CreateOptions`)\n\n\
         Create: `Queue::create` of each name in turn (the segment is sized with `ftruncate` + `posix_fallocate`). \
         Open: another process opens every name while the creator holds them. Drop: the creator's drop, unlink included. \
         Memory: one segment's file size and allocated bytes in `/dev/shm`; `RssShmem` growth (shared pages a process \
         touched) of the creator and of the opener, and the machine's `Shmem` growth (noisy: other processes count), per queue.\n\n\
         | shape | queues | create mean (p50, p99) | open mean (p50, p99) | drop mean | file | allocated | creator RSS | opener RSS | machine Shmem |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for q in &g.queues {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}, {}) | {} ({}, {}) | {} | {} | {} | {} | {} | {} |",
            q.shape,
            q.queues,
            ns(q.create_mean_ns),
            ns(q.create_p50_ns as f64),
            ns(q.create_p99_ns as f64),
            ns(q.open_mean_ns),
            ns(q.open_p50_ns as f64),
            ns(q.open_p99_ns as f64),
            ns(q.drop_mean_ns),
            bytes(q.file_bytes as f64),
            bytes(q.allocated_bytes as f64),
            bytes(q.creator_rss_bytes),
            bytes(q.opener_rss_bytes),
            bytes(q.system_shmem_bytes),
        );
    }
    if g.queues.is_empty() {
        s += "| not measured | | | | | | | | | |\n";
    }
    s += "\n";
    s
}

/// `growth.svg`: round-trip p50 by size, and the copying stream's GB/s
/// beside memcpy's.
pub fn chart(g: &Growth) -> String {
    let bar = |r: Option<&Record>, f: Field, series: usize, size: usize| {
        let (lo, hi) = r?.range(|rep| f.get(rep))?;
        let (best, worst) = if f.lower_is_better() {
            (lo, hi)
        } else {
            (hi, lo)
        };
        Some(Bar {
            label: size_label(size),
            series,
            best,
            worst,
        })
    };
    let mut latency = Vec::new();
    let mut rate = Vec::new();
    for size in SIZES {
        latency.extend(bar(
            zero_copy(g, growth::HEADER_ONLY, size),
            Field::P50,
            0,
            size,
        ));
        latency.extend(bar(
            zero_copy(g, growth::EVERY_BYTE, size),
            Field::P50,
            1,
            size,
        ));
        let copying = find(g, "round_trip", growth::COPYING_MECHANISM, "", size);
        latency.extend(bar(copying, Field::P50, 2, size));
        let st = find(g, "stream", growth::COPYING_MECHANISM, "", size);
        rate.extend(bar(st, Field::Bytes, 2, size));
        let ring = find(
            g,
            growth::MEMCPY,
            growth::MEMCPY_MECHANISM,
            growth::RING_SIZED,
            size,
        );
        rate.extend(bar(ring, Field::Bytes, 3, size));
    }
    bar_chart(
        "How cost grows with the message size (two processes)",
        &[
            "zero-copy, header",
            "zero-copy, all bytes",
            "copying",
            "memcpy (ring-sized)",
        ],
        &[
            Panel {
                title: "Round trip p50 (log scale)".into(),
                unit: "ns".into(),
                bars: latency,
            },
            Panel {
                title: "One-way stream vs single-process memcpy (log scale)".into(),
                unit: "B/s".into(),
                bars: rate,
            },
        ],
    )
}
