//! The crate's error types, gathered: [`SegmentError`] (creating, opening
//! and attaching to segments) lives with the segments it describes, in
//! [`crate::segment`]; this module only re-exports it, so that `segment`
//! depends on nothing here.

pub use crate::segment::SegmentError;
