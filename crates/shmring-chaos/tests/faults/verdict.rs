//! Judging a survivor's report of a death against the deaths the parent
//! caused.

use shmring_chaos::faults::board::Entry;

use crate::fleet::Fleet;
use crate::tally::{Knobs, Tally};

/// Checks one death report that blames incarnation `blamed` (`None`: the
/// report named nobody the parent knows). A report is explained by a death
/// stamped before it came; it must have come within the liveness bound of
/// that death (or of the start of the reporter's wait, if later), not
/// counting the time the reporter was stopped itself.
pub fn judge(
    fleet: &Fleet,
    tally: &mut Tally,
    knobs: &Knobs,
    what: &str,
    blamed: Option<u64>,
    r: &Entry,
) {
    tally.death_reports += 1;
    let died = blamed.and_then(|inc| fleet.died_at(inc));
    match (blamed, died) {
        (Some(_), Some(died)) if died < r.at => {
            // Less the time the reporter itself spent stopped.
            let from = died.max(r.since);
            let waited =
                r.at.saturating_sub(from)
                    .saturating_sub(fleet.stopped_during(r.reporter, from, r.at));
            tally.notice(waited);
            if waited > knobs.bound_ns() {
                eprintln!(
                    "faults: UNSEEN DEATH: {what} by {} came {} ms after the death of {} \
                     (bound {} ms)",
                    r.reporter,
                    waited / 1_000_000,
                    blamed.unwrap_or(0),
                    knobs.bound_ms
                );
                tally.unseen_deaths += 1;
            }
        }
        _ => {
            let stops = blamed.map(|inc| fleet.stops_of(inc)).unwrap_or_default();
            let during: Vec<_> = stops
                .iter()
                .filter(|(from, to)| *from <= r.at && r.at <= *to)
                .collect();
            eprintln!(
                "faults: FALSE DEATH: {what} by incarnation {} at {} blames {blamed:?}, which \
                 {}; it was stopped {} time(s){}",
                r.reporter,
                r.at,
                match died {
                    Some(d) => format!("was killed only later, at {d}"),
                    None => "was never killed".to_string(),
                },
                stops.len(),
                if during.is_empty() {
                    String::new()
                } else {
                    format!(", and stopped at that moment ({during:?})")
                }
            );
            tally.false_deaths += 1;
        }
    }
}
