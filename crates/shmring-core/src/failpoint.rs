//! Failpoints: named places between the steps of each protocol where a test
//! can stop the world, most usefully by killing its own process.
//!
//! The core makes no system calls, so it cannot kill anything itself: it
//! calls a *hook*, a plain function pointer that the engine or a test
//! process installs with [`set_hook`]. The chaos harness
//! (`crates/shmring-chaos`) installs one that counts the hits of one chosen
//! failpoint and sends `SIGKILL` to its own process at the N-th.
//!
//! # Cost
//!
//! Everything here exists only with the cargo feature `failpoints` (off by
//! default). Without it the `failpoint!` calls in the protocols expand to
//! nothing, so release builds are untouched. With it, an unset hook costs one
//! relaxed load and a predictable branch per failpoint. Under `cfg(loom)` the
//! calls also expand to nothing: a process-wide hook means nothing to a model.
//!
//! # The failpoints
//!
//! | name | where |
//! |---|---|
//! | `ring.claimed` | producer (SPSC and MPMC): room claimed (a padding record may be written, unpublished) |
//! | `ring.payload-written` | producer: payload copied in, header not yet written |
//! | `ring.header-written` | producer: header written, tail not yet published |
//! | `ring.published` | producer: tail word (position and count) published, sleepers not yet woken |
//! | `mpmc.copied` | MPMC consumer: record copied out (context: the copy), head not yet CASed |
//! | `mpmc.cas-done` | MPMC consumer: head word CASed past the record and the record counted taken, in one step (it is ours alone now); producers not yet woken |
//! | `spsc.read` | SPSC consumer: record copied out (context: the copy), head not yet released |
//! | `spsc.released` | SPSC consumer: head released, `try_pop` not yet returned |
//! | `lock.acquire-cas` | lock: about to CAS the owner word (free or dead holder → us) |
//! | `lock.releasing` | lock: about to CAS the owner word back to 0 |
//! | `tasks.announced` | JoinableQueue consumer: a take announced in its slot, no record taken yet |
//! | `tasks.done` | JoinableQueue: a held task marked done in a slot, joiners not yet woken |
//!
//! The context bytes (empty for most failpoints) let a hook see what a
//! consumer was holding when it died: the chaos harness records the sequence
//! number found there before deciding whether to die.

/// A failpoint hook: called with the failpoint's name and its context bytes.
pub type Hook = fn(name: &'static str, context: &[u8]);

#[cfg(feature = "failpoints")]
mod imp {
    // A process-wide hook, not shared memory: it never lives in a segment
    // and is deliberately not a loom atomic (`crate::sync`), since a static
    // must not hold one and models never see failpoints anyway.
    use core::sync::atomic::{AtomicPtr, Ordering};

    use super::Hook;

    /// The installed hook as a data pointer; null = none.
    static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

    pub(super) fn set(hook: Option<Hook>) {
        let raw = hook.map_or(core::ptr::null_mut(), |h| h as *mut ());
        // ORDERING: Release — pairs with the Acquire in `hit`; a function
        // pointer needs no data published with it, but this keeps a hook that
        // was set before a thread started visible to it without a second
        // thought.
        HOOK.store(raw, Ordering::Release);
    }

    #[inline]
    pub(super) fn hit(name: &'static str, context: &[u8]) {
        // ORDERING: Acquire — pairs with the Release store in `set`.
        let raw = HOOK.load(Ordering::Acquire);
        if raw.is_null() {
            return;
        }
        // A `fn` pointer is the same size as a data pointer on every target
        // we build for.
        // SAFETY: every non-null value in HOOK was cast from a `Hook` by
        // `set`; casting it back yields that same function pointer.
        let hook: Hook = unsafe { core::mem::transmute::<*mut (), Hook>(raw) };
        hook(name, context);
    }
}

/// Installs (or with `None` removes) the process-wide failpoint hook.
///
/// Without the `failpoints` feature this does nothing.
pub fn set_hook(hook: Option<Hook>) {
    #[cfg(feature = "failpoints")]
    imp::set(hook);
    #[cfg(not(feature = "failpoints"))]
    let _ = hook;
}

/// Whether failpoints are compiled in (the `failpoints` feature).
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Calls the hook, if one is installed. Use the `failpoint!` macro instead:
/// it compiles to nothing without the feature.
#[doc(hidden)]
#[inline]
pub fn hit(name: &'static str, context: &[u8]) {
    #[cfg(feature = "failpoints")]
    imp::hit(name, context);
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, context);
}

/// `failpoint!("name")` or `failpoint!("name", context_bytes)`: calls the
/// failpoint hook with the feature `failpoints`, nothing at all without it
/// (the arguments are not even evaluated) and under loom. Declared first in
/// the crate root with `#[macro_use]`, so every module can call it unimported.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(all(feature = "failpoints", not(loom)))]
        $crate::failpoint::hit($name, &[]);
    };
    ($name:literal, $context:expr) => {
        #[cfg(all(feature = "failpoints", not(loom)))]
        $crate::failpoint::hit($name, &$context[..]);
    };
}

#[cfg(all(test, feature = "failpoints", not(loom)))]
mod tests {
    use core::sync::atomic::{AtomicUsize, Ordering};

    static HITS: AtomicUsize = AtomicUsize::new(0);

    fn count(name: &'static str, context: &[u8]) {
        if name == "test.point" && context == b"ctx" {
            // ORDERING: Relaxed — a test counter.
            HITS.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn hook_is_called_only_while_set() {
        super::set_hook(Some(count));
        failpoint!("test.point", b"ctx");
        super::set_hook(None);
        failpoint!("test.point", b"ctx");
        // ORDERING: Relaxed — a test counter, same thread.
        assert_eq!(HITS.load(Ordering::Relaxed), 1);
    }
}
