//! [`AsyncConnection`]: a pipe end whose receives are awaited (feature
//! `tokio`).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::time::Instant;

use super::Connection;
use crate::aio::block_on;
use crate::codec::Message;
use crate::pipe::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::sys::uring::KeepAlive;

/// A pipe [`Connection`] whose `recv` and `send` are awaited: a task that
/// waits gives its thread back to the runtime and sleeps in an io_uring
/// futex wait (see [`crate::aio`]). The other end may be a sync
/// connection in any process; one that closes or dies ends a pending
/// receive with [`RecvError::Eof`], and a pending send with
/// [`SendError::BrokenPipe`], within the liveness slice (100 ms by
/// default).
///
/// An awaited send writes the message whole, as
/// [`Connection::send_timeout`] does: a message longer than the ring
/// takes at once is [`SendError::TooLarge`] (the sync
/// [`Connection::send`] streams those).
///
/// # Cancel safety
///
/// [`recv`](Self::recv), [`recv_bytes`](Self::recv_bytes) and
/// [`recv_timeout`](Self::recv_timeout) are cancel-safe: a message is
/// taken off the ring only inside a poll, and the part of a long
/// (streamed) message taken so far stays in the connection for the next
/// receive, as after a sync timeout. [`send`](Self::send) and
/// [`send_timeout`](Self::send_timeout) are cancel-safe as well: a
/// message is written whole inside one poll or not at all, and the value
/// is borrowed, so a dropped pending send has sent nothing and lost
/// nothing.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::aio::AsyncConnection;
/// use shmring::pipe::{Pipe, RecvError};
///
/// let (reader, mut writer) = Pipe::new(false)?;
/// let mut reader = AsyncConnection::new(reader);
/// writer.send(&"ping".to_string())?;
/// assert_eq!(reader.recv::<String>().await?, "ping");
/// drop(writer); // end of file
/// assert!(matches!(reader.recv::<String>().await, Err(RecvError::Eof)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncConnection {
    conn: Connection,
}

impl From<Connection> for AsyncConnection {
    fn from(conn: Connection) -> Self {
        AsyncConnection { conn }
    }
}

impl AsyncConnection {
    /// Wraps a connection.
    pub fn new(conn: Connection) -> AsyncConnection {
        conn.into()
    }

    /// The sync connection (its `try_` forms never block).
    pub fn get_ref(&self) -> &Connection {
        &self.conn
    }

    /// The sync connection, for its sends.
    pub fn get_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The sync connection back.
    pub fn into_inner(self) -> Connection {
        self.conn
    }

    /// Receives one whole message, awaiting it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type's docs).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`]: [`RecvError::Eof`] once the writer closed
    /// or died and everything it sent was received.
    pub async fn recv<T: Message>(&mut self) -> Result<T, RecvError> {
        self.recv_until(None, |c| c.try_recv::<T>())
            .await
            .map_err(|e| match e {
                RecvTimeoutError::Recv(e) => e,
                RecvTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }

    /// Receives one whole message as bytes (at most `maxlength` of them),
    /// awaiting it.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes`].
    pub async fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, RecvError> {
        self.recv_until(None, |c| c.try_recv_bytes(maxlength))
            .await
            .map_err(|e| match e {
                RecvTimeoutError::Recv(e) => e,
                RecvTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }

    /// Receives one whole message, awaiting it for at most `timeout`
    /// (tokio's clock).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_timeout`].
    pub async fn recv_timeout<T: Message>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.recv_until(deadline, |c| c.try_recv::<T>()).await
    }

    /// Sends `value` whole, awaiting room for all of it.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_timeout`]: [`SendError::BrokenPipe`] once the
    /// reader closed or died, [`SendError::TooLarge`] for a message the
    /// ring never takes at once.
    pub async fn send<T: Message>(&mut self, value: &T) -> Result<(), SendError> {
        self.send_until(None, |c| c.try_send(value))
            .await
            .map_err(|e| match e {
                SendTimeoutError::Send(e) => e,
                SendTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }

    /// Sends `value` whole, awaiting room for at most `timeout` (tokio's
    /// clock); nothing is written if the time runs out.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_timeout`].
    pub async fn send_timeout<T: Message>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.send_until(deadline, |c| c.try_send(value)).await
    }

    /// This connection's sending side as a [`Sink`] of `T` (each item one
    /// message), for `SinkExt::send`, `send_all` and `Stream::forward`.
    ///
    /// # Sink contract
    ///
    /// * `start_send` tries the send at once (a message written whole, as
    ///   [`send`](Self::send)): with room, it is in the ring when
    ///   `start_send` returns. Without, the sink keeps it (one message at
    ///   most) and awaits room as [`send`](Self::send) does.
    /// * `poll_ready` and `poll_flush` send the kept message, awaiting
    ///   room; `Ready(Ok)` from `poll_ready` means the sink keeps nothing.
    /// * `poll_close` is `poll_flush`; the connection is closed (end of
    ///   file for the reader) when the sink is dropped, or by
    ///   [`Connection::close`] after [`into_inner`](ConnectionSink::into_inner).
    /// * A send that fails for good ([`SendError::BrokenPipe`] once the
    ///   reader closed or died, [`SendError::TooLarge`], ...) is reported by
    ///   the next `poll_ready`, `poll_flush` or `poll_close`; its message is
    ///   dropped (a pipe error gives no value back).
    ///
    /// # Cancel safety
    ///
    /// Once `poll_flush` returned `Ready(Ok)`, every message sent is in
    /// the ring and dropping the sink loses none (the reader still reads
    /// them all, then end of file). A message the sink still keeps when
    /// it is dropped (sent while the ring was full, not yet flushed) is
    /// dropped with it and never written, whole or in part.
    ///
    /// # Panics
    ///
    /// `start_send` panics when the sink still keeps a message or an
    /// error (called without `poll_ready` returning `Ready(Ok)` first).
    pub fn into_sink<T: Message + Send + Sync + 'static>(self) -> ConnectionSink<T> {
        ConnectionSink {
            conn: Some(self),
            pending: None,
            failed: None,
            _items: PhantomData,
        }
    }

    /// The messages this end receives, as a [`Stream`] of `T`: each item
    /// is what [`recv`](Self::recv) returns, and the stream ends at end
    /// of file (the writer closed or died and everything it sent was
    /// received). Another receive error is yielded as an item, and the
    /// stream goes on, except one that every later receive would repeat
    /// ([`RecvError::HandleClosed`], [`RecvError::WriteOnly`]): the stream
    /// ends after it.
    ///
    /// # Cancel safety
    ///
    /// A receive in progress belongs to the stream: dropping the stream
    /// between two items loses nothing that was not yet yielded, but it
    /// drops the connection with it (take it back with
    /// [`ConnectionStream::into_inner`] while no receive is pending).
    pub fn into_stream<T: Message + Send + 'static>(self) -> ConnectionStream<T> {
        ConnectionStream {
            conn: Some(self),
            pending: None,
            done: false,
        }
    }

    /// Tries, then awaits room (or the end) and tries again.
    async fn send_until(
        &mut self,
        deadline: Option<Instant>,
        mut try_send: impl FnMut(&mut Connection) -> Result<(), TrySendError>,
    ) -> Result<(), SendTimeoutError> {
        loop {
            // Read before the try: a release after this read is more room
            // than the try may have seen, and ends the wait below.
            let before = self.conn.free_now().map_err(SendTimeoutError::Send)?;
            match try_send(&mut self.conn) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Send(e)) => return Err(SendTimeoutError::Send(e)),
                Err(TrySendError::Full) => {}
            }
            let room = self.conn.await_writable(before, deadline).await;
            if !room.map_err(SendTimeoutError::Send)? {
                return match try_send(&mut self.conn) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Send(e)) => Err(SendTimeoutError::Send(e)),
                    Err(TrySendError::Full) => Err(SendTimeoutError::Timeout),
                };
            }
        }
    }

    /// Tries, then awaits a record (or the end) and tries again.
    async fn recv_until<R>(
        &mut self,
        deadline: Option<Instant>,
        mut try_recv: impl FnMut(&mut Connection) -> Result<R, TryRecvError>,
    ) -> Result<R, RecvTimeoutError> {
        loop {
            match try_recv(&mut self.conn) {
                Ok(r) => return Ok(r),
                Err(TryRecvError::Recv(e)) => return Err(RecvTimeoutError::Recv(e)),
                Err(TryRecvError::Empty) => {}
            }
            if !self
                .conn
                .await_readable(deadline)
                .await
                .map_err(RecvTimeoutError::Recv)?
            {
                // One last try: a record that came with the deadline.
                return match try_recv(&mut self.conn) {
                    Ok(r) => Ok(r),
                    Err(TryRecvError::Recv(e)) => Err(RecvTimeoutError::Recv(e)),
                    Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                };
            }
        }
    }
}

/// A send of a [`ConnectionSink`] awaiting room: it owns the connection
/// and the message, and hands the connection back.
type PendingSend = Pin<Box<dyn Future<Output = (AsyncConnection, Result<(), SendError>)> + Send>>;

/// [`AsyncConnection::into_sink`]: a connection's sending side as a
/// [`Sink`] of `T`.
pub struct ConnectionSink<T> {
    /// The connection while no send is pending (`pending` holds it
    /// otherwise: exactly one of the two is `Some`).
    conn: Option<AsyncConnection>,
    pending: Option<PendingSend>,
    /// A send that failed for good in `start_send`, for the next poll.
    failed: Option<SendError>,
    _items: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for ConnectionSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSink")
            .field("conn", &self.conn)
            .field("keeps_a_message", &self.pending.is_some())
            .field("failed", &self.failed)
            .finish()
    }
}

impl<T: Message + Send + Sync + 'static> ConnectionSink<T> {
    /// Whether the sink keeps a message not yet written (sent while the
    /// ring was full), or a failure not yet reported.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() || self.failed.is_some()
    }

    /// The connection back, unless a send is pending: then the sink
    /// itself, boxed (flush first). A failure not yet reported is dropped.
    ///
    /// # Errors
    ///
    /// The sink, while it keeps a message.
    pub fn into_inner(self) -> Result<AsyncConnection, Box<Self>> {
        match self.conn {
            Some(conn) if self.pending.is_none() => Ok(conn),
            _ => Err(Box::new(self)),
        }
    }

    /// Writes the kept message, if any, awaiting room; reports a failure.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        let Some(send) = self.pending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let Poll::Ready((conn, done)) = send.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.pending = None;
        self.conn = Some(conn);
        Poll::Ready(done)
    }
}

impl<T: Message + Send + Sync + 'static> Sink<T> for ConnectionSink<T> {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // Every field is Unpin (the future is boxed).
        self.get_mut().poll_sent(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), SendError> {
        let this = self.get_mut();
        assert!(
            !this.is_pending(),
            "ConnectionSink::start_send without poll_ready returning Ready(Ok) first"
        );
        let conn = this
            .conn
            .as_mut()
            .expect("no send pending: the sink holds it");
        match conn.conn.try_send(&item) {
            Ok(()) => {}
            Err(TrySendError::Full) => {
                let mut conn = this.conn.take().expect("checked above");
                this.pending = Some(Box::pin(async move {
                    let sent = conn.send(&item).await;
                    (conn, sent)
                }));
            }
            Err(TrySendError::Send(e)) => this.failed = Some(e),
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.get_mut().poll_sent(cx)
    }
}

impl Connection {
    /// The ring's free bytes now, as the writer sees them.
    fn free_now(&mut self) -> Result<u64, SendError> {
        self.check_writable()?;
        let out = self.outgoing.as_mut().ok_or(SendError::ReadOnly)?;
        out.producer.free_bytes().map_err(SendError::Corrupted)
    }

    /// Awaits more free room than `before` (read before a try that found
    /// too little: the reader released some since), or the end of the
    /// ring (closed, or a reader the slow check found dead, which closes
    /// it: the next try reports it); `false`: `deadline` passed first.
    async fn await_writable(
        &mut self,
        before: u64,
        deadline: Option<Instant>,
    ) -> Result<bool, SendError> {
        self.check_writable()?;
        let keep: KeepAlive = self.pipe.clone();
        let waiter = self.pipe.segment.waiter();
        let out = self.outgoing.as_mut().ok_or(SendError::ReadOnly)?;
        let policy = out.producer.wait_policy();
        let (producer, ring) = (&mut out.producer, &out.ring);
        let ready = block_on(
            ring.writable_word(),
            &waiter,
            &keep,
            policy,
            deadline,
            |slow| {
                if ring.closed_flags() != 0 {
                    return Some(());
                }
                match producer.free_bytes() {
                    Ok(free) if free > before => Some(()),
                    Err(_) => Some(()), // the next try reports it
                    Ok(_) if slow && producer.peer_gone() => Some(()),
                    Ok(_) => None,
                }
            },
        )
        .await;
        Ok(ready.is_ok())
    }

    /// Awaits the next record or the end of the ring (a writer that closed,
    /// or that the slow check found dead, which closes the ring: the next
    /// try then reports the end); `false`: `deadline` passed first.
    async fn await_readable(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if self.closed() {
            return Err(RecvError::HandleClosed);
        }
        let keep: KeepAlive = self.pipe.clone();
        let waiter = self.pipe.segment.waiter();
        let inc = self
            .incoming
            .get_mut()
            .as_mut()
            .ok_or(RecvError::WriteOnly)?;
        let policy = inc.consumer.wait_policy();
        let (consumer, ring) = (&mut inc.consumer, &inc.ring);
        let ready = block_on(
            ring.readable_word(),
            &waiter,
            &keep,
            policy,
            deadline,
            |slow| consumer.check_readable(slow),
        )
        .await;
        Ok(ready.is_ok())
    }
}

/// A receive of a [`ConnectionStream`]: it owns the connection and hands
/// it back with what it received.
type PendingRecv<T> = Pin<Box<dyn Future<Output = (AsyncConnection, Result<T, RecvError>)> + Send>>;

/// [`AsyncConnection::into_stream`]: the messages a pipe end receives, as
/// a [`Stream`].
pub struct ConnectionStream<T> {
    /// The connection while no receive is pending (`pending` holds it
    /// otherwise: exactly one of the two is `Some`).
    conn: Option<AsyncConnection>,
    pending: Option<PendingRecv<T>>,
    /// End of file was received: nothing more comes.
    done: bool,
}

impl<T> std::fmt::Debug for ConnectionStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionStream")
            .field("conn", &self.conn)
            .field("receiving", &self.pending.is_some())
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Message + Send + 'static> ConnectionStream<T> {
    /// The connection back, unless a receive is pending (then the stream
    /// itself: poll it to its next item first).
    ///
    /// # Errors
    ///
    /// The stream, while a receive is pending.
    pub fn into_inner(self) -> Result<AsyncConnection, Box<Self>> {
        match self.conn {
            Some(conn) if self.pending.is_none() => Ok(conn),
            _ => Err(Box::new(self)),
        }
    }
}

impl<T: Message + Send + 'static> Stream for ConnectionStream<T> {
    type Item = Result<T, RecvError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the future is boxed).
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.pending.is_none() {
            let mut conn = this
                .conn
                .take()
                .expect("no receive pending: the stream holds the connection");
            this.pending = Some(Box::pin(async move {
                let got = conn.recv::<T>().await;
                (conn, got)
            }));
        }
        let recv = this.pending.as_mut().expect("set above");
        let Poll::Ready((conn, got)) = recv.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        this.pending = None;
        this.conn = Some(conn);
        match got {
            Err(RecvError::Eof) => {
                this.done = true;
                Poll::Ready(None)
            }
            // No receive on this end can succeed again: yielded once, then
            // the end (not the same error for ever).
            Err(e @ (RecvError::HandleClosed | RecvError::WriteOnly)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            got => Poll::Ready(Some(got)),
        }
    }
}
