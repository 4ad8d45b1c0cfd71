//! Wait words: how a sleeper and a waker meet across processes.
//!
//! A [`WaitWord`] is two `u32`s in shared memory: `seq`, the futex word, and
//! `waiters`, the number of sleepers between registering and leaving. The
//! ring code never blocks by itself; the sleeping and waking are injected
//! through the [`Waiter`] trait (a futex in the engine, a condition variable in
//! tests and loom models), and this module runs the protocol around it.
//!
//! # The protocol
//!
//! Sleeper ([`block_on`]): try → bounded spin (learned, see [`WaitPolicy`])
//! → (slow check, when one is due) → `key = seq` → `waiters += 1` → fence
//! (and the heavy fence, see below) → re-check →
//! `wait(seq, key, deadline)` → `waiters -= 1` → loop. `key` is read
//! *before* the re-check, so a wake that lands between the re-check and the
//! sleep has changed `seq`, and the futex returns at once instead of
//! sleeping through it.
//!
//! Waker ([`WaitWord::wake_if_waiting`]): after the store that publishes,
//! fence (or a compiler barrier, see below) → `if waiters != 0 { seq += 1;
//! wake }`. No sleeper, no system call:
//! that single load is what keeps the hot path out of the kernel.
//!
//! # Why the fences
//!
//! Each side stores one location and then loads the other (the waker stores
//! the ring position and loads `waiters`; the sleeper stores `waiters` and
//! loads the ring position). With only release/acquire both loads may read the
//! old values (the store-buffer outcome), and then the waker skips the wake
//! while the sleeper goes to sleep on data it never saw: a lost wake-up. A
//! `SeqCst` fence on both sides between the store and the load forbids that
//! outcome: whichever fence comes first in the single total order, the other
//! side's load after its own fence sees the first side's store.
//!
//! The waker's fence is on every publish, the hot path; the sleeper's only
//! before a sleep. So the fence may be made **asymmetric**
//! ([`Waiter::light_wakers`]): the waker keeps only a compiler barrier (its
//! store stays before its load in program order), and the sleeper, after its
//! own fence, makes every thread of every process with light wakers run a
//! full barrier ([`Waiter::heavy_fence`]: in the engine,
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, to which each such process
//! registered before its first light publish). Either the waker's load runs
//! after that barrier on its CPU, and then sees `waiters` raised, or its
//! store was before it, and then the sleeper's re-check, after the heavy
//! fence returned, sees the store. A thread that was not running when the
//! barrier was made goes through the scheduler, a full barrier too. The
//! loom models run the symmetric form; the asymmetric one gives each light
//! waker exactly that form's guarantee at the moments it matters.

use crate::sync::{compiler_fence, fence, AtomicU32, AtomicU64, Ordering};

/// A point on the waiter's monotonic clock, in nanoseconds.
///
/// The core never reads a clock; it asks [`Waiter::now`]. In the engine this
/// is `CLOCK_MONOTONIC`, the clock `FUTEX_WAIT_BITSET` measures deadlines on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(pub u64);

impl Deadline {
    /// The deadline `nanos` after `self`, saturating at the end of time.
    #[inline]
    pub fn after(self, nanos: u64) -> Deadline {
        Deadline(self.0.saturating_add(nanos))
    }
}

/// Sleeping and waking on a 32-bit word, plus the clock deadlines are
/// measured on.
///
/// Implementations: the futex waiter in the `shmring` crate, and
/// [`crate::heap::ThreadWaiter`] for single-process tests and models.
pub trait Waiter {
    /// Sleeps while `*word == expected`, until woken, until `deadline`, or
    /// spuriously. Returning says nothing about why: the caller re-checks.
    fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Deadline>);

    /// Wakes up to `count` sleepers on `word`.
    fn wake(&self, word: &AtomicU32, count: u32);

    /// The current time on the clock deadlines use.
    fn now(&self) -> Deadline;

    /// Whether the calling thread was switched out for another runnable
    /// thread since its previous call (an involuntary context switch).
    /// A spin asks this after it found itself off the CPU for a while, to
    /// tell a crowded CPU (stop spinning) from a pause of the whole machine
    /// (a VM's host preempting it: spinning on is right). The default,
    /// `false`, never stops a spin early.
    fn preempted(&self) -> bool {
        false
    }

    /// Whether more threads are runnable right now than this thread has
    /// CPUs to run on. An adaptive wait asks this at most once per
    /// [`CROWD_CHECK_NS`] before it spins, and does not spin at all for a
    /// while when it is (see [`WaitPolicy`]). The default,
    /// `false`, never stops a spin.
    fn crowded(&self) -> bool {
        false
    }

    /// Whether this process's wakers may order their publishing store
    /// before their load of `waiters` with a compiler barrier alone,
    /// because every sleeper runs [`Waiter::heavy_fence`] (see "Why the
    /// fences" in the module docs). `false` (the default): a full fence.
    #[inline]
    fn light_wakers(&self) -> bool {
        false
    }

    /// The sleeper's side of the asymmetric fence, run after registering:
    /// makes every thread of every process whose wakers are light
    /// ([`Waiter::light_wakers`]) run a full barrier before it returns.
    /// The default, for waiters whose wakers are never light, has nothing
    /// to do.
    ///
    /// Which wakers are light is decided by the *wakers'* waiter, not this
    /// one: a waiter that sleeps on words that another waiter's light
    /// wakers publish to (a wrapper around the engine's futex waiter, or
    /// any waiter on a ring in a segment that the engine's handles also
    /// use) must make this heavy fence too, or it may miss their wake-ups.
    #[inline]
    fn heavy_fence(&self) -> HeavyFence {
        HeavyFence::NotNeeded
    }
}

/// What [`Waiter::heavy_fence`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeavyFence {
    /// No waker sharing this word can be light: the full fence suffices.
    NotNeeded,
    /// Every light waker has run a full barrier.
    Done,
    /// The barrier could not be made (the system call is refused): a light
    /// waker may miss this sleeper, so it sleeps at most
    /// [`UNFENCED_SLEEP_NS`] at a time.
    Failed,
}

/// What [`WaitWord::register`] read and did: the key to sleep on and how
/// the heavy fence went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// `seq` as read before the re-check: sleep only while it still holds.
    pub key: u32,
    /// The heavy fence's outcome: on [`HeavyFence::Failed`] sleep at most
    /// [`UNFENCED_SLEEP_NS`] at a time.
    pub fenced: HeavyFence,
}

impl Registration {
    /// Longest single sleep for this registration under `policy`.
    #[inline]
    pub fn slice_ns(&self, policy: &WaitPolicy) -> u64 {
        match self.fenced {
            HeavyFence::Failed => policy.slice_ns.min(UNFENCED_SLEEP_NS),
            HeavyFence::NotNeeded | HeavyFence::Done => policy.slice_ns,
        }
    }
}

/// Longest single sleep when [`Waiter::heavy_fence`] failed (1 ms): a
/// wake-up that a light waker skipped is then late by at most this much,
/// never lost.
pub const UNFENCED_SLEEP_NS: u64 = 1_000_000;

/// Wake every sleeper, not just one.
pub const WAKE_ALL: u32 = i32::MAX as u32;

/// A sleeper and a waker meet here. Lives in shared memory.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WaitWord {
    /// The futex word. Bumped (wrapping) by every wake; a sleeper passes the
    /// value it read before its re-check, so a bump in between cancels the
    /// sleep.
    seq: AtomicU32,
    /// Sleepers currently registered. A sleeper killed while registered leaves
    /// it one too high forever: wakers then make a harmless extra system call
    /// per publish. Never too low, so never a lost wake-up.
    waiters: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<WaitWord>() == 8);

impl WaitWord {
    /// Waker side: call after the store that made progress visible. Makes a
    /// system call only when a sleeper is registered; returns whether it did.
    #[inline]
    pub fn wake_if_waiting<W: Waiter + ?Sized>(&self, waiter: &W, count: u32) -> bool {
        if waiter.light_wakers() {
            // ORDERING: a compiler barrier only: the caller's publishing
            // store stays before the load of `waiters` in program order,
            // and the sleeper's heavy fence (membarrier) after its
            // `waiters += 1` makes this thread run a full barrier, which
            // gives that program order the SeqCst fence's effect; pairs
            // with `heavy_fence` in `block_on_with` (module docs).
            compiler_fence(Ordering::SeqCst);
        } else {
            // ORDERING: SeqCst fence between the caller's publishing store
            // and the load of `waiters`; pairs with the fence in
            // `block_on_with` between `waiters += 1` and the re-check (see
            // the module docs).
            fence(Ordering::SeqCst);
        }
        // ORDERING: Relaxed — the fence above orders it.
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.wake_now(waiter, count);
        true
    }

    /// Wakes sleepers unconditionally (close, shutdown).
    pub fn wake_now<W: Waiter + ?Sized>(&self, waiter: &W, count: u32) {
        // ORDERING: Release — a sleeper that reads the new `seq` also sees
        // what was published before the wake; pairs with the Acquire load of
        // `seq` in `block_on`.
        self.seq.fetch_add(1, Ordering::Release);
        waiter.wake(&self.seq, count);
    }

    /// The sleeper's registration, the first half of a sleep: reads the
    /// key, raises `waiters`, and makes both fences (module docs). The
    /// caller must re-check its condition next, and then either
    /// [`WaitWord::deregister`] (the condition held) or sleep on
    /// [`WaitWord::seq`] while it equals the returned key, and deregister
    /// after. [`block_on_with`] is this, a sleep and the deregistration;
    /// an asynchronous sleeper (the `shmring` crate's io_uring futex wait)
    /// runs the same steps with a sleep that does not block a thread.
    #[inline]
    pub fn register<W: Waiter + ?Sized>(&self, waiter: &W) -> Registration {
        // ORDERING: Acquire — reads the `seq` a waker bumped after
        // publishing; pairs with the Release bump in `wake_now`. Read before
        // the re-check (see the module docs).
        let key = self.seq.load(Ordering::Acquire);
        // ORDERING: the RMW itself may be Relaxed; the SeqCst fence after it
        // is what pairs with the fence in `wake_if_waiting`.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // ORDERING: the heavy side of the asymmetric fence: pairs with the
        // compiler barrier of light wakers in `wake_if_waiting`.
        let fenced = waiter.heavy_fence();
        Registration { key, fenced }
    }

    /// Ends a registration made by [`WaitWord::register`]: once per
    /// registration, after the re-check answered or the sleep returned.
    #[inline]
    pub fn deregister(&self) {
        // ORDERING: Relaxed — only a count; nothing is published by it.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// The futex word a registered sleeper sleeps on (while it equals the
    /// registration's key).
    #[inline]
    pub fn seq(&self) -> &AtomicU32 {
        &self.seq
    }

    /// Sleepers registered right now (a snapshot, for statistics and tests).
    pub fn waiters(&self) -> u32 {
        // ORDERING: Relaxed — a statistic.
        self.waiters.load(Ordering::Relaxed)
    }
}

/// How long to spin before sleeping and how often a sleeper wakes by itself.
///
/// # The adaptive spin
///
/// A waiter busy-waits (pause hints) before it sleeps: `spin_ns` (none in
/// the quiet time after a crowded CPU, below), never more than `slice_ns`,
/// and when `max_spin_ns > spin_ns` up to a budget it learns from its own
/// recent waits (kept in the handle's [`WaitHistory`]):
///
/// * a wait that had to **sleep** and still ended within `max_spin_ns`
///   (the peer answered while we were asleep, or while we were being
///   woken) shows that waiting longer would have paid: the budget rises at
///   once to twice that wait (capped at `max_spin_ns`);
/// * a wait that slept for longer than `max_spin_ns` (the peer was idle)
///   shows that spinning was wasted: the budget halves, down to `spin_ns`;
/// * a spin that finds its thread was **switched out for another thread**
///   (it saw a second gap of [`CONTENDED_GAP_NS`] between two looks, and
///   [`Waiter::preempted`] says the CPU was taken since the first, not the
///   whole VM paused) stops at once and the handle spins not at all for
///   [`CONTENDED_QUIET_NS`]: on a crowded CPU a spinner only takes turns
///   from the peer it waits for, and a sleeper is woken ahead of busy
///   threads. The same holds, checked before spinning at most once per
///   [`CROWD_CHECK_NS`], when more threads are runnable than there are
///   CPUs ([`Waiter::crowded`]).
///
/// The first two break the wake-up cascade of a fixed short spin: once a
/// pause of the peer longer than the spin has put this side to sleep, the
/// wake-up itself (tens of microseconds on a VM) is longer than the spin
/// too, so the peer falls asleep as well, and the pair kept waking each
/// other through the kernel for many round trips. With the budget learned
/// from the wait that slept, the next wait outlasts the other side's
/// wake-up and the pair is back to handing off in user space after one or
/// two slow round trips. The third keeps the longer spin from costing
/// anything when processes outnumber CPUs.
///
/// The spin never calls `sched_yield`: under the EEVDF scheduler (Linux
/// 6.6 and later) each yield pushes the yielder's deadline a whole slice
/// later, and a spin that yielded on every look left round trips of up to
/// 1.2 s with six processes on two CPUs (`tailprobe`, 2026-12-03).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Busy-wait (pause hints) before registering as a sleeper, in
    /// nanoseconds: always spent (unless the wait ends sooner), except
    /// by an adaptive policy in the quiet time after a spin found the CPU
    /// crowded, when it does not spin at all (see the type's docs). Keep it to a
    /// few microseconds: when both ends share a core a long pause-spin only
    /// steals the peer's time.
    pub spin_ns: u64,
    /// Ceiling of the learned budget (see the type's docs), in nanoseconds.
    /// At or below `spin_ns` nothing is learned: the wait spins exactly
    /// `spin_ns` and sleeps. A spin never lasts longer than `slice_ns`,
    /// whatever this and `spin_ns` say (the liveness bound).
    pub max_spin_ns: u64,
    /// Longest single sleep. After each one the check runs in its slow form
    /// (`slow == true`), which is where peers' liveness is re-checked, so a
    /// dead peer never leaves a sleeper blocked for longer than this.
    pub slice_ns: u64,
}

impl WaitPolicy {
    /// A policy that spins exactly `spin_ns` before every sleep (at most a
    /// slice) and learns nothing (`max_spin_ns == spin_ns`), with the
    /// default slice.
    pub const fn fixed(spin_ns: u64) -> WaitPolicy {
        WaitPolicy {
            spin_ns,
            max_spin_ns: spin_ns,
            slice_ns: DEFAULT_SLICE_NS,
        }
    }

    /// This policy with a different liveness slice.
    pub const fn with_slice(self, slice_ns: u64) -> WaitPolicy {
        WaitPolicy { slice_ns, ..self }
    }
}

/// The default [`WaitPolicy::slice_ns`]: 100 ms.
pub const DEFAULT_SLICE_NS: u64 = 100_000_000;

impl Default for WaitPolicy {
    /// Spin 5 µs, learn up to 200 µs (see the type's docs), slices of
    /// 100 ms.
    fn default() -> Self {
        WaitPolicy {
            spin_ns: 5_000,
            max_spin_ns: 200_000,
            slice_ns: DEFAULT_SLICE_NS,
        }
    }
}

/// How long a call may wait: the one wait vocabulary of shmring.
///
/// Every blocking operation takes an `Until`, built once where the caller's
/// words are read (the facades' `x`, `try_x`, `x_timeout` and `x_deadline`
/// methods) and passed down unchanged to the single internal operation that
/// tries, spins and sleeps ([`block_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Try once and never sleep: the `try_` forms (Python's `block=False`
    /// and negative or zero timeouts). The clock is never read.
    Now,
    /// Never give up: wait as long as it takes.
    Never,
    /// Give up at this instant (the `_deadline` forms).
    At(Deadline),
    /// Give up this many nanoseconds after the call starts waiting (the
    /// `_timeout` forms). The clock is read only if the first attempt
    /// fails, so a call that does not wait never reads it. `After(0)` is
    /// [`Until::Now`].
    After(u64),
}

impl Until {
    /// The `_timeout` forms: `timeout` after the call starts waiting (a
    /// zero timeout tries once; a huge one saturates at the end of time).
    #[inline]
    pub fn after(timeout: core::time::Duration) -> Until {
        match u64::try_from(timeout.as_nanos()) {
            Ok(0) => Until::Now,
            Ok(nanos) => Until::After(nanos),
            Err(_) => Until::After(u64::MAX),
        }
    }

    /// Whether this is a single try ([`Until::Now`] or `After(0)`).
    #[inline]
    pub fn is_now(self) -> bool {
        matches!(self, Until::Now | Until::After(0))
    }

    /// The absolute deadline, reading the clock through `now` only for the
    /// relative form; `None` for [`Until::Never`]. [`Until::Now`] is the
    /// deadline that has already passed.
    #[inline]
    pub fn deadline(self, now: impl FnOnce() -> Deadline) -> Option<Deadline> {
        match self {
            Until::Now => Some(Deadline(0)),
            Until::Never => None,
            Until::At(d) => Some(d),
            Until::After(nanos) => Some(now().after(nanos)),
        }
    }
}

impl From<Option<Deadline>> for Until {
    /// `None` is [`Until::Never`].
    fn from(deadline: Option<Deadline>) -> Until {
        deadline.map_or(Until::Never, Until::At)
    }
}

/// What a blocking call ended with when it did not get its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl core::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimedOut {}

/// Spin rounds before `block_on` first reads the clock (one pause hint
/// each, so well under the default spin budget).
const CLOCK_FREE_ROUNDS: u32 = 16;

/// The sleeper's side of the protocol.
///
/// Calls `check(slow)` until it returns `Some`, spinning first (see
/// [`WaitPolicy`]), then sleeping on `word` in slices of at most
/// `policy.slice_ns` until `until` (an `Option<Deadline>` converts: `None`
/// is no deadline). `slow` is true on one check before the first sleep
/// (made before registering as a sleeper), on the first check after each
/// full slice, and on the last check before a timeout: expensive checks
/// such as peer liveness belong there.
///
/// A call remembers nothing: it spins `policy.spin_ns` and learns no
/// longer budget. A handle that blocks again and again keeps a
/// [`WaitHistory`] and calls [`block_on_with`].
///
/// # Errors
///
/// [`TimedOut`] when the deadline passes with `check` still `None`; `check`
/// has then run once more after the deadline.
#[inline]
pub fn block_on<W, R>(
    word: &WaitWord,
    waiter: &W,
    until: impl Into<Until>,
    policy: &WaitPolicy,
    check: impl FnMut(bool) -> Option<R>,
) -> Result<R, TimedOut>
where
    W: Waiter + ?Sized,
{
    block_on_with(
        word,
        waiter,
        until,
        policy,
        &mut WaitHistory::default(),
        check,
    )
}

/// Least time between two slow checks made before a first sleep by calls
/// that share a [`WaitHistory`] (1 ms).
pub const SLOW_PACE_NS: u64 = 1_000_000;

/// What one handle remembers between its blocking calls: when the next slow
/// check before a first sleep is due, and how long waiting has recently
/// paid (the learned spin budget, see [`WaitPolicy`]).
///
/// Per handle, in the handle's own memory: nothing here is shared, so
/// nothing here is untrusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitHistory {
    /// When the next slow check before a first sleep is due.
    slow_due: Deadline,
    /// The learned spin budget in nanoseconds (0: nothing learned yet;
    /// always clamped to the policy's `spin_ns..=max_spin_ns` when used).
    spin_ns: u64,
    /// No spinning before this instant: a spin found the CPU crowded (see
    /// [`WaitPolicy`]).
    calm_at: Deadline,
    /// When [`Waiter::crowded`] may be asked again.
    crowd_due: Deadline,
}

/// A gap this long (30 µs) between two looks of a spin means the thread
/// was off the CPU: [`Waiter::preempted`] then tells whether another thread
/// took it (see [`WaitPolicy`]).
pub const CONTENDED_GAP_NS: u64 = 30_000;

/// Least time between two [`Waiter::crowded`] questions of one handle
/// (10 ms).
pub const CROWD_CHECK_NS: u64 = 10_000_000;

/// How long an adaptive wait does not spin after it found its CPU crowded
/// (10 ms):
/// a waiter then sleeps at once, as a spin-free sleeper does, and the
/// first wait after it tries spinning again.
pub const CONTENDED_QUIET_NS: u64 = 10_000_000;

impl Default for WaitHistory {
    /// Nothing learned; a slow check is due at once.
    fn default() -> Self {
        WaitHistory {
            slow_due: Deadline(0),
            spin_ns: 0,
            calm_at: Deadline(0),
            crowd_due: Deadline(0),
        }
    }
}

impl WaitHistory {
    /// The history as words, for a handle whose threads share one history
    /// in atomics ([`WaitHistory::from_words`] reads it back; any words
    /// are a valid history).
    pub fn to_words(self) -> [u64; 4] {
        [
            self.slow_due.0,
            self.spin_ns,
            self.calm_at.0,
            self.crowd_due.0,
        ]
    }

    /// The history [`WaitHistory::to_words`] wrote.
    pub fn from_words(words: [u64; 4]) -> WaitHistory {
        WaitHistory {
            slow_due: Deadline(words[0]),
            spin_ns: words[1],
            calm_at: Deadline(words[2]),
            crowd_due: Deadline(words[3]),
        }
    }

    /// How long a wait starting at `now` may spin before it sleeps, in
    /// nanoseconds: the learned budget, or 0 for a while after a spin found
    /// the CPU crowded.
    #[inline]
    pub fn spin_budget(&self, policy: &WaitPolicy, now: Deadline) -> u64 {
        if policy.max_spin_ns <= policy.spin_ns {
            return policy.spin_ns;
        }
        if now < self.calm_at {
            return 0;
        }
        self.spin_ns.clamp(policy.spin_ns, policy.max_spin_ns)
    }

    /// A spin found the CPU crowded at `now`: no spin for
    /// [`CONTENDED_QUIET_NS`], and the learned budget starts over.
    pub fn contended(&mut self, policy: &WaitPolicy, now: Deadline) {
        self.calm_at = now.after(CONTENDED_QUIET_NS);
        self.spin_ns = policy.spin_ns;
    }

    /// A wait that started waiting at `start` slept and ended at `end`:
    /// learn from it (see [`WaitPolicy`]). Waits that ended while spinning
    /// teach nothing (the spin cost exactly what the wait took), nor do
    /// waits in the quiet time after a spin found the CPU crowded (a
    /// crowded CPU stretches every wait).
    pub fn slept(&mut self, policy: &WaitPolicy, start: Deadline, end: Deadline) {
        if policy.max_spin_ns <= policy.spin_ns || end < self.calm_at {
            return;
        }
        let waited_ns = end.0.saturating_sub(start.0);
        let budget = self.spin_ns.clamp(policy.spin_ns, policy.max_spin_ns);
        self.spin_ns = if waited_ns <= policy.max_spin_ns {
            // Waiting this long would have kept the hand-off in user
            // space: wait twice as long next time.
            budget
                .max(waited_ns.saturating_mul(2))
                .min(policy.max_spin_ns)
        } else {
            // The peer was idle: the spin before this sleep was wasted.
            (budget / 2).max(policy.spin_ns)
        };
    }
}

/// A [`WaitHistory`] that the threads of one handle share, in atomics.
///
/// Relaxed throughout: the history is a heuristic, so two threads that end
/// waits at once, one's record overwriting the other's, cost nothing but a
/// slightly different spin or an extra slow check next time (each load
/// and store is of whole words, and any words are a valid history).
#[derive(Debug)]
pub struct SharedHistory([AtomicU64; 4]);

impl Default for SharedHistory {
    /// Nothing learned ([`WaitHistory::default`]).
    fn default() -> Self {
        SharedHistory(core::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl SharedHistory {
    /// The history as the latest store left it.
    pub fn load(&self) -> WaitHistory {
        // ORDERING: Relaxed — a heuristic (see the type's docs); partner:
        // the stores in `store`.
        WaitHistory::from_words(self.0.each_ref().map(|w| w.load(Ordering::Relaxed)))
    }

    /// Records `history` for the next wait.
    pub fn store(&self, history: WaitHistory) {
        for (slot, word) in self.0.iter().zip(history.to_words()) {
            // ORDERING: Relaxed — see `load`.
            slot.store(word, Ordering::Relaxed);
        }
    }

    /// Runs `wait` with the shared history, storing it back only when the
    /// wait changed it (after a wait that slept, spun or probed: a wait
    /// answered by its first check stores nothing).
    #[inline]
    pub fn with<R>(&self, wait: impl FnOnce(&mut WaitHistory) -> R) -> R {
        let before = self.load();
        let mut history = before;
        let result = wait(&mut history);
        if history != before {
            self.store(history);
        }
        result
    }
}

/// [`block_on`] for a handle that blocks again and again, learning from
/// and recording into its `history`:
///
/// * the spin budget (see [`WaitPolicy`]);
/// * the slow check before a first sleep is skipped when one ran less than
///   [`SLOW_PACE_NS`] ago in an earlier call sharing `history`. A receiver
///   that sleeps on every message (no spin) otherwise made a liveness
///   probe, a system call, before every sleep. The bound on noticing a dead
///   peer does not change: one probe at least every slice while asleep
///   (the first check after a full slice is slow).
///
/// A fresh `WaitHistory` makes it exactly [`block_on`].
///
/// # Errors
///
/// As [`block_on`].
pub fn block_on_with<W, R>(
    word: &WaitWord,
    waiter: &W,
    until: impl Into<Until>,
    policy: &WaitPolicy,
    history: &mut WaitHistory,
    mut check: impl FnMut(bool) -> Option<R>,
) -> Result<R, TimedOut>
where
    W: Waiter + ?Sized,
{
    if let Some(r) = check(false) {
        return Ok(r);
    }
    let until = until.into();
    if until.is_now() {
        return Err(TimedOut); // "try once"
    }
    // One pause hint per check, never a growing backoff: this is a single
    // waiter polling a flag, not contenders retrying a CAS, and a long pause
    // step only delays noticing the answer (it cost a 1.7x round trip when
    // it grew to 64 pauses).
    //
    // A few clock-free rounds first: when the peer answers within a
    // microsecond (the common case a spin is for), no clock is read at all.
    // Only relative timeouts may start late by these rounds; an absolute
    // deadline is honoured as given.
    if policy.spin_ns > 0 && !matches!(until, Until::At(_)) {
        for _ in 0..CLOCK_FREE_ROUNDS {
            crate::sync::spin_hint();
            if let Some(r) = check(false) {
                return Ok(r);
            }
        }
    }
    let start = waiter.now();
    let deadline = until.deadline(|| start);
    if deadline.is_some_and(|d| start >= d) {
        return Err(TimedOut);
    }
    // Never longer than a slice: the spin runs no slow check, and a dead
    // peer must be noticed within a slice (see `WaitPolicy::slice_ns`),
    // whatever budget was learned or set.
    let mut budget = history.spin_budget(policy, start).min(policy.slice_ns);
    if budget > 0 && policy.max_spin_ns > policy.spin_ns && start >= history.crowd_due {
        history.crowd_due = start.after(CROWD_CHECK_NS);
        if waiter.crowded() {
            history.contended(policy, start);
            budget = 0;
        }
    }
    if budget > 0 {
        match spin(waiter, policy, start, budget, deadline, &mut check) {
            Spun::Got(r) => return Ok(r),
            Spun::Spent => {}
            Spun::Contended(at) => history.contended(policy, at),
        }
    }
    // The first check before the first sleep is a slow one (unless
    // `history` says one ran just now): a peer that is already dead is
    // noticed now, not a slice later.
    //
    // The slow check runs *before* registering, not as the re-check after
    // it: a liveness probe is a system call, and a publish that lands while
    // we are registered makes the waker bump `seq` and call FUTEX_WAKE
    // although nobody sleeps yet, and then our wait returns EAGAIN. With
    // the probe inside that window, 2,200 blocking round trips with no spin
    // made 7,143 futex calls (3,292 EAGAIN); with it before, 2,507 (704),
    // both under strace, which widens the window. The re-check after
    // registering stays: it is the one the no-lost-wake-up argument needs.
    let mut next_slow = history.slow_due;
    let mut slept = false;
    loop {
        let now = waiter.now();
        if deadline.is_some_and(|d| now >= d) {
            return check(true).ok_or(TimedOut);
        }
        if now >= next_slow {
            next_slow = now.after(policy.slice_ns);
            history.slow_due = now.after(SLOW_PACE_NS);
            if let Some(r) = check(true) {
                return Ok(r);
            }
        }
        let Registration { key, fenced } = word.register(waiter);
        if let Some(r) = check(false) {
            word.deregister();
            if slept {
                history.slept(policy, start, waiter.now());
            }
            return Ok(r);
        }
        let slice = Registration { key, fenced }.slice_ns(policy);
        let until = match deadline {
            Some(d) => d.min(now.after(slice)),
            None => now.after(slice),
        };
        waiter.wait(&word.seq, key, Some(until));
        slept = true;
        word.deregister();
        if let Some(r) = check(false) {
            history.slept(policy, start, waiter.now());
            return Ok(r);
        }
    }
}

/// How a spin ended.
enum Spun<R> {
    /// The check answered.
    Got(R),
    /// The budget or the deadline ran out.
    Spent,
    /// Another thread took the CPU in the middle of the spin, seen at this
    /// instant (adaptive policies only).
    Contended(Deadline),
}

/// The spin before a sleep: pause hints until `budget_ns` after `start` or
/// the deadline; for an adaptive policy, also until another thread takes
/// the CPU (see [`WaitPolicy`]).
#[inline]
fn spin<W, R>(
    waiter: &W,
    policy: &WaitPolicy,
    start: Deadline,
    budget_ns: u64,
    deadline: Option<Deadline>,
    check: &mut impl FnMut(bool) -> Option<R>,
) -> Spun<R>
where
    W: Waiter + ?Sized,
{
    let adaptive = policy.max_spin_ns > policy.spin_ns;
    let spin_until = start.after(budget_ns);
    let mut last = start;
    let mut gaps = 0u32;
    let mut rounds = 0u32;
    loop {
        crate::sync::spin_hint();
        if let Some(r) = check(false) {
            return Spun::Got(r);
        }
        // Wrapping: a spin of more than 2^32 rounds (a minute or more,
        // with a long slice and budget) must not panic a debug build; the
        // count is only used modulo 4, which wrapping keeps.
        rounds = rounds.wrapping_add(1);
        // Reading the clock costs about as much as a short spin; do it on
        // every fourth round only.
        if rounds.is_multiple_of(4) {
            let now = waiter.now();
            // Off the CPU for a while: a crowded CPU, or the host pausing
            // the whole VM (then spinning on is right). One system call
            // tells, and only after such a gap; the first gap of a spin
            // only sets the baseline (`preempted` compares with its
            // previous call, which may be long ago), so it takes a second
            // gap, switched out in between, to stop the spin: a crowded
            // CPU keeps making gaps, a host's pause seldom twice.
            if adaptive && now.0.saturating_sub(last.0) >= CONTENDED_GAP_NS {
                let switched = waiter.preempted();
                if gaps > 0 && switched {
                    return Spun::Contended(now);
                }
                gaps += 1;
            }
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                return Spun::Spent;
            }
            last = now;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::heap::ThreadWaiter;
    use crate::sync::AtomicU64;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_fixed_policy_learns_nothing() {
        let policy = WaitPolicy::fixed(5_000);
        let mut h = WaitHistory::default();
        h.slept(&policy, Deadline(0), Deadline(30_000));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), 5_000);
        h.slept(&policy, Deadline(0), Deadline(10 * MS));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), 5_000);
    }

    #[test]
    fn a_sleep_that_ended_soon_raises_the_budget_and_an_idle_one_halves_it() {
        let policy = WaitPolicy::default();
        let mut h = WaitHistory::default();
        assert_eq!(
            h.spin_budget(&policy, Deadline(0)),
            policy.spin_ns,
            "starts at the floor"
        );
        // A 30 µs wait that slept: twice that next time.
        h.slept(&policy, Deadline(0), Deadline(30_000));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), 60_000);
        // A shorter one never lowers it.
        h.slept(&policy, Deadline(0), Deadline(10_000));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), 60_000);
        // Capped at the ceiling.
        h.slept(&policy, Deadline(0), Deadline(policy.max_spin_ns));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), policy.max_spin_ns);
        // Idle peers: halves, down to the floor and no lower.
        h.slept(&policy, Deadline(0), Deadline(10 * MS));
        assert_eq!(h.spin_budget(&policy, Deadline(0)), policy.max_spin_ns / 2);
        for _ in 0..20 {
            h.slept(&policy, Deadline(0), Deadline(10 * MS));
        }
        assert_eq!(h.spin_budget(&policy, Deadline(0)), policy.spin_ns);
        // The words round-trip.
        assert_eq!(WaitHistory::from_words(h.to_words()), h);
    }

    /// The point of learning: after one wait that slept and was answered
    /// soon, the next wait outlasts a peer that answers after the same
    /// delay *without waking it*. With a fixed spin that second wait
    /// would sleep (through its whole slice).
    #[test]
    fn the_learned_budget_catches_the_next_answer_without_a_sleep() {
        let policy = WaitPolicy {
            spin_ns: 0,
            max_spin_ns: 2_000 * MS,
            slice_ns: 200 * MS,
        };
        let word = Arc::new(WaitWord::default());
        let flag = Arc::new(AtomicBool::new(false));
        // Never found preempted, whatever else this machine runs.
        let waiter = TestWaiter::default();
        let mut history = WaitHistory::default();
        fn check(f: &AtomicBool) -> impl FnMut(bool) -> Option<()> + '_ {
            // ORDERING: Acquire — pairs with the peer's Release store.
            move |_slow| f.swap(false, Ordering::Acquire).then_some(())
        }

        // 1: the peer answers after 100 ms and wakes us (we slept).
        let peer = {
            let (word, flag, waiter) = (word.clone(), flag.clone(), waiter.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                // ORDERING: Release — pairs with the Acquire swap in `check`.
                flag.store(true, Ordering::Release);
                word.wake_if_waiting(&waiter, 1);
            })
        };
        block_on_with(
            &word,
            &waiter,
            Until::Never,
            &policy,
            &mut history,
            check(&flag),
        )
        .unwrap();
        peer.join().unwrap();
        let learned = history.spin_budget(&policy, Deadline(0));
        assert!(
            learned >= 200 * MS,
            "learned {learned} ns from a 100 ms wait"
        );

        // 2: the peer answers after 2 ms and does not wake anybody: only
        // the learned spin sees it in time.
        let peer = {
            let flag = flag.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                // ORDERING: as above.
                flag.store(true, Ordering::Release);
            })
        };
        let sleeps_before = waiter.sleeps();
        block_on_with(
            &word,
            &waiter,
            Until::Never,
            &policy,
            &mut history,
            check(&flag),
        )
        .unwrap();
        peer.join().unwrap();
        // Without the learned budget this wait sleeps (a whole slice, as
        // nobody wakes it). With it, it spins and never sleeps.
        assert_eq!(
            waiter.sleeps(),
            sleeps_before,
            "slept: the learned budget was not used"
        );
    }

    /// A waiter on a clock that only moves when read (`step` ns per
    /// read), never preempted, never crowded, whose sleeps return at once:
    /// what a wait does is then measured on its own clock, not the
    /// machine's.
    struct SteppedClock {
        reads: AtomicU64,
        step: u64,
    }

    impl Waiter for SteppedClock {
        fn wait(&self, _word: &AtomicU32, _expected: u32, _deadline: Option<Deadline>) {}
        fn wake(&self, _word: &AtomicU32, _count: u32) {}
        fn now(&self) -> Deadline {
            // ORDERING: Relaxed — a counter private to this test clock.
            Deadline(self.reads.fetch_add(1, Ordering::Relaxed) * self.step)
        }
    }

    /// The liveness bound of `slice_ns` ("a dead peer never leaves a
    /// sleeper blocked for longer than this") holds for a learned spin
    /// too: a budget learned up to a `max_spin_ns` longer than the slice
    /// must not keep the slow check from running for longer than a slice.
    #[test]
    fn a_learned_spin_longer_than_the_slice_still_checks_liveness_each_slice() {
        let policy = WaitPolicy {
            spin_ns: 0,
            max_spin_ns: 1_000 * MS,
            slice_ns: 10 * MS,
        };
        let mut history = WaitHistory::default();
        history.slept(&policy, Deadline(0), Deadline(500 * MS));
        assert_eq!(history.spin_budget(&policy, Deadline(0)), 1_000 * MS);
        let waiter = SteppedClock {
            reads: AtomicU64::new(0),
            step: MS / 4,
        };
        let word = WaitWord::default();
        // The peer is dead from the start: only a slow check can say so.
        let mut first_slow = None;
        let check = |slow: bool| {
            if slow {
                first_slow.get_or_insert(waiter.reads.load(Ordering::Relaxed) * waiter.step);
                Some(())
            } else {
                None
            }
        };
        block_on_with(&word, &waiter, Until::Never, &policy, &mut history, check).unwrap();
        let at = first_slow.expect("a slow check ran");
        assert!(
            at <= policy.slice_ns + 4 * waiter.step,
            "the first liveness check came {} ms into the wait, slice {} ms",
            at / MS,
            policy.slice_ns / MS
        );
    }

    /// A test waiter that counts its sleeps. `crowded`: a CPU that other
    /// threads keep busy (its clock jumps 100 µs at every read, as if the
    /// thread were off the CPU between two looks, and it is always found
    /// preempted); otherwise a CPU nobody else wants.
    #[derive(Clone, Default)]
    struct TestWaiter {
        inner: ThreadWaiter,
        sleeps: Arc<AtomicU32>,
        /// Crowded: the flag a sleep raises (the answer comes while it
        /// sleeps), and the virtual clock's reads.
        crowded: Option<(Arc<AtomicBool>, Arc<AtomicU64>)>,
    }

    impl TestWaiter {
        /// A crowded CPU on a virtual clock (no real time passes, so the
        /// machine's load cannot change the outcome): every read is 100 µs
        /// after the last, and a sleep returns at once having raised
        /// `answer`.
        fn crowded(answer: Arc<AtomicBool>) -> TestWaiter {
            TestWaiter {
                crowded: Some((answer, Arc::default())),
                ..TestWaiter::default()
            }
        }

        fn sleeps(&self) -> u32 {
            // ORDERING: Relaxed — a count read by the thread that slept.
            self.sleeps.load(Ordering::Relaxed)
        }
    }

    impl Waiter for TestWaiter {
        fn wait(&self, word: &AtomicU32, expected: u32, deadline: Option<Deadline>) {
            // ORDERING: Relaxed — as in `sleeps`.
            self.sleeps.fetch_add(1, Ordering::Relaxed);
            match &self.crowded {
                // ORDERING: Release — pairs with the test's Acquire swap.
                Some((answer, _)) => answer.store(true, Ordering::Release),
                None => self.inner.wait(word, expected, deadline),
            }
        }
        fn wake(&self, word: &AtomicU32, count: u32) {
            self.inner.wake(word, count);
        }
        fn now(&self) -> Deadline {
            match &self.crowded {
                // ORDERING: Relaxed — a counter private to the test's clock.
                Some((_, reads)) => Deadline((reads.fetch_add(1, Ordering::Relaxed) + 1) * 100_000),
                None => self.inner.now(),
            }
        }
        fn preempted(&self) -> bool {
            self.crowded.is_some()
        }
    }

    /// On a crowded CPU an adaptive wait stops spinning at the first look
    /// that finds it was switched out, sleeps, and does not spin again for
    /// a while; a fixed policy keeps its spin.
    #[test]
    fn a_crowded_cpu_stops_the_spin_for_a_while() {
        let policy = WaitPolicy {
            spin_ns: 1_000,
            max_spin_ns: 2_000 * MS,
            slice_ns: 10_000 * MS,
        };
        let word = WaitWord::default();
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = TestWaiter::crowded(flag.clone());
        let mut history = WaitHistory::default();
        history.slept(&policy, Deadline(0), Deadline(500 * MS)); // learned: spin up to 1 s
        assert_eq!(history.spin_budget(&policy, Deadline(0)), 1_000 * MS);
        // ORDERING: Acquire — pairs with the Release store of the sleep.
        let check = |_slow: bool| flag.swap(false, Ordering::Acquire).then_some(());
        block_on_with(&word, &waiter, Until::Never, &policy, &mut history, check).unwrap();
        assert_eq!(
            waiter.sleeps(),
            1,
            "the spin stopped early and the wait slept"
        );
        let now = waiter.now();
        assert!(
            now.0 < 10 * MS,
            "stopped within a few looks, not at the budget"
        );
        assert_eq!(
            history.spin_budget(&policy, now),
            0,
            "quiet after contention"
        );
        assert_eq!(
            history.spin_budget(&policy, now.after(CONTENDED_QUIET_NS)),
            policy.spin_ns,
            "spins again afterwards, from the floor, having learned nothing"
        );
        // A fixed policy is what it says, contended or not.
        let fixed = WaitPolicy::fixed(7_000);
        history.contended(&fixed, now);
        assert_eq!(history.spin_budget(&fixed, now), 7_000);
    }
}
