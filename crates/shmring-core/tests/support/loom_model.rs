//! The harness every loom test file shares (included with `#[path]`; not a
//! test target of its own).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Runs `f` under loom with at most two preemptions (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise) and asserts that loom explored at
/// least `min_iterations` interleavings, so that a model which silently
/// shrinks (an actor left on the model's main thread, say) fails.
pub fn model(name: &str, min_iterations: usize, f: impl Fn() + Sync + Send + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(move || {
        // ORDERING: Relaxed — a count outside the model; read by the load
        // below after `check` returns, on this same thread.
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    // ORDERING: Relaxed — pairs with the increments above, which `check`
    // ran on this thread before returning.
    let n = count.load(Ordering::Relaxed);
    println!("{name}: {n} interleavings");
    assert!(
        n >= min_iterations,
        "{name} explored only {n} interleavings"
    );
}
