//! `ls`, `stat`, `rm` and `gc`: looking at and removing segments.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use shmring::segment::{self, Reclaimed, SegmentInfo, SegmentState};
use shmring::{Segment, SegmentError};

use crate::args::Args;
use crate::show;
use crate::{Failure, EXIT_NOT_SHMRING};

/// Accepts `name`, `/name` and `/dev/shm/name`.
fn segment_name(arg: &str) -> String {
    arg.strip_prefix(segment::SHM_DIR).unwrap_or(arg).to_owned()
}

fn warn(e: &SegmentError) {
    eprintln!("shmring: warning: {e}");
}

/// `shmring ls [--json]`.
pub fn ls(mut args: Args) -> Result<(), Failure> {
    let json = args.flag("--json");
    args.finish()?;
    let mut infos = Vec::new();
    let mut errors = Vec::new();
    for entry in segment::list().map_err(Failure::from)? {
        match entry {
            Ok(info) => infos.push(info),
            Err(e) => errors.push(e),
        }
    }
    if json {
        let segments = crate::json::array(infos.iter().map(|i| show::info_json(i, false)));
        let errs = crate::json::array(errors.iter().map(|e| crate::json::string(&e.to_string())));
        let out = crate::json::Object::new()
            .raw("segments", segments)
            .raw("errors", errs)
            .finish();
        println!("{out}");
    } else {
        print!("{}", show::table(&infos));
    }
    errors.iter().for_each(warn);
    Ok(())
}

/// `shmring stat NAME [--json] [--watch [SECS]] [--count N]`.
pub fn stat(mut args: Args) -> Result<(), Failure> {
    let json = args.flag("--json");
    let watch = args.optional_value("--watch")?;
    let count = args.value("--count")?;
    let name = args.positional("NAME")?;
    args.finish()?;
    let interval = match &watch {
        Some(Some(secs)) => {
            let secs: f64 = secs
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    Failure::usage(format!("--watch wants seconds > 0, not {secs:?}"))
                })?;
            Some(Duration::from_secs_f64(secs))
        }
        Some(None) => Some(Duration::from_secs(1)),
        None => None,
    };
    let count: Option<u64> = match count {
        Some(n) => Some(
            n.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| Failure::usage(format!("--count wants a number > 0, not {n:?}")))?,
        ),
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
        show::info_json(&info, true) + "\n"
    } else {
        show::report(&info)
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

/// `shmring rm [--force] NAME...`: every name is tried; the exit code is
/// that of the first failure.
pub fn rm(mut args: Args) -> Result<(), Failure> {
    let force = args.flag("--force") | args.flag("-f");
    let names = args.rest("NAME")?;
    let mut first: Option<Failure> = None;
    for arg in names {
        let name = segment_name(&arg);
        match remove_one(&name, force) {
            Ok(()) => println!("removed {name}"),
            Err(f) => {
                eprintln!("shmring: {}", f.message);
                first.get_or_insert(f);
            }
        }
    }
    first.map_or(Ok(()), |f| Err(Failure::reported(f.code)))
}

fn remove_one(name: &str, force: bool) -> Result<(), Failure> {
    match segment::has_magic(name) {
        Ok(true) => {}
        Ok(false) if force => {}
        Ok(false) => {
            return Err(Failure {
                code: EXIT_NOT_SHMRING,
                message: format!(
                    "{name:?} is not a shmring segment; not removed (--force removes it anyway)"
                ),
            })
        }
        // Unreadable: cannot tell what it is; --force tries the unlink.
        Err(SegmentError::PermissionDenied { .. }) if force => {}
        Err(e) => return Err(e.into()),
    }
    Segment::unlink(name).map_err(Failure::from)
}

/// The segments `gc` looks at: the named ones, or every one.
fn candidates(names: &[String]) -> Result<Vec<Result<SegmentInfo, SegmentError>>, Failure> {
    if names.is_empty() {
        return segment::list().map_err(Failure::from);
    }
    let found = names.iter().map(|n| segment::inspect(&segment_name(n)));
    Ok(found.collect())
}

/// `shmring gc [--dry-run] [--json] [NAME...]`.
pub fn gc(mut args: Args) -> Result<(), Failure> {
    let dry_run = args.flag("--dry-run") | args.flag("-n");
    let json = args.flag("--json");
    let names = args.optional_rest()?;
    let mut results = Vec::new();
    let mut first: Option<Failure> = None;
    for entry in candidates(&names)? {
        let info = match entry {
            Ok(info) => info,
            Err(e) if names.is_empty() => {
                warn(&e);
                continue;
            }
            Err(e) => {
                let f = Failure::from(e);
                eprintln!("shmring: {}", f.message);
                first.get_or_insert(f);
                continue;
            }
        };
        if !info.is_abandoned() {
            continue;
        }
        let why = reason(&info);
        let outcome = if dry_run {
            "would-remove".to_string()
        } else {
            match segment::reclaim(&info.name) {
                Ok(Reclaimed::Removed) => "removed".into(),
                Ok(Reclaimed::Kept(reason)) => format!("kept: {reason}"),
                Err(SegmentError::NotFound { .. }) => "kept: already gone".into(),
                Err(e) => {
                    let f = Failure::from(e);
                    eprintln!("shmring: {}", f.message);
                    first.get_or_insert(f);
                    continue;
                }
            }
        };
        results.push((info.name, why, outcome));
    }
    if json {
        let items = results.iter().map(|(name, why, outcome)| {
            crate::json::Object::new()
                .str("name", name)
                .str("reason", why)
                .str("outcome", outcome)
                .finish()
        });
        let out = crate::json::Object::new()
            .bool("dry_run", dry_run)
            .raw("segments", crate::json::array(items))
            .finish();
        println!("{out}");
    } else if results.is_empty() {
        println!("no abandoned segments");
    } else {
        for (name, why, outcome) in &results {
            let verb = match outcome.as_str() {
                "would-remove" => "would remove",
                "removed" => "removed",
                other => other,
            };
            println!("{verb} {name} ({why})");
        }
    }
    first.map_or(Ok(()), |f| Err(Failure::reported(f.code)))
}

fn reason(info: &SegmentInfo) -> String {
    match info.state {
        SegmentState::CreatorDied => "its creator died while creating it".into(),
        _ => format!(
            "no live peer, {} dead; creator pid {}",
            info.dead_peers(),
            info.header.as_ref().map_or(0, |h| h.creator_pid)
        ),
    }
}
