//! iceoryx2 (the crates.io package, [`VERSION`]) between two processes, in
//! the same measurement as every `shmring_measure` mechanism: its driver
//! runs this [custom link](shmring_measure::custom) (named
//! `iceoryx2:<unique>`; see [`crate::peer`]). Built only with the
//! `iceoryx2` feature of this package:
//!
//! ```text
//! cargo run --release -p shmring-benches --features iceoryx2 --bin xbench -- --json benches/results/results.json
//! ```
//!
//! (iceoryx2 builds with bindgen: Debian's `clang` and `libclang-dev`.)
//!
//! # Set-up
//!
//! * Two publish-subscribe services of `[u8]` slices, one per direction
//!   (`ipc::Service`), one publisher and one subscriber each; each process
//!   runs its own node, with signal handling disabled.
//! * The same buffer budget as the others, counted in payload bytes: the
//!   subscriber buffer holds `max(2, 1 MiB / payload)` samples (131,072 at
//!   8 B, 16 at 64 KiB); no history.
//! * No message is ever lost: safe overflow off, the publisher's
//!   backpressure strategy `RetryUntilDelivered` (iceoryx2 retries inside
//!   `send` while the subscriber's buffer is full: it yields, then sleeps).
//! * The same copies as the others: the sender loans a sample and copies
//!   its message in (`write_from_slice`), the receiver copies the payload
//!   out of the received sample into its buffer, then releases the sample.
//! * **Polling**: the receiver calls `receive` in a spin loop.
//! * **Blocking**: two event services beside the data services; the sender
//!   calls `notify` after every `send`, the receiver tries `receive` and,
//!   when nothing is there, waits on its listener (`timed_wait`, 100 ms, so
//!   that a dead peer is noticed; iceoryx2's `blocking_wait` makes the same
//!   system calls) and tries again.
//! * Before measuring, the peer publishes one "ready" sample, so that both
//!   publishers know their subscriber (outside the timed part).

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::LoanError;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::{event, publish_subscribe};
use shmring_measure::custom::{self, check, other_gone, stamp, Link, LinkSpec, Spin};
use shmring_measure::{Latency, MeasureError, Mode, Params, Throughput};

/// The iceoryx2 version in `benches/Cargo.toml` (pinned with `=`).
pub const VERSION: &str = "0.10.0";

/// The sequence number of the peer's "ready" sample.
const READY: u64 = u64::MAX;

/// What the names of this module's custom links start with.
pub const LINK_PREFIX: &str = "iceoryx2:";

type Svc = ipc::Service;

/// Subscriber buffer, in samples: the 1 MiB budget in payload bytes.
pub fn buffer_samples(payload: usize) -> usize {
    ((1 << 20) / payload.max(1)).max(2)
}

fn err(what: &'static str) -> impl Fn(&dyn std::fmt::Debug) -> MeasureError {
    move |e| MeasureError::Transport(format!("iceoryx2 {what}: {e:?}"))
}

/// Both directions' services, kept alive beside the ports.
struct Services {
    _data: [publish_subscribe::PortFactory<Svc, [u8], ()>; 2],
    _events: Option<[event::PortFactory<Svc>; 2]>,
}

/// One process's ports: a publisher and a subscriber, and in blocking
/// mode a notifier and a listener.
pub struct Iox {
    publisher: Publisher<Svc, [u8], ()>,
    subscriber: Subscriber<Svc, [u8], ()>,
    events: Option<(Notifier<Svc>, Listener<Svc>)>,
    payload: usize,
    is_peer: bool,
    // Dropped after the ports (fields drop in order).
    _services: Services,
    _node: Node<Svc>,
}

fn data_service(
    node: &Node<Svc>,
    name: &str,
    payload: usize,
    create: bool,
) -> Result<publish_subscribe::PortFactory<Svc, [u8], ()>, MeasureError> {
    let name = ServiceName::new(name).map_err(|e| err("service name")(&e))?;
    let builder = node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(buffer_samples(payload))
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1);
    if create {
        builder.create().map_err(|e| err("create service")(&e))
    } else {
        builder.open().map_err(|e| err("open service")(&e))
    }
}

fn event_service(
    node: &Node<Svc>,
    name: &str,
    create: bool,
) -> Result<event::PortFactory<Svc>, MeasureError> {
    let name = ServiceName::new(name).map_err(|e| err("service name")(&e))?;
    let builder = node.service_builder(&name).event();
    if create {
        builder
            .create()
            .map_err(|e| err("create event service")(&e))
    } else {
        builder.open().map_err(|e| err("open event service")(&e))
    }
}

impl Iox {
    /// The parent's side: creates the services (named after the link's
    /// name) and its ports. The peer finds the services by name.
    ///
    /// # Errors
    ///
    /// Not this module's link, or iceoryx2 failed to create the node, a
    /// service or a port.
    pub fn parent(spec: &LinkSpec, _cmd: &mut Command) -> Result<Iox, MeasureError> {
        Iox::new(spec, false)
    }

    /// The peer's side: opens the parent's services and creates its ports.
    ///
    /// # Errors
    ///
    /// As [`parent`](Self::parent).
    pub fn child(spec: &LinkSpec) -> Result<Iox, MeasureError> {
        Iox::new(spec, true)
    }

    fn new(spec: &LinkSpec, is_peer: bool) -> Result<Iox, MeasureError> {
        let bad = |why: String| MeasureError::InvalidParams(format!("iceoryx2: {why}"));
        let unique = spec
            .name
            .strip_prefix(LINK_PREFIX)
            .ok_or_else(|| bad(format!("not its link: {:?}", spec.name)))?;
        if spec.payload < 8 {
            return Err(bad(format!("payload {} below 8 bytes", spec.payload)));
        }
        // iceoryx2 warns on stderr that it found no config file and uses
        // its defaults (which is what is measured); errors still show.
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<Svc>()
            .map_err(|e| err("node")(&e))?;
        let create = !is_peer;
        let base = format!("shmring-bench-{unique}");
        let to_peer = data_service(&node, &format!("{base}-to-peer"), spec.payload, create)?;
        let to_parent = data_service(&node, &format!("{base}-to-parent"), spec.payload, create)?;
        let (outgoing, incoming) = if is_peer {
            (&to_parent, &to_peer)
        } else {
            (&to_peer, &to_parent)
        };
        let publisher = outgoing
            .publisher_builder()
            .initial_max_slice_len(spec.payload)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| err("publisher")(&e))?;
        let subscriber = incoming
            .subscriber_builder()
            .buffer_size(buffer_samples(spec.payload))
            .create()
            .map_err(|e| err("subscriber")(&e))?;
        let (events, event_services) = if spec.mode == Mode::Blocking {
            let to_peer = event_service(&node, &format!("{base}-wake-peer"), create)?;
            let to_parent = event_service(&node, &format!("{base}-wake-parent"), create)?;
            let (outgoing, incoming) = if is_peer {
                (&to_parent, &to_peer)
            } else {
                (&to_peer, &to_parent)
            };
            let notifier = outgoing
                .notifier_builder()
                .create()
                .map_err(|e| err("notifier")(&e))?;
            let listener = incoming
                .listener_builder()
                .create()
                .map_err(|e| err("listener")(&e))?;
            (Some((notifier, listener)), Some([to_peer, to_parent]))
        } else {
            (None, None)
        };
        Ok(Iox {
            publisher,
            subscriber,
            events,
            payload: spec.payload,
            is_peer,
            _services: Services {
                _data: [to_peer, to_parent],
                _events: event_services,
            },
            _node: node,
        })
    }

    /// Waits (sleeping 1 ms at a time, 30 s at most) for the peer's ready
    /// sample.
    fn wait_ready(&mut self) -> Result<(), MeasureError> {
        let started = Instant::now();
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(|e| err("receive")(&e))? {
                return check(sample.payload(), self.payload, READY);
            }
            if other_gone() {
                return Err(MeasureError::Peer(
                    "iceoryx2: the peer exited before it was ready".into(),
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(MeasureError::Peer(
                    "iceoryx2: the peer was not ready within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Link for Iox {
    /// The peer publishes a "ready" sample; the parent waits for it.
    fn connect(&mut self) -> Result<(), MeasureError> {
        if self.is_peer {
            let mut ready: Vec<u8> = (0..self.payload).map(|i| i as u8).collect();
            stamp(&mut ready, READY);
            self.send(&ready)
        } else {
            self.wait_ready()
        }
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let mut spin = Spin::new();
        let sample = loop {
            match self.publisher.loan_slice_uninit(self.payload) {
                Ok(sample) => break sample,
                Err(LoanError::OutOfMemory | LoanError::ExceedsMaxLoans) => spin.spin()?,
                Err(e) => return Err(err("loan")(&e)),
            }
        };
        let delivered = sample
            .write_from_slice(msg)
            .send()
            .map_err(|e| err("send")(&e))?;
        if delivered == 0 {
            return Err(MeasureError::Peer(
                "iceoryx2: a message reached no subscriber".into(),
            ));
        }
        if let Some((notifier, _)) = &self.events {
            notifier.notify().map_err(|e| err("notify")(&e))?;
        }
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        let mut spin = Spin::new();
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(|e| err("receive")(&e))? {
                buf.clear();
                buf.extend_from_slice(sample.payload());
                return Ok(());
            }
            match &self.events {
                None => spin.spin()?,
                Some((_, listener)) => {
                    let woken = listener
                        .timed_wait(|_| {}, Duration::from_millis(100))
                        .map_err(|e| err("wait")(&e))?;
                    if woken == 0 {
                        spin.slow()?;
                    }
                }
            }
        }
    }
}

/// A link name no other measurement of this process uses.
fn link_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness matters, no data is published.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{LINK_PREFIX}{}-{n}", std::process::id())
}

fn params(mode: Mode, payload: usize, count: u64, pin: bool) -> Params {
    Params {
        payload,
        messages: count,
        round_trips: count,
        mode,
        pin,
        busy: 0,
    }
}

/// Round trips through iceoryx2 between two processes.
///
/// # Errors
///
/// iceoryx2 or the peer failed.
pub fn round_trip(mode: Mode, payload: usize, count: u64, pin: bool) -> Result<Latency, String> {
    let p = params(mode, payload, count, pin);
    custom::round_trip(&link_name(), &p, Iox::parent).map_err(|e| e.to_string())
}

/// A one-way stream through iceoryx2 between two processes.
///
/// # Errors
///
/// As [`round_trip`].
pub fn stream(mode: Mode, payload: usize, count: u64, pin: bool) -> Result<Throughput, String> {
    let p = params(mode, payload, count, pin);
    custom::stream(&link_name(), &p, Iox::parent).map_err(|e| e.to_string())
}
