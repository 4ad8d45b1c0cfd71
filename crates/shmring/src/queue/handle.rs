//! The untyped machinery every `Sync` queue facade shares: the queue, this
//! handle's producer ring, a pool of consumer states, and the blocking
//! loops.
//!
//! # No lock is held while asleep
//!
//! Threads share one handle. The producer ring has one writer, so a put
//! takes the handle's producer mutex, but only for one *try* (a few
//! hundred nanoseconds); a put that finds no room lets the mutex go and
//! sleeps on the queue's `space` word, then takes it again for the next
//! try. A get checks a consumer state (its rotating start and cached
//! tails) out of a pool for the length of the call and holds no lock at
//! all while it tries or sleeps. So a `try_get` or a timed `get` never
//! waits behind another thread's blocking call, and a timed call returns
//! within its timeout whatever other threads do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shmring_core::error::{PopError, PushError};
use shmring_core::tasks::{TaskCounter, TaskSlot};
use shmring_core::wait::{block_on, WaitPolicy, WAKE_ALL};

use super::{get_error, put_error, GetError, PutError};
use crate::attach::until;
use crate::codec::{encoded, Message};
use crate::mpmc;
use crate::segment::{PeerCounter, Segment};
use crate::sys::FutexWaiter;

/// A JoinableQueue's task bookkeeping, handed to [`Handle::get`]: each
/// try is announced in this handle's slot before it may take a record (see
/// [`shmring_core::tasks`]).
#[derive(Clone, Copy)]
pub(super) struct Tasks<'a> {
    pub(super) slot: &'a TaskSlot,
    pub(super) counter: &'a TaskCounter,
    pub(super) waiter: &'a FutexWaiter,
}

/// A consumer state and the buffer its pops copy into.
type ConsumerState = (mpmc::Consumer, Vec<u8>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these mutexes leaves nothing half done
    // in shared memory (every shared step is one atomic operation), so a
    // poisoned mutex is used as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct Handle {
    pub(super) queue: mpmc::Queue,
    /// The attachment whose peer row counts this handle's traffic.
    segment: Arc<Segment>,
    /// This handle's producer ring (claimed at the first put) and the
    /// scratch buffer messages are encoded into. Held for one try at a time.
    producer: Mutex<Option<(mpmc::Producer, Vec<u8>)>>,
    /// Idle consumer states; a get takes one (or makes one) for its call.
    consumers: Mutex<Vec<ConsumerState>>,
    policy: Mutex<WaitPolicy>,
    closed: AtomicBool,
    /// Counts this handle's futex calls; `segment` keeps it valid.
    pub(super) waiter: FutexWaiter,
}

impl Handle {
    pub(super) fn new(queue: mpmc::Queue, segment: Arc<Segment>) -> Handle {
        Handle {
            queue,
            waiter: segment.waiter(),
            segment,
            producer: Mutex::new(None),
            consumers: Mutex::new(Vec::new()),
            policy: Mutex::new(WaitPolicy::default()),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        // ORDERING: Relaxed — a process-local flag; no data hangs on it
        // (partner: the store in `close`).
        self.closed.load(Ordering::Relaxed)
    }

    /// Closes this handle: its calls fail with `Closed` from now on, and
    /// its threads asleep in `put` or `get` wake to see it.
    pub(super) fn close(&self) {
        // ORDERING: Relaxed — as in `is_closed`.
        self.closed.store(true, Ordering::Relaxed);
        // Sleepers of other handles wake too, re-check and sleep again.
        let core = self.queue.core();
        core.not_empty_word().wake_now(&self.waiter, WAKE_ALL);
        core.space_word().wake_now(&self.waiter, WAKE_ALL);
    }

    pub(super) fn set_wait_policy(&self, policy: WaitPolicy) {
        *lock(&self.policy) = policy;
    }

    fn policy(&self) -> WaitPolicy {
        *lock(&self.policy)
    }

    /// Puts `item`, waiting for room per `timeout` (`Some(ZERO)`: one try).
    pub(super) fn put<T: Message>(
        &self,
        item: T,
        timeout: Option<Duration>,
    ) -> Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(item));
        }
        let mut guard = lock(&self.producer);
        if guard.is_none() {
            match self.queue.producer() {
                Ok(p) => *guard = Some((p, Vec::new())),
                Err(e) => return Err(PutError::Attach(item, e)),
            }
        }
        let (producer, scratch) = guard.as_mut().expect("claimed above");
        let bytes = match encoded(&item, scratch) {
            Ok(bytes) => bytes,
            Err(e) => return Err(PutError::Encode(item, e)),
        };
        let len = bytes.len();
        let first = producer.try_push(bytes);
        let waits = matches!(first, Err(PushError::Full)) && timeout != Some(Duration::ZERO);
        // Full and willing to wait: the encoding must outlive the mutex
        // (another thread's put reuses the scratch buffer meanwhile).
        let owned = (waits && item.as_bytes().is_none()).then(|| scratch.clone());
        drop(guard);
        let result = if waits {
            let bytes = owned.as_deref().or(item.as_bytes()).unwrap_or_default();
            self.put_blocking(bytes, timeout)
        } else {
            first
        };
        match result {
            Ok(()) => {
                self.segment
                    .count_message(PeerCounter::Puts, PeerCounter::BytesIn, len);
                Ok(())
            }
            Err(e) => Err(put_error(&self.segment, item, e)),
        }
    }

    /// The rest of a put that found the ring full: sleep on `space`, take
    /// the producer mutex for each try only.
    #[cold]
    fn put_blocking(&self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), PushError> {
        block_on(
            self.queue.core().space_word(),
            &self.waiter,
            until(timeout),
            &self.policy(),
            |_slow| {
                if self.is_closed() {
                    return Some(Err(PushError::Closed));
                }
                let mut guard = lock(&self.producer);
                let (producer, _) = guard.as_mut()?;
                match producer.try_push(bytes) {
                    Err(PushError::Full) => None,
                    done => Some(done),
                }
            },
        )
        .unwrap_or(Err(PushError::Timeout))
    }

    /// Takes the next item, waiting per `timeout` (`Some(ZERO)`: one try).
    pub(super) fn get<T: Message>(
        &self,
        timeout: Option<Duration>,
        tasks: Option<Tasks<'_>>,
    ) -> Result<T, GetError> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        let mut state = lock(&self.consumers)
            .pop()
            .unwrap_or_else(|| (self.queue.consumer(), Vec::new()));
        let popped = self.pop(&mut state, timeout, tasks);
        let result = match popped {
            Ok(len) => {
                self.segment
                    .count_message(PeerCounter::Gets, PeerCounter::BytesOut, len);
                T::decode(&state.1).map_err(GetError::Decode)
            }
            Err(TakeError::Pop(e)) => Err(get_error(&self.segment, e)),
            Err(TakeError::SlotFull) => Err(GetError::TooManyTasks),
        };
        lock(&self.consumers).push(state);
        result
    }

    fn pop(
        &self,
        state: &mut ConsumerState,
        timeout: Option<Duration>,
        tasks: Option<Tasks<'_>>,
    ) -> Result<usize, TakeError> {
        match try_take(state, tasks) {
            Err(TakeError::Pop(PopError::Empty)) if timeout != Some(Duration::ZERO) => {}
            done => return done,
        }
        block_on(
            self.queue.core().not_empty_word(),
            &self.waiter,
            until(timeout),
            &self.policy(),
            |_slow| {
                if self.is_closed() {
                    return Some(Err(TakeError::Pop(PopError::Closed)));
                }
                match try_take(state, tasks) {
                    Err(TakeError::Pop(PopError::Empty)) => None,
                    done => Some(done),
                }
            },
        )
        .unwrap_or(Err(TakeError::Pop(PopError::Timeout)))
    }

    /// Whether `maxsize` is reached or this handle's producer ring is out
    /// of room (a snapshot).
    pub(super) fn is_full(&self) -> bool {
        let max = self.queue.max_len();
        if max != 0 && self.queue.len() >= max {
            return true;
        }
        lock(&self.producer)
            .as_mut()
            .is_some_and(|(p, _)| p.is_full())
    }
}

/// Why one try took nothing.
enum TakeError {
    Pop(PopError),
    /// The JoinableQueue slot cannot count another task.
    SlotFull,
}

/// One try: announce it in the task slot (JoinableQueue), try to take a
/// record, end the announcement.
#[inline]
fn try_take(state: &mut ConsumerState, tasks: Option<Tasks<'_>>) -> Result<usize, TakeError> {
    let Some(t) = tasks else {
        return state.0.try_pop(&mut state.1).map_err(TakeError::Pop);
    };
    t.slot.begin_take().map_err(|_| TakeError::SlotFull)?;
    let result = state.0.try_pop(&mut state.1);
    t.slot.end_take(result.is_ok(), t.counter, t.waiter);
    result.map_err(TakeError::Pop)
}
