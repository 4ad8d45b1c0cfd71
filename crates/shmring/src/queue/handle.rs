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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shmring_core::error::{PopError, PushError};
use shmring_core::joinable::{TaskCounter, TaskSlot, MAX_HELD};
use shmring_core::mpmc::{Queue as CoreQueue, TakeHook};
use shmring_core::wait::{
    block_on_with, SharedHistory, TimedOut, Until, WaitPolicy, WaitWord, WAKE_ALL,
};

use super::error::{GetError, TryGetError, TryPutError};
use super::{get_error, put_error};
use crate::codec::{encoded, CodecError, Message};
use crate::mpmc;
use crate::object::RoleError;
use crate::segment::{PeerCounter, Segment};
use crate::sys::FutexWaiter;

#[cfg(feature = "tokio")]
mod aio;

/// A JoinableQueue's task bookkeeping, handed to [`Handle::get_until`]: each
/// take is announced in this handle's slot right before its CAS, and ended
/// after it (see [`shmring_core::joinable`]).
#[derive(Clone, Copy)]
pub(super) struct Tasks<'a> {
    pub(super) slot: &'a TaskSlot,
    pub(super) counter: &'a TaskCounter,
    pub(super) waiter: &'a FutexWaiter,
    /// One try of this handle at a time, so that its slot has at most one
    /// take in flight and that take's intent is the slot's.
    pub(super) takes: &'a Mutex<()>,
}

/// Announces and ends the takes of one try in the handle's slot.
struct SlotHook<'a>(Tasks<'a>);

impl TakeHook for SlotHook<'_> {
    #[inline]
    fn before(&mut self, ring: usize, head: u64) {
        // Room was checked before the try, and only this handle's tries
        // (one at a time) add to the slot: a refusal means hostile slot
        // words, and then the take is not counted in flight.
        let _ = self.0.slot.announce(CoreQueue::take_intent(ring, head));
    }

    #[inline]
    fn after(&mut self, won: bool) {
        self.0.slot.end_take(won, self.0.counter, self.0.waiter);
    }
}

/// A consumer state and the buffer its pops copy into.
type ConsumerState = (mpmc::Consumer, Vec<u8>);

/// A handle's wait policy and learned wait history, shared by its threads.
///
/// Relaxed atomics: a policy set while another thread waits applies from
/// that thread's next call (the history: see [`SharedHistory`]).
#[derive(Debug)]
struct WaitSettings {
    /// `spin_ns`, `max_spin_ns`, `slice_ns`.
    policy: [AtomicU64; 3],
    history: SharedHistory,
}

impl WaitSettings {
    fn new(policy: WaitPolicy) -> WaitSettings {
        let settings = WaitSettings {
            policy: Default::default(),
            history: SharedHistory::default(),
        };
        settings.set_policy(policy);
        settings
    }

    fn set_policy(&self, policy: WaitPolicy) {
        let words = [policy.spin_ns, policy.max_spin_ns, policy.slice_ns];
        for (slot, word) in self.policy.iter().zip(words) {
            // ORDERING: Relaxed — process-local settings read whole by the
            // next call (partner: the loads in `policy`); nothing else hangs
            // on them.
            slot.store(word, Ordering::Relaxed);
        }
    }

    fn policy(&self) -> WaitPolicy {
        // ORDERING: Relaxed — see `set_policy`.
        let p = self.policy.each_ref().map(|w| w.load(Ordering::Relaxed));
        WaitPolicy {
            spin_ns: p[0],
            max_spin_ns: p[1],
            slice_ns: p[2],
        }
    }

    /// [`block_on_with`] with this handle's policy and shared history.
    fn block_on<R>(
        &self,
        word: &WaitWord,
        waiter: &FutexWaiter,
        until: Until,
        check: impl FnMut(bool) -> Option<R>,
    ) -> Result<R, TimedOut> {
        let policy = self.policy();
        self.history
            .with(|history| block_on_with(word, waiter, until, &policy, history, check))
    }
}

/// The producer state in `slot`, claiming a ring first if it holds none.
fn claimed<'a>(
    queue: &mpmc::ByteQueue,
    slot: &'a mut Option<(mpmc::Producer, Vec<u8>)>,
) -> Result<&'a mut (mpmc::Producer, Vec<u8>), RoleError> {
    match slot {
        Some(state) => Ok(state),
        None => Ok(slot.insert((queue.producer()?, Vec::new()))),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these mutexes leaves nothing half done
    // in shared memory (every shared step is one atomic operation), so a
    // poisoned mutex is used as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct Handle {
    pub(super) queue: mpmc::ByteQueue,
    /// The attachment whose peer row counts this handle's traffic.
    segment: Arc<Segment>,
    /// This handle's producer ring (claimed at the first put) and the
    /// scratch buffer messages are encoded into. Held for one try at a time.
    producer: Mutex<Option<(mpmc::Producer, Vec<u8>)>>,
    /// Idle consumer states; a get takes one (or makes one) for its call.
    consumers: Mutex<Vec<ConsumerState>>,
    wait: WaitSettings,
    closed: AtomicBool,
    /// Counts this handle's futex calls; `segment` keeps it valid.
    pub(super) waiter: FutexWaiter,
}

impl Handle {
    pub(super) fn new(queue: mpmc::ByteQueue, segment: Arc<Segment>) -> Handle {
        Handle {
            queue,
            waiter: segment.waiter(),
            segment,
            producer: Mutex::new(None),
            consumers: Mutex::new(Vec::new()),
            wait: WaitSettings::new(WaitPolicy::default()),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        // ORDERING: Relaxed — a process-local flag; no data hangs on it
        // (partner: the store in `close`).
        self.closed.load(Ordering::Relaxed)
    }

    /// Closes this handle: its calls fail with `Closed` from now on, its
    /// threads asleep in `put` or `get` wake to see it, and its producer
    /// ring is handed back.
    pub(super) fn close(&self) {
        // ORDERING: Relaxed — as in `is_closed`; a put checks the flag
        // again under the producer mutex, so none claims a ring after the
        // hand-back below.
        self.closed.store(true, Ordering::Relaxed);
        self.hand_back_producer();
        // Sleepers of other handles wake too, re-check and sleep again.
        let core = self.queue.core();
        core.not_empty_word().wake_now(&self.waiter, WAKE_ALL);
        core.space_word().wake_now(&self.waiter, WAKE_ALL);
    }

    /// Hands this handle's producer ring back (as dropping the handle
    /// does), if it holds one; the next put claims one again.
    pub(super) fn hand_back_producer(&self) {
        let producer = lock(&self.producer).take();
        drop(producer);
    }

    /// Takes this handle's producer ring now if it has none yet (the first
    /// put does otherwise). A closed handle takes none: it puts nothing.
    pub(super) fn claim_producer(&self) -> Result<(), RoleError> {
        let mut guard = lock(&self.producer);
        // Under the mutex, as in a put: a close hands the ring back under
        // it after raising the flag.
        if self.is_closed() {
            return Ok(());
        }
        claimed(&self.queue, &mut guard).map(|_| ())
    }

    pub(super) fn set_wait_policy(&self, policy: WaitPolicy) {
        self.wait.set_policy(policy);
    }

    /// Puts `item`, waiting for room until `until`: the one operation
    /// behind every form of put. `Full` means no room came in time.
    ///
    /// Each try takes the producer mutex; a put that has to wait lets it
    /// go between tries (see the module docs). The first try is the first
    /// check of `block_on`, so a full ring is tried once before the spin.
    pub(super) fn put_until<T: Message>(
        &self,
        item: T,
        until: Until,
    ) -> Result<(), TryPutError<T>> {
        // The encoding, once another thread may reuse the scratch buffer:
        // a put that has to wait keeps its own copy.
        let mut owned: Option<Vec<u8>> = None;
        let mut len = 0;
        let result = self.wait.block_on(
            self.queue.core().space_word(),
            &self.waiter,
            until,
            |_slow| self.try_put_once(&item, &mut owned, &mut len, !until.is_now()),
        );
        self.put_done(item, result, len, !until.is_now())
    }

    /// One try of a put: `None` when there is no room. `owned` keeps the
    /// encoding once `keep_copy` says the put will wait (another thread
    /// may reuse the scratch buffer meanwhile); `len` is set to the
    /// message's length.
    fn try_put_once<T: Message>(
        &self,
        item: &T,
        owned: &mut Option<Vec<u8>>,
        len: &mut usize,
        keep_copy: bool,
    ) -> Option<Result<(), PutFailure>> {
        let mut guard = lock(&self.producer);
        // Under the mutex: a close hands the ring back under it after
        // raising the flag, so no put claims one after that.
        if self.is_closed() {
            return Some(Err(PutFailure::HandleClosed));
        }
        let (producer, scratch) = match claimed(&self.queue, &mut guard) {
            Ok(state) => state,
            Err(e) => return Some(Err(PutFailure::Claim(e))),
        };
        let bytes = match (owned.as_deref(), item.as_bytes()) {
            (Some(bytes), _) | (None, Some(bytes)) => bytes,
            (None, None) => match encoded(item, scratch) {
                Ok(bytes) => bytes,
                Err(e) => return Some(Err(PutFailure::Encode(e))),
            },
        };
        *len = bytes.len();
        match producer.try_push(bytes) {
            Err(PushError::Full) => {
                if owned.is_none() && item.as_bytes().is_none() && keep_copy {
                    *owned = Some(bytes.to_vec());
                }
                None
            }
            done => Some(done.map_err(PutFailure::Push)),
        }
    }

    /// A put's outcome, counted; `waited`: a timeout is counted as one.
    fn put_done<T: Message>(
        &self,
        item: T,
        result: Result<Result<(), PutFailure>, TimedOut>,
        len: usize,
        waited: bool,
    ) -> Result<(), TryPutError<T>> {
        match result {
            Ok(Ok(())) => {
                self.segment
                    .count_message(PeerCounter::Puts, PeerCounter::BytesIn, len);
                Ok(())
            }
            Ok(Err(e)) => Err(TryPutError::Put(put_error(item, e))),
            Err(TimedOut) => {
                if waited {
                    self.segment.add_to_counter(PeerCounter::Timeouts, 1);
                }
                Err(TryPutError::Full(item))
            }
        }
    }

    /// Takes the next item, waiting until `until`: the one operation
    /// behind every form of get. `Empty` means nothing came in time.
    pub(super) fn get_until<T: Message>(
        &self,
        until: Until,
        tasks: Option<Tasks<'_>>,
    ) -> Result<T, TryGetError> {
        if self.is_closed() {
            return Err(TryGetError::Get(GetError::Closed));
        }
        let mut state = lock(&self.consumers)
            .pop()
            .unwrap_or_else(|| (self.queue.consumer(), Vec::new()));
        let popped = self.wait.block_on(
            self.queue.core().not_empty_word(),
            &self.waiter,
            until,
            |_slow| {
                if self.is_closed() {
                    return Some(Err(TakeError::HandleClosed));
                }
                match try_take(&mut state, tasks) {
                    Err(TakeError::Pop(PopError::Empty)) => None,
                    done => Some(done),
                }
            },
        );
        let result = self.get_done(popped, &mut state, !until.is_now());
        lock(&self.consumers).push(state);
        result
    }

    /// A get's outcome, counted and decoded from `state`'s buffer;
    /// `waited`: a timeout is counted as one.
    fn get_done<T: Message>(
        &self,
        popped: Result<Result<usize, TakeError>, TimedOut>,
        state: &mut ConsumerState,
        waited: bool,
    ) -> Result<T, TryGetError> {
        match popped {
            Ok(Ok(len)) => {
                self.segment
                    .count_message(PeerCounter::Gets, PeerCounter::BytesOut, len);
                // A `Vec<u8>` or `String` item takes the state's buffer
                // (the next pop allocates one of that message's length):
                // one copy out of shared memory, not two.
                T::decode_from(&mut state.1).map_err(|e| TryGetError::Get(GetError::Decode(e)))
            }
            Ok(Err(TakeError::Pop(e))) => Err(TryGetError::Get(get_error(e))),
            Ok(Err(TakeError::SlotFull)) => Err(TryGetError::Get(GetError::TooManyTasks)),
            Ok(Err(TakeError::HandleClosed)) => Err(TryGetError::Get(GetError::Closed)),
            Err(TimedOut) => {
                if waited {
                    self.segment.add_to_counter(PeerCounter::Timeouts, 1);
                }
                Err(TryGetError::Empty)
            }
        }
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

/// Why a put failed for good, before the item is given back.
pub(super) enum PutFailure {
    Push(PushError),
    /// This handle was closed.
    HandleClosed,
    /// No producer ring could be claimed.
    Claim(RoleError),
    Encode(CodecError),
}

/// Why one try took nothing.
enum TakeError {
    Pop(PopError),
    /// The JoinableQueue slot cannot count another task.
    SlotFull,
    /// This handle was closed.
    HandleClosed,
}

/// One try; for a JoinableQueue, with each take announced in the task
/// slot (one try of the handle at a time).
#[inline]
fn try_take(state: &mut ConsumerState, tasks: Option<Tasks<'_>>) -> Result<usize, TakeError> {
    let Some(t) = tasks else {
        return state.0.try_pop(&mut state.1).map_err(TakeError::Pop);
    };
    let _one_at_a_time = lock(t.takes);
    let (_, (in_flight, held)) = t.slot.get();
    if in_flight != 0 || held >= MAX_HELD - 1 {
        return Err(TakeError::SlotFull);
    }
    let result = state.0.try_pop_with(&mut state.1, &mut SlotHook(t));
    result.map_err(TakeError::Pop)
}
