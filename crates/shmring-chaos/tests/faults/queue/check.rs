//! The checks at the end of a queue round: `join` answers, every sequence
//! number, ring claims.

use std::sync::atomic::Ordering;

use shmring::queue::{JoinError, JoinTimeoutError};
use shmring_chaos::faults::board::{IncWord, Report};
use shmring_chaos::ledger::{Counter, MAX_SEQ, PRODUCERS};

use super::{Held, Round};
use crate::joinable::JoinRun;

impl Round<'_> {
    /// Each `join` answer against the deaths of the round: `PeerDied` only
    /// with a death that could have taken a task before it returned (never
    /// in a round without kills), and no more tasks lost than such deaths;
    /// `Ok` never while a consumer killed holding a task (before the join
    /// began) is unaccounted for; never a timeout.
    pub(super) fn judge_joins(&mut self, joins: &[JoinRun], wedged: &mut Vec<String>) {
        let mut used = vec![false; self.deaths.len()];
        let mut forgiven = vec![false; self.deaths.len()];
        for run in joins {
            self.tally.joins += 1;
            match run.result {
                Ok(()) => {
                    let unaccounted = self
                        .deaths
                        .iter()
                        .zip(&forgiven)
                        .filter(|(d, f)| d.held == Held::Surely && d.at < run.start && !**f)
                        .count();
                    if unaccounted != 0 {
                        eprintln!(
                            "faults: UNSEEN DEATH: join returned Ok although {unaccounted} \
                             consumer(s) had died holding a task before it began"
                        );
                        self.tally.unseen_deaths += 1;
                    }
                }
                Err(JoinTimeoutError::Join(JoinError::PeerDied { lost })) => {
                    self.tally.peer_died += 1;
                    let mut candidates = 0u64;
                    for (i, d) in self.deaths.iter().enumerate() {
                        if d.at < run.end {
                            if d.held == Held::Surely {
                                forgiven[i] = true;
                            }
                            if d.held != Held::Nothing && !used[i] && candidates < lost.max(1) {
                                used[i] = true;
                                candidates += 1;
                            }
                        }
                    }
                    if candidates == 0 || candidates < lost {
                        eprintln!(
                            "faults: FALSE DEATH: join returned PeerDied {{ lost: {lost} }} with \
                             {candidates} death(s) that could have taken a task (a round \
                             without kills: {}; kills in the round: {})",
                            self.stop_only,
                            self.deaths.len()
                        );
                        self.tally.false_deaths += 1;
                    }
                }
                Err(e) => wedged.push(format!("join: {e}")),
            }
        }
    }

    /// Every sequence number of this round: delivered once, or in doubt
    /// (its producer was killed putting it), or in flight with a killed
    /// consumer; nothing delivered that was never put.
    pub(super) fn account(&mut self) {
        let l = &self.ledger;
        for p in 0..PRODUCERS {
            let (next, pushing) = l.producer(p);
            // ORDERING: Acquire — every producer is gone.
            let (mut next_v, pushing_v) = (
                next.load(Ordering::Acquire),
                pushing.load(Ordering::Acquire),
            );
            let end = if pushing_v == next_v + 1 {
                l.set_in_doubt(p, next_v);
                next_v += 1;
                // ORDERING: Release — the next round starts past it.
                next.store(next_v, Ordering::Release);
                next_v
            } else {
                next_v
            };
            for seq in self.start[p]..end {
                self.tally.messages += 1;
                if l.delivered(p, seq) {
                    continue;
                }
                if l.in_doubt(p, seq) {
                    self.tally.in_doubt += 1;
                } else if self.dead_in_flight.contains(&(p as u32, seq as u32)) {
                    self.tally.in_flight_lost += 1;
                } else {
                    if self.tally.lost < 10 {
                        eprintln!("faults: LOST producer {p} seq {seq} ({})", self.name);
                    }
                    self.tally.lost += 1;
                }
            }
            for seq in end..(end + 64).min(MAX_SEQ) {
                if l.delivered(p, seq) {
                    eprintln!("faults: producer {p} seq {seq} delivered but never put");
                    l.add(Counter::Torn, 1);
                }
            }
        }
    }

    /// The spare may hold a ring only when fewer than all rings were held
    /// by producers alive at that moment; a successor's claim must come
    /// within the liveness bound of its predecessor's death.
    pub(super) fn judge_claims(&mut self) {
        let (reports, _) = self.fleet.board.reports(self.first_report);
        let board = &self.fleet.board;
        let value = |inc: u64, w: IncWord| board.inc_value(inc, w).unwrap_or(0);
        for r in reports {
            match r.kind {
                Report::SpareClaim => {
                    self.tally.spare_claims += 1;
                    let holders = self
                        .producer_incs
                        .iter()
                        .filter(|&&inc| {
                            let claimed = value(inc, IncWord::ClaimedAt);
                            let died = value(inc, IncWord::DiedAt);
                            let releasing = value(inc, IncWord::ReleasingAt);
                            claimed != 0
                                && claimed < r.at
                                && (died == 0 || died > r.at)
                                && (releasing == 0 || releasing > r.at)
                        })
                        .count();
                    if holders >= PRODUCERS {
                        let stopped: Vec<u64> = self
                            .producer_incs
                            .iter()
                            .copied()
                            .filter(|&inc| {
                                self.fleet
                                    .stops_of(inc)
                                    .iter()
                                    .any(|&(a, b)| a <= r.at && r.at <= b)
                            })
                            .collect();
                        eprintln!(
                            "faults: FALSE DEATH: the spare got a producer ring at {} while all \
                             {holders} holders lived (stopped then: {stopped:?})",
                            r.at
                        );
                        self.tally.false_deaths += 1;
                    }
                }
                Report::SuccessorClaim => {
                    self.tally.successor_claims += 1;
                    let Some(died) = self.fleet.died_at(r.blamed) else {
                        eprintln!(
                            "faults: FALSE DEATH: producer {} took over the ring of {}, which \
                             was never killed",
                            r.reporter, r.blamed
                        );
                        self.tally.false_deaths += 1;
                        continue;
                    };
                    let from = died.max(r.since);
                    let waited =
                        r.at.saturating_sub(from)
                            .saturating_sub(self.fleet.stopped_during(r.reporter, from, r.at));
                    self.tally.notice(waited);
                    if waited > self.knobs.bound_ns() {
                        eprintln!(
                            "faults: UNSEEN DEATH: producer {}'s ring was claimed {} ms after \
                             its death (bound {} ms)",
                            r.blamed,
                            waited / 1_000_000,
                            self.knobs.bound_ns() / 1_000_000
                        );
                        self.tally.unseen_deaths += 1;
                    }
                }
                _ => {}
            }
        }
    }
}
