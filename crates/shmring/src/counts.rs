//! Message counts kept in a handle and added to its attachment's peer row
//! in batches: one locked add per [`COUNT_BATCH`] messages (and at the
//! end), not per message.

use std::sync::Arc;

use crate::segment::{PeerCounter, Segment};

/// How many operations a handle counts locally before it adds them to its
/// peer row (and on drop): one locked add per batch, not per message.
pub(crate) const COUNT_BATCH: u64 = 64;

/// Counts kept in the handle and flushed to the attachment's peer row.
#[derive(Debug)]
pub(crate) struct Counts {
    pub(crate) segment: Arc<Segment>,
    messages: (PeerCounter, u64),
    bytes: (PeerCounter, u64),
}

impl Counts {
    pub(crate) fn new(segment: Arc<Segment>, messages: PeerCounter, bytes: PeerCounter) -> Counts {
        Counts {
            segment,
            messages: (messages, 0),
            bytes: (bytes, 0),
        }
    }

    #[inline]
    pub(crate) fn one(&mut self, bytes: usize) {
        self.messages.1 += 1;
        self.bytes.1 += bytes as u64;
        if self.messages.1 >= COUNT_BATCH {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        for (counter, n) in [&mut self.messages, &mut self.bytes] {
            if *n != 0 {
                // A locked add: other handles of this attachment count too.
                self.segment.add_to_counter(*counter, *n);
                *n = 0;
            }
        }
    }
}

impl Drop for Counts {
    fn drop(&mut self) {
        self.flush();
    }
}
