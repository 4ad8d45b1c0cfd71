//! The order one queue consumer sees.
//!
//! What the queue promises (`shmring::mpmc` and `shmring_core::mpmc` docs,
//! README "MPMC queue"): FIFO *per producer*, where a producer is one
//! [`Producer`](shmring::mpmc::Producer) handle, the owner of one ring; and
//! a producer that claims the ring of a dead one has "its published
//! messages delivered before ours". Nothing is promised across producers,
//! nor across two incarnations of one producer identity that own different
//! rings (a restarted producer process usually claims a free ring while its
//! predecessor's records still wait in the old one).
//!
//! Consumers take a record by CAS-ing its ring's head past it, so every
//! successful take of one consumer lies further along that ring than its
//! previous take there: *each consumer's* view of one ring is in ring order,
//! however many consumers there are. Hence, per consumer:
//!
//! * the sequence numbers of one producer incarnation strictly increase
//!   ([`Verdict::fifo_broken`] otherwise), and
//! * on one ring, `(incarnation, seq)` strictly increases
//!   ([`Verdict::ring_order_broken`] otherwise). Incarnation numbers come
//!   from one shared counter, taken right after the ring is claimed: a
//!   ring's next owner claims it only once its predecessor is dead, so its
//!   number is the larger.

use std::collections::HashMap;

use crate::Tag;

/// What one delivery broke, if anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Not above the last sequence number seen from the same incarnation.
    pub fifo_broken: bool,
    /// Not above the last `(incarnation, seq)` seen on the same ring.
    pub ring_order_broken: bool,
}

/// One consumer's memory of what it saw last, per incarnation and per ring.
#[derive(Debug, Default)]
pub struct OrderCheck {
    last_seq: HashMap<u32, u32>,
    last_on_ring: HashMap<u32, (u32, u32)>,
}

impl OrderCheck {
    /// A consumer that saw nothing yet.
    pub fn new() -> OrderCheck {
        OrderCheck::default()
    }

    /// Records a delivery and says what it broke.
    pub fn see(&mut self, tag: Tag) -> Verdict {
        let fifo_broken = self
            .last_seq
            .insert(tag.incarnation, tag.seq)
            .is_some_and(|prev| tag.seq <= prev);
        let key = (tag.incarnation, tag.seq);
        let ring_order_broken = self
            .last_on_ring
            .insert(tag.ring, key)
            .is_some_and(|prev| key <= prev);
        Verdict {
            fifo_broken,
            ring_order_broken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(incarnation: u32, ring: u32, seq: u32) -> Tag {
        Tag {
            producer: 0,
            incarnation,
            ring,
            seq,
        }
    }

    #[test]
    fn increasing_views_pass() {
        let mut c = OrderCheck::new();
        // Two incarnations interleaved on two rings; gaps are fine (another
        // consumer took those).
        for t in [tag(1, 0, 0), tag(2, 1, 5), tag(1, 0, 3), tag(2, 1, 6)] {
            assert_eq!(c.see(t), Verdict::default(), "{t:?}");
        }
        // A later owner of ring 0, after the old one's last record.
        assert_eq!(c.see(tag(3, 0, 4)), Verdict::default());
    }

    #[test]
    fn a_repeat_or_a_step_back_is_caught() {
        let mut c = OrderCheck::new();
        c.see(tag(1, 0, 7));
        let v = c.see(tag(1, 0, 7));
        assert!(v.fifo_broken && v.ring_order_broken);
        let v = c.see(tag(1, 0, 6));
        assert!(v.fifo_broken && v.ring_order_broken);
    }

    #[test]
    fn a_dead_owners_record_after_its_successors_is_caught() {
        let mut c = OrderCheck::new();
        c.see(tag(4, 2, 10));
        let v = c.see(tag(3, 2, 9));
        assert!(!v.fifo_broken && v.ring_order_broken);
    }
}
