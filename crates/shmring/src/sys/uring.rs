//! The async sleeper's futex wait: one io_uring per process whose
//! `IORING_OP_FUTEX_WAIT` submissions sleep on wait words without a thread,
//! and whose completions reach tokio through an eventfd (feature `tokio`).
//!
//! # Why io_uring, and not a waker thread or a doorbell per waiter
//!
//! The sync side must wake an async sleeper through its existing publish
//! path, `if waiters != 0 { seq += 1; FUTEX_WAKE }`, and pay nothing when
//! nobody sleeps. So the async sleeper has to sleep *on the futex word
//! itself*; an eventfd doorbell per waiter would need every sync waker to
//! learn about it (a descriptor passed between processes, a second wake).
//! That leaves two ways to sleep on a futex without blocking a runtime
//! thread:
//!
//! * **io_uring `FUTEX_WAIT`** (Linux 6.7): the kernel queues the wait on
//!   the futex exactly as `FUTEX_WAIT_BITSET` does (same shared key, same
//!   "sleep only while the word holds the key" check, a plain
//!   `FUTEX_WAKE` from any process wakes it) and posts a completion when it
//!   is woken; the ring signals a registered eventfd, which tokio's reactor
//!   watches like any socket. Any number of waits, no thread, no timer of
//!   ours (the liveness slice is a tokio timer). Checked on the build
//!   machine (Linux 6.18, `io_uring_disabled` = 0): 1,000 pending waits in
//!   one process add no thread (`tests/aio.rs` counts `/proc/self/task`),
//!   and a sync process's `FUTEX_WAKE` completes them.
//! * **one waker thread doing `futex_waitv`**: 128 words per call, so a
//!   thread per 128 distinct words, and adding a word means interrupting
//!   the thread's wait (a wake on a private word) and re-arming all of them:
//!   two extra system calls and a thread hop per registration.
//!
//! io_uring needs neither, so it is the mechanism. Where the ring cannot
//! be made (an older kernel, io_uring disabled by sysctl or seccomp) or the
//! kernel refuses `FUTEX_WAIT`, [`reactor`] says so and the async wait
//! falls back to re-checking every millisecond: slower and not idle, but
//! never wrong.
//!
//! # The wake path, and what it costs
//!
//! A `FUTEX_WAKE` completes the queued wait through task work on the
//! thread that submitted it: that thread's `epoll_wait` returns `EINTR`,
//! the completion is posted, the eventfd rings, and the next `epoll_wait`
//! reports it. Counted with `perf stat` on the syscall tracepoints
//! (`async_handoff proc-async-async`), a hand-off first cost 7 system calls
//! on the waking side against the sync sleeper's 3; two went:
//!
//! * the eventfd's counter is not read (tokio's epoll is edge-triggered,
//!   and every signal of an eventfd wakes its watchers again);
//! * the sleeping future listens to the eventfd itself (see
//!   [`Armed::poll`]), so a `block_on` future is not woken through the
//!   driver task, which made tokio poll its driver once more.
//!
//! `IORING_SETUP_DEFER_TASKRUN` would remove the `EINTR` round too (the
//! waker signals the eventfd directly), but it binds the ring to one
//! thread, and on Linux 6.18 its eventfd signal reached the sleeper
//! about 16 ms late (measured): not used.
//!
//! # Lost wake-ups that io_uring adds, and how they are passed on
//!
//! A queued wait that its future no longer wants (the future was dropped,
//! or its slice timer fired first) is cancelled, but the cancel races with
//! a `FUTEX_WAKE` that may already have picked it: that wake, meant for one
//! sleeper, would be lost with it. So a wait that completes as *woken*
//! after its future gave it up passes the wake on (`FUTEX_WAKE` of one on
//! the same word), and so does a future dropped between its wait's
//! completion and its re-check. A wake passed on needlessly only makes
//! another sleeper re-check.

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, IoUring};
use shmring_core::sync::AtomicU32;
use shmring_core::wait::Waiter;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::FutexWaiter;

/// The user data of cancel requests (their completions are ignored).
const CANCEL: u64 = u64::MAX;
/// `FUTEX2_SIZE_U32`, and not `FUTEX2_PRIVATE`: the word is shared between
/// processes (see [`super::futex`]).
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX_BITSET_MATCH_ANY`: a plain `FUTEX_WAKE` wakes the wait.
const MATCH_ANY: u64 = 0xffff_ffff;
/// Submission queue entries (completions: twice as many; the kernel keeps
/// overflowing completions instead of dropping them).
const ENTRIES: u32 = 256;

/// Keeps the mapping that holds a wait word alive while a wait on it is
/// queued or a wake may have to be passed on.
pub(crate) type KeepAlive = Arc<dyn Any + Send + Sync>;

enum Slot {
    Free,
    /// Queued; the future's waker.
    Waiting(Option<Waker>),
    /// Completed with this result; the future has not seen it yet.
    Done(i32),
    /// Queued, and its future gave it up: on a woken completion the wake
    /// is passed on to `word` (an address inside the mapping `keep`).
    Abandoned {
        word: usize,
        keep: KeepAlive,
    },
}

struct Inner {
    ring: IoUring,
    /// Indexed by the waits' user data.
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The runtimes a driver task runs in (one each), with that runtime's
    /// registration of the eventfd (held by its driver).
    drivers: Vec<(tokio::runtime::Id, Weak<AsyncFd<Doorbell>>)>,
}

/// The process's ring and the table of its queued waits.
pub(crate) struct Reactor {
    inner: Mutex<Inner>,
    /// Registered with the ring: readable when completions were posted.
    eventfd: OwnedFd,
}

/// The process's reactor, made at the first call; `None` when io_uring or
/// its futex wait is not available here.
pub(crate) fn reactor() -> Option<&'static Reactor> {
    static REACTOR: OnceLock<Option<Reactor>> = OnceLock::new();
    REACTOR.get_or_init(|| Reactor::new().ok()).as_ref()
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Every step under this mutex leaves the table whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The eventfd as tokio's reactor sees it (the descriptor lives as long
/// as the process's reactor, which is never dropped).
struct Doorbell(RawFd);

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Reactor {
    fn new() -> io::Result<Reactor> {
        let ring = IoUring::new(ENTRIES)?;
        // SAFETY: plain system call with flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Reactor {
            inner: Mutex::new(Inner {
                ring,
                slots: Vec::new(),
                free: Vec::new(),
                drivers: Vec::new(),
            }),
            eventfd,
        })
    }

    /// Queues a wait on `word` while it holds `key` (a registered sleeper's
    /// key: see `WaitWord::register`). Must be called inside a tokio
    /// runtime: the first call in each runtime starts that runtime's
    /// driver (a task, not a thread).
    ///
    /// # Errors
    ///
    /// The submission failed, or no driver could be started.
    pub(crate) fn arm(
        &'static self,
        word: &AtomicU32,
        key: u32,
        keep: KeepAlive,
    ) -> io::Result<Armed> {
        let bell = self.ensure_driven()?;
        let index = {
            let mut inner = lock(&self.inner);
            let index = match inner.free.pop() {
                Some(i) => i,
                None => {
                    inner.slots.push(Slot::Free);
                    inner.slots.len() - 1
                }
            };
            let entry = opcode::FutexWait::new(
                word.as_ptr().cast_const(),
                u64::from(key),
                MATCH_ANY,
                FUTEX2_SIZE_U32,
            )
            .build()
            .user_data(index as u64);
            if let Err(failed) = push(&mut inner.ring, &entry) {
                if failed.queued {
                    // The kernel takes the wait at the next submission:
                    // until it completes, the slot is an abandoned wait's
                    // (a wake it takes is passed on, then the slot freed).
                    inner.slots[index] = Slot::Abandoned {
                        word: word.as_ptr() as usize,
                        keep,
                    };
                } else {
                    inner.free.push(index);
                }
                return Err(failed.error);
            }
            inner.slots[index] = Slot::Waiting(None);
            index
        };
        // A word that no longer holds the key completes at once: take it
        // now rather than after a trip through the eventfd.
        self.reap();
        Ok(Armed {
            reactor: self,
            index,
            word: word.as_ptr() as usize,
            keep: Some(keep),
            bell,
        })
    }

    /// What a sleeper whose slice ran out does: reaps what is posted (a
    /// belt to the drivers' braces).
    pub(crate) fn tick(&'static self) {
        self.reap();
    }

    /// Starts the current runtime's driver if it has none; returns the
    /// runtime's registration of the eventfd (`None` while its driver is
    /// ending).
    fn ensure_driven(&'static self) -> io::Result<Option<Arc<AsyncFd<Doorbell>>>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let id = runtime.id();
        {
            let mut inner = lock(&self.inner);
            if let Some((_, bell)) = inner.drivers.iter().find(|(d, _)| *d == id) {
                return Ok(bell.upgrade());
            }
            inner.drivers.push((id, Weak::new()));
        }
        let _entered = runtime.enter();
        // SAFETY: the eventfd is owned by the process's reactor, which
        // lives in a static and is never dropped, so the descriptor stays
        // open and the same file for as long as the registration lives.
        let registered = unsafe {
            AsyncFd::register_with_interest(Doorbell(self.eventfd.as_raw_fd()), Interest::READABLE)
        };
        match registered {
            Ok(doorbell) => {
                let doorbell = Arc::new(doorbell);
                {
                    let mut inner = lock(&self.inner);
                    if let Some(entry) = inner.drivers.iter_mut().find(|(d, _)| *d == id) {
                        entry.1 = Arc::downgrade(&doorbell);
                    }
                }
                // Made before the task is spawned: a task dropped before
                // its first poll (its runtime ended first) drops it too.
                let undriven = Undriven(self, id);
                runtime.spawn(self.drive(doorbell.clone(), undriven));
                Ok(Some(doorbell))
            }
            Err(e) => {
                lock(&self.inner).drivers.retain(|(d, _)| *d != id);
                Err(e.into())
            }
        }
    }

    /// The driver of one runtime: reaps completions whenever the eventfd
    /// rings (every runtime's driver is told of every completion, and
    /// whichever reaps it first wakes its task, in any runtime). Ends with
    /// its runtime, and `_undriven` with it, polled or not.
    async fn drive(&'static self, doorbell: Arc<AsyncFd<Doorbell>>, _undriven: Undriven) {
        loop {
            self.reap();
            let Ok(mut ready) = doorbell.readable().await else {
                return;
            };
            // Cleared before reaping: a completion posted after this
            // rings again, so none is missed. The counter is never read:
            // tokio watches the descriptor edge-triggered, and each
            // signal of an eventfd wakes its epoll watchers again, readable
            // or not (the counter saturates, it does not fail).
            ready.clear_ready();
        }
    }

    /// Takes every posted completion: wakes the futures of the waits that
    /// completed, frees the slots of abandoned ones and passes their wakes
    /// on.
    fn reap(&self) {
        self.reap_except(usize::MAX);
    }

    /// [`Reactor::reap`], waking no one for the wait `own` (its future is
    /// the caller, and looks at its slot next).
    fn reap_except(&self, own: usize) {
        let mut wakers = Vec::new();
        let mut passed = Vec::new();
        {
            let mut inner = lock(&self.inner);
            if let Some(Slot::Waiting(waker)) = inner.slots.get_mut(own) {
                *waker = None;
            }
            let Inner {
                ring, slots, free, ..
            } = &mut *inner;
            loop {
                for cqe in ring.completion() {
                    let (data, result) = (cqe.user_data(), cqe.result());
                    let Ok(index) = usize::try_from(data) else {
                        continue;
                    };
                    if data == CANCEL || index >= slots.len() {
                        continue;
                    }
                    match std::mem::replace(&mut slots[index], Slot::Free) {
                        Slot::Waiting(waker) => {
                            slots[index] = Slot::Done(result);
                            wakers.extend(waker);
                        }
                        Slot::Abandoned { word, keep } => {
                            free.push(index);
                            if result == 0 {
                                passed.push((word, keep));
                            }
                        }
                        other => slots[index] = other, // not ours to change
                    }
                }
                // More completions than the completion queue holds (a
                // wake of all of 1,000 sleepers): the kernel keeps the rest
                // and hands them over only on an enter, which `submit`
                // makes when it sees the overflow flag.
                if !ring.submission().cq_overflow() {
                    break;
                }
                if ring.submit().is_err() {
                    break; // reaped at the next ring of the eventfd
                }
            }
        }
        for waker in wakers {
            waker.wake();
        }
        for (word, keep) in passed {
            pass_on(word, &keep);
        }
    }
}

/// Passes a wake that an abandoned wait took on to the next sleeper.
fn pass_on(word: usize, _keep: &KeepAlive) {
    // SAFETY: `word` is the address of an aligned `AtomicU32` inside the
    // mapping that `_keep` holds alive for the length of this call.
    let word = unsafe { &*(word as *const AtomicU32) };
    FutexWaiter::new().wake(word, 1);
}

/// Why [`push`] failed, and whether the entry is in the submission queue
/// all the same (the kernel then takes it at the next submission).
struct PushFailed {
    error: io::Error,
    queued: bool,
}

/// Pushes one entry and submits it.
fn push(ring: &mut IoUring, entry: &io_uring::squeue::Entry) -> Result<(), PushFailed> {
    for _ in 0..2 {
        // SAFETY: the entry's pointers (a futex word kept mapped by the
        // caller's `KeepAlive` until the completion is reaped, or no
        // pointer at all for a cancel) stay valid while it is in flight.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return ring.submit().map(drop).map_err(|error| PushFailed {
                error,
                queued: true,
            });
        }
        // Full: hand the queued entries over and retry.
        ring.submit().map_err(|error| PushFailed {
            error,
            queued: false,
        })?;
    }
    Err(PushFailed {
        error: io::Error::other("io_uring submission queue full"),
        queued: false,
    })
}

/// Removes a runtime's entry from the reactor's drivers when its driver
/// task is dropped (the task owns it from its spawn).
struct Undriven(&'static Reactor, tokio::runtime::Id);

impl Drop for Undriven {
    fn drop(&mut self) {
        lock(&self.0.inner).drivers.retain(|(d, _)| *d != self.1);
    }
}

/// A queued futex wait, owned by the future that sleeps on it. Dropping it
/// before its completion was seen cancels it (and passes on a wake it took).
pub(crate) struct Armed {
    reactor: &'static Reactor,
    index: usize,
    word: usize,
    /// `None` once the completion was seen.
    keep: Option<KeepAlive>,
    /// The eventfd as the runtime that armed the wait watches it.
    bell: Option<Arc<AsyncFd<Doorbell>>>,
}

impl Armed {
    /// The wait's result (0: woken; `-EAGAIN`: the word had changed;
    /// other negative errnos: refused or cancelled) once it completed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<i32> {
        if self.keep.is_none() {
            return Poll::Pending; // already seen: never completes again
        }
        // The driver task hears the eventfd and wakes this future; the
        // future also listens itself (tokio keeps one such listener per
        // registration, the latest), so that the runtime wakes it at once
        // and not through the driver: for a `block_on` future, the hop
        // through a task costs the runtime an extra epoll round.
        if let Some(bell) = &self.bell {
            for _ in 0..2 {
                match bell.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut ready)) => {
                        ready.clear_ready();
                        self.reactor.reap_except(self.index);
                    }
                    _ => break,
                }
            }
        }
        let mut inner = lock(&self.reactor.inner);
        match &mut inner.slots[self.index] {
            Slot::Done(result) => {
                let result = *result;
                inner.slots[self.index] = Slot::Free;
                inner.free.push(self.index);
                self.keep = None;
                Poll::Ready(result)
            }
            Slot::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            // Only this value changes its slot out of `Waiting`/`Done`.
            Slot::Free | Slot::Abandoned { .. } => Poll::Pending,
        }
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        let Some(keep) = self.keep.take() else {
            return;
        };
        let mut inner = lock(&self.reactor.inner);
        match std::mem::replace(&mut inner.slots[self.index], Slot::Free) {
            Slot::Done(result) => {
                inner.free.push(self.index);
                drop(inner);
                if result == 0 {
                    pass_on(self.word, &keep);
                }
            }
            Slot::Waiting(_) => {
                inner.slots[self.index] = Slot::Abandoned {
                    word: self.word,
                    keep,
                };
                let cancel = opcode::AsyncCancel::new(self.index as u64)
                    .build()
                    .user_data(CANCEL);
                // A cancel that cannot be submitted leaves the wait queued
                // until the next wake of its word, which it then passes on.
                let _ = push(&mut inner.ring, &cancel);
            }
            other => inner.slots[self.index] = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime dropped before its driver task was ever polled (its only
    /// `block_on` future started the driver and finished in one poll, as a
    /// wait whose word changed before it was armed does) leaves no entry in
    /// the reactor's driver list behind.
    #[test]
    fn a_runtime_whose_driver_never_ran_leaves_no_driver_entry() {
        let Some(reactor) = reactor() else {
            return; // no io_uring futex wait here: no drivers either
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let id = rt.handle().id();
        // Spawns the driver; the future then ends without yielding.
        rt.block_on(async { reactor.ensure_driven().unwrap() });
        assert!(lock(&reactor.inner).drivers.iter().any(|(d, _)| *d == id));
        drop(rt);
        assert!(
            !lock(&reactor.inner).drivers.iter().any(|(d, _)| *d == id),
            "the ended runtime's driver entry stayed"
        );
    }
}
