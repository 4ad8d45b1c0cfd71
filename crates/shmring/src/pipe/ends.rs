//! The two halves of a connection: the ring it reads and the ring it
//! writes, each with the role this end holds on it, and the framing of
//! messages into records (see the [module docs](super#framing)).

use std::fmt;
use std::sync::Arc;

use shmring_core::error::{Corrupted, PopError, PushError};
use shmring_core::record::{record_size, Mark, HEADER};
use shmring_core::spsc;
use shmring_core::wait::{Deadline, TimedOut, Until, WaitPolicy};

use super::error::{eof, from_pop, from_push, RecvError, SendError, TryRecvError, TrySendError};
use crate::attach::mark_gone;
use crate::segment::Segment;
use crate::sys::FutexWaiter;

/// `until` with a relative timeout made absolute (reading the clock once):
/// what an operation that may wait more than once (a message of several
/// records, a whole fragmented message, a poll that skips records) passes to
/// each wait, so that the timeout runs once, not anew at each wait.
/// [`Until::Now`] and [`Until::Never`] read no clock.
#[inline]
pub(super) fn pinned(until: Until) -> Until {
    match until {
        Until::After(nanos) => Until::At(crate::sys::now().after(nanos)),
        other => other,
    }
}

/// How many `try_*` calls that find nothing share one look at the clock.
const PROBE_EVERY: u8 = 16;

/// Paces the liveness probes (a system call each) of calls that do not
/// sleep: at most one per liveness slice, and the clock is read by one call
/// in [`PROBE_EVERY`] (the other calls of a tight polling loop cost only a
/// decrement), so such a loop stays out of the kernel and still notices a
/// dead peer within a slice and [`PROBE_EVERY`] calls.
#[derive(Debug)]
struct Probe {
    /// No probe before this instant; `Deadline(0)`: the first one is due.
    next: Deadline,
    /// Calls left before the clock is read again.
    skip: u8,
}

impl Probe {
    fn new() -> Probe {
        Probe {
            next: Deadline(0),
            skip: 0,
        }
    }

    /// Whether a probe is due now; if so, the next one is a slice away.
    /// A `try_*` that finds nothing calls this each time: most calls only
    /// count down, one in [`PROBE_EVERY`] reads the coarse clock.
    #[inline]
    fn due(&mut self, policy: &WaitPolicy) -> bool {
        if let Some(left) = self.skip.checked_sub(1) {
            self.skip = left;
            return false;
        }
        self.skip = PROBE_EVERY - 1;
        let now = crate::sys::now_coarse();
        if now < self.next {
            return false;
        }
        self.next = now.after(policy.slice_ns);
        true
    }
}

/// The ring this end reads: its consumer role is ours.
pub(super) struct Incoming {
    pub(super) consumer: spsc::Consumer<FutexWaiter>,
    pub(super) ring: spsc::Ring,
    /// A message is half read: its first record was taken off the ring, its
    /// last (the first without the "more" mark) not yet. Between calls,
    /// [`partial`](Incoming::partial) then holds what was taken of it.
    in_message: bool,
    /// Between calls, the bytes of the half-read message (empty when there
    /// is none): a call that gives up before its last record (a try, a
    /// timeout) leaves here what it took, and the next call, of any kind,
    /// goes on from there. During a receive into a `Vec`, the message being
    /// assembled; a receive into a caller's buffer copies records straight
    /// there and uses this only to hand a half-read message on.
    pub(super) partial: Vec<u8>,
    /// Bytes of records (header included) consumed by the current receive
    /// or poll (see [`begin`](Incoming::begin)): a timed call looks at its
    /// deadline between records once this reaches the ring's capacity.
    taken: u64,
    /// The ring's capacity in bytes.
    capacity: u64,
    probe: Probe,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("ring", &self.ring)
            .field("in_message", &self.in_message)
            .field("partial_bytes", &self.partial.len())
            .finish()
    }
}

/// The ring this end writes: its producer role is ours.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) producer: spsc::Producer<FutexWaiter>,
    pub(super) ring: spsc::Ring,
    pub(super) fragment: usize,
    /// [`longest_whole`] of this ring, computed once (two divisions).
    max_whole: usize,
    /// The longest message that is one record and fits an empty ring at
    /// any position: `min(fragment, max_whole)`. Up to this length an
    /// all-or-nothing send is one push.
    single_max: usize,
    probe: Probe,
}

/// The longest message a call that sends all or nothing
/// ([`Outgoing::whole`]) accepts: one that goes into an *empty* ring of
/// `capacity` bytes with `fragment`-byte fragments whatever the ring's
/// position. Records never straddle the end of the ring: one that does not
/// fit before the end leaves the rest of it as padding, so position matters.
///
/// A message of `q` records (`q - 1` full fragments of `full =
/// record_size(fragment)` bytes, then a last record of `s` bytes, `s <=
/// full`) takes its records and at most one wrap's padding, which is
/// shorter than the record that did not fit: at worst `(q - 1) * full + s +
/// (largest - HEADER)`, `largest` being `full` when `q > 1` and `s` when the
/// message is one record. That worst case grows with the length, so every
/// shorter message fits too:
///
/// * one record (up to a whole fragment): `2 * s - HEADER <= capacity`.
///   With fragments of more than about half the ring, this is shorter than
///   a fragment.
/// * more: `k` full fragments and a last record of what is left of
///   `capacity - (full - HEADER)`.
///
/// The sends themselves ask for exactly the room the message takes from
/// where the ring stands ([`spsc::Producer::space_needed`]), never more
/// than this worst case.
fn longest_whole(capacity: u64, fragment: usize) -> usize {
    let f = fragment as u64;
    // The largest record size `s` (a multiple of 8) with `2s - HEADER <=
    // capacity`, and the payload it holds.
    let single_record = ((capacity + HEADER) / 2) & !7;
    let single = (single_record - HEADER).min(f);
    if single < f {
        // Not even one whole fragment fits at every position: no message of
        // several records does either.
        return single as usize;
    }
    let full = record_size(f);
    // Room for the records once the worst padding (`full - HEADER`) is set
    // aside: at least one full record, since one fits (above).
    let budget = capacity + HEADER - full;
    let k = budget / full;
    // What is left is a multiple of 8: a last record of that size, if it
    // can hold a byte (16 or more), adds its payload.
    let left = budget - k * full;
    let last = if left >= 2 * HEADER { left - HEADER } else { 0 };
    usize::try_from(k * f + last).unwrap_or(usize::MAX)
}

/// Whether the process holding the other role of `ring` (`word`) is gone;
/// if so, closes the ring on its behalf, so that every later check is the
/// flag alone (no system call) and a re-opened end finds it closed, as
/// Python's dead descriptor would be.
///
/// "Gone" is decided by [`mark_gone`]'s CAS on the role word: a process
/// that takes the dead end over at the same moment either wins (then the
/// end is not gone, and nothing is closed under the new holder) or finds
/// the word `GONE` and closes the ring itself (see `Connection::claim`).
///
/// With the cargo feature `failpoints`, the failpoint hook is called as
/// `pipe.closing-for-gone-peer` between the decision and the closing.
fn peer_gone(ring: &spsc::Ring, word: &shmring_core::sync::AtomicU64, segment: &Segment) -> bool {
    let gone = mark_gone(word, segment);
    if gone {
        #[cfg(feature = "failpoints")]
        shmring_core::failpoint::hit("pipe.closing-for-gone-peer", &[]);
        ring.close(&segment.waiter());
    }
    gone
}

/// The [`Role`](spsc::Role) of a pipe end's ring handle: [`peer_gone`] on
/// the other end's role word (the producer's for a reader, the
/// consumer's for a writer). It gives nothing back when dropped: the
/// connection releases its roles itself (on close, and at once when it is
/// handed to a child).
fn watch(ring: &spsc::Ring, segment: &Arc<Segment>, reader: bool) -> impl spsc::Role + 'static {
    let (ring, segment) = (ring.clone(), segment.clone());
    move || {
        let (producer, consumer) = ring.owner_words();
        peer_gone(&ring, if reader { producer } else { consumer }, &segment)
    }
}

/// A whole message that has arrived, as
/// [`Connection::recv_bytes_with`](super::Connection::recv_bytes_with)
/// hands it over: its length is known before a byte is copied, so the
/// caller can make a buffer of exactly that size (a Python `bytes`, a
/// buffer from a pool) and have the message copied there once.
pub struct Arrived<'a> {
    from: Source<'a>,
}

enum Source<'a> {
    /// A message of one record, still in the ring: copied straight from it.
    Record(&'a spsc::ReadGrant<'a, FutexWaiter>),
    /// A message of several records, assembled in the connection's buffer
    /// as they arrived.
    Assembled(&'a [u8]),
}

impl Arrived<'_> {
    /// The message's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.from {
            Source::Record(p) => p.len(),
            Source::Assembled(msg) => msg.len(),
        }
    }

    /// Whether the message is empty (Python's `send_bytes(b"")`).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message, when it was assembled in this connection's own memory
    /// (a message of several records); `None` for one still in the ring,
    /// which is shared memory and is read only by
    /// [`copy_to_slice`](Arrived::copy_to_slice). Lets a caller make its
    /// buffer from the bytes at once instead of filling a zeroed one.
    #[inline]
    pub fn assembled(&self) -> Option<&[u8]> {
        match &self.from {
            Source::Record(_) => None,
            Source::Assembled(msg) => Some(msg),
        }
    }

    /// Copies the message into `dst`. From the ring, the copy is race-free
    /// whatever the writer's process does (see
    /// [`spsc::ReadGrant::copy_to_slice`]).
    ///
    /// # Panics
    ///
    /// If `dst` is not exactly [`len`](Arrived::len) bytes long.
    #[inline]
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        match &self.from {
            Source::Record(p) => p.copy_to_slice(dst),
            Source::Assembled(msg) => {
                assert_eq!(dst.len(), msg.len(), "destination length");
                dst.copy_from_slice(msg);
            }
        }
    }
}

impl fmt::Debug for Arrived<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arrived").field("len", &self.len()).finish()
    }
}

impl Incoming {
    /// The reading half over `ring`, whose consumer role this end holds,
    /// and its `consumer` handle (given its [`Role`](spsc::Role) here).
    pub(super) fn new(
        ring: spsc::Ring,
        mut consumer: spsc::Consumer<FutexWaiter>,
        segment: &Arc<Segment>,
    ) -> Incoming {
        consumer.set_role(watch(&ring, segment, true));
        Incoming {
            consumer,
            capacity: ring.config().capacity,
            ring,
            in_message: false,
            partial: Vec::new(),
            taken: 0,
            probe: Probe::new(),
        }
    }

    /// Starts a receive or a poll: nothing consumed by it yet.
    #[inline]
    pub(super) fn begin(&mut self) {
        self.taken = 0;
    }

    /// Whether a call that may wait `until` must give up before consuming
    /// another record: it has consumed a whole ring's worth already, and its
    /// deadline ([`pinned`]) has passed.
    ///
    /// A timed call otherwise looks at its deadline only when the ring is
    /// empty, which a writer that keeps up (or a stream of records to skip)
    /// may never let happen: it would run on for as long as the stream
    /// lasts. Up to a ring's worth it does not look (no clock read on the
    /// common path, and whatever was already in the ring when the call
    /// began, a whole message included, is still taken by a zero timeout);
    /// past that, it looks before every record. A try ([`Until::Now`]) and
    /// a blocking call never read the clock: a try takes what is there.
    #[inline]
    fn overdue(taken: u64, capacity: u64, until: Until) -> bool {
        taken >= capacity && matches!(until, Until::At(d) if crate::sys::now() >= d)
    }

    /// Whether a message is half read (see [`in_message`](Incoming::in_message)).
    pub(super) fn mid_message(&self) -> bool {
        self.in_message
    }

    /// The other end (the producer of this ring) is gone: see [`peer_gone`].
    pub(super) fn writer_gone(&self) -> bool {
        self.consumer.peer_gone()
    }

    /// Drops the half-read message, if any: it ended badly (end of file,
    /// an error, a new message in its middle, a length over the limit).
    fn drop_message(&mut self) {
        self.in_message = false;
        self.partial.clear();
    }

    /// Waits (up to `until`, [`pinned`] by the caller) until a record of the
    /// current message is there (the first of a new one when none is half
    /// read), hands its read grant to `f` (which copies the payload out of
    /// the ring, race-free) with [`partial`](Incoming::partial), and
    /// consumes it. Afterwards a message is half read exactly when the
    /// record said more follows.
    ///
    /// The [framing](super#framing): with no message half read, a record
    /// marked as continuing one is the rest of a message whose beginning
    /// this reader never saw (another reader took it, or this end was
    /// handed over, closed and claimed again): it is consumed and skipped.
    /// With a message half read, an unmarked record begins another message:
    /// the writer that was sending this one died (or was replaced) in its
    /// middle. The part received is dropped, the record is left in the ring
    /// for the next receive, and the call reports
    /// [`RecvError::TruncatedMessage`].
    ///
    /// Gives up with [`TryRecvError::Empty`] when `until` passes (at once
    /// for [`Until::Now`]: the ring's wait decides that), keeping the
    /// half-read message; at end of file, or on any other error, it is
    /// dropped (Python's "got end of file during message").
    #[inline]
    pub(super) fn next_record<R>(
        &mut self,
        until: Until,
        f: impl FnOnce(&spsc::ReadGrant<'_, FutexWaiter>, &mut Vec<u8>) -> R,
    ) -> Result<R, TryRecvError> {
        let mut f = Some(f);
        loop {
            let mid_message = self.in_message;
            match self.consumer.read() {
                Ok(grant) if Self::overdue(self.taken, self.capacity, until) => {
                    // Left in the ring; the half-read message is kept.
                    grant.keep();
                    return Err(TryRecvError::Empty);
                }
                // The grant drops at the end of the arm: consumed.
                Ok(grant) if grant.continues() == mid_message => {
                    self.taken += record_size(grant.len() as u64);
                    self.in_message = grant.more();
                    return Ok((f.take().expect("called once"))(&grant, &mut self.partial));
                }
                // A continuation with no beginning: consumed (dropped),
                // skipped, and the next record read at once (a try too: what
                // follows may be a whole message).
                Ok(grant) if !mid_message => {
                    self.taken += record_size(grant.len() as u64);
                    drop(grant);
                    continue;
                }
                Ok(grant) => {
                    // A new message begins mid-message: left in the
                    // ring, the next read finds it again.
                    // (The fields one by one: the match still borrows the
                    // consumer.)
                    grant.keep();
                    self.in_message = false;
                    self.partial.clear();
                    return Err(RecvError::TruncatedMessage.into());
                }
                Err(PopError::Empty) => {}
                Err(e) => {
                    self.in_message = false;
                    self.partial.clear();
                    return Err(from_pop(e, mid_message).into());
                }
            }
            // A try has had its look (the read above): it goes straight to
            // giving up, without a second look through the wait.
            let waited = if until.is_now() {
                Err(TimedOut)
            } else {
                self.consumer.wait_readable(until)
            };
            match waited {
                Ok(true) => {}
                Ok(false) => {
                    self.drop_message();
                    return Err(eof(mid_message).into());
                }
                Err(TimedOut) => {
                    // A call that gives up without sleeping (a try, a
                    // deadline already past) never ran the wait's slow
                    // check: probe the writer now and then (paced, see
                    // [`Probe`]). Gone: the ring is closed now, and the
                    // next read drains what is left, then reports end of
                    // file.
                    if self.probe.due(&self.consumer.wait_policy()) && self.writer_gone() {
                        continue;
                    }
                    return Err(TryRecvError::Empty);
                }
            }
        }
    }

    /// With no message half read, consumes the records at the front of
    /// the ring that continue a message this reader never saw begin (as
    /// [`next_record`](Incoming::next_record) would skip them). Returns
    /// whether something is left to read: a record (left in the ring), or
    /// an end or error the next read reports; `Ok(false)` once the ring is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`TimedOut`] when `until` ([`pinned`]) passes while records to skip
    /// keep coming (checked as in [`next_record`](Incoming::next_record)).
    pub(super) fn skip_orphans(&mut self, until: Until) -> Result<bool, TimedOut> {
        if self.in_message {
            return Ok(true);
        }
        loop {
            match self.consumer.read() {
                Ok(grant) if grant.continues() => {
                    if Self::overdue(self.taken, self.capacity, until) {
                        grant.keep(); // left in the ring
                        return Err(TimedOut);
                    }
                    self.taken += record_size(grant.len() as u64);
                    // Consumed (dropped), skipped.
                    drop(grant);
                }
                Ok(grant) => {
                    grant.keep(); // left in the ring
                    return Ok(true);
                }
                Err(PopError::Empty) => return Ok(false),
                Err(_) => return Ok(true),
            }
        }
    }

    /// Reads the rest of the current message (all of the next one when none
    /// is half read) into [`partial`](Incoming::partial), record after
    /// record straight from the ring, waiting up to `until` ([`pinned`]) for
    /// each. `false` when the message would exceed `limit` bytes: the record
    /// that crossed it is consumed and the message dropped.
    pub(super) fn read_rest(&mut self, until: Until, limit: usize) -> Result<bool, TryRecvError> {
        loop {
            let fits = self.next_record(until, |p, msg| {
                if msg.len().saturating_add(p.len()) > limit {
                    return false;
                }
                p.append_to(msg);
                true
            })?;
            if !fits {
                self.drop_message();
                return Ok(false);
            }
            if !self.in_message {
                return Ok(true);
            }
        }
    }

    /// Reads the rest of the current message (all of the next one when none
    /// is half read), waiting up to `until` ([`pinned`]) for each record,
    /// and hands it whole to the closure in `f` (taken out of the `Option`
    /// only then): a message of one record (up to a fragment) straight from
    /// the ring, a longer one once assembled in
    /// [`partial`](Incoming::partial). Returns what the closure returned
    /// and the message's length. A call that gives up keeps the half-read
    /// message, as [`read_rest`](Incoming::read_rest) does, and leaves the
    /// closure where it was.
    pub(super) fn read_with<R, F: FnOnce(&Arrived<'_>) -> R>(
        &mut self,
        until: Until,
        f: &mut Option<F>,
    ) -> Result<(R, usize), TryRecvError> {
        if !self.in_message {
            let done = self.next_record(until, |p, msg| {
                if p.more() {
                    // Only the first of several: assembled below.
                    p.append_to(msg);
                    return None;
                }
                let f = f.take().expect("handed one message");
                Some((
                    f(&Arrived {
                        from: Source::Record(p),
                    }),
                    p.len(),
                ))
            })?;
            if let Some(done) = done {
                return Ok(done);
            }
        }
        // No limit: every record fits.
        let whole = self.read_rest(until, usize::MAX)?;
        debug_assert!(whole, "a message has no length limit here");
        let f = f.take().expect("handed one message");
        let msg = std::mem::take(&mut self.partial);
        let r = f(&Arrived {
            from: Source::Assembled(&msg),
        });
        let len = msg.len();
        // The buffer is kept for the next message (dropped if a huge
        // message made it huge).
        if msg.capacity() <= 1 << 20 {
            self.partial = msg;
            self.partial.clear();
        }
        Ok((r, len))
    }

    /// Reads the rest of the current message (all of the next one when none
    /// is half read) into `room`, waiting up to `until` ([`pinned`]) for
    /// each record: `Ok(length)` when it fits, `Err(message)` with the whole
    /// message (consumed) when it does not.
    ///
    /// Each record goes straight from the ring into `room`; what an earlier
    /// call left in [`partial`](Incoming::partial) goes there first. Once
    /// the message turns out longer than `room`, it is assembled in a `Vec`
    /// instead (what `room` holds of it first). A call that gives up
    /// ([`TryRecvError::Empty`]) hands what it took of the message on in
    /// `partial`, for the next receive of any kind; `room` then holds part
    /// of the message.
    #[inline]
    pub(super) fn read_into(
        &mut self,
        until: Until,
        room: &mut [u8],
    ) -> Result<Result<usize, Vec<u8>>, TryRecvError> {
        let mut filled = 0;
        let mut over: Option<Vec<u8>> = None;
        if self.in_message {
            let taken = self.partial.len();
            if taken <= room.len() {
                room[..taken].copy_from_slice(&self.partial);
                self.partial.clear();
                filled = taken;
            } else {
                over = Some(std::mem::take(&mut self.partial));
            }
        }
        loop {
            let got = self.next_record(until, |p, _| match &mut over {
                Some(msg) => p.append_to(msg),
                // Word copies, no `memcpy` call, for a small record.
                None if p.len() <= room.len() - filled => {
                    p.copy_to_slice(&mut room[filled..filled + p.len()]);
                    filled += p.len();
                }
                None => {
                    let mut msg = Vec::with_capacity(filled + p.len());
                    msg.extend_from_slice(&room[..filled]);
                    p.append_to(&mut msg);
                    over = Some(msg);
                }
            });
            match got {
                Ok(()) if self.in_message => {}
                Ok(()) => {
                    return Ok(match over {
                        Some(msg) => Err(msg),
                        None => Ok(filled),
                    })
                }
                Err(TryRecvError::Empty) => {
                    // Only a half-read message has bytes to hand on:
                    // without one, nothing was taken.
                    if self.in_message {
                        match over {
                            Some(msg) => self.partial = msg,
                            None => self.partial.extend_from_slice(&room[..filled]),
                        }
                    }
                    return Err(TryRecvError::Empty);
                }
                // The message was dropped (see `next_record`).
                Err(e) => return Err(e),
            }
        }
    }
}

impl Outgoing {
    /// The writing half over `ring`, whose producer role this end holds,
    /// and its `producer` handle (given its [`Role`](spsc::Role) here).
    pub(super) fn new(
        ring: spsc::Ring,
        mut producer: spsc::Producer<FutexWaiter>,
        segment: &Arc<Segment>,
    ) -> Outgoing {
        producer.set_role(watch(&ring, segment, false));
        let fragment = ring.config().max_record as usize;
        let max_whole = longest_whole(ring.config().capacity, fragment);
        Outgoing {
            producer,
            fragment,
            max_whole,
            single_max: max_whole.min(fragment),
            ring,
            probe: Probe::new(),
        }
    }

    /// The other end (the consumer of this ring) is gone: see [`peer_gone`].
    fn reader_gone(&self) -> bool {
        self.producer.peer_gone()
    }

    /// Sends `msg` as one message, waiting up to `until`: every send of a
    /// connection ends here.
    ///
    /// [`Until::Never`] streams: the reader reassembles while later
    /// fragments are still being written, so any length goes through any
    /// ring, and nothing gives up half way. Any other `until` sends all or
    /// nothing ([`whole`](Outgoing::whole)), so that giving up never leaves
    /// half a message in the ring.
    ///
    /// Gives up with [`TrySendError::Full`] (nothing written) when `until`
    /// passes first: at once for [`Until::Now`], as the ring's wait decides.
    #[inline]
    pub(super) fn send(&mut self, msg: &[u8], until: Until) -> Result<(), TrySendError> {
        match until {
            Until::Never => self.stream(msg).map_err(TrySendError::Send),
            until => self.whole(msg, until),
        }
    }

    /// Sends `msg` record by record, each waiting as long as it takes:
    /// fragments of `fragment` bytes, the last one shorter or not, each
    /// marked with its place in the message (see the
    /// [framing](super#framing)): a message of one fragment or less is one
    /// unmarked record.
    #[inline]
    fn stream(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let fragment = self.fragment;
        if msg.len() <= fragment {
            return self
                .producer
                .push_marked(msg, Mark::WHOLE, Until::Never)
                .map_err(from_push);
        }
        let count = msg.len().div_ceil(fragment);
        for (i, record) in msg.chunks(fragment).enumerate() {
            self.producer
                .push_marked(record, Mark::nth(i, count), Until::Never)
                .map_err(from_push)?;
        }
        Ok(())
    }

    /// The longest message [`whole`](Outgoing::whole) accepts: what an
    /// empty ring takes at any position (see [`longest_whole`]).
    #[inline]
    pub(super) fn max_whole(&self) -> usize {
        self.max_whole
    }

    /// Sends `msg` whole, waiting for room up to `until`; writes nothing
    /// if it gives up ([`TrySendError::Full`]).
    ///
    /// A message of one record that fits an empty ring at any position (up
    /// to [`single_max`](Outgoing::single_max)) is one push, which waits on
    /// the ring's futex like any push. A longer one needs room for all its
    /// fragments at once: exactly what they take from where the ring's
    /// tail stands, padding before one that would not fit before the end
    /// included ([`spsc::Producer::space_needed`]). It goes in when the
    /// free space covers that (since only we fill the ring, that room
    /// cannot shrink, nor the tail move, before the fragments are in, and
    /// they go in with one publish and one wake), and otherwise waits on
    /// the same futex until that much is free (every release of the reader
    /// wakes it to look). Longer than [`max_whole`](Outgoing::max_whole)
    /// (which, with fragments of more than about half the ring, a single
    /// record can be): [`SendError::TooLarge`] at once, since even an empty
    /// ring may refuse it.
    fn whole(&mut self, msg: &[u8], until: Until) -> Result<(), TrySendError> {
        if msg.len() <= self.single_max {
            return match self.producer.push(msg, until) {
                Ok(()) => Ok(()),
                Err(PushError::Timeout) => Err(self.full_or_broken()),
                Err(e) => Err(from_push(e).into()),
            };
        }
        let max = self.max_whole();
        if msg.len() > max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max,
            }
            .into());
        }
        let until = pinned(until);
        loop {
            let Some(need) = self.try_fragments(msg)? else {
                return Ok(());
            };
            match self.producer.wait_writable(need, until) {
                // Room (or a closed ring, which the next try reports).
                Ok(true) => {}
                Ok(false) => return Err(SendError::BrokenPipe.into()),
                Err(TimedOut) => return Err(self.full_or_broken()),
            }
        }
    }

    /// One try of [`whole`](Outgoing::whole) for a fragmented message of at
    /// most [`max_whole`](Outgoing::max_whole) bytes: `Ok(None)` sent,
    /// `Ok(Some(need))` no room for all of it (nothing written), `need`
    /// being the free bytes it takes from where the ring stands.
    #[inline(never)]
    fn try_fragments(&mut self, msg: &[u8]) -> Result<Option<u64>, SendError> {
        debug_assert!(msg.len() > self.fragment, "single_max covers the rest");
        if self.ring.closed_flags() != 0 {
            return Err(SendError::BrokenPipe);
        }
        let need = self
            .producer
            .space_needed(msg.chunks(self.fragment).map(<[u8]>::len));
        let free = self.producer.free_bytes().map_err(SendError::Corrupted)?;
        if free < need {
            return Ok(Some(need));
        }
        let count = msg.len().div_ceil(self.fragment);
        let records = msg.chunks(self.fragment).enumerate();
        let marked = records.map(|(i, record)| (record, Mark::nth(i, count)));
        let written = self
            .producer
            .try_push_many_marked(marked)
            .map_err(from_push)?;
        if written != count {
            // Only a head moved backwards (a hostile peer) takes room away.
            return Err(SendError::Corrupted(Corrupted {
                what: "pipe ring lost room it had",
                value: written as u64,
            }));
        }
        Ok(None)
    }

    /// A send gave up: [`TrySendError::Full`], or [`SendError::BrokenPipe`]
    /// when the reader's process is gone. A send that gives up without
    /// sleeping (a try) never ran the wait's slow check, so the reader is
    /// probed here, at most once per slice (see [`Probe`]).
    fn full_or_broken(&mut self) -> TrySendError {
        if self.probe.due(&self.producer.wait_policy()) && self.reader_gone() {
            return SendError::BrokenPipe.into();
        }
        TrySendError::Full
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn probes_are_paced_by_calls_and_by_the_slice() {
        let policy = WaitPolicy {
            slice_ns: 5_000_000,
            ..WaitPolicy::default()
        };
        let mut probe = Probe::new();
        assert!(probe.due(&policy), "the first one is due at once");
        // Within the slice: never, whatever the number of calls.
        for call in 0..4 * PROBE_EVERY {
            assert!(!probe.due(&policy), "call {call} within the slice");
        }
        std::thread::sleep(Duration::from_millis(30));
        // After the slice: due by the time one call in PROBE_EVERY has
        // looked at the clock, and then not again for a slice.
        let calls = (0..PROBE_EVERY).filter(|_| probe.due(&policy)).count();
        assert_eq!(calls, 1);
        assert!(!probe.due(&policy));
    }

    #[test]
    fn the_longest_whole_message_leaves_room_for_the_worst_wrap() {
        // 4096-byte ring, 256-byte fragments (264-byte records): 14 full
        // fragments and a last record of 136 bytes, plus 256 bytes of the
        // worst padding.
        assert_eq!(longest_whole(4096, 256), 14 * 256 + 136);
        // One full fragment record and the worst padding fill the ring:
        // one fragment, one record.
        assert_eq!(longest_whole(4096, 2040), 2040);
        // Fragments of half the ring or more: only one record, and that
        // record may find the ring's last `size - 8` bytes to pad first:
        // `2 * size - 8 <= 4096`, a 2048-byte record, 2040 bytes of payload.
        assert_eq!(longest_whole(4096, 2048), 2040);
        assert_eq!(longest_whole(4096, 2049), 2040);
        assert_eq!(longest_whole(4096, 4088), 2040);
        // Small fragments and the smallest ring.
        assert_eq!(longest_whole(64, 8), 3 * 8);
        assert_eq!(longest_whole(64, 56), 24);
        // The default: a quarter of 256 KiB. Two whole fragments and the
        // 65,512 bytes left once the worst padding is set aside.
        assert_eq!(longest_whole(256 << 10, 64 << 10), 3 * (64 << 10) - 24);
    }

    /// Over a grid of rings and fragments, `longest_whole` bytes fit an
    /// empty ring at every position, records and padding laid out as the
    /// ring lays them out (a simulation, independent of the formula).
    #[test]
    fn the_longest_whole_message_fits_every_position_of_an_empty_ring() {
        for capacity in [64u64, 128, 256, 4096] {
            for fragment in (8..capacity - 8).step_by(8).chain([9, 15, 17, 63]) {
                if record_size(fragment) > capacity {
                    continue;
                }
                let f = fragment as usize;
                let max = longest_whole(capacity, f);
                let records: Vec<u64> = if max <= f {
                    vec![record_size(max as u64)]
                } else {
                    (0..max)
                        .step_by(f)
                        .map(|at| record_size((max - at).min(f) as u64))
                        .collect()
                };
                for start in (0..capacity).step_by(8) {
                    let (mut at, mut used) = (start, 0);
                    for &r in &records {
                        if r > capacity - at {
                            used += capacity - at;
                            at = 0;
                        }
                        used += r;
                        at = (at + r) % capacity;
                    }
                    assert!(
                        used <= capacity,
                        "ring {capacity}, fragment {fragment}, {max} bytes at {start}: {used}"
                    );
                }
            }
        }
    }
}
