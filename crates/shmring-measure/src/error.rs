//! Why a measurement failed.

use std::fmt;
use std::io;

use crate::{Mechanism, Mode};

/// Why a measurement did not produce a figure.
#[derive(Debug)]
#[non_exhaustive]
pub enum MeasureError {
    /// The mechanism does not work in this mode (e.g. a blocking spin ring).
    NotApplicable {
        /// The mechanism asked for.
        mechanism: Mechanism,
        /// The mode asked for.
        mode: Mode,
        /// Which measurement.
        what: &'static str,
    },
    /// Parameters out of range.
    InvalidParams(String),
    /// A system call of the harness itself failed.
    Io {
        /// What the harness was doing.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The mechanism under test reported an error (shmring or the OS).
    Transport(String),
    /// The peer process failed, died, or sent something unexpected.
    Peer(String),
    /// The watchdog fired: the measurement made no progress for too long.
    Timeout,
}

impl MeasureError {
    pub(crate) fn not_applicable(mechanism: Mechanism, mode: Mode, what: &'static str) -> Self {
        MeasureError::NotApplicable {
            mechanism,
            mode,
            what,
        }
    }

    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> MeasureError {
        move |source| MeasureError::Io { what, source }
    }

    pub(crate) fn transport(what: &str, e: impl fmt::Display) -> MeasureError {
        MeasureError::Transport(format!("{what}: {e}"))
    }

    /// Whether this is [`MeasureError::NotApplicable`] (a table cell to
    /// leave empty rather than an error to report).
    pub fn is_not_applicable(&self) -> bool {
        matches!(self, MeasureError::NotApplicable { .. })
    }
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureError::NotApplicable {
                mechanism,
                mode,
                what,
            } => write!(f, "{what} not applicable to {mechanism} in {mode} mode"),
            MeasureError::InvalidParams(s) => write!(f, "invalid parameters: {s}"),
            MeasureError::Io { what, source } => write!(f, "{what}: {source}"),
            MeasureError::Transport(s) => write!(f, "transport error: {s}"),
            MeasureError::Peer(s) => write!(f, "peer: {s}"),
            MeasureError::Timeout => f.write_str("measurement timed out"),
        }
    }
}

impl std::error::Error for MeasureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MeasureError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
