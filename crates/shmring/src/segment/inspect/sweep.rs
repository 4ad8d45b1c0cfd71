//! Sweeping `/dev/shm`: reclaiming every abandoned segment of this user.
//!
//! A named segment whose peers were all killed has nobody left to unlink it.
//! [`sweep`] finds such segments and removes them through [`reclaim`], which
//! decides again under locks. [`Segment::create`](crate::segment::Segment::create)
//! sweeps now and then on its own (see [`sweep_now_and_then`]), so that a
//! host where processes crash and restart does not fill `/dev/shm`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{list_with, reclaim, Reclaimed, SegmentInfo, SegmentState, SHM_DIR};
use crate::error::SegmentError;
use crate::segment::UnlinkPolicy;
use crate::sys::{self, shm};

/// How long an abandoned segment must have been idle (no attach, no create)
/// before a create's automatic sweep removes it.
pub(crate) const AUTO_SWEEP_IDLE: Duration = Duration::from_secs(60);

/// Removes every segment in `/dev/shm` whose name starts with `prefix`
/// (`""` or `"/"` for all; the leading `/` is optional), that this user owns, that is
/// abandoned ([`SegmentInfo::is_abandoned`]: its creator died creating it,
/// or no peer is alive and at least one died attached) and that has seen no
/// attach for at least `min_idle`. Returns the names removed.
///
/// A segment created with [`UnlinkPolicy::Never`] is kept unless its
/// creator died creating it: that policy asks for the name to outlive its
/// peers, so only [`reclaim`] (or `shmring gc`) removes it. Segments of
/// other users, files that are not segments, and segments that fail
/// validation are left alone.
///
/// # Errors
///
/// [`Io`](SegmentError::Io) when `/dev/shm` cannot be read. A segment that
/// cannot be inspected or reclaimed is skipped, not an error.
pub fn sweep(prefix: &str, min_idle: Duration) -> Result<Vec<String>, SegmentError> {
    let uid = shm::geteuid();
    let prefix = prefix.strip_prefix('/').unwrap_or(prefix);
    let mut removed = Vec::new();
    for info in list_with(false, prefix)?.into_iter().flatten() {
        if info.owner_uid != uid || !info.is_abandoned() || !sweepable(&info, min_idle) {
            continue;
        }
        if let Ok(Reclaimed::Removed) = reclaim(&info.name) {
            removed.push(info.name);
        }
    }
    Ok(removed)
}

/// The policy and idle checks of [`sweep`].
fn sweepable(info: &SegmentInfo, min_idle: Duration) -> bool {
    let min_idle_ns = u64::try_from(min_idle.as_nanos()).unwrap_or(u64::MAX);
    match info.state {
        SegmentState::Initialising => false,
        // Nothing to keep: nobody can ever open it. The creator attached
        // no row anyone can read, so the file's times say how old it is.
        SegmentState::CreatorDied => std::fs::metadata(format!("{SHM_DIR}{}", info.name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= min_idle),
        SegmentState::Ready => {
            let keep = info
                .header
                .is_none_or(|h| h.unlink_policy == UnlinkPolicy::Never);
            // The creator's own row is attached at create, so the newest
            // attach covers the creation too.
            let last_attach = info.peers.iter().map(|p| p.attached_at_ns).max();
            let now = sys::now().0;
            !keep && last_attach.is_some_and(|at| now.saturating_sub(at) >= min_idle_ns)
        }
    }
}

/// `CLOCK_MONOTONIC` seconds (plus one, so that 0 means "never") of the last
/// automatic sweep in this process.
static LAST_AUTO_SWEEP: AtomicU64 = AtomicU64::new(0);

/// Sweeps with [`AUTO_SWEEP_IDLE`] if this process has not swept in the last
/// [`AUTO_SWEEP_IDLE`]: on its first named create, and at most once a minute
/// after that. Errors are ignored: a sweep is housekeeping, never a reason
/// for a create to fail.
pub(crate) fn sweep_now_and_then() {
    let now = sys::now().0 / 1_000_000_000 + 1;
    // ORDERING: Relaxed on both sides: the word only elects which of this
    // process's threads sweeps; it publishes no other data (partner: the
    // compare_exchange below).
    let last = LAST_AUTO_SWEEP.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < AUTO_SWEEP_IDLE.as_secs() {
        return;
    }
    // ORDERING: Relaxed, as above (partner: the load above in other threads).
    if LAST_AUTO_SWEEP
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        let _ = sweep("", AUTO_SWEEP_IDLE);
    }
}
