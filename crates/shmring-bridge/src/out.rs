//! The outbound bridge: a local queue drained into a JetStream stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use shmring::core::wait::Until;
use shmring::core::PopError;
use shmring::mpmc::{ByteQueue, Commit, Consumer, PeekToken};
use shmring::segment::PeerCounter;

use crate::{
    boot_id, connect, ensure_stream, jetstream, stderr_log, Backoff, ConnectFailure, Counter,
    Counters, Error, Log, NatsOptions, Shutdown, StreamSettings,
};

/// What an outbound bridge does.
#[derive(Clone)]
pub struct OutConfig {
    /// The local queue's segment name (a [`Queue`](shmring::queue::Queue)
    /// or [`ByteQueue`]: the same kind of segment).
    pub queue: String,
    /// The NATS server and authentication.
    pub nats: NatsOptions,
    /// The subject every message is published to; a stream must store it
    /// (or be created: [`create_stream`](Self::create_stream)).
    pub subject: String,
    /// Creates this stream when it does not exist (else the stream is an
    /// operator's business: publishes wait, logged, until one stores the
    /// subject).
    pub create_stream: Option<StreamSettings>,
    /// The `Content-Type` header: the local codec's content type (the
    /// default, `application/octet-stream`, for raw bytes).
    pub content_type: String,
    /// Most messages published before their acknowledgements are awaited
    /// (a batch; default 256).
    pub batch: usize,
    /// Most payload bytes in one batch (default 4 MiB; a message larger
    /// than that goes alone).
    pub batch_bytes: usize,
    /// Where log lines go (default: stderr).
    pub log: Option<Log>,
    /// Publishes the counters in a stats record in `/dev/shm` for
    /// `shmring stat` (default true; see [`stats`](crate::stats)).
    pub publish_stats: bool,
}

impl std::fmt::Debug for OutConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutConfig")
            .field("queue", &self.queue)
            .field("nats", &self.nats.url)
            .field("subject", &self.subject)
            .field("create_stream", &self.create_stream)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl OutConfig {
    /// Drains queue `queue` into `subject` on the server `nats`, with the
    /// defaults.
    pub fn new(queue: impl Into<String>, nats: NatsOptions, subject: impl Into<String>) -> Self {
        OutConfig {
            queue: queue.into(),
            nats,
            subject: subject.into(),
            create_stream: None,
            content_type: "application/octet-stream".into(),
            batch: 256,
            batch_bytes: 4 << 20,
            log: None,
            publish_stats: true,
        }
    }
}

/// The outbound bridge: peeks messages out of a local queue, publishes
/// them to JetStream, and takes each out of the queue once JetStream
/// acknowledged it. See [the crate docs](crate) for the guarantees.
///
/// # Crash behaviour
///
/// A bridge killed at any instruction took out of the queue only messages
/// JetStream had acknowledged; the rest stay queued, and the next bridge
/// publishes them again under the same message ids (deduplicated by the
/// stream within its duplicate window).
pub struct BridgeOut {
    config: OutConfig,
    queue: ByteQueue,
    identity: String,
    counters: Arc<Counters>,
    log: Log,
}

impl std::fmt::Debug for BridgeOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeOut")
            .field("config", &self.config)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// How one batch went.
enum BatchEnd {
    /// Everything published was acknowledged and committed.
    Done,
    /// A publish or acknowledgement failed: retry after a backoff.
    Retry(String),
    /// A message is too large for the server.
    Oversize(Error),
}

impl BridgeOut {
    /// Opens the local queue.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the queue cannot be opened, [`Error::BootId`],
    /// [`Error::Config`] for an empty subject or a zero batch.
    pub fn new(config: OutConfig) -> Result<BridgeOut, Error> {
        if config.subject.is_empty() || config.batch == 0 {
            return Err(Error::Config(
                "the subject must not be empty and the batch at least 1".into(),
            ));
        }
        let queue = ByteQueue::open(&config.queue).map_err(Error::Open)?;
        let (dev, ino) = queue.segment().file_id();
        let identity = format!("{}.{dev:x}.{ino:x}", boot_id()?);
        let log = config
            .log
            .clone()
            .unwrap_or_else(|| stderr_log("shmring-bridge out: "));
        let counters = Arc::new(if config.publish_stats {
            let name = queue.segment().name().unwrap_or(&config.queue).to_owned();
            Counters::publish(&name, crate::stats::Direction::Out, &log)
        } else {
            Counters::default()
        });
        Ok(BridgeOut {
            config,
            queue,
            identity,
            counters,
            log,
        })
    }

    /// The counters, readable while the bridge runs.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The queue's identity in message ids (see [the crate docs](crate)).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The `Nats-Msg-Id` of the message `token` names.
    pub fn message_id(&self, token: &PeekToken) -> String {
        format!("{}.{}.{:x}", self.identity, token.ring(), token.head_word())
    }

    fn headers(&self, token: &PeekToken) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", self.message_id(token).as_str());
        h.insert("Content-Type", self.config.content_type.as_str());
        h.insert(
            "Shmring-Producer",
            format!("{}.{}", self.identity, token.ring()).as_str(),
        );
        h.insert("Shmring-Sequence", token.sequence().to_string().as_str());
        h.insert("Shmring-Queue", self.config.queue.as_str());
        h
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

    /// Drains the queue into JetStream until `shutdown` is triggered (what
    /// is in flight is finished first) or the queue is closed and drained.
    ///
    /// # Blocking
    ///
    /// Waits for messages on tokio's blocking threads (in slices of 250
    /// ms, so that a shutdown is seen); never blocks a worker thread.
    ///
    /// # Errors
    ///
    /// [`Error::Oversize`] (the message stays queued), [`Error::Corrupted`].
    /// [`Error::Auth`] when NATS refuses the credentials or TLS fails.
    /// NATS being unreachable, a stream missing, a publish refused: none
    /// is an error, each is logged and retried with backoff.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        let log = self.log.clone();
        let mut backoff = Backoff::new();
        let mut consumer = Some(self.queue.consumer());
        let mut batch = Vec::new();
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
            if let Some(settings) = &self.config.create_stream {
                if let Err(e) = ensure_stream(&js, settings).await {
                    refusal.check(&self.config.nats.url)?;
                    let d = backoff.step();
                    self.counters.add(Counter::Retries, 1);
                    log(&format!("{e}; retrying in {d:?}"));
                    shutdown.sleep(d).await;
                    continue 'connect;
                }
            }
            log(&format!(
                "draining queue {} into subject {} on {}",
                self.config.queue, self.config.subject, self.config.nats.url
            ));
            backoff.reset();
            loop {
                if shutdown.is_triggered() {
                    return Ok(());
                }
                batch.clear();
                match self.next_batch(&mut consumer, &mut batch).await {
                    Ok(_) => {}
                    Err(PopError::Empty | PopError::Timeout) => continue,
                    Err(PopError::Closed) => {
                        log(&format!(
                            "queue {} is shut down and drained: stopping",
                            self.config.queue
                        ));
                        return Ok(());
                    }
                    Err(PopError::Corrupted(c)) => return Err(Error::Corrupted(c)),
                }
                let c = consumer.as_ref().expect("the consumer is back");
                match self.publish_batch(&js, &client, c, &mut batch).await {
                    BatchEnd::Done => backoff.reset(),
                    BatchEnd::Oversize(e) => return Err(e),
                    BatchEnd::Retry(why) => {
                        refusal.check(&self.config.nats.url)?;
                        let d = backoff.step();
                        self.counters.add(Counter::Retries, 1);
                        log(&format!(
                            "{why}; the unacknowledged messages stay queued, \
                             retrying in {d:?}"
                        ));
                        shutdown.sleep(d).await;
                        if backoff.reconnect() {
                            log("failing again and again: reconnecting");
                            continue 'connect;
                        }
                    }
                }
            }
        }
    }

    /// Peeks the next batch: a try on this thread, then a wait of up to
    /// 250 ms on a blocking thread.
    async fn next_batch(
        &self,
        consumer: &mut Option<Consumer>,
        out: &mut Vec<(PeekToken, Vec<u8>)>,
    ) -> Result<usize, PopError> {
        let (n, bytes) = (self.config.batch, self.config.batch_bytes);
        let c = consumer.as_mut().expect("the consumer is back");
        match c.try_peek(n, bytes, out) {
            Err(PopError::Empty) => {}
            other => return other,
        }
        let mut c = consumer.take().expect("the consumer is back");
        let mut buf = std::mem::take(out);
        let (c, buf, result) = tokio::task::spawn_blocking(move || {
            let r = c.peek(n, bytes, &mut buf, Until::after(Duration::from_millis(250)));
            (c, buf, r)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        *consumer = Some(c);
        *out = buf;
        result
    }

    /// Publishes `batch` (each with its headers), awaits the
    /// acknowledgements in order, and commits each acknowledged message,
    /// up to the first failure.
    async fn publish_batch(
        &self,
        js: &async_nats::jetstream::Context,
        client: &async_nats::Client,
        consumer: &Consumer,
        batch: &mut Vec<(PeekToken, Vec<u8>)>,
    ) -> BatchEnd {
        let mut end = BatchEnd::Done;
        let mut acks = Vec::with_capacity(batch.len());
        for (token, bytes) in batch.drain(..) {
            let len = bytes.len();
            let publish = PublishMessage::build()
                .payload(bytes.into())
                .headers(self.headers(&token));
            let sent = tokio::time::timeout(
                self.config.nats.timeout(),
                js.send_publish(self.config.subject.clone(), publish),
            )
            .await;
            let Ok(sent) = sent else {
                end = BatchEnd::Retry(format!(
                    "publish to {} did not go out in {:?}",
                    self.config.subject,
                    self.config.nats.timeout()
                ));
                break;
            };
            match sent {
                Ok(ack) => {
                    self.counters.add(Counter::Published, 1);
                    acks.push((token, len, ack));
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    end = BatchEnd::Oversize(Error::Oversize {
                        len,
                        max: client.server_info().max_payload,
                        what: format!(
                            "the server's max_payload, headers included; queue {} ring {} \
                             sequence {}, message id {}",
                            self.config.queue,
                            token.ring(),
                            token.sequence(),
                            self.message_id(&token)
                        ),
                    });
                    break;
                }
                Err(e) => {
                    end =
                        BatchEnd::Retry(format!("publish to {} failed: {e}", self.config.subject));
                    break;
                }
            }
        }
        for (token, len, ack) in acks {
            match ack.await {
                Ok(ack) => {
                    self.counters.add(Counter::Acked, 1);
                    if ack.duplicate {
                        self.counters.add(Counter::Deduplicated, 1);
                    }
                    match consumer.commit(&token) {
                        Commit::Taken => {
                            let segment = self.queue.segment();
                            segment.add_to_counter(PeerCounter::Gets, 1);
                            segment.add_to_counter(PeerCounter::BytesOut, len as u64);
                        }
                        Commit::TakenElsewhere => {
                            self.counters.add(Counter::TakenElsewhere, 1);
                        }
                        Commit::NotYet => {
                            // Tokens of a ring are committed in the order
                            // peeked and a failure ends the batch: never.
                            if matches!(end, BatchEnd::Done) {
                                end = BatchEnd::Retry(
                                    "a commit found an earlier message of its ring still \
                                     queued"
                                        .into(),
                                );
                            }
                            break;
                        }
                    }
                }
                Err(e) => {
                    if !matches!(end, BatchEnd::Oversize(_)) {
                        end = BatchEnd::Retry(format!(
                            "no acknowledgement from JetStream for subject {}: {e}",
                            self.config.subject
                        ));
                    }
                    // Later messages must not be committed before this
                    // one: they are published again, deduplicated.
                    break;
                }
            }
        }
        end
    }
}
