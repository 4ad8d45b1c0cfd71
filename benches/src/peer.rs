//! The bench binaries' second process. Every cross-process figure comes
//! from `shmring_measure`'s driver (its protocol: see its crate docs); the
//! mechanisms it cannot host, iceoryx2 (feature `iceoryx2`, see the `iox`
//! module) and shmring's zero-copy reserve/commit path
//! ([`crate::zero_copy`]), plug into it as
//! [custom links](shmring_measure::custom), and this is where the peer
//! opens them.
//!
//! Every binary that measures calls [`run_peer_if_child`] first in
//! `main()` (it also serves `shmring_measure`'s own mechanisms).

use shmring_measure::custom::{self, Peer};
use shmring_measure::MeasureError;

use crate::zero_copy::{Touch, ZeroCopy};

/// Runs the peer's side and exits when this process was started as a
/// measurement peer, of `shmring_measure`'s mechanisms or of this
/// package's links; returns at once otherwise. Call it first in `main()`.
///
/// Exit status 0 after the job, 1 with a message on stderr when it failed.
pub fn run_peer_if_child() {
    custom::run_peer_if_child(serve);
}

/// Opens the peer's end of the link the parent named and serves it (the
/// link is dropped before the process exits: iceoryx2 removes its
/// resources on drop).
fn serve(peer: &Peer<'_>) -> Result<(), MeasureError> {
    let name = peer.spec().name.as_str();
    if Touch::from_link_name(name).is_some() {
        return peer.serve(&mut ZeroCopy::child(peer.spec())?);
    }
    #[cfg(feature = "iceoryx2")]
    if name.starts_with(crate::iox::LINK_PREFIX) {
        return peer.serve(&mut crate::iox::Iox::child(peer.spec())?);
    }
    Err(MeasureError::InvalidParams(format!(
        "no link {name:?} in this build of shmring-benches"
    )))
}
