//! `Dict::update_with` on one key from two processes (issue 4, target 6).

use std::process::Command;
use std::time::Instant;

use shmring::dict::{Dict, DictError};

use crate::drive::Spin;
use crate::peer::{Job, Outcome};
use crate::MeasureError;

const DICT_VAR: &str = "SHMRING_MEASURE_DICT";
/// The key both processes increment.
const COUNTER: u64 = 1;
/// Set by the peer when it starts incrementing.
const READY: u64 = 2;
/// Set by the peer when it has finished.
const DONE: u64 = 3;

fn err(what: &'static str) -> impl Fn(DictError) -> MeasureError {
    move |e| MeasureError::transport(what, e)
}

fn increment(dict: &Dict<u64, u64>, count: u64) -> Result<(), MeasureError> {
    for _ in 0..count {
        dict.update_with(&COUNTER, |v| Some(v.unwrap_or(0) + 1))
            .map_err(err("update_with"))?;
    }
    Ok(())
}

fn wait_for(dict: &Dict<u64, u64>, key: u64) -> Result<(), MeasureError> {
    let mut spin = Spin::new();
    while !dict.contains_key(&key).map_err(err("contains_key"))? {
        spin.spin()?;
    }
    Ok(())
}

/// The parent's side: owns the dict.
pub(crate) struct Bench {
    dict: Dict<u64, u64>,
}

impl Bench {
    pub(crate) fn parent(cmd: &mut Command) -> Result<Bench, MeasureError> {
        let dict = Dict::new().map_err(|e| MeasureError::transport("create dict", e))?;
        dict.insert(&COUNTER, &0).map_err(err("insert"))?;
        dict.share_with_child(cmd, DICT_VAR)
            .map_err(|e| MeasureError::transport("share dict", e))?;
        Ok(Bench { dict })
    }

    /// Increments `job.count` times while the peer does the same; the time
    /// runs from the peer's start signal to its end signal or ours,
    /// whichever is later.
    pub(crate) fn run(&self, job: &Job) -> Result<Outcome, MeasureError> {
        wait_for(&self.dict, READY)?;
        let t0 = Instant::now();
        increment(&self.dict, job.count)?;
        wait_for(&self.dict, DONE)?;
        let seconds = t0.elapsed().as_secs_f64();
        let total = self.dict.get(&COUNTER).map_err(err("get"))?;
        if total != Some(2 * job.count) {
            return Err(MeasureError::Peer(format!(
                "counter is {total:?}, expected {}",
                2 * job.count
            )));
        }
        Ok(Outcome {
            latency: crate::Latency::default(),
            seconds,
        })
    }

    pub(crate) fn child(job: &Job) -> Result<(), MeasureError> {
        let dict: Dict<u64, u64> = Dict::builder()
            .open_inherited(DICT_VAR)
            .map_err(|e| MeasureError::transport("open dict", e))?;
        dict.insert(&READY, &1).map_err(err("insert"))?;
        increment(&dict, job.count)?;
        dict.insert(&DONE, &1).map_err(err("insert"))?;
        Ok(())
    }
}
