//! `ls` and `stat`: looking at segments.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use shmring::segment;

use crate::args::{self, Args};
use crate::scan::Scan;
use crate::show;
use crate::Failure;

/// Accepts `name`, `/name` and `/dev/shm/name`. Only a whole `/dev/shm/`
/// is stripped: `/dev/shmname` (a slash missing) stays as it is, an
/// invalid name, never the segment `/name`.
pub fn segment_name(arg: &str) -> String {
    match arg.strip_prefix(segment::SHM_DIR) {
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => arg.to_owned(),
    }
}

/// `name`, `/name` or `/dev/shm/name` as `/name`: the form the bridges'
/// stats records name their queue by.
pub fn queue_name(arg: &str) -> String {
    let n = segment_name(arg);
    if n.starts_with('/') {
        n
    } else {
        format!("/{n}")
    }
}

/// `shmring ls [--json] [--verbose]`.
pub fn ls(mut args: Args) -> Result<(), Failure> {
    let json = args.flag("--json");
    let verbose = args.flag("--verbose") | args.flag("-v");
    args.finish()?;
    let scan = Scan::all()?;
    if json {
        let segments = crate::json::array(scan.segments.iter().map(|i| show::info_json(i, false)));
        let out = crate::json::Object::new().raw("segments", segments);
        println!("{}", scan.json_fields(out).finish());
    } else {
        print!("{}", show::table(&scan.segments));
    }
    scan.warn(verbose);
    Ok(())
}

/// Longest `--watch` interval: a day.
const WATCH_MAX_SECS: f64 = 86_400.0;
/// Shortest `--watch` interval (anything shorter only burns a CPU).
const WATCH_MIN_SECS: f64 = 0.01;

/// `shmring stat NAME [--json] [--watch [SECS]] [--count N]`.
pub fn stat(mut args: Args) -> Result<(), Failure> {
    let json = args.flag("--json");
    let watch = args.optional_value("--watch")?;
    let count = args.value("--count")?;
    let name = args.positional("NAME")?;
    args.finish()?;
    let interval = match &watch {
        Some(Some(secs)) => Some(args::seconds(
            "--watch",
            secs,
            WATCH_MIN_SECS,
            WATCH_MAX_SECS,
        )?),
        Some(None) => Some(Duration::from_secs(1)),
        None => None,
    };
    let count = match count {
        Some(n) => Some(args::count("--count", &n, 1, u64::MAX)?),
        None => None,
    };
    let name = segment_name(&name);
    let Some(interval) = interval.or(count.map(|_| Duration::from_secs(1))) else {
        return stat_once(&name, json, Refresh::Once);
    };
    let mut refresh = if !json && std::io::stdout().is_terminal() {
        Refresh::Clear
    } else {
        Refresh::Once
    };
    let mut shown = 0u64;
    loop {
        stat_once(&name, json, refresh)?;
        if refresh == Refresh::Once {
            refresh = Refresh::Append;
        }
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Once,
    Clear,
    Append,
}

fn stat_once(name: &str, json: bool, refresh: Refresh) -> Result<(), Failure> {
    let info = segment::inspect(name).map_err(Failure::from)?;
    let text = if json {
        crate::bridges::json_fields(show::info_object(&info, true), &info.name).finish() + "\n"
    } else {
        show::report(&info) + &crate::bridges::report(&info.name)
    };
    let mut out = std::io::stdout().lock();
    match refresh {
        Refresh::Once => {}
        // A terminal shows the newest report alone.
        Refresh::Clear => {
            let _ = out.write_all(b"\x1b[H\x1b[2J");
        }
        // A pipe gets the reports one after another (JSON: one per line).
        Refresh::Append if !json => {
            let _ = out.write_all(b"\n");
        }
        Refresh::Append => {}
    }
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(())
}
