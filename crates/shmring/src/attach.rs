//! Claiming a role (producer, consumer, pipe end) that a dead peer may
//! still hold, and giving it back.

use shmring_core::sync::{AtomicU64, Ordering};

use crate::object::RoleError;
use crate::segment::Segment;

/// What a role word holds once its holder was found gone by the other side
/// and the object was closed on its behalf ([`mark_gone`]). No attachment's
/// token (the low half of a token is its peer row plus one, never 0), so it
/// is never alive: [`claim_role`] takes it like a dead holder's, and
/// [`mark_gone`] calls it gone.
pub(crate) const GONE: u64 = 1 << 32;

/// Claims `word` for this attachment: free, or held by a dead peer.
/// Returns what the word held before (0, a dead holder's, or [`GONE`]: a
/// waiter acted on the previous holder's death, see [`mark_gone`]; the
/// pipe must then treat the object as closed). A word holding this
/// attachment's own token is held by another of its handles, still open
/// (a handle gives its role back when dropped): taken, like a live peer's.
pub(crate) fn claim_role(
    word: &AtomicU64,
    segment: &Segment,
    role: &'static str,
) -> Result<u64, RoleError> {
    let token = segment.peer_token();
    loop {
        // ORDERING: Acquire — pairs with the Release store of 0 by the
        // previous holder's drop: its last publish is visible to us.
        let current = word.load(Ordering::Acquire);
        if current != 0 && (current == token || segment.is_peer_alive(current)) {
            let pid = segment
                .peers()
                .into_iter()
                .find(|p| p.token == current)
                .map(|p| p.pid);
            return Err(RoleError::RoleTaken { role, pid });
        }
        // ORDERING: AcqRel — Acquire as above; Release is not needed by
        // anyone but keeps the claim ordered before our first use of the role.
        if word
            .compare_exchange(current, token, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(current);
        }
    }
}

/// Gives a role back (on drop).
pub(crate) fn release_role(word: &AtomicU64, segment: &Segment) {
    // ORDERING: Release — our last publish happens before the next holder's
    // Acquire of this word.
    let _ = word.compare_exchange(
        segment.peer_token(),
        0,
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// Whether the peer holding `word` is gone: the word now says [`GONE`],
/// because its holder was found dead now (and the word moved from its
/// token to `GONE`) or before. An unheld role (0) is not "gone": a peer may
/// still attach. For every caller that *acts* on a holder's death: the
/// pipe closes the object on the dead holder's behalf, the SPSC ring
/// reports `Closed` to its waiter.
///
/// The liveness probe and the act cannot be one atomic step, and in
/// between another process may take the dead holder's role over (as
/// [`claim_role`] allows): closing then would break a pipe whose two ends
/// are alive and open, and reporting `Closed` would tell a waiter that
/// nobody holds a role that a live peer holds. So the decision is one CAS
/// on the role word, from the dead token to `GONE`, against the taker's
/// CAS from the same token to its own: if the taker wins, this returns
/// `false` (the role is held by a live peer: nothing is closed, the waiter
/// goes on waiting); if this wins, the taker's claim returns `GONE`, and
/// the taker acts accordingly (the pipe's closes the object itself before
/// using it, so it finds it closed whichever of the two closes first; the
/// SPSC ring's just takes the role, its `Closed` was never final).
///
/// With the cargo feature `failpoints`, the failpoint hook is called as
/// `role.holder-found-dead` between the probe and the CAS.
pub(crate) fn mark_gone(word: &AtomicU64, segment: &Segment) -> bool {
    // ORDERING: Acquire — pairs with the Release CAS of a claim or a mark:
    // a value seen here was stored by a holder whose attach is complete.
    let current = word.load(Ordering::Acquire);
    if current == GONE {
        return true;
    }
    if current == 0 || segment.is_peer_alive(current) {
        return false;
    }
    #[cfg(feature = "failpoints")]
    shmring_core::failpoint::hit("role.holder-found-dead", &[]);
    // ORDERING: AcqRel — the CAS that a takeover's CAS in `claim_role`
    // races (same expected value): exactly one of them succeeds. Release
    // orders nothing of ours that the taker needs (it closes the object
    // itself on seeing GONE); Acquire on failure reads the value that won.
    match word.compare_exchange(current, GONE, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(found) => found == GONE,
    }
}
