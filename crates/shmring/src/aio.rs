//! Async handles for tokio (feature `tokio`): await a queue without a
//! thread per waiter and without polling.
//!
//! [`AsyncQueue`] wraps a [`Queue`](crate::queue::Queue): `get().await`,
//! `put(x).await` and their `_timeout` forms (tokio's clock),
//! [`AsyncQueue::into_stream`], a `futures_core::Stream` of its items, and
//! [`AsyncQueue::into_sink`], a `futures_sink::Sink` of them.
//! [`AsyncConnection`] wraps a pipe end: `recv().await`, `recv_bytes`,
//! `recv_timeout`, `send(&x).await`, `send_timeout`,
//! [`AsyncConnection::into_stream`] and [`AsyncConnection::into_sink`]. [`AsyncLock`] wraps a
//! [`Lock`](crate::lock::Lock) (`acquire().await`, `acquire_timeout`), and
//! [`AsyncJoinableQueue`] a [`JoinableQueue`](crate::queue::JoinableQueue)
//! (`get`, `put`, `task_done`, `join().await`, `join_timeout`). The other
//! end may be any handle of the same object, in this process or another,
//! sync or async: a sync producer (or releaser, or `task_done`) wakes an
//! async waiter through its ordinary publish path, and pays nothing when
//! nobody sleeps.
//!
//! # How an async wait sleeps
//!
//! Exactly as a sync sleeper does (see [`shmring_core::wait`]): try →
//! `key = seq` → `waiters += 1` → fence and heavy fence → re-check →
//! sleep while `seq == key` → `waiters -= 1` → re-check. Only the sleep
//! differs: instead of `FUTEX_WAIT_BITSET` on the calling thread, an
//! io_uring `FUTEX_WAIT` is queued on one ring per process, and the task
//! yields to the runtime; the ring's completion wakes the task through an
//! eventfd that tokio's reactor watches (why this mechanism: the
//! `sys::uring` module docs). A sleeping task costs no thread and no CPU;
//! it wakes by itself once per [`WaitPolicy::slice_ns`] (100 ms by
//! default) to re-check, the liveness bound every sleeper keeps.
//!
//! The ring's completions are reaped by a driver task in each runtime
//! that awaits (a task, not a thread), started by its first wait and ended
//! with the runtime; every driver hears of every completion, so a task
//! is woken even while its own runtime's driver waits for its turn. Of
//! the sleeping futures of a runtime, the one polled last also listens to
//! the eventfd itself, and reaps when it rings: the runtime then polls it straight
//! from the I/O event, without the hop through the driver task (for a
//! `block_on` future that hop cost tokio one more epoll round per wake).
//! The eventfd's counter is never read: tokio watches it edge-triggered,
//! and each signal wakes its watchers again.
//!
//! # Cancel safety
//!
//! * [`AsyncQueue::get`] and [`AsyncQueue::get_timeout`] are cancel-safe:
//!   a message is taken only inside a poll that then returns it, so a
//!   future dropped while pending (in `tokio::select!`, or by
//!   `tokio::time::timeout`) has taken nothing. Dropping it also ends its
//!   registration (`waiters -= 1`), cancels its io_uring wait, and passes
//!   on a wake-up it had already taken, so no other sleeper misses one.
//! * [`AsyncConnection`]'s receives and sends are cancel-safe too (see
//!   the type).
//! * [`AsyncLock::acquire`] and [`AsyncLock::acquire_timeout`] are
//!   cancel-safe: the lock is taken only inside the poll that returns its
//!   guard, so a dropped pending acquire holds nothing; it ends its
//!   registration and passes on a release's wake-up it had taken (a
//!   release wakes one sleeper: without the pass-on the next one would
//!   sleep on with the lock free).
//! * [`AsyncJoinableQueue::join`] and [`AsyncJoinableQueue::join_timeout`]
//!   are cancel-safe (a join changes nothing), and so are
//!   [`AsyncJoinableQueue::get`] and its timeout form, as
//!   [`AsyncQueue::get`] (a dropped get counts no task).
//! * [`AsyncQueue::put`] and [`AsyncQueue::put_timeout`] are not (nor are
//!   [`AsyncJoinableQueue`]'s): a dropped pending put has not put its
//!   item, and the item is dropped with the future (as with tokio's
//!   `mpsc::Sender::send`). Use `put_timeout`, which gives the item back,
//!   where that matters.
//! * A [`QueueSink`] or [`ConnectionSink`] dropped with an item it keeps
//!   (sent while the queue or ring was full, not yet flushed) drops that
//!   item unput; once `poll_flush` returned `Ready(Ok)`, every item sent
//!   is in the queue or ring. `SinkExt::send` and `send_all` futures are
//!   therefore not cancel-safe. Dropping a sink also ends its
//!   registration.
//!
//! # Runtime and process requirements
//!
//! * A tokio runtime with I/O and time enabled (`enable_all`, or
//!   `#[tokio::main]`): the eventfd is watched by tokio's I/O driver, the
//!   liveness slice and timeouts are tokio timers. In a runtime without
//!   I/O, the first wait that sleeps panics with tokio's own message ("IO
//!   is disabled"), as a tokio socket does there.
//! * The ring belongs to the process that made it: a process that forks
//!   without exec must not await in the child (the child would share the
//!   parent's ring). Children started through [`crate::process`] exec, and
//!   make their own.
//!
//! # Kernel support
//!
//! io_uring's futex wait needs Linux 6.7. Where io_uring is missing,
//! disabled or refuses the futex wait, an async wait re-checks every
//! millisecond instead (correct, but it polls).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use shmring_core::wait::{TimedOut, WaitPolicy, WaitWord};
use tokio::time::Instant;

use crate::sys::uring::{reactor, KeepAlive};
use crate::sys::FutexWaiter;

pub use crate::lock::AsyncLock;
pub use crate::pipe::{AsyncConnection, ConnectionSink, ConnectionStream};
pub use crate::queue::{AsyncJoinableQueue, AsyncQueue, QueueSink, QueueStream};

/// How often a wait re-checks when the io_uring futex wait is not
/// available (1 ms).
const FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// Set once the kernel refused an io_uring futex wait: waits poll from then on.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether async waits in this process sleep in io_uring futex waits
/// (`true`), or re-check every millisecond because io_uring or its futex
/// wait is not available here (`false`). The first call may create the
/// process's ring.
pub fn sleeps_without_polling() -> bool {
    // ORDERING: Relaxed — a process-local flag that only ever goes from
    // false to true; nothing is published with it.
    reactor().is_some() && !REFUSED.load(Ordering::Relaxed)
}

/// The sleeper's registration on a wait word, ended when dropped (also
/// when the future holding it is dropped).
struct Registered<'a>(&'a WaitWord);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.deregister();
    }
}

/// The async form of [`shmring_core::wait::block_on`]: calls `check(slow)`
/// until it answers, sleeping on `word` between tries without blocking the
/// thread, until `deadline` (`None`: never give up). `slow` is true on the
/// first check before sleeping, on the first check after each full slice,
/// and on the last check before a timeout. `keep` holds the mapping of
/// `word` alive (a queued wait may outlive this future).
///
/// No spin: a task that waits gives its thread back to the runtime at
/// once.
///
/// # Errors
///
/// [`TimedOut`] when `deadline` passed with `check` still `None` (checked
/// once more after it).
pub(crate) async fn block_on<R>(
    word: &WaitWord,
    waiter: &FutexWaiter,
    keep: &KeepAlive,
    policy: WaitPolicy,
    deadline: Option<Instant>,
    mut check: impl FnMut(bool) -> Option<R>,
) -> Result<R, TimedOut> {
    if let Some(r) = check(false) {
        return Ok(r);
    }
    let mut slow_due = Instant::now();
    loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return check(true).ok_or(TimedOut);
        }
        if now >= slow_due {
            slow_due = later(now, Duration::from_nanos(policy.slice_ns));
            if let Some(r) = check(true) {
                return Ok(r);
            }
        }
        let registration = word.register(waiter);
        let registered = Registered(word);
        if let Some(r) = check(false) {
            return Ok(r); // `registered` drops: waiters -= 1
        }
        let slice = Duration::from_nanos(registration.slice_ns(&policy));
        let polling = !sleeps_without_polling();
        let mut until = later(now, if polling { FALLBACK_SLICE } else { slice });
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let mut timer = pin!(tokio::time::sleep_until(until));
        let armed = match reactor() {
            Some(r) if !polling => r.arm(word.seq(), registration.key, keep.clone()).ok(),
            _ => None,
        };
        match armed {
            // Asleep until the wait completes. Each time the slice timer
            // fires first, the slow check runs and the same wait stays
            // queued (no cancel, no new registration, no heavy fence):
            // an idle task costs one timer wake-up per slice.
            Some(mut armed) => loop {
                let completed = poll_fn(|cx| match armed.poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                    Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
                })
                .await;
                if let Some(result) = completed {
                    if refused(result) {
                        // ORDERING: Relaxed — see `sleeps_without_polling`.
                        REFUSED.store(true, Ordering::Relaxed);
                    }
                    break;
                }
                // What no driver reaped yet is reaped at least once a slice.
                if let Some(r) = reactor() {
                    r.tick();
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    // `armed` drops: the wait is cancelled.
                    return check(true).ok_or(TimedOut);
                }
                slow_due = later(now, Duration::from_nanos(policy.slice_ns));
                if let Some(r) = check(true) {
                    return Ok(r);
                }
                let mut until = later(now, slice);
                if let Some(d) = deadline {
                    until = until.min(d);
                }
                timer.as_mut().reset(until);
            },
            None => timer.await,
        }
        drop(registered);
        if let Some(r) = check(false) {
            return Ok(r);
        }
    }
}

/// `now + d`, saturating a day later (a slice of "forever" still ends).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// Whether an io_uring futex wait's result says the kernel does not do
/// them (as opposed to: woken, word changed, interrupted, cancelled).
fn refused(result: i32) -> bool {
    !matches!(
        -result,
        0 | libc::EAGAIN | libc::EINTR | libc::ECANCELED | libc::ETIMEDOUT
    )
}

/// The `KeepAlive` of a segment attachment.
pub(crate) fn keep_alive(segment: &Arc<crate::segment::Segment>) -> KeepAlive {
    segment.clone()
}
