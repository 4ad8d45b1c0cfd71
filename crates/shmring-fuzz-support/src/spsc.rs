//! SPSC op sequences against [`RingModel`]: every result, every snapshot,
//! on a ring that may start just before its position words wrap; until a
//! hostile peer scribbles on those words, after which every operation must
//! still answer (an error is fine) without a panic.

use crate::input::{hostile_word, length, message, start, Input};
use crate::model::pack;
use crate::model::RingModel;
use shmring_core::error::{PopError, PushError};
use shmring_core::heap::{self, ThreadWaiter};
use shmring_core::record::Mark;
use shmring_core::ring::{RingConfig, CONSUMER_CLOSED, PRODUCER_CLOSED};
use shmring_core::spsc::{Consumer, Producer, Ring};
use shmring_core::sync::Ordering;
use shmring_core::wait::{Deadline, Until};

/// A deadline that has always passed: a blocking call tries once.
const PAST: Until = Until::At(Deadline(0));

/// The model's answer to `Consumer::next`: the record's length and marks.
fn next(model: &mut RingModel, flags: u32) -> Result<(usize, Mark), PopError> {
    if let Some(found) = model.peek() {
        return Ok(found);
    }
    model.release();
    if flags & PRODUCER_CLOSED != 0 {
        return model.peek().ok_or(PopError::Closed);
    }
    Err(PopError::Empty)
}

/// The model's answer to `Consumer::try_pop`.
fn pop(model: &mut RingModel, flags: u32) -> Result<Vec<u8>, PopError> {
    next(model, flags)?;
    let (payload, _) = model.advance();
    model.release();
    Ok(payload)
}

/// The model's answer to `Producer::try_push_many_marked`.
fn push_many(
    model: &mut RingModel,
    flags: u32,
    msgs: &[(Vec<u8>, Mark)],
) -> Result<usize, PushError> {
    if flags != 0 {
        return Err(PushError::Closed);
    }
    let mut n = 0;
    let mut first_err = None;
    for (m, mark) in msgs {
        if let Err(e) = model.write(m, *mark) {
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

/// The framing marks in the low two bits of `byte`.
fn mark(byte: u8) -> Mark {
    Mark {
        continues: byte & 1 != 0,
        more: byte & 2 != 0,
    }
}

struct Harness {
    ring: Ring,
    waiter: ThreadWaiter,
    producer: Producer<ThreadWaiter>,
    consumer: Consumer<ThreadWaiter>,
    model: RingModel,
    flags: u32,
    seq: u32,
    buf: Vec<u8>,
    /// Whether the model still describes the ring (no hostile scribble yet).
    trusted: bool,
}

/// Runs SPSC operations decoded from `data` on a heap ring and checks each
/// result, and the snapshots after each, against an exact model, then
/// drains the ring against it; after a hostile scribble on the position
/// words, only that nothing panics.
///
/// # Panics
///
/// When the ring and the model disagree, or anything panics (a finding).
pub fn spsc_ops(data: &[u8]) {
    let mut input = Input::new(data);
    let capacity = 64u64 << (input.byte() % 5);
    let max_record = u64::from(input.u16()) % (capacity - 7);
    let config = RingConfig {
        capacity,
        max_record,
    };
    let ring = heap::ring(&config).expect("valid config");
    let (position, count) = start(&mut input);
    let (tail, head) = ring.position_words();
    for word in [tail, head] {
        // ORDERING: Relaxed — before any handle exists; the handles' own
        // loads come later on this thread.
        word.store(pack(count, position), Ordering::Relaxed);
    }
    let waiter = ThreadWaiter::default();
    let mut h = Harness {
        producer: ring.producer(waiter.clone()).expect("fresh ring"),
        consumer: ring.consumer(waiter.clone()).expect("fresh ring"),
        ring,
        waiter,
        model: RingModel::new(&config, position, count),
        flags: 0,
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
    if h.trusted {
        h.drain();
    }
}

impl Harness {
    fn msg(&mut self, input: &mut Input<'_>) -> Vec<u8> {
        let len = length(input, self.model.max_record);
        message(&mut self.seq, len)
    }

    /// A message and its framing marks.
    fn marked(&mut self, input: &mut Input<'_>) -> (Vec<u8>, Mark) {
        let msg = self.msg(input);
        (msg, mark(input.byte()))
    }

    /// A hostile peer stores into the tail (`which` even) or head word.
    fn scribble(&mut self, which: u8, input: &mut Input<'_>) {
        let (tail, head) = self.ring.position_words();
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
        let max = self.model.max_record as usize;
        let (p, c) = (&mut self.producer, &mut self.consumer);
        match op % 8 {
            0 => {
                let _ = p.try_push_marked(&[7; 9], mark(op / 8));
            }
            1 => {
                let _ = p.try_push_many([&[1u8][..], &[2; 40][..]]);
            }
            2 => {
                let _ = p.push(&[3; 5], PAST);
            }
            3 => {
                let len = usize::from(input.byte());
                let _ = p
                    .reserve(len)
                    .map(|g| g.commit_marked(len.min(1), mark(len as u8)));
            }
            4 => {
                let _ = c.try_pop(&mut self.buf);
            }
            5 => {
                let _ = c.try_pop_many(4, |m| assert!(m.len() <= max));
            }
            6 => {
                if let Ok(grant) = c.read() {
                    assert!(grant.len() <= max);
                }
            }
            _ => match input.byte() % 4 {
                0 => self.scribble(input.byte(), input),
                1 => {
                    if let Ok(p) = self.ring.producer(self.waiter.clone()) {
                        self.producer = p;
                    }
                }
                2 => {
                    if let Ok(c) = self.ring.consumer(self.waiter.clone()) {
                        self.consumer = c;
                    }
                }
                _ => {
                    // Asked whether the producer is gone: yes, for this
                    // call (the other calls' handles have no role).
                    c.set_role(|| true);
                    let _ = (p.free_bytes(), c.wait_readable(PAST));
                    c.set_role(|| false);
                }
            },
        }
        assert!(self.buf.len() <= max);
        let r = &self.ring;
        let _ = (r.len(), r.is_empty(), r.is_full(), r.free_bytes());
    }

    fn step(&mut self, op: u8, input: &mut Input<'_>) {
        let (m, flags) = (&mut self.model, self.flags);
        match op % 16 {
            0 | 1 => {
                let msg = self.msg(input);
                let expected = push_many(&mut self.model, flags, &[(msg.clone(), Mark::WHOLE)]);
                let got = self.producer.try_push(&msg);
                assert_eq!(got, expected.map(drop), "try_push");
            }
            2 => {
                let (msg, mark) = self.marked(input);
                let expected = push_many(&mut self.model, flags, &[(msg.clone(), mark)]);
                let got = self.producer.try_push_marked(&msg, mark);
                assert_eq!(got, expected.map(drop), "try_push_marked");
            }
            3 => {
                let (msg, mark) = self.marked(input);
                let expected = push_many(&mut self.model, flags, &[(msg.clone(), mark)])
                    .map(drop)
                    .map_err(|e| {
                        if e == PushError::Full {
                            PushError::Timeout
                        } else {
                            e
                        }
                    });
                let got = self.producer.push_marked(&msg, mark, PAST);
                assert_eq!(got, expected, "push_marked with a past deadline");
            }
            4 => {
                let n = input.byte();
                let msgs: Vec<(Vec<u8>, Mark)> = (0..n % 6).map(|_| self.marked(input)).collect();
                // The batch goes in whole exactly when the room the
                // producer knows of covers what `space_needed` says (and
                // every record is short enough and the ring open).
                let lens: Vec<usize> = msgs.iter().map(|(m, _)| m.len()).collect();
                let need = self.producer.space_needed(lens.iter().copied());
                assert_eq!(need, self.model.space_needed(&lens), "space_needed");
                let free = self.producer.free_bytes();
                assert_eq!(free, Ok(self.model.free_for_producer()), "free_bytes");
                let plain = flags == 0 && lens.iter().all(|&n| n as u64 <= self.model.max_record);
                let whole = |got: &Result<usize, PushError>| {
                    if plain {
                        assert_eq!(
                            got.as_ref().ok() == Some(&lens.len()),
                            free.is_ok_and(|f| need <= f),
                            "space_needed {need} vs free {free:?}: {got:?}"
                        );
                    }
                };
                if n >= 128 {
                    let expected = push_many(&mut self.model, flags, &msgs);
                    let marked = msgs.iter().map(|(m, mark)| (m.as_slice(), *mark));
                    let got = self.producer.try_push_many_marked(marked);
                    assert_eq!(got, expected, "try_push_many_marked");
                    whole(&got);
                } else {
                    let unmarked: Vec<_> =
                        msgs.into_iter().map(|(m, _)| (m, Mark::WHOLE)).collect();
                    let expected = push_many(&mut self.model, flags, &unmarked);
                    let got = self
                        .producer
                        .try_push_many(unmarked.iter().map(|m| &m.0[..]));
                    assert_eq!(got, expected, "try_push_many");
                    whole(&got);
                }
            }
            5 | 6 => {
                let len = length(input, m.max_record);
                let commit = op % 16 == 5;
                let keep = if len == 0 {
                    0
                } else {
                    input.byte() as usize % (len + 1)
                };
                let mark = mark(input.byte());
                let expected = if flags != 0 {
                    Err(PushError::Closed)
                } else {
                    m.claim(len)
                };
                match (self.producer.reserve(len), expected) {
                    (Ok(mut grant), Ok(at)) => {
                        assert_eq!(grant.len(), len, "grant length");
                        let msg = message(&mut self.seq, keep);
                        grant.write_at(0, &msg);
                        if commit {
                            grant.commit_marked(keep, mark);
                            self.model.commit(at, msg, mark);
                            self.model.publish();
                        }
                    }
                    (Err(e), Err(x)) => {
                        assert_eq!(e, x, "reserve");
                        if x != PushError::Closed {
                            self.model.publish();
                        }
                    }
                    (got, x) => panic!("reserve: {:?} vs model {x:?}", got.map(|g| g.len())),
                }
            }
            7..=9 => {
                let expected = pop(m, flags);
                let got = self.consumer.try_pop(&mut self.buf);
                match expected {
                    Ok(p) => {
                        assert_eq!(got, Ok(p.len()), "try_pop");
                        assert_eq!(self.buf, p, "try_pop payload");
                    }
                    Err(e) => assert_eq!(got, Err(e), "try_pop"),
                }
            }
            10 => {
                let expected = pop(m, flags).map_err(|e| {
                    if e == PopError::Empty {
                        PopError::Timeout
                    } else {
                        e
                    }
                });
                let got = self.consumer.pop(&mut self.buf, PAST);
                assert_eq!(got, expected.as_ref().map(Vec::len).map_err(|e| *e), "pop");
                if let Ok(p) = expected {
                    assert_eq!(self.buf, p, "pop payload");
                }
            }
            11 => {
                let max = input.byte() as usize % 5;
                let mut expected = Vec::new();
                let expected_result = (|| {
                    while expected.len() < max {
                        if expected.is_empty() {
                            next(m, flags)?;
                        } else if m.peek().is_none() {
                            break;
                        }
                        expected.push(m.advance().0);
                    }
                    m.release();
                    Ok(expected.len())
                })();
                let mut got = Vec::new();
                let result = self.consumer.try_pop_many(max, |p| got.push(p.to_vec()));
                assert_eq!(result, expected_result, "try_pop_many");
                if result.is_ok() {
                    assert_eq!(got, expected, "try_pop_many payloads");
                }
            }
            12 => match (self.consumer.read(), next(m, flags)) {
                (Ok(grant), Ok(_)) => {
                    let (p, mark) = self.model.advance();
                    self.model.release();
                    assert_eq!(grant.to_vec(), p, "read grant payload");
                    assert_eq!(grant.mark(), mark, "read grant marks");
                    assert_eq!(grant.continues(), mark.continues, "read grant mark");
                    assert_eq!(grant.more(), mark.more, "read grant mark");
                }
                (Err(e), Err(x)) => assert_eq!(e, x, "read"),
                (got, x) => panic!("read: {:?} vs model {x:?}", got.map(|g| g.len())),
            },
            13 => {
                self.producer = self.ring.producer(self.waiter.clone()).expect("re-attach");
                self.model.reattach_producer();
            }
            14 => {
                self.consumer = self.ring.consumer(self.waiter.clone()).expect("re-attach");
                assert_eq!(self.model.head, self.model.released);
            }
            _ => match input.byte() % 8 {
                0 => {
                    self.producer.close();
                    self.flags |= PRODUCER_CLOSED;
                }
                1 => {
                    self.consumer.close();
                    self.flags |= CONSUMER_CLOSED;
                }
                2 => {
                    self.ring.close(&self.waiter);
                    self.flags |= PRODUCER_CLOSED | CONSUMER_CLOSED;
                }
                3 | 4 => self.scribble(input.byte(), input),
                _ => {}
            },
        }
    }

    /// At the end: every record the model holds comes out, in order, and
    /// then the ring answers as the model does (empty, or closed).
    fn drain(&mut self) {
        loop {
            let expected = pop(&mut self.model, self.flags);
            let got = self.consumer.try_pop(&mut self.buf);
            match expected {
                Ok(p) => {
                    assert_eq!(got, Ok(p.len()), "drain");
                    assert_eq!(self.buf, p, "drain payload");
                }
                Err(e) => {
                    assert_eq!(got, Err(e), "drain: the end");
                    return;
                }
            }
        }
    }

    fn check_snapshots(&mut self) {
        let m = &self.model;
        assert_eq!(m.head, m.released, "model: released between ops");
        assert_eq!(self.ring.len(), m.len(), "len");
        assert_eq!(self.ring.is_empty(), m.is_empty(), "is_empty");
        assert_eq!(self.ring.free_bytes(), m.free_published(), "free_bytes");
        assert_eq!(self.ring.is_full(), m.free_published() < 8, "is_full");
        assert_eq!(self.ring.closed_flags(), self.flags, "closed flags");
        let free = self.producer.free_bytes();
        assert_eq!(
            free,
            Ok(self.model.free_for_producer()),
            "producer free_bytes"
        );
    }
}
