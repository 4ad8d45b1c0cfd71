//! shmring: shared-memory IPC for processes on one Linux host.
#![warn(missing_docs)]

mod attach;
pub mod error;
pub mod mpmc;
mod object;
pub mod segment;
pub mod spsc;
pub(crate) mod sys;

pub use attach::AttachError;
pub use error::SegmentError;
pub use segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};
pub use shmring_core as core;
pub use sys::FutexWaiter;
