//! MPMC op sequences against one [`RingModel`] per producer ring, with
//! producers that come, go and die (their rings taken over), on rings that
//! may start just before their position words wrap; until a hostile peer
//! scribbles on a position word, after which every operation must still
//! answer (an error is fine) without a panic.

use crate::input::{hostile_word, length, message, start, Input};
use crate::model::pack;
use crate::model::RingModel;
use shmring_core::error::{PopError, PushError};
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::mpmc::{ClaimError, Consumer, Producer, Queue, QueueConfig, MAX_RINGS};
use shmring_core::record::Mark;
use shmring_core::ring::{RingConfig, POSITION_MASK};
use shmring_core::sync::Ordering;
use shmring_core::wait::{Deadline, Until};

/// A producer handle of the harness: the handle, its token, its ring.
type Held = (Producer<ThreadWaiter>, u64, usize);

struct Harness {
    queue: Queue,
    waiter: ThreadWaiter,
    producers: [Option<Held>; 3],
    /// Killed producers: never dropped while the run lasts (a dead process
    /// runs no destructor), dropped at the end so nothing leaks.
    zombies: Vec<Producer<ThreadWaiter>>,
    consumers: [(Consumer<ThreadWaiter>, usize); 2],
    rings: Vec<RingModel>,
    /// Model of each ring's owner word.
    owners: Vec<u64>,
    /// Model of each ring's hand-back stamp, and of the queue's count.
    stamps: Vec<u32>,
    handbacks: u32,
    /// Model of each ring's tail position when it was last handed back.
    handback_tails: Vec<u64>,
    dead: Vec<u64>,
    in_use: usize,
    max_len: u64,
    closed: bool,
    next_token: u64,
    seq: u32,
    buf: Vec<u8>,
    /// Whether the models still describe the rings (no hostile scribble).
    trusted: bool,
}

/// Runs MPMC operations decoded from `data` on a heap queue and checks each
/// result (which ring a consumer takes from, and what) against a model;
/// after a hostile scribble on a position word, only that nothing panics.
///
/// # Panics
///
/// When the queue and the model disagree, or anything panics (a finding).
pub fn mpmc_ops(data: &[u8]) {
    let mut input = Input::new(data);
    let rings = 1 + u64::from(input.byte() % 4);
    let capacity = 64u64 << (input.byte() % 4);
    let max_record = u64::from(input.u16()) % (capacity - 7);
    let max_len = u64::from(input.byte() % 12).saturating_sub(4);
    let config = QueueConfig {
        rings,
        ring: RingConfig {
            capacity,
            max_record,
        },
        max_len,
    };
    assert!(rings <= MAX_RINGS);
    let queue = heap::queue(&config).expect("valid config");
    let (position, count) = start(&mut input);
    for i in 0..rings as usize {
        let (tail, head) = queue.position_words(i);
        for word in [tail, head] {
            // ORDERING: Relaxed — before any handle exists; the handles'
            // own loads come later on this thread.
            word.store(pack(count, position), Ordering::Relaxed);
        }
    }
    let waiter = ThreadWaiter::default();
    let consumer = || (queue.consumer(waiter.clone()), 0);
    let mut h = Harness {
        consumers: [consumer(), consumer()],
        queue: queue.clone(),
        waiter: waiter.clone(),
        producers: [None, None, None],
        zombies: Vec::new(),
        rings: (0..rings)
            .map(|_| RingModel::new(&config.ring, position, count))
            .collect(),
        owners: vec![0; rings as usize],
        stamps: vec![0; rings as usize],
        handbacks: 0,
        handback_tails: vec![0; rings as usize],
        dead: Vec::new(),
        in_use: 0,
        max_len,
        closed: false,
        next_token: 1,
        seq: 0,
        buf: Vec::new(),
        trusted: true,
    };
    while let Some(op) = input.op() {
        if h.trusted {
            h.step(op, &mut input);
            if h.trusted {
                h.check_snapshots();
            }
        } else {
            h.step_untrusted(op, &mut input);
        }
    }
}

impl Harness {
    fn len(&self) -> u64 {
        self.rings[..self.in_use].iter().map(RingModel::len).sum()
    }

    /// The model of `claim_producer`: a free ring, else a dead owner's.
    fn claim(&mut self, token: u64) -> Result<usize, ClaimError> {
        let free = self.owners.iter().position(|&o| o == 0);
        let taken = || {
            let dead = &self.dead;
            (self.owners.iter()).position(|&o| o != token && dead.contains(&o))
        };
        let i = free.or_else(taken).ok_or(ClaimError::NoFreeRing {
            rings: self.owners.len(),
        })?;
        self.owners[i] = token;
        self.in_use = self.in_use.max(i + 1);
        self.rings[i].reattach_producer();
        Ok(i)
    }

    fn drop_producer(&mut self, slot: usize) {
        if let Some((p, token, ring)) = self.producers[slot].take() {
            drop(p);
            self.handbacks = self.handbacks.wrapping_add(1);
            self.stamps[ring] = self.handbacks;
            self.handback_tails[ring] = self.rings[ring].published;
            if self.owners[ring] == token {
                self.owners[ring] = 0;
            }
        }
    }

    /// The model of one `try_pop` by consumer `c`: from the rotating
    /// start, the first ring with words published; but before a take
    /// from it, the handed-back ring with words that was handed back first
    /// (one that holds only padding gives that up, and the look repeats).
    fn pop(&mut self, c: usize) -> Result<Vec<u8>, PopError> {
        let n = self.in_use;
        for k in 0..n {
            let i = (self.consumers[c].1 + k) % n;
            if !self.has_words(i) {
                continue;
            }
            while let Some(j) = self.oldest_handed_back() {
                // A ring claimed again: only what its hand-back left.
                let p = if self.owners[j] == 0 {
                    self.rings[j].take_racy()
                } else {
                    self.rings[j].take_racy_below(self.handback_tails[j])
                };
                if let Some(p) = p {
                    return Ok(p);
                }
            }
            if let Some(p) = self.rings[i].take_racy() {
                self.consumers[c].1 = (i + 1) % n;
                return Ok(p);
            }
        }
        Err(if self.closed {
            PopError::Closed
        } else {
            PopError::Empty
        })
    }

    /// Whether ring `i` has words published past its head (a record, or
    /// only padding).
    fn has_words(&self, i: usize) -> bool {
        self.rings[i].released != self.rings[i].published
    }

    /// Whether owned ring `i` holds words below the tail its last
    /// hand-back left (a stamp of 0: none happened).
    fn holds_handed_back_words(&self, i: usize) -> bool {
        let ring = &self.rings[i];
        let words = self.handback_tails[i].wrapping_sub(ring.released) & POSITION_MASK;
        self.stamps[i] != 0 && (1..=ring.words).contains(&words)
    }

    /// The handed-back ring with words whose stamp is earliest (an owned
    /// ring counts while words of its last hand-back are left).
    fn oldest_handed_back(&self) -> Option<usize> {
        (0..self.in_use)
            .filter(|&i| {
                self.has_words(i) && (self.owners[i] == 0 || self.holds_handed_back_words(i))
            })
            .reduce(|a, b| {
                let earlier = (self.stamps[b].wrapping_sub(self.stamps[a]) as i32) < 0;
                if earlier {
                    b
                } else {
                    a
                }
            })
    }

    /// The model of `try_push_many` on `ring` (`try_push` is one message).
    fn push(&mut self, ring: usize, msgs: &[Vec<u8>]) -> Result<usize, PushError> {
        if self.closed {
            return Err(PushError::Closed);
        }
        let room = match self.max_len {
            0 => usize::MAX,
            max => max.saturating_sub(self.len()) as usize,
        };
        if room == 0 {
            return Err(PushError::Full);
        }
        let model = &mut self.rings[ring];
        let mut n = 0;
        let mut first_err = None;
        for m in msgs.iter().take(room) {
            if let Err(e) = model.write(m, Mark::WHOLE) {
                first_err = Some(e);
                break;
            }
            n += 1;
        }
        model.publish();
        match (n, first_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(n),
        }
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) {
        let slot = input.byte() as usize % self.producers.len();
        match op % 12 {
            0 | 1 => {
                self.drop_producer(slot);
                let token = self.next_token;
                self.next_token += 1;
                let dead = self.dead.clone();
                let mut is_dead = |t| dead.contains(&t);
                let got = self
                    .queue
                    .claim_producer(token, self.waiter.clone(), &mut is_dead);
                match (got, self.claim(token)) {
                    (Ok(p), Ok(i)) => {
                        assert_eq!(p.ring_index(), i, "claimed ring");
                        self.producers[slot] = Some((p, token, i));
                    }
                    (Err(e), Err(x)) => assert_eq!(e, x, "claim_producer"),
                    (got, x) => panic!("claim: {:?} vs model {x:?}", got.map(|p| p.ring_index())),
                }
            }
            2 => {
                // A producer killed: its handle never drops, its token dies.
                if let Some((p, token, _)) = self.producers[slot].take() {
                    self.zombies.push(p);
                    self.dead.push(token);
                }
            }
            3 => self.drop_producer(slot),
            4..=6 => {
                let n = if op % 12 == 6 { input.byte() % 5 } else { 1 };
                let max = self.rings[0].max_record;
                let msgs: Vec<Vec<u8>> = (0..n)
                    .map(|_| message(&mut self.seq, length(input, max)))
                    .collect();
                let Some(ring) = self.producers[slot].as_ref().map(|h| h.2) else {
                    return;
                };
                let expected = self.push(ring, &msgs);
                let p = &mut self.producers[slot].as_mut().expect("checked").0;
                if n == 1 {
                    assert_eq!(p.try_push(&msgs[0]), expected.map(drop), "try_push");
                } else {
                    let got = p.try_push_many(msgs.iter().map(Vec::as_slice));
                    assert_eq!(got, expected, "try_push_many");
                }
            }
            7..=9 => {
                let c = slot % 2;
                let expected = self.pop(c);
                let consumer = &mut self.consumers[c].0;
                let got = if op % 12 == 9 {
                    consumer.pop(&mut self.buf, Until::At(Deadline(0)))
                } else {
                    consumer.try_pop(&mut self.buf)
                };
                match expected {
                    Ok(p) => {
                        assert_eq!(got, Ok(p.len()), "try_pop");
                        assert_eq!(self.buf, p, "try_pop payload");
                    }
                    Err(PopError::Empty) if op % 12 == 9 => {
                        assert_eq!(got, Err(PopError::Timeout), "pop");
                    }
                    Err(e) => assert_eq!(got, Err(e), "try_pop"),
                }
            }
            10 => {
                if let Some((p, _, ring)) = &mut self.producers[slot] {
                    let m = &self.rings[*ring];
                    assert_eq!(p.is_full(), m.free_for_producer() < 8, "is_full");
                }
            }
            _ => match input.byte() % 8 {
                0 => {
                    self.queue.close(&self.waiter);
                    self.closed = true;
                }
                1 | 2 => self.scribble(input),
                _ => {}
            },
        }
    }

    /// A hostile peer stores into some ring's tail or head word.
    fn scribble(&mut self, input: &mut Input<'_>) {
        let which = input.byte();
        let (tail, head) = self
            .queue
            .position_words(usize::from(which / 2) % self.rings.len());
        let word = if which.is_multiple_of(2) { tail } else { head };
        // ORDERING: Relaxed — a scribble; single-threaded.
        let value = hostile_word(input, word.load(Ordering::Relaxed));
        // ORDERING: Relaxed — as above.
        word.store(value, Ordering::Relaxed);
        self.trusted = false;
    }

    /// After a scribble: every operation answers, none panics; payloads
    /// stay within the maximum record.
    fn step_untrusted(&mut self, op: u8, input: &mut Input<'_>) {
        let max = self.rings[0].max_record as usize;
        let slot = input.byte() as usize % self.producers.len();
        match op % 8 {
            0 | 1 => {
                if let Some((p, _, _)) = &mut self.producers[slot] {
                    let _ = p.try_push(&[7; 9][..9.min(max)]);
                    let _ = p.try_push_many([&[1u8][..1.min(max)], &[]]);
                    let _ = p.is_full();
                }
            }
            2..=4 => {
                let c = &mut self.consumers[slot % 2].0;
                let _ = c.try_pop(&mut self.buf);
                assert!(self.buf.len() <= max);
            }
            5 => {
                // A new producer, taking over a dead one's ring if need be.
                self.producers[slot] = None;
                let token = self.next_token;
                self.next_token += 1;
                let got = self
                    .queue
                    .claim_producer(token, self.waiter.clone(), &mut |_| true);
                if let Ok(p) = got {
                    let ring = p.ring_index();
                    self.producers[slot] = Some((p, token, ring));
                }
            }
            6 => self.scribble(input),
            _ => {
                let c = &mut self.consumers[slot % 2].0;
                let _ = c.pop(&mut self.buf, Until::At(Deadline(0)));
            }
        }
        let q = &self.queue;
        let _ = (q.len(), q.checked_len(), q.is_empty(), q.ring_owners());
    }

    fn check_snapshots(&self) {
        assert_eq!(self.queue.len(), self.len(), "len");
        let empty = self.rings[..self.in_use].iter().all(RingModel::is_empty);
        assert_eq!(self.queue.is_empty(), empty, "is_empty");
        assert_eq!(self.queue.is_closed(), self.closed, "is_closed");
        assert_eq!(self.queue.ring_owners(), self.owners, "ring owners");
    }
}
