//! iceoryx2 (the crates.io package, [`VERSION`]) between two processes, in
//! the same measurement as every `shmring_measure` mechanism (see
//! [`crate::peer`] for the protocol). Built only with the `iceoryx2`
//! feature of this package:
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
use shmring_measure::{latency_from_samples, Latency, Mode, Throughput};

use crate::peer::{self, check, stamp, Channel, Job, Kind, Spin, Transport};

/// The iceoryx2 version in `benches/Cargo.toml` (pinned with `=`).
pub const VERSION: &str = "0.10.0";

/// The sequence number of the peer's "ready" sample.
const READY: u64 = u64::MAX;

type Svc = ipc::Service;

/// Subscriber buffer, in samples: the 1 MiB budget in payload bytes.
pub fn buffer_samples(payload: usize) -> usize {
    ((1 << 20) / payload.max(1)).max(2)
}

fn err(what: &'static str) -> impl Fn(&dyn std::fmt::Debug) -> String {
    move |e| format!("iceoryx2 {what}: {e:?}")
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
    msg: Vec<u8>,
    buf: Vec<u8>,
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
) -> Result<publish_subscribe::PortFactory<Svc, [u8], ()>, String> {
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
) -> Result<event::PortFactory<Svc>, String> {
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
    /// The parent's side: creates the services (named after `job.name`)
    /// and its ports. The peer finds the services by name.
    ///
    /// # Errors
    ///
    /// iceoryx2 failed to create the node, a service or a port.
    pub fn parent(job: &Job, _cmd: &mut Command) -> Result<Iox, String> {
        Iox::new(job, false)
    }

    /// The peer's side: opens the parent's services and creates its ports.
    ///
    /// # Errors
    ///
    /// As [`parent`](Self::parent).
    pub fn child(job: &Job) -> Result<Iox, String> {
        Iox::new(job, true)
    }

    fn new(job: &Job, is_peer: bool) -> Result<Iox, String> {
        if job.payload < 8 {
            return Err(format!("iceoryx2: payload {} below 8 bytes", job.payload));
        }
        // iceoryx2 warns on stderr that it found no config file and uses
        // its defaults (which is what is measured); errors still show.
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<Svc>()
            .map_err(|e| err("node")(&e))?;
        let create = !is_peer;
        let base = format!("shmring-bench-{}", job.name);
        let to_peer = data_service(&node, &format!("{base}-to-peer"), job.payload, create)?;
        let to_parent = data_service(&node, &format!("{base}-to-parent"), job.payload, create)?;
        let (outgoing, incoming) = if is_peer {
            (&to_parent, &to_peer)
        } else {
            (&to_peer, &to_parent)
        };
        let publisher = outgoing
            .publisher_builder()
            .initial_max_slice_len(job.payload)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| err("publisher")(&e))?;
        let subscriber = incoming
            .subscriber_builder()
            .buffer_size(buffer_samples(job.payload))
            .create()
            .map_err(|e| err("subscriber")(&e))?;
        let (events, event_services) = if job.mode == Mode::Blocking {
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
            msg: (0..job.payload).map(|i| i as u8).collect(),
            buf: Vec::with_capacity(job.payload),
            payload: job.payload,
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
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(|e| err("receive")(&e))? {
                return check(sample.payload(), self.payload, READY);
            }
            if peer::other_gone() {
                return Err("iceoryx2: the peer exited before it was ready".into());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("iceoryx2: the peer was not ready within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Channel for Iox {
    fn connect(&mut self) -> Result<(), String> {
        if self.is_peer {
            self.send(READY)
        } else {
            self.wait_ready()
        }
    }

    #[inline]
    fn send(&mut self, seq: u64) -> Result<(), String> {
        let mut spin = Spin::new();
        let sample = loop {
            match self.publisher.loan_slice_uninit(self.payload) {
                Ok(sample) => break sample,
                Err(LoanError::OutOfMemory | LoanError::ExceedsMaxLoans) => spin.spin()?,
                Err(e) => return Err(err("loan")(&e)),
            }
        };
        stamp(&mut self.msg, seq);
        let delivered = sample
            .write_from_slice(&self.msg)
            .send()
            .map_err(|e| err("send")(&e))?;
        if delivered == 0 {
            return Err(format!("iceoryx2: message {seq} reached no subscriber"));
        }
        if let Some((notifier, _)) = &self.events {
            notifier.notify().map_err(|e| err("notify")(&e))?;
        }
        Ok(())
    }

    #[inline]
    fn recv(&mut self, seq: u64) -> Result<(), String> {
        let mut spin = Spin::new();
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(|e| err("receive")(&e))? {
                self.buf.clear();
                self.buf.extend_from_slice(sample.payload());
                drop(sample);
                return check(&self.buf, self.payload, seq);
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

/// A name no other measurement of this process uses.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness matters, no data is published.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

fn job(kind: Kind, mode: Mode, payload: usize, count: u64, pin: bool) -> Job {
    let mut job = Job::new(kind, Transport::Iceoryx2, mode, payload, count, pin);
    job.name = unique_name();
    job
}

/// Round trips through iceoryx2 between two processes.
///
/// # Errors
///
/// iceoryx2 or the peer failed.
pub fn round_trip(mode: Mode, payload: usize, count: u64, pin: bool) -> Result<Latency, String> {
    let job = job(Kind::RoundTrip, mode, payload, count, pin);
    let outcome = peer::run_parent(job, Iox::parent)?;
    Ok(latency_from_samples(outcome.samples))
}

/// A one-way stream through iceoryx2 between two processes.
///
/// # Errors
///
/// As [`round_trip`].
pub fn stream(mode: Mode, payload: usize, count: u64, pin: bool) -> Result<Throughput, String> {
    let job = job(Kind::Stream, mode, payload, count, pin);
    let seconds = peer::run_parent(job, Iox::parent)?.seconds.max(1e-9);
    Ok(Throughput {
        msgs_per_s: count as f64 / seconds,
        bytes_per_s: count as f64 * payload as f64 / seconds,
        seconds,
    })
}
