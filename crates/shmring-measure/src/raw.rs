//! The floors: a raw spinning SPSC ring, a raw futex ping-pong, and that
//! ping-pong with a spin before the sleep, each on a shared mapping of an
//! inherited `memfd`.
//!
//! All trust the other process completely (no checks of positions read
//! from shared memory): they are what a hand-written, unchecked channel
//! costs, the lower bound shmring is compared with.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::drive::{Link, Spin};
use crate::peer::{inherit_fd, inherited_fd, Job};
use crate::MeasureError;

/// A cache-line-padded word (128 bytes: adjacent-line prefetch pairs).
#[repr(C, align(128))]
struct Padded<T>(T);

const _: () = assert!(std::mem::size_of::<Padded<AtomicU64>>() == 128);

/// A read-write shared mapping of a memfd.
struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

impl SharedMap {
    /// Maps `len` bytes of `fd`.
    fn map(fd: &OwnedFd, len: usize) -> Result<SharedMap, MeasureError> {
        // SAFETY: a fresh shared mapping chosen by the kernel (no address
        // hint), of a descriptor we own; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Populated, as shmring's own mappings are: no page fault
                // in the measured traffic.
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MeasureError::io("mmap")(std::io::Error::last_os_error()));
        }
        let base =
            NonNull::new(ptr.cast()).ok_or_else(|| MeasureError::Transport("mmap: null".into()))?;
        Ok(SharedMap { base, len })
    }

    /// Creates a zero-filled memfd of `len` bytes, maps it, and hands the
    /// descriptor to the child `cmd` will spawn.
    fn create(job: &mut Job, cmd: &mut Command, len: usize) -> Result<SharedMap, MeasureError> {
        // SAFETY: the name is a NUL-terminated literal; the descriptor
        // returned (checked) is owned by nobody else.
        let fd = unsafe { libc::memfd_create(c"shmring-measure".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(MeasureError::io("memfd_create")(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` was just returned by memfd_create and is ours alone.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(MeasureError::io("ftruncate")(
                std::io::Error::last_os_error(),
            ));
        }
        let map = SharedMap::map(&fd, len)?;
        inherit_fd(cmd, job, fd);
        Ok(map)
    }

    /// The peer's side: maps the inherited descriptor.
    fn inherited(job: &Job, len: usize) -> Result<SharedMap, MeasureError> {
        let fd = inherited_fd(job, 0)?;
        SharedMap::map(&fd, len)
    }

    /// The address `offset` bytes in; `offset + size` must be within the
    /// mapping.
    fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(offset.checked_add(size).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds of the mapping, checked just above.
        unsafe { self.base.as_ptr().add(offset) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing derived
        // from it outlives `self` (the links own their map).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Where a spin-ring direction's slots start: `head` and `tail` take the
/// first two 128-byte lines; the slots start on the next page.
const DATA_OFFSET: usize = 4096;

/// One direction of the spin ring: `head` and `tail` lines, then `slots`
/// fixed slots of `slot` bytes from [`DATA_OFFSET`].
#[derive(Clone, Copy)]
struct RingShape {
    slot: usize,
    slots: usize,
    /// Bytes of one direction, rounded up to a page.
    len: usize,
}

impl RingShape {
    fn of(job: &Job) -> RingShape {
        RingShape::with_header(job, 0)
    }

    /// Slots of the payload plus `header` bytes (rounded up to 8).
    fn with_header(job: &Job, header: usize) -> RingShape {
        let slot = (header + job.payload).next_multiple_of(8);
        let want = job.ring_bytes() as usize / slot;
        // The largest power of two of slots that fits in the ring bytes.
        let slots = 1usize << (usize::BITS - 1 - want.max(2).leading_zeros());
        RingShape {
            slot,
            slots,
            len: (DATA_OFFSET + slot * slots).next_multiple_of(4096),
        }
    }
}

/// One role on one direction of the spin ring.
struct SpinHalf {
    /// Consumer's position (only the consumer stores it).
    head: *const AtomicU64,
    /// Producer's position (only the producer stores it).
    tail: *const AtomicU64,
    data: *mut u8,
    shape: RingShape,
    /// This role's own position: tail for the producer, head for the
    /// consumer; `position & (slots - 1)` is a slot index.
    position: u64,
    /// The last value read of the other role's position.
    cached: u64,
}

impl SpinHalf {
    fn new(map: &SharedMap, offset: usize, shape: RingShape) -> SpinHalf {
        SpinHalf {
            head: map.at(offset, 128).cast(),
            tail: map.at(offset + 128, 128).cast(),
            data: map.at(offset + DATA_OFFSET, shape.slot * shape.slots),
            shape,
            position: 0,
            cached: 0,
        }
    }

    fn slot(&self) -> *mut u8 {
        let index = (self.position as usize) & (self.shape.slots - 1);
        // SAFETY: index < slots, so the slot lies in the data area that
        // `map.at` bounds-checked in `new`.
        unsafe { self.data.add(index * self.shape.slot) }
    }
}

/// The raw spinning SPSC ring: one per direction.
pub(crate) struct SpinLink {
    tx: SpinHalf,
    rx: SpinHalf,
    payload: usize,
    _map: SharedMap,
}

impl SpinLink {
    pub(crate) fn parent(job: &mut Job, cmd: &mut Command) -> Result<SpinLink, MeasureError> {
        let shape = RingShape::of(job);
        let map = SharedMap::create(job, cmd, 2 * shape.len)?;
        Ok(SpinLink::new(job, map, shape, 0, shape.len))
    }

    pub(crate) fn child(job: &Job) -> Result<SpinLink, MeasureError> {
        let shape = RingShape::of(job);
        let map = SharedMap::inherited(job, 2 * shape.len)?;
        Ok(SpinLink::new(job, map, shape, shape.len, 0))
    }

    fn new(job: &Job, map: SharedMap, shape: RingShape, tx: usize, rx: usize) -> SpinLink {
        SpinLink {
            tx: SpinHalf::new(&map, tx, shape),
            rx: SpinHalf::new(&map, rx, shape),
            payload: job.payload,
            _map: map,
        }
    }
}

impl Link for SpinLink {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let tx = &mut self.tx;
        let slots = tx.shape.slots as u64;
        let mut spin = Spin::new();
        while tx.position - tx.cached >= slots {
            // SAFETY: `head` points into the live mapping (checked in new).
            // ORDERING: Acquire — the consumer is done with the slots
            // before `head`; pairs with its Release store in `recv`.
            tx.cached = unsafe { (*tx.head).load(Ordering::Acquire) };
            if tx.position - tx.cached >= slots {
                spin.spin()?;
            }
        }
        let len = msg.len().min(tx.shape.slot);
        // SAFETY: the slot has `shape.slot` bytes, no other process touches
        // it until `tail` passes it (the peer is trusted), and `msg` is a
        // separate local buffer.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), tx.slot(), len) };
        tx.position += 1;
        // SAFETY: `tail` points into the live mapping.
        // ORDERING: Release — publishes the slot's bytes; pairs with the
        // Acquire load of `tail` in `recv`.
        unsafe { (*tx.tail).store(tx.position, Ordering::Release) };
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let rx = &mut self.rx;
        let mut spin = Spin::new();
        while rx.cached == rx.position {
            // SAFETY: `tail` points into the live mapping.
            // ORDERING: Acquire — pairs with the Release store of `tail` in
            // `send`, so the slot's bytes are visible.
            rx.cached = unsafe { (*rx.tail).load(Ordering::Acquire) };
            if rx.cached == rx.position {
                spin.spin()?;
            }
        }
        buf.resize(self.payload, 0);
        let len = self.payload.min(rx.shape.slot);
        // SAFETY: the slot is published (Acquire above) and the producer
        // will not reuse it before `head` passes it; `buf` is local.
        unsafe { std::ptr::copy_nonoverlapping(rx.slot(), buf.as_mut_ptr(), len) };
        rx.position += 1;
        // SAFETY: `head` points into the live mapping.
        // ORDERING: Release — the slot has been read; pairs with the
        // Acquire load of `head` in `send`.
        unsafe { (*rx.head).store(rx.position, Ordering::Release) };
        Ok(())
    }
}

/// The spin ring with a sequence word in front of each slot: the producer
/// publishes a slot by storing its position + 1 there, and the consumer
/// polls the slot it reads next, never the producer's tail (the tail line
/// does not exist). One cache line moves per message where the plain spin
/// ring moves two (the tail's and the slot's): the floor of a consumer
/// that polls the record's own line.
pub(crate) struct SpinSeqLink {
    tx: SpinHalf,
    rx: SpinHalf,
    payload: usize,
    _map: SharedMap,
}

/// Bytes of a slot's sequence word.
const SEQ: usize = 8;

impl SpinSeqLink {
    pub(crate) fn parent(job: &mut Job, cmd: &mut Command) -> Result<SpinSeqLink, MeasureError> {
        let shape = RingShape::with_header(job, SEQ);
        let map = SharedMap::create(job, cmd, 2 * shape.len)?;
        Ok(SpinSeqLink::new(job, map, shape, 0, shape.len))
    }

    pub(crate) fn child(job: &Job) -> Result<SpinSeqLink, MeasureError> {
        let shape = RingShape::with_header(job, SEQ);
        let map = SharedMap::inherited(job, 2 * shape.len)?;
        Ok(SpinSeqLink::new(job, map, shape, shape.len, 0))
    }

    fn new(job: &Job, map: SharedMap, shape: RingShape, tx: usize, rx: usize) -> SpinSeqLink {
        SpinSeqLink {
            tx: SpinHalf::new(&map, tx, shape),
            rx: SpinHalf::new(&map, rx, shape),
            payload: job.payload,
            _map: map,
        }
    }
}

impl Link for SpinSeqLink {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let tx = &mut self.tx;
        let slots = tx.shape.slots as u64;
        let mut spin = Spin::new();
        while tx.position - tx.cached >= slots {
            // SAFETY: `head` points into the live mapping (checked in new).
            // ORDERING: Acquire — the consumer is done with the slots
            // before `head`; pairs with its Release store in `recv`.
            tx.cached = unsafe { (*tx.head).load(Ordering::Acquire) };
            if tx.position - tx.cached >= slots {
                spin.spin()?;
            }
        }
        let slot = tx.slot();
        let len = msg.len().min(tx.shape.slot - SEQ);
        // SAFETY: the slot has `shape.slot` bytes, SEQ of them the sequence
        // word; no other process touches the payload until the sequence
        // word publishes it (the peer is trusted); `msg` is a local buffer.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot.add(SEQ), len) };
        tx.position += 1;
        // SAFETY: the slot starts 8-aligned (slots are multiples of 8 from
        // a page boundary) inside the live mapping.
        let seq = unsafe { &*slot.cast::<AtomicU64>() };
        // ORDERING: Release — publishes the payload; pairs with the Acquire
        // load of the sequence word in `recv`.
        seq.store(tx.position, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let rx = &mut self.rx;
        let slot = rx.slot();
        // SAFETY: as in `send`: an aligned word of the live mapping.
        let seq = unsafe { &*slot.cast::<AtomicU64>() };
        let mut spin = Spin::new();
        // ORDERING: Acquire — pairs with the Release store in `send`, so
        // the payload is visible once the word says this lap's message is
        // there.
        while seq.load(Ordering::Acquire) != rx.position + 1 {
            spin.spin()?;
        }
        buf.resize(self.payload, 0);
        let len = self.payload.min(rx.shape.slot - SEQ);
        // SAFETY: the slot is published (Acquire above) and the producer
        // will not reuse it before `head` passes it; `buf` is local.
        unsafe { std::ptr::copy_nonoverlapping(slot.add(SEQ), buf.as_mut_ptr(), len) };
        rx.position += 1;
        // SAFETY: `head` points into the live mapping.
        // ORDERING: Release — the slot has been read; pairs with the
        // Acquire load of `head` in `send`.
        unsafe { (*rx.head).store(rx.position, Ordering::Release) };
        Ok(())
    }
}

/// One direction of the futex ping-pong: a sequence word (its own line)
/// and a payload area.
struct Mailbox {
    seq: *const AtomicU32,
    data: *mut u8,
    /// The last sequence value this side saw or wrote.
    seen: u32,
}

fn futex(
    word: *const AtomicU32,
    op: libc::c_int,
    val: u32,
    timeout: Option<&libc::timespec>,
) -> i64 {
    let timeout = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` points to an aligned u32 in a live shared mapping;
    // FUTEX_WAIT/FUTEX_WAKE (shared: no PRIVATE flag) only read the word
    // and `timeout` (valid or null for the call).
    unsafe { libc::syscall(libc::SYS_futex, word, op, val, timeout, 0usize, 0u32) }
}

/// The raw futex ping-pong: one mailbox per direction.
pub(crate) struct FutexLink {
    tx: Mailbox,
    rx: Mailbox,
    payload: usize,
    _map: SharedMap,
}

impl FutexLink {
    fn half_len(job: &Job) -> usize {
        (128 + job.payload).next_multiple_of(4096)
    }

    pub(crate) fn parent(job: &mut Job, cmd: &mut Command) -> Result<FutexLink, MeasureError> {
        let half = FutexLink::half_len(job);
        let map = SharedMap::create(job, cmd, 2 * half)?;
        Ok(FutexLink::new(job, map, 0, half))
    }

    pub(crate) fn child(job: &Job) -> Result<FutexLink, MeasureError> {
        let half = FutexLink::half_len(job);
        let map = SharedMap::inherited(job, 2 * half)?;
        Ok(FutexLink::new(job, map, half, 0))
    }

    fn new(job: &Job, map: SharedMap, tx: usize, rx: usize) -> FutexLink {
        let mailbox = |offset| Mailbox {
            seq: map.at(offset, 128).cast(),
            data: map.at(offset + 128, job.payload),
            seen: 0,
        };
        FutexLink {
            tx: mailbox(tx),
            rx: mailbox(rx),
            payload: job.payload,
            _map: map,
        }
    }
}

impl Link for FutexLink {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let len = msg.len().min(self.payload);
        // SAFETY: the area holds `payload` bytes; in a ping-pong the peer
        // finished reading the previous message before it answered.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.tx.data, len) };
        self.tx.seen = self.tx.seen.wrapping_add(1);
        // SAFETY: `seq` points into the live mapping.
        // ORDERING: Release — publishes the payload; pairs with the Acquire
        // load in `recv`.
        unsafe { (*self.tx.seq).store(self.tx.seen, Ordering::Release) };
        futex(self.tx.seq, libc::FUTEX_WAKE, 1, None);
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let slice = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let mut spin = Spin::new();
        loop {
            // SAFETY: `seq` points into the live mapping.
            // ORDERING: Acquire — pairs with the Release store in `send`.
            let now = unsafe { (*self.rx.seq).load(Ordering::Acquire) };
            if now != self.rx.seen {
                self.rx.seen = now;
                break;
            }
            // The kernel compares the word with `seen` under its lock, so a
            // wake between the load above and the sleep is not lost.
            if futex(self.rx.seq, libc::FUTEX_WAIT, now, Some(&slice)) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
            {
                spin.slow()?;
            }
        }
        buf.resize(self.payload, 0);
        // SAFETY: the message is published (Acquire above) and the peer
        // writes the next one only after our answer.
        unsafe { std::ptr::copy_nonoverlapping(self.rx.data, buf.as_mut_ptr(), self.payload) };
        Ok(())
    }
}

/// The spin budget of [`FutexSpinLink`] unless the job sets one: shmring's
/// default wait policy's.
const FUTEX_SPIN_NS: u64 = 5_000;

/// Checks of the word before the first clock read (as shmring's waits: an
/// answer within a microsecond costs no clock read at all).
const CLOCK_FREE_ROUNDS: u32 = 16;

/// The low bit of a [`FutexSpinLink`] sequence word: the receiver sleeps
/// (or is about to). Sequence values proper step by 2.
const SLEEPING: u32 = 1;

/// The raw futex ping-pong with a spin before the sleep and a wake only
/// for a sleeper: one mailbox per direction, as [`FutexLink`].
///
/// The sequence word carries the receiver's sleep in its low bit. The
/// receiver spins on the word for the budget (a pause hint per check, the
/// clock read every fourth after [`CLOCK_FREE_ROUNDS`]), then sets the bit
/// with a compare-exchange from the value it last saw and sleeps on the
/// word with that bit set. The sender replaces the word with the next
/// sequence value (bit clear) by a swap and calls `FUTEX_WAKE` only when
/// the value it replaced had the bit. Both are read-modify-writes of the
/// one word, so one of them sees the other: either the receiver's
/// compare-exchange fails (the message is there) or the sender's swap
/// returns the bit (and the kernel, comparing the word under its lock in
/// `FUTEX_WAIT`, orders the wake after the sleep or fails the sleep).
pub(crate) struct FutexSpinLink {
    tx: Mailbox,
    rx: Mailbox,
    payload: usize,
    spin_ns: u64,
    _map: SharedMap,
}

impl FutexSpinLink {
    pub(crate) fn parent(job: &mut Job, cmd: &mut Command) -> Result<FutexSpinLink, MeasureError> {
        let half = FutexLink::half_len(job);
        let map = SharedMap::create(job, cmd, 2 * half)?;
        Ok(FutexSpinLink::new(job, map, 0, half))
    }

    pub(crate) fn child(job: &Job) -> Result<FutexSpinLink, MeasureError> {
        let half = FutexLink::half_len(job);
        let map = SharedMap::inherited(job, 2 * half)?;
        Ok(FutexSpinLink::new(job, map, half, 0))
    }

    fn new(job: &Job, map: SharedMap, tx: usize, rx: usize) -> FutexSpinLink {
        let mailbox = |offset| Mailbox {
            seq: map.at(offset, 128).cast(),
            data: map.at(offset + 128, job.payload),
            seen: 0,
        };
        FutexSpinLink {
            tx: mailbox(tx),
            rx: mailbox(rx),
            payload: job.payload,
            spin_ns: job.spin_ns.unwrap_or(FUTEX_SPIN_NS),
            _map: map,
        }
    }

    /// The sequence word as it is now.
    #[inline]
    fn load_rx(&self) -> u32 {
        // SAFETY: `seq` points into the live mapping.
        // ORDERING: Acquire — pairs with the Release swap in `send`, so the
        // payload it published is visible.
        unsafe { (*self.rx.seq).load(Ordering::Acquire) }
    }

    /// Spins for the budget; the new sequence value if one came.
    #[inline]
    fn spin_for_message(&self) -> Option<u32> {
        let seen = self.rx.seen;
        let now = self.load_rx();
        if now != seen || self.spin_ns == 0 {
            return (now != seen).then_some(now);
        }
        for _ in 0..CLOCK_FREE_ROUNDS {
            std::hint::spin_loop();
            let now = self.load_rx();
            if now != seen {
                return Some(now);
            }
        }
        let start = std::time::Instant::now();
        let budget = std::time::Duration::from_nanos(self.spin_ns);
        let mut rounds = 0u32;
        loop {
            std::hint::spin_loop();
            let now = self.load_rx();
            if now != seen {
                return Some(now);
            }
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(4) && start.elapsed() >= budget {
                return None;
            }
        }
    }

    /// Announces the sleep and sleeps until the word moves on; the new
    /// sequence value.
    fn sleep_for_message(&self) -> Result<u32, MeasureError> {
        let seen = self.rx.seen;
        // ORDERING: Relaxed on success — the bit publishes nothing; it is
        // ordered against the sender's swap by being an RMW of the same
        // word. Acquire on failure — the value read is the sender's Release
        // swap, whose payload we then read.
        // SAFETY: `seq` points into the live mapping.
        let marked = unsafe {
            (*self.rx.seq).compare_exchange(
                seen,
                seen | SLEEPING,
                Ordering::Relaxed,
                Ordering::Acquire,
            )
        };
        if let Err(now) = marked {
            return Ok(now);
        }
        let slice = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let mut spin = Spin::new();
        loop {
            // The kernel sleeps only while the word still holds our marked
            // value, checked under its lock: a swap before it makes the
            // wait return at once, one after it finds us asleep.
            if futex(self.rx.seq, libc::FUTEX_WAIT, seen | SLEEPING, Some(&slice)) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
            {
                spin.slow()?;
            }
            let now = self.load_rx();
            if now != seen | SLEEPING {
                return Ok(now);
            }
        }
    }
}

impl Link for FutexSpinLink {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let len = msg.len().min(self.payload);
        // SAFETY: the area holds `payload` bytes; in a ping-pong the peer
        // finished reading the previous message before it answered.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.tx.data, len) };
        self.tx.seen = self.tx.seen.wrapping_add(2);
        // ORDERING: Release — publishes the payload; pairs with the
        // receiver's Acquire load or failed compare-exchange. Being an RMW,
        // it reads the receiver's SLEEPING bit if its compare-exchange came
        // first in the word's order (and that one fails if this came first).
        // SAFETY: `seq` points into the live mapping, which outlives `self`.
        let old = unsafe { (*self.tx.seq).swap(self.tx.seen, Ordering::Release) };
        if old & SLEEPING != 0 {
            futex(self.tx.seq, libc::FUTEX_WAKE, 1, None);
        }
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let now = match self.spin_for_message() {
            Some(now) => now,
            None => self.sleep_for_message()?,
        };
        // The sender stores sequence values with the bit clear.
        self.rx.seen = now & !SLEEPING;
        buf.resize(self.payload, 0);
        // SAFETY: the message is published (Acquire above) and the peer
        // writes the next one only after our answer.
        unsafe { std::ptr::copy_nonoverlapping(self.rx.data, buf.as_mut_ptr(), self.payload) };
        Ok(())
    }
}
