//! The inbound bridge: a durable JetStream consumer pulled into a local
//! queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use shmring::core::wait::Until;
use shmring::core::PushError;
use shmring::mpmc::{ByteQueue, Producer};
use shmring::segment::PeerCounter;

use crate::{
    connect, ensure_stream, jetstream, stderr_log, Backoff, ConnectFailure, Counter, Counters,
    Error, Log, NatsOptions, Shutdown, StreamSettings,
};

/// Empty pulls in a row (each waits about a second) after which a bridge
/// asks whether its consumer has stopped (see `BridgeIn::stalled`).
const STALL_PULLS: u32 = 5;

/// What an inbound bridge does.
#[derive(Clone)]
pub struct InConfig {
    /// The NATS server and authentication.
    pub nats: NatsOptions,
    /// The stream to pull from.
    pub stream: String,
    /// The durable pull consumer's name, shared by every host's inbound
    /// bridge (each message goes to one of them); created when missing.
    pub consumer: String,
    /// The local queue's segment name.
    pub queue: String,
    /// Creates this stream when it does not exist (its name must be
    /// [`stream`](Self::stream)).
    pub create_stream: Option<StreamSettings>,
    /// Only this subject of the stream (for a consumer created here).
    pub filter_subject: Option<String>,
    /// Most messages pulled at once and not yet put (default 256): the
    /// bridge's only buffer.
    pub batch: usize,
    /// How long JetStream waits for an acknowledgement before it
    /// redelivers (for a consumer created here; default 30 s). While the
    /// local queue is full the bridge tells JetStream it is still working
    /// on what it pulled, so a slow local consumer does not cause
    /// redeliveries.
    pub ack_wait: Duration,
    /// Most messages delivered and not yet acknowledged, over every bridge
    /// of the consumer (for a consumer created here; default 1024).
    pub max_ack_pending: i64,
    /// Where log lines go (default: stderr).
    pub log: Option<Log>,
    /// Publishes the counters in a stats record in `/dev/shm` for
    /// `shmring stat` (default true; see [`stats`](crate::stats)).
    pub publish_stats: bool,
}

impl std::fmt::Debug for InConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InConfig")
            .field("nats", &self.nats.url)
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl InConfig {
    /// Pulls from consumer `consumer` of stream `stream` on `nats` into
    /// queue `queue`, with the defaults.
    pub fn new(
        nats: NatsOptions,
        stream: impl Into<String>,
        consumer: impl Into<String>,
        queue: impl Into<String>,
    ) -> InConfig {
        InConfig {
            nats,
            stream: stream.into(),
            consumer: consumer.into(),
            queue: queue.into(),
            create_stream: None,
            filter_subject: None,
            batch: 256,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1024,
            log: None,
            publish_stats: true,
        }
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_ack_pending,
            filter_subject: self.filter_subject.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// The inbound bridge: pulls messages from a durable JetStream consumer,
/// puts each in a local queue, and acknowledges it once put. See [the
/// crate docs](crate) for the guarantees.
///
/// # Crash behaviour
///
/// A bridge killed at any instruction acknowledged only messages already
/// in the local queue. JetStream redelivers the others after the
/// consumer's `ack_wait`, including any put but not yet acknowledged: those
/// arrive twice (counted as `redelivered`).
pub struct BridgeIn {
    config: InConfig,
    queue: ByteQueue,
    producer: Option<Producer>,
    counters: Arc<Counters>,
    log: Log,
}

impl std::fmt::Debug for BridgeIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeIn")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What became of one put.
enum Put {
    Done,
    /// Shutdown while the queue was full.
    Stopped,
}

impl BridgeIn {
    /// Opens the local queue and claims a producer ring in it.
    ///
    /// # Errors
    ///
    /// [`Error::Open`], [`Error::Role`] (every ring owned by a live
    /// producer), [`Error::Config`] for a zero batch or a stream to create
    /// under another name.
    pub fn new(config: InConfig) -> Result<BridgeIn, Error> {
        if config.batch == 0 {
            return Err(Error::Config("the batch must be at least 1".into()));
        }
        if let Some(s) = &config.create_stream {
            if s.name != config.stream {
                return Err(Error::Config(format!(
                    "the stream to create ({:?}) is not the stream pulled from ({:?})",
                    s.name, config.stream
                )));
            }
        }
        let queue = ByteQueue::open(&config.queue).map_err(Error::Open)?;
        let producer = queue.producer().map_err(Error::Role)?;
        let log = config
            .log
            .clone()
            .unwrap_or_else(|| stderr_log("shmring-bridge in: "));
        let counters = Arc::new(if config.publish_stats {
            let name = queue.segment().name().unwrap_or(&config.queue).to_owned();
            Counters::publish(&name, crate::stats::Direction::In, &log)
        } else {
            Counters::default()
        });
        Ok(BridgeIn {
            config,
            queue,
            producer: Some(producer),
            counters,
            log,
        })
    }

    /// The counters, readable while the bridge runs.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs on a runtime of its own (a current-thread tokio runtime on
    /// this thread) until `shutdown` or an error.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); [`Error::Config`] when no runtime can be
    /// built.
    pub fn run_blocking(self, shutdown: Shutdown) -> Result<(), Error> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start a tokio runtime: {e}")))?
            .block_on(self.run(shutdown))
    }

    /// Pulls into the local queue until `shutdown` is triggered or the
    /// local queue is shut down.
    ///
    /// # Blocking
    ///
    /// A full local queue is waited for on tokio's blocking threads (in
    /// slices of 100 ms, so that a shutdown is seen), and nothing more is
    /// pulled meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Oversize`] for a message larger than the local queue's
    /// largest message (it stays unacknowledged in the stream),
    /// [`Error::Corrupted`], [`Error::Auth`] when NATS refuses the
    /// credentials or TLS fails. NATS being unreachable, the stream missing, a
    /// pull failing: none is an error, each is logged and retried with
    /// backoff.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), Error> {
        let log = self.log.clone();
        let mut backoff = Backoff::new();
        'connect: loop {
            if shutdown.is_triggered() {
                return Ok(());
            }
            let (client, refusal) = match connect(&self.config.nats, &log).await {
                Ok(connected) => connected,
                Err(ConnectFailure::Fatal(e)) => return Err(e),
                Err(ConnectFailure::Retry(e)) => {
                    let d = backoff.step();
                    self.counters.add(Counter::Retries, 1);
                    log(&format!(
                        "cannot connect to {}: {e}; retrying in {d:?}",
                        self.config.nats.url
                    ));
                    shutdown.sleep(d).await;
                    continue;
                }
            };
            let js = jetstream(client.clone(), &self.config.nats);
            let mut consumer = match self.consumer(&js).await {
                Ok(consumer) => consumer,
                Err(e) => {
                    refusal.check(&self.config.nats.url)?;
                    let d = backoff.step();
                    self.counters.add(Counter::Retries, 1);
                    log(&format!("{e}; retrying in {d:?}"));
                    shutdown.sleep(d).await;
                    continue 'connect;
                }
            };
            log(&format!(
                "pulling stream {} (consumer {}) into queue {}",
                self.config.stream, self.config.consumer, self.config.queue
            ));
            backoff.reset();
            // Pulls in a row that brought nothing (see `stalled`).
            let mut empty_pulls = 0u32;
            loop {
                if shutdown.is_triggered() {
                    return Ok(());
                }
                let batch = match self.pull(&consumer).await {
                    Ok(batch) if batch.is_empty() => {
                        if self.stopped(&mut empty_pulls, &mut consumer, &js).await {
                            continue 'connect;
                        }
                        continue;
                    }
                    Ok(batch) => {
                        empty_pulls = 0;
                        batch
                    }
                    Err(e) => {
                        refusal.check(&self.config.nats.url)?;
                        let d = backoff.step();
                        self.counters.add(Counter::Retries, 1);
                        log(&format!("{e}; retrying in {d:?}"));
                        shutdown.sleep(d).await;
                        if self.stopped(&mut empty_pulls, &mut consumer, &js).await {
                            continue 'connect;
                        }
                        if backoff.reconnect() {
                            log("failing again and again: reconnecting");
                            continue 'connect;
                        }
                        continue;
                    }
                };
                backoff.reset();
                if !self.deliver(batch, &shutdown).await? {
                    return Ok(());
                }
                // What was acknowledged goes out now, not at the next pull
                // (bounded: a flush to a wedged connection must not hang
                // the bridge; an ack lost there is a redelivery).
                let _ = tokio::time::timeout(self.config.nats.timeout(), client.flush()).await;
            }
        }
    }

    /// Whether the consumer has messages not yet delivered and room to
    /// deliver them (fewer awaiting acks than it allows), which a pull that
    /// brought nothing, several times in a row, says it does not deliver:
    /// nats-server 2.9 was seen to stop a durable pull consumer so after a
    /// SIGKILL and restart (41,504 pending, 215 of 1,024 awaiting acks, 2
    /// requests waiting, nothing delivered for minutes). Under back-pressure
    /// (the acks allowed all taken) this is false.
    async fn stalled(&self, consumer: &mut PullConsumer) -> bool {
        let info = tokio::time::timeout(self.config.nats.timeout(), consumer.info()).await;
        let Ok(Ok(info)) = info else {
            return false;
        };
        let room = info.config.max_ack_pending <= 0
            || (info.num_ack_pending as i64) < info.config.max_ack_pending;
        info.num_pending > 0 && room
    }

    /// Counts one pull that brought nothing; every [`STALL_PULLS`] of them
    /// in a row, asks whether the consumer has stopped (see `stalled`) and,
    /// if so, deletes it (`remake_consumer`): `true` then, and the caller
    /// connects again, which makes the consumer again.
    async fn stopped(
        &self,
        empty_pulls: &mut u32,
        consumer: &mut PullConsumer,
        js: &async_nats::jetstream::Context,
    ) -> bool {
        *empty_pulls += 1;
        if *empty_pulls < STALL_PULLS {
            return false;
        }
        *empty_pulls = 0;
        if !self.stalled(consumer).await {
            return false;
        }
        self.remake_consumer(js).await;
        true
    }

    /// Deletes the stopped durable consumer, so that the next connection
    /// makes it again (every bridge sharing it does, by its name). What it
    /// had delivered and not yet seen acknowledged is delivered again: at
    /// least once, as after any crash.
    async fn remake_consumer(&self, js: &async_nats::jetstream::Context) {
        (self.log)(&format!(
            "consumer {} of stream {} has messages pending and room for them, yet \
             delivers none (a JetStream consumer stopped by an unclean server \
             restart): making it again",
            self.config.consumer, self.config.stream
        ));
        let delete = js.delete_consumer_from_stream(&self.config.consumer, &self.config.stream);
        let _ = tokio::time::timeout(self.config.nats.timeout(), delete).await;
    }

    /// The durable consumer (and the stream, when asked to create it).
    async fn consumer(&self, js: &async_nats::jetstream::Context) -> Result<PullConsumer, String> {
        if let Some(settings) = &self.config.create_stream {
            ensure_stream(js, settings).await?;
        }
        let stream = js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| format!("cannot find stream {:?}: {e}", self.config.stream))?;
        stream
            .get_or_create_consumer(&self.config.consumer, self.config.consumer_config())
            .await
            .map_err(|e| {
                format!(
                    "cannot find or create consumer {:?} of stream {:?}: {e}",
                    self.config.consumer, self.config.stream
                )
            })
    }

    /// One pull: up to `batch` messages, waiting up to a second for the
    /// first.
    ///
    /// The pull request lives in the server: a server that restarts
    /// meanwhile forgets it and never answers (nor ends the request), so
    /// the wait here has a deadline of its own, a little past the request's
    /// expiry; what arrived by then is delivered, and nothing arriving is a
    /// failed pull (retried).
    async fn pull(&self, consumer: &PullConsumer) -> Result<Vec<Message>, String> {
        const EXPIRES: Duration = Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + EXPIRES + self.config.nats.timeout();
        let request = consumer
            .batch()
            .max_messages(self.config.batch)
            .expires(EXPIRES)
            .messages();
        let mut messages = tokio::time::timeout_at(deadline, request)
            .await
            .map_err(|_| {
                format!(
                    "a pull from stream {} could not be sent by its deadline",
                    self.config.stream
                )
            })?
            .map_err(|e| format!("pull from stream {} failed: {e}", self.config.stream))?;
        let mut batch = Vec::new();
        loop {
            let m = match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) if batch.is_empty() => {
                    return Err(format!(
                        "no answer to a pull from stream {} by its deadline (the server \
                         restarted?)",
                        self.config.stream
                    ))
                }
                Err(_) => break,
            };
            match m {
                Ok(m) => batch.push(m),
                // What came before the error is delivered; the rest is
                // redelivered by JetStream after its ack_wait.
                Err(e) if batch.is_empty() => {
                    return Err(format!(
                        "pull from stream {} failed: {e}",
                        self.config.stream
                    ))
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Puts each message of `batch` and acknowledges it once put. `false`
    /// when a shutdown or the local queue's shutdown stopped it (the rest
    /// was handed back to JetStream).
    async fn deliver(&mut self, batch: Vec<Message>, shutdown: &Shutdown) -> Result<bool, Error> {
        self.counters.add(Counter::Received, batch.len() as u64);
        for m in &batch {
            if m.info().is_ok_and(|info| info.delivered > 1) {
                self.counters.add(Counter::Redelivered, 1);
            }
        }
        let mut progress_at = Instant::now() + self.config.ack_wait / 3;
        for (i, m) in batch.iter().enumerate() {
            let put = loop {
                match self.put(&m.payload, shutdown).await {
                    Ok(Some(put)) => break put,
                    Ok(None) => {
                        // Still full: tell JetStream the rest is in hand.
                        if Instant::now() >= progress_at {
                            for rest in &batch[i..] {
                                let progress = rest.ack_with(AckKind::Progress);
                                let _ = tokio::time::timeout(self.config.nats.timeout(), progress)
                                    .await;
                            }
                            progress_at = Instant::now() + self.config.ack_wait / 3;
                        }
                    }
                    Err(e) => {
                        self.hand_back(&batch[i..]).await;
                        return Err(e);
                    }
                }
            };
            match put {
                Put::Done => {
                    self.counters.add(Counter::Put, 1);
                    let segment = self.queue.segment();
                    segment.add_to_counter(PeerCounter::Puts, 1);
                    segment.add_to_counter(PeerCounter::BytesIn, m.payload.len() as u64);
                    match tokio::time::timeout(self.config.nats.timeout(), m.ack()).await {
                        Ok(Ok(())) => self.counters.add(Counter::AckedIn, 1),
                        Ok(Err(e)) => (self.log)(&format!(
                            "ack failed ({e}): JetStream will deliver that message again"
                        )),
                        Err(_) => (self.log)(
                            "ack not sent in time: JetStream will deliver that message again",
                        ),
                    }
                }
                Put::Stopped => {
                    self.hand_back(&batch[i..]).await;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Tells JetStream to deliver `rest` again now (to any bridge).
    async fn hand_back(&self, rest: &[Message]) {
        for m in rest {
            let nak = m.ack_with(AckKind::Nak(None));
            let _ = tokio::time::timeout(self.config.nats.timeout(), nak).await;
        }
    }

    /// One attempt at putting `payload`: a try on this thread, then a wait
    /// of up to 100 ms for room on a blocking thread. `None`: still full.
    async fn put(
        &mut self,
        payload: &bytes::Bytes,
        shutdown: &Shutdown,
    ) -> Result<Option<Put>, Error> {
        let p = self.producer.as_mut().expect("the producer is back");
        let result = match p.try_push(payload) {
            Err(PushError::Full) => {
                if shutdown.is_triggered() {
                    return Ok(Some(Put::Stopped));
                }
                let mut p = self.producer.take().expect("the producer is back");
                let bytes = payload.clone();
                let (p, r) = tokio::task::spawn_blocking(move || {
                    let r = p.push(&bytes, Until::after(Duration::from_millis(100)));
                    (p, r)
                })
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                self.producer = Some(p);
                r
            }
            other => other,
        };
        match result {
            Ok(()) => Ok(Some(Put::Done)),
            Err(PushError::Full | PushError::Timeout) => {
                if shutdown.is_triggered() {
                    Ok(Some(Put::Stopped))
                } else {
                    Ok(None)
                }
            }
            Err(PushError::Closed) => {
                (self.log)(&format!(
                    "queue {} is shut down: stopping",
                    self.config.queue
                ));
                Ok(Some(Put::Stopped))
            }
            Err(PushError::TooLarge { len, max }) => Err(Error::Oversize {
                len,
                max,
                what: format!(
                    "queue {}'s largest message; it stays unacknowledged in stream {}",
                    self.config.queue, self.config.stream
                ),
            }),
            Err(PushError::Corrupted(c)) => Err(Error::Corrupted(c)),
        }
    }
}
