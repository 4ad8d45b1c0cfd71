//! `gc`: removing abandoned segments, never data or another user's file
//! unless told to.
//!
//! Crash recovery is the point of a named segment: a service that is
//! killed and restarted must find its queue, messages included. So `gc`
//! lists every abandoned segment with its kind, its depth and why it counts
//! as abandoned, and removes one that holds data only with `--include-data`
//! (judged again under the segment's locks at the removal, not only from
//! the listing);
//! one owned by another user only with `--all-users` (root's `gc` leaves
//! other users' files alone by default; with the flag it removes them as
//! their owner, through the library's own checks). A file is removed only
//! when it is proven a segment: [`segment::reclaim`] validates the header
//! again under the segment's locks (a file that merely starts with the
//! magic is an error, never removed), or it is a leftover of the fallback
//! create path under a private name.

use shmring::segment::{self, ObjectKind, Reclaimed, SegmentInfo, SegmentState};
use shmring::SegmentError;

use crate::args::Args;
use crate::commands::segment_name;
use crate::json::{self, Object};
use crate::scan::Scan;
use crate::show;
use crate::{escape, Failure};

/// What `gc` was asked to do.
struct Flags {
    dry_run: bool,
    include_data: bool,
    all_users: bool,
}

/// One abandoned segment and what became of it.
struct Outcome {
    info: SegmentInfo,
    why: String,
    /// `removed`, `would-remove` or `kept`.
    outcome: &'static str,
    /// Why it was kept.
    kept: Option<String>,
}

/// `shmring gc [--dry-run] [--json] [--include-data] [--all-users]
/// [--verbose] [NAME...]`.
pub fn gc(mut args: Args) -> Result<(), Failure> {
    let flags = Flags {
        dry_run: args.flag("--dry-run") | args.flag("-n"),
        include_data: args.flag("--include-data"),
        all_users: args.flag("--all-users"),
    };
    let json = args.flag("--json");
    let verbose = args.flag("--verbose") | args.flag("-v");
    let names = args.optional_rest()?;
    let mut first: Option<Failure> = None;
    let scan = if names.is_empty() {
        Scan::all()?
    } else {
        let mut scan = Scan::default();
        for name in names.iter().map(|n| segment_name(n)) {
            match segment::inspect(&name) {
                Ok(info) => scan.segments.push(info),
                Err(e) => {
                    let f = Failure::from(e);
                    f.print();
                    first.get_or_insert(f);
                }
            }
        }
        scan
    };
    let queues: Vec<String> = names
        .iter()
        .map(|n| crate::commands::queue_name(n))
        .collect();
    let cleaned = crate::bridges::clean(
        euid(),
        (!names.is_empty()).then_some(&queues[..]),
        flags.dry_run,
    );
    let mut results = Vec::new();
    for info in scan.segments.iter().filter(|i| i.is_abandoned()) {
        match decide(info, &flags) {
            Ok(outcome) => results.push(outcome),
            Err(f) => {
                f.print();
                first.get_or_insert(f);
            }
        }
    }
    if json {
        let items = results.iter().map(outcome_json);
        let out = Object::new()
            .bool("dry_run", flags.dry_run)
            .raw("segments", json::array(items))
            .raw("bridge_records", crate::bridges::json(&cleaned));
        println!("{}", scan.json_fields(out).finish());
    } else {
        print!("{}", text(&results));
        print!("{}", crate::bridges::text(&cleaned));
    }
    scan.warn(verbose);
    first.map_or(Ok(()), |f| Err(Failure::reported(f.code)))
}

/// Whether an abandoned segment holds data that a removal would lose:
/// `None` when its object could not be examined (then it may).
fn holds_data(info: &SegmentInfo) -> Option<bool> {
    match info.state {
        SegmentState::Ready => info.object.as_ref()?.holds_data,
        // A leftover of a create: never named, nothing was sent through it.
        SegmentState::Initialising | SegmentState::CreatorDied => Some(false),
    }
}

/// The kind and depth, as `gc` shows them.
fn contents(info: &SegmentInfo) -> String {
    let Some(h) = &info.header else {
        return "leftover of a create".into();
    };
    let kind = show::kind_name(h.kind);
    let depth = info.object.as_ref().and_then(|o| o.depth);
    match (h.kind, depth) {
        (ObjectKind::Lock, _) => format!("{kind}, no data"),
        (ObjectKind::Dict, Some(n)) => format!("{kind}, {n} entries"),
        (_, Some(n)) => format!("{kind}, {n} messages"),
        (_, None) => format!("{kind}, depth unknown"),
    }
}

fn decide(info: &SegmentInfo, flags: &Flags) -> Result<Outcome, Failure> {
    let kept = |why: String| Outcome {
        info: info.clone(),
        why: reason(info),
        outcome: "kept",
        kept: Some(why),
    };
    let uid = euid();
    let foreign = info.owner_uid != uid;
    if foreign && !flags.all_users {
        return Ok(kept(format!(
            "owned by uid {}, not by this user (--all-users removes it)",
            info.owner_uid
        )));
    }
    if foreign && uid != 0 {
        return Ok(kept(format!(
            "owned by uid {}: only root can remove another user's segment",
            info.owner_uid
        )));
    }
    match holds_data(info) {
        Some(false) => {}
        _ if flags.include_data => {}
        Some(true) => {
            return Ok(kept(
                "it holds data; a restarted peer can open it and get it \
                 (--include-data removes it)"
                    .into(),
            ))
        }
        None => {
            return Ok(kept(
                "it may hold data: its depth cannot be read (--include-data removes it)".into(),
            ))
        }
    }
    if flags.dry_run {
        return Ok(Outcome {
            info: info.clone(),
            why: reason(info),
            outcome: "would-remove",
            kept: None,
        });
    }
    // What `info` said about data is a snapshot: a peer may have attached,
    // put a message and died since. Unless told to remove data, the
    // removal decides that again, under the segment's locks.
    let remove = |name: &str| {
        if flags.include_data {
            segment::reclaim(name)
        } else {
            segment::reclaim_unless_data(name)
        }
    };
    // The library removes only the caller's own segments; root acts as
    // their owner for the removal (the file's owner, not root, decides).
    let reclaimed = if foreign {
        as_user(info.owner_uid, || remove(&info.name))?
    } else {
        remove(&info.name)
    };
    let (outcome, kept_because) = match reclaimed {
        Ok(Reclaimed::Removed) => ("removed", None),
        Ok(Reclaimed::Kept(reason)) => ("kept", Some(reason.to_owned())),
        Err(SegmentError::NotFound { .. }) => ("kept", Some("already gone".to_owned())),
        Err(e) => return Err(e.into()),
    };
    Ok(Outcome {
        info: info.clone(),
        why: reason(info),
        outcome,
        kept: kept_because,
    })
}

/// Runs `f` with the effective uid `uid` (root only), then root again.
///
/// # Errors
///
/// The switch fails. If switching back fails the process exits: it must not
/// go on as another user.
fn as_user<T>(uid: u32, f: impl FnOnce() -> T) -> Result<T, Failure> {
    // SAFETY: seteuid has no memory preconditions; the CLI runs no other
    // thread that could be surprised by the change (bench is not gc).
    if unsafe { libc::seteuid(uid) } != 0 {
        return Err(Failure::new(
            crate::EXIT_ERROR,
            format!(
                "cannot act as uid {uid}: {}",
                std::io::Error::last_os_error()
            ),
        ));
    }
    let out = f();
    // SAFETY: as above; the saved set-user-id is still 0.
    if unsafe { libc::seteuid(0) } != 0 {
        eprintln!(
            "shmring: cannot become root again: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(i32::from(crate::EXIT_ERROR));
    }
    Ok(out)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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

fn outcome_json(o: &Outcome) -> String {
    let h = o.info.header.as_ref();
    Object::new()
        .str("name", &o.info.name)
        .raw(
            "kind",
            h.map_or("null".into(), |h| json::string(show::kind_name(h.kind))),
        )
        .opt("depth", o.info.object.as_ref().and_then(|x| x.depth))
        .raw(
            "holds_data",
            holds_data(&o.info).map_or("null".into(), |b| b.to_string()),
        )
        .num("owner_uid", o.info.owner_uid)
        .str("reason", &o.why)
        .str("outcome", o.outcome)
        .raw(
            "kept_because",
            o.kept.as_deref().map_or("null".into(), json::string),
        )
        .finish()
}

fn text(results: &[Outcome]) -> String {
    if results.is_empty() {
        return "no abandoned segments\n".into();
    }
    let mut out = String::new();
    for o in results {
        let verb = match o.outcome {
            "would-remove" => "would remove",
            other => other,
        };
        let name = escape::name(&o.info.name);
        let contents = contents(&o.info);
        let line = match &o.kept {
            Some(kept) => format!(
                "{verb} {name} ({contents}): {}; abandoned: {}\n",
                escape::text(kept),
                o.why
            ),
            None => format!("{verb} {name} ({contents}): {}\n", o.why),
        };
        out.push_str(&line);
    }
    out
}
