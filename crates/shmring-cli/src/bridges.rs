//! The bridges of a queue, as `stat`, `gc` and `rm` show and clean them:
//! the stats records running `shmring bridge` processes publish in
//! `/dev/shm` (see `shmring_bridge::stats`). Without the `bridge` feature
//! there are none to show.

#[cfg(feature = "bridge")]
pub use with::*;

#[cfg(not(feature = "bridge"))]
pub use without::*;

#[cfg(feature = "bridge")]
mod with {
    use std::fmt::Write;

    use shmring_bridge::stats::{self, Candidate, InvalidRecord, Liveness, Record, Removal};
    use shmring_bridge::CounterSnapshot;

    use crate::escape;
    use crate::json::{self, Object};

    fn path_text(r: &std::path::Path) -> String {
        escape::text(&r.display().to_string())
    }

    fn counters_text(d: stats::Direction, c: &CounterSnapshot) -> String {
        match d {
            stats::Direction::Out => format!(
                "published {} acked {} deduplicated {} taken-elsewhere {} retries {}",
                c.published, c.acked, c.deduplicated, c.taken_elsewhere, c.retries
            ),
            stats::Direction::In => format!(
                "received {} put {} acked {} redelivered {} retries {}",
                c.received, c.put, c.acked_in, c.redelivered, c.retries
            ),
        }
    }

    fn state_text(r: &Record) -> &'static str {
        match r.liveness {
            Liveness::Alive => "alive",
            Liveness::Exited => "exited (removing its record)",
            Liveness::Dead => "DEAD (killed; `shmring gc` removes its record)",
        }
    }

    /// The `bridges` section of the `stat` report for queue `queue`:
    /// empty when it has none and no invalid record.
    pub fn report(queue: &str) -> String {
        let (records, errors) = stats::records_of(queue);
        if records.is_empty() && errors.is_empty() {
            return String::new();
        }
        let alive = records
            .iter()
            .filter(|r| r.liveness == Liveness::Alive)
            .count();
        let mut out = format!("bridges ({} alive, {} not)\n", alive, records.len() - alive);
        for r in &records {
            let _ = writeln!(
                out,
                "  {:<3}  pid {:<8} {}\n       {}",
                r.direction.word(),
                r.pid,
                state_text(r),
                counters_text(r.direction, &r.counters)
            );
        }
        for e in &errors {
            let _ = writeln!(out, "  invalid record: {}", error_text(e));
        }
        out
    }

    fn error_text(e: &InvalidRecord) -> String {
        format!("{}: {}", path_text(&e.path), escape::text(&e.why))
    }

    fn counters_json(c: &CounterSnapshot) -> String {
        Object::new()
            .num("published", c.published)
            .num("acked", c.acked)
            .num("deduplicated", c.deduplicated)
            .num("taken_elsewhere", c.taken_elsewhere)
            .num("received", c.received)
            .num("put", c.put)
            .num("redelivered", c.redelivered)
            .num("acked_in", c.acked_in)
            .num("retries", c.retries)
            .finish()
    }

    fn record_json(r: &Record) -> String {
        Object::new()
            .str("record", &r.path.display().to_string())
            .str("direction", r.direction.word())
            .num("pid", r.pid)
            .str("state", r.liveness.word())
            .bool("alive", r.liveness == Liveness::Alive)
            .num("started_unix_ms", r.started_unix_ms)
            .num("owner_uid", r.owner_uid)
            .raw("counters", counters_json(&r.counters))
            .finish()
    }

    /// The `"bridges"` and `"bridge_errors"` fields of `stat --json`.
    pub fn json_fields(obj: Object, queue: &str) -> Object {
        let (records, errors) = stats::records_of(queue);
        obj.raw("bridges", json::array(records.iter().map(record_json)))
            .raw(
                "bridge_errors",
                json::array(errors.iter().map(|e| json::string(&e.to_string()))),
            )
    }

    /// One dead bridge's record (or leftover) and what became of it.
    pub struct Cleaned {
        candidate: Candidate,
        /// `removed`, `would-remove` or `kept`.
        outcome: &'static str,
        kept: Option<String>,
    }

    /// Removes this user's records of dead bridges (of `queues`, or all;
    /// and, with all, leftovers of records being built by a bridge that
    /// died), or only lists them on a `dry_run`; the invalid records found
    /// are reported on stderr and kept.
    pub fn clean(uid: u32, queues: Option<&[String]>, dry_run: bool) -> Vec<Cleaned> {
        let (candidates, errors) = stats::dead(uid, queues);
        for e in &errors {
            eprintln!(
                "shmring: warning: {}; not removed (not a valid record)",
                error_text(e)
            );
        }
        candidates
            .into_iter()
            .map(|candidate| {
                let (outcome, kept) = if dry_run {
                    ("would-remove", None)
                } else {
                    match stats::remove_if_dead(&candidate) {
                        Ok(Removal::Removed) => ("removed", None),
                        Ok(Removal::Kept(why)) => ("kept", Some(why)),
                        Err(e) => ("kept", Some(e.to_string())),
                    }
                };
                Cleaned {
                    candidate,
                    outcome,
                    kept,
                }
            })
            .collect()
    }

    fn describe(c: &Candidate) -> String {
        match &c.record {
            Some(r) => format!(
                "queue {}, {}, pid {}: the bridge {}",
                escape::name(&r.queue),
                r.direction.word(),
                r.pid,
                match r.liveness {
                    Liveness::Exited => "exited",
                    _ => "died",
                }
            ),
            None => "a record a bridge died building".into(),
        }
    }

    /// One line per cleaned record.
    pub fn text(cleaned: &[Cleaned]) -> String {
        let mut out = String::new();
        for c in cleaned {
            let verb = match c.outcome {
                "would-remove" => "would remove",
                other => other,
            };
            let _ = write!(
                out,
                "{verb} bridge record {} ({})",
                path_text(&c.candidate.path),
                describe(&c.candidate)
            );
            if let Some(k) = &c.kept {
                let _ = write!(out, ": {}", escape::text(k));
            }
            out.push('\n');
        }
        out
    }

    /// The cleaned records as a JSON array.
    pub fn json(cleaned: &[Cleaned]) -> String {
        json::array(cleaned.iter().map(|c| {
            let r = c.candidate.record.as_ref();
            Object::new()
                .str("record", &c.candidate.path.display().to_string())
                .raw("queue", r.map_or("null".into(), |r| json::string(&r.queue)))
                .raw(
                    "direction",
                    r.map_or("null".into(), |r| json::string(r.direction.word())),
                )
                .opt("pid", r.map(|r| u64::from(r.pid)))
                .str("outcome", c.outcome)
                .raw(
                    "kept_because",
                    c.kept.as_deref().map_or("null".into(), json::string),
                )
                .finish()
        }))
    }
}

#[cfg(not(feature = "bridge"))]
mod without {
    use crate::json::Object;

    /// No bridges without the `bridge` feature.
    pub fn report(_queue: &str) -> String {
        String::new()
    }

    /// No bridges without the `bridge` feature.
    pub fn json_fields(obj: Object, _queue: &str) -> Object {
        obj
    }

    /// Nothing to clean without the `bridge` feature.
    pub struct Cleaned;

    /// Nothing to clean without the `bridge` feature.
    pub fn clean(_uid: u32, _queues: Option<&[String]>, _dry_run: bool) -> Vec<Cleaned> {
        Vec::new()
    }

    /// Nothing.
    pub fn text(_cleaned: &[Cleaned]) -> String {
        String::new()
    }

    /// An empty array.
    pub fn json(_cleaned: &[Cleaned]) -> String {
        "[]".into()
    }
}
