//! The producer side of the MPMC queue: the owner of one ring.

use crate::error::PushError;
use crate::ring::Writer;
use crate::sync::{fence, Ordering};
use crate::wait::{block_on_with, Until, WaitHistory, WaitPolicy, Waiter, WAKE_ALL};

use super::Queue;

/// A producer's handle: the owner of one ring of the queue. Dropping it hands
/// the ring back (its records stay and are still delivered).
///
/// Its blocking [`push`](Producer::push) tries, spins for
/// [`WaitPolicy::spin_ns`], then sleeps on the queue's `space` word through
/// the handle's [`Waiter`] in slices of [`WaitPolicy::slice_ns`]. No peer's
/// death ends it: consumers are any number, in any processes.
#[derive(Debug)]
pub struct Producer<W> {
    pub(super) writer: Writer,
    pub(super) slot: usize,
    pub(super) token: u64,
    pub(super) queue: Queue,
    pub(super) waiter: W,
    pub(super) policy: WaitPolicy,
    /// The learned spin budget (see [`WaitPolicy`]).
    pub(super) history: WaitHistory,
}

impl<W: Waiter + Clone> Producer<W> {
    /// Which ring this producer owns.
    pub fn ring_index(&self) -> usize {
        self.slot
    }

    /// Whether this producer's ring has no room even for an empty record
    /// (a snapshot; re-reads the head). Each producer has its own ring, so
    /// "full" is per producer.
    pub fn is_full(&mut self) -> bool {
        match self.writer.free_now() {
            Ok(free) => free < crate::record::HEADER,
            Err(_) => false, // corrupted: let the next push report it
        }
    }

    #[inline]
    fn publish_and_wake(&mut self, count: u32) {
        if self.writer.publish() {
            self.queue
                .shared()
                .not_empty
                .wake_if_waiting(&self.waiter, count);
        }
    }

    /// Whether the queue holds `max_len` records (never, without a limit).
    #[inline]
    fn at_max_len(&self) -> bool {
        let max = self.queue.max_len();
        if max == 0 {
            return false;
        }
        // ORDERING: SeqCst fence between this producer's previous publish
        // (its tail store) and the loads of every ring's count below; pairs
        // with the same fence of every other producer, so two producers
        // never both miss each other's last put (the "overshoot by at most
        // one per producer" bound). The wait word's fence used to give
        // this; publishes now use a compiler barrier (see
        // `crate::wait`), so bounded queues pay it here, unbounded ones
        // not at all.
        fence(Ordering::SeqCst);
        self.queue.len() >= max
    }

    /// Copies `msg` in as one record, if it fits now.
    ///
    /// # Errors
    ///
    /// `Full`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn try_push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        if self.queue.shared().closed() {
            return Err(PushError::Closed);
        }
        if self.at_max_len() {
            return Err(PushError::Full);
        }
        let result = self.writer.write(msg, false);
        // On `Full` this publishes a padding record written on the way.
        self.publish_and_wake(1);
        result
    }

    /// Copies in as many of `msgs` as fit now, with one wake. Returns how
    /// many went in.
    ///
    /// Without a `max_len`, the batch is also published at once (one store
    /// of the tail word). With one, each record is checked against the
    /// limit and published on its own, as a run of
    /// [`try_push`](Producer::try_push)es would be: other producers must see
    /// each record before they decide on theirs, or racing batches would
    /// each fill the queue up to `max_len` (an overshoot of a batch per
    /// producer instead of the documented one record per producer).
    ///
    /// # Errors
    ///
    /// Only when none went in: why the first one did not.
    pub fn try_push_many<'m, I>(&mut self, msgs: I) -> Result<usize, PushError>
    where
        I: IntoIterator<Item = &'m [u8]>,
    {
        if self.queue.shared().closed() {
            return Err(PushError::Closed);
        }
        if self.at_max_len() {
            return Err(PushError::Full);
        }
        let (n, first_err) = if self.queue.max_len() == 0 {
            self.writer
                .write_many(msgs.into_iter().map(|msg| (msg, false)))
        } else {
            self.write_each_within_max_len(msgs)
        };
        // Publishes the batch (or, on `Full`, a padding record written on
        // the way) and wakes after the last record is visible.
        let published = self.writer.publish();
        if n > 0 || published {
            self.queue
                .shared()
                .not_empty
                .wake_if_waiting(&self.waiter, n.clamp(1, WAKE_ALL as usize) as u32);
        }
        match (n, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(n),
        }
    }

    /// The records of a batch on a queue with a `max_len`: each checked
    /// against the limit (the first was, by the caller), written, and
    /// published before the next is checked (so the next check, ours or
    /// another producer's, counts it). Returns how many went in, and why
    /// the next did not, if one did not.
    fn write_each_within_max_len<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = &'m [u8]>,
    ) -> (usize, Option<PushError>) {
        let mut n = 0;
        for msg in msgs {
            if n > 0 && self.at_max_len() {
                return (n, Some(PushError::Full));
            }
            if let Err(e) = self.writer.write(msg, false) {
                return (n, Some(e));
            }
            self.writer.publish();
            n += 1;
        }
        (n, None)
    }

    /// Pushes `msg`, waiting for room until `until` ([`Until::Now`]: one
    /// try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins for the policy's spin budget, then sleeps until a
    /// consumer makes room, `until` passes or the queue is closed. Like
    /// Python's `Queue.put`, it waits for consumers that may never come;
    /// bound it where that matters.
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `TooLarge`, `Corrupted`.
    #[inline]
    pub fn push(&mut self, msg: &[u8], until: Until) -> Result<(), PushError> {
        // The first try here, inline, as in `Consumer::pop` (a push through
        // `block_on_with` cost 23-26 ns where a `try_push` cost 8-11).
        match self.try_push(msg) {
            Err(PushError::Full) if !until.is_now() => self.push_waiting(msg, until),
            Err(PushError::Full) => Err(PushError::Timeout),
            done => done,
        }
    }

    /// [`push`](Self::push) once the first try found no room: the spin and
    /// the sleep (whose first check tries once more).
    #[inline(never)]
    fn push_waiting(&mut self, msg: &[u8], until: Until) -> Result<(), PushError> {
        // One `space` word for every producer: a full ring and a full
        // `max_len` both end with some consumer's take, which wakes it.
        let waiter = self.waiter.clone();
        let policy = self.policy;
        // Borrowed apart from `self` (which the check needs mutably) without
        // cloning the queue, whose two `Arc`s cost four atomic operations a
        // call: this put goes through here whenever it may wait.
        // `shared` is shared memory, not part of `self`, so it aliases
        // nothing the check borrows; only atomics are reached through it.
        // SAFETY: it points into the mapping `self.queue` keeps alive (its
        // `KeepAlive`) while `self` lives, which outlives this call.
        let shared: &super::QueueShared = unsafe { self.queue.shared.as_ref() };
        let mut history = self.history;
        let result =
            block_on_with(
                &shared.space,
                &waiter,
                until,
                &policy,
                &mut history,
                |_| match self.try_push(msg) {
                    Err(PushError::Full) => None,
                    other => Some(other),
                },
            )
            .unwrap_or(Err(PushError::Timeout));
        self.history = history;
        result
    }

    /// Sets the spin budget and sleep slice of [`push`](Producer::push).
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// The spin budget and sleep slice of [`push`](Producer::push).
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }
}

impl<W> Drop for Producer<W> {
    /// Hands the ring back, stamped with the queue's next hand-back count
    /// and its tail word (consumers drain handed-back rings oldest first,
    /// before owned ones, and a ring claimed again up to that tail: see
    /// `mpmc::consumer`, "Order across rings").
    fn drop(&mut self) {
        let config = &self.queue.rings[self.slot].shared().config;
        // ORDERING: Relaxed — only the order of the values matters, and a
        // hand-back that happens before another takes an earlier value
        // (the counter's modification order follows happens-before); the
        // stamp is published by the Release store of the owner word below
        // (partner: the consumers' loads in `take_handed_back`).
        let count = self
            .queue
            .shared()
            .config
            .handbacks
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        // ORDERING: Relaxed — published by the Release below.
        config.handed_back.store(count, Ordering::Relaxed);
        // ORDERING: Relaxed — our own last store of the tail word (we are
        // its only writer); published by the Release below, with the stamp.
        let tail = self.queue.rings[self.slot]
            .shared()
            .producer
            .tail
            .load(Ordering::Relaxed);
        // ORDERING: Relaxed — as the stamp.
        config.handed_back_tail.store(tail, Ordering::Relaxed);
        // ORDERING: Release — our published tail and the stamp happen
        // before the next owner's Acquire CAS of this word and before a
        // consumer's Acquire load of it.
        let handed_back = config
            .producer_owner
            .compare_exchange(self.token, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if handed_back {
            // ORDERING: Release — after the owner word's clearing: a
            // consumer whose Acquire load (in `take_handed_back`) sees this
            // count sees the ring handed back, its stamp and its records
            // (the counter's later increments continue the release
            // sequence).
            self.queue
                .shared()
                .config
                .handbacks_done
                .fetch_add(1, Ordering::Release);
        }
    }
}
