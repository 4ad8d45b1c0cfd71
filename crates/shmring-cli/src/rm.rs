//! `rm`: removing segment names, never a live one by accident.
//!
//! Removing the name of a segment that live processes use does not stop
//! them (their mappings stay), but it splits them from everyone who comes
//! later: the next create under the name makes a second, empty object while
//! the service keeps using the first one. So `rm` looks first (without
//! attaching) and refuses a segment with a live peer, or one being created,
//! unless `--force`, naming the peers' pids; and it removes the name with
//! [`segment::unlink_unless_in_use`], which decides that again under the
//! segment's locks, so a peer that attaches after the look keeps its name
//! too.

use shmring::segment::{self, Reclaimed, SegmentInfo, SegmentState};
use shmring::{Segment, SegmentError};

use crate::args::Args;
use crate::commands::segment_name;
use crate::{escape, Failure, EXIT_IN_USE, EXIT_NOT_FOUND, EXIT_NOT_SHMRING};

/// `shmring rm [--force] NAME...`: every name is tried; the exit code is
/// that of the first failure.
pub fn rm(mut args: Args) -> Result<(), Failure> {
    let force = args.flag("--force") | args.flag("-f");
    let names = args.rest("NAME")?;
    let mut first: Option<Failure> = None;
    for arg in names {
        let name = segment_name(&arg);
        let result = remove_one(&name, force);
        match &result {
            Ok(()) => println!("removed {}", escape::name(&name)),
            Err(f) => f.print(),
        }
        // The queue gone (now or before), its dead bridges' records go too.
        if result.as_ref().is_ok() || result.as_ref().is_err_and(|f| f.code == EXIT_NOT_FOUND) {
            let queue = crate::commands::queue_name(&name);
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            let cleaned = crate::bridges::clean(uid, Some(&[queue]), false);
            print!("{}", crate::bridges::text(&cleaned));
        }
        if let Err(f) = result {
            first.get_or_insert(f);
        }
    }
    first.map_or(Ok(()), |f| Err(Failure::reported(f.code)))
}

/// Why `info` must not be removed without `--force`, if it must not.
fn in_use(info: &SegmentInfo) -> Option<String> {
    let name = escape::name(&info.name);
    if info.state == SegmentState::Initialising {
        return Some(format!("{name} is being created right now"));
    }
    if info.init_locked {
        return Some(format!(
            "segment {name} is busy: another process holds its name lock"
        ));
    }
    let live: Vec<String> = info
        .peers
        .iter()
        .filter(|p| p.alive)
        .map(|p| p.pid.to_string())
        .collect();
    if live.is_empty() {
        return None;
    }
    let (peers, pids) = if live.len() == 1 {
        ("peer", "pid")
    } else {
        ("peers", "pids")
    };
    Some(format!(
        "segment {name} is in use by {} live {peers} ({pids} {}, as they recorded them)",
        live.len(),
        live.join(", ")
    ))
}

fn remove_one(name: &str, force: bool) -> Result<(), Failure> {
    const FORCE: &str = "not removed (--force removes it anyway)";
    match segment::inspect(name) {
        Ok(info) => {
            if let Some(why) = in_use(&info) {
                if !force {
                    return Err(Failure::new(EXIT_IN_USE, format!("{why}; {FORCE}")));
                }
            }
            if !force {
                // What the look said is a snapshot: a peer may attach
                // before the unlink. Decide again, under the locks.
                return match segment::unlink_unless_in_use(name)? {
                    Reclaimed::Removed => Ok(()),
                    Reclaimed::Kept(why) => Err(Failure::new(
                        EXIT_IN_USE,
                        format!("segment {} is in use: {why}; {FORCE}", escape::name(name)),
                    )),
                };
            }
        }
        Err(SegmentError::NotShmring { .. }) if force => {}
        Err(SegmentError::NotShmring { .. }) => {
            return Err(Failure::new(
                EXIT_NOT_SHMRING,
                format!("{} is not a shmring segment; {FORCE}", escape::name(name)),
            ))
        }
        // Unreadable: cannot tell what it is; --force tries the unlink.
        Err(e) if force && crate::scan::is_permission(&e) => {}
        // Missing, an invalid name, unreadable: nothing to force.
        Err(
            e @ (SegmentError::NotFound { .. }
            | SegmentError::InvalidName { .. }
            | SegmentError::PermissionDenied { .. }),
        ) => return Err(e.into()),
        // The magic, but a header that fails validation: nothing tells
        // whether peers use it.
        Err(_) if force => {}
        Err(e) => {
            let f = Failure::from(e);
            return Err(Failure::new(
                f.code,
                format!("{}; cannot tell whether it is in use, {FORCE}", f.message),
            ));
        }
    }
    Segment::unlink(name).map_err(Failure::from)
}
