//! The final accounting of the queue scenario.

use std::sync::atomic::Ordering;

use shmring_chaos::ledger::{Counter, PRODUCERS};

use crate::run::Run;

/// What the final accounting found.
pub struct Report {
    pub published: u64,
    pub delivered: u64,
    pub lost: u64,
    pub in_flight_lost: u64,
    pub in_doubt_undelivered: u64,
    pub drained: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "queue: {} sequence numbers attempted, {} delivered ({} drained at the end), \
             {} lost, {} in-flight lost (consumer killed while taking), \
             {} in doubt and never delivered (producer killed while pushing)",
            self.published,
            self.delivered,
            self.drained,
            self.lost,
            self.in_flight_lost,
            self.in_doubt_undelivered
        )
    }
}

pub fn account(run: &Run, drained: u64) -> Report {
    let l = &run.ledger;
    let mut report = Report {
        published: 0,
        delivered: 0,
        lost: 0,
        in_flight_lost: 0,
        in_doubt_undelivered: 0,
        drained,
    };
    for p in 0..PRODUCERS {
        let (next, pushing) = l.producer(p);
        // ORDERING: Acquire — every producer is gone.
        let (next, pushing) = (
            next.load(Ordering::Acquire),
            pushing.load(Ordering::Acquire),
        );
        // Attempted: everything before `next`, and `next` itself if the last
        // incarnation died (or stopped) inside its push: that one is in doubt.
        let end = if pushing == next + 1 {
            l.set_in_doubt(p, next);
            next + 1
        } else {
            next
        };
        report.published += end;
        for seq in 0..end {
            if l.delivered(p, seq) {
                report.delivered += 1;
            } else if l.in_doubt(p, seq) {
                report.in_doubt_undelivered += 1;
            } else if run.dead_in_flight.contains(&(p as u32, seq as u32)) {
                report.in_flight_lost += 1;
            } else {
                report.lost += 1;
                if report.lost <= 10 {
                    eprintln!("chaos: LOST producer {p} seq {seq}");
                }
            }
        }
        for seq in end..(end + 256).min(shmring_chaos::ledger::MAX_SEQ) {
            if l.delivered(p, seq) {
                eprintln!("chaos: producer {p} seq {seq} delivered but never pushed");
                l.add(Counter::Torn, 1);
            }
        }
    }
    report
}

/// The other scenarios' figures, one line each.
pub fn print_others(run: &Run) {
    let l = &run.ledger;
    let ms = |c| l.get(c) / 1_000_000;
    println!(
        "chaos: lock rounds {}, owner-died takeovers {}, max wait ending in a takeover {} ms \
         (any wait {} ms); dict updates {}, max update_with {} ms",
        l.get(Counter::LockRounds),
        l.get(Counter::OwnerDied),
        ms(Counter::MaxLockWaitNs),
        ms(Counter::MaxLockWaitAnyNs),
        l.get(Counter::DictUpdates),
        ms(Counter::MaxDictWaitNs),
    );
    println!(
        "chaos: pipes: {} episodes, {} messages to readers that outlived a killed writer, \
         max EOF after writer death {} ms",
        run.pipe_episodes,
        l.get(Counter::PipeMessages),
        ms(Counter::MaxEofNs),
    );
    let deaths = |c| run.reader_deaths.get(&c).copied().unwrap_or(0);
    println!(
        "chaos: killed readers: spsc {}, pipe {}; {} messages to their readers, {} lost with a \
         killed reader, {} gap/duplicate/reorder/torn; writer told: `Closed` {} times (max {} ms \
         after the death), `BrokenPipe` {} times (max {} ms), {} spurious",
        deaths(shmring_chaos::ledger::Chan::Spsc),
        deaths(shmring_chaos::ledger::Chan::Pipe),
        l.get(Counter::ReaderMessages),
        l.get(Counter::ReaderLost),
        l.get(Counter::ReaderViolations),
        l.get(Counter::ClosedSeen),
        ms(Counter::MaxClosedNs),
        l.get(Counter::BrokenPipeSeen),
        ms(Counter::MaxBrokenPipeNs),
        l.get(Counter::Spurious),
    );
}
