//! The errors of the join family (`join`, `try_join`, `join_timeout`,
//! `join_deadline`) of [`Process`](super::Process) and [`Pool`](super::Pool).

use std::error::Error;
use std::fmt;
use std::io;

/// Waiting for a child failed (`waitpid`: it was reaped by someone else).
#[derive(Debug)]
pub struct JoinError(pub(crate) io::Error);

impl JoinError {
    /// The operating system's error.
    pub fn into_inner(self) -> io::Error {
        self.0
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot wait for the child process: {}", self.0)
    }
}

impl Error for JoinError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

/// Why `try_join` has no status.
#[derive(Debug)]
pub enum TryJoinError {
    /// The child (a worker, for a pool) is still running.
    Running,
    /// Waiting failed.
    Join(JoinError),
}

impl TryJoinError {
    /// Whether the child is still running.
    pub fn is_running(&self) -> bool {
        matches!(self, TryJoinError::Running)
    }
}

impl From<JoinError> for TryJoinError {
    fn from(e: JoinError) -> Self {
        TryJoinError::Join(e)
    }
}

impl fmt::Display for TryJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryJoinError::Running => f.write_str("the child process is still running"),
            TryJoinError::Join(e) => e.fmt(f),
        }
    }
}

impl Error for TryJoinError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TryJoinError::Running => None,
            TryJoinError::Join(e) => Some(e),
        }
    }
}

/// Why `join_timeout` or `join_deadline` has no status.
#[derive(Debug)]
pub enum JoinTimeoutError {
    /// The child (a worker, for a pool) still ran when the time was up.
    Timeout,
    /// Waiting failed.
    Join(JoinError),
}

impl JoinTimeoutError {
    /// Whether the time ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, JoinTimeoutError::Timeout)
    }
}

impl From<JoinError> for JoinTimeoutError {
    fn from(e: JoinError) -> Self {
        JoinTimeoutError::Join(e)
    }
}

impl From<TryJoinError> for JoinTimeoutError {
    fn from(e: TryJoinError) -> Self {
        match e {
            TryJoinError::Running => JoinTimeoutError::Timeout,
            TryJoinError::Join(e) => JoinTimeoutError::Join(e),
        }
    }
}

impl fmt::Display for JoinTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinTimeoutError::Timeout => f.write_str("timed out waiting for the child process"),
            JoinTimeoutError::Join(e) => e.fmt(f),
        }
    }
}

impl Error for JoinTimeoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JoinTimeoutError::Timeout => None,
            JoinTimeoutError::Join(e) => Some(e),
        }
    }
}
