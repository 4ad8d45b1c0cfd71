//! The consumer side of the MPMC queue: scan the rings, copy a record out
//! optimistically, CAS the head past it.
//!
//! # Order across rings
//!
//! Records of one ring come out in the order they were put. Across rings,
//! records of a ring whose producer has handed it back (dropped its
//! handle, or exited cleanly) come before those of rings still owned, the
//! earliest hand-back first: before a scan takes a record from any ring,
//! it looks at the handed-back rings (a single load of the queue's count
//! of hand-backs, when none happened since it last found them empty). So
//! a record put after its putter saw the other producers finish (a join,
//! as in Python's "join the producers, then one sentinel per consumer")
//! comes after everything they put: their hand-back happened before that
//! record was published, so a consumer that has seen the record sees the
//! hand-back and their records too. Records of producers that are still
//! running (or were killed without handing back) interleave in whatever
//! order the scan meets them, as Python allows for concurrent producers.
//! A handed-back ring that a new producer claims before it is drained
//! keeps that place for the records below the tail its hand-back left
//! (the ring's config block keeps that tail word with the stamp); the new
//! producer's records follow them in the ring, as owned records.
//! The rule is coarse: a handed-back ring's records also come before
//! records that an owned ring received earlier (exact causal order would
//! need a hand-back epoch per record; Python promises no order across
//! producers).
//!
//! # What a take touches
//!
//! The ring's consumer line (a load of the head word and one CAS of it, which
//! moves the position and the count of records taken together), the
//! record's data words, and the queue's `space` wait word (read-mostly).
//! Not the producer's line: each consumer keeps, per ring, a tail word it
//! loaded earlier (with Acquire). Tails only move forward, so while a ring's
//! head is below that cached tail the records up to it are published and
//! visible, and the producer's line is loaded again only when the head
//! catches up with it. Without that, every take pulled the line the
//! producer stores on every push. The closed flag is read only when a scan
//! finds nothing. ("Below" is modulo 2^38: see the ring docs' wrap-around
//! section for what a cached tail kept through nearly 2^38 words of
//! traffic does; a record that does not decode under a cached tail makes
//! the consumer load the tail afresh before it reports anything.)
//!
//! # Crash behaviour
//!
//! A consumer killed before its CAS took nothing; killed after it, it took
//! the record (lost with it) and the ring's count already says so: `len`
//! stays exact. Every head move (a record or a padding record) wakes the
//! producers sleeping on `space`, so a death right after a CAS leaves at
//! worst a sleeper that its own liveness slice wakes.

use alloc::vec::Vec;

use crate::bytes;
use crate::error::{Corrupted, PopError};
use crate::ring::{count, distance, head_past, position, small, RingRef};
use crate::sync::Ordering;
use crate::wait::{block_on_with, Until, WaitHistory, WaitPolicy, WaitWord, Waiter, WAKE_ALL};

use super::Queue;

/// A consumer's handle. Any number, in any processes; a clone is an
/// independent consumer.
///
/// Its blocking [`pop`](Consumer::pop) tries, spins for
/// [`WaitPolicy::spin_ns`], then sleeps on the queue's `not_empty` word
/// through the handle's [`Waiter`] in slices of [`WaitPolicy::slice_ns`].
#[derive(Debug, Clone)]
pub struct Consumer<W> {
    queue: Queue,
    /// The ring to look at first next time (rotates, for fairness); below
    /// the rings in use, or 0 (that count only grows).
    next: usize,
    /// Per ring, a tail word loaded earlier with Acquire ([`NO_TAIL`]
    /// before the first, and after a corruption). Never trusted beyond the
    /// checks every tail word gets.
    tails: Vec<u64>,
    waiter: W,
    policy: WaitPolicy,
    /// The learned spin budget (see [`WaitPolicy`]).
    history: WaitHistory,
    /// The queue's count of completed hand-backs when this consumer last
    /// found every handed-back ring empty.
    drained_at: Option<u32>,
}

/// A cached tail word that is not one: look at the ring's tail afresh. (A
/// real tail word of this value is only reloaded on every take.)
const NO_TAIL: u64 = u64::MAX;

/// What one attempt on one ring found.
enum Take {
    Got,
    Empty,
}

/// Told of every attempt to take a data record: before its CAS (with the
/// ring and the head word it expects) and after (whether it won). A
/// JoinableQueue announces each take in a slot of its own this way, so
/// that the death of a consumer between the two can be judged from shared
/// state (see [`crate::tasks`]). [`Consumer::try_pop`] uses a hook that
/// does nothing, compiled away.
pub trait TakeHook {
    /// A CAS of ring `ring`'s head word from `head` is about to take a data
    /// record.
    fn before(&mut self, ring: usize, head: u64);
    /// That CAS took the record (`won`) or lost it to another consumer.
    fn after(&mut self, won: bool);
}

/// The hook of a plain take: nothing.
struct NoHook;

impl TakeHook for NoHook {
    #[inline(always)]
    fn before(&mut self, _: usize, _: u64) {}
    #[inline(always)]
    fn after(&mut self, _: bool) {}
}

impl<W: Waiter + Clone> Consumer<W> {
    pub(super) fn new(queue: Queue, waiter: W) -> Self {
        let rings = queue.rings.len();
        Consumer {
            queue,
            next: 0,
            tails: alloc::vec![NO_TAIL; rings],
            waiter,
            policy: WaitPolicy::default(),
            history: WaitHistory::default(),
            drained_at: None,
        }
    }

    /// Copies the next record of some ring into `buf` (replacing its
    /// contents) and returns its length.
    ///
    /// # Errors
    ///
    /// `Empty`, `Closed` (closed and every ring drained), `Corrupted`.
    #[inline]
    pub fn try_pop(&mut self, buf: &mut Vec<u8>) -> Result<usize, PopError> {
        self.try_pop_with(buf, &mut NoHook)
    }

    /// [`try_pop`](Self::try_pop), telling `hook` about every attempt to
    /// take a data record (see [`TakeHook`]).
    ///
    /// # Errors
    ///
    /// As [`try_pop`](Self::try_pop).
    #[inline]
    pub fn try_pop_with<H: TakeHook>(
        &mut self,
        buf: &mut Vec<u8>,
        hook: &mut H,
    ) -> Result<usize, PopError> {
        if self.scan(buf, hook)? {
            return Ok(buf.len());
        }
        self.try_pop_after_empty_scan(buf, hook)
    }

    /// The end of `try_pop` when every ring looks empty: was it closed?
    #[inline(never)]
    fn try_pop_after_empty_scan<H: TakeHook>(
        &mut self,
        buf: &mut Vec<u8>,
        hook: &mut H,
    ) -> Result<usize, PopError> {
        // The flag, then one more scan: a record published before the close
        // is then seen by it (the Acquire pairs with the close's Release).
        let closed = self.queue.shared().closed();
        if closed && self.scan(buf, hook)? {
            return Ok(buf.len());
        }
        Err(if closed {
            PopError::Closed
        } else {
            PopError::Empty
        })
    }

    /// One pass over the rings in use from the rotating start; before a
    /// take from a ring with records, the handed-back rings are looked at
    /// (see [Order across rings](self#order-across-rings)). Whether a
    /// record was taken into `buf`.
    #[inline(always)]
    fn scan<H: TakeHook>(&mut self, buf: &mut Vec<u8>, hook: &mut H) -> Result<bool, Corrupted> {
        let n = self.queue.rings_in_use();
        // `next < n` unless a hostile peer shrank the count.
        let mut i = if self.next < n { self.next } else { 0 };
        for _ in 0..n {
            debug_assert!(i < n && n <= self.queue.rings.len());
            // Again while the take finds nothing though the ring showed
            // words: it took padding, or another consumer the records.
            while self.has_records(i) {
                let seen = self.tails[i];
                // A ring handed back before this ring's records were
                // published is seen handed back now, its records too.
                if self.take_handed_back(n, buf, hook)? {
                    return Ok(true);
                }
                // Only what `has_records` saw published: a record
                // published since may come after a hand-back not looked at.
                // The look may have loaded this ring's tail afresh (another
                // consumer having taken what `seen` covers), after it had
                // passed a ring then still owned: back to `seen`, an
                // earlier tail and so still a published one.
                self.tails[i] = seen;
                if let Take::Got = self.take(i, buf, hook)? {
                    self.next = if i + 1 == n { 0 } else { i + 1 };
                    return Ok(true);
                }
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        Ok(false)
    }

    /// Takes a record from the handed-back ring (no producer owns it) that
    /// was handed back first among those that have one; whether it took
    /// one.
    ///
    /// The queue's count of completed hand-backs, unchanged since this
    /// consumer last found every handed-back ring empty, answers "none" at
    /// once: a handed-back ring gets no records until it is claimed again.
    ///
    /// A ring found handed back with records is looked for twice: the
    /// records it shows were loaded with Acquire, so a second look sees
    /// every hand-back that happened before they were put (a producer that
    /// saw another finish, then put and finished too), which the first
    /// look may have met still owned.
    #[inline(always)]
    fn take_handed_back<H: TakeHook>(
        &mut self,
        n: usize,
        buf: &mut Vec<u8>,
        hook: &mut H,
    ) -> Result<bool, Corrupted> {
        // ORDERING: Acquire — pairs with the Release increment in the
        // producer's drop, made after it cleared the owner word: every
        // hand-back this count includes is seen below, with its records.
        let done = self
            .queue
            .shared()
            .config
            .handbacks_done
            .load(Ordering::Acquire);
        if self.drained_at == Some(done) {
            return Ok(false);
        }
        // Each round takes a record, or finds nothing where it looked: the
        // ring's head moved (padding taken, or records by another
        // consumer), or the tail it had cached is used up (the next look
        // loads it afresh).
        loop {
            // The first look (is there any?), then the second (which?).
            let found = match self.oldest_handed_back(n) {
                Some(_) => self.oldest_handed_back(n),
                None => None,
            };
            let Some((i, limit)) = found else {
                // Every hand-back counted in `done` is seen, its ring empty.
                self.drained_at = Some(done);
                return Ok(false);
            };
            let got = match limit {
                None => self.take(i, buf, hook)?,
                // A ring claimed again: only the records below the tail
                // its hand-back left (those after are the new owner's).
                // A tail it loads (when that one does not check out)
                // becomes the cached one, which the next look's
                // `has_records` then goes by: a hostile tail word below
                // the records cannot keep this loop going.
                Some(limit) => {
                    let space = &self.queue.shared().space;
                    let ring = &self.queue.rings[i];
                    let mut tail = limit;
                    let got = take_from(ring, i, &mut tail, space, buf, &self.waiter, hook);
                    if tail != limit {
                        self.tails[i] = tail;
                    }
                    got?
                }
            };
            if let Take::Got = got {
                return Ok(true);
            }
        }
    }

    /// The handed-back ring with records that was handed back first (by
    /// its stamp, in wrapping order), if any, and for a ring claimed again
    /// since, the tail word its hand-back left (take only below it).
    #[inline(always)]
    fn oldest_handed_back(&mut self, n: usize) -> Option<(usize, Option<u64>)> {
        let mut oldest: Option<(u32, usize, Option<u64>)> = None;
        for i in 0..n {
            // The tail first, then the owner word: records the tail shows
            // were put before the owner word this look reads, so a ring
            // read free holds none of a producer that claimed it since.
            if !self.has_records(i) {
                continue;
            }
            let limit = if self.owned(i) {
                match self.handed_back_records_below(i) {
                    Some(tail) => Some(tail),
                    None => continue,
                }
            } else {
                None
            };
            // ORDERING: Relaxed — published by the Release store of the
            // owner word, which `owned` loaded with Acquire.
            let stamp = self.queue.rings[i]
                .shared()
                .config
                .handed_back
                .load(Ordering::Relaxed);
            // Wrapping order: `stamp` is earlier when the difference, read
            // as signed, is negative (stamps of live rings lie far closer
            // than 2^31 apart; a hostile stamp only reorders).
            if oldest.is_none_or(|(o, _, _)| (stamp.wrapping_sub(o) as i32) < 0) {
                oldest = Some((stamp, i, limit));
            }
        }
        oldest.map(|(_, i, limit)| (i, limit))
    }

    /// The tail word that the last hand-back of owned ring `i` left, when
    /// the ring's head still lies below it: records of a producer that
    /// handed the ring back before its owner claimed it, which keep their
    /// hand-back's place in the order. (A stamp of 0 says no hand-back
    /// happened, in a fresh queue.)
    #[inline(always)]
    fn handed_back_records_below(&self, i: usize) -> Option<u64> {
        let ring = &self.queue.rings[i];
        let config = &ring.shared().config;
        // ORDERING: Relaxed (both) — published by the Release clearing of
        // the owner word at that hand-back, which `owned` synchronised with:
        // the claim it saw continues that store's release sequence.
        let stamp = config.handed_back.load(Ordering::Relaxed);
        let tail = config.handed_back_tail.load(Ordering::Relaxed);
        // ORDERING: Acquire — as in `has_records`.
        let head = ring.shared().consumer.head.load(Ordering::Acquire);
        (stamp != 0 && matches!(ring.check_words(head, tail), Ok(1..))).then_some(tail)
    }

    /// Whether a producer owns ring `i` (it may be dead: only a hand-back
    /// clears the word).
    #[inline(always)]
    fn owned(&self, i: usize) -> bool {
        // ORDERING: Acquire — pairs with the Release of the hand-back in
        // the producer's drop: its stamp (and its records) are visible.
        self.queue.rings[i]
            .shared()
            .config
            .producer_owner
            .load(Ordering::Acquire)
            != 0
    }

    /// Whether ring `i` has a record published, as far as this consumer
    /// knows, loading the tail afresh (and caching it) when the cached one
    /// is used up. A ring whose words do not check out counts as having
    /// one: the take then reports it.
    #[inline(always)]
    fn has_records(&mut self, i: usize) -> bool {
        let ring = &self.queue.rings[i];
        // ORDERING: Acquire — as in `take_from`.
        let head = ring.shared().consumer.head.load(Ordering::Acquire);
        let cached = self.tails[i];
        if cached != NO_TAIL && matches!(ring.check_words(head, cached), Ok(1..)) {
            return true;
        }
        // ORDERING: Acquire — pairs with the producer's Release of the tail
        // word; `take_from` keeps using it as its cached tail.
        let tail = ring.shared().producer.tail.load(Ordering::Acquire);
        self.tails[i] = tail;
        !matches!(ring.check_words(head, tail), Ok(0))
    }

    /// [`take_from`] ring `i`: a record below the tail that
    /// [`has_records`](Self::has_records) cached.
    #[inline(always)]
    fn take<H: TakeHook>(
        &mut self,
        i: usize,
        buf: &mut Vec<u8>,
        hook: &mut H,
    ) -> Result<Take, Corrupted> {
        let space = &self.queue.shared().space;
        let ring = &self.queue.rings[i];
        let cached_tail = &mut self.tails[i];
        take_from(ring, i, cached_tail, space, buf, &self.waiter, hook)
    }

    /// Pops into `buf`, waiting until `until` ([`Until::Now`]: one try,
    /// then `Timeout`).
    ///
    /// # Blocking
    ///
    /// Tries, spins briefly, then sleeps until a record arrives, `until`
    /// passes or the queue is closed (and drained).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `Corrupted`.
    #[inline]
    pub fn pop(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        // The first try here, inline: a record that is there (or a single
        // try) costs no call into `block_on_with`, whose check result and
        // arguments go through memory. Measured in one thread, 8-byte
        // records: 42-47 ns a pop through `block_on_with`, 15-19 ns a
        // `try_pop`, mostly store-forwarding stalls on the 16-byte copies
        // of the closure's result.
        match self.try_pop(buf) {
            Err(PopError::Empty) if !until.is_now() => self.pop_waiting(buf, until),
            Err(PopError::Empty) => Err(PopError::Timeout),
            done => done,
        }
    }

    /// [`pop`](Self::pop) once the first try found every ring empty: the
    /// spin and the sleep (whose first check tries once more).
    #[inline(never)]
    fn pop_waiting(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, PopError> {
        let waiter = self.waiter.clone();
        let policy = self.policy;
        // As in `Producer::push`: no clone of the queue per call. `shared`
        // is shared memory, not part of `self`, so it aliases nothing the
        // check borrows; only atomics are reached through it.
        // SAFETY: it points into the mapping `self.queue` keeps alive while
        // `self` lives, which outlives this call.
        let shared: &super::QueueShared = unsafe { self.queue.shared.as_ref() };
        let mut history = self.history;
        let result = block_on_with(
            &shared.not_empty,
            &waiter,
            until,
            &policy,
            &mut history,
            |_| match self.try_pop(buf) {
                Err(PopError::Empty) => None,
                other => Some(other),
            },
        )
        .unwrap_or(Err(PopError::Timeout));
        self.history = history;
        result
    }

    /// Copies records out **without taking them**: one pass over the rings
    /// from the rotating start, and from each ring a run of consecutive
    /// records from its head, until `max_records` (at least 1) records or
    /// `max_bytes` of payload (but always the first record found, whatever
    /// its size) are appended to `out`, each with the [`PeekToken`] that
    /// [`commit`](Self::commit) later takes it with. Returns how many were
    /// appended. Records stay in the queue: another peek (by this or any
    /// consumer) finds them again until someone takes them.
    ///
    /// This is "leave the queue only once the copy is safe elsewhere": a
    /// bridge peeks, hands the copies on, and commits each once the other
    /// side acknowledged it. Within one ring the tokens must be committed in
    /// the order they were returned ([`Commit::NotYet`] otherwise).
    ///
    /// Order: each ring's records come in that ring's order, and the rings
    /// take turns as they do for [`try_pop`](Self::try_pop)'s owned rings.
    /// A peek does **not** follow `try_pop`'s hand-back order (a ring whose
    /// producer handed it back is not drained first): only per-ring order
    /// holds, which is per-producer order.
    ///
    /// Every copy appended is whole and untorn: after copying a run, a CAS
    /// of the ring's head word from the value the run was read at to itself
    /// proves that no consumer moved the head meanwhile, so the producer
    /// cannot have reused the space (it reuses space only after loading a
    /// head past it, which a later read-modify-write of the head wrote, in
    /// the release sequence of our CAS). A run that fails the check is
    /// discarded and read again.
    ///
    /// A padding record at a ring's head (a producer's skip to the start of
    /// its ring) is taken on the way, as [`try_pop`](Self::try_pop) does: a
    /// producer may be waiting for the head to pass it. A run ends at the
    /// next padding record.
    ///
    /// # Errors
    ///
    /// `Empty` (nothing appended), `Closed` (closed and every ring drained),
    /// `Corrupted` (a record at a ring's head does not decode while nobody
    /// moves that head).
    ///
    /// # Crash behaviour
    ///
    /// A consumer killed at any point of a peek, or between a peek and its
    /// commit, took nothing: the records are still in the queue, for the
    /// next consumer (the at-least-once of a bridge).
    pub fn try_peek(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<(PeekToken, Vec<u8>)>,
    ) -> Result<usize, PopError> {
        let got = self.peek_scan(max_records.max(1), max_bytes, out)?;
        if got > 0 {
            return Ok(got);
        }
        // As in `try_pop`: the flag, then one more pass.
        let closed = self.queue.shared().closed();
        if closed {
            let got = self.peek_scan(max_records.max(1), max_bytes, out)?;
            if got > 0 {
                return Ok(got);
            }
            return Err(PopError::Closed);
        }
        Err(PopError::Empty)
    }

    /// One pass of [`try_peek`](Self::try_peek) over the rings in use.
    fn peek_scan(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<(PeekToken, Vec<u8>)>,
    ) -> Result<usize, Corrupted> {
        let n = self.queue.rings_in_use();
        let mut i = if self.next < n { self.next } else { 0 };
        let (mut records, mut bytes) = (0, 0);
        for _ in 0..n {
            let budget = Budget {
                records: max_records - records,
                bytes: max_bytes.saturating_sub(bytes),
                any: records == 0,
            };
            let space = &self.queue.shared().space;
            let (r, b) = peek_run(&self.queue.rings[i], i, space, &self.waiter, budget, out)?;
            records += r;
            bytes += b;
            i = if i + 1 == n { 0 } else { i + 1 };
            if r > 0 {
                self.next = i;
            }
            if records >= max_records || (records > 0 && bytes >= max_bytes) {
                break;
            }
        }
        Ok(records)
    }

    /// [`try_peek`](Self::try_peek), waiting until `until` for a record
    /// ([`Until::Now`]: one try, then `Timeout`).
    ///
    /// # Blocking
    ///
    /// As [`pop`](Self::pop).
    ///
    /// # Errors
    ///
    /// `Timeout`, `Closed`, `Corrupted`.
    ///
    /// # Crash behaviour
    ///
    /// As [`try_peek`](Self::try_peek): nothing is taken.
    pub fn peek(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<(PeekToken, Vec<u8>)>,
        until: Until,
    ) -> Result<usize, PopError> {
        let waiter = self.waiter.clone();
        let policy = self.policy;
        let queue = self.queue.clone();
        let mut history = self.history;
        let result = block_on_with(
            queue.not_empty_word(),
            &waiter,
            until,
            &policy,
            &mut history,
            |_| match self.try_peek(max_records, max_bytes, out) {
                Err(PopError::Empty) => None,
                other => Some(other),
            },
        )
        .unwrap_or(Err(PopError::Timeout));
        self.history = history;
        result
    }

    /// Takes the record `token` names (from a [`try_peek`](Self::try_peek)
    /// of this queue), if it is still at the head of its ring: one CAS of
    /// the ring's head word from where the record was read to past it.
    ///
    /// [`Commit::Taken`]: this call took it (and woke producers waiting for
    /// room). [`Commit::TakenElsewhere`]: another consumer took it first,
    /// so its copy went both ways: the duplicate of at-least-once delivery.
    /// [`Commit::NotYet`]: an earlier record of its ring is still there
    /// (tokens of one ring are committed in order); nothing changed.
    ///
    /// A token of another queue takes nothing meaningful: its ring index
    /// and head word are compared with this queue's (an index out of range
    /// is `TakenElsewhere`). The head word repeats after 2^38 words of
    /// traffic through the ring (the ABA note of [`crate::ring`]): a token
    /// held across that much traffic could take a newer record.
    ///
    /// # Crash behaviour
    ///
    /// One atomic operation: killed before it, the record stays queued (and
    /// another consumer may copy it again); after it, it is taken.
    pub fn commit(&self, token: &PeekToken) -> Commit {
        let Some(ring) = self.queue.rings.get(token.ring) else {
            return Commit::TakenElsewhere;
        };
        let line = &ring.shared().consumer;
        // ORDERING: AcqRel on success — Release orders the copy (made
        // before the validating CAS, already Release) and anything the
        // caller did before this commit ahead of the head move, for the
        // producer's Acquire load of the head before it reuses the space;
        // Acquire on failure — the value read says who moved the head.
        match line.head.compare_exchange(
            token.head,
            token.next,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                failpoint!("mpmc.commit-done");
                self.queue
                    .shared()
                    .space
                    .wake_if_waiting(&self.waiter, WAKE_ALL);
                Commit::Taken
            }
            Err(now) => {
                // Behind the record by less than a capacity: it is still
                // there, past an earlier one (for correct peers the head
                // never is further behind than that).
                let behind = distance(position(now), position(token.head));
                if behind != 0 && behind < ring.words() {
                    Commit::NotYet
                } else {
                    Commit::TakenElsewhere
                }
            }
        }
    }

    /// Sets the spin budget and sleep slice of [`pop`](Consumer::pop).
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// The spin budget and sleep slice of [`pop`](Consumer::pop).
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }
}

/// One take from one ring: copy out optimistically, then CAS the head word.
/// `cached_tail` is this consumer's last Acquire load of the ring's tail
/// word (or [`NO_TAIL`]).
#[inline(always)]
fn take_from<W: Waiter + ?Sized, H: TakeHook>(
    ring: &RingRef,
    index: usize,
    cached_tail: &mut u64,
    space: &WaitWord,
    buf: &mut Vec<u8>,
    waiter: &W,
    hook: &mut H,
) -> Result<Take, Corrupted> {
    let line = &ring.shared().consumer;
    loop {
        // ORDERING: Acquire — pairs with other consumers' Release CAS.
        let head = line.head.load(Ordering::Acquire);
        let mut tail = *cached_tail;
        // The cached tail serves while the head is below it: some words
        // ahead, no more than the capacity, counting no more records than
        // there are words. Otherwise the head caught up with it (or passed
        // it), or there is none: load the tail word.
        let mut avail = ring.check_words(head, tail);
        let cached = tail != NO_TAIL && matches!(avail, Ok(1..));
        // Only records below the cached tail (the scan's `has_records`
        // loaded it): once they are taken the ring reads as empty here,
        // and the scan loads the tail again, then looks at the handed-back
        // rings before it takes more (see "Order across rings").
        if !cached && tail != NO_TAIL && matches!(avail, Ok(0)) {
            return Ok(Take::Empty);
        }
        if !cached {
            // ORDERING: Acquire — pairs with the producer's Release of the
            // tail word: the records before it are complete.
            tail = ring.shared().producer.tail.load(Ordering::Acquire);
            *cached_tail = tail;
            if tail == head {
                return Ok(Take::Empty);
            }
            avail = ring.check_words(head, tail);
        }
        // For correct peers the tail is at most the capacity past the head
        // and counts no more records than the words between: the producer
        // stored this tail only after loading a head at most a capacity
        // behind it, and our Acquire of the tail makes that load happen
        // before our (later) load of the head word in the next round; a
        // head loaded before the tail can be older than that (a race, told
        // apart below by re-reading it). A cached tail keeps this.
        let found = avail.and_then(|avail| match avail {
            0 => Err(Corrupted::new("ring counts (pushed - popped)", tail)),
            _ => ring.record_at(position(head), avail),
        });
        let found = match found {
            Ok(found) => found,
            Err(c) => {
                // ORDERING: Acquire — the header and tail loads above were
                // Acquire, so if they came from a later lap, the head advance
                // that allowed it happens-before this load and is seen here.
                if line.head.load(Ordering::Acquire) == head {
                    *cached_tail = NO_TAIL;
                    // A cached tail is trusted while the head lies less
                    // than a capacity behind it, modulo 2^38; after nearly
                    // 2^38 words of traffic (a consumer state left idle
                    // meanwhile) the head is back there with the ring's
                    // real tail possibly behind the cached one, and what
                    // lies past the real tail is stale. Only a verdict on
                    // a tail loaded just now is reported; the next round
                    // loads one.
                    if cached {
                        continue;
                    }
                    return Err(c);
                }
                continue; // raced with another consumer and the producer
            }
        };
        if !found.pad {
            if found.len <= small::SMALL {
                small::load(ring.payload_words(&found), found.len, buf);
            } else {
                buf.clear();
                bytes::append(ring.payload_words(&found), found.len, buf);
            }
            failpoint!("mpmc.copied", buf);
        }
        // One CAS moves the position past the record and, for data, counts
        // it taken: no death can separate the two.
        let next = head_past(head, found.size, !found.pad);
        if !found.pad {
            hook.before(index, head);
        }
        // ORDERING: AcqRel on success — Release orders our copy (and the
        // hook's announcement) before the head moves (pairs with the
        // producer's Acquire load of the head, so it cannot overwrite what
        // we are still reading, and with a reader's Acquire load of the
        // head word, which then sees the announcement); Acquire is for the
        // next loop round. Relaxed on failure: we re-load everything.
        let won = line
            .head
            .compare_exchange(head, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if !found.pad {
            if won {
                failpoint!("mpmc.cas-done");
            }
            hook.after(won);
        }
        if !won {
            continue; // another consumer took it; our copy is discarded
        }
        if found.pad {
            // Passing the padding is the head move its producer waits for
            // (a record that did not fit before the end): wake it as any
            // take would, then look past the wrap.
            space.wake_if_waiting(waiter, WAKE_ALL);
            continue;
        }
        // Every producer sleeping for room waits on the one `space` word
        // (its own ring full, or `max_len` reached): wake them all, the
        // one whose ring this was and any waiting on the count.
        space.wake_if_waiting(waiter, WAKE_ALL);
        return Ok(Take::Got);
    }
}

/// Where a record [`Consumer::try_peek`] copied out lies: what
/// [`Consumer::commit`] takes it with, and the record's identity.
///
/// The identity is ([`ring`](Self::ring), [`head_word`](Self::head_word)):
/// the same for every peek of the record, in any process and across
/// restarts, for as long as the record is queued, and different for every
/// other record of the queue while less than 2^38 words (2 TiB) went
/// through the ring. A bridge derives its deduplication id from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeekToken {
    ring: usize,
    /// The head word the record was read at (its position and the count
    /// of data records taken from the ring before it).
    head: u64,
    /// The head word past it.
    next: u64,
}

impl PeekToken {
    /// The producer ring the record is in.
    pub fn ring(&self) -> usize {
        self.ring
    }

    /// The ring's head word the record was read at (see
    /// [`crate::ring`] for its packing): position and count together.
    pub fn head_word(&self) -> u64 {
        self.head
    }

    /// The record's sequence number in its ring: data records taken from
    /// the ring before it, modulo 2^26 (consecutive records of a ring have
    /// consecutive numbers, whichever producer owned it).
    pub fn sequence(&self) -> u64 {
        count(self.head)
    }
}

/// What [`Consumer::commit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Commit {
    /// This commit took the record out of the queue.
    Taken,
    /// Another consumer took it first (it was delivered twice, or will be).
    TakenElsewhere,
    /// An earlier record of its ring has not been taken: nothing changed.
    NotYet,
}

/// What a peek run may still append.
#[derive(Clone, Copy)]
struct Budget {
    records: usize,
    bytes: usize,
    /// Whether the first record found is appended even above `bytes`.
    any: bool,
}

/// One validated run of records from one ring, appended to `out`: how many
/// and their payload bytes. See [`Consumer::try_peek`].
fn peek_run<W: Waiter + ?Sized>(
    ring: &RingRef,
    index: usize,
    space: &WaitWord,
    waiter: &W,
    budget: Budget,
    out: &mut Vec<(PeekToken, Vec<u8>)>,
) -> Result<(usize, usize), Corrupted> {
    let line = &ring.shared().consumer;
    let start = out.len();
    'run: loop {
        out.truncate(start);
        // ORDERING: Acquire — pairs with other consumers' Release CAS of
        // the head (the head moved, the tail it saw is visible to us).
        let head = line.head.load(Ordering::Acquire);
        // ORDERING: Acquire — pairs with the producer's Release store of
        // the tail word: the records before it are complete.
        let tail = ring.shared().producer.tail.load(Ordering::Acquire);
        if tail == head {
            return Ok((0, 0));
        }
        let checked = ring.check_words(head, tail).and_then(|avail| match avail {
            0 => Err(Corrupted::new("ring counts (pushed - popped)", tail)),
            avail => Ok(avail),
        });
        let mut left = match checked {
            Ok(avail) => avail,
            Err(c) => {
                // ORDERING: Acquire — as in `take_from`: a head loaded
                // before a later tail may be stale; unmoved, it is not.
                if line.head.load(Ordering::Acquire) == head {
                    return Err(c);
                }
                continue;
            }
        };
        let (mut pos, mut bytes, mut bad) = (head, 0, None);
        while left > 0 && out.len() - start < budget.records {
            let found = match ring.record_at(position(pos), left) {
                Ok(found) => found,
                Err(c) => {
                    bad = Some(c);
                    break;
                }
            };
            if found.pad {
                if pos != head {
                    break; // the run ends at a padding record
                }
                // A padding record at the head: take it, as a pop would,
                // and wake the producer that may wait for it.
                let past = head_past(head, found.size, false);
                // ORDERING: AcqRel — as the take of a padding record in
                // `take_from`: pairs with the producer's Acquire of the
                // head; Relaxed on failure, everything is re-read.
                if line
                    .head
                    .compare_exchange(head, past, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    space.wake_if_waiting(waiter, WAKE_ALL);
                }
                continue 'run;
            }
            let first = out.len() == start;
            if bytes + found.len > budget.bytes && !(first && budget.any) {
                break;
            }
            let mut copy = Vec::new();
            if found.len <= small::SMALL {
                small::load(ring.payload_words(&found), found.len, &mut copy);
            } else {
                bytes::append(ring.payload_words(&found), found.len, &mut copy);
            }
            let next = head_past(pos, found.size, true);
            out.push((
                PeekToken {
                    ring: index,
                    head: pos,
                    next,
                },
                copy,
            ));
            bytes += found.len;
            left -= found.size;
            pos = next;
        }
        failpoint!("mpmc.peek-copied");
        // The validation: the head word still at `head` after the copies.
        // A CAS to itself, not a load: as a read-modify-write it reads the
        // last value in the head's modification order, and as a Release it
        // heads the release sequence every later head move (all CASes)
        // continues, which the producer's Acquire load of the head
        // synchronises with before it reuses any space we copied from.
        // A plain Acquire re-load of the head (a seqlock's check) is not
        // enough: the producer's reuse is ordered after the head move by
        // its Acquire load only, with no Release of its own that a load of
        // ours could pair with; loom finds a torn copy with it.
        // ORDERING: AcqRel — Release as just said (partner: the producer's
        // Acquire load of the head word); Acquire is not needed by the
        // copies (they are done) but keeps this the usual take CAS. Relaxed
        // on failure: the run is read again.
        if line
            .head
            .compare_exchange(head, head, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue; // a consumer moved the head: the copies may be torn
        }
        let got = out.len() - start;
        if let (Some(c), 0) = (bad, got) {
            // Unmoved head, and the record there does not decode: corrupted.
            return Err(c);
        }
        // A bad record after good ones ends the run; the next peek finds it
        // at the head and reports it.
        return Ok((got, bytes));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use alloc::vec::Vec;

    use crate::error::PopError;
    use crate::heap::{self, ThreadWaiter};
    use crate::mpmc::QueueConfig;
    use crate::ring::RingConfig;

    /// A CONT record in a queue's ring (no queue producer writes one) is
    /// taken like a DATA record, and counted.
    #[test]
    fn continuation_record_is_delivered_like_data() {
        let config = QueueConfig {
            rings: 1,
            ring: RingConfig {
                capacity: 256,
                max_record: 16,
            },
            max_len: 0,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let mut producer = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        producer.writer.write(b"begins", false).unwrap();
        producer.writer.write(b"continues", true).unwrap();
        producer.writer.publish();
        assert_eq!(queue.len(), 2);
        let mut consumer = queue.consumer(waiter);
        let mut buf = Vec::new();
        assert_eq!(consumer.try_pop(&mut buf), Ok(6));
        assert_eq!(buf, b"begins");
        assert_eq!(consumer.try_pop(&mut buf), Ok(9));
        assert_eq!(buf, b"continues");
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
    }

    fn peek_config(rings: u64, capacity: u64, max_record: u64) -> QueueConfig {
        QueueConfig {
            rings,
            ring: RingConfig {
                capacity,
                max_record,
            },
            max_len: 0,
        }
    }

    /// A peek copies without taking: the same records come back, with the
    /// same tokens, until a commit takes them; commits go in order and
    /// count; a commit of a record someone else took says so.
    #[test]
    fn peek_leaves_records_until_commit() {
        use super::Commit;
        let queue = heap::queue(&peek_config(1, 256, 16)).unwrap();
        let waiter = ThreadWaiter::default();
        let mut producer = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        let mut consumer = queue.consumer(waiter.clone());
        let mut other = queue.consumer(waiter);
        let mut out = Vec::new();
        assert_eq!(
            consumer.try_peek(8, 1 << 20, &mut out),
            Err(PopError::Empty)
        );
        for m in [&b"one"[..], b"two", b"three"] {
            producer.try_push(m).unwrap();
        }
        assert_eq!(consumer.try_peek(8, 1 << 20, &mut out), Ok(3));
        let first = core::mem::take(&mut out);
        assert_eq!(first[0].1, b"one");
        assert_eq!(first[2].1, b"three");
        assert_eq!(
            first.iter().map(|(t, _)| t.sequence()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(first.iter().all(|(t, _)| t.ring() == 0));
        assert_eq!(queue.len(), 3, "a peek takes nothing");
        // Another consumer's peek sees the very same records and tokens.
        assert_eq!(other.try_peek(8, 1 << 20, &mut out), Ok(3));
        assert_eq!(out, first);
        out.clear();
        // Out of order: nothing changes.
        assert_eq!(consumer.commit(&first[1].0), Commit::NotYet);
        assert_eq!(queue.len(), 3);
        assert_eq!(consumer.commit(&first[0].0), Commit::Taken);
        assert_eq!(queue.len(), 2);
        assert_eq!(consumer.commit(&first[0].0), Commit::TakenElsewhere);
        // A plain pop takes "two" under the peeker's feet.
        let mut buf = Vec::new();
        assert_eq!(other.try_pop(&mut buf), Ok(3));
        assert_eq!(buf, b"two");
        assert_eq!(consumer.commit(&first[1].0), Commit::TakenElsewhere);
        assert_eq!(consumer.commit(&first[2].0), Commit::Taken);
        assert!(queue.is_empty());
        assert_eq!(queue.checked_len(), Ok(0));
        queue.close(&ThreadWaiter::default());
        assert_eq!(
            consumer.try_peek(8, 1 << 20, &mut out),
            Err(PopError::Closed)
        );
    }

    /// `max_records` and `max_bytes` bound a peek (the first record always
    /// comes, whatever its size); runs come from every ring, each ring's in
    /// order; the tokens of a later peek continue where commits left off.
    #[test]
    fn peek_budgets_and_rings() {
        let queue = heap::queue(&peek_config(2, 256, 32)).unwrap();
        let waiter = ThreadWaiter::default();
        let mut a = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        let mut b = queue
            .claim_producer(2, waiter.clone(), &mut |_| false)
            .unwrap();
        for i in 0..4u8 {
            a.try_push(&[i; 10]).unwrap();
            b.try_push(&[100 + i; 10]).unwrap();
        }
        let mut c = queue.consumer(waiter);
        let mut out = Vec::new();
        assert_eq!(c.try_peek(3, 1 << 20, &mut out), Ok(3));
        assert_eq!(
            c.try_peek(100, 5, &mut out),
            Ok(1),
            "first one whatever its size"
        );
        out.clear();
        assert_eq!(
            c.try_peek(100, 25, &mut out),
            Ok(2),
            "10 + 10, the third is over"
        );
        out.clear();
        assert_eq!(c.try_peek(100, 1 << 20, &mut out), Ok(8));
        let rings: Vec<usize> = out.iter().map(|(t, _)| t.ring()).collect();
        assert_eq!(rings.iter().filter(|&&r| r == 0).count(), 4);
        for ring in 0..2 {
            let mine: Vec<u8> = out
                .iter()
                .filter(|(t, _)| t.ring() == ring)
                .map(|(_, m)| m[0])
                .collect();
            let base = if ring == 0 { 0 } else { 100 };
            assert_eq!(mine, (base..base + 4).collect::<Vec<u8>>());
        }
        for (t, _) in out.iter().filter(|(t, _)| t.ring() == 0).take(2) {
            assert_eq!(c.commit(t), super::Commit::Taken);
        }
        let mut again = Vec::new();
        assert_eq!(c.try_peek(100, 1 << 20, &mut again), Ok(6));
        let ring0: Vec<_> = again.iter().filter(|(t, _)| t.ring() == 0).collect();
        assert_eq!(ring0[0].0.sequence(), 2);
        assert_eq!(ring0[0].1, [2; 10]);
    }

    /// A padding record at a ring's head is taken by a peek (its producer
    /// may wait for exactly that), and a run stops at padding; the record
    /// after the wrap comes whole with its own token.
    #[test]
    fn peek_takes_padding_at_the_head_and_stops_at_later_padding() {
        use super::Commit;
        let queue = heap::queue(&peek_config(1, 64, 24)).unwrap();
        let waiter = ThreadWaiter::default();
        let mut p = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        let mut c = queue.consumer(waiter);
        let mut out = Vec::new();
        // An 8-word ring: records of 2 words (8-byte payload) and 4 words
        // (24 bytes), header included.
        p.try_push(&[1; 8]).unwrap(); // words 0..2
        p.try_push(&[2; 24]).unwrap(); // words 2..6
        assert_eq!(c.try_peek(10, 1 << 20, &mut out), Ok(2));
        for (t, _) in out.drain(..) {
            assert_eq!(c.commit(&t), Commit::Taken);
        }
        // 4 words do not fit in the last 2: padding, then the record at 0.
        p.try_push(&[3; 24]).unwrap();
        assert_eq!(c.try_peek(10, 1 << 20, &mut out), Ok(1));
        assert_eq!(out[0].1, [3; 24]);
        assert_eq!(c.commit(&out[0].0), Commit::Taken);
        assert!(queue.is_empty());
        out.clear();
        // A run that meets padding after a record stops there.
        p.try_push(&[4; 8]).unwrap(); // words 4..6
        p.try_push(&[5; 24]).unwrap(); // pads 6..8, lands at 0..4
        assert_eq!(c.try_peek(10, 1 << 20, &mut out), Ok(1));
        assert_eq!(out[0].1, [4; 8]);
        assert_eq!(c.commit(&out[0].0), Commit::Taken);
        out.clear();
        assert_eq!(c.try_peek(10, 1 << 20, &mut out), Ok(1));
        assert_eq!(out[0].1, [5; 24]);
        assert_eq!(c.commit(&out[0].0), Commit::Taken);
        assert_eq!(queue.checked_len(), Ok(0));
    }

    /// A record at the head that does not decode while the head stays put
    /// is `Corrupted` for a peek, not a panic or a record.
    #[test]
    fn peek_reports_a_hostile_record_as_corruption() {
        use crate::ring::POSITION_BITS;
        use crate::sync::Ordering;
        let queue = heap::queue(&peek_config(1, 256, 16)).unwrap();
        let waiter = ThreadWaiter::default();
        let _p = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        // A tail that claims one record of 2 words where nothing was
        // written (a zero header).
        let (tail, _) = queue.position_words(0);
        tail.store((1 << POSITION_BITS) | 2, Ordering::Release);
        let mut c = queue.consumer(waiter);
        let mut out = Vec::new();
        assert!(matches!(
            c.try_peek(10, 1 << 20, &mut out),
            Err(PopError::Corrupted(_))
        ));
        assert!(out.is_empty());
    }

    /// The blocking form waits for a record, times out, and sees a close.
    #[test]
    fn blocking_peek_waits_times_out_and_sees_close() {
        use crate::wait::{Until, WaitPolicy};
        let queue = heap::queue(&peek_config(1, 256, 16)).unwrap();
        let waiter = ThreadWaiter::default();
        let mut p = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        let mut c = queue.consumer(waiter.clone());
        c.set_wait_policy(WaitPolicy {
            spin_ns: 0,
            max_spin_ns: 0,
            slice_ns: 1_000_000,
        });
        let mut out = Vec::new();
        assert_eq!(
            c.peek(
                4,
                64,
                &mut out,
                Until::after(std::time::Duration::from_millis(5))
            ),
            Err(PopError::Timeout)
        );
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            p.try_push(b"late").unwrap();
            p
        });
        assert_eq!(c.peek(4, 64, &mut out, Until::Never), Ok(1));
        assert_eq!(out[0].1, b"late");
        let _p = pusher.join().unwrap();
        assert_eq!(c.commit(&out[0].0), super::Commit::Taken);
        queue.close(&waiter);
        assert_eq!(c.peek(4, 64, &mut out, Until::Never), Err(PopError::Closed));
    }

    /// Python's producer/consumer ending: the producers finish and hand
    /// their rings back, then one more record goes into a ring still owned
    /// (ring 0 here, where a scan starts): it comes out after everything
    /// they put, each ring's records in order.
    #[test]
    fn handed_back_rings_drain_before_a_later_record_of_an_owned_ring() {
        let config = QueueConfig {
            rings: 3,
            ring: RingConfig {
                capacity: 1024,
                max_record: 64,
            },
            max_len: 0,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let claim = |token| {
            queue
                .claim_producer(token, waiter.clone(), &mut |_| false)
                .unwrap()
        };
        let mut last = claim(1);
        let (mut a, mut b) = (claim(2), claim(3));
        assert_eq!(
            (last.ring_index(), a.ring_index(), b.ring_index()),
            (0, 1, 2)
        );
        for msg in [&b"a1"[..], b"a2", b"a3"] {
            a.try_push(msg).unwrap();
        }
        for msg in [&b"b1"[..], b"b2"] {
            b.try_push(msg).unwrap();
        }
        drop((a, b)); // the producers are done: "joined"
        last.try_push(b"end").unwrap();
        let mut consumer = queue.consumer(waiter.clone());
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while consumer.try_pop(&mut buf).is_ok() {
            got.push(buf.clone());
        }
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[5], b"end", "{got:?}");
        let of = |p: u8| {
            got.iter()
                .filter(|m| m[0] == p)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(of(b'a'), [b"a1", b"a2", b"a3"]);
        assert_eq!(of(b'b'), [b"b1", b"b2"]);
        // Owned rings still take turns: two live producers, two records
        // each, come out alternating.
        let mut c = claim(4);
        assert_eq!(c.ring_index(), 1);
        for msg in [&b"c1"[..], b"c2"] {
            c.try_push(msg).unwrap();
        }
        for msg in [&b"l1"[..], b"l2"] {
            last.try_push(msg).unwrap();
        }
        let firsts: Vec<u8> = (0..4)
            .map(|_| {
                consumer.try_pop(&mut buf).unwrap();
                buf[0]
            })
            .collect();
        assert!(
            firsts[0] != firsts[1] && firsts[2] != firsts[3],
            "{firsts:?}"
        );
    }

    /// A handed-back ring that a new producer claims before its records
    /// are drained keeps them first in its own order, but they lose their
    /// place before a later put of a third ring: a record put after the
    /// hand-back was seen (a join) comes out before the joined producer's
    /// records. The sentinel's ring is ring 0, where scans start.
    #[test]
    fn records_of_a_handed_back_ring_claimed_again_still_come_before_a_later_put() {
        let config = QueueConfig {
            rings: 2,
            ring: RingConfig {
                capacity: 1024,
                max_record: 64,
            },
            max_len: 0,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let claim = |token| {
            queue
                .claim_producer(token, waiter.clone(), &mut |_| false)
                .unwrap()
        };
        let mut last = claim(1);
        let mut a = claim(2);
        assert_eq!((last.ring_index(), a.ring_index()), (0, 1));
        for msg in [&b"a1"[..], b"a2"] {
            a.try_push(msg).unwrap();
        }
        drop(a); // joined
                 // A new producer starts (say a worker of the next stage) and gets
                 // the free ring, a's, before any consumer ran.
        let next = claim(3);
        assert_eq!(next.ring_index(), 1);
        last.try_push(b"end").unwrap();
        let mut consumer = queue.consumer(waiter.clone());
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while consumer.try_pop(&mut buf).is_ok() {
            got.push(buf.clone());
        }
        assert_eq!(got, [&b"a1"[..], b"a2", b"end"]);
        drop(next);
    }

    /// Hostile words around a ring claimed again after its hand-back: the
    /// tail word moved back to the head and the record there scribbled,
    /// while the hand-back's tail still says records lie below it. A pop
    /// answers (here `Empty`) instead of looking at that ring for ever.
    #[test]
    fn hostile_words_of_a_ring_claimed_again_get_an_answer_not_a_hang() {
        use crate::sync::Ordering;
        let config = QueueConfig {
            rings: 1,
            ring: RingConfig {
                capacity: 256,
                max_record: 16,
            },
            max_len: 0,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let claim = |token| {
            queue
                .claim_producer(token, waiter.clone(), &mut |_| false)
                .unwrap()
        };
        let mut a = claim(1);
        a.try_push(b"r1").unwrap();
        a.try_push(b"r2").unwrap();
        drop(a);
        let b = claim(2);
        let mut consumer = queue.consumer(waiter.clone());
        let mut buf = Vec::new();
        assert_eq!(consumer.try_pop(&mut buf), Ok(2));
        assert_eq!(buf, b"r1");
        let (tail, head) = queue.position_words(0);
        // ORDERING: Relaxed — a hostile peer's stores, in this thread.
        let at = head.load(Ordering::Relaxed);
        tail.store(at, Ordering::Relaxed);
        let ring = &queue.rings[0];
        let index = (crate::ring::position(at) & (ring.words() - 1)) as usize;
        // ORDERING: Relaxed — as above.
        ring.data()[index].store(u64::MAX, Ordering::Relaxed);
        let (sent, answer) = std::sync::mpsc::channel();
        let popper = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = sent.send(consumer.try_pop(&mut buf));
        });
        let got = answer.recv_timeout(std::time::Duration::from_secs(60));
        assert!(got.is_ok(), "try_pop did not return");
        popper.join().unwrap();
        drop(b);
    }

    /// The blocking forms try first outside `block_on_with` (a fast path):
    /// the answers stay those of the waiting loop. A single try or a
    /// passed deadline that finds nothing is `Timeout`; a record there is
    /// taken at once whatever the deadline; closed is `Closed`, not
    /// `Timeout`; a push's own errors come back as they are.
    #[test]
    fn blocking_forms_answer_as_the_waiting_loop_does() {
        use crate::error::{PopError, PushError};
        use crate::wait::{Deadline, Until};
        let config = QueueConfig {
            rings: 1,
            ring: RingConfig {
                capacity: 256,
                max_record: 16,
            },
            max_len: 2,
        };
        let queue = heap::queue(&config).unwrap();
        let waiter = ThreadWaiter::default();
        let mut producer = queue
            .claim_producer(1, waiter.clone(), &mut |_| false)
            .unwrap();
        let mut consumer = queue.consumer(waiter.clone());
        let mut buf = Vec::new();
        let past = Until::At(Deadline(0));
        for until in [Until::Now, Until::After(0), past] {
            assert_eq!(consumer.pop(&mut buf, until), Err(PopError::Timeout));
        }
        assert!(matches!(
            producer.push(&[0; 17], Until::Never),
            Err(PushError::TooLarge { len: 17, max: 16 })
        ));
        producer.push(b"one", Until::Now).unwrap();
        producer.push(b"two", past).unwrap();
        // `max_len` reached: full, so a single try times out.
        for until in [Until::Now, Until::After(0), past] {
            assert_eq!(producer.push(b"three", until), Err(PushError::Timeout));
        }
        assert_eq!(consumer.pop(&mut buf, Until::Never), Ok(3));
        assert_eq!(buf, b"one");
        assert_eq!(consumer.pop(&mut buf, past), Ok(3));
        assert_eq!(buf, b"two");
        queue.close(&waiter);
        assert_eq!(producer.push(b"late", Until::Never), Err(PushError::Closed));
        assert_eq!(consumer.pop(&mut buf, Until::Never), Err(PopError::Closed));
        assert_eq!(consumer.pop(&mut buf, Until::Now), Err(PopError::Closed));
    }
}
