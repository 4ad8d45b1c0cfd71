//! The knobs of a run and the figures it reports.

use crate::fleet::Fleet;

/// What the environment asked for.
pub struct Knobs {
    /// Liveness slice plus slack, in ms: the longest a survivor may take to
    /// notice a death.
    pub bound_ms: u64,
    /// How long a producer may be refused while the queue is empty.
    pub wedge_ms: u64,
    /// Sequence numbers per producer per queue round.
    pub quota: u64,
}

impl Knobs {
    pub fn bound_ns(&self) -> u64 {
        self.bound_ms * 1_000_000
    }
}

/// Figures of the whole run. The must-be-zero ones are checked at the end.
#[derive(Default)]
pub struct Tally {
    pub false_deaths: u64,
    pub unseen_deaths: u64,
    pub wedges: u64,
    pub lost: u64,
    pub names_lost: u64,
    pub lockouts: u64,
    pub half_made: u64,
    /// Longest time from a death to a survivor's noticing it (ns).
    pub max_notice_ns: u64,
    pub messages: u64,
    pub in_doubt: u64,
    pub in_flight_lost: u64,
    pub joins: u64,
    pub peer_died: u64,
    pub spare_claims: u64,
    pub successor_claims: u64,
    pub death_reports: u64,
    /// Details of the wedges and other findings.
    pub notes: Vec<String>,
    pub lines: Vec<String>,
}

/// Counters at the start of a phase, to print what the phase added.
pub struct Snapshot {
    kills: u64,
    stops: u64,
    false_deaths: u64,
    unseen: u64,
    wedges: u64,
}

impl Tally {
    pub fn notice(&mut self, ns: u64) {
        self.max_notice_ns = self.max_notice_ns.max(ns);
    }

    pub fn snapshot(&self, fleet: &Fleet) -> Snapshot {
        Snapshot {
            kills: fleet.total_kills(),
            stops: fleet.total_stops(),
            false_deaths: self.false_deaths,
            unseen: self.unseen_deaths,
            wedges: self.wedges,
        }
    }

    /// Prints one phase's summary line (and keeps it for the end).
    pub fn phase_line(&mut self, fleet: &Fleet, phase: &str, before: &Snapshot, extra: String) {
        let line = format!(
            "faults: {phase}: {extra}; {} kills, {} stops; {} false deaths, {} unseen deaths, \
             {} wedges",
            fleet.total_kills() - before.kills,
            fleet.total_stops() - before.stops,
            self.false_deaths - before.false_deaths,
            self.unseen_deaths - before.unseen,
            self.wedges - before.wedges,
        );
        println!("{line}");
        self.lines.push(line);
    }
}
