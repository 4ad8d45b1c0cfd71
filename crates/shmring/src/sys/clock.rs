//! `CLOCK_MONOTONIC` and the conversion of timeouts into deadlines.
//!
//! `FUTEX_WAIT_BITSET` without `FUTEX_CLOCK_REALTIME` takes an absolute
//! `CLOCK_MONOTONIC` time, so every [`Deadline`] in shmring is a point on that
//! clock, in nanoseconds since its (boot-time) origin. The clock is the same
//! for every process of a host, so a deadline may even be handed to a peer.

use std::time::Instant;

use shmring_core::wait::{Deadline, Until};

/// The current `CLOCK_MONOTONIC` time.
pub(crate) fn now() -> Deadline {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    // The monotonic clock is never negative; `max(0)` keeps a broken libc
    // from turning into a huge deadline.
    let secs = u64::try_from(ts.tv_sec.max(0)).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec.max(0)).unwrap_or(0);
    Deadline(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// `CLOCK_MONOTONIC_COARSE`: the same clock at the resolution of a
/// scheduler tick (1–4 ms), read without the TSC (a few nanoseconds, against
/// twenty or more for [`now`]). For pacing things measured in tens of
/// milliseconds, such as liveness probes; never for deadlines.
pub(crate) fn now_coarse() -> Deadline {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `now`; CLOCK_MONOTONIC_COARSE exists since Linux 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return now();
    }
    let secs = u64::try_from(ts.tv_sec.max(0)).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec.max(0)).unwrap_or(0);
    Deadline(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// The `_deadline` forms: a caller's [`Instant`] as a point on the clock
/// futexes measure (both are `CLOCK_MONOTONIC` on Linux, but `Instant`
/// does not show its value, so the distance from now is carried over). An
/// instant already past tries once.
pub(crate) fn until_instant(deadline: Instant) -> Until {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Until::Now;
    }
    Until::At(now().after(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)))
}

/// The time in nanoseconds from `earlier` to `later`, zero if negative.
pub(crate) fn nanos_between(earlier: Deadline, later: Deadline) -> u64 {
    later.0.saturating_sub(earlier.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn now_is_monotonic() {
        let a = now();
        let b = now();
        assert!(b >= a);
        assert!(a.0 > 0);
    }

    #[test]
    fn timeouts_become_waits() {
        assert_eq!(Until::after(Duration::ZERO), Until::Now);
        assert_eq!(Until::after(Duration::MAX), Until::After(u64::MAX));
        assert_eq!(
            Until::after(Duration::from_secs(10)),
            Until::After(10_000_000_000)
        );
        let at = Until::after(Duration::from_secs(10)).deadline(now).unwrap();
        assert!(at > now());
    }

    #[test]
    fn instants_become_deadlines_on_the_futex_clock() {
        assert_eq!(until_instant(Instant::now()), Until::Now);
        let past = Instant::now().checked_sub(Duration::from_secs(1));
        if let Some(past) = past {
            assert_eq!(until_instant(past), Until::Now);
        }
        let before = now();
        let Until::At(at) = until_instant(Instant::now() + Duration::from_secs(10)) else {
            panic!("a future instant is a deadline");
        };
        let after = now();
        assert!(at.0 >= before.0 + 9_000_000_000 && at.0 <= after.0 + 10_000_000_000);
    }

    #[test]
    fn the_coarse_clock_follows_the_fine_one() {
        let coarse = now_coarse();
        let fine = now();
        // Coarse lags by at most a tick (a generous 50 ms here) and never
        // runs ahead of a later fine reading.
        assert!(coarse <= fine, "{coarse:?} after {fine:?}");
        assert!(fine.0 - coarse.0 < 50_000_000, "{coarse:?} vs {fine:?}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(now_coarse() > coarse, "the coarse clock moves");
    }
}
