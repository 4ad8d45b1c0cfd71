//! shmring's own mechanisms: the SPSC ring, the MPMC queue (bytes), the
//! Pipe, and the typed `Queue<Vec<u8>>`.

use shmring::core::wait::Until;
use std::process::Command;
use std::time::Duration;

use shmring::core::{PopError, PushError};
use shmring::mpmc;
use shmring::pipe::{Connection, Pipe, RecvError, TryRecvError, TrySendError};
use shmring::queue::{self, Queue, TryGetError, TryPutError};
use shmring::spsc::{self, Ring};
use shmring::{Builder, RoleError, WaitPolicy};

use crate::drive::{Link, Spin};
use crate::peer::Job;
use crate::{MeasureError, Mode};

/// Parent → peer.
const TO_PEER: &str = "SHMRING_MEASURE_TO_PEER";
/// Peer → parent.
const TO_PARENT: &str = "SHMRING_MEASURE_TO_PARENT";

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> MeasureError {
    move |e| MeasureError::transport(what, e)
}

fn ring(job: &Job) -> Builder<Ring> {
    Ring::builder()
        .ring_bytes(job.ring_bytes())
        .max_message(job.max_record())
}

/// The wait policy of blocking calls: the default (adaptive), or a fixed
/// spin of `job.spin_ns`; in polling mode (where only a Pipe message too
/// long to send whole uses a blocking call) a fixed 10 s spin.
fn policy(job: &Job) -> WaitPolicy {
    match (job.mode, job.spin_ns) {
        (Mode::Polling, _) => WaitPolicy::fixed(10_000_000_000),
        (Mode::Blocking, Some(spin)) => WaitPolicy::fixed(spin),
        (Mode::Blocking, None) => WaitPolicy::default(),
    }
}

fn push_error(e: PushError) -> MeasureError {
    MeasureError::transport("push", e)
}

fn pop_error(e: PopError) -> MeasureError {
    MeasureError::transport("pop", e)
}

/// Two SPSC rings, one per direction.
pub(crate) struct Spsc {
    tx: spsc::Producer,
    rx: spsc::Consumer,
    polling: bool,
}

impl Spsc {
    pub(crate) fn parent(job: &Job, cmd: &mut Command) -> Result<Spsc, MeasureError> {
        let to_peer = ring(job).anonymous().map_err(err("create ring"))?;
        let to_parent = ring(job).anonymous().map_err(err("create ring"))?;
        to_peer
            .share_with_child(cmd, TO_PEER)
            .map_err(err("share ring"))?;
        to_parent
            .share_with_child(cmd, TO_PARENT)
            .map_err(err("share ring"))?;
        Spsc::new(job, to_peer.producer(), to_parent.consumer())
    }

    pub(crate) fn child(job: &Job) -> Result<Spsc, MeasureError> {
        let from_parent = Ring::builder()
            .open_inherited(TO_PEER)
            .map_err(err("open ring"))?;
        let to_parent = Ring::builder()
            .open_inherited(TO_PARENT)
            .map_err(err("open ring"))?;
        Spsc::new(job, to_parent.producer(), from_parent.consumer())
    }

    fn new(
        job: &Job,
        tx: Result<spsc::Producer, RoleError>,
        rx: Result<spsc::Consumer, RoleError>,
    ) -> Result<Spsc, MeasureError> {
        let mut tx = tx.map_err(err("producer"))?;
        let mut rx = rx.map_err(err("consumer"))?;
        tx.set_wait_policy(policy(job));
        rx.set_wait_policy(policy(job));
        Ok(Spsc {
            tx,
            rx,
            polling: job.mode == Mode::Polling,
        })
    }
}

/// Polls `try_push` until it succeeds, spinning while the ring is full.
#[inline]
fn spin_push(mut try_push: impl FnMut() -> Result<(), PushError>) -> Result<(), MeasureError> {
    let mut spin = Spin::new();
    loop {
        match try_push() {
            Ok(()) => return Ok(()),
            Err(PushError::Full) => spin.spin()?,
            Err(e) => return Err(push_error(e)),
        }
    }
}

/// Polls `try_pop` until a message arrives, spinning while it is empty.
#[inline]
fn spin_pop(mut try_pop: impl FnMut() -> Result<usize, PopError>) -> Result<(), MeasureError> {
    let mut spin = Spin::new();
    loop {
        match try_pop() {
            Ok(_) => return Ok(()),
            Err(PopError::Empty) => spin.spin()?,
            Err(e) => return Err(pop_error(e)),
        }
    }
}

impl Link for Spsc {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        if !self.polling {
            return self.tx.push(msg, Until::Never).map_err(push_error);
        }
        spin_push(|| self.tx.try_push(msg))
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        if !self.polling {
            return self.rx.pop(buf, Until::Never).map(drop).map_err(pop_error);
        }
        spin_pop(|| self.rx.try_pop(buf))
    }

    fn send_many(&mut self, msgs: &[Vec<u8>]) -> Result<(), MeasureError> {
        let mut spin = Spin::new();
        let mut sent = 0;
        while sent < msgs.len() {
            match self
                .tx
                .try_push_many(msgs[sent..].iter().map(Vec::as_slice))
            {
                Ok(n) => sent += n,
                Err(PushError::Full) => spin.spin()?,
                Err(e) => return Err(push_error(e)),
            }
        }
        Ok(())
    }

    fn recv_many(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        f: &mut dyn FnMut(&[u8]) -> Result<(), MeasureError>,
    ) -> Result<usize, MeasureError> {
        let mut spin = Spin::new();
        loop {
            let mut failed = None;
            // The consumer copies each message out, as try_pop would.
            let taken = self.rx.try_pop_many(max, |msg| {
                buf.clear();
                buf.extend_from_slice(msg);
                if failed.is_none() {
                    failed = f(buf).err();
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            match taken {
                Ok(n) => return Ok(n),
                Err(PopError::Empty) => spin.spin()?,
                Err(e) => return Err(pop_error(e)),
            }
        }
    }
}

/// Two MPMC queues (16 producer rings each), one per direction.
pub(crate) struct Mpmc {
    tx: mpmc::Producer,
    rx: mpmc::Consumer,
    polling: bool,
}

/// The default 16 producer rings, each as `ring`.
fn queue(job: &Job) -> Builder<mpmc::ByteQueue> {
    mpmc::ByteQueue::builder()
        .ring_bytes(job.ring_bytes())
        .max_message(job.max_record())
}

impl Mpmc {
    pub(crate) fn parent(job: &Job, cmd: &mut Command) -> Result<Mpmc, MeasureError> {
        let to_peer = queue(job).anonymous().map_err(err("create queue"))?;
        let to_parent = queue(job).anonymous().map_err(err("create queue"))?;
        to_peer
            .share_with_child(cmd, TO_PEER)
            .map_err(err("share queue"))?;
        to_parent
            .share_with_child(cmd, TO_PARENT)
            .map_err(err("share queue"))?;
        Mpmc::new(job, to_peer.producer(), to_parent.consumer())
    }

    pub(crate) fn child(job: &Job) -> Result<Mpmc, MeasureError> {
        let from_parent = mpmc::ByteQueue::builder()
            .open_inherited(TO_PEER)
            .map_err(err("open queue"))?;
        let to_parent = mpmc::ByteQueue::builder()
            .open_inherited(TO_PARENT)
            .map_err(err("open queue"))?;
        Mpmc::new(job, to_parent.producer(), from_parent.consumer())
    }

    fn new(
        job: &Job,
        tx: Result<mpmc::Producer, RoleError>,
        mut rx: mpmc::Consumer,
    ) -> Result<Mpmc, MeasureError> {
        let mut tx = tx.map_err(err("producer"))?;
        tx.set_wait_policy(policy(job));
        rx.set_wait_policy(policy(job));
        Ok(Mpmc {
            tx,
            rx,
            polling: job.mode == Mode::Polling,
        })
    }
}

impl Link for Mpmc {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        if !self.polling {
            return self.tx.push(msg, Until::Never).map_err(push_error);
        }
        spin_push(|| self.tx.try_push(msg))
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        if !self.polling {
            // A queue consumer cannot tell a dead producer from a slow one
            // (producers come and go): bound each wait instead.
            return self
                .rx
                .pop(buf, Until::after(Duration::from_secs(600)))
                .map(drop)
                .map_err(pop_error);
        }
        spin_pop(|| self.rx.try_pop(buf))
    }
}

/// The two ends of one duplex Pipe.
pub(crate) struct PipeLink {
    conn: Connection,
    payload: usize,
    polling: bool,
}

impl PipeLink {
    pub(crate) fn parent(job: &Job, cmd: &mut Command) -> Result<PipeLink, MeasureError> {
        let (conn, other) = Pipe::builder()
            .ring_bytes(job.ring_bytes())
            .pair()
            .map_err(err("create pipe"))?;
        other
            .share_with_child(cmd, TO_PEER)
            .map_err(err("share pipe"))?;
        Ok(PipeLink::new(job, conn))
    }

    pub(crate) fn child(job: &Job) -> Result<PipeLink, MeasureError> {
        let conn = Connection::open_inherited(TO_PEER).map_err(err("open pipe"))?;
        Ok(PipeLink::new(job, conn))
    }

    fn new(job: &Job, mut conn: Connection) -> PipeLink {
        conn.set_wait_policy(policy(job));
        PipeLink {
            conn,
            payload: job.payload,
            polling: job.mode == Mode::Polling,
        }
    }
}

impl Link for PipeLink {
    /// Polling: `try_send_bytes` in a spin loop while the ring is full (a
    /// message longer than `max_whole_message` goes out with the streaming
    /// `send_bytes`, which only spins too under the polling policy).
    /// Blocking: `send_bytes`.
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let whole = self.conn.max_whole_message().unwrap_or(0);
        if !self.polling || msg.len() > whole {
            return self
                .conn
                .send_bytes(msg, 0, None)
                .map_err(|e| MeasureError::transport("send_bytes", e));
        }
        let mut spin = Spin::new();
        loop {
            match self.conn.try_send_bytes(msg, 0, None) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full) => spin.spin()?,
                Err(e) => return Err(MeasureError::transport("try_send_bytes", e)),
            }
        }
    }

    /// Polling: `try_recv_bytes_into` in a spin loop while nothing (whole)
    /// has arrived; blocking: `recv_bytes_into`. A longer message than
    /// expected comes back whole in `BufferTooShort`.
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        // Room for the expected length (a no-op after the first call).
        buf.resize(self.payload, 0);
        let mut spin = Spin::new();
        let got = loop {
            let got = if self.polling {
                self.conn.try_recv_bytes_into(buf, 0)
            } else {
                self.conn
                    .recv_bytes_into(buf, 0)
                    .map_err(TryRecvError::Recv)
            };
            match got {
                Err(TryRecvError::Empty) => spin.spin()?,
                other => break other,
            }
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                Ok(())
            }
            Err(TryRecvError::Recv(RecvError::BufferTooShort(msg))) => {
                *buf = msg;
                Ok(())
            }
            Err(e) => Err(MeasureError::transport("recv_bytes_into", e)),
        }
    }
}

/// `Queue<Vec<u8>>`, one per direction, through its `Sender` and
/// `Receiver`: the typed public API with its codec, and a fresh `Vec` per
/// message each way (as a caller of `put(bytes.to_vec())` and `get()`
/// has), or, for [`Mechanism::ShmringQueueVecInto`], received into the
/// caller's buffer with `get_into`'s forms (no `Vec` per received
/// message). The handles' wait policy is the default.
///
/// [`Mechanism::ShmringQueueVecInto`]: crate::Mechanism::ShmringQueueVecInto
pub(crate) struct QueueVec {
    tx: queue::Sender<Vec<u8>>,
    rx: queue::Receiver<Vec<u8>>,
    polling: bool,
    /// Receive with `try_get_into`/`get_into_timeout`, not `try_get`/`get_timeout`.
    into: bool,
    _queues: [Queue<Vec<u8>>; 2],
}

/// A `Queue<Vec<u8>>` of the same shape as [`queue`]'s byte queue.
fn typed_queue(job: &Job) -> Builder<Queue<Vec<u8>>> {
    Queue::<Vec<u8>>::builder()
        .ring_bytes(job.ring_bytes())
        .max_message(job.max_record())
}

impl QueueVec {
    pub(crate) fn parent(job: &Job, cmd: &mut Command) -> Result<QueueVec, MeasureError> {
        let to_peer = typed_queue(job).anonymous().map_err(err("create queue"))?;
        let to_parent = typed_queue(job).anonymous().map_err(err("create queue"))?;
        to_peer
            .share_with_child(cmd, TO_PEER)
            .map_err(err("share queue"))?;
        to_parent
            .share_with_child(cmd, TO_PARENT)
            .map_err(err("share queue"))?;
        QueueVec::new(job, [to_peer, to_parent])
    }

    pub(crate) fn child(job: &Job) -> Result<QueueVec, MeasureError> {
        let from_parent = Queue::<Vec<u8>>::builder()
            .open_inherited(TO_PEER)
            .map_err(err("open queue"))?;
        let to_parent = Queue::<Vec<u8>>::builder()
            .open_inherited(TO_PARENT)
            .map_err(err("open queue"))?;
        QueueVec::new(job, [to_parent, from_parent])
    }

    /// Sends on `queues[0]`, receives from `queues[1]`.
    fn new(job: &Job, queues: [Queue<Vec<u8>>; 2]) -> Result<QueueVec, MeasureError> {
        Ok(QueueVec {
            tx: queues[0].sender().map_err(err("sender"))?,
            rx: queues[1].receiver(),
            polling: job.mode == Mode::Polling,
            into: job.mechanism == crate::Mechanism::ShmringQueueVecInto,
            _queues: queues,
        })
    }

    /// [`Link::recv`] with the buffer-reusing forms of get.
    #[inline]
    fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        if !self.polling {
            self.rx
                .get_into_timeout(buf, Duration::from_secs(600))
                .map_err(err("get_into"))?;
            return Ok(());
        }
        let mut spin = Spin::new();
        loop {
            match self.rx.try_get_into(buf) {
                Ok(_) => return Ok(()),
                Err(TryGetError::Empty) => spin.spin()?,
                Err(e) => return Err(MeasureError::transport("try_get_into", e)),
            }
        }
    }
}

impl Link for QueueVec {
    /// Polling: `try_put` in a spin loop while the queue is full (the item
    /// comes back each time); blocking: `put`.
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let item = msg.to_vec();
        if !self.polling {
            return self.tx.put(item).map_err(err("put"));
        }
        let mut item = item;
        let mut spin = Spin::new();
        loop {
            match self.tx.try_put(item) {
                Ok(()) => return Ok(()),
                Err(TryPutError::Full(back)) => {
                    item = back;
                    spin.spin()?;
                }
                Err(e) => return Err(MeasureError::transport("try_put", e)),
            }
        }
    }

    /// Polling: `try_get` in a spin loop while it is empty; blocking: `get`
    /// with a 10-minute bound (a queue cannot tell a dead producer from a
    /// slow one). The received `Vec` becomes `buf`. With `into`, the same
    /// with `try_get_into` and `get_into_timeout` into `buf`.
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        if self.into {
            return self.recv_into(buf);
        }
        if !self.polling {
            *buf = self
                .rx
                .get_timeout(Duration::from_secs(600))
                .map_err(err("get"))?;
            return Ok(());
        }
        let mut spin = Spin::new();
        loop {
            match self.rx.try_get() {
                Ok(item) => {
                    *buf = item;
                    return Ok(());
                }
                Err(TryGetError::Empty) => spin.spin()?,
                Err(e) => return Err(MeasureError::transport("try_get", e)),
            }
        }
    }
}
