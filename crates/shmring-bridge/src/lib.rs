//! Bridges shmring queues between hosts through NATS JetStream.
//!
//! shmring moves messages between the processes of one host. When producers
//! and consumers live on several hosts, each host keeps its local
//! [`Queue`](shmring::queue::Queue) and runs a bridge:
//!
//! ```text
//!  host A                          NATS JetStream                host B, C, ...
//!  producers -> Queue -> BridgeOut -> stream (work queue) -> BridgeIn -> Queue -> consumers
//! ```
//!
//! * [`BridgeOut`] drains a local queue into a JetStream stream: it copies
//!   messages out **without taking them** (the queue's peek), publishes
//!   each with a stable `Nats-Msg-Id`, and takes it out of the queue only
//!   once JetStream acknowledged it.
//! * [`BridgeIn`] pulls from a durable JetStream consumer (shared by every
//!   host's bridge: each message goes to one of them) into a local queue,
//!   and acknowledges a message only once the local put succeeded; a full
//!   local queue stops the pulling (back-pressure).
//!
//! Producers and consumers keep using the local queue's API unchanged; the
//! message bytes travel unchanged.
//!
//! # Delivery
//!
//! At least once, end to end; nothing acknowledged is lost by a crash of a
//! bridge, and JetStream's own persistence covers its side.
//!
//! * **Outbound.** A message leaves the local queue only after JetStream's
//!   publish acknowledgement. A bridge killed at any instruction leaves
//!   every unacknowledged message in the queue; the next bridge publishes it
//!   again under the same `Nats-Msg-Id`, which the stream drops as a
//!   duplicate within its duplicate window (2 minutes by default). A local
//!   consumer of the same queue that takes a message the bridge was
//!   publishing makes a duplicate (counted as `taken_elsewhere`).
//! * **Inbound.** A message is acknowledged to JetStream only after it was
//!   put in the local queue. A bridge killed between the put and the ack
//!   makes JetStream redeliver it (after the consumer's `ack_wait`): a
//!   duplicate, counted as `redelivered` by whichever bridge gets it.
//! * **Order.** Per producer within one consumer host, while nothing fails:
//!   a producer's messages are published in order on one connection and
//!   stored in order; each inbound bridge puts them in the order it pulls
//!   them, through one producer ring. A publish that fails and is retried,
//!   or a redelivery, can reorder.
//!
//! # Message ids and headers
//!
//! Each published message carries:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | `<queue identity>.<ring>.<head word, hex>`: stable across bridge restarts, unique per message |
//! | `Content-Type` | the codec's content type ([`OutConfig::content_type`]) |
//! | `Shmring-Producer` | `<queue identity>.<ring>`: the local producer ring it came from |
//! | `Shmring-Sequence` | the message's sequence number in that ring (modulo 2^26) |
//! | `Shmring-Queue` | the local queue's name |
//!
//! The queue identity is this boot's `boot_id` and the device and inode of
//! the queue's segment: a queue removed and created again under the same
//! name (whose message positions start again at 0) gets a new identity, so
//! the stream never drops a new message as the duplicate of an old one.
//!
//! # Failures
//!
//! NATS unreachable at the start or later: the bridge logs one line per
//! attempt and retries with exponential backoff (0.1 s to 5 s), losing
//! nothing. A message larger than the server's `max_payload` stops the
//! outbound bridge with [`Error::Oversize`], the message still queued.
//! Credentials the server refuses (token, user and password, nkey, a
//! `.creds` file that cannot be read), and TLS that fails (a certificate
//! not trusted, a CA or client certificate file that cannot be read), stop
//! the bridge with [`Error::Auth`] at the connection: a setting to fix,
//! never retried. So does a permissions violation the server reports on
//! a connection that is up (the user may not publish or subscribe where
//! the bridge must), or credentials refused at a reconnect: the request
//! that failed with it is not retried.
//!
//! # Counters
//!
//! Each bridge publishes its [`Counters`] in a small [`stats`] record in
//! `/dev/shm` (on by default; [`OutConfig::publish_stats`]), which
//! `shmring stat QUEUE` reads from another process: every bridge of the
//! queue, alive or dead, with its counters.
//!
//! # Runtime
//!
//! Each bridge is a future ([`BridgeOut::run`], [`BridgeIn::run`]) for a
//! tokio runtime, or runs on a runtime of its own
//! ([`run_blocking`](BridgeOut::run_blocking)); a [`Shutdown`] handle stops
//! it. The queue's blocking waits run on tokio's blocking threads, never on
//! its workers.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub mod cli;
mod inbound;
mod out;
pub mod stats;

pub use inbound::{BridgeIn, InConfig};
pub use out::{BridgeOut, OutConfig};

/// How to reach and authenticate to NATS: passed through to `async-nats`.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// A `.creds` file (JWT and nkey seed).
    pub credentials_file: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// A user and password.
    pub user_password: Option<(String, String)>,
    /// An nkey seed.
    pub nkey_seed: Option<String>,
    /// Require TLS.
    pub require_tls: bool,
    /// Root certificates (PEM files) to trust for TLS.
    pub root_certificates: Vec<PathBuf>,
    /// A client certificate and its key (PEM files) for TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// The connection's name, shown by the server.
    pub name: Option<String>,
    /// Timeout of a connection attempt, a JetStream request and a publish
    /// acknowledgement (default 5 s when zero).
    pub timeout: Duration,
}

impl NatsOptions {
    /// Options for `url` with no authentication.
    pub fn new(url: impl Into<String>) -> NatsOptions {
        NatsOptions {
            url: url.into(),
            ..NatsOptions::default()
        }
    }

    fn timeout(&self) -> Duration {
        if self.timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            self.timeout
        }
    }
}

/// The stream a bridge creates when it does not exist yet: work-queue
/// retention (each message delivered to one consumer, removed once
/// acknowledged), file storage, and "discard new" at the limits (a full
/// stream refuses publishes, which the outbound bridge retries, instead of
/// dropping stored messages).
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// The stream's name.
    pub name: String,
    /// The subjects it stores.
    pub subjects: Vec<String>,
    /// Most messages stored (-1: no limit).
    pub max_messages: i64,
    /// Most bytes stored (-1: no limit).
    pub max_bytes: i64,
    /// Oldest message kept (zero: no limit). A message older than that is
    /// dropped unconsumed: leave it at zero for no loss.
    pub max_age: Duration,
    /// How long the stream remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// Replicas (clustered servers only).
    pub replicas: usize,
    /// Memory storage instead of files (lost when the server stops).
    pub memory: bool,
}

impl StreamSettings {
    /// A work-queue stream `name` on `subjects`, without limits, with a
    /// 2-minute duplicate window.
    pub fn new(name: impl Into<String>, subjects: Vec<String>) -> StreamSettings {
        StreamSettings {
            name: name.into(),
            subjects,
            max_messages: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            memory: false,
        }
    }

    fn to_config(&self) -> async_nats::jetstream::stream::Config {
        use async_nats::jetstream::stream;
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas.max(1),
            storage: if self.memory {
                stream::StorageType::Memory
            } else {
                stream::StorageType::File
            },
            ..Default::default()
        }
    }
}

/// Why a bridge stopped.
#[derive(Debug)]
pub enum Error {
    /// The local queue could not be opened.
    Open(shmring::OpenError),
    /// No producer ring of the local queue could be claimed.
    Role(shmring::RoleError),
    /// The local queue's shared state is inconsistent.
    Corrupted(shmring::core::Corrupted),
    /// A message is larger than the NATS server accepts: it stays where it
    /// was (the local queue, or unacknowledged in the stream).
    Oversize {
        /// Its payload bytes.
        len: usize,
        /// The limit it exceeds.
        max: usize,
        /// Where it is.
        what: String,
    },
    /// The host's boot id could not be read (the queue identity needs it).
    BootId(std::io::Error),
    /// A setting is invalid.
    Config(String),
    /// NATS refused the credentials (a wrong token, user/password or nkey;
    /// a `.creds` file that cannot be read or parsed) or TLS failed (an
    /// untrusted certificate, a server without TLS), or reported a
    /// permissions violation: a setting to fix, so the bridge stops
    /// instead of retrying.
    Auth(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(e) => write!(f, "cannot open the local queue: {e}"),
            Error::Role(e) => write!(f, "cannot put into the local queue: {e}"),
            Error::Corrupted(c) => write!(f, "the local queue is corrupted: {c}"),
            Error::Oversize { len, max, what } => write!(
                f,
                "a message of {len} bytes exceeds the limit of {max} bytes ({what}); \
                 it was kept, not dropped, and the bridge stopped"
            ),
            Error::BootId(e) => write!(f, "cannot read the boot id: {e}"),
            Error::Config(m) => f.write_str(m),
            Error::Auth(m) => write!(f, "{m} (not retried: fix the credentials or TLS settings)"),
        }
    }
}

impl std::error::Error for Error {}

/// Stops a bridge: [`trigger`](Shutdown::trigger) from anywhere (a signal
/// handler's thread, another task); the bridge finishes what it has in
/// flight (awaits the acknowledgements of what it published, and commits)
/// and its `run` returns `Ok`.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Shutdown {
    /// A handle not triggered yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every bridge holding a clone of this handle to stop.
    pub fn trigger(&self) {
        // ORDERING: Release — pairs with the Acquire in `is_triggered`;
        // nothing else hangs on it.
        self.inner.flag.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`trigger`](Shutdown::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        // ORDERING: Acquire — pairs with the Release in `trigger`.
        self.inner.flag.load(Ordering::Acquire)
    }

    /// Waits until triggered.
    pub async fn triggered(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `d`, or less when triggered meanwhile; whether it was.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.is_triggered(),
            _ = self.triggered() => true,
        }
    }
}

/// How many counters a bridge keeps (the fields of [`CounterSnapshot`]).
pub const COUNTERS: usize = 9;

/// One of a bridge's counters: an index into [`Counters`].
#[derive(Clone, Copy, Debug)]
enum Counter {
    Published = 0,
    Acked,
    Deduplicated,
    TakenElsewhere,
    Received,
    Put,
    Redelivered,
    AckedIn,
    Retries,
}

/// A bridge's counters, readable while it runs (see
/// [`BridgeOut::counters`], [`BridgeIn::counters`]), and by `shmring stat`
/// from another process when the bridge publishes them (the
/// [`stats`] record, on by default): the counters are then the record's
/// words in shared memory.
#[derive(Default)]
pub struct Counters {
    local: [AtomicU64; COUNTERS],
    published: Option<stats::Published>,
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counters")
            .field("snapshot", &self.snapshot())
            .field("record", &self.record_path())
            .finish()
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Outbound: messages published (a message published again after a
    /// failure counts again).
    pub published: u64,
    /// Outbound: publishes JetStream acknowledged, and so taken out of the
    /// local queue (or found taken by a local consumer).
    pub acked: u64,
    /// Outbound: of those, publishes JetStream dropped as duplicates of an
    /// earlier publish of the same message (a re-publish after a failure or
    /// a restart).
    pub deduplicated: u64,
    /// Outbound: acknowledged messages a local consumer had taken first
    /// (delivered twice).
    pub taken_elsewhere: u64,
    /// Inbound: messages pulled from JetStream.
    pub received: u64,
    /// Inbound: messages put in the local queue.
    pub put: u64,
    /// Inbound: pulled messages JetStream had delivered before (after a
    /// bridge died before its ack, or an ack was lost): the duplicates.
    pub redelivered: u64,
    /// Inbound: acknowledgements sent to JetStream.
    pub acked_in: u64,
    /// Either way: attempts that failed and were retried (NATS unreachable,
    /// a publish not acknowledged, a pull that failed).
    pub retries: u64,
}

impl CounterSnapshot {
    /// The counters in [`Counter`] order (the stats record's order).
    fn from_array(v: [u64; COUNTERS]) -> CounterSnapshot {
        CounterSnapshot {
            published: v[Counter::Published as usize],
            acked: v[Counter::Acked as usize],
            deduplicated: v[Counter::Deduplicated as usize],
            taken_elsewhere: v[Counter::TakenElsewhere as usize],
            received: v[Counter::Received as usize],
            put: v[Counter::Put as usize],
            redelivered: v[Counter::Redelivered as usize],
            acked_in: v[Counter::AckedIn as usize],
            retries: v[Counter::Retries as usize],
        }
    }
}

impl Counters {
    /// Counters published in a stats record for the `direction` bridge of
    /// `queue`; kept in this process only (and a line logged) when the
    /// record cannot be created.
    fn publish(queue: &str, direction: stats::Direction, log: &Log) -> Counters {
        match stats::Published::create(queue, direction) {
            Ok(p) => Counters {
                published: Some(p),
                ..Counters::default()
            },
            Err(e) => {
                log(&format!(
                    "cannot publish the counters for `shmring stat` in {}: {e}; \
                     they are kept in this process only",
                    stats::DIR
                ));
                Counters::default()
            }
        }
    }

    /// Where the counters are published, if they are.
    pub fn record_path(&self) -> Option<&std::path::Path> {
        self.published.as_ref().map(stats::Published::path)
    }

    fn cell(&self, c: Counter) -> &AtomicU64 {
        match &self.published {
            Some(p) => p.counter(c as usize),
            None => &self.local[c as usize],
        }
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut v = [0u64; COUNTERS];
        for (i, slot) in v.iter_mut().enumerate() {
            let cell = match &self.published {
                Some(p) => p.counter(i),
                None => &self.local[i],
            };
            // ORDERING: Relaxed — statistics; each counter is exact on its
            // own (partner: the Relaxed adds in `add`).
            *slot = cell.load(Ordering::Relaxed);
        }
        CounterSnapshot::from_array(v)
    }

    fn add(&self, c: Counter, n: u64) {
        // ORDERING: Relaxed — statistics (partner: `snapshot`, and the
        // pread of `shmring stat` in another process).
        self.cell(c).fetch_add(n, Ordering::Relaxed);
    }
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out: published {} acked {} deduplicated {} taken-elsewhere {}; \
             in: received {} put {} acked {} redelivered {}; retries {}",
            self.published,
            self.acked,
            self.deduplicated,
            self.taken_elsewhere,
            self.received,
            self.put,
            self.acked_in,
            self.redelivered,
            self.retries
        )
    }
}

/// Where a bridge's log lines go: one line per call, without a newline.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// The default log: stderr, each line prefixed with `prefix`.
pub fn stderr_log(prefix: &str) -> Log {
    let prefix = prefix.to_owned();
    Arc::new(move |line| eprintln!("{prefix}{line}"))
}

/// Exponential backoff between retries: 100 ms doubling to 5 s.
struct Backoff {
    next: Duration,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);
    /// Failures in a row after which a bridge drops its connection and
    /// makes a fresh one: a client that says it is connected but whose
    /// requests go unanswered after a server restart (seen in the crash
    /// test: every bridge idle, JetStream holding the messages) is not
    /// waited on for ever.
    const RECONNECT_AFTER: u32 = 3;

    fn new() -> Backoff {
        Backoff {
            next: Self::FIRST,
            failures: 0,
        }
    }

    /// The delay to wait now; the next one doubles.
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        d
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
        self.failures = 0;
    }

    /// Whether enough failures came in a row to start over with a fresh
    /// connection.
    fn reconnect(&self) -> bool {
        self.failures >= Self::RECONNECT_AFTER
    }
}

/// Why a connection attempt failed.
enum ConnectFailure {
    /// Maybe passing (the server unreachable, a timeout): retry.
    Retry(String),
    /// A setting to fix (credentials refused, TLS, a bad URL): stop.
    Fatal(Error),
}

/// The first refusal a server reported on a connection that is up: a
/// permissions violation (the user may not publish or subscribe where the
/// bridge must), or an authorization violation at a reconnect (the
/// credentials revoked meanwhile). Either is a setting to fix, as refused
/// credentials at the connection are: the bridge stops instead of
/// retrying what fails with it (a request that times out) for ever.
#[derive(Clone, Default)]
struct Refusal(Arc<std::sync::Mutex<Option<String>>>);

impl Refusal {
    /// Keeps `event` if it is the first refusal.
    fn note(&self, event: &async_nats::Event) {
        use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
        let refused_kinds = [
            ConnectErrorKind::AuthorizationViolation,
            ConnectErrorKind::Authentication,
        ];
        let why = match event {
            Event::ServerError(ServerError::AuthorizationViolation) => {
                "authorization violation".to_owned()
            }
            // A reconnect refused: async-nats reports the kind's text, and
            // keeps reconnecting for ever.
            Event::ClientError(ClientError::Other(m))
                if refused_kinds.iter().any(|k| *m == k.to_string()) =>
            {
                format!("{m} at a reconnect")
            }
            Event::ServerError(ServerError::Other(m))
                if m.to_ascii_lowercase().contains("permissions violation") =>
            {
                m.clone()
            }
            _ => return,
        };
        let mut first = self.0.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }

    /// [`Error::Auth`] once the server refused something: a failure to
    /// retry is then that refusal.
    fn check(&self, url: &str) -> Result<(), Error> {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(Error::Auth(format!("{url} refused: {why}"))),
            None => Ok(()),
        }
    }
}

/// Connects to NATS with `options`, logging connection events; the
/// [`Refusal`] notes what the server refuses on the connection.
async fn connect(
    options: &NatsOptions,
    log: &Log,
) -> Result<(async_nats::Client, Refusal), ConnectFailure> {
    use async_nats::ConnectErrorKind as Kind;
    let mut o = async_nats::ConnectOptions::new();
    if let Some(path) = &options.credentials_file {
        o = o.credentials_file(path).await.map_err(|e| {
            ConnectFailure::Fatal(Error::Auth(format!(
                "cannot use the credentials file {}: {e}",
                path.display()
            )))
        })?;
    }
    if let Some(token) = &options.token {
        o = o.token(token.clone());
    }
    if let Some((user, pass)) = &options.user_password {
        o = o.user_and_password(user.clone(), pass.clone());
    }
    if let Some(seed) = &options.nkey_seed {
        o = o.nkey(seed.clone());
    }
    // async-nats reads these at the handshake and names no file when one
    // is missing: check them here, naming it.
    let tls_files = options.root_certificates.iter().map(|p| ("CA", p)).chain(
        options
            .client_certificate
            .iter()
            .flat_map(|(c, k)| [("client certificate", c), ("client key", k)]),
    );
    for (what, path) in tls_files {
        if let Err(e) = std::fs::File::open(path) {
            return Err(ConnectFailure::Fatal(Error::Auth(format!(
                "cannot read the TLS {what} file {}: {e}",
                path.display()
            ))));
        }
    }
    if options.require_tls {
        o = o.require_tls(true);
    }
    for ca in &options.root_certificates {
        o = o.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &options.client_certificate {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(name) = &options.name {
        o = o.name(name);
    }
    let events = log.clone();
    let refusal = Refusal::default();
    let noted = refusal.clone();
    o = o
        .connection_timeout(options.timeout())
        .request_timeout(Some(options.timeout()))
        .event_callback(move |event| {
            noted.note(&event);
            let events = events.clone();
            async move { events(&format!("nats: {event}")) }
        });
    let client = o.connect(options.url.as_str()).await.map_err(|e| {
        let url = &options.url;
        match e.kind() {
            Kind::AuthorizationViolation | Kind::Authentication => {
                ConnectFailure::Fatal(Error::Auth(format!(
                    "{url} refused the credentials: {}",
                    source_text(&e)
                )))
            }
            Kind::Tls => ConnectFailure::Fatal(Error::Auth(format!(
                "TLS with {url} failed: {}",
                source_text(&e)
            ))),
            Kind::ServerParse => {
                ConnectFailure::Fatal(Error::Config(format!("bad server URL {url:?}: {e}")))
            }
            _ if is_tls_refusal(&e) => ConnectFailure::Fatal(Error::Auth(format!(
                "TLS with {url} failed: {}",
                source_text(&e)
            ))),
            _ => ConnectFailure::Retry(e.to_string()),
        }
    })?;
    Ok((client, refusal))
}

/// Whether a connection failed in a TLS handshake that TLS itself refused
/// (an untrusted or mismatched certificate, an alert): rustls's error
/// inside the I/O error, not a connection cut short.
fn is_tls_refusal(e: &async_nats::ConnectError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
            {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// An error and its sources, `: `-separated.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// The JetStream context of `client`, its requests and publish
/// acknowledgements bounded by the options' timeout.
fn jetstream(client: async_nats::Client, options: &NatsOptions) -> async_nats::jetstream::Context {
    async_nats::jetstream::ContextBuilder::new()
        .timeout(options.timeout())
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Creates the stream `settings` describes unless it exists.
async fn ensure_stream(
    js: &async_nats::jetstream::Context,
    settings: &StreamSettings,
) -> Result<(), String> {
    js.get_or_create_stream(settings.to_config())
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot create or find stream {:?}: {e}", settings.name))
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, dashes removed).
fn boot_id() -> Result<String, Error> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_err(Error::BootId)?;
    let id: String = id.trim().chars().filter(|c| *c != '-').collect();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::BootId(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a boot id",
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let steps: Vec<_> = (0..8).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }

    #[test]
    fn boot_id_is_hex_and_stable() {
        let a = boot_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, boot_id().unwrap());
    }

    #[test]
    fn created_streams_are_work_queues_that_refuse_when_full() {
        use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
        let c = StreamSettings::new("S", vec!["s.>".into()]).to_config();
        assert_eq!(c.retention, RetentionPolicy::WorkQueue);
        assert_eq!(c.discard, DiscardPolicy::New);
        assert_eq!(c.duplicate_window, Duration::from_secs(120));
        assert_eq!(c.max_age, Duration::ZERO);
    }
}
