//! Mechanisms from outside this crate, measured by the same driver as
//! every [`Mechanism`](crate::Mechanism): the same two processes, pinning,
//! warm-up, counts, sequence numbers and checks, clock reads and
//! acknowledgements (see the [crate docs](crate)).
//!
//! A mechanism plugs in with three pieces:
//!
//! 1. a [`Link`]: one process's end of the two-way channel;
//! 2. in the parent, a function that makes the parent's end and adds what
//!    the peer needs to its [`Command`] (inherited segments, environment),
//!    given to [`round_trip`] or [`stream`] with a **name**: one word that
//!    reaches the peer unchanged (options may ride in it, e.g.
//!    `zero-copy:all`);
//! 3. in the peer, [`run_peer_if_child`] called first in `main()` instead
//!    of [`crate::run_peer_if_child`], with a function that opens the
//!    peer's end for that name and hands it to [`Peer::serve`]. It serves
//!    this crate's own mechanisms too.
//!
//! Waits inside a link spin with [`Spin`], whose watchdog ends the
//! measurement with an error when the other process died; [`stamp`] and
//! [`check`] are the protocol's sequence numbers, for links that send
//! messages of their own (a handshake in [`Link::connect`]).
//!
//! ```no_run
//! use std::process::Command;
//!
//! use shmring::core::{wait::Until, RingConfig};
//! use shmring::spsc::{Consumer, Producer, Ring};
//! use shmring::{CreateOptions, OpenOptions};
//! use shmring_measure::custom::{self, Link, LinkSpec, Peer};
//! use shmring_measure::{MeasureError, Params};
//!
//! /// A link of two named SPSC rings, one per direction, standing in for
//! /// a mechanism this crate does not know.
//! struct Rings {
//!     tx: Producer,
//!     rx: Consumer,
//!     _rings: [Ring; 2],
//! }
//!
//! const BASE_VAR: &str = "DOC_LINK_BASE";
//!
//! fn err(e: impl std::fmt::Display) -> MeasureError {
//!     MeasureError::Transport(e.to_string())
//! }
//!
//! impl Rings {
//!     fn parent(_: &LinkSpec, cmd: &mut Command) -> Result<Rings, MeasureError> {
//!         let base = format!("/measure-doc-{}", std::process::id());
//!         let config = RingConfig { capacity: 1 << 20, max_record: 1 << 16 };
//!         let create = |end| Ring::builder().ring_bytes(1 << 20).max_message(1 << 16).create(&format!("{base}-{end}"));
//!         let (out, back) = (create("out").map_err(err)?, create("back").map_err(err)?);
//!         cmd.env(BASE_VAR, &base);
//!         Ok(Rings { tx: out.producer().map_err(err)?, rx: back.consumer().map_err(err)?, _rings: [out, back] })
//!     }
//!
//!     fn child(_: &LinkSpec) -> Result<Rings, MeasureError> {
//!         let base = std::env::var(BASE_VAR).map_err(err)?;
//!         let open = |end| Ring::open(&format!("{base}-{end}"));
//!         let (out, back) = (open("out").map_err(err)?, open("back").map_err(err)?);
//!         Ok(Rings { tx: back.producer().map_err(err)?, rx: out.consumer().map_err(err)?, _rings: [out, back] })
//!     }
//! }
//!
//! impl Link for Rings {
//!     fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
//!         self.tx.push(msg, Until::Never).map_err(err)
//!     }
//!
//!     fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
//!         self.rx.pop(buf, Until::Never).map(drop).map_err(err)
//!     }
//! }
//!
//! fn serve(peer: &Peer<'_>) -> Result<(), MeasureError> {
//!     match peer.spec().name.as_str() {
//!         "rings" => peer.serve(&mut Rings::child(peer.spec())?),
//!         other => Err(MeasureError::InvalidParams(format!("no link {other:?}"))),
//!     }
//! }
//!
//! fn main() -> Result<(), MeasureError> {
//!     custom::run_peer_if_child(serve);
//!     let latency = custom::round_trip("rings", &Params::default(), Rings::parent)?;
//!     println!("p50 {} ns", latency.p50_ns);
//!     Ok(())
//! }
//! ```

use std::process::Command;

use crate::peer::{self, Job, Kind};
use crate::{rate, Latency, MeasureError, Mode, Params, Throughput};

pub use crate::drive::{check, other_gone, stamp, Link, Spin};

/// What both processes know about a custom link's measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkSpec {
    /// The name given to [`round_trip`] or [`stream`]: one word, no
    /// whitespace.
    pub name: String,
    /// Bytes per message ([`Params::payload`]).
    pub payload: usize,
    /// Polling or blocking ([`Params::mode`]): the link decides what each
    /// means for it.
    pub mode: Mode,
}

/// The peer's side of a custom measurement: which link to open
/// ([`spec`](Self::spec)) and the loop to run over it
/// ([`serve`](Self::serve)).
#[derive(Debug)]
pub struct Peer<'a> {
    job: &'a Job,
    spec: LinkSpec,
}

impl<'a> Peer<'a> {
    pub(crate) fn new(job: &'a Job) -> Peer<'a> {
        Peer {
            job,
            spec: job.spec(),
        }
    }

    /// The link the parent asked for.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// Runs the peer's side of the measurement over `link`, after its
    /// [`Link::connect`].
    ///
    /// # Errors
    ///
    /// The link failed, or a message was not the expected one.
    pub fn serve<L: Link>(&self, link: &mut L) -> Result<(), MeasureError> {
        crate::drive::child(self.job, link)
    }
}

/// Round trips over the link that `open` makes, between two processes:
/// as [`crate::round_trip`] (`p.round_trips` recorded after the warm-up;
/// `p.messages` is ignored). `open` runs in the parent before the peer is
/// spawned; the peer opens its end in the function given to
/// [`run_peer_if_child`], which sees `name`.
///
/// # Errors
///
/// A `name` that is empty or holds whitespace, or parameters out of range
/// ([`MeasureError::InvalidParams`]); `open`, the link or the peer failing.
pub fn round_trip<L: Link>(
    name: &str,
    p: &Params,
    open: impl FnOnce(&LinkSpec, &mut Command) -> Result<L, MeasureError>,
) -> Result<Latency, MeasureError> {
    let outcome = peer::run_parent_custom(Job::custom(Kind::RoundTrip, name, p)?, open)?;
    Ok(outcome.latency)
}

/// A one-way stream over the link that `open` makes: as [`crate::stream`]
/// (`p.messages` after the warm-up) and [`round_trip`] here.
///
/// # Errors
///
/// As [`round_trip`].
pub fn stream<L: Link>(
    name: &str,
    p: &Params,
    open: impl FnOnce(&LinkSpec, &mut Command) -> Result<L, MeasureError>,
) -> Result<Throughput, MeasureError> {
    let outcome = peer::run_parent_custom(Job::custom(Kind::Stream, name, p)?, open)?;
    Ok(rate(p.messages, p.payload, outcome.seconds))
}

/// [`crate::run_peer_if_child`] for binaries that also measure custom
/// links: when this process was started as a measurement peer, it does the
/// peer's work and exits (status 0, or 1 with a message on stderr),
/// calling `serve` for a custom link (a [busy loop](crate::Params::busy)
/// spins until killed); otherwise it returns at once. Call it first in
/// `main()`.
///
/// `serve` opens the peer's end of the link that [`Peer::spec`] names and
/// hands it to [`Peer::serve`]; the link is dropped when `serve` returns,
/// before the process exits.
pub fn run_peer_if_child(serve: impl FnOnce(&Peer<'_>) -> Result<(), MeasureError>) {
    peer::run_child_if_peer(serve);
}

/// The `serve` of binaries without custom links.
pub(crate) fn none(peer: &Peer<'_>) -> Result<(), MeasureError> {
    Err(MeasureError::InvalidParams(format!(
        "this binary has no custom link {:?} (call custom::run_peer_if_child)",
        peer.spec().name
    )))
}
